//! Transformation robustness: before each step the image is randomly padded,
//! jittered, scaled and rotated, so the optimizer cannot exploit a pixel-exact
//! pattern and must find what the unit responds to wherever it appears. Lucid's
//! `transform.standard_transforms` (and Lucent's), in order: pad 12 px with grey
//! 0.5, jitter by up to 8 px, scale by one of 0.90, 0.92, ..., 1.10, rotate by
//! -10..=10 degrees (0 five times more often), jitter by up to 4 px.
//!
//! Every one of these is an affine map of pixel coordinates, so the whole chain is
//! composed into one and the image is resampled once, bilinearly (one gather of
//! four neighbours and their weights; Candle differentiates the gather). Where a
//! pixel falls outside the image it takes the padding's grey, as Lucid's pad does.
//! The output is one size for every step, the padded image's: Lucent's grows and
//! shrinks with each draw's scale (by 10% at most), which costs the model up to 21%
//! more work and varies every buffer's size. At 1.1 the image's content still fits
//! (224 px scaled make 246 of the 248); only padding is cut.

use std::sync::Arc;

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Shape, Tensor};
use rand::Rng;
use rayon::prelude::*;

use super::op::contiguous_f32;
use crate::model::device::cpu_kernels;

/// The grey that padding and uncovered corners take.
const FILL: f64 = 0.5;

/// The random transforms of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Transforms {
    /// Padding on every side, in pixels.
    pub pad: usize,
    /// The first and second jitters' ranges: shifts in `0..d`.
    pub jitter: (usize, usize),
    /// Scales to draw from.
    pub scales: Vec<f64>,
    /// Angles to draw from, in degrees.
    pub angles: Vec<f64>,
}

impl Transforms {
    /// Lucid's `standard_transforms`.
    pub fn standard() -> Self {
        Self {
            pad: 12,
            jitter: (8, 4),
            scales: (0..11).map(|i| 1.0 + (i as f64 - 5.0) / 50.0).collect(),
            angles: (-10..=10).map(f64::from).chain([0.0; 5]).collect(),
        }
    }

    /// Lucid's transforms for an image of `size`: its pixel amounts (made for
    /// images of 224 px and more) scaled down in proportion for smaller ones, so a
    /// 64 px image is padded 3 px and jittered by up to 1 px then not at all (a
    /// jitter of 1 is no shift) rather than by a quarter of its width; scales and
    /// angles are kept. Shifts go right and down only, as Lucent's.
    pub fn standard_for((h, w): (usize, usize)) -> Self {
        let ratio = (h.min(w) as f64 / 224.0).min(1.0);
        let px = |n: usize| (n as f64 * ratio).round() as usize;
        let lucid = Self::standard();
        Self {
            pad: px(lucid.pad),
            jitter: (px(lucid.jitter.0).max(1), px(lucid.jitter.1).max(1)),
            ..lucid
        }
    }

    /// No transform at all: the image as it is.
    pub fn none() -> Self {
        Self {
            pad: 0,
            jitter: (0, 0),
            scales: vec![1.0],
            angles: vec![0.0],
        }
    }

    /// One draw of the chain for images of `size` `(rows, columns)`.
    pub fn draw(&self, size: (usize, usize), rng: &mut impl Rng) -> Warp {
        let shift = |d: usize, rng: &mut dyn rand::RngCore| {
            if d > 1 {
                (rng.random_range(0..d) as f64, rng.random_range(0..d) as f64)
            } else {
                (0.0, 0.0)
            }
        };
        let first = shift(self.jitter.0, rng);
        let scale = self.scales[rng.random_range(0..self.scales.len())];
        let angle = self.angles[rng.random_range(0..self.angles.len())];
        let second = shift(self.jitter.1, rng);
        Warp::new(size, self.pad, first, scale, angle, second)
    }
}

/// One affine resampling: output pixel `(y, x)` reads the source at
/// `source(y, x)`; the output is `out` pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Warp {
    /// Source rows and columns.
    size: (usize, usize),
    /// Output rows and columns.
    pub out: (usize, usize),
    /// `source = matrix * (y, x) + offset`, in pixel-centre coordinates.
    matrix: [[f64; 2]; 2],
    offset: [f64; 2],
}

