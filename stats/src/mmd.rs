//! Evidently's `empirical_mmd` drift test (`mmd_stattest.py`): a Gaussian
//! kernel maximum mean discrepancy with a 100-permutation p-value.

use crate::distribution::{Distribution, Union};
use crate::permutation::{pooled_positions, Mt19937};
use crate::StatTestError;

/// More distinct pooled values than this are rejected: the kernel sums are
/// quadratic in the number of distinct values (Evidently's are quadratic in
/// the number of observations and run out of memory much earlier).
pub const MMD_MAX_DISTINCT: usize = 4096;

/// Evidently's squared distance `y² - 2 x y + x²`, evaluated in that order
/// (`doty.T - 2 * np.dot(x, y.T) + dotx`).
#[inline]
fn sq_dist(x: f64, y: f64) -> f64 {
    (y * y - 2.0 * (x * y)) + x * x
}

/// The Gaussian kernel's `gamma = 1 / (2 sigma²)` with Evidently's median
/// heuristic on the reference: `sigma = sqrt(0.5 * median)` of the `n_R²`
/// entries of the reference distance matrix (numpy `percentile(...,
/// method="nearest")`, the element at `round_half_even((n² - 1) / 2)`),
/// and `sigma = sqrt(0.5)` if that median is 0.
fn kernel_gamma(reference: &Distribution) -> f64 {
    let v = reference.values();
    let c = reference.counts();
    let n = u128::from(reference.total());
    let entries = n * n;
    // Index of numpy's 'nearest' element: around((entries - 1) * 0.5).
    let k = if entries % 2 == 1 {
        (entries - 1) / 2
    } else {
        let lo = (entries - 2) / 2;
        if lo % 2 == 0 {
            lo
        } else {
            lo + 1
        }
    };
    let d = v.len();
    let median = weighted_select(
        d * d,
        |p| sq_dist(v[p / d], v[p % d]),
        |p| u128::from(c[p / d]) * u128::from(c[p % d]),
        k,
    );
    let mut sigma = (0.5 * median).powf(0.5);
    if sigma == 0.0 {
        sigma = (0.5_f64 * 1.0).powf(0.5);
    }
    1.0 / (2.0 * sigma.powf(2.0))
}

/// The `k`-th smallest (0-based, counting weights) of `n` weighted items
/// without storing them all: two pivots near the target quantile of a
/// deterministic sample of the remaining items, exact weight counts below and
/// at the pivots in one `O(n)` pass, until at most 2^20 items remain to sort.
fn weighted_select(
    n: usize,
    value: impl Fn(usize) -> f64,
    weight: impl Fn(usize) -> u128,
    k: u128,
) -> f64 {
    const STORE: usize = 1 << 20;
    const SAMPLES: usize = 1 << 16;
    // The answer lies in [lo, hi] (by value); `below` = weight of items < lo.
    let mut lo = f64::NEG_INFINITY;
    let mut hi = f64::INFINITY;
    let mut below: u128 = 0;
    loop {
        let inside = |x: f64| x >= lo && x <= hi;
        let mut count = 0_usize;
        let mut in_weight = 0_u128;
        for p in 0..n {
            if inside(value(p)) {
                count += 1;
                in_weight += weight(p);
            }
        }
        let stride = if count <= STORE {
            1
        } else {
            (count / SAMPLES).max(1)
        };
        let mut items: Vec<(f64, u128)> = (0..n)
            .filter_map(|p| {
                let x = value(p);
                inside(x).then(|| (x, weight(p)))
            })
            .step_by(stride)
            .collect();
        items.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        if count <= STORE {
            let mut acc = below;
            for (x, w) in items {
                acc += w;
                if acc > k {
                    return x;
                }
            }
            return hi;
        }
        let sample_weight: u128 = items.iter().map(|s| s.1).sum();
        let target = (k - below) as f64 / in_weight as f64;
        let margin = 0.01 + 6.0 / (items.len() as f64).sqrt();
        let pick = |share: f64| -> f64 {
            let goal = share.clamp(0.0, 1.0) * sample_weight as f64;
            let mut acc = 0.0;
            for s in &items {
                acc += s.1 as f64;
                if acc >= goal {
                    return s.0;
                }
            }
            items[items.len() - 1].0
        };
        let x1 = pick(target - margin);
        let x2 = pick(target + margin);
        let (mut lt1, mut eq1, mut lt2, mut eq2) = (0_u128, 0_u128, 0_u128, 0_u128);
        for p in 0..n {
            let x = value(p);
            if !inside(x) {
                continue;
            }
            let w = weight(p);
            if x < x1 {
                lt1 += w;
            } else if x == x1 {
                eq1 += w;
            }
            if x < x2 {
                lt2 += w;
            } else if x == x2 {
                eq2 += w;
            }
        }
        if below + lt1 > k {
            hi = next_down(x1);
        } else if below + lt1 + eq1 > k {
            return x1;
        } else if below + lt2 > k {
            below += lt1 + eq1;
            lo = next_up(x1);
            hi = next_down(x2);
        } else if below + lt2 + eq2 > k {
            return x2;
        } else {
            below += lt2 + eq2;
            lo = next_up(x2);
        }
    }
}

