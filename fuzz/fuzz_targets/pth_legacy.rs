//! Legacy PyTorch checkpoints (before 1.6: pickles, then raw storages) into weights,
//! within the default limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitscope::limits::Limits;
use unitscope::model::weights::{Format, Weights};

fuzz_target!(|data: &[u8]| {
    // Protocol-2 pickles; the zip path has its own target.
    if !data.starts_with(&[0x80, 0x02]) {
        return;
    }
    let _ = Weights::from_bytes(
        data,
        Format::Pth,
        &Limits::default(),
        &candle_core::Device::Cpu,
    );
});
