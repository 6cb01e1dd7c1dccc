//! Reading images and turning them into normalised input tensors, as torchvision's
//! standard transforms do (resize, center crop, scale to [0, 1], normalise).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor};
use image::{ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use super::modality::Axis;
use super::resample::{Interpolation, resize_window};
use crate::limits::{self, Limits};

/// Images larger than this per side are refused before decoding.
const MAX_SIDE: u32 = 16_384;

/// How an image is brought to the network's input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize the shorter side to `resize_to` (aspect kept), then crop the center to
    /// `size`: torchvision's `Resize(256)` + `CenterCrop(224)`.
    #[default]
    ShorterSide,
    /// Resize the whole image to `size`, ignoring its aspect ratio.
    Stretch,
}

/// A model's input: size and preprocessing (the `[input]` table of a model card).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSpec {
    /// `[height, width]` fed to the network.
    pub size: [usize; 2],
    /// Channels fed to the network: 3 for pictures (RGB, or a modality's
    /// single-valued input repeated); a modality plugin may make others (a
    /// character per channel for one-hot text), which no picture file gives.
    pub channels: usize,
    /// How the image reaches `size`.
    pub resize: ResizeMode,
    /// Shorter-side length before the crop (`shorter-side` mode); default `size * 256 / 224`.
    pub resize_to: Option<usize>,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel mean and standard deviation, on the [0, 1] scale.
    pub mean: [f64; 3],
    /// Per-channel standard deviation, on the [0, 1] scale.
    pub std: [f64; 3],
    /// How an input is drawn: without one, as RGB; with one, its first channel
    /// (from 0 to 1) through this colormap, as a modality's single-valued input
    /// (a spectrogram) is.
    pub colormap: Option<InputColormap>,
    /// What the input's columns and rows measure, for pictures made without a
    /// file (feature visualizations, dissection's): a spectrogram's time and
    /// frequency.
    pub axes: Option<InputAxes>,
}

/// The axes of a model's input ([`InputSpec::axes`]).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputAxes {
    /// Along the columns.
    pub x: Axis,
    /// Along the rows, top to bottom.
    pub y: Axis,
}

/// A colormap an input is drawn through ([`InputSpec::colormap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputColormap {
    /// Black through purple and orange to pale yellow (librosa's spectrograms).
    Magma,
    /// Black through purple and orange to yellow.
    Inferno,
    /// Purple through green to yellow.
    Viridis,
    /// Black to white.
    Gray,
}

impl Default for InputSpec {
    /// torchvision's ImageNet preprocessing.
    fn default() -> Self {
        Self {
            size: [224, 224],
            channels: 3,
            resize: ResizeMode::ShorterSide,
            resize_to: None,
            interpolation: Interpolation::Bilinear,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            colormap: None,
            axes: None,
        }
    }
}

/// The part of a picture the model sees, `(x, y, width, height)` in the
/// picture's pixels.
pub type Window = (f64, f64, f64, f64);

/// The largest input side a card may ask for.
pub const MAX_INPUT_SIDE: usize = 1024;

/// The most input channels a card may ask for (one-hot text has one per character).
pub const MAX_CHANNELS: usize = 1024;

impl InputSpec {
    /// Checks the ranges a card's `[input]` may take, before any of them sizes an
    /// allocation.
    pub fn check(&self) -> Result<()> {
        let [h, w] = self.size;
        ensure!(
            (1..=MAX_INPUT_SIDE).contains(&h) && (1..=MAX_INPUT_SIDE).contains(&w),
            "input.size = [{h}, {w}]: each side takes 1 to {MAX_INPUT_SIDE} pixels"
        );
        if let Some(axes) = &self.axes {
            for (name, axis) in [("x", &axes.x), ("y", &axes.y)] {
                ensure!(
                    axis.start.is_finite() && axis.end.is_finite(),
                    "input.axes.{name} runs from {} to {}: give finite ends",
                    axis.start,
                    axis.end
                );
            }
        }
        ensure!(
            (1..=MAX_CHANNELS).contains(&self.channels),
            "input.channels = {}: allowed 1 to {MAX_CHANNELS}",
            self.channels
        );
        if let Some(r) = self.resize_to {
            ensure!(
                (1..=MAX_SIDE as usize).contains(&r),
                "input.resize_to = {r}: allowed 1 to {MAX_SIDE}"
            );
        }
        // Normalization runs in f32: values outside these ranges overflow or lose it.
        for (c, (&m, &s)) in self.mean.iter().zip(&self.std).enumerate() {
            ensure!(
                m.is_finite() && m.abs() <= 1e6,
                "input.mean[{c}] = {m}: allowed -1e6 to 1e6"
            );
            ensure!(
                s.is_finite() && (1e-6..=1e6).contains(&s),
                "input.std[{c}] = {s}: allowed 1e-6 to 1e6"
            );
        }
        Ok(())
    }

