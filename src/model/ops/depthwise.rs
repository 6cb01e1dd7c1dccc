//! Depthwise convolution (one `k x k` filter per channel) and its transpose: on the
//! CPU, [`cpu::depthwise_conv2d`]; elsewhere as `k²` whole-tensor multiply-adds.

use candle_core::{Result, Tensor};

use super::conv::{
    Padding, add_bias, as_symmetric, check_output_grad, cropped, dilate, geometry,
    gradient_padding, sample_dims, windows,
};
use super::rectify::activate;
use super::{Backward, with_backward};
use crate::model::cpu;
use crate::model::rules::Activation;

/// A depthwise convolution (one `k x k` filter per channel, `w: [C, 1, k, k]`), plus
/// `bias` if given, then `activation` if given: on the CPU, one
/// [`cpu::depthwise_conv2d`] op; elsewhere as shifted sums.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    (padding, stride): (Padding, usize),
    activation: Option<Activation>,
) -> Result<Tensor> {
    if cpu::applies(x) {
        let groups = x.dim(1)?;
        let geometry = geometry(sample_dims(x)?, (w, bias), padding, stride, groups)?;
        return cpu::depthwise_conv2d(x, w, bias, geometry, activation);
    }
    activate(
        depthwise_conv2d_candle(x, w, bias, padding, stride)?,
        activation,
    )
}

/// The transpose of [`depthwise_conv2d`]'s linear part: the gradient an input of
/// `size` gets when `grad` arrives at the output. On the CPU, the backward pass's own
/// kernel; elsewhere the shifted sums on the padded input, cropped.
pub(crate) fn depthwise_conv2d_transpose(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let c = w.dim(0)?;
    let g = geometry((c, size.0, size.1), (w, None), padding, stride, c)?;
    check_output_grad("depthwise convolution transpose", grad, &g)?;
    if cpu::applies(grad) {
        return cpu::depthwise_conv2d_transpose(grad, w, g);
    }
    depthwise_conv2d_transpose_candle(grad, w, (padding, stride), size)
}

/// [`depthwise_conv2d_transpose`] off the CPU: the input gradient of the padded
/// input, cropped.
pub(super) fn depthwise_conv2d_transpose_candle(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    cropped(size, padding, |padded| {
        depthwise_input_grad(grad, w, (0, stride), padded)
    })
}

/// [`depthwise_conv2d`] off the CPU: `k²` whole-tensor multiply-adds each way.
pub(super) fn depthwise_conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: Padding,
    stride: usize,
) -> Result<Tensor> {
    let (x, padding) = as_symmetric(x, padding)?;
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let out = (
        (h + 2 * padding - k) / stride + 1,
        (wd + 2 * padding - k) / stride + 1,
    );
    let p = (padding, padding);
    let value = shifted_sum(&x.detach(), &w.detach(), [p, p], stride, out)?;
    let y = with_backward(&x, w, value, Depthwise { padding, stride })?;
    add_bias(y, bias)
}

/// `sum over taps (ky, kx) of x_pad[.., ky + s*i, kx + s*j] * w[c, ky, kx]`: a
/// depthwise convolution as `k²` whole-tensor multiply-adds. (Candle runs a grouped
/// convolution as one convolution per group: over a thousand tiny ones for
/// EfficientNet's widest layers.) `padding` as for [`windows`].
fn shifted_sum(
    x: &Tensor,
    w: &Tensor,
    padding: [(usize, usize); 2],
    stride: usize,
    out: (usize, usize),
) -> Result<Tensor> {
    let (c, _, k, _) = w.dims4()?;
    let taps = windows(x, k, padding, stride, out)?;
    let mut sum: Option<Tensor> = None;
    for (i, window) in taps.into_iter().enumerate() {
        let weight = w
            .narrow(2, i / k, 1)?
            .narrow(3, i % k, 1)?
            .reshape((1, c, 1, 1))?;
        let term = window.broadcast_mul(&weight)?;
        sum = Some(match sum {
            Some(s) => (s + term)?,
            None => term,
        });
    }
    sum.ok_or_else(|| candle_core::Error::Msg("depthwise convolution with an empty kernel".into()))
}

struct Depthwise {
    padding: usize,
    stride: usize,
}

impl Backward for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let gx = x
            .track_op()
            .then(|| depthwise_input_grad(grad, w, (self.padding, self.stride), (h, wd)))
            .transpose()?;
        let gw = if w.track_op() {
            let p = (self.padding, self.padding);
            let out = (grad.dim(2)?, grad.dim(3)?);
            let taps = windows(&x.detach(), k, [p, p], self.stride, out)?
                .into_iter()
                .map(|window| window.mul(grad)?.sum((0, 2, 3)))
                .collect::<Result<Vec<_>>>()?;
            let c = w.dim(0)?;
            Some(Tensor::stack(&taps, 1)?.reshape((c, 1, k, k))?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// The gradient an input of `size` gets when `grad` arrives at the output of a
/// depthwise convolution with kernel `w` and symmetric `padding`: the same shifted
/// sum over the stride-dilated gradient, kernel flipped.
fn depthwise_input_grad(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (usize, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let g = dilate(grad, stride)?;
    let padding = gradient_padding(w.dim(2)?, padding, size, &g)?;
    shifted_sum(&g, &w.detach().flip(&[2, 3])?, padding, 1, size)
}
