//! The Unit card: what is known about one unit — the inputs that excite it most
//! with its upsampled activation over them, its feature visualization (and on
//! request diverse ones), the histogram of its peaks, its mean and max; and, once
//! its layer is dissected, its concept with the IoU of the runners-up, and its top
//! concept images with its mask `M_k` bright and its label's pixels `L_c` outlined.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Paragraph, Wrap};

use super::text::painted;
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
    let (left, evidence) = match app.concept_source() {
        Some(_) => {
            let [top, bottom] = Layout::vertical([Constraint::Fill(1); 2]).areas(left);
            (top, Some(bottom))
        }
        None => (left, None),
    };
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
            let cells = picture_cells(inner, evidence.is_some());
            for (i, (tile, cell)) in tiles.iter().zip(cells).enumerate() {
                let [caption, picture] =
                    Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(cell);
                frame.render_widget(
                    Paragraph::new(tile.caption.clone()).style(app.theme.muted),
                    caption,
                );
                if let Some((chars, values)) = &tile.text {
                    let text =
                        Paragraph::new(painted(chars, Some(values))).wrap(Wrap { trim: false });
                    frame.render_widget(text, picture);
                    continue;
                }
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
    if let Some(area) = evidence {
        draw_evidence(app, frame, area, (&layer, unit));
    }
    let concept_lines = match app.concept_source() {
        Some(_) => 3 + crate::tui::work::RUNNERS_UP as u16,
        None => 0,
    };
    let [visual, concept, right] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(concept_lines),
        Constraint::Fill(1),
    ])
    .areas(right);
    draw_visual(app, frame, visual, (&layer, unit));
    if concept_lines > 0 {
        draw_concept(app, frame, concept, unit);
    }
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

/// Four picture cells with a caption line each: a row of four when `row`, else
/// two by two.
fn picture_cells(area: Rect, row: bool) -> Vec<Rect> {
    match row {
        true => Layout::horizontal([Constraint::Fill(1); 4])
            .spacing(1)
            .areas::<4>(area)
            .to_vec(),
        false => Layout::vertical([Constraint::Fill(1); 2])
            .areas::<2>(area)
            .iter()
            .flat_map(|r| {
                Layout::horizontal([Constraint::Fill(1); 2])
                    .spacing(1)
                    .areas::<2>(*r)
            })
            .collect(),
    }
}

/// The unit's label, its IoU and whether that makes it a detector, and the
/// runner-up concepts' IoUs.
fn draw_concept(app: &mut App, frame: &mut Frame, area: Rect, unit: usize) {
    let block = panel(app, " concept (Network Dissection) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(dissected) = app.open_dissection().cloned() else {
        return note(app, frame, inner, &app.dissection_note());
    };
    let Some(result) = dissected.layer.units.get(unit) else {
        return;
    };
    let threshold = dissected.settings.iou_threshold;
    let style = app.theme.category(dissected.category[unit]);
    let verdict = match result.detector {
        true => Span::styled(format!("detector (IoU ≥ {threshold})"), app.theme.ok),
        false => Span::styled(
            format!("not a detector (IoU < {threshold})"),
            app.theme.muted,
        ),
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{} ({})", result.best.label, result.best.category),
            style.add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  IoU {:.3}  ", result.best.iou)),
        verdict,
    ])];
    let runners_up = dissected.ranked[unit]
        .iter()
        .filter(|(label, ..)| *label != result.best.label);
    for (label, category, iou) in runners_up.take(crate::tui::work::RUNNERS_UP) {
        let name = category.map_or("", |c| dissected.vocabulary.categories[c].as_str());
        lines.push(Line::from(vec![
            Span::styled(format!("  {label} ({name})"), app.theme.category(*category)),
            Span::styled(format!("  {iou:.3}"), app.theme.muted),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The unit's top concept images with its mask bright and its label outlined.
fn draw_evidence(app: &mut App, frame: &mut Frame, area: Rect, (layer, unit): (&str, usize)) {
    let label = app
        .open_dissection()
        .and_then(|d| d.layer.units.get(unit))
        .map(|u| u.best.label.clone());
    let title = match &label {
        Some(label) => format!(" top concept images · mask bright, `{label}` outlined "),
        None => " top concept images ".into(),
    };
    let block = panel(app, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(ids) = app.evidence.get(&(layer.to_string(), unit)).cloned() else {
        let text = progress(app, "evidence").unwrap_or_else(|| app.dissection_note());
        return note(app, frame, inner, &text);
    };
    if ids.is_empty() {
        return note(
            app,
            frame,
            inner,
            "the dissection kept no image of this unit",
        );
    }
    for (id, cell) in ids.into_iter().zip(picture_cells(inner, true)) {
        app.pictures.draw(frame, cell, id);
    }
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
        Some(id) => {
            // The axes a card states (a spectrogram's), as the Explain screen
            // captions a modality's picture.
            let axes = app.model.as_ref().and_then(|m| m.input_spec().axes.clone());
            let picture = match axes {
                Some(axes) => {
                    let [caption, picture] =
                        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
                    let text = format!("x: {} · y: {}", axes.x.caption(), axes.y.caption());
                    frame.render_widget(Paragraph::new(text).style(app.theme.muted), caption);
                    picture
                }
                None => inner,
            };
            app.pictures.draw(frame, picture, id);
        }
        None if app.reads_text() => note(
            app,
            frame,
            inner,
            "a text model's unit is shown over text: its strongest inputs, left",
        ),
        None if !app.visualizing() => note(app, frame, inner, "feature visualization is off"),
        None => {
            let text = progress(app, "diverse")
                .or_else(|| progress(app, "visuals"))
                .unwrap_or_else(|| "…".into());
            note(app, frame, inner, &text);
        }
    }
}
