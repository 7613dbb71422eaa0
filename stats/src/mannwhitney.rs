//! Evidently's `mannw` drift test (`mann_whitney_urank_stattest.py`):
//! scipy's `mannwhitneyu(x=R, y=C, alternative="less")`.

use crate::distribution::{Distribution, Union};
use crate::special::ndtr;
use crate::sum::pairwise_sum_stream;
use crate::StatTestError;

/// The one-sided (`alternative="less"`, i.e. `R` stochastically smaller than
/// `C`) Mann-Whitney U p-value of scipy 1.17.1, `method="auto"`:
///
/// * `U1 = R1 - n_R (n_R + 1) / 2` from the mid-rank sum `R1` of the
///   reference in the pooled sample; the p-value is the survival function at
///   `U2 = n_R n_C - U1`.
/// * **exact** when one sample has at most 8 observations and there are no
///   ties: the exact null distribution of U (counts from the generating
///   function `prod_i (1 - q^(n2+i)) / (1 - q^i)` in integer arithmetic,
///   divided by `binom(n1 + n2, n1)`), `sf(U2)` as scipy forms it;
/// * otherwise **asymptotic** with continuity and tie correction:
///   `z = (U2 - n_R n_C / 2 - 0.5) / sqrt(n_R n_C / 12 ((n + 1) - T / (n (n - 1))))`,
///   `T = sum (t^3 - t)` over tie groups, `p = ndtr(-z)`.
///
/// Clipped to `[0, 1]`. Drift if `p < 0.05`. Rank sums are exact; the tie
/// term is exact below 2^53 and otherwise summed as numpy does.
pub fn mann_whitney_u_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let n1 = reference.total();
    let n2 = current.total();
    let n = n1 + n2;
    // Twice the mid-rank sum of the reference, and the tie groups.
    let mut twice_r1: u128 = 0;
    let mut pos: u128 = 0;
    let mut ties = false;
    let mut tie_exact: u128 = 0;
    let mut tie_fits = true;
    for item in Union::new(reference, current) {
        let t = u128::from(item.count_a + item.count_b);
        twice_r1 += u128::from(item.count_a) * (2 * pos + t + 1);
        pos += t;
        if t > 1 {
            ties = true;
            if t >= 1 << 17 {
                tie_fits = false;
            } else {
                tie_exact += t * t * t - t;
            }
        }
    }
    let r1 = twice_r1 as f64 / 2.0;
    // n1 (n1 + 1) is even, so Python's `n1*(n1+1)/2` is exact.
    let u1 = r1 - (u128::from(n1) * u128::from(n1 + 1) / 2) as f64;
    let n1n2 = (u128::from(n1) * u128::from(n2)) as f64;
    let u2 = n1n2 - u1;
    let p = if (n1 > 8 && n2 > 8) || ties {
        let tie_term = if tie_fits && tie_exact < (1 << 53) {
            tie_exact as f64
        } else {
            tie_term_numpy(reference, current, n)
        };
        let mu = n1n2 / 2.0;
        let nf = n as f64;
        let s = (n1n2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
        let numerator = u2 - mu - 0.5;
        let z = numerator / s;
        ndtr(-z)
    } else {
        exact_sf(u2 as i64, n1.min(n2), n1.max(n2))
    };
    Ok(p.clamp(0.0, 1.0))
}

/// `np.sum(t**3 - t)` over scipy's tie array: the group sizes at the first
/// position of each group of the sorted pooled sample and zeros elsewhere.
fn tie_term_numpy(reference: &Distribution, current: &Distribution, n: u64) -> f64 {
    let mut groups = Union::new(reference, current).map(|i| i.count_a + i.count_b);
    let mut left = 0_u64;
    let mut next = move || {
        if left == 0 {
            let t = groups.next().unwrap_or(1);
            left = t - 1;
            let tf = t as f64;
            tf.powi(3) - tf
        } else {
            left -= 1;
            0.0
        }
    };
    pairwise_sum_stream(n as usize, &mut next)
}

/// xsf `binom(n, k)` for integers `0 <= k <= n` with `min(k, n - k) < 20`
/// (the multiplication formula).
fn binom_small(n: f64, k: f64) -> f64 {
    let mut kx = k;
    if kx > n / 2.0 && n > 0.0 {
        kx = n - kx;
    }
    debug_assert!(kx < 20.0);
    let mut num = 1.0;
    let mut den = 1.0;
    for i in 1..=(kx as i32) {
        num *= f64::from(i) + n - kx;
        den *= f64::from(i);
        if num.abs() > 1e50 {
            num /= den;
            den = 1.0;
        }
    }
    num / den
}

/// The number of arrangements with `U = u` for sample sizes `n1 <= n2`, for
/// `u = 0..=n1 n2` (the coefficients of the Gaussian binomial `[n1+n2, n1]_q`).
fn u_frequencies(n1: u64, n2: u64) -> Vec<f64> {
    let len = (n1 * n2 + 1) as usize;
    let mut c = vec![0_i128; len];
    c[0] = 1;
    for i in 1..=n1 {
        // Multiply by (1 - q^(n2 + i)).
        let shift = (n2 + i) as usize;
        for u in (shift..len).rev() {
            c[u] -= c[u - shift];
        }
        // Divide by (1 - q^i).
        let step = i as usize;
        for u in step..len {
            c[u] += c[u - step];
        }
    }
    c.into_iter().map(|v| v as f64).collect()
}

/// scipy's `_MWU.sf(k)`: `1 - cdf(k) + pmf(k)` if `k < n1 n2 - k`, else
/// `cdf(n1 n2 - k)`, with `cdf` the running sum of the pmf.
fn exact_sf(k: i64, n1: u64, n2: u64) -> f64 {
    let freqs = u_frequencies(n1, n2);
    let total = binom_small((n1 + n2) as f64, n1 as f64);
    let kc = (n1 * n2) as i64 - k;
    let (idx, complement) = if k < kc { (k, true) } else { (kc, false) };
    if idx < 0 {
        return if complement { 1.0 } else { 0.0 };
    }
    let idx = idx as usize;
    let mut cdf = 0.0;
    for f in &freqs[..=idx] {
        cdf += f / total;
    }
    if complement {
        1.0 - cdf + freqs[idx] / total
    } else {
        cdf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_are_gaussian_binomials() {
        // [4 choose 2]_q = 1 + q + 2q^2 + q^3 + q^4.
        assert_eq!(u_frequencies(2, 2), vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        let f = u_frequencies(3, 7);
        assert_eq!(f.iter().sum::<f64>(), 120.0);
        assert_eq!(binom_small(10.0, 3.0), 120.0);
    }

    #[test]
    fn separated_samples() {
        // R entirely below C: U1 = 0, U2 = n1 n2; P(U >= n1 n2) = 1 / binom.
        let r = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let c = Distribution::from_values(&[4.0, 5.0, 6.0]);
        let p = mann_whitney_u_pvalue(&r, &c).unwrap();
        assert!((p - 1.0 / 20.0).abs() < 1e-16);
        let p = mann_whitney_u_pvalue(&c, &r).unwrap();
        assert_eq!(p, 1.0);
    }
}
