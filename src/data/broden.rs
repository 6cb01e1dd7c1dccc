//! The Broden dataset's layout (Bau et al. 2017, "Network Dissection"), read as
//! NetDissect-Lite's loader reads it:
//!
//! - `index.csv`: one row per image: `image` (a path under `images/`), `split`,
//!   `ih`, `iw` (the image's size), `sh`, `sw` (its labels' size, per row), then one
//!   column per category holding `;`-separated entries: a number is an image-level
//!   label (a scene), anything else a pixel-label PNG under `images/`, whose pixels
//!   carry the global label number as `red + 256 · green` (0: unlabelled).
//! - `category.csv`: the categories (`name`, ...), in order.
//! - `label.csv`: the global labels (`number`, `name`, ...).
//! - `c_<category>.csv`: the category's labels (`code`, `number`, `name`,
//!   `frequency`, `coverage`). A label's primary category is the one where its
//!   coverage is largest (ties: the later category), as NetDissect-Lite decides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use sha2::Digest;

use super::image::load_image;
use super::vocabulary::{ImageLabels, Label, Vocabulary};

/// A Broden-layout dataset on disk.
#[derive(Clone, Debug)]
pub struct Broden {
    dir: PathBuf,
    /// The digest of its listings: what the dataset is known by.
    digest: String,
    rows: Vec<Row>,
    vocabulary: Vocabulary,
}

/// One row of `index.csv`.
#[derive(Clone, Debug)]
struct Row {
    image: String,
    /// The labels' rows and columns.
    size: (usize, usize),
    /// Per category (in the vocabulary's order), its entries.
    entries: Vec<Vec<Entry>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    /// An image-level label.
    Number(u32),
    /// A pixel-label PNG, relative to `images/`.
    Png(String),
}

#[derive(Deserialize)]
struct CategoryRow {
    name: String,
}

#[derive(Deserialize)]
struct LabelRow {
    number: u32,
    name: String,
}

#[derive(Deserialize)]
struct CodeRow {
    number: u32,
    coverage: f64,
}

/// Labels larger than this are refused: the tally keeps a counter per label and unit.
const MAX_LABEL: u32 = 1 << 16;

