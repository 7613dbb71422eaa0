//! Evidently's default drift test choice and thresholds
//! (`registry.py::_get_default_stattest` and the stattest definitions).

use crate::distribution::Distribution;
use crate::{chisquare_pvalue, jensen_shannon, ks_2samp_pvalue, wasserstein_normed, z_test_pvalue};

/// Reference sizes up to this use the p-value tests, larger ones the distances.
const SMALL_REFERENCE_ROWS: u64 = 1000;

/// A column's type as Evidently's column mapping declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// A numerical feature (or a float prediction).
    Numerical,
    /// A categorical feature (including integer-coded ones such as location IDs).
    Categorical,
}

/// The drift tests Evidently's default selection can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatTest {
    /// Two-sample Kolmogorov-Smirnov p-value ([`ks_2samp_pvalue`]).
    KolmogorovSmirnov,
    /// Chi-square p-value ([`chisquare_pvalue`]).
    ChiSquare,
    /// Two-proportion Z-test p-value ([`z_test_pvalue`]).
    ZTest,
    /// Normed Wasserstein distance ([`wasserstein_normed`]).
    Wasserstein,
    /// Jensen-Shannon distance over the distinct values ([`jensen_shannon`]).
    JensenShannon,
}

impl StatTest {
    /// Evidently's registry name: `"ks"`, `"chisquare"`, `"z"`, `"wasserstein"`, `"jensenshannon"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "ks",
            Self::ChiSquare => "chisquare",
            Self::ZTest => "z",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannon => "jensenshannon",
        }
    }

    /// The default threshold: 0.05 for the p-value tests, 0.1 for the distances.
    pub fn default_threshold(&self) -> f64 {
        match self {
            Self::KolmogorovSmirnov | Self::ChiSquare | Self::ZTest => 0.05,
            Self::Wasserstein | Self::JensenShannon => 0.1,
        }
    }

    /// Evidently's drift rule: `p <= t` for K-S, `p < t` for chi-square and Z,
    /// `d >= t` for the distances. A NaN score is never drift.
    pub fn is_drift(&self, score: f64, threshold: f64) -> bool {
        match self {
            Self::KolmogorovSmirnov => score <= threshold,
            Self::ChiSquare | Self::ZTest => score < threshold,
            Self::Wasserstein | Self::JensenShannon => score >= threshold,
        }
    }

    /// The drift score (p-value or distance) of `current` against `reference`.
    ///
    /// `JensenShannon` uses the per-value frequencies, the only variant the
    /// default selection reaches; see [`crate::jensen_shannon_binned`] for
    /// Evidently's histogram variant.
    pub fn score(&self, reference: &Distribution, current: &Distribution) -> f64 {
        match self {
            Self::KolmogorovSmirnov => ks_2samp_pvalue(reference, current),
            Self::ChiSquare => chisquare_pvalue(reference, current),
            Self::ZTest => z_test_pvalue(reference, current),
            Self::Wasserstein => wasserstein_normed(reference, current),
            Self::JensenShannon => jensen_shannon(reference, current),
        }
    }
}

/// Evidently's default test for a column, from its type, the size of the
/// cleaned reference and `k`, the number of distinct values in `R ∪ C`
/// (see [`crate::distinct_union`]). The current window's size plays no part.
pub fn default_stattest(
    column_type: ColumnType,
    reference_rows: u64,
    distinct_in_union: usize,
) -> StatTest {
    let k = distinct_in_union;
    match (reference_rows <= SMALL_REFERENCE_ROWS, column_type) {
        (true, ColumnType::Numerical) if k > 5 => StatTest::KolmogorovSmirnov,
        (true, _) if k > 2 => StatTest::ChiSquare,
        (true, _) => StatTest::ZTest,
        (false, ColumnType::Numerical) if k > 5 => StatTest::Wasserstein,
        (false, _) => StatTest::JensenShannon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::{Categorical, Numerical};
    use StatTest::*;

    #[test]
    fn default_selection_table() {
        assert_eq!(default_stattest(Numerical, 1000, 6), KolmogorovSmirnov);
        assert_eq!(default_stattest(Numerical, 1000, 5), ChiSquare);
        assert_eq!(default_stattest(Numerical, 800, 3), ChiSquare);
        assert_eq!(default_stattest(Numerical, 800, 2), ZTest);
        assert_eq!(default_stattest(Numerical, 800, 1), ZTest);
        assert_eq!(default_stattest(Categorical, 1000, 265), ChiSquare);
        assert_eq!(default_stattest(Categorical, 10, 3), ChiSquare);
        assert_eq!(default_stattest(Categorical, 10, 2), ZTest);
        assert_eq!(default_stattest(Numerical, 1001, 6), Wasserstein);
        assert_eq!(default_stattest(Numerical, 25211, 5), JensenShannon);
        assert_eq!(default_stattest(Numerical, 25211, 1), JensenShannon);
        assert_eq!(default_stattest(Categorical, 1001, 2), JensenShannon);
        assert_eq!(default_stattest(Categorical, 25211, 265), JensenShannon);
    }

    #[test]
    fn drift_rules_and_thresholds() {
        assert!(KolmogorovSmirnov.is_drift(0.05, 0.05));
        assert!(!ChiSquare.is_drift(0.05, 0.05));
        assert!(!ZTest.is_drift(0.05, 0.05));
        assert!(ZTest.is_drift(0.0, 0.05));
        assert!(Wasserstein.is_drift(0.1, 0.1));
        assert!(!JensenShannon.is_drift(0.099, 0.1));
        for t in [
            KolmogorovSmirnov,
            ChiSquare,
            ZTest,
            Wasserstein,
            JensenShannon,
        ] {
            assert!(!t.is_drift(f64::NAN, t.default_threshold()));
        }
        assert_eq!(KolmogorovSmirnov.default_threshold(), 0.05);
        assert_eq!(JensenShannon.default_threshold(), 0.1);
        let names: Vec<_> = [
            KolmogorovSmirnov,
            ChiSquare,
            ZTest,
            Wasserstein,
            JensenShannon,
        ]
        .iter()
        .map(StatTest::name)
        .collect();
        assert_eq!(
            names,
            ["ks", "chisquare", "z", "wasserstein", "jensenshannon"]
        );
    }

    #[test]
    fn score_dispatches() {
        let r = Distribution::from_counts([(1.0, 3), (2.0, 1)]);
        let c = Distribution::from_counts([(1.0, 1), (2.0, 3)]);
        assert_eq!(ZTest.score(&r, &c), z_test_pvalue(&r, &c));
        assert_eq!(JensenShannon.score(&r, &c), jensen_shannon(&r, &c));
        assert_eq!(Wasserstein.score(&r, &c), wasserstein_normed(&r, &c));
        assert_eq!(ChiSquare.score(&r, &c), chisquare_pvalue(&r, &c));
        assert_eq!(KolmogorovSmirnov.score(&r, &c), ks_2samp_pvalue(&r, &c));
    }
}
