//! What the image side's CPU ops share: reading a contiguous `f32` storage, and
//! [`pull`], the op that carries a gradient computed off the graph back down it.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::device::cpu_kernels;

/// `sum(x * g)` for a constant `g`: its gradient at `x` is `g`, so a backward from
/// it carries `g` down `x`'s graph. On the CPU one op whose backward is that alone.
pub(super) fn pull(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    anyhow::ensure!(
        x.dims() == g.dims(),
        "internal: a gradient of shape {:?} for {:?}",
        g.dims(),
        x.dims()
    );
    let g = g.detach().contiguous()?;
    if cpu_kernels(x.device()) && x.dtype() == DType::F32 {
        return Ok(x.contiguous()?.apply_op2(&g, Pull)?);
    }
    Ok((x * g)?.sum_all()?)
}

/// [`pull`]'s op: the sum of products forward; the gradient times `g` backward,
/// none for `g`.
struct Pull;

impl CustomOp2 for Pull {
    fn name(&self) -> &'static str {
        "featvis-pull"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_layout, "the pull op")?;
        let g = contiguous_f32(g, g_layout, "the pull op")?;
        let sum: f64 = x
            .par_chunks(1 << 16)
            .zip(g.par_chunks(1 << 16))
            .map(|(x, g)| x.iter().zip(g).map(|(a, b)| (a * b) as f64).sum::<f64>())
            .sum();
        Ok((CpuStorage::F32(vec![sum as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.broadcast_mul(grad)?), None))
    }
}

/// The `f32` values of a contiguous CPU tensor, for the image side's ops; `op`
/// names the op in the error.
pub(super) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs a contiguous tensor");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// `pull`'s value is the sum of products, and its gradient at `x` is `g`.
    #[test]
    fn pull_carries_the_gradient_down() {
        let n = 3 * 70_001;
        let value = |k: usize| ((k * 29 % 13) as f32 - 6.0) / 5.0;
        let x = Var::from_vec((0..n).map(value).collect(), (3, n / 3), &Device::Cpu).unwrap();
        let g: Vec<f32> = (0..n).map(|k| value(k + 3)).collect();
        let expected: f64 = (0..n).map(|k| (value(k) * g[k]) as f64).sum();
        let g = Tensor::from_vec(g, (3, n / 3), &Device::Cpu).unwrap();
        let sum = pull(&(x.as_tensor() * 2.0).unwrap(), &g).unwrap();
        let got = sum.to_scalar::<f32>().unwrap() as f64;
        assert!((got - 2.0 * expected).abs() < 1e-3 * expected.abs().max(1.0));
        let grads = sum.backward().unwrap();
        let grad = grads.get(x.as_tensor()).unwrap();
        let diff = (grad - (&g * 2.0).unwrap()).unwrap().abs().unwrap();
        assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    }
}
