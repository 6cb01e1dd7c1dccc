//! 3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 output
//! tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for its 4x4 input tile `d`, so the 16 entries
//! of the transformed tiles become 16 independent matrix products
//! `M_ξ[C_out, tiles] = U_ξ[C_out, C_in] · V_ξ[C_in, tiles]`, with 16 multiplies per
//! 4 outputs instead of 36: 2.25x fewer than im2col. Most of ResNet's and all of
//! VGG's convolutions have this shape, and so does their input gradient.
//!
//! Transforms (the paper's F(2x2, 3x3) matrices):
//! `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`,
//! `G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]`, `Aᵀ = [1 1 1 0; 0 1 -1 -1]`.

use gemm::Parallelism;

use super::conv::ConvGeometry;
use super::matmul::{Mat, matmul};
use super::{Element, for_each_chunk, with_scratch, zero};

/// Whether [`sample`] computes this convolution: 3x3 at stride 1, with outputs of at
/// least 32 tiles. (Below that, ResNet's 7x7 maps, the 16 products are too thin to
/// run at speed: measured 2.7 ms against im2col's 2.4 ms for 512 channels at 7x7.)
pub(super) fn applies(g: &ConvGeometry) -> bool {
    let (th, tw) = tiles(g);
    g.k == 3 && g.stride == 1 && th * tw >= 32
}

/// `U = G g Gᵀ` for every (output, input) channel pair of `kernel: [C_out, C_in, 3,
/// 3]`, laid out `[C_out][16][C_in]`: `U_ξ` is the `C_out x C_in` matrix with rows
/// `16 * C_in` apart. One output channel per task.
pub(super) fn transform_kernel<T: Element>(g: &ConvGeometry, kernel: &[T]) -> Vec<T> {
    let mut u = vec![zero(); 16 * g.c_out * g.c_in];
    let half = T::from_f64(0.5);
    for_each_chunk(&mut u, 16 * g.c_in, true, |o, u| {
        let filters = kernel[o * g.c_in * 9..][..g.c_in * 9].chunks_exact(9);
        for (i, w) in filters.enumerate() {
            // G g: 4 rows of 3.
            let mut gg = [[zero(); 3]; 4];
            for c in 0..3 {
                let (a, b, d) = (w[c], w[3 + c], w[6 + c]);
                gg[0][c] = a;
                gg[1][c] = (a + b + d) * half;
                gg[2][c] = (a - b + d) * half;
                gg[3][c] = d;
            }
            // (G g) Gᵀ: 4 x 4.
            for (r, [a, b, d]) in gg.into_iter().enumerate() {
                let entries = [a, (a + b + d) * half, (a - b + d) * half, d];
                for (c, v) in entries.into_iter().enumerate() {
                    u[(r * 4 + c) * g.c_in + i] = v;
                }
            }
        }
    });
    u
}

/// Tiles of 2x2 outputs along each axis.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(2), g.ow.div_ceil(2))
}

/// `V = Bᵀ d B` for every 4x4 input tile `d` of one channel `plane`, into
/// `v: [16][tiles]`.
fn transform_input<T: Element>(g: &ConvGeometry, plane: &[T], v: &mut [T]) {
    let (th, tw) = tiles(g);
    let count = th * tw;
    // Tile (ty, tx) covers rows 2ty .. 2ty + 4 and columns 2tx .. 2tx + 4 of the padded
    // image, whose pixel (y, x) is the plane's (y - top, x - left), zero outside.
    let at = |y: usize, x: usize| -> T {
        match (y.checked_sub(g.top), x.checked_sub(g.left)) {
            (Some(y), Some(x)) if y < g.h && x < g.w => plane[y * g.w + x],
            _ => zero(),
        }
    };
    let inside =
        |start: usize, before: usize, len: usize| start >= before && start + 4 <= len + before;
    for ty in 0..th {
        for tx in 0..tw {
            let (y, x) = (2 * ty, 2 * tx);
            let d: [[T; 4]; 4] = if inside(y, g.top, g.h) && inside(x, g.left, g.w) {
                // Interior tiles (nearly all): four row reads, no bounds logic.
                let base = (y - g.top) * g.w + x - g.left;
                std::array::from_fn(|r| {
                    let row = &plane[base + r * g.w..][..4];
                    [row[0], row[1], row[2], row[3]]
                })
            } else {
                std::array::from_fn(|r| std::array::from_fn(|c| at(y + r, x + c)))
            };
            // Bᵀ d: combine rows.
            let t = [
                sub(d[0], d[2]),
                add(d[1], d[2]),
                sub(d[2], d[1]),
                sub(d[1], d[3]),
            ];
            // (Bᵀ d) B: combine columns.
            let tile = ty * tw + tx;
            for (r, [a, b, c, e]) in t.into_iter().enumerate() {
                let entries = [a - c, b + c, c - b, b - e];
                for (col, value) in entries.into_iter().enumerate() {
                    v[(r * 4 + col) * count + tile] = value;
                }
            }
        }
    }
}

