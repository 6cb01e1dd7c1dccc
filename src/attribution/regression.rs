//! Weighted linear least squares for the perturbation methods: LIME's ridge fit
//! with an intercept ([`weighted_ridge`]), KernelSHAP's constrained fit
//! ([`least_squares`] after eliminating a variable). The systems are as small as
//! the superpixels are few, solved in f64 by Gaussian elimination.

use anyhow::{Result, ensure};

/// A weighted ridge fit with an intercept.
pub(super) struct Ridge {
    /// `β`.
    pub coefficients: Vec<f64>,
    /// `β₀`.
    pub intercept: f64,
    /// The weighted R² on the data fitted.
    pub r2: f64,
}

/// Minimizes `Σ w_i (y_i - β₀ - x_i·β)² + α|β|²` (scikit-learn's `Ridge` with
/// `sample_weight`): the columns and `y` centred on their weighted means, then
/// [`least_squares`].
pub(super) fn weighted_ridge(x: &[Vec<f64>], y: &[f64], w: &[f64], alpha: f64) -> Result<Ridge> {
    let k = x.first().map_or(0, Vec::len);
    let total: f64 = w.iter().sum();
    ensure!(total > 0.0, "a linear fit with no weight on any sample");
    let mean_x: Vec<f64> = (0..k)
        .map(|j| x.iter().zip(w).map(|(r, wi)| wi * r[j]).sum::<f64>() / total)
        .collect();
    let mean_y = y.iter().zip(w).map(|(v, wi)| wi * v).sum::<f64>() / total;
    let centred: Vec<Vec<f64>> = x
        .iter()
        .map(|row| row.iter().zip(&mean_x).map(|(v, m)| v - m).collect())
        .collect();
    let response: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
    let coefficients = least_squares(&centred, &response, w, alpha)?;
    let intercept = mean_y
        - coefficients
            .iter()
            .zip(&mean_x)
            .map(|(c, m)| c * m)
            .sum::<f64>();
    let (mut residual, mut spread) = (0f64, 0f64);
    for ((row, &yi), &wi) in x.iter().zip(y).zip(w) {
        let fitted = intercept
            + row
                .iter()
                .zip(&coefficients)
                .map(|(v, c)| v * c)
                .sum::<f64>();
        residual += wi * (yi - fitted).powi(2);
        spread += wi * (yi - mean_y).powi(2);
    }
    let r2 = if spread > 0.0 {
        1.0 - residual / spread
    } else {
        1.0
    };
    Ok(Ridge {
        coefficients,
        intercept,
        r2,
    })
}

/// The `β` minimizing `Σ w_i (y_i - x_i·β)² + α|β|²`: `(XᵀWX + αI) β = XᵀWy`.
pub(super) fn least_squares(x: &[Vec<f64>], y: &[f64], w: &[f64], alpha: f64) -> Result<Vec<f64>> {
    let k = x.first().map_or(0, Vec::len);
    let mut a = vec![vec![0f64; k]; k];
    let mut b = vec![0f64; k];
    for ((row, &yi), &wi) in x.iter().zip(y).zip(w) {
        for (i, &xi) in row.iter().enumerate() {
            b[i] += wi * xi * yi;
            for (a, &xj) in a[i].iter_mut().zip(row) {
                *a += wi * xi * xj;
            }
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += alpha;
    }
    solve(a, b)
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let k = b.len();
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        ensure!(
            a[pivot][col].abs() > 1e-300,
            "the linear fit is singular (give --ridge above 0)"
        );
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (done, rest) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            if f != 0.0 {
                for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= f * p;
                }
                b[col + 1 + i] -= f * b[col];
            }
        }
    }
    let mut x = vec![0f64; k];
    for i in (0..k).rev() {
        let tail: f64 = (i + 1..k).map(|j| a[i][j] * x[j]).sum();
        x[i] = (b[i] - tail) / a[i][i];
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ridge_fit_recovers_a_linear_function_and_matches_the_closed_form() {
        // y = 2 + 3 x0 - x1 exactly: with no penalty the fit is exact, R² = 1.
        let x: Vec<Vec<f64>> = (0..8)
            .map(|i| vec![(i & 1) as f64, ((i >> 1) & 1) as f64, ((i >> 2) & 1) as f64])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 + 3.0 * r[0] - r[1]).collect();
        let w: Vec<f64> = (0..8).map(|i| 0.5 + i as f64 / 8.0).collect();
        let fit = weighted_ridge(&x, &y, &w, 0.0).unwrap();
        for (c, e) in fit.coefficients.iter().zip([3.0, -1.0, 0.0]) {
            assert!((c - e).abs() < 1e-12, "{:?}", fit.coefficients);
        }
        assert!((fit.intercept - 2.0).abs() < 1e-12);
        assert!((fit.r2 - 1.0).abs() < 1e-12);
        // One feature, by hand: β = Σw(x-x̄)(y-ȳ) / (Σw(x-x̄)² + α).
        let (x1, y1, w1) = (
            vec![vec![0.0], vec![1.0], vec![1.0]],
            vec![1.0, 3.0, 4.0],
            vec![1.0, 1.0, 2.0],
        );
        let fit = weighted_ridge(&x1, &y1, &w1, 0.5).unwrap();
        let (mx, my): (f64, f64) = (3.0 / 4.0, (1.0 + 3.0 + 8.0) / 4.0);
        let sxy = -mx * (1.0 - my) + (1.0 - mx) * (3.0 - my) + 2.0 * (1.0 - mx) * (4.0 - my);
        let sxx = mx * mx + (1.0 - mx).powi(2) + 2.0 * (1.0 - mx).powi(2);
        assert!((fit.coefficients[0] - sxy / (sxx + 0.5)).abs() < 1e-12);
        assert!(weighted_ridge(&x1, &y1, &[0.0; 3], 1.0).is_err());
    }
}
