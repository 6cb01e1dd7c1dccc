//! The rules a backward pass follows at every rectifier, and the rectifiers
//! themselves: plain data that the ops, the CPU kernels and the trace all read, so it
//! depends on nothing else in the crate but the naming of its values.

use crate::choice::{Choice, display_by_name};

/// How gradients pass backwards through every ReLU (and ReLU6) application.
///
/// With `x` the rectifier's input and `g` the gradient arriving from above:
///
/// | rule | ReLU | ReLU6 |
/// |---|---|---|
/// | `Gradient` | `g·[x>0]` | `g·[0<x<6]` |
/// | `GuidedBackprop` (Springenberg et al. 2015) | `max(g,0)·[x>0]` | `max(g,0)·[0<x<6]` |
/// | `DeconvNet` (Zeiler & Fergus 2014) | `max(g,0)` | `max(g,0)` |
///
/// The rule applies at every application, not per module: ResNet runs one ReLU
/// module two or three times per block, and each run follows the rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackwardRule {
    /// The true gradient.
    #[default]
    Gradient,
    /// Guided backpropagation: only positive gradients through open units.
    GuidedBackprop,
    /// DeconvNet: only positive gradients, ignoring the forward mask.
    #[serde(rename = "deconvnet")]
    DeconvNet,
}

impl Choice for BackwardRule {
    const ALL: &'static [Self] = &[Self::Gradient, Self::GuidedBackprop, Self::DeconvNet];

    fn name(self) -> &'static str {
        match self {
            Self::Gradient => "gradient",
            Self::GuidedBackprop => "guided-backprop",
            Self::DeconvNet => "deconvnet",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Gradient => "The true gradient",
            Self::GuidedBackprop => "Only positive gradients through open units",
            Self::DeconvNet => "Only positive gradients, ignoring the forward mask",
        }
    }
}

display_by_name!(BackwardRule);

/// Which rectifier: ReLU, or ReLU6 (clamped to [0, 6], as EfficientNet-Lite uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rectifier {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

/// A rectifier and the rule its backward pass follows; convolutions can apply one to
/// their output as part of the same op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    /// Which rectifier.
    pub kind: Rectifier,
    /// The rule its backward pass follows.
    pub rule: BackwardRule,
}
