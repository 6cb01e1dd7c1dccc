//! Training the demo model on the demo world, with Candle on the CPU.
//!
//! Every step draws a fresh batch of scenes (the world is procedural, so the model
//! never sees an image twice), optimises cross-entropy with AdamW under a cosine
//! learning-rate schedule, and reports progress. Held-out accuracy is measured on
//! scenes from [`HELD_OUT`] on, which training never draws.

use anyhow::{Context, Result, ensure};
use candle_core::{DType, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

use crate::data::world::{HELD_OUT, World};
use crate::model::{Model, Weights, demo};

/// Hyper-parameters of a training run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    /// World seed: the same seed gives the same weights.
    pub seed: u64,
    /// Optimisation steps.
    pub steps: usize,
    /// Scenes per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 900,
            batch: 64,
            learning_rate: 3e-3,
        }
    }
}

/// What a step reports to the caller (for a progress bar).
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Mean loss over the last steps.
    pub loss: f32,
}

/// A trained model and its parameters by name (to save).
pub struct Trained {
    /// The model, ready for inference.
    pub model: Model,
    /// Its parameters, by PyTorch-style name.
    pub tensors: Vec<(String, Tensor)>,
}

impl Trained {
    /// Writes the parameters as safetensors.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let map: std::collections::HashMap<_, _> = self.tensors.iter().cloned().collect();
        let bytes = safetensors::serialize(&map, None)
            .with_context(|| format!("cannot encode weights for `{}`", path.display()))?;
        crate::atomic::write(path, &bytes)
    }
}

/// Trains the demo model from its closed-form initialisation.
pub fn train_demo(config: &TrainConfig, mut progress: impl FnMut(Progress)) -> Result<Trained> {
    ensure!(
        config.steps > 0 && config.batch > 0,
        "training needs at least one step and one scene per batch"
    );
    let device = Device::Cpu;
    let weights = Weights::trainable(&device);
    let model = demo::build(&weights)?;
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut optimizer = AdamW::new(weights.vars().into_iter().map(|(_, v)| v).collect(), params)?;
    let world = World::new(config.seed);
    let mut recent = Vec::new();
    for step in 0..config.steps {
        crate::jobs::checkpoint()?;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / config.steps as f64).cos());
        optimizer.set_learning_rate(config.learning_rate * (0.02 + 0.98 * cosine));
        let first = (step * config.batch) as u64;
        let (x, y) = batch(&model, &world, first..first + config.batch as u64, &device)?;
        let loss = candle_nn::loss::cross_entropy(&model.logits(&x)?, &y)?;
        optimizer.backward_step(&loss)?;
        recent.push(loss.to_scalar::<f32>()?);
        if recent.len() > 20 {
            recent.remove(0);
        }
        progress(Progress {
            step: step + 1,
            loss: recent.iter().sum::<f32>() / recent.len() as f32,
        });
    }
    // Rebuild from the trained values as plain tensors, off the autograd graph.
    let tensors: Vec<(String, Tensor)> = weights
        .vars()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().detach()))
        .collect();
    let model = demo::build(&Weights::from_tensors(tensors.clone(), &device)?)?;
    Ok(Trained { model, tensors })
}

/// The fraction of `count` held-out scenes of `seed` that `model` classifies right.
pub fn held_out_accuracy(model: &Model, seed: u64, count: usize) -> Result<f64> {
    let world = World::new(seed);
    let mut correct = 0;
    for start in (0..count).step_by(256) {
        let n = (count - start).min(256) as u64;
        let first = HELD_OUT + start as u64;
        let (x, y) = batch(model, &world, first..first + n, model.device())?;
        let predicted = model.logits(&x)?.argmax(1)?;
        correct += predicted
            .eq(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
    }
    Ok(correct as f64 / count as f64)
}

/// Scenes `indices` as a normalised input batch and their class labels, drawn in
/// parallel (each scene is a pure function of its index, so the order is fixed).
fn batch(
    model: &Model,
    world: &World,
    indices: std::ops::Range<u64>,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    use rayon::prelude::*;
    let drawn: Vec<(Tensor, u32)> = indices
        .into_par_iter()
        .map(|i| {
            let scene = world.scene(i);
            Ok((
                model.input_spec().to_tensor(&scene.image, device)?,
                scene.class as u32,
            ))
        })
        .collect::<Result<_>>()?;
    let (images, labels): (Vec<Tensor>, Vec<u32>) = drawn.into_iter().unzip();
    let n = labels.len();
    Ok((
        Tensor::stack(&images, 0)?,
        Tensor::from_vec(labels, n, device)?,
    ))
}
