//! Evidently's registry of tabular drift tests (`registry.py` and the
//! stattest definitions in `evidently/legacy/calculations/stattests/`): the
//! names, allowed column types, default thresholds and drift rules, and the
//! default choice (`_get_default_stattest`).

use crate::distribution::Distribution;
use crate::{
    anderson_ksamp_pvalue, chisquare_pvalue, cramer_von_mises_pvalue, empirical_mmd_pvalue,
    energy_distance, epps_singleton_pvalue, fisher_exact_pvalue, g_test_pvalue, hellinger,
    jensen_shannon, jensen_shannon_binned, kl_div, ks_2samp_pvalue, mann_whitney_u_pvalue, psi,
    t_test_pvalue, tvd_pvalue, wasserstein_normed, z_test_pvalue, StatTestError,
};

/// Reference sizes up to this use the p-value tests, larger ones the distances.
const SMALL_REFERENCE_ROWS: u64 = 1000;

/// The seed of numpy's global random state that [`StatTest::EmpiricalMmd`]
/// replays (Evidently leaves it unseeded; see [`crate::empirical_mmd_pvalue`]).
pub const MMD_SEED: u32 = 0;

/// A column's type as Evidently's column mapping declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// A numerical feature (or a float prediction).
    Numerical,
    /// A categorical feature (including integer-coded ones such as location IDs).
    Categorical,
}

/// Whether a score is a p-value (small means drift) or a distance (large means drift).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScoreKind {
    /// A p-value: drift below (or at) the threshold.
    PValue,
    /// A distance or divergence: drift above (or at) the threshold.
    Distance,
}

/// Every drift test Evidently 0.7.23 registers for tabular (numerical or
/// categorical) columns; the two text-content tests are not included.
///
/// | name | variant | columns | threshold | drift if |
/// |---|---|---|---|---|
/// | `ks` | [`KolmogorovSmirnov`](Self::KolmogorovSmirnov) | num | 0.05 | `p <= t` |
/// | `chisquare` | [`ChiSquare`](Self::ChiSquare) | cat | 0.05 | `p < t` |
/// | `z` | [`ZTest`](Self::ZTest) | cat | 0.05 | `p < t` |
/// | `wasserstein` | [`Wasserstein`](Self::Wasserstein) | num | 0.1 | `d >= t` |
/// | `jensenshannon` | [`JensenShannon`](Self::JensenShannon) | cat, num | 0.1 | `d >= t` |
/// | `psi` | [`Psi`](Self::Psi) | cat, num | 0.1 | `psi >= t` |
/// | `kl_div` | [`KlDiv`](Self::KlDiv) | cat, num | 0.1 | `kl >= t` |
/// | `hellinger` | [`Hellinger`](Self::Hellinger) | cat, num | 0.1 | `d >= t` |
/// | `anderson` | [`AndersonDarling`](Self::AndersonDarling) | num | 0.1 | `p < t` |
/// | `cramer_von_mises` | [`CramerVonMises`](Self::CramerVonMises) | num | 0.1 | `p <= t` |
/// | `mannw` | [`MannWhitneyU`](Self::MannWhitneyU) | num | 0.05 | `p < t` |
/// | `t_test` | [`TTest`](Self::TTest) | num | 0.05 | `p < t` |
/// | `ed` | [`EnergyDistance`](Self::EnergyDistance) | num | 0.1 | `d > t` |
/// | `es` | [`EppsSingleton`](Self::EppsSingleton) | num | 0.05 | `p < t` |
/// | `fisher_exact` | [`FisherExact`](Self::FisherExact) | cat | 0.1 | `p < t` |
/// | `g_test` | [`GTest`](Self::GTest) | cat | 0.1 | `p < t` |
/// | `TVD` | [`TotalVariation`](Self::TotalVariation) | cat | 0.1 | `p < t` (a permutation p-value) |
/// | `empirical_mmd` | [`EmpiricalMmd`](Self::EmpiricalMmd) | num | 0.1 | `p < t` (a permutation p-value) |
///
/// A NaN score is never drift. "columns" is Evidently's `allowed_feature_types`
/// ([`supports`](Self::supports)), which Evidently enforces when a test is
/// chosen by name; its default choice ([`default_stattest`]) also applies
/// `chisquare` and `z` to numerical columns.
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
    /// Jensen-Shannon distance ([`jensen_shannon`]; [`jensen_shannon_binned`]
    /// for a numerical column with more than 20 distinct reference values).
    JensenShannon,
    /// Population stability index ([`psi`]).
    Psi,
    /// Kullback-Leibler divergence ([`kl_div`]).
    KlDiv,
    /// Hellinger distance ([`hellinger`]).
    Hellinger,
    /// k-sample Anderson-Darling p-value ([`anderson_ksamp_pvalue`]).
    AndersonDarling,
    /// Cramér-von Mises p-value ([`cramer_von_mises_pvalue`]).
    CramerVonMises,
    /// One-sided Mann-Whitney U p-value ([`mann_whitney_u_pvalue`]).
    MannWhitneyU,
    /// Student's two-sample t-test p-value ([`t_test_pvalue`]).
    TTest,
    /// Energy distance ([`energy_distance`]).
    EnergyDistance,
    /// Epps-Singleton p-value ([`epps_singleton_pvalue`]).
    EppsSingleton,
    /// Fisher's exact test p-value for binary columns ([`fisher_exact_pvalue`]).
    FisherExact,
    /// G-test p-value ([`g_test_pvalue`]).
    GTest,
    /// Total-variation-distance permutation p-value ([`tvd_pvalue`]).
    TotalVariation,
    /// Empirical MMD permutation p-value ([`empirical_mmd_pvalue`], seed [`MMD_SEED`]).
    EmpiricalMmd,
}

