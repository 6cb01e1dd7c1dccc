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
//! The inverse FFT is two real matrix products per axis (cosine and sine tables),
//! so Candle's autograd differentiates it on any device.

use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

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
    var: Var,
    kind: Parameterization,
    size: (usize, usize),
    channels: usize,
    decorrelate: bool,
    /// The inverse FFT's tables, for the Fourier parameterization.
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
            Parameterization::Fourier => vec![2, batch, channels, h, w / 2 + 1],
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
        let fourier = match kind {
            Parameterization::Pixel => None,
            Parameterization::Fourier => Some(InverseRfft2::new(size, device)?),
        };
        Ok(Self {
            var,
            kind,
            size,
            channels,
            decorrelate: decorrelate && channels == 3,
            fourier,
        })
    }

    /// The variable the optimizer steps.
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// The images, `[batch, 3, rows, columns]` in `[0, 1]`, on the autograd graph.
    pub fn images(&self) -> Result<Tensor> {
        let raw = match (&self.kind, &self.fourier) {
            (Parameterization::Fourier, Some(inverse)) => {
                let spectrum = self.var.as_tensor();
                let (re, im) = (spectrum.get(0)?, spectrum.get(1)?);
                let scale = inverse.scale.broadcast_as(re.shape())?;
                let image = inverse.apply(&(re * &scale)?, &(im * &scale)?)?;
                (image / FFT_MAGIC)?
            }
            _ => self.var.as_tensor().clone(),
        };
        let coloured = match self.decorrelate {
            true => decorrelate_colours(&raw)?,
            false => raw,
        };
        let image = candle_nn::ops::sigmoid(&coloured)?;
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

/// Each pixel's colour multiplied by Lucid's colour correlation, normalized by
/// its largest column norm: `[B, 3, H, W]` to `[B, 3, H, W]`.
pub fn decorrelate_colours(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    ensure!(c == 3, "colour decorrelation needs 3 channels, got {c}");
    let m = Tensor::new(&COLOR_CORRELATION_SVD_SQRT, x.device())?;
    let max_norm = (0..3)
        .map(|j| {
            (0..3)
                .map(|i| COLOR_CORRELATION_SVD_SQRT[i][j].powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .fold(0.0f32, f32::max);
    let m = (m / max_norm as f64)?.to_dtype(x.dtype())?;
    let flat = x.reshape((b, 3, h * w))?;
    Ok(m.broadcast_matmul(&flat)?.reshape((b, 3, h, w))?)
}

/// The inverse real 2-D FFT of a `rows x columns` image as matrix products, and
/// Lucid's spectrum scale.
struct InverseRfft2 {
    /// Along rows (complex, full): `cos` and `sin` of `2 pi ky y / h`, `[h, h]`.
    cos_rows: Tensor,
    sin_rows: Tensor,
    /// Along columns (real output): `c_kx cos(2 pi kx x / w) / (h w)` and the same
    /// with `sin`, `[w/2+1, w]`; `c_kx` is 2 for frequencies whose conjugate is not
    /// stored, 1 for zero and (even `w`) Nyquist.
    cos_columns: Tensor,
    sin_columns: Tensor,
    /// `sqrt(h w) / max(f, 1 / max(h, w))`, `[h, w/2+1]`.
    scale: Tensor,
}

impl InverseRfft2 {
    fn new((h, w): (usize, usize), device: &Device) -> Result<Self> {
        let wf = w / 2 + 1;
        let tau = std::f64::consts::TAU;
        let table = |n: usize, m: usize, f: &dyn Fn(usize, usize) -> f64| {
            let values: Vec<f32> = (0..n * m).map(|i| f(i / m, i % m) as f32).collect();
            Tensor::from_vec(values, (n, m), device)
        };
        let cos_rows = table(h, h, &|y, k| (tau * (k * y) as f64 / h as f64).cos())?;
        let sin_rows = table(h, h, &|y, k| (tau * (k * y) as f64 / h as f64).sin())?;
        let weight = |k: usize| {
            let unpaired = k == 0 || (w % 2 == 0 && k == w / 2);
            if unpaired { 1.0 } else { 2.0 }
        };
        let norm = (h * w) as f64;
        let cos_columns = table(wf, w, &|k, x| {
            weight(k) * (tau * (k * x) as f64 / w as f64).cos() / norm
        })?;
        let sin_columns = table(wf, w, &|k, x| {
            weight(k) * (tau * (k * x) as f64 / w as f64).sin() / norm
        })?;
        let frequency = |k: usize, n: usize| {
            // numpy's fftfreq: k / n below n / 2, (k - n) / n from there.
            let k = if k < n.div_ceil(2) {
                k as f64
            } else {
                k as f64 - n as f64
            };
            k / n as f64
        };
        let floor = 1.0 / h.max(w) as f64;
        let root = norm.sqrt();
        let scale = table(h, wf, &|ky, kx| {
            let f = frequency(ky, h).hypot(frequency(kx, w));
            root / f.max(floor)
        })?;
        Ok(Self {
            cos_rows,
            sin_rows,
            cos_columns,
            sin_columns,
            scale,
        })
    }

    /// The real image whose half spectrum is `re + i im`, `[..., h, w/2+1]` to
    /// `[..., h, w]`.
    fn apply(&self, re: &Tensor, im: &Tensor) -> Result<Tensor> {
        // Rows: the complex inverse DFT, e^{+i theta} = cos + i sin.
        let t_re = (self.cos_rows.broadcast_matmul(re)? - self.sin_rows.broadcast_matmul(im)?)?;
        let t_im = (self.sin_rows.broadcast_matmul(re)? + self.cos_rows.broadcast_matmul(im)?)?;
        // Columns: the real part of the Hermitian-completed inverse DFT.
        Ok((t_re.broadcast_matmul(&self.cos_columns)?
            - t_im.broadcast_matmul(&self.sin_columns)?)?)
    }
}

/// The images of `param` as 8-bit pictures.
pub fn to_pictures(images: &Tensor) -> Result<Vec<image::RgbImage>> {
    let (b, c, h, w) = images.dims4()?;
    ensure!(c == 3, "pictures have 3 channels, got {c}");
    let values = images
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| {
            image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                image::Rgb(std::array::from_fn(|ch| {
                    let v = values[((i * 3 + ch) * h + y as usize) * w + x as usize];
                    (v.clamp(0.0, 1.0) * 255.0).round() as u8
                }))
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive real 2-D DFT of an image, in f64: what the inverse must undo.
    fn rfft2(image: &[f64], (h, w): (usize, usize)) -> (Vec<f64>, Vec<f64>) {
        let wf = w / 2 + 1;
        let (mut re, mut im) = (vec![0.0; h * wf], vec![0.0; h * wf]);
        for ky in 0..h {
            for kx in 0..wf {
                for y in 0..h {
                    for x in 0..w {
                        let theta = -std::f64::consts::TAU
                            * ((ky * y) as f64 / h as f64 + (kx * x) as f64 / w as f64);
                        re[ky * wf + kx] += image[y * w + x] * theta.cos();
                        im[ky * wf + kx] += image[y * w + x] * theta.sin();
                    }
                }
            }
        }
        (re, im)
    }

    /// The inverse transform recovers an image from its half spectrum, for even
    /// and odd sizes.
    #[test]
    fn the_inverse_fft_recovers_the_image() {
        let device = Device::Cpu;
        for (h, w) in [(6, 8), (5, 7), (4, 9)] {
            let image: Vec<f64> = (0..h * w).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let (re, im) = rfft2(&image, (h, w));
            let shape = (h, w / 2 + 1);
            let to = |v: Vec<f64>| {
                Tensor::from_vec(
                    v.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
                    shape,
                    &device,
                )
                .unwrap()
            };
            let inverse = InverseRfft2::new((h, w), &device).unwrap();
            let back = inverse.apply(&to(re), &to(im)).unwrap();
            let back = back.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in back.iter().zip(&image) {
                assert!((*a as f64 - b).abs() < 1e-3, "{h}x{w}: {a} vs {b}");
            }
        }
    }

    /// Lucid's scale: `sqrt(h w) / max(f, 1 / max(h, w))`, numpy's frequencies.
    #[test]
    fn the_spectrum_scale_is_lucids() {
        let inverse = InverseRfft2::new((4, 6), &Device::Cpu).unwrap();
        let scale = inverse.scale.to_vec2::<f32>().unwrap();
        let root = 24f64.sqrt();
        // (0, 0): the floor 1/6; (1, 2): fy = 1/4, fx = 2/6; (3, 3): fy = -1/4, fx = -1/2.
        for ((ky, kx), f) in [
            ((0, 0), 1.0 / 6.0),
            ((1, 2), 0.25f64.hypot(2.0 / 6.0)),
            ((3, 3), 0.25f64.hypot(0.5)),
        ] {
            assert!((scale[ky][kx] as f64 - root / f).abs() < 1e-3, "{ky},{kx}");
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
