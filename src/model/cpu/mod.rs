//! Hand-written CPU kernels for the operations that dominate a forward + backward
//! pass: dense convolution as im2col + the `gemm` crate (the matrix product Candle's
//! own CPU backend is built on), called on buffers laid out for it; depthwise
//! convolution directly; rectifiers whose rule-following backward is one fused pass;
//! max pooling with PyTorch's backward, without a trip through host vectors; fully
//! connected layers, bandwidth-bound at batch 1.
//!
//! Each kernel is a Candle custom op with a CPU forward only. [`super::ops`] sends f32
//! and f64 tensors on the CPU here and everything else (CUDA, other dtypes) through
//! Candle's own operations, so the same model code runs on every device.

mod conv;
mod conv_op;
mod depthwise;
mod linear;
mod matmul;
mod max_pool;
mod rectify;
mod winograd;

use std::cell::RefCell;
use std::thread::LocalKey;

pub(crate) use conv::{conv2d, conv2d_transpose};
pub(crate) use depthwise::{depthwise_conv2d, depthwise_conv2d_transpose};
pub(crate) use linear::linear;
pub(crate) use max_pool::{PoolGeometry, max_pool2d, max_pool2d_grad, max_pool2d_held};
pub(crate) use rectify::{hold, rectify, rectify_grad, rectify_sum};
pub(crate) use winograd::KernelCache;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor, WithDType, bail};
use rayon::prelude::*;

/// The element types the kernels serve: f32 (models) and f64 (reference checks,
/// where rounding must not decide a rectifier's mask).
pub(crate) trait Element: WithDType {
    /// This thread's reusable scratch buffers of this type.
    fn scratch() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

thread_local! {
    static SCRATCH_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Element for f32 {
    fn scratch() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &SCRATCH_F32
    }
}

impl Element for f64 {
    fn scratch() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &SCRATCH_F64
    }
}

/// Calls the generic kernel body `$f::<T>` for the element type of `$storage`.
macro_rules! by_dtype {
    ($storage:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match candle_core::backend::BackendStorage::dtype($storage) {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            dtype => candle_core::bail!("cpu kernel: unsupported dtype {dtype:?}"),
        }
    };
}
pub(crate) use by_dtype;

/// Runs `$body`, a call of an `#[inline(always)]` function, compiled for AVX2 where
/// the CPU has it (the crate is built for baseline x86-64, whose vectors are half as
/// wide), else as it is. An expression (it used to `return` from the enclosing
/// function, which skipped any code after it there).
macro_rules! with_avx2 {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let value = if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU has AVX2.
            unsafe { avx2(|| $body) }
        } else {
            $body
        };
        #[cfg(not(target_arch = "x86_64"))]
        let value = $body;
        value
    }};
}
pub(crate) use with_avx2;

/// The elements `layout` selects from `storage`, which must be contiguous (the
/// callers make their inputs contiguous before applying an op) and of type `T`.
fn elements<'a, T: Element>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("cpu kernel: non-contiguous input {:?}", layout.stride())
    };
    Ok(&T::cpu_storage_as_slice(storage)?[start..end])
}

/// Whether `t` is served by these kernels: f32 and f64 tensors on the CPU, unless
/// this thread is inside [`portable`].
pub(crate) fn applies(t: &Tensor) -> bool {
    serves(t.device()) && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Whether work on `device` goes to hand-written CPU code: on the CPU, unless this
/// thread is inside [`portable`].
pub(crate) fn serves(device: &Device) -> bool {
    device.is_cpu() && !PORTABLE.get()
}

thread_local! {
    static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread with these kernels switched off: every op takes its
/// device-independent Candle path, the one CUDA runs.
pub(crate) fn portable<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PORTABLE.set(self.0);
        }
    }
    let _restore = Restore(PORTABLE.replace(true));
    f()
}

