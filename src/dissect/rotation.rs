//! A random rotation of a layer's units, for Network Dissection's test that
//! interpretability is not discriminative power (Bau et al. 2017, section 3.2): a
//! rotated layer spans the same space, so the network predicts the same, but its
//! units are mixtures of the old ones, and far fewer of them detect a concept.
//!
//! The rotation is Haar-random: Gram-Schmidt on a seeded Gaussian matrix (with
//! the signs the orthogonalization leaves, which keeps the distribution uniform).

use anyhow::{Result, ensure};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// A random `n x n` orthogonal matrix drawn from `seed`.
pub fn random_rotation(n: usize, seed: u64, device: &Device) -> Result<Tensor> {
    ensure!(n > 0, "a rotation of no units");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f64, 1.0).expect("a positive deviation");
    let mut rows: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| normal.sample(&mut rng)).collect())
        .collect();
    for i in 0..n {
        // Twice, for orthogonality to float precision (modified Gram-Schmidt).
        for _ in 0..2 {
            for j in 0..i {
                let dot: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
                let (done, rest) = rows.split_at_mut(i);
                rest[0]
                    .iter_mut()
                    .zip(&done[j])
                    .for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = rows[i].iter().map(|a| a * a).sum::<f64>().sqrt();
        ensure!(norm > 1e-9, "a degenerate draw for the rotation");
        rows[i].iter_mut().for_each(|a| *a /= norm);
    }
    let values: Vec<f32> = rows.into_iter().flatten().map(|v| v as f32).collect();
    Ok(Tensor::from_vec(values, (n, n), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R Rᵀ = I, and different seeds give different rotations.
    #[test]
    fn rotations_are_orthogonal() {
        let r = random_rotation(64, 3, &Device::Cpu).unwrap();
        let product = r.matmul(&r.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in product.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((v - expected).abs() < 1e-5, "({i}, {j}): {v}");
            }
        }
        let other = random_rotation(64, 4, &Device::Cpu).unwrap();
        assert_ne!(r.to_vec2::<f32>().unwrap(), other.to_vec2::<f32>().unwrap());
    }
}
