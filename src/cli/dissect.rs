//! `unitscope dissect`: Network Dissection from the command line: each unit's
//! concept and IoU into `tally.csv` and `dissection.json`, per layer. The layers
//! not yet done under the same model, data and settings are dissected together
//! (one pair of passes over the images serves them all); each layer's files are
//! written whole, so Ctrl-C loses no finished layer and a rerun keeps them.
//! With `--shard I/N`, one shard's partial state instead (see
//! [`unitscope::dissect::shard`]), which `dissect merge` combines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use unitscope::data::concepts::WorldSet;
use unitscope::data::{Broden, ConceptSet};
use unitscope::dissect::shard::{self, Part, State};
use unitscope::dissect::{self, LayerDissection, Settings, report};
use unitscope::model::Model;

use super::job;

#[derive(Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Command {
    #[command(subcommand)]
    merge: Option<Merge>,
    #[command(flatten)]
    args: Args,
}

#[derive(Clone, clap::Subcommand)]
enum Merge {
    /// Combine shards' parts: round 1's into thresholds.json, round 2's into the
    /// dissection (tally.csv, dissection.json, dissect.json).
    Merge(MergeArgs),
}

#[derive(Clone, clap::Args)]
struct MergeArgs {
    /// Part files, or folders holding them.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// Where to write the merged result.
    #[arg(short, long)]
    out: PathBuf,
    /// Also draw each merged layer's report.html, from the run's model and data
    /// (the parts hold counts, not images): give the shards' --model and --dataset
    /// or --demo; they must be the ones the parts were made with.
    #[arg(long)]
    report: bool,
    /// With --report: the shards' model card (none: the demo model).
    #[arg(long, requires = "report")]
    model: Option<PathBuf>,
    /// With --report: the shards' Broden dataset.
    #[arg(long, requires = "report", conflicts_with = "demo")]
    dataset: Option<PathBuf>,
    /// With --report: the shards' demo scenes (or samples of --world's).
    #[arg(long, value_name = "N", requires = "report", value_parser = super::count(1..=1_000_000))]
    demo: Option<usize>,
    /// With --report: the shards' modality world.
    #[arg(
        long,
        value_name = "NAME",
        requires = "report",
        conflicts_with = "dataset"
    )]
    world: Option<String>,
}

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Layers to dissect, by name (`unitscope info` lists them); repeat or separate
    /// with commas.
    #[arg(
        long = "layer",
        value_name = "LAYER",
        required = true,
        value_delimiter = ','
    )]
    layers: Vec<String>,
    /// A dataset in the Broden layout (index.csv, category.csv, label.csv, c_*.csv,
    /// images/).
    #[arg(long, conflicts_with = "demo")]
    dataset: Option<PathBuf>,
    /// Held-out scenes of the demo world, with its concepts (or samples of
    /// --world's).
    #[arg(long, value_name = "N", default_value_t = dissect::DEMO_SCENES, value_parser = super::count(1..=1_000_000))]
    demo: usize,
    /// A modality plugin's world instead of the demo world (`audio`): its
    /// held-out samples with their concepts; the model defaults to the card the
    /// plugin ships.
    #[arg(long, value_name = "NAME", conflicts_with = "dataset")]
    world: Option<String>,
    /// The top quantile of each unit's activations that its mask keeps.
    #[arg(long, default_value_t = 0.005)]
    quantile: f64,
    /// The IoU from which a unit is a detector of its concept.
    #[arg(long, default_value_t = 0.04)]
    iou: f64,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Memory for a layer's exact thresholds, in MB (they keep its largest
    /// activations: about 1% of them at --quantile 0.005): past it (and in shards)
    /// its units' thresholds come from sketches.
    #[arg(long, value_name = "MB", default_value_t = 512, value_parser = super::count(0..=1 << 20))]
    max_exact_mb: usize,
    /// Dissect each layer's units rotated by a random orthogonal matrix drawn from
    /// SEED (and rotated back before the next layer, so predictions stay the same).
    #[arg(long, value_name = "SEED")]
    rotate: Option<u64>,
    /// Dissect only the I-th of N equal image ranges (from 0) and write its
    /// partial state into --out, for `dissect merge`: round 1 without
    /// --thresholds, round 2 with the merged round 1's.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Round 2 of a sharded run: the thresholds.json that merging round 1 wrote.
    #[arg(long, requires = "shard")]
    thresholds: Option<PathBuf>,
    /// Where to write `dissect.json` and one folder per layer (or a shard's parts).
    #[arg(short, long, default_value = "dissection")]
    out: PathBuf,
}

fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let parsed = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => Err(format!("`{text}` is not a shard I/N with 0 <= I < N")),
    }
}

pub fn run(command: &Command) -> Result<()> {
    match &command.merge {
        Some(Merge::Merge(args)) => merge(args),
        None => {
            // A layer named twice is dissected once.
            let mut args = command.args.clone();
            let mut seen = std::collections::HashSet::new();
            args.layers.retain(|layer| seen.insert(layer.clone()));
            dissect_layers(&args)
        }
    }
}

/// The model (`card`; else the card `world`'s plugin ships; else the demo model)
/// and what it is dissected on: the Broden `dataset`, or `count` held-out samples
/// of `world` (a modality plugin's) or of the demo world.
fn model_and_set(
    card: Option<&Path>,
    dataset: Option<&Path>,
    world: Option<&str>,
    count: usize,
) -> Result<(Model, ConceptSet)> {
    let Some(name) = world else {
        let set = match dataset {
            Some(dir) => ConceptSet::Broden(Broden::open(dir)?),
            None => ConceptSet::Demo(count),
        };
        return Ok((super::load_model(card)?, set));
    };
    let (world, model) = super::world_and_model(name, card)?;
    let set = ConceptSet::World(WorldSet {
        name: name.to_owned(),
        world,
        count,
        shape: model.input_spec().shape(),
    });
    Ok((model, set))
}

fn dissect_layers(args: &Args) -> Result<()> {
    ensure!(
        args.quantile > 0.0 && args.quantile < 1.0,
        "--quantile {} must lie between 0 and 1",
        args.quantile
    );
    ensure!(
        (0.0..=1.0).contains(&args.iou),
        "--iou {} must lie between 0 and 1",
        args.iou
    );
    let (model, set) = model_and_set(
        args.model.as_deref(),
        args.dataset.as_deref(),
        args.world.as_deref(),
        args.demo,
    )?;
    let settings = Settings {
        quantile: args.quantile,
        iou_threshold: args.iou,
        batch: args.batch,
        exact_budget: args.max_exact_mb << 20,
        rotate: args.rotate,
    };
    if let Some(shard) = args.shard {
        return dissect_shard(args, model, set, settings, shard);
    }
    let total = 2 * set.len() as u64;
    let args = args.clone();
    job::run("dissect", total, move |cx, out| {
        let vocabulary = set.vocabulary();
        let keys = (args.layers.iter())
            .map(|layer| report::key(&model, &set, &settings, layer))
            .collect::<Result<Vec<_>>>()?;
        let mut values: Vec<Option<Value>> = (args.layers.iter().zip(&keys))
            .map(|(layer, key)| report::finished(&args.out, layer, key))
            .collect();
        let todo: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_none()).collect();
        for (layer, _) in args.layers.iter().zip(&values).filter(|(_, v)| v.is_some()) {
            out.line(&format!("{layer}: already dissected, kept"))?;
        }
        if !todo.is_empty() {
            let layers: Vec<String> = todo.iter().map(|&i| args.layers[i].clone()).collect();
            let names = layers.join(", ");
            let mut progress = |done, total| cx.progress(done, total, names.clone());
            let dissected = dissect::dissect(&model, &set, &layers, &settings, &mut progress)?;
            for (&i, dissected) in todo.iter().zip(&dissected) {
                let value = report::write(&args.out, dissected, &vocabulary, &settings, &keys[i])?;
                let page = dissect::html::page(&model, &set, dissected, &vocabulary, &settings)?;
                let path = report::layer_dir(&args.out, &dissected.layer).join("report.html");
                unitscope::atomic::write(&path, page.as_bytes())?;
                values[i] = Some(value);
            }
        }
        let layers: Vec<Value> = values.into_iter().flatten().collect();
        for value in &layers {
            out.line(&headline(value))?;
        }
        let path = write_index(&args.out, model.name(), &set.identity(), set.len(), &layers)?;
        out.line(&format!("index: {}", path.display()))
    })
}

