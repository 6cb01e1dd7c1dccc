//! 3x3, stride-1 convolution by Winograd's minimal filtering (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016). F(m x m, 3x3) computes each
//! m x m output tile as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` from its (m+2) x (m+2) input
//! tile `d`, so the (m+2)² entries of the transformed tiles become independent
//! matrix products `M_ξ[C_out, tiles] = U_ξ[C_out, C_in] · V_ξ[C_in, tiles]`.
//! Multiplies per output against im2col's 9: F(2x2, 3x3) 16/4 = 4, F(4x4, 3x3)
//! 36/16 = 2.25. Most of ResNet's and all of VGG's convolutions have this shape, and
//! so does their input gradient.
//!
//! Both need 16 or more channels each way (see [`plan`]); F(4x4, 3x3) serves maps
//! that it tiles with no more padding than F(2x2, 3x3), which serves the rest. Where
//! a map has few tiles, the tiles of several samples share each product (a 7 px map
//! has 4 of F(4x4)); where even the batch's tiles are too few, the products are too
//! thin to run at speed and im2col serves (measured for F(2x2): 2.7 ms against
//! im2col's 2.4 ms for 512 channels at 7x7, one sample). A loaded
//! model's kernels never change, so their transforms are made once ([`KernelCache`]).
//! F(4x4)'s transforms scale by up to 8 (`Aᵀ`) and 5 (`Bᵀ`), so its float32 rounding
//! is larger than F(2x2)'s (largest float32 relative error in the engine reference
//! tests: 2.8e-6), far inside the engine's tolerances.
//!
//! The paper's matrices, F(2x2, 3x3): `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`,
//! `G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]`, `Aᵀ = [1 1 1 0; 0 1 -1 -1]`.
//! F(4x4, 3x3): `Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
//! 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`, `G = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙;
//! 1/24 -1/12 ⅙; 0 0 1]`, `Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0;
//! 0 1 -1 8 -8 1]`.

use std::any::{Any, TypeId};
use std::ops::{Add, Mul, Sub};
use std::sync::{Arc, Mutex, PoisonError};

use gemm::Parallelism;

use super::matmul::{Mat, matmul};
use super::{ConvGeometry, Element, for_each_chunk, with_avx2, with_scratch, zero};

/// One F(m x m, 3x3) algorithm: its one-dimensional transforms, applied along both
/// axes. Arrays are sized for the largest tile; entries past `N` (or `M`) are unused.
trait Tiling {
    /// Input tile side, `m + 2`.
    const N: usize;
    /// Output tile side, `m`.
    const M: usize;
    /// `G w` for a kernel row or column.
    fn kernel<V: Value>(w: [V; 3]) -> [V; 6];
    /// `Bᵀ d` for an input tile row or column.
    fn input<V: Value>(d: [V; 6]) -> [V; 6];
    /// `Aᵀ m` for a product row or column.
    fn output<V: Value>(m: [V; 6]) -> [V; 4];
}

/// What the transforms compute with: one number ([`Element`]; the kernel's), or the
/// same entry of [`LANES`] tiles ([`Lanes`]; the input's and output's).
trait Value: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    /// `c` (in every lane).
    fn splat(c: f64) -> Self;
}

impl<T: Element> Value for T {
    #[inline(always)]
    fn splat(c: f64) -> Self {
        T::from_f64(c)
    }
}

/// Tiles transformed together: one AVX2 register of f32.
const LANES: usize = 8;

/// One entry of [`LANES`] consecutive tiles. The input and output transforms run on
/// these, so that each step of their arithmetic serves [`LANES`] tiles as one vector
/// operation and each entry is stored (or loaded) for all of them at once: tile by
/// tile, they were scalar code, 14% of a ResNet-18 forward + gradient.
#[derive(Clone, Copy)]
struct Lanes<T>([T; LANES]);

impl<T: Element> Value for Lanes<T> {
    #[inline(always)]
    fn splat(c: f64) -> Self {
        Lanes([T::from_f64(c); LANES])
    }
}

/// Lane-wise `+`, `-`, `*`.
macro_rules! lane_wise {
    ($($op:ident $f:ident),*) => {$(
        impl<T: Element> $op for Lanes<T> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, rhs: Self) -> Self {
                // A loop: `array::from_fn`'s closure is left uninlined.
                let mut out = self.0;
                for (o, r) in out.iter_mut().zip(rhs.0) {
                    *o = o.$f(r);
                }
                Lanes(out)
            }
        }
    )*};
}
lane_wise!(Add add, Sub sub, Mul mul);

