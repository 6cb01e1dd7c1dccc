//! How fragile a method's maps are: "small perturbations, pixel shifts that yield
//! the same prediction but very different explanations" (Ghorbani et al. 2019),
//! measured two ways.
//!
//! - **Max-sensitivity** (Yeh et al. 2019, as Quantus 0.6's `MaxSensitivity`
//!   computes it): the largest relative change of the map, `‖Φ(x) − Φ(x + δ)‖ /
//!   ‖Φ(x)‖` (Frobenius norms of the raw maps), over draws `δ ~ U(−r, r)` per input
//!   element. Draws that change the prediction are left out: the question is how the
//!   explanation moves while the decision does not. 0 is perfectly stable.
//! - **Shift test**: the image shifted `k` pixels right and down (edges repeated),
//!   explained again, the map shifted back, and Spearman's ρ with the original map
//!   over the pixels both cover. 1 is perfectly shift-equivariant; a CAM of a
//!   stride-32 layer, or a gradient full of checkerboard, falls well below.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::spearman;
use crate::attribution::{self, Attribution, ChannelReduction, Method, Target};
use crate::model::Model;

/// The fragility measures' settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Fragility {
    /// Perturbations per input for max-sensitivity (0: skip it).
    pub samples: usize,
    /// Their radius `r`, in the model's input units (after normalization), as
    /// Quantus takes it (its default 0.2).
    pub radius: f64,
    /// The shift test's shift in pixels (0: skip it).
    pub shift: usize,
    /// Seed of the perturbations.
    pub seed: u64,
}

impl Default for Fragility {
    fn default() -> Self {
        Self {
            samples: 8,
            radius: 0.2,
            shift: 4,
            seed: 0,
        }
    }
}

/// Per input: the two measures, `None` where undefined (every draw changed the
/// prediction, the shifted image's prediction changed, or a zero map).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FragilityScores {
    /// Max-sensitivity per input.
    pub max_sensitivity: Vec<Option<f64>>,
    /// The shift test's ρ per input.
    pub shift_spearman: Vec<Option<f64>>,
}

impl FragilityScores {
    /// The mean max-sensitivity over the inputs where it is defined.
    pub fn mean_max_sensitivity(&self) -> Option<f64> {
        mean_defined(&self.max_sensitivity)
    }

    /// The mean shift-test ρ over the inputs where it is defined.
    pub fn mean_shift_spearman(&self) -> Option<f64> {
        mean_defined(&self.shift_spearman)
    }
}

