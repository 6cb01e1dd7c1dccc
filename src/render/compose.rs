//! A map drawn over its input: reduced to one value per pixel, scaled, colored and
//! blended, as every view shows it.

use anyhow::{Result, ensure};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::color::{Colormap, Scaling, cumulative_threshold, heatmap};
use crate::attribution::{Attribution, ChannelReduction};
use crate::choice::{Choice, display_by_name};
use crate::data::modality::Painter;
use crate::data::{InputSpec, Sample, Window};

/// Whether maps drawn together share one scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// Each map to its own range: every map uses the whole colormap.
    #[default]
    PerMap,
    /// One scale for the maps of one method across targets: a weak target's map
    /// looks weak beside a strong one's.
    Shared,
}

impl Choice for Scale {
    const ALL: &'static [Self] = &[Self::PerMap, Self::Shared];

    fn name(self) -> &'static str {
        match self {
            Self::PerMap => "per-map",
            Self::Shared => "shared",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::PerMap => "each map scaled to its own range",
            Self::Shared => "one scale for a method's maps across targets",
        }
    }
}

display_by_name!(Scale);

/// How a map is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    /// How an input-shaped map loses its color channels.
    pub reduction: ChannelReduction,
    /// The colors of unsigned maps (signed ones, `--reduction sum`, use red-blue).
    pub colormap: Colormap,
    /// The heatmap's opacity over the input, 0 to 1.
    pub alpha: f32,
    /// Whether maps drawn together ([`draw_all_on`]) share a scale.
    pub scale: Scale,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            reduction: ChannelReduction::default(),
            colormap: Colormap::default(),
            alpha: 0.5,
            scale: Scale::PerMap,
        }
    }
}

/// The map of the first (only) input of `maps` over `picture`, the model's input:
/// input maps scaled as Captum does, CAMs as they come (normalized), signed sums in
/// red-blue.
pub fn draw(maps: &Attribution, picture: &RgbImage, style: Style) -> Result<RgbImage> {
    let (w, h) = picture.dimensions();
    let (values, signed, colormap) = scaled(maps, (h as usize, w as usize), style)?;
    let heat = heatmap(&values, (w as usize, h as usize), signed, colormap)?;
    overlay(picture, &heat, style.alpha)
}

/// What maps are drawn onto: the picture the user has, the part of it the model
/// saw, and the modality's own drawing when it draws maps itself.
#[derive(Clone, Copy)]
pub struct Backdrop<'a> {
    /// The image before preprocessing, at its own resolution (or a modality's
    /// picture).
    pub picture: &'a RgbImage,
    /// The part of `picture` the model saw, `(x, y, width, height)`
    /// ([`crate::data::Sample::window`]).
    pub window: Window,
    /// The model input's `(height, width)`: the size maps are drawn at.
    pub input: (usize, usize),
    /// The modality's drawing, which replaces the heatmap.
    pub painter: Option<&'a dyn Painter>,
}

impl<'a> Backdrop<'a> {
    /// `picture` of `sample`, which the model saw at `input` (`(height, width)`)
    /// through `spec`.
    pub fn of(sample: &'a Sample, picture: &'a RgbImage, spec: &InputSpec) -> Self {
        Self {
            picture,
            window: sample.window(spec, picture.dimensions()),
            input: (spec.size[0], spec.size[1]),
            painter: sample.view.as_ref().and_then(|v| v.painter.as_deref()),
        }
    }
}

/// `picture` with the axes of `sample`'s display, when it is a modality's picture
/// (a spectrogram's time and frequency); else as it is. (Not for a part of it: an
/// axis states its ends, not its scale, and a spectrogram's mel bands are not
/// evenly spaced in Hz.)
pub fn framed(sample: &Sample, picture: RgbImage) -> RgbImage {
    match sample.view.as_deref() {
        Some(view) => super::with_axes(&picture, &view.picture.x, &view.picture.y),
        None => picture,
    }
}

