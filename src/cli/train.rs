//! `unitscope train WHAT`: train the demo model on the demo world, or a modality
//! plugin's model (the card it ships, or `--card`) on the plugin's world.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use unitscope::atomic;
use unitscope::data::modality;
use unitscope::model::ModelCard;
use unitscope::train::{
    Corpus, HeldOut, Progress, TrainConfig, Trained, held_out, train_card, train_demo,
};

use super::{job, outln};

#[derive(clap::Args)]
pub struct Train {
    /// What to train: `demo` (the demo CNN on the demo world), or a modality
    /// plugin with a world (`audio`), whose card names the architecture, the
    /// classes and where the weights go.
    what: String,
    /// The model card to train (a modality's; default: the card it ships).
    #[arg(long)]
    card: Option<PathBuf>,
    /// World seed; the same seed gives the same weights.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Optimisation steps.
    #[arg(long, default_value_t = TrainConfig::default().steps, value_parser = super::count(1..=1_000_000))]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = TrainConfig::default().batch, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Peak learning rate (AdamW, cosine schedule).
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, value_parser = super::real(1e-9, 10.0))]
    lr: f64,
    /// Held-out samples to measure accuracy on.
    #[arg(long, default_value_t = 2000, value_parser = super::count(1..=100_000))]
    eval: usize,
    /// Where to write the weights (default: the demo's `assets/demo-model.safetensors`,
    /// or where the card names them).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

pub fn run(args: &Train) -> Result<()> {
    let config = TrainConfig {
        seed: args.seed,
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.lr,
    };
    let start = Instant::now();
    let (trained, out, measured) = match args.what.as_str() {
        "demo" => demo(args, &config)?,
        name => modality_model(name, args, &config)?,
    };
    let seconds = start.elapsed().as_secs_f64();
    save(&trained, &out, &config, &measured, seconds)?;
    let what = match trained.model.architecture().is_sequence() {
        true => "next-character",
        false => "held-out",
    };
    outln!(
        "trained in {seconds:.0} s; on {} held-out samples: accuracy {:.2}%, {what} loss {:.3} nats \
         ({:.3} bits); weights written to {}",
        measured.samples,
        measured.accuracy * 100.0,
        measured.loss,
        measured.loss / std::f64::consts::LN_2,
        out.display()
    );
    Ok(())
}

/// The demo model trained on the demo world, where it goes, its held-out accuracy.
fn demo(args: &Train, config: &TrainConfig) -> Result<(Trained, PathBuf, HeldOut)> {
    if args.card.is_some() {
        bail!("the demo model's architecture is built in: `--card` is for a modality's model");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| "assets/demo-model.safetensors".into());
    make_folder(&out)?;
    let (steps, job_config) = (config.steps as u64, config.clone());
    let trained = job::run("train", steps, move |cx, _| {
        train_demo(&job_config, |p| cx.progress(p.step as u64, steps, loss(&p)))
    })?;
    let measured = held_out(&trained.model, Corpus::Demo, config.seed, args.eval)?;
    Ok((trained, out, measured))
}

/// The model of modality `name`'s card (`--card`, else the one it ships) trained
/// on its world, where it goes, its held-out accuracy.
fn modality_model(
    name: &str,
    args: &Train,
    config: &TrainConfig,
) -> Result<(Trained, PathBuf, HeldOut)> {
    let modality = modality::named(name).with_context(|| {
        format!(
            "nothing called `{name}` to train: `demo`, or a modality plugin with a world \
             (`unitscope plugins` lists those loaded)"
        )
    })?;
    let world = modality
        .world()
        .with_context(|| format!("the modality `{name}` has no world to train on"))?;
    let card_path = match (&args.card, modality.card()) {
        (Some(card), _) => card.clone(),
        (None, Some(card)) => card.to_path_buf(),
        (None, None) => bail!("the modality `{name}` ships no model card: name one with --card"),
    };
    let card = ModelCard::load(&card_path)?;
    let out = match (&args.out, &card.weights) {
        (Some(out), _) => out.clone(),
        (None, Some(weights)) => card.base.join(weights),
        (None, None) => bail!(
            "the card `{}` names no `weights` file to write: name one with -o",
            card_path.display()
        ),
    };
    make_folder(&out)?;
    let (steps, job_config) = (config.steps as u64, config.clone());
    let trained = job::run("train", steps, move |cx, _| {
        train_card(&job_config, &card, world, |p| {
            cx.progress(p.step as u64, steps, loss(&p))
        })
    })?;
    let corpus = Corpus::Plugin(world);
    let measured = held_out(&trained.model, corpus, config.seed, args.eval)?;
    Ok((trained, out, measured))
}

/// A step's progress message.
fn loss(p: &Progress) -> String {
    format!("loss {:.3}", p.loss)
}

/// Makes the folder `out` goes in, before the training rather than after it: a
/// folder that cannot be made fails now.
fn make_folder(out: &Path) -> Result<()> {
    if let Some(folder) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create `{}` for the weights", folder.display()))?;
    }
    Ok(())
}

/// Writes the weights to `out` and, beside them, a record of how they were made.
fn save(
    trained: &Trained,
    out: &Path,
    config: &TrainConfig,
    measured: &HeldOut,
    seconds: f64,
) -> Result<()> {
    trained.save(out)?;
    let record = serde_json::json!({
        "config": config, "held_out_accuracy": measured.accuracy, "held_out_loss": measured.loss,
        "held_out_samples": measured.samples, "seconds": seconds,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    atomic::write(
        &out.with_extension("json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )
}
