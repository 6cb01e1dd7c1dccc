//! What the optimizer changes: an image parameterized as pixels or as a Fourier
//! spectrum, with decorrelated colours and a sigmoid to keep it in `[0, 1]`,
//! following Lucid (Olah et al. 2017, "Feature Visualization", Distill; the
//! `lucid.optvis.param` module) and Lucent, its PyTorch port.
//!
//! - **Pixels** (`pixel_image`): the image's values themselves, initialized with
//!   normal noise of standard deviation 0.01.
//! - **Fourier** (`fft_image`): a complex spectrum `S` over the real 2-D FFT's
//!   frequencies `f = sqrt(fx^2 + fy^2)`, scaled by `1 / max(f, 1 / max(h, w))^d`
//!   (decay power `d = 1`: every frequency band starts with equal energy, so
//!   optimization is not dominated by high frequencies) and by `sqrt(h w)`, brought
//!   back by the inverse real FFT (normalized by `1 / (h w)`) and divided by
//!   Lucid's constant 4.
//! - **Colour decorrelation** (`_linear_decorrelate_color`): each pixel's three
//!   values are multiplied by the square root of ImageNet's colour covariance
//!   (Lucid's `color_correlation_svd_sqrt`), normalized by its largest column
//!   norm; the optimizer then works in a space of uncorrelated colours.
//! - **Sigmoid**: the result squashed into `[0, 1]`.
//!
//! The inverse FFT is [`super::spectrum`]'s.

use anyhow::{Result, ensure};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::op::contiguous_f32;
use super::spectrum::InverseRfft2;
use crate::data::InputSpec;
use crate::model::device::cpu_kernels;

/// Lucid's `color_correlation_svd_sqrt`: the square root of ImageNet's RGB
/// covariance (rows: R, G, B).
pub const COLOR_CORRELATION_SVD_SQRT: [[f32; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// Lucid's divisor of the Fourier image (it keeps early steps from saturating).
const FFT_MAGIC: f64 = 4.0;

/// How an image is parameterized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parameterization {
    /// The pixels themselves.
    Pixel,
    /// A 1/f-scaled spectrum.
    Fourier,
}

/// A batch of images being optimized.
pub struct ImageParam {
    /// The pixels, or the spectrum's real and imaginary parts (two variables, so
    /// that neither's gradient goes through a slice of the other's).
    vars: Vec<Var>,
    size: (usize, usize),
    channels: usize,
    decorrelate: bool,
    /// The inverse FFT, for the Fourier parameterization.
    fourier: Option<InverseRfft2>,
}

impl ImageParam {
    /// One image per seed, of `channels` (1: grey, shown as RGB; 3: colour) and
    /// `size` `(rows, columns)`, each initialized from its own seed (so an image does
    /// not depend on the batch it is optimized in).
    pub fn new(
        kind: Parameterization,
        seeds: &[u64],
        channels: usize,
        size: (usize, usize),
        decorrelate: bool,
        device: &Device,
    ) -> Result<Self> {
        ensure!(
            channels == 1 || channels == 3,
            "images have 1 or 3 channels, not {channels}"
        );
        ensure!(size.0 > 0 && size.1 > 0, "an image needs a positive size");
        let (h, w) = size;
        let batch = seeds.len();
        // Per image: its values, then (Fourier) the real and imaginary parts.
        let (parts, per_part) = match kind {
            Parameterization::Pixel => (1, channels * h * w),
            Parameterization::Fourier => (2, channels * h * (w / 2 + 1)),
        };
        let normal = Normal::new(0.0f32, 0.01).expect("a positive standard deviation");
        let mut values = vec![0f32; parts * batch * per_part];
        for (b, &seed) in seeds.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for part in 0..parts {
                let at = (part * batch + b) * per_part;
                for v in &mut values[at..at + per_part] {
                    *v = normal.sample(&mut rng);
                }
            }
        }
        let shape: Vec<usize> = match kind {
            Parameterization::Pixel => vec![batch, channels, h, w],
            Parameterization::Fourier => vec![batch, channels, h, w / 2 + 1],
        };
        let vars = values
            .chunks_exact(batch * per_part)
            .map(|part| Var::from_vec(part.to_vec(), shape.as_slice(), device))
            .collect::<candle_core::Result<_>>()?;
        let fourier = match kind {
            Parameterization::Pixel => None,
            Parameterization::Fourier => Some(InverseRfft2::lucid(size, 1.0 / FFT_MAGIC, device)?),
        };
        Ok(Self {
            vars,
            size,
            channels,
            decorrelate: decorrelate && channels == 3,
            fourier,
        })
    }

    /// The variables the optimizer steps.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The images, `[batch, 3, rows, columns]` in `[0, 1]`, on the autograd graph.
    pub fn images(&self) -> Result<Tensor> {
        let raw = match (&self.fourier, self.vars.as_slice()) {
            (Some(inverse), [re, im]) => inverse.apply(re, im)?,
            (_, [pixels]) => pixels.as_tensor().clone(),
            _ => anyhow::bail!(
                "internal: a parameterization with {} parts",
                self.vars.len()
            ),
        };
        let image = to_valid_rgb(&raw, self.decorrelate)?;
        Ok(match self.channels {
            1 => image.repeat((1, 3, 1, 1))?,
            _ => image,
        })
    }

    /// The image size `(rows, columns)`.
    pub fn size(&self) -> (usize, usize) {
        self.size
    }
}

