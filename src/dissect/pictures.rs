//! A dissected unit's evidence as pictures: each of its top images with the unit's
//! mask `M_k` bright (the rest dimmed) and its label's pixels `L_c` outlined in
//! yellow, as Bau et al. 2017 show a detector. The HTML report and the inspector's
//! unit card draw the same pictures.

use anyhow::{Context, Result, ensure};
use candle_core::Tensor;
use image::{Rgb, RgbImage};
use rayon::prelude::*;

use super::maps::LayerMaps;
use super::tally::mask;
use super::{LayerDissection, Settings};
use crate::data::{ConceptSet, InputSpec, ResizeMode, Vocabulary, text};
use crate::model::Model;
use crate::render;

/// The side pictures are drawn at, at least.
const MIN_SIDE: u32 = 128;

/// For each of `units` of `layer` (dissected on `set` with `model` under
/// `settings`), its top images, highest maximum first, with its mask and its best
/// label drawn. Each image is loaded and shown to the model once, in batches,
/// however many of the units have it among their top images.
pub fn top_pictures(
    model: &Model,
    set: &ConceptSet,
    layer: &LayerDissection,
    units: &[usize],
    vocabulary: &Vocabulary,
    settings: &Settings,
) -> Result<Vec<Vec<RgbImage>>> {
    for &unit in units {
        ensure!(
            unit < layer.units.len(),
            "{} has no unit {unit}",
            layer.layer
        );
    }
    // Per image, the (unit slot, rank) of each picture it gives.
    let mut wanted: std::collections::BTreeMap<usize, Vec<(usize, usize)>> = Default::default();
    for (slot, &unit) in units.iter().enumerate() {
        for (rank, &(_, image)) in layer.tally.top_images(unit).iter().enumerate() {
            wanted.entry(image).or_default().push((slot, rank));
        }
    }
    let wanted: Vec<(usize, Vec<(usize, usize)>)> = wanted.into_iter().collect();
    let mut spec = model.input_spec().clone();
    spec.resize = ResizeMode::Stretch;
    let probe = super::probe(model, std::slice::from_ref(&layer.layer), settings)?;
    let labels: Vec<Option<u32>> = units
        .iter()
        .map(|&unit| {
            let best = &layer.units[unit].best.label;
            (vocabulary.labels.iter())
                .position(|l| &l.name == best)
                .map(|l| l as u32)
        })
        .collect();
    let mut pictures: Vec<Vec<Option<RgbImage>>> = units
        .iter()
        .map(|&unit| vec![None; layer.tally.top_images(unit).len()])
        .collect();
    for chunk in wanted.chunks(settings.batch.max(1)) {
        crate::jobs::checkpoint()?;
        let images: Vec<usize> = chunk.iter().map(|&(image, _)| image).collect();
        let (inputs, images_labels) = set.load(&images, &spec, model.device(), true)?;
        let capture = model.forward(&inputs, &probe)?;
        let maps = LayerMaps::read(capture.activation(&layer.layer)?)?;
        let drawn = (chunk.par_iter().zip(&images_labels).enumerate())
            .map(|(b, ((_, wants), image_labels))| {
                let image_labels = image_labels
                    .as_ref()
                    .context("internal: a concept image came without labels")?;
                let picture = picture(model, &spec, &inputs.get(b)?)?;
                Ok(wants
                    .iter()
                    .map(|&(slot, rank)| {
                        let unit = units[slot];
                        let map = maps.map(b, unit);
                        let size = image_labels.size();
                        let m = mask(map, size, layer.thresholds[unit]);
                        let on_label = |p: usize| {
                            labels[slot].is_some_and(|l| image_labels.at(p).contains(&l))
                        };
                        let drawn = draw(&picture, &m, size, on_label);
                        ((slot, rank), render::framed_by_card(&spec, drawn))
                    })
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>>>()?;
        for ((slot, rank), picture) in drawn.into_iter().flatten() {
            pictures[slot][rank] = Some(picture);
        }
    }
    Ok(pictures
        .into_iter()
        .map(|unit| unit.into_iter().flatten().collect())
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::dissect;

    /// Units that share top images get the same pictures as when each is drawn
    /// alone (one image per forward pass), in their own order, whatever batches
    /// the images fall in.
    #[test]
    fn shared_images_are_drawn_for_each_unit_in_its_order() {
        let model = crate::model::demo::model(&candle_core::Device::Cpu).unwrap();
        let set = ConceptSet::Demo(24);
        let layer = "features.4".to_string();
        let settings = Settings::default();
        let dissected = dissect(&model, &set, &[layer], &settings, &mut |_, _| {}).unwrap();
        let (layer, vocabulary) = (&dissected[0], set.vocabulary());
        let units = [5, 0, 31, 5, 17];
        let shared = (units.iter())
            .flat_map(|&u| layer.tally.top_images(u))
            .map(|&(_, image)| image)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(
            shared < 4 * 4,
            "the units share no image: {shared} distinct"
        );
        let together = Settings {
            batch: 3,
            ..settings.clone()
        };
        let alone = Settings {
            batch: 1,
            ..settings
        };
        let drawn = top_pictures(&model, &set, layer, &units, &vocabulary, &together).unwrap();
        assert_eq!(drawn.len(), units.len());
        for (&unit, pictures) in units.iter().zip(&drawn) {
            assert_eq!(pictures.len(), layer.tally.top_images(unit).len());
            let single = top_pictures(&model, &set, layer, &[unit], &vocabulary, &alone).unwrap();
            assert!(single[0] == *pictures, "unit {unit}'s pictures differ");
        }
        assert!(drawn[0] != drawn[1], "two units drew the same pictures");
        let err = top_pictures(&model, &set, layer, &[32], &vocabulary, &alone).unwrap_err();
        assert!(err.to_string().contains("has no unit 32"), "{err}");
    }

    /// A layer dissected with its units rotated draws its masks from the rotated
    /// units, as its tally counted them (they came from the unrotated ones).
    #[test]
    fn rotated_units_draw_their_own_masks() {
        let model = crate::model::demo::model(&candle_core::Device::Cpu).unwrap();
        let set = ConceptSet::Demo(24);
        let rotated = Settings {
            rotate: Some(3),
            ..Settings::default()
        };
        let layers = ["features.4".to_string()];
        let dissected = dissect(&model, &set, &layers, &rotated, &mut |_, _| {}).unwrap();
        let (layer, vocabulary) = (&dissected[0], set.vocabulary());
        let units: Vec<usize> = (0..8).collect();
        let drawn = |settings: &Settings| {
            top_pictures(&model, &set, layer, &units, &vocabulary, settings).unwrap()
        };
        let unrotated = Settings {
            rotate: None,
            ..rotated.clone()
        };
        assert!(drawn(&rotated) != drawn(&unrotated));
    }
}
