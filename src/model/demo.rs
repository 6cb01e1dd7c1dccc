//! The demo model: a plain CNN trained on the demo concept world to name the shape of
//! the largest object. Its weights ship inside the binary, so every view works on a
//! fresh clone with no download; `unitscope train demo` reproduces them.

use anyhow::{Context, Result};
use candle_core::Device;

use super::{ArchOptions, Architecture, Model, Weights};
use crate::data::InputSpec;
use crate::data::world::{SHAPES, SIZE};

/// The trained weights (safetensors), written by `unitscope train demo`.
const WEIGHTS: &[u8] = include_bytes!("../../assets/demo-model.safetensors");

/// The demo model's architecture options: four conv stages, no batch norm (training
/// on Candle uses the eval-mode layers unitscope inspects).
pub fn options() -> ArchOptions {
    ArchOptions {
        channels: Some(vec![16, 32, 64, 128]),
        batch_norm: Some(false),
        ..ArchOptions::default()
    }
}

/// Its preprocessing: the world's 64x64 images as they are, centered and scaled.
pub fn input_spec() -> InputSpec {
    InputSpec {
        size: [SIZE, SIZE],
        resize: crate::data::ResizeMode::Stretch,
        mean: [0.5; 3],
        std: [0.25; 3],
        ..InputSpec::default()
    }
}

/// Its class names: the world's shapes.
pub fn labels() -> Vec<String> {
    SHAPES.iter().map(|s| s.to_string()).collect()
}

/// Builds the demo architecture from `weights`.
pub fn build(weights: &Weights) -> Result<Model> {
    Model::new(
        "demo".into(),
        Architecture::PlainCnn,
        &options(),
        weights,
        input_spec(),
        labels(),
    )
}

/// The embedded, trained demo model.
pub fn model(device: &Device) -> Result<Model> {
    let tensors = candle_core::safetensors::load_buffer(WEIGHTS, &Device::Cpu)
        .context("embedded demo weights")?;
    build(&Weights::from_tensors(tensors, device)?)
}
