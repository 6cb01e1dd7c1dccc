//! `unitscope visualize`: feature visualization from the command line. One image
//! per unit (or class), or several diverse ones, optimized in batches; PNGs, the
//! objective's curve in JSON, and optionally the pictures in the terminal.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use serde_json::json;
use unitscope::attribution::Target;
use unitscope::data::labels;
use unitscope::featvis::{self, Objective, Parameterization, Regularizers, Settings, Transforms};
use unitscope::jobs;
use unitscope::model::{Model, UnitAddress};
use unitscope::render::{self, Cells, Terminal};

use super::job::{self, Printer};

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The layer whose units are visualized (`unitscope info` lists them).
    #[arg(long, required_unless_present = "class")]
    layer: Option<String>,
    /// Units of --layer, e.g. `3,7,12` or `0-15`: one image each, optimized together.
    #[arg(long, requires = "layer", value_parser = super::Units::parse)]
    unit: Option<super::Units>,
    /// Classes (indices or names) whose logits are visualized, for `logit` objectives.
    #[arg(long, conflicts_with = "unit", value_delimiter = ',')]
    class: Vec<String>,
    /// What each image maximizes: `channel` (the unit's mean; the default for
    /// units), `neuron` (its centre), `layer` (DeepDream), `logit` (the default for
    /// classes), or a weighted sum such as `channel - 0.5*channel:layer4:7` (a bare
    /// term is the image's own unit or class).
    #[arg(long, value_parser = parse_objective)]
    objective: Option<Objective>,
    /// Parameterization: `fft` (1/f spectrum) or `pixel`.
    #[arg(long, default_value = "fft", value_parser = ["fft", "pixel"])]
    param: String,
    /// Optimize raw RGB instead of decorrelated colours.
    #[arg(long)]
    no_decorrelate: bool,
    /// One grey channel (shown to the model as RGB).
    #[arg(long)]
    grayscale: bool,
    /// Image side in pixels (default: the model's input size).
    #[arg(long, value_parser = super::count(8..=2048))]
    size: Option<usize>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 512, value_parser = super::count(1..=100_000))]
    steps: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.05, value_parser = super::real(1e-6, 10.0))]
    lr: f64,
    /// Seed of the initial noise and the transforms.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip Lucid's standard transforms (pad, jitter, scale, rotate; their pixel
    /// amounts scaled down for images under 224 px).
    #[arg(long)]
    no_transforms: bool,
    /// L1 penalty weight on the image (distance from grey).
    #[arg(long, default_value_t = 0.0, value_parser = super::real(0.0, 1e6))]
    l1: f64,
    /// L2 penalty weight on the image.
    #[arg(long, default_value_t = 0.0, value_parser = super::real(0.0, 1e6))]
    l2: f64,
    /// Total-variation penalty weight.
    #[arg(long, default_value_t = 0.0, value_parser = super::real(0.0, 1e6))]
    tv: f64,
    /// Blur penalty weight (Lucid's blur_input_each_step).
    #[arg(long, default_value_t = 0.0, value_parser = super::real(0.0, 1e6))]
    blur: f64,
    /// Images per unit (or class); above 1, a diversity term keeps them apart.
    #[arg(long, default_value_t = 1, value_parser = super::count(1..=64))]
    count: usize,
    /// The layer the diversity term compares images at (default: the first layer
    /// the objective reads; needed for a logit).
    #[arg(long)]
    diversity_layer: Option<String>,
    /// Weight of the diversity term, relative to the objective's scale (Lucid's
    /// examples use 100 on InceptionV1, whose activations are far larger).
    #[arg(long, default_value_t = 1.0, value_parser = super::real(0.0, 1e9))]
    diversity: f64,
    /// Images optimized at once.
    #[arg(long, default_value_t = 32, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Output folder.
    #[arg(short, long, default_value = "visualize")]
    out: PathBuf,
    /// Also print the pictures in the terminal.
    #[arg(long)]
    show: bool,
}

fn parse_objective(s: &str) -> Result<Objective, String> {
    s.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
}

/// The cells `--show` prints each picture into.
const SHOW_AREA: Cells = Cells {
    columns: 24,
    rows: 12,
};

pub fn run(args: &Args) -> Result<()> {
    let model = super::load_model(args.model.as_deref())?;
    let targets = args.targets(&model)?;
    let settings = args.settings()?;
    // Asked before the job: the terminal's answer must not race the progress bar.
    let terminal = args.show.then(Terminal::detect).transpose()?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", args.out.display()))?;
    let args = args.clone();
    let total = targets.len() as u64 * settings.steps as u64;
    job::run("visualize", total, move |cx, out| {
        visualize(&args, &model, &targets, &settings, terminal, (cx, out))
    })
}

