//! Dense 2-D convolution (one group) whose backward pass computes only the
//! gradients something needs, its transpose, and the geometry the convolutions
//! share: on the CPU, [`cpu::conv2d`] (im2col + gemm, or Winograd); elsewhere Candle's
//! forward with our backward.

use std::sync::Arc;

use candle_core::{Result, Tensor, bail};

use super::rectify::activate;
use super::{Backward, with_backward};
use crate::model::cpu;
use crate::model::rules::Activation;

/// Zero padding of the two spatial axes: `[(top, bottom), (left, right)]`.
pub(crate) type Padding = [(usize, usize); 2];

/// `x` with `padding` made symmetric: as it is when all four sides are equal (the
/// padding returned is then theirs), else padded explicitly (and 0 returned).
pub(crate) fn as_symmetric(x: &Tensor, padding: Padding) -> Result<(Tensor, usize)> {
    let [(top, bottom), (left, right)] = padding;
    if (bottom, left, right) == (top, top, top) {
        return Ok((x.clone(), top));
    }
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    Ok((x, 0))
}

/// A 2-D convolution of one group (square kernel), plus `bias` if given, then
/// `activation` if given, with a backward pass that computes only the gradients
/// needed: on the CPU, one [`cpu::conv2d`] op, which keeps what it makes from a
/// kernel that never changes in `cache`; elsewhere Candle's forward.
pub(crate) fn conv2d(
    x: &Tensor,
    (w, cache): (&Tensor, Option<&Arc<cpu::KernelCache>>),
    bias: Option<&Tensor>,
    (padding, stride): (Padding, usize),
    activation: Option<Activation>,
) -> Result<Tensor> {
    if cpu::applies(x) {
        let geometry = geometry(sample_dims(x)?, (w, bias), padding, stride, 1)?;
        return cpu::conv2d(x, (w, cache), bias, geometry, activation);
    }
    activate(conv2d_candle(x, w, bias, padding, stride)?, activation)
}

/// The transpose of [`conv2d`]'s linear part: the gradient an input of `size` (rows,
/// columns) gets when `grad` arrives at the output. On the CPU, the backward pass's
/// own kernel (with what it made from the kernel kept in `cache`, as [`conv2d`]);
/// elsewhere, on the padded input, cropped.
pub(crate) fn conv2d_transpose(
    grad: &Tensor,
    (w, cache): (&Tensor, Option<&Arc<cpu::KernelCache>>),
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let g = geometry((w.dim(1)?, size.0, size.1), (w, None), padding, stride, 1)?;
    check_output_grad("convolution transpose", grad, &g)?;
    if cpu::applies(grad) {
        return cpu::conv2d_transpose(grad, (w, cache), g);
    }
    conv2d_transpose_candle(grad, w, (padding, stride), size)
}

/// The output shape of [`conv2d`] for an input of shape `[N, C, H, W]`; an error if
/// the kernel does not fit them.
pub(crate) fn conv2d_output_dims(
    input: &[usize],
    w: &Tensor,
    (padding, stride): (Padding, usize),
) -> Result<[usize; 4]> {
    let &[n, c, h, wd] = input else {
        bail!("a convolution's input has shape {input:?}, not [N, C, H, W]")
    };
    let g = geometry((c, h, wd), (w, None), padding, stride, 1)?;
    Ok([n, g.c_out, g.oh, g.ow])
}

/// [`conv2d_transpose`] off the CPU: the input gradient of the padded input, cropped.
pub(super) fn conv2d_transpose_candle(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    cropped(size, padding, |padded| {
        Conv { padding: 0, stride }.input_grad(padded, w, grad)
    })
}

/// [`conv2d`] off the CPU: Candle's forward, our backward.
pub(super) fn conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: Padding,
    stride: usize,
) -> Result<Tensor> {
    let (x, padding) = as_symmetric(x, padding)?;
    let value = x.detach().conv2d(&w.detach(), padding, stride, 1, 1)?;
    let y = with_backward(&x, w, value, Conv { padding, stride })?;
    add_bias(y, bias)
}

