//! A histogram that takes values one at a time in constant memory: fixed-count bins
//! whose width doubles (merging neighbours) whenever a value falls outside them. The
//! counts stay exact; only the bin edges coarsen, each time by a factor of two.

use serde::{Deserialize, Serialize};

/// How many bins a histogram keeps.
pub const BINS: usize = 64;

/// Counts of values in [`BINS`] equal bins from `low`, each `width` wide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    counts: Vec<u64>,
    /// The first bin's lower edge.
    low: f32,
    /// A bin's width; zero until two different values have arrived.
    width: f32,
    /// The values seen before the bins could be placed (fewer than [`BINS`], or
    /// all equal): they fix the first range from their own spread.
    pending: Vec<f32>,
    /// Further copies of the pending value while every value so far is that one
    /// (a unit that never fires): counted, not kept.
    repeats: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BINS],
            low: 0.0,
            width: 0.0,
            pending: Vec::new(),
            repeats: 0,
        }
    }
}

impl Histogram {
    /// Counts `value` (a non-finite value is skipped: it has no bin).
    pub fn add(&mut self, value: f32) {
        if !value.is_finite() {
            return;
        }
        if self.width == 0.0 {
            if self.pending.len() >= BINS && self.pending[0] == value {
                // Still one value throughout: the pending list holds its first copies.
                self.repeats += 1;
                return;
            }
            self.pending.push(value);
            if self.pending.len() >= BINS {
                self.place();
            }
            return;
        }
        self.cover(value);
        let bin = ((value - self.low) / self.width) as usize;
        self.counts[bin.min(BINS - 1)] += 1;
    }

    /// Fixes the bins to span the pending values, if they differ, and counts them.
    fn place(&mut self) {
        let low = self.pending.iter().copied().fold(f32::INFINITY, f32::min);
        let high = self
            .pending
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if high <= low {
            return;
        }
        self.low = low;
        // A hair wider than the spread, so the largest value has a bin.
        self.width = (high - low) / BINS as f32 * (1.0 + 1e-6);
        let repeated = self.pending[0];
        for value in std::mem::take(&mut self.pending) {
            self.add(value);
        }
        let bin = ((repeated - self.low) / self.width) as usize;
        self.counts[bin.min(BINS - 1)] += std::mem::take(&mut self.repeats);
    }

    /// Doubles the bins' width until `value` falls inside them: upwards from the same
    /// lower edge, or downwards keeping the same upper edge.
    fn cover(&mut self, value: f32) {
        while value >= self.low + self.width * BINS as f32 {
            for i in 0..BINS / 2 {
                self.counts[i] = self.counts[2 * i] + self.counts[2 * i + 1];
            }
            self.counts[BINS / 2..].fill(0);
            self.width *= 2.0;
        }
        while value < self.low {
            for i in (0..BINS / 2).rev() {
                self.counts[BINS / 2 + i] = self.counts[2 * i] + self.counts[2 * i + 1];
            }
            self.counts[..BINS / 2].fill(0);
            self.low -= self.width * BINS as f32;
            self.width *= 2.0;
        }
    }

    /// How many values were counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.pending.len() as u64 + self.repeats
    }

    /// The counts in `bins` equal bins between the lowest and highest occupied
    /// edges, and those two edges.
    pub fn bins(&self, bins: usize) -> (Vec<u64>, (f32, f32)) {
        let bins = bins.max(1);
        let mut out = vec![0; bins];
        if self.width == 0.0 {
            // Too few values to have placed the bins yet: place them on a copy.
            let mut placed = self.clone();
            placed.place();
            if placed.width > 0.0 {
                return placed.bins(bins);
            }
            // Every value equal: one spike.
            let value = self.pending.first().copied().unwrap_or(0.0);
            out[0] = self.pending.len() as u64 + self.repeats;
            return (out, (value, value));
        }
        let first = self.counts.iter().position(|&c| c > 0).unwrap_or(0);
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        let span = last + 1 - first;
        for (i, &count) in self.counts[first..=last].iter().enumerate() {
            out[i * bins / span] += count;
        }
        let edge = |bin: usize| self.low + bin as f32 * self.width;
        (out, (edge(first), edge(last + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts stay exact whatever order values come in; the range grows both ways
    /// and still contains every value.
    #[test]
    fn counts_are_exact_and_the_range_covers_every_value() {
        let values: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f32 / 10.0 - 20.0)
            .chain([1e4, -3e3])
            .collect();
        let mut h = Histogram::default();
        for &v in &values {
            h.add(v);
        }
        assert_eq!(h.total(), values.len() as u64);
        let (counts, (lo, hi)) = h.bins(10);
        assert_eq!(counts.iter().sum::<u64>(), values.len() as u64);
        assert!(lo <= -3e3 && hi > 1e4, "{lo}..{hi}");
        // Each of the 64 bins is still a true count after the merges: recount
        // every value into the final bins.
        let mut recount = vec![0; BINS];
        for &v in &values {
            recount[(((v - h.low) / h.width) as usize).min(BINS - 1)] += 1;
        }
        assert_eq!(h.counts, recount);
    }

    /// A unit that never fires: thousands of equal peaks are counted in constant
    /// memory, and a later different value still places them.
    #[test]
    fn equal_values_are_counted_not_kept() {
        let mut h = Histogram::default();
        for _ in 0..10_000 {
            h.add(0.0);
        }
        assert!(h.pending.len() <= BINS);
        assert_eq!(h.bins(3), (vec![10_000, 0, 0], (0.0, 0.0)));
        h.add(1.0);
        let (counts, (lo, hi)) = h.bins(2);
        assert_eq!(counts, vec![10_000, 1]);
        assert!(lo <= 0.0 && hi > 1.0);
    }

    #[test]
    fn few_or_equal_values_make_one_spike() {
        let mut h = Histogram::default();
        for _ in 0..100 {
            h.add(2.5);
        }
        h.add(f32::NAN);
        assert_eq!(h.bins(4), (vec![100, 0, 0, 0], (2.5, 2.5)));
        h.add(3.0);
        let (counts, (lo, hi)) = h.bins(4);
        assert_eq!(counts.iter().sum::<u64>(), 101);
        assert!(lo <= 2.5 && hi > 3.0);
    }
}
