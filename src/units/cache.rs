//! Dataset searches kept on disk, one file per (model weights, dataset listing,
//! layer, preprocessing, k), so that a layer searched once opens at once the next
//! time. A file is a .safetensors: the units' top maps as one tensor, everything
//! else as JSON in its metadata beside the full key it was computed under. A file
//! that does not parse, or whose key is not the one asked for, is reported and
//! searched again, never trusted.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use super::search::{LayerStats, Search};
use crate::data::Entry;
use crate::model::Model;

/// Bumped whenever what a search computes, or how it is stored, changes.
const FORMAT: u32 = 1;

/// A directory of cached searches.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// What a look in the cache found.
#[derive(Debug)]
pub enum Lookup {
    /// A valid file under the key.
    Hit(LayerStats),
    /// No file under the key.
    Miss,
    /// A file under the key that cannot be used, and why.
    Invalid(String),
}

impl Cache {
    /// Searches cached in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `search` under [`root`].
    pub fn at_default() -> Option<Self> {
        Some(Self::new(root()?.join("search")))
    }

    /// The file a key is stored in.
    pub fn path(&self, key: &str) -> PathBuf {
        let name = format!("{:x}", Sha256::digest(key.as_bytes()));
        self.dir.join(format!("{}.safetensors", &name[..32]))
    }

    /// The search stored under `key`, if a valid one is.
    pub fn load(&self, key: &str) -> Lookup {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Invalid(e.to_string()),
        };
        match decode(&bytes, key) {
            Ok(stats) => Lookup::Hit(stats),
            Err(e) => Lookup::Invalid(format!("{e:#}")),
        }
    }

    /// Stores `stats` under `key`, atomically.
    pub fn store(&self, key: &str, stats: &LayerStats) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the cache `{}`", self.dir.display()))?;
        crate::atomic::write(&self.path(key), &encode(key, stats)?)
    }
}

/// Where unitscope keeps what it computed for later runs:
/// `$XDG_CACHE_HOME/unitscope`, else `~/.cache/unitscope`; none when neither
/// variable is set.
pub fn root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("unitscope"))
}

/// The key of a search of `layer` with `k` over `entries`: everything its result
/// depends on, spelled out (the cache compares it whole).
pub fn key(model: &Model, entries: &[Entry], layer: &str, k: usize) -> Result<String> {
    let mut listing = Sha256::new();
    for entry in entries {
        listing.update(entry.identity());
        listing.update("\n");
    }
    Ok(format!(
        "unitscope dataset search, format {FORMAT}\nmodel {}\npreprocessing {}\nlayer {layer}\nk {k}\ninputs {} listed as {:x}\n",
        model.digest()?,
        serde_json::to_string(model.input_spec())?,
        entries.len(),
        listing.finalize(),
    ))
}

/// What [`search_entries`] found.
pub struct Searched {
    /// Per layer, in the order asked.
    pub stats: Vec<LayerStats>,
    /// Per layer, whether it came from the cache.
    pub cached: Vec<bool>,
    /// What went wrong with the cache along the way (it never fails a search).
    pub notes: Vec<String>,
}

/// A search of `layers` over `entries` through `cache`: each layer read from it
/// when present and valid; the others searched together in one pass, in batches of
/// `batch`, and stored. `progress` hears (inputs done, inputs) as the pass goes;
/// the running job's cancellation stops it between batches.
pub fn search_entries(
    model: &Model,
    entries: &[Entry],
    layers: &[String],
    k: usize,
    cache: Option<&Cache>,
    batch: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Searched> {
    let mut found: Vec<Option<LayerStats>> = vec![None; layers.len()];
    let mut keys = Vec::new();
    let mut notes = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let key = key(model, entries, layer, k)?;
        if let Some(cache) = cache {
            match cache.load(&key) {
                Lookup::Hit(stats) => found[i] = Some(stats),
                Lookup::Miss => {}
                Lookup::Invalid(why) => notes.push(format!(
                    "the cached search `{}` was unusable ({why}); searching again",
                    cache.path(&key).display()
                )),
            }
        }
        keys.push(key);
    }
    let cached: Vec<bool> = found.iter().map(Option::is_some).collect();
    let missing: Vec<String> = layers
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(l, _)| l.clone())
        .collect();
    if !missing.is_empty() {
        let mut search = Search::new(model, &missing, k)?;
        let (spec, device) = (model.input_spec(), model.device());
        let total = entries.len() as u64;
        for (b, chunk) in entries.chunks(batch.max(1)).enumerate() {
            crate::jobs::checkpoint()?;
            progress((b * batch.max(1)) as u64, total);
            let tensors = chunk
                .iter()
                .map(|e| Ok(e.load(spec, device)?.tensor))
                .collect::<Result<Vec<_>>>()?;
            search.add(&candle_core::Tensor::stack(&tensors, 0)?)?;
        }
        progress(total, total);
        let mut searched = search.finish()?.into_iter();
        for (i, slot) in found.iter_mut().enumerate() {
            if slot.is_none() {
                let stats = searched.next().expect("one result per missing layer");
                if let Some(cache) = cache {
                    if !finite(&stats) {
                        notes.push(format!(
                            "`{}` has non-finite activations (NaN or infinite); its search is not cached",
                            stats.layer
                        ));
                    } else if let Err(e) = cache.store(&keys[i], &stats) {
                        notes.push(format!("{e:#}; the search is not cached"));
                    }
                }
                *slot = Some(stats);
            }
        }
    }
    Ok(Searched {
        stats: found.into_iter().flatten().collect(),
        cached,
        notes,
    })
}

