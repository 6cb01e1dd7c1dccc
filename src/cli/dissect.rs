//! `unitscope dissect`: Network Dissection from the command line. Layer by layer
//! (a finished layer's files are written before the next starts, so Ctrl-C loses
//! none, and a rerun skips the layers already done under the same model, data and
//! settings), each unit's concept and IoU into `tally.csv` and `dissection.json`.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use unitscope::data::{Broden, ConceptSet};
use unitscope::dissect::{self, Settings, report};

use super::job;

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
    /// Held-out scenes of the demo world, with its concepts.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = super::count(1..=1_000_000))]
    demo: usize,
    /// The top quantile of each unit's activations that its mask keeps.
    #[arg(long, default_value_t = 0.005)]
    quantile: f64,
    /// The IoU from which a unit is a detector of its concept.
    #[arg(long, default_value_t = 0.04)]
    iou: f64,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=1024))]
    batch: usize,
    /// Where to write `dissect.json` and one folder per layer.
    #[arg(short, long, default_value = "dissection")]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
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
    let model = super::load_model(args.model.as_deref())?;
    let set = match &args.dataset {
        Some(dir) => ConceptSet::Broden(Broden::open(dir)?),
        None => ConceptSet::Demo(args.demo),
    };
    let settings = Settings {
        quantile: args.quantile,
        iou_threshold: args.iou,
        batch: args.batch,
        ..Settings::default()
    };
    let total = 2 * (set.len() * args.layers.len()) as u64;
    let args = args.clone();
    job::run("dissect", total, move |cx, out| {
        let vocabulary = set.vocabulary();
        let mut layers = Vec::new();
        for (i, layer) in args.layers.iter().enumerate() {
            let key = report::key(&model, &set, &settings, layer)?;
            let value = match report::finished(&args.out, layer, &key) {
                Some(value) => {
                    out.line(&format!("{layer}: already dissected, kept"))?;
                    value
                }
                None => {
                    let offset = 2 * (i * set.len()) as u64;
                    let mut progress = |done, _| {
                        cx.progress(offset + done, total, layer.to_string());
                    };
                    let dissected = dissect::dissect(
                        &model,
                        &set,
                        std::slice::from_ref(layer),
                        &settings,
                        &mut progress,
                    )?;
                    report::write(&args.out, &dissected[0], &vocabulary, &settings, &key)?
                }
            };
            out.line(&headline(&value))?;
            layers.push(value);
        }
        let index = json!({
            "model": model.name(),
            "data": set.identity(),
            "images": set.len(),
            "layers": layers.iter().map(|l| json!({
                "layer": l["layer"],
                "units": l["units"],
                "detectors": l["detectors"],
                "concepts": l["concepts"],
                "detectors_per_category": l["detectors_per_category"],
                "tally": format!("{}/tally.csv", unitscope::render::file_part(l["layer"].as_str().unwrap_or(""))),
            })).collect::<Vec<_>>(),
        });
        let path = args.out.join("dissect.json");
        unitscope::atomic::write(&path, serde_json::to_string_pretty(&index)?.as_bytes())?;
        out.line(&format!("index: {}", path.display()))
    })
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