/// Lucid's `to_valid_rgb`: the colours decorrelated (when asked), then squashed
/// into `[0, 1]` by the sigmoid, `[B, C, H, W]` to the same. On the CPU both in
/// one op ([`ValidRgb`]).
fn to_valid_rgb(x: &Tensor, decorrelate: bool) -> Result<Tensor> {
    if !decorrelate {
        return Ok(candle_nn::ops::sigmoid(x)?);
    }
    if cpu_kernels(x.device()) && x.dtype() == DType::F32 {
        ensure!(x.dim(1)? == 3, "colour decorrelation needs 3 channels");
        return Ok(x.contiguous()?.apply_op1(ValidRgb)?);
    }
    Ok(candle_nn::ops::sigmoid(&decorrelate_colours(x)?)?)
}

/// Lucid's colour correlation over its largest column norm: the matrix that
/// decorrelated colours are multiplied by.
fn colour_matrix() -> [[f32; 3]; 3] {
    let m = COLOR_CORRELATION_SVD_SQRT;
    let max_norm = (0..3)
        .map(|j| (0..3).map(|i| m[i][j].powi(2)).sum::<f32>().sqrt())
        .fold(0.0f32, f32::max);
    m.map(|row| row.map(|v| v / max_norm))
}

/// Each pixel's colour multiplied by Lucid's colour correlation, normalized by
/// its largest column norm: `[B, 3, H, W]` to `[B, 3, H, W]`.
pub fn decorrelate_colours(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    ensure!(c == 3, "colour decorrelation needs 3 channels, got {c}");
    let m = Tensor::new(&colour_matrix(), x.device())?.to_dtype(x.dtype())?;
    let flat = x.reshape((b, 3, h * w))?;
    Ok(m.broadcast_matmul(&flat)?.reshape((b, 3, h, w))?)
}

/// `sigmoid(M x)` per pixel of `[B, 3, H, W]` f32, `M` the [`colour_matrix`].
/// Backward: `g ⊙ s (1 - s)` through `Mᵀ`, `s` the output; one pass each way.
struct ValidRgb;

impl CustomOp1 for ValidRgb {
    fn name(&self) -> &'static str {
        "featvis-valid-rgb"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "the colour op")?;
        let m = colour_matrix();
        let mut out = vec![0f32; x.len()];
        per_pixel(layout.shape(), &mut out, x, None, |x, _, out| {
            for (c, o) in out.iter_mut().enumerate() {
                let z = m[c][0] * x[0] + m[c][1] * x[1] + m[c][2] * x[2];
                *o = 1.0 / (1.0 + (-z).exp());
            }
        })?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, s: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(s.apply_op2_no_bwd(
            &grad.contiguous()?,
            &ValidRgbBackward,
        )?))
    }
}

/// [`ValidRgb`]'s backward from its output `s` and the gradient there.
struct ValidRgbBackward;

impl CustomOp2 for ValidRgbBackward {
    fn name(&self) -> &'static str {
        "featvis-valid-rgb-backward"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        s_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = contiguous_f32(s, s_layout, "the colour op's backward")?;
        let grad = contiguous_f32(grad, grad_layout, "the colour op's backward")?;
        let m = colour_matrix();
        let mut out = vec![0f32; s.len()];
        per_pixel(s_layout.shape(), &mut out, s, Some(grad), |s, g, out| {
            let dz: [f32; 3] = std::array::from_fn(|c| g[c] * s[c] * (1.0 - s[c]));
            for (k, o) in out.iter_mut().enumerate() {
                *o = m[0][k] * dz[0] + m[1][k] * dz[1] + m[2][k] * dz[2];
            }
        })?;
        Ok((CpuStorage::F32(out), s_layout.shape().clone()))
    }
}

