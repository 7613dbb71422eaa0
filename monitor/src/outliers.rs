//! Outliers: per numerical column and window, the share of values outside the reference's
//! range, by two definitions: outside the reference's `[lower, upper]` quantiles (1st..99th
//! percentile by default) and outside its IQR fences (`Q1 - 1.5 IQR`, `Q3 + 1.5 IQR`).
//!
//! - Quantiles are numpy's default linear method (`np.quantile`) on the reference's finite
//!   values; the bounds are computed once per reference ([`OutlierBounds::new`]).
//! - "Outside" is strictly below the lower or strictly above the upper bound.
//! - ±inf, like null and NaN, is a missing cell (as in the missing-value metrics): it is left
//!   out of the reference before its quantiles are taken, and out of the window's share
//!   entirely — neither an outlier nor part of the denominator, which is the window's
//!   non-missing finite values of the column.
//!
//! Everything is read off the exact value counts, so the shares are exact ratios of counts.

use streamwatch_common::events::ColumnOutliers;
use streamwatch_stats::Distribution;

/// Tukey's fence factor: the fences lie 1.5 IQR beyond the quartiles.
const IQR_FACTOR: f64 = 1.5;

/// The reference side of one column's outlier check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierBounds {
    pub lower_quantile: f64,
    pub upper_quantile: f64,
    /// The reference's values at `lower_quantile` and `upper_quantile`.
    pub lower_bound: f64,
    pub upper_bound: f64,
    pub iqr_lower_fence: f64,
    pub iqr_upper_fence: f64,
}

impl OutlierBounds {
    /// The bounds of a reference column from its finite values (the reference's
    /// distribution without ±inf); `None` when it has none, as there is no range then.
    ///
    /// # Panics
    /// If a quantile is outside `[0, 1]` (the mapping and the spec reject those).
    pub fn new(
        finite: &Distribution,
        (lower_quantile, upper_quantile): (f64, f64),
    ) -> Option<Self> {
        debug_assert!(!finite.has_infinite(), "bounds are taken on finite values");
        if finite.is_empty() {
            return None;
        }
        let q1 = finite.quantile_linear(0.25);
        let q3 = finite.quantile_linear(0.75);
        let iqr = q3 - q1;
        Some(Self {
            lower_quantile,
            upper_quantile,
            lower_bound: finite.quantile_linear(lower_quantile),
            upper_bound: finite.quantile_linear(upper_quantile),
            iqr_lower_fence: q1 - IQR_FACTOR * iqr,
            iqr_upper_fence: q3 + IQR_FACTOR * iqr,
        })
    }

    /// The outliers of one window's column. `window` holds its non-missing values; ±inf
    /// in it is ignored (a missing cell).
    pub fn measure(&self, column: &str, window: &Distribution) -> ColumnOutliers {
        let values = finite_total(window);
        let share = |lower, upper| {
            (values > 0).then(|| count_outside(window, lower, upper) as f64 / values as f64)
        };
        ColumnOutliers {
            column: column.to_owned(),
            lower_quantile: self.lower_quantile,
            upper_quantile: self.upper_quantile,
            lower_bound: self.lower_bound,
            upper_bound: self.upper_bound,
            share_outside_quantiles: share(self.lower_bound, self.upper_bound),
            iqr_lower_fence: self.iqr_lower_fence,
            iqr_upper_fence: self.iqr_upper_fence,
            share_outside_iqr: share(self.iqr_lower_fence, self.iqr_upper_fence),
            values,
        }
    }
}

/// The number of finite observations.
fn finite_total(d: &Distribution) -> u64 {
    d.total() - d.count_of(f64::INFINITY) - d.count_of(f64::NEG_INFINITY)
}

/// Finite observations strictly below `lower` or strictly above `upper`.
fn count_outside(d: &Distribution, lower: f64, upper: f64) -> u64 {
    let (values, counts) = (d.values(), d.counts());
    let below = values.partition_point(|&v| v < lower);
    let above = values.partition_point(|&v| v <= upper).max(below);
    let finite_sum = |range: std::ops::Range<usize>| -> u64 {
        values[range.clone()]
            .iter()
            .zip(&counts[range])
            .filter(|(v, _)| v.is_finite())
            .map(|(_, &c)| c)
            .sum()
    };
    finite_sum(0..below) + finite_sum(above..values.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(values: &[f64], range: (f64, f64)) -> OutlierBounds {
        OutlierBounds::new(&Distribution::from_values(values), range).unwrap()
    }

    #[test]
    fn bounds_are_numpy_linear_quantiles_and_tukey_fences() {
        // np.quantile(np.arange(1, 101), [0.01, 0.99, 0.25, 0.75]) = 1.99, 99.01, 25.75, 75.25
        let reference: Vec<f64> = (1..=100).map(f64::from).collect();
        let b = bounds(&reference, (0.01, 0.99));
        assert_eq!((b.lower_quantile, b.upper_quantile), (0.01, 0.99));
        assert!((b.lower_bound - 1.99).abs() < 1e-12, "{b:?}");
        assert!((b.upper_bound - 99.01).abs() < 1e-12, "{b:?}");
        assert_eq!(b.iqr_lower_fence, 25.75 - 1.5 * 49.5);
        assert_eq!(b.iqr_upper_fence, 75.25 + 1.5 * 49.5);
        assert!(OutlierBounds::new(&Distribution::default(), (0.01, 0.99)).is_none());
    }

    #[test]
    fn outside_is_strict_and_infinity_is_missing() {
        let b = bounds(&[0.0, 10.0], (0.0, 1.0));
        assert_eq!((b.lower_bound, b.upper_bound), (0.0, 10.0));
        let window = Distribution::from_counts([
            (f64::NEG_INFINITY, 5),
            (-1.0, 1),
            (0.0, 2),
            (5.0, 3),
            (10.0, 1),
            (10.5, 2),
            (f64::INFINITY, 7),
        ]);
        let o = b.measure("x", &window);
        assert_eq!(o.values, 9);
        assert_eq!(o.share_outside_quantiles, Some(3.0 / 9.0));
        // Q1 = 2.5, Q3 = 7.5: fences -5 and 15.
        assert_eq!((o.iqr_lower_fence, o.iqr_upper_fence), (-5.0, 15.0));
        assert_eq!(o.share_outside_iqr, Some(0.0));
    }

    #[test]
    fn a_window_without_finite_values_has_no_share() {
        let b = bounds(&[1.0, 2.0, 3.0], (0.01, 0.99));
        for window in [
            Distribution::default(),
            Distribution::from_counts([(f64::INFINITY, 2)]),
        ] {
            let o = b.measure("x", &window);
            assert_eq!(o.values, 0);
            assert_eq!(o.share_outside_quantiles, None);
            assert_eq!(o.share_outside_iqr, None);
        }
    }
}
