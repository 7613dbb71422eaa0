//! Evidently's `cramer_von_mises` drift test (`cramer_von_mises_stattest.py`),
//! which carries its own copy of scipy's two-sample Cramér-von Mises test
//! (`_cvm_2samp`, `method="auto"`).

use crate::distribution::{Distribution, Union};
use crate::special::{kv, lgam};
use crate::sum::pairwise_sum_stream;
use crate::StatTestError;

/// The Cramér-von Mises two-sample p-value as Evidently computes it:
///
/// * `u = n_R sum (r_i - i)^2 + n_C sum (s_j - j)^2` from the mid-ranks of
///   each sorted sample in the pooled one (exact integers, streamed through
///   numpy's pairwise summation only where they exceed 2^53);
/// * **exact** when both samples have at most 20 observations: Evidently's
///   lattice-path recursion counts the paths whose statistic is at least
///   `floor(lcm² (m+n)(6u - mn(4mn-1)) / (6 m² n²))` (numpy float floor
///   division); ties are not corrected for, as in Evidently, and the counts
///   are kept in the dtype numpy picks for them, which is float16 or float32
///   for most sample sizes (so the p-value is rounded to half or single
///   precision, e.g. 0.364990234375 for 92/252), reproduced bit for bit;
/// * otherwise **asymptotic**: `tn = 1/6 + (t - E t) / sqrt(45 V t)`, `p = 1`
///   for `tn < 0.003`, else `max(0, 1 - cdf_inf(tn))` with Csörgő-Faraway's
///   series (`gammaln`, `kv(1/4, .)`, `exp`), stopped at the first term below
///   1e-7.
///
/// Drift if `p <= 0.1`. Needs at least two observations per sample (Evidently
/// raises otherwise).
///
/// The asymptotic p-value is `1 - cdf` and so carries cdf's rounding as an
/// absolute error: numpy's `exp` is Intel SVML's on AVX-512 machines, which
/// differs from libm's by one ulp for some arguments, so p agrees with
/// Evidently to about 1e-16 absolute (1e-12 relative only for `p > ~1e-3`);
/// everything else (ranks, `gammaln`, `kv`) reproduces scipy's rounding.
pub fn cramer_von_mises_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let nx = reference.total();
    let ny = current.total();
    if nx <= 1 || ny <= 1 {
        return Err(StatTestError::Rejected(
            "cramer_von_mises: x and y must contain at least two observations",
        ));
    }
    let u = statistic_u(reference, current);
    let k = u128::from(nx) * u128::from(ny);
    let big_n = u128::from(nx + ny);
    let p = if nx.max(ny) > 20 {
        let t = u / (k * big_n) as f64 - (4 * k - 1) as f64 / (6 * big_n) as f64;
        let nf = big_n as f64;
        let et = (1.0 + 1.0 / nf) / 6.0;
        let (k_i, n_i) = (k as i128, big_n as i128);
        let nx2_ny2 = (u128::from(nx).pow(2) + u128::from(ny).pow(2)) as i128;
        let vt = (nf + 1.0) * (4 * k_i * n_i - 3 * nx2_ny2 - 2 * k_i) as f64;
        let vt = vt / (45 * big_n * big_n * 4 * k) as f64;
        let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
        if tn < 0.003 {
            1.0
        } else {
            // Python's max(0, x): x if x > 0.
            let q = 1.0 - cdf_cvm_inf(tn);
            if q > 0.0 {
                q
            } else {
                0.0
            }
        }
    } else {
        pval_exact(u, nx, ny)
    };
    Ok(p)
}

/// `u` of `_cvm_2samp`: `nx * sum((rx - arange(1, nx+1))**2) + ny * sum(...)`.
fn statistic_u(reference: &Distribution, current: &Distribution) -> f64 {
    let union: Vec<_> = Union::new(reference, current).collect();
    let side = |pick_a: bool| -> f64 {
        // (2 * mid-rank, count in this sample) per distinct pooled value.
        let mut pos = 0_u128;
        let groups: Vec<(u128, u128)> = union
            .iter()
            .filter_map(|item| {
                let t = u128::from(item.count_a + item.count_b);
                let c = u128::from(if pick_a { item.count_a } else { item.count_b });
                let twice_rank = 2 * pos + t + 1;
                pos += t;
                (c > 0).then_some((twice_rank, c))
            })
            .collect();
        // The terms (r - i)^2 are quarter-integers: the sum is exact in
        // doubles, whatever the order, while it stays below 2^51.
        let mut seen = 0_u128;
        let mut exact = 0_u128;
        for &(twice_rank, c) in &groups {
            exact += sum_sq_linear(twice_rank, seen + 1, seen + c);
            seen += c;
        }
        if exact < (1_u128 << 53) {
            return exact as f64 / 4.0;
        }
        // numpy's pairwise sum of the per-element squares, in sorted order.
        let mut i = 0_u128;
        let mut g = 0_usize;
        let mut left = groups[0].1;
        let mut next = || {
            if left == 0 {
                g += 1;
                left = groups[g].1;
            }
            left -= 1;
            i += 1;
            let diff = groups[g].0 as f64 / 2.0 - i as f64;
            diff * diff
        };
        pairwise_sum_stream(seen as usize, &mut next)
    };
    let sx = side(true);
    let sy = side(false);
    let u = reference.total() as f64 * sx;
    u + current.total() as f64 * sy
}

