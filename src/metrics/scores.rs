//! The scores of one map and their means over a set, serializable: what `explain
//! --metrics` records per map and `evaluate` tabulates per method.

use anyhow::Result;
use candle_core::Tensor;
use serde::Serialize;

use super::deletion::{DeletionInsertion, auc};
use super::localization::{mass_inside, pointing_hit};
use crate::model::Model;

/// How far to trust one map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapScores {
    /// Area under the deletion curve (lower is more faithful).
    pub deletion_auc: f64,
    /// Area under the insertion curve (higher is more faithful).
    pub insertion_auc: f64,
    /// Whether the map's maximum lies on the object, where its pixels are known.
    pub pointing_hit: Option<bool>,
    /// The share of the map's positive mass on the object, where known.
    pub mass_inside: Option<f64>,
}

impl MapScores {
    /// The scores of `map` (one value per pixel, row-major) of `input` (`[3, H, W]`)
    /// for the probability of `class`; the localization scores only with `mask`, the
    /// object's pixels.
    pub fn measure(
        model: &Model,
        games: &DeletionInsertion,
        (input, map): (&Tensor, &[f32]),
        class: usize,
        mask: Option<&[bool]>,
    ) -> Result<Self> {
        let curves = games.curves(model, input, map, class)?;
        Ok(Self {
            deletion_auc: auc(&curves.deletion),
            insertion_auc: auc(&curves.insertion),
            pointing_hit: mask.map(|m| pointing_hit(map, m)),
            mass_inside: mask.map(|m| mass_inside(map, m)),
        })
    }
}

/// The mean scores of a set of maps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeanScores {
    /// Maps scored.
    pub images: usize,
    /// Mean deletion area.
    pub deletion_auc: f64,
    /// Mean insertion area.
    pub insertion_auc: f64,
    /// The pointing game's hit rate, if every map had a mask.
    pub pointing_game: Option<f64>,
    /// The mean mass on the object, if every map had a mask.
    pub mass_inside: Option<f64>,
}

impl MeanScores {
    /// The means of `scores`.
    pub fn of(scores: &[MapScores]) -> Self {
        let n = scores.len().max(1) as f64;
        let mean = |f: fn(&MapScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
        let all = |f: fn(&MapScores) -> Option<f64>| -> Option<f64> {
            let values: Option<Vec<f64>> = scores.iter().map(f).collect();
            values
                .filter(|v| !v.is_empty())
                .map(|v| v.iter().sum::<f64>() / n)
        };
        Self {
            images: scores.len(),
            deletion_auc: mean(|s| s.deletion_auc),
            insertion_auc: mean(|s| s.insertion_auc),
            pointing_game: all(|s| s.pointing_hit.map(f64::from)),
            mass_inside: all(|s| s.mass_inside),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(deletion: f64, hit: Option<bool>) -> MapScores {
        MapScores {
            deletion_auc: deletion,
            insertion_auc: 1.0 - deletion,
            pointing_hit: hit,
            mass_inside: hit.map(|h| if h { 0.5 } else { 0.0 }),
        }
    }

    #[test]
    fn means_need_every_mask_for_localization() {
        let mean = MeanScores::of(&[scores(0.2, Some(true)), scores(0.4, Some(false))]);
        assert!((mean.deletion_auc - 0.3).abs() < 1e-12);
        assert!((mean.insertion_auc - 0.7).abs() < 1e-12);
        assert_eq!(
            (mean.pointing_game, mean.mass_inside),
            (Some(0.5), Some(0.25))
        );
        let partial = MeanScores::of(&[scores(0.2, Some(true)), scores(0.4, None)]);
        assert_eq!((partial.pointing_game, partial.mass_inside), (None, None));
        assert_eq!(MeanScores::of(&[]).images, 0);
    }
}
