//! Evidently's `hellinger` drift score (`hellinger_distance.py`).

use crate::distribution::{Distribution, Union};
use crate::jensenshannon::{histogram, sturges_edges_of};
use crate::selection::ColumnType;
use crate::StatTestError;

/// Evidently's Hellinger distance `sqrt(1 - clip(BC, 0, 1))`, where the
/// Bhattacharyya coefficient `BC` is accumulated term by term as Evidently's
/// Python loop does:
///
/// * categorical: `BC = sum sqrt(p_k q_k)` over the distinct values of `R ∪ C`
///   (shares `count / n`), in ascending order (Evidently iterates a Python
///   `set`, which is ascending for small non-negative integer codes);
/// * numerical: both samples are histogrammed with `density=True` on
///   `np.histogram_bin_edges(keys, "sturges")`, where `keys` are the
///   **distinct values** of `R ∪ C` (so the bin count depends on their number,
///   not on the sample sizes), and `BC = sum sqrt(h1_i h2_i) * width` with
///   `width = (last edge - first edge) / bins`. Data are taken as float64
///   (numpy widens Sturges bins narrower than 1 for an int64 column).
///
/// Drift if the distance is `>= 0.1`. Infinite values make numpy's histogram
/// raise (numerical columns only).
pub fn hellinger(
    reference: &Distribution,
    current: &Distribution,
    column_type: ColumnType,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let nr = reference.total() as f64;
    let nc = current.total() as f64;
    let mut bc = 0.0_f64;
    match column_type {
        ColumnType::Categorical => {
            for item in Union::new(reference, current) {
                let p1 = item.count_a as f64 / nr;
                let p2 = item.count_b as f64 / nc;
                bc += (p1 * p2).sqrt();
            }
        }
        ColumnType::Numerical => {
            if reference.has_infinite() || current.has_infinite() {
                return Err(StatTestError::Rejected(
                    "histogram: autodetected range is not finite",
                ));
            }
            let keys = Union::new(reference, current).count() as u64;
            let lo = reference.values()[0].min(current.values()[0]);
            let hi = reference.values()[reference.distinct() - 1]
                .max(current.values()[current.distinct() - 1]);
            let edges = sturges_edges_of(lo, hi, keys).ok_or(StatTestError::Rejected(
                "histogram: too many bins for data range",
            ))?;
            let h1 = density(reference, &edges);
            let h2 = density(current, &edges);
            let n_bins = edges.len() - 1;
            let bin_width = (edges[n_bins] - edges[0]) / n_bins as f64;
            for (p1, p2) in h1.iter().zip(&h2) {
                bc += (p1 * p2).sqrt() * bin_width;
            }
        }
    }
    let bc = bc.clamp(0.0, 1.0);
    Ok((1.0 - bc).sqrt())
}

/// `np.histogram(sample, edges, density=True)[0]`: `count / width / n`.
fn density(sample: &Distribution, edges: &[f64]) -> Vec<f64> {
    let n = sample.total() as f64;
    histogram(sample, edges)
        .into_iter()
        .zip(edges.windows(2))
        .map(|(c, w)| c as f64 / (w[1] - w[0]) / n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_disjoint() {
        let a = Distribution::from_counts([(1.0, 3), (2.0, 1)]);
        let b = Distribution::from_counts([(5.0, 2)]);
        assert_eq!(hellinger(&a, &b, ColumnType::Categorical), Ok(1.0));
        let d = hellinger(&a, &a, ColumnType::Categorical).unwrap();
        assert!(d < 1e-7);
        let single = Distribution::from_counts([(4.0, 2)]);
        assert_eq!(hellinger(&single, &single, ColumnType::Numerical), Ok(0.0));
    }
}
