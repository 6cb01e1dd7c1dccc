//! `unitscope bench`: timings printed as medians and ratios, never asserted.

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use unitscope::jobs;
use unitscope::model::{Architecture, BackwardRule, EnginePath, Model, Objective, Probe};

use super::outln;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Forward and forward + input gradient at 224 px, per model and batch size.
    Engine(EngineArgs),
    /// Attribution methods on ResNet-18 at 224 px: median ms and model passes.
    Attribution(AttributionArgs),
    /// Demo-world generation rate.
    World(WorldArgs),
    /// The inspector's first frame, key-to-frame time under load, method key to heatmap.
    Tui(crate::tui::bench::Args),
    /// Dataset search against the forward-only rate; feature-visualization steps/s.
    Units(super::bench_units::Args),
    /// Network Dissection against the forward passes it needs; peak memory by dataset size.
    Dissect(super::bench_dissect::Args),
    /// The plugin ABI's cost: the RISE plugin against RISE written on the engine.
    Plugin(super::bench_plugin::Args),
}

#[derive(clap::Args)]
pub struct AttributionArgs {
    /// Methods to time (`unitscope explain --list-methods`); CAMs on `layer4`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "saliency,gradient-x-input,deconvnet,guided-backprop,grad-cam,grad-cam++,layer-cam,guided-grad-cam,smoothgrad,integrated-gradients,occlusion"
    )]
    methods: Vec<String>,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,16", value_parser = super::count(1..=256))]
    batch: Vec<usize>,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 3, value_parser = super::count(1..=1000))]
    reps: usize,
    /// SmoothGrad's noisy copies and integrated gradients' steps (default: each
    /// method's own, 50).
    #[arg(long, value_parser = super::count(1..=10_000))]
    samples: Option<usize>,
    /// LIME's and KernelSHAP's coalitions per input (default: the methods' own,
    /// 1000).
    #[arg(long, value_parser = super::count(1..=100_000))]
    perturbations: Option<usize>,
    /// Inputs per pass for SmoothGrad, integrated gradients, occlusion, LIME and
    /// KernelSHAP (default: the methods' own, 16).
    #[arg(long, value_parser = super::count(1..=256))]
    batch_size: Option<usize>,
    /// Occlusion's window and stride in pixels (default: occlusion's own, as
    /// `explain` uses them).
    #[arg(long, value_name = "WINDOW,STRIDE", value_delimiter = ',', value_parser = super::count(1..=224))]
    occlusion: Option<Vec<usize>>,
    /// One JSON object per line: method, model, batch, ms, passes.
    #[arg(long)]
    json: bool,
    /// The network, with closed-form weights (resnet18, resnet50, ...); CAMs read
    /// its `layer4`.
    #[arg(long, default_value = "resnet18")]
    model: String,
}

#[derive(clap::Args)]
pub struct WorldArgs {
    /// Scenes to draw.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: u64,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Models to time (synthetic weights, 1000 classes, 224 px).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resnet18,vgg11,efficientnet_lite0"
    )]
    models: Vec<String>,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,16", value_parser = super::count(1..=256))]
    batch: Vec<usize>,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 5, value_parser = super::count(1..=1000))]
    reps: usize,
    /// Backward rule of the gradient pass.
    #[arg(long, value_parser = super::choice::<BackwardRule>(), default_value_t = BackwardRule::Gradient)]
    rule: BackwardRule,
    /// Also time the reference path (Candle's own convolution backward, unfused batch
    /// norm) and print the fast path's ratio to it.
    #[arg(long)]
    reference_path: bool,
    /// One JSON object per line: model, batch, rule, path, forward_ms, forward_grad_ms,
    /// floor_ms, peak_rss_mb.
    #[arg(long)]
    json: bool,
}

/// Multiply-accumulates of one 224 px forward pass (torchvision's model docs list
/// 1.81 and 7.61 GFLOPS, counted as MACs; EfficientNet-Lite0 0.39 G, per the
/// EfficientNet-Lite release).
fn forward_macs(model: &str) -> Option<f64> {
    match model {
        "resnet18" => Some(1.81e9),
        "vgg11" => Some(7.61e9),
        "efficientnet_lite0" => Some(0.39e9),
        _ => None,
    }
}

