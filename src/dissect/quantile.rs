//! Each unit's threshold `T_k`: the top-`q` quantile (Network Dissection's q =
//! 0.005) of its activations over every position of every image, as
//! NetDissect-Lite's `np.percentile(features, 100 · (1 − q))` computes it (linear
//! interpolation between the two nearest ranks).
//!
//! Two ways, chosen by memory:
//!
//! - **exact**: every activation kept (while they fit in a budget), the two ranks
//!   selected in linear time;
//! - **sketch** ([`Sketch`]): activations counted in buckets, flat in the dataset's
//!   size. A float's bits ordered as its value (sign flipped in, negatives
//!   inverted) keep their top 17 bits as the bucket: sign, exponent and 8 mantissa
//!   bits, so a bucket spans a relative width of at most 2^-8. Counts are exact,
//!   so the rank of every bucket is; only the position inside the bucket that
//!   holds the quantile is interpolated (evenly spread, clamped to the unit's
//!   minimum and maximum). The estimate lies in the buckets of the two values the
//!   exact quantile interpolates between: within [`STATED_ERROR`] (2^-7, relative;
//!   for values of at least 2^-126) of the interval they span, so within 2^-7 of
//!   the exact value wherever values are dense, as millions of them are.
//!   Exact zeros (a rectifier's, mostly) are counted apart, and a bucket remembers
//!   its value while it has seen only one: a quantile among tied values (flat
//!   images give many) is that value itself, as the exact path gives it, so that
//!   `S > T` keeps or drops the tie as the exact thresholds would. Sketches merge by adding counts, so shards merged give a
//!   single run's sketch exactly. At most 512 blocks of 256 counts per unit, allocated as values reach
//!   them (a layer's activations span a few dozen exponents).

use anyhow::{Result, ensure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The sketch's bound on the relative error of a threshold (see the module doc).
pub const STATED_ERROR: f64 = 1.0 / 128.0;

/// Bits of a value's ordered key below its bucket.
const DROPPED: u32 = 15;
/// Buckets per block (one sign and exponent).
const BLOCK: usize = 256;
/// Blocks: the key's top 9 bits.
const BLOCKS: usize = 512;

/// One unit's activations counted in buckets (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Per block, its buckets once a value reached it.
    blocks: Vec<Option<Block>>,
    /// Values that are exactly zero (either sign).
    zeros: u64,
    count: u64,
    min: f32,
    max: f32,
}

/// One sign and exponent's buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Block {
    counts: Vec<u64>,
    /// Each bucket's value while all its values are that one; `None` once two
    /// differ (or before any).
    single: Vec<Option<f32>>,
}

impl Block {
    fn new() -> Self {
        Self {
            counts: vec![0; BLOCK],
            single: vec![None; BLOCK],
        }
    }

