//! Fully connected layers, `x · wᵀ` for `x: [N, in]` and `w: [out, in]`, with a
//! backward pass that forms only the gradients needed.
//!
//! At batch 1 (interactive attribution) the product is a matrix-vector product bound
//! by reading `w` once: gemm, which Candle's matmul calls, reached 17.5 GB/s on
//! VGG's 25088 x 4096 classifier layer here (23.5 ms each way; PyTorch 16.5 ms), a
//! dot product per output row and a scaled row sum for the input gradient reach
//! PyTorch's. Larger batches go to gemm.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul::{Mat, matmul};
use super::{Element, by_dtype, dot, elements, zero};

/// Output rows per parallel task of the one-row product.
const ROWS_PER_TASK: usize = 64;
/// Input columns per parallel task of the one-row input gradient (its running sum
/// stays in the first-level cache).
const COLUMNS_PER_TASK: usize = 2048;

/// `x · wᵀ` for `x: [n, inputs]`, `w: [outputs, inputs]`.
fn value<T: Element>(x: &[T], w: &[T], n: usize, inputs: usize) -> Vec<T> {
    let outputs = w.len() / inputs;
    let mut y = vec![zero(); n * outputs];
    if n == 1 {
        y.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * inputs))
            .for_each(|(y, w)| {
                for (y, row) in y.iter_mut().zip(w.chunks_exact(inputs)) {
                    *y = dot(x, row);
                }
            });
    } else {
        let (x, w) = (Mat::new(x, n, inputs), Mat::new(w, outputs, inputs));
        matmul(&mut y, x, w.t(), false, Parallelism::Rayon(0));
    }
    y
}

/// `g · w` for `g: [n, outputs]`, `w: [outputs, inputs]`.
fn input_grad<T: Element>(g: &[T], w: &[T], n: usize, inputs: usize) -> Vec<T> {
    let outputs = w.len() / inputs;
    let mut dx = vec![zero(); n * inputs];
    if n == 1 {
        dx.par_chunks_mut(COLUMNS_PER_TASK)
            .enumerate()
            .for_each(|(task, dx)| {
                let start = task * COLUMNS_PER_TASK;
                for (&g, row) in g.iter().zip(w.chunks_exact(inputs)) {
                    let row = &row[start..start + dx.len()];
                    dx.iter_mut().zip(row).for_each(|(d, &w)| *d += g * w);
                }
            });
    } else {
        let (g, w) = (Mat::new(g, n, outputs), Mat::new(w, outputs, inputs));
        matmul(&mut dx, g, w, false, Parallelism::Rayon(0));
    }
    dx
}

/// `x · wᵀ` for `x: [N, in]` and `w: [out, in]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}

/// The `[rows, columns]` of a matrix layout.
fn dims2(l: &Layout) -> Result<(usize, usize)> {
    match l.dims() {
        &[rows, columns] => Ok((rows, columns)),
        dims => bail!("cpu linear: expected a matrix, got shape {dims:?}"),
    }
}

struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "cpu-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((n, inputs), (outputs, w_inputs)) = (dims2(x_l)?, dims2(w_l)?);
        if inputs != w_inputs {
            bail!("cpu linear: {inputs} inputs against a weight of {w_inputs}");
        }
        fn run<T: Element>(
            (x, x_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
            (n, inputs): (usize, usize),
        ) -> Result<CpuStorage> {
            let (x, w) = (elements(x, x_l)?, elements(w, w_l)?);
            Ok(T::to_cpu_storage_owned(value::<T>(x, w, n, inputs)))
        }
        let y = by_dtype!(x, run((x, x_l), (w, w_l), (n, inputs)))?;
        Ok((y, (n, outputs).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = x
            .track_op()
            .then(|| grad.apply_op2_no_bwd(&w.detach(), &InputGrad))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| grad.t()?.matmul(&x.detach()))
            .transpose()?;
        Ok((gx, gw))
    }
}

/// `(output gradient, w) -> input gradient`.
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "cpu-linear-input-grad"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        g_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, inputs) = (dims2(g_l)?.0, dims2(w_l)?.1);
        fn run<T: Element>(
            (g, g_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
            (n, inputs): (usize, usize),
        ) -> Result<CpuStorage> {
            let (g, w) = (elements(g, g_l)?, elements(w, w_l)?);
            Ok(T::to_cpu_storage_owned(input_grad::<T>(g, w, n, inputs)))
        }
        let dx = by_dtype!(g, run((g, g_l), (w, w_l), (n, inputs)))?;
        Ok((dx, (n, inputs).into()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    /// Values and the gradients of input and weight, one row (the direct kernels)
    /// and three (gemm), against Candle's matmul, in float64; odd sizes leave
    /// remainders in every loop.
    #[test]
    fn matches_candle() {
        let d = Device::Cpu;
        let var = |shape: (usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f64, 1., shape, &d).unwrap()).unwrap()
        };
        for n in [1, 3] {
            let (inputs, outputs) = (2 * COLUMNS_PER_TASK + 37, 2 * ROWS_PER_TASK + 5);
            let (x, w) = (var((n, inputs)), var((outputs, inputs)));
            let probe = Tensor::randn(0f64, 1., (n, outputs), &d).unwrap();
            let grads = |y: Tensor| {
                y.mul(&probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            };
            let ours = linear(x.as_tensor(), w.as_tensor()).unwrap();
            let theirs = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            let err = |a: &Tensor, b: &Tensor| {
                let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
                diff.to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            assert!(err(&ours, &theirs) < 1e-10, "value, n {n}");
            let (ours, theirs) = (grads(ours), grads(theirs));
            for (what, v) in [("input grad", &x), ("weight grad", &w)] {
                let e = err(ours.get(v).unwrap(), theirs.get(v).unwrap());
                assert!(e < 1e-10, "{what}, n {n}: {e:.2e}");
            }
        }
    }
}
