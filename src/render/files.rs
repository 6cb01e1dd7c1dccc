//! Pictures and raw maps on disk, each written whole or not at all
//! ([`crate::atomic`]).

use anyhow::{Context, Result};
use image::RgbImage;

use crate::atomic;
use crate::attribution::superpixels::Segmentation;

/// Writes `img` as a PNG.
pub fn save_png(img: &RgbImage, path: &std::path::Path) -> Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode a PNG")?;
    atomic::write(path, &png)
}

/// Writes superpixels as a 16-bit greyscale PNG whose every pixel holds its region's
/// number: the segmentation a map is painted on, for reading back.
pub fn save_segments(segments: &Segmentation, path: &std::path::Path) -> Result<()> {
    let (h, w) = segments.size;
    anyhow::ensure!(
        segments.count <= u16::MAX as usize + 1,
        "{} superpixels do not fit a 16-bit PNG",
        segments.count
    );
    let values: Vec<u16> = segments.labels.iter().map(|&l| l as u16).collect();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w as u32, h as u32, values)
        .context("superpixel labels do not fill their size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode a PNG")?;
    atomic::write(path, &png)
}

/// Writes `t` as a float32 `.npy` array of its shape.
pub fn save_npy(t: &candle_core::Tensor, path: &std::path::Path) -> Result<()> {
    let values = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    atomic::write_with(path, |file| {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()?;
        writer.extend(values)?;
        writer.finish()?;
        Ok(())
    })
}

/// `s` with characters file names should not hold replaced by `_`: output files
/// are named `INPUT.METHOD.TARGET.png` from what the user typed.
pub fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}
