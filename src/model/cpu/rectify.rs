//! ReLU and ReLU6 under a backward rule, each direction one parallel pass (Candle's
//! ops take one pass for the value and three for a rule's masked gradient).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32s;
use crate::model::capture::BackwardRule;
use crate::model::ops::Rectifier;

/// Elements per parallel task: large enough to amortise scheduling, small enough
/// to share a layer's pass among threads.
const CHUNK: usize = 1 << 15;

/// `f` applied to every element of `x`, in parallel.
fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    out
}

/// `f` applied to every pair of elements of `a` and `b`, in parallel.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
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
    fn value(self, x: f32) -> f32 {
        match self {
            Rectifier::Relu => x.max(0.0),
            Rectifier::Relu6 => x.clamp(0.0, 6.0),
        }
    }

    /// PyTorch passes gradient where the forward was strictly inside the linear
    /// range: x > 0 for ReLU, 0 < x < 6 for ReLU6 (hardtanh_backward).
    fn open(self, x: f32) -> bool {
        match self {
            Rectifier::Relu => x > 0.0,
            Rectifier::Relu6 => x > 0.0 && x < 6.0,
        }
    }
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
        let kind = self.kind;
        let y = map(f32s(x, l)?, |x| kind.value(x));
        Ok((CpuStorage::F32(y), l.shape().clone()))
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
        let (x, g) = (f32s(x, x_l)?, f32s(g, g_l)?);
        let kind = self.kind;
        let dx = match self.rule {
            BackwardRule::Gradient => zip_map(x, g, |x, g| if kind.open(x) { g } else { 0.0 }),
            BackwardRule::GuidedBackprop => {
                zip_map(x, g, |x, g| if kind.open(x) { g.max(0.0) } else { 0.0 })
            }
            BackwardRule::DeconvNet => map(g, |g| g.max(0.0)),
        };
        Ok((CpuStorage::F32(dx), x_l.shape().clone()))
    }
}