    /// `[C, H, W]`: what one input is.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.size[0], self.size[1]]
    }

    /// Resizes, crops and normalises `img` into a `[3, H, W]` tensor.
    pub fn to_tensor(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        let [h, w] = self.size;
        let mut data = vec![0f32; 3 * h * w];
        self.normalize_into(img, &mut data)?;
        Ok(Tensor::from_vec(data, (3, h, w), device)?)
    }

    /// Resizes, crops and normalises `img` into `out`, `[3, H, W]` flattened (one
    /// input of a batch, written in place).
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        let [h, w] = self.size;
        ensure!(
            self.channels == 3,
            "the model takes {}-channel inputs, which no picture gives: open its inputs with \
             the modality plugin that makes them (`unitscope plugins` lists them)",
            self.channels
        );
        ensure!(
            h > 0 && w > 0,
            "the input size must be positive, got {h}x{w}"
        );
        ensure!(
            out.len() == 3 * h * w,
            "internal: {} values for a 3x{h}x{w} input",
            out.len()
        );
        let (size, (x0, y0)) = match self.resize {
            ResizeMode::Stretch => ((w as u32, h as u32), (0, 0)),
            ResizeMode::ShorterSide => self.shorter_side(img.dimensions()),
        };
        let window = (x0, y0, w as u32, h as u32);
        // A picture already of the input's size is read as it is (the demo
        // world's scenes are).
        let resized;
        let img = match img.dimensions() == size && window == (0, 0, size.0, size.1) {
            true => img,
            false => {
                resized = resize_window(img, size, window, self.interpolation);
                &resized
            }
        };
        // In f32 and in this order, as ToTensor + Normalize compute it; a byte has
        // 256 values, so each channel's are computed once.
        let (mean, std) = (self.mean.map(|m| m as f32), self.std.map(|s| s as f32));
        let normalized: [[f32; 256]; 3] =
            std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c]));
        let (red, rest) = out.split_at_mut(h * w);
        let (green, blue) = rest.split_at_mut(h * w);
        for (i, p) in img.pixels().enumerate() {
            red[i] = normalized[0][p[0] as usize];
            green[i] = normalized[1][p[1] as usize];
            blue[i] = normalized[2][p[2] as usize];
        }
        Ok(())
    }

    /// The `shorter-side` geometry for an image of `(width, height)`: the size it
    /// is resized to, and the top-left corner of the crop in it. As torchvision:
    /// the shorter side becomes `short`, the longer one `floor(short * long /
    /// shorter)`, and the crop is centered (rounded).
    fn shorter_side(&self, (iw, ih): (u32, u32)) -> ((u32, u32), (u32, u32)) {
        let [h, w] = self.size;
        let short = self
            .resize_to
            .unwrap_or((h.min(w) * 256).div_ceil(224))
            .max(h.max(w));
        let (iw, ih) = (iw.max(1) as usize, ih.max(1) as usize);
        let (rw, rh) = if iw <= ih {
            (short, short * ih / iw)
        } else {
            (short * iw / ih, short)
        };
        let x0 = ((rw - w) as f64 / 2.0).round() as u32;
        let y0 = ((rh - h) as f64 / 2.0).round() as u32;
        ((rw as u32, rh as u32), (x0, y0))
    }

    /// The part of an image of `(width, height)` that the model's input shows, in
    /// the image's pixels: `(x, y, width, height)`. The whole image when it is
    /// stretched; the crop's window, scaled back, when the shorter side is resized.
    /// A map of the input drawn over this window lands where it belongs.
    pub fn window(&self, (iw, ih): (u32, u32)) -> Window {
        let [h, w] = self.size;
        match self.resize {
            ResizeMode::Stretch => (0.0, 0.0, iw as f64, ih as f64),
            ResizeMode::ShorterSide => {
                let ((rw, rh), (x0, y0)) = self.shorter_side((iw, ih));
                let (sx, sy) = (iw as f64 / rw as f64, ih as f64 / rh as f64);
                (x0 as f64 * sx, y0 as f64 * sy, w as f64 * sx, h as f64 * sy)
            }
        }
    }

    /// The picture a preprocessed `[3, H, W]` tensor shows: normalization undone,
    /// drawn ([`InputSpec::colour`]).
    pub fn to_image(&self, x: &Tensor) -> Result<RgbImage> {
        let (c, h, w) = x.dims3()?;
        ensure!(c == 3, "an RGB picture needs 3 channels, got {c}");
        let values = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(RgbImage::from_fn(w as u32, h as u32, |px, py| {
            let at = |ch: usize| values[(ch * h + py as usize) * w + px as usize] as f64;
            image::Rgb(self.colour(std::array::from_fn(|ch| {
                at(ch) * self.std[ch] + self.mean[ch]
            })))
        }))
    }

    /// The 8-bit colour of an input position whose channels, normalization undone,
    /// are `values` (0 to 1): as they are, or the first through the colormap.
    pub fn colour(&self, values: [f64; 3]) -> [u8; 3] {
        let byte = |v: f64| (v * 255.0).round().clamp(0.0, 255.0) as u8;
        let v = values[0].clamp(0.0, 1.0);
        let c = match self.colormap {
            None => return values.map(byte),
            Some(InputColormap::Magma) => colorous::MAGMA.eval_continuous(v),
            Some(InputColormap::Inferno) => colorous::INFERNO.eval_continuous(v),
            Some(InputColormap::Viridis) => colorous::VIRIDIS.eval_continuous(v),
            Some(InputColormap::Gray) => colorous::GREYS.eval_continuous(1.0 - v),
        };
        [c.r, c.g, c.b]
    }

    /// Loads and preprocesses images into one `[N, 3, H, W]` batch.
    pub fn load_batch(&self, paths: &[impl AsRef<Path>], device: &Device) -> Result<Tensor> {
        let tensors = paths
            .iter()
            .map(|p| self.to_tensor(&load_image(p.as_ref())?, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&tensors, 0)?)
    }
}

