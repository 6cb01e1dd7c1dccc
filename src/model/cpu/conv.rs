//! Dense 2-D convolution on the CPU as im2col + one matrix product per sample.
//!
//! The column matrix of a sample is `[C_in * k * k, H' * W']`, rows in the order of a
//! contiguous `[C_out, C_in, k, k]` kernel, so the kernel is the left operand as it
//! is stored and the product lands directly in the sample's `[C_out, H', W']` output:
//! no layout conversions before or after. (Candle's tiled CPU convolution converts the
//! input to NHWC on one thread and multiplies 512-position tiles, at about half the
//! rate of its own matrix product.)
//!
//! The input gradient is the same product transposed followed by col2im; the kernel
//! gradient sums `grad · colsᵀ` over the samples. Each is computed only when
//! something upstream needs it. 3x3 stride-1 convolutions, and the input gradients of
//! stride-1 convolutions, which are such convolutions themselves, go to
//! [`super::winograd`] where the output is large enough.

use std::sync::Arc;

use candle_core::{Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::conv_op::{self, Convolution};
use super::matmul::{Mat, matmul};
use super::winograd::{self, KernelCache};
use super::{ConvGeometry, Element, for_each_chunk, with_avx2, with_scratch, zero, zeros};
use crate::model::rules::Activation;

/// `dst[i] = src[i * stride]` for every `i` of `dst`. Stride 2 (the stride of most
/// strided layers) is written with a constant step, which the compiler turns into
/// whole-vector loads and shuffles; other strides go element by element.
#[inline(always)]
fn copy_strided<T: Element>(dst: &mut [T], src: &[T], stride: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            // Pairs for all but the last element, which may be the source's last.
            let pairs = src[..2 * last].chunks_exact(2);
            dst[..last]
                .iter_mut()
                .zip(pairs)
                .for_each(|(d, p)| *d = p[0]);
            dst[last] = src[2 * last];
        }
        _ => {
            let from = src.iter().step_by(stride);
            dst.iter_mut().zip(from).for_each(|(d, &f)| *d = f);
        }
    }
}

/// `dst[i * stride] += src[i]` for every `i` of `src`: the transpose of [`copy_strided`].
#[inline(always)]
fn add_strided<T: Element>(src: &[T], dst: &mut [T], stride: usize) {
    let Some(last) = src.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => {
            let to = &mut dst[..src.len()];
            to.iter_mut().zip(src).for_each(|(t, &f)| *t += f);
        }
        2 => {
            // Adding zero to the odd elements makes both of a pair's stores whole
            // vector stores (a strided store is one element at a time).
            let pairs = dst[..2 * last].chunks_exact_mut(2);
            pairs.zip(&src[..last]).for_each(|(p, &f)| {
                p[0] += f;
                p[1] += zero();
            });
            dst[2 * last] += src[last];
        }
        _ => {
            let to = dst.iter_mut().step_by(stride);
            to.zip(src).for_each(|(t, &f)| *t += f);
        }
    }
}

/// Fills the column matrix `cols` of one sample `x`, one input channel per task.
fn im2col<T: Element>(g: &ConvGeometry, x: &[T], cols: &mut [T], parallel: bool) {
    let rows_per_channel = g.k * g.k * g.positions();
    for_each_chunk(cols, rows_per_channel, parallel, |c, block| {
        block.fill(zero());
        g.for_each_segment(c, |tap, row, src, (lo, hi)| {
            let start = tap * g.positions() + row;
            let dst = &mut block[start + lo..start + hi];
            with_avx2!(copy_strided(dst, &x[src..], g.stride));
        });
    });
}

/// Adds the column matrix `cols` of one sample back onto the image gradient `dx`
/// (zeros, from [`zeros`], which writes every page before it is read: a fresh zero
/// page read first would be copied on the first write, with a TLB shootdown across
/// cores): the transpose of [`im2col`].
fn col2im<T: Element>(g: &ConvGeometry, cols: &[T], dx: &mut [T], parallel: bool) {
    let plane = g.h * g.w;
    let rows_per_channel = g.k * g.k * g.positions();
    for_each_chunk(dx, plane, parallel, |c, dst| {
        let base = c * plane;
        g.for_each_segment(c, |tap, row, src, (lo, hi)| {
            let start = c * rows_per_channel + tap * g.positions() + row;
            let from = &cols[start + lo..start + hi];
            with_avx2!(add_strided(from, &mut dst[src - base..], g.stride));
        });
    });
}

