//! Summation helpers: numpy's pairwise sum, to reproduce numpy's rounding
//! where the order of the terms is known, and a compensated sum where it is not.

/// numpy's `np.sum` of a contiguous float array (`DOUBLE_pairwise_sum`, and the same
/// algorithm in float32 for `FLOAT_pairwise_sum`): a plain loop below 8 elements, 8
/// accumulators up to 128, halving above.
pub fn pairwise_sum<T>(a: &[T]) -> T
where
    T: Copy + Default + From<f32> + std::ops::Add<Output = T>,
{
    let n = a.len();
    if n < 8 {
        a.iter().fold(T::from(-0.0), |res, &x| res + x)
    } else if n <= 128 {
        let mut r = [T::default(); 8];
        r.copy_from_slice(&a[..8]);
        let blocks_end = n - n % 8;
        for chunk in a[8..blocks_end].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc = *acc + x;
            }
        }
        let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[blocks_end..].iter().fold(res, |res, &x| res + x)
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// [`pairwise_sum`] of `n` values produced in order by `next`, without
/// materialising them (numpy's recursion visits its leaves left to right).
pub(crate) fn pairwise_sum_stream(n: usize, next: &mut impl FnMut() -> f64) -> f64 {
    if n < 8 {
        let mut res = -0.0;
        for _ in 0..n {
            res += next();
        }
        res
    } else if n <= 128 {
        let mut r = [0.0_f64; 8];
        for acc in r.iter_mut() {
            *acc = next();
        }
        let blocks_end = n - n % 8;
        for _ in (8..blocks_end).step_by(8) {
            for acc in r.iter_mut() {
                *acc += next();
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for _ in blocks_end..n {
            res += next();
        }
        res
    } else {
        let half = n / 2;
        let half = half - half % 8;
        let left = pairwise_sum_stream(half, next);
        left + pairwise_sum_stream(n - half, next)
    }
}

/// Neumaier's compensated sum, for accumulating many terms with about one rounding error in total.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CompensatedSum {
    sum: f64,
    comp: f64,
}

impl CompensatedSum {
    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The compensated total; an infinite or NaN running sum is returned as is
    /// (its compensation term is meaningless then).
    #[inline]
    pub fn value(&self) -> f64 {
        if self.sum.is_finite() {
            self.sum + self.comp
        } else {
            self.sum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_beats_naive() {
        let mut s = CompensatedSum::default();
        s.add(1.0);
        for _ in 0..10 {
            s.add(1e-16);
        }
        s.add(-1.0);
        assert!((s.value() - 1e-15).abs() < 1e-30);
    }

    #[test]
    fn pairwise_matches_numpy() {
        // np.sum of [0.1 * (i % 10) + 1e-3 * i for i in range(n)], and the
        // sequential sum where it differs, for each of numpy's three regimes.
        for (n, numpy, sequential) in [
            (7, 2.1210000000000004, 2.1210000000000004),
            (17, 6.736000000000001, 6.735999999999999),
            (129, 65.856, 65.85600000000001),
            (300, 179.85000000000002, 179.85),
        ] {
            let a: Vec<f64> = (0..n)
                .map(|i| 0.1 * f64::from(i % 10) + 1e-3 * f64::from(i))
                .collect();
            assert_eq!(pairwise_sum(&a), numpy, "n = {n}");
            assert_eq!(a.iter().fold(0.0, |s, x| s + x), sequential);
        }
        assert_eq!(pairwise_sum::<f64>(&[]), 0.0);
        for n in [0, 5, 17, 129, 300, 1000] {
            let a: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + f64::from(i))).collect();
            let mut it = a.iter().copied();
            let streamed = pairwise_sum_stream(a.len(), &mut || it.next().unwrap());
            assert_eq!(streamed.to_bits(), pairwise_sum(&a).to_bits(), "n = {n}");
        }
    }
}
