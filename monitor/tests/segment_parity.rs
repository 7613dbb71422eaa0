//! Segment drift parity with Evidently 0.7.23: every (February 2022 day, pickup borough) case
//! of `tests/golden/feb-2022-segments.json` (made by `scripts/goldens/make_goldens.sh --only
//! segments`: Evidently's report on the day's rows and the reference rows of one borough).
//!
//! The reference is cut by `SegmentReference::from_parquet`; each day's rows per borough are
//! the day's `aggregate_groups` groups by `PULocationID`, classified by a `Segmenter` and added
//! up; `segment_drift` tests them. Compared as `parity.rs` does the whole days: row counts,
//! `too_small`, missing-value and drifted-column counts, flags and test choices exactly,
//! scores and shares within 1e-12 relative.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde_json::Value;
use streamwatch_common::events::{parse_timestamp, ColumnDrift, SegmentDrift};
use streamwatch_common::spec::{LookupSpec, SegmentSpec};
use streamwatch_monitor::batch::{aggregate_groups, reference_from_parquet, Slice};
use streamwatch_monitor::evaluate::{ColumnSample, WindowData};
use streamwatch_monitor::mapping::{ColumnMapping, MappingArgs};
use streamwatch_monitor::segments::{segment_drift, SegmentReference, SegmentWindow, Segmenter};
use streamwatch_monitor::MonitorError;
use streamwatch_stats::Distribution;

