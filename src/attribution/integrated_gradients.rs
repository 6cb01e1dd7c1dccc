//! Integrated gradients (Sundararajan et al. 2017): `(x - x') · ∫₀¹ ∇f(x' + α(x - x'))
//! dα`, the integral by a quadrature rule over `steps` points. The scaled inputs of
//! all points and all inputs run in batches of a set size. Completeness says the map
//! sums to `f(x) - f(x')`; the gap is reported as the method's error.
//!
//! Nodes and weights on [0, 1] follow Captum's `approximation_parameters`: Riemann
//! left/right/middle at `k/n`, `(k+1)/n`, `(k+½)/n` with weight `1/n`; trapezoid at
//! `k/(n-1)` with half weight at the ends; Gauss-Legendre (Captum's default) at the
//! Legendre nodes mapped from [-1, 1].

use std::cell::RefCell;
use std::f64::consts::PI;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Tensor};

use super::descriptor::shared::BATCH_SIZE;
use super::descriptor::{Build, Descriptor, Kind, Param};
use super::method::{
    Attribution, Method, Passes, add_onto_inputs, held_gradient, in_batches, target_values,
};
use super::target::Target;
use crate::data::{MAX_SIGMA, gaussian_blur};
use crate::model::{Model, Probe, Stem};

/// Integrated gradients.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "integrated-gradients",
    aliases: &["ig"],
    about: "integrated gradients",
    citation: "Sundararajan et al. 2017",
    params: &[STEPS, BASELINE, QUADRATURE, BATCH_SIZE],
    build: Build::Method(&|p| {
        Ok(Box::new(IntegratedGradients {
            steps: p.count(&STEPS)?,
            quadrature: Quadrature::from_name(&p.text(&QUADRATURE)?)?,
            baseline: Baseline::parse(&p.text(&BASELINE)?)?,
            batch: p.count(&BATCH_SIZE)?,
        }))
    }),
}];

/// Quadrature points unless told (Captum's default).
const DEFAULT_STEPS: usize = 50;

const STEPS: Param = Param {
    name: "steps",
    kind: Kind::Integer {
        default: DEFAULT_STEPS as u64,
        min: 1,
        max: 10_000,
    },
    help: "Integrated gradients: steps",
};

const BASELINE: Param = Param {
    name: "baseline",
    kind: Kind::Text { default: "zero" },
    help: "Integrated gradients: baseline `zero`, `blur` (sigma 10 px) or `blur:SIGMA`",
};

const QUADRATURE: Param = Param {
    name: "quadrature",
    kind: Kind::Choice {
        default: "gauss-legendre",
        values: &[
            ("riemann-left", "Riemann sum at each interval's left end"),
            ("riemann-right", "Riemann sum at each interval's right end"),
            ("riemann-middle", "Riemann sum at each interval's middle"),
            ("riemann-trapezoid", "the trapezoid rule"),
            ("gauss-legendre", "Gauss-Legendre quadrature (Captum's default)"),
        ],
    },
    help: "Integrated gradients: quadrature",
};

/// Where the path starts.
#[derive(Clone, Debug, Default)]
pub enum Baseline {
    /// All zeros (in the model's input space: the normalization mean's color is not
    /// zero, so zero is "mean-colored" only for zero-mean normalizations).
    #[default]
    Zero,
    /// The input blurred by a Gaussian of this standard deviation in pixels.
    Blurred(f64),
    /// A given baseline, broadcastable to the inputs.
    Custom(Tensor),
}

/// The quadrature rule over the path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quadrature {
    /// Riemann sum at each interval's left end.
    RiemannLeft,
    /// Riemann sum at each interval's right end.
    RiemannRight,
    /// Riemann sum at each interval's middle.
    RiemannMiddle,
    /// The trapezoid rule.
    RiemannTrapezoid,
    /// Gauss-Legendre quadrature.
    #[default]
    GaussLegendre,
}

impl Quadrature {
    /// The rule named `name` (see [`QUADRATURE`]).
    fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "riemann-left" => Self::RiemannLeft,
            "riemann-right" => Self::RiemannRight,
            "riemann-middle" => Self::RiemannMiddle,
            "riemann-trapezoid" => Self::RiemannTrapezoid,
            "gauss-legendre" => Self::GaussLegendre,
            _ => bail!("unknown quadrature `{name}`"),
        })
    }

    /// The `steps` points `α` on [0, 1] and their weights.
    pub fn nodes(self, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        ensure!(steps > 0, "integrated gradients needs at least one step");
        let n = steps as f64;
        let uniform = |offset: f64| -> (Vec<f64>, Vec<f64>) {
            (
                (0..steps).map(|k| (k as f64 + offset) / n).collect(),
                vec![1.0 / n; steps],
            )
        };
        Ok(match self {
            Self::RiemannLeft => uniform(0.0),
            Self::RiemannRight => uniform(1.0),
            Self::RiemannMiddle => uniform(0.5),
            Self::RiemannTrapezoid => {
                ensure!(steps > 1, "the trapezoid rule needs at least two steps");
                let h = 1.0 / (n - 1.0);
                let alphas = (0..steps).map(|k| k as f64 * h).collect();
                let mut weights = vec![h; steps];
                weights[0] = h / 2.0;
                weights[steps - 1] = h / 2.0;
                (alphas, weights)
            }
            Self::GaussLegendre => {
                let (x, w) = gauss_legendre(steps);
                (
                    x.iter().map(|x| (x + 1.0) / 2.0).collect(),
                    w.iter().map(|w| w / 2.0).collect(),
                )
            }
        })
    }
}

