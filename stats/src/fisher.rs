//! Evidently's `fisher_exact` drift test (`fisher_exact_stattest.py`) on
//! scipy's two-sided 2x2 `scipy.stats.fisher_exact`.

use crate::dd::DoubleDouble as Dd;
use crate::distribution::{Distribution, Union};
use crate::StatTestError;

/// The hypergeometric distribution of the top-left cell given the margins:
/// `draws` draws from `population` items of which `successes` are successes
/// (scipy's `hypergeom(M=population, n=successes, N=draws)`).
///
/// The probabilities are computed once over the whole support by the ratio
/// recurrence from the mode in double-double and normalised by their sum, so
/// each is within a few ulps of the exact value (Boost, which scipy calls,
/// is equally accurate; the two agree to about 1e-15 relative).
struct Hypergeometric {
    successes: u64,
    draws: u64,
    population: u64,
    /// Support `[lo, hi]`.
    lo: u64,
    hi: u64,
    /// `P(X = lo + i)`.
    pmf: Vec<f64>,
}

impl Hypergeometric {
    fn new(population: u64, successes: u64, draws: u64) -> Self {
        let lo = (successes + draws).saturating_sub(population);
        let hi = successes.min(draws);
        let (r, n, big_n) = (successes as f64, draws as f64, population as f64);
        let mode = (((r + 1.0) * (n + 1.0) / (big_n + 2.0)).floor() as u64).clamp(lo, hi);
        let len = (hi - lo + 1) as usize;
        let mut w = vec![Dd::ZERO; len];
        let m = (mode - lo) as usize;
        w[m] = Dd::ONE;
        // w(x + 1) / w(x) = (r - x)(n - x) / ((x + 1)(N - r - n + x + 1)).
        for i in m..len - 1 {
            let x = (lo + i as u64) as f64;
            let num = Dd::from_prod(r - x, n - x);
            let den = Dd::from_prod(x + 1.0, big_n - r - n + x + 1.0);
            w[i + 1] = w[i] * num / den;
            if w[i + 1].hi < 1e-300 {
                break;
            }
        }
        for i in (1..=m).rev() {
            let x = (lo + i as u64) as f64;
            // w(x - 1) / w(x) = x (N - r - n + x) / ((r - x + 1)(n - x + 1)).
            let num = Dd::from_prod(x, big_n - r - n + x);
            let den = Dd::from_prod(r - x + 1.0, n - x + 1.0);
            w[i - 1] = w[i] * num / den;
            if w[i - 1].hi < 1e-300 {
                break;
            }
        }
        let mut total = Dd::ZERO;
        for wi in &w {
            total = total + *wi;
        }
        let pmf = w.iter().map(|wi| (*wi / total).hi).collect();
        Self {
            successes,
            draws,
            population,
            lo,
            hi,
            pmf,
        }
    }

    /// Boost's `pdf` (the support is checked by the caller).
    fn boost_pdf(&self, x: u64) -> f64 {
        self.pmf[(x - self.lo) as usize]
    }

    /// scipy `hypergeom.pmf`: 0 outside the support.
    fn pmf(&self, x: i64) -> f64 {
        if x < self.lo as i64 || x > self.hi as i64 {
            0.0
        } else {
            self.boost_pdf(x as u64)
        }
    }

    /// Boost's `hypergeometric_cdf_imp`, summing from `x` into the nearer tail
    /// with the same recurrence and stopping rule, then clipped to `[0, 1]`.
    fn boost_cdf(&self, x: u64, invert: bool) -> f64 {
        let (r, n, big_n) = (self.successes, self.draws, self.population);
        let mut invert = invert;
        let mut x = x;
        let mut result = 0.0;
        let mode = ((r + 1) as f64 * (n + 1) as f64 / (big_n + 2) as f64).floor();
        if (x as f64) < mode {
            result = self.boost_pdf(x);
            let mut diff = result;
            let lower_limit = self.lo;
            while diff > (if invert { 1.0 } else { result }) * f64::EPSILON {
                diff = x as f64 * ((big_n + x) - n - r) as f64 * diff
                    / ((1 + n - x) as f64 * (1 + r - x) as f64);
                result += diff;
                if x == lower_limit {
                    break;
                }
                x -= 1;
            }
        } else {
            invert = !invert;
            let upper_limit = r.min(n);
            if x != upper_limit {
                x += 1;
                result = self.boost_pdf(x);
                let mut diff = result;
                while x <= upper_limit && diff > (if invert { 1.0 } else { result }) * f64::EPSILON
                {
                    diff = (n - x) as f64 * (r - x) as f64 * diff
                        / ((x + 1) as f64 * ((big_n + x + 1) - n - r) as f64);
                    result += diff;
                    x += 1;
                }
            }
        }
        if invert {
            result = 1.0 - result;
        }
        result.clamp(0.0, 1.0)
    }

    /// scipy `hypergeom.cdf`.
    fn cdf(&self, x: i64) -> f64 {
        if x >= self.hi as i64 {
            1.0
        } else if x < self.lo as i64 {
            0.0
        } else {
            self.boost_cdf(x as u64, false)
        }
    }

    /// scipy `hypergeom.sf`.
    fn sf(&self, x: i64) -> f64 {
        if x < self.lo as i64 {
            1.0
        } else if x >= self.hi as i64 {
            0.0
        } else {
            self.boost_cdf(x as u64, true)
        }
    }
}

