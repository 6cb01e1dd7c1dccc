//! 2-D max pooling on the CPU with PyTorch's semantics: implicit -inf padding, floor
//! mode, and the whole gradient of a window to its first maximum in row order
//! (overlapping windows add up). One channel plane per parallel task each way.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{Element, by_dtype, elements, zero};

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
    fn span(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride).saturating_sub(self.pad);
        let end = (o * self.stride + self.k - self.pad).min(len);
        start..end
    }

    /// Every output column's span of input columns, computed once per call.
    fn column_spans(&self) -> Vec<std::ops::Range<usize>> {
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
/// along that one row. NaN if the window holds one, else its maximum: the value at
/// [`PoolGeometry::argmax`] (up to the sign of a zero maximum, as -0 == +0).
fn forward<T: Element>(g: &PoolGeometry, x: &[T]) -> Vec<T> {
    let mut out = vec![zero(); x.len() / g.plane_in() * g.plane_out()];
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

/// The gradient of each window to its first maximum (or last NaN), found by a scan
/// whose steps are selects rather than branches (which element wins is data).
fn backward<T: Element>(g: &PoolGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let mut dx = vec![zero(); x.len()];
    let spans = g.column_spans();
    dx.par_chunks_mut(g.plane_in())
        .zip(
            x.par_chunks(g.plane_in())
                .zip(grad.par_chunks(g.plane_out())),
        )
        .for_each(|(dx, (plane, grad))| {
            dx.fill(zero()); // written before read, as in conv's col2im
            for (oy, grad) in grad.chunks_exact(g.ow).enumerate() {
                let rows = g.span(oy, g.h);
                for (&gr, span) in grad.iter().zip(&spans) {
                    let first = rows.start * g.w + span.start;
                    let (mut best, mut max) = (first, plane[first]);
                    for y in rows.clone() {
                        let row = y * g.w;
                        for (x, &v) in plane[row + span.start..row + span.end].iter().enumerate() {
                            let wins = prefer(max, v);
                            best = if wins { row + span.start + x } else { best };
                            max = if wins { v } else { max };
                        }
                    }
                    dx[best] += gr;
                }
            }
        });
    dx
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
        let grad = grad.contiguous()?;
        Ok(Some(
            x.detach().apply_op2_no_bwd(&grad, &MaxPoolGrad(self.0))?,
        ))
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
