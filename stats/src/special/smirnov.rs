//! One-sided Kolmogorov-Smirnov survival function `smirnov(n, d)`, a port of
//! `_smirnov` in scipy's `xsf/cephes/kolmogorov.h` (van Mulbregt's
//! double-double implementation of the Birnbaum-Tingey / Smirnov sum).
//! Only the survival function is ported; the CDF and PDF that `_smirnov`
//! computes alongside it do not affect it.

use super::gamma::expm1;
use super::MINLOG;
use crate::dd::DoubleDouble as Dd;

const SMIRNOV_MAX_COMPUTE_N: i32 = 1_000_000;
const SM_UPPER_MAX_TERMS: i32 = 3;
const SM_UPPERSUM_MIN_N: i32 = 10;
/// Keep both halves of a double-double normalised (kolmogorov.h `SM_MAX_EXPONENT`).
const SM_MAX_EXPONENT: i32 = 960;

/// kolmogorov.h `nextPowerOf2` (which, despite its name, rounds to an integer-ish value).
fn next_power_of_2(x: f64) -> f64 {
    let q = crate::dd::ldexp(x, 1 - f64::MANTISSA_DIGITS as i32);
    let l = (q + x).abs();
    if l == 0.0 {
        x.abs()
    } else {
        let lint = l as i32;
        if f64::from(lint) == l {
            f64::from(lint)
        } else {
            l
        }
    }
}

/// `floor(n x)` and the remainder, computed exactly (kolmogorov.h `modNX`).
/// Returns `(alpha, nxfloor, nx)`.
fn mod_nx(n: i32, x: f64) -> (f64, i32, f64) {
    let nx_d = f64::from(n) * Dd::new(x);
    let nxfloor_d = nx_d.floor();
    let alpha_d = nx_d - nxfloor_d;
    let mut alpha = alpha_d.hi;
    let mut nxfloor = nxfloor_d.hi as i32;
    if alpha == 1.0 {
        nxfloor += 1;
        alpha = 0.0;
    }
    (alpha, nxfloor, nx_d.hi)
}

/// Multiply the binomial coefficient held as mantissa and exponent by `(n-j)/(j+1)`
/// (kolmogorov.h `updateBinomial`).
fn update_binomial(cman: &mut Dd, cexpt: &mut i32, n: i32, j: i32) {
    let rat = Dd::new(f64::from(n - j)) / (f64::from(j) + 1.0);
    let (man2, expt) = (*cman * rat).frexp();
    *cexpt += expt;
    *cman = man2;
}

/// `a^m` for a double-double `a`, trading accuracy for speed (kolmogorov.h `pow_D`).
fn pow_d(a: Dd, m: i32) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::ONE;
        }
        return 1.0 / pow_d(a, -m);
    }
    if a.is_zero() {
        return Dd::ZERO;
    }
    let ans = a.hi.powf(f64::from(m));
    let r = a.lo / a.hi;
    let mut adj = f64::from(m) * r;
    if adj.abs() > 1e-8 {
        if adj.abs() < 1e-4 {
            // First two terms of the Taylor series of (1+r)^m.
            adj += (f64::from(m) * r) * ((f64::from(m) - 1.0) / 2.0 * r);
        } else {
            adj = expm1(f64::from(m) * r.ln_1p());
        }
    }
    Dd::new(ans) + ans * adj
}

/// `(a + b)^m` rounded to double (kolmogorov.h `pow2`).
fn pow2(a: f64, b: f64, m: i32) -> f64 {
    pow_d(Dd::new(a) + b, m).hi
}

/// `a^m` as a mantissa and a separate exponent, so it cannot underflow
/// (kolmogorov.h `pow2Scaled_D`).
fn pow2_scaled_d(a: Dd, m: i32) -> (Dd, i32) {
    if m <= 0 {
        if m == 0 {
            return (Dd::ONE, 0);
        }
        let (ans, a_e1) = pow2_scaled_d(a, -m);
        let (ans, a_e2) = (1.0 / ans).frexp();
        return (ans, -a_e1 + a_e2);
    }
    let (y, y_e) = a.frexp();
    if m == 1 {
        return (y, y_e);
    }
    let mut max_expt = SM_MAX_EXPONENT;
    // Quick check whether y^m might drop below 2^-960 and need splitting.
    if f64::from(m) * (y.hi - 1.0) / y.hi < -f64::from(SM_MAX_EXPONENT) * std::f64::consts::LN_2 {
        let lg2y = y.hi.ln() / std::f64::consts::LN_2;
        let lg_ans = f64::from(m) * lg2y;
        if lg_ans <= -f64::from(SM_MAX_EXPONENT) {
            max_expt = (next_power_of_2(-f64::from(SM_MAX_EXPONENT) / lg2y + 1.0) / 2.0) as i32;
        }
    }
    if m <= max_expt {
        let (ans, ans_e) = pow_d(y, m).frexp();
        return (ans, ans_e + m * y_e);
    }
    let q = m / max_expt;
    let r = m % max_expt;
    // y^m = (y^maxExpt)^q * y^r
    let (y2r, y2r_e) = pow2_scaled_d(y, r);
    let (y2m, y2m_e) = pow2_scaled_d(y, max_expt);
    let (y2mq, y2mq_e) = pow2_scaled_d(y2m, q);
    let (ans, mut ans_e) = (y2r * y2mq).frexp();
    let y2mq_e = y2mq_e + y2m_e * q;
    ans_e += y2mq_e + y2r_e;
    ans_e += m * y_e;
    (ans, ans_e)
}

