//! The user's settings: `$XDG_CONFIG_HOME/unitscope/config.toml` (else
//! `~/.config/unitscope/config.toml`), every field optional. Command-line options
//! win over it. A bad file does not stop the inspector: it starts with the
//! defaults and says, in the status bar, which file and line are wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The most a config or theme file may hold: they are a few lines.
pub const MAX_BYTES: u64 = 1 << 20;

/// The settings a config file may give.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A built-in theme's name or a theme file's path.
    pub theme: Option<String>,
    /// `auto`, `kitty`, `sixel`, `iterm2` or `halfblocks`.
    pub graphics: Option<String>,
    /// The model card opened when `--model` is not given.
    pub model: Option<PathBuf>,
    /// The image folder opened when `--images` is not given.
    pub images: Option<PathBuf>,
    /// The Broden-layout dataset layers are dissected on when `--concepts` is not
    /// given.
    pub concepts: Option<PathBuf>,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (the default), when `--device` is not given.
    pub device: Option<String>,
    /// The methods the Explain screen's compare view shows, and the Trust screen measures.
    pub methods: Option<Vec<String>>,
    /// Action name to keys, replacing the action's default keys.
    #[serde(default)]
    pub keys: HashMap<String, Vec<String>>,
}

impl Config {
    /// Where the config file is looked for.
    pub fn path() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
        };
        Some(base.join("unitscope").join("config.toml"))
    }

    /// The config at [`Config::path`]: the defaults when there is no file.
    pub fn load() -> Result<Self> {
        match Self::path() {
            Some(path) if path.exists() => Self::read(&path),
            _ => Ok(Self::default()),
        }
    }

    /// The config file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = unitscope::limits::read_text(path, MAX_BYTES)
            .with_context(|| format!("cannot read config `{}`", path.display()))?;
        toml::from_str(&text).map_err(|e| located(e, &text, path))
    }
}

/// A TOML error as `FILE, line N: what is wrong`.
pub fn located(error: toml::de::Error, text: &str, path: &Path) -> anyhow::Error {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let what = error.message().trim_end().to_string();
    match line {
        Some(line) => anyhow::anyhow!("{}, line {line}: {what}", path.display()),
        None => anyhow::anyhow!("{}: {what}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_reads_and_a_bad_one_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "theme = \"light\"\n[keys]\nquit = [\"Q\"]\n").unwrap();
        let config = Config::read(&path).unwrap();
        assert_eq!(config.theme.as_deref(), Some("light"));
        assert_eq!(config.keys["quit"], ["Q"]);

        std::fs::write(&path, "theme = \"light\"\n\ncolour = 3\n").unwrap();
        let e = Config::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("config.toml, line 3: unknown field `colour`"),
            "{e}"
        );
        std::fs::write(&path, "theme = [\n").unwrap();
        let e = Config::read(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml, line 1"), "{e}");
    }
}