const GOLDEN: &str = "tests/golden/feb-2022-segments.json";
const TOLERANCE: f64 = 1e-12;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn golden_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "NaN" => None,
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        Value::Null => None,
        other => panic!("unexpected golden number {other}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Compares with the tolerance and remembers the largest relative difference seen.
struct Checker {
    max_relative: f64,
    worst: String,
    compared: usize,
}

impl Checker {
    fn close(&mut self, what: &str, expected: Option<f64>, actual: Option<f64>) {
        let ok = match (expected, actual) {
            (Some(e), Some(a)) if e == a => true,
            (Some(e), Some(a)) => {
                let relative = (e - a).abs() / e.abs().max(a.abs());
                if relative > self.max_relative {
                    self.max_relative = relative;
                    self.worst = what.to_owned();
                }
                relative <= TOLERANCE
            }
            (None, None) => true,
            _ => false,
        };
        self.compared += 1;
        assert!(ok, "{what}: expected {expected:?}, got {actual:?}");
    }

    fn column(&mut self, what: &str, expected: &Value, actual: &ColumnDrift) {
        let what = format!("{what} {}", actual.column);
        assert_eq!(
            actual.column_type,
            expected["column_type"].as_str().unwrap(),
            "{what}: type"
        );
        assert_eq!(
            actual.stattest,
            expected["stattest"].as_str().unwrap(),
            "{what}: test"
        );
        assert_eq!(
            actual.threshold,
            expected["threshold"].as_f64().unwrap(),
            "{what}: threshold"
        );
        assert_eq!(
            actual.drift_detected,
            expected["drift_detected"].as_bool().unwrap(),
            "{what}: drift flag"
        );
        self.close(
            &format!("{what}: score"),
            golden_float(&expected["drift_score"]),
            actual.score,
        );
    }

    fn segment(&mut self, case: &Value, actual: &SegmentDrift) {
        let name = case["name"].as_str().unwrap();
        assert_eq!(
            actual.row_count,
            case["row_count"].as_u64().unwrap(),
            "{name}: rows"
        );
        assert_eq!(
            actual.reference_rows,
            case["reference_rows"].as_u64().unwrap(),
            "{name}: reference rows"
        );
        let too_small = case["too_small"].as_bool().unwrap();
        assert_eq!(actual.too_small, too_small, "{name}: too small");
        if too_small {
            // Counts and missing values only (DatasetMissingValuesMetric alone).
            assert_eq!(
                actual.number_of_missing_values,
                case["number_of_missing_values"].as_u64().unwrap(),
                "{name}: missing cells"
            );
            self.close(
                &format!("{name}: missing share"),
                golden_float(&case["share_of_missing_values"]),
                actual.share_of_missing_values,
            );
            assert!(
                actual.prediction_drift.is_none()
                    && actual.columns.is_empty()
                    && actual.number_of_drifted_columns.is_none()
                    && actual.share_of_drifted_columns.is_none()
                    && actual.dataset_drift.is_none(),
                "{name}: a segment too small has no drift numbers: {actual:?}"
            );
            return;
        }
        if let Some(error) = case["expected_error"].as_str() {
            // Evidently refuses the whole report; the monitor reports the column as untestable.
            assert!(
                actual
                    .columns
                    .iter()
                    .any(|c| c.error.is_some() && c.score.is_none() && !c.drift_detected),
                "{name}: Evidently raised {error:?}; expected an untestable column, got {:?}",
                actual.columns
            );
            return;
        }
        let expected = &case["expected"];
        assert_eq!(
            actual.row_count,
            expected["row_count"].as_u64().unwrap(),
            "{name}: rows (report)"
        );
        assert_eq!(
            actual.number_of_missing_values,
            expected["number_of_missing_values"].as_u64().unwrap(),
            "{name}: missing cells"
        );
        self.close(
            &format!("{name}: missing share"),
            golden_float(&expected["share_of_missing_values"]),
            actual.share_of_missing_values,
        );
        assert_eq!(
            actual.number_of_drifted_columns.map(u64::from),
            expected["number_of_drifted_columns"].as_u64(),
            "{name}: drifted columns"
        );
        self.close(
            &format!("{name}: drifted share"),
            golden_float(&expected["share_of_drifted_columns"]),
            actual.share_of_drifted_columns,
        );
        assert_eq!(
            actual.dataset_drift,
            expected["dataset_drift"].as_bool(),
            "{name}: dataset drift"
        );
        let golden_columns = expected["columns"].as_array().unwrap();
        assert_eq!(
            golden_columns.len(),
            actual.columns.len(),
            "{name}: column count"
        );
        for golden in golden_columns {
            let column = golden["column"].as_str().unwrap();
            let result = actual
                .columns
                .iter()
                .find(|c| c.column == column)
                .unwrap_or_else(|| panic!("{name}: no result for {column}"));
            self.column(name, golden, result);
        }
        let prediction = actual
            .prediction_drift
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no prediction drift"));
        self.column(
            &format!("{name} (ColumnDriftMetric)"),
            &expected["prediction_drift"],
            prediction,
        );
    }
}

/// Several groups of a day's rows (the pickup zones of one borough) as one: counts added,
/// distributions merged; an integer column stays one only if it is in every group (a null
/// anywhere makes pandas' column float).
fn merge(parts: &[WindowData]) -> WindowData {
    let columns = (0..parts[0].columns.len())
        .map(|index| {
            let pairs = parts.iter().flat_map(|part| {
                let values = &part.columns[index].values;
                values
                    .values()
                    .iter()
                    .copied()
                    .zip(values.counts().iter().copied())
            });
            ColumnSample {
                values: Distribution::from_counts(pairs),
                nulls: parts.iter().map(|part| part.columns[index].nulls).sum(),
                integer_dtype: parts.iter().all(|part| part.columns[index].integer_dtype),
            }
        })
        .collect();
    WindowData {
        row_count: parts.iter().map(|p| p.row_count).sum(),
        number_of_columns: parts[0].number_of_columns,
        number_of_missing_values: parts.iter().map(|p| p.number_of_missing_values).sum(),
        columns,
    }
}

#[tokio::test]
async fn february_boroughs_match_evidently() {
    let goldens: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(GOLDEN)).unwrap()).unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    let first = &cases[0];
    let mapping_json = &first["column_mapping"];
    let mapping = ColumnMapping::from_args(&MappingArgs {
        monitor_name: "segment-parity".into(),
        prediction: mapping_json["prediction"].as_str().unwrap().into(),
        numerical: strings(&mapping_json["numerical_features"]),
        categorical: strings(&mapping_json["categorical_features"]),
        quantiles: Vec::new(),
        drift_share: 0.5,
        outlier_quantiles: vec![0.01, 0.99],
    })
    .unwrap();
    let segment_column = goldens["segment_column"].as_str().unwrap();
    let lookup = &goldens["lookup"];
    let spec = SegmentSpec {
        name: goldens["dimension"].as_str().unwrap().into(),
        column: segment_column.into(),
        lookup: Some(LookupSpec {
            path: repo()
                .join(lookup["path"].as_str().unwrap())
                .to_str()
                .unwrap()
                .into(),
            key: lookup["key"].as_str().unwrap().into(),
            value: lookup["value"].as_str().unwrap().into(),
        }),
        drift: true,
    };
    let min_rows = goldens["segment_min_rows"].as_u64().unwrap();

    // The February file scored once with the committed model, as the scorer would.
    let model = streamwatch_scorer::LinearModel::load(
        repo().join(first["score_current_with"].as_str().unwrap()),
    )
    .unwrap();
    let scored = std::env::temp_dir().join(format!(
        "segment-parity-scored-{}.parquet",
        std::process::id()
    ));
    streamwatch_scorer::score_file(
        &model,
        &repo().join(first["current"].as_str().unwrap()),
        &scored,
    )
    .unwrap();

    let reference_path = repo().join(first["reference"].as_str().unwrap());
    let reference_path = reference_path.to_str().unwrap();
    let reference = reference_from_parquet(reference_path, &mapping)
        .await
        .unwrap();
    let mut segmenters = vec![Segmenter::new(&spec, &mapping.counted_columns()).unwrap()];
    let segment_reference =
        SegmentReference::from_parquet(reference_path, &mapping, &reference, &mut segmenters)
            .await
            .unwrap();

    let bound = |key: &str| {
        cases
            .iter()
            .map(|c| parse_timestamp(c[key].as_str().unwrap()).unwrap())
            .collect::<Vec<_>>()
    };
    let slice = Slice {
        time_column: Some(first["time_column"].as_str().unwrap().into()),
        from: bound("start").into_iter().min(),
        to: bound("end").into_iter().max(),
        window_seconds: Some(86_400),
        group_column: Some(segment_column.into()),
    };
    let groups = aggregate_groups(scored.to_str().unwrap(), &mapping, &slice, |reason| {
        MonitorError::Current {
            path: scored.display().to_string(),
            reason,
        }
    })
    .await;
    let _ = std::fs::remove_file(&scored);

    // Per day, the groups (pickup zones) of each segment (borough).
    let mut parts: BTreeMap<NaiveDateTime, BTreeMap<u32, Vec<WindowData>>> = BTreeMap::new();
    for group in groups.unwrap() {
        let segment = segmenters[0].classify(group.group_value);
        parts
            .entry(group.window_start.expect("daily windows"))
            .or_default()
            .entry(segment)
            .or_default()
            .push(group.data);
    }
    let mut results: BTreeMap<(NaiveDateTime, String), SegmentDrift> = BTreeMap::new();
    for (day, segments) in parts {
        let windows: Vec<SegmentWindow> = segments
            .into_iter()
            .map(|(segment, parts)| SegmentWindow {
                dimension: 0,
                segment,
                data: merge(&parts),
            })
            .collect();
        for drift in segment_drift(
            &mapping,
            &segment_reference,
            &segmenters,
            &windows,
            min_rows,
        ) {
            assert_eq!(drift.dimension, spec.name);
            let key = (day, drift.segment.clone());
            assert!(results.insert(key, drift).is_none());
        }
    }

    let mut checker = Checker {
        max_relative: 0.0,
        worst: String::new(),
        compared: 0,
    };
    let (mut tested, mut too_small, mut empty) = (0, 0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let day = parse_timestamp(case["start"].as_str().unwrap()).unwrap();
        let key = (day, case["segment"].as_str().unwrap().to_owned());
        let actual = results.remove(&key);
        if case["row_count"].as_u64() == Some(0) {
            // A segment with reference rows but none this day: not a segment of the window.
            assert!(
                actual.is_none(),
                "{name}: no rows, yet reported: {actual:?}"
            );
            assert!(case["too_small"].as_bool().unwrap());
            empty += 1;
            continue;
        }
        let actual = actual.unwrap_or_else(|| panic!("{name}: not reported by the monitor"));
        checker.segment(case, &actual);
        if actual.too_small {
            too_small += 1;
        } else {
            tested += 1;
        }
    }
    assert!(
        results.is_empty(),
        "segments the goldens do not have: {:?}",
        results.keys().collect::<Vec<_>>()
    );
    eprintln!(
        "{} cases: {tested} tested, {too_small} too small, {empty} without rows that day; \
         {} numbers compared, max relative difference {:e} ({})",
        cases.len(),
        checker.compared,
        checker.max_relative,
        checker.worst
    );
    // Every day has several boroughs large enough to test.
    assert!(tested >= 4 * 28, "only {tested} tested cases");
}