/// Writes `dissect.json`, the index of the dissected `layers`.
fn write_index(
    out: &Path,
    model: &str,
    data: &str,
    images: usize,
    layers: &[Value],
) -> Result<PathBuf> {
    let index = json!({
        "model": model,
        "data": data,
        "images": images,
        "layers": layers.iter().map(|l| json!({
            "layer": l["layer"],
            "units": l["units"],
            "detectors": l["detectors"],
            "concepts": l["concepts"],
            "detectors_per_category": l["detectors_per_category"],
            "tally": format!("{}/tally.csv", unitscope::render::file_part(l["layer"].as_str().unwrap_or(""))),
        })).collect::<Vec<_>>(),
    });
    let path = out.join("dissect.json");
    unitscope::atomic::write(&path, serde_json::to_string_pretty(&index)?.as_bytes())?;
    Ok(path)
}

/// One shard: round 1 (sketches) or, given merged thresholds, round 2 (tallies);
/// one part file per layer in `--out`.
fn dissect_shard(
    args: &Args,
    model: Model,
    set: ConceptSet,
    settings: Settings,
    shard: (usize, usize),
) -> Result<()> {
    let images = shard::shard_range(shard, set.len())?;
    let thresholds = match &args.thresholds {
        Some(path) => Some(read_thresholds(path)?),
        None => None,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    let run = shard::Run {
        model: model.name().to_string(),
        data: set.identity(),
        images: set.len(),
        quantile: settings.quantile,
        iou_threshold: settings.iou_threshold,
        rotate: settings.rotate,
        vocabulary: set.vocabulary(),
    };
    let total = images.len() as u64;
    let args = args.clone();
    job::run("dissect shard", total, move |cx, out| {
        let names = args.layers.join(", ");
        let mut progress = |done, total| cx.progress(done, total, names.clone());
        let keys = (args.layers.iter())
            .map(|layer| report::key(&model, &set, &settings, layer))
            .collect::<Result<Vec<_>>>()?;
        let states: Vec<State> = match &thresholds {
            None => dissect::sketch_pass(
                &model,
                &set,
                images.clone(),
                &args.layers,
                &settings,
                &mut progress,
            )?
            .into_iter()
            .map(State::Sketches)
            .collect(),
            Some(merged) => {
                let thresholds = (args.layers.iter().zip(&keys))
                    .map(|(layer, key)| match merged.get(layer).filter(|(k, _)| k == key) {
                        Some((_, t)) => Ok(t.clone()),
                        None => bail!(
                            "the thresholds file has no thresholds of `{layer}` for this model, data and settings; \
                             merge round 1 of this run first"
                        ),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let tallies = dissect::tally_pass(
                    &model,
                    &set,
                    images.clone(),
                    &args.layers,
                    &thresholds,
                    &settings,
                    &mut progress,
                )?;
                (thresholds.into_iter().zip(tallies))
                    .map(|(t, tally)| State::Tally(t, tally))
                    .collect()
            }
        };
        for ((layer, key), state) in args.layers.iter().zip(&keys).zip(states) {
            let part = Part::new((key, &run), layer, shard, images.clone(), state);
            let path = args.out.join(part.file_name());
            unitscope::atomic::write(&path, serde_json::to_string(&part)?.as_bytes())?;
            out.line(&format!(
                "{layer}: shard {}/{} (images {}..{}) -> {}",
                shard.0,
                shard.1,
                images.start,
                images.end,
                path.display()
            ))?;
        }
        Ok(())
    })
}

/// Per layer, the key and thresholds in a `thresholds.json`.
fn read_thresholds(path: &Path) -> Result<std::collections::BTreeMap<String, (String, Vec<f32>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the thresholds `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is not a thresholds.json written by `dissect merge`",
            path.display()
        )
    })
}

/// `dissect merge`: the parts grouped by layer and round; round 1 gives
/// `thresholds.json`, round 2 the dissection.
fn merge(args: &MergeArgs) -> Result<()> {
    let mut files = Vec::new();
    for path in &args.parts {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.ends_with(".json")
                        && (name.contains(".sketch.") || name.contains(".tally."))
                })
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    ensure!(
        !files.is_empty(),
        "no part files (LAYER.sketch.I-of-N.json, LAYER.tally.I-of-N.json) in the given paths"
    );
    let parts = files
        .iter()
        .map(|p| Part::read(p))
        .collect::<Result<Vec<_>>>()?;
    let mut by_layer: std::collections::BTreeMap<(String, bool), Vec<Part>> = Default::default();
    for part in parts {
        by_layer
            .entry((part.layer.clone(), part.state.is_tally()))
            .or_default()
            .push(part);
    }
    let drawn = match args.report {
        true => Some(model_and_set(
            args.model.as_deref(),
            args.dataset.as_deref(),
            args.world.as_deref(),
            args.demo.unwrap_or(dissect::DEMO_SCENES),
        )?),
        false => None,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    let mut thresholds = std::collections::BTreeMap::new();
    let mut layers = Vec::new();
    let mut run = None;
    for ((layer, _), parts) in &by_layer {
        let (key, settings) = (&parts[0].key, parts[0].run.settings());
        match shard::merge(parts).with_context(|| format!("the parts of `{layer}`"))? {
            State::Sketches(sketches) => {
                let t = dissect::sketch_thresholds(&sketches, settings.quantile);
                thresholds.insert(layer.clone(), (key.clone(), t));
                super::outln!(
                    "{}",
                    format!("{layer}: thresholds from {} shards", parts.len())
                );
            }
            State::Tally(t, tally) => {
                let vocabulary = &parts[0].run.vocabulary;
                tally
                    .check(t.len(), vocabulary, parts[0].run.images)
                    .with_context(|| format!("the parts of `{layer}`"))?;
                let thresholds = dissect::Finished {
                    thresholds: t,
                    exact: false,
                    sketch_error: None,
                };
                let dissected =
                    LayerDissection::new(layer, tally, thresholds, vocabulary, &settings);
                let value = report::write(&args.out, &dissected, vocabulary, &settings, key)?;
                if let Some((model, set)) = &drawn {
                    ensure!(
                        report::key(model, set, &settings, layer)? == *key,
                        "--report: the parts of `{layer}` were made with another model, data or \
                         settings than --model/--dataset/--demo give (they name {} on {})",
                        parts[0].run.model,
                        parts[0].run.data
                    );
                    let page = dissect::html::page(model, set, &dissected, vocabulary, &settings)?;
                    let path = report::layer_dir(&args.out, layer).join("report.html");
                    unitscope::atomic::write(&path, page.as_bytes())?;
                }
                super::outln!("{}", headline(&value));
                layers.push(value);
                run = Some(parts[0].run.clone());
            }
        }
    }
    if !thresholds.is_empty() {
        let path = args.out.join("thresholds.json");
        unitscope::atomic::write(&path, serde_json::to_string(&thresholds)?.as_bytes())?;
        super::outln!(
            "{}",
            format!(
                "thresholds: {} (round 2: each shard again with --thresholds {})",
                path.display(),
                path.display()
            )
        );
    }
    if let Some(run) = run {
        let path = write_index(&args.out, &run.model, &run.data, run.images, &layers)?;
        super::outln!("{}", format!("index: {}", path.display()));
    }
    Ok(())
}

/// "layer: N/M units covering K concepts with IoU >= t", and the detectors per
/// category.
fn headline(layer: &Value) -> String {
    let per_category = layer["detectors_per_category"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let thresholds = match (
        layer["thresholds_exact"].as_bool(),
        layer["sketch_error"].as_f64(),
    ) {
        (Some(true), Some(e)) => {
            format!("exact thresholds; the sketch was within {:.3}%", e * 100.0)
        }
        _ => "thresholds from the sketch".to_string(),
    };
    format!(
        "{}: {}/{} units covering {} concepts with IoU >= {} ({per_category}; {thresholds})",
        layer["layer"].as_str().unwrap_or("?"),
        layer["detectors"],
        layer["units"],
        layer["concepts"],
        layer["iou_threshold"],
    )
}
