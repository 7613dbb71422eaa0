//! The count representation of a sample that every statistic works on.

use crate::dd::DoubleDouble as Dd;
use std::cmp::Ordering;
use std::sync::OnceLock;

/// Why [`Distribution::from_sorted_counts`] rejected its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistributionError {
    /// `values` and `counts` differ in length.
    #[error("{values} values but {counts} counts")]
    LengthMismatch {
        /// Length of `values`.
        values: usize,
        /// Length of `counts`.
        counts: usize,
    },
    /// The value at `index` is NaN or not greater than its predecessor.
    #[error("value at index {index} is NaN or not strictly increasing")]
    NotStrictlyIncreasing {
        /// Position of the offending value.
        index: usize,
    },
    /// The count at `index` is zero.
    #[error("count at index {index} is zero")]
    ZeroCount {
        /// Position of the offending count.
        index: usize,
    },
}

/// The bits of `value` as an integer that orders like [`f64::total_cmp`]: with `-0.0`
/// written as `0.0` and without NaN, that is the numeric order.
#[inline]
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The value whose [`order_key`] is `key`.
#[inline]
fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// `(value, count)` pairs as `(order key, count)`, without NaN values and zero counts, with
/// `-0.0` as `0.0`.
fn keyed(pairs: impl IntoIterator<Item = (f64, u64)>) -> Vec<(u64, u64)> {
    pairs
        .into_iter()
        .filter(|&(v, c)| c > 0 && !v.is_nan())
        .map(|(v, c)| (order_key(v + 0.0), c))
        .collect()
}

/// A sample as its sorted distinct values (never NaN; ±inf allowed) and their counts.
///
/// This is the exact, mergeable representation the monitor keeps per column and
/// window. `-0.0` is stored as `0.0`, since pandas and numpy treat the two as
/// one value. Derived quantities that a reference sample reuses across windows
/// (mean and standard deviation, ECDF and gaps) are computed on first use and cached.
#[derive(Clone, Debug, Default)]
pub struct Distribution {
    values: Vec<f64>,
    counts: Vec<u64>,
    total: u64,
    moments: OnceLock<Moments>,
    ecdf: OnceLock<Ecdf>,
}

/// Cached `np.mean` and `np.std(ddof=0)` of the expanded sample.
#[derive(Clone, Copy, Debug)]
struct Moments {
    mean: f64,
    var: f64,
    std: f64,
}

/// Cached right-continuous ECDF at each distinct value and the gaps between
/// consecutive distinct values, in the rounding numpy uses
/// (`searchsorted(..., 'right') / n` and `np.diff`).
#[derive(Clone, Debug)]
pub(crate) struct Ecdf {
    pub cdf: Vec<f64>,
    pub gaps: Vec<f64>,
}

impl PartialEq for Distribution {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.values == other.values
    }
}

impl Distribution {
    /// Builds a distribution from `(value, count)` pairs in any order.
    ///
    /// Equal values (including `-0.0` and `0.0`) have their counts summed,
    /// zero counts are dropped and **NaN values are skipped**, matching the
    /// `dropna()` Evidently applies before every test.
    pub fn from_counts(pairs: impl IntoIterator<Item = (f64, u64)>) -> Self {
        // Sorted by integer keys: comparing integers is cheaper than `f64::total_cmp`.
        let mut pairs = keyed(pairs);
        pairs.sort_unstable_by_key(|&(key, _)| key);
        Self::from_sorted_keys(pairs)
    }

    /// Builds a distribution from single observations and `(value, count)` pairs, each in
    /// any order, with the rules of [`from_counts`](Self::from_counts). The single values
    /// sort as 8-byte keys, cheaper than pairs, and the two sorted lists are then merged.
    pub fn from_singles_and_counts(
        singles: impl IntoIterator<Item = f64>,
        pairs: impl IntoIterator<Item = (f64, u64)>,
    ) -> Self {
        let mut singles: Vec<u64> = singles
            .into_iter()
            .filter(|v| !v.is_nan())
            .map(|v| order_key(v + 0.0))
            .collect();
        singles.sort_unstable();
        let mut pairs = keyed(pairs);
        // Usually a few ascending runs (small integers, then sorted counts): the stable
        // sort merges runs in linear time.
        pairs.sort_by_key(|&(key, _)| key);
        let (mut singles, mut pairs) =
            (singles.into_iter().peekable(), pairs.into_iter().peekable());
        Self::from_sorted_keys(std::iter::from_fn(|| {
            match (singles.peek(), pairs.peek()) {
                (Some(&single), Some(&(key, _))) if single <= key => singles.next().map(|s| (s, 1)),
                (Some(_), None) => singles.next().map(|s| (s, 1)),
                _ => pairs.next(),
            }
        }))
    }

