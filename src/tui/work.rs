//! The inspector's background work, one function per kind of job. Each runs on a
//! worker ([`unitscope::jobs::Runner`]) and returns an [`Output`] the event loop
//! stores; none touches the screen. A newer request for the same slot supersedes
//! the older (the runner cancels it), and the app caches what comes back by what
//! it was computed from.

use std::collections::{HashMap, hash_map};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use image::{RgbImage, imageops};
use unitscope::attribution::{self, Attribution, Params, Target, TargetSpec, registry};
use unitscope::data::concepts::WorldSet;
use unitscope::data::modality::{self, View};
use unitscope::data::{Broden, ConceptSet, Vocabulary};
use unitscope::data::{Entry, Window, text};
use unitscope::dissect::{self, LayerDissection, report};
use unitscope::featvis;
use unitscope::jobs::Context;
use unitscope::metrics::{self, DeletionInsertion, Fragility, MapScores, Trust, TrustInputs};
use unitscope::model::{Model, ModelCard, Prediction, UnitAddress};
use unitscope::render::{self, Backdrop, Colormap, Style};
use unitscope::units::{self, Cache, LayerStats};

/// What a job hands back.
pub enum Output {
    Model(Arc<Model>),
    Input(usize, Arc<InputView>),
    Explained(ExplainKey, Arc<Explained>),
    Compared(ExplainKey, Arc<Vec<Compared>>),
    Layer(Arc<LayerView>),
    Thumbnails(String, Vec<(usize, RgbImage)>),
    /// Feature visualizations of units of a layer: one each, or a unit's diverse
    /// set; with what went wrong caching them.
    Visuals(String, Vec<(usize, RgbImage)>, Vec<String>),
    Diverse(String, usize, Vec<RgbImage>, Vec<String>),
    Unit(String, usize, Arc<Vec<Tile>>),
    Dissection(Arc<Dissected>),
    /// A unit's top concept images with `M_k` and `L_c` drawn.
    Evidence(String, usize, Vec<RgbImage>),
    Trust(Arc<Vec<TrustRow>>),
    Exported(Vec<PathBuf>),
}

/// Lowers the priority of the compute pool's threads (rayon's, where the kernels
/// run): on a machine with few cores a method's batch would otherwise take the core
/// the UI thread needs to answer a key within a frame. Job threads lower their own
/// ([`lower_this_thread`]).
pub fn yield_to_the_screen() {
    rayon::broadcast(|_| lower_this_thread());
}

/// Lowers the calling thread's priority (Linux sets niceness per thread; elsewhere
/// this does nothing).
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id; an error leaves it as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10)
    };
}

/// The embedded demo model, or the model a card describes.
pub fn load_model(card: Option<&ModelCard>, device: &Device) -> Result<Output> {
    let model = match card {
        Some(card) => Model::from_card(card, device)?,
        None => unitscope::model::demo::model(device)?,
    };
    // The layer table needs one forward pass: done here, not on the first frame.
    model.layers()?;
    Ok(Output::Model(Arc::new(model)))
}

/// One input, read, with the model's top-5 on it.
pub struct InputView {
    pub name: String,
    /// The image as the user has it.
    pub original: RgbImage,
    /// The model's input, `[3, H, W]`.
    pub tensor: Tensor,
    /// The object's pixels, on demo scenes.
    pub mask: Option<Vec<bool>>,
    pub top: Vec<Prediction>,
    /// The part of `original` the model saw.
    pub window: Window,
    /// For a modality's file, what it is shown as.
    pub view: Option<Arc<View>>,
    /// A text model's input read back as characters (drawn as text, not a picture).
    pub text: Option<Vec<Option<char>>>,
}

impl InputView {
    /// Its name, and for a modality's picture its axes (`x: time 0..1 s`).
    pub fn caption(&self) -> String {
        let Some(view) = self.view.as_deref() else {
            return self.name.clone();
        };
        let axes = [&view.picture.x, &view.picture.y]
            .into_iter()
            .zip(["x", "y"])
            .filter(|(axis, _)| !axis.label.is_empty())
            .map(|(axis, name)| format!(" · {name}: {}", axis.caption()));
        std::iter::once(self.name.clone()).chain(axes).collect()
    }

    /// What its maps are drawn onto, for a model taking `(height, width)` inputs.
    fn backdrop(&self, input: (usize, usize)) -> Backdrop<'_> {
        Backdrop {
            picture: &self.original,
            window: self.window,
            input,
            painter: self.view.as_ref().and_then(|v| v.painter.as_deref()),
        }
    }
}

