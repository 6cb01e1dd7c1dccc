//! The Concepts screen: the open layer's Network Dissection at a glance, as the
//! paper summarizes a layer — how many units are detectors and of how many
//! distinct concepts, detectors per category as bars, and each concept with the
//! units that detect it (enter lists them on the Units screen).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use unitscope::dissect::detectors_per_category;

use super::{note, panel};
use crate::tui::app::App;

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let Some(layer) = app.units.layer.clone() else {
        let block = panel(app, " concepts ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        return note(
            app,
            frame,
            inner,
            "pick a layer on the Model screen (enter) to see its concepts",
        );
    };
    let block = panel(app, format!(" {layer} · Network Dissection "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.concept_source().is_none() {
        return note(
            app,
            frame,
            inner,
            "no concept data for this model: start with --concepts DIR (a dataset in the Broden layout)",
        );
    }
    let Some(dissected) = app.open_dissection().cloned() else {
        return note(app, frame, inner, &app.dissection_note());
    };
    let (detectors, concepts) = dissected.layer.summary();
    let settings = &dissected.settings;
    let per_category = detectors_per_category(&dissected.layer, &dissected.vocabulary);
    let [headline, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Fill(1)]).areas(inner);
    let thresholds = match dissected.layer.sketch_error {
        Some(error) => format!("exact (the streaming sketch within {:.3}%)", error * 100.0),
        None => "from the streaming sketch".into(),
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(
                format!(
                    "{detectors}/{} units covering {concepts} concepts with IoU ≥ {}",
                    dissected.layer.units.len(),
                    settings.iou_threshold
                ),
                app.theme.accent,
            ),
            Line::styled(
                format!(
                    "{} images · top {} quantile · thresholds {thresholds}",
                    dissected.set.len(),
                    settings.quantile
                ),
                app.theme.muted,
            ),
        ]),
        headline,
    );
    let [bars, list] = Layout::horizontal([Constraint::Fill(2), Constraint::Fill(3)]).areas(body);
    // Detectors per category, as bars scaled to the widest.
    let most = per_category
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1);
    let name_width = per_category
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    let room = (bars.width as usize).saturating_sub(name_width + 6).max(1);
    let lines: Vec<Line> = std::iter::once(Line::styled("detectors per category", app.theme.muted))
        .chain(per_category.iter().enumerate().map(|(i, (category, n))| {
            let style = app.theme.category(Some(i));
            Line::from(vec![
                Span::styled(format!("{category:<name_width$} "), style),
                Span::styled("█".repeat(n * room / most), style),
                Span::raw(format!(" {n}")),
            ])
        }))
        .collect();
    frame.render_widget(Paragraph::new(lines), bars);
    let rows = app.concept_rows();
    if rows.is_empty() {
        return note(
            app,
            frame,
            list,
            "no unit reaches the detector threshold in this layer",
        );
    }
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|row| {
            let category = row
                .category
                .map_or("", |c| dissected.vocabulary.categories[c].as_str());
            let units: Vec<String> = row.units.iter().map(|u| format!("#{u}")).collect();
            Row::new([
                Cell::from(row.label.clone()).style(app.theme.category(row.category)),
                Cell::from(category.to_string()),
                Cell::from(row.units.len().to_string()),
                Cell::from(format!("{:.3}", row.best)),
                Cell::from(units.join(" ")),
            ])
        })
        .collect();
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["concept", "category", "units", "IoU", "detectors"]).style(app.theme.muted))
    .row_highlight_style(app.theme.selected);
    app.concept_cursor = app.concept_cursor.min(rows.len() - 1);
    let mut state = TableState::default().with_selected(Some(app.concept_cursor));
    frame.render_stateful_widget(table, list, &mut state);
}
