//! Survival function of the two-sided one-sample Kolmogorov-Smirnov statistic
//! `D_n` (`scipy.stats.kstwo.sf`), a port of `_kolmogn(n, x, cdf=False)` in
//! scipy's `stats/_ksstats.py`, which follows Simard & L'Ecuyer (2011):
//! Ruben-Gambino for small and large `t = n x`, `2 * smirnov` for `x >= 0.5`
//! or large `n x^2`, the Durbin matrix (Marsaglia-Tsang-Wang), Pomeranz's
//! recursion and the Pelz-Good asymptotic series elsewhere.
//!
//! Where scipy's arithmetic is sensitive to rounding it is mirrored: numpy
//! promotes some intermediate products to 80-bit `long double` (emulated here
//! with double-double, which is at least as accurate), and Pomeranz's
//! recursion reproduces numpy's `convolve` summation order.

use super::smirnov::smirnov;
use crate::dd::{ldexp, DoubleDouble as Dd};
use std::f64::consts::PI;

const E128: i32 = 128;
/// 2^128 and 2^-128, the rescaling factors of `_ksstats.py`.
const EP128: f64 = f64::from_bits(((1023 + E128) as u64) << 52);
const EM128: f64 = f64::from_bits(((1023 - E128) as u64) << 52);
const MIN_LOG: f64 = -708.0;

/// Stirling coefficients `B_2j / (2j) / (2j-1)`, j = 8..1 (`_STIRLING_COEFFS`).
#[allow(clippy::excessive_precision)]
const STIRLING_COEFFS: [f64; 8] = [
    -2.955065359477124183e-2,
    6.4102564102564102564e-3,
    -1.9175269175269175269e-3,
    8.4175084175084175084e-4,
    -5.952380952380952381e-4,
    7.9365079365079365079e-4,
    -2.7777777777777777778e-3,
    8.3333333333333333333e-2,
];

/// `log(n! / n^n)` by Stirling's series (`_log_nfactorial_div_n_pow_n`).
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    let rn = 1.0 / n;
    // np.polyval: Horner's rule starting from 0.
    let x = rn / n;
    let poly = STIRLING_COEFFS.iter().fold(0.0, |y, &c| y * x + c);
    n.ln() / 2.0 - n + (2.0 * PI).ln() / 2.0 + rn * poly
}

/// The survival function `P(D_n >= x)` of the two-sided one-sample
/// Kolmogorov-Smirnov statistic (`scipy.stats.kstwo.sf(x, n)`).
/// `n = 0` gives NaN.
pub fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    let nf = n as f64;
    // rv_continuous.sf: 1 at or below the support's lower end 0.5/n, 0 at or above 1.
    if x <= 0.5 / nf {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    kolmogn_sf_inner(n, x).clamp(0.0, 1.0)
}

/// `_kolmogn(n, x, cdf=False)` for `0 < x < 1`.
fn kolmogn_sf_inner(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben-Gambino: 1/(2n) <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            let w = 1.0 / nf;
            let f = 2.0 * t - 1.0;
            (1..=n).fold(1.0, |p, i| p * ((i as f64 * w) * f))
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return 1.0 - prob;
    }
    if t >= nf - 1.0 {
        // Ruben-Gambino
        return 2.0 * (1.0 - x).powf(nf);
    }
    if x >= 0.5 {
        return 2.0 * smirnov(n as i64, x);
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            return kolmogn_dmtw_cdf(n, x).one_minus();
        }
        if nxsquared <= 4.0 {
            return pomeranz_sf(n, x);
        }
        // Miller approximation of 2 * smirnov.
        return 2.0 * smirnov(n as i64, x);
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return 2.0 * smirnov(n as i64, x);
    }
    // (scipy's shared CDF/SF code also tests `nxsquared >= 18` here, which
    // the survival function has already handled above.)
    if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x).one_minus()
    } else {
        1.0 - pelz_good_cdf(n, x)
    }
}

