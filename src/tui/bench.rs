//! `unitscope bench tui`: the inspector driven by scripted keys on ratatui's
//! headless backend, timed: the first frame, the key-to-frame time while a
//! SmoothGrad job runs, and a method key to its heatmap on screen next to the
//! method's own time, on the demo model and on ResNet-18 at 224 px.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use image::imageops;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui_image::picker::Picker;
use unitscope::attribution::descriptor::Value;
use unitscope::data::Source;
use unitscope::model::{Architecture, Model};

use super::app::{App, COMPARE, Setup};
use super::keys::Keymap;
use super::pictures::Pictures;
use super::theme::Theme;
use super::{Screen, view};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Keys pressed while SmoothGrad runs.
    #[arg(long, default_value_t = 600)]
    keys: usize,
    /// SmoothGrad's samples for that job (long enough to outlast the keys).
    #[arg(long, default_value_t = 4000)]
    samples: u64,
}

/// The terminal size the bench draws at: the end-to-end test's.
const SIZE: (u16, u16) = (120, 40);

pub fn run(args: &Args) -> Result<()> {
    super::work::yield_to_the_screen();
    // 1. The first frame, before the model has loaded, and the first with it.
    let start = Instant::now();
    let mut app = App::new(setup(Source::Demo(64), None));
    let mut terminal = Terminal::new(TestBackend::new(SIZE.0, SIZE.1))?;
    terminal.draw(|f| view::draw(&mut app, f))?;
    let first = start.elapsed();
    wait(&mut app, |app| app.model.is_some())?;
    terminal.draw(|f| view::draw(&mut app, f))?;
    let loaded = start.elapsed();
    println!(
        "first frame (demo, {}x{}): {:.1} ms (goal <= 200 ms); with the model loaded: {:.1} ms",
        SIZE.0,
        SIZE.1,
        ms(first),
        ms(loaded)
    );

    // 2. Keys while SmoothGrad runs.
    open_explain(&mut app, &mut terminal)?;
    app.explain
        .params
        .set("samples", Value::Integer(args.samples));
    set_method(&mut app, "smoothgrad");
    ensure!(app.busy(), "the SmoothGrad job did not start");
    press(&mut app, KeyCode::Char('p'));
    let script = [
        KeyCode::Char('j'),
        KeyCode::Char('k'),
        KeyCode::Char('?'),
        KeyCode::Char('x'),
        KeyCode::Char('c'),
        KeyCode::Char(':'),
        KeyCode::Char('g'),
        KeyCode::Esc,
    ];
    let mut times = Vec::with_capacity(args.keys);
    for i in 0..args.keys {
        let t = Instant::now();
        press(&mut app, script[i % script.len()]);
        app.pump(Duration::ZERO);
        terminal.draw(|f| view::draw(&mut app, f))?;
        times.push(t.elapsed());
    }
    let still_running = app.busy();
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "key to frame while SmoothGrad ({} samples) runs: p50 {:.2} ms, p99 {:.2} ms (goal <= 16 ms), max {:.2} ms over {} keys{}",
        args.samples,
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(*times.last().expect("keys were pressed")),
        times.len(),
        if still_running {
            ""
        } else {
            " (the job ended before the keys did)"
        }
    );
    app.explain.params = Default::default();
    app.explain.editing = false;
    app.cancel_jobs();

    // 3. A method key to its heatmap on screen.
    for method in ["saliency", "grad-cam", "integrated-gradients"] {
        method_key(&mut app, &mut terminal, method, "demo")?;
    }
    // The image is read when the app asks for it: the folder lives to the end.
    let dir = tempfile::tempdir()?;
    let mut app = resnet18_app(dir.path())?;
    wait(&mut app, |app| app.model.is_some())?;
    open_explain(&mut app, &mut terminal)?;
    for method in ["saliency", "grad-cam", "integrated-gradients"] {
        method_key(&mut app, &mut terminal, method, "ResNet-18 224 px")?;
    }
    Ok(())
}

fn setup(source: Source, model: Option<Arc<Model>>) -> Setup {
    Setup {
        card: None,
        model,
        source,
        theme: Theme::built_in(),
        keys: Keymap::default(),
        pictures: Pictures::new(Picker::halfblocks()),
        compare: COMPARE.iter().map(|m| m.to_string()).collect(),
        cache: None,
        visualize: false,
        dissect: false,
        concepts: None,
        notices: Vec::new(),
        device: candle_core::Device::Cpu,
    }
}

/// ResNet-18 with synthetic weights (timing does not depend on their values) on
/// one 224 px image, written into `dir`.
fn resnet18_app(dir: &std::path::Path) -> Result<App> {
    let model = Model::synthetic(Architecture::Resnet18, &candle_core::Device::Cpu)?;
    let scene = unitscope::data::world::World::new(0)
        .scene(unitscope::data::world::HELD_OUT)
        .image;
    let path = dir.join("scene.png");
    imageops::resize(&scene, 224, 224, imageops::FilterType::Triangle).save(&path)?;
    Ok(App::new(setup(
        Source::Files(vec![path]),
        Some(Arc::new(model)),
    )))
}

/// Times a method key: from the key press that selects `method` to the frame that
/// shows its heatmap.
fn method_key(
    app: &mut App,
    terminal: &mut Terminal<TestBackend>,
    method: &str,
    on: &str,
) -> Result<()> {
    let names = app.method_names();
    let i = names
        .iter()
        .position(|n| n == method)
        .expect("a registered method");
    app.explain.method = names[(i + names.len() - 1) % names.len()].clone();
    // Computed afresh, not shown from the cache.
    app.explained.clear();
    let start = Instant::now();
    press(app, KeyCode::Char('m'));
    ensure!(app.explain.method == method, "m did not select {method}");
    let key = app.explain_key();
    wait(app, |app| app.explained.contains_key(&key))?;
    terminal.draw(|f| view::draw(app, f))?;
    // With a graphics protocol the picture is encoded off the UI thread: on
    // screen means the frame after its encoding came back.
    if app.pictures.encoding() {
        wait(app, |app| !app.pictures.encoding())?;
        terminal.draw(|f| view::draw(app, f))?;
    }
    let total = start.elapsed();
    let own = app.explained[&key].ms;
    println!(
        "method key to heatmap, {on}, {method}: {:.1} ms on screen; the method itself {:.1} ms ({:.2}x)",
        ms(total),
        own,
        ms(total) / own.max(1e-9)
    );
    Ok(())
}

fn open_explain(app: &mut App, terminal: &mut Terminal<TestBackend>) -> Result<()> {
    while app.screen != Screen::Explain {
        press(app, KeyCode::Tab);
    }
    wait(app, |app| app.inputs.contains_key(&0) && !app.busy())?;
    terminal.draw(|f| view::draw(app, f))?;
    Ok(())
}

fn set_method(app: &mut App, method: &str) {
    app.explain.method = method.into();
    app.request_current();
}

fn press(app: &mut App, code: KeyCode) {
    app.key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Takes in results until `done`, at most a minute.
fn wait(app: &mut App, done: impl Fn(&App) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(app) {
        ensure!(
            Instant::now() < deadline,
            "the inspector did not get there within a minute"
        );
        app.pump(Duration::from_millis(1));
        if let Some(message) = app.status.as_ref().filter(|m| m.error) {
            anyhow::bail!("{}", message.text);
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