impl<T: Element> Lanes<T> {
    /// The first `lanes` elements of `src` (the other lanes keep their values).
    #[inline(always)]
    fn load(&mut self, src: &[T], lanes: usize) {
        match lanes {
            LANES => self.0.copy_from_slice(&src[..LANES]),
            _ => self.0[..lanes].copy_from_slice(&src[..lanes]),
        }
    }

    /// Writes every lane to the start of `dst`: lanes past the last tile land on
    /// entries the caller writes later, or on slack. (The first `lanes` alone took a
    /// `memmove` call wherever fewer than [`LANES`] were left, as every group of a
    /// 7-tile row is.)
    #[inline(always)]
    fn store(&self, dst: &mut [T]) {
        dst[..LANES].copy_from_slice(&self.0);
    }
}

/// F(2x2, 3x3).
struct F2;

impl Tiling for F2 {
    const N: usize = 4;
    const M: usize = 2;

    #[inline(always)]
    fn kernel<V: Value>([a, b, c]: [V; 3]) -> [V; 6] {
        let (half, zero) = (V::splat(0.5), V::splat(0.0));
        [a, (a + b + c) * half, (a - b + c) * half, c, zero, zero]
    }

    #[inline(always)]
    fn input<V: Value>([d0, d1, d2, d3, ..]: [V; 6]) -> [V; 6] {
        let zero = V::splat(0.0);
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3, zero, zero]
    }

    #[inline(always)]
    fn output<V: Value>([m0, m1, m2, m3, ..]: [V; 6]) -> [V; 4] {
        let zero = V::splat(0.0);
        [m0 + m1 + m2, m1 - m2 - m3, zero, zero]
    }
}

/// F(4x4, 3x3).
struct F4;

impl Tiling for F4 {
    const N: usize = 6;
    const M: usize = 4;

    #[inline(always)]
    fn kernel<V: Value>([a, b, c]: [V; 3]) -> [V; 6] {
        let k = V::splat;
        let (sum, alternating) = (a + b + c, a - b + c);
        let (outer, middle) = (a * k(1.0 / 24.0) + c * k(1.0 / 6.0), b * k(1.0 / 12.0));
        [
            a * k(0.25),
            sum * k(-1.0 / 6.0),
            alternating * k(-1.0 / 6.0),
            outer + middle,
            outer - middle,
            c,
        ]
    }

    #[inline(always)]
    fn input<V: Value>([d0, d1, d2, d3, d4, d5]: [V; 6]) -> [V; 6] {
        let k = V::splat;
        let (four, five, two) = (k(4.0), k(5.0), k(2.0));
        [
            four * d0 - five * d2 + d4,
            d4 + d3 - four * (d1 + d2),
            d4 - d3 + four * (d1 - d2),
            d4 - d2 + two * (d3 - d1),
            d4 - d2 - two * (d3 - d1),
            four * d1 - five * d3 + d5,
        ]
    }

    #[inline(always)]
    fn output<V: Value>([m0, m1, m2, m3, m4, m5]: [V; 6]) -> [V; 4] {
        let k = V::splat;
        let (sum12, diff12, sum34, diff34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [
            m0 + sum12 + sum34,
            diff12 + k(2.0) * diff34,
            sum12 + k(4.0) * sum34,
            diff12 + k(8.0) * diff34 + m5,
        ]
    }
}

/// The algorithm that computes a convolution (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    F2,
    F4,
}