/// A test's outcome as Evidently reports it for a column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatTestResult {
    /// The drift score (p-value or distance).
    pub score: f64,
    /// Whether the score means drift under the threshold.
    pub drift: bool,
    /// The threshold applied (the default unless one was given).
    pub threshold: f64,
}

impl StatTest {
    /// Every test, in the order of the table above.
    pub const ALL: [StatTest; 18] = [
        Self::KolmogorovSmirnov,
        Self::ChiSquare,
        Self::ZTest,
        Self::Wasserstein,
        Self::JensenShannon,
        Self::Psi,
        Self::KlDiv,
        Self::Hellinger,
        Self::AndersonDarling,
        Self::CramerVonMises,
        Self::MannWhitneyU,
        Self::TTest,
        Self::EnergyDistance,
        Self::EppsSingleton,
        Self::FisherExact,
        Self::GTest,
        Self::TotalVariation,
        Self::EmpiricalMmd,
    ];

    /// Evidently's registry name (`"ks"`, `"psi"`, `"TVD"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "ks",
            Self::ChiSquare => "chisquare",
            Self::ZTest => "z",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannon => "jensenshannon",
            Self::Psi => "psi",
            Self::KlDiv => "kl_div",
            Self::Hellinger => "hellinger",
            Self::AndersonDarling => "anderson",
            Self::CramerVonMises => "cramer_von_mises",
            Self::MannWhitneyU => "mannw",
            Self::TTest => "t_test",
            Self::EnergyDistance => "ed",
            Self::EppsSingleton => "es",
            Self::FisherExact => "fisher_exact",
            Self::GTest => "g_test",
            Self::TotalVariation => "TVD",
            Self::EmpiricalMmd => "empirical_mmd",
        }
    }

    /// The test with Evidently's registry name `name` (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<StatTest> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Evidently's `display_name`.
    pub fn display_name(&self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "K-S p_value",
            Self::ChiSquare => "chi-square p_value",
            Self::ZTest => "Z-test p_value",
            Self::Wasserstein => "Wasserstein distance (normed)",
            Self::JensenShannon => "Jensen-Shannon distance",
            Self::Psi => "PSI",
            Self::KlDiv => "Kullback-Leibler divergence",
            Self::Hellinger => "Hellinger distance",
            Self::AndersonDarling => "Anderson-Darling",
            Self::CramerVonMises => "Cramer-von Mises",
            Self::MannWhitneyU => "Mann-Whitney U-rank test",
            Self::TTest => "t_test",
            Self::EnergyDistance => "Energy-distance",
            Self::EppsSingleton => "Epps-Singleton",
            Self::FisherExact => "Fisher's Exact test",
            Self::GTest => "g_test",
            Self::TotalVariation => "Total-Variation-Distance",
            Self::EmpiricalMmd => "empirical_mmd",
        }
    }

    /// Whether Evidently allows the test for a column of this type
    /// (`allowed_feature_types`).
    pub fn supports(&self, column_type: ColumnType) -> bool {
        use ColumnType::{Categorical, Numerical};
        match self {
            Self::JensenShannon | Self::Psi | Self::KlDiv | Self::Hellinger => true,
            Self::ChiSquare
            | Self::ZTest
            | Self::FisherExact
            | Self::GTest
            | Self::TotalVariation => column_type == Categorical,
            Self::KolmogorovSmirnov
            | Self::Wasserstein
            | Self::AndersonDarling
            | Self::CramerVonMises
            | Self::MannWhitneyU
            | Self::TTest
            | Self::EnergyDistance
            | Self::EppsSingleton
            | Self::EmpiricalMmd => column_type == Numerical,
        }
    }

    /// Whether the score is a p-value or a distance.
    pub fn kind(&self) -> ScoreKind {
        match self {
            Self::Wasserstein
            | Self::JensenShannon
            | Self::Psi
            | Self::KlDiv
            | Self::Hellinger
            | Self::EnergyDistance => ScoreKind::Distance,
            _ => ScoreKind::PValue,
        }
    }

    /// Evidently's default threshold: 0.05 for `ks`, `chisquare`, `z`,
    /// `mannw`, `t_test` and `es`; 0.1 for every other test.
    pub fn default_threshold(&self) -> f64 {
        match self {
            Self::KolmogorovSmirnov
            | Self::ChiSquare
            | Self::ZTest
            | Self::MannWhitneyU
            | Self::TTest
            | Self::EppsSingleton => 0.05,
            _ => 0.1,
        }
    }

    /// Evidently's drift rule: `p <= t` for `ks` and `cramer_von_mises`,
    /// `p < t` for the other p-values, `d > t` for `ed` and `d >= t` for the
    /// other distances. A NaN score is never drift.
    pub fn is_drift(&self, score: f64, threshold: f64) -> bool {
        match self {
            Self::KolmogorovSmirnov | Self::CramerVonMises => score <= threshold,
            Self::EnergyDistance => score > threshold,
            _ => match self.kind() {
                ScoreKind::PValue => score < threshold,
                ScoreKind::Distance => score >= threshold,
            },
        }
    }

    /// The drift score (p-value or distance) of `current` against
    /// `reference`, or why Evidently would raise instead. Tests that depend
    /// on the column type (`jensenshannon`, `psi`, `kl_div`, `hellinger`)
    /// follow it; the others ignore it (as Evidently's functions do).
    pub fn try_score(
        &self,
        column_type: ColumnType,
        reference: &Distribution,
        current: &Distribution,
    ) -> Result<f64, StatTestError> {
        if reference.is_empty() || current.is_empty() {
            return Err(StatTestError::EmptySample);
        }
        match self {
            Self::KolmogorovSmirnov => Ok(ks_2samp_pvalue(reference, current)),
            Self::ChiSquare => Ok(chisquare_pvalue(reference, current)),
            Self::ZTest => Ok(z_test_pvalue(reference, current)),
            Self::Wasserstein => Ok(wasserstein_normed(reference, current)),
            Self::JensenShannon => {
                if column_type == ColumnType::Numerical && reference.distinct() > 20 {
                    if reference.has_infinite() || current.has_infinite() {
                        return Err(StatTestError::Rejected(
                            "histogram: autodetected range is not finite",
                        ));
                    }
                    Ok(jensen_shannon_binned(reference, current))
                } else {
                    Ok(jensen_shannon(reference, current))
                }
            }
            Self::Psi => psi(reference, current, column_type),
            Self::KlDiv => kl_div(reference, current, column_type),
            Self::Hellinger => hellinger(reference, current, column_type),
            Self::AndersonDarling => anderson_ksamp_pvalue(reference, current),
            Self::CramerVonMises => cramer_von_mises_pvalue(reference, current),
            Self::MannWhitneyU => mann_whitney_u_pvalue(reference, current),
            Self::TTest => t_test_pvalue(reference, current),
            Self::EnergyDistance => energy_distance(reference, current),
            Self::EppsSingleton => epps_singleton_pvalue(reference, current),
            Self::FisherExact => fisher_exact_pvalue(reference, current),
            Self::GTest => g_test_pvalue(reference, current),
            Self::TotalVariation => tvd_pvalue(reference, current),
            Self::EmpiricalMmd => empirical_mmd_pvalue(reference, current, MMD_SEED),
        }
    }

    /// The score and drift flag for a column, with `threshold` or the default.
    pub fn evaluate(
        &self,
        column_type: ColumnType,
        reference: &Distribution,
        current: &Distribution,
        threshold: Option<f64>,
    ) -> Result<StatTestResult, StatTestError> {
        let threshold = threshold.unwrap_or_else(|| self.default_threshold());
        let score = self.try_score(column_type, reference, current)?;
        Ok(StatTestResult {
            score,
            drift: self.is_drift(score, threshold),
            threshold,
        })
    }

    /// The column type [`score`](Self::score) assumes: the only allowed one,
    /// or categorical for the tests allowed for both.
    fn natural_type(&self) -> ColumnType {
        if self.supports(ColumnType::Categorical) {
            ColumnType::Categorical
        } else {
            ColumnType::Numerical
        }
    }

    /// The drift score, NaN where Evidently would raise
    /// ([`try_score`](Self::try_score) for the test's own column type,
    /// categorical for the tests allowed for both; `JensenShannon` thus uses
    /// the per-value frequencies, the only variant the default selection
    /// reaches).
    pub fn score(&self, reference: &Distribution, current: &Distribution) -> f64 {
        self.try_score(self.natural_type(), reference, current)
            .unwrap_or(f64::NAN)
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
    fn registry_table() {
        use ColumnType::{Categorical as Cat, Numerical as Num};
        // name, allowed types, threshold, drift exactly at the threshold?
        let table: [(&str, &[ColumnType], f64, bool); 18] = [
            ("ks", &[Num], 0.05, true),
            ("chisquare", &[Cat], 0.05, false),
            ("z", &[Cat], 0.05, false),
            ("wasserstein", &[Num], 0.1, true),
            ("jensenshannon", &[Cat, Num], 0.1, true),
            ("psi", &[Cat, Num], 0.1, true),
            ("kl_div", &[Cat, Num], 0.1, true),
            ("hellinger", &[Cat, Num], 0.1, true),
            ("anderson", &[Num], 0.1, false),
            ("cramer_von_mises", &[Num], 0.1, true),
            ("mannw", &[Num], 0.05, false),
            ("t_test", &[Num], 0.05, false),
            ("ed", &[Num], 0.1, false),
            ("es", &[Num], 0.05, false),
            ("fisher_exact", &[Cat], 0.1, false),
            ("g_test", &[Cat], 0.1, false),
            ("TVD", &[Cat], 0.1, false),
            ("empirical_mmd", &[Num], 0.1, false),
        ];
        for (name, types, threshold, at_threshold) in table {
            let test = StatTest::from_name(name).expect(name);
            assert_eq!(test.name(), name);
            for t in [Num, Cat] {
                assert_eq!(test.supports(t), types.contains(&t), "{name}");
            }
            assert_eq!(test.default_threshold(), threshold, "{name}");
            assert_eq!(test.is_drift(threshold, threshold), at_threshold, "{name}");
            let (low, high) = (threshold / 2.0, threshold * 2.0);
            match test.kind() {
                ScoreKind::PValue => {
                    assert!(test.is_drift(low, threshold) && !test.is_drift(high, threshold))
                }
                ScoreKind::Distance => {
                    assert!(!test.is_drift(low, threshold) && test.is_drift(high, threshold))
                }
            }
            assert!(!test.is_drift(f64::NAN, threshold));
        }
        assert_eq!(StatTest::from_name("KS"), None);
    }

    #[test]
    fn try_score_reports_errors() {
        let r = Distribution::from_counts([(0.0, 3), (1.0, 2)]);
        let c = Distribution::from_counts([(0.0, 1), (1.0, 3)]);
        let empty = Distribution::default();
        for test in StatTest::ALL {
            assert_eq!(
                test.try_score(ColumnType::Numerical, &r, &empty),
                Err(StatTestError::EmptySample)
            );
            assert!(test.score(&empty, &c).is_nan());
        }
        // Fisher needs equal sizes, G-test equal totals.
        assert!(StatTest::FisherExact
            .try_score(ColumnType::Categorical, &r, &c)
            .is_err());
        assert!(StatTest::GTest
            .try_score(ColumnType::Categorical, &r, &c)
            .is_err());
        let result = StatTest::Psi
            .evaluate(ColumnType::Categorical, &r, &c, Some(0.5))
            .unwrap();
        assert_eq!(result.threshold, 0.5);
        assert_eq!(result.drift, result.score >= 0.5);
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