    fn add(&mut self, i: usize, v: f32, n: u64) {
        self.single[i] = match (self.counts[i], self.single[i]) {
            (0, _) => Some(v),
            (_, Some(s)) if s == v => Some(s),
            _ => None,
        };
        self.counts[i] += n;
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            blocks: vec![None; BLOCKS],
            zeros: 0,
            count: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

/// The value's bits as an unsigned key in the value's order.
fn ordered(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The value whose ordered key is `key`.
fn from_ordered(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    })
}

impl Sketch {
    /// Counts `values`; non-finite ones are an error (a broken model).
    pub fn add(&mut self, values: &[f32]) -> Result<()> {
        // Whole-slice passes first: they vectorize, the bucket loop cannot.
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            anyhow::bail!("an activation is {v}; the model's weights or input are broken");
        }
        self.min = values.iter().copied().fold(self.min, f32::min);
        self.max = values.iter().copied().fold(self.max, f32::max);
        self.count += values.len() as u64;
        // Zeros are set aside first, without a branch per value (half a
        // rectifier's values are zero, in no order; skipping them in the bucket
        // loop mispredicted, and counting them into one bucket serialized on it).
        let mut nonzero = vec![0.0; values.len()];
        let mut n = 0;
        for &v in values {
            nonzero[n] = v;
            n += (v != 0.0) as usize;
        }
        self.zeros += (values.len() - n) as u64;
        for &v in &nonzero[..n] {
            let bucket = (ordered(v) >> DROPPED) as usize;
            let block = self.blocks[bucket / BLOCK].get_or_insert_with(Block::new);
            block.add(bucket % BLOCK, v, 1);
        }
        Ok(())
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Sketch) {
        for (mine, theirs) in self.blocks.iter_mut().zip(&other.blocks) {
            if let Some(theirs) = theirs {
                let mine = mine.get_or_insert_with(Block::new);
                for i in 0..BLOCK {
                    match (theirs.counts[i], theirs.single[i]) {
                        (0, _) => {}
                        (n, Some(v)) => mine.add(i, v, n),
                        (n, None) => {
                            mine.counts[i] += n;
                            mine.single[i] = None;
                        }
                    }
                }
            }
        }
        self.zeros += other.zeros;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values it counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The top-`q` quantile's estimate; `None` before any value.
    pub fn top_quantile(&self, q: f64) -> Option<f32> {
        if self.count == 0 {
            return None;
        }
        // numpy's position of the (1 − q) percentile among the sorted values.
        let position = (self.count - 1) as f64 * (1.0 - q);
        let mut below = self.count;
        for (b, block) in self.blocks.iter().enumerate().rev() {
            // Blocks below the middle hold negative values: the zeros come first.
            if b == BLOCKS / 2 - 1 && self.zeros > 0 {
                below -= self.zeros;
                if position >= below as f64 {
                    return Some(0.0);
                }
            }
            let Some(block) = block else { continue };
            for (i, &c) in block.counts.iter().enumerate().rev() {
                if c == 0 {
                    continue;
                }
                below -= c;
                if position >= below as f64 {
                    if let Some(v) = block.single[i] {
                        return Some(v);
                    }
                    // Spread the bucket's c values evenly over its width.
                    let key = ((b * BLOCK + i) as u32) << DROPPED;
                    let (lo, hi) = (from_ordered(key) as f64, bucket_end(key) as f64);
                    let at = (position - below as f64 + 0.5) / c as f64;
                    let v = lo + (hi - lo) * at;
                    return Some((v as f32).clamp(self.min, self.max));
                }
            }
        }
        Some(self.min)
    }
}

/// The value at the end of the bucket that starts at `key` (the next bucket's
/// start, or the largest float).
fn bucket_end(key: u32) -> f32 {
    match key.checked_add(1 << DROPPED) {
        Some(next) => from_ordered(next),
        None => f32::MAX,
    }
}

/// The top-`q` quantile of `values` as numpy's `percentile(values, 100 (1 − q))`:
/// linear interpolation between the two nearest ranks. Reorders `values`.
pub fn exact_top_quantile(values: &mut [f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let position = (values.len() - 1) as f64 * (1.0 - q);
    let (lo, frac) = (position.floor() as usize, position.fract());
    let (_, &mut low, above) = values.select_nth_unstable_by(lo, f32::total_cmp);
    let high = match above.is_empty() || frac == 0.0 {
        true => low,
        false => above.iter().copied().fold(f32::INFINITY, f32::min),
    };
    Some((low as f64 + (high as f64 - low as f64) * frac) as f32)
}

/// Each sketch's top-`q` quantile (infinite for a unit that saw no value: its mask
/// stays empty).
pub fn sketch_thresholds(sketches: &[Sketch], q: f64) -> Vec<f32> {
    sketches
        .iter()
        .map(|s| s.top_quantile(q).unwrap_or(f32::INFINITY))
        .collect()
}

/// What a [`Sketch`] of `values` would estimate as their top-`q` quantile,
/// computed from the values themselves, without building it. Reorders `values`.
pub fn sketch_estimate(values: &mut [f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let position = (values.len() - 1) as f64 * (1.0 - q);
    let (_, &mut low, _) = values.select_nth_unstable_by(position as usize, f32::total_cmp);
    Some(estimate(values, position, low))
}

/// [`sketch_estimate`] given the quantile's `position` among the sorted values and
/// `low`, the value of rank `floor(position)`: the sketch's answer depends only on
/// the bucket holding `low`, that bucket's count and the count below it, whether
/// its values are all one, and the values' range. One pass, no buckets: how the
/// exact path reports the sketch's error at no sketch's cost.
fn estimate(values: &[f32], position: f64, low: f32) -> f32 {
    if low == 0.0 {
        return 0.0;
    }
    let target = ordered(low) >> DROPPED;
    let positive = ordered(0.0) >> DROPPED;
    let (mut below, mut count) = (0u64, 0u64);
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let (mut bucket_lo, mut bucket_hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in values {
        lo = lo.min(v);
        hi = hi.max(v);
        if v == 0.0 {
            // Zeros are counted apart, below every positive bucket.
            below += u64::from(target >= positive);
            continue;
        }
        let bucket = ordered(v) >> DROPPED;
        if bucket < target {
            below += 1;
        } else if bucket == target {
            count += 1;
            bucket_lo = bucket_lo.min(v);
            bucket_hi = bucket_hi.max(v);
        }
    }
    if bucket_lo == bucket_hi {
        return bucket_lo;
    }
    let key = target << DROPPED;
    let (start, end) = (from_ordered(key) as f64, bucket_end(key) as f64);
    let at = (position - below as f64 + 0.5) / count as f64;
    ((start + (end - start) * at) as f32).clamp(lo, hi)
}

/// A layer's thresholds in the making: every value while they fit in the exact
/// path's budget; past it, a sketch per unit (made from the values kept so far,
/// which are then dropped).
pub struct Thresholds {
    kept: Kept,
    budget: usize,
}

/// What [`Thresholds`] keeps.
enum Kept {
    /// Each unit's values.
    Exact(Vec<Vec<f32>>),
    /// Each unit's sketch.
    Sketched(Vec<Sketch>),
}

/// A layer's thresholds, finished.
pub struct Finished {
    /// Each unit's `T_k` (infinite for a unit that saw no value: its mask stays
    /// empty).
    pub thresholds: Vec<f32>,
    /// Whether they are exact (every value was kept) or the sketch's.
    pub exact: bool,
    /// When exact, the sketch's largest relative error against them.
    pub sketch_error: Option<f64>,
}

impl Thresholds {
    /// For `units` units, keeping values exactly up to `budget` bytes (reserved
    /// now: a layer is given what its values need, and growing would copy them).
    pub fn new(units: usize, budget: usize) -> Self {
        let each = budget / size_of::<f32>() / units.max(1);
        let kept = match budget {
            0 => Kept::Sketched(vec![Sketch::default(); units]),
            _ => Kept::Exact((0..units).map(|_| Vec::with_capacity(each)).collect()),
        };
        Self { kept, budget }
    }

    /// Adds a batch's activations, `[batch, units, positions]` flattened.
    pub fn add(&mut self, acts: &[f32], batch: usize) -> Result<()> {
        let units = match &self.kept {
            Kept::Exact(values) => values.len(),
            Kept::Sketched(sketches) => sketches.len(),
        };
        let positions = acts.len() / (batch * units).max(1);
        ensure!(
            positions * batch * units == acts.len(),
            "{} activations do not make {batch} x {units} maps",
            acts.len()
        );
        if let Some(v) = acts.iter().find(|v| !v.is_finite()) {
            anyhow::bail!("an activation is {v}; the model's weights or input are broken");
        }
        // Unit k's map in image b of the batch.
        let map = |b: usize, k: usize| {
            let at = (b * units + k) * positions;
            &acts[at..at + positions]
        };
        if let Kept::Exact(values) = &mut self.kept {
            let kept: usize = values.iter().map(Vec::len).sum();
            if (kept + acts.len()) * size_of::<f32>() <= self.budget {
                values.par_iter_mut().enumerate().for_each(|(k, values)| {
                    (0..batch).for_each(|b| values.extend_from_slice(map(b, k)))
                });
                return Ok(());
            }
            self.kept = Kept::Sketched(sketches_of(values)?);
        }
        if let Kept::Sketched(sketches) = &mut self.kept {
            sketches
                .par_iter_mut()
                .enumerate()
                .try_for_each(|(k, sketch)| (0..batch).try_for_each(|b| sketch.add(map(b, k))))?;
        }
        Ok(())
    }

    /// The sketches, for a shard's partial state.
    pub fn into_sketches(self) -> Result<Vec<Sketch>> {
        match self.kept {
            Kept::Exact(values) => sketches_of(&values),
            Kept::Sketched(sketches) => Ok(sketches),
        }
    }

    /// Each unit's top-`q` quantile: exact if every value was kept, else the
    /// sketch's; and, when exact, the sketch's largest relative error against it.
    pub fn finish(self, q: f64) -> Result<Finished> {
        let mut values = match self.kept {
            Kept::Sketched(sketches) => {
                return Ok(Finished {
                    thresholds: sketch_thresholds(&sketches, q),
                    exact: false,
                    sketch_error: None,
                });
            }
            Kept::Exact(values) => values,
        };
        let (thresholds, errors): (Vec<f32>, Vec<f64>) = values
            .par_iter_mut()
            .map(|v| {
                let Some(exact) = exact_top_quantile(v, q) else {
                    return (f32::INFINITY, 0.0);
                };
                // The exact selection left the value of rank floor(position) in place.
                let position = (v.len() - 1) as f64 * (1.0 - q);
                let sketched = estimate(v, position, v[position as usize]);
                let error = (sketched - exact).abs() / exact.abs().max(f32::MIN_POSITIVE);
                (exact, error as f64)
            })
            .unzip();
        Ok(Finished {
            thresholds,
            exact: true,
            sketch_error: Some(errors.into_iter().fold(0.0, f64::max)),
        })
    }
}

/// A sketch of each unit's `values`.
fn sketches_of(values: &[Vec<f32>]) -> Result<Vec<Sketch>> {
    values
        .par_iter()
        .map(|v| {
            let mut sketch = Sketch::default();
            sketch.add(v)?;
            Ok(sketch)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// numpy's percentile on small cases: `np.percentile([1, 2, 3, 4], 75)` = 3.25,
    /// `np.percentile([5], 30)` = 5.
    #[test]
    fn the_exact_quantile_is_numpys() {
        assert_eq!(exact_top_quantile(&mut [4., 1., 3., 2.], 0.25), Some(3.25));
        assert_eq!(exact_top_quantile(&mut [5.], 0.7), Some(5.0));
        assert_eq!(exact_top_quantile(&mut [], 0.5), None);
    }

    /// On skewed, signed, zero-heavy data (a rectifier's output and a linear
    /// layer's), the sketch lands within its stated error of the two values the
    /// exact quantile interpolates between (close to it in the dense tail; 2% apart
    /// at the sparse median of a cube), and merged halves equal the whole.
    #[test]
    fn the_sketch_is_within_its_stated_error_and_merges_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for rectified in [true, false] {
            let values: Vec<f32> = (0..200_000)
                .map(|_| {
                    let v: f32 = rng.random_range(-1.0f32..1.0).powi(3) * 40.0;
                    if rectified { v.max(0.0) } else { v }
                })
                .collect();
            let mut whole = Sketch::default();
            whole.add(&values).unwrap();
            let (a, b) = values.split_at(77_777);
            let (mut left, mut right) = (Sketch::default(), Sketch::default());
            left.add(a).unwrap();
            right.add(b).unwrap();
            left.merge(&right);
            assert_eq!(left, whole);
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            for q in [0.005, 0.01, 0.5] {
                let position = (sorted.len() - 1) as f64 * (1.0 - q);
                let (lo, hi) = (
                    sorted[position.floor() as usize],
                    sorted[position.ceil() as usize],
                );
                let widen = |v: f32, sign: f64| v as f64 + sign * STATED_ERROR * v.abs() as f64;
                let estimate = whole.top_quantile(q).unwrap() as f64;
                assert!(
                    widen(lo, -1.0) <= estimate && estimate <= widen(hi, 1.0),
                    "q {q}: {estimate} outside [{lo}, {hi}]"
                );
                if q == 0.005 {
                    let exact = exact_top_quantile(&mut values.clone(), q).unwrap() as f64;
                    assert!(((estimate - exact) / exact).abs() <= STATED_ERROR);
                }
            }
        }
        let mut nan = Sketch::default();
        assert!(nan.add(&[1.0, f32::NAN]).is_err());
    }

    /// Values past the budget drop the exact path; a sketch made of the values
    /// kept carries on, and equals one that saw every value.
    #[test]
    fn thresholds_fall_back_to_the_sketch_past_the_budget() {
        let acts: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let mut kept = Thresholds::new(3, 1 << 20);
        kept.add(&acts, 2).unwrap();
        let finished = kept.finish(0.0).unwrap();
        // Unit 1's values: 4..8 and 16..20; the maximum is 19.
        assert_eq!(finished.thresholds[1], 19.0);
        assert!(finished.exact && finished.sketch_error.is_some());
        // Two batches fit, the third does not.
        let mut over = Thresholds::new(3, 2 * acts.len() * size_of::<f32>());
        let mut sketched = Thresholds::new(3, 0);
        for round in 0..3 {
            let batch: Vec<f32> = acts.iter().map(|v| v + round as f32).collect();
            over.add(&batch, 2).unwrap();
            sketched.add(&batch, 2).unwrap();
        }
        let finished = over.finish(0.0).unwrap();
        assert_eq!(finished.thresholds[1], 21.0);
        assert!(!finished.exact && finished.sketch_error.is_none());
        let mut over = Thresholds::new(3, 2 * acts.len() * size_of::<f32>());
        for round in 0..3 {
            let batch: Vec<f32> = acts.iter().map(|v| v + round as f32).collect();
            over.add(&batch, 2).unwrap();
        }
        assert_eq!(
            over.into_sketches().unwrap(),
            sketched.into_sketches().unwrap()
        );
    }

    /// The sketch's estimate computed from the values equals the estimate of the
    /// sketch built from them, on signed, zero-heavy, tied and sparse values.
    #[test]
    fn the_estimate_from_values_is_the_sketchs() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let cases: Vec<Vec<f32>> = vec![
            (0..50_000)
                .map(|_| rng.random_range(-1.0f32..1.0).powi(3) * 40.0)
                .collect(),
            (0..50_000)
                .map(|_| (rng.random_range(-1.0f32..1.0) * 3.0).max(0.0))
                .collect(),
            (0..5_000)
                .map(|i| if i % 7 == 0 { 2.5 } else { 0.0 })
                .collect(),
            (0..5_000).map(|i| -(i as f32) - 1.0).collect(),
            vec![1.0, 1.0 + 1e-6, 1.0 + 2e-6, 3.0],
            vec![4.0],
        ];
        for (n, values) in cases.iter().enumerate() {
            let mut sketch = Sketch::default();
            sketch.add(values).unwrap();
            for q in [0.005, 0.01, 0.3, 0.5, 0.9] {
                assert_eq!(
                    sketch_estimate(&mut values.clone(), q),
                    sketch.top_quantile(q),
                    "case {n}, q {q}"
                );
            }
        }
    }
}
