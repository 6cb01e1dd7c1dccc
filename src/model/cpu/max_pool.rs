//! 2-D max pooling on the CPU with PyTorch's semantics: implicit -inf padding, floor
//! mode, and the whole gradient of a window to its first maximum in row order
//! (overlapping windows add up). One channel plane per parallel task each way.

use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{Element, by_dtype, elements, with_avx2, zero, zeros};
use crate::model::holder::Holder;

/// Sizes of one pooling: `k x k` windows every `stride` over an `h x w` plane
/// padded by `pad` on every side, giving `oh x ow`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeometry {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeometry {
    /// The input indices along an axis of length `len` that window `o` covers.
    fn span(&self, o: usize, len: usize) -> Range<usize> {
        let start = (o * self.stride).saturating_sub(self.pad);
        let end = (o * self.stride + self.k - self.pad).min(len);
        start..end
    }

    /// Every output column's span of input columns, computed once per call.
    fn column_spans(&self) -> Vec<Range<usize>> {
        (0..self.ow).map(|ox| self.span(ox, self.w)).collect()
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.oh * self.ow
    }
}

/// Whether a scan for the first maximum (or last NaN) moves from `best` to `v`.
#[allow(clippy::eq_op)] // v != v: NaN, without a float trait
fn prefer<T: Element>(best: T, v: T) -> bool {
    v > best || v != v
}

/// The maximum of each window, separably: for each output row, the elementwise
/// maximum of its `k` input rows (a pass that vectorizes), then the window maxima
/// along that one row. NaN if the window holds one, else its maximum: the value its
/// backward routes the gradient to (up to the sign of a zero maximum, as -0 == +0).
fn forward<T: Element>(g: &PoolGeometry, x: &[T]) -> Vec<T> {
    let mut out = zeros(x.len() / g.plane_in() * g.plane_out());
    let spans = g.column_spans();
    out.par_chunks_mut(g.plane_out())
        .zip(x.par_chunks(g.plane_in()))
        .for_each(|(out, plane)| {
            let mut column_max = vec![zero(); g.w];
            for (oy, dst) in out.chunks_exact_mut(g.ow).enumerate() {
                let rows = g.span(oy, g.h);
                column_max.copy_from_slice(&plane[rows.start * g.w..][..g.w]);
                for y in rows.skip(1) {
                    for (m, &v) in column_max.iter_mut().zip(&plane[y * g.w..][..g.w]) {
                        *m = if prefer(*m, v) { v } else { *m };
                    }
                }
                for (d, span) in dst.iter_mut().zip(&spans) {
                    let window = &column_max[span.clone()];
                    *d = window[1..].iter().fold(
                        window[0],
                        |best, &v| {
                            if prefer(best, v) { v } else { best }
                        },
                    );
                }
            }
        });
    out
}

/// The gradient of each window to its first maximum (or last NaN), one plane per
/// task ([`plane_backward`]), added onto zeros from [`zeros`] (every page written
/// before it is read, as for conv's col2im).
fn backward<T: Element>(g: &PoolGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let mut dx = zeros(x.len());
    let spans = g.column_spans();
    dx.par_chunks_mut(g.plane_in())
        .zip(
            x.par_chunks(g.plane_in())
                .zip(grad.par_chunks(g.plane_out())),
        )
        .for_each(|(dx, (plane, grad))| plane_backward(g, &spans, plane, grad, dx));
    dx
}

/// One plane's input gradient, separably like [`forward`]: for each output row,
/// every input column's first maximum (or last NaN) over the window's rows, in one
/// pass of vector selects; then each window's winner among its columns. A scan of
/// each window in row order decided at every element whether a new maximum had
/// come, on data, and mispredicted so often that it ran at half this speed.
///
/// Across columns, the first maximum in row order is the largest value at the
/// earliest row, then the earliest column; the last NaN, the latest row, then the
/// latest column.
fn plane_backward<T: Element>(
    g: &PoolGeometry,
    spans: &[Range<usize>],
    plane: &[T],
    grad: &[T],
    dx: &mut [T],
) {
    with_avx2!(plane_backward_in(g, spans, plane, grad, dx))
}

#[inline(always)]
fn plane_backward_in<T: Element>(
    g: &PoolGeometry,
    spans: &[Range<usize>],
    plane: &[T],
    grad: &[T],
    dx: &mut [T],
) {
    let mut column_max = vec![zero(); g.w];
    let mut column_row = vec![0u32; g.w];
    for (oy, grad) in grad.chunks_exact(g.ow).enumerate() {
        let rows = g.span(oy, g.h);
        column_max.copy_from_slice(&plane[rows.start * g.w..][..g.w]);
        column_row.fill(rows.start as u32);
        for y in rows.skip(1) {
            let row = &plane[y * g.w..][..g.w];
            for ((max, at), &v) in column_max.iter_mut().zip(&mut column_row).zip(row) {
                let wins = prefer(*max, v);
                *max = if wins { v } else { *max };
                *at = if wins { y as u32 } else { *at };
            }
        }
        for (&gr, span) in grad.iter().zip(spans) {
            let mut best = span.start;
            for c in span.start + 1..span.end {
                let (v, at) = (column_max[c], column_row[c]);
                let (best_v, best_at) = (column_max[best], column_row[best]);
                #[allow(clippy::eq_op)] // x != x: NaN, without a float trait
                let (nan, best_nan) = (v != v, best_v != best_v);
                // Non-short-circuit operators: flags and a select, no branches.
                let wins = (nan & (!best_nan | (at >= best_at)))
                    | (v > best_v)
                    | ((v == best_v) & (at < best_at));
                best = if wins { c } else { best };
            }
            dx[column_row[best] as usize * g.w + best] += gr;
        }
    }
}

