//! What a dissected layer leaves on disk, each file written whole or not at all:
//! NetDissect-Lite's `tally.csv` and a JSON file with the thresholds, the summary
//! and every unit's matches, under a key that says what produced it, so a rerun
//! can tell a finished layer from a stale one; and, for the inspector's cache, the
//! counts a dissection is made from ([`save`], [`load`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use super::quantile::Finished;
use super::{LayerDissection, Settings, Tally, detectors_per_category};
use crate::data::{ConceptSet, Vocabulary};
use crate::model::Model;

/// What determines a layer's dissection: the model, the images and their labels,
/// the settings that change results (the exact path's budget decides between exact
/// and sketched thresholds), the layer.
pub fn key(model: &Model, set: &ConceptSet, settings: &Settings, layer: &str) -> Result<String> {
    let text = format!(
        "dissection 2\nmodel {}\ndata {}\nquantile {}\niou {}\nexact budget {}\nrotate {:?}\nlayer {layer}\n",
        model.digest()?,
        set.identity(),
        settings.quantile,
        settings.iou_threshold,
        settings.exact_budget,
        settings.rotate
    );
    Ok(format!("{:x}", sha2::Sha256::digest(text.as_bytes())))
}

/// The folder of `layer`'s files under `out`.
pub fn layer_dir(out: &Path, layer: &str) -> PathBuf {
    out.join(crate::render::file_part(layer))
}

/// The JSON of a layer finished under `key` in `out`, if there is one (its
/// report too: the page is written last).
pub fn finished(out: &Path, layer: &str, key: &str) -> Option<Value> {
    if !layer_dir(out, layer).join("report.html").exists() {
        return None;
    }
    let text = std::fs::read_to_string(layer_dir(out, layer).join("dissection.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    (value["key"] == key).then_some(value)
}

/// Writes `tally.csv` and `dissection.json` of `layer` under `out`; returns the JSON.
pub fn write(
    out: &Path,
    layer: &LayerDissection,
    vocabulary: &Vocabulary,
    settings: &Settings,
    key: &str,
) -> Result<Value> {
    let dir = layer_dir(out, &layer.layer);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    crate::atomic::write(&dir.join("tally.csv"), &tally_csv(layer, vocabulary)?)?;
    let (detectors, concepts) = layer.summary();
    let per_category: serde_json::Map<String, Value> = detectors_per_category(layer, vocabulary)
        .into_iter()
        .map(|(c, n)| (c, json!(n)))
        .collect();
    let value = json!({
        "key": key,
        "layer": layer.layer,
        "units": layer.units.len(),
        "detectors": detectors,
        "concepts": concepts,
        "iou_threshold": settings.iou_threshold,
        "quantile": settings.quantile,
        "detectors_per_category": per_category,
        "thresholds_exact": layer.exact,
        "sketch_error": layer.sketch_error,
        "thresholds": layer.thresholds,
        "results": layer.units,
    });
    crate::atomic::write(
        &dir.join("dissection.json"),
        serde_json::to_string_pretty(&value)?.as_bytes(),
    )?;
    Ok(value)
}

/// What [`LayerDissection::new`] makes a layer's dissection from, under its key.
#[derive(Serialize, Deserialize)]
struct Saved {
    key: String,
    layer: String,
    thresholds: Vec<f32>,
    sketch_error: Option<f64>,
    tally: Tally,
}

/// Writes the counts of `layer`, dissected under `key`, to `path`.
pub fn save(path: &Path, layer: &LayerDissection, key: &str) -> Result<()> {
    let saved = Saved {
        key: key.to_string(),
        layer: layer.layer.clone(),
        thresholds: layer.thresholds.clone(),
        sketch_error: layer.sketch_error,
        tally: layer.tally.clone(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    crate::atomic::write(path, &serde_json::to_vec(&saved)?)
}

/// The dissection of `set` saved at `path` under `key`: `None` when there is
/// none, or it was made from something else, or the file is not whole (then it is
/// made again).
pub fn load(
    path: &Path,
    key: &str,
    set: &ConceptSet,
    settings: &Settings,
) -> Option<LayerDissection> {
    let vocabulary = &set.vocabulary();
    let text = std::fs::read(path).ok()?;
    let saved: Saved = serde_json::from_slice(&text).ok()?;
    if saved.key != key {
        return None;
    }
    saved
        .tally
        .check(saved.thresholds.len(), vocabulary, set.len())
        .ok()?;
    let thresholds = Finished {
        thresholds: saved.thresholds,
        // Exact thresholds always come with the sketch's error against them.
        exact: saved.sketch_error.is_some(),
        sketch_error: saved.sketch_error,
    };
    Some(LayerDissection::new(
        &saved.layer,
        saved.tally,
        thresholds,
        vocabulary,
        settings,
    ))
}

/// NetDissect-Lite's `tally.csv`: units (numbered from 1) by their best IoU, highest
/// first, with their best match and each category's.
pub fn tally_csv(layer: &LayerDissection, vocabulary: &Vocabulary) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "unit".to_string(),
        "category".into(),
        "label".into(),
        "score".into(),
    ];
    for c in &vocabulary.categories {
        for column in ["label", "truth", "activation", "intersect", "iou"] {
            header.push(format!("{c}-{column}"));
        }
    }
    writer.write_record(&header)?;
    let mut order: Vec<_> = layer.units.iter().collect();
    order.sort_by(|a, b| b.best.iou.total_cmp(&a.best.iou).then(a.unit.cmp(&b.unit)));
    for unit in order {
        let mut row = vec![
            (unit.unit + 1).to_string(),
            unit.best.category.clone(),
            unit.best.label.clone(),
            unit.best.iou.to_string(),
        ];
        for m in &unit.categories {
            row.extend([
                m.label.clone(),
                m.truth.to_string(),
                m.activation.to_string(),
                m.intersect.to_string(),
                m.iou.to_string(),
            ]);
        }
        writer.write_record(&row)?;
    }
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing tally.csv: {e}"))
}
