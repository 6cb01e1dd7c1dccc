//! Every screen drawn on ratatui's headless backend at the end-to-end test's size,
//! snapshotted (insta), on the embedded demo model; and the colours of a heatmap.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui_image::picker::Picker;
use unitscope::data::Source;

use super::app::{App, COMPARE, Setup};
use super::keys::Keymap;
use super::pictures::Pictures;
use super::theme::Theme;
use super::{Screen, view};

fn app() -> App {
    let mut app = App::new(Setup {
        card: None,
        model: None,
        source: Source::Demo(64),
        theme: Theme::built_in(),
        keys: Keymap::default(),
        pictures: Pictures::new(Picker::halfblocks()),
        compare: COMPARE.iter().map(|m| m.to_string()).collect(),
        notices: Vec::new(),
    });
    settle(&mut app);
    app
}

/// Takes in results until no job runs.
fn settle(app: &mut App) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while app.busy() {
        assert!(
            Instant::now() < deadline,
            "jobs still running after 5 minutes"
        );
        app.pump(Duration::from_millis(5));
    }
    if let Some(message) = app.status.as_ref().filter(|m| m.error) {
        panic!("{}", message.text);
    }
}

fn press(app: &mut App, keys: &[KeyCode]) {
    for &code in keys {
        app.key(KeyEvent::new(code, KeyModifiers::NONE));
        settle(app);
    }
}

fn draw(app: &mut App, (w, h): (u16, u16)) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| view::draw(app, f)).unwrap();
    terminal
}

/// The snapshot of `app`'s frame, the method's time masked (it varies run to run,
/// and its width with it).
fn snapshot(name: &str, app: &mut App) {
    let terminal = draw(app, (120, 40));
    insta::with_settings!({filters => vec![(r"time     [^│]*│", "time     [masked]│")]}, {
        insta::assert_snapshot!(name, terminal.backend());
    });
}

use KeyCode::{Char, Enter, Tab};

#[test]
fn every_screen_and_overlay() {
    let mut app = app();
    snapshot("model", &mut app);
    press(&mut app, &[Char('j'), Char('j'), Char('j'), Enter]);
    assert_eq!(app.screen, Screen::Units);
    snapshot("units", &mut app);
    press(&mut app, &[Char('s'), Char('s')]);
    snapshot("units_by_max", &mut app);
    press(&mut app, &[Enter]);
    assert_eq!(app.screen, Screen::Unit);
    snapshot("unit", &mut app);
    press(&mut app, &[Tab]);
    assert_eq!(app.screen, Screen::Explain);
    snapshot("explain", &mut app);
    press(&mut app, &[Char('p')]);
    snapshot("explain_parameters", &mut app);
    press(&mut app, &[KeyCode::Esc, Char('v')]);
    snapshot("explain_compare", &mut app);
    press(&mut app, &[Char('?')]);
    snapshot("help", &mut app);
    press(
        &mut app,
        &[Char('x'), Char(':'), Char('t'), Char('h'), Char('e')],
    );
    snapshot("palette", &mut app);
    press(&mut app, &[KeyCode::Esc, Tab]);
    assert_eq!(app.screen, Screen::Trust);
    snapshot("trust", &mut app);
}

#[test]
fn a_tiny_terminal_says_so() {
    let mut app = app();
    for size in [(20, 5), (59, 40), (120, 15), (1, 1)] {
        let terminal = draw(&mut app, size);
        let text = format!("{}", terminal.backend());
        assert!(text.contains("too") || size == (1, 1), "{size:?}: {text}");
    }
    insta::assert_snapshot!("too_small", draw(&mut app, (20, 5)).backend());
}

/// The heatmap pane is drawn in colour from the map: its cells are 24-bit colours
/// that differ from the plain input's beside it, and a colormap key changes them
/// while the input's stay.
#[test]
fn the_heatmap_is_drawn_in_its_colormap() {
    let mut app = app();
    press(&mut app, &[Tab, Tab, Tab]);
    assert_eq!(app.screen, Screen::Explain);
    let before = draw(&mut app, (120, 40)).backend().buffer().clone();
    let (input, heat) = panes(&before);
    let input_colours = colours(&before, input);
    let heat_colours = colours(&before, heat);
    assert!(
        heat_colours.iter().all(|c| matches!(c, Color::Rgb(..))),
        "not 24-bit colour"
    );
    let distinct: std::collections::HashSet<_> = heat_colours.iter().collect();
    assert!(
        distinct.len() > 20,
        "a flat heatmap: {} colours",
        distinct.len()
    );
    let differing = input_colours
        .iter()
        .zip(&heat_colours)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > heat_colours.len() / 2,
        "the overlay left the input as it was"
    );

    press(&mut app, &[Char('c')]);
    let after = draw(&mut app, (120, 40)).backend().buffer().clone();
    assert_eq!(
        colours(&after, input),
        input_colours,
        "the input changed with the colormap"
    );
    let changed = colours(&after, heat)
        .iter()
        .zip(&heat_colours)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        changed > heat_colours.len() / 2,
        "the colormap key left the heatmap as it was"
    );
}

