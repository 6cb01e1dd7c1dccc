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
    /// The index in `plane` of the first maximum of output cell `(oy, ox)`'s window
    /// (or its last NaN, as in PyTorch).
    fn argmax<T: Element>(&self, plane: &[T], oy: usize, ox: usize) -> usize {
        let span = |o: usize, len: usize| {
            let start = (o * self.stride).saturating_sub(self.pad);
            let end = (o * self.stride + self.k - self.pad).min(len);
            start..end
        };
        let (rows, cols) = (span(oy, self.h), span(ox, self.w));
        let mut best = rows.start * self.w + cols.start;
        for y in rows {
            for x in cols.clone() {
                let i = y * self.w + x;
                #[allow(clippy::eq_op)] // v != v: NaN, without a float trait
                if plane[i] > plane[best] || plane[i] != plane[i] {
                    best = i;
                }
            }
        }
        best
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.oh * self.ow
    }
}

fn forward<T: Element>(g: &PoolGeometry, x: &[T]) -> Vec<T> {
    let mut out = vec![zero(); x.len() / g.plane_in() * g.plane_out()];
    out.par_chunks_mut(g.plane_out())
        .zip(x.par_chunks(g.plane_in()))
        .for_each(|(out, plane)| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = plane[g.argmax(plane, i / g.ow, i % g.ow)];
            }
        });
    out
}

fn backward<T: Element>(g: &PoolGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let mut dx = vec![zero(); x.len()];
    dx.par_chunks_mut(g.plane_in())
        .zip(
            x.par_chunks(g.plane_in())
                .zip(grad.par_chunks(g.plane_out())),
        )
        .for_each(|(dx, (plane, grad))| {
            dx.fill(zero()); // written before read, as in conv's col2im
            for (i, &gr) in grad.iter().enumerate() {
                dx[g.argmax(plane, i / g.ow, i % g.ow)] += gr;
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
