//! What an attribution explains: a class logit or any unit of any layer.

use std::fmt;

use anyhow::{Context, Result, ensure};
use candle_core::{D, Tensor};

use crate::data::labels;
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
    /// The targets one `--target` value asks for, each with its text: the value as
    /// one class name when it is one (ImageNet's names hold commas: `tabby, tabby
    /// cat`), else its comma-separated parts.
    pub fn parse_list(s: &str, labels: &[String]) -> Result<Vec<(String, Self)>> {
        if s.contains(',')
            && let Ok(c) = labels::find(labels, s)
        {
            return Ok(vec![(s.trim().to_owned(), Self::Class(c))]);
        }
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Ok((t.to_owned(), Self::parse(t, labels)?)))
            .collect()
    }

    /// Parses `predicted`, a class index, a class name of `labels` (any synonym, any
    /// case: [`labels::find`]), or a unit address.
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
        if s.contains(':') {
            return Ok(Self::Unit(s.parse()?));
        }
        labels::find(labels, s).map(Self::Class).with_context(|| {
            format!(
                "target `{s}` is neither `predicted`, a class index or name, nor a unit \
                 LAYER:CHANNEL[:Y:X] (`unitscope info` lists layers)"
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A name holding commas is one target when it is a whole label; otherwise the
    /// commas separate targets.
    #[test]
    fn a_target_list_keeps_names_with_commas_whole() {
        let labels = labels::load("imagenet", std::path::Path::new(".")).unwrap();
        let one = TargetSpec::parse_list("tabby, tabby cat", &labels).unwrap();
        assert_eq!(
            one,
            [("tabby, tabby cat".to_owned(), TargetSpec::Class(281))]
        );
        let two = TargetSpec::parse_list("predicted, Tabby Cat", &labels).unwrap();
        assert_eq!(
            two,
            [
                ("predicted".to_owned(), TargetSpec::Predicted),
                ("Tabby Cat".to_owned(), TargetSpec::Class(281))
            ]
        );
    }
}
