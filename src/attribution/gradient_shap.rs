//! GradientSHAP (Lundberg & Lee 2017; Captum's `GradientShap`): expected gradients,
//! SHAP values approximated as the mean of gradients along random paths from
//! baselines drawn from a distribution to noisy copies of the input:
//!
//! `φ(x) = E_{b, ε, α} [(x̃ - b) ⊙ ∇f(b + α (x̃ - b))]`, `x̃ = x + ε`,
//!
//! with `ε ~ N(0, σ²)`, `σ` a fraction (`--noise-level`) of the input's value
//! range as SmoothGrad takes it, `α ~ U(0, 1)`, and `b` drawn uniformly from the
//! baseline distribution: the zero input and `--baselines - 1` images of uniform
//! noise over the input's range. `--samples` draws per input, from a seeded ChaCha
//! stream per input, run in batches: one forward and backward pass per draw.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::descriptor::shared::{BATCH_SIZE, SEED};
use super::descriptor::{Build, Descriptor, Kind, Param, Params};
use super::method::{Attribution, Method, Passes, backward, in_batches, onto_inputs};
use super::target::Target;
use crate::model::{Model, Probe};

/// GradientSHAP.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "gradient-shap",
    aliases: &["gradientshap"],
    about: "GradientSHAP: expected gradients from a baseline distribution to noisy copies",
    citation: "Lundberg & Lee 2017",
    params: &[DRAWS, BASELINES, SHAP_NOISE, SEED, BATCH_SIZE],
    build: Build::Method(&|p| Ok(Box::new(GradientShap::from_params(p)?))),
}];

const DRAWS: Param = Param {
    name: "draws",
    kind: Kind::Integer {
        default: 50,
        min: 1,
        max: 100_000,
    },
    help: "GradientSHAP: (baseline, noise, point) draws per input",
};

const BASELINES: Param = Param {
    name: "baselines",
    kind: Kind::Integer {
        default: 8,
        min: 1,
        max: 1024,
    },
    help: "GradientSHAP: baselines in the distribution (zero, then uniform noise images)",
};

const SHAP_NOISE: Param = Param {
    name: "shap-noise",
    kind: Kind::Real {
        default: 0.1,
        min: 0.0,
        max: 10.0,
    },
    help: "GradientSHAP: noise added to the input, as a fraction of its value range",
};

/// GradientSHAP.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientShap {
    /// Draws per input.
    pub samples: usize,
    /// Baselines in the distribution: zero, then uniform noise images.
    pub baselines: usize,
    /// The input noise's σ as a fraction of each input's value range.
    pub level: f64,
    /// Seed of the draws (input `i` draws from stream `i`).
    pub seed: u64,
    /// Draws per forward and backward pass.
    pub batch: usize,
}

impl Default for GradientShap {
    fn default() -> Self {
        Self {
            samples: 50,
            baselines: 8,
            level: 0.1,
            seed: 0,
            batch: 16,
        }
    }
}

/// Draws of GradientSHAP for a batch of inputs, draw-major (draw `s` of input `i`
/// at `s * N + i`): the noisy inputs, the baselines, the points' `α`.
pub struct Draws {
    /// `x̃`, `[S * N, C, H, W]`.
    pub noisy: Tensor,
    /// `b`, `[S * N, C, H, W]`.
    pub baselines: Tensor,
    /// `α`, one per draw.
    pub alphas: Vec<f64>,
}

impl GradientShap {
    fn from_params(p: &Params) -> Result<Self> {
        Ok(Self {
            samples: p.count(&DRAWS)?,
            baselines: p.count(&BASELINES)?,
            level: p.real(&SHAP_NOISE)?,
            seed: p.integer(&SEED)?,
            batch: p.count(&BATCH_SIZE)?,
        })
    }

