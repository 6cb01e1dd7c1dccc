//! PNG and JPEG bytes decoded and preprocessed as a card would: stretched, and by
//! shorter side with a center crop (the resize that can amplify).
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitscope::data::{InputSpec, ResizeMode, image::decode_image};
use unitscope::limits::Limits;

fuzz_target!(|data: &[u8]| {
    // Small images keep executions fast; the limit's own check is what is exercised.
    let limits = Limits {
        image_pixels: 1 << 22,
        ..Limits::default()
    };
    let Ok(img) = decode_image(data, &limits) else {
        return;
    };
    for (resize, resize_to) in [
        (ResizeMode::Stretch, None),
        (ResizeMode::ShorterSide, Some(4096)),
    ] {
        let spec = InputSpec {
            size: [32, 24],
            resize,
            resize_to,
            ..InputSpec::default()
        };
        spec.to_tensor(&img, &candle_core::Device::Cpu)
            .expect("a decoded image always preprocesses");
    }
});
