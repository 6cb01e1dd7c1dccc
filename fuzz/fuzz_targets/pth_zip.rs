//! Zip-format PyTorch checkpoints (`torch.save` since 1.6) into weights, within the
//! default limits: pickle depth and size, inflation, view amplification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitscope::limits::Limits;
use unitscope::model::weights::{Format, Weights};

fuzz_target!(|data: &[u8]| {
    // The legacy reader has its own target; keep this one on the zip path.
    if !data.starts_with(b"PK\x03\x04") {
        return;
    }
    let _ = Weights::from_bytes(
        data,
        Format::Pth,
        &Limits::default(),
        &candle_core::Device::Cpu,
    );
});