/// The algorithm for `g`, if any. Only where both channel counts are 16 or more:
/// on VGG's first layer (3 -> 64 channels at 224 px) F(2x2) took 14.8 ms against
/// im2col's 3.5, and 8.5 against 3.7 for its input gradient (in-process, one
/// sample). Then F(4x4) where its padded tiles still take fewer elementwise
/// products than F(2x2)'s (at 14 px, 16 tiles of 36 against 49 of 16; at 6 px, 4 of
/// 36 against 9 of 16 is no gain) and a map has 4 of them (7 px); else F(2x2) where
/// a map has 32 of its tiles; else im2col.
///
/// The choice depends on the geometry only, never on the batch size: the
/// algorithms round differently, and on images with flat regions (the demo world's
/// backgrounds) equal activations become unequal in different ways, so max pooling
/// routes the gradient to other pixels (on the demo model, with a choice by batch
/// size tried first: saliency maps 4% apart between a batch of 3, which took F(2x2)
/// at 16 px, and a batch of 4, which took F(4x4)). A single sample
/// pays for it at 7 px, where its 4 tiles make thin products (ResNet-18 forward +
/// gradient at batch 1, best of three runs: 42.7 -> 45.1 ms); the batches of
/// SmoothGrad, integrated gradients and occlusion gain (see [`group_size`]).
///
/// Measured: with transformed kernels kept ([`KernelCache`]), per sample in-process,
/// F(2x2) -> F(4x4), ms on one thread / two: at 28 px 128 -> 128 channels 1.62 ->
/// 1.31 / 0.85 -> 0.67, 256 -> 256 6.5 -> 4.6 / 3.1 -> 2.2, 512 -> 512 21.0 -> 15.4 /
/// 10.8 -> 7.8. ResNet-18 at batch 16, its three 3x3 convolutions per map size,
/// forward (`bench engine` with per-op timers): at 7 px (512 channels) im2col 68,
/// F(2x2) 38, F(4x4) 26, the last two with the batch's 16 samples in each product.
/// At 14 px, F(2x2) -> F(4x4), forward / input gradient of one layer (in-process,
/// two threads, the two alternating four times, second best of five each): 256 ->
/// 256 channels at batch 1 0.78 / 0.81 -> 0.61 / 0.71 ms, at batch 16 11.4 / 12.3 ->
/// 10.5 / 11.5; 512 -> 512 (VGG) at batch 1 3.3 / 3.5 -> 2.9 / 3.2, at batch 16 40 /
/// 42 -> 32 / 34. (Before the transforms ran on [`Lanes`], F(4x4) measured slower
/// there.)
pub(super) fn plan(g: &ConvGeometry) -> Option<Plan> {
    if g.k != 3 || g.stride != 1 || g.c_in.min(g.c_out) < 16 {
        return None;
    }
    // Elementwise products per map: one per entry of each transformed tile.
    let products = |tiles: usize, n: usize| tiles * n * n;
    let f4_fewer = products(tile_count::<F4>(g), F4::N) < products(tile_count::<F2>(g), F2::N);
    if f4_fewer && tile_count::<F4>(g) >= 4 {
        Some(Plan::F4)
    } else if tile_count::<F2>(g) >= 32 {
        Some(Plan::F2)
    } else {
        None
    }
}

/// Tiles a matrix product should have at least, where the batch allows.
const GROUP_TILES: usize = 192;

/// Samples per matrix product for maps of `count` tiles in a batch of `n`: one
/// where a map alone has [`GROUP_TILES`], else enough for that many. A 7 px map has
/// 4 tiles of F(4x4): alone, each of its products reads a 512 x 512 kernel matrix
/// for 4 columns; the 16 samples of a batch together give 64. The batch is cut
/// into groups of near-equal size, as many as a multiple of the thread count where
/// they run side by side, so that no thread idles while another finishes a group.
fn group_size(count: usize, n: usize) -> usize {
    let n = n.max(1);
    let threads = rayon::current_num_threads();
    let mut groups = n.div_ceil(GROUP_TILES.div_ceil(count).min(n));
    if groups > threads {
        groups = groups.next_multiple_of(threads);
    }
    n.div_ceil(groups)
}

impl Plan {
    /// Samples per matrix product in a batch of `n` ([`group_size`]).
    pub(super) fn group(self, g: &ConvGeometry, n: usize) -> usize {
        let count = match self {
            Plan::F2 => tile_count::<F2>(g),
            Plan::F4 => tile_count::<F4>(g),
        };
        group_size(count, n)
    }

    /// `U = G g Gᵀ` for every (output, input) channel pair of `kernel: [C_out, C_in,
    /// 3, 3]`, laid out `[C_out][N²][C_in]`: `U_ξ` is the `C_out x C_in` matrix with
    /// rows `N² * C_in` apart.
    pub(super) fn transform_kernel<T: Element>(self, g: &ConvGeometry, kernel: &[T]) -> Vec<T> {
        match self {
            Plan::F2 => kernel_of::<F2, T>(g, kernel),
            Plan::F4 => kernel_of::<F4, T>(g, kernel),
        }
    }

