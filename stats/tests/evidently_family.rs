//! Compares every tabular drift test with Evidently 0.7.23's own results in
//! `evidently_family_values.json` (written by `make_evidently_family_values.py`):
//! each score within `REL_TOL` relative, each drift flag and each threshold
//! exactly, and an error wherever Evidently raises.
//!
//! Documented exceptions (see each function's notes):
//! * the asymptotic Cramér-von Mises p-value is `1 - cdf` with numpy's (SVML)
//!   `exp` inside the cdf: it may also differ by `CVM_ABS_TOL` absolute;
//! * Epps-Singleton: scipy's own p-value moves by up to ~1.5e-10 relative
//!   when only the order of the input changes (summation order and LAPACK on
//!   an ill-conditioned 4x4 covariance), so it is compared to `ES_REL_TOL`;
//! * empirical MMD (a permutation p-value, reproducible for the seeded numpy
//!   stream and sorted input): each permuted statistic that ties the observed
//!   one to rounding may flip in Evidently, so `|dp| <= ties / 100`, and the
//!   drift flag must match when there is no tie.

use serde_json::Value;
use std::sync::LazyLock;
use streamwatch_stats::special::{kv, stdtr};
use streamwatch_stats::{empirical_mmd_permutations, ColumnType, Distribution, StatTest, MMD_SEED};

/// The required agreement with Evidently.
const REL_TOL: f64 = 1e-12;
/// Below this magnitude a reference value counts as zero.
const ABS_TOL: f64 = 1e-300;
/// The asymptotic Cramér-von Mises p-value may also differ by this much.
const CVM_ABS_TOL: f64 = 1e-15;
/// Epps-Singleton's agreement (scipy's own spread over input orders is ~1.5e-10).
const ES_REL_TOL: f64 = 5e-10;
/// Permuted MMD statistics this close to the observed one count as ties.
const MMD_TIE: f64 = 1e-9;

static DATA: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/evidently_family_values.json"
    );
    let text = std::fs::read_to_string(path).expect("read evidently_family_values.json");
    serde_json::from_str(&text).expect("parse evidently_family_values.json")
});

/// Floats are stored as Python `repr` strings ("inf", "nan", ...).
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("bad float {s}")),
        Value::Number(n) => n.as_f64().expect("number"),
        _ => panic!("not a number: {v}"),
    }
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

/// Relative error of `got` against `want`, 0 for equal non-finite values.
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

/// The worst error per test and every disagreement.
#[derive(Default)]
struct Report {
    worst: Vec<(String, f64, usize)>,
    failures: Vec<String>,
}

