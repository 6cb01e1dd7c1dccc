//! RISE, Randomized Input Sampling for Explanation (Petsiuk et al. 2018), as a
//! method plugin written against the SDK alone: no Candle, no host code. It
//! needs nothing but forward passes, so it explains any model of any modality.
//!
//! N random masks `M_i` each keep a fraction `p` of the input; the map is the
//! masks weighted by the target's score on the masked inputs:
//!
//! ```text
//! S(x) = 1 / (N p) * sum_i f(I ⊙ M_i) M_i(x)
//! ```
//!
//! where `f` is the class's softmax probability (the paper's choice), a unit's
//! activation (its channel's mean, or one position), or a weighted sum of logits.
//! A mask is a `s x s` grid of cells kept with probability `p`, upsampled
//! bilinearly to `(s + 1)` cells of `ceil(H / s) x ceil(W / s)` pixels and cropped
//! at a random shift of less than a cell, which makes the masks smooth and not
//! aligned to the grid (the paper's Sec. 3.2).
//!
//! The masks follow one protocol, so that the host's direct implementation draws
//! the same ones: a ChaCha8 generator seeded with `seed`; for each mask its
//! `s * s` cells in row-major order (`random::<f32>() < p`), then the shift `dy`
//! (`random_range(0..cell_h)`), then `dx`. Upsampling uses half-pixel centres with
//! clamped edges (PyTorch's `align_corners=False`). Every input sees the same
//! masks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unitscope_sdk::{
    Args, Error, Host, Kind, Method, Param, Passes, Target, Tensor, export_plugin,
};

/// The RISE method.
#[derive(Default)]
pub struct Rise;

const MASKS: &str = "masks";
const CELLS: &str = "cells";
const KEEP: &str = "keep";
const SEED: &str = "seed";
const BATCH_SIZE: &str = "batch-size";

impl Method for Rise {
    const NAME: &'static str = "rise";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "random masks weighted by the target's score on the masked input";
    const CITATION: &'static str = "Petsiuk et al. 2018";

    fn params() -> Vec<Param> {
        vec![
            Param {
                name: MASKS,
                help: "RISE: the number of random masks N",
                kind: Kind::Integer {
                    default: 4000,
                    min: 1,
                    max: 100_000,
                },
            },
            Param {
                name: CELLS,
                help: "RISE: the mask grid's cells per side s",
                kind: Kind::Integer {
                    default: 8,
                    min: 2,
                    max: 64,
                },
            },
            Param {
                name: KEEP,
                help: "RISE: the probability p that a cell is kept",
                kind: Kind::Real {
                    default: 0.5,
                    min: 0.01,
                    max: 0.99,
                },
            },
            // The host's own `seed` and `batch-size`, declared alike: one option each.
            Param {
                name: SEED,
                help: "Seed of the random samples (noise, masks)",
                kind: Kind::Integer {
                    default: 0,
                    min: 0,
                    max: u64::MAX,
                },
            },
            Param {
                name: BATCH_SIZE,
                help: "Inputs per pass for the methods that run many",
                kind: Kind::Integer {
                    default: 16,
                    min: 1,
                    max: 256,
                },
            },
        ]
    }

    fn passes(&self, args: &Args, _: usize, _: usize) -> Result<Passes, Error> {
        Ok(Passes {
            backward: 0,
            forward: args.integer(MASKS)?,
        })
    }

