//! ReLU and ReLU6 under a backward rule, each direction one parallel pass (Candle's
//! ops take one pass for the value and three for a rule's masked gradient).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{Element, by_dtype, elements, zero};
use crate::model::holder::Holder;
use crate::model::rules::{Activation, BackwardRule, Rectifier};

/// Elements per parallel task: large enough to amortise scheduling, small enough
/// to share a layer's pass among threads.
const CHUNK: usize = 1 << 15;

/// `f` applied to every element of `x`, in parallel, written straight into the
/// result (zeroing it first was a third pass over memory: 12.8 M elements took
/// 14-25 ms that way, 12-15 ms this way).
fn map<T: Element>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    out.par_extend(x.par_iter().with_min_len(CHUNK).map(|&x| f(x)));
    out
}

/// `f` applied to every pair of elements of `a` and `b`, as [`map`].
fn zip_map<T: Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len());
    let pairs = a.par_iter().zip(b).with_min_len(CHUNK);
    out.par_extend(pairs.map(|(&a, &b)| f(a, b)));
    out
}

/// `f` applied to every element of `x` in place, in parallel.
fn map_in_place<T: Element>(x: &mut [T], f: impl Fn(T) -> T + Sync) {
    x.par_chunks_mut(CHUNK)
        .for_each(|x| x.iter_mut().for_each(|x| *x = f(*x)));
}

fn relu<T: Element>(x: T) -> T {
    if x > zero() { x } else { zero() }
}

fn relu6<T: Element>(x: T) -> T {
    let (y, six) = (relu(x), T::from_f64(6.0));
    if y > six { six } else { y }
}

/// The rectifier `kind` of every element of `x`. Each kind is its own loop of
/// selects, so it vectorizes (a kind tested per element keeps it scalar).
fn value<T: Element>(kind: Rectifier, x: &[T]) -> Vec<T> {
    match kind {
        Rectifier::Relu => map(x, relu),
        Rectifier::Relu6 => map(x, relu6),
    }
}

/// [`value`] in place: for an op that rectifies its own output.
pub(super) fn rectify_in_place<T: Element>(kind: Rectifier, x: &mut [T]) {
    match kind {
        Rectifier::Relu => map_in_place(x, relu),
        Rectifier::Relu6 => map_in_place(x, relu6),
    }
}

/// The gradient `g` passes back through the rectifier `kind` at inputs `x` under
/// `rule`. PyTorch passes gradient where the forward was strictly inside the linear
/// range: x > 0 for ReLU, 0 < x < 6 for ReLU6 (hardtanh_backward).
fn gradient<T: Element>(kind: Rectifier, rule: BackwardRule, x: &[T], g: &[T]) -> Vec<T> {
    let six = T::from_f64(6.0);
    match kind {
        Rectifier::Relu => masked(rule, x, g, |x| x > zero()),
        // `&`, not `&&`: both compares, no branch, so the loop vectorizes.
        Rectifier::Relu6 => masked(rule, x, g, |x| (x > zero()) & (x < six)),
    }
}

/// [`gradient`] for one rectifier's `open` test.
fn masked<T: Element>(
    rule: BackwardRule,
    x: &[T],
    g: &[T],
    open: impl Fn(T) -> bool + Sync,
) -> Vec<T> {
    let positive = |g: T| if g > zero() { g } else { zero() };
    match rule {
        BackwardRule::Gradient => zip_map(x, g, |x, g| if open(x) { g } else { zero() }),
        BackwardRule::GuidedBackprop => {
            zip_map(x, g, |x, g| if open(x) { positive(g) } else { zero() })
        }
        BackwardRule::DeconvNet => map(g, positive),
    }
}

/// The rectifier of `x`, backpropagating by its rule.
pub(crate) fn rectify(x: &Tensor, activation: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Rectify(activation))
}

/// The rectifier of `a + b` (a residual sum and the ReLU after it), one op: one pass
/// and one graph node instead of two. Both summands receive the masked gradient.
pub(crate) fn rectify_sum(a: &Tensor, b: &Tensor, activation: Activation) -> Result<Tensor> {
    a.contiguous()?
        .apply_op2(&b.contiguous()?, RectifySum(activation))
}