/// Reads a PNG or JPEG as RGB, within the [`Limits`] the environment sets.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let read = || -> Result<RgbImage> {
        ensure!(!path.is_dir(), "it is a directory, not an image");
        let limits = Limits::from_env()?;
        // A PNG or JPEG within the pixel limit takes at most about 4 bytes a pixel
        // (RGBA stored raw): a longer file, or a device like /dev/zero, is refused
        // once that much is read.
        let max = limits
            .image_pixels
            .saturating_mul(4)
            .saturating_add(1 << 20);
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(max + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(limits::exceeded(
                format!("the file is longer than any image within the pixel limit ({max} bytes)"),
                limits.image_pixels,
                Limits::IMAGE_PIXELS,
            ));
        }
        decode_image(&bytes, &limits)
    };
    read().with_context(|| format!("cannot read image `{}`", path.display()))
}

/// Decodes the bytes of a PNG or JPEG as RGB. Dimensions are checked from the header
/// first, so an image over `limits` is refused before it is decoded; a JPEG cut off
/// before its end is refused rather than shown half grey.
pub fn decode_image(bytes: &[u8], limits: &Limits) -> Result<RgbImage> {
    let unreadable = |e: image::ImageError| anyhow::anyhow!("not a readable PNG or JPEG ({e})");
    let reader = || ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
    let (w, h) = reader()?.into_dimensions().map_err(unreadable)?;
    ensure!(w > 0 && h > 0, "the image is empty ({w}x{h} px)");
    ensure!(
        w <= MAX_SIDE && h <= MAX_SIDE,
        "the image is {w}x{h} px; unitscope reads images up to {MAX_SIDE} px per side (downscale it first)"
    );
    let pixels = w as u64 * h as u64;
    if pixels > limits.image_pixels {
        return Err(limits::exceeded(
            format!("the image is {w}x{h} = {pixels} px"),
            limits.image_pixels,
            Limits::IMAGE_PIXELS,
        ));
    }
    let mut reader = reader()?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        ensure!(
            jpeg_is_complete(bytes),
            "the JPEG is truncated (it has no end-of-image marker): the file was cut off"
        );
    }
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(MAX_SIDE);
    decoder_limits.max_image_height = Some(MAX_SIDE);
    // The widest decoded layout (RGBA, 16 bits a channel) of the pixels allowed.
    decoder_limits.max_alloc = Some(pixels * 8 + (1 << 20));
    reader.limits(decoder_limits);
    Ok(reader.decode().map_err(unreadable)?.to_rgb8())
}