impl Report {
    fn record(&mut self, key: &str, err: f64) {
        match self.worst.iter_mut().find(|(s, _, _)| s == key) {
            Some(entry) => {
                entry.1 = entry.1.max(err);
                entry.2 += 1;
            }
            None => self.worst.push((key.to_string(), err, 1)),
        }
    }

    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    fn finish(self) {
        for (key, worst, n) in &self.worst {
            eprintln!("{key:>18}: {n:5} values, max rel err {worst:.3e}");
        }
        assert!(
            self.failures.is_empty(),
            "{} disagreements with Evidently:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

#[test]
fn every_registered_test_matches_evidently() {
    let mut report = Report::default();
    let mut seen = std::collections::HashSet::new();
    for case in DATA["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let column_type = match case["column_type"].as_str().expect("type") {
            "num" => ColumnType::Numerical,
            "cat" => ColumnType::Categorical,
            other => panic!("column type {other}"),
        };
        let r = distribution(&case["reference"]);
        let c = distribution(&case["current"]);
        for (test_name, want) in case["results"].as_object().expect("results") {
            let test = StatTest::from_name(test_name)
                .unwrap_or_else(|| panic!("unknown test {test_name}"));
            seen.insert(test);
            let label = format!("{test_name} on {name}");
            if !test.supports(column_type) {
                report.fail(format!("{label}: Evidently allows it, supports() does not"));
                continue;
            }
            let got = test.try_score(column_type, &r, &c);
            if let Some(error) = want.get("error") {
                if let Ok(score) = got {
                    report.fail(format!("{label}: Evidently raises {error}, got {score:e}"));
                }
                continue;
            }
            let score = match got {
                Ok(score) => score,
                Err(e) => {
                    report.fail(format!("{label}: error {e}, Evidently scores it"));
                    continue;
                }
            };
            let want_score = num(&want["score"]);
            let threshold = num(&want["threshold"]);
            let err = rel_err(score, want_score);
            report.record(test_name, err);
            let mut ties = 0;
            let ok = match test {
                StatTest::CramerVonMises => {
                    err <= REL_TOL || (score - want_score).abs() <= CVM_ABS_TOL
                }
                StatTest::EppsSingleton => err <= ES_REL_TOL,
                StatTest::EmpiricalMmd => {
                    assert_eq!(DATA["mmd_seed"].as_u64(), Some(u64::from(MMD_SEED)));
                    let perms = empirical_mmd_permutations(&r, &c, MMD_SEED).expect("mmd");
                    assert_eq!(perms.pvalue(), score);
                    ties = perms
                        .permuted
                        .iter()
                        .filter(|&&s| (s - perms.observed).abs() <= MMD_TIE)
                        .count();
                    if ties > 0 {
                        eprintln!("{label}: {ties} permuted statistics tie the observed one");
                    }
                    (score - want_score).abs() <= ties as f64 / 100.0 + 1e-15
                }
                _ => err <= REL_TOL,
            };
            if ok && err > REL_TOL {
                eprintln!(
                    "{label}: within its documented bound: got {score:e}, Evidently {want_score:e}"
                );
            }
            if !ok {
                report.fail(format!(
                    "{label}: got {score:e}, Evidently {want_score:e}, rel err {err:e}"
                ));
            }
            if threshold != test.default_threshold() {
                report.fail(format!(
                    "{label}: threshold {} vs Evidently {threshold}",
                    test.default_threshold()
                ));
            }
            let want_drift = want["drift"].as_bool().expect("drift");
            if test.is_drift(score, threshold) != want_drift && ties == 0 {
                report.fail(format!(
                    "{label}: drift {} vs Evidently {want_drift} (score {score:e})",
                    !want_drift
                ));
            }
            // The convenience entry points agree with try_score.
            let result = test.evaluate(column_type, &r, &c, None).expect("evaluate");
            assert_eq!(result.drift, test.is_drift(score, threshold));
        }
    }
    for test in StatTest::ALL {
        assert!(
            seen.contains(&test),
            "no Evidently values for {}",
            test.name()
        );
    }
    report.finish();
}

#[test]
fn registry_names_round_trip() {
    for test in StatTest::ALL {
        assert_eq!(StatTest::from_name(test.name()), Some(test));
    }
    assert_eq!(StatTest::from_name("tvd"), None);
    assert_eq!(StatTest::from_name("perc_text_content_drift"), None);
}

#[test]
fn special_functions_match_scipy() {
    let mut report = Report::default();
    let special = &DATA["special"];
    for row in special["stdtr"].as_array().expect("stdtr") {
        let (df, t, want) = (num(&row[0]), num(&row[1]), num(&row[2]));
        let got = stdtr(df, t);
        let err = rel_err(got, want);
        report.record("stdtr", err);
        if err > 1e-14 {
            eprintln!("stdtr({df}, {t}) = {got:e}, scipy {want:e}, rel err {err:e}");
        }
        if err > REL_TOL {
            report.fail(format!(
                "stdtr({df}, {t}) = {got:e}, scipy {want:e}, rel err {err:e}"
            ));
        }
    }
    for row in special["kv"].as_array().expect("kv") {
        let (nu, x, want) = (num(&row[0]), num(&row[1]), num(&row[2]));
        let got = kv(nu, x);
        let err = rel_err(got, want);
        report.record("kv", err);
        if err > REL_TOL {
            report.fail(format!(
                "kv({nu}, {x}) = {got:e}, scipy {want:e}, rel err {err:e}"
            ));
        }
    }
    report.finish();
}
