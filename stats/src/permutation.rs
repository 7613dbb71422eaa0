//! numpy's legacy random generator (`np.random.seed` / `RandomState`,
//! MT19937) as far as Evidently's permutation tests use it, and Evidently's
//! `TVD` drift test (`tvd_stattest.py`).

use crate::distribution::{Distribution, Union};
use crate::sum::pairwise_sum;
use crate::StatTestError;

const N: usize = 624;
const M: usize = 397;

/// numpy's MT19937 as seeded by `np.random.seed(seed)` (`mt19937_seed`).
#[derive(Clone)]
pub(crate) struct Mt19937 {
    key: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// `np.random.seed(seed)` for an integer seed in `[0, 2^32)`.
    pub fn new(seed: u32) -> Self {
        let mut key = [0_u32; N];
        let mut s = seed;
        for (pos, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253_u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(pos as u32 + 1);
        }
        Self { key, pos: N }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        let mag = |y: u32| (y >> 1) ^ (0_u32.wrapping_sub(y & 1) & MATRIX_A);
        for i in 0..N - M {
            let y = (self.key[i] & UPPER) | (self.key[i + 1] & LOWER);
            self.key[i] = self.key[i + M] ^ mag(y);
        }
        for i in N - M..N - 1 {
            let y = (self.key[i] & UPPER) | (self.key[i + 1] & LOWER);
            self.key[i] = self.key[i + M - N] ^ mag(y);
        }
        let y = (self.key[N - 1] & UPPER) | (self.key[0] & LOWER);
        self.key[N - 1] = self.key[M - 1] ^ mag(y);
        self.pos = 0;
    }

    /// `mt19937_next32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: uniform in `[0, max]` by masked rejection.
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        if max <= 0xffff_ffff {
            loop {
                let value = u64::from(self.next_u32()) & mask;
                if value <= max {
                    return value;
                }
            }
        } else {
            loop {
                let hi = u64::from(self.next_u32());
                let value = ((hi << 32) | u64::from(self.next_u32())) & mask;
                if value <= max {
                    return value;
                }
            }
        }
    }

    /// `RandomState.permutation(n)`: `arange(n)` shuffled in place by the
    /// legacy Fisher-Yates loop (`for i in reversed(range(1, n)): j =
    /// random_interval(i); swap(i, j)`), written into `out`.
    pub fn permutation_into(&mut self, n: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend(0..n as u32);
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            out.swap(i, j);
        }
    }
}

/// For the pooled sample in Evidently's order, assuming each sample arrives
/// sorted (`reference.tolist() + current.tolist()`): the index of each
/// position's value among the distinct pooled values. Also returns the
/// pooled counts per distinct value.
pub(crate) fn pooled_positions(
    reference: &Distribution,
    current: &Distribution,
) -> (Vec<u32>, Vec<u64>) {
    let union: Vec<_> = Union::new(reference, current).collect();
    let total = (reference.total() + current.total()) as usize;
    let mut positions = Vec::with_capacity(total);
    for (k, item) in union.iter().enumerate() {
        positions.extend(std::iter::repeat_n(k as u32, item.count_a as usize));
    }
    for (k, item) in union.iter().enumerate() {
        positions.extend(std::iter::repeat_n(k as u32, item.count_b as usize));
    }
    let pooled = union.iter().map(|i| i.count_a + i.count_b).collect();
    (positions, pooled)
}

/// Evidently's `_total_variation_distance`: `0.5 * sum |r / sum(r) - c / sum(c)|`
/// over the keys (numpy pairwise sum in key order).
fn tvd(r: &[u64], c: &[u64], buf: &mut Vec<f64>) -> f64 {
    let sr: u64 = r.iter().sum();
    let sc: u64 = c.iter().sum();
    buf.clear();
    buf.extend(
        r.iter()
            .zip(c)
            .map(|(&a, &b)| (a as f64 / sr as f64 - b as f64 / sc as f64).abs()),
    );
    0.5 * pairwise_sum(buf)
}

/// The total variation distance between the value frequencies of `R` and
/// `C` (keys = distinct values of `R ∪ C` in ascending order), Evidently's
/// TVD statistic.
pub fn total_variation_distance(reference: &Distribution, current: &Distribution) -> f64 {
    let (r, c): (Vec<u64>, Vec<u64>) = Union::new(reference, current)
        .map(|i| (i.count_a, i.count_b))
        .unzip();
    tvd(&r, &c, &mut Vec::new())
}

