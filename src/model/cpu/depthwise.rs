//! Depthwise 2-D convolution on the CPU (one `k x k` filter per channel, as in
//! EfficientNet and MobileNet), directly, one channel plane per parallel task.
//!
//! The plane is copied once into a zero-bordered buffer split by phase in both axes
//! (`y mod stride`, `x mod stride`): in a phase plane every kernel tap reads
//! consecutive rows and columns, at any stride. Outputs are computed "wide", with rows
//! as long as a phase plane's (the few extra columns are discarded), so each tap is
//! one scaled add over the whole plane instead of one per output row: on EfficientNet's
//! 7x7 and 14x14 planes the per-row calls were most of the time. (Candle runs a grouped
//! convolution as one convolution per group.)

use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_op::{self, Convolution};
use super::{ConvGeometry, Element, with_scratch, zero};
use crate::model::ops::Activation;

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

    /// Rows and columns of one phase plane: padded `(y, x)` lives in phase
    /// `(y % stride, x % stride)` at `(y / stride, x / stride)`.
    fn phase(&self) -> (usize, usize) {
        let (rows, cols) = self.padded();
        (rows.div_ceil(self.stride), cols.div_ceil(self.stride))
    }

    /// Elements of the phase-split padded plane: `stride²` phase planes.
    fn buffer_len(&self) -> usize {
        let (rows, cols) = self.phase();
        self.stride * self.stride * rows * cols
    }

    /// Elements of a wide output plane: `oh` rows of a phase plane's width, the last
    /// cut to `ow`.
    fn wide_len(&self) -> usize {
        (self.oh - 1) * self.phase().1 + self.ow
    }

    /// Visits the stretches of the plane that the windows reach, one per row and
    /// column phase: `f(plane_start, buffer_start, len)` for plane elements
    /// `plane_start, plane_start + stride, ...` stored at `buffer_start .. + len`.
    fn for_each_inside(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (rows, cols) = self.padded();
        let s = self.stride;
        let (phase_rows, phase_cols) = self.phase();
        let width = self.w.min(cols.saturating_sub(self.left));
        for y in 0..self.h.min(rows.saturating_sub(self.top)) {
            let row = y + self.top;
            for x0 in 0..s.min(width) {
                let col = x0 + self.left;
                let phase = (row % s) * s + col % s;
                let start = (phase * phase_rows + row / s) * phase_cols + col / s;
                f(y * self.w + x0, start, (width - x0).div_ceil(s));
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

    /// Visits every kernel tap: `f(tap, start)` for tap `ky * k + kx`, whose inputs for
    /// the wide output plane are the buffer's `start .. start + wide_len()`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let s = self.stride;
        let (phase_rows, phase_cols) = self.phase();
        for ky in 0..self.k {
            for kx in 0..self.k {
                let phase = (ky % s) * s + kx % s;
                let start = (phase * phase_rows + ky / s) * phase_cols + kx / s;
                f(ky * self.k + kx, start);
            }
        }
    }

    /// Copies a wide output plane's `ow` columns per row into `out`.
    fn narrow_rows<T: Element>(&self, wide: &[T], out: &mut [T]) {
        let stride = self.phase().1;
        for (oy, row) in out.chunks_exact_mut(self.ow).enumerate() {
            row.copy_from_slice(&wide[oy * stride..][..self.ow]);
        }
    }

    /// Spreads `out`'s rows into a wide plane, zeros between them.
    fn widen_rows<T: Element>(&self, out: &[T], wide: &mut [T]) {
        wide.fill(zero());
        let stride = self.phase().1;
        for (oy, row) in out.chunks_exact(self.ow).enumerate() {
            wide[oy * stride..][..self.ow].copy_from_slice(row);
        }
    }
}

fn forward<T: Element>(g: &ConvGeometry, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let (buffer, wide) = (g.buffer_len(), g.wide_len());
    let mut out = vec![zero(); x.len() / (g.h * g.w) * out_plane];
    out.par_chunks_mut(out_plane)
        .zip(x.par_chunks(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let c = i % g.c_in;
            let w = &kernel[c * taps..(c + 1) * taps];
            with_scratch(buffer + wide, |scratch| {
                let (xp, acc) = scratch.split_at_mut(buffer);
                g.pad_into(x, xp);
                acc.fill(bias[c]);
                g.for_each_tap(|tap, start| scaled_add(acc, &xp[start..], w[tap]));
                g.narrow_rows(acc, out);
            });
        });
    out
}

fn input_grad<T: Element>(g: &ConvGeometry, grad: &[T], kernel: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let (buffer, wide) = (g.buffer_len(), g.wide_len());
    let mut dx = vec![zero(); grad.len() / out_plane * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(grad.par_chunks(out_plane))
        .enumerate()
        .for_each(|(i, (dx, grad))| {
            let w = &kernel[(i % g.c_in) * taps..][..taps];
            with_scratch(buffer + wide, |scratch| {
                let (dxp, grad_wide) = scratch.split_at_mut(buffer);
                g.widen_rows(grad, grad_wide);
                dxp.fill(zero());
                g.for_each_tap(|tap, start| {
                    scaled_add(&mut dxp[start..start + wide], grad_wide, w[tap]);
                });
                g.crop_from(dxp, dx);
            });
        });
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (taps, in_plane, out_plane) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
    let (buffer, wide) = (g.buffer_len(), g.wide_len());
    let n = x.len() / (g.c_in * in_plane);
    let mut dw = vec![zero(); g.c_in * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        with_scratch(buffer + wide, |scratch| {
            let (xp, grad_wide) = scratch.split_at_mut(buffer);
            for sample in 0..n {
                let plane = sample * g.c_in + c;
                g.pad_into(&x[plane * in_plane..][..in_plane], xp);
                g.widen_rows(&grad[plane * out_plane..][..out_plane], grad_wide);
                g.for_each_tap(|tap, start| dw[tap] += dot(grad_wide, &xp[start..]));
            }
        });
    });
    dw
}

/// The depthwise convolution of `x: [N, C, H, W]` with `kernel: [C, 1, k, k]`, plus
/// `bias: [C]` if given, then `activation` if given; `g.c_in` = `g.c_out` = `C`.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    g: ConvGeometry,
    activation: Option<Activation>,
) -> Result<Tensor> {
    conv_op::apply(Depthwise(g), x, kernel, bias, activation)
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
