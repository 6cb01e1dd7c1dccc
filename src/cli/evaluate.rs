//! `unitscope evaluate`: how far to trust each method's maps, as numbers: deletion
//! and insertion areas, the pointing game and the mass on the object (where masks
//! exist: the demo world), the cascading model-randomization check, and fragility
//! (max-sensitivity and the shift test).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use candle_core::Tensor;
use serde_json::json;
use unitscope::data::{Sample, Source};
use unitscope::jobs;
use unitscope::metrics::{self, DeletionInsertion, Fragility, TrustInputs};
use unitscope::model::Model;

use super::job::{self, Printer};
use super::methods::NamedMethod;

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A folder of PNG/JPEG images (and files modality plugins open) to evaluate on.
    #[arg(long, conflicts_with = "demo")]
    images: Option<PathBuf>,
    /// Held-out scenes of the demo world to evaluate on (they have object masks).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = super::count(1..=MAX_IMAGES as u64))]
    demo: usize,
    #[command(flatten)]
    methods: super::methods::MethodArgs,
    /// Steps of the deletion and insertion games.
    #[arg(long, default_value_t = 64, value_parser = super::count(1..=4096))]
    game_steps: usize,
    /// Skip the model-randomization check (one attribution per layer with weights).
    #[arg(long)]
    no_randomization: bool,
    /// Seed of the randomized weights.
    #[arg(long, default_value_t = 0)]
    randomization_seed: u64,
    /// Max-sensitivity's noisy copies per input (0 skips it); each costs one
    /// attribution of every input.
    #[arg(long, default_value_t = 8, value_parser = super::count(0..=1000))]
    sensitivity_samples: usize,
    /// Max-sensitivity's noise radius r (uniform in [-r, r] on each input value, in
    /// the model's normalized input units; Quantus's default).
    #[arg(long, default_value_t = 0.2)]
    sensitivity_radius: f64,
    /// The shift test's shift in pixels, right and down (0 skips it).
    #[arg(long, default_value_t = 4, value_parser = super::count(0..=1024))]
    shift: usize,
    /// One JSON object per method instead of the table.
    #[arg(long)]
    json: bool,
}

/// The most inputs `evaluate` holds at once (as one batch).
const MAX_IMAGES: usize = 4096;

pub fn run(args: &Args) -> Result<()> {
    let r = args.sensitivity_radius;
    ensure!(
        r.is_finite() && r >= 0.0,
        "--sensitivity-radius must be a finite number >= 0, not {r}"
    );
    let model = super::model_for(args.model.as_deref(), &args.source())?;
    // Checked before any method runs, not after the first one's games.
    let [rows, columns] = model.input_spec().size;
    unitscope::metrics::shift_offsets(args.shift, (rows, columns)).context("--shift")?;
    let methods = args.methods.build(&model)?;
    let args = args.clone();
    job::run("evaluate", methods.len() as u64, move |cx, out| {
        evaluate(&args, &model, methods, (cx, out))
    })
}

/// The body of `evaluate`, run as a job: one method at a time, stopping at a
/// cancellation between methods, images or batches.
fn evaluate(
    args: &Args,
    model: &Model,
    methods: Vec<NamedMethod>,
    (cx, out): (&jobs::Context, &Printer),
) -> Result<()> {
    let inputs = args.inputs(model)?;
    let n = inputs.tensor.dim(0)?;
    let games = DeletionInsertion {
        steps: args.game_steps,
        ..DeletionInsertion::default()
    };
    let fragility = Fragility {
        samples: args.sensitivity_samples,
        radius: args.sensitivity_radius,
        shift: args.shift,
        seed: args.randomization_seed,
    };
    let baseline = inputs.random_point_baseline();
    if !args.json {
        out.line(&format!(
            "{n} images, {}; areas over {} steps; sensitivity over {} draws of r = {}; shift {} px; \
             pointing game vs. {}",
            model.name(),
            args.game_steps,
            args.sensitivity_samples,
            args.sensitivity_radius,
            args.shift,
            match baseline {
                Some(b) => format!("a random point's {b:.3}"),
                None => "no masks (give --demo N for them)".into(),
            }
        ))?;
        out.line(&format!(
            "{:<28} {:>10} {:>10} {:>9} {:>9} {:>10} {:>8} {:>8}",
            "method",
            "deletion↓",
            "insertion↑",
            "pointing",
            "mass in",
            "random ρ↓",
            "sens↓",
            "shift ρ↑"
        ))?;
    }
    let total = methods.len() as u64;
    let seed = (!args.no_randomization).then_some(args.randomization_seed);
    for (done, (name, method)) in methods.into_iter().enumerate() {
        cx.checkpoint()?;
        cx.progress(done as u64, total, &name);
        let trust = metrics::trust(model, method.as_ref(), &inputs, (&games, &fragility), seed)?;
        let fragile = &trust.fragility;
        let means = &trust.means;
        if args.json {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            out.line(&format!(
                "{}",
                json!({
                    "method": method.name(),
                    "images": means.images,
                    "deletion_auc": means.deletion_auc,
                    "insertion_auc": means.insertion_auc,
                    "pointing_game": means.pointing_game,
                    "mass_inside": means.mass_inside,
                    "random_point_baseline": baseline,
                    "randomization": trust.randomization.as_ref().map(|steps| steps
                        .iter()
                        .map(|s| json!({"layer": s.layer, "spearman": mean(&s.spearman)}))
                        .collect::<Vec<_>>()),
                    "max_sensitivity": fragile.mean_max_sensitivity(),
                    "shift_spearman": fragile.mean_shift_spearman(),
                    "per_image": {
                        "max_sensitivity": fragile.max_sensitivity,
                        "shift_spearman": fragile.shift_spearman,
                    },
                })
            ))?;
        } else {
            let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
            out.line(&format!(
                "{:<28} {:>10.3} {:>10.3} {:>9} {:>9} {:>10} {:>8} {:>8}",
                name,
                means.deletion_auc,
                means.insertion_auc,
                cell(means.pointing_game),
                cell(means.mass_inside),
                cell(trust.fully_random_spearman()),
                cell(fragile.mean_max_sensitivity()),
                cell(fragile.mean_shift_spearman()),
            ))?;
        }
    }
    Ok(())
}

impl Args {
    /// Where the inputs come from.
    fn source(&self) -> Source {
        match &self.images {
            Some(folder) => Source::Folder(folder.clone()),
            None => Source::Demo(self.demo),
        }
    }

    /// Every input as one batch, with the objects' masks where the source has them.
    fn inputs(&self, model: &Model) -> Result<TrustInputs> {
        let source = self.source();
        let count = source.len()?;
        ensure!(
            count <= MAX_IMAGES,
            "{count} images; evaluate takes at most {MAX_IMAGES} at once (they are one batch \
             in memory): give a folder with fewer"
        );
        let spec = model.input_spec();
        source.check(spec)?;
        let samples: Vec<Sample> = source
            .samples(spec, model.device())?
            .collect::<Result<_>>()?;
        let tensors: Vec<&Tensor> = samples.iter().map(|s| &s.tensor).collect();
        Ok(TrustInputs {
            tensor: Tensor::stack(&tensors, 0)?,
            masks: samples.iter().map(|s| s.mask.clone()).collect(),
        })
    }
}
