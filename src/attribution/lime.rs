//! LIME (Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?"): a linear model
//! fitted to the network's outputs on copies of the input with superpixels switched
//! off, its coefficients painted on the superpixels.
//!
//! For an input `x` cut into `K` superpixels ([`slic`]), as Captum's `Lime` with a
//! `feature_mask`:
//!
//! 1. draw `N` coalitions `z ∈ {0,1}^K`, each superpixel kept with probability ½
//!    (Captum's `default_perturb_func`), from a seeded ChaCha stream per input;
//! 2. `x_z` keeps the kept superpixels and takes the others from a baseline `b`
//!    (zero, a blurred copy of `x`, or each superpixel's mean value):
//!    `x_z[p] = z[s(p)] x[p] + (1 - z[s(p)]) b[p]`;
//! 3. weight each copy by its closeness to `x`, `π = exp(-d² / 2σ²)` with `d` the
//!    cosine distance of the flattened inputs (Captum's
//!    `get_exp_kernel_similarity_function("cosine", kernel_width=σ)`, σ = 1);
//! 4. fit `f(x_z) ≈ β₀ + β·z` by weighted ridge regression, as scikit-learn's
//!    `Ridge(alpha)` with `sample_weight` (Captum's `SkLearnRidge`): `z` and `f`
//!    centred on their weighted means, `β = (Zᵀ W Z + α I)⁻¹ Zᵀ W f`;
//! 5. paint `β_k` on superpixel `k`. The fit's weighted R² says how much of the
//!    network's behaviour on the copies the linear story explains.
//!
//! Forward passes only: `N` per input, in batches of a set size.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::descriptor::shared::{BATCH_SIZE, SEED};
use super::descriptor::{Build, Descriptor, Kind, Param, Params};
use super::method::{Notes, Attribution, Method, Passes, in_batches, target_values};
use super::regression::weighted_ridge;
use super::superpixels::{Segmentation, slic};
use super::target::Target;
use crate::model::Model;

/// LIME.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "lime",
    aliases: &[],
    about: "LIME: a weighted linear fit over superpixels switched off",
    citation: "Ribeiro et al. 2016",
    params: &[
        PERTURBATIONS,
        SEGMENTS,
        COMPACTNESS,
        FILL,
        KERNEL_WIDTH,
        RIDGE,
        SEED,
        BATCH_SIZE,
    ],
    build: Build::Method(&|p| Ok(Box::new(Lime::from_params(p)?))),
}];

/// Coalitions drawn per input.
pub(super) const PERTURBATIONS: Param = Param {
    name: "perturbations",
    kind: Kind::Integer {
        default: 1000,
        min: 2,
        max: 1_000_000,
    },
    help: "LIME, KernelSHAP: perturbed copies per input (KernelSHAP: when there are over 12 superpixels)",
};

/// About how many superpixels an input is cut into.
pub(super) const SEGMENTS: Param = Param {
    name: "segments",
    kind: Kind::Integer {
        default: 50,
        min: 1,
        max: 10_000,
    },
    help: "LIME, KernelSHAP: about how many superpixels (SLIC) an input is cut into",
};

/// SLIC's compactness. Above scikit-image's 10: on textured scenes (the demo
/// world's grounds) 10 lets colour noise cut the regions into fragments, which the
/// connectivity step then merges into a few large ones (scene 0 of the demo world:
/// 8 regions for 50 asked, one of 62% of the image; at 30, 24 regions, the largest
/// 14%).
pub(super) const COMPACTNESS: Param = Param {
    name: "compactness",
    kind: Kind::Real {
        default: 30.0,
        min: 0.0,
        max: 1e6,
    },
    help: "LIME, KernelSHAP: SLIC's compactness (higher: squarer superpixels, lower: \
           closer to colour edges)",
};

/// What a switched-off superpixel shows.
pub(super) const FILL: Param = Param {
    name: "fill",
    kind: Kind::Choice {
        default: "zero",
        values: &[
            ("zero", "zero in the model's input (the dataset mean, for normalized images)"),
            ("blur", "a blurred copy of the input"),
            ("mean", "each superpixel's mean value"),
        ],
    },
    help: "LIME, KernelSHAP: what a switched-off superpixel shows",
};

