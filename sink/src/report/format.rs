//! How numbers and times read on the page.

use chrono::NaiveDateTime;

/// A value with `digits` significant digits, without trailing zeros: `0.19`, `12.5`, `0.0001234`;
/// tiny values in scientific notation (`3.2e-7`); `–` for a missing or non-finite value.
pub fn number(value: Option<f64>, digits: i32) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return "–".to_owned();
    };
    if v == 0.0 {
        return "0".to_owned();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if magnitude < -4 {
        return format!("{:.*e}", (digits - 1).clamp(0, 3) as usize, v);
    }
    let decimals = (digits - 1 - magnitude).clamp(0, 10) as usize;
    trim(format!("{v:.decimals$}"))
}

/// A share in percent: `8.03%`.
pub fn percent(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => format!("{}%", number(Some(v * 100.0), 3)),
        None => "–".to_owned(),
    }
}

/// An integer with thousands separators: `61,921`.
pub fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A window start: `2022-02-01` at midnight, `2022-02-01 06:00` otherwise.
pub fn time(ts: NaiveDateTime) -> String {
    if ts.time() == chrono::NaiveTime::MIN {
        ts.format("%Y-%m-%d").to_string()
    } else if ts.and_utc().timestamp() % 60 == 0 {
        ts.format("%Y-%m-%d %H:%M").to_string()
    } else {
        ts.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

fn trim(mut text: String) -> String {
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(Some(0.19), 4), "0.19");
        assert_eq!(number(Some(0.123456), 4), "0.1235");
        assert_eq!(number(Some(12.5), 4), "12.5");
        assert_eq!(number(Some(1234.5678), 4), "1235");
        assert_eq!(number(Some(-2.0), 4), "-2");
        assert_eq!(number(Some(0.0), 4), "0");
        assert_eq!(number(Some(3.2e-7), 3), "3.20e-7");
        assert_eq!(number(None, 4), "–");
        assert_eq!(number(Some(f64::NAN), 4), "–");
        assert_eq!(percent(Some(0.08025169217332619)), "8.03%");
        assert_eq!(percent(Some(0.5)), "50%");
        assert_eq!(count(61_921), "61,921");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1_000_000), "-1,000,000");
        let day = crate::report::parse_time_bound("2022-02-03").unwrap();
        assert_eq!(time(day), "2022-02-03");
        assert_eq!(time(day + chrono::Duration::hours(6)), "2022-02-03 06:00");
    }
}
