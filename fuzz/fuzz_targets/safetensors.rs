//! `.safetensors` bytes into weights: any input is an error or a weight set, never a
//! panic or an allocation beyond the file's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitscope::limits::Limits;
use unitscope::model::weights::{Format, Weights};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = Weights::from_bytes(
        data,
        Format::Safetensors,
        &limits,
        &candle_core::Device::Cpu,
    );
});
