//! Which units follow a known quantity: each unit's activation, position by
//! position, correlated with each of a world's tracks (a text's bracket depth,
//! whether it is inside a string), over held-out samples. Karpathy, Johnson &
//! Fei-Fei (2015) found such LSTM cells by eye; with the truth known at every
//! character, a search over all units finds them and says how closely they follow.
//!
//! Pearson's r over every position of every sample, from running sums (memory
//! flat in the number of samples): `r = (n Σat − Σa Σt) / sqrt((n Σa² − (Σa)²)
//! (n Σt² − (Σt)²))`, in f64. A constant unit or track has no correlation (`r = 0`).

use std::ops::Range;

use anyhow::{Context, Result, ensure};
use candle_core::{DType, Tensor};
use rayon::prelude::*;
use serde::Serialize;

use crate::data::modality::World;
use crate::model::{Model, Probe};

/// Samples per forward pass.
const BATCH: usize = 32;

/// Running sums of one (unit, track) pair.
#[derive(Clone, Copy, Default)]
struct Sums {
    a: f64,
    aa: f64,
    t: f64,
    tt: f64,
    at: f64,
}

impl Sums {
    fn add(&mut self, a: f64, t: f64) {
        self.a += a;
        self.aa += a * a;
        self.t += t;
        self.tt += t * t;
        self.at += a * t;
    }

    /// Pearson's r over `n` pairs; 0 where either side is constant.
    fn r(&self, n: f64) -> f64 {
        let cov = n * self.at - self.a * self.t;
        let var = (n * self.aa - self.a * self.a) * (n * self.tt - self.t * self.t);
        if var <= 0.0 { 0.0 } else { cov / var.sqrt() }
    }
}

/// One unit's correlation with one track.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Match {
    /// `LAYER:UNIT`.
    pub unit: String,
    /// Pearson's r, in `-1..=1`.
    pub r: f64,
}

/// Every unit of some layers against every track of a world.
#[derive(Clone, Debug, Serialize)]
pub struct Correlations {
    /// The tracks, in the world's order.
    pub tracks: Vec<String>,
    /// The layers, each with `r[unit][track]`.
    pub layers: Vec<LayerCorrelations>,
    /// Samples the sums ran over.
    pub samples: usize,
    /// Positions the sums ran over (every position of every sample).
    pub positions: usize,
}

/// A layer's units against the tracks.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCorrelations {
    /// The layer's name.
    pub layer: String,
    /// `r[unit][track]`.
    pub r: Vec<Vec<f64>>,
}

impl Correlations {
    /// The `k` units whose |r| with `track` is largest, largest first.
    pub fn best(&self, track: usize, k: usize) -> Vec<Match> {
        let mut all: Vec<Match> = self
            .layers
            .iter()
            .flat_map(|l| {
                l.r.iter().enumerate().map(move |(u, r)| Match {
                    unit: format!("{}:{u}", l.layer),
                    r: r[track],
                })
            })
            .collect();
        all.sort_by(|a, b| b.r.abs().total_cmp(&a.r.abs()));
        all.truncate(k);
        all
    }
}

/// Correlates every unit of `layers` with every track of `world` over its
/// held-out samples `0..samples` of `seed`; `progress` hears the samples done.
pub fn correlate(
    model: &Model,
    world: &dyn World,
    layers: &[String],
    seed: u64,
    samples: usize,
    mut progress: impl FnMut(usize),
) -> Result<Correlations> {
    let tracks = world.tracks().to_vec();
    ensure!(
        !tracks.is_empty(),
        "the world has no tracks to correlate units with"
    );
    ensure!(samples > 0, "correlating needs at least one sample");
    let probe = layers
        .iter()
        .fold(Probe::new().values_only().stop_after_recorded(), |p, l| {
            p.record(l.clone())
        });
    let mut sums: Vec<Vec<Vec<Sums>>> = Vec::new();
    let mut positions = 0;
    for start in (0..samples).step_by(BATCH) {
        crate::jobs::checkpoint()?;
        let first = world.held_out() + start as u64;
        let end = first + (samples - start).min(BATCH) as u64;
        let (x, truth) = draw(model, world, seed, first..end)?;
        let capture = model.forward(&x, &probe)?;
        let at = truth[0].len() / tracks.len();
        positions += truth.len() * at;
        for (l, layer) in layers.iter().enumerate() {
            let activation = capture.activation(layer)?;
            let (b, units) = (activation.dim(0)?, activation.dim(1)?);
            let positions = activation.elem_count() / (b * units);
            ensure!(
                positions == at,
                "layer `{layer}` has {positions} positions per unit, the world's tracks {at}: \
                 correlate a layer at the input's resolution"
            );
            if sums.len() <= l {
                sums.push(vec![vec![Sums::default(); tracks.len()]; units]);
            }
            let values = activation
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?;
            for (i, sample) in truth.iter().enumerate() {
                for (u, unit) in sums[l].iter_mut().enumerate() {
                    let a = &values[(i * units + u) * at..][..at];
                    for (k, pair) in unit.iter_mut().enumerate() {
                        let t = &sample[k * at..][..at];
                        for (&a, &t) in a.iter().zip(t) {
                            pair.add(a, f64::from(t));
                        }
                    }
                }
            }
        }
        progress(start + truth.len());
    }
    let n = positions as f64;
    Ok(Correlations {
        tracks,
        layers: layers
            .iter()
            .zip(sums)
            .map(|(layer, units)| LayerCorrelations {
                layer: layer.clone(),
                r: units
                    .iter()
                    .map(|unit| unit.iter().map(|s| s.r(n)).collect())
                    .collect(),
            })
            .collect(),
        samples,
        positions,
    })
}

/// Samples `indices` of `world` as `model`'s input batch, and their tracks.
fn draw(
    model: &Model,
    world: &dyn World,
    seed: u64,
    indices: Range<u64>,
) -> Result<(Tensor, Vec<Vec<f32>>)> {
    let shape = model.input_spec().shape();
    let drawn: Vec<(Tensor, Vec<f32>)> = indices
        .into_par_iter()
        .map(|i| {
            let sample = world.sample(seed, i, shape)?;
            let input = Tensor::from_vec(sample.input, shape.to_vec(), model.device())?;
            Ok((input, sample.tracks))
        })
        .collect::<Result<_>>()?;
    let (inputs, tracks): (Vec<Tensor>, Vec<Vec<f32>>) = drawn.into_iter().unzip();
    let x = Tensor::stack(&inputs, 0).context("cannot batch the world's samples")?;
    Ok((x, tracks))
}

#[cfg(test)]
mod tests {
    use super::Sums;

    /// r of a line is ±1, of a constant 0, of independent-looking values small.
    #[test]
    fn pearson_from_running_sums() {
        let r = |pairs: &[(f64, f64)]| {
            let mut s = Sums::default();
            pairs.iter().for_each(|&(a, t)| s.add(a, t));
            s.r(pairs.len() as f64)
        };
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 - 2.0)).collect();
        assert!((r(&line) - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = line.iter().map(|&(a, t)| (a, -t)).collect();
        assert!((r(&down) + 1.0).abs() < 1e-12);
        assert_eq!(r(&[(1.0, 2.0), (1.0, 5.0), (1.0, 7.0)]), 0.0);
        // a = (1, 2, 3, 4), t = (1, 3, 2, 4): r = 0.8 by hand.
        let r4 = r(&[(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0)]);
        assert!((r4 - 0.8).abs() < 1e-12, "{r4}");
    }
}
