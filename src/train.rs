//! Training a model on a procedural world, with Candle on the CPU: the demo model
//! on the demo world, or a modality plugin's model (its card) on its world.
//!
//! Every step draws a fresh batch of samples (the worlds are procedural, so the
//! model never sees a sample twice), optimises cross-entropy with AdamW under a
//! cosine learning-rate schedule, and reports progress. A sequence model (a
//! character LSTM) is fitted at every step of its input, each predicting the
//! symbol after it, as language models are trained; others predict the sample's
//! class. Held-out accuracy and loss are measured on samples from the world's
//! held-out index on, which training never draws.

use std::ops::Range;

use anyhow::{Context, Result, ensure};
use candle_core::{DType, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;

use crate::data::modality;
use crate::data::world::{HELD_OUT, World};
use crate::model::{Model, ModelCard, Weights, demo};

/// What a model trains on.
#[derive(Clone, Copy)]
pub enum Corpus<'a> {
    /// The demo world's scenes.
    Demo,
    /// A modality plugin's world.
    Plugin(&'a dyn modality::World),
}

impl Corpus<'_> {
    /// The first index training never draws.
    fn held_out(&self) -> u64 {
        match self {
            Corpus::Demo => HELD_OUT,
            Corpus::Plugin(world) => world.held_out(),
        }
    }

    /// Samples `indices` of the world of `seed` as `model`'s input batch and their
    /// classes, made in parallel (each is a pure function of its index, so the
    /// order is fixed).
    fn batch(&self, model: &Model, seed: u64, indices: Range<u64>) -> Result<(Tensor, Tensor)> {
        let device = model.device();
        let shape = model.input_spec().shape();
        let drawn: Vec<(Tensor, u32)> = indices
            .into_par_iter()
            .map(|i| match self {
                Corpus::Demo => {
                    let scene = World::new(seed).scene(i);
                    let input = model.input_spec().to_tensor(&scene.image, device)?;
                    Ok((input, scene.class as u32))
                }
                Corpus::Plugin(world) => {
                    let sample = world.sample(seed, i, shape)?;
                    let input = Tensor::from_vec(sample.input, shape.to_vec(), device)?;
                    Ok((input, sample.class as u32))
                }
            })
            .collect::<Result<_>>()?;
        let (inputs, classes): (Vec<Tensor>, Vec<u32>) = drawn.into_iter().unzip();
        let n = classes.len();
        Ok((
            Tensor::stack(&inputs, 0)?,
            Tensor::from_vec(classes, n, device)?,
        ))
    }
}

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
pub fn train_demo(config: &TrainConfig, progress: impl FnMut(Progress)) -> Result<Trained> {
    train(config, Corpus::Demo, demo::build, progress)
}

/// Trains the model `card` describes, from its architecture's closed-form
/// initialisation, on a modality plugin's `world`, whose classes it must name in
/// the same order.
pub fn train_card(
    config: &TrainConfig,
    card: &ModelCard,
    world: &dyn modality::World,
    progress: impl FnMut(Progress),
) -> Result<Trained> {
    let classes = card.class_names()?;
    ensure!(
        classes == world.classes(),
        "the card names the classes {classes:?}, but the world's are {:?}: the card's label \
         file must list the world's classes in its order",
        world.classes()
    );
    let build = |weights: &Weights| {
        Model::new(
            card.name.clone().unwrap_or_default(),
            card.architecture,
            &card.options,
            weights,
            card.input.clone(),
            classes.clone(),
        )
    };
    train(config, Corpus::Plugin(world), build, progress)
}

/// The training loop: `build` makes the model on trainable weights; batches come
/// from `corpus`.
fn train(
    config: &TrainConfig,
    corpus: Corpus,
    build: impl Fn(&Weights) -> Result<Model>,
    mut progress: impl FnMut(Progress),
) -> Result<Trained> {
    ensure!(
        config.steps > 0 && config.batch > 0,
        "training needs at least one step and one sample per batch"
    );
    let device = Device::Cpu;
    let weights = Weights::trainable(&device);
    let model = build(&weights)?;
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut optimizer = AdamW::new(weights.vars().into_iter().map(|(_, v)| v).collect(), params)?;
    let mut recent = Vec::new();
    for step in 0..config.steps {
        crate::jobs::checkpoint()?;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / config.steps as f64).cos());
        optimizer.set_learning_rate(config.learning_rate * (0.02 + 0.98 * cosine));
        let first = (step * config.batch) as u64;
        ensure!(
            first + config.batch as u64 <= corpus.held_out(),
            "{} steps of {} samples would reach the world's held-out samples (index {})",
            config.steps,
            config.batch,
            corpus.held_out()
        );
        let (x, y) = corpus.batch(&model, config.seed, first..first + config.batch as u64)?;
        let loss = loss(&model, &x, &y)?;
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
    let model = build(&Weights::from_tensors(tensors.clone(), &device)?)?;
    Ok(Trained { model, tensors })
}

/// `model`'s mean cross-entropy on the batch `x` of classes `y`: of its prediction,
/// or for a sequence model of its prediction at every step (of the input's symbol
/// at the step after; of the class after the last).
fn loss(model: &Model, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let Some(steps) = model.every_step(x)? else {
        return Ok(candle_nn::loss::cross_entropy(&model.logits(x)?, y)?);
    };
    let (n, classes, t) = steps.dims3()?;
    let next = x.squeeze(2)?.narrow(2, 1, t - 1)?.argmax(1)?;
    let targets = Tensor::cat(&[next, y.unsqueeze(1)?], 1)?.flatten_all()?;
    let logits = steps.transpose(1, 2)?.reshape((n * t, classes))?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// How a model does on held-out samples.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct HeldOut {
    /// The fraction classified right (for a sequence model: whose symbol after
    /// the last step it predicts right).
    pub accuracy: f64,
    /// Mean cross-entropy in nats, as training measures it (a sequence model's
    /// over every step).
    pub loss: f64,
    /// Samples measured.
    pub samples: usize,
}

/// How `model` does on `count` held-out samples of `corpus`'s world of `seed`.
pub fn held_out(model: &Model, corpus: Corpus, seed: u64, count: usize) -> Result<HeldOut> {
    let (mut correct, mut loss_sum) = (0, 0.0);
    for start in (0..count).step_by(256) {
        let n = (count - start).min(256);
        let first = corpus.held_out() + start as u64;
        let (x, y) = corpus.batch(model, seed, first..first + n as u64)?;
        let predicted = model.logits(&x)?.argmax(1)?;
        correct += predicted
            .eq(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        loss_sum += f64::from(loss(model, &x, &y)?.to_scalar::<f32>()?) * n as f64;
    }
    Ok(HeldOut {
        accuracy: correct as f64 / count as f64,
        loss: loss_sum / count as f64,
        samples: count,
    })
}