/// The gradient `grad` passes back through `activation`, given the rectifier's input
/// or its output: both pass the same tests (x > 0 iff relu(x) > 0; 0 < x < 6 iff
/// 0 < relu6(x) < 6), so an op that rectified its output in place can use the output.
pub(crate) fn rectify_grad(x: &Tensor, grad: &Tensor, activation: Activation) -> Result<Tensor> {
    x.detach()
        .apply_op2_no_bwd(&grad.contiguous()?, &RectifyGrad(activation))
}

/// [`crate::model::ops::hold`]'s op on the CPU: `activation` of `x` (or a copy of
/// `x`), computed by the op itself, with `anchor` its way onto the graph; its
/// backward leaves the gradient at the output in `holder`.
pub(crate) fn hold(
    anchor: &Tensor,
    x: &Tensor,
    activation: Option<Activation>,
    holder: Holder,
) -> Result<Tensor> {
    anchor.apply_op2(&x.contiguous()?, Hold { activation, holder })
}

struct Hold {
    activation: Option<Activation>,
    holder: Holder,
}

impl CustomOp2 for Hold {
    fn name(&self) -> &'static str {
        "cpu-hold"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        x: &CpuStorage,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match self.activation {
            Some(a) => Rectify(a).cpu_fwd(x, l),
            None => {
                fn copy<T: Element>(x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
                    Ok(T::to_cpu_storage_owned(elements::<T>(x, l)?.to_vec()))
                }
                Ok((by_dtype!(x, copy(x, l))?, l.shape().clone()))
            }
        }
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.holder.put(grad.clone())?;
        Ok((None, None))
    }
}

struct Rectify(Activation);

impl CustomOp1 for Rectify {
    fn name(&self) -> &'static str {
        "cpu-rectifier"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(kind: Rectifier, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
            let y = value(kind, elements::<T>(x, l)?);
            Ok(T::to_cpu_storage_owned(y))
        }
        Ok((by_dtype!(x, run(self.0.kind, x, l))?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(rectify_grad(x, grad, self.0)?))
    }
}

struct RectifySum(Activation);

impl CustomOp2 for RectifySum {
    fn name(&self) -> &'static str {
        "cpu-rectified-sum"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_l: &Layout,
        b: &CpuStorage,
        b_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if a_l.shape() != b_l.shape() {
            candle_core::bail!(
                "cpu rectified sum: shapes {:?} and {:?}",
                a_l.shape(),
                b_l.shape()
            );
        }
        fn run<T: Element>(
            kind: Rectifier,
            (a, a_l): (&CpuStorage, &Layout),
            (b, b_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let (a, b) = (elements::<T>(a, a_l)?, elements::<T>(b, b_l)?);
            let y = match kind {
                Rectifier::Relu => zip_map(a, b, |a, b| relu(a + b)),
                Rectifier::Relu6 => zip_map(a, b, |a, b| relu6(a + b)),
            };
            Ok(T::to_cpu_storage_owned(y))
        }
        let y = by_dtype!(a, run(self.0.kind, (a, a_l), (b, b_l)))?;
        Ok((y, a_l.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = rectify_grad(y, grad, self.0)?;
        Ok((
            a.track_op().then(|| grad.clone()),
            b.track_op().then_some(grad),
        ))
    }
}

/// `(input or output, output gradient) -> input gradient` under the rule.
struct RectifyGrad(Activation);

impl CustomOp2 for RectifyGrad {
    fn name(&self) -> &'static str {
        "cpu-rectifier-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            (kind, rule): (Rectifier, BackwardRule),
            (x, x_l): (&CpuStorage, &Layout),
            (g, g_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let (x, g) = (elements::<T>(x, x_l)?, elements::<T>(g, g_l)?);
            Ok(T::to_cpu_storage_owned(gradient(kind, rule, x, g)))
        }
        let dx = by_dtype!(x, run((self.0.kind, self.0.rule), (x, x_l), (g, g_l)))?;
        Ok((dx, x_l.shape().clone()))
    }
}
