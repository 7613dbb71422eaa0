//! Evidently's `g_test` drift test (`g_stattest.py`): scipy's
//! `power_divergence(f_obs, f_exp, lambda_="log-likelihood")`.

use crate::distribution::{Distribution, Union};
use crate::special::chi2_sf;
use crate::sum::pairwise_sum;
use crate::StatTestError;

/// The G-test p-value of the current counts (`f_obs`) against the **raw**
/// reference counts (`f_exp`, not rescaled to the current size), keyed by
/// the distinct values of `R ∪ C`: `G = sum 2 xlogy(f_obs, f_obs / f_exp)`,
/// `p = chi2.sf(G, k - 1)`. Drift if `p < 0.1`.
///
/// scipy 1.17 rejects expected and observed totals that differ by more than
/// `sqrt(eps)` relative, so Evidently's G-test raises unless both samples
/// have the **same size**; that is an error here. A value seen only in the
/// current window makes `G` infinite (p = 0). A single common value gives
/// `G = 0` with 0 degrees of freedom: p is NaN, never drift.
///
/// Keys are in ascending order (Evidently: Python `set` order, the same for
/// small non-negative integer codes); `G` is a pairwise sum as in numpy.
pub fn g_test_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let obs_sum = current.total() as f64;
    let exp_sum = reference.total() as f64;
    let rtol = f64::EPSILON.sqrt();
    if (obs_sum - exp_sum).abs() / obs_sum.min(exp_sum) > rtol {
        return Err(StatTestError::Rejected(
            "g_test: the sum of the observed frequencies must agree with the sum of the expected frequencies",
        ));
    }
    let terms: Vec<f64> = Union::new(reference, current)
        .map(|item| {
            let f_obs = item.count_b as f64;
            let f_exp = item.count_a as f64;
            2.0 * xlogy(f_obs, f_obs / f_exp)
        })
        .collect();
    let stat = pairwise_sum(&terms);
    let df = (terms.len() - 1) as f64;
    Ok(chi2_sf(df, stat))
}

/// `scipy.special.xlogy(x, y)`: `x ln y`, 0 when `x = 0` and `y` is not NaN.
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 && !y.is_nan() {
        0.0
    } else {
        x * y.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_match() {
        let a = Distribution::from_counts([(1.0, 3), (2.0, 2)]);
        let b = Distribution::from_counts([(1.0, 3)]);
        assert!(g_test_pvalue(&a, &b).is_err());
        assert_eq!(g_test_pvalue(&a, &a), Ok(1.0));
        let c = Distribution::from_counts([(1.0, 3), (3.0, 2)]);
        assert_eq!(g_test_pvalue(&a, &c), Ok(0.0));
    }
}
