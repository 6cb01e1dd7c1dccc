//! The Unit card: what is known about one unit — the inputs that excite it most
//! with its upsampled activation over them, its feature visualization (and on
//! request diverse ones), the histogram of its peaks, its mean and max. A later
//! issue adds its concept.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Paragraph};

use super::{note, panel, progress};
use crate::tui::app::App;

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let (Some(layer), Some(unit)) = (app.units.layer.clone(), app.unit) else {
        let block = panel(app, " unit ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        return note(app, frame, inner, "open a unit on the Units screen (enter)");
    };
    let [left, right] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(area);
    let block = panel(
        app,
        format!(" {layer}:{unit} · strongest inputs, activation over them "),
    );
    let inner = block.inner(left);
    frame.render_widget(block, left);
    match app.tiles.get(&(layer.clone(), unit)).cloned() {
        None => {
            let text = progress(app, "unit")
                .or_else(|| progress(app, "layer"))
                .unwrap_or_else(|| "…".into());
            note(app, frame, inner, &text);
        }
        Some(tiles) => {
            let [top, bottom] = Layout::vertical([Constraint::Fill(1); 2]).areas(inner);
            let halves =
                [top, bottom].map(|r| Layout::horizontal([Constraint::Fill(1); 2]).areas::<2>(r));
            for (i, tile) in tiles.iter().enumerate().take(4) {
                let cell = halves[i / 2][i % 2];
                let [caption, picture] =
                    Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(cell);
                frame.render_widget(
                    Paragraph::new(tile.caption.clone()).style(app.theme.muted),
                    caption,
                );
                let key = format!("tile:{layer}:{unit}:{i}");
                let id = match app.drawn.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id = app.pictures.add(tile.image.clone());
                        app.drawn.insert(key, id);
                        id
                    }
                };
                app.pictures.draw(frame, picture, id);
            }
        }
    }
    let [visual, right] = Layout::vertical([Constraint::Fill(1); 2]).areas(right);
    draw_visual(app, frame, visual, (&layer, unit));
    let block = panel(app, " statistics ");
    let inner = block.inner(right);
    frame.render_widget(block, right);
    let Some(view) = app.layers.get(&layer) else {
        return;
    };
    let stats = &view.stats.units[unit];
    let [numbers, chart] =
        Layout::vertical([Constraint::Length(5), Constraint::Fill(1)]).areas(inner);
    let lines = vec![
        Line::from(format!("mean activation  {:.4}", stats.mean)),
        Line::from(format!("max activation   {:.4}", stats.max)),
        Line::from(format!("inputs seen      {}", view.stats.inputs)),
        Line::from(format!(
            "map size         {}x{}",
            view.stats.size.0, view.stats.size.1
        )),
        Line::styled("histogram of per-input peaks:", app.theme.muted),
    ];
    frame.render_widget(Paragraph::new(lines), numbers);
    let bins = ((chart.width / 3).clamp(4, 24)) as usize;
    let (counts, (lo, hi)) = stats.peaks.bins(bins);
    let bars: Vec<Bar> = counts
        .iter()
        .map(|&c| Bar::default().value(c).text_value(String::new()))
        .collect();
    let [bars_area, axis] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(chart);
    let chart_widget = BarChart::default()
        .data(BarGroup::default().bars(&bars))
        .bar_width(2)
        .bar_gap(1)
        .bar_style(app.theme.accent);
    frame.render_widget(chart_widget, bars_area);
    frame.render_widget(
        Paragraph::new(format!("{lo:.2} … {hi:.2}")).style(app.theme.muted),
        axis,
    );
}

/// The unit's feature visualization, or its diverse set once asked for (`d`).
fn draw_visual(app: &mut App, frame: &mut Frame, area: Rect, (layer, unit): (&str, usize)) {
    let key = (layer.to_string(), unit);
    let title = match app.diverse.contains_key(&key) {
        true => " feature visualization · diverse ",
        false => " feature visualization · d: diverse ",
    };
    let block = panel(app, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(ids) = app.diverse.get(&key).cloned() {
        let [top, bottom] = Layout::vertical([Constraint::Fill(1); 2]).areas(inner);
        let cells =
            [top, bottom].map(|r| Layout::horizontal([Constraint::Fill(1); 2]).areas::<2>(r));
        for (i, id) in ids.into_iter().enumerate().take(4) {
            app.pictures.draw(frame, cells[i / 2][i % 2], id);
        }
        return;
    }
    match app.visuals.get(&key).copied() {
        Some(id) => app.pictures.draw(frame, inner, id),
        None if !app.visualizing() => note(app, frame, inner, "feature visualization is off"),
        None => {
            let text = progress(app, "diverse")
                .or_else(|| progress(app, "visuals"))
                .unwrap_or_else(|| "…".into());
            note(app, frame, inner, &text);
        }
    }
}
