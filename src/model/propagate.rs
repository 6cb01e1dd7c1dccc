//! What layer-wise relevance propagation's rules ([`super::relevance`]) do to the
//! relevance arriving at a layer: the formulas of its module doc, on tensors, for
//! convolutions, fully connected layers, sums and average pools.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor, Var};

use super::nn::{Conv2d, Linear, adaptive_avg_pool2d};
use super::probe::EnginePath;
use super::relevance::Rule;

/// The stabilizer of every rule but ε's, Zennit's default.
pub const STABILIZER: f64 = 1e-6;

/// `z + ε·sign(z)` with `sign(0) = 1`: a denominator that is never zero.
pub fn stabilize(z: &Tensor, epsilon: f64) -> Result<Tensor> {
    let sign = z
        .ge(0.0)?
        .to_dtype(z.dtype())?
        .affine(2.0 * epsilon, -epsilon)?;
    Ok((z + sign)?)
}

/// A layer `z = W x + b` that rules act on.
pub(crate) trait Affine: Sized + Send + Sync + 'static {
    /// `W`.
    fn weight(&self) -> &Tensor;
    /// `b`, if any.
    fn bias(&self) -> Option<&Tensor>;
    /// The same layer with other parameters.
    fn with(&self, weight: Tensor, bias: Option<Tensor>) -> Self;
    /// `W x + b`, off the graph.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// `Wᵀ g` for an input shaped `input`.
    fn transpose(&self, g: &Tensor, input: &[usize]) -> Result<Tensor>;
}

impl Affine for Conv2d {
    fn weight(&self) -> &Tensor {
        Conv2d::weight(self)
    }

    fn bias(&self) -> Option<&Tensor> {
        Conv2d::bias(self)
    }

    fn with(&self, weight: Tensor, bias: Option<Tensor>) -> Self {
        self.with_params(weight, bias)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, EnginePath::Fast, None)
    }

    fn transpose(&self, g: &Tensor, input: &[usize]) -> Result<Tensor> {
        ensure!(input.len() == 4, "a convolution's input of shape {input:?}");
        Conv2d::transpose(self, g, (input[2], input[3]))
    }
}

impl Affine for Linear {
    fn weight(&self) -> &Tensor {
        Linear::weight(self)
    }

    fn bias(&self) -> Option<&Tensor> {
        Some(Linear::bias(self))
    }

    fn with(&self, weight: Tensor, bias: Option<Tensor>) -> Self {
        let bias = bias.unwrap_or_else(|| Linear::bias(self).zeros_like().expect("zeros"));
        Linear::from_parts(weight, bias)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, x)
    }

    fn transpose(&self, g: &Tensor, _: &[usize]) -> Result<Tensor> {
        Ok(g.matmul(Linear::weight(self))?)
    }
}

/// A map of a layer's parameters (its weights, or its bias).
type ParamMap = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

/// The layer with its weights and bias mapped by `w` and `b` (`None`: no bias).
fn modified<L: Affine>(
    layer: &L,
    w: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    b: Option<&ParamMap>,
) -> Result<L> {
    let bias = match (layer.bias(), b) {
        (Some(bias), Some(b)) => Some(b(bias)?),
        _ => None,
    };
    Ok(layer.with(w(layer.weight())?, bias))
}

fn positive(t: &Tensor) -> candle_core::Result<Tensor> {
    t.relu()
}

fn negative(t: &Tensor) -> candle_core::Result<Tensor> {
    t.minimum(0.0)
}

fn same(t: &Tensor) -> candle_core::Result<Tensor> {
    Ok(t.clone())
}

/// `R / stab(z)`.
fn ratio(r: &Tensor, z: &Tensor, epsilon: f64) -> Result<Tensor> {
    Ok(r.div(&stabilize(z, epsilon)?)?)
}

