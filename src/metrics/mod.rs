//! How far to trust a map: faithfulness to the model (deletion and insertion),
//! agreement with where the object is (pointing game, mass inside the mask),
//! dependence on what the model learned (cascading model randomization), and
//! fragility (max-sensitivity, the shift test).

mod deletion;
mod fragility;
mod localization;
mod randomization;
mod scores;
mod trust;

pub use deletion::{DeletionInsertion, auc};
pub use fragility::{
    Fragility, FragilityScores, fragility, max_sensitivity, perturbations, shift, shift_offsets,
    shift_test,
};
pub use localization::{mass_inside, pointing_hit};
pub use randomization::{RandomizationStep, cascading_randomization};
pub use scores::{MapScores, MeanScores};
pub use trust::{Trust, TrustInputs, trust};

/// Spearman's rank correlation of `a` and `b` (ties get their average rank): the
/// Pearson correlation of the ranks. 0 when either side is constant.
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "spearman of unequal lengths");
    pearson(&ranks(a), &ranks(b))
}

/// Ranks from 1, ties sharing the mean of the ranks they span.
fn ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold equal values: ranks start+1 ..= end, averaged.
        let rank = (start + end + 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = rank);
        start = end;
    }
    ranks
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 2, 5, 3], [2, 1, 4, 4, 0]) = 0.0789473684...
        let r = spearman(&[1.0, 2.0, 2.0, 5.0, 3.0], &[2.0, 1.0, 4.0, 4.0, 0.0]);
        assert!((r - 0.078_947_368_4).abs() < 1e-9, "{r}");
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[3.0, 2.0, 1.0]), 0.0);
    }
}
