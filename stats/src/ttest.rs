//! Evidently's `t_test` drift test (`t_test.py`): scipy's
//! `ttest_ind(R, C)` (pooled variance, two-sided).

use crate::distribution::Distribution;
use crate::special::stdtr;
use crate::StatTestError;

/// The two-sided p-value of Student's two-sample t-test with pooled variance
/// (`scipy.stats.ttest_ind(R, C)`): `t = (mean_R - mean_C) / sqrt(s² (1/n_R + 1/n_C))`,
/// `s² = ((n_R - 1) v_R + (n_C - 1) v_C) / (n_R + n_C - 2)` with the sample
/// variances (ddof = 1, taken as 0 for a sample of one), `df = n_R + n_C - 2`,
/// `p = 2 stdtr(df, -|t|)`. Drift if `p < 0.05`.
///
/// The means and variances are computed from the counts in double-double
/// and rounded once, while numpy sums the raw samples pairwise in their
/// order: the two agree to about one ulp, which moves p by about
/// `t² 2^-53` relative (and by more only where `mean_R - mean_C` cancels).
/// `stdtr` follows Boost's formulas to about 1e-14. Two single observations
/// (`df = 0`) give NaN; zero variances give `t = ±inf` (p = 0) or NaN.
pub fn t_test_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let n1 = reference.total() as f64;
    let n2 = current.total() as f64;
    let v1 = if reference.total() == 1 {
        0.0
    } else {
        reference.population_variance() * (n1 / (n1 - 1.0))
    };
    let v2 = if current.total() == 1 {
        0.0
    } else {
        current.population_variance() * (n2 / (n2 - 1.0))
    };
    let df = n1 + n2 - 2.0;
    let svar = ((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / df;
    let denom = (svar * (1.0 / n1 + 1.0 / n2)).sqrt();
    let d = reference.mean() - current.mean();
    let t = d / denom;
    Ok(2.0 * stdtr(df, -t.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_means_give_one() {
        let a = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let b = Distribution::from_values(&[0.0, 2.0, 4.0]);
        assert_eq!(t_test_pvalue(&a, &b), Ok(1.0));
        let one = Distribution::from_values(&[1.0]);
        assert!(t_test_pvalue(&one, &one).unwrap().is_nan());
    }
}
