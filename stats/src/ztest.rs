//! Evidently's `z` drift test (`z_stattest.py`): a two-proportion Z-test of
//! "not equal to the smallest value of `R ∪ C`".

use crate::distribution::Distribution;
use crate::special::ndtr;

/// The two-sided p-value `2 * (1 - Phi(|z|))`, evaluated in that form as
/// Evidently does (so it underflows to 0 or to multiples of 2^-52 far in the
/// tail). 1 when both samples consist of the same single value. NaN if either
/// sample is empty.
pub fn z_test_pvalue(reference: &Distribution, current: &Distribution) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return f64::NAN;
    }
    if reference.distinct() == 1
        && current.distinct() == 1
        && reference.values()[0] == current.values()[0]
    {
        return 1.0;
    }
    // `keys = sorted(...)`, so keys[0] is the smallest value of either sample.
    let key0 = reference.values()[0].min(current.values()[0]);
    let n1 = reference.total();
    let n2 = current.total();
    let p1 = (n1 - reference.count_of(key0)) as f64 / n1 as f64;
    let p2 = (n2 - current.count_of(key0)) as f64 / n2 as f64;
    let (n1, n2) = (n1 as f64, n2 as f64);
    let p = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - ndtr(z.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_single_value_is_one() {
        let a = Distribution::from_counts([(4.0, 3)]);
        let b = Distribution::from_counts([(4.0, 9)]);
        assert_eq!(z_test_pvalue(&a, &b), 1.0);
    }

    #[test]
    fn equal_proportions_is_one() {
        let a = Distribution::from_counts([(0.0, 5), (1.0, 5)]);
        let b = Distribution::from_counts([(0.0, 2), (1.0, 2)]);
        assert_eq!(z_test_pvalue(&a, &b), 1.0);
    }

    #[test]
    fn different_single_values() {
        let a = Distribution::from_counts([(0.0, 50)]);
        let b = Distribution::from_counts([(1.0, 50)]);
        // z = sqrt(100): far in the tail, 1 - ndtr underflows to 0.
        assert_eq!(z_test_pvalue(&a, &b), 0.0);
    }
}
