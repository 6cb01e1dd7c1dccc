//! Model card text: parsed and range-checked, or an error; a card that parses must
//! describe preprocessing that runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitscope::model::ModelCard;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(card) = ModelCard::parse(text, "fuzz/card.toml".as_ref()) {
        // Whatever sizes a card sets, its preprocessing runs on a small image.
        let img = image::RgbImage::from_pixel(7, 5, image::Rgb([10, 200, 30]));
        let _ = card.input.to_tensor(&img, &candle_core::Device::Cpu);
    }
});