const KERNEL_WIDTH: Param = Param {
    name: "kernel-width",
    kind: Kind::Real {
        default: 1.0,
        min: 1e-6,
        max: 1e6,
    },
    help: "LIME: width of the exponential kernel on the cosine distance (Captum's 1.0)",
};

const RIDGE: Param = Param {
    name: "ridge",
    kind: Kind::Real {
        default: 1.0,
        min: 0.0,
        max: 1e9,
    },
    help: "LIME: the ridge penalty of the linear fit (scikit-learn's alpha)",
};

/// What a switched-off superpixel shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Zero in the model's input.
    Zero,
    /// A Gaussian-blurred copy of the input (σ = 1/16 of its shorter side).
    Blur,
    /// Each superpixel's mean value, per channel.
    Mean,
}

impl Fill {
    pub(super) fn from_params(p: &Params) -> Result<Self> {
        Ok(match p.text(&FILL)?.as_str() {
            "blur" => Self::Blur,
            "mean" => Self::Mean,
            _ => Self::Zero,
        })
    }

    /// The baseline of `x` (`[C, H, W]` planes, row by row) cut by `s`.
    pub(super) fn baseline(self, x: &[f32], s: &Segmentation) -> Vec<f32> {
        let n = s.labels.len();
        match self {
            Self::Zero => vec![0.0; x.len()],
            Self::Blur => {
                let sigma = s.size.0.min(s.size.1) as f64 / 16.0;
                x.chunks_exact(n)
                    .flat_map(|plane| blurred(plane, s.size, sigma))
                    .collect()
            }
            Self::Mean => x
                .chunks_exact(n)
                .flat_map(|plane| {
                    let mut sums = vec![(0f64, 0usize); s.count];
                    for (&v, &l) in plane.iter().zip(&s.labels) {
                        sums[l as usize].0 += v as f64;
                        sums[l as usize].1 += 1;
                    }
                    let means: Vec<f32> =
                        sums.iter().map(|(t, c)| (t / *c as f64) as f32).collect();
                    s.labels.iter().map(move |&l| means[l as usize])
                })
                .collect(),
        }
    }
}

/// `plane` (`h x w`) blurred by a Gaussian of `sigma` pixels, rows then columns,
/// edges repeated.
fn blurred(plane: &[f32], (h, w): (usize, usize), sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let taps: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = taps.iter().sum();
    let pass = |input: &[f32], (rows, columns): (usize, usize), along_rows: bool| -> Vec<f32> {
        let mut out = vec![0f32; input.len()];
        for r in 0..rows {
            for c in 0..columns {
                let mut sum = 0f64;
                for (i, t) in taps.iter().enumerate() {
                    let d = i as isize - radius;
                    let (rr, cc) = match along_rows {
                        true => (r, (c as isize + d).clamp(0, columns as isize - 1) as usize),
                        false => ((r as isize + d).clamp(0, rows as isize - 1) as usize, c),
                    };
                    sum += t * input[rr * columns + cc] as f64;
                }
                out[r * columns + c] = (sum / total) as f32;
            }
        }
        out
    };
    pass(&pass(plane, (h, w), true), (h, w), false)
}

/// LIME over SLIC superpixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Lime {
    /// Coalitions per input.
    pub samples: usize,
    /// About how many superpixels.
    pub segments: usize,
    /// SLIC's compactness.
    pub compactness: f64,
    /// What a switched-off superpixel shows.
    pub fill: Fill,
    /// The exponential kernel's width on the cosine distance.
    pub kernel_width: f64,
    /// The ridge penalty.
    pub ridge: f64,
    /// Seed of the coalitions (input `i` draws from stream `i`).
    pub seed: u64,
    /// Perturbed copies per forward pass.
    pub batch: usize,
}

impl Default for Lime {
    fn default() -> Self {
        Self {
            samples: 1000,
            segments: 50,
            compactness: 30.0,
            fill: Fill::Zero,
            kernel_width: 1.0,
            ridge: 1.0,
            seed: 0,
            batch: 16,
        }
    }
}

/// One input explained: its superpixels, the linear fit over them.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The superpixels.
    pub segmentation: Segmentation,
    /// `β_k` per superpixel.
    pub coefficients: Vec<f64>,
    /// `β₀`.
    pub intercept: f64,
    /// The weighted R² of the fit on the copies.
    pub r2: f64,
}

