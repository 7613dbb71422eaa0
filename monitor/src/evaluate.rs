//! Evidently's legacy drift and data-quality math on value counts: which test each column
//! gets, how each code path cleans the data, dataset drift, missing values and quantiles.
//! Every rule here follows a documented Evidently 0.7.23 behaviour (docs/ARCHITECTURE.md).

use std::sync::OnceLock;

use streamwatch_common::events::{ColumnDrift, ColumnOutliers, FeatureContribution, QuantileValue};
use streamwatch_stats::{default_stattest, distinct_union, ColumnType, Distribution, StatTest};

use crate::counts::ValueCounts;
use crate::explain::ReferenceContribution;
use crate::mapping::{ColumnMapping, ColumnTest, Role};
use crate::outliers::OutlierBounds;

/// Evidently treats a numeric column with at most this many distinct values as categorical
/// in some checks (`NUMBER_UNIQUE_AS_CATEGORICAL`).
const FEW_DISTINCT: usize = 5;

/// One column of one dataset (the reference or a window): the distribution of its
/// values (±inf included), its missing cells, and whether its values are integers without
/// nulls (pandas' integer dtype), which decides a prediction column's type.
#[derive(Debug, Clone, Default)]
pub struct ColumnSample {
    pub values: Distribution,
    pub nulls: u64,
    pub integer_dtype: bool,
}

impl ColumnSample {
    pub fn new(counts: &ValueCounts, integer_dtype: bool) -> Self {
        Self {
            values: counts.distribution(),
            nulls: counts.nulls(),
            integer_dtype,
        }
    }
}

/// A column of the reference, with the distributions every window reuses.
#[derive(Debug, Clone)]
pub struct ReferenceColumn {
    pub sample: ColumnSample,
    /// All non-missing values, infinite ones included.
    pub raw: Distribution,
    /// The same without ±inf.
    pub finite: Distribution,
    /// The outlier bounds of [`Self::outlier_bounds`], computed on first use.
    outlier_bounds: OnceLock<Option<OutlierBounds>>,
    /// The model contributions of [`Self::contribution`], computed on first use.
    contribution: OnceLock<ReferenceContribution>,
}

impl ReferenceColumn {
    pub fn new(sample: ColumnSample) -> Self {
        let raw = sample.values.clone();
        let finite = raw.without_infinite();
        Self {
            sample,
            raw,
            finite,
            outlier_bounds: OnceLock::new(),
            contribution: OnceLock::new(),
        }
    }

    /// The reference side of a model feature's contributions (computed once: one mapping
    /// has one coefficient per feature).
    pub fn contribution(&self, feature: &str, coefficient: f64) -> &ReferenceContribution {
        self.contribution
            .get_or_init(|| ReferenceContribution::new(feature, coefficient, &self.sample))
    }

    /// The outlier bounds for the reference quantiles `range`, from the finite values;
    /// `None` when the column has no finite value in the reference. Computed once and then
    /// reused by every window (a different range, which one mapping never asks for, is
    /// computed afresh).
    pub fn outlier_bounds(&self, range: (f64, f64)) -> Option<OutlierBounds> {
        let cached = *self
            .outlier_bounds
            .get_or_init(|| OutlierBounds::new(&self.finite, range));
        match cached {
            Some(b) if (b.lower_quantile, b.upper_quantile) != range => {
                OutlierBounds::new(&self.finite, range)
            }
            other => other,
        }
    }

    /// What the dataset path tests: Evidently drops NaN and ±inf only from a column that has
    /// at least one NaN.
    fn dataset_path(&self) -> &Distribution {
        if self.sample.nulls > 0 {
            &self.finite
        } else {
            &self.raw
        }
    }
}

/// What a window contributes: its rows, its missing cells and the counts of the columns
/// the mapping names, in [`ColumnMapping::counted_columns`] order.
#[derive(Debug, Clone, Default)]
pub struct WindowData {
    pub row_count: u64,
    pub number_of_columns: u32,
    pub number_of_missing_values: u64,
    pub columns: Vec<ColumnSample>,
}

/// The metrics of one window (everything in a metric row but its key).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowMetrics {
    pub row_count: u64,
    pub number_of_columns: u32,
    pub number_of_missing_values: u64,
    pub share_of_missing_values: Option<f64>,
    pub prediction_drift: Option<ColumnDrift>,
    pub number_of_drifted_columns: u32,
    pub share_of_drifted_columns: f64,
    pub dataset_drift: bool,
    pub columns: Vec<ColumnDrift>,
    pub quantiles: Vec<QuantileValue>,
    pub outliers: Vec<ColumnOutliers>,
    /// Per model feature, its contributions (`crate::explain`); empty without a model.
    pub contributions: Vec<FeatureContribution>,
}