/// Max pooling of `x: [N, C, H, W]`.
pub(crate) fn max_pool2d(x: &Tensor, g: PoolGeometry) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool(g))
}

struct MaxPool(PoolGeometry);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "cpu-max-pool2d"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(g: &PoolGeometry, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
            Ok(T::to_cpu_storage_owned(forward(g, elements::<T>(x, l)?)))
        }
        let g = &self.0;
        let (n, c) = (l.dims()[0], l.dims()[1]);
        Ok((by_dtype!(x, run(g, x, l))?, (n, c, g.oh, g.ow).into()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(max_pool2d_grad(self.0, x, grad)?))
    }
}

/// The gradient `grad` at the pool of `x` passes back to `x`.
pub(crate) fn max_pool2d_grad(g: PoolGeometry, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    x.detach()
        .apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolGrad(g))
}

/// [`crate::model::ops::max_pool2d_held`] on the CPU: max pooling of `y`, a hold's
/// output, whose backward leaves the gradient it routes to `y` in the hold's
/// `holder`.
pub(crate) fn max_pool2d_held(
    anchor: &Tensor,
    y: &Tensor,
    g: PoolGeometry,
    holder: Holder,
) -> Result<Tensor> {
    anchor.apply_op2(&y.contiguous()?, HeldPool { g, holder })
}

struct HeldPool {
    g: PoolGeometry,
    holder: Holder,
}

impl CustomOp2 for HeldPool {
    fn name(&self) -> &'static str {
        "cpu-max-pool2d-held"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        MaxPool(self.g).cpu_fwd(y, l)
    }

    fn bwd(
        &self,
        _: &Tensor,
        y: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.holder.put(max_pool2d_grad(self.g, y, grad)?)?;
        Ok((None, None))
    }
}

/// `(input, output gradient) -> input gradient`.
struct MaxPoolGrad(PoolGeometry);

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "cpu-max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            g: &PoolGeometry,
            (x, x_l): (&CpuStorage, &Layout),
            (grad, grad_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let dx = backward(g, elements::<T>(x, x_l)?, elements(grad, grad_l)?);
            Ok(T::to_cpu_storage_owned(dx))
        }
        let dx = by_dtype!(x, run(&self.0, (x, x_l), (grad, grad_l)))?;
        Ok((dx, x_l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient by the definition: each window scanned in row order, its
    /// gradient to the first maximum, or to the last NaN.
    fn by_scan(g: &PoolGeometry, plane: &[f32], grad: &[f32]) -> Vec<f32> {
        let mut dx = vec![0.0; plane.len()];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut best = None::<usize>;
                for y in g.span(oy, g.h) {
                    for x in g.span(ox, g.w) {
                        let i = y * g.w + x;
                        if best.is_none_or(|b| prefer(plane[b], plane[i])) {
                            best = Some(i);
                        }
                    }
                }
                dx[best.expect("windows are never empty")] += grad[oy * g.ow + ox];
            }
        }
        dx
    }

    /// Against the scan, on planes full of ties (three values) and some NaNs, for
    /// several window sizes, strides, paddings and odd plane sizes.
    #[test]
    fn the_separable_backward_routes_as_the_scan() {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for (k, stride, pad, h, w) in [
            (3, 2, 1, 9, 11),
            (2, 2, 0, 8, 6),
            (3, 1, 1, 7, 5),
            (3, 3, 0, 10, 9),
        ] {
            let out = |len: usize| (len + 2 * pad - k) / stride + 1;
            let g = PoolGeometry {
                h,
                w,
                k,
                stride,
                pad,
                oh: out(h),
                ow: out(w),
            };
            for _ in 0..200 {
                let plane: Vec<f32> = (0..h * w)
                    .map(|_| match next() % 16 {
                        0 => f32::NAN,
                        r => (r % 3) as f32,
                    })
                    .collect();
                let grad: Vec<f32> = (0..g.plane_out()).map(|i| (i + 1) as f32).collect();
                assert_eq!(
                    backward(&g, &plane, &grad),
                    by_scan(&g, &plane, &grad),
                    "k{k} s{stride} p{pad} {h}x{w}: {plane:?}"
                );
            }
        }
    }
}
