//! Network Dissection (Bau, Zhou, Khosla, Oliva & Torralba 2017): which human
//! concept each unit detects. Three steps, as NetDissect-Lite runs them:
//!
//! 1. concept-labelled images ([`crate::data::ConceptSet`]: Broden, or the demo
//!    world's concepts);
//! 2. per unit, the threshold `T_k`: the top 0.005 quantile of its activations over
//!    every position of every image ([`quantile`]);
//! 3. per unit and concept, the IoU of the unit's thresholded, upsampled map with
//!    the concept's pixels over the dataset ([`tally`]); a unit's label is its best
//!    concept, a detector when the IoU reaches 0.04.
//!
//! Two passes of the model over the images: the thresholds need every activation
//! before any mask can be drawn. Images are shown to the model whole (stretched to
//! its input size, as NetDissect-Lite feeds Broden), so a map covers its labels.

pub mod html;
pub mod maps;
pub mod pictures;
pub mod quantile;
pub mod report;
pub mod rotation;
pub mod shard;
pub mod tally;

use std::ops::Range;

use anyhow::{Context, Result, bail, ensure};
use candle_core::Tensor;
use serde::Serialize;

use crate::data::{ConceptSet, ImageLabels, ResizeMode, Vocabulary};
use crate::model::{Model, Probe};
use maps::LayerMaps;
pub use quantile::{Finished, STATED_ERROR, Sketch, Thresholds, sketch_thresholds};
pub use tally::{Labelled, Match, Tally, UnitResult};

/// Demo scenes dissected when no dataset is given (`dissect`, `dissect merge
/// --report`, the inspector), so all of them give the same labels.
pub const DEMO_SCENES: usize = 1000;

/// How to dissect.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The top quantile that sets each unit's threshold (Network Dissection's 0.005).
    pub quantile: f64,
    /// The IoU from which a unit counts as a detector of its label (0.04).
    pub iou_threshold: f64,
    /// Images per forward pass.
    pub batch: usize,
    /// Bytes a layer may keep for exact thresholds (its largest activations);
    /// past it, the sketch's.
    pub exact_budget: usize,
    /// Dissect each layer's units rotated by a random orthogonal matrix drawn
    /// from this seed ([`rotation`]); the predictions stay the same.
    pub rotate: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            quantile: 0.005,
            iou_threshold: 0.04,
            batch: 16,
            exact_budget: 512 << 20,
            rotate: None,
        }
    }
}

/// One layer dissected.
#[derive(Clone, Debug, Serialize)]
pub struct LayerDissection {
    /// The layer.
    pub layer: String,
    /// Each unit's `T_k`.
    pub thresholds: Vec<f32>,
    /// Whether the thresholds are exact (every activation was kept) or the sketch's.
    pub exact: bool,
    /// With exact thresholds, the sketch's largest relative error against them.
    pub sketch_error: Option<f64>,
    /// Each unit's labels.
    pub units: Vec<UnitResult>,
    /// The counts behind them.
    #[serde(skip)]
    pub tally: Tally,
}

impl LayerDissection {
    /// The detectors, and the distinct concepts they cover.
    pub fn summary(&self) -> (usize, usize) {
        let detectors: Vec<&UnitResult> = self.units.iter().filter(|u| u.detector).collect();
        let mut concepts: Vec<&str> = detectors.iter().map(|u| u.best.label.as_str()).collect();
        concepts.sort_unstable();
        concepts.dedup();
        (detectors.len(), concepts.len())
    }
}