/// Evidently's `TVD` drift score, which is **a permutation p-value**, not the
/// distance: `np.random.seed(0)`, then 1000 times
/// `np.random.choice(pooled, n_R, replace=False)` as the new reference (the
/// rest is the new current), and `p = #{observed <= TVD_perm} / 1000`.
/// Drift if `p < 0.1`.
///
/// The permutations act on positions of `reference.tolist() + current.tolist()`,
/// so Evidently's value depends on the raw order of the samples; counts do
/// not have one. This reproduces Evidently exactly (same MT19937 stream and
/// shuffle) **when both samples are passed in ascending order**; for another
/// raw order it is another, independent draw of the same Monte-Carlo
/// estimate of the permutation p-value `pi` (standard deviation
/// `sqrt(pi (1-pi) / 1000) <= 0.016` each), so the two differ by at most
/// about `3 sqrt(2 pi (1-pi) / 1000)` (<= 0.067) with 99.7% probability. Keys are in ascending order (Evidently:
/// Python `set` order, the same for small non-negative integer codes).
///
/// Cost: 1000 shuffles of the pooled sample, `O(1000 (n_R + n_C))`, as in
/// Evidently.
pub fn tvd_pvalue(reference: &Distribution, current: &Distribution) -> Result<f64, StatTestError> {
    if reference.is_empty() || current.is_empty() {
        return Err(StatTestError::EmptySample);
    }
    const ITERATIONS: usize = 1000;
    let (positions, pooled) = pooled_positions(reference, current);
    let (r_obs, c_obs): (Vec<u64>, Vec<u64>) = Union::new(reference, current)
        .map(|i| (i.count_a, i.count_b))
        .unzip();
    let mut buf = Vec::with_capacity(pooled.len());
    let observed = tvd(&r_obs, &c_obs, &mut buf);
    let n_ref = reference.total() as usize;
    let mut rng = Mt19937::new(0);
    let mut perm = Vec::with_capacity(positions.len());
    let mut new_ref = vec![0_u64; pooled.len()];
    let mut new_cur = vec![0_u64; pooled.len()];
    let mut hits = 0_usize;
    for _ in 0..ITERATIONS {
        rng.permutation_into(positions.len(), &mut perm);
        new_ref.fill(0);
        for &p in &perm[..n_ref] {
            new_ref[positions[p as usize] as usize] += 1;
        }
        for ((c, &t), &r) in new_cur.iter_mut().zip(&pooled).zip(&new_ref) {
            *c = t - r;
        }
        let stat = tvd(&new_ref, &new_cur, &mut buf);
        if observed <= stat.abs() {
            hits += 1;
        }
    }
    Ok(hits as f64 / ITERATIONS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_stream() {
        // The MT19937 reference output for init_genrand(5489) starts with
        // 3499211612, 581869302, 3890346734.
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        assert_eq!(mt.next_u32(), 581_869_302);
        assert_eq!(mt.next_u32(), 3_890_346_734);
    }

    #[test]
    fn numpy_seeded_permutations() {
        // np.random.seed(seed); np.random.permutation(n), from the parity data.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/evidently_family_values.json"
        );
        let data: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse");
        let cases = data["special"]["permutations"]
            .as_array()
            .expect("permutations");
        assert!(!cases.is_empty());
        for case in cases {
            let seed = case["seed"].as_u64().expect("seed") as u32;
            let n = case["n"].as_u64().expect("n") as usize;
            let want: Vec<u32> = case["perm"]
                .as_array()
                .expect("perm")
                .iter()
                .map(|v| v.as_u64().expect("index") as u32)
                .collect();
            let mut got = Vec::new();
            Mt19937::new(seed).permutation_into(n, &mut got);
            assert_eq!(got, want, "seed {seed}, n {n}");
        }
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut mt = Mt19937::new(0);
        let mut p = Vec::new();
        mt.permutation_into(100, &mut p);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
    }

    #[test]
    fn tvd_distance() {
        let a = Distribution::from_counts([(0.0, 1), (1.0, 1)]);
        let b = Distribution::from_counts([(1.0, 1), (2.0, 1)]);
        assert_eq!(total_variation_distance(&a, &b), 0.5);
    }
}