/// `((a + b) / (c + d))^m` (kolmogorov.h `pow4_D`).
fn pow4_d(a: f64, b: f64, c: f64, d: f64, m: i32) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::ONE;
        }
        return pow4_d(c, d, a, b, -m);
    }
    let a_dd = Dd::new(a) + b;
    let c_dd = Dd::new(c) + d;
    if a_dd.hi == 0.0 && a_dd.lo == 0.0 {
        return if c_dd.is_zero() {
            Dd::new(f64::NAN)
        } else {
            Dd::ZERO
        };
    }
    if c_dd.is_zero() {
        return Dd::new(if a_dd.hi < 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    pow_d(a_dd / c_dd, m)
}

/// One term `A_v(n, x) = C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1)` of the sum
/// (kolmogorov.h `computeAv`).
fn compute_av(n: i32, x: f64, v: i32, cman: Dd, cexpt: i32) -> Dd {
    let t2x = Dd::new(f64::from(n - v)) / f64::from(n) - x;
    let (t2, t2_e) = pow2_scaled_d(t2x, n - v);
    let t1x = Dd::new(f64::from(v)) / f64::from(n) + x;
    let (t1, t1_e) = pow2_scaled_d(t1x, v - 1);
    let ans = t1 * t2 * cman;
    ans.ldexp(cexpt + t1_e + t2_e)
}

/// The exact one-sided Kolmogorov-Smirnov survival function `P(D_n^+ >= d)`
/// (`scipy.special.smirnov`, cephes `smirnov`).
pub fn smirnov(n: i64, d: f64) -> f64 {
    if d.is_nan() {
        return f64::NAN;
    }
    let Ok(n) = i32::try_from(n) else {
        return f64::NAN;
    };
    smirnov_sf(n, d)
}

/// kolmogorov.h `_smirnov`, survival function only.
fn smirnov_sf(n: i32, x: f64) -> f64 {
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }

    let (alpha, nxfl, _nx) = mod_nx(n, x);
    let mut n1mxfl = n - nxfl - if alpha == 0.0 { 0 } else { 1 };
    let mut n1mxceil = n - nxfl;
    // If alpha is 0, the last term belongs to neither the lower nor the upper sum.
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }

    // x <= 1/n
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = pow2(1.0, x, n - 1);
        let cdf = x * t;
        return 1.0 - cdf;
    }
    // The survival function underflows.
    if -2.0 * f64::from(n) * x * x < MINLOG {
        return 0.0;
    }
    // x >= 1 - 1/n
    if nxfl >= n - 1 {
        return pow2(1.0, -x, n);
    }
    // n too large to sum: p ~ e^(-(6nx+1)^2 / 18n)
    if n > SMIRNOV_MAX_COMPUTE_N {
        let logp = -(6.0 * f64::from(n) * x + 1.0).powf(2.0) / 18.0 / f64::from(n);
        let sf = if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 - (-expm1(logp))
        };
        return sf;
    }

    // Use the upper sum only when it has few terms (it alternates in sign).
    let n_upper_terms = n - n1mxceil + 1;
    let use_upper_sum = (n_upper_terms <= 1 && x < 0.5)
        || (n >= SM_UPPERSUM_MIN_N
            && n_upper_terms <= SM_UPPER_MAX_TERMS
            && x <= 0.5 / f64::from(n).sqrt());

    let (start, step, n_terms, first_aj) = if use_upper_sum {
        (n, -1, n - n1mxceil + 1, pow4_d(1.0, x, 1.0, 0.0, n - 1))
    } else {
        (0, 1, n1mxfl + 1, pow4_d(1.0, -x, 1.0, 0.0, n) / x)
    };
    let vmid = n / 2;
    let mut cman = Dd::ONE;
    let mut cexpt = 0;
    let mut aj_sum = Dd::ZERO + first_aj;
    update_binomial(&mut cman, &mut cexpt, n, 0);
    for j in 1..n_terms {
        let v = start + j * step;
        let aj = compute_av(n, x, v, cman, cexpt);
        if aj.is_finite() && !aj.is_zero() {
            aj_sum = aj_sum + aj;
        }
        // Safe to terminate early?
        if !aj.is_zero() {
            if (4.0 * f64::from(n_terms - j) * aj.hi.abs()) < (f64::EPSILON * aj_sum.hi)
                && j != n_terms - 1
            {
                break;
            }
        } else if j > vmid {
            break;
        }
        update_binomial(&mut cman, &mut cexpt, n, j);
    }
    let prob = (x * aj_sum).hi;
    let sf = if step < 0 { 1.0 - prob } else { prob };
    sf.clamp(0.0, 1.0)
}