fn mean_defined(values: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// Both measures of `method` on `x` (`[N, C, H, W]`), whose maps for `targets` are
/// `maps` and whose predictions are `classes`.
pub fn fragility(
    model: &Model,
    method: &dyn Method,
    (x, targets): (&Tensor, &[Target]),
    (maps, classes): (&Attribution, &[usize]),
    settings: &Fragility,
) -> Result<FragilityScores> {
    let n = x.dim(0)?;
    let max_sensitivity = match settings.samples {
        0 => vec![None; n],
        _ => {
            let draws = perturbations(x, settings)?;
            max_sensitivity(model, method, (x, targets), (maps, classes), &draws)?
        }
    };
    let shift_spearman = match settings.shift {
        0 => vec![None; n],
        k => shift_test(model, method, (x, targets), (maps, classes), k)?,
    };
    Ok(FragilityScores {
        max_sensitivity,
        shift_spearman,
    })
}

/// `settings.samples` copies of `x` with uniform noise in `[−r, r]` on every
/// element, seeded.
pub fn perturbations(x: &Tensor, settings: &Fragility) -> Result<Vec<Tensor>> {
    let r = settings.radius;
    ensure!(
        r.is_finite() && r >= 0.0,
        "max-sensitivity's radius must be a finite number >= 0, not {r}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    (0..settings.samples)
        .map(|_| {
            let noise: Vec<f32> = (0..x.elem_count())
                .map(|_| rng.random_range(-r..=r) as f32)
                .collect();
            let noise = Tensor::from_vec(noise, x.shape(), x.device())?.to_dtype(x.dtype())?;
            Ok((x + noise)?)
        })
        .collect()
}

/// Max-sensitivity of each input's map under the given perturbed copies of `x`.
pub fn max_sensitivity(
    model: &Model,
    method: &dyn Method,
    (x, targets): (&Tensor, &[Target]),
    (maps, classes): (&Attribution, &[usize]),
    perturbed: &[Tensor],
) -> Result<Vec<Option<f64>>> {
    let n = x.dim(0)?;
    let original = flat(maps)?;
    let norms: Vec<f64> = original.iter().map(|m| norm(m.iter().copied())).collect();
    let mut worst: Vec<Option<f64>> = vec![None; n];
    for p in perturbed {
        crate::jobs::checkpoint()?;
        ensure!(
            p.dims() == x.dims(),
            "a perturbation of shape {:?}",
            p.dims()
        );
        let kept = attribution::predicted(model, p)?;
        let moved = flat(&method.attribute(model, p, targets)?)?;
        for i in 0..n {
            if kept[i] != classes[i] || norms[i] == 0.0 {
                continue;
            }
            let change = norm(original[i].iter().zip(&moved[i]).map(|(a, b)| a - b));
            let s = change / norms[i];
            worst[i] = Some(worst[i].map_or(s, |w| w.max(s)));
        }
    }
    Ok(worst)
}

/// The shift test of each input's map, shifting by `k` pixels ([`shift`]).
pub fn shift_test(
    model: &Model,
    method: &dyn Method,
    (x, targets): (&Tensor, &[Target]),
    (maps, classes): (&Attribution, &[usize]),
    k: usize,
) -> Result<Vec<Option<f64>>> {
    let (n, _, h, w) = x.dims4()?;
    let (dy, dx) = shift_offsets(k, (h, w))?;
    let shifted = shift(x, k)?;
    let kept = attribution::predicted(model, &shifted)?;
    let seen = |a: &Attribution| -> Result<Vec<Vec<f32>>> {
        Ok(a.display_raw((h, w), ChannelReduction::MaxAbs)?
            .to_dtype(DType::F32)?
            .flatten_from(1)?
            .to_vec2::<f32>()?)
    };
    let (before, after) = (
        seen(maps)?,
        seen(&method.attribute(model, &shifted, targets)?)?,
    );
    Ok((0..n)
        .map(|i| {
            (kept[i] == classes[i]).then(|| {
                // Pixel (y, x) of the original is pixel (y + dy, x + dx) of the shifted.
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for y in 0..h - dy {
                    a.extend_from_slice(&before[i][y * w..y * w + w - dx]);
                    let row = (y + dy) * w + dx;
                    b.extend_from_slice(&after[i][row..row + w - dx]);
                }
                spearman(&a, &b)
            })
        })
        .collect())
}

/// How far [`shift`] moves an input of `(rows, columns)` by `k`: `(down, right)`.
/// An axis of one position (a sequence's single row) stays put, so text and other
/// one-row inputs shift along their length only. Refuses a shift that leaves
/// nothing of the input to compare.
pub fn shift_offsets(k: usize, (rows, columns): (usize, usize)) -> Result<(usize, usize)> {
    let along = |size: usize| if size > 1 { k } else { 0 };
    let (dy, dx) = (along(rows), along(columns));
    ensure!(
        dy < rows && dx < columns,
        "a shift of {k} pixels leaves nothing to compare on a {rows}x{columns} input; \
         give fewer than {} (0 skips the shift test)",
        [rows, columns]
            .into_iter()
            .filter(|&s| s > 1)
            .min()
            .unwrap_or(1)
    );
    Ok((dy, dx))
}

/// `x` (`[N, C, H, W]`) moved `k` pixels right and down (along its length only
/// when it is one row: [`shift_offsets`]), the first rows and columns repeating
/// the edge.
pub fn shift(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (dy, dx) = shift_offsets(k, (h, w))?;
    let index = |size: usize, by: usize| -> Result<Tensor> {
        let i: Vec<u32> = (0..size).map(|p| p.saturating_sub(by) as u32).collect();
        Ok(Tensor::new(i.as_slice(), x.device())?)
    };
    Ok(x.index_select(&index(h, dy)?, 2)?
        .index_select(&index(w, dx)?, 3)?)
}

/// Each sample's raw map as one vector (a CAM's layers one after another).
fn flat(maps: &Attribution) -> Result<Vec<Vec<f64>>> {
    let parts = maps
        .tensors()
        .into_iter()
        .map(|t| Ok(t.flatten_from(1)?.to_dtype(DType::F64)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 1)?.to_vec2::<f64>()?)
}

fn norm(values: impl Iterator<Item = f64>) -> f64 {
    values.map(|v| v * v).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::attribution::Passes;
    use crate::model::Architecture;

    /// A method whose map is a fixed function of the input: the input itself
    /// (shift-equivariant), or a pattern that ignores it.
    struct Fixed {
        pattern: Option<Tensor>,
    }

    impl Method for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }

        fn passes(&self, _: (usize, usize)) -> Passes {
            Passes {
                backward: 0,
                forward: 0,
            }
        }

        fn attribute(&self, _: &Model, x: &Tensor, _: &[Target]) -> Result<Attribution> {
            Ok(Attribution::Input(match &self.pattern {
                Some(p) => p.clone(),
                None => x.clone(),
            }))
        }
    }

    /// A map that moves with the image scores ρ = 1; one that stays put scores far
    /// lower; neither changes under a perturbation that never changes its map.
    #[test]
    fn the_shift_test_tells_equivariant_maps_from_fixed_ones() {
        let d = Device::Cpu;
        let model = Model::synthetic(Architecture::PlainCnn, &d).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 224, 224), &d).unwrap();
        let classes = attribution::predicted(&model, &x).unwrap();
        let targets: Vec<Target> = classes.iter().map(|&c| Target::Class(c)).collect();
        let moving = Fixed { pattern: None };
        let fixed = Fixed {
            pattern: Some(Tensor::randn(0f32, 1., (2, 3, 224, 224), &d).unwrap()),
        };
        let settings = Fragility {
            samples: 2,
            radius: 0.01,
            shift: 3,
            seed: 0,
        };
        let score = |m: &Fixed| {
            let maps = m.attribute(&model, &x, &targets).unwrap();
            fragility(&model, m, (&x, &targets), (&maps, &classes), &settings).unwrap()
        };
        let (moving, fixed) = (score(&moving), score(&fixed));
        for rho in &moving.shift_spearman {
            assert!(
                (rho.expect("the prediction held") - 1.0).abs() < 1e-9,
                "{rho:?}"
            );
        }
        for rho in &fixed.shift_spearman {
            assert!(rho.expect("the prediction held").abs() < 0.1, "{rho:?}");
        }
        // The fixed pattern does not move at all under noise; the input does, by r.
        assert_eq!(fixed.mean_max_sensitivity(), Some(0.0));
        let s = moving.mean_max_sensitivity().unwrap();
        assert!(s > 0.0 && s < 0.02, "{s}");
    }

    #[test]
    fn a_shift_moves_content_right_and_down_repeating_the_edge() {
        let x = Tensor::arange(0f32, 9., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let s = shift(&x, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(s, [0., 0., 1., 0., 0., 1., 3., 3., 4.]);
    }

    /// A one-row input (a character sequence) moves along its length only; a
    /// shift past an input's extent is refused with what to give instead.
    #[test]
    fn a_one_row_input_shifts_along_its_length() {
        let x = Tensor::arange(0f32, 5., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 5))
            .unwrap();
        let s = shift(&x, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(s, [0., 0., 0., 1., 2.]);
        assert_eq!(shift_offsets(2, (1, 5)).unwrap(), (0, 2));
        assert_eq!(shift_offsets(2, (3, 5)).unwrap(), (2, 2));
        let refused = shift_offsets(5, (1, 5)).unwrap_err().to_string();
        assert!(refused.contains("fewer than 5"), "{refused}");
        let refused = shift_offsets(3, (3, 5)).unwrap_err().to_string();
        assert!(refused.contains("fewer than 3"), "{refused}");
        let refused = shift_offsets(4, (4, 1)).unwrap_err().to_string();
        assert!(refused.contains("fewer than 4"), "{refused}");
    }

    #[test]
    fn perturbations_stay_within_the_radius_and_repeat_with_the_seed() {
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let settings = Fragility {
            samples: 3,
            radius: 0.1,
            ..Fragility::default()
        };
        let a = perturbations(&x, &settings).unwrap();
        let b = perturbations(&x, &settings).unwrap();
        assert_eq!(a.len(), 3);
        for (a, b) in a.iter().zip(&b) {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a, b);
            assert!(a.iter().all(|v| v.abs() <= 0.1) && a.iter().any(|v| v.abs() > 0.05));
        }
    }
}
