//! A map drawn over its input: reduced to one value per pixel, scaled, colored and
//! blended, as every view shows it.

use anyhow::{Result, ensure};
use image::RgbImage;

use super::color::{Colormap, Scaling, heatmap};
use crate::attribution::{Attribution, ChannelReduction};

/// How a map is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    /// How an input-shaped map loses its color channels.
    pub reduction: ChannelReduction,
    /// The colors of unsigned maps (signed ones, `--reduction sum`, use red-blue).
    pub colormap: Colormap,
    /// The heatmap's opacity over the input, 0 to 1.
    pub alpha: f32,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            reduction: ChannelReduction::default(),
            colormap: Colormap::default(),
            alpha: 0.5,
        }
    }
}

/// The map of the first (only) input of `maps` over `picture`: input maps scaled as
/// Captum does, CAMs as they come (normalized), signed sums in red-blue.
pub fn draw(maps: &Attribution, picture: &RgbImage, style: Style) -> Result<RgbImage> {
    let (w, h) = (picture.width() as usize, picture.height() as usize);
    let values = maps
        .display((h, w), style.reduction)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let (scaling, signed) = match maps {
        Attribution::Layers(_) => (Scaling::None, false),
        Attribution::Input(_) => (Scaling::default(), style.reduction == ChannelReduction::Sum),
    };
    let colormap = if signed {
        Colormap::RedBlue
    } else {
        style.colormap
    };
    let heat = heatmap(&scaling.apply(&values), (w, h), signed, colormap)?;
    overlay(picture, &heat, style.alpha)
}

/// `heat` blended over `base` with opacity `alpha` (0: only the base).
pub fn overlay(base: &RgbImage, heat: &RgbImage, alpha: f32) -> Result<RgbImage> {
    ensure!(
        base.dimensions() == heat.dimensions(),
        "overlay of a {:?} heatmap on a {:?} image",
        heat.dimensions(),
        base.dimensions()
    );
    let alpha = alpha.clamp(0.0, 1.0);
    let mut out = base.clone();
    for (o, h) in out.pixels_mut().zip(heat.pixels()) {
        for c in 0..3 {
            let v = (1.0 - alpha) * o[c] as f32 + alpha * h[c] as f32;
            o[c] = v.round() as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use image::Rgb;

    use super::*;

    #[test]
    fn overlays_blend() {
        let base = RgbImage::from_pixel(2, 2, Rgb([200, 0, 0]));
        let heat = RgbImage::from_pixel(2, 2, Rgb([0, 100, 0]));
        assert_eq!(overlay(&base, &heat, 0.0).unwrap(), base);
        assert_eq!(
            overlay(&base, &heat, 0.5).unwrap()[(1, 1)],
            Rgb([100, 50, 0])
        );
        assert!(overlay(&RgbImage::new(3, 2), &heat, 0.5).is_err());
    }

    /// A CAM is drawn as it comes: its hottest pixel takes the colormap's top, at
    /// full opacity.
    #[test]
    fn a_cam_is_drawn_unscaled() {
        let cam = Tensor::new(&[[[0f32, 1.], [0., 0.]]], &Device::Cpu).unwrap();
        let maps = Attribution::Layers(vec![("l".into(), cam)]);
        let style = Style {
            alpha: 1.0,
            ..Style::default()
        };
        let img = draw(&maps, &RgbImage::new(2, 2), style).unwrap();
        // Within a unit: the display's normalization divides by max - min + 1e-7.
        let near = |a: Rgb<u8>, b: Rgb<u8>| a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 1);
        assert!(
            near(img[(1, 0)], Colormap::Inferno.color(1.0)),
            "{:?}",
            img[(1, 0)]
        );
        assert!(
            near(img[(0, 1)], Colormap::Inferno.color(0.0)),
            "{:?}",
            img[(0, 1)]
        );
    }
}
