//! Class names.

use std::path::Path;

use anyhow::{Context, Result, ensure};

/// The 1000 ImageNet-1k class names in index order (WordNet lemmas, e.g. `tabby, tabby cat`).
pub const IMAGENET: &str = include_str!("../../labels/imagenet.txt");

/// The largest label file read (ImageNet-21k's names take 0.5 MB).
const MAX_LABEL_BYTES: u64 = 64 << 20;

/// Reads class names: the built-in `imagenet`, or a text file with one name per line.
pub fn load(spec: &str, base: &Path) -> Result<Vec<String>> {
    let text = if spec == "imagenet" {
        IMAGENET.to_owned()
    } else {
        let path = base.join(spec);
        crate::limits::read_text(&path, MAX_LABEL_BYTES)
            .with_context(|| format!("cannot read label file `{}`", path.display()))?
    };
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    ensure!(!labels.is_empty(), "label file `{spec}` names no classes");
    Ok(labels)
}

/// Placeholder names `class 0`, `class 1`, ... for models without a label file.
pub fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}