/// Whether a JPEG's entropy-coded data ends with the end-of-image marker. Markers
/// are walked up to the first scan; after it, `FF D9` can only be that marker (the
/// coded data stuffs every `FF` with a `00`), whereas a thumbnail's EOI comes before.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // past SOI
    loop {
        let (Some(0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return false;
        };
        match marker {
            0xFF => at += 1, // fill byte
            0xDA => break,
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let Some(len) = bytes.get(at + 2..at + 4) else {
                    return false;
                };
                at += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
            }
        }
    }
    bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A card's `axes` are read whole and checked; a channel count past the limit
    /// is refused, and a picture file cannot feed a model of other channels.
    #[test]
    fn a_cards_axes_and_channels() {
        let spec: InputSpec = toml::from_str(
            "channels = 1\naxes.x = { label = \"time\", unit = \"s\", start = 0.0, end = 1.5 }\n\
             axes.y = { label = \"frequency\", unit = \"Hz\", start = 8000.0, end = 0.0 }",
        )
        .unwrap();
        spec.check().unwrap();
        let axes = spec.axes.as_ref().unwrap();
        assert_eq!((axes.x.label.as_str(), axes.x.end), ("time", 1.5));
        assert_eq!((axes.y.unit.as_str(), axes.y.start), ("Hz", 8000.0));
        let image = RgbImage::new(4, 4);
        let err = spec
            .to_tensor(&image, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1-channel inputs"), "{err}");
        let mut bad = spec.clone();
        bad.axes.as_mut().unwrap().x.end = f64::INFINITY;
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("input.axes.x")
        );
        let many = InputSpec {
            channels: MAX_CHANNELS + 1,
            ..InputSpec::default()
        };
        assert!(
            many.check()
                .unwrap_err()
                .to_string()
                .contains("input.channels")
        );
        let typo = toml::from_str::<InputSpec>("axes.x = { label = \"t\", units = \"s\" }");
        assert!(typo.is_err());
    }

    /// A card's `colormap` draws an input's first channel through it (0 at the
    /// map's start, 1 at its end; the other channels unread); without one, the
    /// channels are the colour; a colormap the card misspells is refused.
    #[test]
    fn an_input_colormap_draws_the_first_channel() {
        let spec: InputSpec =
            toml::from_str("mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\ncolormap = \"magma\"")
                .unwrap();
        let magma = |v: f64| {
            let c = colorous::MAGMA.eval_continuous(v);
            [c.r, c.g, c.b]
        };
        assert_eq!(spec.colour([0.0, 1.0, 1.0]), magma(0.0));
        assert_eq!(spec.colour([0.7, 0.0, 0.2]), magma(0.7));
        assert_eq!(spec.colour([1.5, 0.0, 0.0]), magma(1.0));
        let x = Tensor::from_vec(vec![0.25f32; 3 * 2 * 2], (3, 2, 2), &Device::Cpu).unwrap();
        assert!(
            spec.to_image(&x)
                .unwrap()
                .pixels()
                .all(|p| p.0 == magma(0.25))
        );
        let rgb = InputSpec {
            colormap: None,
            ..spec.clone()
        };
        assert_eq!(rgb.colour([0.0, 1.0, 0.5]), [0, 255, 128]);
        let err = toml::from_str::<InputSpec>("colormap = \"jet\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("magma"), "{err}");
    }

    /// torchvision's resize-256 + center-crop-224 of a 451 x 300 photo sees the
    /// middle 263 x 263 px: the window maps the crop back onto the photo.
    #[test]
    fn the_window_is_the_crop_in_the_photos_pixels() {
        let (x, y, w, h) = InputSpec::default().window((451, 300));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // Resized to 384 x 256, crop at (80, 16), scaled back by 451/384 and 300/256.
        assert!(
            close(x, 80.0 * 451.0 / 384.0) && close(w, 224.0 * 451.0 / 384.0),
            "{x} {w}"
        );
        assert!(
            close(y, 16.0 * 300.0 / 256.0) && close(h, 224.0 * 300.0 / 256.0),
            "{y} {h}"
        );
        let stretch = InputSpec {
            resize: ResizeMode::Stretch,
            ..InputSpec::default()
        };
        assert_eq!(stretch.window((451, 300)), (0.0, 0.0, 451.0, 300.0));
    }

    #[test]
    fn to_image_undoes_to_tensor() {
        let spec = InputSpec {
            size: [4, 5],
            resize: ResizeMode::Stretch,
            ..InputSpec::default()
        };
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 50, y as u8 * 60, 7]));
        let x = spec.to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(spec.to_image(&x).unwrap(), img);
    }
}
