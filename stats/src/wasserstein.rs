//! Evidently's normed Wasserstein distance (`wasserstein_distance_norm.py`)
//! on top of scipy's `wasserstein_distance` (`_cdf_distance` with p = 1).

use crate::distribution::{Distribution, Union};
use crate::sum::CompensatedSum;

/// Evidently's `wasserstein` drift score: `W(R, C) / max(std(R), 0.001)` with
/// the population std of the reference and Python's `max` (a NaN std, i.e. an
/// infinite reference value, gives NaN). NaN if either sample is empty.
///
/// The reference's std, ECDF and gaps are cached in `reference`, so repeated
/// calls against new current windows cost `O(d_R + d_C)` with a tight inner loop.
pub fn wasserstein_normed(reference: &Distribution, current: &Distribution) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return f64::NAN;
    }
    let sigma = reference.population_std();
    // Python `max(sigma, 0.001)` keeps its first argument unless the second is larger.
    let norm = if 0.001 > sigma { 0.001 } else { sigma };
    wasserstein_distance(reference, current) / norm
}

/// `scipy.stats.wasserstein_distance(u, v)` of the expanded samples:
/// `sum_i |F_u(x_i) - F_v(x_i)| (x_{i+1} - x_i)` over all pooled values.
/// NaN if either sample is empty; NaN or inf (as scipy) if any value is infinite.
///
/// The ECDF of `u` is cached, so pass the sample that is reused (the
/// reference) as `u`. The terms between two consecutive `v` values are summed
/// with independent partial sums, and those partial results with a
/// compensated sum; the result is within a few ulps of scipy's.
pub fn wasserstein_distance(u: &Distribution, v: &Distribution) -> f64 {
    if u.is_empty() || v.is_empty() {
        return f64::NAN;
    }
    if u.has_infinite() || v.has_infinite() {
        return wasserstein_expanded(u, v);
    }
    let ecdf = u.ecdf();
    let x = u.values();
    let nv = v.total() as f64;
    let dx = x.len();

    let mut total = CompensatedSum::default();
    // First `u` index not yet visited, i.e. with x[a] greater than the last y seen.
    let mut a = 0_usize;
    let mut cum_v = 0_u64;
    // G (the ECDF of v) on the current region, and the region's opening y.
    let mut g = 0.0_f64;
    let mut opening: Option<f64> = None;
    // Region j holds the pooled points from y_{j-1} (inclusive) to y_j
    // (exclusive); the last region, closed by `None`, runs to the end of u.
    // Repeated values add `|F - G| * 0` in scipy's sum, so only distinct
    // points are visited.
    let closings = v
        .values()
        .iter()
        .zip(v.counts())
        .map(|(&y, &count)| Some((y, count)))
        .chain(std::iter::once(None));
    for closing_point in closings {
        let closing = closing_point.map(|(y, _)| y);
        let b = match closing {
            Some(yj) => lower_bound_from(x, a, yj),
            None => dx,
        };
        // The region's terms are summed locally, then added with compensation.
        let mut region = 0.0;
        // The point y_{j-1}: F there is the ECDF at the last x <= y_{j-1}.
        if let Some(yo) = opening {
            let next = if a < b { Some(x[a]) } else { closing };
            if let Some(next) = next {
                let f = if a > 0 { ecdf.cdf[a - 1] } else { 0.0 };
                region += (f - g).abs() * (next - yo);
            }
        }
        if a < b {
            // Points x_a .. x_{b-2}, whose successor is the next x.
            region += run_sum(&ecdf.cdf[a..b - 1], &ecdf.gaps[a..b - 1], g);
            // Point x_{b-1}, whose successor is y_j (none after the last value).
            if let Some(yj) = closing {
                region += (ecdf.cdf[b - 1] - g).abs() * (yj - x[b - 1]);
            }
        }
        total.add(region);
        let Some((yj, count)) = closing_point else {
            break;
        };
        a = b;
        if a < dx && x[a] == yj {
            // x_a coincides with y_j and is accounted for at that point.
            a += 1;
        }
        cum_v += count;
        g = cum_v as f64 / nv;
        opening = Some(yj);
    }
    total.value()
}

/// `sum_k |cdf[k] - g| * gaps[k]` with eight independent partial sums (which
/// the compiler vectorises; a single running sum would be latency-bound).
#[inline]
fn run_sum(cdf: &[f64], gaps: &[f64], g: f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0_f64; LANES];
    for (c, d) in cdf.chunks_exact(LANES).zip(gaps.chunks_exact(LANES)) {
        for lane in 0..LANES {
            acc[lane] += (c[lane] - g).abs() * d[lane];
        }
    }
    let tail = cdf.len() / LANES * LANES;
    let mut rest = 0.0;
    for (c, d) in cdf[tail..].iter().zip(&gaps[tail..]) {
        rest += (c - g).abs() * d;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + rest
}

