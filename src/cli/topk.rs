//! `unitscope topk`: dataset search from the command line. For each unit of the
//! chosen layers, its k strongest inputs as receptive-field crops and as whole
//! images under the unit's upsampled activation, and a JSON index of it all.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use unitscope::attribution::Attribution;
use unitscope::data::{Entry, Source, text};
use unitscope::jobs;
use unitscope::model::Model;
use unitscope::render::html::{Painted, painted_page};
use unitscope::render::{self, Backdrop, Style};
use unitscope::units::{self, Cache, LayerStats};

use super::job::{self, Printer};

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Layers to search, by name (`unitscope info` lists them); repeat or separate
    /// with commas. One pass searches them all.
    #[arg(
        long = "layer",
        value_name = "LAYER",
        required = true,
        value_delimiter = ','
    )]
    layers: Vec<String>,
    /// Units to write, e.g. `0-7,12` (default: every unit of each layer).
    #[arg(long, value_parser = super::Units::parse)]
    units: Option<super::Units>,
    /// Strongest inputs kept per unit.
    #[arg(long, default_value_t = 8, value_parser = super::count(1..=256))]
    k: usize,
    /// A folder of PNG/JPEG images (and files modality plugins open) to search.
    #[arg(long, conflicts_with = "demo")]
    images: Option<PathBuf>,
    /// Held-out scenes of the demo world to search.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = super::count(1..=1_000_000))]
    demo: usize,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Search again even if the cache ($XDG_CACHE_HOME/unitscope/search) has it.
    #[arg(long)]
    no_cache: bool,
    /// Where to write `topk.json` and one folder per layer.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let source = match &args.images {
        Some(folder) => Source::Folder(folder.clone()),
        None => Source::Demo(args.demo),
    };
    let model = super::model_for(args.model.as_deref(), &source)?;
    let entries = source.entries()?;
    ensure!(!entries.is_empty(), "no inputs to search");
    if super::files_on_demo_model(args.model.as_deref(), &source) {
        super::note_demo_model(model.labels());
    }
    let args = args.clone();
    job::run("topk", entries.len() as u64, move |cx, out| {
        topk(&args, &model, &entries, (cx, out))
    })
}

fn topk(
    args: &Args,
    model: &Model,
    entries: &[Entry],
    (cx, out): (&jobs::Context, &Printer),
) -> Result<()> {
    // Units are checked before the search, which may take long.
    let mut chosen = Vec::new();
    for name in &args.layers {
        let layers = model.layers()?;
        let Some(info) = layers.iter().find(|l| &l.name == name) else {
            bail!("the model has no layer `{name}`; `unitscope info` lists its layers");
        };
        chosen.push(match &args.units {
            Some(units) => units.of(name, info.units)?,
            None => (0..info.units).collect(),
        });
    }
    let cache = if args.no_cache {
        None
    } else {
        Cache::at_default()
    };
    let mut progress = |done, total| cx.progress(done, total, "searching");
    let searched = units::search_entries(
        model,
        entries,
        &args.layers,
        args.k,
        cache.as_ref(),
        args.batch,
        &mut progress,
    )?;
    for note in &searched.notes {
        out.line(&format!("note: {note}"))?;
    }
    let mut layers = Vec::new();
    for ((stats, cached), units) in searched.stats.iter().zip(&searched.cached).zip(chosen) {
        let dir = args.out.join(render::file_part(&stats.layer));
        cx.progress(0, units.len() as u64, format!("writing {}", stats.layer));
        layers.push(write_layer(
            model,
            entries,
            stats,
            &units,
            &dir,
            (cx, &args.out),
        )?);
        out.line(&format!(
            "{}: {} units over {} inputs ({}) -> {}",
            stats.layer,
            units.len(),
            stats.inputs,
            if *cached {
                "from the cache"
            } else {
                "searched"
            },
            dir.display()
        ))?;
    }
    let index = json!({
        "model": model.name(),
        "inputs": entries.len(),
        "k": args.k,
        "layers": layers,
    });
    let path = args.out.join("topk.json");
    unitscope::atomic::write(&path, serde_json::to_string_pretty(&index)?.as_bytes())?;
    out.line(&format!("index: {}", path.display()))
}

/// Characters shown of a snippet: those up to its peak.
const SNIPPET: usize = 40;

/// The text up to and including position `peak`, its last [`SNIPPET`] characters.
fn snippet(chars: &[Option<char>], peak: usize) -> String {
    let end = (peak + 1).min(chars.len());
    chars[end.saturating_sub(SNIPPET)..end]
        .iter()
        .flatten()
        .collect()
}