/// The relevance `layer`'s input `x` gets under `rule` from `r` at its output, whose
/// value is `z` (bias included).
pub(crate) fn layer_relevance<L: Affine>(
    rule: &Rule,
    layer: &L,
    x: &Tensor,
    z: &Tensor,
    r: &Tensor,
    without_bias: bool,
) -> Result<Tensor> {
    let dims = x.dims();
    let pos_bias: Option<&ParamMap> = match without_bias {
        true => None,
        false => Some(&positive),
    };
    let neg_bias: Option<&ParamMap> = match without_bias {
        true => None,
        false => Some(&negative),
    };
    // Inputs after rectifiers have no negative part: its terms are zero, and skipped.
    let signed = x.min_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? < 0.0;
    let (xp, xn) = (x.relu()?, x.minimum(0.0)?);
    Ok(match rule {
        Rule::Epsilon(epsilon) => {
            let z = match without_bias {
                true => modified(layer, same, None)?.forward(x)?,
                false => z.clone(),
            };
            let s = ratio(r, &z, *epsilon)?;
            (x * layer.transpose(&s, dims)?)?
        }
        Rule::ZPlus => {
            let up = modified(layer, positive, pos_bias)?;
            let down = modified(layer, negative, None)?;
            let mut z = up.forward(&xp)?;
            if signed {
                z = (z + down.forward(&xn)?)?;
            }
            let s = ratio(r, &z, STABILIZER)?;
            let mut relevance = (&xp * up.transpose(&s, dims)?)?;
            if signed {
                relevance = (relevance + (&xn * down.transpose(&s, dims)?)?)?;
            }
            relevance
        }
        Rule::AlphaBeta { alpha, beta } => {
            let (up, down) = (
                modified(layer, positive, pos_bias)?,
                modified(layer, negative, neg_bias)?,
            );
            let (up0, down0) = (
                modified(layer, positive, None)?,
                modified(layer, negative, None)?,
            );
            let (mut zp, mut zn) = (up.forward(&xp)?, down.forward(&xp)?);
            if signed {
                zp = (zp + down0.forward(&xn)?)?;
                zn = (zn + up0.forward(&xn)?)?;
            }
            let (sp, sn) = (ratio(r, &zp, STABILIZER)?, ratio(r, &zn, STABILIZER)?);
            let mut pos = (&xp * up.transpose(&sp, dims)?)?;
            let mut neg = (&xp * down.transpose(&sn, dims)?)?;
            if signed {
                pos = (pos + (&xn * down.transpose(&sp, dims)?)?)?;
                neg = (neg + (&xn * up.transpose(&sn, dims)?)?)?;
            }
            ((pos * *alpha)? - (neg * *beta)?)?
        }
        Rule::Gamma(gamma) => {
            let g = *gamma;
            let more = |part: fn(&Tensor) -> candle_core::Result<Tensor>| {
                move |t: &Tensor| t + (part(t)? * g)?
            };
            let (more_pos, more_neg) = (more(positive), more(negative));
            let bias_a: Option<&ParamMap> = (!without_bias).then_some(&more_pos);
            let bias_b: Option<&ParamMap> = (!without_bias).then_some(&more_neg);
            let (a, b) = (
                modified(layer, more_pos, bias_a)?,
                modified(layer, more_neg, bias_b)?,
            );
            let (a0, b0) = (
                modified(layer, more_pos, None)?,
                modified(layer, more_neg, None)?,
            );
            let (mut zp, mut zn) = (a.forward(&xp)?, b.forward(&xp)?);
            if signed {
                zp = (zp + b0.forward(&xn)?)?;
                zn = (zn + a0.forward(&xn)?)?;
            }
            let above = z.gt(0.0)?.to_dtype(r.dtype())?;
            let below = z.lt(0.0)?.to_dtype(r.dtype())?;
            let sp = ratio(&(r * above)?, &zp, STABILIZER)?;
            let sn = ratio(&(r * below)?, &zn, STABILIZER)?;
            let mut relevance = (&xp * (a.transpose(&sp, dims)? + b.transpose(&sn, dims)?)?)?;
            if signed {
                let back = (b.transpose(&sp, dims)? + a.transpose(&sn, dims)?)?;
                relevance = (relevance + (&xn * back)?)?;
            }
            relevance
        }
        Rule::ZBox { low, high } => {
            let channels = dims.get(1).copied().unwrap_or(0);
            ensure!(
                low.len() == channels && high.len() == channels,
                "the zB rule has bounds for {} channels; the input has {channels}",
                low.len()
            );
            let bound = |v: &[f64]| -> Result<Tensor> {
                let mut shape = vec![1; dims.len()];
                shape[1] = channels;
                Ok(Tensor::new(v, x.device())?
                    .to_dtype(x.dtype())?
                    .reshape(shape)?
                    .broadcast_as(dims)?
                    .contiguous()?)
            };
            let (l, h) = (bound(low)?, bound(high)?);
            let plain = modified(layer, same, None)?;
            let (up, down) = (
                modified(layer, positive, None)?,
                modified(layer, negative, None)?,
            );
            let z = ((plain.forward(x)? - up.forward(&l)?)? - down.forward(&h)?)?;
            let s = ratio(r, &z, STABILIZER)?;
            let relevance = (x * plain.transpose(&s, dims)?)?;
            ((relevance - (l * up.transpose(&s, dims)?)?)? - (h * down.transpose(&s, dims)?)?)?
        }
        Rule::Flat => {
            let flat = modified(layer, |w| w.ones_like(), None)?;
            let z = flat.forward(&x.ones_like()?)?;
            flat.transpose(&ratio(r, &z, STABILIZER)?, dims)?
        }
    })
}

