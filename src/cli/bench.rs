//! `unitscope bench`: timings printed as medians and ratios, never asserted.

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use unitscope::data::InputSpec;
use unitscope::model::{ArchOptions, Architecture, BackwardRule, Model, Objective, Probe, Weights};

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Forward and forward + input gradient on ResNet-18 at 224 px.
    Engine(EngineArgs),
    /// Demo-world generation rate.
    World(WorldArgs),
}

#[derive(clap::Args)]
pub struct WorldArgs {
    /// Scenes to draw.
    #[arg(long, default_value_t = 5000)]
    count: u64,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batch: Vec<usize>,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Backward rule of the gradient pass.
    #[arg(long, value_enum, default_value_t = BackwardRule::Gradient)]
    rule: BackwardRule,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(bench: &Bench) -> Result<()> {
    match bench {
        Bench::Engine(args) => engine(args),
        Bench::World(args) => world(args),
    }
}

fn world(args: &WorldArgs) -> Result<()> {
    use unitscope::data::world::{Concept, World};
    let world = World::new(0);
    let start = Instant::now();
    for i in 0..args.count {
        std::hint::black_box(world.scene(i));
    }
    let render = start.elapsed();
    let start = Instant::now();
    for i in 0..args.count {
        let scene = world.scene(i);
        for c in Concept::all() {
            std::hint::black_box(scene.mask(c));
        }
    }
    let with_masks = start.elapsed();
    let rate = |d: Duration| args.count as f64 / d.as_secs_f64();
    println!("demo world, one thread, {} scenes of 64x64", args.count);
    println!("  images:                {:>8.0} scenes/s", rate(render));
    println!(
        "  images + all 25 masks: {:>8.0} scenes/s",
        rate(with_masks)
    );
    Ok(())
}

fn engine(args: &EngineArgs) -> Result<()> {
    let device = super::device()?;
    let model = Model::new(
        "resnet18".into(),
        Architecture::Resnet18,
        &ArchOptions::default(),
        &Weights::synthetic(&device),
        InputSpec::default(),
        unitscope::data::labels::numbered(1000),
    )?;
    if !args.json {
        println!(
            "ResNet-18, 224x224, {} threads, rule {}, median of {}",
            threads(),
            serde_json::to_value(args.rule)?.as_str().unwrap_or("?"),
            args.reps
        );
        println!(
            "{:>5}  {:>12}  {:>16}  {:>16}",
            "batch", "forward ms", "fwd+grad ms", "grad/forward"
        );
    }
    for &batch in &args.batch {
        let x = Tensor::randn(0f32, 1f32, (batch, 3, 224, 224), &device)?.to_dtype(DType::F32)?;
        let forward = median(args.reps, || {
            model.logits(&x)?;
            sync(&device)
        })?;
        let forward_grad = median(args.reps, || {
            let capture = model.forward(&x, &Probe::new().rule(args.rule))?;
            let grads = capture.backward(&capture.objective(&Objective::Logit(0))?)?;
            grads.input().sum_all()?.to_scalar::<f32>()?;
            sync(&device)
        })?;
        let (f, g) = (ms(forward), ms(forward_grad));
        if args.json {
            let line = serde_json::json!({
                "model": "resnet18", "batch": batch, "rule": args.rule,
                "forward_ms": f, "forward_grad_ms": g, "path": "candle",
            });
            println!("{line}");
        } else {
            println!("{batch:>5}  {f:>12.1}  {g:>16.1}  {:>16.2}", g / f);
        }
    }
    Ok(())
}

fn median(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut times = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f().map(|()| start.elapsed())
        })
        .collect::<Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sync(device: &Device) -> Result<()> {
    Ok(device.synchronize()?)
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
