//! Depthwise 2-D convolution on the CPU (one `k x k` filter per channel, as in
//! EfficientNet and MobileNet), directly, one channel plane per parallel task.
//!
//! The plane is copied once into a zero-bordered buffer split by phase in both axes
//! (`y mod stride`, `x mod stride`): in a phase plane every kernel tap reads
//! consecutive rows and columns, at any stride. Outputs are computed "wide", with rows
//! as long as a phase plane's (the few extra columns are discarded), so every tap
//! reads the buffer at one fixed offset from the output: the plane is one
//! [`correlate`] over the `k²` offsets, whatever its size (per-row calls were most of
//! the time on EfficientNet's 7x7 and 14x14 planes). The input gradient is the same
//! correlation per phase plane, over the taps of that phase. (Candle runs a grouped
//! convolution as one convolution per group.)

use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_op::{self, Convolution};
use super::{ConvGeometry, Element, dot, with_avx2, with_scratch, zero, zeros};
use crate::model::rules::Activation;

/// `out[i] = init + sum over (offset, w) in taps of w * src[offset + i]`, the taps
/// added in order. Outputs go in blocks that stay in registers across all the taps:
/// one pass over `out` instead of one read-modify-write pass per tap.
fn correlate<T: Element>(src: &[T], taps: &[(usize, T)], init: T, out: &mut [T]) {
    with_avx2!(correlate_any(src, taps, init, out))
}

#[inline(always)]
fn correlate_any<T: Element>(src: &[T], taps: &[(usize, T)], init: T, out: &mut [T]) {
    const BLOCK: usize = 32;
    let full = out.len() / BLOCK * BLOCK;
    let (blocks, tail) = out.split_at_mut(full);
    for (b, block) in blocks.chunks_exact_mut(BLOCK).enumerate() {
        let mut sum = [init; BLOCK];
        for &(offset, w) in taps {
            let src = &src[offset + b * BLOCK..][..BLOCK];
            sum.iter_mut().zip(src).for_each(|(s, &x)| *s += w * x);
        }
        block.copy_from_slice(&sum);
    }
    for (i, o) in tail.iter_mut().enumerate() {
        *o = taps
            .iter()
            .fold(init, |sum, &(offset, w)| sum + w * src[offset + full + i]);
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

    /// Rows and columns of one phase plane: padded `(y, x)` lives in phase
    /// `(y % stride, x % stride)` at `(y / stride, x / stride)`.
    fn phase(&self) -> (usize, usize) {
        let (rows, cols) = self.padded();
        (rows.div_ceil(self.stride), cols.div_ceil(self.stride))
    }

    /// Elements of the phase-split padded plane: `stride²` phase planes.
    fn buffer_len(&self) -> usize {
        self.stride * self.stride * self.phase_len()
    }

    /// Elements of a wide output plane: `oh` rows of a phase plane's width, the last
    /// cut to `ow`.
    fn wide_len(&self) -> usize {
        (self.oh - 1) * self.phase().1 + self.ow
    }

    /// Columns and rows of the plane that the windows reach (all, unless the
    /// stride skips the last ones).
    fn reached(&self) -> (usize, usize) {
        let (rows, cols) = self.padded();
        (
            self.w.min(cols.saturating_sub(self.left)),
            self.h.min(rows.saturating_sub(self.top)),
        )
    }

    /// Visits the stretches of the plane that the windows reach, one per row and
    /// column phase: `f(plane_start, buffer_start, len)` for plane elements
    /// `plane_start, plane_start + stride, ...` stored at `buffer_start .. + len`.
    fn for_each_inside(&self, mut f: impl FnMut(usize, usize, usize)) {
        let s = self.stride;
        let (phase_rows, phase_cols) = self.phase();
        let (width, height) = self.reached();
        for y in 0..height {
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
            let dst = &mut buf[to..to + len];
            match self.stride {
                1 => dst.copy_from_slice(&plane[from..from + len]),
                s => dst
                    .iter_mut()
                    .zip(plane[from..].iter().step_by(s))
                    .for_each(|(d, &v)| *d = v),
            }
        });
    }

    /// The inverse of [`ConvGeometry::pad_into`]: `plane` is the interior of `buf`
    /// (zero where the windows do not reach).
    fn crop_from<T: Element>(&self, buf: &[T], plane: &mut [T]) {
        let (width, height) = self.reached();
        let (inside, below) = plane.split_at_mut(height * self.w);
        below.fill(zero());
        for row in inside.chunks_exact_mut(self.w) {
            row[width..].fill(zero());
        }
        self.for_each_inside(|to, from, len| {
            let src = &buf[from..from + len];
            match self.stride {
                1 => plane[to..to + len].copy_from_slice(src),
                s => plane[to..]
                    .iter_mut()
                    .step_by(s)
                    .zip(src)
                    .for_each(|(d, &v)| *d = v),
            }
        });
    }

    /// For each phase plane, the range of its elements that [`ConvGeometry::crop_from`]
    /// reads (empty if none).
    fn cropped_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let phase_len = self.phase_len();
        let mut ranges: Vec<Option<(usize, usize)>> = vec![None; self.stride * self.stride];
        self.for_each_inside(|_, start, len| {
            let (phase, start) = (start / phase_len, start % phase_len);
            let (lo, hi) = ranges[phase].unwrap_or((start, start + len));
            ranges[phase] = Some((lo.min(start), hi.max(start + len)));
        });
        ranges
            .into_iter()
            .map(|r| r.map_or(0..0, |(lo, hi)| lo..hi))
            .collect()
    }

    /// Visits every kernel tap: `f(tap, phase, offset)` for tap `ky * k + kx`, whose
    /// inputs for the wide output plane are phase plane `phase`'s elements
    /// `offset .. offset + wide_len()`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let s = self.stride;
        let phase_cols = self.phase().1;
        for ky in 0..self.k {
            for kx in 0..self.k {
                let phase = (ky % s) * s + kx % s;
                f(ky * self.k + kx, phase, (ky / s) * phase_cols + kx / s);
            }
        }
    }

    /// Elements of one phase plane.
    fn phase_len(&self) -> usize {
        let (rows, cols) = self.phase();
        rows * cols
    }

    /// Where each tap's inputs for the wide output plane start in the buffer.
    fn tap_starts(&self) -> Vec<usize> {
        let mut starts = vec![0; self.k * self.k];
        let phase_len = self.phase_len();
        self.for_each_tap(|tap, phase, offset| starts[tap] = phase * phase_len + offset);
        starts
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
    let starts = g.tap_starts();
    // Per channel: (where each tap's inputs start in the buffer, weight).
    let channel_taps: Vec<Vec<(usize, T)>> = kernel
        .chunks_exact(taps)
        .map(|w| starts.iter().copied().zip(w.iter().copied()).collect())
        .collect();
    let mut out = zeros(x.len() / (g.h * g.w) * out_plane);
    out.par_chunks_mut(out_plane)
        .zip(x.par_chunks(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let c = i % g.c_in;
            with_scratch(buffer + wide, |scratch| {
                let (xp, acc) = scratch.split_at_mut(buffer);
                g.pad_into(x, xp);
                correlate(xp, &channel_taps[c], bias[c], acc);
                g.narrow_rows(acc, out);
            });
        });
    out
}

