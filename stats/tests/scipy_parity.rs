//! Compares every statistic with reference values computed by scipy 1.17.1 /
//! numpy 2.4 (and Evidently 0.7.23's formulas) in `scipy_values.json`, which
//! `make_scipy_values.py` regenerates deterministically.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::LazyLock;
use streamwatch_stats::special::{chi2_sf, erf, erfc, kolmogn_sf, ndtr, smirnov};
use streamwatch_stats::{
    chisquare_pvalue, jensen_shannon, jensen_shannon_binned, ks_2samp, ks_2samp_pvalue,
    wasserstein_normed, z_test_pvalue, Distribution,
};

/// The required agreement with scipy.
const REL_TOL: f64 = 1e-12;
/// Below this magnitude a reference value counts as zero.
const ABS_TOL: f64 = 1e-300;

/// A statistic of a reference and a current sample.
type Statistic = fn(&Distribution, &Distribution) -> f64;

static DATA: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scipy_values.json");
    let text = std::fs::read_to_string(path).expect("read scipy_values.json");
    serde_json::from_str(&text).expect("parse scipy_values.json")
});

/// Floats are stored as Python `repr` strings ("inf", "nan", ...).
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("bad float {s}")),
        Value::Number(n) => n.as_f64().expect("number"),
        _ => panic!("not a number: {v}"),
    }
}

fn rows(key: &str) -> &'static [Value] {
    DATA[key].as_array().expect(key)
}

fn distribution(pairs: &Value) -> Distribution {
    Distribution::from_counts(
        pairs
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| (num(&p[0]), p[1].as_u64().expect("count"))),
    )
}

/// Relative error of `got` against scipy's `want`, 0 for equal non-finite values.
fn rel_err(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        0.0
    } else if want.abs() < ABS_TOL {
        if got.abs() < ABS_TOL {
            0.0
        } else {
            f64::INFINITY
        }
    } else if !want.is_finite() || !got.is_finite() {
        f64::INFINITY
    } else {
        (got - want).abs() / want.abs()
    }
}

/// Collects the worst error per statistic and every comparison over tolerance.
#[derive(Default)]
struct Report {
    worst: Vec<(String, f64, usize)>,
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, stat: &str, label: impl FnOnce() -> String, got: f64, want: f64) {
        let err = rel_err(got, want);
        match self.worst.iter_mut().find(|(s, _, _)| s == stat) {
            Some(entry) => {
                entry.1 = entry.1.max(err);
                entry.2 += 1;
            }
            None => self.worst.push((stat.to_string(), err, 1)),
        }
        // rel_err is never NaN, so this also catches an infinite error.
        if err > REL_TOL {
            self.failures.push(format!(
                "{stat} {}: got {got:e}, scipy {want:e}, rel err {err:e}",
                label()
            ));
        }
    }

    fn finish(self) {
        for (stat, worst, n) in &self.worst {
            eprintln!("{stat:>14}: {n:6} values, max rel err {worst:.3e}");
        }
        assert!(
            self.failures.is_empty(),
            "{} comparisons off by more than {REL_TOL:e}:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

#[test]
fn normal_cdf_and_error_functions() {
    let mut report = Report::default();
    for r in rows("ndtr") {
        let x = num(&r[0]);
        report.check("ndtr", || format!("x={x}"), ndtr(x), num(&r[1]));
        // The Z-test needs ndtr bit for bit.
        assert_eq!(ndtr(x).to_bits(), num(&r[1]).to_bits(), "ndtr({x})");
    }
    for r in rows("erf_erfc") {
        let x = num(&r[0]);
        report.check("erf", || format!("x={x}"), erf(x), num(&r[1]));
        report.check("erfc", || format!("x={x}"), erfc(x), num(&r[2]));
    }
    report.finish();
}

#[test]
fn chi_square_survival() {
    let mut report = Report::default();
    for r in rows("chi2_sf") {
        let (df, x) = (num(&r[0]), num(&r[1]));
        report.check(
            "chi2_sf",
            || format!("df={df} x={x}"),
            chi2_sf(df, x),
            num(&r[2]),
        );
    }
    report.finish();
}

#[test]
fn kolmogorov_smirnov_distributions() {
    let mut report = Report::default();
    for r in rows("smirnov") {
        let (n, d) = (r[0].as_i64().expect("n"), num(&r[1]));
        report.check(
            "smirnov",
            || format!("n={n} d={d}"),
            smirnov(n, d),
            num(&r[2]),
        );
    }
    for r in rows("kstwo_sf") {
        let (n, x) = (r[0].as_u64().expect("n"), num(&r[1]));
        report.check(
            "kstwo_sf",
            || format!("n={n} x={x}"),
            kolmogn_sf(n, x),
            num(&r[2]),
        );
    }
    report.finish();
}

#[test]
fn evidently_statistics_on_counts() {
    let references: HashMap<&str, Distribution> = DATA["references"]
        .as_object()
        .expect("references")
        .iter()
        .map(|(name, pairs)| (name.as_str(), distribution(pairs)))
        .collect();
    let mut report = Report::default();
    for case in rows("cases") {
        let name = case["name"].as_str().expect("name");
        let r = &references[case["reference"].as_str().expect("reference")];
        let c = distribution(&case["current"]);
        let label = || name.to_string();
        let stats: [(&str, Statistic); 7] = [
            ("ks", ks_2samp_pvalue),
            ("ks_statistic", |r, c| ks_2samp(r, c).statistic),
            ("chisquare", chisquare_pvalue),
            ("z", z_test_pvalue),
            ("wasserstein", wasserstein_normed),
            ("js", jensen_shannon),
            ("js_binned", jensen_shannon_binned),
        ];
        for (key, stat) in stats {
            if let Some(want) = case.get(key) {
                report.check(key, label, stat(r, &c), num(want));
            }
        }
        if let Some(mean) = case.get("mean") {
            report.check("mean", label, c.mean(), num(mean));
            report.check("std", label, c.population_std(), num(&case["std"]));
            for q in case["quantiles"].as_array().expect("quantiles") {
                let (p, want) = (num(&q[0]), num(&q[1]));
                report.check(
                    "quantile",
                    || format!("{name} q={p}"),
                    c.quantile_linear(p),
                    want,
                );
            }
        }
    }
    report.finish();
}