    /// The convolution of a group of samples `x: [S, C_in, H, W]` into `out: [S,
    /// C_out, oh, ow]`, their tiles side by side in each matrix product, given the
    /// kernel transformed by [`Plan::transform_kernel`]. With `parallelism`,
    /// channels and the products are spread over threads (no product is split:
    /// each is small).
    pub(super) fn convolve<T: Element>(
        self,
        g: &ConvGeometry,
        u: &[T],
        x: &[T],
        bias: &[T],
        out: &mut [T],
        parallelism: Parallelism,
    ) {
        match self {
            Plan::F2 => group_with::<F2, T>(g, u, x, bias, out, parallelism),
            Plan::F4 => group_with::<F4, T>(g, u, x, bias, out, parallelism),
        }
    }
}

/// The transformed kernels of one convolution whose kernel never changes (a loaded
/// model's, not a trainable one's), made on first use and kept with the layer. A
/// transform reads the kernel and writes 16/9 (F(2x2)) or 4 (F(4x4)) times its size:
/// made per call, forward and input gradient, it took ~6% of a ResNet-18 batch-1
/// forward + gradient.
#[derive(Debug, Default)]
pub(crate) struct KernelCache {
    made: Mutex<Vec<(CacheKey, Arc<dyn Any + Send + Sync>)>>,
}

/// What a transformed kernel serves: the algorithm, the direction (the input
/// gradient convolves with the flipped kernel), the element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CacheKey {
    plan: Plan,
    flipped: bool,
    element: TypeId,
}

impl KernelCache {
    /// The kernel `make` transforms for `plan` (`flipped` for the input gradient):
    /// from `cache` if made before, else made, and kept there if there is a cache.
    pub(super) fn get_or_make<T: Element>(
        cache: Option<&Self>,
        plan: Plan,
        flipped: bool,
        make: impl FnOnce() -> Vec<T>,
    ) -> Arc<Vec<T>> {
        let Some(cache) = cache else {
            return Arc::new(make());
        };
        let key = CacheKey {
            plan,
            flipped,
            element: TypeId::of::<T>(),
        };
        // A panic cannot leave the list half-written: entries are pushed whole.
        let made = || cache.made.lock().unwrap_or_else(PoisonError::into_inner);
        let found = made()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, u)| u.clone());
        if let Some(u) = found.and_then(|u| u.downcast::<Vec<T>>().ok()) {
            return u;
        }
        // Made outside the lock: it runs on rayon's threads. Two callers racing both
        // make it; the first kept serves later calls.
        let u = Arc::new(make());
        made().push((key, u.clone()));
        u
    }
}

/// Tiles along each axis.
fn tiles<W: Tiling>(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(W::M), g.ow.div_ceil(W::M))
}

fn tile_count<W: Tiling>(g: &ConvGeometry) -> usize {
    let (th, tw) = tiles::<W>(g);
    th * tw
}

/// [`Plan::transform_kernel`] for one algorithm; one output channel per task, each
/// pair's entries first gathered per input channel (contiguous), then spread to the
/// `N²` matrices (contiguous rows of `C_in`).
fn kernel_of<W: Tiling, T: Element>(g: &ConvGeometry, kernel: &[T]) -> Vec<T> {
    let entries = W::N * W::N;
    let mut u = vec![zero(); entries * g.c_out * g.c_in];
    for_each_chunk(&mut u, entries * g.c_in, true, |o, u| {
        with_scratch(entries * g.c_in, |pairs: &mut [T]| {
            let filters = kernel[o * g.c_in * 9..][..g.c_in * 9].chunks_exact(9);
            for (w, pair) in filters.zip(pairs.chunks_exact_mut(entries)) {
                // G g: transform the three columns, giving N rows of 3.
                let mut columns = [[zero(); 6]; 3];
                for (c, column) in columns.iter_mut().enumerate() {
                    *column = W::kernel([w[c], w[3 + c], w[6 + c]]);
                }
                // (G g) Gᵀ: transform each row.
                for (r, entries) in pair.chunks_exact_mut(W::N).enumerate() {
                    let row = W::kernel([columns[0][r], columns[1][r], columns[2][r]]);
                    entries.copy_from_slice(&row[..W::N]);
                }
            }
            for (e, u) in u.chunks_exact_mut(g.c_in).enumerate() {
                for (u, pair) in u.iter_mut().zip(pairs.chunks_exact(entries)) {
                    *u = pair[e];
                }
            }
        });
    });
    u
}

