//! Maps as colors: scaling with outlier clipping, colormaps, heatmaps.
//!
//! Scaling follows Captum's `visualization._normalize_attr`: a gradient-type map is
//! divided by the value at which the cumulative sum of its sorted absolute values
//! reaches 98% of the total, then clipped to [-1, 1], so a few extreme pixels do not
//! wash out the rest. CAM maps arrive normalized to [0, 1] and are drawn as they are.

use anyhow::{Result, ensure};
use image::{Rgb, RgbImage};

use crate::choice::{Choice, display_by_name};

/// The colormaps heatmaps are drawn with (from the `colorous` crate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Colormap {
    /// Perceptually uniform black-red-yellow.
    #[default]
    Inferno,
    /// Perceptually uniform blue-green-yellow.
    Viridis,
    /// Google's rainbow with even lightness steps.
    Turbo,
    /// Diverging: blue for negative, white for zero, red for positive.
    RedBlue,
}

impl Choice for Colormap {
    const ALL: &'static [Self] = &[Self::Inferno, Self::Viridis, Self::Turbo, Self::RedBlue];

    fn name(self) -> &'static str {
        match self {
            Self::Inferno => "inferno",
            Self::Viridis => "viridis",
            Self::Turbo => "turbo",
            Self::RedBlue => "red-blue",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Inferno => "Perceptually uniform black-red-yellow",
            Self::Viridis => "Perceptually uniform blue-green-yellow",
            Self::Turbo => "Google's rainbow with even lightness steps",
            Self::RedBlue => "Diverging: blue for negative, white for zero, red for positive",
        }
    }
}

display_by_name!(Colormap);

impl Colormap {
    /// The color at `t` in [0, 1] (for [`Colormap::RedBlue`], 0.5 is zero).
    pub fn color(self, t: f64) -> Rgb<u8> {
        let t = t.clamp(0.0, 1.0);
        let c = match self {
            Self::Inferno => colorous::INFERNO.eval_continuous(t),
            Self::Viridis => colorous::VIRIDIS.eval_continuous(t),
            Self::Turbo => colorous::TURBO.eval_continuous(t),
            // colorous runs red to blue; positive evidence reads as red.
            Self::RedBlue => colorous::RED_BLUE.eval_continuous(1.0 - t),
        };
        Rgb([c.r, c.g, c.b])
    }
}

/// How a map's values are brought to [0, 1] (or [-1, 1] when signed) for coloring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling {
    /// Divide by the value where the cumulative sum of the sorted absolute values
    /// reaches `percentile`% of their total, then clip (Captum's default is 98).
    CumulativeOutlier {
        /// The percentile of the cumulative sum.
        percentile: f64,
    },
    /// The values are already in range (normalized CAMs).
    None,
    /// Divide by this value, then clip: one scale shared by several maps.
    Divide(f32),
}

impl Default for Scaling {
    fn default() -> Self {
        Self::CumulativeOutlier { percentile: 98.0 }
    }
}

impl Scaling {
    /// `values` scaled and clipped to [-1, 1].
    pub fn apply(self, values: &[f32]) -> Vec<f32> {
        match self {
            Self::None => values.iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
            Self::Divide(by) if by <= f32::EPSILON => vec![0.0; values.len()],
            Self::Divide(by) => values.iter().map(|v| (v / by).clamp(-1.0, 1.0)).collect(),
            Self::CumulativeOutlier { percentile } => {
                let threshold = cumulative_threshold(values, percentile);
                if threshold <= f32::EPSILON {
                    // An all-zero map (a dead unit): draw it as zero, not as noise.
                    return vec![0.0; values.len()];
                }
                values
                    .iter()
                    .map(|v| (v / threshold).clamp(-1.0, 1.0))
                    .collect()
            }
        }
    }
}

/// The smallest sorted |value| at which the cumulative sum of the sorted absolute
/// values reaches `percentile`% of their total.
pub(super) fn cumulative_threshold(values: &[f32], percentile: f64) -> f32 {
    let mut sorted: Vec<f64> = values.iter().map(|v| v.abs() as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let total: f64 = sorted.iter().sum();
    let goal = total * percentile / 100.0;
    let mut sum = 0.0;
    for v in &sorted {
        sum += v;
        if sum >= goal {
            return *v as f32;
        }
    }
    sorted.last().copied().unwrap_or(0.0) as f32
}

/// A heatmap of `values` (`width x height`, row-major, already scaled): signed maps
/// place -1..1 across the colormap, unsigned ones 0..1.
pub fn heatmap(
    values: &[f32],
    (width, height): (usize, usize),
    signed: bool,
    colormap: Colormap,
) -> Result<RgbImage> {
    ensure!(
        values.len() == width * height,
        "a {width}x{height} heatmap needs {} values, got {}",
        width * height,
        values.len()
    );
    let mut img = RgbImage::new(width as u32, height as u32);
    for (p, &v) in img.pixels_mut().zip(values) {
        let t = if signed {
            (v as f64 + 1.0) / 2.0
        } else {
            v as f64
        };
        *p = colormap.color(t);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlier_scaling_follows_captum() {
        // 1..=100: the cumulative sum reaches 98% of 5050 at 99 (4950 >= 4949).
        let values: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(cumulative_threshold(&values, 98.0), 99.0);
        let scaled = Scaling::default().apply(&values);
        assert_eq!(scaled[98], 1.0);
        assert_eq!(scaled[99], 1.0, "the outlier is clipped");
        assert!((scaled[0] - 1.0 / 99.0).abs() < 1e-7);
        // Signs survive; a dead map stays zero instead of becoming noise.
        let signed = Scaling::default().apply(&[-2.0, 1.0, 1.0]);
        assert_eq!(signed, [-1.0, 0.5, 0.5]);
        assert_eq!(Scaling::default().apply(&[0.0; 4]), [0.0; 4]);
    }

    #[test]
    fn heatmaps_span_the_colormap() {
        let img = heatmap(&[-1.0, 0.0, 1.0], (3, 1), true, Colormap::RedBlue).unwrap();
        let (neg, zero, pos) = (img[(0, 0)], img[(1, 0)], img[(2, 0)]);
        assert!(neg[2] > neg[0] && pos[0] > pos[2], "{neg:?} {pos:?}");
        assert!(
            zero.0.iter().all(|&c| c > 200),
            "zero is near white: {zero:?}"
        );
        assert!(heatmap(&[0.0; 2], (3, 1), false, Colormap::Inferno).is_err());
    }
}
