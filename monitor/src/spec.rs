//! The monitoring spec: a TOML file that says what to monitor and how — the columns and
//! their roles, the reference data, the windows, the quantiles and, per column, the drift
//! test and threshold. `examples/specs/taxi.toml` is the annotated example.
//!
//! Unknown keys and wrong types are rejected with the line, the column and the reason.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::mapping::{ColumnMapping, ColumnTest, Role};
use crate::{MonitorError, Result};

/// A parsed spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Name of the monitor; part of every metric row's key.
    pub name: String,
    /// Event-time column of batch inputs (streamed events carry `event_time`).
    #[serde(default = "default_timestamp")]
    pub timestamp: String,
    /// The model's prediction column.
    pub prediction: String,
    /// The ground-truth column, when the data has one (not used for drift).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub numerical: Vec<String>,
    #[serde(default)]
    pub categorical: Vec<String>,
    /// Columns left out entirely, also from the missing-value count.
    #[serde(default)]
    pub ignore: Vec<String>,
    pub reference: ReferenceSpec,
    /// Windows: `SIZE` (tumbling) or `SIZE/STEP` (sliding), units s, m, h, d.
    #[serde(default = "default_windows")]
    pub windows: Vec<String>,
    /// Share of drifted columns at or above which a window counts as drifted.
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    #[serde(default)]
    pub quantiles: Vec<QuantileSpec>,
    /// Per-column drift test and threshold; columns not listed get Evidently's default.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// Parquet file with the mapped columns, relative to the spec file.
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantileSpec {
    pub column: String,
    pub q: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Evidently's registry name of the test (`ks`, `wasserstein`, `psi`, ...).
    #[serde(default)]
    pub stattest: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
}

fn default_timestamp() -> String {
    "event_time".to_owned()
}

fn default_windows() -> Vec<String> {
    vec!["1d".to_owned()]
}

fn default_drift_share() -> f64 {
    0.5
}

