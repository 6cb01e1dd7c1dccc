//! The deletion and insertion games of RISE (Petsiuk et al. 2018): pixels are
//! switched in order of attribution, most important first, and the probability of
//! the originally predicted class is read after every step. Deletion switches them
//! to zero (in the model's input space) — a faithful map makes the probability fall
//! fast (low area under the curve); insertion switches them in from a blurred copy
//! — a faithful map makes it rise fast (high area). The area is the trapezoid rule
//! over the steps, on [0, 1], as RISE's `auc`.

use anyhow::{Result, ensure};
use candle_core::{D, DType, Tensor};

use crate::data::gaussian_blur;
use crate::model::Model;

/// The games' settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeletionInsertion {
    /// Steps from start to end (each switches `ceil(H * W / steps)` pixels).
    pub steps: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Insertion's starting image is the input blurred by this sigma (pixels); RISE
    /// uses a Gaussian of sigma 5.
    pub blur_sigma: f64,
}

impl Default for DeletionInsertion {
    fn default() -> Self {
        Self {
            steps: 64,
            batch: 33,
            blur_sigma: 5.0,
        }
    }
}

/// The probability of the class after each step, `steps + 1` values from the
/// unchanged start.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// Deletion: from the input towards zeros.
    pub deletion: Vec<f64>,
    /// Insertion: from the blurred input towards the input.
    pub insertion: Vec<f64>,
}

impl DeletionInsertion {
    /// Both curves for `input` (`[3, H, W]`), pixels ranked by `saliency` (`H x W`,
    /// row-major), for the probability of `class`.
    pub fn curves(
        &self,
        model: &Model,
        input: &Tensor,
        saliency: &[f32],
        class: usize,
    ) -> Result<Curves> {
        let (_, h, w) = input.dims3()?;
        ensure!(
            saliency.len() == h * w,
            "a {h}x{w} input needs a saliency map of {} values, got {}",
            h * w,
            saliency.len()
        );
        ensure!(self.steps > 0, "the games need at least one step");
        let input = input.to_dtype(DType::F32)?.unsqueeze(0)?;
        let mut order: Vec<usize> = (0..h * w).collect();
        order.sort_by(|&i, &j| saliency[j].total_cmp(&saliency[i]));
        let blurred = gaussian_blur(&input, self.blur_sigma)?;
        Ok(Curves {
            deletion: self.play(model, &input, &input.zeros_like()?, &order, class)?,
            insertion: self.play(model, &blurred, &input, &order, class)?,
        })
    }

    /// The probabilities along the path from `start` to `end` (both `[1, 3, H, W]`),
    /// switching pixels in `order`.
    fn play(
        &self,
        model: &Model,
        start: &Tensor,
        end: &Tensor,
        order: &[usize],
        class: usize,
    ) -> Result<Vec<f64>> {
        let (_, _, h, w) = start.dims4()?;
        let per_step = (h * w).div_ceil(self.steps);
        let mut probabilities = Vec::with_capacity(self.steps + 1);
        for first in (0..=self.steps).step_by(self.batch.max(1)) {
            let last = (first + self.batch.max(1)).min(self.steps + 1);
            // Mask k switches the first k * per_step pixels of the order.
            let mut masks = vec![0f32; (last - first) * h * w];
            for (mask, k) in masks.chunks_exact_mut(h * w).zip(first..last) {
                for &p in &order[..(k * per_step).min(h * w)] {
                    mask[p] = 1.0;
                }
            }
            let masks = Tensor::from_vec(masks, (last - first, 1, h, w), start.device())?;
            let images = start
                .broadcast_mul(&masks.affine(-1.0, 1.0)?)?
                .add(&end.broadcast_mul(&masks)?)?;
            let p = candle_nn::ops::softmax(&model.logits(&images)?, D::Minus1)?;
            let p = p.narrow(1, class, 1)?.flatten_all()?.to_dtype(DType::F64)?;
            probabilities.extend(p.to_vec1::<f64>()?);
        }
        Ok(probabilities)
    }
}

/// The area under `curve` on [0, 1] by the trapezoid rule (RISE's `auc`).
pub fn auc(curve: &[f64]) -> f64 {
    match curve {
        [] => 0.0,
        [only] => *only,
        [first, .., last] => {
            (curve.iter().sum::<f64>() - first / 2.0 - last / 2.0) / (curve.len() - 1) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_the_trapezoid_rule_on_the_unit_interval() {
        assert_eq!(auc(&[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(auc(&[1.0, 0.0]), 0.5);
        // Widths 1/3: (0 + 0.5) / 2 + (0.5 + 1) / 2 + (1 + 0.5) / 2 = 1.75, over 3.
        assert!((auc(&[0.0, 0.5, 1.0, 0.5]) - 7.0 / 12.0).abs() < 1e-12);
    }
}
