//! Image input: Pillow-exact resizing, and refusal of broken images.

mod common;

use common::root;
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

/// A PNG of the given header dimensions: signature, IHDR, a tiny IDAT, IEND.
fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
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