/// Writes the crops and masked images of `units` of one layer into `dir`; returns
/// the layer's part of the index, with paths relative to `root`.
fn write_layer(
    model: &Model,
    entries: &[Entry],
    stats: &LayerStats,
    units: &[usize],
    dir: &Path,
    (cx, root): (&jobs::Context, &Path),
) -> Result<Value> {
    let spec = model.input_spec();
    let (h, w) = stats.size;
    let [rows, columns] = spec.size;
    // A text model's layer at the input's steps: each input's characters, painted
    // by the unit on a page.
    let over_text = model.architecture().is_sequence() && (h, w) == (rows, columns);
    let mut painted = Vec::new();
    let mut written = Vec::new();
    for (done, &unit) in units.iter().enumerate() {
        cx.checkpoint()?;
        cx.progress(done as u64, units.len() as u64, format!("unit {unit}"));
        let unit_dir = dir.join(format!("unit{unit:04}"));
        std::fs::create_dir_all(&unit_dir)
            .with_context(|| format!("cannot create `{}`", unit_dir.display()))?;
        let s = &stats.units[unit];
        let mut top = Vec::new();
        for (rank, found) in s.top.iter().enumerate() {
            let entry = &entries[found.input];
            let sample = entry.load(spec, model.device())?;
            let original = sample.original()?;
            let on = Backdrop::of(&sample, &original, spec);
            let stem = format!("{:02}_{}", rank + 1, render::file_part(&entry.name));
            let crop_path = unit_dir.join(format!("{stem}_crop.png"));
            render::save_png(&stats.crop(found, &original, on.window, spec), &crop_path)?;
            // The unit's map over the whole image, as Grad-CAM's over its input.
            let map = Tensor::from_vec(found.map.clone(), (1, h, w), &Device::Cpu)?;
            let maps = Attribution::Layers(vec![(stats.layer.clone(), map)]);
            let masked = render::framed(&sample, render::draw_on(&maps, on, Style::default())?);
            let mask_path = unit_dir.join(format!("{stem}_activation.png"));
            render::save_png(&masked, &mask_path)?;
            let relative = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
            let snippet = match over_text {
                true => {
                    let chars = text::characters(model.labels(), &sample.tensor)?;
                    let snippet = snippet(&chars, found.position.1);
                    let caption = format!(
                        "{}:{unit} #{} on {}, peak {:.3}",
                        stats.layer,
                        rank + 1,
                        entry.name,
                        found.peak
                    );
                    painted.push((unit, caption, chars, found.map.clone()));
                    Some(snippet)
                }
                false => None,
            };
            top.push(json!({
                "snippet": snippet,
                "rank": rank + 1,
                "input": entry.name,
                "peak": found.peak,
                "position": [found.position.0, found.position.1],
                "window": stats.window(found, (rows, columns)),
                "crop": relative(&crop_path),
                "activation": relative(&mask_path),
            }));
        }
        let (counts, (low, high)) = s.peaks.bins(16);
        written.push(json!({
            "unit": unit,
            "mean": s.mean,
            "max": s.max,
            "peaks_histogram": {"counts": counts, "low": low, "high": high},
            "top": top,
        }));
    }
    let page = dir.join("snippets.html");
    if over_text {
        // One scale per unit, its largest value over its inputs, so that they compare.
        let scale = |unit: usize| {
            let maps = painted.iter().filter(|p| p.0 == unit);
            maps.flat_map(|p| p.3.iter().map(|v| v.abs()))
                .fold(0f32, f32::max)
        };
        let blocks: Vec<Painted> = painted
            .iter()
            .map(|(unit, caption, chars, values)| Painted {
                caption: caption.clone(),
                chars,
                values,
                scale: scale(*unit),
            })
            .collect();
        let note = "Each unit's strongest inputs, each character's background the unit's value \
                    after reading it (one scale per unit: its largest).";
        let html = painted_page(
            &format!("{} · {}", model.name(), stats.layer),
            note,
            &blocks,
        );
        unitscope::atomic::write(&page, html.as_bytes())?;
    }
    Ok(json!({
        "snippets": over_text.then(|| page.strip_prefix(root).unwrap_or(&page).display().to_string()),
        "layer": stats.layer,
        "size": [h, w],
        "receptive_field": stats.field,
        "inputs": stats.inputs,
        "units": written,
    }))
}