/// Each phase plane of the padded input gradient gathers from the wide output
/// gradient at the offsets of its own taps, reversed: `dxp[offset + i] += w * grad[i]`
/// for every `i` is `dxp[j] += w * grad[j - offset]`, read from a copy of the
/// gradient after `lead` zeros (the largest offset) and before enough zeros to end
/// where the phase plane does. Only the part of each phase plane that is cropped
/// back into the plane is computed.
fn input_grad<T: Element>(g: &ConvGeometry, grad: &[T], kernel: &[T]) -> Vec<T> {
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let (buffer, wide, phase_len) = (g.buffer_len(), g.wide_len(), g.phase_len());
    let mut phases = vec![Vec::new(); g.stride * g.stride];
    g.for_each_tap(|tap, phase, offset| phases[phase].push((tap, offset)));
    let lead = phases.iter().flatten().map(|&(_, o)| o).max().unwrap_or(0);
    let ranges = g.cropped_ranges();
    // Per channel, per phase: (where in the spread gradient its range starts, weight).
    let channel_taps: Vec<Vec<Vec<(usize, T)>>> = kernel
        .chunks_exact(taps)
        .map(|w| {
            let taps = phases.iter().zip(&ranges);
            taps.map(|(phase, r)| {
                phase
                    .iter()
                    .map(|&(t, o)| (lead - o + r.start, w[t]))
                    .collect()
            })
            .collect()
        })
        .collect();
    let mut dx = zeros(grad.len() / out_plane * g.h * g.w);
    dx.par_chunks_mut(g.h * g.w)
        .zip(grad.par_chunks(out_plane))
        .enumerate()
        .for_each(|(i, (dx, grad))| {
            let taps = &channel_taps[i % g.c_in];
            with_scratch(buffer + lead + phase_len, |scratch| {
                let (dxp, spread) = scratch.split_at_mut(buffer);
                let (before, rest) = spread.split_at_mut(lead);
                let (wide_grad, after) = rest.split_at_mut(wide);
                before.fill(zero());
                g.widen_rows(grad, wide_grad);
                after.fill(zero());
                let planes = dxp.chunks_exact_mut(phase_len);
                for ((taps, range), dxp) in taps.iter().zip(&ranges).zip(planes) {
                    correlate(spread, taps, zero(), &mut dxp[range.clone()]);
                }
                g.crop_from(dxp, dx);
            });
        });
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (taps, in_plane, out_plane) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
    let (buffer, wide) = (g.buffer_len(), g.wide_len());
    let starts = g.tap_starts();
    let n = x.len() / (g.c_in * in_plane);
    let mut dw = vec![zero(); g.c_in * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        with_scratch(buffer + wide, |scratch| {
            let (xp, grad_wide) = scratch.split_at_mut(buffer);
            for sample in 0..n {
                let plane = sample * g.c_in + c;
                g.pad_into(&x[plane * in_plane..][..in_plane], xp);
                g.widen_rows(&grad[plane * out_plane..][..out_plane], grad_wide);
                for (dw, &start) in dw.iter_mut().zip(&starts) {
                    *dw += dot(grad_wide, &xp[start..start + wide]);
                }
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

/// The transpose of [`depthwise_conv2d`]'s linear part: the input gradient when
/// `grad` arrives at its output.
pub(crate) fn depthwise_conv2d_transpose(
    grad: &Tensor,
    kernel: &Tensor,
    g: ConvGeometry,
) -> Result<Tensor> {
    conv_op::transpose(Depthwise(g), grad, kernel)
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