/// Runs `f` with a scratch buffer of `len` elements (contents unspecified), taken
/// from this thread's buffers and given back after: buffers such as column matrices
/// are large (tens of MB on VGG's first layers), and a fresh allocation of that size
/// page-faults on every call. Calls nest (a kernel's tasks take their own, and a
/// rayon thread waiting in a join may start another kernel); each takes the smallest
/// free buffer that fits, else grows the largest, so the thread keeps about one
/// buffer per nesting level.
pub(super) fn with_scratch<T: Element, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let mut buf = T::scratch().with(|pool| {
        let mut pool = pool.borrow_mut();
        let fits = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len());
        let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
        pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
    });
    if buf.len() < len {
        buf.resize(len, zero());
    }
    let result = f(&mut buf[..len]);
    T::scratch().with(|pool| pool.borrow_mut().push(buf));
    result
}

/// `f(index, chunk)` for each `size`-element chunk of `data`, on rayon's threads if
/// `parallel`.
fn for_each_chunk<T: Send>(
    data: &mut [T],
    size: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if parallel {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `sum over i of a[i] * b[i]` for slices of one length, in independent lanes so
/// that it vectorizes (a single running sum is one serial chain of additions).
pub(super) fn dot<T: Element>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 16;
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .fold(zero(), |sum, (&a, &b)| sum + a * b);
    let mut lanes = [zero(); LANES];
    for (a, b) in a_blocks.zip(b_blocks) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    lanes.iter().fold(tail, |sum, &lane| sum + lane)
}

/// `len` zeros, written by rayon's threads. For the activation- and gradient-sized
/// outputs of the kernels: `vec![zero(); len]` asks the allocator for zeroed
/// memory, and a block the binary's allocator recycles (`cli::allocator`) is zeroed
/// by one `memset` on the calling thread while the other cores wait.
fn zeros<T: Element>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(zero::<T>(), len));
    v
}

/// `T`'s zero (Candle's element trait offers conversions, not constants).
fn zero<T: Element>() -> T {
    T::from_f64(0.0)
}

/// Sizes of one convolution: a `k x k` kernel over a `[C_in, H, W]` sample with
/// `stride`, zero-padded by `top` rows and `left` columns before the image (and
/// after it by whatever the output size `oh x ow` implies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub top: usize,
    pub left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    /// Rows of the column matrix: one per kernel weight of an output channel.
    fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Columns of the column matrix: output positions.
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn sample_in(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn sample_out(&self) -> usize {
        self.c_out * self.positions()
    }

    /// A 1x1 kernel at stride 1 without padding: the sample itself is the column matrix.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && (self.oh, self.ow) == (self.h, self.w)
    }

    /// Along one axis, for kernel offset `tap`: the output indices `lo..hi` whose input
    /// index `o * stride + tap - before` falls inside `0..len` (the rest read padding).
    fn inside(&self, tap: usize, before: usize, len: usize, out: usize) -> (usize, usize) {
        let lo = before.saturating_sub(tap).div_ceil(self.stride).min(out);
        let hi = match (len + before).checked_sub(tap + 1) {
            Some(last) => (last / self.stride + 1).min(out),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// Visits, for input channel `channel` of a sample, every stretch of a kernel tap's
    /// output row that reads the image: `f(tap, row, input, (lo, hi))` for tap
    /// `ky * k + kx`, output row start `row` (`oy * ow`), output columns `lo..hi`
    /// reading sample elements `input, input + stride, ...`. The rest reads padding.
    fn for_each_segment(
        &self,
        channel: usize,
        mut f: impl FnMut(usize, usize, usize, (usize, usize)),
    ) {
        let (k, s) = (self.k, self.stride);
        for ky in 0..k {
            let (y_lo, y_hi) = self.inside(ky, self.top, self.h, self.oh);
            for kx in 0..k {
                let (x_lo, x_hi) = self.inside(kx, self.left, self.w, self.ow);
                // A tap whose every output column reads padding has no input to
                // address (on maps smaller than the kernel, its start would not exist).
                if x_lo == x_hi {
                    continue;
                }
                for oy in y_lo..y_hi {
                    let iy = oy * s + ky - self.top;
                    let ix = x_lo * s + kx - self.left;
                    let input = (channel * self.h + iy) * self.w + ix;
                    f(ky * k + kx, oy * self.ow, input, (x_lo, x_hi));
                }
            }
        }
    }
}
