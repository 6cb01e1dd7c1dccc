//! The Explain screen: the inputs, the input beside its heatmap (or every compared
//! method with its faithfulness numbers), and the method, target, top-5 and
//! parameters.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use unitscope::attribution::registry;

use super::text::painted;
use super::{note, panel, progress};
use crate::tui::app::{App, Hit, target_text};
use crate::tui::pictures::PictureId;
use crate::tui::work::{self, Explained, InputView};

pub fn draw(app: &mut App, frame: &mut Frame, area: Rect) {
    let [inputs, middle, side] = Layout::horizontal([
        Constraint::Length(22),
        Constraint::Fill(1),
        Constraint::Length(38),
    ])
    .areas(area);
    draw_inputs(app, frame, inputs);
    draw_side(app, frame, side);
    let block = panel(app, "");
    let inner = block.inner(middle);
    frame.render_widget(block, middle);
    let Some(input) = app.inputs.get(&app.explain.input).cloned() else {
        let text = progress(app, "input").unwrap_or_else(|| match app.entries.is_empty() {
            true => "no inputs".into(),
            false => "loading…".into(),
        });
        return note(app, frame, inner, &text);
    };
    match app.explain.compare {
        true => draw_compare(app, frame, inner, &input),
        false => draw_single(app, frame, inner, &input),
    }
}

fn draw_inputs(app: &mut App, frame: &mut Frame, area: Rect) {
    let block = panel(app, format!(" inputs ({}) ", app.entries.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Only the visible window of a long list is built.
    let height = inner.height as usize;
    let first = app.explain.input.saturating_sub(height.saturating_sub(1));
    let items: Vec<ListItem> = app
        .entries
        .iter()
        .skip(first)
        .take(height)
        .map(|e| ListItem::new(e.name.clone()))
        .collect();
    let list = List::new(items).highlight_style(app.theme.selected);
    let mut state = ListState::default().with_selected(Some(app.explain.input - first));
    frame.render_stateful_widget(list, inner, &mut state);
    for row in 0..inner
        .height
        .min((app.entries.len() - first.min(app.entries.len())) as u16)
    {
        app.hits.push((
            Rect::new(inner.x, inner.y + row, inner.width, 1),
            Hit::Input(first + row as usize),
        ));
    }
}

fn draw_single(app: &mut App, frame: &mut Frame, area: Rect, input: &Arc<InputView>) {
    let [left, right] = Layout::horizontal([Constraint::Fill(1); 2]).areas(area);
    let [left_caption, left_picture] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(left);
    let [right_caption, right_picture] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(right);
    frame.render_widget(
        Paragraph::new(input.caption()).style(app.theme.muted),
        left_caption,
    );
    match &input.text {
        Some(chars) => {
            let text = Paragraph::new(painted(chars, None)).wrap(Wrap { trim: false });
            frame.render_widget(text, left_picture);
        }
        None => {
            let original = picture(app, format!("input:{}", app.explain.input), || {
                input.original.clone()
            });
            app.pictures.draw(frame, left_picture, original);
        }
    }
    let key = app.explain_key();
    let Some(explained) = app.explained.get(&key).cloned() else {
        let text = progress(app, "explain").unwrap_or_else(|| "…".into());
        return note(app, frame, right_picture, &text);
    };
    let caption = format!("{} → {}", app.explain.method, explained.target);
    frame.render_widget(
        Paragraph::new(caption).style(app.theme.muted),
        right_caption,
    );
    let name = format!("{}:{key:?}", key.input);
    draw_map(app, frame, right_picture, &name, input, &explained);
}

/// `explained` over `input`: its characters coloured by the map for a text
/// input, else the heatmap over the picture.
fn draw_map(
    app: &mut App,
    frame: &mut Frame,
    area: Rect,
    name: &str,
    input: &InputView,
    explained: &Explained,
) {
    if let (Some(chars), Some(values)) = (&input.text, &explained.over_text) {
        let text = Paragraph::new(painted(chars, Some(values))).wrap(Wrap { trim: false });
        return frame.render_widget(text, area);
    }
    let id = heat(app, name, input, explained);
    app.pictures.draw(frame, area, id);
}

fn draw_compare(app: &mut App, frame: &mut Frame, area: Rect, input: &Arc<InputView>) {
    let key = app.explain_key();
    let Some(rows) = app.compared.get(&key).cloned() else {
        let text = progress(app, "compare").unwrap_or_else(|| "…".into());
        return note(app, frame, area, &text);
    };
    let columns = rows.len().clamp(1, 3);
    let lines = rows.len().div_ceil(columns);
    let bands = Layout::vertical(vec![Constraint::Fill(1); lines]).split(area);
    let has_mask = input.mask.is_some();
    for (i, row) in rows.iter().enumerate() {
        let cells =
            Layout::horizontal(vec![Constraint::Fill(1); columns]).split(bands[i / columns]);
        let [caption, scores, picture] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Fill(1),
        ])
        .areas(cells[i % columns]);
        frame.render_widget(
            Paragraph::new(row.method.clone()).style(app.theme.accent),
            caption,
        );
        let s = &row.scores;
        let mut text = format!("del {:.2} ins {:.2}", s.deletion_auc, s.insertion_auc);
        if has_mask {
            let hit = if s.pointing_hit == Some(true) {
                "hit"
            } else {
                "miss"
            };
            text.push_str(&format!(" {hit}"));
        }
        frame.render_widget(Paragraph::new(text).style(app.theme.muted), scores);
        let name = format!("{}:{key:?}:{}", key.input, row.method);
        draw_map(app, frame, picture, &name, input, &row.explained);
    }
}