    /// Builds a distribution from `(order key, count)` pairs in ascending key order, adding
    /// up the counts of equal keys.
    fn from_sorted_keys(sorted: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let sorted = sorted.into_iter();
        let mut values: Vec<f64> = Vec::with_capacity(sorted.size_hint().0);
        let mut counts: Vec<u64> = Vec::with_capacity(sorted.size_hint().0);
        let mut last_key = None;
        for (key, count) in sorted {
            if last_key == Some(key) {
                *counts.last_mut().expect("same length") += count;
            } else {
                values.push(from_order_key(key));
                counts.push(count);
                last_key = Some(key);
            }
        }
        Self::from_parts(values, counts)
    }

    /// Builds a distribution from raw observations; NaN values are skipped.
    pub fn from_values(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| v + 0.0)
            .collect();
        sorted.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
        let mut distinct: Vec<f64> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        for v in sorted {
            match distinct.last() {
                Some(&last) if last == v => *counts.last_mut().expect("same length") += 1,
                _ => {
                    distinct.push(v);
                    counts.push(1);
                }
            }
        }
        Self::from_parts(distinct, counts)
    }

    /// Takes already sorted distinct values and their counts without copying.
    ///
    /// `values` must be strictly increasing (so free of NaN and duplicates) and
    /// every count positive. A `-0.0` is stored as `0.0`.
    pub fn from_sorted_counts(
        mut values: Vec<f64>,
        counts: Vec<u64>,
    ) -> Result<Self, DistributionError> {
        if values.len() != counts.len() {
            return Err(DistributionError::LengthMismatch {
                values: values.len(),
                counts: counts.len(),
            });
        }
        for (index, &v) in values.iter().enumerate() {
            // Earlier values are known not to be NaN here.
            if v.is_nan() || (index > 0 && values[index - 1] >= v) {
                return Err(DistributionError::NotStrictlyIncreasing { index });
            }
        }
        if let Some(index) = counts.iter().position(|&c| c == 0) {
            return Err(DistributionError::ZeroCount { index });
        }
        for v in &mut values {
            *v += 0.0;
        }
        Ok(Self::from_parts(values, counts))
    }

    fn from_parts(values: Vec<f64>, counts: Vec<u64>) -> Self {
        let total = counts.iter().sum();
        Self {
            values,
            counts,
            total,
            moments: OnceLock::new(),
            ecdf: OnceLock::new(),
        }
    }

    /// The sorted distinct values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The count of each distinct value, aligned with [`values`](Self::values).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The number of observations (sum of the counts).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The number of distinct values.
    pub fn distinct(&self) -> usize {
        self.values.len()
    }

    /// Whether the sample has no observations.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether the sample contains `+inf` or `-inf`.
    pub fn has_infinite(&self) -> bool {
        self.values.first().is_some_and(|v| v.is_infinite())
            || self.values.last().is_some_and(|v| v.is_infinite())
    }

    /// The count of one value (0 if absent).
    pub fn count_of(&self, value: f64) -> u64 {
        match self
            .values
            .binary_search_by(|v| v.partial_cmp(&value).unwrap_or(Ordering::Less))
        {
            Ok(i) => self.counts[i],
            Err(_) => 0,
        }
    }

    /// The same sample without its `±inf` observations (Evidently's cleaning
    /// replaces them by NaN and drops them).
    pub fn without_infinite(&self) -> Distribution {
        let start = usize::from(self.values.first().is_some_and(|v| *v == f64::NEG_INFINITY));
        let end = self.values.len()
            - usize::from(self.values.last().is_some_and(|v| *v == f64::INFINITY));
        if start == 0 && end == self.values.len() {
            return self.clone();
        }
        let start = start.min(end);
        Self::from_parts(
            self.values[start..end].to_vec(),
            self.counts[start..end].to_vec(),
        )
    }

    fn moments(&self) -> Moments {
        *self.moments.get_or_init(|| self.compute_moments())
    }

    /// `np.mean` and `np.std` (ddof=0) of the expanded sample, with the sums
    /// accumulated in double-double (numpy's pairwise sums are within a few ulps).
    fn compute_moments(&self) -> Moments {
        if self.total == 0 {
            return Moments {
                mean: f64::NAN,
                var: f64::NAN,
                std: f64::NAN,
            };
        }
        let n = self.total as f64;
        if self.has_infinite() {
            let neg = self.values[0] == f64::NEG_INFINITY;
            let pos = self.values[self.values.len() - 1] == f64::INFINITY;
            let mean = match (neg, pos) {
                (true, true) => f64::NAN,
                (true, false) => f64::NEG_INFINITY,
                _ => f64::INFINITY,
            };
            // x - mean is NaN at the infinite values, so the std is NaN.
            return Moments {
                mean,
                var: f64::NAN,
                std: f64::NAN,
            };
        }
        let mut sum = Dd::ZERO;
        for (&v, &c) in self.values.iter().zip(&self.counts) {
            sum = sum + Dd::from_prod(v, c as f64);
        }
        let mean = sum.hi / n;
        let mut sq = Dd::ZERO;
        for (&v, &c) in self.values.iter().zip(&self.counts) {
            let d = v - mean;
            sq = sq + Dd::from_prod(d * d, c as f64);
        }
        let var = sq.hi / n;
        Moments {
            mean,
            var,
            std: var.sqrt(),
        }
    }

    /// The mean of the expanded sample (`np.mean`); NaN when empty.
    pub fn mean(&self) -> f64 {
        self.moments().mean
    }

    /// The population standard deviation of the expanded sample (`np.std`,
    /// ddof=0), accurate to about one ulp; NaN when empty or when it contains ±inf.
    pub fn population_std(&self) -> f64 {
        self.moments().std
    }

    /// The population variance of the expanded sample (`np.var`, ddof=0):
    /// the mean of the squared deviations `(x - mean)^2`, each rounded as
    /// numpy rounds it, summed exactly. NaN when empty or when it contains ±inf.
    pub fn population_variance(&self) -> f64 {
        self.moments().var
    }

    /// The ECDF and gap arrays, computed once per distribution.
    pub(crate) fn ecdf(&self) -> &Ecdf {
        self.ecdf.get_or_init(|| {
            let n = self.total as f64;
            let mut cum = 0_u64;
            let cdf = self
                .counts
                .iter()
                .map(|&c| {
                    cum += c;
                    cum as f64 / n
                })
                .collect();
            let gaps = self.values.windows(2).map(|w| w[1] - w[0]).collect();
            Ecdf { cdf, gaps }
        })
    }

    /// The element at 0-based `index` of the expanded sorted sample.
    fn expanded(&self, index: u64) -> f64 {
        let mut cum = 0_u64;
        for (&v, &c) in self.values.iter().zip(&self.counts) {
            cum += c;
            if index < cum {
                return v;
            }
        }
        f64::NAN
    }

    /// The `q`-quantile of the expanded sample with numpy's default `'linear'`
    /// method, including numpy's two-branch `_lerp` (so `±inf` neighbours give
    /// the same `inf`/NaN numpy gives). NaN for an empty sample.
    ///
    /// pandas' `Series.quantile(q)` calls `np.percentile(q * 100)`, i.e. this
    /// with `q * 100.0 / 100.0`, which equals `q` for 0.5 and the quartiles.
    ///
    /// # Panics
    /// If `q` is not in `[0, 1]` (numpy raises `ValueError`).
    pub fn quantile_linear(&self, q: f64) -> f64 {
        assert!((0.0..=1.0).contains(&q), "quantile {q} outside [0, 1]");
        if self.total == 0 {
            return f64::NAN;
        }
        let last = self.total - 1;
        let virtual_index = last as f64 * q;
        // numpy `_get_indexes`: at or past the last index both neighbours are
        // the last element and the "previous index" is -1.
        let (prev, next, gamma) = if virtual_index >= last as f64 {
            (last, last, virtual_index + 1.0)
        } else {
            let floor = virtual_index.floor();
            let prev = floor as u64;
            (prev, prev + 1, virtual_index - floor)
        };
        let a = self.expanded(prev);
        let b = if next == prev { a } else { self.expanded(next) };
        lerp(a, b, gamma)
    }
}