/// Elements read from one padded input row for [`LANES`] tiles: `LANES · M + 2` for
/// the widest tiling's `M` is 34; [`gather`]'s shifted loads reach 36; whole
/// vectors, 40.
const SPAN: usize = LANES * 5;

/// Entry `c` of each of [`LANES`] tiles side by side in one padded input row, for
/// `c < N`, into `columns[c]`: lane `l` of column `c` is `span[M l + c]`.
#[inline(always)]
fn gather<W: Tiling, T: Element>(span: &[T; SPAN], columns: &mut [Lanes<T>; 6]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(span), Some(columns)) = (
        (span as &dyn Any).downcast_ref::<[f32; SPAN]>(),
        (columns as &mut dyn Any).downcast_mut::<[Lanes<f32>; 6]>(),
    ) && std::is_x86_feature_detected!("avx2")
    {
        // SAFETY: the CPU has AVX2.
        unsafe { avx2::gather(W::M, span, columns) };
        return;
    }
    for l in 0..LANES {
        for (c, column) in columns.iter_mut().enumerate().take(W::N) {
            column.0[l] = span[W::M * l + c];
        }
    }
}

/// Row `dy` of [`LANES`] tiles side by side plus `bias`, into the output row `dst`
/// that starts at the first tile's left edge: lane `l`'s pixel `c` is `dst[M l +
/// c]`, for as many as `dst` holds (the output's right edge cuts the last tiles).
#[inline(always)]
fn scatter<W: Tiling, T: Element>(row: &[Lanes<T>; 4], bias: T, dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(row), Some(&bias)) = (
        (row as &dyn Any).downcast_ref::<[Lanes<f32>; 4]>(),
        (&bias as &dyn Any).downcast_ref::<f32>(),
    ) && std::is_x86_feature_detected!("avx2")
    {
        // SAFETY: `T` is f32 (the downcasts succeeded), so `dst` holds f32s.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), dst.len()) };
        // SAFETY: the CPU has AVX2.
        unsafe { avx2::scatter(W::M, row, bias, dst) };
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d = row[i % W::M].0[i / W::M] + bias;
    }
}

