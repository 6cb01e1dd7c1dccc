//! KernelSHAP (Lundberg & Lee 2017, "A Unified Approach to Interpreting Model
//! Predictions"): the Shapley values of superpixels, as the weighted linear fit
//! whose weights are the Shapley kernel.
//!
//! With the input cut into `M` superpixels ([`slic`]) and `x_z` the copy keeping the
//! superpixels of coalition `z` (the others from a baseline, as in [`super::lime`]),
//! the Shapley values `φ` minimize
//!
//! `Σ_z π(z) (f(x_z) - φ₀ - z·φ)²`, `π(z) = (M - 1) / (C(M, |z|) |z| (M - |z|))`,
//!
//! subject to `φ₀ = f(b)` (nothing kept) and the efficiency constraint
//! `Σ φ = f(x) - f(b)`, imposed exactly: `φ_M` is eliminated
//! (`φ_M = Δ - Σ_{j<M} φ_j`) and the rest solved by weighted least squares. (Captum
//! imposes both by weights of 10⁶ on the full and empty coalitions, which its
//! results approach.)
//!
//! Coalitions: with few superpixels (`M ≤ 12`, 4094 proper coalitions) every one,
//! weighted by `π`; otherwise `N` drawn as Captum's `KernelShap` draws them, the
//! size `k` with probability ∝ `(M - 1) / (k (M - k))` and then `k` superpixels
//! uniformly, each of weight 1 (sampling by the kernel's size marginal makes every
//! drawn coalition's weight equal). Forward passes only.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::descriptor::shared::{BATCH_SIZE, SEED};
use super::descriptor::{Build, Descriptor, Params};
use super::lime::{COMPACTNESS, FILL, Fill, PERTURBATIONS, SEGMENTS, painted, perturbed_outputs};
use super::method::{Notes, Attribution, Method, Passes};
use super::regression::least_squares;
use super::superpixels::{Segmentation, slic};
use super::target::Target;
use crate::model::Model;

/// KernelSHAP.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "kernel-shap",
    aliases: &["kernelshap"],
    about: "KernelSHAP: Shapley values of superpixels by the Shapley kernel's weighted fit",
    citation: "Lundberg & Lee 2017",
    params: &[PERTURBATIONS, SEGMENTS, COMPACTNESS, FILL, SEED, BATCH_SIZE],
    build: Build::Method(&|p| Ok(Box::new(KernelShap::from_params(p)?))),
}];

/// Superpixels up to which every coalition is evaluated.
const EXACT_UP_TO: usize = 12;

/// KernelSHAP over SLIC superpixels.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelShap {
    /// Coalitions drawn per input when there are too many superpixels to
    /// enumerate.
    pub samples: usize,
    /// About how many superpixels.
    pub segments: usize,
    /// SLIC's compactness.
    pub compactness: f64,
    /// What a switched-off superpixel shows.
    pub fill: Fill,
    /// Seed of the drawn coalitions (input `i` draws from stream `i`).
    pub seed: u64,
    /// Perturbed copies per forward pass.
    pub batch: usize,
}

impl Default for KernelShap {
    fn default() -> Self {
        Self {
            samples: 1000,
            segments: 50,
            compactness: 30.0,
            fill: Fill::Zero,
            seed: 0,
            batch: 16,
        }
    }
}

impl KernelShap {
    fn from_params(p: &Params) -> Result<Self> {
        Ok(Self {
            samples: p.count(&PERTURBATIONS)?,
            segments: p.count(&SEGMENTS)?,
            compactness: p.real(&COMPACTNESS)?,
            fill: Fill::from_params(p)?,
            seed: p.integer(&SEED)?,
            batch: p.count(&BATCH_SIZE)?,
        })
    }