/// Square matrix product `a * b` (row-major, side `m`). numpy uses BLAS
/// `dgemm`, whose different summation order moves the result by a few ulps;
/// the Durbin region only serves p-values above about 0.4, where that is harmless.
fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * m];
    for i in 0..m {
        for k in 0..m {
            let aik = a[i * m + k];
            for j in 0..m {
                c[i * m + j] += aik * b[k * m + j];
            }
        }
    }
    c
}

/// `P(D_n <= d)` by Durbin's matrix algorithm as organised by Marsaglia,
/// Tsang and Wang (`_kolmogn_DMTW`, cdf=True).
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> ScipyScalar {
    if d >= 1.0 {
        return ScipyScalar::new(1.0);
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return ScipyScalar::new(0.0);
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    // v[j] = (1 - h^(j+1)) / (j+1)!  (except v[m-1]);  w[j] = 1/j!
    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powf(j as f64)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        // H[i-1:, i] = w[:m-i+1]
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    // k-th row of H^n by binary powering, rescaling by 2^128 as needed.
    let mut hpwr = vec![0.0; m * m];
    for i in 0..m {
        hpwr[i * m + i] = 1.0;
    }
    let mut nn = n;
    let mut expnt: i64 = 0;
    let mut hexpnt: i64 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > EP128 {
            for e in &mut hm {
                *e /= EP128;
            }
            hexpnt += i64::from(E128);
        }
        nn /= 2;
    }
    // Multiply by n!/n^n. scipy's first 2^128 rescaling promotes `p` to long
    // double (`_EP128` is a numpy longdouble); double-double stands in for it.
    let nf = n as f64;
    let mut p = ScipyScalar::new(hpwr[(k - 1) * m + (k - 1)]);
    for i in 1..=n {
        p = p.mul(i as f64).div(nf);
        if p.hi().abs() < EM128 {
            p = p.promote_mul(EP128);
            expnt -= i64::from(E128);
        }
    }
    p.ldexp(expnt).clip01()
}

/// A numpy scalar that starts as float64 and becomes long double once it is
/// multiplied by one of `_ksstats.py`'s longdouble constants.
#[derive(Clone, Copy)]
enum ScipyScalar {
    F64(f64),
    Long(Dd),
}

impl ScipyScalar {
    fn new(x: f64) -> Self {
        Self::F64(x)
    }

    fn hi(self) -> f64 {
        match self {
            Self::F64(x) => x,
            Self::Long(x) => x.hi,
        }
    }

    fn mul(self, y: f64) -> Self {
        match self {
            Self::F64(x) => Self::F64(x * y),
            Self::Long(x) => Self::Long(x * y),
        }
    }

    fn div(self, y: f64) -> Self {
        match self {
            Self::F64(x) => Self::F64(x / y),
            Self::Long(x) => Self::Long(x / y),
        }
    }

    /// Multiplication by a longdouble constant: the result is long double.
    fn promote_mul(self, y: f64) -> Self {
        match self {
            Self::F64(x) => Self::Long(Dd::new(x) * y),
            Self::Long(x) => Self::Long(x * y),
        }
    }

    /// `np.ldexp(p, e)` (scipy skips it for `e = 0`).
    fn ldexp(self, e: i64) -> Self {
        if e == 0 {
            return self;
        }
        let e = e.clamp(-10_000, 10_000) as i32;
        match self {
            Self::F64(x) => Self::F64(ldexp(x, e)),
            Self::Long(x) => Self::Long(x.ldexp(e)),
        }
    }

    /// `np.clip(p, 0, 1)`, keeping the width.
    fn clip01(self) -> Self {
        match self {
            Self::F64(x) => Self::F64(x.clamp(0.0, 1.0)),
            Self::Long(x) => Self::Long(if x.hi > 1.0 || (x.hi == 1.0 && x.lo > 0.0) {
                Dd::ONE
            } else if x.hi < 0.0 {
                Dd::ZERO
            } else {
                x
            }),
        }
    }