pub fn load_input(model: &Model, index: usize, entry: &Entry) -> Result<Output> {
    let sample = entry.load(model.input_spec(), model.device())?;
    let top = model.predict(&sample.tensor.unsqueeze(0)?, 5)?.remove(0);
    let original = sample.original()?;
    let text = match model.architecture().is_sequence() {
        true => Some(text::characters(model.labels(), &sample.tensor)?),
        false => None,
    };
    let view = InputView {
        text,
        window: sample.window(model.input_spec(), original.dimensions()),
        original,
        name: sample.name,
        tensor: sample.tensor,
        mask: sample.mask,
        top,
        view: sample.view,
    };
    Ok(Output::Input(index, Arc::new(view)))
}

/// What one map was computed from: the cache key of explanations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExplainKey {
    pub input: usize,
    pub method: String,
    pub target: String,
    /// The method's parameter values, as text.
    pub params: String,
}

/// One method's map of one input.
pub struct Explained {
    pub maps: Attribution,
    /// What the method says of its map (LIME's R², LRP's conservation, superpixels).
    pub notes: attribution::Notes,
    /// What the target resolved to, as people read it.
    pub target: String,
    /// The method's own time.
    pub ms: f64,
    /// Model passes it took.
    pub passes: usize,
    pub raw_range: (f64, f64),
    /// Over a text input: each character's value (summed over the one-hot
    /// channels: its own share, signed).
    pub over_text: Option<Vec<f32>>,
}

/// The request of one explanation: everything [`explain`] needs, owned.
#[derive(Clone)]
pub struct Request {
    pub key: ExplainKey,
    pub input: Arc<InputView>,
    pub target: TargetSpec,
    pub params: Params,
}

pub fn explain(model: &Model, request: &Request) -> Result<Output> {
    let explained = explain_one(model, request, &request.key.method)?;
    Ok(Output::Explained(request.key.clone(), Arc::new(explained)))
}

fn explain_one(model: &Model, request: &Request, method_name: &str) -> Result<Explained> {
    let method = registry::build(method_name, &request.params)?;
    let input = &request.input;
    let x = input.tensor.unsqueeze(0)?;
    let predicted = input.top.first().map(|p| p.index).unwrap_or(0);
    let target = request.target.resolve(&[predicted]);
    let start = Instant::now();
    let (maps, mut notes) =
        attribution::attribute_noted(method.as_ref(), model, &x, std::slice::from_ref(&target))?
            .remove(0);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let (_, _, h, w) = x.dims4()?;
    let passes = method.passes((h, w));
    let over_text = match input.text {
        Some(_) => Some(
            maps.display_raw((h, w), attribution::ChannelReduction::Sum)?
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?,
        ),
        None => None,
    };
    Ok(Explained {
        notes: notes.pop().unwrap_or_default(),
        over_text,
        raw_range: maps.raw_range()?,
        target: describe(&target[0], model),
        maps,
        ms,
        passes: passes.forward + passes.backward,
    })
}

/// A target as people read it: a class with its label, or a unit.
pub fn describe(target: &attribution::Target, model: &Model) -> String {
    match target {
        attribution::Target::Class(c) => match model.labels().get(*c) {
            Some(label) => format!("{label} ({c})"),
            None => format!("class {c}"),
        },
        unit => unit.to_string(),
    }
}

/// The heatmap of `explained` over the input as the user has it; with `outline`, the
/// superpixels it was painted on drawn over it (LIME, KernelSHAP).
pub fn draw(
    model: &Model,
    input: &InputView,
    explained: &Explained,
    (colormap, outline): (Colormap, bool),
) -> Result<RgbImage> {
    let [h, w] = model.input_spec().size;
    let style = Style {
        colormap,
        ..Style::default()
    };
    let heat = render::draw_on(&explained.maps, input.backdrop((h, w)), style)?;
    Ok(match (&explained.notes.segmentation, outline) {
        (Some(regions), true) => render::outline(&heat, regions, [255, 255, 255]),
        _ => heat,
    })
}

/// One method's map in the compare view, with how far to trust it.
pub struct Compared {
    pub method: String,
    pub explained: Arc<Explained>,
    pub scores: MapScores,
}

