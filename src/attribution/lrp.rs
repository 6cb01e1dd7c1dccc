//! Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019): the
//! target's value, `R = f(x)`, redistributed layer by layer down to the input, each
//! layer by a rule that conserves it (up to what biases and stabilizers absorb):
//!
//! `R_j = Σ_k (x_j ρ(w_jk) / Σ_j' x_j' ρ(w_j'k)) R_k`
//!
//! with `ρ` the rule's weight modification (ε, z⁺, γ, αβ, zᴮ, flat:
//! [`crate::model::relevance`]). A composite chooses the rules per layer as Zennit's
//! do: `epsilon-plus-flat` (the default, Zennit's recommendation for VGG-like
//! networks), `epsilon-gamma-box` (zᴮ at the input, with bounds from the model's
//! normalization: `(0 - mean) / std` to `(1 - mean) / std` per channel),
//! `epsilon-alpha2-beta1-flat`, `epsilon-plus`. The engine runs it as one forward
//! and one backward pass whose ops carry relevance ([`Probe::relevance`]); batch
//! norm is folded into its convolution and residual sums share relevance in
//! proportion, as Zennit's canonizers arrange.
//!
//! `--without-bias` leaves biases out of the rules (Zennit's `zero_params`): then a
//! map sums to the target's value within the stabilizers, except for the relevance
//! of units whose rule's denominator is zero (a z⁺ unit whose inputs meet only
//! negative weights: 1% of AlexNet's logit, in Zennit too; 38% of EfficientNet-Lite0's
//! on closed-form weights, which no reference checks). [`conservation`] reports the
//! share kept.

use anyhow::{Result, bail, ensure};
use candle_core::{DType, Tensor};

use super::descriptor::shared::BATCH_SIZE;
use super::descriptor::{Build, Descriptor, Kind, Param, Params};
use super::method::{Notes, Attribution, Method, Passes, check_targets, in_batches, recording_targets};
use super::target::Target;
use crate::model::{Composite, Model, Probe, Relevance};

/// LRP.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "lrp",
    aliases: &["relevance"],
    about: "Layer-wise relevance propagation: the target's value passed down by per-layer rules",
    citation: "Bach et al. 2015; Montavon et al. 2019",
    params: &[COMPOSITE, EPSILON, GAMMA, WITHOUT_BIAS, BATCH_SIZE],
    build: Build::Method(&|p| Ok(Box::new(Lrp::from_params(p)?))),
}];

const COMPOSITE: Param = Param {
    name: "composite",
    kind: Kind::Choice {
        default: "epsilon-plus-flat",
        values: &[
            (
                "epsilon-plus-flat",
                "flat at the input, z+ for convolutions, epsilon for dense layers",
            ),
            (
                "epsilon-gamma-box",
                "zB (the input's bounds) at the input, gamma for convolutions, epsilon for dense layers",
            ),
            (
                "epsilon-alpha2-beta1-flat",
                "flat at the input, alpha=2 beta=1 for convolutions, epsilon for dense layers",
            ),
            ("epsilon-plus", "z+ for every convolution, epsilon for dense layers"),
        ],
    },
    help: "LRP: which rule each layer follows (Zennit's composites)",
};

const EPSILON: Param = Param {
    name: "epsilon",
    kind: Kind::Real {
        default: 1e-6,
        // Zero (LRP-0) would divide by zero wherever an output is exactly zero.
        min: 1e-12,
        max: 1e3,
    },
    help: "LRP: the epsilon rule's stabilizer, for dense layers",
};

const GAMMA: Param = Param {
    name: "gamma",
    kind: Kind::Real {
        default: 0.25,
        min: 0.0,
        max: 1e3,
    },
    help: "LRP: how much the gamma rule favours positive weights (epsilon-gamma-box)",
};

const WITHOUT_BIAS: Param = Param {
    name: "without-bias",
    kind: Kind::Flag,
    help: "LRP: leave biases out of the rules, so that maps sum to the target's value",
};

/// Layer-wise relevance propagation under a composite.
#[derive(Clone, Debug, PartialEq)]
pub struct Lrp {
    /// Which rule each layer follows.
    pub composite: Composite,
    /// The ε of dense layers.
    pub epsilon: f64,
    /// The γ of the γ rule.
    pub gamma: f64,
    /// Whether the rules leave biases out.
    pub without_bias: bool,
    /// Inputs per pass.
    pub batch: usize,
}