    /// `1.0 - p`, in the scalar's width, rounded to double.
    fn one_minus(self) -> f64 {
        match self {
            Self::F64(x) => 1.0 - x,
            Self::Long(x) => (1.0 - x).hi,
        }
    }
}

/// Row `i` interval end points of the Pomeranz recursion (`_pomeranz_compute_j1j2`).
fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let ip1div2 = (i + 1) / 2;
        let ip1mod2 = (i + 1) % 2;
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// `P(D_n >= x)` via Pomeranz's recursion (`_kolmogn_Pomeranz`, cdf=True,
/// followed by `_kolmogn`'s `1 - cdf`, evaluated in the width scipy has by then).
fn pomeranz_sf(n: u64, x: f64) -> f64 {
    let ni = n as i64;
    let nf = n as f64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    // (g/n)^m/m!, (2g/n)^m/m!, ((1-2g)/n)^m/m!: Poisson probabilities without the normaliser.
    let mut gpower = vec![0.0; npwrs];
    let mut twogpower = vec![0.0; npwrs];
    let mut onem2gpower = vec![0.0; npwrs];
    gpower[0] = 1.0;
    twogpower[0] = 1.0;
    onem2gpower[0] = 1.0;
    let g_over_n = g / nf;
    let two_g_over_n = 2.0 * g / nf;
    let one_minus_two_g_over_n = (1.0 - 2.0 * g) / nf;
    for m in 1..npwrs {
        let mf = m as f64;
        gpower[m] = gpower[m - 1] * g_over_n / mf;
        twogpower[m] = twogpower[m - 1] * two_g_over_n / mf;
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / mf;
    }

    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0_i64, 0_i64);
    let mut expnt: i64 = 0;
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    let mut conv = vec![0.0; 2 * npwrs];
    for i in 1..(2 * ni + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.fill(0.0);
        let (nj1, j2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let ln2 = ln2 as usize;
            let a = &v0[(k1 - v0s) as usize..(k1 - v0s) as usize + ln2];
            let b = &pwrs[..ln2];
            // The window of np.convolve(a, b) that the recursion keeps.
            let conv_start = (j1 - k1) as usize;
            let conv_len = (j2 - j1 + 1) as usize;
            for (out, slot) in conv[..conv_len].iter_mut().enumerate() {
                *slot = numpy_convolve_at(a, b, conv_start + out);
            }
            v1[..conv_len].copy_from_slice(&conv[..conv_len]);
            // Rescale to avoid underflow.
            let vmax = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < vmax && vmax < EM128 {
                for e in &mut v1 {
                    *e *= EP128;
                }
                expnt -= i64::from(E128);
            }
            v1s = v0s + j1 - k1;
        }
    }

    // Multiply by n! (the first 2^-128 rescaling switches scipy to long double).
    let mut ans = ScipyScalar::new(v1[(ni - v1s) as usize]);
    for m in 1..=n {
        if ans.hi().abs() > EP128 {
            ans = ans.promote_mul(EM128);
            expnt += i64::from(E128);
        }
        ans = ans.mul(m as f64);
    }
    ans.ldexp(expnt).clip01().one_minus()
}

/// Element `k` of `np.convolve(a, b)` for equal-length `a` and `b`, summed the
/// way numpy 2.4 does on this platform, because Pomeranz's recursion amplifies
/// rounding differences to ~1e-12 in small p-values. numpy's `correlate` takes
/// `sum_i a[i] b[k-i]` (i ascending) through `cblas_ddot`, except for the full
/// overlap of kernels of length <= 11 (`small_correlate`, a plain loop).
fn numpy_convolve_at(a: &[f64], b: &[f64], k: usize) -> f64 {
    let len = a.len();
    let lo = (k + 1).saturating_sub(len);
    let hi = k.min(len - 1);
    let terms = (lo..=hi).map(|i| (a[i], b[k - i]));
    if k == len - 1 && len <= 11 {
        terms.fold(0.0, |s, (x, y)| s + x * y)
    } else {
        0.0 + openblas_ddot(terms, hi + 1 - lo)
    }
}

