//! The monitoring spec: a TOML file that says what to monitor and how — the columns and
//! their roles, the reference data, the windows, the quantiles and, per column, the drift
//! test and threshold. `examples/specs/taxi.toml` is the annotated example.
//!
//! Unknown keys and wrong types are rejected with the line, the column and the reason. The
//! monitor turns a spec into its column mapping; the producer checks live events against it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

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
    /// Reference quantiles `[lower, upper]` outside which a window's values count as outliers
    /// (numerical columns and a numerical prediction; `0 <= lower < upper <= 1`).
    #[serde(default = "default_outlier_quantiles")]
    pub outlier_quantiles: [f64; 2],
    /// Per-column drift test and threshold; columns not listed get Evidently's default.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSpec>,
    /// Segments: model performance is also computed per value of each, and drift and data
    /// quality for the dimensions with `drift = true`.
    #[serde(default)]
    pub segments: Vec<SegmentSpec>,
    /// A segment with fewer rows than this in a window, or in the reference, gets its counts
    /// and missing values but no drift tests.
    #[serde(default = "default_segment_min_rows")]
    pub segment_min_rows: u64,
    /// Model performance and fairness, once completions bring the target.
    #[serde(default)]
    pub performance: PerformanceSpec,
    /// Alert rules on the metrics of one window shape.
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
    /// The monitored model, for per-feature contributions (explainability).
    #[serde(default)]
    pub model: Option<ModelSpec>,
}

/// A linear model: the scorer's JSON file, or an ONNX linear or logistic regression exported
/// from scikit-learn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Relative to the spec file.
    pub path: String,
    /// The columns feeding the model's input, in order (ONNX models do not name them).
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

/// An alert rule: fires when `for_windows` consecutive windows of `window` have `metric` `op`
/// `threshold`, resolves at the first window that does not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub name: String,
    /// `prediction_drift` (score), `prediction_drift_detected` (0/1),
    /// `number_of_drifted_columns`, `share_of_drifted_columns`, `dataset_drift` (0/1),
    /// `share_of_missing_values`, `mae`, `rmse` or `worst_mae_ratio`.
    pub metric: String,
    /// One of the monitor's windows (`1d`, `1d/1h`).
    pub window: String,
    /// `>`, `>=`, `<` or `<=`.
    pub op: String,
    pub threshold: f64,
    #[serde(default = "default_for_windows")]
    pub for_windows: u32,
}

fn default_for_windows() -> u32 {
    1
}

/// A segment dimension: the values of a numerical or categorical column, optionally mapped
/// through a lookup table (pickup zone id → borough).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Name of the dimension in metric rows (`pickup_borough`).
    pub name: String,
    pub column: String,
    #[serde(default)]
    pub lookup: Option<LookupSpec>,
    /// Also test drift and data quality per segment of this dimension, against the same
    /// segment of the reference (costs one set of value counts per segment and window).
    #[serde(default)]
    pub drift: bool,
}

fn default_segment_min_rows() -> u64 {
    30
}

/// A CSV file mapping a column's values (`key`) to segment names (`value`); values not in the
/// file form the segment `(unmapped)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// CSV with a header row, relative to the spec file.
    pub path: String,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceSpec {
    /// Segments with fewer labelled rows get no metrics, only their counts (`too_small`).
    #[serde(default = "default_min_segment_rows")]
    pub min_segment_rows: u64,
    /// A segment's MAE divided by the overall MAE outside `[low, high]` flags the window.
    #[serde(default = "default_fairness_band")]
    pub fairness_band: [f64; 2],
}

impl Default for PerformanceSpec {
    fn default() -> Self {
        Self {
            min_segment_rows: default_min_segment_rows(),
            fairness_band: default_fairness_band(),
        }
    }
}

fn default_min_segment_rows() -> u64 {
    30
}

fn default_fairness_band() -> [f64; 2] {
    [0.8, 1.25]
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

fn default_outlier_quantiles() -> [f64; 2] {
    [0.01, 0.99]
}

impl Spec {
    /// Reads and checks a spec file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Spec(format!("spec {} cannot be read: {e}", path.display())))?;
        let mut spec = Self::parse(&text).map_err(|e| match e {
            Error::Spec(reason) => Error::Spec(format!("spec {}: {reason}", path.display())),
            other => other,
        })?;
        if let Some(folder) = path.parent() {
            let relative = |file: &str| folder.join(file).to_string_lossy().into_owned();
            spec.reference.path = relative(&spec.reference.path);
            for lookup in spec.segments.iter_mut().filter_map(|s| s.lookup.as_mut()) {
                lookup.path = relative(&lookup.path);
            }
            if let Some(model) = spec.model.as_mut() {
                model.path = relative(&model.path);
            }
        }
        Ok(spec)
    }

    /// Parses and checks spec text.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: Spec = toml::from_str(text).map_err(|e| Error::Spec(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::Spec(reason));
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
        let [lower, upper] = self.outlier_quantiles;
        if !(0.0 <= lower && lower < upper && upper <= 1.0) {
            return fail(format!(
                "outlier_quantiles = [{lower}, {upper}]: need 0 <= lower < upper <= 1"
            ));
        }
        if !(0.0..=1.0).contains(&self.drift_share) {
            return fail(format!(
                "drift_share = {} is not between 0 and 1",
                self.drift_share
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for segment in &self.segments {
            if !names.insert(segment.name.as_str()) {
                return fail(format!("segment {:?} is defined twice", segment.name));
            }
            if !self.numerical.contains(&segment.column)
                && !self.categorical.contains(&segment.column)
            {
                return fail(format!(
                    "segment {:?}: column {:?} is not a numerical or categorical column",
                    segment.name, segment.column
                ));
            }
        }
        let [low, high] = self.performance.fairness_band;
        if !(low.is_finite() && high.is_finite() && 0.0 < low && low <= 1.0 && 1.0 <= high) {
            return fail(format!(
                "performance.fairness_band = [{low}, {high}] must hold 1 (0 < low <= 1 <= high)"
            ));
        }
        if self.windows.is_empty() {
            return fail("windows: at least one window is needed".to_owned());
        }
        Ok(())
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
    fn defaults_apply() {
        let spec = Spec::parse(MINIMAL).unwrap();
        assert_eq!(spec.windows, vec!["1d"]);
        assert_eq!(spec.drift_share, 0.5);
        assert_eq!(spec.outlier_quantiles, [0.01, 0.99]);
    }

    #[test]
    fn outlier_quantiles_must_be_an_increasing_pair_within_0_and_1() {
        let with = |range: &str| format!("outlier_quantiles = {range}\n{MINIMAL}");
        let spec = Spec::parse(&with("[0.05, 0.95]")).unwrap();
        assert_eq!(spec.outlier_quantiles, [0.05, 0.95]);
        assert_eq!(
            Spec::parse(&with("[0.0, 1.0]")).unwrap().outlier_quantiles,
            [0.0, 1.0]
        );
        for bad in [
            "[0.99, 0.01]",
            "[0.5, 0.5]",
            "[-0.1, 0.9]",
            "[0.1, 1.5]",
            "[nan, 0.9]",
        ] {
            let err = Spec::parse(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("outlier_quantiles"), "{bad}: {err}");
        }
        let err = Spec::parse(&with("[0.01]")).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
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
}
