//! What an attribution explains: a class logit or any unit of any layer.

use std::fmt;

use anyhow::{Context, Result, ensure};
use candle_core::{D, Tensor};

use crate::model::{Model, Objective, Reduce, UnitAddress};

/// The scalar a map attributes, for one input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A class's logit.
    Class(usize),
    /// A unit's activation: at its position, or its channel's spatial mean.
    Unit(UnitAddress),
}

impl Target {
    /// The objective whose gradient the methods take.
    pub fn objective(&self) -> Objective {
        match self {
            Self::Class(c) => Objective::Logit(*c),
            Self::Unit(unit) => Objective::Unit {
                unit: unit.clone(),
                reduce: Reduce::Mean,
            },
        }
    }

    /// The layer a forward pass must record for this target, if any.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Self::Class(_) => None,
            Self::Unit(unit) => Some(&unit.layer),
        }
    }

    /// The objective of a batch whose sample `i` explains `targets[i]`.
    pub fn batch_objective(targets: &[Target]) -> Objective {
        Objective::PerSample(targets.iter().map(Target::objective).collect())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(c) => write!(f, "class {c}"),
            Self::Unit(unit) => write!(f, "unit {unit}"),
        }
    }
}

/// A target as asked for: the predicted class of each input (the default), a class by
/// index or name, or a unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TargetSpec {
    /// Each input's most probable class.
    #[default]
    Predicted,
    /// A class by index.
    Class(usize),
    /// A unit: `LAYER:CHANNEL` or `LAYER:CHANNEL:Y:X`.
    Unit(UnitAddress),
}

impl TargetSpec {
    /// Parses `predicted`, a class index, a class name of `labels`, or a unit address.
    pub fn parse(s: &str, labels: &[String]) -> Result<Self> {
        if s == "predicted" {
            return Ok(Self::Predicted);
        }
        if let Ok(c) = s.parse::<usize>() {
            ensure!(
                c < labels.len(),
                "target class {c} is out of range: the model has {} classes",
                labels.len()
            );
            return Ok(Self::Class(c));
        }
        if let Some(c) = labels.iter().position(|l| l == s) {
            return Ok(Self::Class(c));
        }
        if s.contains(':') {
            return Ok(Self::Unit(s.parse()?));
        }
        anyhow::bail!(
            "target `{s}` is neither `predicted`, a class index or name, nor a unit \
             LAYER:CHANNEL[:Y:X] (`unitscope info` lists layers)"
        )
    }

    /// The target of each input, given each input's most probable class
    /// ([`predicted`]; read only for [`TargetSpec::Predicted`]).
    pub fn resolve(&self, predicted: &[usize]) -> Vec<Target> {
        let n = predicted.len();
        match self {
            Self::Predicted => predicted.iter().copied().map(Target::Class).collect(),
            Self::Class(c) => vec![Target::Class(*c); n],
            Self::Unit(unit) => vec![Target::Unit(unit.clone()); n],
        }
    }
}

/// Each input's most probable class.
pub fn predicted(model: &Model, inputs: &Tensor) -> Result<Vec<usize>> {
    let classes = model
        .logits(inputs)?
        .argmax(D::Minus1)
        .context("predicted classes")?;
    Ok(classes
        .to_vec1::<u32>()?
        .into_iter()
        .map(|c| c as usize)
        .collect())
}