    /// The coalitions of input `index` over `m` superpixels and their weights:
    /// every proper one weighted by the Shapley kernel when `m` is small, else
    /// `samples` drawn by the kernel, each of weight 1.
    pub fn coalitions(&self, index: usize, m: usize) -> (Vec<Vec<bool>>, Vec<f64>) {
        if m <= EXACT_UP_TO {
            let all: Vec<Vec<bool>> = (1..(1u64 << m) - 1)
                .map(|bits| (0..m).map(|j| bits >> j & 1 == 1).collect())
                .collect();
            let weights = all.iter().map(|z| kernel(m, count(z))).collect();
            return (all, weights);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index as u64);
        // p(k) ∝ (M - 1) / (k (M - k)), k = 1..M-1, drawn by its running sum.
        let mass: Vec<f64> = (1..m).map(|k| 1.0 / (k * (m - k)) as f64).collect();
        let total: f64 = mass.iter().sum();
        let drawn = (0..self.samples)
            .map(|_| {
                let mut u = rng.random::<f64>() * total;
                let k = 1 + mass
                    .iter()
                    .position(|p| {
                        u -= p;
                        u < 0.0
                    })
                    .unwrap_or(m - 2);
                let mut z = vec![false; m];
                sample(&mut rng, m, k).into_iter().for_each(|j| z[j] = true);
                z
            })
            .collect();
        (drawn, vec![1.0; self.samples])
    }

    /// The Shapley values of the superpixels `segmentation` of `input` (`[1, C, H,
    /// W]`) for `target`, from `coalitions` with regression `weights`.
    pub fn shapley_values(
        &self,
        model: &Model,
        input: &Tensor,
        target: &Target,
        segmentation: &Segmentation,
        (coalitions, weights): (&[Vec<bool>], &[f64]),
    ) -> Result<Vec<f64>> {
        let m = segmentation.count;
        ensure!(m >= 2, "KernelSHAP needs at least two superpixels (give more --segments)");
        ensure!(
            coalitions.len() == weights.len() && coalitions.iter().all(|z| z.len() == m),
            "KernelSHAP: one weight per coalition, coalitions of {m} superpixels"
        );
        let x = input.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let baseline = self.fill.baseline(&x, segmentation);
        let ends = [vec![true; m], vec![false; m]];
        let every: Vec<Vec<bool>> = ends.iter().chain(coalitions).cloned().collect();
        let outputs =
            perturbed_outputs(model, input, target, (segmentation, &baseline), &every, self.batch)?;
        let (full, empty) = (outputs[0], outputs[1]);
        let change = full - empty;
        // φ_M = Δ - Σ_{j<M} φ_j: regress f(x_z) - f(b) - z_M Δ on z_j - z_M.
        let design: Vec<Vec<f64>> = coalitions
            .iter()
            .map(|z| {
                let last = z[m - 1] as u8 as f64;
                z[..m - 1].iter().map(|&on| on as u8 as f64 - last).collect()
            })
            .collect();
        let response: Vec<f64> = coalitions
            .iter()
            .zip(&outputs[2..])
            .map(|(z, y)| y - empty - z[m - 1] as u8 as f64 * change)
            .collect();
        let mut phi = least_squares(&design, &response, weights, 0.0)?;
        phi.push(change - phi.iter().sum::<f64>());
        Ok(phi)
    }
}

/// The Shapley kernel's weight of a coalition of `k` of `m` features.
fn kernel(m: usize, k: usize) -> f64 {
    let choose = (0..k).fold(1f64, |c, i| c * (m - i) as f64 / (i + 1) as f64);
    (m - 1) as f64 / (choose * k as f64 * (m - k) as f64)
}

fn count(z: &[bool]) -> usize {
    z.iter().filter(|&&on| on).count()
}

impl Method for KernelShap {
    fn name(&self) -> String {
        format!(
            "kernel-shap(n={}, segments={}, fill={:?})",
            self.samples, self.segments, self.fill
        )
        .to_lowercase()
    }

