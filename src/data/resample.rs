//! Image resizing that reproduces Pillow's `Image.resize` bit for bit, because that
//! is what torchvision's transforms run on PIL images: a model's reference accuracy
//! was measured through it, and a different resampler moves probabilities by a point.
//!
//! Pillow's algorithm (`libImaging/Resample.c`): a separable filter, widened by the
//! scale factor when shrinking (antialiasing); coefficients in 22-bit fixed point;
//! the horizontal pass first, rounded to 8 bits, then the vertical pass.

use image::RgbImage;

use super::image::Interpolation;

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

/// For each output pixel: the first input pixel and fixed-point weights.
struct Coefficients {
    taps: Vec<(usize, Vec<i32>)>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize, filter: fn(f64) -> f64, support: f64) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
        let taps = (0..out_size)
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

    /// Applies the filter along a line of `len` samples read through `at`.
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
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (width, height) {
        return img.clone();
    }
    let (filter, support): (fn(f64) -> f64, f64) = match interpolation {
        Interpolation::Nearest => return nearest(img, width, height),
        Interpolation::Bilinear => (bilinear, 1.0),
        Interpolation::Bicubic => (bicubic, 2.0),
    };
    let horizontal =
        (iw != width).then(|| Coefficients::new(iw as usize, width as usize, filter, support));
    let tmp = match &horizontal {
        Some(c) => RgbImage::from_fn(width, ih, |x, y| {
            image::Rgb(std::array::from_fn(|ch| {
                c.apply(x as usize, |sx| img.get_pixel(sx as u32, y)[ch])
            }))
        }),
        None => img.clone(),
    };
    if ih == height {
        return tmp;
    }
    let vertical = Coefficients::new(ih as usize, height as usize, filter, support);
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb(std::array::from_fn(|ch| {
            vertical.apply(y as usize, |sy| tmp.get_pixel(x, sy as u32)[ch])
        }))
    })
}

/// Pillow's nearest neighbour: the source pixel under each output pixel's center.
fn nearest(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let pick = |o: u32, out: u32, inp: u32| {
        (((o as f64 + 0.5) * inp as f64 / out as f64) as u32).min(inp - 1)
    };
    RgbImage::from_fn(width, height, |x, y| {
        *img.get_pixel(pick(x, width, iw), pick(y, height, ih))
    })
}
