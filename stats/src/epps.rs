//! Evidently's `es` drift test (`epps_singleton_stattest.py`): scipy's
//! `epps_singleton_2samp(R, C)` with `t = (0.4, 0.8)`.

use crate::dd::DoubleDouble as Dd;
use crate::distribution::{Distribution, Union};
use crate::special::chi2_sf;
use crate::StatTestError;

/// The Epps-Singleton p-value: the empirical characteristic functions of
/// both samples at `t / sigma` (`sigma = IQR(R ∪ C) / 2`, `t = 0.4, 0.8`),
/// `W = n g^T pinv(S) g` with `g` the difference of the mean
/// `(cos, sin)` features and `S = (n/n_R) cov_R + (n/n_C) cov_C` (biased
/// covariances), small-sample corrected when `max(n_R, n_C) < 25`, and
/// `p = chi2.sf(W, rank)`. Drift if `p < 0.05`.
///
/// Everything is a sum over observations, so it is computed from the counts
/// (`O(distinct values)`). The means and covariances are accumulated in
/// double-double, and the pseudo-inverse comes from a Jacobi eigen-
/// decomposition of the symmetric 4x4 `S` with numpy's cutoff (`4 eps`
/// times the largest singular value) instead of LAPACK's SVD; the two agree
/// to about `cond(S) * 1e-16` relative. The rank (degrees of freedom) is the
/// number of eigenvalues kept, which can differ from numpy's only when `S`
/// is numerically singular (a pooled sample with very few distinct values).
///
/// Errors where Evidently or scipy raise: an IQR of zero, or fewer than 5
/// observations in either sample. An infinite value gives NaN (scipy).
pub fn epps_singleton_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let pooled = Distribution::from_counts(
        Union::new(reference, current).map(|i| (i.value, i.count_a + i.count_b)),
    );
    let iqr = pooled.quantile_linear(0.75) - pooled.quantile_linear(0.25);
    if iqr == 0.0 {
        return Err(StatTestError::Rejected(
            "Epps-Singleton test: the interquartile range (IQR) is zero",
        ));
    }
    let nx = reference.total();
    let ny = current.total();
    if nx < 5 || ny < 5 {
        return Err(StatTestError::Rejected(
            "epps_singleton_2samp: x and y should have at least 5 elements",
        ));
    }
    if reference.has_infinite() || current.has_infinite() {
        return Ok(f64::NAN);
    }
    let sigma = iqr / 2.0;
    let ts = [0.4 / sigma, 0.8 / sigma];
    let (mean_x, cov_x) = features(reference, ts);
    let (mean_y, cov_y) = features(current, ts);
    let n = (nx + ny) as f64;
    let (nxf, nyf) = (nx as f64, ny as f64);
    let wx = n / nxf;
    let wy = n / nyf;
    let mut est = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            let cx = cov_x[i][j] * (1.0 / (nxf - 1.0)) * (nxf - 1.0) / nxf;
            let cy = cov_y[i][j] * (1.0 / (nyf - 1.0)) * (nyf - 1.0) / nyf;
            est[i][j] = wx * cx + wy * cy;
        }
    }
    let g: [f64; 4] = std::array::from_fn(|i| mean_x[i] - mean_y[i]);
    let (eigenvalues, vectors) = jacobi_eigen(est);
    let smax = eigenvalues.iter().fold(0.0_f64, |m, l| m.max(l.abs()));
    let cutoff = 4.0 * f64::EPSILON * smax;
    let mut quad = 0.0;
    let mut rank = 0;
    for (k, &lambda) in eigenvalues.iter().enumerate() {
        if lambda.abs() > cutoff {
            rank += 1;
            let proj: f64 = (0..4).map(|i| vectors[i][k] * g[i]).sum();
            quad += proj * proj / lambda;
        }
    }
    let mut w = n * quad;
    if nx.max(ny) < 25 {
        let corr = 1.0 / (1.0 + n.powf(-0.45) + 10.1 * (nxf.powf(-1.7) + nyf.powf(-1.7)));
        w *= corr;
    }
    Ok(chi2_sf(f64::from(rank), w))
}

/// The means of `(cos(t0 x), cos(t1 x), sin(t0 x), sin(t1 x))` over the
/// sample and the sums of the products of their deviations (`n - 1` times
/// `np.cov`), accumulated over the distinct values in double-double.
fn features(sample: &Distribution, ts: [f64; 2]) -> ([f64; 4], [[f64; 4]; 4]) {
    let n = sample.total() as f64;
    let feats: Vec<[f64; 4]> = sample
        .values()
        .iter()
        .map(|&v| {
            let a0 = ts[0] * v;
            let a1 = ts[1] * v;
            [a0.cos(), a1.cos(), a0.sin(), a1.sin()]
        })
        .collect();
    let mut sums = [Dd::ZERO; 4];
    for (f, &c) in feats.iter().zip(sample.counts()) {
        for (s, &fi) in sums.iter_mut().zip(f) {
            *s = *s + Dd::from_prod(fi, c as f64);
        }
    }
    let mean: [f64; 4] = std::array::from_fn(|i| sums[i].hi / n);
    let mut cross = [[Dd::ZERO; 4]; 4];
    for (f, &c) in feats.iter().zip(sample.counts()) {
        let d: [f64; 4] = std::array::from_fn(|i| f[i] - mean[i]);
        for i in 0..4 {
            for j in i..4 {
                cross[i][j] = cross[i][j] + Dd::from_prod(d[i] * d[j], c as f64);
            }
        }
    }
    let mut out = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in i..4 {
            out[i][j] = cross[i][j].hi;
            out[j][i] = cross[i][j].hi;
        }
    }
    (mean, out)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric 4x4 matrix by the
/// cyclic Jacobi method.
fn jacobi_eigen(mut a: [[f64; 4]; 4]) -> ([f64; 4], [[f64; 4]; 4]) {
    let mut v = [[0.0; 4]; 4];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..4)
            .flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off == 0.0 {
            break;
        }
        for p in 0..3 {
            for q in p + 1..4 {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p], a[q]);
                for (k, (&apk, &aqk)) in row_p.iter().zip(&row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let vkp = row[p];
                    let vkq = row[q];
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2], a[3][3]], v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs() {
        let m = [
            [4.0, 1.0, 0.5, 0.2],
            [1.0, 3.0, 0.3, 0.1],
            [0.5, 0.3, 2.0, 0.4],
            [0.2, 0.1, 0.4, 1.0],
        ];
        let (l, v) = jacobi_eigen(m);
        for i in 0..4 {
            for j in 0..4 {
                let r: f64 = (0..4).map(|k| v[i][k] * l[k] * v[j][k]).sum();
                assert!((r - m[i][j]).abs() < 1e-14, "{i} {j}");
            }
        }
    }

    #[test]
    fn rejections() {
        let a = Distribution::from_values(&[1.0, 2.0, 3.0, 4.0]);
        let b = Distribution::from_values(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(epps_singleton_pvalue(&a, &b).is_err());
        let c = Distribution::from_counts([(1.0, 10)]);
        assert!(epps_singleton_pvalue(&c, &c).is_err());
    }
}
