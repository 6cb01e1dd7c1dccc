//! The layers architectures are built from. Each computation (convolution, batch
//! norm, pooling) lives here once, so the engine's speed work has one place to go.

use std::sync::Arc;

use anyhow::{Result, ensure};
use candle_core::{D, Tensor};
use serde::Deserialize;

use super::cpu::KernelCache;
use super::field::Axis;
use super::ops;
use super::probe::EnginePath;
use super::rules::Activation;
use super::weights::WeightPath;

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaddingStyle {
    /// PyTorch's symmetric padding of `kernel / 2` (as configured per layer).
    #[default]
    Symmetric,
    /// TensorFlow's "SAME": output size `ceil(in / stride)`, the odd pixel of padding
    /// at the bottom/right (EfficientNet-Lite's stride-2 layers pad (0, 1, 0, 1) at 224).
    TfSame,
}

/// A 2-D convolution (square kernel), optionally grouped, with or without bias.
#[derive(Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    /// What the fast path makes from the kernel, kept if the kernel never changes
    /// (`None` for trainable weights).
    cache: Option<Arc<KernelCache>>,
    stride: usize,
    padding: usize,
    style: PaddingStyle,
    groups: usize,
}

/// Shape and hyper-parameters of a [`Conv2d`].
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Symmetric padding; ignored under [`PaddingStyle::TfSame`].
    pub padding: usize,
    /// Channel groups (`in_channels` for a depthwise convolution).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
    /// How the input is padded.
    pub style: PaddingStyle,
}

impl ConvSpec {
    /// A plain convolution: stride 1, no groups, with bias, symmetric padding.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: true,
            style: PaddingStyle::Symmetric,
        }
    }
    /// With `stride`.
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }
    /// With symmetric `padding`.
    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }
    /// With `groups` channel groups.
    pub fn groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }
    /// Without a bias.
    pub fn no_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }
    /// With padding `style`.
    pub fn style(self, style: PaddingStyle) -> Self {
        Self { style, ..self }
    }
}

impl Conv2d {
    /// Loads `weight` (and `bias`) under `w`.
    pub fn load(w: &WeightPath, spec: ConvSpec) -> Result<Self> {
        let ConvSpec {
            in_channels,
            out_channels,
            kernel,
            ..
        } = spec;
        let weight = w.get(
            "weight",
            &[out_channels, in_channels / spec.groups, kernel, kernel],
        )?;
        let bias = spec
            .bias
            .then(|| w.get("bias", &[out_channels]))
            .transpose()?;
        Ok(Self {
            cache: frozen_cache(&weight),
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
            style: spec.style,
            groups: spec.groups,
        })
    }

    /// Convolves `[N, C, H, W]` with the implementation of `path`, then applies
    /// `activation` if given (on the fast path, as part of the convolution's op).
    /// Architectures call [`crate::model::Trace::conv`], which runs this.
    pub(crate) fn apply(
        &self,
        x: &Tensor,
        path: EnginePath,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        let geometry = (self.padding_of((x.dim(2)?, x.dim(3)?))?, self.stride);
        let bias = self.bias.as_ref();
        let depthwise = self.groups > 1 && self.weight.dim(1)? == 1 && x.dim(1)? == self.groups;
        Ok(match path {
            EnginePath::Fast if self.groups == 1 => {
                let kernel = (&self.weight, self.cache.as_ref());
                ops::conv2d(x, kernel, bias, geometry, activation)?
            }
            EnginePath::Fast if depthwise => {
                ops::depthwise_conv2d(x, &self.weight, bias, geometry, activation)?
            }
            _ => {
                let (x, padding) = ops::as_symmetric(x, geometry.0)?;
                let y = x.conv2d(&self.weight, padding, self.stride, 1, self.groups)?;
                ops::activate(ops::add_bias(y, bias)?, activation)?
            }
        })
    }
}

