//! Subcommands: each parses its arguments, calls the library, prints.

pub mod allocator;
pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod explain;
pub mod info;
pub mod methods;
pub mod overview;
pub mod predict;
pub mod threads;
pub mod train;

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use unitscope::model::{Model, ModelCard};

/// The model a `--model CARD` option names, or the embedded demo model.
fn load_model(card: Option<&Path>) -> Result<Model> {
    match card {
        Some(card) => Model::from_card(&ModelCard::load(card)?, &device()?),
        None => unitscope::model::demo::model(&device()?),
    }
}

/// The first CUDA device when built with `--features cuda`, else the CPU.
fn device() -> Result<Device> {
    if cfg!(feature = "cuda") {
        Ok(Device::new_cuda(0)?)
    } else {
        Ok(Device::Cpu)
    }
}