/// The first index `>= start` with `x[index] >= target`: a short linear scan
/// (runs between current values are usually short), then a galloping search.
#[inline]
fn lower_bound_from(x: &[f64], start: usize, target: f64) -> usize {
    const SCAN: usize = 16;
    let n = x.len();
    let scan_end = (start + SCAN).min(n);
    if let Some(offset) = x[start.min(n)..scan_end].iter().position(|&v| v >= target) {
        return start + offset;
    }
    if scan_end == n {
        return n;
    }
    // Invariant: x[lo] < target.
    let mut lo = scan_end - 1;
    let mut step = SCAN;
    loop {
        let probe = lo + step;
        if probe >= n || x[probe] >= target {
            let hi = probe.min(n);
            return lo + 1 + x[lo + 1..hi].partition_point(|&v| v < target);
        }
        lo = probe;
        step *= 2;
    }
}

/// `_cdf_distance(p=1)` literally over the expanded pooled sample, for samples
/// with infinite values: repeated infinite values contribute `|F-G| * (inf - inf)`
/// = NaN and a gap to or from an infinity is infinite, as in numpy.
fn wasserstein_expanded(u: &Distribution, v: &Distribution) -> f64 {
    let nu = u.total() as f64;
    let nv = v.total() as f64;
    let (mut cu, mut cv) = (0_u64, 0_u64);
    let mut sum = 0.0;
    let mut points = Union::new(u, v).peekable();
    while let Some(p) = points.next() {
        cu += p.count_a;
        cv += p.count_b;
        let diff = (cu as f64 / nu - cv as f64 / nv).abs();
        if p.value.is_infinite() && p.count_a + p.count_b > 1 {
            // The gaps between the copies are inf - inf.
            sum += diff * f64::NAN;
        }
        if let Some(next) = points.peek() {
            sum += diff * (next.value - p.value);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expanded-sample definition, for finite data too.
    fn reference_impl(u: &Distribution, v: &Distribution) -> f64 {
        wasserstein_expanded(u, v)
    }

    #[test]
    fn fast_path_matches_expanded_definition() {
        let mut state = 12345_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for case in 0..200 {
            let nu = 1 + (next() * 60.0) as usize;
            let nv = 1 + (next() * 60.0) as usize;
            let grid = 1.0 + (case % 7) as f64 * 3.0;
            let mut draw = |n: usize, shift: f64| -> Vec<f64> {
                (0..n)
                    .map(|_| ((next() * grid).floor() + shift) / 4.0)
                    .collect()
            };
            let u = Distribution::from_values(&draw(nu, 0.0));
            let v = Distribution::from_values(&draw(nv, (case % 3) as f64));
            let fast = wasserstein_distance(&u, &v);
            let slow = reference_impl(&u, &v);
            assert!(
                (fast - slow).abs() <= 1e-14 * slow.abs(),
                "case {case}: {fast} vs {slow}"
            );
            let back = wasserstein_distance(&v, &u);
            assert!((back - slow).abs() <= 1e-14 * slow.abs());
        }
    }

    #[test]
    fn lower_bound_matches_partition_point() {
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        for start in [0, 5, 40, 99, 100] {
            for target in [-5.0, 0.0, 4.5, 41.0, 99.0, 1e9] {
                let expected = start.max(x.partition_point(|&v| v < target));
                assert_eq!(lower_bound_from(&x, start, target), expected);
            }
        }
    }

    #[test]
    fn infinite_values_follow_numpy() {
        let r = Distribution::from_values(&[1.0, 2.0, 3.0]);
        let one_inf = Distribution::from_values(&[1.0, f64::INFINITY]);
        let two_inf = Distribution::from_values(&[1.0, f64::INFINITY, f64::INFINITY]);
        assert_eq!(wasserstein_normed(&r, &one_inf), f64::INFINITY);
        assert!(wasserstein_normed(&r, &two_inf).is_nan());
        assert!(wasserstein_normed(&one_inf, &r).is_nan());
        let neg = Distribution::from_values(&[f64::NEG_INFINITY, 2.0]);
        assert_eq!(wasserstein_distance(&r, &neg), f64::INFINITY);
    }

    #[test]
    fn constant_reference_uses_floor() {
        let r = Distribution::from_values(&[2.0; 5]);
        let c = Distribution::from_values(&[3.0; 5]);
        assert_eq!(wasserstein_normed(&r, &c), 1.0 / 0.001);
        assert!(wasserstein_normed(&r, &Distribution::default()).is_nan());
    }
}
