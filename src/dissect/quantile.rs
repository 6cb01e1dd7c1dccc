//! Each unit's threshold `T_k`: the top-`q` quantile (Network Dissection's q =
//! 0.005) of its activations over every position of every image, as
//! NetDissect-Lite's `np.percentile(features, 100 · (1 − q))` computes it (linear
//! interpolation between the two nearest ranks).
//!
//! Two ways, chosen by memory:
//!
//! - **exact** (`TopValues`): only the values that can still reach the top q
//!   kept, about 2q of them (while that fits in a budget), the two ranks selected
//!   in linear time at the end;
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
//!   `S > T` keeps or drops the tie as the exact thresholds would. Sketches merge
//!   by adding counts, so shards merged give a single run's sketch exactly. At
//!   most 512 blocks of 256 counts per unit, allocated as values reach them (a
//!   layer's activations span a few dozen exponents).

use anyhow::{Result, ensure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::maps::{LayerMaps, Map, check_finite};

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
        check_finite(values)?;
        self.add_finite(values);
        Ok(())
    }

    /// Counts `values`, finite.
    fn add_finite(&mut self, values: &[f32]) {
        // Whole-slice passes first: they vectorize, the bucket loop cannot.
        self.min = values.iter().copied().fold(self.min, f32::min);
        self.max = values.iter().copied().fold(self.max, f32::max);
        self.count += values.len() as u64;
        // Zeros are set aside first, without a branch per value (half a
        // rectifier's values are zero, in no order; skipping them in the bucket
        // loop mispredicted, and counting them into one bucket serialized on it).
        let mut nonzero = [0.0; 256];
        for block in values.chunks(nonzero.len()) {
            let mut n = 0;
            for &v in block {
                nonzero[n] = v;
                n += (v != 0.0) as usize;
            }
            self.zeros += (block.len() - n) as u64;
            for &v in &nonzero[..n] {
                let bucket = bucket(v) as usize;
                let block = self.blocks[bucket / BLOCK].get_or_insert_with(Block::new);
                block.add(bucket % BLOCK, v, 1);
            }
        }
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

/// Each sketch's top-`q` quantile (infinite for a unit that saw no value: its mask
/// stays empty).
pub fn sketch_thresholds(sketches: &[Sketch], q: f64) -> Vec<f32> {
    sketches
        .iter()
        .map(|s| s.top_quantile(q).unwrap_or(f32::INFINITY))
        .collect()
}

/// The bucket a nonzero value is counted in.
fn bucket(v: f32) -> u32 {
    ordered(v) >> DROPPED
}

/// The smallest value of `v`'s bucket; zero for zero (counted apart).
fn bucket_start(v: f32) -> f32 {
    match v == 0.0 {
        true => 0.0,
        false => from_ordered(bucket(v) << DROPPED),
    }
}

/// How many values, and their range.
#[derive(Clone, Copy, Debug)]
struct Span {
    count: u64,
    lo: f32,
    hi: f32,
}

impl Default for Span {
    fn default() -> Self {
        Self {
            count: 0,
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
        }
    }
}

impl Span {
    fn add(&mut self, v: f32, n: u64) {
        if n > 0 {
            self.count += n;
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
    }

    fn merge(&mut self, other: Span) {
        self.count += other.count;
        self.lo = self.lo.min(other.lo);
        self.hi = self.hi.max(other.hi);
    }
}

/// One unit's exact top-`q` quantile over a known number of values, keeping only
/// those that can still reach it.
///
/// The quantile needs the `k = N − floor((N − 1)(1 − q))` largest values (numpy's
/// two ranks; `k` ≈ `qN`). Values are kept while they exceed a floor; when more
/// than `2k` are kept, the floor rises to the `k`-th largest of them and those not
/// above it go (the values equal to it are counted, not kept, so ties cannot grow
/// the store). The floor never passes the final `k`-th largest, so no value the
/// quantile needs is lost, and memory stays at `2k` plus one map.
///
/// The sketch's estimate of the same quantile (its error is reported) depends on
/// the values of one bucket, the one holding the `k`-th largest, which may lie
/// below the floor: the count and range of the dropped values of the floor's
/// bucket are kept too. Every bucket above it is kept whole.
struct TopValues {
    /// Values above `floor`, in no order.
    above: Vec<f32>,
    /// The `k`-th largest of the values kept at the last rise (−∞ before).
    floor: f32,
    /// Values equal to `floor` seen since it was set.
    at_floor: u64,
    /// Values of `floor`'s bucket below it: how many, and their range.
    dropped: Span,
    /// The start of `floor`'s bucket: values below it are counted only.
    gate: f32,
    /// How many values the quantile is over.
    total: u64,
    /// How many were seen.
    seen: u64,
    /// `k`.
    needed: usize,
    /// Values kept at most before the floor rises: `2k`.
    rise_at: usize,
}

impl TopValues {
    /// For the top-`q` quantile of `total` values that come in maps of at most
    /// `map` values.
    fn new(total: u64, q: f64, map: usize) -> Self {
        let needed = Self::needed(total, q);
        Self {
            above: Vec::with_capacity(2 * needed + map),
            floor: f32::NEG_INFINITY,
            at_floor: 0,
            dropped: Span::default(),
            gate: f32::NEG_INFINITY,
            total,
            seen: 0,
            needed,
            rise_at: 2 * needed,
        }
    }

    /// `k`: how many of the largest values the top-`q` quantile of `total` needs.
    fn needed(total: u64, q: f64) -> usize {
        let lowest = (total.saturating_sub(1) as f64 * (1.0 - q)).floor() as u64;
        (total - lowest).max(1) as usize
    }

    /// Bytes kept at most: `2k` values plus one map.
    fn bytes(total: u64, q: f64, map: usize) -> usize {
        (2 * Self::needed(total, q) + map) * size_of::<f32>()
    }

    /// Counts one map's values.
    fn add(&mut self, map: Map) {
        if self.above.len() > self.rise_at {
            self.rise();
        }
        self.seen += map.values.len() as u64;
        // Below the gate, hence the floor, a row has nothing to keep or count: most
        // rows, once the floor has risen.
        if map.peak < self.gate {
            return;
        }
        // The gate and floor stay where they are until the next map.
        let (gate, floor) = (self.gate, self.floor);
        let columns = map.values.len() / map.row_peaks.len();
        for (row, &peak) in map.values.chunks_exact(columns).zip(map.row_peaks) {
            if peak < gate {
                continue;
            }
            // How many values are at the floor, and whether one lies in the floor's
            // bucket below it: one vectorized pass (folds of comparisons, which
            // compile to mask tests and sums). Ties at the floor are common: a
            // rectifier's floor is 0 until enough of its values are positive, and a
            // dead unit's stays 0.
            let (mut ties, mut below) = (0u32, false);
            for &v in row {
                ties += u32::from(v == floor);
                below |= (v >= gate) & (v < floor);
            }
            self.at_floor += u64::from(ties);
            if peak > floor {
                // Kept without a branch per value (a fifth of a row may be above
                // the floor, in no order a predictor can follow): each value is
                // written past the end, which moves past those above the floor.
                let start = self.above.len();
                self.above.resize(start + row.len(), 0.0);
                let mut end = start;
                for &v in row {
                    self.above[end] = v;
                    end += usize::from(v > floor);
                }
                self.above.truncate(end);
            }
            if below {
                for &v in row.iter().filter(|&&v| v >= gate && v < floor) {
                    self.dropped.add(v, 1);
                }
            }
        }
    }

    /// Raises the floor to the `k`-th largest value kept.
    fn rise(&mut self) {
        let k = self.needed;
        let (_, &mut floor, _) = self.above.select_nth_unstable_by(k - 1, descending);
        let gate = bucket_start(floor);
        // The old floor's bucket stays the floor's: what it dropped still counts.
        let mut dropped = Span::default();
        if self.floor.is_finite() && gate == self.gate {
            dropped = self.dropped;
            dropped.add(self.floor, self.at_floor);
        }
        let mut at_floor = 0;
        self.above.retain(|&v| {
            if v == floor {
                at_floor += 1;
            } else if v < floor && v >= gate {
                dropped.add(v, 1);
            }
            v > floor
        });
        (self.floor, self.at_floor, self.dropped, self.gate) = (floor, at_floor, dropped, gate);
    }

    /// The `j`-th largest value (1-based, `j <= k`): selected in `above`, which
    /// then holds the `j − 1` larger ones first; the floor when `above` holds
    /// fewer than `j`.
    fn largest(&mut self, j: usize) -> f32 {
        match j <= self.above.len() {
            true => {
                let by = |a: &f32, b: &f32| b.total_cmp(a);
                *self.above.select_nth_unstable_by(j - 1, by).1
            }
            false => self.floor,
        }
    }

    /// The exact top-`q` quantile as numpy's percentile gives it, and the
    /// [`Sketch`]'s estimate of it; `None` before any value. Reorders the values.
    fn quantile(&mut self, q: f64) -> Result<Option<(f32, f32)>> {
        ensure!(
            self.seen == self.total,
            "{} activations of a unit where {} were expected",
            self.seen,
            self.total
        );
        if self.total == 0 {
            return Ok(None);
        }
        let position = (self.total - 1) as f64 * (1.0 - q);
        let k = self.needed;
        let low = self.largest(k);
        // After the selection the k − 1 larger values lead `above`.
        let high = match position.fract() == 0.0 || k == 1 {
            true => low,
            false if k - 1 <= self.above.len() => {
                (self.above[..k - 1].iter().copied()).fold(f32::INFINITY, f32::min)
            }
            false => self.floor,
        };
        let exact = low as f64 + (high as f64 - low as f64) * position.fract();
        Ok(Some((exact as f32, self.estimate(position, low))))
    }

    /// What a [`Sketch`] of every value would estimate, given the quantile's
    /// `position` and `low`, the value of rank `floor(position)`. The sketch's
    /// answer depends only on the bucket holding `low`: its count, the count below
    /// it, whether its values are all one, and the values' range where it clamps.
    fn estimate(&self, position: f64, low: f32) -> f32 {
        if low == 0.0 {
            return 0.0;
        }
        let target = bucket(low);
        let positive = bucket(0.0);
        let (mut higher, mut within) = (0u64, Span::default());
        let mut count = |v: f32, n: u64| {
            if v == 0.0 {
                // Zeros are counted apart, above every negative bucket.
                higher += u64::from(target < positive) * n;
            } else if bucket(v) > target {
                higher += n;
            } else if bucket(v) == target {
                within.add(v, n);
            }
        };
        self.above.iter().for_each(|&v| count(v, 1));
        count(self.floor, self.at_floor);
        if self.dropped.count > 0 && bucket(self.dropped.lo) == target {
            within.merge(self.dropped);
        }
        if within.lo == within.hi {
            return within.lo;
        }
        let below = self.total - higher - within.count;
        // The values' range clamps the estimate: their maximum is kept, and their
        // minimum matters only when no value lies below the bucket.
        let max = (self.above.iter().copied())
            .chain((self.at_floor > 0).then_some(self.floor))
            .fold(f32::NEG_INFINITY, f32::max);
        let min = if below == 0 {
            within.lo
        } else {
            f32::NEG_INFINITY
        };
        let key = target << DROPPED;
        let (start, end) = (from_ordered(key) as f64, bucket_end(key) as f64);
        let at = (position - below as f64 + 0.5) / within.count as f64;
        ((start + (end - start) * at) as f32).clamp(min, max)
    }
}

/// Largest first, for finite values: one comparison, where `total_cmp` takes
/// several (the floor's rises select among thousands of values).
fn descending(a: &f32, b: &f32) -> std::cmp::Ordering {
    b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal)
}

/// A layer's thresholds in the making: per unit, exactly ([`TopValues`]) when the
/// layer was given the memory for it, else from a [`Sketch`].
pub struct Thresholds {
    kept: Kept,
    quantile: f64,
}

/// What [`Thresholds`] keeps.
enum Kept {
    /// Each unit's largest values.
    Exact(Vec<TopValues>),
    /// Each unit's sketch.
    Sketched(Vec<Sketch>),
}

/// A layer's thresholds, finished.
pub struct Finished {
    /// Each unit's `T_k` (infinite for a unit that saw no value: its mask stays
    /// empty).
    pub thresholds: Vec<f32>,
    /// Whether they are exact or the sketch's.
    pub exact: bool,
    /// When exact, the sketch's largest relative error against them.
    pub sketch_error: Option<f64>,
}

impl Thresholds {
    /// The top-`q` quantiles of `units` units over `images` maps of `positions`
    /// values each: exact if `exact`, else sketched.
    pub fn new(units: usize, positions: usize, images: usize, q: f64, exact: bool) -> Self {
        let total = (positions * images) as u64;
        let kept = match exact {
            true => Kept::Exact(
                (0..units)
                    .map(|_| TopValues::new(total, q, positions))
                    .collect(),
            ),
            false => Kept::Sketched(vec![Sketch::default(); units]),
        };
        Self { kept, quantile: q }
    }

    /// The bytes exact thresholds of such a layer keep at most.
    pub fn exact_bytes(units: usize, positions: usize, images: usize, q: f64) -> usize {
        let total = (positions * images) as u64;
        units.saturating_mul(TopValues::bytes(total, q, positions))
    }

    /// Adds a batch's maps.
    pub fn add(&mut self, maps: &LayerMaps) -> Result<()> {
        let units = match &self.kept {
            Kept::Exact(values) => values.len(),
            Kept::Sketched(sketches) => sketches.len(),
        };
        ensure!(
            maps.units() == units,
            "maps of {} units for a layer of {units}",
            maps.units()
        );
        let images = 0..maps.images();
        match &mut self.kept {
            Kept::Exact(values) => (values.par_iter_mut().enumerate()).for_each(|(k, top)| {
                for b in images.clone() {
                    top.add(maps.map(b, k));
                }
            }),
            Kept::Sketched(sketches) => {
                (sketches.par_iter_mut().enumerate()).for_each(|(k, sketch)| {
                    for b in images.clone() {
                        sketch.add_finite(maps.map(b, k).values);
                    }
                })
            }
        }
        Ok(())
    }

    /// The sketches, for a shard's partial state; `None` on the exact path (its
    /// values cannot merge).
    pub fn into_sketches(self) -> Option<Vec<Sketch>> {
        match self.kept {
            Kept::Exact(_) => None,
            Kept::Sketched(sketches) => Some(sketches),
        }
    }

    /// Each unit's top-`q` quantile: exact, with the sketch's largest relative
    /// error against it, or the sketch's.
    pub fn finish(self) -> Result<Finished> {
        let q = self.quantile;
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
        let quantiles: Vec<Option<(f32, f32)>> = values
            .par_iter_mut()
            .map(|top| top.quantile(q))
            .collect::<Result<_>>()?;
        let error = |&(exact, sketched): &(f32, f32)| {
            (sketched - exact).abs() as f64 / exact.abs().max(f32::MIN_POSITIVE) as f64
        };
        Ok(Finished {
            thresholds: (quantiles.iter())
                .map(|q| q.map_or(f32::INFINITY, |(exact, _)| exact))
                .collect(),
            exact: true,
            sketch_error: Some(quantiles.iter().flatten().map(error).fold(0.0, f64::max)),
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// numpy's `percentile(values, 100 (1 − q))`: linear interpolation between the
    /// two nearest ranks of the sorted values.
    fn numpy(values: &[f32], q: f64) -> f32 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f32::total_cmp);
        let position = (sorted.len() - 1) as f64 * (1.0 - q);
        let (low, high) = (
            sorted[position.floor() as usize] as f64,
            sorted[position.ceil() as usize] as f64,
        );
        (low + (high - low) * position.fract()) as f32
    }

    /// [`TopValues`] fed `values` in maps of `map`: its exact quantile and the
    /// sketch's estimate.
    fn top_values(values: &[f32], q: f64, map: usize) -> Option<(f32, f32)> {
        let mut top = TopValues::new(values.len() as u64, q, map);
        for m in values.chunks(map) {
            let peak = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            top.add(Map {
                values: m,
                row_peaks: &[peak],
                peak,
            });
            assert!(
                top.above.len() <= 2 * top.needed + map,
                "memory past its bound"
            );
        }
        top.quantile(q).unwrap()
    }

    /// numpy's percentile on small cases: `np.percentile([1, 2, 3, 4], 75)` = 3.25,
    /// `np.percentile([5], 30)` = 5.
    #[test]
    fn the_exact_quantile_is_numpys() {
        assert_eq!(top_values(&[4., 1., 3., 2.], 0.25, 4).unwrap().0, 3.25);
        assert_eq!(top_values(&[4., 1., 3., 2.], 0.25, 1).unwrap().0, 3.25);
        assert_eq!(top_values(&[5.], 0.7, 1).unwrap().0, 5.0);
        assert_eq!(top_values(&[], 0.5, 1), None);
    }

    /// The largest values kept as the floor rises give numpy's exact quantile, and
    /// the sketch's estimate from them is that of a sketch of every value: on
    /// signed, zero-heavy, saturated (a tie larger than the top q), tied and sparse
    /// values, in maps small enough that the floor rises many times, while memory
    /// stays within its bound.
    #[test]
    fn the_largest_values_give_the_exact_quantile_and_the_sketchs_estimate() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let cases: Vec<Vec<f32>> = vec![
            (0..50_000)
                .map(|_| rng.random_range(-1.0f32..1.0).powi(3) * 40.0)
                .collect(),
            (0..50_000)
                .map(|_| (rng.random_range(-1.0f32..1.0) * 3.0).max(0.0))
                .collect(),
            // ReLU6: 2% of the values at the top are 6.
            (0..50_000)
                .map(|_| (rng.random_range(-1.0f32..1.0) * 6.12).clamp(0.0, 6.0))
                .collect(),
            // Ties just below the top, in one bucket with other values.
            (0..20_000)
                .map(|i| match i % 50 {
                    0 => 7.0,
                    1..=3 => 7.001,
                    _ => rng.random_range(0.0f32..7.0),
                })
                .collect(),
            (0..5_000)
                .map(|i| if i % 7 == 0 { 2.5 } else { 0.0 })
                .collect(),
            (0..5_000).map(|i| -(i as f32) - 1.0).collect(),
            (0..5_000).map(|i| -((i % 300) as f32) * 1e-3).collect(),
            vec![1.0, 1.0 + 1e-6, 1.0 + 2e-6, 3.0],
            vec![0.0; 300],
            vec![4.0],
        ];
        for (n, values) in cases.iter().enumerate() {
            let mut sketch = Sketch::default();
            sketch.add(values).unwrap();
            for q in [0.005, 0.01, 0.3, 0.5, 0.9] {
                for map in [1, 7, 64, 4096] {
                    let (exact, estimate) = top_values(values, q, map).unwrap();
                    let at = format!("case {n}, q {q}, maps of {map}");
                    assert_eq!(exact.to_bits(), numpy(values, q).to_bits(), "{at}");
                    assert_eq!(Some(estimate), sketch.top_quantile(q), "{at}");
                }
            }
        }
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
                    let exact = numpy(&values, q) as f64;
                    assert!(((estimate - exact) / exact).abs() <= STATED_ERROR);
                }
            }
        }
        let mut nan = Sketch::default();
        assert!(nan.add(&[1.0, f32::NAN]).is_err());
    }

    /// A layer's thresholds, from `[batch, units, positions]` batches: exact ones
    /// are numpy's per unit, with the sketch's largest error against them;
    /// sketched ones are those of a sketch of each unit's values; maps of another
    /// number of units and values missing are errors.
    #[test]
    fn thresholds_are_exact_or_sketched_per_layer() {
        let (units, positions, images) = (3, 50, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let acts: Vec<f32> = (0..units * positions * images)
            .map(|_| rng.random_range(0.0f32..1.0).powi(2))
            .collect();
        let unit = |k: usize| -> Vec<f32> {
            (0..images)
                .flat_map(|b| &acts[(b * units + k) * positions..][..positions])
                .copied()
                .collect()
        };
        let q = 0.05;
        let mut exact = Thresholds::new(units, positions, images, q, true);
        let mut sketched = Thresholds::new(units, positions, images, q, false);
        let maps =
            |values: &[f32], units| LayerMaps::new(values.to_vec(), 2, units, (5, 10)).unwrap();
        for batch in acts.chunks(2 * units * positions) {
            exact.add(&maps(batch, units)).unwrap();
            sketched.add(&maps(batch, units)).unwrap();
        }
        let (exact, sketched) = (exact.finish().unwrap(), sketched.finish().unwrap());
        assert!(exact.exact && !sketched.exact && sketched.sketch_error.is_none());
        let mut largest_error: f64 = 0.0;
        for k in 0..units {
            let mut sketch = Sketch::default();
            sketch.add(&unit(k)).unwrap();
            let estimate = sketch.top_quantile(q).unwrap();
            assert_eq!(exact.thresholds[k], numpy(&unit(k), q), "unit {k}");
            assert_eq!(sketched.thresholds[k], estimate, "unit {k}");
            let error = (estimate - exact.thresholds[k]).abs() as f64 / exact.thresholds[k] as f64;
            largest_error = largest_error.max(error);
        }
        assert_eq!(exact.sketch_error, Some(largest_error));

        let mut broken = Thresholds::new(units, positions, images, q, true);
        assert!(broken.add(&maps(&acts[..2 * positions], 1)).is_err());
        broken
            .add(&maps(&acts[..2 * units * positions], units))
            .unwrap();
        assert!(broken.finish().is_err(), "6 images missing");
    }
}