impl Default for Lrp {
    fn default() -> Self {
        Self {
            composite: Composite::default(),
            epsilon: 1e-6,
            gamma: 0.25,
            without_bias: false,
            batch: 16,
        }
    }
}

impl Lrp {
    fn from_params(p: &Params) -> Result<Self> {
        let name = p.text(&COMPOSITE)?;
        let Some(composite) = Composite::from_name(&name) else {
            bail!("no LRP composite `{name}`");
        };
        Ok(Self {
            composite,
            epsilon: p.real(&EPSILON)?,
            gamma: p.real(&GAMMA)?,
            without_bias: p.flag(&WITHOUT_BIAS)?,
            batch: p.count(&BATCH_SIZE)?,
        })
    }

    /// The rules for `model`: the composite, and the bounds of its inputs.
    pub fn rules(&self, model: &Model) -> Result<Relevance> {
        ensure!(
            !model.architecture().is_sequence(),
            "LRP has rules for convolutions, dense layers, rectifiers, pools and residual \
             sums; `{}` is a recurrent model (explain it with a gradient method: saliency, \
             integrated-gradients, ...)",
            model.architecture()
        );
        let spec = model.input_spec();
        let bounds = match spec.channels {
            3 => (0..3)
                .map(|c| (-spec.mean[c] / spec.std[c], (1.0 - spec.mean[c]) / spec.std[c]))
                .unzip(),
            n => (vec![0.0; n], vec![1.0; n]),
        };
        Ok(Relevance {
            composite: self.composite,
            epsilon: self.epsilon,
            gamma: self.gamma,
            bounds,
            without_bias: self.without_bias,
        })
    }
}

impl Method for Lrp {
    fn name(&self) -> String {
        let bias = if self.without_bias { ", without bias" } else { "" };
        format!("lrp({}{bias})", self.composite.name())
    }

    fn passes(&self, _: (usize, usize)) -> Passes {
        Passes {
            backward: 1,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        Ok(self.attribute_noted(model, inputs, targets)?.0)
    }

    fn attribute_noted(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<(Attribution, Vec<Notes>)> {
        check_targets(inputs, targets)?;
        let rules = self.rules(model)?;
        let batches = in_batches(inputs.dim(0)?, self.batch, |start, len| {
            let (x, t) = (inputs.narrow(0, start, len)?, &targets[start..start + len]);
            let probe = recording_targets(Probe::new().relevance(rules.clone()), t);
            let capture = model.forward(&x, &probe)?;
            let objective = Target::batch_objective(t);
            let seed = capture.relevance(&objective)?;
            let map = capture.backward(&seed)?.input()?;
            let kept = conservation(&map, &capture.per_sample(&objective)?.detach())?;
            Ok((map, kept))
        })?;
        let (maps, kept): (Vec<_>, Vec<_>) = batches.into_iter().unzip();
        let notes = kept
            .into_iter()
            .flatten()
            .map(|k| Notes {
                conservation: Some(k),
                ..Notes::default()
            })
            .collect();
        Ok((Attribution::Input(Tensor::cat(&maps, 0)?), notes))
    }
}

/// How much of each target's value its map holds: `Σ map / value` per input
/// (`1` is full conservation; biases and stabilizers absorb the rest).
pub fn conservation(maps: &Tensor, values: &Tensor) -> Result<Vec<f64>> {
    let n = maps.dim(0)?;
    ensure!(values.dims() == [n], "{} values for {n} maps", values.elem_count());
    let sums = maps.to_dtype(DType::F64)?.flatten_from(1)?.sum(1)?.to_vec1::<f64>()?;
    let values = values.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(sums.iter().zip(values).map(|(s, v)| s / v).collect())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::Architecture;

    /// A recurrent model has no rules: a clear error, not a map that means nothing.
    #[test]
    fn recurrent_models_are_refused_with_the_methods_that_work() {
        let model = Model::synthetic(Architecture::CharLstm, &Device::Cpu).unwrap();
        let err = Lrp::default().rules(&model).unwrap_err().to_string();
        assert!(err.contains("recurrent") && err.contains("saliency"), "{err}");
    }
}