impl Broden {
    /// Reads the listings of the dataset in `dir` (the images are read later).
    pub fn open(dir: &Path) -> Result<Self> {
        let mut digest = sha2::Sha256::new();
        let categories: Vec<String> = read_as::<CategoryRow>(dir, "category.csv", &mut digest)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        ensure!(!categories.is_empty(), "`category.csv` lists no category");
        let label_rows = read_as::<LabelRow>(dir, "label.csv", &mut digest)?;
        let largest = label_rows.iter().map(|l| l.number).max().unwrap_or(0);
        ensure!(
            largest < MAX_LABEL,
            "`label.csv` numbers a label {largest}; unitscope reads labels below {MAX_LABEL}"
        );
        let mut labels = vec![Label::unlabelled(); largest as usize + 1];
        for row in label_rows {
            labels[row.number as usize].name = row.name;
        }
        // Primary categories: the largest coverage wins, the later category on ties.
        let mut best: Vec<Option<(f64, usize)>> = vec![None; labels.len()];
        for (c, category) in categories.iter().enumerate() {
            let name = format!("c_{category}.csv");
            for code in read_as::<CodeRow>(dir, &name, &mut digest)? {
                let Some(slot) = best.get_mut(code.number as usize) else {
                    bail!(
                        "`{name}` maps to label {} that `label.csv` lacks",
                        code.number
                    );
                };
                if slot.is_none_or(|(coverage, _)| code.coverage >= coverage) {
                    *slot = Some((code.coverage, c));
                }
            }
        }
        for (label, best) in labels.iter_mut().zip(best).skip(1) {
            label.category = best.map(|(_, c)| c);
        }

        let (header, index) = read(dir, "index.csv", &mut digest)?;
        let column = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("`index.csv` has no `{name}` column"))
        };
        let (image, sh, sw) = (column("image")?, column("sh")?, column("sw")?);
        let category_columns: Vec<Option<usize>> = categories
            .iter()
            .map(|c| header.iter().position(|h| h == c))
            .collect();
        let rows = index
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let line = i + 2;
                let number = |at: usize, what: &str| -> Result<usize> {
                    let v = record.get(at).unwrap_or("");
                    let n: usize = v.trim().parse().with_context(|| {
                        format!("`index.csv` line {line}: {what} = `{v}` is not a size")
                    })?;
                    ensure!(
                        (1..=4096).contains(&n),
                        "`index.csv` line {line}: {what} = {n}; allowed 1 to 4096"
                    );
                    Ok(n)
                };
                let entries = category_columns
                    .iter()
                    .map(|at| {
                        let field = at.and_then(|at| record.get(at)).unwrap_or("");
                        field
                            .split(';')
                            .filter(|s| !s.is_empty())
                            .map(|s| match s.parse::<u32>() {
                                Ok(n) if (n as usize) < labels.len() => Ok(Entry::Number(n)),
                                Ok(n) => bail!(
                                    "`index.csv` line {line}: label {n} is not in `label.csv`"
                                ),
                                Err(_) => Ok(Entry::Png(s.to_string())),
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Row {
                    image: record.get(image).unwrap_or("").to_string(),
                    size: (number(sh, "sh")?, number(sw, "sw")?),
                    entries,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!rows.is_empty(), "`index.csv` lists no image");
        Ok(Self {
            digest: format!("{:x}", digest.finalize()),
            dir: dir.to_path_buf(),
            rows,
            vocabulary: Vocabulary { categories, labels },
        })
    }

    /// Its categories and labels.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// How many images it lists.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it lists none (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The image file of row `i`.
    pub fn image_path(&self, i: usize) -> PathBuf {
        self.dir.join("images").join(&self.rows[i].image)
    }

    /// The labels of row `i`, decoded from its PNGs at the row's own label size.
    pub fn labels(&self, i: usize) -> Result<ImageLabels> {
        let row = &self.rows[i];
        let (sh, sw) = row.size;
        let (mut layers, mut image) = (Vec::new(), Vec::new());
        for entries in &row.entries {
            for entry in entries {
                match entry {
                    Entry::Number(n) => image.push(*n),
                    Entry::Png(file) => {
                        let path = self.dir.join("images").join(file);
                        let png = load_image(&path)?;
                        ensure!(
                            png.dimensions() == (sw as u32, sh as u32),
                            "`{}` is {}x{} px; `index.csv` gives its image's labels as {sw}x{sh} (sw x sh)",
                            path.display(),
                            png.width(),
                            png.height()
                        );
                        let layer = png
                            .pixels()
                            .map(|p| {
                                let n = p[0] as u32 + 256 * p[1] as u32;
                                ensure!(
                                    (n as usize) < self.vocabulary.labels.len(),
                                    "`{}` holds label {n}, which `label.csv` lacks",
                                    path.display()
                                );
                                Ok(n)
                            })
                            .collect::<Result<Vec<_>>>()?;
                        layers.push(layer);
                    }
                }
            }
        }
        Ok(ImageLabels::from_layers(row.size, &layers, &image))
    }

    /// What the dataset is known by, for cache keys and shards: the SHA-256 of its
    /// listings (`category.csv`, `label.csv`, `index.csv`, `c_*.csv`), so a copy at
    /// another path, on another machine, is the same dataset.
    pub fn identity(&self) -> String {
        format!("broden sha256 {}", self.digest)
    }
}

/// The header and rows of the CSV listing `name` in `dir`.
/// Its bytes go into `digest`, so the dataset's identity is what was read.
fn read(
    dir: &Path,
    name: &str,
    digest: &mut sha2::Sha256,
) -> Result<(csv::StringRecord, Vec<csv::StringRecord>)> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read `{}`; a Broden dataset has index.csv, category.csv, label.csv \
             and c_<category>.csv",
            path.display()
        )
    })?;
    digest.update(name.as_bytes());
    digest.update((bytes.len() as u64).to_le_bytes());
    digest.update(&bytes);
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader
        .headers()
        .with_context(|| format!("`{name}`: no header row"))?
        .clone();
    let rows = reader
        .records()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("`{name}` line {}: malformed", i + 2)))
        .collect::<Result<_>>()?;
    Ok((header, rows))
}

/// The rows of the CSV listing `name` in `dir` as `T`s, by column name; other
/// columns are ignored.
fn read_as<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    digest: &mut sha2::Sha256,
) -> Result<Vec<T>> {
    let (header, rows) = read(dir, name, digest)?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            row.deserialize(Some(&header))
                .with_context(|| format!("`{name}` line {}", i + 2))
        })
        .collect()
}
