//! Drawing: the tab bar, the current screen, the status bar and any overlay, from
//! the app's state. Views read the state and record where clickable things landed
//! ([`App::hits`]); they never start work.

mod concepts;
mod explain;
mod model;
mod overlay;
mod text;
mod trust;
mod unit;
mod units;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::Screen;
use super::app::{App, Hit};
use super::keys::Action;

/// The smallest terminal the screens are laid out for.
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// Draws the whole frame.
pub fn draw(app: &mut App, frame: &mut Frame) {
    app.hits.clear();
    let area = frame.area();
    frame.render_widget(Block::new().style(app.theme.text), area);
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        return too_small(app, frame, area);
    }
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(app, frame, tabs);
    match app.screen {
        Screen::Model => model::draw(app, frame, body),
        Screen::Units => units::draw(app, frame, body),
        Screen::Unit => unit::draw(app, frame, body),
        Screen::Concepts => concepts::draw(app, frame, body),
        Screen::Explain => explain::draw(app, frame, body),
        Screen::Trust => trust::draw(app, frame, body),
    }
    draw_status(app, frame, status);
    overlay::draw(app, frame, area);
}

fn too_small(app: &App, frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small: {}x{}, need {}x{} (q quits)",
        area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
    );
    let paragraph = Paragraph::new(text)
        .style(app.theme.warning)
        .wrap(Wrap { trim: true });
    frame.render_widget(paragraph, area);
}

fn draw_tabs(app: &mut App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(" unitscope ", app.theme.accent)];
    let mut x = area.x + 11;
    for screen in Screen::ALL {
        let title = format!(" {} ", screen.title());
        let style = if *screen == app.screen {
            app.theme.selected
        } else {
            app.theme.muted
        };
        let width = title.chars().count() as u16;
        app.hits
            .push((Rect::new(x, area.y, width, 1), Hit::Tab(*screen)));
        x += width + 1;
        spans.push(Span::styled(title, style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(app.theme.bar), area);
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let model = match &app.model {
        Some(m) => m.name().to_string(),
        None => "loading model…".into(),
    };
    let device = device_status(&app.device);
    let mut spans = vec![Span::raw(format!(
        " {model} · {device} · {} ",
        app.pictures.protocol()
    ))];
    let mut running: Vec<_> = app.running.values().collect();
    running.sort_by_key(|r| r.slot);
    if let Some(job) = running.first() {
        let progress = match &job.progress {
            Some(p) if p.total > 0 => format!(" {}/{} {}", p.done, p.total, p.note),
            Some(p) => format!(" {}", p.note),
            None => String::new(),
        };
        let more = match running.len() {
            1 => String::new(),
            n => format!(" (+{})", n - 1),
        };
        spans.push(Span::styled(
            format!("│ ⟳ {}{progress}{more} (esc cancels) ", job.slot),
            theme.warning,
        ));
    }
    if let Some(message) = &app.status {
        let style = if message.error { theme.error } else { theme.ok };
        spans.push(Span::styled(format!("│ {} ", message.text), style));
    }
    let hint = format!(
        "{} help  {} commands  {} quit ",
        app.keys.label(Action::Help),
        app.keys.label(Action::Palette),
        app.keys.label(Action::Quit)
    );
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(hint.chars().count() as u16),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.bar), left);
    frame.render_widget(
        Paragraph::new(hint)
            .style(theme.bar)
            .alignment(Alignment::Right),
        right,
    );
}

/// The device as the status bar shows it: its name, and on a GPU the memory in use.
fn device_status(device: &candle_core::Device) -> String {
    let name = unitscope::model::device::describe(device);
    match unitscope::model::device::memory(device) {
        Some((used, total)) => {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            format!("{name} {:.1}/{:.0} GiB", gib(used), gib(total))
        }
        None => name,
    }
}

/// A bordered block titled `title` in the theme's colours.
fn panel<'a>(app: &App, title: impl Into<Line<'a>>) -> Block<'a> {
    Block::bordered()
        .title(title)
        .border_style(app.theme.border)
        .title_style(app.theme.accent)
        .style(app.theme.text)
}

/// A centred one-line note, for empty and waiting panes.
fn note(app: &App, frame: &mut Frame, area: Rect, text: &str) {
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(area);
    let paragraph = Paragraph::new(text.to_string())
        .style(app.theme.muted)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true });
    frame.render_widget(paragraph, middle);
}

/// A progress line for the job of `slot`, if one runs.
pub fn progress(app: &App, slot: &str) -> Option<String> {
    let job = app.running.values().find(|r| r.slot == slot)?;
    Some(match &job.progress {
        Some(p) if p.total > 0 => format!("computing… {}/{} {}", p.done, p.total, p.note),
        _ => "computing…".into(),
    })
}
