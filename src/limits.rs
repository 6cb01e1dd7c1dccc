//! Bounds on what an untrusted file may make unitscope do.
//!
//! A checkpoint or an image from the internet must be as harmless as a document:
//! reading one may not run code (the pickle reader runs none) and may not exhaust
//! the machine either. A few hundred bytes can otherwise describe gigabytes: a
//! pickle that copies one object into itself again and again, a tensor that views
//! its storage with zero strides, a zip entry that inflates a thousandfold, a PNG of
//! 16k x 16k black pixels. Each reader checks what it is about to build against
//! these limits first and fails with an error that names the limit and the
//! environment variable that raises it.
//!
//! The defaults leave room for any real checkpoint we know of: a state dict's
//! pickle nests three or four containers deep and decodes to a few megabytes,
//! `torch.save` stores its zip entries uncompressed, and tensors share storages at
//! most pairwise (tied weights).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, ensure};

/// The limits in force (see the module doc), each settable by the environment
/// variable of the constant with its name (`UNITSCOPE_MAX_PICKLE_DEPTH`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Containers a pickle may nest inside each other.
    pub pickle_depth: u64,
    /// Bytes a pickle's values may take once decoded, copies from its memo included.
    pub pickle_bytes: u64,
    /// How many times its own size a zip checkpoint may inflate to, in all.
    pub inflate_ratio: u64,
    /// Elements one tensor may have.
    pub tensor_elements: u64,
    /// Pixels an image may have (width x height), checked before it is decoded.
    pub image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pickle_depth: 100,
            pickle_bytes: 256 << 20,
            inflate_ratio: 16,
            tensor_elements: 1 << 32,
            image_pixels: 64 << 20,
        }
    }
}

impl Limits {
    /// The variable that sets [`Limits::pickle_depth`].
    pub const PICKLE_DEPTH: &str = "UNITSCOPE_MAX_PICKLE_DEPTH";
    /// The variable that sets [`Limits::pickle_bytes`].
    pub const PICKLE_BYTES: &str = "UNITSCOPE_MAX_PICKLE_BYTES";
    /// The variable that sets [`Limits::inflate_ratio`].
    pub const INFLATE_RATIO: &str = "UNITSCOPE_MAX_INFLATE_RATIO";
    /// The variable that sets [`Limits::tensor_elements`].
    pub const TENSOR_ELEMENTS: &str = "UNITSCOPE_MAX_TENSOR_ELEMENTS";
    /// The variable that sets [`Limits::image_pixels`].
    pub const IMAGE_PIXELS: &str = "UNITSCOPE_MAX_IMAGE_PIXELS";

    /// The defaults, with any limit its environment variable sets instead.
    pub fn from_env() -> Result<Self> {
        let mut limits = Self::default();
        let fields = [
            (&mut limits.pickle_depth, Self::PICKLE_DEPTH),
            (&mut limits.pickle_bytes, Self::PICKLE_BYTES),
            (&mut limits.inflate_ratio, Self::INFLATE_RATIO),
            (&mut limits.tensor_elements, Self::TENSOR_ELEMENTS),
            (&mut limits.image_pixels, Self::IMAGE_PIXELS),
        ];
        for (field, name) in fields {
            if let Some(value) = std::env::var_os(name) {
                let value = value.to_string_lossy();
                *field = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&v| v > 0)
                    .with_context(|| format!("{name}=`{value}` is not a positive whole number"))?;
            }
        }
        Ok(limits)
    }
}

/// The error for a limit exceeded: what was found, the limit, how to raise it.
pub fn exceeded(what: impl std::fmt::Display, limit: u64, variable: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}, over the limit of {limit}; if the file is trusted, raise it with {variable}=N"
    )
}

/// Reads a text file of at most `max` bytes, refusing a larger one unread.
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    ensure!(!path.is_dir(), "it is a directory, not a file");
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)
        .context("not UTF-8 text")?;
    ensure!(
        text.len() as u64 <= max,
        "the file is larger than {max} bytes; is it the right file?"
    );
    Ok(text)
}