    /// The seeded draws for `inputs` (`[N, C, H, W]`).
    pub fn draws(&self, inputs: &Tensor) -> Result<Draws> {
        let n = inputs.dim(0)?;
        let per_input = inputs.elem_count() / n.max(1);
        let x = inputs.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2::<f32>()?;
        let (mut noisy, mut baselines) = (vec![0f32; self.samples * n * per_input], Vec::new());
        baselines.resize(noisy.len(), 0f32);
        let mut alphas = vec![0f64; self.samples * n];
        for (i, x) in x.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(i as u64);
            let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            let sigma = (hi - lo) as f64 * self.level;
            // The distribution: zero, then uniform noise over [lo, hi].
            let distribution: Vec<Vec<f32>> = (0..self.baselines)
                .map(|b| match b {
                    0 => vec![0f32; per_input],
                    _ => (0..per_input).map(|_| rng.random_range(lo..=hi)).collect(),
                })
                .collect();
            for s in 0..self.samples {
                let at = (s * n + i) * per_input;
                let pick = rng.random_range(0..self.baselines);
                baselines[at..at + per_input].copy_from_slice(&distribution[pick]);
                for (out, &v) in noisy[at..at + per_input].iter_mut().zip(x) {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    *out = (v as f64 + sigma * e) as f32;
                }
                alphas[s * n + i] = rng.random::<f64>();
            }
        }
        let shape = [&[self.samples * n], &inputs.dims()[1..]].concat();
        Ok(Draws {
            noisy: Tensor::from_vec(noisy, shape.as_slice(), inputs.device())?,
            baselines: Tensor::from_vec(baselines, shape.as_slice(), inputs.device())?,
            alphas,
        })
    }

    /// The maps of `inputs` for `targets` from the given draws.
    pub fn attribute_with(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
        draws: &Draws,
    ) -> Result<Attribution> {
        let n = inputs.dim(0)?;
        let total = draws.alphas.len();
        ensure!(
            total > 0 && total.is_multiple_of(n) && draws.noisy.dim(0)? == total,
            "GradientSHAP: {total} draws for {n} inputs"
        );
        let dtype = inputs.dtype();
        let mut sum: Option<Tensor> = None;
        in_batches(total, self.batch.max(1), |start, len| {
            let which: Vec<u32> = (start..start + len).map(|d| (d % n) as u32).collect();
            let index = Tensor::new(which.as_slice(), inputs.device())?;
            let noisy = draws.noisy.narrow(0, start, len)?.to_dtype(dtype)?;
            let base = draws.baselines.narrow(0, start, len)?.to_dtype(dtype)?;
            let path = (&noisy - &base)?;
            let alpha = Tensor::new(&draws.alphas[start..start + len], inputs.device())?
                .to_dtype(dtype)?
                .reshape((len, 1, 1, 1))?;
            let points = (&base + path.broadcast_mul(&alpha)?)?;
            let batch_targets: Vec<Target> =
                which.iter().map(|&i| targets[i as usize].clone()).collect();
            let (_, grads) = backward(model, &points, &batch_targets, Probe::new())?;
            let terms = (grads.input()?.to_dtype(dtype)? * path)?;
            let part = onto_inputs(&terms, &index, n)?;
            sum = Some(match sum.take() {
                Some(s) => (s + part)?,
                None => part,
            });
            Ok(())
        })?;
        let sum = sum.expect("at least one draw");
        Ok(Attribution::Input((sum / (total / n) as f64)?))
    }
}

impl Method for GradientShap {
    fn name(&self) -> String {
        format!(
            "gradient-shap(n={}, baselines={}, noise={})",
            self.samples, self.baselines, self.level
        )
    }

    fn passes(&self, _: (usize, usize)) -> Passes {
        Passes {
            backward: self.samples,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        ensure!(self.baselines > 0 && self.samples > 0, "GradientSHAP needs a draw and a baseline");
        let draws = self.draws(inputs)?;
        self.attribute_with(model, inputs, targets, &draws)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn draws_are_seeded_per_input_and_shaped_draw_major() {
        let shap = GradientShap {
            samples: 3,
            baselines: 2,
            ..GradientShap::default()
        };
        let x = Tensor::arange(0f32, 24., &Device::Cpu).unwrap().reshape((2, 3, 2, 2)).unwrap();
        let a = shap.draws(&x).unwrap();
        let b = shap.draws(&x).unwrap();
        assert_eq!(a.alphas, b.alphas);
        assert_eq!(a.noisy.dims(), [6, 3, 2, 2]);
        assert!(a.alphas.iter().all(|a| (0.0..1.0).contains(a)));
        // Draw s of input i sits at s * 2 + i, near input i (σ = 0.1 of its range).
        let noisy = a.noisy.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        for (d, row) in noisy.iter().enumerate() {
            let first = (d % 2) as f32 * 12.0;
            assert!((row[0] - first).abs() < 6.0, "draw {d}: {}", row[0]);
        }
        // Baselines are zero or within the input's range.
        let baselines = a.baselines.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(baselines.iter().all(|v| (0.0..=23.0).contains(v)));
    }
}
