//! The inverse real 2-D FFT that turns a Fourier-parameterized image into pixels,
//! as a differentiable op, and Lucid's spectrum scale.
//!
//! For a half spectrum `S = re + i im` of `h x (w/2+1)` frequencies, each weighted
//! by `s[ky, kx]` (Lucid's scale, or 1), the image is
//!
//! ```text
//! x[y, x] = 1/(h w) · Σ_ky Σ_kx c_kx · s[ky, kx] · Re(S[ky, kx] · e^{+2πi (ky y / h + kx x / w)})
//! ```
//!
//! with `c_kx = 2` for frequencies whose conjugate is not stored and 1 for zero and
//! (even `w`) Nyquist, as numpy's and torch's `irfft2` compute it. Its adjoint,
//! the backward pass, is the forward real FFT of the gradient `g`, weighted the
//! same way: `∂/∂re + i ∂/∂im = c_kx s[ky, kx]/(h w) · Σ g · e^{-2πi (...)}`.
//!
//! On the CPU both go through `realfft`/`rustfft`, O(n log n) per plane; elsewhere
//! the transform is four matrix products with cosine and sine tables, which
//! Candle's autograd differentiates on any device. At 224 px the tables cost ~1.6
//! GFLOP a batch of eight images forward and twice that backward; the FFTs a few
//! milliseconds.

use std::sync::Arc;

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use super::op::contiguous_f32;
use crate::model::device::cpu_kernels;

/// The inverse real 2-D FFT of `rows x columns` images, each frequency weighted
/// first (Lucid's spectrum scale, or 1).
pub(super) struct InverseRfft2 {
    /// Each frequency's weight, `[h, w/2+1]` (the tables' path multiplies by it).
    scale: Tensor,
    fft: Arc<Plans>,
    /// The same transform as matrix products, off the CPU.
    tables: Option<DftTables>,
}

impl InverseRfft2 {
    /// The inverse of the spectrum scaled by Lucid's `sqrt(h w) / max(f, 1 / max(h,
    /// w))` times `gain`: the scale is a frequency's weight inside the op, so
    /// neither pass spends a multiplication of its own on it.
    pub(super) fn lucid((h, w): (usize, usize), gain: f64, device: &Device) -> Result<Self> {
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
        let root = ((h * w) as f64).sqrt();
        Self::weighted(
            (h, w),
            &|ky, kx| gain * root / frequency(ky, h).hypot(frequency(kx, w)).max(floor),
            device,
        )
    }

    fn weighted(
        (h, w): (usize, usize),
        weight: &dyn Fn(usize, usize) -> f64,
        device: &Device,
    ) -> Result<Self> {
        let wf = w / 2 + 1;
        let weights: Vec<f32> = (0..h * wf).map(|i| weight(i / wf, i % wf) as f32).collect();
        let tables = match cpu_kernels(device) {
            true => None,
            false => Some(DftTables::new((h, w), device)?),
        };
        Ok(Self {
            scale: Tensor::from_vec(weights.clone(), (h, wf), device)?,
            fft: Arc::new(Plans::new((h, w), weights)),
            tables,
        })
    }

    /// The real images whose half spectra are `re + i im`, `[..., h, w/2+1]` to
    /// `[..., h, w]`, on the autograd graph.
    pub(super) fn apply(&self, re: &Tensor, im: &Tensor) -> Result<Tensor> {
        let (h, w) = (self.fft.h, self.fft.w);
        let mut dims = re.dims().to_vec();
        anyhow::ensure!(
            dims.len() >= 2 && dims[dims.len() - 2..] == [h, w / 2 + 1] && im.dims() == re.dims(),
            "spectra of shape {:?} and {:?} for {h}x{w} images",
            re.dims(),
            im.dims()
        );
        if let Some(tables) = &self.tables {
            let scale = self.scale.to_dtype(re.dtype())?;
            return tables.apply(&re.broadcast_mul(&scale)?, &im.broadcast_mul(&scale)?);
        }
        let planes = re.elem_count() / (h * (w / 2 + 1));
        let flat = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(DType::F32)?
                .contiguous()?
                .reshape((planes, h * (w / 2 + 1)))?)
        };
        let image = flat(re)?.apply_op2(&flat(im)?, Irfft2(self.fft.clone()))?;
        *dims.last_mut().expect("rank >= 2") = w;
        Ok(image.reshape(dims)?.to_dtype(re.dtype())?)
    }
}

