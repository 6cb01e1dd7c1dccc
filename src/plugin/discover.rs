//! Where plugins are found, and which files the host refuses to load: a library
//! is code run with the user's rights, so one that another user could have
//! replaced is not opened at all.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// The plugin files to open, in order, each once: those next to the binary, those
/// in `$XDG_DATA_HOME/unitscope/plugins` (default `~/.local/share/...`), then
/// `extra` (files, or folders of them), as `--plugin` names them.
pub fn candidates(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(dir) = beside_binary() {
        found.extend(libraries(&dir, |name| name.starts_with(FIRST_PARTY)));
    }
    if let Some(dir) = data_dir() {
        found.extend(libraries(&dir, |_| true));
    }
    for path in extra {
        match path.is_dir() {
            true => found.extend(libraries(path, |_| true)),
            false => found.push(path.clone()),
        }
    }
    // Absolute and resolved: the file checked is the file opened (dlopen would look a
    // bare name up on the library path), and its real folder is the one checked.
    let mut found: Vec<PathBuf> = found
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect();
    let mut seen = Vec::new();
    found.retain(|path| {
        // A file reached twice (a hard link Cargo made, a folder given twice) is
        // opened once.
        let id = std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
        let new = id.is_none() || !seen.contains(&id);
        seen.push(id);
        new
    });
    found
}

/// The names of the first-party plugins' libraries, as Cargo builds them.
const FIRST_PARTY: &str = "libunitscope_";

/// The folder beside the running binary that holds plugins: the binary's own, or,
/// in a Cargo target folder, its `deps/`, where Cargo leaves the workspace's plugin
/// libraries when it builds them for `cargo run` (it copies them up only when it
/// builds them as targets of their own, and a stale copy would shadow them).
fn beside_binary() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let deps = dir.join("deps");
    match deps.is_dir() && dir.join(".fingerprint").is_dir() {
        true => Some(deps),
        false => Some(dir),
    }
}

/// `$XDG_DATA_HOME/unitscope/plugins`, by default `~/.local/share/unitscope/plugins`.
fn data_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
    };
    Some(base.join("unitscope/plugins"))
}

/// The dynamic libraries in `dir` whose file names pass `keep`, sorted by name.
fn libraries(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(std::env::consts::DLL_SUFFIX) && keep(n))
        })
        .collect();
    found.sort();
    found
}

/// Refuses a plugin file that another user could have written: the file or its
/// folder writable by group or others, or owned by another user (root aside).
pub fn check_permissions(path: &Path) -> Result<()> {
    let file = std::fs::metadata(path).context("cannot read it")?;
    ensure!(file.is_file(), "it is not a file");
    safe(&file, "the file", path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let folder =
        std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    safe(&folder, "its folder", dir)
}

fn safe(meta: &std::fs::Metadata, what: &str, path: &Path) -> Result<()> {
    let mode = meta.permissions().mode() & 0o777;
    ensure!(
        mode & 0o022 == 0,
        "refused: {what} is writable by other users (mode {mode:03o}); `chmod go-w {}` if you trust it",
        path.display()
    );
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    ensure!(
        meta.uid() == me || meta.uid() == 0,
        "refused: {what} belongs to another user (uid {}), who could change it",
        meta.uid()
    );
    Ok(())
}
