//! Hand-written CPU kernels for the operations that dominate a forward + backward
//! pass: dense convolution as im2col + the `gemm` crate (the matrix product Candle's
//! own CPU backend is built on), called on buffers laid out for it, and rectifiers
//! whose rule-following backward is one fused pass.
//!
//! Each kernel is a Candle custom op with a CPU forward only. [`super::ops`] sends f32
//! tensors on the CPU here and everything else (CUDA, other dtypes) through Candle's
//! own operations, so the same model code runs on every device.

mod conv;
mod depthwise;
mod rectify;

pub(crate) use conv::{ConvGeometry, conv2d};
pub(crate) use depthwise::depthwise_conv2d;
pub(crate) use rectify::rectify;

use candle_core::{CpuStorage, Layout, Result, bail};

/// The f32 elements `layout` selects from `storage`, which must be contiguous (the
/// callers make their inputs contiguous before applying an op).
fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("cpu kernel: non-contiguous input {:?}", layout.stride())
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// Whether `t` is served by these kernels.
pub(crate) fn applies(t: &candle_core::Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}