fn add<T: Element>(a: [T; 4], b: [T; 4]) -> [T; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

fn sub<T: Element>(a: [T; 4], b: [T; 4]) -> [T; 4] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

/// `Y = Aᵀ m A + bias` for output channel `o`'s tiles, from `m: [16][C_out][tiles]`,
/// written into its `oh x ow` plane (tiles past the edge are cut).
fn transform_output<T: Element>(g: &ConvGeometry, m: &[T], o: usize, bias: T, out: &mut [T]) {
    let (th, tw) = tiles(g);
    let count = th * tw;
    let entry = |e: usize, tile: usize| m[(e * g.c_out + o) * count + tile];
    for ty in 0..th {
        for tx in 0..tw {
            let tile = ty * tw + tx;
            let row = |r: usize| [0, 1, 2, 3].map(|c| entry(r * 4 + c, tile));
            let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
            // Aᵀ m: two rows; then columns.
            let s0 = add(add(m0, m1), m2);
            let s1 = sub(sub(m1, m2), m3);
            for (dy, [a, b, c, d]) in [s0, s1].into_iter().enumerate() {
                let y = 2 * ty + dy;
                if y >= g.oh {
                    continue;
                }
                let x = 2 * tx;
                out[y * g.ow + x] = a + b + c + bias;
                if x + 1 < g.ow {
                    out[y * g.ow + x + 1] = b - c - d + bias;
                }
            }
        }
    }
}

/// The convolution of one sample `x: [C_in, H, W]` into `out: [C_out, oh, ow]`, given
/// the kernel transformed by [`transform_kernel`]. With `parallelism`, channels and
/// the 16 products are spread over threads (no product is split: each is small).
pub(super) fn sample<T: Element>(
    g: &ConvGeometry,
    u: &[T],
    x: &[T],
    bias: &[T],
    out: &mut [T],
    parallelism: Parallelism,
) {
    let (th, tw) = tiles(g);
    let count = th * tw;
    let (v_len, m_len) = (16 * g.c_in * count, 16 * g.c_out * count);
    let parallel = matches!(parallelism, Parallelism::Rayon(_));
    with_scratch(v_len + m_len, |buf: &mut [T]| {
        let (v, m) = buf.split_at_mut(v_len);
        // v: [C_in][16][tiles], one channel per task.
        for_each_chunk(v, 16 * count, parallel, |i, v| {
            transform_input(g, &x[i * g.h * g.w..][..g.h * g.w], v);
        });
        // m: [16][C_out][tiles]; product ξ reads V_ξ, rows 16 * tiles apart.
        let v: &[T] = v;
        for_each_chunk(m, g.c_out * count, parallel, |e, m| {
            let u = Mat::strided(&u[e * g.c_in..], g.c_out, g.c_in, 16 * g.c_in);
            let v = Mat::strided(&v[e * count..], g.c_in, count, 16 * count);
            matmul(m, u, v, false, Parallelism::None);
        });
        let m: &[T] = m;
        for_each_chunk(out, g.oh * g.ow, parallel, |o, out| {
            transform_output(g, m, o, bias[o], out);
        });
    });
}