/// The picture `name`, made by `make` the first time it is asked for.
fn picture(app: &mut App, name: String, make: impl FnOnce() -> image::RgbImage) -> PictureId {
    if let Some(id) = app.drawn.get(&name) {
        return *id;
    }
    let id = app.pictures.add(make());
    app.drawn.insert(name, id);
    id
}

/// The heatmap of `explained` over `input` in the current colormap.
fn heat(app: &mut App, name: &str, input: &InputView, explained: &Explained) -> PictureId {
    let (colormap, outline) = (app.explain.colormap, app.explain.outline);
    let model = app
        .model
        .clone()
        .expect("explanations come after the model");
    picture(app, format!("heat:{name}:{colormap}:{outline}"), || {
        // A map that cannot be drawn is drawn black; the method's error would have
        // come earlier, in its job.
        work::draw(&model, input, explained, (colormap, outline))
            .unwrap_or_else(|_| input.original.clone())
    })
}

/// What the method says of its map (LIME's fit, LRP's conservation) and whether its
/// superpixels' borders are drawn.
fn map_note(e: &Explained, outline: bool) -> Option<String> {
    let mut parts = Vec::new();
    parts.extend(e.notes.r2.map(|r2| format!("fit R² {r2:.2}")));
    parts.extend(
        e.notes
            .conservation
            .map(|k| format!("sums to {:.0}% of target", k * 100.0)),
    );
    if e.notes.segmentation.is_some() {
        parts.push(if outline { "borders (o)" } else { "o: borders" }.to_owned());
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn draw_side(app: &mut App, frame: &mut Frame, area: Rect) {
    let [about, top, params] = Layout::vertical([
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Fill(1),
    ])
    .areas(area);
    let theme = app.theme.clone();
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<9}"), theme.muted),
            Span::raw(value),
        ])
    };
    let descriptor = registry::resolve(&app.explain.method)
        .ok()
        .and_then(|d| d.first().copied());
    let key = app.explain_key();
    let timing = match app.explained.get(&key) {
        Some(e) => (
            format!("{:.1} ms · {} passes", e.ms, e.passes),
            format!("{:.2e} … {:.2e}", e.raw_range.0, e.raw_range.1),
        ),
        None => ("-".into(), "-".into()),
    };
    let mut lines = vec![
        field("method", format!("{} (m/M)", app.explain.method)),
        Line::styled(descriptor.map_or("", |d| d.about).to_string(), theme.muted),
        field(
            "target",
            format!("{} (t, T)", target_text(&app.explain.target)),
        ),
        field(
            "layer",
            format!("{} (y)", app.cam_layer().unwrap_or_else(|| "-".into())),
        ),
        field("colormap", format!("{} (c)", app.explain.colormap)),
        field(
            "view",
            format!(
                "{} (v)",
                if app.explain.compare {
                    "compare"
                } else {
                    "single"
                }
            ),
        ),
        field("time", timing.0),
        field("range", timing.1),
    ];
    if let Some(note) = app
        .explained
        .get(&key)
        .and_then(|e| map_note(e, app.explain.outline))
    {
        lines.push(field("note", note));
    }
    if let Some(d) = descriptor {
        lines.push(Line::styled(d.citation.to_string(), theme.muted));
    }
    let block = panel(app, " explanation ");
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        about,
    );

    let block = panel(app, " top-5 ");
    let lines: Vec<Line> = match app.inputs.get(&app.explain.input) {
        Some(input) => input
            .top
            .iter()
            .map(|p| Line::from(format!("{:>5.1}%  {}", p.p * 100.0, p.label)))
            .collect(),
        None => vec![],
    };
    frame.render_widget(Paragraph::new(lines).block(block), top);

    let title = match app.explain.editing {
        true => " parameters · j/k, enter edits, esc ",
        false => " parameters (p) ",
    };
    let block = panel(app, title);
    let inner = block.inner(params);
    frame.render_widget(block, params);
    let items: Vec<ListItem> = app
        .method_params()
        .into_iter()
        .map(|(p, value)| ListItem::new(format!("{:<14} {value}", p.name)))
        .collect();
    if items.is_empty() {
        return note(app, frame, inner, "no parameters");
    }
    for row in 0..inner.height.min(items.len() as u16) {
        app.hits.push((
            Rect::new(inner.x, inner.y + row, inner.width, 1),
            Hit::Parameter(row as usize),
        ));
    }
    let list = List::new(items).highlight_style(theme.selected);
    let selected = app.explain.editing.then_some(app.explain.param_cursor);
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, inner, &mut state);
}