/// Every method of `methods` on one input and target, each scored.
pub fn compare(
    model: &Model,
    request: &Request,
    methods: &[String],
    cx: &Context,
) -> Result<Output> {
    let games = DeletionInsertion::default();
    let (h, w) = (model.input_spec().size[0], model.input_spec().size[1]);
    let class = request.input.top.first().map(|p| p.index).unwrap_or(0);
    let mut rows = Vec::new();
    for (done, method) in methods.iter().enumerate() {
        cx.checkpoint()?;
        cx.progress(done as u64, methods.len() as u64, method);
        let explained =
            explain_one(model, request, method).with_context(|| format!("method `{method}`"))?;
        let map = explained
            .maps
            .display((h, w), attribution::ChannelReduction::MaxAbs)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let mask = request.input.mask.as_deref();
        let scores = MapScores::measure(model, &games, (&request.input.tensor, &map), class, mask)?;
        rows.push(Compared {
            method: method.clone(),
            explained: Arc::new(explained),
            scores,
        });
    }
    Ok(Output::Compared(request.key.clone(), Arc::new(rows)))
}

/// A layer's units over the inputs: each unit's statistics and strongest inputs.
/// Its thumbnails come after, visible cells first ([`thumbnails`]).
pub struct LayerView {
    pub stats: LayerStats,
    /// What went wrong with the search cache, for the status bar.
    pub notes: Vec<String>,
}

/// The side of a thumbnail, in pixels.
const THUMBNAIL: u32 = 48;

/// The layer's unit statistics over `entries`, from the search cache when it has
/// them (opening a layer searched before is instant).
pub fn layer(
    model: &Model,
    layer: &str,
    entries: &[Entry],
    cache: Option<&Cache>,
    cx: &Context,
) -> Result<Output> {
    let layers = [layer.to_string()];
    let mut progress = |done, total| cx.progress(done, total, layer);
    let searched = units::search_entries(model, entries, &layers, 4, cache, 16, &mut progress)?;
    let stats = searched.stats.into_iter().next().expect("one layer asked");
    Ok(Output::Layer(Arc::new(LayerView {
        stats,
        notes: searched.notes,
    })))
}

/// The thumbnails of `units`: what each unit's peak on its strongest input sees
/// (its receptive field there); a black square for a unit without one (a search
/// over no inputs, which the search refuses: kept so every asked unit is answered
/// and none is asked again).
pub fn thumbnails(
    model: &Model,
    view: &LayerView,
    units: &[usize],
    entries: &[Entry],
) -> Result<Output> {
    let stats = &view.stats;
    let (spec, device) = (model.input_spec(), model.device());
    // Each strongest input is read once, however many units it tops.
    let mut originals: HashMap<usize, (RgbImage, Window)> = HashMap::new();
    let mut thumbnails = Vec::with_capacity(units.len());
    for &unit in units {
        unitscope::jobs::checkpoint()?;
        let Some(best) = stats.units[unit].top.first() else {
            thumbnails.push((unit, RgbImage::new(THUMBNAIL, THUMBNAIL)));
            continue;
        };
        let (original, seen) = match originals.entry(best.input) {
            hash_map::Entry::Occupied(e) => e.into_mut(),
            hash_map::Entry::Vacant(e) => {
                let sample = entries[best.input].load(spec, device)?;
                let original = sample.original()?;
                let seen = sample.window(spec, original.dimensions());
                e.insert((original, seen))
            }
        };
        let crop = stats.crop(best, original, *seen, spec);
        // Scaled to fit the thumbnail square, aspect kept (an edge crop is narrow).
        let (w, h) = crop.dimensions();
        let scale = THUMBNAIL as f64 / w.max(h) as f64;
        let size = |side: u32| ((side as f64 * scale).round() as u32).max(1);
        let thumbnail = imageops::resize(&crop, size(w), size(h), imageops::FilterType::Triangle);
        thumbnails.push((unit, thumbnail));
    }
    Ok(Output::Thumbnails(stats.layer.clone(), thumbnails))
}

/// How the inspector visualizes units: Lucid's defaults, 256 steps, at most
/// 128 px (a screen of ResNet-18 units then takes minutes, not ten), so the grid
/// fills in while the user browses; kept in the cache for the next run.
fn visual_settings(model: &Model) -> featvis::Settings {
    let [h, w] = model.input_spec().size;
    featvis::Settings {
        steps: 256,
        size: Some((h.min(128), w.min(128))),
        ..featvis::Settings::new("channel".parse().expect("a valid objective"))
    }
}