/// [`gather`] for float32 by vector shuffles. Element by element, each lane was
/// stored to the stack and the vector loaded back, a load that waits for those eight
/// stores: the input transform took 4.8 µs per 56 x 56 plane of F(4x4), 2.1 µs with
/// these shuffles (and whole-vector stores into `v`; in-process, best of three runs
/// of 20000 planes). The columns are stored through pointers: returned as an array
/// (built by `map`, or transmuted), they went through calls and copies, 7.9-15.7 µs.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{LANES, Lanes, SPAN};

    // Every shuffle here moves eight floats: one AVX2 register per `Lanes`.
    const _: () = assert!(LANES == 8);

    /// Columns `0 .. m + 2` of eight tiles of side `m` (2 or 4).
    #[target_feature(enable = "avx2")]
    pub(super) fn gather(m: usize, span: &[f32; SPAN], columns: &mut [Lanes<f32>; 6]) {
        let mut store = |c: usize, v: __m256| {
            // SAFETY: a column holds eight floats.
            unsafe { _mm256_storeu_ps(columns[c].0.as_mut_ptr(), v) }
        };
        if m == 4 {
            let [c0, c1, c2, c3] = deinterleave4(span, 0);
            let [c4, c5, _, _] = deinterleave4(span, 4);
            for (c, v) in [c0, c1, c2, c3, c4, c5].into_iter().enumerate() {
                store(c, v);
            }
        } else {
            let [c0, c1] = deinterleave2(span, 0);
            let [c2, c3] = deinterleave2(span, 2);
            for (c, v) in [c0, c1, c2, c3].into_iter().enumerate() {
                store(c, v);
            }
        }
    }

    /// [`super::scatter`] for eight tiles of side `m` (2 or 4): the inverse
    /// shuffles of [`deinterleave4`] and [`deinterleave2`], whole vectors stored
    /// while `dst` has room for them, the rest by a masked store.
    #[target_feature(enable = "avx2")]
    pub(super) fn scatter(m: usize, row: &[Lanes<f32>; 4], bias: f32, dst: &mut [f32]) {
        let bias = _mm256_set1_ps(bias);
        // SAFETY: a lane array holds eight floats.
        let load = |c: usize| _mm256_add_ps(unsafe { _mm256_loadu_ps(row[c].0.as_ptr()) }, bias);
        let mut pixels = [_mm256_setzero_ps(); 4];
        if m == 4 {
            let (k0, k1, k2, k3) = (load(0), load(1), load(2), load(3));
            // Pixels 0, 1 (then 2, 3) of tiles 0, 1 | 4, 5 (then of 2, 3 | 6, 7).
            let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(k0, k1));
            let t1 = _mm256_castps_pd(_mm256_unpackhi_ps(k0, k1));
            let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(k2, k3));
            let t3 = _mm256_castps_pd(_mm256_unpackhi_ps(k2, k3));
            let r0 = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)); // tiles 0 | 4
            let r1 = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)); // tiles 1 | 5
            let r2 = _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)); // tiles 2 | 6
            let r3 = _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)); // tiles 3 | 7
            pixels = [
                _mm256_permute2f128_ps::<0x20>(r0, r1),
                _mm256_permute2f128_ps::<0x20>(r2, r3),
                _mm256_permute2f128_ps::<0x31>(r0, r1),
                _mm256_permute2f128_ps::<0x31>(r2, r3),
            ];
        } else {
            let (k0, k1) = (load(0), load(1));
            let low = _mm256_unpacklo_ps(k0, k1); // tiles 0, 1 | 4, 5
            let high = _mm256_unpackhi_ps(k0, k1); // tiles 2, 3 | 6, 7
            pixels[0] = _mm256_permute2f128_ps::<0x20>(low, high);
            pixels[1] = _mm256_permute2f128_ps::<0x31>(low, high);
        }
        for (chunk, &v) in dst.chunks_mut(8).zip(&pixels) {
            if chunk.len() == 8 {
                // SAFETY: the chunk holds eight floats.
                unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), v) };
            } else {
                let n = _mm256_set1_epi32(chunk.len() as i32);
                let mask = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                // SAFETY: the mask selects the chunk's first `len` floats.
                unsafe { _mm256_maskstore_ps(chunk.as_mut_ptr(), mask, v) };
            }
        }
    }

    /// The four phases of `span[from .. from + 32]`: phase `k` holds elements `k, k +
    /// 4, .., k + 28`. Each 128-bit half of a load is one tile's four; halves are
    /// paired (tiles 0 and 4, 1 and 5, ..), then transposed 4 x 4 within the halves.
    #[target_feature(enable = "avx2")]
    fn deinterleave4(span: &[f32; SPAN], from: usize) -> [__m256; 4] {
        let s = &span[from..from + 32];
        // SAFETY: each load reads eight floats of `s`.
        let (a, b, c, d) = unsafe {
            (
                _mm256_loadu_ps(s[..8].as_ptr()),
                _mm256_loadu_ps(s[8..16].as_ptr()),
                _mm256_loadu_ps(s[16..24].as_ptr()),
                _mm256_loadu_ps(s[24..32].as_ptr()),
            )
        };
        let r0 = _mm256_permute2f128_ps::<0x20>(a, c); // tiles 0 | 4
        let r1 = _mm256_permute2f128_ps::<0x31>(a, c); // tiles 1 | 5
        let r2 = _mm256_permute2f128_ps::<0x20>(b, d); // tiles 2 | 6
        let r3 = _mm256_permute2f128_ps::<0x31>(b, d); // tiles 3 | 7
        // Entries 0, 1 (then 2, 3) of tiles 0, 1 | 4, 5; of tiles 2, 3 | 6, 7.
        let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(r0, r1));
        let t1 = _mm256_castps_pd(_mm256_unpackhi_ps(r0, r1));
        let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(r2, r3));
        let t3 = _mm256_castps_pd(_mm256_unpackhi_ps(r2, r3));
        [
            _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
            _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)),
        ]
    }

    /// The even and odd elements of `span[from .. from + 16]`.
    #[target_feature(enable = "avx2")]
    fn deinterleave2(span: &[f32; SPAN], from: usize) -> [__m256; 2] {
        let s = &span[from..from + 16];
        // SAFETY: each load reads eight floats of `s`.
        let (a, b) = unsafe {
            (
                _mm256_loadu_ps(s[..8].as_ptr()),
                _mm256_loadu_ps(s[8..16].as_ptr()),
            )
        };
        // Within each 128-bit half, a's two then b's two; then the halves' 64-bit
        // pairs into order.
        let even = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(a, b));
        let odd = _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(a, b));
        [
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(even)),
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(odd)),
        ]
    }
}

