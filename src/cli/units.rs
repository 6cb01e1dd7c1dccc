//! `unitscope units`: a text model's units. `correlate` searches every unit for
//! the ones that follow a world's tracks; `text` draws units over text as coloured
//! characters.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use candle_core::{IndexOp, Tensor};
use unitscope::atomic;
use unitscope::data::{Source, text};
use unitscope::model::{Model, Probe};
use unitscope::render::html::{Painted, painted_page};
use unitscope::units::{Correlations, correlate};

use super::{job, outln};

#[derive(clap::Subcommand)]
pub enum Units {
    /// Which units follow a quantity a modality's world knows at every position
    /// (a text's bracket depth, inside a string): every unit's activation
    /// correlated with every track over held-out samples, the closest printed.
    Correlate(CorrelateArgs),
    /// Units' activations over text as coloured characters (Karpathy et al. 2015),
    /// an HTML page: over text files, or held-out samples of a modality's world.
    Text(TextArgs),
}

#[derive(clap::Args)]
pub struct TextArgs {
    /// Text files, read as their modality plugin reads them.
    #[arg(required_unless_present = "world")]
    files: Vec<PathBuf>,
    /// Held-out samples of this modality's world instead of files (`text`).
    #[arg(long, conflicts_with = "files")]
    world: Option<String>,
    /// Samples of --world drawn.
    #[arg(long, default_value_t = 6, value_parser = super::count(1..=1000))]
    samples: usize,
    /// Model card (TOML). Without one: the card the files' (or world's) plugin ships.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The layer (`unitscope info` lists them), e.g. `rnn.0.cell`.
    #[arg(long)]
    layer: String,
    /// Units to draw, e.g. `3,17-19`.
    #[arg(long, value_parser = super::Units::parse)]
    units: super::Units,
    /// The HTML page to write.
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct CorrelateArgs {
    /// The modality plugin whose world has the tracks (`text`).
    #[arg(long)]
    world: String,
    /// Model card (TOML). Without one: the card the world's plugin ships.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Layers whose units to search (`unitscope info` lists them); repeat or
    /// separate with commas.
    #[arg(
        long = "layer",
        value_name = "LAYER",
        required = true,
        value_delimiter = ','
    )]
    layers: Vec<String>,
    /// Held-out samples of the world to correlate over.
    #[arg(long, default_value_t = 200, value_parser = super::count(1..=1_000_000))]
    samples: usize,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Units printed per track, closest first.
    #[arg(long, default_value_t = 5, value_parser = super::count(1..=4096))]
    top: usize,
    /// Where to write every unit's r with every track as JSON.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

pub fn run(command: &Units) -> Result<()> {
    match command {
        Units::Correlate(args) => run_correlate(args),
        Units::Text(args) => run_text(args),
    }
}

/// The model and the inputs `args` names, each with its name.
fn text_inputs(args: &TextArgs) -> Result<(Model, Vec<(String, Tensor)>)> {
    if let Some(name) = &args.world {
        let (world, model) = super::world_and_model(name, args.model.as_deref())?;
        let shape = model.input_spec().shape();
        let inputs = (0..args.samples as u64)
            .map(|i| {
                let sample = world.sample(0, world.held_out() + i, shape)?;
                let input = Tensor::from_vec(sample.input, shape.to_vec(), model.device())?;
                Ok((format!("held-out sample {i}"), input))
            })
            .collect::<Result<_>>()?;
        return Ok((model, inputs));
    }
    let source = Source::Files(args.files.clone());
    let model = super::model_for(args.model.as_deref(), &source)?;
    let inputs = source
        .samples(model.input_spec(), model.device())?
        .map(|s| s.map(|s| (s.name, s.tensor)))
        .collect::<Result<_>>()?;
    Ok((model, inputs))
}

fn run_text(args: &TextArgs) -> Result<()> {
    let (model, inputs) = text_inputs(args)?;
    ensure!(
        model.architecture().is_sequence(),
        "`{}` reads pictures, not text: draw its units with `unitscope topk`",
        model.name()
    );
    let layer = &args.layer;
    let info = model
        .layers()?
        .iter()
        .find(|l| &l.name == layer)
        .with_context(|| {
            format!("the model has no layer `{layer}`; `unitscope info` lists its layers")
        })?;
    let units = args.units.of(layer, info.units)?;
    let probe = Probe::new()
        .values_only()
        .stop_after_recorded()
        .record(layer.clone());
    let mut blocks = Vec::new();
    let mut rows = Vec::new();
    for (name, input) in &inputs {
        let capture = model.forward(&input.unsqueeze(0)?, &probe)?;
        let activation = capture.activation(layer)?.i(0)?;
        let chars = text::characters(model.labels(), input)?;
        for &u in &units {
            let values = activation.i(u)?.flatten_all()?.to_vec1::<f32>()?;
            rows.push((name.clone(), u, chars.clone(), values));
        }
    }
    for &u in &units {
        let own = rows.iter().filter(|r| r.1 == u);
        // One scale per unit, so that its texts compare.
        let scale = own
            .clone()
            .flat_map(|r| r.3.iter().map(|v| v.abs()))
            .fold(0f32, f32::max);
        for (name, _, chars, values) in own {
            blocks.push(Painted {
                caption: format!("{layer}:{u} over {name}"),
                chars,
                values,
                scale,
            });
        }
    }
    let page = painted_page(
        &format!("{} · {layer}", model.name()),
        "Each character's background is the unit's value after reading it.",
        &blocks,
    );
    atomic::write(&args.out, page.as_bytes())?;
    outln!(
        "{} unit(s) of {layer} over {} text(s) written to {}",
        units.len(),
        inputs.len(),
        args.out.display()
    );
    Ok(())
}

fn run_correlate(args: &CorrelateArgs) -> Result<()> {
    let (world, model) = super::world_and_model(&args.world, args.model.as_deref())?;
    let (layers, samples, seed) = (args.layers.clone(), args.samples, args.seed);
    let found: Correlations = job::run("correlate", samples as u64, move |cx, _| {
        correlate(&model, world, &layers, seed, samples, |done| {
            cx.progress(done as u64, samples as u64, "")
        })
    })?;
    outln!(
        "{} units of {} against {} tracks over {} held-out samples ({} positions)",
        found.layers.iter().map(|l| l.r.len()).sum::<usize>(),
        args.layers.join(", "),
        found.tracks.len(),
        found.samples,
        found.positions
    );
    for (k, track) in found.tracks.iter().enumerate() {
        let best: Vec<String> = found
            .best(k, args.top)
            .iter()
            .map(|m| format!("{} r={:+.3}", m.unit, m.r))
            .collect();
        outln!("{track}: {}", best.join(", "));
    }
    if let Some(out) = &args.out {
        atomic::write(out, serde_json::to_string_pretty(&found)?.as_bytes())?;
        outln!("every unit's r written to {}", out.display());
    }
    Ok(())
}
