//! The Units screen: the open layer's units as a grid of thumbnails (each unit's
//! feature visualization, and until it is made the part of its strongest input
//! that its peak sees), sorted and filtered.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{note, panel, progress};
use crate::tui::app::{App, Hit};

/// A grid cell: a caption line over a thumbnail.
const CELL: (u16, u16) = (14, 6);

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
    let header_text = format!(
        "over {} inputs · cell: unit, max activation · enter opens · x explains it · s sorts · / filters",
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
        let [label, picture] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(cell);
        frame.render_widget(Paragraph::new(caption), label);
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