struct Conv {
    padding: usize,
    stride: usize,
}

impl Backward for Conv {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    /// Only the gradients that something upstream needs: attribution never reads
    /// the kernel's, training never reads the image's.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let gx = x
            .track_op()
            .then(|| self.input_grad((h, wd), w, grad))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| self.kernel_grad(x, w, grad))
            .transpose()?;
        Ok((gx, gw))
    }
}

impl Conv {
    /// A forward convolution of the output gradient, dilated by the stride and padded
    /// by `k - 1 - p`, with the kernel flipped and its channel axes swapped. (Candle's
    /// transposed convolution would skip the dilation's zeros, but gets non-square
    /// inputs wrong on the CPU in 0.11.)
    fn input_grad(&self, (h, wd): (usize, usize), w: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let k = w.dim(2)?;
        let g = dilate(grad, self.stride)?;
        let padding = gradient_padding(k, self.padding, (h, wd), &g)?;
        let kernel = w.detach().transpose(0, 1)?.contiguous()?.flip(&[2, 3])?;
        let (g, padding) = as_symmetric(&g, padding)?;
        g.conv2d(&kernel, padding, 1, 1, 1)
    }

    /// `dW = grad · im2col(x)ᵀ`: one matrix product over every sample and position.
    fn kernel_grad(&self, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (c_out, c_in, k, _) = w.dims4()?;
        let (n, _, h_out, w_out) = grad.dims4()?;
        let p = (self.padding, self.padding);
        let taps = windows(&x.detach(), k, [p, p], self.stride, (h_out, w_out))?;
        // [N, C_in, k*k, H', W'] -> [C_in * k * k, N * H' * W']
        let cols = Tensor::stack(&taps, 2)?
            .permute((1, 2, 0, 3, 4))?
            .reshape((c_in * k * k, n * h_out * w_out))?;
        let g = grad
            .permute((1, 0, 2, 3))?
            .reshape((c_out, n * h_out * w_out))?;
        g.matmul(&cols.t()?)?.reshape((c_out, c_in, k, k))
    }
}

/// The `k²` windows of a `k x k` kernel over `x` padded by `padding` ((before,
/// after) for rows, then columns): tap `(ky, kx)`, at index `ky * k + kx`, is the
/// `out`-sized grid `x_pad[.., ky + stride*i, kx + stride*j]`.
pub(super) fn windows(
    x: &Tensor,
    k: usize,
    padding: [(usize, usize); 2],
    stride: usize,
    out: (usize, usize),
) -> Result<Vec<Tensor>> {
    let [(top, bottom), (left, right)] = padding;
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        let rows = every(&x, 2, ky, out.0, stride)?;
        for kx in 0..k {
            taps.push(every(&rows, 3, kx, out.1, stride)?);
        }
    }
    Ok(taps)
}

/// Padding of an output gradient `g` for the stride-1 correlation with the flipped
/// kernel that gives the input gradient: `k - 1 - padding` before, and after whatever
/// makes the result as large as the input (`input` = (rows, columns)).
pub(super) fn gradient_padding(
    k: usize,
    padding: usize,
    input: (usize, usize),
    g: &Tensor,
) -> Result<[(usize, usize); 2]> {
    let Some(before) = (k - 1).checked_sub(padding) else {
        bail!("convolution backward: padding {padding} exceeds kernel size {k} - 1")
    };
    // Result length = len + before + after - k + 1 must equal the input's.
    let after = |input: usize, len: usize| input + k - 1 - len - before;
    Ok([
        (before, after(input.0, g.dim(2)?)),
        (before, after(input.1, g.dim(3)?)),
    ])
}