/// Computes a window's metrics against the reference. `reference` is in
/// [`ColumnMapping::counted_columns`] order, like `window.columns`.
pub fn evaluate(
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    window: &WindowData,
) -> WindowMetrics {
    let mut columns = Vec::with_capacity(mapping.drift_columns.len());
    let mut prediction_drift = None;
    for (index, (name, role)) in mapping.drift_columns.iter().enumerate() {
        let reference = &reference[index];
        let current = &window.columns[index];
        let test = mapping.test_of(name);
        columns.push(dataset_path_drift(name, *role, test, reference, current));
        if *role == Role::Prediction {
            prediction_drift = Some(column_metric_drift(name, test, reference, current));
        }
    }
    let drifted = columns.iter().filter(|c| c.drift_detected).count() as u32;
    let share_of_drifted_columns = if columns.is_empty() {
        0.0
    } else {
        f64::from(drifted) / columns.len() as f64
    };

    let counted = mapping.counted_columns();
    let quantiles = mapping
        .quantiles
        .iter()
        .map(|(column, q)| {
            let index = counted
                .iter()
                .position(|c| c == column)
                .expect("quantile columns are counted");
            let distribution = &window.columns[index].values;
            QuantileValue {
                column: column.clone(),
                quantile: *q,
                value: (distribution.total() > 0).then(|| distribution.quantile_linear(*q)),
            }
        })
        .collect();

    let outliers = outliers(mapping, reference, window);
    let contributions = mapping
        .explain
        .iter()
        .map(|(feature, coefficient)| {
            let index = counted
                .iter()
                .position(|c| c == feature)
                .expect("model features are counted");
            reference[index]
                .contribution(feature, *coefficient)
                .measure(&window.columns[index])
        })
        .collect();

    let cells = window.row_count * u64::from(window.number_of_columns);
    WindowMetrics {
        row_count: window.row_count,
        number_of_columns: window.number_of_columns,
        number_of_missing_values: window.number_of_missing_values,
        share_of_missing_values: (cells > 0)
            .then(|| window.number_of_missing_values as f64 / cells as f64),
        prediction_drift,
        number_of_drifted_columns: drifted,
        share_of_drifted_columns,
        dataset_drift: share_of_drifted_columns >= mapping.drift_share,
        columns,
        quantiles,
        outliers,
        contributions,
    }
}

/// The outliers of every numerical column and of a numerical prediction, in mapping order
/// (`crate::outliers`). Whether the prediction is numerical is decided on the reference
/// alone, by the rule `ColumnDriftMetric` applies, so that it is the same in every window. A
/// column with no finite reference value has no range and is left out.
fn outliers(
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    window: &WindowData,
) -> Vec<ColumnOutliers> {
    mapping
        .drift_columns
        .iter()
        .enumerate()
        .filter(|(index, (_, role))| match role {
            Role::Numerical => true,
            Role::Categorical => false,
            Role::Prediction => {
                let reference = &reference[*index];
                prediction_type_column_metric(reference, &reference.sample) == ColumnType::Numerical
            }
        })
        .filter_map(|(index, (name, _))| {
            let bounds = reference[index].outlier_bounds(mapping.outlier_quantiles)?;
            Some(bounds.measure(name, &window.columns[index].values))
        })
        .collect()
}

/// DatasetDriftMetric's path (`calculations/data_drift.py::get_one_column_drift`).
fn dataset_path_drift(
    name: &str,
    role: Role,
    test: ColumnTest,
    reference: &ReferenceColumn,
    current: &ColumnSample,
) -> ColumnDrift {
    let current_raw = &current.values;
    let column_type = match role {
        Role::Numerical => ColumnType::Numerical,
        Role::Categorical => ColumnType::Categorical,
        Role::Prediction => prediction_type_on_concat(reference, current),
    };
    if current.nulls > 0 && current_raw.has_infinite() {
        let finite = current_raw.without_infinite();
        run_test(name, column_type, test, reference.dataset_path(), &finite)
    } else {
        run_test(
            name,
            column_type,
            test,
            reference.dataset_path(),
            current_raw,
        )
    }
}

