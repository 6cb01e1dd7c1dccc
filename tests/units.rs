//! What a unit looks for, on units built by hand to detect one thing: dataset
//! search must rank the inputs that have most of that thing first.

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use unitscope::data::{InputSpec, ResizeMode};
use unitscope::model::{ArchOptions, Architecture, Model, Weights};
use unitscope::units;

const SIDE: usize = 32;

/// A one-stage plain CNN whose two 3x3 units are planted: unit 0 computes
/// R - G - B at each pixel (a redness detector, the centre tap only), unit 1 a
/// Sobel vertical-edge filter on the grey image. Inputs are pixels / 255 - 0.5,
/// so that the zero padding is mid-grey and a uniform grey image has no edge at its
/// border.
fn planted() -> Model {
    let device = Device::Cpu;
    let mut kernel = vec![0f32; 2 * 3 * 9];
    for (c, w) in [1.0, -1.0, -1.0].into_iter().enumerate() {
        kernel[c * 9 + 4] = w;
    }
    let sobel = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
    for c in 0..3 {
        for (i, w) in sobel.iter().enumerate() {
            kernel[27 + c * 9 + i] = w / 3.0;
        }
    }
    let tensors = [
        (
            "features.0.weight",
            Tensor::from_vec(kernel, (2, 3, 3, 3), &device),
        ),
        (
            "features.0.bias",
            Tensor::zeros(2, candle_core::DType::F32, &device),
        ),
        (
            "fc.weight",
            Tensor::ones((2, 2), candle_core::DType::F32, &device),
        ),
        (
            "fc.bias",
            Tensor::zeros(2, candle_core::DType::F32, &device),
        ),
    ]
    .map(|(name, t)| (name.to_string(), t.unwrap()));
    let options = ArchOptions {
        channels: Some(vec![2]),
        batch_norm: Some(false),
        ..ArchOptions::default()
    };
    let input = InputSpec {
        size: [SIDE, SIDE],
        resize: ResizeMode::Stretch,
        mean: [0.5; 3],
        std: [1.0; 3],
        ..InputSpec::default()
    };
    let weights = Weights::from_tensors(tensors, &device).unwrap();
    let labels = vec!["a".into(), "b".into()];
    Model::new(
        "planted".into(),
        Architecture::PlainCnn,
        &options,
        &weights,
        input,
        labels,
    )
    .unwrap()
}

/// Uniform colours of known redness, and stripes of known orientation and
/// contrast, in a fixed shuffled order.
fn images() -> Vec<(String, RgbImage)> {
    let side = SIDE as u32;
    let colour =
        |name: &str, rgb: [u8; 3]| (name.to_string(), RgbImage::from_pixel(side, side, Rgb(rgb)));
    let stripes = |name: &str, vertical: bool, contrast: u8| {
        let image = RgbImage::from_fn(side, side, |x, y| {
            let along = if vertical { x } else { y };
            let v = if (along / 4) % 2 == 0 {
                128 - contrast / 2
            } else {
                128 + contrast / 2
            };
            Rgb([v, v, v])
        });
        (name.to_string(), image)
    };
    vec![
        colour("pink", [255, 120, 120]),
        stripes("vertical-faint", true, 60),
        colour("red", [230, 10, 10]),
        stripes("horizontal-strong", false, 200),
        colour("blue", [20, 30, 220]),
        stripes("vertical-strong", true, 200),
        colour("orange", [250, 120, 0]),
        colour("dark-red", [140, 0, 0]),
        stripes("vertical-medium", true, 120),
        colour("grey", [128, 128, 128]),
    ]
}

#[test]
fn dataset_search_ranks_what_a_planted_unit_detects_first() {
    let model = planted();
    let images = images();
    let tensors: Vec<Tensor> = images
        .iter()
        .map(|(_, image)| model.input_spec().to_tensor(image, &Device::Cpu).unwrap())
        .collect();
    // Two batches of unequal size: the ranking must not depend on batching.
    let all = Tensor::stack(&tensors, 0).unwrap();
    let batches = [all.narrow(0, 0, 7).unwrap(), all.narrow(0, 7, 3).unwrap()];
    let layers = ["features.0".to_string()];
    let stats = units::search(&model, &layers, 3, batches.map(Ok))
        .unwrap()
        .remove(0);
    let top = |unit: usize| -> Vec<&str> {
        stats.units[unit]
            .top
            .iter()
            .map(|t| images[t.input].0.as_str())
            .collect()
    };
    // R - G - B: red 210, dark-red 140, orange 130, pink 15.
    assert_eq!(top(0), ["red", "dark-red", "orange"]);
    // Sobel across a stripe edge: 4 x contrast; at the border, against the grey
    // padding, half that: horizontal stripes show edges there too, but weaker than
    // the strong and medium vertical ones.
    assert_eq!(
        top(1),
        ["vertical-strong", "vertical-medium", "horizontal-strong"]
    );
    // The peak of a vertical-edge unit lies on an edge: a stripe boundary (every 4
    // px), where the Sobel response is largest, not in a flat band or the border.
    let (_, x) = stats.units[1].top[0].position;
    assert!(x % 4 == 3 || x % 4 == 0, "peak at column {x}");
    let field = stats.field.expect("a convolution's field");
    assert_eq!((field.size, field.jump), ((3, 3), (1, 1)));
}
