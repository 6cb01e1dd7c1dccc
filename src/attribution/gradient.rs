//! The gradient family, one backward pass each under the engine's rectifier rule:
//! the vanilla gradient (Simonyan et al. 2014), DeconvNet (Zeiler & Fergus 2014),
//! guided backpropagation (Springenberg et al. 2015), and any of them times the input
//! (Shrikumar et al. 2016).

use anyhow::Result;
use candle_core::Tensor;

use super::descriptor::{Build, Descriptor};
use super::method::{Attribution, Method, Passes, backward, held_gradient};
use super::target::Target;
use crate::model::{BackwardRule, InputGradient, Model, Probe, Stem};

/// The gradient family's methods.
pub const DESCRIPTORS: &[Descriptor] = &[
    Descriptor {
        name: "saliency",
        aliases: &[],
        about: "the vanilla gradient",
        citation: "Simonyan et al. 2014",
        params: &[],
        build: Build::Method(&|_| Ok(Box::new(Gradient::saliency()))),
    },
    Descriptor {
        name: "gradient-x-input",
        aliases: &[],
        about: "the gradient times the input",
        citation: "Shrikumar et al. 2016",
        params: &[],
        build: Build::Method(&|_| Ok(Box::new(Gradient::times_input()))),
    },
    Descriptor {
        name: "deconvnet",
        aliases: &[],
        about: "DeconvNet's backward rule at every rectifier",
        citation: "Zeiler & Fergus 2014",
        params: &[],
        build: Build::Method(&|_| Ok(Box::new(Gradient::deconvnet()))),
    },
    Descriptor {
        name: "guided-backprop",
        aliases: &[],
        about: "guided backpropagation",
        citation: "Springenberg et al. 2015",
        params: &[],
        build: Build::Method(&|_| Ok(Box::new(Gradient::guided_backprop()))),
    },
];

/// The input gradient of each target under a backward rule, signed and per channel
/// (`[N, 3, H, W]`); optionally multiplied by the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gradient {
    /// How gradients pass back through rectifiers.
    pub rule: BackwardRule,
    /// Whether the map is gradient x input.
    pub times_input: bool,
}

impl Gradient {
    /// The vanilla gradient (saliency).
    pub fn saliency() -> Self {
        Self {
            rule: BackwardRule::Gradient,
            times_input: false,
        }
    }

    /// DeconvNet.
    pub fn deconvnet() -> Self {
        Self {
            rule: BackwardRule::DeconvNet,
            ..Self::saliency()
        }
    }

    /// Guided backpropagation.
    pub fn guided_backprop() -> Self {
        Self {
            rule: BackwardRule::GuidedBackprop,
            ..Self::saliency()
        }
    }

    /// The vanilla gradient times the input.
    pub fn times_input() -> Self {
        Self {
            times_input: true,
            ..Self::saliency()
        }
    }
}

impl Method for Gradient {
    fn name(&self) -> String {
        let base = match self.rule {
            BackwardRule::Gradient => "saliency",
            BackwardRule::GuidedBackprop => "guided-backprop",
            BackwardRule::DeconvNet => "deconvnet",
        };
        match self.times_input {
            false => base.to_string(),
            true if self.rule == BackwardRule::Gradient => "gradient-x-input".to_string(),
            true => format!("{base}-x-input"),
        }
    }

    fn passes(&self, _size: (usize, usize)) -> Passes {
        Passes {
            backward: 1,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        let (_, grads) = backward(model, inputs, targets, Probe::new().rule(self.rule))?;
        let grad = grads.input()?;
        Ok(Attribution::Input(match self.times_input {
            false => grad,
            true => grad.mul(&inputs.to_dtype(grad.dtype())?)?,
        }))
    }

    fn input_gradient(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<Option<InputGradient>> {
        if self.times_input {
            return Ok(None);
        }
        let probe = Probe::new().rule(self.rule);
        let source = |stem: &Stem, x: &Tensor| stem.apply(x);
        let grad = held_gradient(model, (inputs, targets), None, probe, &source)?;
        Ok(Some(grad))
    }
}