/// OpenBLAS's `ddot` for unit strides with the Haswell micro-kernel (the
/// kernel numpy's bundled OpenBLAS runs with `OPENBLAS_CORETYPE=Haswell`, as on
/// this project's machines): 16 FMA accumulators over blocks of 16, reduced
/// pairwise, then a plain loop over the tail.
fn openblas_ddot(mut terms: impl Iterator<Item = (f64, f64)>, n: usize) -> f64 {
    let blocked = n & !15;
    let mut dot = 0.0;
    if blocked > 0 {
        let mut acc = [0.0_f64; 16];
        for _ in 0..blocked / 16 {
            for lane in &mut acc {
                let (x, y) = terms.next().expect("n terms");
                *lane = x.mul_add(y, *lane);
            }
        }
        let half = |i: usize| [acc[i] + acc[i + 2], acc[i + 1] + acc[i + 3]];
        let (r4, r5, r6, r7) = (half(0), half(4), half(8), half(12));
        let r4 = [r4[0] + r5[0], r4[1] + r5[1]];
        let r6 = [r6[0] + r7[0], r6[1] + r7[1]];
        let r4 = [r4[0] + r6[0], r4[1] + r6[1]];
        dot = r4[0] + r4[1];
    }
    for (x, y) in terms {
        dot += y * x;
    }
    dot
}

/// Pelz-Good approximation to `P(D_n <= x)` (`_kolmogn_PelzGood`, cdf=True).
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let zsquared = z.powf(2.0);
    let zthree = z.powf(3.0);
    let zfour = z.powf(4.0);
    let zsix = z.powf(6.0);
    let pi_squared = PI.powf(2.0);
    let pi_four = PI.powf(4.0);
    let pi_six = PI.powf(6.0);

    let qlog = -pi_squared / 8.0 / zsquared;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();

    // Coefficients of the terms of K1, K2 and K3.
    let k1a = -zsquared;
    let k1b = pi_squared / 4.0;
    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * pi_squared / 4.0;
    let k2c = pi_four * (1.0 - 2.0 * zsquared) / 16.0;
    let k3d = pi_six * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = pi_four * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = pi_squared * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powf(8.0);

    // Horner scheme for sum c_i q^(i^2) over odd i.
    let mut k0to3 = [0.0_f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let msquared = m * m;
        let mfour = msquared * msquared;
        let msix = mfour * msquared;
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * msquared,
            k2a + k2b * msquared + k2c * mfour,
            k3a + k3b * msquared + k3c * mfour + k3d * msix,
        ];
        for (acc, c) in k0to3.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let divisors = [z, 6.0 * zfour, 72.0 * z.powf(7.0), 6480.0 * z.powf(10.0)];
    for (acc, d) in k0to3.iter_mut().zip(divisors) {
        *acc = *acc * q * sqrt2pi / d;
    }

    // The remaining sums over all integers k, for K2 and K3.
    let q = (-pi_squared / 2.0 / zsquared).exp();
    let sqrt3z = 3.0_f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for k in (1..=maxk).rev() {
        let ksquared = (k * k) as f64;
        let kspi = PI * k as f64;
        let qpwer = q.powf(ksquared);
        k2extra += ksquared * qpwer;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwer;
    }
    k0to3[2] += k2extra * (pi_squared * sqrt2pi / (-36.0 * zthree));
    k0to3[3] += k3extra * (pi_squared * sqrt2pi / (216.0 * zsix));
    let powers_of_n = [1.0, nf.powf(0.5), nf, nf.powf(1.5)];
    k0to3
        .iter()
        .zip(powers_of_n)
        .fold(0.0, |s, (k, p)| s + k / p)
}
