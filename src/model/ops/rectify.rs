//! Rectifiers (ReLU, ReLU6) whose backward pass follows a [`BackwardRule`]: on the
//! CPU one fused pass each way ([`cpu::rectify`], [`cpu::rectify_grad`]); elsewhere
//! Candle's value with the rule's gradient by Candle's ops.

use candle_core::{Result, Tensor};

use super::{Backward, with_backward};
use crate::model::cpu;
use crate::model::rules::{Activation, BackwardRule, Rectifier};

/// The rectifier of `x`, backpropagating by its rule.
pub(crate) fn rectify(x: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::rectify(x, activation);
    }
    rectify_candle(x, activation)
}

pub(super) fn rectify_candle(x: &Tensor, activation: Activation) -> Result<Tensor> {
    let value = rectified_candle(x, activation.kind)?;
    with_backward(x, x, value, Rectified(activation))
}

/// The gradient `grad` passes back through `activation`, given the rectifier's input
/// or its output (both pass the same tests): on the CPU one pass; elsewhere
/// Candle's ops.
pub(crate) fn rectify_grad(x: &Tensor, grad: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(grad) {
        return cpu::rectify_grad(x, grad, activation);
    }
    candle_grad(x, grad, activation)
}

/// The rectifier of `a + b` (a residual sum and the ReLU after it): on the CPU one
/// op, [`cpu::rectify_sum`]; elsewhere the sum, then [`rectify`].
pub(crate) fn rectify_sum(a: &Tensor, b: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(a) {
        return cpu::rectify_sum(a, b, activation);
    }
    rectify(&(a + b)?, activation)
}

/// `activation` of `y`, if any.
pub(crate) fn activate(y: Tensor, activation: Option<Activation>) -> Result<Tensor> {
    match activation {
        Some(a) => rectify(&y, a),
        None => Ok(y),
    }
}

/// The rectifier `kind` of `x` by Candle's ops, off the graph.
pub(super) fn rectified_candle(x: &Tensor, kind: Rectifier) -> Result<Tensor> {
    match kind {
        Rectifier::Relu => x.relu(),
        Rectifier::Relu6 => x.clamp(0f32, 6f32),
    }
}

/// The gradient `grad` passes back through `activation` at `x`, by Candle's ops.
fn candle_grad(x: &Tensor, grad: &Tensor, activation: Activation) -> Result<Tensor> {
    // PyTorch passes gradient where the forward was strictly inside the linear
    // range: x > 0 for ReLU, 0 < x < 6 for ReLU6 (hardtanh_backward).
    let open = || -> Result<Tensor> {
        let mask = x.gt(0.0)?;
        let mask = match activation.kind {
            Rectifier::Relu => mask,
            Rectifier::Relu6 => mask.mul(&x.lt(6.0)?)?,
        };
        mask.to_dtype(grad.dtype())
    };
    match activation.rule {
        BackwardRule::Gradient => grad.mul(&open()?),
        BackwardRule::GuidedBackprop => grad.relu()?.mul(&open()?),
        BackwardRule::DeconvNet => grad.relu(),
    }
}

/// [`rectify_candle`]'s backward pass.
struct Rectified(Activation);

impl Backward for Rectified {
    fn name(&self) -> &'static str {
        "rectifier-with-rule"
    }

    fn grads(
        &self,
        x: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(candle_grad(x, grad, self.0)?), None))
    }
}
