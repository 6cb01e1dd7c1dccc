//! Depthwise 2-D convolution on the CPU (one `k x k` filter per channel, as in
//! EfficientNet and MobileNet), directly: the plane is copied once into a zero-bordered
//! buffer whose columns are split by phase (`x mod stride`), so that every kernel tap,
//! at any stride, is a scaled add of one contiguous input row stretch onto an output
//! row (and its transpose for the gradient), with no bounds logic; one channel plane
//! per parallel task. (Candle runs a grouped convolution as one convolution per group;
//! strided taps read every other element, which does not vectorize.)

use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_op::{self, Convolution};
use super::{ConvGeometry, Element, with_scratch, zero};

/// `dst[i] += weight * src[i]` over `dst`.
fn scaled_add<T: Element>(dst: &mut [T], src: &[T], weight: T) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += weight * s);
}

/// `sum over i of a[i] * b[i]`.
fn dot<T: Element>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(zero(), |sum, (&a, &b)| sum + a * b)
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

    /// Elements per phase of a buffer row: padded column `x` lives at `(x % stride) *
    /// phase + x / stride` of its row.
    fn phase(&self) -> usize {
        self.padded().1.div_ceil(self.stride)
    }

    /// Elements of the phase-split padded plane: rows of `stride * phase`.
    fn buffer_len(&self) -> usize {
        self.padded().0 * self.stride * self.phase()
    }

    /// Visits the stretches of the plane that the windows reach, one per row and phase:
    /// `f(plane_start, buffer_start, len)` for plane elements `plane_start,
    /// plane_start + stride, ...` stored at `buffer_start ..  buffer_start + len`.
    fn for_each_inside(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (rows, cols) = self.padded();
        let (s, phase) = (self.stride, self.phase());
        let width = self.w.min(cols.saturating_sub(self.left));
        for y in 0..self.h.min(rows.saturating_sub(self.top)) {
            let row = (y + self.top) * s * phase;
            // Plane column x sits at padded column x + left; phase p starts at the first
            // x with (x + left) % s == p.
            for x0 in 0..s.min(width) {
                let col = x0 + self.left;
                let len = (width - x0).div_ceil(s);
                f(y * self.w + x0, row + (col % s) * phase + col / s, len);
            }
        }
    }

    /// Copies `plane` into `buf`, a zero-bordered, phase-split padded plane.
    fn pad_into<T: Element>(&self, plane: &[T], buf: &mut [T]) {
        buf.fill(zero());
        self.for_each_inside(|from, to, len| {
            let src = plane[from..].iter().step_by(self.stride);
            buf[to..to + len]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &v)| *d = v);
        });
    }

    /// The inverse of [`ConvGeometry::pad_into`]: `plane` is the interior of `buf`
    /// (zero where the windows do not reach).
    fn crop_from<T: Element>(&self, buf: &[T], plane: &mut [T]) {
        plane.fill(zero());
        self.for_each_inside(|to, from, len| {
            let dst = plane[to..].iter_mut().step_by(self.stride);
            dst.zip(&buf[from..from + len]).for_each(|(d, &v)| *d = v);
        });
    }

    /// Visits every kernel tap of every output row: `f(out_row, tap, in_start)` for
    /// output row `oy` and tap `(ky, kx)`, whose inputs in the phase-split buffer are
    /// `in_start .. in_start + ow`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let row_len = self.stride * self.phase();
        for oy in 0..self.oh {
            for ky in 0..self.k {
                let row = (oy * self.stride + ky) * row_len;
                for kx in 0..self.k {
                    let start = row + (kx % self.stride) * self.phase() + kx / self.stride;
                    f(oy, ky * self.k + kx, start);
                }
            }
        }
    }
}

fn forward<T: Element>(g: &ConvGeometry, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let mut out = vec![zero(); x.len() / (g.h * g.w) * out_plane];
    out.par_chunks_mut(out_plane)
        .zip(x.par_chunks(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let c = i % g.c_in;
            out.fill(bias[c]);
            let w = &kernel[c * taps..(c + 1) * taps];
            with_scratch(g.buffer_len(), |xp| {
                g.pad_into(x, xp);
                g.for_each_tap(|oy, tap, start| {
                    let row = &mut out[oy * g.ow..][..g.ow];
                    scaled_add(row, &xp[start..], w[tap]);
                });
            });
        });
    out
}

fn input_grad<T: Element>(g: &ConvGeometry, grad: &[T], kernel: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let mut dx = vec![zero(); grad.len() / out_plane * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(grad.par_chunks(out_plane))
        .enumerate()
        .for_each(|(i, (dx, grad))| {
            let w = &kernel[(i % g.c_in) * taps..][..taps];
            with_scratch(g.buffer_len(), |dxp| {
                dxp.fill(zero());
                g.for_each_tap(|oy, tap, start| {
                    let row = &grad[oy * g.ow..][..g.ow];
                    scaled_add(&mut dxp[start..start + g.ow], row, w[tap]);
                });
                g.crop_from(dxp, dx);
            });
        });
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (taps, in_plane, out_plane) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
    let n = x.len() / (g.c_in * in_plane);
    let mut dw = vec![zero(); g.c_in * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        with_scratch(g.buffer_len(), |xp| {
            for sample in 0..n {
                let plane = sample * g.c_in + c;
                g.pad_into(&x[plane * in_plane..][..in_plane], xp);
                let grad = &grad[plane * out_plane..][..out_plane];
                g.for_each_tap(|oy, tap, start| {
                    let row = &grad[oy * g.ow..][..g.ow];
                    dw[tap] += dot(row, &xp[start..]);
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