/// Dissects `layers` of `model` on `set`; `progress` hears (images done, of the
/// two passes' total). Stops between batches when the running job is cancelled.
pub fn dissect(
    model: &Model,
    set: &ConceptSet,
    layers: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<LayerDissection>> {
    let images = 0..set.len();
    let total = 2 * set.len() as u64;
    let mut first = |done, _| progress(done, total);
    // The first pass: exact thresholds where a layer's largest values fit the budget.
    let exact = exact_layers(&layer_shapes(model, layers)?, set.len(), settings);
    let counted = counting_pass(
        model,
        set,
        images.clone(),
        layers,
        settings,
        &exact,
        &mut first,
    )?;
    let mut finished = Vec::with_capacity(layers.len());
    for t in counted {
        finished.push(t.finish()?);
    }
    let thresholds: Vec<Vec<f32>> = finished.iter().map(|f| f.thresholds.clone()).collect();
    let mut second = |done, _| progress(set.len() as u64 + done, total);
    let tallies = tally_pass(
        model,
        set,
        images,
        layers,
        &thresholds,
        settings,
        &mut second,
    )?;
    let vocabulary = set.vocabulary();
    Ok(layers
        .iter()
        .zip(tallies)
        .zip(finished)
        .map(|((layer, tally), finished)| {
            LayerDissection::new(layer, tally, finished, &vocabulary, settings)
        })
        .collect())
}

impl LayerDissection {
    /// A layer's dissection from its tally at `thresholds`.
    pub fn new(
        layer: &str,
        tally: Tally,
        thresholds: Finished,
        vocabulary: &Vocabulary,
        settings: &Settings,
    ) -> Self {
        Self {
            layer: layer.to_string(),
            units: tally.results(vocabulary, settings.iou_threshold),
            exact: thresholds.exact,
            sketch_error: thresholds.sketch_error,
            thresholds: thresholds.thresholds,
            tally,
        }
    }
}

/// Each layer's units and map size, checked against the model.
fn layer_shapes(model: &Model, layers: &[String]) -> Result<Vec<(usize, (usize, usize))>> {
    ensure!(!layers.is_empty(), "no layer to dissect");
    let known = model.layers()?;
    layers
        .iter()
        .map(|name| {
            let Some(info) = known.iter().find(|l| &l.name == name) else {
                bail!("the model has no layer `{name}`; `unitscope info` lists its layers");
            };
            let size = match info.shape.as_slice() {
                [_, h, w] => (*h, *w),
                _ => (1, 1),
            };
            Ok((info.units, size))
        })
        .collect()
}

/// The first pass of a shard: each layer's units sketched, to be merged with the
/// other shards' (the exact path cannot merge).
pub fn sketch_pass(
    model: &Model,
    set: &ConceptSet,
    images: Range<usize>,
    layers: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Vec<Sketch>>> {
    let sketched = vec![false; layers.len()];
    counting_pass(model, set, images, layers, settings, &sketched, progress)?
        .into_iter()
        .map(|t| {
            t.into_sketches()
                .context("a layer given no memory is sketched")
        })
        .collect()
}

/// Runs the model over `images`, counting each layer's activations for its
/// thresholds: exactly where `exact` says so, else sketched.
fn counting_pass(
    model: &Model,
    set: &ConceptSet,
    images: Range<usize>,
    layers: &[String],
    settings: &Settings,
    exact: &[bool],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Thresholds>> {
    check(set, &images, settings)?;
    let mut thresholds: Vec<Thresholds> = layer_shapes(model, layers)?
        .iter()
        .zip(exact)
        .map(|(&(units, (h, w)), &exact)| {
            Thresholds::new(units, h * w, images.len(), settings.quantile, exact)
        })
        .collect();
    each_batch(
        model,
        (set, images, false),
        layers,
        settings,
        progress,
        |batch| {
            for (t, maps) in thresholds.iter_mut().zip(&batch.maps) {
                t.add(maps)?;
            }
            Ok(())
        },
    )?;
    Ok(thresholds)
}

/// Which layers get exact thresholds over `images` images: those whose largest
/// values ([`Thresholds::exact_bytes`], about 1% of their activations at q =
/// 0.005) fit in the budget; the others are sketched. Each layer is judged alone,
/// so that its thresholds do not depend on the layers dissected beside it.
fn exact_layers(
    shapes: &[(usize, (usize, usize))],
    images: usize,
    settings: &Settings,
) -> Vec<bool> {
    shapes
        .iter()
        .map(|&(units, (h, w))| {
            Thresholds::exact_bytes(units, h * w, images, settings.quantile)
                <= settings.exact_budget
        })
        .collect()
}

/// The second pass over `images` of `set`: each layer's tally at its `thresholds`.
/// `progress` hears (images done, images).
pub fn tally_pass(
    model: &Model,
    set: &ConceptSet,
    images: Range<usize>,
    layers: &[String],
    thresholds: &[Vec<f32>],
    settings: &Settings,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Tally>> {
    check(set, &images, settings)?;
    let shapes = layer_shapes(model, layers)?;
    for ((t, &(n, _)), layer) in thresholds.iter().zip(&shapes).zip(layers) {
        ensure!(
            t.len() == n,
            "{} thresholds for the {n} units of `{layer}`",
            t.len()
        );
    }
    let vocabulary = set.vocabulary();
    let mut tallies: Vec<Tally> = shapes
        .iter()
        .map(|&(n, _)| Tally::new(n, &vocabulary))
        .collect();
    each_batch(
        model,
        (set, images, true),
        layers,
        settings,
        progress,
        |batch| {
            let labels = batch.labels.into_iter().flatten().collect();
            let labelled = Labelled::new(batch.first, labels, vocabulary.labels.len());
            for ((tally, maps), t) in tallies.iter_mut().zip(&batch.maps).zip(thresholds) {
                tally.add(&labelled, maps, t, &vocabulary);
            }
            Ok(())
        },
    )?;
    Ok(tallies)
}

fn check(set: &ConceptSet, images: &Range<usize>, settings: &Settings) -> Result<()> {
    ensure!(!images.is_empty(), "no images to dissect on");
    ensure!(
        images.end <= set.len(),
        "images {}..{} of a set of {}",
        images.start,
        images.end,
        set.len()
    );
    ensure!(
        settings.quantile > 0.0 && settings.quantile < 1.0,
        "the quantile is {}; it lies between 0 and 1",
        settings.quantile
    );
    Ok(())
}

/// What a pass records: `layers` (their units rotated if `settings` say so),
/// stopping after them.
fn probe(model: &Model, layers: &[String], settings: &Settings) -> Result<Probe> {
    let mut probe = layers
        .iter()
        .fold(Probe::new().values_only().stop_after_recorded(), |p, l| {
            p.record(l.as_str())
        });
    if let Some(seed) = settings.rotate {
        for (layer, &(units, _)) in layers.iter().zip(&layer_shapes(model, layers)?) {
            let rotation = rotation::random_rotation(units, seed, model.device())?;
            probe = probe.rotate(layer.as_str(), rotation);
        }
    }
    Ok(probe)
}

/// One batch's activations, as [`each_batch`] hands them over.
struct Batch {
    /// The index of its first image.
    first: usize,
    /// Per layer, its maps.
    maps: Vec<LayerMaps>,
    /// Each image's labels (`None` unless asked for).
    labels: Vec<Option<ImageLabels>>,
}

/// A batch through the model, before its outputs are read into maps.
struct Computed {
    /// The index of its first image.
    first: usize,
    /// Per layer, its output.
    outputs: Vec<Tensor>,
    /// Each image's labels (`None` unless asked for).
    labels: Vec<Option<ImageLabels>>,
}

/// Runs the model over `images` of `set` in batches, recording `layers` and
/// stopping after them, and hands each batch's activations (with its images'
/// labels if `labelled`) to `consume`; `progress` hears (images done, images).
///
/// A pipeline: while the model runs on one batch, the next is loaded and the one
/// before is read and consumed beside it, on whatever cores the model leaves
/// idle. (On two cores the demo model's pass leaves few: there, the same work run
/// one step after another took as long, `bench dissect`.)
fn each_batch(
    model: &Model,
    (set, images, labelled): (&ConceptSet, Range<usize>, bool),
    layers: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(u64, u64),
    mut consume: impl FnMut(Batch) -> Result<()> + Send,
) -> Result<()> {
    let probe = probe(model, layers, settings)?;
    // Whole images, as the labels cover them.
    let mut spec = model.input_spec().clone();
    spec.resize = ResizeMode::Stretch;
    let load = |chunk: &[usize]| set.load(chunk, &spec, model.device(), labelled);
    // The layers' outputs are read into maps on the consuming side, beside the
    // next batch's pass rather than after it.
    let forward = |inputs: &Tensor| -> Result<Vec<Tensor>> {
        let capture = model.forward(inputs, &probe)?;
        (layers.iter())
            .map(|l| Ok(capture.activation(l)?.clone()))
            .collect()
    };
    let mut consume = |computed: Computed| -> Result<()> {
        let Computed {
            first,
            outputs,
            labels,
        } = computed;
        let maps = outputs.iter().map(LayerMaps::read).collect::<Result<_>>()?;
        consume(Batch {
            first,
            maps,
            labels,
        })
    };
    let indices: Vec<usize> = images.collect();
    let total = indices.len() as u64;
    let mut chunks = indices.chunks(settings.batch.max(1));
    // A batch loaded: its first image's index, its inputs and labels.
    let mut load_next = || -> Result<_> {
        (chunks.next())
            .map(|chunk| anyhow::Ok((chunk[0], load(chunk)?)))
            .transpose()
    };
    let mut loaded = load_next()?;
    let mut done = 0;
    let mut ready: Option<Computed> = None;
    while let Some((first, (inputs, labels))) = loaded {
        crate::jobs::checkpoint()?;
        let (outputs, (next, consumed)) = rayon::join(
            || forward(&inputs),
            || {
                let next = load_next();
                let consumed = ready.take().map(|b| (b.labels.len(), consume(b)));
                (next, consumed)
            },
        );
        if let Some((images, consumed)) = consumed {
            consumed?;
            done += images as u64;
            progress(done, total);
        }
        loaded = next?;
        ready = Some(Computed {
            first,
            outputs: outputs?,
            labels,
        });
    }
    if let Some(batch) = ready {
        consume(batch)?;
        progress(total, total);
    }
    Ok(())
}

/// The vocabulary's categories with each one's detector count in `layer`.
pub fn detectors_per_category(
    layer: &LayerDissection,
    vocabulary: &Vocabulary,
) -> Vec<(String, usize)> {
    vocabulary
        .categories
        .iter()
        .map(|c| {
            let n = layer
                .units
                .iter()
                .filter(|u| u.detector && &u.best.category == c)
                .count();
            (c.clone(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer whose largest values fit in the budget is exact, one whose do not is
    /// sketched.
    #[test]
    fn exact_thresholds_go_to_the_layers_that_fit_the_budget() {
        // q = 0.1 of 10 images of 1, 1 and 4 values: numpy's ranks 8.1 of 10 and
        // 35.1 of 40, so k = 2 and 5 largest; 2k values plus a map per unit.
        let shapes = [(10, (1, 1)), (40, (1, 1)), (1, (2, 2))];
        let settings = |budget| Settings {
            quantile: 0.1,
            exact_budget: budget,
            ..Settings::default()
        };
        let bytes = [10 * 5 * 4, 40 * 5 * 4, 14 * 4];
        assert_eq!(
            shapes.map(|(u, (h, w))| Thresholds::exact_bytes(u, h * w, 10, 0.1)),
            bytes
        );
        assert_eq!(exact_layers(&shapes, 10, &settings(800)), [true; 3]);
        assert_eq!(
            exact_layers(&shapes, 10, &settings(799)),
            [true, false, true]
        );
        assert_eq!(
            exact_layers(&shapes, 10, &settings(100)),
            [false, false, true]
        );
        assert_eq!(exact_layers(&shapes, 10, &settings(0)), [false; 3]);
    }
}
