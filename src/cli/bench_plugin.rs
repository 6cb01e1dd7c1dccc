//! `unitscope bench plugin`: what the plugin ABI costs. The RISE plugin against
//! RISE written directly on the engine (`unitscope::plugin::rise`), the same masks
//! on the same input, timed in alternation so that drift of a shared machine falls
//! on both; and how far apart their maps are. Timings are printed, never asserted.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use unitscope::attribution::descriptor::{Params, Value};
use unitscope::attribution::{Attribution, Target, registry};
use unitscope::data::Source;
use unitscope::model::{Architecture, Model};
use unitscope::plugin::rise::Rise;

use super::outln;

#[derive(clap::Args)]
pub struct Args {
    /// RISE's masks on the demo model (the plugin's default is 4000).
    #[arg(long, default_value_t = 4000, value_parser = super::count(1..=100_000))]
    masks: usize,
    /// RISE's masks on ResNet-18 at 224 px (each a forward pass: ~20 ms on a CPU).
    #[arg(long, default_value_t = 256, value_parser = super::count(1..=100_000))]
    resnet_masks: usize,
    /// Masked inputs per forward pass.
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=256))]
    batch_size: usize,
    /// Timed repetitions of each, alternating (after one warm-up of each).
    #[arg(long, default_value_t = 5, value_parser = super::count(1..=1000))]
    reps: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        registry::is_plugin("rise"),
        "the RISE plugin is not loaded: `cargo build --release` builds it beside the binary, \
         or give --plugin PATH (`unitscope plugins` shows what was found)"
    );
    let demo = unitscope::model::demo::model(&Device::Cpu)?;
    let scene = Source::Demo(1)
        .samples(demo.input_spec(), &Device::Cpu)?
        .next()
        .expect("one demo scene")?
        .tensor
        .unsqueeze(0)?;
    compare(args, &demo, "demo 64 px", &scene, args.masks)?;
    let resnet = Model::synthetic(Architecture::Resnet18, &Device::Cpu)?;
    let photo = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu)?;
    compare(args, &resnet, "ResNet-18 224 px", &photo, args.resnet_masks)
}

/// Times the plugin and the direct RISE on `input` for its predicted class.
fn compare(args: &Args, model: &Model, name: &str, input: &Tensor, masks: usize) -> Result<()> {
    let targets = [Target::Class(
        unitscope::attribution::predicted(model, input)?[0],
    )];
    let mut params = Params::new();
    params.set("masks", Value::Integer(masks as u64));
    params.set("batch-size", Value::Integer(args.batch_size as u64));
    let plugin = registry::build("rise", &params)?;
    let direct = Rise {
        masks,
        cells: 8,
        keep: 0.5,
        seed: 0,
        batch: args.batch_size,
    };
    let run_plugin = || -> Result<Tensor> {
        match plugin.attribute(model, input, &targets)? {
            Attribution::Input(map) => Ok(map),
            Attribution::Layers(_) => anyhow::bail!("RISE returned layer maps"),
        }
    };
    let run_direct = || direct.attribute(model, input, &targets);
    let (a, b) = (run_plugin()?, run_direct()?);
    let scale = b
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    let error = (&a - &b)?
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        / scale;
    let (mut plugin_times, mut direct_times) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        plugin_times.push(time(|| run_plugin().map(drop))?);
        direct_times.push(time(|| run_direct().map(drop))?);
    }
    let (p, d) = (median(plugin_times), median(direct_times));
    let overhead = p / d - 1.0;
    if args.json {
        outln!(
            "{}",
            json!({"model": name, "masks": masks, "batch": args.batch_size, "plugin_ms": p,
                   "direct_ms": d, "overhead": overhead, "max_rel_diff": error})
        );
    } else {
        outln!(
            "{name}: RISE N={masks}, batch {}: plugin {p:.1} ms, direct {d:.1} ms, ABI overhead \
             {:+.1}% (goal < 5%); maps differ by {error:.1e} (relative)",
            args.batch_size,
            overhead * 100.0
        );
    }
    Ok(())
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(ms(start.elapsed()))
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