/// Gauss-Legendre nodes on [-1, 1] in ascending order, and weights: the roots of the
/// Legendre polynomial `P_n` by Newton's method from Tricomi's initial guesses
/// `cos(π (i - ¼) / (n + ½))`, weights `2 / ((1 - x²) P_n'(x)²)`.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in (1..=n).rev() {
        let mut x = (PI * (i as f64 - 0.25) / (n as f64 + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            // P_n(x) and P_{n-1}(x) by the three-term recurrence.
            let (mut p, mut previous) = (1.0, 0.0);
            for k in 1..=n {
                let k = k as f64;
                (p, previous) = (((2.0 * k - 1.0) * x * p - (k - 1.0) * previous) / k, p);
            }
            derivative = n as f64 * (x * p - previous) / (x * x - 1.0);
            let step = p / derivative;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        nodes.push(x);
        weights.push(2.0 / ((1.0 - x * x) * derivative * derivative));
    }
    (nodes, weights)
}

/// The stem's outputs at the ends of the paths, `[2N, ...]`: `s(x')` of each input,
/// then `s(x) - s(x')`.
fn stem_ends(stem: &Stem, baseline: &Tensor, inputs: &Tensor) -> Result<Tensor> {
    let start = stem.apply(baseline)?;
    let span = (stem.apply(inputs)? - &start)?;
    Ok(Tensor::cat(&[start, span], 0)?)
}

/// The stem's outputs at points along the paths, point `j` on input `which[j]`'s path
/// at `alphas[j]`: `s(x') + α (s(x) - s(x'))` for all of them as one matrix product of
/// the points' coefficients with the ends (one pass over the output, where selecting,
/// scaling and adding would take four).
fn along_path(ends: &Tensor, which: &[u32], alphas: &[f64]) -> Result<Tensor> {
    let n = ends.dim(0)? / 2;
    let mut coefficients = vec![0.0; which.len() * 2 * n];
    for ((row, &i), &alpha) in coefficients.chunks_mut(2 * n).zip(which).zip(alphas) {
        row[i as usize] = 1.0;
        row[n + i as usize] = alpha;
    }
    let shape = [&[which.len()], &ends.dims()[1..]].concat();
    let coefficients = Tensor::from_vec(coefficients, (which.len(), 2 * n), ends.device())?;
    let product = coefficients
        .to_dtype(ends.dtype())?
        .matmul(&ends.flatten_from(1)?)?;
    Ok(product.reshape(shape)?)
}

/// Integrated gradients of the plain gradient.
#[derive(Clone, Debug)]
pub struct IntegratedGradients {
    /// Quadrature points (default 50).
    pub steps: usize,
    /// The quadrature rule (default Gauss-Legendre).
    pub quadrature: Quadrature,
    /// The path's start.
    pub baseline: Baseline,
    /// Scaled inputs per backward pass.
    pub batch: usize,
}

impl Baseline {
    /// `zero`, `blur` (sigma 10 px) or `blur:SIGMA`, as `--baseline` takes it.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.split_once(':') {
            None if text == "zero" => Self::Zero,
            None if text == "blur" => Self::Blurred(10.0),
            Some(("blur", sigma)) => Self::Blurred(
                sigma
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_SIGMA)
                    .with_context(|| {
                        format!(
                            "--baseline blur:{sigma}: the blur's sigma must be a number of pixels \
                             above 0 and at most {MAX_SIGMA}"
                        )
                    })?,
            ),
            _ => bail!("--baseline `{text}`: use zero, blur or blur:SIGMA"),
        })
    }
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        Self {
            steps: DEFAULT_STEPS,
            quadrature: Quadrature::GaussLegendre,
            baseline: Baseline::Zero,
            batch: 16,
        }
    }
}

