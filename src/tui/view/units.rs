//! The Units screen: the open layer's units as a grid of thumbnails (each unit's
//! feature visualization, and until it is made the part of its strongest input
//! that its peak sees), each captioned with its peak and, once the layer is
//! dissected, its concept and IoU in its category's colour (muted below the
//! detector threshold); sorted, and filtered by number or concept.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{note, panel, progress};
use crate::tui::app::{App, Hit};

/// A grid cell: two caption lines over a thumbnail.
const CELL: (u16, u16) = (14, 7);

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let Some(layer) = app.units.layer.clone() else {
        let block = panel(app, " units ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        return note(
            app,
            frame,
            inner,
            "pick a layer on the Model screen (enter) to see its units",
        );
    };
    let shown = app.shown_units();
    let filter = match (app.units.filtering, app.units.filter.as_str()) {
        (true, f) => format!(" · filter: {f}▏"),
        (false, "") => String::new(),
        (false, f) => format!(" · filter: {f}"),
    };
    let title = format!(
        " {layer} · {} units · sorted by {}{filter} ",
        shown.len(),
        app.units.sort.name()
    );
    let block = panel(app, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(view) = app.layers.get(&layer).cloned() else {
        let text = progress(app, "layer").unwrap_or_else(|| "waiting for the model…".into());
        return note(app, frame, inner, &text);
    };
    let [header, grid] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    let dissected = app.open_dissection().cloned();
    let concepts = match (&dissected, app.concept_source()) {
        (Some(d), _) => {
            let (detectors, concepts) = d.layer.summary();
            format!(
                "{detectors} detectors of {concepts} concepts (IoU ≥ {})",
                d.settings.iou_threshold
            )
        }
        (None, Some(_)) => format!("concepts: {}", app.dissection_note()),
        (None, None) => "no concept data (--concepts DIR)".into(),
    };
    let header_text = format!(
        "over {} inputs · {concepts} · enter opens · x explains · s sorts · / finds",
        view.stats.inputs
    );
    frame.render_widget(Paragraph::new(header_text).style(app.theme.muted), header);
    let columns = (grid.width / CELL.0).max(1) as usize;
    let rows = (grid.height / CELL.1).max(1) as usize;
    app.units.columns = columns;
    app.units.rows = rows;
    let visible = app.visible_positions(shown.len());
    for (slot, position) in visible.enumerate() {
        let unit = shown[position];
        let (r, c) = ((slot / columns) as u16, (slot % columns) as u16);
        let cell = Rect::new(grid.x + c * CELL.0, grid.y + r * CELL.1, CELL.0 - 1, CELL.1);
        if cell.bottom() > grid.bottom() {
            break;
        }
        let stats = &view.stats.units[unit];
        let selected = position == app.units.cursor;
        let style = if selected {
            app.theme.selected
        } else {
            app.theme.text
        };
        let caption = Line::from(vec![
            Span::styled(format!("#{unit:<4}"), style),
            Span::styled(
                format!("{:>8.2}", stats.max),
                if selected { style } else { app.theme.muted },
            ),
        ]);
        let concept = match dissected
            .as_ref()
            .and_then(|d| d.layer.units.get(unit).map(|u| (d, u)))
        {
            Some((d, result)) => {
                let style = match result.detector {
                    true => app.theme.category(d.category[unit]),
                    false => app.theme.muted,
                };
                let width = CELL.0 as usize - 6;
                let label: String = result.best.label.chars().take(width).collect();
                Line::from(vec![
                    Span::styled(format!("{label:<width$}"), style),
                    Span::styled(format!("{:>5.2}", result.best.iou), style),
                ])
            }
            None => Line::default(),
        };
        let [label, picture] =
            Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(cell);
        frame.render_widget(Paragraph::new(vec![caption, concept]), label);
        // The feature visualization once made; the strongest input's crop until then.
        let key = (layer.clone(), unit);
        match app.visuals.get(&key).or(app.thumbnails.get(&key)) {
            Some(&id) => app.pictures.draw(frame, picture, id),
            None => note(app, frame, picture, "…"),
        }
        app.hits.push((cell, Hit::Unit(position)));
    }
    if shown.is_empty() {
        note(
            app,
            frame,
            grid,
            "no unit matches the filter (esc clears it)",
        );
    }
}
