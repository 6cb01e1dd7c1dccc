//! Dissection across machines, in two rounds of N independent commands (a job
//! array of any scheduler):
//!
//! 1. each shard counts its image range's activations into sketches
//!    ([`Part::sketches`]); merged, they give the thresholds a single run's sketch
//!    gives, exactly (counts add);
//! 2. each shard tallies its range at those thresholds ([`Part::tally`]); merged,
//!    the tallies are a single run's at the same thresholds, exactly.
//!
//! A part carries the key of what produced it (model, data, settings, layer), so
//! parts of different runs are never merged, and its shard number, so a missing
//! or doubled shard is an error naming it.

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::{Settings, Sketch, Tally};
use crate::data::Vocabulary;

/// Version of the part format.
const VERSION: u32 = 1;

/// What a sharded run dissects, as every part of it records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The model's name.
    pub model: String,
    /// The dataset's identity.
    pub data: String,
    /// The dataset's image count.
    pub images: usize,
    /// The top quantile of the thresholds.
    pub quantile: f64,
    /// The detectors' IoU.
    pub iou_threshold: f64,
    /// The seed of the units' rotation, if rotated.
    pub rotate: Option<u64>,
    /// The labels (round 2: the results need their names and categories).
    pub vocabulary: Vocabulary,
}

impl Run {
    /// The settings that change results.
    pub fn settings(&self) -> Settings {
        Settings {
            quantile: self.quantile,
            iou_threshold: self.iou_threshold,
            rotate: self.rotate,
            ..Settings::default()
        }
    }
}

/// One shard's partial state for one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    version: u32,
    /// What produced it ([`super::report::key`]).
    pub key: String,
    /// The run it belongs to.
    pub run: Run,
    /// The layer.
    pub layer: String,
    /// `(I, N)`: the I-th of N shards, from 0.
    pub shard: (usize, usize),
    /// The image range it covers.
    pub images: Range<usize>,
    /// What the shard counted: sketches (round 1) or a tally (round 2).
    pub state: State,
}

impl Part {
    /// A shard's part for `layer` of the run keyed `key`.
    pub fn new(
        (key, run): (&str, &Run),
        layer: &str,
        shard: (usize, usize),
        images: Range<usize>,
        state: State,
    ) -> Self {
        Self {
            version: VERSION,
            key: key.into(),
            run: run.clone(),
            layer: layer.into(),
            shard,
            images,
            state,
        }
    }

    /// Its file name: layer, round, shard.
    pub fn file_name(&self) -> String {
        let round = match self.state {
            State::Tally(..) => "tally",
            State::Sketches(_) => "sketch",
        };
        format!(
            "{}.{round}.{:04}-of-{:04}.json",
            crate::render::file_part(&self.layer),
            self.shard.0,
            self.shard.1
        )
    }

    /// Reads a part file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the part `{}`", path.display()))?;
        let part: Part = serde_json::from_str(&text).with_context(|| {
            format!(
                "`{}` is not a dissection part (truncated or another file?)",
                path.display()
            )
        })?;
        ensure!(
            part.version == VERSION,
            "`{}` is a part of format {}; this unitscope reads {VERSION}",
            path.display(),
            part.version
        );
        Ok(part)
    }
}

/// The image range of shard `i` of `n` over `len` images: as even as can be.
pub fn shard_range((i, n): (usize, usize), len: usize) -> Result<Range<usize>> {
    ensure!(
        n > 0 && i < n,
        "shard {i}/{n}: the shard number runs from 0 to N-1"
    );
    ensure!(n <= len, "{n} shards of {len} images leave some empty");
    Ok(i * len / n..(i + 1) * len / n)
}

/// What a shard counted, or merged shards did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum State {
    /// Round 1: each unit's sketch of its activations.
    Sketches(Vec<Sketch>),
    /// Round 2: the thresholds tallied at, and the tally.
    Tally(Vec<f32>, Tally),
}

impl State {
    /// Whether it is round 2's.
    pub fn is_tally(&self) -> bool {
        matches!(self, Self::Tally(..))
    }
}

/// Merges the parts of one layer: all of one key and round, every shard of N
/// exactly once.
pub fn merge(parts: &[Part]) -> Result<State> {
    let Some(first) = parts.first() else {
        bail!("no parts to merge");
    };
    let n = first.shard.1;
    let mut seen = vec![false; n];
    for part in parts {
        ensure!(
            part.key == first.key && part.layer == first.layer,
            "parts of different runs (model, data, settings or layer differ): `{}` and `{}`",
            first.layer,
            part.layer
        );
        ensure!(
            part.shard.1 == n,
            "parts of {n} and of {} shards cannot merge",
            part.shard.1
        );
        ensure!(
            part.state.is_tally() == first.state.is_tally(),
            "parts of both rounds for `{}`: merge each round's parts on its own",
            part.layer
        );
        ensure!(
            !std::mem::replace(&mut seen[part.shard.0], true),
            "shard {}/{n} of `{}` is given twice",
            part.shard.0,
            part.layer
        );
    }
    let missing: Vec<String> = (0..n)
        .filter(|&i| !seen[i])
        .map(|i| i.to_string())
        .collect();
    ensure!(
        missing.is_empty(),
        "`{}` lacks shard(s) {} of {n}",
        first.layer,
        missing.join(", ")
    );
    let mut merged = first.state.clone();
    for part in &parts[1..] {
        match (&mut merged, &part.state) {
            (State::Tally(thresholds, total), State::Tally(t, tally)) => {
                ensure!(
                    t == thresholds,
                    "shards of `{}` tallied at different thresholds: give round 2 the same merged thresholds",
                    part.layer
                );
                total.merge(tally)?;
            }
            (State::Sketches(total), State::Sketches(sketches)) => {
                ensure!(
                    total.len() == sketches.len(),
                    "parts of different unit counts"
                );
                total.iter_mut().zip(sketches).for_each(|(a, b)| a.merge(b));
            }
            _ => unreachable!("the rounds were checked above"),
        }
    }
    Ok(merged)
}
