//! The inspector: a keyboard-driven terminal UI over a model's layers and units,
//! its explanations and how far to trust them.
//!
//! The shape is gitui's: [`app`] owns the state and answers keys, [`work`] computes
//! on workers (the library's job runner), [`view`] draws the state, and this module
//! runs the loop between them on a terminal that is always given back as it was
//! found ([`terminal`]).

mod app;
pub mod bench;
mod config;
mod export;
mod finder;
mod keys;
mod pictures;
mod terminal;
mod theme;
mod view;
mod work;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::picker::{Picker, ProtocolType};
use unitscope::choice::Choice;
use unitscope::data::Source;
use unitscope::model::{DeviceChoice, ModelCard};

use app::{App, COMPARE, Setup};
use config::Config;
use keys::Keymap;
use pictures::Pictures;
use theme::Theme;

/// The screens, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Screen {
    Model,
    Units,
    Unit,
    /// The open layer's Network Dissection summary.
    Concepts,
    Explain,
    Trust,
}

impl Screen {
    pub const ALL: &[Self] = &[
        Self::Model,
        Self::Units,
        Self::Unit,
        Self::Concepts,
        Self::Explain,
        Self::Trust,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Model => "Model",
            Self::Units => "Units",
            Self::Unit => "Unit",
            Self::Concepts => "Concepts",
            Self::Explain => "Explain",
            Self::Trust => "Trust",
        }
    }

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    fn previous(self) -> Self {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// How pictures are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Graphics {
    /// Whatever the terminal answers for; half blocks if it answers nothing.
    #[default]
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    Halfblocks,
}

impl Choice for Graphics {
    const ALL: &'static [Self] = &[
        Self::Auto,
        Self::Kitty,
        Self::Sixel,
        Self::Iterm2,
        Self::Halfblocks,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Kitty => "kitty",
            Self::Sixel => "sixel",
            Self::Iterm2 => "iterm2",
            Self::Halfblocks => "halfblocks",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Auto => "ask the terminal (kitty, then sixel or iTerm2), else half blocks",
            Self::Kitty => "kitty graphics (kitty, WezTerm, Ghostty)",
            Self::Sixel => "sixel (foot, xterm -ti vt340, Windows Terminal)",
            Self::Iterm2 => "iTerm2 inline images",
            Self::Halfblocks => "Unicode half blocks in 24-bit colour: any terminal, tmux, screen",
        }
    }
}

/// The inspector's options (the command line with no subcommand).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Options {
    /// Model card (TOML) to inspect. Without one: the embedded demo model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A folder of PNG/JPEG images (or one image) to explain, and of files modality
    /// plugins open. Without one: held-out demo scenes.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// A built-in theme (dark, light, high-contrast) or a theme file's path.
    #[arg(long)]
    pub theme: Option<String>,
    /// How pictures are drawn in the terminal.
    #[arg(long, value_parser = crate::cli::choice::<Graphics>())]
    pub graphics: Option<Graphics>,
    /// A dataset in the Broden layout to dissect layers on (Network Dissection's
    /// concepts per unit). The demo model uses its own concept world.
    #[arg(long, value_name = "DIR")]
    pub concepts: Option<PathBuf>,
}

/// The held-out demo scenes listed when no image folder is given.
const DEMO_INPUTS: usize = 64;

/// Runs the inspector on the terminal until the user quits (or a SIGTERM/SIGHUP).
/// `device` is `--device`, which wins over the config's.
pub fn run(options: &Options, device: Option<DeviceChoice>) -> Result<()> {
    // Before any other thread starts, so that every thread inherits the handlers.
    let signals = terminal::Signals::register()?;
    let mut notices = unitscope::plugin::problems();
    let config = Config::load().unwrap_or_else(|e| {
        notices.push(format!("{e:#}; using the defaults"));
        Config::default()
    });
    let graphics = match options.graphics {
        Some(g) => g,
        None => match config
            .graphics
            .as_deref()
            .map(|g| (g, Graphics::from_name(g)))
        {
            Some((_, Some(g))) => g,
            Some((g, None)) => {
                notices.push(format!(
                    "config: graphics `{g}` is none of auto, kitty, sixel, iterm2, halfblocks"
                ));
                Graphics::Auto
            }
            None => Graphics::Auto,
        },
    };
    let device = open_device(device, &config, &mut notices)?;
    let mut setup = setup(options, &config, &mut notices);
    setup.device = device;
    let mut session = terminal::Session::enter()?;
    setup.pictures = Pictures::new(picker(graphics));
    setup.notices = notices;
    work::yield_to_the_screen();
    let mut app = App::new(setup);
    let outcome = event_loop(session.terminal(), &mut app, &signals);
    // Workers are cancelled, not joined: a method mid-batch must not hold the exit.
    session.leave();
    if let Some(signal) = signals.received() {
        std::process::exit(128 + signal);
    }
    outcome
}

