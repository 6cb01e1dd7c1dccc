//! Building blocks architectures compose from [`super::nn`]'s layers, run through a
//! [`Trace`] so that each part is its own inspectable layer.

use anyhow::Result;
use candle_core::Tensor;

use super::layer::LayerKind;
use super::nn::{BatchNorm2d, Conv2d, ConvSpec};
use super::probe::EnginePath;
use super::rules::Rectifier;
use super::trace::Trace;
use super::weights::WeightPath;

/// A convolution and the batch norm after it, each its own inspectable layer. Unless
/// the convolution's own output is needed, the fast path runs the two as one
/// convolution with the batch norm folded in.
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
    /// The fused convolution; `None` for trainable weights, whose values change after
    /// loading (a fold computed once would go stale).
    fused: Option<Conv2d>,
    kind: LayerKind,
}

impl ConvBn {
    /// Loads the convolution under `conv` and the batch norm under `bn`.
    pub fn load(w: &WeightPath, conv: &str, bn: &str, spec: ConvSpec, eps: f64) -> Result<Self> {
        let conv = Conv2d::load(&w.pp(conv), spec)?;
        let bn = BatchNorm2d::load(&w.pp(bn), spec.out_channels, eps)?;
        let fused = (!conv.weight().track_op())
            .then(|| conv.fold(&bn))
            .transpose()?;
        let depthwise = spec.groups > 1 && spec.groups == spec.in_channels;
        let kind = if depthwise {
            LayerKind::DepthwiseConv
        } else {
            LayerKind::Conv
        };
        Ok(Self {
            conv,
            bn,
            fused,
            kind,
        })
    }

    /// Runs both layers, tapping their outputs as `conv` and `bn`.
    pub fn forward(&self, x: &Tensor, t: &mut Trace, conv: &str, bn: &str) -> Result<Tensor> {
        if let Some(fused) = self.fused_for(t, conv) {
            let y = t.conv(fused, x, None)?;
            return t.tap(bn, LayerKind::BatchNorm, y);
        }
        let y = t.conv(&self.conv, x, None)?;
        let y = t.tap(conv, self.kind, y)?;
        let z = self.bn.forward(&y)?;
        let scale = self.bn.scale().detach();
        t.record(&[&y], &z, move |grad| Ok(vec![grad.broadcast_mul(&scale)?]))?;
        t.tap(bn, LayerKind::BatchNorm, z)
    }

    /// [`ConvBn::forward`] followed by the rectifier `kind`, whose output is the
    /// caller's to tap. Unless the batch norm's output is needed, the fused
    /// convolution applies the rectifier too.
    pub fn forward_rectified(
        &self,
        x: &Tensor,
        t: &mut Trace,
        (conv, bn): (&str, &str),
        kind: Rectifier,
    ) -> Result<Tensor> {
        if let Some(fused) = self.fused_for(t, conv).filter(|_| !t.needs(bn)) {
            let activation = t.activation(kind);
            return t.conv(fused, x, Some(activation));
        }
        let y = self.forward(x, t, conv, bn)?;
        t.rectify(&y, kind)
    }

    /// The fused convolution, if this pass may use it: fast path, and the
    /// convolution's own output not needed.
    fn fused_for(&self, t: &Trace, conv: &str) -> Option<&Conv2d> {
        let path = t.engine_path();
        self.fused
            .as_ref()
            .filter(|_| path == EnginePath::Fast && !t.needs(conv))
    }
}