impl Lime {
    fn from_params(p: &Params) -> Result<Self> {
        Ok(Self {
            samples: p.count(&PERTURBATIONS)?,
            segments: p.count(&SEGMENTS)?,
            compactness: p.real(&COMPACTNESS)?,
            fill: Fill::from_params(p)?,
            kernel_width: p.real(&KERNEL_WIDTH)?,
            ridge: p.real(&RIDGE)?,
            seed: p.integer(&SEED)?,
            batch: p.count(&BATCH_SIZE)?,
        })
    }

    /// The `samples` coalitions of input `index`: each superpixel kept with
    /// probability ½.
    pub fn coalitions(&self, index: usize, features: usize) -> Vec<Vec<bool>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index as u64);
        (0..self.samples)
            .map(|_| (0..features).map(|_| rng.random::<bool>()).collect())
            .collect()
    }

    /// Explains `input` (`[1, C, H, W]`) for `target` over the superpixels
    /// `segmentation` and the given `coalitions` (each of `segmentation.count`).
    pub fn fit(
        &self,
        model: &Model,
        input: &Tensor,
        target: &Target,
        segmentation: Segmentation,
        coalitions: &[Vec<bool>],
    ) -> Result<Fit> {
        let k = segmentation.count;
        ensure!(
            coalitions.iter().all(|z| z.len() == k),
            "LIME: coalitions of {k} superpixels expected"
        );
        let x = input.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let baseline = self.fill.baseline(&x, &segmentation);
        let outputs = perturbed_outputs(
            model,
            input,
            target,
            (&segmentation, &baseline),
            coalitions,
            self.batch,
        )?;
        // Cosine distances from per-superpixel sums: x·x_z and |x_z|² add up over
        // kept superpixels (x's values) and switched-off ones (the baseline's).
        let n = segmentation.labels.len();
        let mut sums = vec![[0f64; 3]; k]; // x·x, x·b, b·b
        for (i, (&v, &b)) in x.iter().zip(&baseline).enumerate() {
            let s = &mut sums[segmentation.labels[i % n] as usize];
            let (v, b) = (v as f64, b as f64);
            s[0] += v * v;
            s[1] += v * b;
            s[2] += b * b;
        }
        let xx: f64 = sums.iter().map(|s| s[0]).sum();
        let weights: Vec<f64> = coalitions
            .iter()
            .map(|z| {
                let (mut dot, mut norm) = (0f64, 0f64);
                for (s, &on) in sums.iter().zip(z) {
                    dot += if on { s[0] } else { s[1] };
                    norm += if on { s[0] } else { s[2] };
                }
                // torch's CosineSimilarity clamps each norm at 1e-8.
                let cos = dot / (xx.sqrt().max(1e-8) * norm.sqrt().max(1e-8));
                let d = 1.0 - cos;
                (-(d * d) / (2.0 * self.kernel_width * self.kernel_width)).exp()
            })
            .collect();
        let design: Vec<Vec<f64>> = coalitions
            .iter()
            .map(|z| z.iter().map(|&on| on as u8 as f64).collect())
            .collect();
        let ridge = weighted_ridge(&design, &outputs, &weights, self.ridge)?;
        Ok(Fit {
            segmentation,
            coefficients: ridge.coefficients,
            intercept: ridge.intercept,
            r2: ridge.r2,
        })
    }
}

impl Method for Lime {
    fn name(&self) -> String {
        format!(
            "lime(n={}, segments={}, fill={:?})",
            self.samples, self.segments, self.fill
        )
        .to_lowercase()
    }