/// A `rows x columns` table of `f(row, column)`.
fn table(
    (n, m): (usize, usize),
    device: &Device,
    f: &dyn Fn(usize, usize) -> f64,
) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..n * m).map(|i| f(i / m, i % m) as f32).collect();
    Tensor::from_vec(values, (n, m), device)
}

/// `c_kx / (h w)`: see the module doc.
fn fold_weight((h, w): (usize, usize), kx: usize) -> f32 {
    let unpaired = kx == 0 || (w.is_multiple_of(2) && kx == w / 2);
    let c = if unpaired { 1.0 } else { 2.0 };
    c / (h * w) as f32
}

/// The FFT plans for one image size, and the frequencies' weights.
struct Plans {
    h: usize,
    w: usize,
    /// Per frequency `(ky, kx)`, row-major `h x (w/2+1)`.
    weights: Vec<f32>,
    /// Along columns (length `h`, complex): inverse for the image, forward for its
    /// adjoint.
    inverse_h: Arc<dyn Fft<f32>>,
    forward_h: Arc<dyn Fft<f32>>,
    /// Along rows (length `w`, real).
    inverse_w: Arc<dyn ComplexToReal<f32>>,
    forward_w: Arc<dyn RealToComplex<f32>>,
}

impl Plans {
    fn new((h, w): (usize, usize), weights: Vec<f32>) -> Self {
        let mut complex = FftPlanner::new();
        let mut real = RealFftPlanner::new();
        Self {
            h,
            w,
            weights,
            inverse_h: complex.plan_fft_inverse(h),
            forward_h: complex.plan_fft_forward(h),
            inverse_w: real.plan_fft_inverse(w),
            forward_w: real.plan_fft_forward(w),
        }
    }

    /// One plane's image from its weighted half spectrum (`re`, `im`: `h x wf`,
    /// row-major).
    fn inverse(&self, re: &[f32], im: &[f32], out: &mut [f32]) -> Result<()> {
        let (h, w, wf) = (self.h, self.w, self.w / 2 + 1);
        // Columns first: the complex inverse along `h`, on the transposed spectrum.
        let mut columns: Vec<Complex<f32>> = (0..wf * h)
            .map(|i| {
                let at = (i % h) * wf + i / h;
                Complex::new(re[at], im[at]) * self.weights[at]
            })
            .collect();
        self.inverse_h.process(&mut columns);
        // Then each row's real inverse. The imaginary parts at zero and Nyquist
        // do not reach a real signal (their sine is zero); realfft wants them 0.
        let mut row = vec![Complex::default(); wf];
        let mut scratch = self.inverse_w.make_scratch_vec();
        for (y, out) in out.chunks_exact_mut(w).enumerate() {
            for (kx, v) in row.iter_mut().enumerate() {
                *v = columns[kx * h + y];
            }
            row[0].im = 0.0;
            if w.is_multiple_of(2) {
                row[wf - 1].im = 0.0;
            }
            self.inverse_w
                .process_with_scratch(&mut row, out, &mut scratch)
                .map_err(|e| anyhow::anyhow!("inverse FFT: {e}"))?;
            let norm = 1.0 / (h * w) as f32;
            out.iter_mut().for_each(|v| *v *= norm);
        }
        Ok(())
    }

    /// The adjoint of [`Plans::inverse`]: the gradients at one plane's `re` and
    /// `im` given the gradient `g` at its image.
    fn adjoint(&self, g: &[f32], re: &mut [f32], im: &mut [f32]) -> Result<()> {
        let (h, w, wf) = (self.h, self.w, self.w / 2 + 1);
        let mut columns = vec![Complex::default(); wf * h];
        let mut row_in = vec![0f32; w];
        let mut row = vec![Complex::default(); wf];
        let mut scratch = self.forward_w.make_scratch_vec();
        for (y, g) in g.chunks_exact(w).enumerate() {
            row_in.copy_from_slice(g);
            self.forward_w
                .process_with_scratch(&mut row_in, &mut row, &mut scratch)
                .map_err(|e| anyhow::anyhow!("forward FFT: {e}"))?;
            for (kx, v) in row.iter().enumerate() {
                columns[kx * h + y] = *v;
            }
        }
        self.forward_h.process(&mut columns);
        for ky in 0..h {
            for kx in 0..wf {
                let at = ky * wf + kx;
                let v = columns[kx * h + ky] * (fold_weight((h, w), kx) * self.weights[at]);
                re[at] = v.re;
                im[at] = v.im;
            }
        }
        Ok(())
    }
}