/// `V = Bᵀ d B` for every input tile `d` of one channel `plane`, into `v: [N²][..]`
/// (entries `stride` apart, the plane's tiles at the start of each), [`LANES`] tiles
/// of one tile row at a time. Stores are whole vectors: each entry's row needs room
/// for [`LANES`] past the plane's last tile, and the caller writes whatever lies
/// there after this call.
fn transform_input<W: Tiling, T: Element>(
    g: &ConvGeometry,
    plane: &[T],
    (v, stride): (&mut [T], usize),
) {
    // The plane padded: its pixel (y, x) at (top + y, left + x), zeros around it,
    // far enough right for the last group of tiles to read SPAN. Every group of
    // tiles then reads its entries at fixed offsets, with no bounds logic.
    let (th, tw) = tiles::<W>(g);
    let width = tw.next_multiple_of(LANES) * W::M + SPAN;
    with_scratch((th * W::M + 2) * width, |padded: &mut [T]| {
        padded.fill(zero());
        for (y, row) in plane.chunks_exact(g.w).enumerate() {
            padded[(g.top + y) * width + g.left..][..g.w].copy_from_slice(row);
        }
        with_avx2!(transform_input_lanes::<W, T>(
            g,
            (padded, width),
            (v, stride)
        ))
    })
}

/// [`transform_input`] from the padded plane, rows `width` apart.
#[inline(always)]
fn transform_input_lanes<W: Tiling, T: Element>(
    g: &ConvGeometry,
    (padded, width): (&[T], usize),
    (v, stride): (&mut [T], usize),
) {
    let (th, tw) = tiles::<W>(g);
    let mut d = [[Lanes::splat(0.0); 6]; 6];
    let mut columns = [[Lanes::splat(0.0); 6]; 6];
    for ty in 0..th {
        for first in (0..tw).step_by(LANES) {
            // Lane l is tile (ty, first + l): its entry (r, c) is padded pixel
            // (M ty + r, M (first + l) + c). Lanes past the row's last tile read
            // zeros or the next tiles' pixels; they are never stored.
            for (r, d) in d.iter_mut().take(W::N).enumerate() {
                let span: &[T; SPAN] = padded[(W::M * ty + r) * width + W::M * first..][..SPAN]
                    .try_into()
                    .expect("the padded rows reach past every group");
                gather::<W, T>(span, d);
            }
            // Bᵀ d: transform the columns (column c of the result is columns[c]);
            // then each row of the result.
            for (c, column) in columns.iter_mut().enumerate().take(W::N) {
                *column = W::input([d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]]);
            }
            let tile = ty * tw + first;
            for r in 0..W::N {
                let t = &columns;
                let row = W::input([t[0][r], t[1][r], t[2][r], t[3][r], t[4][r], t[5][r]]);
                for (c, entry) in row.iter().enumerate().take(W::N) {
                    entry.store(&mut v[(r * W::N + c) * stride + tile..]);
                }
            }
        }
    }
}

/// `Y = Aᵀ m A + bias` for output channel `o`'s tiles, from `m: [N²][C_out][..]`
/// (rows `stride` apart, the plane's tiles at the start of each), written into its
/// `oh x ow` plane (tiles past the edge are cut), [`LANES`] tiles of one tile row at
/// a time. (Groups across tile rows, as before, wrote each lane's pixels one by one:
/// 2.7 µs per 56 x 56 plane of F(4x4); 1.8 µs by [`scatter`]'s shuffles, in-process,
/// three runs of 20000 planes.)
fn transform_output<W: Tiling, T: Element>(
    g: &ConvGeometry,
    (m, stride): (&[T], usize),
    o: usize,
    bias: T,
    out: &mut [T],
) {
    with_avx2!(transform_output_lanes::<W, T>(g, (m, stride), o, bias, out))
}

