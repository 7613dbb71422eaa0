//! Explainability of a linear model: each feature's contribution to a prediction is
//! `coefficient × (x − reference mean of x)`, with a missing feature as 0 (the scorer's
//! `fillna(0)`). Per window: the mean and mean absolute contribution of each feature, the
//! reference's mean absolute contribution, and the drift of the contributions' distribution
//! against the reference's (Wasserstein distance normed by the reference's standard deviation,
//! Evidently's `wasserstein` test, threshold 0.1).
//!
//! Everything is read off the exact value counts, so no per-event work is added.

use streamwatch_common::events::FeatureContribution;
use streamwatch_stats::{wasserstein_normed, Distribution};

use crate::evaluate::ColumnSample;

/// Evidently's default threshold for the normed Wasserstein distance.
const DRIFT_THRESHOLD: f64 = 0.1;

/// The reference side of one feature, computed once.
#[derive(Debug, Clone)]
pub struct ReferenceContribution {
    pub feature: String,
    pub coefficient: f64,
    pub reference_mean: f64,
    contributions: Distribution,
    mean_abs: f64,
}

/// A feature's values with missing ones as 0, as the model sees them.
fn model_input(sample: &ColumnSample) -> Distribution {
    let values = sample.values.values().iter().copied();
    let counts = sample.values.counts().iter().copied();
    Distribution::from_counts(values.zip(counts).chain([(0.0, sample.nulls)]))
}

fn contributions(input: &Distribution, coefficient: f64, mean: f64) -> Distribution {
    Distribution::from_counts(
        input
            .values()
            .iter()
            .zip(input.counts())
            .map(|(v, c)| (coefficient * (v - mean), *c)),
    )
}

fn mean_abs(distribution: &Distribution) -> f64 {
    let total = distribution.total() as f64;
    distribution
        .values()
        .iter()
        .zip(distribution.counts())
        .map(|(v, c)| v.abs() * *c as f64)
        .sum::<f64>()
        / total
}

impl ReferenceContribution {
    pub fn new(feature: &str, coefficient: f64, reference: &ColumnSample) -> Self {
        let input = model_input(reference);
        let reference_mean = input.mean();
        let contributions = contributions(&input, coefficient, reference_mean);
        Self {
            feature: feature.to_owned(),
            coefficient,
            reference_mean,
            mean_abs: mean_abs(&contributions),
            contributions,
        }
    }

    /// The feature's contributions in one window.
    pub fn measure(&self, window: &ColumnSample) -> FeatureContribution {
        let input = model_input(window);
        let current = contributions(&input, self.coefficient, self.reference_mean);
        let rows = current.total();
        let (mean, mean_abs_contribution, drift) = if rows == 0 {
            (None, None, None)
        } else {
            let mean = self.coefficient * (input.mean() - self.reference_mean);
            let score = wasserstein_normed(&self.contributions, &current);
            (Some(mean), Some(mean_abs(&current)), Some(score))
        };
        FeatureContribution {
            feature: self.feature.clone(),
            coefficient: self.coefficient,
            reference_mean: self.reference_mean,
            mean_contribution: mean,
            mean_abs_contribution,
            reference_mean_abs_contribution: self.mean_abs,
            drift_score: drift.filter(|s| !s.is_nan()),
            drift_detected: drift.is_some_and(|s| s >= DRIFT_THRESHOLD),
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &[f64], nulls: u64) -> ColumnSample {
        ColumnSample {
            values: Distribution::from_values(values),
            nulls,
            integer_dtype: false,
        }
    }

    #[test]
    fn contributions_center_on_the_reference_mean_with_nulls_as_zero() {
        // Reference inputs 0 (a null), 2, 4, 6: mean 3.
        let reference = ReferenceContribution::new("x", 2.0, &sample(&[2.0, 4.0, 6.0], 1));
        assert_eq!(reference.reference_mean, 3.0);
        // Contributions -6, -2, 2, 6: mean |c| = 4.
        assert_eq!(reference.mean_abs, 4.0);
        let same = reference.measure(&sample(&[2.0, 4.0, 6.0], 1));
        assert_eq!(same.mean_contribution, Some(0.0));
        assert_eq!(same.mean_abs_contribution, Some(4.0));
        assert_eq!(same.drift_score, Some(0.0));
        assert!(!same.drift_detected);
        let shifted = reference.measure(&sample(&[10.0, 10.0], 0));
        assert_eq!(shifted.mean_contribution, Some(14.0));
        assert_eq!(shifted.mean_abs_contribution, Some(14.0));
        assert!(shifted.drift_detected);
        let empty = reference.measure(&sample(&[], 0));
        assert_eq!((empty.rows, empty.mean_abs_contribution), (0, None));
    }
}