/// numpy's `_lerp`: `a + (b-a) t`, or `b - (b-a)(1-t)` when `t >= 0.5`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff_b_a = b - a;
    if t >= 0.5 {
        b - diff_b_a * (1.0 - t)
    } else {
        a + diff_b_a * t
    }
}

/// One distinct value of `R ∪ C` with its count in each sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct UnionItem {
    pub value: f64,
    pub count_a: u64,
    pub count_b: u64,
}

/// Merges two sorted distributions into the distinct values of their union.
pub(crate) struct Union<'a> {
    a: &'a Distribution,
    b: &'a Distribution,
    i: usize,
    j: usize,
}

impl<'a> Union<'a> {
    pub fn new(a: &'a Distribution, b: &'a Distribution) -> Self {
        Self { a, b, i: 0, j: 0 }
    }
}

impl Iterator for Union<'_> {
    type Item = UnionItem;

    #[inline]
    fn next(&mut self) -> Option<UnionItem> {
        let va = self.a.values.get(self.i).copied();
        let vb = self.b.values.get(self.j).copied();
        let item = match (va, vb) {
            (None, None) => return None,
            (Some(x), None) => {
                self.i += 1;
                UnionItem {
                    value: x,
                    count_a: self.a.counts[self.i - 1],
                    count_b: 0,
                }
            }
            (None, Some(y)) => {
                self.j += 1;
                UnionItem {
                    value: y,
                    count_a: 0,
                    count_b: self.b.counts[self.j - 1],
                }
            }
            (Some(x), Some(y)) => {
                if x < y {
                    self.i += 1;
                    UnionItem {
                        value: x,
                        count_a: self.a.counts[self.i - 1],
                        count_b: 0,
                    }
                } else if y < x {
                    self.j += 1;
                    UnionItem {
                        value: y,
                        count_a: 0,
                        count_b: self.b.counts[self.j - 1],
                    }
                } else {
                    self.i += 1;
                    self.j += 1;
                    UnionItem {
                        value: x,
                        count_a: self.a.counts[self.i - 1],
                        count_b: self.b.counts[self.j - 1],
                    }
                }
            }
        };
        Some(item)
    }
}