impl Spec {
    /// Reads and checks a spec file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            MonitorError::Config(format!("spec {} cannot be read: {e}", path.display()))
        })?;
        let mut spec = Self::parse(&text).map_err(|e| match e {
            MonitorError::Config(reason) => {
                MonitorError::Config(format!("spec {}: {reason}", path.display()))
            }
            other => other,
        })?;
        if let Some(folder) = path.parent() {
            let reference = folder.join(&spec.reference.path);
            spec.reference.path = reference.to_string_lossy().into_owned();
        }
        Ok(spec)
    }

    /// Parses and checks spec text.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: Spec = toml::from_str(text).map_err(|e| MonitorError::Config(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<()> {
        let fail = |reason: String| Err(MonitorError::Config(reason));
        let mut roles: BTreeMap<&str, &str> = BTreeMap::new();
        let named = std::iter::once((&self.prediction, "prediction"))
            .chain(self.numerical.iter().map(|c| (c, "numerical")))
            .chain(self.categorical.iter().map(|c| (c, "categorical")))
            .chain(self.target.iter().map(|c| (c, "target")));
        for (column, role) in named {
            if let Some(previous) = roles.insert(column, role) {
                return fail(format!(
                    "column {column:?} is listed as both {previous} and {role}"
                ));
            }
            if self.ignore.contains(column) {
                return fail(format!("column {column:?} is both {role} and ignored"));
            }
        }
        for (column, settings) in &self.columns {
            if !roles.contains_key(column.as_str()) || Some(column) == self.target.as_ref() {
                return fail(format!(
                    "[columns.{column}]: not a prediction, numerical or categorical column"
                ));
            }
            if let Some(threshold) = settings.threshold {
                if !threshold.is_finite() || threshold < 0.0 {
                    return fail(format!(
                        "[columns.{column}]: threshold must be a non-negative number"
                    ));
                }
            }
        }
        for quantile in &self.quantiles {
            if !(0.0..=1.0).contains(&quantile.q) {
                return fail(format!(
                    "quantile of {:?}: q = {} is not between 0 and 1",
                    quantile.column, quantile.q
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.drift_share) {
            return fail(format!(
                "drift_share = {} is not between 0 and 1",
                self.drift_share
            ));
        }
        if self.windows.is_empty() {
            return fail("windows: at least one window is needed".to_owned());
        }
        Ok(())
    }

    /// The column mapping this spec describes.
    pub fn mapping(&self) -> Result<ColumnMapping> {
        let mut drift_columns = vec![(self.prediction.clone(), Role::Prediction)];
        drift_columns.extend(self.numerical.iter().map(|c| (c.clone(), Role::Numerical)));
        drift_columns.extend(
            self.categorical
                .iter()
                .map(|c| (c.clone(), Role::Categorical)),
        );
        let tests = self
            .columns
            .iter()
            .map(|(column, settings)| {
                let test =
                    ColumnTest::parse(column, settings.stattest.as_deref(), settings.threshold)?;
                Ok((column.clone(), test))
            })
            .collect::<Result<_>>()?;
        let mapping = ColumnMapping {
            monitor_name: self.name.clone(),
            drift_columns,
            quantiles: self
                .quantiles
                .iter()
                .map(|q| (q.column.clone(), q.q))
                .collect(),
            drift_share: self.drift_share,
            tests,
            ignored: self.ignore.clone(),
        };
        mapping.check_tests()?;
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "m"
prediction = "p"
numerical = ["a"]
categorical = ["b"]
[reference]
path = "ref.parquet"
"#;

    #[test]
    fn the_shipped_examples_parse() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs");
        let mut found = 0;
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                spec.mapping().unwrap();
                found += 1;
            }
        }
        assert!(found >= 2, "the taxi spec and a second data set's spec");
    }

    #[test]
    fn defaults_apply() {
        let spec = Spec::parse(MINIMAL).unwrap();
        assert_eq!(spec.windows, vec!["1d"]);
        assert_eq!(spec.drift_share, 0.5);
        let mapping = spec.mapping().unwrap();
        assert_eq!(mapping.counted_columns(), vec!["p", "a", "b"]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let unknown = format!("{MINIMAL}\nwindow = [\"1h\"]\n");
        let err = Spec::parse(&unknown).unwrap_err().to_string();
        assert!(
            err.contains("line 9") && err.contains("unknown field `window`"),
            "{err}"
        );

        let wrong_type = MINIMAL.replace("numerical = [\"a\"]", "numerical = \"a\"");
        let err = Spec::parse(&wrong_type).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("expected a sequence"),
            "{err}"
        );

        let nested = format!("{MINIMAL}\n[columns.a]\nstattest = \"ks\"\nthreshhold = 0.1\n");
        let err = Spec::parse(&nested).unwrap_err().to_string();
        assert!(err.contains("unknown field `threshhold`"), "{err}");
    }

    #[test]
    fn inconsistent_specs_are_rejected_with_the_reason() {
        let cases = [
            (
                MINIMAL.replace("categorical = [\"b\"]", "categorical = [\"a\"]"),
                "both numerical and categorical",
            ),
            (
                format!("{MINIMAL}\n[columns.zzz]\nthreshold = 0.2\n"),
                "[columns.zzz]",
            ),
            (
                format!("{MINIMAL}\n[columns.a]\nthreshold = -1.0\n"),
                "non-negative",
            ),
            (
                format!("{MINIMAL}\n[[quantiles]]\ncolumn = \"a\"\nq = 1.5\n"),
                "not between 0 and 1",
            ),
        ];
        for (text, reason) in cases {
            let err = Spec::parse(&text).unwrap_err().to_string();
            assert!(err.contains(reason), "{err} should say {reason}");
        }
    }

    #[test]
    fn unknown_tests_are_rejected_when_mapping() {
        let text = format!("{MINIMAL}\n[columns.a]\nstattest = \"no_such_test\"\n");
        let err = Spec::parse(&text)
            .unwrap()
            .mapping()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_test"), "{err}");
    }
}