/// The smallest double greater than `x` (finite `x`).
fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        x
    } else if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

/// The largest double less than `x` (finite `x`).
fn next_down(x: f64) -> f64 {
    -next_up(-x)
}

/// The MMD statistics of several splits of the pooled sample at once:
/// `A sum_xx + B sum_yy - 2 mean_xy` with the kernel matrix's diagonal
/// zeroed, `A = 1 / (n_x (n_x - 1))`, `B = 1 / (n_y (n_y - 1))`; each split
/// is given by the counts of the new `x` per distinct pooled value.
fn mmd_of_splits(values: &[f64], pooled: &[u64], gamma: f64, splits: &[Vec<u64>]) -> Vec<f64> {
    let d = values.len();
    let s = splits.len();
    let mut xx = vec![0.0_f64; s];
    let mut yy = vec![0.0_f64; s];
    let mut xy = vec![0.0_f64; s];
    let ys: Vec<Vec<f64>> = splits
        .iter()
        .map(|a| {
            a.iter()
                .zip(pooled)
                .map(|(&a, &t)| (t - a) as f64)
                .collect()
        })
        .collect();
    let xs: Vec<Vec<f64>> = splits
        .iter()
        .map(|a| a.iter().map(|&a| a as f64).collect())
        .collect();
    for i in 0..d {
        for j in i..d {
            let kij = (-gamma * sq_dist(values[i], values[j])).exp();
            let factor = if i == j { 1.0 } else { 2.0 };
            for t in 0..s {
                let (ai, aj) = (xs[t][i], xs[t][j]);
                let (bi, bj) = (ys[t][i], ys[t][j]);
                xx[t] += factor * ai * aj * kij;
                yy[t] += factor * bi * bj * kij;
                xy[t] += (ai * bj + if i == j { 0.0 } else { aj * bi }) * kij;
            }
        }
    }
    let nx = splits.first().map_or(0, |a| a.iter().sum::<u64>()) as f64;
    let ny = pooled.iter().sum::<u64>() as f64 - nx;
    let a_coef = 1.0 / (nx * (nx - 1.0));
    let b_coef = 1.0 / (ny * (ny - 1.0));
    (0..s)
        .map(|t| {
            // The zeroed diagonal: K(v, v) = exp(0) = 1 once per observation.
            let sxx = xx[t] - nx;
            let syy = yy[t] - ny;
            a_coef * sxx + b_coef * syy - 2.0 * (xy[t] / (nx * ny))
        })
        .collect()
}

/// Evidently's `empirical_mmd` statistic (without the permutations): the
/// unbiased MMD² estimate with a Gaussian kernel of median-heuristic width.
pub fn empirical_mmd_statistic(
    reference: &Distribution,
    current: &Distribution,
) -> Result<f64, StatTestError> {
    check(reference, current)?;
    let gamma = kernel_gamma(reference);
    let union: Vec<_> = Union::new(reference, current).collect();
    let values: Vec<f64> = union.iter().map(|i| i.value).collect();
    let pooled: Vec<u64> = union.iter().map(|i| i.count_a + i.count_b).collect();
    let observed: Vec<u64> = union.iter().map(|i| i.count_a).collect();
    Ok(mmd_of_splits(&values, &pooled, gamma, &[observed])[0])
}

fn check(reference: &Distribution, current: &Distribution) -> Result<(), StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    if reference.total() < 2 || current.total() < 2 {
        return Err(StatTestError::Rejected(
            "empirical_mmd: division by zero for a sample of one",
        ));
    }
    if reference.has_infinite() || current.has_infinite() {
        return Err(StatTestError::Rejected(
            "empirical_mmd: infinite values give an undefined kernel",
        ));
    }
    if crate::distinct_union(reference, current) > MMD_MAX_DISTINCT {
        return Err(StatTestError::Rejected(
            "empirical_mmd: too many distinct values for the quadratic kernel sums",
        ));
    }
    Ok(())
}

