//! The model-randomization sanity check (Adebayo et al. 2018), cascading from the
//! top as Quantus's MPRT does: re-initialize the last layer with weights, then also
//! the one below, and so on, and after each step compare the method's map with the
//! trained model's by Spearman rank correlation. A map that explains the model must
//! change as the model is destroyed; the paper found guided backpropagation's barely
//! does.
//!
//! Convolutions and linear layers are re-initialized as PyTorch's `reset_parameters`
//! does (uniform in `±1/sqrt(fan_in)` for weights and biases), from a seeded stream;
//! batch norms keep their statistics. Maps are compared as Quantus compares them by
//! default: channels summed, then absolute values (CAMs as displayed); the targets
//! stay the trained model's.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::spearman;
use crate::attribution::{Attribution, ChannelReduction, Method, Target};
use crate::model::Model;

/// One step of the cascade: every layer from the top down to `layer` is random.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RandomizationStep {
    /// The lowest layer randomized so far.
    pub layer: String,
    /// Per input, the rank correlation of its map with the trained model's.
    pub spearman: Vec<f64>,
}

/// The cascade for `method` on `inputs` (`[N, 3, H, W]`), sample `i` explaining
/// `targets[i]`; `trained` is the method's attribution on the trained model (the
/// caller has it already).
pub fn cascading_randomization(
    model: &Model,
    method: &dyn Method,
    inputs: &Tensor,
    targets: &[Target],
    trained: &Attribution,
    seed: u64,
) -> Result<Vec<RandomizationStep>> {
    let (_, _, h, w) = inputs.dims4()?;
    let compared = |maps: &Attribution| -> Result<Vec<Vec<f32>>> {
        let display = maps.display((h, w), ChannelReduction::Sum)?.abs()?;
        Ok(display
            .flatten_from(1)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?)
    };
    let original = compared(trained)?;
    let mut parameters = model.parameters().to_vec();
    let layers = weighted_layers(&parameters);
    ensure!(!layers.is_empty(), "the model has no layers to randomize");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut steps = Vec::with_capacity(layers.len());
    for layer in layers.iter().rev() {
        let fan_in = parameters
            .iter()
            .find(|(name, _)| *name == format!("{layer}.weight"))
            .map(|(_, t)| t.dims()[1..].iter().product::<usize>())
            .unwrap_or(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        for (name, t) in parameters.iter_mut() {
            if module_of(name) == layer.as_str() {
                let values: Vec<f32> = (0..t.elem_count())
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                *t = Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())?;
            }
        }
        let random_model = model.with_parameters(parameters.clone())?;
        let randomized = compared(&method.attribute(&random_model, inputs, targets)?)?;
        let spearman = original
            .iter()
            .zip(&randomized)
            .map(|(a, b)| spearman(a, b))
            .collect();
        steps.push(RandomizationStep {
            layer: layer.clone(),
            spearman,
        });
    }
    Ok(steps)
}

/// The module a parameter belongs to: its name without the last part.
fn module_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(module, _)| module)
}

/// Modules with a kernel (a weight of rank 2 or more), in forward order.
fn weighted_layers(parameters: &[(String, Tensor)]) -> Vec<String> {
    let mut layers: Vec<String> = Vec::new();
    for (name, t) in parameters {
        let module = module_of(name);
        if name.ends_with(".weight") && t.rank() >= 2 && !layers.iter().any(|l| l == module) {
            layers.push(module.to_owned());
        }
    }
    layers
}
