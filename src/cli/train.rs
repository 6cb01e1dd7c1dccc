//! `unitscope train demo`: train the demo model on the demo world.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use unitscope::atomic;
use unitscope::train::{TrainConfig, held_out_accuracy, train_demo};

use super::{job, outln};

#[derive(clap::Subcommand)]
pub enum Train {
    /// Train the demo CNN on the demo world and save its weights (safetensors).
    Demo(DemoArgs),
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// World seed; the same seed gives the same weights.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Optimisation steps.
    #[arg(long, default_value_t = TrainConfig::default().steps, value_parser = super::count(1..=1_000_000))]
    steps: usize,
    /// Scenes per step.
    #[arg(long, default_value_t = TrainConfig::default().batch, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Peak learning rate (AdamW, cosine schedule).
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, value_parser = super::real(1e-9, 10.0))]
    lr: f64,
    /// Held-out scenes to measure accuracy on.
    #[arg(long, default_value_t = 2000, value_parser = super::count(1..=100_000))]
    eval: usize,
    /// Where to write the weights.
    #[arg(short, long, default_value = "assets/demo-model.safetensors")]
    out: PathBuf,
}

pub fn run(train: &Train) -> Result<()> {
    let Train::Demo(args) = train;
    let config = TrainConfig {
        seed: args.seed,
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.lr,
    };
    // Before the training, not after it: a folder that cannot be made fails now.
    if let Some(folder) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create `{}` for the weights", folder.display()))?;
    }
    let start = Instant::now();
    let steps = config.steps as u64;
    let job_config = config.clone();
    let trained = job::run("train", steps, move |cx, _| {
        train_demo(&job_config, |p| {
            cx.progress(p.step as u64, steps, format!("loss {:.3}", p.loss));
        })
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let accuracy = held_out_accuracy(&trained.model, config.seed, args.eval)?;
    trained.save(&args.out)?;
    // A record of how these weights were made, beside them.
    let record = serde_json::json!({
        "config": config, "held_out_accuracy": accuracy, "held_out_scenes": args.eval, "seconds": seconds,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    let record_path = args.out.with_extension("json");
    atomic::write(
        &record_path,
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    outln!(
        "trained in {seconds:.0} s; held-out accuracy {:.2}% on {} scenes; weights written to {}",
        accuracy * 100.0,
        args.eval,
        args.out.display()
    );
    Ok(())
}