/// ColumnDriftMetric's path (`metrics/data_drift/column_drift_metric.py`): ±inf always
/// become NaN and are dropped; the prediction's type comes from `_get_column_type`.
fn column_metric_drift(
    name: &str,
    test: ColumnTest,
    reference: &ReferenceColumn,
    current: &ColumnSample,
) -> ColumnDrift {
    let column_type = prediction_type_column_metric(reference, current);
    if current.values.has_infinite() {
        let finite = current.values.without_infinite();
        run_test(name, column_type, test, &reference.finite, &finite)
    } else {
        run_test(name, column_type, test, &reference.finite, &current.values)
    }
}

/// `recognize_column_type_` on reference and current concatenated: numerical with more
/// than five distinct values, or a non-integer column within [0, 1]; else categorical.
fn prediction_type_on_concat(reference: &ReferenceColumn, current: &ColumnSample) -> ColumnType {
    let current_raw = &current.values;
    // More than five distinct values in the reference alone settles it without a merge.
    let distinct = if reference.raw.distinct() > FEW_DISTINCT {
        reference.raw.distinct()
    } else {
        distinct_union(&reference.raw, current_raw)
    };
    let integer = reference.sample.integer_dtype && current.integer_dtype;
    let (min, max) = min_max([&reference.raw, current_raw]);
    let within_unit = matches!((min, max), (Some(lo), Some(hi)) if lo >= 0.0 && hi <= 1.0);
    if distinct > FEW_DISTINCT || (!integer && within_unit) {
        ColumnType::Numerical
    } else {
        ColumnType::Categorical
    }
}

/// `data_preprocessing.py::_get_column_type` for a prediction without a task: categorical
/// when it has at most five distinct values (counted on the reference, or on the current
/// data when the reference has none) and is integer, or leaves [0, 1] in the current data.
fn prediction_type_column_metric(
    reference: &ReferenceColumn,
    current: &ColumnSample,
) -> ColumnType {
    let current_raw = &current.values;
    let distinct = match reference.raw.distinct() {
        0 => current_raw.distinct(),
        n => n,
    };
    let reference_has_values = reference.raw.total() > 0;
    let integer = if reference_has_values {
        reference.sample.integer_dtype
    } else {
        current.integer_dtype
    };
    let (min, max) = min_max([current_raw]);
    let leaves_unit = matches!((min, max), (Some(lo), Some(hi)) if hi > 1.0 || lo < 0.0);
    if distinct <= FEW_DISTINCT && (integer || leaves_unit) {
        ColumnType::Categorical
    } else {
        ColumnType::Numerical
    }
}

fn min_max<const N: usize>(distributions: [&Distribution; N]) -> (Option<f64>, Option<f64>) {
    let min = distributions
        .iter()
        .filter_map(|d| d.values().first().copied())
        .reduce(f64::min);
    let max = distributions
        .iter()
        .filter_map(|d| d.values().last().copied())
        .reduce(f64::max);
    (min, max)
}

fn run_test(
    name: &str,
    column_type: ColumnType,
    chosen: ColumnTest,
    reference: &Distribution,
    current: &Distribution,
) -> ColumnDrift {
    let type_name = match column_type {
        ColumnType::Numerical => "num",
        ColumnType::Categorical => "cat",
    };
    let test: StatTest = chosen.stattest.unwrap_or_else(|| {
        // The default choice only asks whether k (distinct values of both samples) exceeds
        // 2 or 5; a reference with more than five settles that without merging the samples.
        let distinct = if reference.distinct() > FEW_DISTINCT {
            reference.distinct()
        } else {
            distinct_union(reference, current)
        };
        default_stattest(column_type, reference.total(), distinct)
    });
    let threshold = chosen.threshold.unwrap_or_else(|| test.default_threshold());
    let mut drift = ColumnDrift {
        column: name.to_owned(),
        column_type: type_name.to_owned(),
        stattest: test.name().to_owned(),
        threshold,
        score: None,
        drift_detected: false,
        reference_rows: reference.total(),
        current_rows: current.total(),
        error: None,
    };
    if reference.total() == 0 || current.total() == 0 {
        // Evidently raises "An empty column was provided" for the whole report; a stream
        // reports the one column as untestable instead.
        let side = if reference.total() == 0 {
            "reference"
        } else {
            "current"
        };
        drift.error = Some(format!("no values in the {side} data after cleaning"));
        return drift;
    }
    match test.try_score(column_type, reference, current) {
        Ok(score) => {
            drift.drift_detected = test.is_drift(score, threshold);
            drift.score = (!score.is_nan()).then_some(score);
        }
        // Where Evidently would raise (for example Fisher's exact test on a column with more
        // than two values), the column is reported as untestable.
        Err(error) => drift.error = Some(error.to_string()),
    }
    drift
}
