//! ReLU and ReLU6 under a backward rule, each direction one parallel pass (Candle's
//! ops take one pass for the value and three for a rule's masked gradient).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{Element, by_dtype, elements, zero};
use crate::model::capture::BackwardRule;
use crate::model::ops::Rectifier;

/// Elements per parallel task: large enough to amortise scheduling, small enough
/// to share a layer's pass among threads.
const CHUNK: usize = 1 << 15;

/// `f` applied to every element of `x`, in parallel.
fn map<T: Element>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = vec![zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    out
}

/// `f` applied to every pair of elements of `a` and `b`, in parallel.
fn zip_map<T: Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = vec![zero(); a.len()];
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

impl Rectifier {
    fn value<T: Element>(self, x: T) -> T {
        let (zero, six) = (zero(), T::from_f64(6.0));
        match self {
            Rectifier::Relu if x > zero => x,
            Rectifier::Relu6 if x > six => six,
            Rectifier::Relu6 if x > zero => x,
            _ => zero,
        }
    }

    /// PyTorch passes gradient where the forward was strictly inside the linear
    /// range: x > 0 for ReLU, 0 < x < 6 for ReLU6 (hardtanh_backward).
    fn open<T: Element>(self, x: T) -> bool {
        match self {
            Rectifier::Relu => x > zero(),
            Rectifier::Relu6 => x > zero() && x < T::from_f64(6.0),
        }
    }
}

/// `max(g, 0)`: the gradient guided backprop and DeconvNet let through.
fn positive<T: Element>(g: T) -> T {
    if g > zero() { g } else { zero() }
}

/// The rectifier `kind` of `x`, backpropagating by `rule`.
pub(crate) fn rectify(x: &Tensor, kind: Rectifier, rule: BackwardRule) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Rectify { kind, rule })
}

struct Rectify {
    kind: Rectifier,
    rule: BackwardRule,
}

impl CustomOp1 for Rectify {
    fn name(&self) -> &'static str {
        "cpu-rectifier"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(kind: Rectifier, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
            let y = map(elements::<T>(x, l)?, |x| kind.value(x));
            Ok(T::to_cpu_storage_owned(y))
        }
        Ok((by_dtype!(x, run(self.kind, x, l))?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let rule = RectifyGrad {
            kind: self.kind,
            rule: self.rule,
        };
        Ok(Some(x.detach().apply_op2_no_bwd(&grad, &rule)?))
    }
}

/// `(input, output gradient) -> input gradient` under the rule.
struct RectifyGrad {
    kind: Rectifier,
    rule: BackwardRule,
}

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
            let dx = match rule {
                BackwardRule::Gradient => {
                    zip_map(x, g, |x, g| if kind.open(x) { g } else { zero() })
                }
                BackwardRule::GuidedBackprop => {
                    zip_map(x, g, |x, g| if kind.open(x) { positive(g) } else { zero() })
                }
                BackwardRule::DeconvNet => map(g, positive),
            };
            Ok(T::to_cpu_storage_owned(dx))
        }
        let dx = by_dtype!(x, run((self.kind, self.rule), (x, x_l), (g, g_l)))?;
        Ok((dx, x_l.shape().clone()))
    }
}