#[inline(always)]
fn transform_output_lanes<W: Tiling, T: Element>(
    g: &ConvGeometry,
    (m, stride): (&[T], usize),
    o: usize,
    bias: T,
    out: &mut [T],
) {
    let (th, tw) = tiles::<W>(g);
    let last_entry = (W::N * W::N - 1) * g.c_out + o;
    let mut product = [[Lanes::splat(0.0); 6]; 6];
    let mut columns = [[Lanes::splat(0.0); 4]; 6];
    for ty in 0..th {
        for first in (0..tw).step_by(LANES) {
            let tile = ty * tw + first;
            // Whole vectors wherever m has them (past a row's last tile they read
            // the next row; those lanes are never written): only m's end is short.
            let lanes = match last_entry * stride + tile + LANES <= m.len() {
                true => LANES,
                false => LANES.min(tw - first),
            };
            for (r, row) in product.iter_mut().enumerate().take(W::N) {
                for (c, p) in row.iter_mut().enumerate().take(W::N) {
                    let e = r * W::N + c;
                    p.load(&m[(e * g.c_out + o) * stride + tile..], lanes);
                }
            }
            // Aᵀ m: transform the columns (column c of the result is columns[c]);
            // then each row of the result.
            for (c, column) in columns.iter_mut().enumerate().take(W::N) {
                let p = &product;
                *column = W::output([p[0][c], p[1][c], p[2][c], p[3][c], p[4][c], p[5][c]]);
            }
            // The group's pixels of each output row, cut at the output's edges.
            let x = W::M * first;
            let width = (W::M * LANES).min(g.ow - x);
            for dy in 0..W::M.min(g.oh - W::M * ty) {
                let t = &columns;
                let row = W::output([t[0][dy], t[1][dy], t[2][dy], t[3][dy], t[4][dy], t[5][dy]]);
                let y = W::M * ty + dy;
                scatter::<W, T>(&row, bias, &mut out[y * g.ow + x..][..width]);
            }
        }
    }
}

fn group_with<W: Tiling, T: Element>(
    g: &ConvGeometry,
    u: &[T],
    x: &[T],
    bias: &[T],
    out: &mut [T],
    parallelism: Parallelism,
) {
    let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
    let samples = x.len() / (g.c_in * plane_in);
    let count = tile_count::<W>(g);
    // Columns of every product: each sample's tiles in turn.
    let columns = samples * count;
    // v's rows have room for a group of LANES tiles at the last tile, so that the
    // input transform stores whole vectors.
    let row = columns + LANES;
    let entries = W::N * W::N;
    let (v_len, m_len) = (entries * g.c_in * row, entries * g.c_out * columns);
    let parallel = matches!(parallelism, Parallelism::Rayon(_));
    with_scratch(v_len + m_len, |buf: &mut [T]| {
        let (v, m) = buf.split_at_mut(v_len);
        // v: [C_in][N²][row], one channel per task, samples in order (each one's
        // whole vectors reach into the next one's tiles, written after).
        for_each_chunk(v, entries * row, parallel, |i, v| {
            for s in 0..samples {
                let plane = &x[(s * g.c_in + i) * plane_in..][..plane_in];
                transform_input::<W, T>(g, plane, (&mut v[s * count..], row));
            }
        });
        // m: [N²][C_out][columns]; product ξ reads V_ξ, rows N² * row apart.
        let v: &[T] = v;
        for_each_chunk(m, g.c_out * columns, parallel, |e, m| {
            let u = Mat::strided(&u[e * g.c_in..], g.c_out, g.c_in, entries * g.c_in);
            let v = Mat::strided(&v[e * row..], g.c_in, columns, entries * row);
            matmul(m, u, v, false, Parallelism::None);
        });
        let m: &[T] = m;
        // One output plane (sample s, channel o) per task.
        for_each_chunk(out, plane_out, parallel, |plane, out| {
            let (s, o) = (plane / g.c_out, plane % g.c_out);
            transform_output::<W, T>(g, (&m[s * count..], columns), o, bias[o], out);
        });
    });
}
