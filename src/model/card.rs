//! Model cards: a TOML file that names an architecture, its weights, its input
//! preprocessing and its class labels.
//!
//! ```toml
//! name = "EfficientNet-Lite0 (ImageNet)"
//! architecture = "efficientnet_lite0"
//! weights = "efficientnet-lite0-57934424.pth"   # relative to the card
//! labels = "imagenet"                           # built in, or a file, one name per line
//!
//! [input]
//! size = [224, 224]
//! resize = "stretch"          # or "shorter-side" (then `resize_to`, center crop)
//! interpolation = "bilinear"
//! mean = [0.5, 0.5, 0.5]
//! std = [0.5, 0.5, 0.5]
//! # colormap = "magma"      # inputs drawn from their first channel (a spectrogram)
//! # channels = 96           # input channels (default 3; one-hot text has one per character)
//! # axes.x = { label = "time", unit = "s", start = 0.0, end = 1.01 }  # for pictures made
//! # axes.y = { label = "frequency", unit = "Hz", start = 8000.0, end = 0.0 }  # without a file
//!
//! [options]                   # per architecture
//! padding = "tf-same"
//! bn_eps = 1e-3
//! ```
//!
//! Instead of `weights`, a `[huggingface]` table (`repo`, `file`, `revision`) takes
//! the file from the local Hugging Face cache, offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use super::arch::{ArchOptions, Architecture};
use crate::data::InputSpec;
use crate::limits;

/// The largest card file read (a card is a few hundred bytes).
const MAX_CARD_BYTES: u64 = 1 << 20;
/// The most classes a card may declare (ImageNet-21k has 21,843).
pub const MAX_CLASSES: usize = 1 << 20;

/// Whether `path` holds weights rather than a card: a checkpoint's extension, or
/// the first bytes of a zip (`torch.save`), a pickle (legacy `torch.save`) or a
/// safetensors header.
fn is_checkpoint(path: &Path) -> bool {
    use std::io::Read;
    let by_name = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["pth", "pt", "bin", "ckpt", "safetensors"].contains(&e));
    let mut head = [0u8; 9];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let zip = read >= 4 && head[..4] == *b"PK\x03\x04";
    let pickle = read >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]);
    // A little-endian header length that fits the file, then the header's `{`: a
    // TOML card could start with `{` at byte 8, but not with such a length too.
    let header = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let safetensors = read == 9 && head[8] == b'{' && header > 1 && header < size;
    by_name || zip || pickle || safetensors
}

/// A parsed model card.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// A display name; defaults to the card's file name.
    pub name: Option<String>,
    /// The network, e.g. `resnet18`.
    pub architecture: Architecture,
    /// The weights file (.safetensors, or a PyTorch .pth/.pt/.bin), relative to the card.
    pub weights: Option<PathBuf>,
    /// Or: a file in the local Hugging Face hub cache.
    pub huggingface: Option<HfFile>,
    /// `imagenet`, or a label file relative to the card.
    pub labels: Option<String>,
    /// Number of classes; defaults to the number of labels, else 1000.
    pub num_classes: Option<usize>,
    /// Input size and preprocessing (`[input]`).
    #[serde(default)]
    pub input: InputSpec,
    /// Architecture options (`[options]`).
    #[serde(default)]
    pub options: ArchOptions,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base: PathBuf,
}

/// A file in a Hugging Face model repository, read from the local cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfFile {
    /// `owner/name`.
    pub repo: String,
    /// Path of the file inside the repository, e.g. `model.safetensors`.
    pub file: String,
    /// Branch, tag or commit; default `main`.
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn default_revision() -> String {
    "main".to_owned()
}

impl ModelCard {
    /// The class names: the card's label file, or `class 0`, `class 1`, ... for
    /// `num_classes` (1000 unless given) when it names none.
    pub fn class_names(&self) -> Result<Vec<String>> {
        let labels = self
            .labels
            .as_deref()
            .map(|l| crate::data::labels::load(l, &self.base))
            .transpose()?;
        let count = self
            .num_classes
            .or(labels.as_ref().map(Vec::len))
            .unwrap_or(1000);
        match labels {
            Some(l) => {
                ensure!(
                    l.len() == count,
                    "the card says {count} classes but its label file names {}",
                    l.len()
                );
                Ok(l)
            }
            None => Ok(crate::data::labels::numbered(count)),
        }
    }

