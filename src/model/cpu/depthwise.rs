//! Depthwise 2-D convolution on the CPU (one `k x k` filter per channel, as in
//! EfficientNet and MobileNet), directly: the plane is copied into a zero border
//! once, then every kernel tap is a scaled add of a shifted input row onto an output
//! row, with no bounds logic; one channel plane per parallel task. (Candle runs a
//! grouped convolution as one convolution per group.)

use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_op::{self, Convolution};
use super::{ConvGeometry, Element, with_scratch, zero};

/// `dst[i] += weight * src[i * stride]` over `dst`.
fn scaled_add<T: Element>(dst: &mut [T], src: &[T], stride: usize, weight: T) {
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += weight * s);
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d += weight * src[i * stride];
        }
    }
}

/// `dst[i * stride] += weight * src[i]` over `src`: the transpose of [`scaled_add`].
fn scaled_scatter<T: Element>(dst: &mut [T], src: &[T], stride: usize, weight: T) {
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += weight * s);
    } else {
        for (i, &s) in src.iter().enumerate() {
            dst[i * stride] += weight * s;
        }
    }
}

/// `sum over i of a[i] * b[i * stride]`.
fn strided_dot<T: Element>(a: &[T], b: &[T], stride: usize) -> T {
    if stride == 1 {
        a.iter().zip(b).fold(zero(), |sum, (&a, &b)| sum + a * b)
    } else {
        let b = b.iter().step_by(stride);
        a.iter().zip(b).fold(zero(), |sum, (&a, &b)| sum + a * b)
    }
}

impl ConvGeometry {
    /// Rows and columns of a plane inside its zero border, cut to what the windows
    /// reach: `(oh - 1) * stride + k` by `(ow - 1) * stride + k`.
    fn padded(&self) -> (usize, usize) {
        (
            (self.oh - 1) * self.stride + self.k,
            (self.ow - 1) * self.stride + self.k,
        )
    }

    /// Copies `plane` into `buf`, a zero-bordered [`ConvGeometry::padded`] plane.
    fn pad_into<T: Element>(&self, plane: &[T], buf: &mut [T]) {
        let (rows, cols) = self.padded();
        buf.fill(zero());
        let width = self.w.min(cols.saturating_sub(self.left));
        for y in 0..self.h.min(rows.saturating_sub(self.top)) {
            let start = (y + self.top) * cols + self.left;
            buf[start..start + width].copy_from_slice(&plane[y * self.w..][..width]);
        }
    }

    /// The inverse of [`ConvGeometry::pad_into`]: `plane` is the interior of `buf`
    /// (zero where the windows do not reach).
    fn crop_from<T: Element>(&self, buf: &[T], plane: &mut [T]) {
        let (rows, cols) = self.padded();
        plane.fill(zero());
        let width = self.w.min(cols.saturating_sub(self.left));
        for y in 0..self.h.min(rows.saturating_sub(self.top)) {
            let start = (y + self.top) * cols + self.left;
            plane[y * self.w..][..width].copy_from_slice(&buf[start..start + width]);
        }
    }

    /// Visits every kernel tap of every output row: `f(out_row, tap, in_start)` for
    /// output row `oy` and tap `(ky, kx)`, whose inputs in the padded plane are
    /// `in_start, in_start + stride, ...`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let cols = self.padded().1;
        for oy in 0..self.oh {
            for ky in 0..self.k {
                for kx in 0..self.k {
                    f(oy, ky * self.k + kx, (oy * self.stride + ky) * cols + kx);
                }
            }
        }
    }
}

fn forward<T: Element>(g: &ConvGeometry, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let (rows, cols) = g.padded();
    let mut out = vec![zero(); x.len() / (g.h * g.w) * out_plane];
    out.par_chunks_mut(out_plane)
        .zip(x.par_chunks(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let c = i % g.c_in;
            out.fill(bias[c]);
            let w = &kernel[c * taps..(c + 1) * taps];
            with_scratch(rows * cols, |xp| {
                g.pad_into(x, xp);
                g.for_each_tap(|oy, tap, start| {
                    let row = &mut out[oy * g.ow..][..g.ow];
                    scaled_add(row, &xp[start..], g.stride, w[tap]);
                });
            });
        });
    out
}

fn input_grad<T: Element>(g: &ConvGeometry, grad: &[T], kernel: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let (rows, cols) = g.padded();
    let mut dx = vec![zero(); grad.len() / out_plane * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(grad.par_chunks(out_plane))
        .enumerate()
        .for_each(|(i, (dx, grad))| {
            let w = &kernel[(i % g.c_in) * taps..][..taps];
            with_scratch(rows * cols, |dxp| {
                dxp.fill(zero());
                g.for_each_tap(|oy, tap, start| {
                    let row = &grad[oy * g.ow..][..g.ow];
                    scaled_scatter(&mut dxp[start..], row, g.stride, w[tap]);
                });
                g.crop_from(dxp, dx);
            });
        });
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (taps, in_plane, out_plane) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
    let (rows, cols) = g.padded();
    let n = x.len() / (g.c_in * in_plane);
    let mut dw = vec![zero(); g.c_in * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        with_scratch(rows * cols, |xp| {
            for sample in 0..n {
                let plane = sample * g.c_in + c;
                g.pad_into(&x[plane * in_plane..][..in_plane], xp);
                let grad = &grad[plane * out_plane..][..out_plane];
                g.for_each_tap(|oy, tap, start| {
                    let row = &grad[oy * g.ow..][..g.ow];
                    dw[tap] += strided_dot(row, &xp[start..], g.stride);
                });
            }
        });
    });
    dw
}

/// The depthwise convolution of `x: [N, C, H, W]` with `kernel: [C, 1, k, k]`, plus
/// `bias: [C]` if given; `g.c_in` = `g.c_out` = `C`.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    g: ConvGeometry,
) -> Result<Tensor> {
    conv_op::apply(Depthwise(g), x, kernel, bias)
}

#[derive(Clone, Copy)]
struct Depthwise(ConvGeometry);

impl Convolution for Depthwise {
    const NAMES: [&'static str; 3] = [
        "cpu-depthwise-conv2d",
        "cpu-depthwise-conv2d-input-grad",
        "cpu-depthwise-conv2d-kernel-grad",
    ];

    fn geometry(&self) -> &ConvGeometry {
        &self.0
    }

    fn kernel_shape(&self) -> Shape {
        let g = &self.0;
        (g.c_out, 1, g.k, g.k).into()
    }

    fn forward<T: Element>(&self, _: usize, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
        forward(&self.0, x, kernel, bias)
    }

    fn input_grad<T: Element>(&self, _: usize, grad: &[T], kernel: &[T]) -> Vec<T> {
        input_grad(&self.0, grad, kernel)
    }

    fn kernel_grad<T: Element>(&self, x: &[T], grad: &[T]) -> Vec<T> {
        kernel_grad(&self.0, x, grad)
    }
}