impl Conv2d {
    /// Its number of groups (1: dense).
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// The kernel, `[C_out, C_in / groups, k, k]`.
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[C_out]`, if any.
    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The same convolution with another kernel and bias (a relevance rule's
    /// modified parameters).
    pub(crate) fn with_params(&self, weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            cache: frozen_cache(&weight),
            weight,
            bias,
            ..*self
        }
    }

    /// The output shape for an input of shape `[N, C, H, W]` (one group).
    pub(crate) fn output_dims(&self, input: &[usize]) -> Result<[usize; 4]> {
        let &[_, _, h, w] = input else {
            anyhow::bail!("a convolution's input has shape {input:?}, not [N, C, H, W]")
        };
        let geometry = (self.padding_of((h, w))?, self.stride);
        Ok(ops::conv2d_output_dims(input, &self.weight, geometry)?)
    }

    /// The gradient an input of `size` (rows, columns) gets when `grad` arrives at
    /// the output: the transpose of the convolution without its bias. One group, or
    /// depthwise.
    pub(crate) fn transpose(&self, grad: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        let geometry = (self.padding_of(size)?, self.stride);
        if self.groups == 1 {
            let kernel = (&self.weight, self.cache.as_ref());
            return Ok(ops::conv2d_transpose(grad, kernel, geometry, size)?);
        }
        ensure!(
            self.weight.dim(1)? == 1 && self.weight.dim(0)? == self.groups,
            "transpose of a grouped convolution that is not depthwise"
        );
        Ok(ops::depthwise_conv2d_transpose(
            grad,
            &self.weight,
            geometry,
            size,
        )?)
    }

    /// The window geometry `(rows, columns)` on an input of `size`, for receptive
    /// fields.
    pub(crate) fn axes(&self, size: (usize, usize)) -> Result<(Axis, Axis)> {
        let [(top, _), (left, _)] = self.padding_of(size)?;
        let (kernel, stride) = (self.weight.dim(2)?, self.stride);
        let axis = |padding| Axis {
            kernel,
            stride,
            padding,
        };
        Ok((axis(top), axis(left)))
    }

    /// The zero padding of an input of `size` (rows, columns) under this layer's
    /// padding style.
    fn padding_of(&self, (h, w): (usize, usize)) -> Result<ops::Padding> {
        let p = self.padding;
        Ok(match self.style {
            PaddingStyle::Symmetric => [(p, p), (p, p)],
            PaddingStyle::TfSame => {
                let k = self.weight.dim(2)?;
                let pad = |size: usize| {
                    let out = size.div_ceil(self.stride);
                    let total = ((out - 1) * self.stride + k).saturating_sub(size);
                    (total / 2, total - total / 2)
                };
                [pad(h), pad(w)]
            }
        })
    }

    /// This convolution followed by `bn`, as one convolution: the kernel scaled per
    /// output channel, the bias shifted. Computed once; eval mode only.
    pub(crate) fn fold(&self, bn: &BatchNorm2d) -> Result<Self> {
        let c = self.weight.dim(0)?;
        let scale = bn.scale.reshape(c)?;
        let weight = self.weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        let bias = match &self.bias {
            Some(b) => b.mul(&scale)?.add(&bn.shift.reshape(c)?)?,
            None => bn.shift.reshape(c)?,
        };
        Ok(Self {
            cache: frozen_cache(&weight),
            weight,
            bias: Some(bias),
            ..*self
        })
    }
}

/// A cache for what is made from `weight`, unless it is trainable (a `Var`, whose
/// values change in place).
fn frozen_cache(weight: &Tensor) -> Option<Arc<KernelCache>> {
    (!weight.is_variable()).then(Arc::default)
}

/// Eval-mode batch norm, kept as the per-channel affine map it reduces to (computed
/// at load, so models with batch norm are for inference; the demo model, which is
/// trained, has none):
/// `y = x * scale + shift` with `scale = weight / sqrt(var + eps)`.
pub struct BatchNorm2d {
    scale: Tensor,
    shift: Tensor,
}

impl BatchNorm2d {
    /// Loads `weight`, `bias`, `running_mean`, `running_var` under `w`.
    pub fn load(w: &WeightPath, channels: usize, eps: f64) -> Result<Self> {
        let weight = w.get("weight", &[channels])?;
        let bias = w.get("bias", &[channels])?;
        let mean = w.get("running_mean", &[channels])?;
        let var = w.get("running_var", &[channels])?;
        let scale = weight.div(&(var + eps)?.sqrt()?)?;
        let shift = bias.sub(&mean.mul(&scale)?)?;
        Ok(Self {
            scale: scale.reshape((1, channels, 1, 1))?,
            shift: shift.reshape((1, channels, 1, 1))?,
        })
    }

    /// The per-channel scale, `[1, C, 1, 1]`.
    pub(crate) fn scale(&self) -> &Tensor {
        &self.scale
    }

    /// Normalises `[N, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)?)
    }
}

