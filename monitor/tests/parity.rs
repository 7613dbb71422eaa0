//! Parity with Evidently 0.7.23: every golden case (28 real February 2022 days and the
//! synthetic edge cases, made by scripts/goldens/make_goldens.sh) computed by the batch
//! path and compared statistic by statistic: flags and test choices exactly, scores and
//! shares within 1e-12 relative.

use std::path::{Path, PathBuf};

use serde_json::Value;
use streamwatch_common::events::{parse_timestamp, ColumnDrift};
use streamwatch_monitor::batch::{aggregate_parquet, reference_from_parquet, Slice};
use streamwatch_monitor::evaluate::evaluate;
use streamwatch_monitor::mapping::{ColumnMapping, MappingArgs};
use streamwatch_monitor::MonitorError;

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

fn assert_close(what: &str, expected: Option<f64>, actual: Option<f64>) {
    let ok = match (expected, actual) {
        (Some(e), Some(a)) => e == a || (e - a).abs() <= 1e-12 * e.abs().max(a.abs()),
        (None, None) => true,
        _ => false,
    };
    assert!(ok, "{what}: expected {expected:?}, got {actual:?}");
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn check_column(case: &str, expected: &Value, actual: &ColumnDrift) {
    let what = format!("{case} {}", actual.column);
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
    assert_close(
        &format!("{what}: score"),
        golden_float(&expected["drift_score"]),
        actual.score,
    );
}

async fn check_file(file: &str, scored: &mut Option<PathBuf>) -> usize {
    let goldens: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mapping_json = &case["column_mapping"];
        let expected = &case["expected"];
        let quantiles = expected["quantiles"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| {
                        format!(
                            "{}:{}",
                            q["column"].as_str().unwrap(),
                            q["quantile"].as_f64().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mapping = ColumnMapping::from_args(&MappingArgs {
            monitor_name: "parity".into(),
            prediction: mapping_json["prediction"].as_str().unwrap().into(),
            numerical: strings(&mapping_json["numerical_features"]),
            categorical: strings(&mapping_json["categorical_features"]),
            quantiles,
            drift_share: 0.5,
            outlier_quantiles: vec![0.01, 0.99],
        })
        .unwrap();

        let reference_path = repo().join(case["reference"].as_str().unwrap());
        let mut current_path = repo().join(case["current"].as_str().unwrap());
        if let Some(model) = case["score_current_with"].as_str() {
            // The February file is scored once with the committed model, as the scorer would.
            if scored.is_none() {
                let model = streamwatch_scorer::LinearModel::load(repo().join(model)).unwrap();
                let out = std::env::temp_dir()
                    .join(format!("parity-scored-{}.parquet", std::process::id()));
                streamwatch_scorer::score_file(&model, &current_path, &out).unwrap();
                *scored = Some(out);
            }
            current_path = scored.clone().unwrap();
        }
        let bound = |key: &str| case[key].as_str().map(|t| parse_timestamp(t).unwrap());
        let slice = Slice {
            time_column: case["time_column"].as_str().map(str::to_owned),
            from: bound("start"),
            to: bound("end"),
            window_seconds: None,
            group_column: None,
        };
        let reference = reference_from_parquet(reference_path.to_str().unwrap(), &mapping)
            .await
            .unwrap();
        let windows =
            aggregate_parquet(current_path.to_str().unwrap(), &mapping, &slice, |reason| {
                MonitorError::Current {
                    path: current_path.display().to_string(),
                    reason,
                }
            })
            .await
            .unwrap();
        let data = windows.into_values().next().expect("one window");
        let metrics = evaluate(&mapping, &reference, &data);

        if let Some(error) = case["expected_error"].as_str() {
            // Evidently refuses the whole report; the monitor reports the column as untestable.
            assert!(
                metrics
                    .columns
                    .iter()
                    .any(|c| c.error.is_some() && c.score.is_none() && !c.drift_detected),
                "{name}: Evidently raised {error:?}; expected an untestable column, got {:?}",
                metrics.columns
            );
            continue;
        }

        assert_eq!(
            metrics.row_count,
            expected["row_count"].as_u64().unwrap(),
            "{name}: rows"
        );
        assert_eq!(
            u64::from(metrics.number_of_columns),
            expected["number_of_columns"].as_u64().unwrap(),
            "{name}: columns"
        );
        assert_eq!(
            metrics.number_of_missing_values,
            expected["number_of_missing_values"].as_u64().unwrap(),
            "{name}: missing cells"
        );
        assert_close(
            &format!("{name}: missing share"),
            golden_float(&expected["share_of_missing_values"]),
            metrics.share_of_missing_values,
        );
        assert_eq!(
            u64::from(metrics.number_of_drifted_columns),
            expected["number_of_drifted_columns"].as_u64().unwrap(),
            "{name}: drifted columns"
        );
        assert_close(
            &format!("{name}: drifted share"),
            golden_float(&expected["share_of_drifted_columns"]),
            Some(metrics.share_of_drifted_columns),
        );
        assert_eq!(
            metrics.dataset_drift,
            expected["dataset_drift"].as_bool().unwrap(),
            "{name}: dataset drift"
        );

        let golden_columns = expected["columns"].as_array().unwrap();
        assert_eq!(
            golden_columns.len(),
            metrics.columns.len(),
            "{name}: column count"
        );
        for golden in golden_columns {
            let column = golden["column"].as_str().unwrap();
            let actual = metrics
                .columns
                .iter()
                .find(|c| c.column == column)
                .unwrap_or_else(|| panic!("{name}: no result for {column}"));
            check_column(name, golden, actual);
        }
        let prediction = metrics.prediction_drift.as_ref().expect("prediction drift");
        check_column(
            &format!("{name} (ColumnDriftMetric)"),
            &expected["prediction_drift"],
            prediction,
        );

        for golden in expected["quantiles"].as_array().into_iter().flatten() {
            let column = golden["column"].as_str().unwrap();
            let actual = metrics
                .quantiles
                .iter()
                .find(|q| q.column == column)
                .unwrap();
            assert_close(
                &format!("{name}: quantile of {column}"),
                golden_float(&golden["value"]),
                actual.value,
            );
        }
    }
    cases.len()
}

#[tokio::test]
async fn february_days_match_evidently() {
    let mut scored = None;
    assert_eq!(
        check_file("tests/golden/feb-2022-daily.json", &mut scored).await,
        28
    );
    if let Some(path) = scored {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn synthetic_edge_cases_match_evidently() {
    let cases = check_file("tests/golden/synthetic.json", &mut None).await;
    assert!(
        cases >= 10,
        "expected the full synthetic suite, found {cases} cases"
    );
}