/// Evidently's `empirical_mmd` drift score, **a permutation p-value**: the
/// share of 100 random re-splits of the pooled sample (numpy
/// `np.random.permutation` of the kernel matrix) whose MMD is at least the
/// observed one. Drift if `p < 0.1`.
///
/// Evidently draws the permutations from numpy's global random state without
/// seeding it, so its value is random: `p_hat ~ Binomial(100, pi) / 100`
/// around the exact permutation p-value `pi`, with a standard deviation of
/// `sqrt(pi (1 - pi) / 100) <= 0.05`; two runs differ by up to about 0.2
/// (99.7%), and the drift flag is only stable when `pi` is far from 0.1.
/// This function is deterministic: it replays numpy's MT19937 after
/// `np.random.seed(seed)` (the monitor uses seed 0) on the pooled sample
/// `reference ++ current`, each in **ascending order**; given the same seed
/// and sorted input, Evidently returns the same p-value, except where a
/// permuted statistic ties the observed one to rounding (possible only with
/// repeated values), where numpy's summation order decides.
///
/// The statistic is computed from counts: `O(d²)` kernel evaluations and
/// `O(101 d²)` multiply-adds for `d` distinct pooled values, plus `O(100 n)`
/// for the shuffles; more than [`MMD_MAX_DISTINCT`] distinct values, a
/// sample of one (Python `ZeroDivisionError`) and infinite values are errors.
pub fn empirical_mmd_pvalue(
    reference: &Distribution,
    current: &Distribution,
    seed: u32,
) -> Result<f64, StatTestError> {
    Ok(empirical_mmd_permutations(reference, current, seed)?.pvalue())
}

/// The observed statistic and the 100 permuted ones behind
/// [`empirical_mmd_pvalue`] (for diagnostics: a permuted value equal to the
/// observed one up to rounding is where Evidently's result can differ).
#[derive(Clone, Debug, PartialEq)]
pub struct MmdPermutations {
    /// The MMD of the actual split.
    pub observed: f64,
    /// The MMD of each permuted split, in draw order.
    pub permuted: Vec<f64>,
}

impl MmdPermutations {
    /// `mean(observed <= permuted)`.
    pub fn pvalue(&self) -> f64 {
        let hits = self
            .permuted
            .iter()
            .filter(|&&s| self.observed <= s)
            .count();
        hits as f64 / self.permuted.len() as f64
    }
}

/// See [`empirical_mmd_pvalue`].
pub fn empirical_mmd_permutations(
    reference: &Distribution,
    current: &Distribution,
    seed: u32,
) -> Result<MmdPermutations, StatTestError> {
    check(reference, current)?;
    const PERMUTATIONS: usize = 100;
    let gamma = kernel_gamma(reference);
    let union: Vec<_> = Union::new(reference, current).collect();
    let values: Vec<f64> = union.iter().map(|i| i.value).collect();
    let (positions, pooled) = pooled_positions(reference, current);
    let nx = reference.total() as usize;
    let mut splits = Vec::with_capacity(PERMUTATIONS + 1);
    splits.push(union.iter().map(|i| i.count_a).collect::<Vec<u64>>());
    let mut rng = Mt19937::new(seed);
    let mut perm = Vec::with_capacity(positions.len());
    for _ in 0..PERMUTATIONS {
        rng.permutation_into(positions.len(), &mut perm);
        let mut a = vec![0_u64; values.len()];
        for &p in &perm[..nx] {
            a[positions[p as usize] as usize] += 1;
        }
        splits.push(a);
    }
    let mut stats = mmd_of_splits(&values, &pooled, gamma, &splits);
    let observed = stats.remove(0);
    Ok(MmdPermutations {
        observed,
        permuted: stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_matches_sorting() {
        let vals: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 5003) as f64).collect();
        let weights: Vec<u128> = (0..5000).map(|i| 1 + (i % 3) as u128).collect();
        let mut pairs: Vec<(f64, u128)> =
            vals.iter().copied().zip(weights.iter().copied()).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: u128 = weights.iter().sum();
        for k in [0, 1, total / 3, total / 2, total - 1] {
            let mut acc = 0;
            let expected = pairs
                .iter()
                .find(|p| {
                    acc += p.1;
                    acc > k
                })
                .unwrap()
                .0;
            assert_eq!(
                weighted_select(5000, |p| vals[p], |p| weights[p], k),
                expected
            );
        }
    }

    #[test]
    fn identical_samples() {
        let a = Distribution::from_values(&[0.1, 0.5, 0.9, 1.3, 2.0, 2.2]);
        let stat = empirical_mmd_statistic(&a, &a).unwrap();
        assert!(stat.is_finite());
        let p = empirical_mmd_pvalue(&a, &a, 0).unwrap();
        assert!((0.0..=1.0).contains(&p));
        let one = Distribution::from_values(&[1.0]);
        assert!(empirical_mmd_pvalue(&one, &a, 0).is_err());
    }
}