impl Warp {
    /// The chain pad -> shift `first` -> scale about the top-left pixel (as an
    /// align-corners upsampling), centred on a canvas the padded image's size ->
    /// rotate by `angle` degrees about the centre -> shift `second`.
    fn new(
        (h, w): (usize, usize),
        pad: usize,
        first: (f64, f64),
        scale: f64,
        angle: f64,
        second: (f64, f64),
    ) -> Self {
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let scaled = |n: usize, s: f64| ((n as f64 * s).ceil() as usize).max(1);
        let (sh, sw) = (scaled(ph, scale), scaled(pw, scale));
        let (out_h, out_w) = (ph, pw);
        // Negative where the scaled image is larger than the canvas.
        let margin = |out: usize, s: usize| (out as f64 - s as f64) / 2.0;
        let (my, mx) = (margin(out_h, sh), margin(out_w, sw));
        // Align-corners scaling: the first and last pixel centres stay put.
        let ratio = |s: usize, n: usize| {
            if s > 1 {
                (n - 1) as f64 / (s - 1) as f64
            } else {
                1.0
            }
        };
        let (ry, rx) = (ratio(sh, ph), ratio(sw, pw));
        let (cy, cx) = ((out_h - 1) as f64 / 2.0, (out_w - 1) as f64 / 2.0);
        let (sin, cos) = angle.to_radians().sin_cos();
        // Inverse chain, from an output pixel back to the source:
        // undo `second`, undo the rotation about (cy, cx), undo the margin and the
        // scale, undo `first` and the padding.
        // Rotation by +angle, counter-clockwise on screen as kornia's: (dy, dx) to
        // (dy cos - dx sin, dx cos + dy sin) in (row, column) order; its inverse is
        // the transpose.
        let inverse_rotation = [[cos, sin], [-sin, cos]];
        let matrix = [
            [inverse_rotation[0][0] * ry, inverse_rotation[0][1] * ry],
            [inverse_rotation[1][0] * rx, inverse_rotation[1][1] * rx],
        ];
        // source = R^-1 (out - second - c) + c, then ((. - m) * r) - first - pad.
        let shifted = [-second.0 - cy, -second.1 - cx];
        let rotated = [
            inverse_rotation[0][0] * shifted[0] + inverse_rotation[0][1] * shifted[1] + cy,
            inverse_rotation[1][0] * shifted[0] + inverse_rotation[1][1] * shifted[1] + cx,
        ];
        let offset = [
            (rotated[0] - my) * ry - first.0 - pad as f64,
            (rotated[1] - mx) * rx - first.1 - pad as f64,
        ];
        Self {
            size: (h, w),
            out: (out_h, out_w),
            matrix,
            offset,
        }
    }

    /// Where output pixel `(y, x)` reads the source, `(row, column)`.
    fn source(&self, y: f64, x: f64) -> (f64, f64) {
        let m = &self.matrix;
        (
            m[0][0] * y + m[0][1] * x + self.offset[0],
            m[1][0] * y + m[1][1] * x + self.offset[1],
        )
    }

