//! Image input: Pillow-exact resizing, and refusal of broken images.

mod common;

use common::{png_with_header, root};
use image::RgbImage;
use unitscope::data::resample::resize;
use unitscope::data::{Interpolation, load_image};

#[test]
fn resize_matches_pillow_exactly() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/resample.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (w, h) = (
        fixture["width"].as_u64().unwrap() as u32,
        fixture["height"].as_u64().unwrap() as u32,
    );
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            ((x * 37 + y * 91 + c as u32 * 53 + x * y * 7) % 256) as u8
        }))
    });
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let filter = match case["filter"].as_str().unwrap() {
            "bilinear" => Interpolation::Bilinear,
            "bicubic" => Interpolation::Bicubic,
            _ => Interpolation::Nearest,
        };
        let size: Vec<u32> = case["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let expected: Vec<u8> = case["pixels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let out = resize(&img, size[0], size[1], filter);
        assert_eq!(out.into_raw(), expected, "{} to {size:?}", case["filter"]);
    }
}

#[test]
fn huge_image_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    std::fs::write(&path, png_with_header(50_000, 50_000)).unwrap();
    let start = std::time::Instant::now();
    let err = format!("{:#}", load_image(&path).unwrap_err());
    assert!(err.contains("huge.png"), "{err}");
    assert!(err.contains("50000"), "{err}");
    // 7.5 GB of pixels were never allocated: the refusal came from the header.
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn empty_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.png");
    std::fs::write(&path, png_with_header(0, 0)).unwrap();
    let err = format!("{:#}", load_image(&path).unwrap_err());
    println!("{err}");
    assert!(err.contains("empty.png"), "{err}");
}

#[test]
fn non_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.png");
    std::fs::write(&path, "these are not pixels").unwrap();
    let err = format!("{:#}", load_image(&path).unwrap_err());
    assert!(err.contains("not a readable PNG or JPEG"), "{err}");
}
