//! Image resizing that reproduces Pillow's `Image.resize` bit for bit, because that
//! is what torchvision's transforms run on PIL images: a model's reference accuracy
//! was measured through it, and a different resampler moves probabilities by a point.
//!
//! Pillow's algorithm (`libImaging/Resample.c`): a separable filter, widened by the
//! scale factor when shrinking (antialiasing); coefficients in 22-bit fixed point;
//! the horizontal pass first, rounded to 8 bits, then the vertical pass.

use std::ops::Range;

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// The resampling filter, as Pillow implements it (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    /// The source pixel under each output pixel's center.
    Nearest,
    /// Bilinear, widened when downsampling (antialiased).
    #[default]
    Bilinear,
    /// Bicubic (Keys, a = -0.5), widened when downsampling.
    Bicubic,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output pixel of a window: the first input pixel and fixed-point weights.
struct Coefficients {
    taps: Vec<(usize, Vec<i32>)>,
}

impl Coefficients {
    /// The taps of outputs `window` of a resize from `in_size` to `out_size` samples:
    /// exactly those of the whole resize, which are independent per output.
    fn new(
        in_size: usize,
        out_size: usize,
        window: Range<usize>,
        filter: fn(f64) -> f64,
        support: f64,
    ) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
        let taps = window
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                // C's (int) truncates toward zero.
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                let weights: Vec<f64> = (xmin..xmax)
                    .map(|x| filter((x as f64 - center + 0.5) / filterscale))
                    .collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|&w| {
                        let k = if total != 0.0 { w / total } else { w }
                            * (1u32 << PRECISION_BITS) as f64;
                        (if k < 0.0 { k - 0.5 } else { k + 0.5 }) as i32
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect();
        Self { taps }
    }

    /// The input samples the window reads.
    fn reads(&self) -> Range<usize> {
        let start = self.taps.iter().map(|t| t.0).min().unwrap_or(0);
        let end = self.taps.iter().map(|t| t.0 + t.1.len()).max().unwrap_or(0);
        start..end.max(start)
    }

    /// Applies the filter of window output `out`, reading input samples through `at`.
    fn apply(&self, out: usize, at: impl Fn(usize) -> u8) -> u8 {
        let (start, weights) = &self.taps[out];
        let mut acc: i64 = 1 << (PRECISION_BITS - 1);
        for (i, &k) in weights.iter().enumerate() {
            acc += at(start + i) as i64 * k as i64;
        }
        (acc >> PRECISION_BITS).clamp(0, 255) as u8
    }
}

/// Resizes `img` to `width` x `height` as Pillow's `Image.resize` does.
pub fn resize(img: &RgbImage, width: u32, height: u32, interpolation: Interpolation) -> RgbImage {
    resize_window(img, (width, height), (0, 0, width, height), interpolation)
}

/// The window `(x0, y0, w, h)` of `img` resized to `size` as Pillow's `Image.resize`
/// does, computed alone: the same pixels as resizing the whole image and cropping,
/// in memory bounded by the window, however large the whole resize would be (a
/// 1 x 16384 image whose shorter side goes to 256 px is 256 x 4M px whole).
pub fn resize_window(
    img: &RgbImage,
    size: (u32, u32),
    window: (u32, u32, u32, u32),
    interpolation: Interpolation,
) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (width, height) = size;
    let (x0, y0, w, h) = window;
    if (iw, ih) == size && window == (0, 0, iw, ih) {
        // Neither axis changes size: Pillow leaves the image as it is.
        return img.clone();
    }
    let (filter, support): (fn(f64) -> f64, f64) = match interpolation {
        Interpolation::Nearest => return nearest(img, size, window),
        Interpolation::Bilinear => (bilinear, 1.0),
        Interpolation::Bicubic => (bicubic, 2.0),
    };
    let span = |start: u32, len: u32| start as usize..(start + len) as usize;
    // Pillow skips the pass of an axis whose size does not change.
    let vertical = (ih != height)
        .then(|| Coefficients::new(ih as usize, height as usize, span(y0, h), filter, support));
    let rows = match &vertical {
        Some(v) => v.reads(),
        None => span(y0, h),
    };
    let horizontal = Coefficients::new(iw as usize, width as usize, span(x0, w), filter, support);
    // The horizontal pass, over only the rows the vertical one reads.
    let tmp = RgbImage::from_fn(w, rows.len() as u32, |x, y| {
        let sy = rows.start as u32 + y;
        match iw != width {
            true => image::Rgb(std::array::from_fn(|ch| {
                horizontal.apply(x as usize, |sx| img.get_pixel(sx as u32, sy)[ch])
            })),
            false => *img.get_pixel(x0 + x, sy),
        }
    });
    let Some(vertical) = vertical else {
        return tmp;
    };
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(std::array::from_fn(|ch| {
            vertical.apply(y as usize, |sy| {
                tmp.get_pixel(x, (sy - rows.start) as u32)[ch]
            })
        }))
    })
}

/// Pillow's nearest neighbour: the source pixel under each output pixel's center.
fn nearest(img: &RgbImage, size: (u32, u32), window: (u32, u32, u32, u32)) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (x0, y0, w, h) = window;
    let pick = |o: u32, out: u32, inp: u32| {
        (((o as f64 + 0.5) * inp as f64 / out as f64) as u32).min(inp - 1)
    };
    RgbImage::from_fn(w, h, |x, y| {
        *img.get_pixel(pick(x0 + x, size.0, iw), pick(y0 + y, size.1, ih))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_crop_of_the_whole_resize() {
        let img = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, ((x * y) % 256) as u8])
        });
        for interpolation in [
            Interpolation::Nearest,
            Interpolation::Bilinear,
            Interpolation::Bicubic,
        ] {
            for (size, window) in [
                ((61, 40), (5, 7, 30, 20)),
                ((20, 12), (3, 0, 10, 12)),
                ((37, 50), (0, 9, 37, 30)),
            ] {
                let whole = resize(&img, size.0, size.1, interpolation);
                let (x0, y0, w, h) = window;
                let crop = image::imageops::crop_imm(&whole, x0, y0, w, h).to_image();
                assert_eq!(
                    resize_window(&img, size, window, interpolation),
                    crop,
                    "{interpolation:?} {size:?} {window:?}"
                );
            }
        }
    }
}