impl Args {
    /// One target per unit or class, each repeated `--count` times.
    fn targets(&self, model: &Model) -> Result<Vec<Target>> {
        let one = if !self.class.is_empty() {
            self.class
                .iter()
                .map(|c| Ok(Target::Class(labels::find(model.labels(), c)?)))
                .collect::<Result<Vec<_>>>()?
        } else {
            let layer = self
                .layer
                .clone()
                .expect("clap requires --layer without --class");
            let info = model.layers()?.iter().find(|l| l.name == layer).cloned();
            let Some(info) = info else {
                anyhow::bail!(
                    "the model has no layer `{layer}`; `unitscope info` lists its layers"
                );
            };
            let units = match &self.unit {
                Some(units) => units.of(&layer, info.units)?,
                None => vec![0],
            };
            units
                .into_iter()
                .map(|channel| {
                    Target::Unit(UnitAddress {
                        layer: layer.clone(),
                        channel,
                        position: None,
                    })
                })
                .collect()
        };
        Ok(one
            .into_iter()
            .flat_map(|t| std::iter::repeat_n(t, self.count))
            .collect())
    }

    /// The objective asked for, or the default for units or classes.
    fn objective(&self) -> Objective {
        let default = if self.class.is_empty() {
            "channel"
        } else {
            "logit"
        };
        self.objective
            .clone()
            .unwrap_or_else(|| default.parse().expect("a valid objective"))
    }

    fn settings(&self) -> Result<Settings> {
        let objective = self.objective();
        let needs_class = objective
            .terms
            .iter()
            .any(|(_, t)| *t == featvis::Term::Logit(None));
        ensure!(
            !needs_class || !self.class.is_empty(),
            "a bare `logit` term needs --class (or write `logit:N`)"
        );
        let diverse = self.count > 1 && self.diversity > 0.0;
        let reads_a_layer = objective
            .terms
            .iter()
            .any(|(_, t)| !matches!(t, featvis::Term::Logit(_)));
        ensure!(
            !diverse || reads_a_layer || self.diversity_layer.is_some(),
            "--count above 1 compares the images at a layer, and a logit reads none: \
             give --diversity-layer LAYER"
        );
        Ok(Settings {
            objective,
            parameterization: match self.param.as_str() {
                "pixel" => Parameterization::Pixel,
                _ => Parameterization::Fourier,
            },
            decorrelate: !self.no_decorrelate,
            channels: if self.grayscale { 1 } else { 3 },
            size: self.size.map(|s| (s, s)),
            transforms: self.no_transforms.then(Transforms::none),
            regularizers: Regularizers {
                l1: self.l1,
                l2: self.l2,
                total_variation: self.tv,
                blur: self.blur,
            },
            diversity: diverse.then(|| (self.diversity, self.diversity_layer.clone())),
            steps: self.steps,
            lr: self.lr,
            seed: self.seed,
        })
    }
}

fn visualize(
    args: &Args,
    model: &Model,
    targets: &[Target],
    settings: &Settings,
    terminal: Option<Terminal>,
    (cx, out): (&jobs::Context, &Printer),
) -> Result<()> {
    // A unit's diverse images are a batch of their own: the diversity term compares
    // every image of a batch, and must not push different units apart.
    let per_batch = if args.count > 1 {
        args.count
    } else {
        args.batch
    };
    let mut index = Vec::new();
    let steps = settings.steps as u64;
    let total = targets.len() as u64 * steps;
    for (b, chunk) in targets.chunks(per_batch).enumerate() {
        let done_before = (b * per_batch) as u64 * steps;
        let mut progress = |step: u64, _| {
            let done = done_before + step * chunk.len() as u64;
            cx.progress(done, total, format!("step {step}"))
        };
        let made = featvis::visualize(model, chunk, settings, &mut progress)?;
        for (i, target) in chunk.iter().enumerate() {
            let copy = (b * per_batch + i) % args.count;
            let mut name = match target {
                Target::Unit(u) => format!("{}_unit{:04}", render::file_part(&u.layer), u.channel),
                Target::Class(c) => format!("class{c:04}"),
            };
            if args.count > 1 {
                name.push_str(&format!("_{copy}"));
            }
            let path = args.out.join(format!("{name}.png"));
            let framed = render::framed_by_card(model.input_spec(), made.images[i].clone());
            render::save_png(&framed, &path)?;
            let value = made.values[i];
            out.line(&format!(
                "{}: {value:.4} -> {}",
                describe(target, model),
                path.display()
            ))?;
            if let Some(terminal) = &terminal {
                out.suspend(|| terminal.print(&made.images[i], SHOW_AREA))?;
            }
            index.push(json!({
                "target": describe(target, model),
                "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
                "value": value,
                "curve": made.curves[i],
            }));
        }
    }
    let summary = json!({
        "model": model.name(),
        "objective": settings.objective.to_string(),
        "param": args.param,
        "decorrelate": settings.decorrelate && settings.channels == 3,
        "steps": settings.steps,
        "lr": settings.lr,
        "seed": settings.seed,
        "transforms": !args.no_transforms,
        "images": index,
    });
    let path = args.out.join("visualize.json");
    unitscope::atomic::write(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    out.line(&format!("curves: {}", path.display()))
}

fn describe(target: &Target, model: &Model) -> String {
    match target {
        Target::Unit(u) => u.to_string(),
        Target::Class(c) => format!("class {c} ({})", model.labels()[*c]),
    }
}
