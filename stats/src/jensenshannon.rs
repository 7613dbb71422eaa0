//! Evidently's `jensenshannon` drift score (`jensenshannon.py` with
//! `utils.py::get_binned_data(..., feel_zeroes=False)`) and scipy's
//! `scipy.spatial.distance.jensenshannon` (natural log).
//!
//! The sums use numpy's pairwise summation over the keys in ascending order.
//! Evidently orders the keys as a Python `set` does, which is ascending for
//! integer-coded values (location IDs, counts, flags), so those match numpy
//! bit for bit; other float keys are summed in a different order than numpy's,
//! which changes the result by a few ulps of the largest term.

use crate::distribution::{Distribution, Union};
use crate::sum::pairwise_sum;

/// The Jensen-Shannon distance between the value frequencies of `R` and `C`,
/// keyed by the distinct values of `R ∪ C` (Evidently's path for categorical
/// columns and for numerical ones with at most 20 distinct reference values,
/// which covers every default use). In `[0, sqrt(ln 2)]`; NaN if either
/// sample is empty.
pub fn jensen_shannon(reference: &Distribution, current: &Distribution) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return f64::NAN;
    }
    let nr = reference.total() as f64;
    let nc = current.total() as f64;
    let (p, q): (Vec<f64>, Vec<f64>) = Union::new(reference, current)
        .map(|item| (item.count_a as f64 / nr, item.count_b as f64 / nc))
        .unzip();
    js_distance(p, q)
}

/// The Jensen-Shannon distance between the histograms of `R` and `C` over
/// `np.histogram_bin_edges(R ∪ C, bins="sturges")` (Evidently's path for a
/// numerical column with more than 20 distinct reference values).
///
/// Treats the data as floating point (numpy widens Sturges bins to width 1 for
/// integer arrays). NaN if either sample is empty or has an infinite value
/// (numpy raises for a non-finite range).
pub fn jensen_shannon_binned(reference: &Distribution, current: &Distribution) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return f64::NAN;
    }
    if reference.has_infinite() || current.has_infinite() {
        return f64::NAN;
    }
    let Some(edges) = sturges_edges(reference, current) else {
        return f64::NAN;
    };
    let nr = reference.total() as f64;
    let nc = current.total() as f64;
    let p = histogram(reference, &edges)
        .into_iter()
        .map(|c| c as f64 / nr)
        .collect();
    let q = histogram(current, &edges)
        .into_iter()
        .map(|c| c as f64 / nc)
        .collect();
    js_distance(p, q)
}

/// scipy's `jensenshannon(p, q)`: normalise both vectors by their sums, then
/// `sqrt((sum rel_entr(p, m) + sum rel_entr(q, m)) / 2)` with `m = (p + q) / 2`.
/// The buffers are reused for the relative-entropy terms.
fn js_distance(mut p: Vec<f64>, mut q: Vec<f64>) -> f64 {
    let sum_p = pairwise_sum(&p);
    let sum_q = pairwise_sum(&q);
    for (pi, qi) in p.iter_mut().zip(q.iter_mut()) {
        let a = *pi / sum_p;
        let b = *qi / sum_q;
        let m = (a + b) / 2.0;
        *pi = rel_entr(a, m);
        *qi = rel_entr(b, m);
    }
    let js = pairwise_sum(&p) + pairwise_sum(&q);
    (js / 2.0).sqrt()
}

/// `scipy.special.rel_entr(x, y)` = `x ln(x/y)` (0 for `x = 0`, inf for a
/// negative argument), evaluated as scipy 1.17's `xsf/convex_analysis.h`
/// does: through `log1p` when `x` and `y` are within a factor of 2.
pub(crate) fn rel_entr(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 || y <= 0.0 {
        return if x == 0.0 && y >= 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let ratio = x / y;
    if 0.5 < ratio && ratio < 2.0 {
        x * ((x - y) / y).ln_1p()
    } else if f64::MIN_POSITIVE < ratio && ratio < f64::INFINITY {
        x * ratio.ln()
    } else {
        // x / y under- or overflows: take the logarithms first.
        x * (x.ln() - y.ln())
    }
}

/// `np.histogram_bin_edges(R ∪ C, "sturges")` for finite data (see [`sturges_edges_of`]).
fn sturges_edges(reference: &Distribution, current: &Distribution) -> Option<Vec<f64>> {
    let lo = reference.values()[0].min(current.values()[0]);
    let hi =
        reference.values()[reference.distinct() - 1].max(current.values()[current.distinct() - 1]);
    sturges_edges_of(lo, hi, reference.total() + current.total())
}

/// `np.histogram_bin_edges(a, "sturges")` for float data with minimum `lo`,
/// maximum `hi` (both finite) and `size` elements: `ceil(range / width)` equal
/// bins with `width = range / (log2(size) + 1)`, from `np.linspace`.
/// `None` where numpy raises (bins too narrow to be distinct).
pub(crate) fn sturges_edges_of(lo: f64, hi: f64, size: u64) -> Option<Vec<f64>> {
    let size = size as f64;
    let width = (hi - lo) / (size.log2() + 1.0);
    let (first, last) = if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let n_bins = if width != 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    // np.linspace(first, last, n_bins + 1)
    let delta = last - first;
    let step = delta / n_bins as f64;
    let mut edges: Vec<f64> = (0..=n_bins)
        .map(|i| {
            let y = if step == 0.0 {
                i as f64 / n_bins as f64 * delta
            } else {
                i as f64 * step
            };
            y + first
        })
        .collect();
    edges[n_bins] = last;
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    Some(edges)
}

/// `np.histogram(sample, edges)[0]`: half-open bins, the last one closed.
pub(crate) fn histogram(sample: &Distribution, edges: &[f64]) -> Vec<u64> {
    let values = sample.values();
    let counts = sample.counts();
    let last = edges.len() - 1;
    // cum[e] = number of observations below edge e (at or below the last edge).
    let mut cum = Vec::with_capacity(edges.len());
    let mut i = 0;
    let mut below = 0_u64;
    for (e, &edge) in edges.iter().enumerate() {
        while i < values.len() && (values[i] < edge || (e == last && values[i] == edge)) {
            below += counts[i];
            i += 1;
        }
        cum.push(below);
    }
    cum.windows(2).map(|w| w[1] - w[0]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_zero_and_disjoint_is_max() {
        let a = Distribution::from_counts([(1.0, 3), (2.0, 5)]);
        assert_eq!(jensen_shannon(&a, &a), 0.0);
        let b = Distribution::from_counts([(3.0, 1)]);
        let max = (2.0_f64.ln()).sqrt();
        assert!((jensen_shannon(&a, &b) - max).abs() < 1e-15);
    }

    #[test]
    fn histogram_closes_last_bin() {
        let s = Distribution::from_values(&[0.0, 1.0, 1.0, 2.0]);
        assert_eq!(histogram(&s, &[0.0, 1.0, 2.0]), vec![1, 3]);
        assert_eq!(histogram(&s, &[0.5, 1.5]), vec![2]);
    }

    #[test]
    fn binned_rejects_infinite() {
        let a = Distribution::from_values(&[1.0, f64::INFINITY]);
        assert!(jensen_shannon_binned(&a, &a).is_nan());
        let c = Distribution::from_values(&[5.0, 5.0]);
        assert_eq!(jensen_shannon_binned(&c, &c), 0.0);
    }
}