/// Runs `f(input, output, parallelism)` for every group of `group` samples (the last
/// may hold fewer), `input`/`output` the group's slices (`in_len`/`out_len` per
/// sample), with the matrix-product parallelism to use: groups in parallel when
/// there are enough to busy every thread, else one by one with each product
/// parallel.
fn per_group<T: Element>(
    (n, group): (usize, usize),
    input: &[T],
    in_len: usize,
    output: &mut [T],
    out_len: usize,
    f: impl Fn(&[T], &mut [T], Parallelism) + Sync,
) {
    let (in_len, out_len) = (in_len * group, out_len * group);
    if n.div_ceil(group) >= rayon::current_num_threads() {
        output
            .par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .for_each(|(o, i)| f(i, o, Parallelism::None));
    } else {
        for (o, i) in output.chunks_mut(out_len).zip(input.chunks(in_len)) {
            f(i, o, all_threads());
        }
    }
}

/// Matrix products spread over rayon's threads (when there is more than one).
fn all_threads() -> Parallelism {
    match rayon::current_num_threads() {
        1 => Parallelism::None,
        threads => Parallelism::Rayon(threads),
    }
}

/// Whether work around a product of `parallelism` should be spread over threads too.
fn is_parallel(parallelism: Parallelism) -> bool {
    matches!(parallelism, Parallelism::Rayon(_))
}

fn forward<T: Element>(
    g: &ConvGeometry,
    n: usize,
    x: &[T],
    (kernel, cache): (&[T], Option<&KernelCache>),
    bias: &[T],
) -> Vec<T> {
    if let Some(plan) = winograd::plan(g) {
        let u = KernelCache::get_or_make(cache, plan, false, || plan.transform_kernel(g, kernel));
        return winograd_forward(g, plan, n, x, &u, bias);
    }
    let mut out = zeros(n * g.sample_out());
    let kernel = Mat::new(kernel, g.c_out, g.patch());
    per_group(
        (n, 1),
        x,
        g.sample_in(),
        &mut out,
        g.sample_out(),
        |x, out, par| {
            // The product accumulates onto the bias: no separate pass to add it.
            for (row, &b) in out.chunks_mut(g.positions()).zip(bias) {
                row.fill(b);
            }
            if g.pointwise() {
                return matmul(out, kernel, Mat::new(x, g.c_in, g.positions()), true, par);
            }
            with_scratch(g.patch() * g.positions(), |cols| {
                im2col(g, x, cols, is_parallel(par));
                let cols = Mat::new(cols, g.patch(), g.positions());
                matmul(out, kernel, cols, true, par);
            })
        },
    );
    out
}

/// [`forward`] by `plan`, given the kernel it transformed.
fn winograd_forward<T: Element>(
    g: &ConvGeometry,
    plan: winograd::Plan,
    n: usize,
    x: &[T],
    u: &[T],
    bias: &[T],
) -> Vec<T> {
    let mut out = zeros(n * g.sample_out());
    per_group(
        (n, plan.group(g, n)),
        x,
        g.sample_in(),
        &mut out,
        g.sample_out(),
        |x, out, par| plan.convolve(g, u, x, bias, out, par),
    );
    out
}

/// For a stride-1 convolution: the convolution whose forward pass is its input
/// gradient (kernel flipped, channel axes swapped, padded by `k - 1 - p`) and its
/// plan, if the Winograd path computes it.
fn winograd_gradient(g: &ConvGeometry) -> Option<(ConvGeometry, winograd::Plan)> {
    let backward = ConvGeometry {
        c_in: g.c_out,
        h: g.oh,
        w: g.ow,
        c_out: g.c_in,
        k: g.k,
        stride: 1,
        top: (g.k - 1).checked_sub(g.top)?,
        left: (g.k - 1).checked_sub(g.left)?,
        oh: g.h,
        ow: g.w,
    };
    if g.stride != 1 {
        return None;
    }
    winograd::plan(&backward).map(|plan| (backward, plan))
}

/// `kernel: [C_out, C_in, k, k]` flipped in both spatial axes, as `[C_in, C_out, k, k]`.
fn flip_transpose<T: Element>(g: &ConvGeometry, kernel: &[T]) -> Vec<T> {
    let taps = g.k * g.k;
    let mut flipped = vec![zero(); kernel.len()];
    for o in 0..g.c_out {
        for i in 0..g.c_in {
            let from = &kernel[(o * g.c_in + i) * taps..][..taps];
            let to = &mut flipped[(i * g.c_out + o) * taps..][..taps];
            to.iter_mut()
                .zip(from.iter().rev())
                .for_each(|(t, &f)| *t = f);
        }
    }
    flipped
}