/// `sum_{i=lo}^{hi} (a - 2i)^2` in exact integers (`1 <= lo <= hi`):
/// `c a^2 - 4 a S1 + 4 S2` with `S1 = sum i`, `S2 = sum i^2`.
fn sum_sq_linear(a: u128, lo: u128, hi: u128) -> u128 {
    let a = a as i128;
    let c = (hi - lo + 1) as i128;
    let s1 = ((lo + hi) * (hi - lo + 1) / 2) as i128;
    let sq = |n: u128| -> i128 { (n * (n + 1) * (2 * n + 1) / 6) as i128 };
    let s2 = sq(hi) - sq(lo - 1);
    (c * a * a - 4 * a * s1 + 4 * s2) as u128
}

/// The element type numpy gives Evidently's exact recursion:
/// `np.min_scalar_type(max(zeta_bound, combinations))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExactDtype {
    /// An unsigned integer type: exact arithmetic.
    Unsigned,
    /// `float16` (`combinations < 65000`).
    Half,
    /// `float32`.
    Single,
}

impl ExactDtype {
    /// A value computed exactly in float64, stored in this dtype.
    fn store(self, x: f64) -> f64 {
        match self {
            Self::Unsigned => x,
            Self::Half => round_to_half(x),
            Self::Single => x as f32 as f64,
        }
    }
}

/// Round-to-nearest-even conversion of a double to IEEE half precision
/// (numpy's `npy_double_to_half`), returned as a double.
fn round_to_half(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let a = x.abs();
    let exponent = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(-14);
    let quantum = 2f64.powi(exponent - 10);
    let r = (a / quantum).round_ties_even() * quantum;
    let r = if r > 65504.0 { f64::INFINITY } else { r };
    r.copysign(x)
}

/// Evidently's `_pval_cvm_2samp_exact(u, m, n)`, including its numerics:
/// the recursion runs in the dtype `np.min_scalar_type(max(zeta_bound,
/// combinations))` picks, which is **float16 or float32** whenever the
/// number of arrangements exceeds `lcm(m,n)² (m+n)` (so counts and values
/// are rounded, and equal rounded values are merged), and the arrays are kept
/// in numpy's order (`intersect1d` + `delete` + `concatenate`) because the
/// final float32 sum depends on it.
fn pval_exact(s: f64, m: u64, n: u64) -> f64 {
    let gcd = {
        let (mut a, mut b) = (m, n);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let lcm = m / gcd * n;
    let a = (lcm / m) as i64;
    let b = (lcm / n) as i64;
    let mn = m * n;
    // zeta = lcm**2 * (m + n) * (6 * s - mn * (4 * mn - 1)) // (6 * mn**2)
    let zeta_bound = lcm * lcm * (m + n);
    let lhs = zeta_bound as f64 * (6.0 * s - (mn * (4 * mn - 1)) as f64);
    let zeta = floor_divide(lhs, (6 * mn * mn) as f64);
    // combinations = factorial(m + n) / (factorial(m) * factorial(n)): exact below 2^53.
    let mut comb: u128 = 1;
    for i in 0..m.min(n) {
        comb = comb * u128::from(m + n - i) / u128::from(i + 1);
    }
    let combinations = comb as f64;
    // Python's max(zeta_bound, combinations) keeps zeta_bound unless combinations is larger.
    let dtype = if combinations > zeta_bound as f64 {
        if combinations < 65000.0 {
            ExactDtype::Half
        } else {
            ExactDtype::Single
        }
    } else {
        ExactDtype::Unsigned
    };
    // gs[v]: (statistic value, number of lattice paths) in numpy's array order.
    let mut gs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); m as usize + 1];
    gs[0].push((0.0, 1.0));
    for u in 0..=n as i64 {
        let mut next_gs = Vec::with_capacity(gs.len());
        let mut tmp: Vec<(f64, f64)> = Vec::new();
        for (v, g) in gs.iter().enumerate() {
            tmp = merge_like_numpy(&tmp, g, dtype);
            let add = (a * v as i64 - b * u).pow(2) as f64;
            for entry in &mut tmp {
                entry.0 = dtype.store(entry.0 + add);
            }
            next_gs.push(tmp.clone());
        }
        gs = next_gs;
    }
    let selected = gs[m as usize].iter().filter(|(value, _)| *value >= zeta);
    match dtype {
        ExactDtype::Unsigned => {
            let total: f64 = selected.map(|(_, f)| f).sum();
            total / combinations
        }
        ExactDtype::Half => {
            // Counts below 65000 sum exactly in float32; the sum and the
            // quotient are rounded to half, the divisor cast to half first.
            let total: f64 = selected.map(|(_, f)| f).sum();
            let total = round_to_half(total) as f32;
            let divisor = round_to_half(combinations) as f32;
            round_to_half(f64::from(total / divisor))
        }
        ExactDtype::Single => {
            let freqs: Vec<f32> = selected.map(|(_, f)| *f as f32).collect();
            let total = crate::sum::pairwise_sum::<f32>(&freqs);
            f64::from(total / combinations as f32)
        }
    }
}

