//! `unitscope bench dissect`: Network Dissection's rate against the forward passes
//! it needs (two per image: thresholds, then the tally) on the same inputs, for the
//! demo model's layers and ResNet-18's `layer3` + `layer4` at 224 px (demo scenes
//! stretched), batch 16; and its peak memory on 1k and 10k demo scenes, with
//! sketched thresholds (flat) and with the exact path (which keeps each unit's
//! largest values: about 1% of them). Timings are printed, never asserted.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::json;
use unitscope::data::{ConceptSet, ResizeMode};
use unitscope::dissect::{self, Settings};
use unitscope::model::{Architecture, Model, Probe};

use super::bench::{peak_rss_mb, reset_peak_rss};
use super::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Demo scenes for the rate (ResNet-18 dissects an eighth as many).
    #[arg(long, default_value_t = 1000, value_parser = super::count(16..=100_000))]
    scenes: usize,
    /// Alternating rounds of the forward passes and the dissection. The ratio is
    /// the median of the rounds' ratios: a round's two runs follow each other, so
    /// they meet the same state of a shared machine (whose slow spells are longer
    /// than a demo round).
    #[arg(long, default_value_t = 5, value_parser = super::count(1..=100))]
    rounds: usize,
    /// Scene counts for the peak-memory comparison.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000", value_parser = super::count(16..=1_000_000))]
    memory: Vec<usize>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let demo = unitscope::model::demo::model(&Device::Cpu)?;
    let layers = ["features.1", "features.4", "features.7", "features.10"].map(String::from);
    // First, while the process holds no memory that earlier runs left to the
    // allocator: the peak is then the dissection's own.
    for &n in &args.memory {
        for (name, budget) in [("sketched", 0), ("exact", 512 << 20)] {
            let settings = Settings {
                exact_budget: budget,
                ..Settings::default()
            };
            reset_peak_rss();
            let start = Instant::now();
            dissect::dissect(
                &demo,
                &ConceptSet::Demo(n),
                &layers[3..],
                &settings,
                &mut |_, _| {},
            )?;
            let seconds = start.elapsed().as_secs_f64();
            let peak = peak_rss_mb();
            if args.json {
                outln!(
                    "{}",
                    json!({"bench": "dissect_memory", "scenes": n, "thresholds": name,
                                     "seconds": seconds, "peak_rss_mb": peak})
                );
            } else {
                let peak = peak.map_or("-".into(), |p| format!("{p:.0} MB"));
                outln!(
                    "peak memory, demo features.10, {n} scenes, {name} thresholds: {peak} ({seconds:.1} s)"
                );
            }
        }
    }
    rate(args, &demo, "demo 64 px", &layers, args.scenes)?;
    let resnet = Model::synthetic(Architecture::Resnet18, &Device::Cpu)?;
    let layers = ["layer3".into(), "layer4".into()];
    rate(
        args,
        &resnet,
        "ResNet-18 224 px",
        &layers,
        (args.scenes / 8).max(16),
    )
}

/// Dissects `layers` of `model` on `n` demo scenes, and times the two forward
/// passes that needs on the same inputs (preloaded, stopping after the layers),
/// in alternating rounds.
fn rate(args: &Args, model: &Model, name: &str, layers: &[String], n: usize) -> Result<()> {
    let set = ConceptSet::Demo(n);
    let settings = Settings::default();
    let mut spec = model.input_spec().clone();
    spec.resize = ResizeMode::Stretch;
    let images: Vec<usize> = (0..set.len()).collect();
    let batches: Vec<Tensor> = images
        .chunks(settings.batch)
        .map(|c| Ok(set.load(c, &spec, &Device::Cpu, false)?.0))
        .collect::<Result<_>>()?;
    let probe = layers
        .iter()
        .fold(Probe::new().values_only().stop_after_recorded(), |p, l| {
            p.record(l.as_str())
        });
    let forward = || -> Result<()> {
        for b in &batches {
            let capture = model.forward(b, &probe)?;
            for l in layers {
                std::hint::black_box(capture.activation(l)?.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok(())
    };
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };
    forward()?;
    let (mut passes, mut seconds, mut ratios, mut dissected) =
        (f64::INFINITY, f64::INFINITY, Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let two = timed(&mut || {
            forward()?;
            forward()
        })?;
        let dissection = timed(&mut || {
            dissected = dissect::dissect(model, &set, layers, &settings, &mut |_, _| {})?;
            Ok(())
        })?;
        (passes, seconds) = (passes.min(two), seconds.min(dissection));
        ratios.push(dissection / two);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let detectors: usize = dissected.iter().map(|l| l.summary().0).sum();
    if args.json {
        outln!(
            "{}",
            json!({"bench": "dissect", "model": name, "layers": layers, "images": n,
                             "dissect_s": seconds, "two_forward_passes_s": passes,
                             "ratios": ratios, "median_ratio": median, "detectors": detectors})
        );
    } else {
        let ratios: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        outln!(
            "dissection, {name}, {}, {n} images in batches of {}, {} rounds: {:.1} images/s \
             (best); two forward passes {:.1} images/s (best); dissection takes {median:.2}x \
             their time, the median of the rounds' {} (goal <= 1.25x)",
            layers.join("+"),
            settings.batch,
            args.rounds,
            n as f64 / seconds,
            n as f64 / passes,
            ratios.join(", ")
        );
    }
    Ok(())
}