/// The device from `--device`, else the config's, else `auto`. One named on the
/// command line that cannot be opened stops the inspector before the terminal is
/// taken (the error says what to do); the config's falls back to the CPU with a
/// notice, as any bad setting does.
fn open_device(
    flag: Option<DeviceChoice>,
    config: &Config,
    notices: &mut Vec<String>,
) -> Result<candle_core::Device> {
    if let Some(choice) = flag {
        let opened = choice.open()?;
        notices.extend(opened.notice);
        return Ok(opened.device);
    }
    let choice = match config.device.as_deref().map(str::parse::<DeviceChoice>) {
        None => DeviceChoice::Auto,
        Some(Ok(choice)) => choice,
        Some(Err(e)) => {
            notices.push(format!("config: device {e}; using auto"));
            DeviceChoice::Auto
        }
    };
    match choice.open() {
        Ok(opened) => {
            notices.extend(opened.notice);
            Ok(opened.device)
        }
        Err(e) => {
            notices.push(format!("config: {e:#}; running on the CPU"));
            Ok(candle_core::Device::Cpu)
        }
    }
}

/// Everything but the pictures and the device, from the options, the config and defaults; what is
/// wrong with them goes to `notices` and its default is used.
fn setup(options: &Options, config: &Config, notices: &mut Vec<String>) -> Setup {
    let theme_name = options
        .theme
        .clone()
        .or(config.theme.clone())
        .unwrap_or(theme::DEFAULT.into());
    let mut theme = Theme::load(&theme_name).unwrap_or_else(|e| {
        notices.push(format!("{e:#}; using the default theme"));
        Theme::built_in()
    });
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.without_colour();
    }
    let keys = Keymap::with_overrides(&config.keys).unwrap_or_else(|e| {
        notices.push(format!("config: {e:#}; using the default keys"));
        Keymap::default()
    });
    let source = match options.images.clone().or(config.images.clone()) {
        Some(path) if path.is_dir() => Source::Folder(path),
        Some(path) => Source::Files(vec![path]),
        None => Source::Demo(DEMO_INPUTS),
    };
    // A modality's files open with the model its plugin ships, unless one is named.
    let card_path = options
        .model
        .clone()
        .or(config.model.clone())
        .or_else(|| source.shipped_card());
    let card = card_path.and_then(|path| match ModelCard::load(&path) {
        Ok(card) => Some((path, card)),
        Err(e) => {
            notices.push(format!("{e:#}; opened the embedded demo model instead"));
            None
        }
    });
    Setup {
        card,
        model: None,
        source,
        theme,
        keys,
        pictures: Pictures::new(Picker::halfblocks()),
        compare: config
            .methods
            .clone()
            .unwrap_or_else(|| COMPARE.iter().map(|m| m.to_string()).collect()),
        cache: unitscope::units::root(),
        visualize: true,
        dissect: true,
        concepts: options.concepts.clone().or(config.concepts.clone()),
        notices: Vec::new(),
        device: candle_core::Device::Cpu,
    }
}

/// The picture protocol: asked of the terminal once, before any input is read
/// (ratatui-image's query would race the event reader for the answer), unless the
/// user chose half blocks, which need no answer.
fn picker(graphics: Graphics) -> Picker {
    let forced = match graphics {
        Graphics::Halfblocks => return Picker::halfblocks(),
        Graphics::Auto => None,
        Graphics::Kitty => Some(ProtocolType::Kitty),
        Graphics::Sixel => Some(ProtocolType::Sixel),
        Graphics::Iterm2 => Some(ProtocolType::Iterm2),
    };
    let options = QueryStdioOptions {
        // A terminal that answers does so in milliseconds; one that does not (tmux
        // with no graphics outside) should not delay the first frame long.
        timeout: unitscope::render::terminal::QUERY_TIMEOUT,
        // Over SSH the link, not the CPU, is what a kitty image waits on.
        kitty_compression: std::env::var_os("SSH_CONNECTION").is_some(),
        ..QueryStdioOptions::default()
    };
    let mut picker =
        Picker::from_query_stdio_with_options(options).unwrap_or_else(|_| Picker::halfblocks());
    if picker.capabilities().is_empty() {
        terminal::end_abandoned_query();
    }
    if let Some(protocol) = forced {
        picker.set_protocol_type(protocol);
    }
    picker
}

/// Draws, waits for a key, a click or a job's result, and again, until the user
/// quits or a signal arrives. Frames are drawn only when something changed.
fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    signals: &terminal::Signals,
) -> Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let mut dirty = true;
    let panic_for_test = std::env::var_os(terminal::PANIC_VAR).is_some();
    loop {
        if signals.received().is_some() || app.quit {
            return Ok(());
        }
        if dirty {
            terminal.draw(|frame| view::draw(app, frame))?;
            dirty = false;
            if panic_for_test {
                panic!(
                    "{} is set: the inspector panics after its first frame",
                    terminal::PANIC_VAR
                );
            }
        }
        if event::poll(Duration::from_millis(20))? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => app.key(key),
                Event::Mouse(mouse) => app.mouse(mouse),
                Event::Resize(..) => {}
                _ => continue,
            }
            dirty = true;
        }
        dirty |= app.pump(Duration::ZERO);
    }
}