/// A fully connected layer, `y = x W^T + b`.
#[derive(Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads `weight` `[out, in]` and `bias` `[out]` under `w`.
    pub fn load(w: &WeightPath, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = w.get("weight", &[out_features, in_features])?;
        let bias = w.get("bias", &[out_features])?;
        Ok(Self { weight, bias })
    }

    /// A layer of `weight` `[out, in]` and `bias` `[out]`.
    pub(crate) fn from_parts(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    /// Maps `[N, in]` to `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::linear(x, &self.weight)?.broadcast_add(&self.bias)?)
    }

    /// The weights, `[out, in]`.
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]`.
    pub(crate) fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// PyTorch's `AdaptiveAvgPool2d`: output cell `i` averages input rows
/// `floor(i*H/h) .. ceil((i+1)*H/h)` (and likewise columns).
pub fn adaptive_avg_pool2d(x: &Tensor, (oh, ow): (usize, usize)) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    ensure!(oh > 0 && ow > 0, "adaptive pool to an empty map");
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    if (oh, ow) == (1, 1) {
        return Ok(x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?);
    }
    let span = |i: usize, n: usize, out: usize| (i * n / out, ((i + 1) * n).div_ceil(out));
    let mut rows = Vec::with_capacity(oh);
    for i in 0..oh {
        let (y0, y1) = span(i, h, oh);
        let band = x.narrow(2, y0, y1 - y0)?.mean_keepdim(2)?;
        let mut cells = Vec::with_capacity(ow);
        for j in 0..ow {
            let (x0, x1) = span(j, w, ow);
            cells.push(band.narrow(3, x0, x1 - x0)?.mean_keepdim(3)?);
        }
        rows.push(Tensor::cat(&cells, 3)?);
    }
    Ok(Tensor::cat(&rows, 2)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    /// A trainable kernel changes in place between passes (an optimizer step): the
    /// next pass must convolve with its new values, not with kept transforms of the
    /// old ones. 16 channels on 16x16 take the Winograd path, which keeps them.
    #[test]
    fn a_trainable_kernel_is_read_anew_each_pass() {
        let d = Device::Cpu;
        let weight = Var::randn(0f32, 1., (16, 16, 3, 3), &d).unwrap();
        let conv = Conv2d {
            cache: frozen_cache(weight.as_tensor()),
            weight: weight.as_tensor().clone(),
            bias: None,
            stride: 1,
            padding: 1,
            style: PaddingStyle::Symmetric,
            groups: 1,
        };
        let x = Tensor::randn(0f32, 1., (1, 16, 16, 16), &d).unwrap();
        let before = conv.apply(&x, EnginePath::Fast, None).unwrap();
        weight.set(&(weight.as_tensor() * 2.0).unwrap()).unwrap();
        let after = conv.apply(&x, EnginePath::Fast, None).unwrap();
        let err = (after - (before * 2.0).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(err < 1e-4, "the doubled kernel's output is off by {err}");
    }
}