    /// Reads and parses a card.
    pub fn load(path: &Path) -> Result<Self> {
        if is_checkpoint(path) {
            bail!(
                "`{}` is a weights file, not a model card: write a card (TOML) that names it, \
                 e.g. `architecture = \"resnet18\"` and `weights = \"{}\"` (README: Model cards), \
                 and pass the card to --model",
                path.display(),
                path.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            );
        }
        let text = limits::read_text(path, MAX_CARD_BYTES)
            .with_context(|| format!("cannot read model card `{}`", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses the text of the card at `path` (which only names it and anchors its
    /// relative paths) and checks every value's range.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut card: Self = toml::from_str(text).map_err(|e| {
            // toml's Display draws the line with a caret over several lines; say where in one.
            let at = e.span().map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                let column = s.start - text[..s.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" (line {line}, column {column})")
            });
            anyhow::anyhow!(
                "invalid model card `{}`{}: {}",
                path.display(),
                at.unwrap_or_default(),
                e.message()
            )
        })?;
        card.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if card.name.is_none() {
            card.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        card.check()
            .with_context(|| format!("invalid model card `{}`", path.display()))?;
        Ok(card)
    }

    /// Checks the ranges TOML's types leave open, before any value sizes an
    /// allocation.
    fn check(&self) -> Result<()> {
        self.input.check()?;
        super::arch::check_options(self.architecture, &self.options)?;
        if let Some(n) = self.num_classes {
            ensure!(
                (1..=MAX_CLASSES).contains(&n),
                "num_classes = {n}: allowed 1 to {MAX_CLASSES}"
            );
        }
        Ok(())
    }

    /// The weights file this card points to, checked to exist.
    pub fn weights_path(&self) -> Result<PathBuf> {
        let path = match (&self.weights, &self.huggingface) {
            (Some(w), None) => self.base.join(w),
            (None, Some(hf)) => hf.cached_path()?,
            (Some(_), Some(_)) => {
                bail!("the card names both `weights` and `[huggingface]`; keep one")
            }
            (None, None) => bail!(
                "the card names no weights: set `weights = \"file\"` or a `[huggingface]` table"
            ),
        };
        ensure!(
            !path.is_dir(),
            "weights path `{}` is a directory; name the weights file inside it",
            path.display()
        );
        if !path.is_file() {
            bail!(
                "weights file `{}` not found (paths in a card are relative to the card)",
                path.display()
            );
        }
        Ok(path)
    }
}

impl HfFile {
    /// The file's path in the hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`), laid out as `models--OWNER--NAME/snapshots/COMMIT/FILE`
    /// with `refs/REVISION` holding the commit.
    pub fn cached_path(&self) -> Result<PathBuf> {
        let hub = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
            })
            .context("no Hugging Face cache: set HF_HOME")?;
        // Every name read from the card or the cache becomes a path component: none may
        // climb out of the cache (`..`, a root, a drive).
        let plain = |s: &str| {
            !s.is_empty()
                && Path::new(s)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        };
        ensure!(
            plain(&self.repo) && self.repo.matches('/').count() == 1,
            "huggingface.repo = `{}`: expected `owner/name`",
            self.repo
        );
        ensure!(
            plain(&self.file),
            "huggingface.file = `{}`: must be a path inside the repository (no `..`, no leading `/`)",
            self.file
        );
        ensure!(
            plain(&self.revision),
            "huggingface.revision = `{}`: must be a branch, tag or commit name (no `..`)",
            self.revision
        );
        let is_commit = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let repo_dir = hub.join(format!("models--{}", self.repo.replace('/', "--")));
        let commit = if is_commit(&self.revision) {
            self.revision.clone()
        } else {
            let refs = repo_dir.join("refs").join(&self.revision);
            let commit = std::fs::read_to_string(&refs).with_context(|| {
                format!(
                    "`{}` (revision `{}`) is not in the local Hugging Face cache `{}`; unitscope works offline: \
                     fetch it where there is network (`huggingface-cli download {} {}`) and copy the cache here",
                    self.repo,
                    self.revision,
                    hub.display(),
                    self.repo,
                    self.file
                )
            })?;
            let commit = commit.trim();
            ensure!(
                is_commit(commit),
                "the Hugging Face cache's ref `{}` does not hold a commit hash; the cache is \
                 corrupt or was tampered with",
                refs.display()
            );
            commit.to_owned()
        };
        let path = repo_dir.join("snapshots").join(commit).join(&self.file);
        if !path.exists() {
            bail!(
                "`{}` has no file `{}` in the local Hugging Face cache (looked at `{}`)",
                self.repo,
                self.file,
                path.display()
            );
        }
        // Snapshot files link into the repository's `blobs/`; a link leading
        // elsewhere is not the cache's doing.
        let (real, root) = (path.canonicalize()?, repo_dir.canonicalize()?);
        ensure!(
            real.starts_with(&root),
            "`{}` in the Hugging Face cache links outside the cache (to `{}`); refusing it",
            path.display(),
            real.display()
        );
        Ok(path)
    }
}
