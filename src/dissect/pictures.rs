//! A dissected unit's evidence as pictures: each of its top images with the unit's
//! mask `M_k` bright (the rest dimmed) and its label's pixels `L_c` outlined in
//! yellow, as Bau et al. 2017 show a detector. The HTML report and the inspector's
//! unit card draw the same pictures.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use image::{Rgb, RgbImage};

use super::LayerDissection;
use super::tally::mask;
use crate::data::{ConceptSet, InputSpec, ResizeMode, Vocabulary, text};
use crate::model::{Model, Probe};
use crate::render;

/// The side pictures are drawn at, at least.
const MIN_SIDE: u32 = 128;

/// The top images of `unit` of `layer` (dissected on `set` with `model`), highest
/// maximum first, with its mask and its best label drawn.
pub fn unit_pictures(
    model: &Model,
    set: &ConceptSet,
    layer: &LayerDissection,
    unit: usize,
    vocabulary: &Vocabulary,
) -> Result<Vec<RgbImage>> {
    let result = layer
        .units
        .get(unit)
        .with_context(|| format!("{} has no unit {unit}", layer.layer))?;
    let mut spec = model.input_spec().clone();
    spec.resize = ResizeMode::Stretch;
    let probe = Probe::new()
        .layers_only()
        .stop_after_recorded()
        .record(layer.layer.as_str());
    let label = vocabulary
        .labels
        .iter()
        .position(|l| l.name == result.best.label)
        .map(|l| l as u32);
    layer
        .tally
        .top_images(unit)
        .iter()
        .map(|&(_, image)| {
            let (input, labels) = set.load(image, &spec, model.device(), true)?;
            let labels = labels.context("internal: a concept image came without labels")?;
            let capture = model.forward(&input.unsqueeze(0)?, &probe)?;
            let acts = capture.activation(&layer.layer)?.to_dtype(DType::F32)?;
            let acts: Tensor = acts.get(0)?.get(unit)?;
            let size = match acts.dims() {
                [h, w] => (*h, *w),
                _ => (1, 1),
            };
            let map = acts.flatten_all()?.to_vec1::<f32>()?;
            let m = mask(&map, size, labels.size, layer.thresholds[unit]);
            let on_label = |p: usize| {
                label.is_some_and(|l| {
                    labels.layers.iter().any(|layer| layer[p] == l) || labels.scalars.contains(&l)
                })
            };
            let drawn = draw(&picture(model, &spec, &input)?, &m, labels.size, on_label);
            Ok(render::framed_by_card(&spec, drawn))
        })
        .collect()
}

/// What `input` is drawn as: a text model's characters in a line, else the
/// picture `spec`'s preprocessing undoes.
fn picture(model: &Model, spec: &InputSpec, input: &Tensor) -> Result<RgbImage> {
    if !model.architecture().is_sequence() {
        return spec.to_image(input);
    }
    let tokens: Vec<String> = text::characters(model.labels(), input)?
        .into_iter()
        .map(|c| c.map(String::from).unwrap_or_default())
        .collect();
    render::token_strip(&tokens)
}

/// `picture` scaled until its longer side is at least [`MIN_SIDE`] (a line of
/// text is long already), dimmed outside `mask` (label
/// resolution `(rows, columns)`), with the border of the label's pixels in yellow.
fn draw(
    picture: &RgbImage,
    mask: &[bool],
    (sh, sw): (usize, usize),
    on_label: impl Fn(usize) -> bool,
) -> RgbImage {
    let scale = MIN_SIDE
        .div_ceil(picture.width().max(picture.height()).max(1))
        .max(1);
    let (w, h) = (picture.width() * scale, picture.height() * scale);
    let at = |x: u32, y: u32| {
        let (lx, ly) = (
            (x as usize * sw / w as usize).min(sw - 1),
            (y as usize * sh / h as usize).min(sh - 1),
        );
        ly * sw + lx
    };
    let label: Vec<bool> = (0..sh * sw).map(&on_label).collect();
    RgbImage::from_fn(w, h, |x, y| {
        let p = at(x, y);
        let edge = label[p]
            && [
                (x.wrapping_sub(1), y),
                (x + 1, y),
                (x, y.wrapping_sub(1)),
                (x, y + 1),
            ]
            .into_iter()
            .any(|(nx, ny)| nx >= w || ny >= h || !label[at(nx, ny)]);
        if edge {
            return Rgb([255, 220, 0]);
        }
        let Rgb(c) = *picture.get_pixel(x / scale, y / scale);
        match mask[p] {
            true => Rgb(c),
            false => Rgb(c.map(|v| v / 4)),
        }
    })
}
