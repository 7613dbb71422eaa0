//! Polynomial evaluation helpers from scipy's `xsf/cephes/polevl.h`.
//! The coefficient slices are stored highest degree first, as in Cephes.

/// `coef[0] x^N + ... + coef[N]` by Horner's rule (cephes `polevl`, N = len - 1).
#[inline]
pub(crate) fn polevl(x: f64, coef: &[f64]) -> f64 {
    let mut ans = coef[0];
    for &c in &coef[1..] {
        ans = ans * x + c;
    }
    ans
}

/// Like [`polevl`] with an implicit leading coefficient 1 (cephes `p1evl`, N = len).
#[inline]
pub(crate) fn p1evl(x: f64, coef: &[f64]) -> f64 {
    let mut ans = x + coef[0];
    for &c in &coef[1..] {
        ans = ans * x + c;
    }
    ans
}

/// Rational function `num(x) / denom(x)`, evaluated in `1/x` for `|x| > 1`
/// (cephes `ratevl`). Both slices are stored highest degree first.
pub(crate) fn ratevl(x: f64, num: &[f64], denom: &[f64]) -> f64 {
    let absx = x.abs();
    let (num_ans, denom_ans) = if absx > 1.0 {
        // Horner in y = 1/x over the coefficients in reverse order.
        let y = 1.0 / x;
        let eval = |c: &[f64]| {
            let mut it = c.iter().rev();
            let mut ans = *it.next().expect("non-empty coefficients");
            for &v in it {
                ans = ans * y + v;
            }
            ans
        };
        (eval(num), eval(denom))
    } else {
        let eval = |c: &[f64]| {
            let mut ans = c[0];
            for &v in &c[1..] {
                ans = ans * x + v;
            }
            ans
        };
        (eval(num), eval(denom))
    };
    if absx > 1.0 {
        let i = num.len() as i32 - denom.len() as i32;
        x.powf(f64::from(i)) * num_ans / denom_ans
    } else {
        num_ans / denom_ans
    }
}
