//! The inspector's colours: a UI palette and the heatmaps' colormap, read from a
//! TOML theme (`themes/*.toml`, built in; or any file by path). `NO_COLOR`
//! (<https://no-color.org>) turns the palette off: text in the terminal's own
//! colours, the selection in reverse video.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use unitscope::choice::Choice;
use unitscope::render::Colormap;

/// The built-in themes, by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// The theme used when none is named.
pub const DEFAULT: &str = "dark";

/// The colours of everything drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub colormap: Colormap,
    pub text: Style,
    pub muted: Style,
    pub accent: Style,
    pub border: Style,
    pub selected: Style,
    pub error: Style,
    pub warning: Style,
    pub ok: Style,
    pub bar: Style,
    /// Concept categories' colours, in the dataset's category order (repeating).
    pub categories: Vec<Style>,
}

/// A theme file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    colormap: String,
    ui: Palette,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Palette {
    background: String,
    text: String,
    muted: String,
    accent: String,
    border: String,
    selected_background: String,
    selected_text: String,
    error: String,
    warning: String,
    ok: String,
    bar_background: String,
    bar_text: String,
    /// Concept categories' colours; none: accent, ok, warning, error.
    #[serde(default)]
    categories: Vec<String>,
}

impl Theme {
    /// The built-in theme `name`, or the theme file at that path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(name, text, Path::new(&format!("themes/{name}.toml")));
        }
        let path = Path::new(name_or_path);
        if !path.exists() && !name_or_path.contains(['/', '.']) {
            let names: Vec<_> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no theme `{name_or_path}`: use {} or a TOML file's path",
                names.join(", ")
            );
        }
        let text = unitscope::limits::read_text(path, super::config::MAX_BYTES)
            .with_context(|| format!("cannot read theme `{}`", path.display()))?;
        let name = path
            .file_stem()
            .map_or("theme".into(), |s| s.to_string_lossy().into_owned());
        Self::parse(&name, &text, path)
    }

    /// The default theme.
    pub fn built_in() -> Self {
        Self::load(DEFAULT).expect("the built-in themes parse (a test checks them)")
    }

    /// Every built-in theme's name.
    pub fn names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(n, _)| *n)
    }

    fn parse(name: &str, text: &str, path: &Path) -> Result<Self> {
        let file: File = toml::from_str(text).map_err(|e| super::config::located(e, text, path))?;
        let colour = |field: &str, value: &str| {
            colour(value).with_context(|| format!("{}: [ui] {field}", path.display()))
        };
        let ui = &file.ui;
        let background = colour("background", &ui.background)?;
        let on = |field: &str, value: &str| -> Result<Style> {
            Ok(Style::new().fg(colour(field, value)?).bg(background))
        };
        let colormap = Colormap::from_name(&file.colormap).with_context(|| {
            let names: Vec<_> = Colormap::ALL.iter().map(|c| c.name()).collect();
            format!(
                "{}: colormap `{}`: use one of {}",
                path.display(),
                file.colormap,
                names.join(", ")
            )
        })?;
        // An empty list: the palette's own accents.
        let defaults = [&ui.accent, &ui.ok, &ui.warning, &ui.error];
        let categories: Vec<&String> = match ui.categories.as_slice() {
            [] => defaults.to_vec(),
            given => given.iter().collect(),
        };
        Ok(Self {
            name: name.to_string(),
            colormap,
            text: on("text", &ui.text)?,
            muted: on("muted", &ui.muted)?,
            accent: on("accent", &ui.accent)?.add_modifier(Modifier::BOLD),
            border: on("border", &ui.border)?,
            selected: Style::new()
                .fg(colour("selected_text", &ui.selected_text)?)
                .bg(colour("selected_background", &ui.selected_background)?)
                .add_modifier(Modifier::BOLD),
            error: on("error", &ui.error)?.add_modifier(Modifier::BOLD),
            warning: on("warning", &ui.warning)?,
            ok: on("ok", &ui.ok)?,
            bar: Style::new()
                .fg(colour("bar_text", &ui.bar_text)?)
                .bg(colour("bar_background", &ui.bar_background)?),
            categories: categories
                .into_iter()
                .map(|c| on("categories", c))
                .collect::<Result<_>>()?,
        })
    }

    /// This theme without colours, as `NO_COLOR` asks: emphasis by bold and
    /// reverse video only. The heatmap colormap stays (a heatmap is content).
    pub fn without_colour(self) -> Self {
        let plain = Style::new();
        Self {
            text: plain,
            muted: plain.add_modifier(Modifier::DIM),
            accent: plain.add_modifier(Modifier::BOLD),
            border: plain,
            selected: plain.add_modifier(Modifier::REVERSED),
            error: plain.add_modifier(Modifier::BOLD),
            warning: plain,
            ok: plain,
            bar: plain.add_modifier(Modifier::REVERSED),
            categories: vec![plain],
            ..self
        }
    }

    /// The colour of concept category `category`; muted for none.
    pub fn category(&self, category: Option<usize>) -> Style {
        match category {
            Some(c) if !self.categories.is_empty() => self.categories[c % self.categories.len()],
            _ => self.muted,
        }
    }
}

/// `#rrggbb`, `reset` (the terminal's own colour), or a colour ratatui names.
fn colour(text: &str) -> Result<Color> {
    if text == "reset" {
        return Ok(Color::Reset);
    }
    text.parse::<Color>()
        .ok()
        .filter(|_| !text.starts_with('#') || text.len() == 7)
        .with_context(|| {
            format!("`{text}` is not a colour: use #rrggbb, reset, or a name like red")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_loads() {
        for name in Theme::names() {
            let theme = Theme::load(name).unwrap();
            assert_eq!(theme.name, name);
            assert_ne!(
                theme.text.fg, theme.selected.fg,
                "{name}: selection invisible"
            );
        }
    }

    /// `--theme PATH`: a user's file, here the light theme with another accent
    /// and colormap, is read whole and named for its file.
    #[test]
    fn a_theme_file_loads_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        let text = Theme::built_in_text("light")
            .replace("#1d4ed8", "#ff8800")
            .replace("\"viridis\"", "\"turbo\"");
        std::fs::write(&path, text).unwrap();
        let theme = Theme::load(path.to_str().unwrap()).unwrap();
        assert_eq!(theme.name, "mine");
        assert_eq!(theme.accent.fg, Some(Color::Rgb(0xff, 0x88, 0x00)));
        assert_eq!(theme.colormap, Colormap::Turbo);
        let light = Theme::load("light").unwrap();
        assert_eq!(theme.text.fg, light.text.fg);
    }

    #[test]
    fn a_bad_theme_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        let text = Theme::built_in_text(DEFAULT).replace("#", "#zz");
        std::fs::write(&path, text).unwrap();
        let e = format!("{:#}", Theme::load(path.to_str().unwrap()).unwrap_err());
        assert!(
            e.contains("mine.toml: [ui] text") && e.contains("not a colour"),
            "{e}"
        );

        std::fs::write(&path, "colormap = \"inferno\"\n[ui]\ntext = 3\n").unwrap();
        let e = format!("{:#}", Theme::load(path.to_str().unwrap()).unwrap_err());
        assert!(e.contains("mine.toml, line 3"), "{e}");
        let e = Theme::load("neon").unwrap_err().to_string();
        assert!(
            e.contains("no theme `neon`: use dark, light, high-contrast"),
            "{e}"
        );
    }

    impl Theme {
        fn built_in_text(name: &str) -> String {
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .to_string()
        }
    }
}