/// Whether every statistic is a finite number (JSON has no NaN or infinity: a
/// cached file holding one could never be read back).
fn finite(stats: &LayerStats) -> bool {
    stats.units.iter().all(|u| {
        u.mean.is_finite() && u.max.is_finite() && u.top.iter().all(|t| t.peak.is_finite())
    })
}

fn encode(key: &str, stats: &LayerStats) -> Result<Vec<u8>> {
    let k = stats.units.iter().map(|u| u.top.len()).max().unwrap_or(0);
    let area = stats.size.0 * stats.size.1;
    let mut maps = vec![0f32; stats.units.len() * k * area];
    for (u, unit) in stats.units.iter().enumerate() {
        for (r, top) in unit.top.iter().enumerate() {
            let at = (u * k + r) * area;
            maps[at..at + area].copy_from_slice(&top.map);
        }
    }
    let bytes: Vec<u8> = maps.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![stats.units.len(), k, area], &bytes)?;
    let metadata = [
        ("key".to_string(), key.to_string()),
        ("stats".to_string(), serde_json::to_string(stats)?),
    ];
    Ok(safetensors::serialize(
        [("maps", view)],
        Some(metadata.into_iter().collect()),
    )?)
}

fn decode(bytes: &[u8], key: &str) -> Result<LayerStats> {
    let file = SafeTensors::deserialize(bytes).context("not a readable .safetensors")?;
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let metadata = header.metadata().as_ref().context("no metadata")?;
    let stored = metadata.get("key").context("no key")?;
    ensure!(stored == key, "computed under another key");
    let mut stats: LayerStats =
        serde_json::from_str(metadata.get("stats").context("no statistics")?)
            .context("unreadable statistics")?;
    let maps = file.tensor("maps")?;
    let k = stats.units.iter().map(|u| u.top.len()).max().unwrap_or(0);
    let area = stats.size.0 * stats.size.1;
    let shape = [stats.units.len(), k, area];
    if maps.dtype() != Dtype::F32 || maps.shape() != shape {
        bail!(
            "maps of {:?} {:?}, expected F32 {shape:?}",
            maps.dtype(),
            maps.shape()
        );
    }
    let values: Vec<f32> = maps
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for (u, unit) in stats.units.iter_mut().enumerate() {
        for (r, top) in unit.top.iter_mut().enumerate() {
            let at = (u * k + r) * area;
            top.map = values[at..at + area].to_vec();
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::data::Source;

    fn run(model: &Model, n: usize, cache: &Cache) -> Searched {
        let entries = Source::Demo(n).entries().unwrap();
        let layers = ["features.6".to_string(), "fc".to_string()];
        search_entries(model, &entries, &layers, 3, Some(cache), 4, &mut |_, _| {}).unwrap()
    }

    /// The second search of the same layers reads the cache and gives the same
    /// statistics, maps included; a corrupt file is reported and rebuilt; another
    /// listing is another key; a valid file under the wrong key is not trusted.
    #[test]
    fn searches_are_cached_and_a_bad_cache_is_rebuilt() {
        let model = crate::model::demo::model(&Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let first = run(&model, 10, &cache);
        assert_eq!(first.cached, [false, false]);
        assert!(first.notes.is_empty(), "{:?}", first.notes);
        let second = run(&model, 10, &cache);
        assert_eq!(second.cached, [true, true]);
        assert_eq!(second.stats, first.stats);
        assert_eq!(second.stats[0].units[0].top[0].map.len(), 16 * 16);

        let entries = Source::Demo(10).entries().unwrap();
        let key = key(&model, &entries, "features.6", 3).unwrap();
        let path = cache.path(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let third = run(&model, 10, &cache);
        assert_eq!(third.cached, [false, true]);
        assert!(
            third.notes[0].contains("unusable") && third.notes[0].contains("searching again"),
            "{:?}",
            third.notes
        );
        assert_eq!(third.stats, first.stats);
        assert_eq!(run(&model, 10, &cache).cached, [true, true], "rebuilt");

        assert_eq!(run(&model, 11, &cache).cached, [false, false]);
        let other = key.replace("k 3", "k 4");
        std::fs::copy(&path, cache.path(&other)).unwrap();
        match cache.load(&other) {
            Lookup::Invalid(why) => assert!(why.contains("another key"), "{why}"),
            found => panic!("a file under another key was used: {found:?}"),
        }
    }
}