/// The input and heatmap pictures: the half-block cells of the middle pane's left
/// and right halves, as rectangles of equal size.
fn panes(buffer: &Buffer) -> (Rect, Rect) {
    let picture_rows: Vec<u16> = (0..buffer.area.height)
        .filter(|&y| {
            (23..90).any(|x| buffer[(x, y)].symbol() == "▀" || buffer[(x, y)].symbol() == "▄")
        })
        .collect();
    let (top, bottom) = (picture_rows[0], *picture_rows.last().unwrap());
    let columns = |range: std::ops::Range<u16>| -> Vec<u16> {
        range
            .filter(|&x| (top..=bottom).any(|y| buffer[(x, y)].symbol() == "▀"))
            .collect()
    };
    let middle = 23 + (81 - 23) / 2;
    let (left, right) = (columns(23..middle), columns(middle..81));
    let width = left.len().min(right.len()) as u16;
    let height = bottom - top + 1;
    (
        Rect::new(left[0], top, width, height),
        Rect::new(right[0], top, width, height),
    )
}

fn colours(buffer: &Buffer, area: Rect) -> Vec<Color> {
    area.positions()
        .flat_map(|p| [buffer[p].fg, buffer[p].bg])
        .collect()
}

/// `e` writes what each screen shows under the headless commands' names.
#[test]
fn export_writes_the_views_files() {
    let mut app = app();
    let dir = tempfile::tempdir().unwrap();
    app.export_dir = dir.path().to_owned();
    press(&mut app, &[Char('e')]);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("info.json")).unwrap()).unwrap();
    let layers = app.model.as_ref().unwrap().layers().unwrap().len();
    assert_eq!(info["layers"].as_array().unwrap().len(), layers, "{info}");
    press(&mut app, &[Tab, Tab, Tab, Char('e')]);
    assert_eq!(app.screen, Screen::Explain);
    let file = |suffix: &str| {
        dir.path()
            .join(format!("explain/scene0.grad-cam.predicted.{suffix}"))
    };
    for suffix in ["png", "json", "raw.features.10.npy"] {
        let path = file(suffix);
        assert!(
            path.exists(),
            "{} missing; status: {:?}",
            path.display(),
            app.status
        );
    }
    let png = image::open(file("png")).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file("json")).unwrap()).unwrap();
    assert_eq!(entry["method"], "grad-cam");
    assert!(
        app.status
            .as_ref()
            .is_some_and(|m| m.text.starts_with("exported 3 file(s)"))
    );
}

/// Clicks land on what the last frame drew there: a tab switches screens, a
/// second click on a layer opens it, the wheel moves the selection.
#[test]
fn the_mouse_selects_what_it_clicks() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = app();
    let mut terminal = draw(&mut app, (120, 40));
    let text = format!("{}", terminal.backend());
    let click = |app: &mut App, (column, row): (u16, u16)| {
        let kind = MouseEventKind::Down(MouseButton::Left);
        app.mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        });
        settle(app);
    };
    // The Explain tab, where the first line shows it.
    let first_line = text.lines().next().unwrap();
    let column = first_line.find("Explain").unwrap() as u16 - 1;
    click(&mut app, (column, 0));
    assert_eq!(app.screen, Screen::Explain);
    terminal.draw(|f| view::draw(&mut app, f)).unwrap();
    // Back on the Model screen, the wheel and two clicks on the fourth layer row.
    app.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::NONE));
    app.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::NONE));
    app.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::NONE));
    assert_eq!(app.screen, Screen::Model);
    terminal.draw(|f| view::draw(&mut app, f)).unwrap();
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    };
    app.mouse(wheel);
    assert_eq!(app.layer_cursor, 1);
    // Rows: the tab line, the border, the header, then layers from 0.
    click(&mut app, (5, 3 + 3));
    assert_eq!((app.layer_cursor, app.screen), (3, Screen::Model));
    click(&mut app, (5, 3 + 3));
    assert_eq!(app.screen, Screen::Units);
    assert_eq!(app.units.layer.as_deref(), Some("features.3"));
}
