//! The Trust screen: `evaluate`'s table for the current inputs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use unitscope::metrics::Fragility;

use super::{note, panel, progress};
use crate::tui::app::App;
use crate::tui::work::TRUST_INPUTS;

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let inputs = app.entries.len().min(TRUST_INPUTS);
    let block = panel(
        app,
        format!(" trust · the first {inputs} inputs · r measures again "),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(rows) = app.trust.clone() else {
        let text = progress(app, "trust").unwrap_or_else(|| "press r to measure".into());
        return note(app, frame, inner, &text);
    };
    let [explanation, table_area] =
        Layout::vertical([Constraint::Length(5), Constraint::Fill(1)]).areas(inner);
    let baseline = rows.first().and_then(|r| r.baseline);
    let text = format!(
        "deletion: the class probability's area as the top pixels go (lower is more faithful); insertion: \
         as they come back (higher). pointing: the map's peak on the object{}; random ρ: rank correlation \
         with the map of a fully randomized model (lower: the map depends on what was learned); \
         sens: max-sensitivity, the map's largest relative change under noise that keeps the prediction \
         (lower: steadier); shift ρ: rank correlation with the map of the image shifted {} px.",
        baseline.map_or(" (no masks on these inputs)".into(), |b| format!(
            " (a random point: {b:.3})"
        )),
        Fragility::default().shift,
    );
    frame.render_widget(
        Paragraph::new(text)
            .style(app.theme.muted)
            .wrap(Wrap { trim: true }),
        explanation,
    );
    let cell = |v: Option<f64>| Cell::from(v.map_or("-".into(), |v| format!("{v:.3}")));
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let m = &r.trust.means;
            Row::new([
                Cell::from(r.method.clone()),
                cell(Some(m.deletion_auc)),
                cell(Some(m.insertion_auc)),
                cell(m.pointing_game),
                cell(m.mass_inside),
                cell(r.trust.fully_random_spearman()),
                cell(r.trust.fragility.mean_max_sensitivity()),
                cell(r.trust.fragility.mean_shift_spearman()),
            ])
        })
        .collect();
    let header = Row::new([
        "method",
        "deletion↓",
        "insertion↑",
        "pointing",
        "mass in",
        "random ρ↓",
        "sens↓",
        "shift ρ↑",
    ])
    .style(app.theme.muted);
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    frame.render_widget(Table::new(table_rows, widths).header(header), table_area);
}