/// `picture`, one of the whole model input, with the axes its card states
/// (`[input.axes]`); else as it is. For pictures made without a file: feature
/// visualizations, dissection's.
pub fn framed_by_card(spec: &InputSpec, picture: RgbImage) -> RgbImage {
    match &spec.axes {
        Some(axes) => super::with_axes(&picture, &axes.x, &axes.y),
        None => picture,
    }
}

/// The map of the first input over `on`'s picture, at its own resolution: the
/// heatmap (the model input's size) resized onto the window the model saw, and
/// what lies outside it dimmed; or the modality's own drawing.
pub fn draw_on(maps: &Attribution, on: Backdrop, style: Style) -> Result<RgbImage> {
    let (values, signed, colormap) = scaled(maps, on.input, style)?;
    finish(&values, (signed, colormap), on, style.alpha)
}

/// `values` (scaled to `0..=1`, or `-1..=1` when `signed`) drawn onto `on`: by the
/// modality's painter, or as a heatmap blended into the window.
fn finish(
    values: &[f32],
    (signed, colormap): (bool, Colormap),
    on: Backdrop,
    alpha: f32,
) -> Result<RgbImage> {
    let (h, w) = on.input;
    if let Some(painter) = on.painter {
        let unit: Vec<f32> = match signed {
            true => values.iter().map(|v| (1.0 + v) / 2.0).collect(),
            false => values.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
        };
        return painter.paint(&unit, (h, w));
    }
    let heat = heatmap(values, (w, h), signed, colormap)?;
    place(&heat, on.picture, on.window, alpha)
}

/// `heat` resized onto `window` of `original`, blended with opacity `alpha`; the
/// rest of `original` dimmed.
fn place(
    heat: &RgbImage,
    original: &RgbImage,
    (x, y, width, height): Window,
    alpha: f32,
) -> Result<RgbImage> {
    let size = (
        width.round().max(1.0) as u32,
        height.round().max(1.0) as u32,
    );
    let heat = imageops::resize(heat, size.0, size.1, FilterType::Triangle);
    let (x0, y0) = (x.round() as i64, y.round() as i64);
    let alpha = alpha.clamp(0.0, 1.0);
    let mut out = original.clone();
    for (px, py, pixel) in out.enumerate_pixels_mut() {
        let (hx, hy) = (px as i64 - x0, py as i64 - y0);
        let inside = (0..size.0 as i64).contains(&hx) && (0..size.1 as i64).contains(&hy);
        *pixel = match inside {
            true => blend(*pixel, *heat.get_pixel(hx as u32, hy as u32), alpha),
            // The model never saw it: dimmed, so no one reads a map into it.
            false => blend(*pixel, Rgb([0, 0, 0]), 0.6),
        };
    }
    Ok(out)
}