    fn passes(&self, _: (usize, usize)) -> Passes {
        // At most: the drawn coalitions (or every one of 12 superpixels) and the
        // two ends.
        Passes {
            backward: 0,
            forward: self.samples.max((1 << EXACT_UP_TO) - 2) + 2,
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
            let (coalitions, weights) = self.coalitions(i, segmentation.count);
            let phi =
                self.shapley_values(model, &input, target, &segmentation, (&coalitions, &weights))?;
            maps.push(painted(&segmentation, &phi, c, inputs)?);
            notes.push(Notes {
                segmentation: Some(segmentation),
                ..Notes::default()
            });
        }
        Ok((Attribution::Input(Tensor::cat(&maps, 0)?), notes))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// With every coalition enumerated, the kernel's constrained fit gives the
    /// Shapley values themselves: `φ_j = Σ_{S ∌ j} |S|! (M-|S|-1)! / M! (f(S ∪ j) -
    /// f(S))`, computed here by brute force over the same model outputs.
    #[test]
    fn enumerated_coalitions_give_the_shapley_formulas_values() {
        let model = crate::model::demo::model(&Device::Cpu).unwrap();
        let sample = crate::data::Source::Demo(1)
            .samples(model.input_spec(), &Device::Cpu)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let input = sample.tensor.unsqueeze(0).unwrap();
        let m = 5;
        let segmentation = Segmentation {
            size: (64, 64),
            labels: (0..64 * 64).map(|p| ((p % 64) * m / 64) as u32).collect(),
            count: m,
        };
        let target = Target::Class(2);
        let shap = KernelShap::default();
        let (coalitions, weights) = shap.coalitions(0, m);
        let phi = shap
            .shapley_values(&model, &input, &target, &segmentation, (&coalitions, &weights))
            .unwrap();

        let every: Vec<Vec<bool>> = (0..1u32 << m)
            .map(|bits| (0..m).map(|j| bits >> j & 1 == 1).collect())
            .collect();
        let x = input.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let baseline = Fill::Zero.baseline(&x, &segmentation);
        let f = perturbed_outputs(&model, &input, &target, (&segmentation, &baseline), &every, 8)
            .unwrap();
        let factorial = |n: usize| (1..=n).product::<usize>() as f64;
        for (j, value) in phi.iter().enumerate() {
            let brute: f64 = (0..1usize << m)
                .filter(|s| s >> j & 1 == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    factorial(size) * factorial(m - size - 1) / factorial(m)
                        * (f[s | 1 << j] - f[s])
                })
                .sum();
            assert!(
                (value - brute).abs() < 1e-6 * brute.abs().max(1.0),
                "superpixel {j}: {value} vs {brute}"
            );
        }
    }

    #[test]
    fn the_kernel_is_the_papers() {
        // M = 4: π(1) = 3 / (4 · 1 · 3) = 1/4, π(2) = 3 / (6 · 2 · 2) = 1/8.
        assert!((kernel(4, 1) - 0.25).abs() < 1e-15);
        assert!((kernel(4, 2) - 0.125).abs() < 1e-15);
        assert!((kernel(4, 3) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn few_superpixels_are_enumerated_and_many_are_drawn_by_the_kernel() {
        let shap = KernelShap {
            samples: 20_000,
            ..KernelShap::default()
        };
        let (all, weights) = shap.coalitions(0, 4);
        assert_eq!(all.len(), 14);
        assert!(all.iter().all(|z| (1..4).contains(&count(z))));
        assert_eq!(weights[0], kernel(4, 1));
        let (drawn, weights) = shap.coalitions(3, 20);
        assert_eq!(drawn, shap.coalitions(3, 20).0, "seeded");
        assert!(weights.iter().all(|&w| w == 1.0));
        // Sizes 1 and 19 are the likeliest, each with p = (1/19) / Σ 1/(k(20-k)).
        let total: f64 = (1..20).map(|k| 1.0 / (k * (20 - k)) as f64).sum();
        let expected = (1.0 / 19.0) / total;
        let ones = drawn.iter().filter(|z| count(z) == 1).count() as f64 / 20_000.0;
        assert!((ones - expected).abs() < 0.01, "{ones} vs {expected}");
        assert!(drawn.iter().all(|z| (1..20).contains(&count(z))));
    }
}
