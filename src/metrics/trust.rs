//! One method's row of the trust table: its maps for every input, scored by the
//! deletion and insertion games (and, where the objects' pixels are known, the
//! pointing game and the mass inside), the cascading model-randomization check, and
//! the fragility measures.
//! `unitscope evaluate` prints these rows; the TUI's Trust screen draws them.

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::Serialize;

use super::{
    DeletionInsertion, Fragility, FragilityScores, MapScores, MeanScores, RandomizationStep,
};
use crate::attribution::{self, ChannelReduction, Method, Target};
use crate::model::Model;

/// What a method is measured on: a batch of inputs and, per input, the object's
/// pixels where known.
pub struct TrustInputs {
    /// `[N, 3, H, W]`.
    pub tensor: Tensor,
    /// Per input, its object's pixels (row-major `H x W`), if every input has them.
    pub masks: Option<Vec<Vec<bool>>>,
}

impl TrustInputs {
    /// The mean object area fraction: the pointing game's hit rate for a random
    /// point, the baseline its score is read against.
    pub fn random_point_baseline(&self) -> Option<f64> {
        let masks = self.masks.as_ref()?;
        let per_image = |m: &Vec<bool>| m.iter().filter(|&&b| b).count() as f64 / m.len() as f64;
        Some(masks.iter().map(per_image).sum::<f64>() / masks.len() as f64)
    }
}

/// One method's measured trust.
#[derive(Clone, Debug, Serialize)]
pub struct Trust {
    /// The scores averaged over the inputs.
    pub means: MeanScores,
    /// The cascade, top layer first, if it was run.
    pub randomization: Option<Vec<RandomizationStep>>,
    /// Max-sensitivity and the shift test, per input.
    pub fragility: FragilityScores,
}

impl Trust {
    /// The mean rank correlation with the trained model's maps once every layer is
    /// random (low: the maps depend on what the model learned).
    pub fn fully_random_spearman(&self) -> Option<f64> {
        let last = self.randomization.as_ref()?.last()?;
        Some(last.spearman.iter().sum::<f64>() / last.spearman.len().max(1) as f64)
    }
}

/// Measures `method` on `inputs`, each explained for the class the model predicts;
/// the randomization check runs when `randomization_seed` is given, the fragility
/// measures as `fragility` sets them. Stops between inputs when the running job is
/// cancelled ([`crate::jobs::checkpoint`]).
pub fn trust(
    model: &Model,
    method: &dyn Method,
    inputs: &TrustInputs,
    (games, fragility): (&DeletionInsertion, &Fragility),
    randomization_seed: Option<u64>,
) -> Result<Trust> {
    let x = &inputs.tensor;
    let (_, _, h, w) = x.dims4()?;
    let classes = attribution::predicted(model, x)?;
    let targets: Vec<Target> = classes.iter().map(|&c| Target::Class(c)).collect();
    let attribution = method.attribute(model, x, &targets)?;
    let maps = attribution
        .display((h, w), ChannelReduction::MaxAbs)?
        .flatten_from(1)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?;
    let mut scores = Vec::with_capacity(maps.len());
    for (i, map) in maps.iter().enumerate() {
        crate::jobs::checkpoint()?;
        let mask = inputs.masks.as_ref().map(|m| m[i].as_slice());
        let pair = (&x.get(i)?, map.as_slice());
        scores.push(MapScores::measure(model, games, pair, classes[i], mask)?);
    }
    let randomization = randomization_seed
        .map(|seed| super::cascading_randomization(model, method, x, &targets, &attribution, seed))
        .transpose()?;
    let fragility = super::fragility(
        model,
        method,
        (x, &targets),
        (&attribution, &classes),
        fragility,
    )?;
    Ok(Trust {
        means: MeanScores::of(&scores),
        randomization,
        fragility,
    })
}