impl IntegratedGradients {
    /// The maps and each input's completeness gap `Σ map - (f(x) - f(x'))`, `[N]`
    /// (two more forward passes).
    pub fn attribute_with_delta(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<(Attribution, Tensor)> {
        let inputs = inputs.to_dtype(DType::F32)?;
        let baseline = self.baseline(&inputs)?;
        let map = self.integrate(model, &inputs, &baseline, targets)?;
        let change = (target_values(model, &inputs, targets)?
            - target_values(model, &baseline, targets)?)?
        .to_dtype(DType::F32)?;
        let delta = (map.flatten_from(1)?.sum(1)? - change)?;
        Ok((Attribution::Input(map), delta))
    }

    /// `(x - x') · Σ_k w_k ∇f(x' + α_k (x - x'))` for float32 `inputs` and `baseline`.
    ///
    /// The sum is linear in the gradients, so they stay held at the model's stem
    /// (each point's objective scaled by its weight) and only the sum is carried back
    /// through it. The stem is affine, so its output at `x' + α (x - x')` is
    /// `s(x') + α (s(x) - s(x'))`: `s` runs once on the baselines and once on the
    /// inputs, not once per point.
    fn integrate(
        &self,
        model: &Model,
        inputs: &Tensor,
        baseline: &Tensor,
        targets: &[Target],
    ) -> Result<Tensor> {
        let (alphas, weights) = self.quadrature.nodes(self.steps)?;
        let n = inputs.dim(0)?;
        let path = (inputs - baseline)?;
        let points = alphas.len() * n;
        let ends = RefCell::new(None);
        let mut total = None;
        in_batches(points, self.batch.max(1), |start, len| {
            // Point p is step p / n of input p % n.
            let which: Vec<u32> = (start..start + len).map(|p| (p % n) as u32).collect();
            let index = Tensor::new(which.as_slice(), inputs.device())?;
            let per_point = |values: &[f64]| -> Vec<f64> {
                (start..start + len).map(|p| values[p / n]).collect()
            };
            let (point_alphas, point_weights) = (per_point(&alphas), per_point(&weights));
            let alpha: Vec<f32> = point_alphas.iter().map(|&a| a as f32).collect();
            let alpha = Tensor::from_vec(alpha, (len, 1, 1, 1), inputs.device())?;
            let scaled = (baseline.index_select(&index, 0)?
                + path.index_select(&index, 0)?.broadcast_mul(&alpha)?)?;
            let batch_targets: Vec<Target> =
                which.iter().map(|&i| targets[i as usize].clone()).collect();
            // The stem's outputs at the ends, made at the first point, kept for the
            // same stem.
            let stem_output = |stem: &Stem, _: &Tensor| {
                let mut cache = ends.borrow_mut();
                let (_, at_ends) = match cache.take() {
                    Some((kept, e)) if stem.same_as(&kept) => cache.insert((kept, e)),
                    _ => cache.insert((stem.clone(), stem_ends(stem, baseline, inputs)?)),
                };
                along_path(at_ends, &which, &point_alphas)
            };
            let batch = (&scaled, batch_targets.as_slice());
            let grad = held_gradient(
                model,
                batch,
                Some(&point_weights),
                Probe::new(),
                &stem_output,
            )?;
            add_onto_inputs(&mut total, &grad, &index, n)
        })?;
        let total = total.expect("at least one point").resolve()?;
        Ok((total.to_dtype(DType::F32)? * path)?)
    }

    /// The baseline of each input, shaped like `inputs`.
    fn baseline(&self, inputs: &Tensor) -> Result<Tensor> {
        Ok(match &self.baseline {
            Baseline::Zero => inputs.zeros_like()?,
            Baseline::Blurred(sigma) => gaussian_blur(inputs, *sigma)?,
            Baseline::Custom(b) => b
                .to_dtype(DType::F32)?
                .to_device(inputs.device())?
                .broadcast_as(inputs.shape())?
                .contiguous()?,
        })
    }
}

impl Method for IntegratedGradients {
    fn name(&self) -> String {
        let rule = match self.quadrature {
            Quadrature::RiemannLeft => "riemann-left",
            Quadrature::RiemannRight => "riemann-right",
            Quadrature::RiemannMiddle => "riemann-middle",
            Quadrature::RiemannTrapezoid => "riemann-trapezoid",
            Quadrature::GaussLegendre => "gauss-legendre",
        };
        let baseline = match self.baseline {
            Baseline::Zero => "zero".to_string(),
            Baseline::Blurred(s) => format!("blur {s}"),
            Baseline::Custom(_) => "custom".to_string(),
        };
        format!(
            "integrated-gradients(n={}, {rule}, baseline {baseline})",
            self.steps
        )
    }

    fn passes(&self, _size: (usize, usize)) -> Passes {
        Passes {
            backward: self.steps,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        let inputs = inputs.to_dtype(DType::F32)?;
        let baseline = self.baseline(&inputs)?;
        Ok(Attribution::Input(
            self.integrate(model, &inputs, &baseline, targets)?,
        ))
    }
}