    fn attribute(
        &self,
        host: &Host,
        args: &Args,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<Tensor, Error> {
        let settings = Settings::read(args)?;
        let &[n, c, h, w] = inputs.dims() else {
            return Err(Error::new(format!(
                "inputs of shape {:?}, not [N, C, H, W]",
                inputs.dims()
            )));
        };
        if targets.len() != n {
            return Err(Error::new(format!(
                "{} targets for {n} inputs",
                targets.len()
            )));
        }
        let mut maps = Tensor::zeros(&[n, 1, h, w]);
        for (i, target) in targets.iter().enumerate() {
            let map = explain(host, &settings, (inputs.item(i), [c, h, w]), target)?;
            maps.data_mut()[i * h * w..(i + 1) * h * w].copy_from_slice(&map);
        }
        Ok(maps)
    }
}

export_plugin!(method: Rise);

/// The parameters, read.
struct Settings {
    masks: usize,
    cells: usize,
    keep: f32,
    seed: u64,
    batch: usize,
}

impl Settings {
    fn read(args: &Args) -> Result<Self, Error> {
        Ok(Self {
            masks: args.integer(MASKS)? as usize,
            cells: args.integer(CELLS)? as usize,
            keep: args.real(KEEP)? as f32,
            seed: args.integer(SEED)?,
            batch: args.integer(BATCH_SIZE)?.max(1) as usize,
        })
    }
}

/// One input's map, `H * W` values.
fn explain(
    host: &Host,
    settings: &Settings,
    (x, [c, h, w]): (&[f32], [usize; 3]),
    target: &Target,
) -> Result<Vec<f32>, Error> {
    let mut masks = Masks::new(settings, h, w);
    let mut map = vec![0.0f32; h * w];
    let mut done = 0;
    while done < settings.masks {
        if host.cancelled() {
            return Err(Error::cancelled());
        }
        let b = settings.batch.min(settings.masks - done);
        let batch: Vec<Vec<f32>> = (0..b).map(|_| masks.next_mask()).collect();
        let mut masked = Vec::with_capacity(b * c * h * w);
        for mask in &batch {
            for channel in x.chunks_exact(h * w) {
                masked.extend(channel.iter().zip(mask).map(|(v, m)| v * m));
            }
        }
        let scores = score(host, &Tensor::new(&[b, c, h, w], masked)?, target)?;
        for (mask, s) in batch.iter().zip(scores) {
            for (v, m) in map.iter_mut().zip(mask) {
                *v += s * m;
            }
        }
        done += b;
    }
    let scale = 1.0 / (settings.masks as f32 * settings.keep);
    map.iter_mut().for_each(|v| *v *= scale);
    Ok(map)
}

/// The target's score on each input of the batch.
fn score(host: &Host, batch: &Tensor, target: &Target) -> Result<Vec<f32>, Error> {
    let b = batch.dims()[0];
    match target {
        Target::Class(class) => {
            let logits = host.forward(batch, &[])?.logits;
            Ok((0..b).map(|i| softmax_at(logits.item(i), *class)).collect())
        }
        Target::Weighted(weights) => {
            let logits = host.forward(batch, &[])?.logits;
            Ok((0..b)
                .map(|i| logits.item(i).iter().zip(weights).map(|(l, w)| l * w).sum())
                .collect())
        }
        Target::Unit {
            layer,
            channel,
            position,
        } => {
            let recorded = host.forward(batch, &[layer])?.layers.remove(0);
            let dims = recorded.dims().to_vec();
            let channels = *dims.get(1).unwrap_or(&0);
            if *channel >= channels {
                return Err(Error::new(format!(
                    "{layer} has {channels} channels; there is no channel {channel}"
                )));
            }
            let plane: usize = dims[2..].iter().product();
            Ok((0..b)
                .map(|i| {
                    let values = &recorded.item(i)[channel * plane..(channel + 1) * plane];
                    match (position, &dims[2..]) {
                        (Some((y, x)), [_, width]) => values[y * width + x],
                        _ => values.iter().sum::<f32>() / plane as f32,
                    }
                })
                .collect())
        }
    }
}

/// The softmax of `logits` at `class`.
fn softmax_at(logits: &[f32], class: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.get(class).map_or(0.0, |l| (l - max).exp() / total)
}

/// The masks, drawn in the protocol's order.
struct Masks {
    rng: ChaCha8Rng,
    cells: usize,
    keep: f32,
    size: [usize; 2],
    cell: [usize; 2],
}

impl Masks {
    fn new(settings: &Settings, h: usize, w: usize) -> Self {
        let s = settings.cells;
        Self {
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            cells: s,
            keep: settings.keep,
            size: [h, w],
            cell: [h.div_ceil(s), w.div_ceil(s)],
        }
    }

    /// The next mask, `H * W` values in `0..=1`.
    fn next_mask(&mut self) -> Vec<f32> {
        let s = self.cells;
        let grid: Vec<f32> = (0..s * s)
            .map(|_| f32::from(u8::from(self.rng.random::<f32>() < self.keep)))
            .collect();
        let dy = self.rng.random_range(0..self.cell[0]);
        let dx = self.rng.random_range(0..self.cell[1]);
        let rows = taps(s, (s + 1) * self.cell[0], dy, self.size[0]);
        let cols = taps(s, (s + 1) * self.cell[1], dx, self.size[1]);
        // Along x for each grid row, then along y.
        let across: Vec<f32> = (0..s)
            .flat_map(|r| {
                let row = &grid[r * s..(r + 1) * s];
                cols.iter()
                    .map(move |&(a, b, t)| row[a] * (1.0 - t) + row[b] * t)
            })
            .collect();
        let w = self.size[1];
        let mut mask = Vec::with_capacity(self.size[0] * w);
        for &(a, b, t) in &rows {
            let (top, bottom) = (&across[a * w..(a + 1) * w], &across[b * w..(b + 1) * w]);
            mask.extend(top.iter().zip(bottom).map(|(p, q)| p * (1.0 - t) + q * t));
        }
        mask
    }
}

/// For each output position `shift..shift + len` of a `cells`-long axis upsampled
/// to `up`: the two source cells and the weight of the second (half-pixel
/// centres, clamped edges).
fn taps(cells: usize, up: usize, shift: usize, len: usize) -> Vec<(usize, usize, f32)> {
    let scale = cells as f32 / up as f32;
    (shift..shift + len)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let a = (src as usize).min(cells - 1);
            let b = (a + 1).min(cells - 1);
            (a, b, src - a as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask is smooth between cells kept and dropped: values in 0..=1, the
    /// shape asked, and about a fraction `keep` of it on average.
    #[test]
    fn masks_keep_about_p_of_the_input() {
        let settings = Settings {
            masks: 200,
            cells: 7,
            keep: 0.3,
            seed: 5,
            batch: 8,
        };
        let mut masks = Masks::new(&settings, 40, 52);
        let mut mean = 0.0;
        for _ in 0..settings.masks {
            let m = masks.next_mask();
            assert_eq!(m.len(), 40 * 52);
            assert!(m.iter().all(|v| (0.0..=1.0).contains(v)));
            mean += m.iter().sum::<f32>() / m.len() as f32;
        }
        mean /= settings.masks as f32;
        assert!((mean - 0.3).abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn taps_follow_half_pixel_centres() {
        // 2 cells to 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25.
        let t = taps(2, 4, 0, 4);
        assert_eq!(t[0], (0, 1, 0.0));
        assert_eq!(t[1], (0, 1, 0.25));
        assert_eq!(t[2], (0, 1, 0.75));
        assert_eq!(t[3], (1, 1, 0.25));
    }

    #[test]
    fn softmax_is_a_probability() {
        let p = softmax_at(&[1.0, 2.0, 3.0], 2);
        assert!((p - 0.665_240_9).abs() < 1e-6);
    }
}