    /// `images` `[B, C, H, W]` resampled through the warp, on the autograd graph.
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        anyhow::ensure!(
            (h, w) == self.size,
            "a warp for {:?} given {h}x{w}",
            self.size
        );
        let (oh, ow) = self.out;
        let taps = Arc::new(self.taps());
        if cpu_kernels(images.device()) && images.dtype() == DType::F32 {
            let planes = images.contiguous()?.reshape((b * c, h * w))?;
            let out = planes.apply_op1(Resample(taps))?;
            return Ok(out.reshape((b, c, oh, ow))?);
        }
        // Elsewhere, the same sums from Candle's gather (its backward scatters).
        let n = oh * ow;
        let device = images.device();
        let dtype = images.dtype();
        let index: Vec<u32> = (0..4)
            .flat_map(|k| taps.index.iter().map(move |i| i[k]))
            .collect();
        let weight: Vec<f32> = (0..4)
            .flat_map(|k| taps.weight.iter().map(move |w| w[k]))
            .collect();
        let index = Tensor::from_vec(index, 4 * n, device)?;
        let weight = Tensor::from_vec(weight, (1, 4, n), device)?.to_dtype(dtype)?;
        let fill = Tensor::from_vec(taps.fill.clone(), (1, n), device)?.to_dtype(dtype)?;
        let flat = images.reshape((b * c, h * w))?;
        let gathered = flat.index_select(&index, 1)?.reshape((b * c, 4, n))?;
        let out = gathered
            .broadcast_mul(&weight)?
            .sum(D::Minus2)?
            .broadcast_add(&fill)?;
        Ok(out.reshape((b, c, oh, ow))?)
    }

    /// Per output pixel, its four source neighbours' flat indices and bilinear
    /// weights; a neighbour outside the image gives its weight to the fill
    /// (already multiplied by the fill's grey).
    fn taps(&self) -> Taps {
        let (h, w) = self.size;
        let (oh, ow) = self.out;
        let n = oh * ow;
        let mut taps = Taps {
            index: vec![[0; 4]; n],
            weight: vec![[0.0; 4]; n],
            fill: vec![0.0; n],
            input: h * w,
        };
        for y in 0..oh {
            for x in 0..ow {
                let p = y * ow + x;
                let (sy, sx) = self.source(y as f64, x as f64);
                let (y0, x0) = (sy.floor(), sx.floor());
                let (fy, fx) = (sy - y0, sx - x0);
                let corners = [
                    (y0, x0, (1.0 - fy) * (1.0 - fx)),
                    (y0, x0 + 1.0, (1.0 - fy) * fx),
                    (y0 + 1.0, x0, fy * (1.0 - fx)),
                    (y0 + 1.0, x0 + 1.0, fy * fx),
                ];
                for (k, (cy, cx, wk)) in corners.into_iter().enumerate() {
                    if cy >= 0.0 && cx >= 0.0 && cy < h as f64 && cx < w as f64 {
                        taps.index[p][k] = (cy as usize * w + cx as usize) as u32;
                        taps.weight[p][k] = wk as f32;
                    } else {
                        taps.fill[p] += (wk * FILL) as f32;
                    }
                }
            }
        }
        taps
    }
}

/// A warp's bilinear taps: per output pixel four source indices and weights, and
/// the fill's share.
struct Taps {
    index: Vec<[u32; 4]>,
    weight: Vec<[f32; 4]>,
    fill: Vec<f32>,
    /// Pixels of a source plane.
    input: usize,
}

/// The resampling of `[planes, H*W]` f32 on the CPU as one op: the forward
/// gathers each output pixel's four taps, the backward scatters the gradient
/// back; both in parallel over planes. (Candle's gather and scatter-add take
/// several times longer on a 224 px batch.)
struct Resample(Arc<Taps>);

impl CustomOp1 for Resample {
    fn name(&self) -> &'static str {
        "featvis-resample"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let taps = &self.0;
        let source = contiguous_f32(storage, layout, "the resample op")?;
        let planes = source.len() / taps.input;
        let n = taps.fill.len();
        let mut out = vec![0f32; planes * n];
        out.par_chunks_mut(n)
            .zip(source.par_chunks(taps.input))
            .for_each(|(out, plane)| {
                for (p, o) in out.iter_mut().enumerate() {
                    let (index, weight) = (&taps.index[p], &taps.weight[p]);
                    *o = taps.fill[p]
                        + (0..4)
                            .map(|k| weight[k] * plane[index[k] as usize])
                            .sum::<f32>();
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((planes, n))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&Scatter(self.0.clone()))?,
        ))
    }
}

/// [`Resample`]'s transpose: `[planes, out]` gradients to `[planes, H*W]`.
struct Scatter(Arc<Taps>);