/// Evidently's merge step: `vi, i0, i1 = np.intersect1d(tmp[0], g[0],
/// return_indices=True)`; the result is `[vi with tmp[1,i0] + g[1,i1]]`,
/// then `tmp` without `i0`, then `g` without `i1` (indices of first
/// occurrences; common values in ascending order).
fn merge_like_numpy(tmp: &[(f64, f64)], g: &[(f64, f64)], dtype: ExactDtype) -> Vec<(f64, f64)> {
    use std::collections::HashMap;
    let first = |arr: &[(f64, f64)]| -> HashMap<u64, usize> {
        let mut map = HashMap::with_capacity(arr.len());
        for (i, (value, _)) in arr.iter().enumerate() {
            map.entry(value.to_bits()).or_insert(i);
        }
        map
    };
    let in_tmp = first(tmp);
    let in_g = first(g);
    let mut common: Vec<(f64, usize, usize)> = in_tmp
        .iter()
        .filter_map(|(bits, &i0)| in_g.get(bits).map(|&i1| (f64::from_bits(*bits), i0, i1)))
        .collect();
    common.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
    let mut taken_tmp = vec![false; tmp.len()];
    let mut taken_g = vec![false; g.len()];
    let mut out = Vec::with_capacity(tmp.len() + g.len());
    for &(value, i0, i1) in &common {
        taken_tmp[i0] = true;
        taken_g[i1] = true;
        out.push((value, dtype.store(tmp[i0].1 + g[i1].1)));
    }
    out.extend(
        tmp.iter()
            .zip(&taken_tmp)
            .filter(|(_, &t)| !t)
            .map(|(e, _)| *e),
    );
    out.extend(g.iter().zip(&taken_g).filter(|(_, &t)| !t).map(|(e, _)| *e));
    out
}

/// numpy's float `floor_divide` (`npy_divmod`).
fn floor_divide(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return a / b;
    }
    let modulus = a % b;
    let mut div = (a - modulus) / b;
    if modulus != 0.0 && (b < 0.0) != (modulus < 0.0) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0_f64.copysign(a / b)
    }
}

/// Evidently's `_cdf_cvm_inf(x)` for a scalar `x`.
fn cdf_cvm_inf(x: f64) -> f64 {
    let pi_15 = std::f64::consts::PI.powf(1.5);
    let mut tot = 0.0;
    let mut k = 0_u32;
    loop {
        let kf = f64::from(k);
        let u = (lgam(kf + 0.5) - lgam(kf + 1.0)).exp() / (pi_15 * x.sqrt());
        let y = f64::from(4 * k + 1);
        let q = y * y / (16.0 * x);
        let b = kv(0.25, q);
        let z = u * y.sqrt() * (-q).exp() * b;
        tot += z;
        if z.abs() < 1e-7 {
            break;
        }
        k += 1;
    }
    tot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_divide_like_numpy() {
        assert_eq!(floor_divide(7.0, 2.0), 3.0);
        assert_eq!(floor_divide(-7.0, 2.0), -4.0);
        assert_eq!(floor_divide(6.0, 3.0), 2.0);
        assert_eq!(floor_divide(-0.5, 3.0), -1.0);
    }

    #[test]
    fn sum_sq_closed_form() {
        let direct: u128 = (3..=7_u128)
            .map(|i| (21_i128 - 2 * i as i128).pow(2) as u128)
            .sum();
        assert_eq!(sum_sq_linear(21, 3, 7), direct);
    }

    #[test]
    fn exact_small_samples() {
        // Fully separated samples of 3: u is maximal and only the two extreme
        // arrangements reach it: p = 2 / C(6, 3).
        let r = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let c = Distribution::from_values(&[4.0, 5.0, 6.0]);
        let p = cramer_von_mises_pvalue(&r, &c).unwrap();
        assert!((p - 0.1).abs() < 1e-15, "{p}");
        let one = Distribution::from_values(&[1.0]);
        assert!(cramer_von_mises_pvalue(&one, &r).is_err());
    }
}
