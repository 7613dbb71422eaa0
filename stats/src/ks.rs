//! Two-sample Kolmogorov-Smirnov test, a port of scipy 1.17.1's
//! `scipy.stats.ks_2samp(R, C)` (two-sided, `method='auto'`) working on counts.

use crate::distribution::{Distribution, Union};
use crate::special::kolmogn_sf;

/// `ks_2samp` switches from the exact to the asymptotic p-value above this size.
const MAX_AUTO_N: u64 = 10_000;

/// The result of [`ks_2samp`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KsResult {
    /// `D`, as scipy reports it: in the exact method snapped to the lattice
    /// value `h / lcm(n1, n2)` it was evaluated at.
    pub statistic: f64,
    /// The two-sided p-value.
    pub pvalue: f64,
}

/// The two-sided statistic `D = max |F_R - F_C|` over the points of `R ∪ C`,
/// computed as `ks_2samp` does (`max(max(cddiffs), clip(-min(cddiffs), 0, 1))`).
fn raw_statistic(reference: &Distribution, current: &Distribution) -> f64 {
    let n1 = reference.total() as f64;
    let n2 = current.total() as f64;
    let (mut c1, mut c2) = (0_u64, 0_u64);
    let mut max_s = f64::NEG_INFINITY;
    let mut min_s = f64::INFINITY;
    for item in Union::new(reference, current) {
        c1 += item.count_a;
        c2 += item.count_b;
        let diff = c1 as f64 / n1 - c2 as f64 / n2;
        max_s = max_s.max(diff);
        min_s = min_s.min(diff);
    }
    let min_s = (-min_s).clamp(0.0, 1.0);
    if min_s > max_s {
        min_s
    } else {
        max_s
    }
}

/// The two-sided p-value of `scipy.stats.ks_2samp(R, C)` (see [`ks_2samp`]).
pub fn ks_2samp_pvalue(reference: &Distribution, current: &Distribution) -> f64 {
    ks_2samp(reference, current).pvalue
}

/// `scipy.stats.ks_2samp(R, C)`, two-sided, `method='auto'`: the p-value is
/// exact when both sizes are at most 10000 (falling back to the asymptotic
/// value if the exact one is not a number in `[0, 1]`), otherwise
/// `kstwo.sf(D, round(n1 n2 / (n1 + n2)))`; clipped to `[0, 1]`.
/// Both fields are NaN if either sample is empty (scipy raises).
pub fn ks_2samp(reference: &Distribution, current: &Distribution) -> KsResult {
    if reference.is_empty() || current.is_empty() {
        return KsResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
        };
    }
    let mut d = raw_statistic(reference, current);
    let n1 = reference.total();
    let n2 = current.total();
    if n1.max(n2) <= MAX_AUTO_N {
        // `_attempt_exact_2kssamp`: D is snapped to the lattice h / lcm.
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        d = h as f64 / lcm as f64;
        if h == 0 {
            return KsResult {
                statistic: d,
                pvalue: 1.0,
            };
        }
        let prob = if n1 == n2 {
            compute_prob_outside_square(n1, h)
        } else {
            compute_outer_prob_inside_method(n1, n2, g, h)
        };
        if (0.0..=1.0).contains(&prob) {
            return KsResult {
                statistic: d,
                pvalue: prob,
            };
        }
    }
    // Smirnov's asymptotic formula with the sizes as floats, larger first.
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = m * n / (m + n);
    KsResult {
        statistic: d,
        pvalue: kolmogn_sf(en.round_ties_even() as u64, d).clamp(0.0, 1.0),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h/n)` by the Horner-like alternating sum of scipy's
/// `_compute_prob_outside_square`.
fn compute_prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// The proportion of lattice paths from (0,0) to (m,n) that leave the band
/// `|x/m - y/n| < h/lcm(m,n)`, computed directly as 1 - P(inside) with
/// Viehmann's sliding-window recursion (scipy `_stats_pythran.py`
/// `_compute_outer_prob_inside_method`).
fn compute_outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;

    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    // Long enough for the widest window.
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0_f64; len_a];
    a[minj as usize..(maxj as usize).min(len_a)].fill(0.0);
    for i in 1..=m {
        let lastminj = minj;
        let lastlen = curlen;
        minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1).max(0);
        minj = minj.min(n);
        maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let fi = i as f64;
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let shift = (minj - lastminj) as usize;
        for jj in 0..(maxj - minj) as usize {
            let j = jj as i64 + minj;
            val = (a[jj + shift] * fi + val * j as f64) / (i + j) as f64;
            a[jj] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            // Carried-over elements of the previous, wider window become 1.
            let start = (maxj - minj) as usize;
            let end = (start + (lastlen - curlen) as usize).min(len_a);
            a[start.min(len_a)..end].fill(1.0);
        }
    }
    a[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_p_one() {
        let a = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let res = ks_2samp(&a, &a);
        assert_eq!(res.statistic, 0.0);
        assert_eq!(res.pvalue, 1.0);
    }

    #[test]
    fn disjoint_samples() {
        let a = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let b = Distribution::from_values(&[4.0, 5.0, 6.0]);
        let res = ks_2samp(&a, &b);
        assert_eq!(res.statistic, 1.0);
        // 2 / C(6, 3)
        assert!((res.pvalue - 0.1).abs() < 1e-15);
    }

    #[test]
    fn empty_is_nan() {
        let a = Distribution::from_values(&[1.0]);
        assert!(ks_2samp_pvalue(&a, &Distribution::default()).is_nan());
        assert!(ks_2samp(&Distribution::default(), &a).statistic.is_nan());
    }
}
