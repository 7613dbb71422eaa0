//! Evidently's `anderson` drift test (`anderson_darling_stattest.py`):
//! scipy 1.17.1's `anderson_ksamp([R, C])[2]` (mid-rank variant, the
//! default when `variant` is not given).

use crate::distribution::{Distribution, Union};
use crate::sum::{pairwise_sum, pairwise_sum_stream};
use crate::StatTestError;

/// `np.polyfit(critical, np.log(sig), 2)` for two samples (`m = 1`), as numpy
/// 2.4 (LAPACK `gelsd`) computes it; the fit depends only on scipy's constant
/// tables, so it is a constant too (checked against numpy by the parity data).
const PVALUE_FIT: [f64; 3] = [
    0.018198094574111343,
    -1.0082265644652515,
    -1.077770279820486,
];
/// Scholz & Stephens' interpolation table: `b0 + b1 / sqrt(m) + b2 / m` for `m = 1`.
const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];

/// The approximate p-value of the k-sample Anderson-Darling test for `R`
/// and `C` (`scipy.stats.anderson_ksamp([R, C]).pvalue`):
///
/// * the mid-rank statistic `A2akN` (Scholz & Stephens eq. 7) over the
///   distinct pooled values, standardised as `(A2akN - 1) / sqrt(sigma²)`;
/// * `p = exp(polyval(PVALUE_FIT, A2))` interpolated in the table, **capped
///   at 0.25 and floored at 0.001** (scipy warns there).
///
/// Every array is built and summed in numpy's order (the distinct values are
/// sorted, and the harmonic sums behind `sigma²` are streamed through numpy's
/// pairwise summation), so the result matches scipy bit for bit; the cost is
/// `O(distinct values + n_R + n_C)`. Drift if `p < 0.1`.
///
/// Errors where scipy raises: fewer than two distinct pooled values, or a
/// pooled size of 2 (an empty harmonic table).
pub fn anderson_ksamp_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let union: Vec<_> = Union::new(reference, current).collect();
    if union.len() < 2 {
        return Err(StatTestError::Rejected(
            "anderson_ksamp needs more than one distinct observation",
        ));
    }
    let n_total = reference.total() + current.total();
    if n_total < 3 {
        return Err(StatTestError::Rejected(
            "anderson_ksamp: index error for a pooled sample of two",
        ));
    }
    let big_n = n_total as f64;
    let all_distinct = n_total as usize == union.len();
    // Bj = Z_left + lj / 2, lj = multiplicity (the scalar 1 if all distinct).
    let mut left = 0_u64;
    let mut lj = Vec::with_capacity(union.len());
    let mut bj = Vec::with_capacity(union.len());
    for item in &union {
        let l = if all_distinct {
            1.0
        } else {
            (item.count_a + item.count_b) as f64
        };
        lj.push(l);
        bj.push(left as f64 + l / 2.0);
        left += item.count_a + item.count_b;
    }
    let mut a2akn = 0.0;
    for sample in 0..2 {
        let n_i = if sample == 0 {
            reference.total()
        } else {
            current.total()
        } as f64;
        let mut right = 0_u64;
        let inner: Vec<f64> = union
            .iter()
            .zip(lj.iter().zip(&bj))
            .map(|(item, (&l, &b))| {
                let f = if sample == 0 {
                    item.count_a
                } else {
                    item.count_b
                };
                right += f;
                let mij = right as f64 - f as f64 / 2.0;
                let d = big_n * mij - b * n_i;
                let lj_n4 = if all_distinct {
                    big_n * 1.0 / 4.0
                } else {
                    (n_total as f64 * l) / 4.0
                };
                l / big_n * (d * d) / (b * (big_n - b) - lj_n4)
            })
            .collect();
        a2akn += pairwise_sum(&inner) / n_i;
    }
    a2akn *= (big_n - 1.0) / big_n;

    let k = 2.0_f64;
    let h_sum = 1.0 / reference.total() as f64 + 1.0 / current.total() as f64;
    // hs_cs = cumsum(1 / arange(N - 1, 1, -1)); h = hs_cs[-1] + 1;
    // g = sum(hs_cs / arange(2, N)).
    let len = (n_total - 2) as usize;
    let mut cum = 0.0_f64;
    let mut i = 0_u64;
    let mut next = || {
        cum += 1.0 / (n_total - 1 - i) as f64;
        let v = cum / (i + 2) as f64;
        i += 1;
        v
    };
    let g = pairwise_sum_stream(len, &mut next);
    let h = cum + 1.0;
    let a = (4.0 * g - 6.0) * (k - 1.0) + (10.0 - 6.0 * g) * h_sum;
    let b = (2.0 * g - 4.0) * (k * k) + 8.0 * h * k + (2.0 * g - 14.0 * h - 4.0) * h_sum - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * (k * k)
        + (4.0 * h - 4.0 * g + 6.0) * k
        + (2.0 * h - 6.0) * h_sum
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * (k * k) - 4.0 * h * k;
    let n3 = (u128::from(n_total).pow(3)) as f64;
    let n2 = (u128::from(n_total).pow(2)) as f64;
    let sigmasq =
        (a * n3 + b * n2 + c * big_n + d) / ((big_n - 1.0) * (big_n - 2.0) * (big_n - 3.0));
    if sigmasq < 0.0 {
        return Err(StatTestError::Rejected("anderson_ksamp: math domain error"));
    }
    let m = 1.0;
    let a2 = (a2akn - m) / sigmasq.sqrt();
    let critical: [f64; 7] = std::array::from_fn(|i| B0[i] + B1[i] / 1.0 + B2[i] / 1.0);
    let min = critical.iter().copied().fold(f64::INFINITY, f64::min);
    let max = critical.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p = if a2 < min {
        0.25
    } else if a2 > max {
        0.001
    } else {
        let mut y = 0.0;
        for pv in PVALUE_FIT {
            y = y * a2 + pv;
        }
        y.exp()
    };
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_matches_numpy() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/evidently_family_values.json"
        );
        let data: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse");
        let fit: Vec<f64> = data["special"]["anderson_fit"]
            .as_array()
            .expect("fit")
            .iter()
            .map(|v| v.as_str().expect("repr").parse().expect("float"))
            .collect();
        assert_eq!(fit, PVALUE_FIT);
    }

    #[test]
    fn capped_and_floored() {
        let a = Distribution::from_values(&(0..50).map(f64::from).collect::<Vec<_>>());
        assert_eq!(anderson_ksamp_pvalue(&a, &a), Ok(0.25));
        let b = Distribution::from_values(&(100..150).map(f64::from).collect::<Vec<_>>());
        assert_eq!(anderson_ksamp_pvalue(&a, &b), Ok(0.001));
        let one = Distribution::from_values(&[1.0, 1.0]);
        assert!(anderson_ksamp_pvalue(&one, &one).is_err());
    }
}
