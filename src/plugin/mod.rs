//! The host side of the plugin SDK (`sdk/`): finding plugin libraries, opening
//! them through the stable C ABI, and making their methods the host's own.
//!
//! Plugins are loaded once, before the command line is read (their parameters
//! are options). A method plugin's method is registered with
//! [`crate::attribution::registry`], so it appears wherever the built-in ones do:
//! `explain`, `evaluate`, `--list-methods`, the TUI's method list and parameter
//! panel. Plugins call back into the host's one engine ([`host`]); they never
//! link it. A modality plugin's file type is registered with
//! [`crate::data::modality`], so its files open wherever images do.
//!
//! Nothing a plugin does takes the host down: a file that cannot be opened, the
//! wrong ABI, a bad description, an error, a panic (caught by the SDK in the
//! plugin) or garbage output (a wrong shape, a length that lies, NaN) is one line
//! in [`reports`] and the plugin is disabled. A plugin is never unloaded.

mod disabled;
mod discover;
mod host;
mod library;
mod method;
mod modality;
pub mod rise;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;

use disabled::Disabled;
use library::Kind;

/// One plugin file, as loading found it.
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// What loading made of it.
    pub outcome: Result<Loaded, String>,
}

/// A plugin that loaded.
pub struct Loaded {
    /// Its name.
    pub name: String,
    /// `method` or `modality`.
    pub kind: &'static str,
    /// Its own version.
    pub version: String,
    /// The ABI version it was built for.
    pub abi: (u32, u32),
    /// One line on what it does (for a modality, the extensions it opens).
    pub about: String,
    /// Whether it has been disabled since.
    disabled: &'static Disabled,
}

impl Loaded {
    /// `ready`, or why the plugin was disabled after it loaded.
    pub fn status(&self) -> String {
        match self.disabled.why() {
            Some(why) => format!("disabled: {why}"),
            None => "ready".to_owned(),
        }
    }
}

static REPORTS: OnceLock<Vec<Report>> = OnceLock::new();

/// Finds and loads every plugin (see [`discover::candidates`] for where), once
/// per process: later calls return the first call's reports. A method's
/// parameter may not take one of `reserved`, the names of the commands' own
/// options.
pub fn load(extra: &[PathBuf], reserved: &[String]) -> &'static [Report] {
    REPORTS.get_or_init(|| {
        discover::candidates(extra)
            .into_iter()
            .map(|path| Report {
                outcome: load_one(&path, reserved).map_err(|e| format!("{e:#}").replace('\n', " ")),
                path,
            })
            .collect()
    })
}

/// The reports of [`load`] (none before it runs).
pub fn reports() -> &'static [Report] {
    REPORTS.get().map_or(&[], Vec::as_slice)
}

/// One line per plugin that could not be loaded, naming its file (`unitscope
/// plugins` shows the whole path): what a command prints as warnings.
pub fn problems() -> Vec<String> {
    reports()
        .iter()
        .filter_map(|r| {
            let why = r.outcome.as_ref().err()?;
            let file = r.path.file_name().unwrap_or(r.path.as_os_str());
            Some(format!("plugin {}: {why}", file.to_string_lossy()))
        })
        .collect()
}

fn load_one(path: &Path, reserved: &[String]) -> Result<Loaded> {
    discover::check_permissions(path)?;
    let opened = library::open(path)?;
    let (kind, about, disabled) = match opened.kind {
        Kind::Method(entries) => {
            let (plugin, descriptor) =
                method::describe(opened.name.clone(), opened.about.clone(), entries)?;
            if let Some(p) = descriptor
                .params
                .iter()
                .find(|p| reserved.iter().any(|r| r == p.name))
            {
                anyhow::bail!(
                    "its parameter --{} would shadow the command's own option",
                    p.name
                );
            }
            crate::attribution::registry::register(descriptor)?;
            ("method", opened.about, &plugin.disabled)
        }
        Kind::Modality(entries) => {
            let plugin = modality::describe(opened.name.clone(), path, entries)?;
            crate::data::modality::register(plugin)?;
            ("modality", plugin.about(&opened.about), &plugin.disabled)
        }
    };
    Ok(Loaded {
        name: opened.name,
        kind,
        version: opened.version,
        abi: opened.abi,
        about,
        disabled,
    })
}