impl CustomOp1 for Scatter {
    fn name(&self) -> &'static str {
        "featvis-resample-backward"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let taps = &self.0;
        let grad = contiguous_f32(storage, layout, "the resample op")?;
        let n = taps.fill.len();
        let planes = grad.len() / n;
        let mut out = vec![0f32; planes * taps.input];
        out.par_chunks_mut(taps.input)
            .zip(grad.par_chunks(n))
            .for_each(|(plane, grad)| {
                for (p, &g) in grad.iter().enumerate() {
                    let (index, weight) = (&taps.index[p], &taps.weight[p]);
                    for k in 0..4 {
                        plane[index[k] as usize] += weight[k] * g;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((planes, taps.input))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;

    use super::*;

    fn ramp(h: usize, w: usize) -> Tensor {
        let values: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        Tensor::from_vec(values, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .all(|(p, q)| (p - q).abs() < 1e-4)
    }

    #[test]
    fn no_transform_is_the_identity() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let warp = Transforms::none().draw((5, 7), &mut rng);
        let x = ramp(5, 7);
        assert_eq!(rows(&warp.apply(&x).unwrap()), rows(&x));
    }

    /// The CPU op and Candle's gather (the path on other devices, taken here by
    /// f64) give the same images and the same gradients.
    #[test]
    fn the_resample_op_matches_candles_gather() {
        use candle_core::{DType, Var};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let warp = Transforms::standard().draw((16, 12), &mut rng);
        let x = Tensor::rand(0f32, 1f32, (2, 3, 16, 12), &Device::Cpu).unwrap();
        let r = Tensor::rand(0f32, 1f32, (2, 3, warp.out.0, warp.out.1), &Device::Cpu).unwrap();
        let run = |dtype: DType| {
            let v = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
            let y = warp.apply(v.as_tensor()).unwrap();
            let loss = (&y * r.to_dtype(dtype).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss.backward().unwrap().remove(v.as_tensor()).unwrap();
            let flat = |t: Tensor| {
                t.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            (flat(y), flat(g))
        };
        let (ours, candles) = (run(DType::F32), run(DType::F64));
        for (a, b) in ours
            .0
            .iter()
            .zip(&candles.0)
            .chain(ours.1.iter().zip(&candles.1))
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Padding grows the image with grey; a jitter shifts it inside.
    #[test]
    fn padding_and_jitter_shift_the_image_into_grey() {
        let warp = Warp::new((2, 3), 1, (1.0, 0.0), 1.0, 0.0, (0.0, 0.0));
        assert_eq!(warp.out, (4, 5));
        let out = rows(&warp.apply(&ramp(2, 3)).unwrap());
        let g = FILL as f32;
        let expected = vec![
            vec![g, g, g, g, g],
            vec![g, g, g, g, g],
            vec![g, 0.0, 1.0, 2.0, g],
            vec![g, 3.0, 4.0, 5.0, g],
        ];
        assert!(close(&out, &expected), "{out:?}");
    }

    /// +90 degrees turns the image counter-clockwise, as `np.rot90` does.
    #[test]
    fn rotation_turns_counter_clockwise() {
        let warp = Warp::new((3, 3), 0, (0.0, 0.0), 1.0, 90.0, (0.0, 0.0));
        let out = rows(&warp.apply(&ramp(3, 3)).unwrap());
        let expected = vec![
            vec![2.0, 5.0, 8.0],
            vec![1.0, 4.0, 7.0],
            vec![0.0, 3.0, 6.0],
        ];
        assert!(close(&out, &expected), "{out:?}");
    }

    /// Scaling is about the centre of a canvas the image's size: by 2, the middle
    /// of the image is magnified (the 3 px image becomes 6, its corners kept as
    /// align-corners upsampling keeps them, and the canvas shows the middle 3);
    /// by 1/2 it is padded back to size with grey.
    #[test]
    fn scaling_is_about_the_centre() {
        let up = Warp::new((3, 3), 0, (0.0, 0.0), 2.0, 0.0, (0.0, 0.0));
        assert_eq!(up.out, (3, 3));
        let out = rows(&up.apply(&ramp(3, 3)).unwrap());
        // Canvas pixel 0 is pixel 1.5 of the 6 px image: source 1.5 · 2/5 = 0.6.
        let expected = vec![
            vec![2.4, 2.8, 3.2],
            vec![3.6, 4.0, 4.4],
            vec![4.8, 5.2, 5.6],
        ];
        assert!(close(&out, &expected), "{out:?}");
        let down = Warp::new((4, 4), 0, (0.0, 0.0), 0.5, 0.0, (0.0, 0.0));
        assert_eq!(down.out, (4, 4));
        let out = rows(&down.apply(&ramp(4, 4)).unwrap());
        assert_eq!(out[0][0], FILL as f32);
        assert!(
            (out[1][1] - 0.0).abs() < 1e-5 && (out[2][2] - 15.0).abs() < 1e-5,
            "{out:?}"
        );
    }
}
