//! Gaussian blur of input tensors: integrated gradients' blurred baseline and the
//! insertion game's starting image.

use anyhow::{Result, ensure};
use candle_core::Tensor;

/// The widest blur, in pixels: its kernel and padding (3σ each side) grow with it.
pub const MAX_SIGMA: f64 = 1000.0;

/// `x: [N, C, H, W]` blurred per channel by a Gaussian of `sigma` pixels (truncated
/// at 3σ, borders replicated).
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Result<Tensor> {
    ensure!(
        sigma > 0.0 && sigma <= MAX_SIGMA,
        "the blur's sigma is {sigma}: allowed above 0 and at most {MAX_SIGMA} pixels"
    );
    let radius = (3.0 * sigma).ceil() as usize;
    let taps: Vec<f32> = (0..=2 * radius)
        .map(|i| (-((i as f64 - radius as f64).powi(2)) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = taps.iter().sum();
    let kernel = Tensor::new(taps.as_slice(), x.device())?.affine(1.0 / total as f64, 0.0)?;
    let c = x.dim(1)?;
    let along = |x: &Tensor, dim: usize| -> Result<Tensor> {
        let (kh, kw) = if dim == 2 {
            (2 * radius + 1, 1)
        } else {
            (1, 2 * radius + 1)
        };
        let k = kernel.reshape((1, 1, kh, kw))?.repeat((c, 1, 1, 1))?;
        let padded = x.pad_with_same(dim, radius, radius)?;
        Ok(padded.conv2d(&k, 0, 1, 1, c)?)
    };
    along(&along(x, 2)?, 3)
}
