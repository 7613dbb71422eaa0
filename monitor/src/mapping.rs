//! Which columns a monitor watches and how: Evidently's column mapping plus the
//! quantiles to report.

use std::collections::BTreeMap;

use clap::Args;
use streamwatch_stats::{ColumnType, StatTest};

use crate::{MonitorError, Result};

/// How the monitored data is laid out (Evidently's `ColumnMapping`).
#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// Name of this monitor; part of every metric row's key.
    #[arg(long, env = "MONITOR_NAME", default_value = "taxi")]
    pub monitor_name: String,

    /// Column holding the model's prediction.
    #[arg(long, env = "MONITOR_PREDICTION", default_value = "prediction")]
    pub prediction: String,

    /// Comma-separated numerical feature columns.
    #[arg(
        long,
        env = "MONITOR_NUMERICAL",
        value_delimiter = ',',
        default_value = "passenger_count,trip_distance,fare_amount,total_amount"
    )]
    pub numerical: Vec<String>,

    /// Comma-separated categorical feature columns (numeric codes, such as location ids).
    #[arg(
        long,
        env = "MONITOR_CATEGORICAL",
        value_delimiter = ',',
        default_value = "PULocationID,DOLocationID"
    )]
    pub categorical: Vec<String>,

    /// Comma-separated `column:q` quantiles to report per window (q in 0..1).
    #[arg(
        long,
        env = "MONITOR_QUANTILES",
        value_delimiter = ',',
        default_value = "fare_amount:0.5"
    )]
    pub quantiles: Vec<String>,

    /// Share of drifted columns at or above which the whole window counts as drifted.
    #[arg(long, env = "MONITOR_DRIFT_SHARE", default_value_t = 0.5)]
    pub drift_share: f64,

    /// `lower,upper` reference quantiles outside which values count as outliers (per
    /// numerical column and numerical prediction; 0 <= lower < upper <= 1).
    #[arg(
        long,
        env = "MONITOR_OUTLIER_QUANTILES",
        value_delimiter = ',',
        default_value = "0.01,0.99"
    )]
    pub outlier_quantiles: Vec<f64>,
}

/// A column's role in drift detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Prediction,
    Numerical,
    Categorical,
}

/// A column's chosen drift test and threshold; `None` parts take Evidently's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ColumnTest {
    pub stattest: Option<StatTest>,
    pub threshold: Option<f64>,
}

impl ColumnTest {
    /// Resolves a test by Evidently's registry name.
    pub fn parse(column: &str, stattest: Option<&str>, threshold: Option<f64>) -> Result<Self> {
        let stattest = stattest
            .map(|name| {
                StatTest::from_name(name).ok_or_else(|| {
                    MonitorError::Config(format!("column {column:?}: unknown drift test {name:?}"))
                })
            })
            .transpose()?;
        Ok(Self {
            stattest,
            threshold,
        })
    }
}

/// The resolved mapping.
#[derive(Debug, Clone)]
pub struct ColumnMapping {
    pub monitor_name: String,
    /// Drift columns in Evidently's order: prediction, numerical, categorical.
    pub drift_columns: Vec<(String, Role)>,
    pub quantiles: Vec<(String, f64)>,
    pub drift_share: f64,
    /// The reference quantiles `(lower, upper)` bounding the outlier range.
    pub outlier_quantiles: (f64, f64),
    /// Per-column test choices; other columns get Evidently's default.
    pub tests: BTreeMap<String, ColumnTest>,
    /// Data columns left out entirely (also from the missing-value count).
    pub ignored: Vec<String>,
    /// A linear model's features and coefficients, for the contributions (`--model`).
    pub explain: Vec<(String, f64)>,
}

impl ColumnMapping {
    pub fn from_args(args: &MappingArgs) -> Result<Self> {
        let mut drift_columns = vec![(args.prediction.clone(), Role::Prediction)];
        drift_columns.extend(
            args.numerical
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| (c.clone(), Role::Numerical)),
        );
        drift_columns.extend(
            args.categorical
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| (c.clone(), Role::Categorical)),
        );
        let mut quantiles = Vec::new();
        for spec in args.quantiles.iter().filter(|s| !s.is_empty()) {
            let parsed = spec
                .rsplit_once(':')
                .and_then(|(c, q)| q.parse::<f64>().ok().map(|q| (c.to_owned(), q)))
                .filter(|(_, q)| (0.0..=1.0).contains(q));
            match parsed {
                Some(pair) => quantiles.push(pair),
                None => {
                    return Err(MonitorError::Config(format!(
                        "quantile {spec:?} must look like column:q with q between 0 and 1"
                    )))
                }
            }
        }
        let outlier_quantiles = match args.outlier_quantiles[..] {
            [lower, upper] => check_outlier_quantiles(lower, upper)?,
            _ => {
                return Err(MonitorError::Config(format!(
                    "outlier quantiles {:?} must be two numbers, lower,upper",
                    args.outlier_quantiles
                )))
            }
        };
        Ok(Self {
            monitor_name: args.monitor_name.clone(),
            drift_columns,
            quantiles,
            drift_share: args.drift_share,
            outlier_quantiles,
            tests: BTreeMap::new(),
            ignored: Vec::new(),
            explain: Vec::new(),
        })
    }

    /// The test settings of a column.
    pub fn test_of(&self, column: &str) -> ColumnTest {
        self.tests.get(column).copied().unwrap_or_default()
    }

    /// Rejects a chosen test that Evidently does not allow for the column's role.
    pub fn check_tests(&self) -> Result<()> {
        for (column, role) in &self.drift_columns {
            let Some(test) = self.test_of(column).stattest else {
                continue;
            };
            // A prediction may be typed either way; features have fixed types.
            let allowed = match role {
                Role::Numerical => test.supports(ColumnType::Numerical),
                Role::Categorical => test.supports(ColumnType::Categorical),
                Role::Prediction => {
                    test.supports(ColumnType::Numerical) || test.supports(ColumnType::Categorical)
                }
            };
            if !allowed {
                return Err(MonitorError::Config(format!(
                    "column {column:?}: test {:?} does not apply to {} columns",
                    test.name(),
                    match role {
                        Role::Categorical => "categorical",
                        _ => "numerical",
                    }
                )));
            }
        }
        Ok(())
    }

    /// Every column whose values the monitor keeps counts of: drift columns, then
    /// quantile and model-feature columns that are not drift columns.
    pub fn counted_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.drift_columns.iter().map(|(c, _)| c.clone()).collect();
        for column in self.quantiles.iter().chain(&self.explain).map(|(c, _)| c) {
            if !columns.contains(column) {
                columns.push(column.clone());
            }
        }
        columns
    }

    pub fn prediction(&self) -> &str {
        &self.drift_columns[0].0
    }
}

/// Accepts an outlier range `0 <= lower < upper <= 1`.
pub fn check_outlier_quantiles(lower: f64, upper: f64) -> Result<(f64, f64)> {
    if 0.0 <= lower && lower < upper && upper <= 1.0 {
        Ok((lower, upper))
    } else {
        Err(MonitorError::Config(format!(
            "outlier quantiles {lower},{upper}: need 0 <= lower < upper <= 1"
        )))
    }
}