/// AVX2 FMA peak of one core of this machine: 2.45 GHz x 32 FLOP/cycle.
const PEAK_FLOPS_PER_CORE: f64 = 2.45e9 * 32.0;

pub fn run(bench: &Bench) -> Result<()> {
    // Timed where the commands run their work: on the pool, as a command's job does
    // (`jobs::on_pool`). The inspector's jobs have their own threads, and its bench
    // drives it as a user does.
    match bench {
        Bench::Engine(args) => jobs::on_pool(|| engine(args)),
        Bench::Attribution(args) => jobs::on_pool(|| attribution(args)),
        Bench::World(args) => world(args),
        Bench::Tui(args) => crate::tui::bench::run(args),
        Bench::Units(args) => jobs::on_pool(|| super::bench_units::run(args)),
        Bench::Dissect(args) => jobs::on_pool(|| super::bench_dissect::run(args)),
        Bench::Plugin(args) => jobs::on_pool(|| super::bench_plugin::run(args)),
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
    outln!("demo world, one thread, {} scenes of 64x64", args.count);
    outln!("  images:                {:>8.0} scenes/s", rate(render));
    outln!(
        "  images + all 25 masks: {:>8.0} scenes/s",
        rate(with_masks)
    );
    Ok(())
}

fn engine(args: &EngineArgs) -> Result<()> {
    let device = super::device()?;
    let rule = spelling(args.rule)?;
    let threads = threads();
    let archs = args
        .models
        .iter()
        .map(|name| Ok((name, architecture(name)?)))
        .collect::<Result<Vec<_>>>()?;
    if !args.json {
        outln!(
            "224x224, {}, rule {rule}, median of {}; floor = MACs x 2 / AVX2 peak",
            running_on(&device),
            args.reps
        );
        outln!(
            "{:<19} {:>5}  {:<9}  {:>10}  {:>12}  {:>9}  {:>12}  {:>8}",
            "model",
            "batch",
            "path",
            "forward ms",
            "fwd+grad ms",
            "grad/fwd",
            "floor ratio",
            "peak MB"
        );
    }
    let paths: &[EnginePath] = if args.reference_path {
        &[EnginePath::Fast, EnginePath::Reference]
    } else {
        &[EnginePath::Fast]
    };
    for (name, arch) in &archs {
        let model = Model::synthetic(*arch, &device)?;
        for &batch in &args.batch {
            let x =
                Tensor::randn(0f32, 1f32, (batch, 3, 224, 224), &device)?.to_dtype(DType::F32)?;
            let mut fast = None;
            for &path in paths {
                let probe = Probe::new().rule(args.rule).path(path);
                let forward = median(args.reps, || {
                    model.logits_with(&x, &probe)?;
                    sync(&device)
                })?;
                reset_peak_rss();
                let forward_grad = median(args.reps, || {
                    let capture = model.forward(&x, &probe)?;
                    let grads = capture.backward(&capture.objective(&Objective::Logit(0))?)?;
                    grads.input()?.sum_all()?.to_scalar::<f32>()?;
                    sync(&device)
                })?;
                let peak = peak_rss_mb();
                let (f, g) = (ms(forward), ms(forward_grad));
                // Forward 2 FLOP per MAC; forward + input gradient about twice that.
                // The floor is the CPU's.
                let floor = forward_macs(name)
                    .filter(|_| device.is_cpu())
                    .map(|m| 2.0 * m * batch as f64 / (PEAK_FLOPS_PER_CORE * threads as f64) * 1e3);
                let path_name = spelling(path)?;
                if args.json {
                    let line = serde_json::json!({
                        "model": name, "batch": batch, "rule": rule, "path": path_name,
                        "forward_ms": f, "forward_grad_ms": g, "floor_ms": floor, "peak_rss_mb": peak,
                    });
                    outln!("{line}");
                } else {
                    let floor = floor.map_or("-".into(), |fl| {
                        format!("{:.1}/{:.1}", f / fl, g / (2.0 * fl))
                    });
                    let peak = peak.map_or("-".into(), |p| format!("{p:.0}"));
                    outln!(
                        "{name:<19} {batch:>5}  {path_name:<9}  {f:>10.1}  {g:>12.1}  {:>9.2}  {floor:>12}  {peak:>8}",
                        g / f
                    );
                }
                match fast {
                    None => fast = Some((f, g)),
                    Some((ff, fg)) if !args.json => {
                        outln!(
                            "{:<19} {:>5}  fast/reference: forward {:.2}, fwd+grad {:.2}",
                            "",
                            "",
                            ff / f,
                            fg / g
                        )
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

fn attribution(args: &AttributionArgs) -> Result<()> {
    use unitscope::attribution::descriptor::Value;
    use unitscope::attribution::{Params, Target, registry};
    let device = super::device()?;
    let model = Model::synthetic(architecture(&args.model)?, &device)?;
    // Only what was given is set: every other parameter is at its method's default,
    // the one `explain` uses.
    let mut options = Params::new();
    options.set("layer", Value::Layers(vec!["layer4".into()]));
    let occlusion = args.occlusion.as_deref().unwrap_or_default();
    anyhow::ensure!(
        args.occlusion.is_none() || occlusion.len() == 2,
        "--occlusion takes WINDOW,STRIDE"
    );
    let given = [
        ("samples", args.samples),
        ("steps", args.samples),
        ("perturbations", args.perturbations),
        ("window", occlusion.first().copied()),
        ("stride", occlusion.get(1).copied()),
        ("batch-size", args.batch_size),
    ];
    for (name, value) in given {
        if let Some(value) = value {
            options.set(name, Value::Integer(value as u64));
        }
    }
    if !args.json {
        outln!(
            "{}, 224x224, {}, median of {}; passes per image (forward+backward / forward only)",
            args.model,
            running_on(&device),
            args.reps
        );
        outln!(
            "{:<44} {:>5}  {:>10}  {:>10}  {:>8}",
            "method",
            "batch",
            "ms",
            "ms/image",
            "passes"
        );
    }
    for name in &args.methods {
        let method = registry::build(name, &options)?;
        let passes = method.passes((224, 224));
        for &batch in &args.batch {
            let x = Tensor::randn(0f32, 1f32, (batch, 3, 224, 224), &device)?;
            let targets = vec![Target::Class(0); batch];
            let ms = ms(median(args.reps, || {
                method.attribute(&model, &x, &targets)?;
                sync(&device)
            })?);
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "method": name, "name": method.name(), "model": args.model,
                        "batch": batch, "ms": ms, "passes": passes,
                    })
                );
            } else {
                outln!(
                    "{:<44} {:>5}  {:>10.1}  {:>10.1}  {:>3} / {:<3}",
                    method.name(),
                    batch,
                    ms,
                    ms / batch as f64,
                    passes.backward,
                    passes.forward
                );
            }
        }
    }
    Ok(())
}

/// The architecture `name` spells (its serde name, as cards write it).
fn architecture(name: &str) -> Result<Architecture> {
    serde_json::from_value(serde_json::Value::String(name.into())).map_err(|_| {
        anyhow::anyhow!(
            "unknown model `{name}` (try resnet18, resnet50, vgg11, efficientnet_lite0)"
        )
    })
}

/// Where a bench runs, for its heading: the CPU's threads, or the GPU's name.
fn running_on(device: &Device) -> String {
    match device.is_cpu() {
        true => format!("{} threads", threads()),
        false => unitscope::model::device::describe(device),
    }
}

/// How a value is spelt on the command line and in JSON (its serde name).
fn spelling(value: impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_value(value)?
        .as_str()
        .unwrap_or("?")
        .to_owned())
}

/// Resets the kernel's peak-RSS counter (Linux), so the next reading is this
/// measurement's own peak.
pub(super) fn reset_peak_rss() {
    super::allocator::release_freed_blocks();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, in MB (Linux; `None` elsewhere).
pub(super) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
