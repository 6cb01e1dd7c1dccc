//! Subcommands: each parses its arguments, calls the library, prints.

pub mod bench;
pub mod info;
pub mod predict;

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use unitscope::model::{Model, ModelCard};

/// The model a `--model CARD` option names.
fn load_model(card: &Path) -> Result<Model> {
    Model::from_card(&ModelCard::load(card)?, &device()?)
}

/// The first CUDA device when built with `--features cuda`, else the CPU.
fn device() -> Result<Device> {
    if cfg!(feature = "cuda") {
        Ok(Device::new_cuda(0)?)
    } else {
        Ok(Device::Cpu)
    }
}