/// Feature visualizations of `units` of `layer`, optimized together (read from
/// the cache where there).
pub fn visuals(
    model: &Model,
    layer: &str,
    units: &[usize],
    cache: Option<&Path>,
    cx: &Context,
) -> Result<Output> {
    let targets: Vec<Target> = units.iter().map(|&u| unit_target(layer, u)).collect();
    let mut progress = |step, steps| cx.progress(step, steps, "visualizing");
    let settings = visual_settings(model);
    let (images, notes) = featvis::cached(model, &targets, &settings, cache, &mut progress)?;
    let made = units.iter().copied().zip(images).collect();
    Ok(Output::Visuals(layer.to_string(), made, notes))
}

/// Images kept apart by Lucid's diversity term: what else excites `unit`.
pub const DIVERSE: usize = 4;

pub fn diverse(
    model: &Model,
    layer: &str,
    unit: usize,
    cache: Option<&Path>,
    cx: &Context,
) -> Result<Output> {
    let targets = vec![unit_target(layer, unit); DIVERSE];
    let settings = featvis::Settings {
        diversity: Some((1.0, None)),
        ..visual_settings(model)
    };
    let mut progress = |step, steps| cx.progress(step, steps, "diverse visualizations");
    let (images, notes) = featvis::cached(model, &targets, &settings, cache, &mut progress)?;
    Ok(Output::Diverse(layer.to_string(), unit, images, notes))
}

fn unit_target(layer: &str, channel: usize) -> Target {
    Target::Unit(UnitAddress {
        layer: layer.to_string(),
        channel,
        position: None,
    })
}

/// One of a unit's strongest inputs with the unit's upsampled activation over it.
pub struct Tile {
    pub image: RgbImage,
    pub caption: String,
    /// Over a text input: its characters and the unit's value after each.
    pub text: Option<(Vec<Option<char>>, Vec<f32>)>,
}

pub fn unit(
    model: &Model,
    view: &LayerView,
    unit: usize,
    entries: &[Entry],
    colormap: Colormap,
) -> Result<Output> {
    let stats = &view.stats;
    let (spec, device) = (model.input_spec(), model.device());
    let (h, w) = stats.size;
    let mut tiles = Vec::new();
    for top in &stats.units[unit].top {
        unitscope::jobs::checkpoint()?;
        let entry = &entries[top.input];
        let sample = entry.load(spec, device)?;
        let original = sample.original()?;
        // One input's layer map, as a CAM's: `[1, H, W]`.
        let map = Tensor::from_vec(top.map.clone(), (1, h, w), &Device::Cpu)?;
        let maps = Attribution::Layers(vec![(stats.layer.clone(), map)]);
        let style = Style {
            colormap,
            ..Style::default()
        };
        let on = Backdrop::of(&sample, &original, spec);
        // Inside a modality's axes (a spectrogram's time and frequency).
        let image = render::framed(&sample, render::draw_on(&maps, on, style)?);
        let text = match model.architecture().is_sequence() && top.map.len() == w {
            true => Some((
                text::characters(model.labels(), &sample.tensor)?,
                top.map.clone(),
            )),
            false => None,
        };
        tiles.push(Tile {
            text,
            image,
            caption: format!("{} peak {:.3}", entry.name, top.peak),
        });
    }
    Ok(Output::Unit(stats.layer.clone(), unit, Arc::new(tiles)))
}

/// Where the concepts a layer is dissected against come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Concepts {
    /// The demo world's held-out scenes, for the demo model.
    Demo,
    /// A Broden-layout dataset.
    Broden(PathBuf),
    /// The held-out samples of the named modality's world, for the model its
    /// plugin ships.
    World(String),
}

/// Runners-up shown per unit, after its label.
pub const RUNNERS_UP: usize = 4;

/// A layer's Network Dissection, with what the views need to show it.
pub struct Dissected {
    pub layer: LayerDissection,
    pub set: Arc<ConceptSet>,
    pub vocabulary: Vocabulary,
    pub settings: dissect::Settings,
    /// Per unit, its best labels by IoU, highest first: `(label, category, IoU)`
    /// (its own label and the runners-up).
    pub ranked: Vec<Vec<(String, Option<usize>, f64)>>,
    /// Per unit, its label's category (an index into the vocabulary's).
    pub category: Vec<Option<usize>>,
    /// What went wrong with the cache, for the status bar.
    pub notes: Vec<String>,
}

