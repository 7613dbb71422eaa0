//! Evidently's `psi` and `kl_div` drift scores (`psi.py`, `kl_div.py`) on
//! `utils.py::get_binned_data(..., feel_zeroes=True)`.

use crate::distribution::{Distribution, Union};
use crate::jensenshannon::{histogram, rel_entr, sturges_edges_of};
use crate::selection::ColumnType;
use crate::sum::pairwise_sum;
use crate::StatTestError;

/// Evidently's `get_binned_data(R, C, column_type, n=30, feel_zeroes)`: the
/// shares of `R` and of `C` per bin.
///
/// * A numerical column whose **reference** has more than 20 distinct values
///   is binned on `np.histogram_bin_edges(R ∪ C, "sturges")` (equal-width bins
///   over the pooled range, last bin closed; `n` is unused), shares =
///   counts / sample size. The data are taken as float64 (for an int64 pandas
///   column numpy would widen Sturges bins narrower than 1, which needs more
///   than 2^19 pooled rows with fewer than ~20 distinct integers).
///   An infinite value makes numpy raise.
/// * Otherwise the bins are the distinct values of `R ∪ C`, in ascending
///   order (Evidently's key order is Python `set` order, ascending for small
///   non-negative integer codes; other orders only change the rounding of
///   the sums).
/// * With `feel_zeroes`, the zero shares of each vector are replaced by
///   `min(nonzero shares) / 1e6` if that minimum is `<= 0.0001`, else by
///   `0.0001`.
pub(crate) fn binned_shares(
    reference: &Distribution,
    current: &Distribution,
    column_type: ColumnType,
    feel_zeroes: bool,
) -> Result<(Vec<f64>, Vec<f64>), StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    let nr = reference.total() as f64;
    let nc = current.total() as f64;
    let (mut p, mut q): (Vec<f64>, Vec<f64>) =
        if column_type == ColumnType::Numerical && reference.distinct() > 20 {
            if reference.has_infinite() || current.has_infinite() {
                return Err(StatTestError::Rejected(
                    "histogram: autodetected range is not finite",
                ));
            }
            let lo = reference.values()[0].min(current.values()[0]);
            let hi = reference.values()[reference.distinct() - 1]
                .max(current.values()[current.distinct() - 1]);
            let edges = sturges_edges_of(lo, hi, reference.total() + current.total()).ok_or(
                StatTestError::Rejected("histogram: too many bins for data range"),
            )?;
            let p = histogram(reference, &edges)
                .into_iter()
                .map(|c| c as f64 / nr)
                .collect();
            let q = histogram(current, &edges)
                .into_iter()
                .map(|c| c as f64 / nc)
                .collect();
            (p, q)
        } else {
            Union::new(reference, current)
                .map(|item| (item.count_a as f64 / nr, item.count_b as f64 / nc))
                .unzip()
        };
    if feel_zeroes {
        fill_zeroes(&mut p);
        fill_zeroes(&mut q);
    }
    Ok((p, q))
}

/// `np.place(a, a == 0, min(a[a != 0]) / 10**6 if min(a[a != 0]) <= 0.0001 else 0.0001)`.
fn fill_zeroes(shares: &mut [f64]) {
    if !shares.contains(&0.0) {
        return;
    }
    let min = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// Evidently's `psi` drift score: `sum (p - q) ln(p / q)` over the binned
/// shares of `R` (p) and `C` (q), summed as numpy does (pairwise, in bin
/// order). Drift if `psi >= 0.1`.
///
/// The shares are Evidently's `get_binned_data(..., feel_zeroes=True)`:
/// * a numerical column whose **reference** has more than 20 distinct values
///   is binned on `np.histogram_bin_edges(R ∪ C, "sturges")` (equal-width
///   bins over the pooled range, the last one closed; data taken as float64);
///   an infinite value is an error (numpy raises);
/// * otherwise each distinct value of `R ∪ C` is a bin, in ascending order
///   (Evidently: Python `set` order, the same for small non-negative integer
///   codes; other orders change only the rounding of the sums);
/// * zero shares of each vector become `min(nonzero) / 1e6` if that minimum
///   is `<= 0.0001`, else `0.0001`.
pub fn psi(
    reference: &Distribution,
    current: &Distribution,
    column_type: ColumnType,
) -> Result<f64, StatTestError> {
    let (p, q) = binned_shares(reference, current, column_type, true)?;
    let terms: Vec<f64> = p
        .iter()
        .zip(&q)
        .map(|(&a, &b)| (a - b) * (a / b).ln())
        .collect();
    Ok(pairwise_sum(&terms))
}

/// Evidently's `kl_div` drift score: `scipy.stats.entropy(p, q)`, the
/// Kullback-Leibler divergence of the reference shares from the current ones
/// (natural log) after both are normalised by their (pairwise) sums. The
/// shares are binned and zero-filled as for [`psi`], so it is finite.
/// Drift if `kl >= 0.1`.
pub fn kl_div(
    reference: &Distribution,
    current: &Distribution,
    column_type: ColumnType,
) -> Result<f64, StatTestError> {
    let (p, q) = binned_shares(reference, current, column_type, true)?;
    let sum_p = pairwise_sum(&p);
    let sum_q = pairwise_sum(&q);
    let terms: Vec<f64> = p
        .iter()
        .zip(&q)
        .map(|(&a, &b)| rel_entr(a / sum_p, b / sum_q))
        .collect();
    Ok(pairwise_sum(&terms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fill_rule() {
        let mut a = [0.5, 0.5, 0.0];
        fill_zeroes(&mut a);
        assert_eq!(a, [0.5, 0.5, 0.0001]);
        let mut b = [0.99995, 0.00005, 0.0];
        fill_zeroes(&mut b);
        assert_eq!(b[2], 0.00005 / 1e6);
    }

    #[test]
    fn identical_samples_score_zero() {
        let a = Distribution::from_counts([(1.0, 3), (2.0, 5), (7.0, 2)]);
        assert_eq!(psi(&a, &a, ColumnType::Categorical), Ok(0.0));
        assert_eq!(kl_div(&a, &a, ColumnType::Numerical), Ok(0.0));
    }
}
