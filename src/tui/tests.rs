//! Every screen drawn on ratatui's headless backend at the end-to-end test's size,
//! snapshotted (insta), on the embedded demo model; and the colours of a heatmap.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui_image::picker::Picker;
use unitscope::data::Source;
use unitscope::model::ModelCard;

use super::app::{App, COMPARE, Setup};
use super::keys::Keymap;
use super::pictures::Pictures;
use super::theme::Theme;
use super::{Screen, view};

fn app() -> App {
    let mut app = app_on(None, Source::Demo(64));
    settle(&mut app);
    app
}

/// The inspector on a model card and a source, its jobs just started; units are
/// not visualized (their pictures would tie the snapshots to float rounding).
fn app_on(card: Option<(PathBuf, ModelCard)>, source: Source) -> App {
    App::new(setup(card, source))
}

fn setup(card: Option<(PathBuf, ModelCard)>, source: Source) -> Setup {
    Setup {
        card,
        model: None,
        source,
        theme: Theme::built_in(),
        keys: Keymap::default(),
        pictures: Pictures::new(Picker::halfblocks()),
        compare: COMPARE.iter().map(|m| m.to_string()).collect(),
        cache: None,
        visualize: false,
        dissect: true,
        concepts: None,
        notices: Vec::new(),
        device: candle_core::Device::Cpu,
    }
}

/// Takes in results until `layer`'s statistics have come (its pictures may not).
fn wait_for_layer(app: &mut App, layer: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !app.layers.contains_key(layer) {
        assert!(
            Instant::now() < deadline,
            "no layer statistics in 5 minutes"
        );
        app.pump(Duration::from_millis(5));
    }
}

/// Takes in results until no job runs; an error on the status bar fails the test.
fn settle(app: &mut App) {
    settle_quietly(app);
    if let Some(message) = app.status.as_ref().filter(|m| m.error) {
        panic!("{}", message.text);
    }
}

/// Takes in results until no job runs.
fn settle_quietly(app: &mut App) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while app.busy() {
        assert!(
            Instant::now() < deadline,
            "jobs still running after 5 minutes"
        );
        app.pump(Duration::from_millis(5));
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
    assert_eq!(app.screen, Screen::Concepts);
    snapshot("concepts", &mut app);
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

/// The Units grid's thumbnails come visible cells first: scrolled to the end of a
/// layer, the next thumbnail job is for exactly the cells on screen; then the rest
/// of the layer follows without a key.
#[test]
fn thumbnails_come_visible_cells_first() {
    let mut app = app();
    let keys = [Char('j'); 10].into_iter().chain([Enter]);
    for code in keys {
        app.key(KeyEvent::new(code, KeyModifiers::NONE));
    }
    let layer = "features.10".to_string();
    assert_eq!(app.units.layer.as_ref(), Some(&layer));
    wait_for_layer(&mut app, &layer);
    draw(&mut app, (120, 40));
    app.key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
    let shown = app.shown_units();
    let visible = app.visible_positions(shown.len());
    assert_eq!(visible, 88..128, "the last five rows of eight at 120x40");
    let asked: Vec<_> = shown[visible]
        .iter()
        .filter(|&&u| !app.thumbnails.contains_key(&(layer.clone(), u)))
        .collect();
    assert!(
        !asked.is_empty(),
        "the end of the layer was made before it was seen"
    );
    let job = app.running.values().find(|r| r.slot == "thumbnails");
    assert_eq!(
        job.map(|r| r.what.clone()),
        Some(format!("{layer} {asked:?}"))
    );
    settle(&mut app);
    let made = (0..128)
        .filter(|&u| app.thumbnails.contains_key(&(layer.clone(), u)))
        .count();
    assert_eq!(made, 128, "every unit gets its thumbnail in the background");
}

/// A model that fails to load says why on the status bar and leaves the embedded
/// demo model and its scenes usable.
#[test]
fn a_model_that_fails_to_load_leaves_the_demo_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.toml");
    let text = "architecture = \"plain_cnn\"\nweights = \"gone.safetensors\"\nnum_classes = 3\n";
    let card = ModelCard::parse(text, &path).unwrap();
    let folder = dir.path().join("images");
    std::fs::create_dir(&folder).unwrap();
    let mut app = app_on(Some((path, card)), Source::Folder(folder));
    settle_quietly(&mut app);
    let status = app.status.as_ref().expect("no message on the status bar");
    assert!(status.error, "{}", status.text);
    assert!(
        status.text.contains("gone.safetensors")
            && status
                .text
                .contains("opened the embedded demo model instead"),
        "{}",
        status.text
    );
    assert!(app.card.is_none() && app.model.is_some());
    assert_eq!(app.entries.len(), 64, "the demo scenes replace the folder");
    app.status = None;
    press(&mut app, &[Tab, Tab, Tab, Tab]);
    assert_eq!(app.screen, Screen::Explain);
    assert!(app.inputs.contains_key(&0) && !app.explained.is_empty());
}