fn input_grad<T: Element>(
    g: &ConvGeometry,
    n: usize,
    grad: &[T],
    (kernel, cache): (&[T], Option<&KernelCache>),
) -> Vec<T> {
    if let Some((backward, plan)) = winograd_gradient(g) {
        let u = KernelCache::get_or_make(cache, plan, true, || {
            plan.transform_kernel(&backward, &flip_transpose(g, kernel))
        });
        let bias = vec![zero(); g.c_in];
        return winograd_forward(&backward, plan, n, grad, &u, &bias);
    }
    let mut dx = zeros(n * g.sample_in());
    let kernel_t = Mat::new(kernel, g.c_out, g.patch()).t();
    per_group(
        (n, 1),
        grad,
        g.sample_out(),
        &mut dx,
        g.sample_in(),
        |grad, dx, par| {
            let grad = Mat::new(grad, g.c_out, g.positions());
            if g.pointwise() {
                return matmul(dx, kernel_t, grad, false, par);
            }
            with_scratch(g.patch() * g.positions(), |cols| {
                matmul(cols, kernel_t, grad, false, par);
                col2im(g, cols, dx, is_parallel(par));
            })
        },
    );
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let mut dw = vec![zero(); g.c_out * g.patch()];
    let par = all_threads();
    let samples = x.chunks(g.sample_in()).zip(grad.chunks(g.sample_out()));
    for (i, (x, grad)) in samples.enumerate() {
        let grad = Mat::new(grad, g.c_out, g.positions());
        if g.pointwise() {
            matmul(
                &mut dw,
                grad,
                Mat::new(x, g.c_in, g.positions()).t(),
                i > 0,
                par,
            );
            continue;
        }
        with_scratch(g.patch() * g.positions(), |cols| {
            im2col(g, x, cols, true);
            let cols = Mat::new(cols, g.patch(), g.positions()).t();
            matmul(&mut dw, grad, cols, i > 0, par);
        });
    }
    dw
}

/// The convolution of `x: [N, C_in, H, W]` with `kernel: [C_out, C_in, k, k]`, plus
/// `bias: [C_out]` if given, then `activation` if given. `cache`, for a kernel that
/// never changes, keeps what is made from the kernel for the next call.
pub(crate) fn conv2d(
    x: &Tensor,
    (kernel, cache): (&Tensor, Option<&Arc<KernelCache>>),
    bias: Option<&Tensor>,
    g: ConvGeometry,
    activation: Option<Activation>,
) -> Result<Tensor> {
    let dense = Dense {
        geometry: g,
        cache: cache.cloned(),
    };
    conv_op::apply(dense, x, kernel, bias, activation)
}

/// The transpose of [`conv2d`]'s linear part: the input gradient when `grad` arrives
/// at its output. `cache` as for [`conv2d`].
pub(crate) fn conv2d_transpose(
    grad: &Tensor,
    (kernel, cache): (&Tensor, Option<&Arc<KernelCache>>),
    g: ConvGeometry,
) -> Result<Tensor> {
    let dense = Dense {
        geometry: g,
        cache: cache.cloned(),
    };
    conv_op::transpose(dense, grad, kernel)
}

#[derive(Clone)]
struct Dense {
    geometry: ConvGeometry,
    cache: Option<Arc<KernelCache>>,
}

impl Convolution for Dense {
    const NAMES: [&'static str; 3] = [
        "cpu-conv2d",
        "cpu-conv2d-input-grad",
        "cpu-conv2d-kernel-grad",
    ];

    fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    fn kernel_shape(&self) -> Shape {
        let g = &self.geometry;
        (g.c_out, g.c_in, g.k, g.k).into()
    }

    fn forward<T: Element>(&self, n: usize, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
        let kernel = (kernel, self.cache.as_deref());
        forward(&self.geometry, n, x, kernel, bias)
    }

    fn input_grad<T: Element>(&self, n: usize, grad: &[T], kernel: &[T]) -> Vec<T> {
        input_grad(&self.geometry, n, grad, (kernel, self.cache.as_deref()))
    }

    fn kernel_grad<T: Element>(&self, x: &[T], grad: &[T]) -> Vec<T> {
        kernel_grad(&self.geometry, x, grad)
    }
}
