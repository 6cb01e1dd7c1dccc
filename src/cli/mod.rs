//! Subcommands: each parses its arguments, calls the library, prints.

pub mod allocator;
pub mod bench;
pub mod bench_dissect;
pub mod bench_plugin;
pub mod bench_units;
pub mod classes;
pub mod demo;
pub mod dissect;
pub mod evaluate;
pub mod explain;
pub mod info;
pub mod job;
pub mod methods;
pub mod overview;
pub mod plugins;
pub mod predict;
pub mod threads;
pub mod topk;
pub mod train;
pub mod units;
pub mod visualize;

use std::ops::RangeInclusive;
use std::path::Path;

use anyhow::{Result, ensure};
use candle_core::Device;
use clap::builder::{PossibleValue, PossibleValuesParser, RangedU64ValueParser, TypedValueParser};
use unitscope::choice::Choice;
use unitscope::data::Source;
use unitscope::model::{DeviceChoice, Model, ModelCard};

/// Writes a line to standard output, returning the error (a closed pipe, a full disk)
/// instead of panicking as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        use anyhow::Context as _;
        writeln!(std::io::stdout().lock(), $($arg)*).context("cannot write to standard output")?
    }};
}
pub(crate) use outln;

/// The model a `--model CARD` option names, or the embedded demo model. What loading
/// found suspect (non-finite weights) is printed as warnings.
fn load_model(card: Option<&Path>) -> Result<Model> {
    let model = match card {
        Some(card) => Model::from_card(&ModelCard::load(card)?, &device()?)?,
        None => unitscope::model::demo::model(&device()?)?,
    };
    for warning in model.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(model)
}

/// Modality plugin `name`'s world, and the model for it: `card`, else the card
/// the plugin ships, else the embedded demo model.
fn world_and_model(
    name: &str,
    card: Option<&Path>,
) -> Result<(&'static dyn unitscope::data::modality::World, Model)> {
    use anyhow::Context as _;
    let modality = unitscope::data::modality::named(name).with_context(|| {
        format!("no modality `{name}` (`unitscope plugins` lists those loaded)")
    })?;
    let world = modality
        .world()
        .with_context(|| format!("the modality `{name}` has no world"))?;
    Ok((world, load_model(card.or(modality.card()))?))
}

/// The model for `source`'s inputs: the card given; else the one their modality
/// ships ([`Source::shipped_card`]); else the embedded demo model.
fn model_for(card: Option<&Path>, source: &Source) -> Result<Model> {
    let shipped = card.is_none().then(|| source.shipped_card()).flatten();
    load_model(card.or(shipped.as_deref()))
}

/// Whether `source`'s files go to the embedded demo model: no card given, and
/// none shipped by their modality; [`note_demo_model`] says so.
fn files_on_demo_model(card: Option<&Path>, source: &Source) -> bool {
    card.is_none() && !matches!(source, Source::Demo(_)) && source.shipped_card().is_none()
}

/// Says, on standard error, that image files go to the embedded demo model when no
/// `--model` was given: its 64 px shapes are not what a photo shows.
fn note_demo_model(labels: &[String]) {
    eprintln!(
        "note: no --model given: using the embedded demo model (64 px shapes: {}); \
         give --model CARD to use your own",
        labels.join(", ")
    );
}

/// Warns, once per process, when a model's outputs are not finite numbers.
fn check_outputs(probabilities: impl IntoIterator<Item = f32>) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if probabilities.into_iter().any(|p| !p.is_finite()) {
        WARNED.call_once(|| {
            eprintln!(
                "warning: the model's outputs are NaN or infinite (non-finite weights, or \
                 inputs far outside what it was trained on); its predictions are meaningless"
            )
        });
    }
}

/// A whole-number option that must lie in `range`; clap's error names the range.
fn count(range: RangeInclusive<u64>) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(range)
}

/// A parser for one of a [`Choice`]'s names: `--help` lists them with their help,
/// and a wrong name is an error that lists them.
pub(crate) fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    let values = T::ALL
        .iter()
        .map(|v| PossibleValue::new(v.name()).help(v.help()));
    // The possible-values parser admits only the names, so `from_name` finds one.
    PossibleValuesParser::new(values).try_map(|name| T::from_name(&name).ok_or(name))
}

/// A parser for a real-valued option that must be finite and lie in `[lo, hi]`.
fn real(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |s| {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?;
        match v.is_finite() && (lo..=hi).contains(&v) {
            true => Ok(v),
            false => Err(format!("{v} is not in {lo}..={hi}")),
        }
    }
}

/// The device every command runs on, set once from `--device` before dispatch.
static DEVICE: std::sync::OnceLock<DeviceChoice> = std::sync::OnceLock::new();

/// Records `--device` for [`device`]; the first call wins.
pub fn choose_device(choice: DeviceChoice) {
    let _ = DEVICE.set(choice);
}

/// The device `--device` chose (default `auto`), opened once per process; `auto`'s
/// fallback notice is printed once, on standard error.
fn device() -> Result<Device> {
    static OPENED: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    if let Some(device) = OPENED.get() {
        return Ok(device.clone());
    }
    let opened = DEVICE.get().copied().unwrap_or_default().open()?;
    if let Some(notice) = opened.notice {
        eprintln!("note: {notice}");
    }
    Ok(OPENED.get_or_init(|| opened.device).clone())
}

/// Unit indices as inclusive ranges, as `--units` and `--unit` take them.
#[derive(Clone, Debug)]
pub struct Units(Vec<(usize, usize)>);

impl Units {
    /// Parses `3`, `0-7` and lists of them, `0-7,12`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let number = |p: &str| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{p}` in `{s}` is not a unit index"))
        };
        s.split(',')
            .map(|part| match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    match a <= b {
                        true => Ok((a, b)),
                        false => Err(format!("`{part}` is an empty range")),
                    }
                }
                None => number(part).map(|u| (u, u)),
            })
            .collect::<Result<_, _>>()
            .map(Units)
    }

    /// The chosen units of a layer of `count`, in order; an index past the end is
    /// an error naming the layer's size.
    pub fn of(&self, layer: &str, count: usize) -> Result<Vec<usize>> {
        let mut units = Vec::new();
        for &(a, b) in &self.0 {
            ensure!(
                b < count,
                "unit {b} is out of range: `{layer}` has {count} units (0-{})",
                count - 1
            );
            units.extend(a..=b);
        }
        units.sort_unstable();
        units.dedup();
        Ok(units)
    }
}