/// A folder of 10,000 images opens without reading them: all but the first 64 are
/// not images at all, and the inspector shows the first one explained; stepping
/// onto a broken one says so on the status bar and the others stay usable.
#[test]
fn a_folder_of_ten_thousand_images_opens_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let picture =
        image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 0]));
    for i in 0..10_000 {
        let path = dir.path().join(format!("img{i:05}.png"));
        if i < 64 {
            picture.save(&path).unwrap();
        } else {
            std::fs::write(&path, b"not a png").unwrap();
        }
    }
    let mut app = app_on(None, Source::Folder(dir.path().to_path_buf()));
    assert_eq!(app.entries.len(), 10_000);
    settle(&mut app);
    press(&mut app, &[Tab, Tab, Tab, Tab]);
    assert_eq!(app.screen, Screen::Explain);
    assert_eq!(app.inputs.len(), 1, "only the shown input is read");
    assert!(!app.explained.is_empty());
    app.key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
    settle_quietly(&mut app);
    assert_eq!(app.explain.input, 9_999);
    let status = app.status.as_ref().expect("no message on the status bar");
    assert!(
        status.error && status.text.contains("img09999.png"),
        "{}",
        status.text
    );
    press(&mut app, &[KeyCode::Home]);
    assert!(app.inputs.contains_key(&0));
    assert!(app.status.is_none(), "the broken image's error outlives it");
    assert!(app.inputs.len() <= 2, "{} inputs read", app.inputs.len());
}

/// Units are visualized in the background, visible cells first: the first
/// visualization job after the layer's statistics is the cells on screen; every
/// unit gets one; the unit card shows it, and `d` adds four diverse ones.
#[test]
fn units_get_feature_visualizations_visible_cells_first() {
    let mut app = App::new(Setup {
        visualize: true,
        ..setup(None, Source::Demo(64))
    });
    settle(&mut app);
    for code in [Char('j'); 3].into_iter().chain([Enter]) {
        app.key(KeyEvent::new(code, KeyModifiers::NONE));
    }
    let layer = "features.3".to_string();
    wait_for_layer(&mut app, &layer);
    // A small terminal: a few of the layer's 32 cells on screen.
    draw(&mut app, (80, 24));
    app.key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
    let shown = app.shown_units();
    let visible: Vec<usize> = shown[app.visible_positions(shown.len())].to_vec();
    assert!(visible.len() < 32 && visible.contains(&31), "{visible:?}");
    let job = app.running.values().find(|r| r.slot == "visuals");
    assert_eq!(
        job.map(|r| r.what.clone()),
        Some(format!("{layer} {visible:?}"))
    );
    settle(&mut app);
    assert_eq!(
        (0..32)
            .filter(|&u| app.visuals.contains_key(&(layer.clone(), u)))
            .count(),
        32
    );
    press(&mut app, &[Enter]);
    assert_eq!(app.screen, Screen::Unit);
    let text = format!("{}", draw(&mut app, (120, 40)).backend());
    assert!(
        text.contains("feature visualization · d: diverse"),
        "{text}"
    );
    press(&mut app, &[Char('d')]);
    let unit = app.unit.unwrap();
    assert_eq!(
        app.diverse.get(&(layer.clone(), unit)).map(Vec::len),
        Some(4)
    );
    let text = format!("{}", draw(&mut app, (120, 40)).backend());
    assert!(text.contains("feature visualization · diverse"), "{text}");
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
    press(&mut app, &[Tab, Tab, Tab, Tab]);
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
    press(&mut app, &[Tab, Tab, Tab, Tab, Char('e')]);
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
    for _ in 0..4 {
        app.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::NONE));
    }
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

