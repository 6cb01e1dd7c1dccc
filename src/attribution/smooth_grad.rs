//! SmoothGrad (Smilkov et al. 2017) around any method: the maps of `n` noisy copies of
//! each input, `x + N(0, σ²)` with `σ = level · (max(x) - min(x))` per input, reduced
//! to their mean, their mean of squares (SmoothGrad²), or their variance (VarGrad,
//! Adebayo et al. 2018). The copies run through the inner method in batches of a set
//! size, so memory does not grow with `n`. Each copy's noise comes from its own
//! stream of a seeded ChaCha generator (copies numbered copy-major), so a seed
//! reproduces a map on any device and at any batch size.

use anyhow::{Result, ensure};
use candle_core::{D, DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use super::descriptor::shared::{BATCH_SIZE, SEED};
use super::descriptor::{Build, Descriptor, Kind, Param, Params};
use super::method::{Attribution, Method, Passes, add_onto_inputs, in_batches, onto_inputs};
use super::target::Target;
use crate::model::{InputGradient, Model};

/// SmoothGrad and its relatives, around any method (`smoothgrad:guided-backprop`;
/// alone, around saliency).
pub const DESCRIPTORS: &[Descriptor] = &[
    Descriptor {
        name: "smoothgrad",
        aliases: &[],
        about: "SmoothGrad: the mean map over noisy copies",
        citation: "Smilkov et al. 2017",
        params: PARAMS,
        build: Build::Wrapper(|p, inner| smooth(p, inner, Statistic::Mean)),
    },
    Descriptor {
        name: "smoothgrad-sq",
        aliases: &[],
        about: "the mean of squared maps over noisy copies",
        citation: "Smilkov et al. 2017; Hooker et al. 2019",
        params: PARAMS,
        build: Build::Wrapper(|p, inner| smooth(p, inner, Statistic::MeanOfSquares)),
    },
    Descriptor {
        name: "vargrad",
        aliases: &[],
        about: "the variance of the maps over noisy copies",
        citation: "Adebayo et al. 2018",
        params: PARAMS,
        build: Build::Wrapper(|p, inner| smooth(p, inner, Statistic::Variance)),
    },
];

const PARAMS: &[Param] = &[SAMPLES, NOISE_LEVEL, SEED, BATCH_SIZE];

const SAMPLES: Param = Param {
    name: "samples",
    kind: Kind::Integer {
        default: DEFAULT_SAMPLES as u64,
        min: 1,
        max: 10_000,
    },
    help: "SmoothGrad: noisy copies per image",
};

const NOISE_LEVEL: Param = Param {
    name: "noise-level",
    kind: Kind::Real {
        default: DEFAULT_LEVEL,
        min: 0.0,
        max: 10.0,
    },
    help: "SmoothGrad: noise as a fraction of the input's value range",
};

/// The paper's defaults: 50 copies at noise level 0.15.
const DEFAULT_SAMPLES: usize = 50;
const DEFAULT_LEVEL: f64 = 0.15;

fn smooth(p: &Params, inner: Box<dyn Method>, statistic: Statistic) -> Result<Box<dyn Method>> {
    Ok(Box::new(SmoothGrad {
        samples: p.count(&SAMPLES)?,
        level: p.real(&NOISE_LEVEL)?,
        statistic,
        batch: p.count(&BATCH_SIZE)?,
        seed: p.integer(&SEED)?,
        ..SmoothGrad::new(inner)
    }))
}

/// How the noisy copies' maps are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Statistic {
    /// Their mean (SmoothGrad).
    #[default]
    Mean,
    /// The mean of their squares (SmoothGrad²).
    MeanOfSquares,
    /// Their variance (VarGrad).
    Variance,
}

/// SmoothGrad around `inner`.
pub struct SmoothGrad {
    /// The method run on each noisy copy.
    pub inner: Box<dyn Method>,
    /// Noisy copies per input (default 50).
    pub samples: usize,
    /// Noise level: σ as a fraction of each input's value range (default 0.15).
    pub level: f64,
    /// How the copies' maps are combined.
    pub statistic: Statistic,
    /// Noisy inputs per pass of the inner method.
    pub batch: usize,
    /// The noise stream's seed.
    pub seed: u64,
}

impl SmoothGrad {
    /// Defaults of the paper: 50 copies at level 0.15, the mean; batches of 16.
    pub fn new(inner: Box<dyn Method>) -> Self {
        Self {
            inner,
            samples: DEFAULT_SAMPLES,
            level: DEFAULT_LEVEL,
            statistic: Statistic::Mean,
            batch: 16,
            seed: 0,
        }
    }

    /// The maps given the standard-normal draws `noise: [samples, N, C, H, W]` (before
    /// scaling by each input's σ) instead of the seeded stream.
    pub fn attribute_with_noise(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
        noise: &Tensor,
    ) -> Result<Attribution> {
        let dims = inputs.dims();
        ensure!(
            noise.dims() == [&[self.samples], dims].concat(),
            "noise of shape {:?} for {} copies of inputs {dims:?}",
            noise.dims(),
            self.samples
        );
        let flat = noise.flatten_to(1)?;
        self.smooth(model, inputs, targets, |start, len| {
            Ok(flat.narrow(0, start, len)?.to_dtype(DType::F32)?)
        })
    }