/// Elements `start, start + stride, ...` (`count` of them) along `dim`.
fn every(t: &Tensor, dim: usize, start: usize, count: usize, stride: usize) -> Result<Tensor> {
    let span = t.narrow(dim, start, (count - 1) * stride + 1)?;
    if stride == 1 {
        return Ok(span);
    }
    // Pad to count * stride, fold the stride into its own axis, keep its first slot.
    let mut folded = span.dims().to_vec();
    folded[dim] = count;
    folded.insert(dim + 1, stride);
    span.pad_with_zeros(dim, 0, stride - 1)?
        .reshape(folded)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)
}

/// Inserts `stride - 1` zeros between the elements of the two spatial axes.
pub(super) fn dilate(g: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(g.clone());
    }
    let (n, c, h, w) = g.dims4()?;
    g.unsqueeze(3)?
        .unsqueeze(5)?
        .pad_with_zeros(3, 0, stride - 1)?
        .pad_with_zeros(5, 0, stride - 1)?
        .reshape((n, c, h * stride, w * stride))?
        .narrow(2, 0, (h - 1) * stride + 1)?
        .narrow(3, 0, (w - 1) * stride + 1)
}

/// `y + bias` broadcast over channels.
pub(crate) fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// `[C, H, W]` of a `[N, C, H, W]` batch.
pub(super) fn sample_dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    let (_, c, h, w) = x.dims4()?;
    Ok((c, h, w))
}

/// The CPU kernels' description of convolving `x` with `w` (`[C_out, C_in / groups,
/// k, k]`; depthwise: `groups = C_in = C_out`) plus `bias`; an error if the shapes do
/// not fit each other or the kernel does not fit the padded input (the kernels index
/// by these sizes and must never see inconsistent ones).
pub(super) fn geometry(
    (c_in, h, wd): (usize, usize, usize),
    (w, bias): (&Tensor, Option<&Tensor>),
    padding: Padding,
    stride: usize,
    groups: usize,
) -> Result<cpu::ConvGeometry> {
    let (c_out, per_group, k, k2) = w.dims4()?;
    let fits = per_group * groups == c_in
        && k == k2
        && (groups == 1 || c_out == c_in)
        && bias.is_none_or(|b| b.dims() == [c_out]);
    if !fits {
        bail!(
            "convolution: input [_, {c_in}, {h}, {wd}], kernel {:?} and bias {:?} do not fit ({groups} groups)",
            w.dims(),
            bias.map(Tensor::dims)
        )
    }
    let [(top, bottom), (left, right)] = padding;
    let out = |len: usize, before: usize, after: usize| match (len + before + after).checked_sub(k)
    {
        Some(span) if stride > 0 => Ok(span / stride + 1),
        _ => bail!(
            "convolution: kernel {k} larger than the padded input ({len} + {before} + {after}) or stride 0"
        ),
    };
    Ok(cpu::ConvGeometry {
        c_in,
        h,
        w: wd,
        c_out,
        k,
        stride,
        top,
        left,
        oh: out(h, top, bottom)?,
        ow: out(wd, left, right)?,
    })
}

/// An error unless `grad` is a batch of `g`'s outputs.
pub(super) fn check_output_grad(op: &str, grad: &Tensor, g: &cpu::ConvGeometry) -> Result<()> {
    match grad.dims() {
        [_, c, h, w] if [*c, *h, *w] == [g.c_out, g.oh, g.ow] => Ok(()),
        dims => bail!(
            "{op}: gradient {dims:?} for an output of [_, {}, {}, {}]",
            g.c_out,
            g.oh,
            g.ow
        ),
    }
}

/// The gradient an input of `size` gets, computed by `input_grad` for the input
/// padded by `padding` (given the padded size), then cropped: the transposes off
/// the CPU.
pub(super) fn cropped(
    size: (usize, usize),
    padding: Padding,
    input_grad: impl FnOnce((usize, usize)) -> Result<Tensor>,
) -> Result<Tensor> {
    let [(top, bottom), (left, right)] = padding;
    input_grad((size.0 + top + bottom, size.1 + left + right))?
        .narrow(2, top, size.0)?
        .narrow(3, left, size.1)
}