    fn passes(&self, _: (usize, usize)) -> Passes {
        Passes {
            backward: 0,
            forward: self.samples,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        Ok(self.attribute_noted(model, inputs, targets)?.0)
    }

    fn attribute_noted(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<(Attribution, Vec<Notes>)> {
        let (_, c, h, w) = inputs.dims4()?;
        let (mut maps, mut notes) = (Vec::new(), Vec::new());
        for (i, target) in targets.iter().enumerate() {
            let input = inputs.narrow(0, i, 1)?;
            let planes = input.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let segmentation = slic(&planes, (h, w), self.segments, self.compactness)?;
            let coalitions = self.coalitions(i, segmentation.count);
            let fit = self.fit(model, &input, target, segmentation, &coalitions)?;
            maps.push(painted(&fit.segmentation, &fit.coefficients, c, inputs)?);
            notes.push(Notes {
                r2: Some(fit.r2),
                segmentation: Some(fit.segmentation),
                ..Notes::default()
            });
        }
        Ok((Attribution::Input(Tensor::cat(&maps, 0)?), notes))
    }
}

/// `values[k]` painted on superpixel `k`, the same on every one of `channels`:
/// `[1, C, H, W]` on `like`'s device.
pub(super) fn painted(
    s: &Segmentation,
    values: &[f64],
    channels: usize,
    like: &Tensor,
) -> Result<Tensor> {
    let (h, w) = s.size;
    let plane: Vec<f32> = s.labels.iter().map(|&l| values[l as usize] as f32).collect();
    Ok(Tensor::from_vec(plane, (1, 1, h, w), like.device())?.repeat((1, channels, 1, 1))?)
}

/// The target's value on each coalition's copy of `input`: superpixels switched
/// off show `baseline`.
pub(super) fn perturbed_outputs(
    model: &Model,
    input: &Tensor,
    target: &Target,
    (s, baseline): (&Segmentation, &[f32]),
    coalitions: &[Vec<bool>],
    batch: usize,
) -> Result<Vec<f64>> {
    let (_, c, h, w) = input.dims4()?;
    let (device, dtype) = (input.device(), input.dtype());
    let baseline = Tensor::from_vec(baseline.to_vec(), (1, c, h, w), device)?.to_dtype(dtype)?;
    let values = in_batches(coalitions.len(), batch.max(1), |start, len| {
        let keep: Vec<f32> = coalitions[start..start + len]
            .iter()
            .flat_map(|z| s.labels.iter().map(|&l| z[l as usize] as u8 as f32))
            .collect();
        let keep = Tensor::from_vec(keep, (len, 1, h, w), device)?.to_dtype(dtype)?;
        let copies = (input.broadcast_mul(&keep)? + baseline.broadcast_mul(&keep.affine(-1.0, 1.0)?)?)?;
        let values = target_values(model, &copies, &vec![target.clone(); len])?;
        Ok(values.to_dtype(DType::F64)?.to_vec1::<f64>()?)
    })?;
    Ok(values.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalitions_are_seeded_per_input_and_fair() {
        let lime = Lime {
            samples: 4000,
            ..Lime::default()
        };
        let a = lime.coalitions(0, 10);
        assert_eq!(a, lime.coalitions(0, 10));
        assert_ne!(a, lime.coalitions(1, 10));
        let kept = a.iter().flatten().filter(|&&on| on).count() as f64 / 40_000.0;
        assert!((kept - 0.5).abs() < 0.02, "{kept}");
    }

    #[test]
    fn baselines_fill_as_named() {
        let s = Segmentation {
            size: (2, 3),
            labels: vec![0, 0, 1, 0, 1, 1],
            count: 2,
        };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(Fill::Zero.baseline(&x, &s), vec![0.0; 6]);
        let mean = Fill::Mean.baseline(&x, &s);
        assert_eq!(mean, vec![7.0 / 3.0, 7.0 / 3.0, 14.0 / 3.0, 7.0 / 3.0, 14.0 / 3.0, 14.0 / 3.0]);
        // A blur (σ = 1 px at 16 px) keeps a flat plane flat and pulls a ramp's ends
        // toward its middle.
        let s = Segmentation {
            size: (16, 16),
            labels: vec![0; 256],
            count: 1,
        };
        assert!(Fill::Blur.baseline(&[3.0; 256], &s).iter().all(|v| (v - 3.0).abs() < 1e-5));
        let ramp: Vec<f32> = (0..256).map(|p| (p % 16) as f32).collect();
        let blurred = Fill::Blur.baseline(&ramp, &s);
        assert!(blurred[0] > 0.1 && blurred[15] < 14.9, "{blurred:?}");
        assert!((blurred[8] - 8.0).abs() < 1e-4, "a ramp's inside is kept");
    }
}
