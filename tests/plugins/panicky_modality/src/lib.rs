//! Opens `.panicky` files (whatever they hold) as a blank input on an 8x8 grey
//! picture and draws maps itself, panicking where `$PANICKY_AT` says; its world's
//! samples are blank too, of class `index % 2`, or of a class past its two when
//! `$PANICKY_AT` is `class`.

use std::path::Path;

use unitscope_sdk::{
    Axis, Concept, Decoded, Display, Error, Modality, Sample, Tensor, export_plugin,
};

#[derive(Default)]
struct Panicky;

fn panic_at(place: &str) {
    if std::env::var("PANICKY_AT").as_deref() == Ok(place) {
        panic!("panicky panics in {place}");
    }
}

const SIDE: usize = 8;

impl Modality for Panicky {
    const NAME: &'static str = "panicky-modality";
    const VERSION: &'static str = "0.1.0";
    const ABOUT: &'static str = "panics on request";
    const EXTENSIONS: &'static [&'static str] = &["panicky"];
    const DRAWS: bool = true;
    const CLASSES: &'static [&'static str] = &["even", "odd"];
    const CONCEPTS: &'static [Concept] = &[Concept {
        category: "colour",
        name: "grey",
    }];

    fn decode(&self, _: &Path, input: [usize; 3]) -> Result<Decoded, Error> {
        panic_at("decode");
        let axis = |label: &str| Axis {
            label: label.into(),
            unit: "px".into(),
            start: 0.0,
            end: SIDE as f64,
        };
        Ok(Decoded {
            input: Tensor::zeros(&input),
            display: Display::Image {
                rgb: vec![128; 3 * SIDE * SIDE],
                width: SIDE,
                height: SIDE,
                x: axis("column"),
                y: axis("row"),
            },
        })
    }

    /// The map's nearest value at each picture pixel, in green.
    fn draw(&self, _: &Decoded, map: &Tensor) -> Result<Tensor, Error> {
        panic_at("draw");
        let (h, w) = (map.dims()[0], map.dims()[1]);
        let mut rgb = Vec::with_capacity(3 * SIDE * SIDE);
        for y in 0..SIDE {
            for x in 0..SIDE {
                rgb.extend([0.0, map.data()[(y * h / SIDE) * w + x * w / SIDE], 0.0]);
            }
        }
        Tensor::new(&[SIDE, SIDE, 3], rgb)
    }

    fn sample(&self, _: u64, index: u64, [c, h, w]: [usize; 3]) -> Result<Sample, Error> {
        panic_at("sample");
        let past = std::env::var("PANICKY_AT").as_deref() == Ok("class");
        Ok(Sample {
            input: Tensor::zeros(&[c, h, w]),
            class: if past { 7 } else { index as usize % 2 },
            masks: Tensor::zeros(&[1, h, w]),
            tracks: None,
        })
    }
}

export_plugin!(modality: Panicky);