/// scipy's `_binary_search_for_binom_tst`: the index `i` in `[lo, hi]` with
/// `a(i) <= d < a(i + 1)` for `a` ascending on the range.
fn binary_search(a: impl Fn(i64) -> f64, d: f64, mut lo: i64, mut hi: i64) -> i64 {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let midval = a(mid);
        if midval < d {
            lo = mid + 1;
        } else if midval > d {
            hi = mid - 1;
        } else {
            return mid;
        }
    }
    if a(lo) <= d {
        lo
    } else {
        lo - 1
    }
}

/// scipy 1.17.1 `fisher_exact(table)` for a 2x2 table of counts, two-sided:
/// the p-value only.
pub fn fisher_exact_2x2(table: [[u64; 2]; 2]) -> f64 {
    let [[c00, c01], [c10, c11]] = table;
    if c00 + c10 == 0 || c01 + c11 == 0 || c00 + c01 == 0 || c10 + c11 == 0 {
        return 1.0;
    }
    let n1 = c00 + c01;
    let n2 = c10 + c11;
    let n = c00 + c10;
    let dist = Hypergeometric::new(n1 + n2, n1, n);
    let c00 = c00 as i64;
    let n_i = n as i64;
    let mode = ((n + 1) as f64 * (n1 + 1) as f64 / (n1 + n2 + 2) as f64) as i64;
    let pexact = dist.pmf(c00);
    let pmode = dist.pmf(mode);
    let epsilon = 1e-14;
    let gamma = 1.0 + epsilon;
    let pvalue = if (pexact - pmode).abs() / pexact.max(pmode) <= epsilon {
        return 1.0;
    } else if c00 < mode {
        let plower = dist.cdf(c00);
        if dist.pmf(n_i) > pexact * gamma {
            return plower.min(1.0);
        }
        let guess = binary_search(|x| -dist.pmf(x), -pexact * gamma, mode, n_i);
        plower + dist.sf(guess)
    } else {
        let pupper = dist.sf(c00 - 1);
        if dist.pmf(0) > pexact * gamma {
            return pupper.min(1.0);
        }
        let guess = binary_search(|x| dist.pmf(x), pexact * gamma, 0, mode);
        pupper + dist.cdf(guess)
    };
    pvalue.min(1.0)
}

/// Evidently's `fisher_exact` drift score: the two-sided p-value of Fisher's
/// exact test on the 2x2 table `[[ones_C, zeros_C], [ones_R, zeros_R]]`.
/// Drift if `p < 0.1`.
///
/// Evidently raises (here an error) unless both samples have the **same
/// size**, at most two distinct values each and no infinite value. Its
/// category-to-{0,1} mapping follows Python `set` order of `R ∪ C`; this
/// takes "one" to be the larger of the two values (Python's order for small
/// integer codes such as 0/1). The two-sided p-value does not depend on that
/// choice (up to rounding). If `R ∪ C` has a single value, a margin is zero
/// and the p-value is 1. If `R ∪ C` has more than two values, Evidently's
/// mapping involves a `"placeholder"` string and depends on string hashing,
/// so this is reported as an error too.
pub fn fisher_exact_pvalue(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    if reference.has_infinite() || current.has_infinite() {
        return Err(StatTestError::Rejected(
            "fisher_exact: null or inf values found in reference or current data",
        ));
    }
    if reference.distinct() > 2 || current.distinct() > 2 {
        return Err(StatTestError::Rejected(
            "fisher_exact: expects binary data for both reference and current",
        ));
    }
    if reference.total() != current.total() {
        return Err(StatTestError::Rejected(
            "fisher_exact: reference and current data are not of equal length",
        ));
    }
    let items: Vec<_> = Union::new(reference, current).collect();
    match items.len() {
        1 => Ok(1.0),
        2 => {
            let (zero, one) = (items[0], items[1]);
            Ok(fisher_exact_2x2([
                [one.count_b, zero.count_b],
                [one.count_a, zero.count_a],
            ]))
        }
        _ => Err(StatTestError::Rejected(
            "fisher_exact: reference and current together have more than two categories",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_tea_tasting() {
        // Fisher's lady tasting tea: [[3, 1], [1, 3]], two-sided p = 34/70.
        let p = fisher_exact_2x2([[3, 1], [1, 3]]);
        assert!((p - 34.0 / 70.0).abs() < 1e-15);
        assert_eq!(fisher_exact_2x2([[0, 0], [1, 3]]), 1.0);
    }

    #[test]
    fn hypergeometric_sums_to_one() {
        let d = Hypergeometric::new(200, 70, 90);
        let total: f64 = d.pmf.iter().sum();
        assert!((total - 1.0).abs() < 1e-14);
        assert_eq!(d.cdf(d.hi as i64), 1.0);
        assert!((d.cdf(30) + d.sf(30) - 1.0).abs() < 1e-14);
    }

    #[test]
    fn rejects_what_evidently_rejects() {
        let a = Distribution::from_counts([(0.0, 3), (1.0, 2)]);
        let b = Distribution::from_counts([(0.0, 1), (1.0, 1)]);
        assert!(fisher_exact_pvalue(&a, &b).is_err());
        let c = Distribution::from_counts([(0.0, 1), (1.0, 1), (2.0, 3)]);
        assert!(fisher_exact_pvalue(&c, &c).is_err());
        let d = Distribution::from_counts([(5.0, 4)]);
        assert_eq!(fisher_exact_pvalue(&d, &d), Ok(1.0));
    }
}
