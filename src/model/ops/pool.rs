//! 2-D max pooling with PyTorch's semantics and a backward pass for any kernel and
//! stride (overlapping windows included): on the CPU, [`cpu::max_pool2d`] and its
//! own backward; elsewhere Candle's forward and a routing by whole-tensor ops.

use candle_core::{Result, Tensor, bail};

use super::conv::{dilate, windows};
use super::{Backward, with_backward};
use crate::model::cpu;

struct MaxPool {
    kernel: usize,
    stride: usize,
}

impl Backward for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    fn grads(
        &self,
        x: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.grad(x, grad)?), None))
    }
}

impl MaxPool {
    /// Routes each window's whole gradient to the first maximum in the window (row
    /// by row), as PyTorch does; overlapping windows add up. Whole-tensor ops, so it
    /// stays on the device: tap `(ky, kx)` of every window at once is a strided
    /// view of `x`; a tap takes the gradient where it holds the window's maximum and
    /// no earlier tap did, and its share goes back to rows `ky + stride * i`,
    /// columns `kx + stride * j` (the share dilated by the stride, then padded).
    /// For finite inputs: the CPU kernel's NaN handling is not mirrored.
    fn grad(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (k, stride) = (self.kernel, self.stride);
        let (_, _, h, w) = x.dims4()?;
        let (_, _, oh, ow) = grad.dims4()?;
        let taps = windows(&x.detach(), k, [(0, 0), (0, 0)], stride, (oh, ow))?;
        let mut max = taps[0].clone();
        for tap in &taps[1..] {
            max = max.maximum(tap)?;
        }
        let (span_h, span_w) = ((oh - 1) * stride + 1, (ow - 1) * stride + 1);
        let mut unclaimed = grad.ones_like()?;
        let mut out = x.zeros_like()?.to_dtype(grad.dtype())?;
        for (i, tap) in taps.iter().enumerate() {
            let (ky, kx) = (i / k, i % k);
            let first = tap.eq(&max)?.to_dtype(grad.dtype())?.mul(&unclaimed)?;
            unclaimed = (unclaimed - &first)?;
            let share = dilate(&grad.mul(&first)?, stride)?
                .pad_with_zeros(2, ky, h - ky - span_h)?
                .pad_with_zeros(3, kx, w - kx - span_w)?;
            out = (out + share)?;
        }
        Ok(out)
    }
}

/// 2-D max pooling with PyTorch's semantics (implicit -inf padding, floor mode) and a
/// backward pass for any kernel and stride: on the CPU, [`cpu::max_pool2d`].
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::max_pool2d(x, pool_geometry(x, kernel, stride, padding)?);
    }
    max_pool2d_candle(x, kernel, stride, padding)
}

/// The CPU kernels' description of a max pool of `x: [N, C, H, W]`.
pub(super) fn pool_geometry(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<cpu::PoolGeometry> {
    let (_, _, h, w) = x.dims4()?;
    let out = |len: usize| match (len + 2 * padding).checked_sub(kernel) {
        Some(span) if stride > 0 && 2 * padding <= kernel => Ok(span / stride + 1),
        _ => {
            bail!(
                "max pool: kernel {kernel}, stride {stride}, padding {padding} do not fit a map \
                 of {len} px (is the model's input.size too small for its architecture?)"
            )
        }
    };
    Ok(cpu::PoolGeometry {
        h,
        w,
        k: kernel,
        stride,
        pad: padding,
        oh: out(h)?,
        ow: out(w)?,
    })
}

/// [`max_pool2d`] off the CPU: Candle's forward over explicit -inf padding, the
/// backward on the host.
pub(super) fn max_pool2d_candle(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let x = pad_with_neg_inf(x, padding)?;
    let value = x.detach().max_pool2d_with_stride(kernel, stride)?;
    with_backward(&x, &x, value, MaxPool { kernel, stride })
}

/// `x` with `padding` rows and columns of -inf on every side.
fn pad_with_neg_inf(x: &Tensor, padding: usize) -> Result<Tensor> {
    if padding == 0 {
        return Ok(x.clone());
    }
    let pad_dim = |t: &Tensor, dim: usize| -> Result<Tensor> {
        let mut shape = t.dims().to_vec();
        shape[dim] = padding;
        let fill = Tensor::full(f32::NEG_INFINITY, shape, t.device())?.to_dtype(t.dtype())?;
        Tensor::cat(&[&fill, t, &fill], dim)
    };
    pad_dim(&pad_dim(x, 2)?, 3)
}

/// The gradient the input `x` of [`max_pool2d`] gets when `grad` arrives at the
/// output: on the CPU, the backward pass's own kernel; elsewhere [`MaxPool`]'s
/// routing on the padded input, cropped.
pub(crate) fn max_pool2d_grad(
    x: &Tensor,
    grad: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
) -> Result<Tensor> {
    let g = pool_geometry(x, kernel, stride, padding)?;
    let (n, c, _, _) = x.dims4()?;
    if grad.dims() != [n, c, g.oh, g.ow] {
        bail!(
            "max pool gradient {:?} for an input {:?} ({kernel}, {stride}, {padding})",
            grad.dims(),
            x.dims()
        )
    }
    if cpu::applies(x) {
        return cpu::max_pool2d_grad(g, x, grad);
    }
    max_pool2d_grad_candle(x, grad, (kernel, stride, padding))
}

/// [`max_pool2d_grad`] off the CPU: [`MaxPool`]'s routing on the padded input,
/// cropped.
pub(super) fn max_pool2d_grad_candle(
    x: &Tensor,
    grad: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    MaxPool { kernel, stride }
        .grad(&pad_with_neg_inf(x, padding)?, grad)?
        .narrow(2, padding, h)?
        .narrow(3, padding, w)
}