/// Runs `f(a, b, out)` on every pixel of `[B, 3, H, W]` planes, each argument a
/// pixel's three channel values (`b` zeros when not given), in parallel over
/// images and rows of pixels.
fn per_pixel(
    shape: &Shape,
    out: &mut [f32],
    a: &[f32],
    b: Option<&[f32]>,
    f: impl Fn([f32; 3], [f32; 3], &mut [f32; 3]) + Sync,
) -> candle_core::Result<()> {
    let (_, c, h, w) = shape.dims4()?;
    if c != 3 {
        candle_core::bail!("the colour op needs 3 channels, got {c}");
    }
    let plane = h * w;
    // Pixels per task: enough work to be worth a task, and parallel even for one
    // image.
    let run = 4096;
    out.par_chunks_mut(3 * plane)
        .enumerate()
        .for_each(|(image, out)| {
            let at = image * 3 * plane;
            let (r, rest) = out.split_at_mut(plane);
            let (g, bl) = rest.split_at_mut(plane);
            r.par_chunks_mut(run)
                .zip(g.par_chunks_mut(run))
                .zip(bl.par_chunks_mut(run))
                .enumerate()
                .for_each(|(chunk, ((r, g), bl))| {
                    let start = chunk * run;
                    let read =
                        |v: &[f32], p: usize| [v[at + p], v[at + plane + p], v[at + 2 * plane + p]];
                    for i in 0..r.len() {
                        let p = start + i;
                        let mut o = [0.0; 3];
                        f(read(a, p), b.map_or([0.0; 3], |b| read(b, p)), &mut o);
                        (r[i], g[i], bl[i]) = (o[0], o[1], o[2]);
                    }
                });
        });
    Ok(())
}

/// The images of `param` (values from 0 to 1) as 8-bit pictures, drawn as `spec`
/// draws its inputs.
pub fn to_pictures(images: &Tensor, spec: &InputSpec) -> Result<Vec<image::RgbImage>> {
    let (b, c, h, w) = images.dims4()?;
    ensure!(c == 3, "pictures have 3 channels, got {c}");
    let values = images
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| {
            image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let at = |ch: usize| values[((i * 3 + ch) * h + y as usize) * w + x as usize];
                image::Rgb(spec.colour(std::array::from_fn(|ch| f64::from(at(ch)))))
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused colour op gives Candle's composed decorrelation and sigmoid,
    /// forward and backward, on two images of odd size.
    #[test]
    fn the_colour_op_is_decorrelation_then_sigmoid() {
        let shape = (2, 3, 5, 7);
        let n = 2 * 3 * 5 * 7;
        let value = |k: usize| ((k * 37 % 23) as f32 - 11.0) / 3.0;
        let x = Var::from_vec((0..n).map(value).collect(), shape, &Device::Cpu).unwrap();
        let weights: Vec<f32> = (0..n).map(|k| value(k + 7)).collect();
        let weights = Tensor::from_vec(weights, shape, &Device::Cpu).unwrap();
        let run = |y: Tensor| {
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&y), flat(grads.get(x.as_tensor()).unwrap()))
        };
        let fused = run(to_valid_rgb(x.as_tensor(), true).unwrap());
        let composed =
            run(candle_nn::ops::sigmoid(&decorrelate_colours(x.as_tensor()).unwrap()).unwrap());
        for (name, a, b) in [
            ("images", &fused.0, &composed.0),
            ("gradients", &fused.1, &composed.1),
        ] {
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() < 1e-6, "{name}: {p} vs {q}");
            }
        }
    }

    /// Uncorrelated unit-variance colours come out with covariance M M^T, M being
    /// Lucid's matrix over its largest column norm.
    #[test]
    fn decorrelated_colours_have_the_stated_covariance() {
        let n = 200_000;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let values: Vec<f32> = (0..3 * n).map(|_| normal.sample(&mut rng)).collect();
        let x = Tensor::from_vec(values, (1, 3, n, 1), &Device::Cpu).unwrap();
        let y = decorrelate_colours(&x).unwrap().reshape((3, n)).unwrap();
        let y = y.to_vec2::<f32>().unwrap();
        let m = COLOR_CORRELATION_SVD_SQRT;
        let max_norm = (0..3)
            .map(|j| (0..3).map(|i| (m[i][j] as f64).powi(2)).sum::<f64>().sqrt())
            .fold(0.0, f64::max);
        for a in 0..3 {
            for b in 0..3 {
                let cov = y[a]
                    .iter()
                    .zip(&y[b])
                    .map(|(p, q)| (p * q) as f64)
                    .sum::<f64>()
                    / n as f64;
                let stated =
                    (0..3).map(|k| (m[a][k] * m[b][k]) as f64).sum::<f64>() / max_norm.powi(2);
                assert!((cov - stated).abs() < 0.01, "({a}, {b}): {cov} vs {stated}");
            }
        }
    }
}