/// Dissects `layer` against `concepts` (from the inspector's cache when it was
/// dissected before under the same model, data and settings).
pub fn dissect(
    model: &Model,
    layer: &str,
    concepts: &Concepts,
    cache: Option<&Path>,
    cx: &Context,
) -> Result<Output> {
    let set = Arc::new(match concepts {
        Concepts::Demo => ConceptSet::Demo(dissect::DEMO_SCENES),
        Concepts::Broden(dir) => ConceptSet::Broden(Broden::open(dir)?),
        Concepts::World(name) => {
            let modality =
                modality::named(name).with_context(|| format!("no modality `{name}` is loaded"))?;
            ConceptSet::World(WorldSet {
                name: name.clone(),
                world: modality
                    .world()
                    .with_context(|| format!("the modality `{name}` has no world"))?,
                count: dissect::DEMO_SCENES,
                shape: model.input_spec().shape(),
            })
        }
    });
    let settings = dissect::Settings::default();
    let vocabulary = set.vocabulary();
    let key = report::key(model, &set, &settings, layer)?;
    let path = cache.map(|dir| dir.join(format!("{}.json", &key[..32])));
    let mut notes = Vec::new();
    let layer = match path
        .as_deref()
        .and_then(|p| report::load(p, &key, &set, &settings))
    {
        Some(layer) => layer,
        None => {
            let mut progress = |done, total| cx.progress(done, total, "dissecting");
            let layers = [layer.to_string()];
            let layer = dissect::dissect(model, &set, &layers, &settings, &mut progress)?.remove(0);
            if let Some(path) = &path
                && let Err(e) = report::save(path, &layer, &key)
            {
                notes.push(format!("{e:#}; the dissection is not cached"));
            }
            layer
        }
    };
    let ranked = (0..layer.units.len())
        .map(|k| {
            let top = layer.tally.ranked(k, &vocabulary, 1 + RUNNERS_UP);
            top.into_iter()
                .map(|(c, iou)| {
                    let label = &vocabulary.labels[c];
                    (label.name.clone(), label.category, iou)
                })
                .collect()
        })
        .collect();
    let category = layer
        .units
        .iter()
        .map(|u| {
            vocabulary
                .categories
                .iter()
                .position(|c| *c == u.best.category)
        })
        .collect();
    Ok(Output::Dissection(Arc::new(Dissected {
        layer,
        set,
        vocabulary,
        settings,
        ranked,
        category,
        notes,
    })))
}

/// The top concept images of `unit` with its mask and its label drawn.
pub fn evidence(model: &Model, dissected: &Dissected, unit: usize) -> Result<Output> {
    let pictures = dissect::pictures::top_pictures(
        model,
        &dissected.set,
        &dissected.layer,
        &[unit],
        &dissected.vocabulary,
        &dissected.settings,
    )?
    .pop()
    .unwrap_or_default();
    Ok(Output::Evidence(
        dissected.layer.layer.clone(),
        unit,
        pictures,
    ))
}

/// One method's row of the Trust screen.
pub struct TrustRow {
    pub method: String,
    pub trust: Trust,
    pub baseline: Option<f64>,
}

/// The inputs the Trust screen measures on: the first few, so a row takes seconds.
pub const TRUST_INPUTS: usize = 16;

pub fn trust(
    model: &Model,
    methods: &[String],
    params: &Params,
    entries: &[Entry],
    cx: &Context,
) -> Result<Output> {
    let (spec, device) = (model.input_spec(), model.device());
    let samples = entries
        .iter()
        .take(TRUST_INPUTS)
        .map(|e| e.load(spec, device))
        .collect::<Result<Vec<_>>>()?;
    let tensors: Vec<&Tensor> = samples.iter().map(|s| &s.tensor).collect();
    let inputs = TrustInputs {
        tensor: Tensor::stack(&tensors, 0)?,
        masks: samples.iter().map(|s| s.mask.clone()).collect(),
    };
    let baseline = inputs.random_point_baseline();
    let games = DeletionInsertion::default();
    let mut rows = Vec::new();
    for (done, name) in methods.iter().enumerate() {
        cx.checkpoint()?;
        cx.progress(done as u64, methods.len() as u64, name);
        let method = registry::build(name, params)?;
        let measures = (&games, &Fragility::default());
        let trust = metrics::trust(model, method.as_ref(), &inputs, measures, Some(0))
            .with_context(|| format!("method `{name}`"))?;
        rows.push(TrustRow {
            method: name.clone(),
            trust,
            baseline,
        });
    }
    Ok(Output::Trust(Arc::new(rows)))
}