/// [`Plans::inverse`] over `[planes, h·wf]` spectra (real and imaginary parts).
struct Irfft2(Arc<Plans>);

impl CustomOp2 for Irfft2 {
    fn name(&self) -> &'static str {
        "irfft2"
    }

    fn cpu_fwd(
        &self,
        re: &CpuStorage,
        re_layout: &Layout,
        im: &CpuStorage,
        im_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let plans = &self.0;
        let (h, w, wf) = (plans.h, plans.w, plans.w / 2 + 1);
        let (re, im) = (
            contiguous_f32(re, re_layout, "the FFT op")?,
            contiguous_f32(im, im_layout, "the FFT op")?,
        );
        let planes = re.len() / (h * wf);
        let mut out = vec![0f32; planes * h * w];
        out.par_chunks_mut(h * w)
            .zip(re.par_chunks(h * wf).zip(im.par_chunks(h * wf)))
            .try_for_each(|(out, (re, im))| plans.inverse(re, im, out))
            .map_err(|e| candle_core::Error::msg(format!("{e:#}")))?;
        Ok((CpuStorage::F32(out), Shape::from((planes, h * w))))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let both = grad.contiguous()?.apply_op1(Adjoint(self.0.clone()))?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// [`Plans::adjoint`] over `[planes, h·w]` gradients: `[2, planes, h·wf]`, the
/// gradients at the real and the imaginary parts.
struct Adjoint(Arc<Plans>);

impl CustomOp1 for Adjoint {
    fn name(&self) -> &'static str {
        "irfft2-adjoint"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let plans = &self.0;
        let (h, w, wf) = (plans.h, plans.w, plans.w / 2 + 1);
        let grad = contiguous_f32(grad, layout, "the FFT op")?;
        let planes = grad.len() / (h * w);
        let mut out = vec![0f32; 2 * planes * h * wf];
        let (re, im) = out.split_at_mut(planes * h * wf);
        re.par_chunks_mut(h * wf)
            .zip(im.par_chunks_mut(h * wf))
            .zip(grad.par_chunks(h * w))
            .try_for_each(|((re, im), g)| plans.adjoint(g, re, im))
            .map_err(|e| candle_core::Error::msg(format!("{e:#}")))?;
        Ok((CpuStorage::F32(out), Shape::from((2, planes, h * wf))))
    }
}

/// The transform as matrix products: rows by the complex inverse DFT, columns by
/// the real part of the Hermitian-completed one.
struct DftTables {
    /// `cos` and `sin` of `2π ky y / h`, `[h, h]`.
    cos_rows: Tensor,
    sin_rows: Tensor,
    /// `c_kx cos(2π kx x / w) / (h w)` and the same with `sin`, `[w/2+1, w]`.
    cos_columns: Tensor,
    sin_columns: Tensor,
}

impl DftTables {
    fn new((h, w): (usize, usize), device: &Device) -> Result<Self> {
        let tau = std::f64::consts::TAU;
        let angle = |k: usize, n: usize, len: usize| tau * (k * n) as f64 / len as f64;
        Ok(Self {
            cos_rows: table((h, h), device, &|y, k| angle(k, y, h).cos())?,
            sin_rows: table((h, h), device, &|y, k| angle(k, y, h).sin())?,
            cos_columns: table((w / 2 + 1, w), device, &|k, x| {
                fold_weight((h, w), k) as f64 * angle(k, x, w).cos()
            })?,
            sin_columns: table((w / 2 + 1, w), device, &|k, x| {
                fold_weight((h, w), k) as f64 * angle(k, x, w).sin()
            })?,
        })
    }