    /// Runs the copies: `draw(start, len)` gives the standard-normal noise of copies
    /// `start .. start + len` in copy-major order (copy `s` of input `i` is number
    /// `s * N + i`), `[len, C, H, W]`.
    fn smooth(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
        mut draw: impl FnMut(usize, usize) -> Result<Tensor>,
    ) -> Result<Attribution> {
        ensure!(self.samples > 0, "SmoothGrad needs at least one noisy copy");
        let n = inputs.dim(0)?;
        let inputs = inputs.to_dtype(DType::F32)?;
        let flat = inputs.flatten_from(1)?;
        let range = (flat.max_keepdim(D::Minus1)? - flat.min_keepdim(D::Minus1)?)?;
        let sigma = (range * self.level)?;
        let copies = self.samples * n;
        // The moments the statistic needs: the sum of the maps, of their squares.
        let (need_sum, need_squares) = match self.statistic {
            Statistic::Mean => (true, false),
            Statistic::MeanOfSquares => (false, true),
            Statistic::Variance => (true, true),
        };
        let (mut sum, mut squares): (Option<Attribution>, Option<Attribution>) = (None, None);
        // The sum of the maps as input gradients held at the stem, for an inner
        // method whose maps are those gradients (the mean needs nothing else).
        let mut held: Option<InputGradient> = None;
        in_batches(copies, self.batch.max(1), |start, len| {
            // Copies start .. start + len cycle through the inputs.
            let which: Vec<u32> = (start..start + len).map(|c| (c % n) as u32).collect();
            let index = Tensor::new(which.as_slice(), inputs.device())?;
            let clean = inputs.index_select(&index, 0)?;
            let scale = sigma.index_select(&index, 0)?;
            let noise = draw(start, len)?.to_device(inputs.device())?;
            let noisy = (clean + noise.broadcast_mul(&scale.reshape((len, 1, 1, 1))?)?)?;
            let batch_targets: Vec<Target> =
                which.iter().map(|&i| targets[i as usize].clone()).collect();
            if self.statistic == Statistic::Mean
                && let Some(g) = self.inner.input_gradient(model, &noisy, &batch_targets)?
            {
                return add_onto_inputs(&mut held, &g, &index, n);
            }
            let maps = self.inner.attribute(model, &noisy, &batch_targets)?;
            let per_input = |maps: &Attribution| maps.map(|_, t| onto_inputs(t, &index, n));
            if need_sum {
                accumulate(&mut sum, per_input(&maps)?)?;
            }
            if need_squares {
                accumulate(&mut squares, per_input(&maps.map(|_, t| Ok(t.sqr()?))?)?)?;
            }
            Ok(())
        })?;
        if let Some(total) = held {
            accumulate(&mut sum, Attribution::Input(total.resolve()?))?;
        }
        let count = self.samples as f64;
        let mean = |total: Option<Attribution>| {
            total
                .expect("the statistic's moment was summed")
                .map(|_, t| Ok((t / count)?))
        };
        Ok(match self.statistic {
            Statistic::Mean => mean(sum)?,
            Statistic::MeanOfSquares => mean(squares)?,
            Statistic::Variance => {
                let mean_map = mean(sum)?;
                let mean_map = mean_map.tensors();
                mean(squares)?.map(|i, t| Ok((t - mean_map[i].sqr()?)?))?
            }
        })
    }
}

/// Adds `part` onto `total` (of the same method), or starts it.
fn accumulate(total: &mut Option<Attribution>, part: Attribution) -> Result<()> {
    *total = Some(match total.take() {
        None => part,
        Some(t) => {
            let part = part.tensors();
            t.map(|i, t| Ok((t + part[i])?))?
        }
    });
    Ok(())
}

impl Method for SmoothGrad {
    fn name(&self) -> String {
        let statistic = match self.statistic {
            Statistic::Mean => "smoothgrad",
            Statistic::MeanOfSquares => "smoothgrad-sq",
            Statistic::Variance => "vargrad",
        };
        format!(
            "{statistic}({}, n={}, level={})",
            self.inner.name(),
            self.samples,
            self.level
        )
    }

    fn passes(&self, size: (usize, usize)) -> Passes {
        let inner = self.inner.passes(size);
        Passes {
            backward: inner.backward * self.samples,
            forward: inner.forward * self.samples,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        let per_copy = inputs.dims()[1..].iter().product::<usize>();
        let shape: Vec<usize> = inputs.dims()[1..].to_vec();
        self.smooth(model, inputs, targets, |start, len| {
            // Copy c draws from stream c of the seed, so copies draw in parallel.
            let mut values = vec![0f32; len * per_copy];
            values
                .par_chunks_mut(per_copy)
                .zip(start..start + len)
                .for_each(|(copy, c)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                    rng.set_stream(c as u64);
                    copy.iter_mut()
                        .for_each(|v| *v = StandardNormal.sample(&mut rng));
                });
            Ok(Tensor::from_vec(
                values,
                [&[len], shape.as_slice()].concat(),
                &candle_core::Device::Cpu,
            )?)
        })
    }
}
