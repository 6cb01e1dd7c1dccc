//! A dissected layer as one self-contained HTML page: the headline ("N/M units
//! covering K concepts with IoU >= t"), a bar chart of detectors per category, and
//! per unit its label, IoU and runner-up categories, with its top images drawn
//! with the unit's mask `M_k` (the rest dimmed) and its label's pixels `L_c`
//! outlined. Images are PNGs inside the page (data: URIs), so the file travels.

use std::fmt::Write as _;
use std::io::Cursor;

use anyhow::Result;
use base64::Engine as _;
use rayon::prelude::*;

use super::pictures::top_pictures;
use super::{LayerDissection, Settings, detectors_per_category};
use crate::data::{ConceptSet, Vocabulary};
use crate::model::Model;
use crate::render::html::escape;

/// Units shown with images (the highest IoUs); the table lists every unit.
const UNITS_WITH_IMAGES: usize = 64;

/// The page of `layer`, dissected on `set` with `model`.
pub fn page(
    model: &Model,
    set: &ConceptSet,
    layer: &LayerDissection,
    vocabulary: &Vocabulary,
    settings: &Settings,
) -> Result<String> {
    let (detectors, concepts) = layer.summary();
    let mut order: Vec<_> = layer.units.iter().collect();
    order.sort_by(|a, b| b.best.iou.total_cmp(&a.best.iou).then(a.unit.cmp(&b.unit)));
    let mut html = String::new();
    let title = format!(
        "{} {}: Network Dissection",
        escape(model.name()),
        escape(&layer.layer)
    );
    write!(
        html,
        "<!doctype html><meta charset=utf-8><title>{title}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;background:#111;color:#ddd}}\
         .bar{{background:#4a8;height:1.1em;display:inline-block}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 8px;text-align:left}}\
         tr:nth-child(even){{background:#1a1a1a}}img{{image-rendering:pixelated;margin:2px}}\
         .no{{color:#777}}</style><h1>{title}</h1>\
         <p><b>{detectors}/{} units covering {concepts} concepts with IoU &ge; {}</b> \
         ({} images, top {} quantile, thresholds {})</p>",
        layer.units.len(),
        settings.iou_threshold,
        set.len(),
        settings.quantile,
        if layer.exact {
            "exact"
        } else {
            "from the sketch"
        }
    )?;
    html.push_str("<h2>Detectors per category</h2><table>");
    let counts = detectors_per_category(layer, vocabulary);
    let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    for (category, n) in &counts {
        write!(
            html,
            "<tr><td>{}</td><td><span class=bar style=\"width:{}px\"></span> {n}</td></tr>",
            escape(category),
            n * 300 / most
        )?;
    }
    html.push_str("</table><h2>Units</h2><table><tr><th>unit</th><th>label</th><th>category</th><th>IoU</th><th>best of the other categories</th><th>top images: mask (bright), label (outlined)</th></tr>");
    let shown: Vec<usize> = order[..order.len().min(UNITS_WITH_IMAGES)]
        .iter()
        .map(|unit| unit.unit)
        .collect();
    let pictures = top_pictures(model, set, layer, &shown, vocabulary, settings)?
        .par_iter()
        .map(|pictures| {
            pictures
                .iter()
                .map(|picture| {
                    let mut png = Vec::new();
                    picture.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
                    Ok(png)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    for (i, unit) in order.iter().enumerate() {
        let mut others: Vec<_> = unit
            .categories
            .iter()
            .filter(|m| m.category != unit.best.category)
            .collect();
        others.sort_by(|a, b| b.iou.total_cmp(&a.iou));
        let runners: Vec<String> = others
            .iter()
            .take(3)
            .map(|m| format!("{} {:.3}", escape(&m.label), m.iou))
            .collect();
        write!(
            html,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>",
            if unit.detector { "" } else { " class=no" },
            unit.unit,
            escape(&unit.best.label),
            escape(&unit.best.category),
            unit.best.iou,
            runners.join(", ")
        )?;
        if let Some(pictures) = pictures.get(i) {
            for png in pictures {
                let data = base64::engine::general_purpose::STANDARD.encode(png);
                write!(html, "<img src=\"data:image/png;base64,{data}\">")?;
            }
        }
        html.push_str("</td></tr>");
    }
    html.push_str("</table>");
    Ok(html)
}
