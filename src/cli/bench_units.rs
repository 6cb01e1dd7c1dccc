//! `unitscope bench units`: dataset search against the engine's forward-only rate
//! on the same batches, and feature-visualization steps per second, one unit and
//! many units batched. Timings are printed, never asserted.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::json;
use unitscope::attribution::Target;
use unitscope::data::Source;
use unitscope::featvis::{self, Settings, Transforms};
use unitscope::model::{Architecture, Model, Probe, UnitAddress};
use unitscope::units::Search;

use super::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Demo scenes searched (ResNet-18 searches a quarter as many 224 px inputs).
    #[arg(long, default_value_t = 512, value_parser = super::count(16..=100_000))]
    inputs: usize,
    /// Feature-visualization steps timed per case (after one warm-up step).
    #[arg(long, default_value_t = 10, value_parser = super::count(1..=10_000))]
    steps: usize,
    /// Units visualized at once, per case.
    #[arg(long, value_delimiter = ',', default_value = "1,32", value_parser = super::count(1..=512))]
    units: Vec<usize>,
    /// ResNet-18's layer for feature visualization.
    #[arg(long, default_value = "layer3")]
    layer: String,
    /// ResNet-18's feature-visualization image side.
    #[arg(long, default_value_t = 128, value_parser = super::count(16..=1024))]
    size: usize,
    /// Time only this part.
    #[arg(long, value_parser = ["search", "featvis"])]
    only: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let demo = unitscope::model::demo::model(&Device::Cpu)?;
    let resnet = Model::synthetic(Architecture::Resnet18, &Device::Cpu)?;
    if args.only.as_deref() != Some("featvis") {
        let scenes = demo_batches(&demo, args.inputs)?;
        search(args, &demo, "demo 64 px", "features.10", &scenes)?;
        let n = (args.inputs / 4).max(16);
        let photos: Vec<Tensor> = (0..n.div_ceil(16))
            .map(|b| Tensor::randn(0f32, 1.0, (16.min(n - b * 16), 3, 224, 224), &Device::Cpu))
            .collect::<candle_core::Result<_>>()?;
        search(args, &resnet, "ResNet-18 224 px", "layer4", &photos)?;
    }
    if args.only.as_deref() != Some("search") {
        for &units in &args.units {
            featvis_rate(args, &demo, "demo 64 px", "features.10", 64, units)?;
            featvis_rate(args, &resnet, "ResNet-18", &args.layer, args.size, units)?;
        }
    }
    Ok(())
}

/// The demo world's held-out scenes, preprocessed, in batches of 16.
fn demo_batches(model: &Model, n: usize) -> Result<Vec<Tensor>> {
    let samples: Vec<Tensor> = Source::Demo(n)
        .samples(model.input_spec(), &Device::Cpu)?
        .map(|s| Ok(s?.tensor))
        .collect::<Result<_>>()?;
    Ok(samples
        .chunks(16)
        .map(|c| Tensor::stack(c, 0))
        .collect::<candle_core::Result<_>>()?)
}

/// Searches every unit of `layer` over `batches`, then runs the same batches
/// forward only (logits, no graph): five rounds of each, alternating, best round
/// each (a round on the demo model is a tenth of a second, shorter than the
/// machine's slow spells).
fn search(args: &Args, model: &Model, name: &str, layer: &str, batches: &[Tensor]) -> Result<()> {
    let n: usize = batches
        .iter()
        .map(|b| b.dim(0))
        .sum::<candle_core::Result<_>>()?;
    let layers = [layer.to_string()];
    let search_all = || -> Result<()> {
        let mut search = Search::new(model, &layers, 8)?;
        for b in batches {
            search.add(b)?;
        }
        std::hint::black_box(search.finish()?);
        Ok(())
    };
    let forward_all = || -> Result<()> {
        for b in batches {
            std::hint::black_box(model.logits_with(b, &Probe::new())?);
        }
        Ok(())
    };
    let timed = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };
    search_all()?;
    forward_all()?;
    let (mut searching, mut forwarding) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        searching = searching.min(timed(&search_all)?);
        forwarding = forwarding.min(timed(&forward_all)?);
    }
    let (searched, forward) = (n as f64 / searching, n as f64 / forwarding);
    if args.json {
        outln!(
            "{}",
            json!({"bench": "search", "model": name, "layer": layer, "inputs": n,
                   "search_per_s": searched, "forward_per_s": forward})
        );
    } else {
        outln!(
            "dataset search, {name}, {layer}, {n} inputs in batches of 16: {searched:.1} images/s; \
             forward only {forward:.1} images/s ({:.2}x of it; goal >= 0.8x)",
            searched / forward
        );
    }
    Ok(())
}

/// Steps per second of a `units`-image optimization of `layer`'s first units at
/// `size` px: Fourier, decorrelated, Lucid's transforms (unscaled, as Lucent's).
fn featvis_rate(
    args: &Args,
    model: &Model,
    name: &str,
    layer: &str,
    size: usize,
    units: usize,
) -> Result<()> {
    let targets: Vec<Target> = (0..units)
        .map(|channel| {
            Target::Unit(UnitAddress {
                layer: layer.to_string(),
                channel,
                position: None,
            })
        })
        .collect();
    let settings = |steps| Settings {
        steps,
        size: Some((size, size)),
        transforms: Some(Transforms::standard()),
        ..Settings::new("channel".parse().expect("a valid objective"))
    };
    featvis::visualize(model, &targets, &settings(1), &mut |_, _| {})?;
    let start = Instant::now();
    let made = featvis::visualize(model, &targets, &settings(args.steps), &mut |_, _| {})?;
    let per_step = start.elapsed().as_secs_f64() / args.steps as f64;
    let mean_value = made.values.iter().map(|&v| v as f64).sum::<f64>() / units as f64;
    if args.json {
        outln!(
            "{}",
            json!({"bench": "featvis", "model": name, "layer": layer, "size": size, "units": units,
                   "steps": args.steps, "ms_per_step": per_step * 1e3, "mean_value": mean_value})
        );
    } else {
        outln!(
            "feature visualization, {name} {layer} at {size} px, {units} unit(s) at once: \
             {:.1} steps/s ({:.1} ms/step, {:.1} unit-steps/s)",
            1.0 / per_step,
            per_step * 1e3,
            units as f64 / per_step
        );
    }
    Ok(())
}
