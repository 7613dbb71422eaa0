//! Evidently's `chisquare` drift test (`chisquare_stattest.py`) on scipy's
//! `scipy.stats.chisquare` (`_power_divergence` with lambda = 1).

use crate::distribution::{Distribution, Union};
use crate::special::chi2_sf;
use crate::sum::pairwise_sum;

/// Pearson's chi-square p-value of the current counts against the reference
/// frequencies scaled to the current size: keys are the distinct values of
/// `R ∪ C`, `f_exp = count_R * (n_C / n_R)`, `f_obs = count_C`, `df = k - 1`.
/// A key seen only in the current window makes the statistic infinite and
/// the p-value 0. NaN if either sample is empty.
///
/// The statistic is numpy's pairwise sum over the keys in ascending order,
/// which is Evidently's (Python `set`) order for integer-coded values.
pub fn chisquare_pvalue(reference: &Distribution, current: &Distribution) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return f64::NAN;
    }
    let k_norm = current.total() as f64 / reference.total() as f64;
    let terms: Vec<f64> = Union::new(reference, current)
        .map(|item| {
            let f_exp = item.count_a as f64 * k_norm;
            let f_obs = item.count_b as f64;
            let d = f_obs - f_exp;
            d * d / f_exp
        })
        .collect();
    chi2_sf((terms.len() - 1) as f64, pairwise_sum(&terms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_key_gives_zero() {
        let r = Distribution::from_counts([(1.0, 10), (2.0, 10)]);
        let c = Distribution::from_counts([(1.0, 10), (3.0, 1)]);
        assert_eq!(chisquare_pvalue(&r, &c), 0.0);
    }

    #[test]
    fn proportional_counts_give_one() {
        let r = Distribution::from_counts([(1.0, 10), (2.0, 20), (3.0, 30)]);
        let c = Distribution::from_counts([(1.0, 1), (2.0, 2), (3.0, 3)]);
        assert!((chisquare_pvalue(&r, &c) - 1.0).abs() < 1e-15);
    }
}
