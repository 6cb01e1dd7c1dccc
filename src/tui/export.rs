//! `e` on any screen: what the screen shows, as the files the headless commands
//! write under the same names — `info --json`'s `info.json`, `explain`'s
//! `INPUT.METHOD.TARGET.png` (and `.npy`, and a JSON entry as in its
//! `summary.json`), `evaluate --json`'s lines, the unit statistics, and `dissect`'s
//! `tally.csv`, `dissection.json` and `report.html`. Written on a worker, each file
//! whole or not at all.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use unitscope::atomic;
use unitscope::attribution::{Attribution, registry};
use unitscope::dissect::{self, report};
use unitscope::jobs::Context;
use unitscope::model::Model;
use unitscope::render::{self, Panel, file_part};

use super::Screen;
use super::app::{App, target_text};
use super::work::{self, Output};

/// A boxed export job.
pub type Job = Box<dyn FnOnce(&Context) -> Result<Output> + Send>;

/// The job that exports what `app` shows now.
pub fn job(app: &App, model: &Arc<Model>) -> Result<Job> {
    let model = model.clone();
    let base = app.export_dir.clone();
    match app.screen {
        Screen::Model => Ok(Box::new(move |_| {
            let info = json!({
                "model": model.name(),
                "input": model.input_spec(),
                "layers": model.layers()?,
            });
            let path = base.join("info.json");
            atomic::write(&path, serde_json::to_string_pretty(&info)?.as_bytes())?;
            Ok(Output::Exported(vec![path]))
        })),
        Screen::Units | Screen::Unit => {
            let Some(view) = app
                .units
                .layer
                .as_ref()
                .and_then(|l| app.layers.get(l))
                .cloned()
            else {
                bail!("nothing to export yet: the layer's units are still being computed");
            };
            let tiles = app
                .unit
                .filter(|_| app.screen == Screen::Unit)
                .and_then(|u| {
                    app.tiles
                        .get(&(view.stats.layer.clone(), u))
                        .map(|t| (u, t.clone()))
                });
            let names: Vec<String> = app
                .entries
                .iter()
                .take(view.stats.inputs)
                .map(|e| e.name.clone())
                .collect();
            Ok(Box::new(move |_| {
                let dir = &base.join("units");
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
                let layer = file_part(&view.stats.layer);
                let path = dir.join(format!("{layer}.json"));
                let body = json!({"stats": view.stats, "inputs": names});
                atomic::write(&path, serde_json::to_string_pretty(&body)?.as_bytes())?;
                let mut written = vec![path];
                if let Some((unit, tiles)) = tiles {
                    let panels: Vec<Panel> = tiles
                        .iter()
                        .map(|t| Panel {
                            image: t.image.clone(),
                            caption: vec![t.caption.clone()],
                        })
                        .collect();
                    let png = dir.join(format!("{layer}.{unit}.png"));
                    render::save_png(&render::grid(&panels, panels.len())?, &png)?;
                    written.push(png);
                }
                Ok(Output::Exported(written))
            }))
        }
        Screen::Concepts => {
            let Some(dissected) = app.open_dissection().cloned() else {
                bail!("nothing to export yet: the layer is still being dissected");
            };
            Ok(Box::new(move |_| {
                let (d, out) = (&dissected, base.join("dissection"));
                let key = report::key(&model, &d.set, &d.settings, &d.layer.layer)?;
                report::write(&out, &d.layer, &d.vocabulary, &d.settings, &key)?;
                let page =
                    dissect::html::page(&model, &d.set, &d.layer, &d.vocabulary, &d.settings)?;
                let dir = report::layer_dir(&out, &d.layer.layer);
                atomic::write(&dir.join("report.html"), page.as_bytes())?;
                let written = ["tally.csv", "dissection.json", "report.html"];
                Ok(Output::Exported(
                    written.iter().map(|f| dir.join(f)).collect(),
                ))
            }))
        }
        Screen::Explain => explain_job(app, model, base.join("explain")),
        Screen::Trust => {
            let Some(rows) = app.trust.clone() else {
                bail!("nothing to export yet: press r to measure");
            };
            Ok(Box::new(move |_| {
                let lines: Vec<String> = rows
                    .iter()
                    .map(|row| {
                        let means = &row.trust.means;
                        json!({
                            "method": row.method,
                            "images": means.images,
                            "deletion_auc": means.deletion_auc,
                            "insertion_auc": means.insertion_auc,
                            "pointing_game": means.pointing_game,
                            "mass_inside": means.mass_inside,
                            "random_point_baseline": row.baseline,
                            "randomization_spearman": row.trust.fully_random_spearman(),
                        })
                        .to_string()
                    })
                    .collect();
                let path = base.join("evaluate.json");
                atomic::write(&path, (lines.join("\n") + "\n").as_bytes())?;
                Ok(Output::Exported(vec![path]))
            }))
        }
    }
}

/// The shown map (or every compared map) as `explain/INPUT.METHOD.TARGET.{png,npy,json}`.
fn explain_job(app: &App, model: Arc<Model>, dir: PathBuf) -> Result<Job> {
    let key = app.explain_key();
    let Some(input) = app.inputs.get(&key.input).cloned() else {
        bail!("nothing to export yet: the input is still loading");
    };
    let maps: Vec<(String, Arc<work::Explained>)> = if app.explain.compare {
        let Some(rows) = app.compared.get(&key) else {
            bail!("nothing to export yet: the comparison is still running");
        };
        rows.iter()
            .map(|r| (r.method.clone(), r.explained.clone()))
            .collect()
    } else {
        let Some(explained) = app.explained.get(&key) else {
            bail!("nothing to export yet: the map is still being computed");
        };
        vec![(key.method.clone(), explained.clone())]
    };
    let (colormap, outline, target, params) = (
        app.explain.colormap,
        app.explain.outline,
        target_text(&app.explain.target),
        app.params(),
    );
    Ok(Box::new(move |_| {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let mut written = Vec::new();
        for (method, explained) in maps {
            let stem = format!(
                "{}.{}.{}",
                input.name,
                file_part(&method),
                file_part(&target)
            );
            let png = dir.join(format!("{stem}.png"));
            render::save_png(
                &work::draw(&model, &input, &explained, (colormap, outline))?,
                &png,
            )?;
            let mut raw = Vec::new();
            match &explained.maps {
                Attribution::Input(map) => {
                    let path = dir.join(format!("{stem}.raw.npy"));
                    render::save_npy(&map.squeeze(0)?, &path)?;
                    raw.push(path);
                }
                Attribution::Layers(layers) => {
                    for (layer, map) in layers {
                        let path = dir.join(format!("{stem}.raw.{}.npy", file_part(layer)));
                        render::save_npy(&map.squeeze(0)?, &path)?;
                        raw.push(path);
                    }
                }
            }
            let entry = json!({
                "image": input.name,
                "prediction": input.top.first(),
                "method": method,
                "parameters": registry::values(&method, &params)?,
                "passes": explained.passes,
                "target": explained.target,
                "ms": explained.ms,
                "png": png,
                "raw": raw,
            });
            let json_path = dir.join(format!("{stem}.json"));
            atomic::write(&json_path, serde_json::to_string_pretty(&entry)?.as_bytes())?;
            written.push(png);
            written.extend(raw);
            written.push(json_path);
        }
        Ok(Output::Exported(written))
    }))
}
