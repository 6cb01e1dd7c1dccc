//! Inputs that are not images: file types a modality plugin opens (`crate::plugin`
//! registers them here), each decoded into the model's input and a picture to
//! draw maps on, with labelled axes (a spectrogram: time in s, frequency in Hz;
//! a token sequence: the tokens in a line).
//!
//! The data layer knows modalities only through the [`Modality`] trait, so that
//! every [`super::Source`] (files, folders) opens their files without depending on
//! how plugins are loaded.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use anyhow::{Result, ensure};
use image::RgbImage;

/// A file type unitscope opens through a plugin.
pub trait Modality: Send + Sync {
    /// Its name, e.g. `audio`.
    fn name(&self) -> &str;
    /// The extensions it opens, lower case without the dot.
    fn extensions(&self) -> &[String];
    /// The model card it ships (its files open with that model when the user
    /// names none).
    fn card(&self) -> Option<&Path>;
    /// The file at `path`, its input in the model's shape `[C, H, W]`.
    fn decode(&'static self, path: &Path, input: [usize; 3]) -> Result<Decoded>;
    /// Its world of labelled samples, if it has one.
    fn world(&self) -> Option<&dyn World>;
}

/// A modality's world: samples made on demand, each with its class and, position
/// by position, its concepts; what the modality's model is trained on
/// (`unitscope train NAME`).
pub trait World: Send + Sync {
    /// The class names, in class order.
    fn classes(&self) -> &[String];
    /// The concepts, in the masks' order: `(category, name)`.
    fn concepts(&self) -> &[(String, String)];
    /// Real-valued quantities known at every position, in the tracks' order.
    fn tracks(&self) -> &[String];
    /// Samples from this index on are held out: training never draws them.
    fn held_out(&self) -> u64;
    /// Sample `index` of the world of `seed`, its input in the model's shape `[C,
    /// H, W]`; the same arguments give the same sample.
    fn sample(&self, seed: u64, index: u64, input: [usize; 3]) -> Result<Sample>;
}

/// One sample of a [`World`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The model's input, `[C, H, W]` values, row-major.
    pub input: Vec<f32>,
    /// Its class.
    pub class: usize,
    /// Where each concept is, `[concepts, H, W]`.
    pub masks: Vec<bool>,
    /// Each track's value at every position, `[tracks, H, W]`.
    pub tracks: Vec<f32>,
}

/// A file a modality decoded.
pub struct Decoded {
    /// The model's input, `[C, H, W]` values, row-major.
    pub input: Vec<f32>,
    /// How it is shown.
    pub view: View,
}

/// How a modality's file is shown: its picture, and the modality's own drawing
/// of maps onto it, if it draws them.
pub struct View {
    /// The picture, with its axes.
    pub picture: Picture,
    /// The modality's drawing of maps.
    pub painter: Option<Box<dyn Painter>>,
}

/// What a decoded file is shown as: a picture the input's positions stretch
/// over, edge to edge, with its axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// The picture.
    pub image: RgbImage,
    /// What its columns measure.
    pub x: Axis,
    /// What its rows measure (no label: not drawn).
    pub y: Axis,
}

/// One axis of a picture: what it measures, in which unit, from edge to edge.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// What it measures, e.g. `time`.
    pub label: String,
    /// Its unit, e.g. `s`.
    pub unit: String,
    /// The value at the left (or top) edge.
    pub start: f64,
    /// The value at the right (or bottom) edge.
    pub end: f64,
}

impl Axis {
    /// The axis of a token sequence's `n` tokens, in a line.
    pub fn tokens(n: usize) -> Self {
        Self {
            label: "token".into(),
            unit: String::new(),
            start: 0.0,
            end: n as f64,
        }
    }

    /// `time 0..1 s`: the axis in a caption.
    pub fn caption(&self) -> String {
        let unit = match self.unit.is_empty() {
            true => String::new(),
            false => format!(" {}", self.unit),
        };
        format!(
            "{} {}..{}{unit}",
            self.label,
            number(self.start),
            number(self.end)
        )
    }
}

/// `value` short: whole numbers without decimals, others with up to three
/// significant ones.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e9 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A modality's own drawing of maps onto its picture.
pub trait Painter: Send + Sync {
    /// `map` (`[h, w]` over the input's positions, values in `0..=1`; a signed map
    /// as `(1 + v) / 2`) drawn onto the picture, at the picture's size.
    fn paint(&self, map: &[f32], size: (usize, usize)) -> Result<RgbImage>;
}

/// The modalities plugins brought, in the order they were loaded.
static MODALITIES: RwLock<Vec<&'static dyn Modality>> = RwLock::new(Vec::new());

/// Adds a modality: its files open wherever images do. An extension another
/// modality (or the image reader) opens already is refused.
pub fn register(modality: &'static dyn Modality) -> Result<()> {
    for extension in modality.extensions() {
        ensure!(
            !IMAGE_EXTENSIONS.contains(&extension.as_str()),
            "it claims `.{extension}`, which unitscope reads as an image"
        );
        if let Some(other) = find(extension) {
            anyhow::bail!(
                "it claims `.{extension}`, which the modality `{}` opens already",
                other.name()
            );
        }
    }
    MODALITIES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(modality);
    Ok(())
}

/// The extensions of images, read without a plugin.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The modality that opens files with `extension` (any case), if any.
fn find(extension: &str) -> Option<&'static dyn Modality> {
    let extension = extension.to_lowercase();
    MODALITIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .find(|m| m.extensions().contains(&extension))
}

/// The modality that opens `path`, by its extension; `None` for an image (or a
/// file nothing claims, which the image reader then refuses).
pub fn for_path(path: &Path) -> Option<&'static dyn Modality> {
    find(path.extension()?.to_str()?)
}

/// Whether some reader opens `path`: an image, or a modality's file.
pub fn opens(path: &Path) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    match extension {
        Some(e) => IMAGE_EXTENSIONS.contains(&e.as_str()) || find(&e).is_some(),
        None => false,
    }
}

/// The modality called `name`, if a plugin brought it.
pub fn named(name: &str) -> Option<&'static dyn Modality> {
    MODALITIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .find(|m| m.name() == name)
}

/// The name of the modality that ships `card` and has a world (its model's
/// concepts), if one does.
pub fn with_world_for(card: &Path) -> Option<String> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    MODALITIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|m| m.world().is_some() && m.card().is_some_and(|c| same(c, card)))
        .map(|m| m.name().to_owned())
}

/// The card that `paths` open with when the user names none: the one their
/// modality ships, when every path is that modality's.
pub fn shipped_card(paths: &[PathBuf]) -> Option<PathBuf> {
    let first = for_path(paths.first()?)?;
    let same = paths
        .iter()
        .all(|p| for_path(p).is_some_and(|m| std::ptr::addr_eq(m, first)));
    same.then(|| first.card().map(Path::to_path_buf)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(8000.0), "8000");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.0 / 3.0), "0.333");
        assert_eq!(number(-2.25), "-2.25");
        let axis = Axis {
            label: "time".into(),
            unit: "s".into(),
            start: 0.0,
            end: 1.5,
        };
        assert_eq!(axis.caption(), "time 0..1.5 s");
    }
}
