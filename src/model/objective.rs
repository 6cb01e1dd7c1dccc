//! Scalar objectives to differentiate: class logits, units, weighted mixtures.

use anyhow::{Result, bail, ensure};
use candle_core::{D, Tensor};

use super::capture::Capture;
use super::layer::UnitAddress;

/// How a unit's channel is reduced to one number per sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduce {
    /// The spatial mean of the channel.
    #[default]
    Mean,
    /// The spatial maximum of the channel.
    Max,
}

/// A scalar to differentiate: a value per sample, summed over the batch (samples are
/// independent in eval mode, so the gradient of the sum is each sample's own gradient).
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The logit of one class, in every sample.
    Logit(usize),
    /// One logit per sample: sample `i`'s logit of `classes[i]`.
    Logits(Vec<usize>),
    /// A unit's activation: its value at a position, or its channel reduced. The layer
    /// must be recorded by the probe.
    Unit {
        /// Which unit.
        unit: UnitAddress,
        /// How a whole channel is reduced (ignored at a position).
        reduce: Reduce,
    },
    /// `sum(weight * objective)`.
    Weighted(Vec<(f64, Objective)>),
    /// One objective per sample: sample `i`'s value of `objectives[i]`.
    PerSample(Vec<Objective>),
}

impl Capture {
    /// Evaluates `objective` on this capture as a scalar on the autograd graph.
    pub fn objective(&self, objective: &Objective) -> Result<Tensor> {
        Ok(self.per_sample(objective)?.sum_all()?)
    }

    /// Evaluates `objective` for each sample: `[batch]`, on the autograd graph.
    pub fn per_sample(&self, objective: &Objective) -> Result<Tensor> {
        self.values(objective, Read::Value)
    }

    /// The scalar whose backward pass seeds a relevance pass
    /// ([`super::Probe::relevance`]) for `objective`: the relevance at each value it
    /// reads is that value times its weight in the objective (a class's logit, a
    /// unit's activation, each position's share of a channel's mean), so that the
    /// relevance sums to the objective's value (Bach et al. 2015: `R = f(x)` at the
    /// output).
    pub fn relevance(&self, objective: &Objective) -> Result<Tensor> {
        Ok(self.values(objective, Read::Relevance)?.sum_all()?)
    }

    fn values(&self, objective: &Objective, read: Read) -> Result<Tensor> {
        let batch = self.input().dim(0)?;
        let check_class = |c: usize| -> Result<()> {
            let classes = self.logits()?.dim(1)?;
            ensure!(
                c < classes,
                "class {c} is out of range: the model has {classes} classes"
            );
            Ok(())
        };
        let check_batch = |n: usize, what: &str| -> Result<()> {
            ensure!(n == batch, "{n} {what} for a batch of {batch}");
            Ok(())
        };
        Ok(match objective {
            Objective::Logit(c) => {
                check_class(*c)?;
                read.of(self.logits()?.narrow(1, *c, 1)?.squeeze(1)?)?
            }
            Objective::Logits(cs) => {
                check_batch(cs.len(), "target classes")?;
                cs.iter().try_for_each(|&c| check_class(c))?;
                let logits = self.logits()?;
                let index = Tensor::from_vec(
                    cs.iter().map(|&c| c as u32).collect::<Vec<_>>(),
                    (batch, 1),
                    logits.device(),
                )?;
                read.of(logits.gather(&index, 1)?.squeeze(1)?)?
            }
            Objective::Unit { unit, reduce } => {
                unit_values(self.activation(&unit.layer)?, unit, *reduce, read)?
            }
            Objective::Weighted(terms) => {
                ensure!(!terms.is_empty(), "an empty weighted objective");
                let input = self.input();
                let mut total = Tensor::zeros(batch, input.dtype(), input.device())?;
                for (w, o) in terms {
                    total = total.add(&self.values(o, read)?.affine(*w, 0.0)?)?;
                }
                total
            }
            Objective::PerSample(objectives) => {
                check_batch(objectives.len(), "objectives")?;
                let values = objectives
                    .iter()
                    .enumerate()
                    .map(|(i, o)| Ok(self.values(o, read)?.narrow(0, i, 1)?))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&values, 0)?
            }
        })
    }
}

/// What an objective reads of the values it selects.
#[derive(Clone, Copy)]
enum Read {
    /// The values.
    Value,
    /// Each value times itself held constant: its gradient is the value, a
    /// relevance pass's seed.
    Relevance,
}

impl Read {
    fn of(self, v: Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Value => v,
            Self::Relevance => (&v * v.detach())?,
        })
    }
}

/// A unit's value in each sample, `[batch]`.
fn unit_values(act: &Tensor, unit: &UnitAddress, reduce: Reduce, read: Read) -> Result<Tensor> {
    let dims = act.dims();
    ensure!(
        unit.channel < dims[1],
        "unit {unit}: channel {} is out of range: `{}` has {} units",
        unit.channel,
        unit.layer,
        dims[1]
    );
    let ch = act.narrow(1, unit.channel, 1)?;
    match (dims.len(), unit.position) {
        (2, None) => read.of(ch.squeeze(1)?),
        (2, Some(_)) => bail!(
            "unit {unit}: `{}` is a vector layer; it has no positions",
            unit.layer
        ),
        (4, Some((y, x))) => {
            ensure!(
                y < dims[2] && x < dims[3],
                "unit {unit}: position ({y}, {x}) is outside the {}x{} map",
                dims[2],
                dims[3]
            );
            read.of(ch.narrow(2, y, 1)?.narrow(3, x, 1)?.flatten_all()?)
        }
        (4, None) => {
            let flat = ch.flatten_from(1)?;
            match reduce {
                // The mean is linear: each position is read with weight 1/(h w).
                Reduce::Mean => Ok(read.of(flat)?.mean(D::Minus1)?),
                Reduce::Max => read.of(flat.max(D::Minus1)?),
            }
        }
        (r, _) => bail!(
            "layer `{}` has rank {r}; units need [N, C] or [N, C, H, W]",
            unit.layer
        ),
    }
}