/// The relevance each term of a sum `a + b` gets from `r` at the sum (Zennit's
/// `Norm` rule on its `Sum` layer): in proportion to the term.
pub(crate) fn sum_relevance(a: &Tensor, b: &Tensor, r: &Tensor) -> Result<(Tensor, Tensor)> {
    let s = ratio(r, &(a + b)?, STABILIZER)?;
    Ok(((a * &s)?, (b * s)?))
}

/// The relevance an adaptive average pool's input `x` gets from `r` at its output
/// `z` (the `Norm` rule): each input in proportion to its share of the mean.
pub(crate) fn pool_relevance(
    x: &Tensor,
    z: &Tensor,
    r: &Tensor,
    grid: (usize, usize),
) -> Result<Tensor> {
    let s = ratio(r, z, STABILIZER)?;
    // The pool's transpose, by Candle's autograd on the pool alone.
    let v = Var::from_tensor(&x.detach())?;
    let pooled = adaptive_avg_pool2d(v.as_tensor(), grid)?;
    let grads = (pooled * s.detach())?.sum_all()?.backward()?;
    let back = grads.get(v.as_tensor()).cloned().unwrap_or(x.zeros_like()?);
    Ok((x * back)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn dense(weight: &[[f32; 3]; 2], bias: [f32; 2]) -> Linear {
        let d = Device::Cpu;
        Linear::from_parts(
            Tensor::new(weight, &d).unwrap(),
            Tensor::new(&bias, &d).unwrap(),
        )
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// The rules by hand on one dense layer `z = W x + b`, one output:
    /// `W = [1, -2, 3]`, `b = 0.5`, `x = [2, 1, -1]`, so `z = 2 - 2 - 3 + 0.5 = -2.5`.
    #[test]
    fn the_rules_match_their_formulas_on_a_hand_example() {
        let layer = dense(&[[1., -2., 3.], [0., 0., 0.]], [0.5, 0.]);
        let x = Tensor::new(&[[2f32, 1., -1.]], &Device::Cpu).unwrap();
        let z = layer.forward(&x).unwrap();
        let r = Tensor::new(&[[1f32, 0.]], &Device::Cpu).unwrap();
        let run = |rule: Rule, without_bias| {
            values(&layer_relevance(&rule, &layer, &x, &z, &r, without_bias).unwrap())
        };
        let close = |got: Vec<f32>, want: [f64; 3]| {
            for (g, w) in got.iter().zip(want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        };
        // ε: x_j w_j / z.
        close(
            run(Rule::Epsilon(1e-9), false),
            [2. / -2.5, -2. / -2.5, -3. / -2.5],
        );
        // Without the bias: z = -3, and the shares sum to 1.
        close(
            run(Rule::Epsilon(1e-9), true),
            [2. / -3., -2. / -3., -3. / -3.],
        );
        // z⁺: positive contributions x⁺w⁺ (2) and x⁻w⁻ (0), b⁺ = 0.5: z = 2.5.
        close(run(Rule::ZPlus, false), [2. / 2.5, 0., 0.]);
        // αβ: z₊ = 2 + 0.5, z₋ = x⁺w⁻ (-2) + x⁻w⁺ (-3) + b⁻ (0) = -5.
        close(
            run(
                Rule::AlphaBeta {
                    alpha: 2.0,
                    beta: 1.0,
                },
                false,
            ),
            [2. * 2. / 2.5, -(-2. / -5.), -(-3. / -5.)],
        );
        // γ = 1: z < 0, so only s₋ = R / (Bx⁺ + Ax⁻ + b + b⁻), B = W + W⁻ = [1, -4, 3],
        // A = W + W⁺ = [2, -2, 6]: Bx⁺ = 2 - 4 = -2, Ax⁻ = -6, b = 0.5: -7.5.
        // x⁺ gets x⁺ Bᵀ s₋ = [2, -4]/-7.5, x⁻ gets x⁻ Aᵀ s₋ = -6/-7.5.
        close(
            run(Rule::Gamma(1.0), false),
            [2. / -7.5, -4. / -7.5, -6. / -7.5],
        );
        // Flat: one output over three inputs.
        close(run(Rule::Flat, false), [1. / 3., 1. / 3., 1. / 3.]);
        // zᴮ in [-1, 3]: z = Wx - W⁺l - W⁻h = -3 - (1·-1 + 3·-1) - (-2·3) = 7.
        let zbox = Rule::ZBox {
            low: vec![-1.; 3],
            high: vec![3.; 3],
        };
        // zᴮ is for a convolution's channels; on the dense layer every feature is a
        // channel of its own. R_j = (x_j w_j - l w⁺_j - h w⁻_j) / z.
        close(
            run(zbox, false),
            [(2. + 1.) / 7., (-2. + 6.) / 7., (-3. + 3.) / 7.],
        );
    }

    #[test]
    fn stabilize_moves_away_from_zero_with_zero_counted_positive() {
        let z = Tensor::new(&[-2f32, 0., 3.], &Device::Cpu).unwrap();
        assert_eq!(values(&stabilize(&z, 0.5).unwrap()), [-2.5, 0.5, 3.5]);
    }

    #[test]
    fn sums_and_pools_share_relevance_in_proportion() {
        let d = Device::Cpu;
        let a = Tensor::new(&[1f32, 3.], &d).unwrap();
        let b = Tensor::new(&[3f32, 1.], &d).unwrap();
        let r = Tensor::new(&[8f32, 4.], &d).unwrap();
        let (ra, rb) = sum_relevance(&a, &b, &r).unwrap();
        let (ra, rb) = (values(&ra), values(&rb));
        assert!((ra[0] - 2.0).abs() < 1e-5 && (rb[0] - 6.0).abs() < 1e-5);
        assert!((ra[1] - 3.0).abs() < 1e-5 && (rb[1] - 1.0).abs() < 1e-5);
        let x = Tensor::new(&[[[[1f32, 3.], [0., 4.]]]], &d).unwrap();
        let z = adaptive_avg_pool2d(&x, (1, 1)).unwrap();
        let r = Tensor::new(&[[[[16f32]]]], &d).unwrap();
        let got = values(&pool_relevance(&x, &z, &r, (1, 1)).unwrap());
        for (g, w) in got.iter().zip([2f32, 6., 0., 8.]) {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
    }
}