/// `k`: the number of distinct values in `a ∪ b` (pandas `nunique` of the
/// concatenation; `±inf` count as values).
pub fn distinct_union(a: &Distribution, b: &Distribution) -> usize {
    Union::new(a, b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singles_and_counts_match_from_counts() {
        let mut state = 7_u64;
        let mut next = |below: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % below
        };
        let specials = [f64::NAN, -0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];
        let draw = |next: &mut dyn FnMut(u64) -> u64| match next(10) {
            0 => specials[next(specials.len() as u64) as usize],
            _ => (next(40) as f64 - 10.0) / 4.0,
        };
        for case in 0..200 {
            let singles: Vec<f64> = (0..next(30)).map(|_| draw(&mut next)).collect();
            let pairs: Vec<(f64, u64)> =
                (0..next(30)).map(|_| (draw(&mut next), next(4))).collect();
            let combined = Distribution::from_counts(
                singles.iter().map(|&v| (v, 1)).chain(pairs.iter().copied()),
            );
            let merged = Distribution::from_singles_and_counts(singles, pairs);
            assert_eq!(merged, combined, "case {case}");
            assert_eq!(merged.total(), combined.total(), "case {case}");
        }
    }

    #[test]
    fn integer_keys_sort_like_total_cmp() {
        let mut values = vec![
            3.5,
            -0.0,
            f64::NAN,
            0.0,
            f64::NEG_INFINITY,
            -1e-310,
            1e-310,
            -2.25,
            f64::INFINITY,
            f64::MAX,
            -f64::NAN,
            f64::MIN,
            7.0,
            -2.25,
        ];
        for &value in &values {
            assert_eq!(from_order_key(order_key(value)).to_bits(), value.to_bits());
        }
        let mut expected = values.clone();
        expected.sort_by(f64::total_cmp);
        values.sort_by_key(|&value| order_key(value));
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&values), bits(&expected));
    }

    #[test]
    fn from_counts_sorts_merges_and_skips() {
        let d = Distribution::from_counts([
            (3.0, 2),
            (1.0, 1),
            (f64::NAN, 7),
            (3.0, 1),
            (-0.0, 2),
            (0.0, 1),
            (5.0, 0),
            (f64::INFINITY, 1),
        ]);
        assert_eq!(d.values(), &[0.0, 1.0, 3.0, f64::INFINITY]);
        assert!(d.values()[0].is_sign_positive());
        assert_eq!(d.counts(), &[3, 1, 3, 1]);
        assert_eq!(d.total(), 8);
        assert_eq!(d.distinct(), 4);
        assert!(d.has_infinite());
        assert_eq!(d.count_of(3.0), 3);
        assert_eq!(d.count_of(2.0), 0);
    }

    #[test]
    fn from_values_matches_from_counts() {
        let a = Distribution::from_values(&[2.0, f64::NAN, 1.0, 2.0, -0.0, 0.0]);
        let b = Distribution::from_counts([(0.0, 2), (1.0, 1), (2.0, 2)]);
        assert_eq!(a, b);
        assert_eq!(a.total(), 5);
    }

    #[test]
    fn from_sorted_counts_validates() {
        assert!(Distribution::from_sorted_counts(vec![1.0, 2.0], vec![1, 1]).is_ok());
        assert_eq!(
            Distribution::from_sorted_counts(vec![1.0], vec![1, 2]),
            Err(DistributionError::LengthMismatch {
                values: 1,
                counts: 2
            })
        );
        assert_eq!(
            Distribution::from_sorted_counts(vec![1.0, 1.0], vec![1, 2]),
            Err(DistributionError::NotStrictlyIncreasing { index: 1 })
        );
        assert_eq!(
            Distribution::from_sorted_counts(vec![f64::NAN], vec![1]),
            Err(DistributionError::NotStrictlyIncreasing { index: 0 })
        );
        assert_eq!(
            Distribution::from_sorted_counts(vec![1.0, 2.0], vec![1, 0]),
            Err(DistributionError::ZeroCount { index: 1 })
        );
    }

    #[test]
    fn without_infinite_drops_both_ends() {
        let d = Distribution::from_counts([(f64::NEG_INFINITY, 2), (1.0, 1), (f64::INFINITY, 3)]);
        let c = d.without_infinite();
        assert_eq!(c.values(), &[1.0]);
        assert_eq!(c.total(), 1);
        let only_inf = Distribution::from_counts([(f64::INFINITY, 3)]).without_infinite();
        assert!(only_inf.is_empty());
        assert_eq!(only_inf.distinct(), 0);
    }

    #[test]
    fn moments_and_empty() {
        let d = Distribution::from_counts([(1.0, 1), (2.0, 2), (4.0, 1)]);
        assert_eq!(d.mean(), 2.25);
        let var: f64 = (1.25f64.powi(2) + 2.0 * 0.25f64.powi(2) + 1.75f64.powi(2)) / 4.0;
        assert_eq!(d.population_std(), var.sqrt());
        let e = Distribution::default();
        assert!(e.mean().is_nan() && e.population_std().is_nan());
        assert!(e.quantile_linear(0.5).is_nan());
        let inf = Distribution::from_counts([(1.0, 1), (f64::INFINITY, 1)]);
        assert_eq!(inf.mean(), f64::INFINITY);
        assert!(inf.population_std().is_nan());
    }

    #[test]
    fn quantile_follows_numpy_lerp() {
        let d = Distribution::from_values(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(d.quantile_linear(0.5), 2.5);
        assert_eq!(d.quantile_linear(0.0), 1.0);
        assert_eq!(d.quantile_linear(1.0), 4.0);
        let inf = Distribution::from_values(&[1.0, 2.0, f64::INFINITY]);
        assert!(inf.quantile_linear(0.5).is_nan());
        assert_eq!(inf.quantile_linear(0.6), f64::INFINITY);
        assert!(inf.quantile_linear(0.75).is_nan());
    }

    #[test]
    fn union_counts() {
        let a = Distribution::from_counts([(1.0, 1), (2.0, 2)]);
        let b = Distribution::from_counts([(2.0, 5), (3.0, 1)]);
        assert_eq!(distinct_union(&a, &b), 3);
        let items: Vec<_> = Union::new(&a, &b).collect();
        assert_eq!(items[1].count_a, 2);
        assert_eq!(items[1].count_b, 5);
        assert_eq!(distinct_union(&a, &Distribution::default()), 2);
        let many = Distribution::from_values(&(0..100).map(f64::from).collect::<Vec<_>>());
        let some = Distribution::from_values(&[-1.0, 3.0, 50.0, 50.5, 99.0, 200.0]);
        assert_eq!(distinct_union(&many, &some), 103);
    }
}