/// The text of a drawn frame, row by row.
fn frame_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Network Dissection in the inspector, on the demo's colour layer: each grid cell
/// carries its unit's concept and IoU; `/red` finds the units labelled red; the
/// Concepts screen counts the layer's detectors and Enter lists a concept's units;
/// the unit card shows the concept, the runners-up and its evidence pictures. A
/// broken cache file is made again.
#[test]
fn units_carry_their_concepts() {
    let cache = tempfile::tempdir().unwrap();
    let with_cache = || Setup {
        cache: Some(cache.path().to_owned()),
        ..setup(None, Source::Demo(64))
    };
    let mut app = App::new(with_cache());
    settle(&mut app);
    press(
        &mut app,
        &[Char('j'), Char('j'), Char('j'), Char('j'), Enter],
    );
    assert_eq!(app.units.layer.as_deref(), Some("features.4"));
    let dissected = app.open_dissection().expect("dissected").clone();
    let (detectors, concepts) = dissected.layer.summary();
    assert!(detectors > 0, "features.4 has colour detectors");

    let text = frame_text(&draw(&mut app, (120, 40)));
    let first = &dissected.layer.units[0];
    let caption = format!("{:<8}{:>5.2}", first.best.label, first.best.iou);
    assert!(text.contains(&caption), "no `{caption}` in\n{text}");

    press(
        &mut app,
        &[Char('/'), Char('r'), Char('e'), Char('d'), Enter],
    );
    let reds: Vec<usize> = (0..dissected.layer.units.len())
        .filter(|&u| dissected.layer.units[u].best.label.contains("red"))
        .collect();
    let mut shown = app.shown_units();
    shown.sort_unstable();
    assert!(!reds.is_empty());
    assert_eq!(shown, reds);

    press(&mut app, &[Tab, Tab]);
    assert_eq!(app.screen, Screen::Concepts);
    let rows = app.concept_rows();
    assert_eq!(rows.len(), concepts);
    assert_eq!(rows.iter().map(|r| r.units.len()).sum::<usize>(), detectors);
    let text = frame_text(&draw(&mut app, (120, 40)));
    let headline = format!("{detectors}/{} units covering {concepts} concepts", 32);
    assert!(text.contains(&headline), "no `{headline}` in\n{text}");

    press(&mut app, &[Enter]);
    assert_eq!(app.screen, Screen::Units);
    assert_eq!(app.units.filter, format!("={}", rows[0].label));
    let mut detectors = app.shown_units();
    detectors.sort_unstable();
    assert_eq!(
        detectors, rows[0].units,
        "the concept's detectors, no other unit"
    );

    press(&mut app, &[Enter]);
    assert_eq!(app.screen, Screen::Unit);
    let unit = app.unit.unwrap();
    let pictures = &app.evidence[&("features.4".to_string(), unit)];
    assert_eq!(pictures.len(), dissected.layer.tally.top_images(unit).len());
    assert!(!pictures.is_empty());
    let text = frame_text(&draw(&mut app, (120, 40)));
    let result = &dissected.layer.units[unit];
    let line = format!(
        "{} ({})  IoU {:.3}",
        result.best.label, result.best.category, result.best.iou
    );
    assert!(text.contains(&line), "no `{line}` in\n{text}");
    let runner_up = &dissected.ranked[unit][1];
    assert!(text.contains(&format!("{:.3}", runner_up.2)), "{text}");

    // A cache file cut short is not trusted: the next inspector dissects again
    // and gets the same labels.
    let file = std::fs::read_dir(cache.path().join("dissect"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"{\"key\": ").unwrap();
    let mut again = App::new(with_cache());
    settle(&mut again);
    press(
        &mut again,
        &[Char('j'), Char('j'), Char('j'), Char('j'), Enter],
    );
    assert_eq!(
        again.open_dissection().unwrap().layer.units,
        dissected.layer.units
    );
    assert!(std::fs::read(&file).unwrap().len() > 100, "rewritten whole");
}

/// `o` draws LIME's superpixels over its map, and the side panel gives its fit's
/// R² with the key.
#[test]
fn superpixel_borders_come_and_go_with_o() {
    let mut app = app();
    press(&mut app, &[Tab, Tab, Tab, Tab]);
    app.explain.method = "lime".into();
    app.explain.params.set(
        "perturbations",
        unitscope::attribution::descriptor::Value::Integer(64),
    );
    app.request_current();
    settle(&mut app);
    let heat = |app: &mut App| {
        let terminal = draw(app, (120, 40));
        let buffer = terminal.backend().buffer().clone();
        (colours(&buffer, panes(&buffer).1), frame_text(&terminal))
    };
    let (before, text) = heat(&mut app);
    assert!(
        text.contains("fit R²") && text.contains("o: borders"),
        "{text}"
    );
    press(&mut app, &[Char('o')]);
    let (after, text) = heat(&mut app);
    assert!(text.contains("borders (o)"), "{text}");
    // The borders brighten the cells they cross (lines thinner than a cell blend in).
    let lighter = |a: &Color, b: &Color| match (a, b) {
        (Color::Rgb(r0, g0, b0), Color::Rgb(r1, g1, b1)) => {
            (*r1 as u32 + *g1 as u32 + *b1 as u32) > (*r0 as u32 + *g0 as u32 + *b0 as u32)
        }
        _ => false,
    };
    let brighter = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| lighter(a, b))
        .count();
    assert!(
        brighter > before.len() / 10,
        "{brighter} of {} cells brighter",
        before.len()
    );
    press(&mut app, &[Char('o')]);
    assert_eq!(heat(&mut app).0, before);
}
