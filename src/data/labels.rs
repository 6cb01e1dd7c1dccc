//! Class names.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

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

/// The class `name` names among `labels`: a whole label or any of its synonyms
/// (ImageNet's labels list them comma-separated: `tabby, tabby cat`), compared
/// without regard to case, spacing or underscores. An unknown name is an error that
/// suggests the closest names; a synonym two classes share (`crane`) names both.
pub fn find(labels: &[String], name: &str) -> Result<usize> {
    let wanted = normalize(name);
    let whole: Vec<usize> = (0..labels.len())
        .filter(|&i| normalize(&labels[i]) == wanted)
        .collect();
    let matches = match whole.as_slice() {
        [] => (0..labels.len())
            .filter(|&i| synonyms(&labels[i]).any(|s| s == wanted))
            .collect(),
        _ => whole,
    };
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "no class is called `{name}`; closest: {} (`unitscope classes PATTERN` lists them)",
            closest(labels, &wanted)
        ),
        several => bail!(
            "`{name}` names {} classes: {}; give the index or the whole label",
            several.len(),
            several
                .iter()
                .map(|&i| format!("{i} ({})", labels[i]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A label's synonyms, normalized.
fn synonyms(label: &str) -> impl Iterator<Item = String> + '_ {
    label.split(',').map(normalize).filter(|s| !s.is_empty())
}

/// A name as [`find`] compares it: lower case, underscores as spaces, runs of
/// spaces as one, trimmed.
pub fn normalize(name: &str) -> String {
    name.to_lowercase()
        .replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three labels with a synonym closest to `wanted` (Jaro-Winkler similarity),
/// each with its index.
fn closest(labels: &[String], wanted: &str) -> String {
    let mut scored: Vec<(f64, usize)> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let best = synonyms(label)
                .map(|s| strsim::jaro_winkler(&s, wanted))
                .fold(0.0, f64::max);
            (best, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .iter()
        .take(3)
        .map(|&(_, i)| format!("{i} ({})", labels[i]))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imagenet() -> Vec<String> {
        load("imagenet", Path::new(".")).unwrap()
    }

    #[test]
    fn a_class_answers_to_any_synonym_in_any_case() {
        let labels = imagenet();
        let tabby = labels.iter().position(|l| l == "tabby, tabby cat").unwrap();
        for name in [
            "tabby, tabby cat",
            "tabby cat",
            "TABBY",
            " Tabby  Cat ",
            "tabby_cat",
        ] {
            assert_eq!(find(&labels, name).unwrap(), tabby, "{name}");
        }
    }

    #[test]
    fn unknown_and_shared_names_say_what_to_give() {
        let labels = imagenet();
        let err = find(&labels, "tabby kat").unwrap_err().to_string();
        assert!(
            err.contains("closest") && err.contains("tabby, tabby cat"),
            "{err}"
        );
        let err = find(&labels, "crane").unwrap_err().to_string();
        assert!(
            err.contains("names 2 classes") && err.contains("134"),
            "{err}"
        );
    }
}
