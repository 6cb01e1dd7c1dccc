//! The Model screen: the layer tree beside the model card, the device and inputs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use unitscope::data::Source;

use super::{note, panel};
use crate::tui::app::{App, Hit};

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let [left, right] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(area);
    draw_layers(app, frame, left);
    draw_card(app, frame, right);
}

fn draw_layers(app: &mut App, frame: &mut Frame, area: Rect) {
    let block = panel(app, " layers (enter opens its units) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(model) = app.model.clone() else {
        return note(app, frame, inner, "loading the model…");
    };
    let layers = match model.layers() {
        Ok(layers) => layers,
        Err(e) => return note(app, frame, inner, &format!("{e:#}")),
    };
    let parameters = model.parameters();
    let rows: Vec<Row> = layers
        .iter()
        .map(|l| {
            let depth = l.name.matches('.').count();
            let count: usize = parameters
                .iter()
                .filter(|(name, _)| {
                    name.strip_prefix(l.name.as_str())
                        .is_some_and(|r| r.starts_with('.'))
                })
                .map(|(_, t)| t.elem_count())
                .sum();
            let shape = l
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x");
            Row::new([
                Cell::from(format!("{}{}", "  ".repeat(depth), l.name)),
                Cell::from(l.kind.name()),
                Cell::from(shape),
                Cell::from(l.units.to_string()),
                Cell::from(if count == 0 {
                    "-".into()
                } else {
                    count.to_string()
                }),
            ])
        })
        .collect();
    let header = Row::new(["layer", "kind", "shape", "units", "params"]).style(app.theme.muted);
    let widths = [
        Constraint::Fill(3),
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(app.theme.selected);
    let mut state = TableState::default().with_selected(Some(app.layer_cursor));
    frame.render_stateful_widget(table, inner, &mut state);
    // Rows as drawn, for clicks: the header takes the first line.
    let offset = state.offset();
    for row in 0..inner.height.saturating_sub(1) {
        let index = offset + row as usize;
        if index < layers.len() {
            app.hits.push((
                Rect::new(inner.x, inner.y + 1 + row, inner.width, 1),
                Hit::Layer(index),
            ));
        }
    }
}

fn draw_card(app: &App, frame: &mut Frame, area: Rect) {
    let block = panel(app, " model ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut field = |name: &'static str, value: String| fields.push((name, value));
    match &app.card {
        Some((path, card)) => {
            field("card", path.display().to_string());
            field("architecture", card.architecture.to_string());
            let weights = card
                .weights_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("{e}"));
            field("weights", weights);
        }
        None => field("card", "the embedded demo model (demo world shapes)".into()),
    }
    if let Some(model) = &app.model {
        let spec = model.input_spec();
        field("name", model.name().to_string());
        let [c, h, w] = spec.shape();
        field("input", format!("{c}x{h}x{w}"));
        // Pictures are normalized; a modality's other inputs come as the plugin
        // makes them (one-hot text).
        if c == 3 {
            let f = |v: [f64; 3]| {
                v.iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            field("mean", f(spec.mean));
            field("std", f(spec.std));
        }
        let labels = model.labels();
        let shown: Vec<&str> = labels.iter().take(6).map(String::as_str).collect();
        let more = if labels.len() > 6 { ", …" } else { "" };
        field(
            "labels",
            format!("{}: {}{more}", labels.len(), shown.join(", ")),
        );
        field("device", unitscope::model::device::describe(model.device()));
        for warning in model.warnings() {
            field("warning", warning.clone());
        }
    }
    let inputs = match &app.source {
        Source::Demo(n) => format!("{n} held-out demo scenes"),
        Source::Folder(dir) => format!("{} files in {}", app.entries.len(), dir.display()),
        Source::Files(files) => format!("{} file(s)", files.len()),
    };
    field("inputs", inputs);
    let room = (inner.height as usize).saturating_sub(fields.len() + 1);
    for entry in app.entries.iter().take(room) {
        fields.push(("", entry.name.clone()));
    }
    let lines: Vec<Line> = fields
        .into_iter()
        .map(|(name, value)| {
            Line::from(vec![
                Span::styled(format!("{name:<13}"), app.theme.muted),
                Span::raw(value),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
