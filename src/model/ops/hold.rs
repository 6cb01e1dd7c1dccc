//! A point where the backward pass stops and leaves its gradient ([`hold`]), and
//! the ways back to it: a max pool that stands in for it ([`max_pool2d_held`]), and
//! the tape's relays ([`Held::relay`]) with what the tape then leaves there
//! ([`Held::leave`]).

use candle_core::{Result, Tensor, Var};

use super::pool::{max_pool2d, pool_geometry};
use super::rectify::{activate, rectified_candle, rectify_grad};
use super::{Backward, with_backward};
use crate::model::cpu;
use crate::model::holder::Holder;
use crate::model::rules::Activation;

/// A point where the backward pass stops ([`hold`]).
pub(crate) struct Held {
    /// A variable that nothing else reads: the hold's ops depend on it, since Candle
    /// walks back only from ops that depend on a variable.
    pub(super) anchor: Var,
    pub(super) activation: Option<Activation>,
    /// The gradient arriving at `output`, from every reader.
    pub(super) holder: Holder,
    /// The hold's output, off the graph.
    pub(super) output: Tensor,
}

impl Held {
    /// The gradient with respect to the held tensor that the last backward pass
    /// left, taken out: zero if that pass did not reach the hold. The rectifier's
    /// rule applies here, once to the sum of what every reader sent back (the
    /// guided and DeconvNet rules clip that sum, not each part).
    pub(crate) fn take(&self) -> Result<Tensor> {
        let Some(grad) = self.holder.take() else {
            return self.output.zeros_like();
        };
        match self.activation {
            Some(a) => rectify_grad(&self.output, &grad, a),
            None => Ok(grad),
        }
    }
}

impl Held {
    /// `x` on Candle's graph: a copy hung on the hold's anchor, whose backward hands
    /// the gradient arriving at it to `keep` and passes nothing on.
    pub(crate) fn relay(&self, x: &Tensor, keep: Keep) -> Result<Tensor> {
        let anchor = self.anchor.as_tensor();
        with_backward(anchor, anchor, x.clone(), Relay(keep))
    }

    /// Adds `grad` to the gradient at the hold's output, for a backward pass run
    /// by other means than Candle's (the tape's).
    pub(crate) fn leave(&self, grad: Tensor) -> Result<()> {
        self.holder.put(grad)
    }
}

/// What a relay does with the gradient arriving at it.
pub(crate) type Keep = Box<dyn Fn(&Tensor) + Send + Sync>;

/// `activation` of `x` (or `x` itself), where the backward pass stops: it leaves the
/// gradient with respect to `x` in the returned [`Held`] and passes nothing on (`x`
/// is taken off the graph). A variable is where Candle's backward pass otherwise
/// ends, but making `x` one copies it, and Candle then adds the gradient into a
/// zero tensor of its size; an op whose backward keeps the gradient skips both.
///
/// On the CPU the op computes the rectifier itself; elsewhere it copies Candle's.
pub(crate) fn hold(x: &Tensor, activation: Option<Activation>) -> Result<(Tensor, Held)> {
    let anchor = Var::zeros(1, x.dtype(), x.device())?;
    let holder = Holder::default();
    let x = x.detach();
    let y = if cpu::applies(&x) {
        cpu::hold(anchor.as_tensor(), &x, activation, holder.clone())?
    } else {
        hold_candle(&anchor, &x, activation, &holder)?
    };
    let held = Held {
        anchor,
        activation,
        holder,
        output: y.detach(),
    };
    Ok((y, held))
}

/// [`hold`] for a pass that carries the gradient back to the hold by its own means
/// ([`crate::model::tape`]): `activation` of `x` (or `x`), off the graph, and the
/// hold that the tape leaves that gradient with ([`Held::leave`]).
pub(crate) fn hold_off_graph(x: &Tensor, activation: Option<Activation>) -> Result<(Tensor, Held)> {
    let y = activate(x.detach(), activation)?;
    let held = Held {
        anchor: Var::zeros(1, x.dtype(), x.device())?,
        activation,
        holder: Holder::default(),
        output: y.clone(),
    };
    Ok((y, held))
}

/// [`hold`]'s op off the CPU.
pub(super) fn hold_candle(
    anchor: &Var,
    x: &Tensor,
    activation: Option<Activation>,
    holder: &Holder,
) -> Result<Tensor> {
    let value = match activation {
        Some(a) => rectified_candle(x, a.kind)?,
        None => x.clone(),
    };
    let keep = Holding(holder.clone());
    with_backward(anchor.as_tensor(), x, value, keep)
}

/// [`hold_candle`]'s backward: leaves the gradient at the output.
struct Holding(Holder);

impl Backward for Holding {
    fn name(&self) -> &'static str {
        "hold"
    }

    fn grads(
        &self,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.put(grad.clone())?;
        Ok((None, None))
    }
}

/// [`Held::relay`]'s backward.
struct Relay(Keep);

impl Backward for Relay {
    fn name(&self) -> &'static str {
        "relay-off-graph"
    }

    fn grads(
        &self,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        (self.0)(grad);
        Ok((None, None))
    }
}

/// [`max_pool2d`] of `y`, the output of the hold `held`, standing in for the hold:
/// on the CPU one op, whose backward leaves the gradient it routes to `y` with
/// `held`, so that no gradient of `y`'s size passes through Candle (a zero tensor
/// and a sum) or through the hold's op; elsewhere the pool of `y` as it is.
pub(crate) fn max_pool2d_held(
    y: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
    held: &Held,
) -> Result<Tensor> {
    if !cpu::applies(y) {
        return max_pool2d(y, kernel, stride, padding);
    }
    let g = pool_geometry(y, kernel, stride, padding)?;
    let holder = held.holder.clone();
    cpu::max_pool2d_held(held.anchor.as_tensor(), &y.detach(), g, holder)
}
