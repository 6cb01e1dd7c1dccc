//! Output files written whole or not at all: each is written to a temporary file
//! beside it and renamed over it only once complete, so an interrupted run (Ctrl-C,
//! a full disk, an error halfway) never leaves a truncated PNG, array or JSON for a
//! script to trip on, and never half-overwrites an earlier run's file.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `path` by `write`, atomically (see the module doc).
pub fn write_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let attempt = || -> Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Dropped on any error before `persist`, which deletes it. Created with the
        // mode any new file gets (0666 less the umask), not a temporary file's 0600.
        let file = tempfile::Builder::new()
            .prefix(".unitscope-")
            .suffix(".part")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.as_file().sync_data()?;
        file.persist(path)?;
        Ok(())
    };
    attempt().with_context(|| format!("cannot write `{}`", path.display()))
}

/// Writes `bytes` to `path`, atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |out| Ok(out.write_all(bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails halfway leaves the earlier file as it was and no
    /// temporary file behind; one that succeeds replaces it whole.
    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_debris() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        write(&path, b"old").unwrap();
        let err = write_with(&path, |out| {
            out.write_all(b"half")?;
            anyhow::bail!("interrupted")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("interrupted"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["summary.json"]);
    }

    /// The file others may read as they may any new file: the umask's mode, not a
    /// temporary file's owner-only 0600.
    #[test]
    fn a_written_file_has_the_usual_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let atomic = dir.path().join("atomic");
        write(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }
}