/// [`draw_on`] for several maps of one method (one per target), on one scale when
/// `style.scale` is [`Scale::Shared`]: Captum's outlier rule over their pooled
/// values for input maps, the largest value for CAMs (their normalization skipped).
pub fn draw_all_on(maps: &[Attribution], on: Backdrop, style: Style) -> Result<Vec<RgbImage>> {
    if style.scale == Scale::PerMap || maps.len() < 2 {
        return maps.iter().map(|m| draw_on(m, on, style)).collect();
    }
    let (h, w) = on.input;
    let values = maps
        .iter()
        .map(|m| {
            let raw = m.display_raw((h, w), style.reduction)?;
            Ok(raw
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let pooled = values.concat();
    let input_maps = matches!(maps[0], Attribution::Input(_));
    let signed = input_maps && style.reduction == ChannelReduction::Sum;
    let limit = match input_maps {
        true => cumulative_threshold(&pooled, 98.0),
        false => pooled.iter().copied().fold(0.0, f32::max),
    };
    let colormap = if signed {
        Colormap::RedBlue
    } else {
        style.colormap
    };
    values
        .iter()
        .map(|v| {
            let scaled = Scaling::Divide(limit).apply(v);
            finish(&scaled, (signed, colormap), on, style.alpha)
        })
        .collect()
}

/// The first input's map of `maps` at `(height, width)`, scaled for colouring
/// (input maps as Captum does, CAMs as they come), whether it is signed, and its
/// colormap (red-blue for signed sums).
fn scaled(
    maps: &Attribution,
    (h, w): (usize, usize),
    style: Style,
) -> Result<(Vec<f32>, bool, Colormap)> {
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
    Ok((scaling.apply(&values), signed, colormap))
}

/// `heat` over `base` with opacity `alpha`.
fn blend(base: Rgb<u8>, heat: Rgb<u8>, alpha: f32) -> Rgb<u8> {
    Rgb(std::array::from_fn(|c| {
        ((1.0 - alpha) * base[c] as f32 + alpha * heat[c] as f32).round() as u8
    }))
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
        *o = blend(*o, *h, alpha);
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

    /// On a shared scale, a map a tenth as strong is drawn a tenth as bright; each
    /// on its own, both reach the colormap's top.
    #[test]
    fn a_shared_scale_keeps_strengths_apart() {
        let cam = |peak: f32| {
            let t = Tensor::new(&[[[0f32, peak], [0., 0.]]], &Device::Cpu).unwrap();
            Attribution::Layers(vec![("l".into(), t)])
        };
        let maps = [cam(1.0), cam(0.1)];
        let black = RgbImage::new(2, 2);
        let on = Backdrop {
            picture: &black,
            window: (0.0, 0.0, 2.0, 2.0),
            input: (2, 2),
            painter: None,
        };
        let near = |a: Rgb<u8>, b: Rgb<u8>| a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 2);
        let top = Colormap::Inferno.color(1.0);
        for (scale, weak_peak) in [(Scale::PerMap, 1.0), (Scale::Shared, 0.1)] {
            let style = Style {
                alpha: 1.0,
                scale,
                ..Style::default()
            };
            let drawn = draw_all_on(&maps, on, style).unwrap();
            assert!(
                near(drawn[0][(1, 0)], top),
                "{scale}: {:?}",
                drawn[0][(1, 0)]
            );
            let weak = Colormap::Inferno.color(weak_peak);
            assert!(
                near(drawn[1][(1, 0)], weak),
                "{scale}: {:?} vs {weak:?}",
                drawn[1][(1, 0)]
            );
        }
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

/// `img` with the borders of `segments` drawn in `colour`: a pixel is on a border
/// when the region under it differs from the one right or below (the regions
/// scaled to the picture's size, which may differ from the segmentation's).
pub fn outline(
    img: &RgbImage,
    segments: &crate::attribution::superpixels::Segmentation,
    colour: [u8; 3],
) -> RgbImage {
    let (h, w) = segments.size;
    let (width, height) = img.dimensions();
    let label = |x: u32, y: u32| {
        let (sx, sy) = (
            x as usize * w / width as usize,
            y as usize * h / height as usize,
        );
        segments.labels[sy.min(h - 1) * w + sx.min(w - 1)]
    };
    let mut out = img.clone();
    for y in 0..height {
        for x in 0..width {
            let here = label(x, y);
            let right = x + 1 < width && label(x + 1, y) != here;
            let below = y + 1 < height && label(x, y + 1) != here;
            if right || below {
                out.put_pixel(x, y, image::Rgb(colour));
            }
        }
    }
    out
}

#[cfg(test)]
mod outline_tests {
    use super::*;
    use crate::attribution::superpixels::Segmentation;

    #[test]
    fn borders_are_drawn_where_regions_meet_at_any_scale() {
        // Two regions, left and right halves of 4x4, drawn on an 8x8 picture.
        let segments = Segmentation {
            size: (4, 4),
            labels: (0..16).map(|p| ((p % 4) / 2) as u32).collect(),
            count: 2,
        };
        let out = outline(&RgbImage::new(8, 8), &segments, [255, 255, 255]);
        for y in 0..8 {
            for x in 0..8 {
                let lit = out.get_pixel(x, y).0 == [255, 255, 255];
                assert_eq!(lit, x == 3, "({x}, {y})");
            }
        }
    }
}