    fn apply(&self, re: &Tensor, im: &Tensor) -> Result<Tensor> {
        let dtype = re.dtype();
        let cast = |t: &Tensor| t.to_dtype(dtype);
        let (cos_rows, sin_rows) = (cast(&self.cos_rows)?, cast(&self.sin_rows)?);
        let (cos_columns, sin_columns) = (cast(&self.cos_columns)?, cast(&self.sin_columns)?);
        // Rows: the complex inverse DFT, e^{+iθ} = cos + i sin.
        let t_re = (cos_rows.broadcast_matmul(re)? - sin_rows.broadcast_matmul(im)?)?;
        let t_im = (sin_rows.broadcast_matmul(re)? + cos_rows.broadcast_matmul(im)?)?;
        // Columns: the real part.
        Ok((t_re.broadcast_matmul(&cos_columns)? - t_im.broadcast_matmul(&sin_columns)?)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

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

    fn tensor(v: &[f64], shape: (usize, usize)) -> Tensor {
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Both implementations recover an image from its half spectrum, for even and
    /// odd sizes.
    #[test]
    fn the_inverse_fft_recovers_the_image() {
        for (h, w) in [(6, 8), (5, 7), (4, 9)] {
            let image: Vec<f64> = (0..h * w).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let (re, im) = rfft2(&image, (h, w));
            let (re, im) = (tensor(&re, (h, w / 2 + 1)), tensor(&im, (h, w / 2 + 1)));
            let fft = InverseRfft2::weighted((h, w), &|_, _| 1.0, &Device::Cpu).unwrap();
            let tables = DftTables::new((h, w), &Device::Cpu).unwrap();
            for back in [fft.apply(&re, &im), tables.apply(&re, &im)] {
                let back = back
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                for (a, b) in back.iter().zip(&image) {
                    assert!((*a as f64 - b).abs() < 1e-3, "{h}x{w}: {a} vs {b}");
                }
            }
        }
    }

    /// The FFT op's backward is the tables' (Candle's autograd of the matrix
    /// products, after the frequencies' weights), on spectra whose zero and Nyquist
    /// imaginary parts are not zero and batched planes; and its forward ignores
    /// those parts as the tables do.
    #[test]
    fn the_fft_backward_is_the_adjoint() {
        for (h, w) in [(6, 8), (5, 7)] {
            let wf = w / 2 + 1;
            let shape = (2, 3, h, wf);
            let n = 2 * 3 * h * wf;
            let value = |k: usize| ((k * 53 % 17) as f32 - 8.0) / 4.0;
            let re = Var::from_vec((0..n).map(value).collect(), shape, &Device::Cpu).unwrap();
            let im =
                Var::from_vec((0..n).map(|k| value(k + 5)).collect(), shape, &Device::Cpu).unwrap();
            let weights: Vec<f32> = (0..2 * 3 * h * w).map(|k| value(k + 11)).collect();
            let weights = Tensor::from_vec(weights, (2, 3, h, w), &Device::Cpu).unwrap();
            let fft = InverseRfft2::lucid((h, w), 0.25, &Device::Cpu).unwrap();
            let tables = DftTables::new((h, w), &Device::Cpu).unwrap();
            let weighted = |v: &Var| v.broadcast_mul(&fft.scale).unwrap();
            let run = |image: Tensor| {
                let grads = (&image * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let grad = |v: &Var| flat(grads.get(v.as_tensor()).unwrap());
                (flat(&image), grad(&re), grad(&im))
            };
            let ours = run(fft.apply(re.as_tensor(), im.as_tensor()).unwrap());
            let theirs = run(tables.apply(&weighted(&re), &weighted(&im)).unwrap());
            for (name, a, b) in [
                ("image", &ours.0, &theirs.0),
                ("d re", &ours.1, &theirs.1),
                ("d im", &ours.2, &theirs.2),
            ] {
                for (x, y) in a.iter().zip(b) {
                    let close = (x - y).abs() <= 1e-4 * y.abs().max(1.0);
                    assert!(close, "{h}x{w} {name}: {x} vs {y}");
                }
            }
        }
    }

    /// Lucid's scale: `sqrt(h w) / max(f, 1 / max(h, w))`, numpy's frequencies.
    #[test]
    fn the_spectrum_scale_is_lucids() {
        let inverse = InverseRfft2::lucid((4, 6), 1.0, &Device::Cpu).unwrap();
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
}
