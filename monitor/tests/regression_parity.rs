//! Regression metrics against Evidently's own: per pickup day of February 2022, the labelled
//! rows of `tests/golden/feb-2022-performance.json` (trips whose dropoff is at most 3 h after
//! the pickup; made by `scripts/goldens/make_goldens.sh --only performance`) go through
//! `streamwatch_monitor::performance::regression_metrics`, and each metric is compared with
//! what Evidently 0.7.23's legacy `RegressionQualityMetric` reported for the same rows
//! (`expected.evidently_regression_quality`), within 1e-12 relative.
//!
//! Where Evidently's definition differs from ours (see docs/ARCHITECTURE.md, "Evidently's
//! regression metrics"):
//! - MAE, RMSE, R² and the mean error are the same definitions (Evidently calls scikit-learn or
//!   `np.mean` on the prediction − target errors). Compared directly.
//! - MAPE: ours is a fraction over the rows with target ≠ 0, dividing by |target|. Evidently's
//!   is in percent and divides by `max(target, eps)` (eps = f64::EPSILON); a target with
//!   |target| ≤ eps is "near zero". With its default `mape_zero_handling="replace"` a near-zero
//!   row counts as 1.0 (100 %) and stays in the row count; with `"drop"` it is left out.
//!   Both are reproducible from ours exactly (same rows, same terms) only when every target is
//!   0 or greater than eps: a negative target would make Evidently divide by eps, and a target
//!   in (0, eps] would be near zero for it and not for us. So per day, when that holds:
//!   `drop` = 100 · mape, and `replace` = 100 · (mape · k + (n − k)) / n with k = `mape_rows`,
//!   n = labelled rows. Evidently's `near_zero_values` is 2 · (n − k) (it is the `.size` of a
//!   two-column frame). Every day of February 2022 qualifies; the test checks that it did
//!   compare all 28, so it cannot pass by skipping.

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use datafusion::arrow::array::{Array, Float64Array, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde_json::Value;
use streamwatch_monitor::performance::regression_metrics;

const DAY_US: i64 = 86_400 * 1_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// |a − b| relative to the larger magnitude (0 when equal).
fn relative(expected: f64, actual: f64) -> f64 {
    if expected == actual {
        0.0
    } else {
        (expected - actual).abs() / expected.abs().max(actual.abs())
    }
}

/// The February rows as `performance_goldens.py` reads them: pickup time (µs, naive), the
/// duration in minutes as pandas' `.total_seconds() / 60` (null when either time is), and the
/// prediction of the committed model, in file order.
struct Trips {
    pickup_us: Vec<Option<i64>>,
    duration_min: Vec<Option<f64>>,
    prediction: Vec<f64>,
}

fn micros(batch: &datafusion::arrow::array::RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let column = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap();
    let column = column
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i)))
        .collect()
}

fn read_trips(current: &Path, model: &Path) -> Trips {
    let model = streamwatch_scorer::LinearModel::load(model).unwrap();
    let batch = streamwatch_scorer::batch::read_parquet(current).unwrap();
    let batch = streamwatch_scorer::score_batch(&model, &batch).unwrap();
    let pickup_us = micros(&batch, "lpep_pickup_datetime");
    let dropoff_us = micros(&batch, "lpep_dropoff_datetime");
    let duration_min = pickup_us
        .iter()
        .zip(&dropoff_us)
        .map(|(p, d)| Some((d.as_ref()? - p.as_ref()?) as f64 / 1e6 / 60.0))
        .collect();
    let prediction = batch
        .column_by_name("prediction")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .values()
        .to_vec();
    Trips {
        pickup_us,
        duration_min,
        prediction,
    }
}

#[test]
fn february_days_match_evidently() {
    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/golden/feb-2022-performance.json")).unwrap(),
    )
    .unwrap();
    let horizon = goldens["label_horizon_minutes"].as_f64().unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 28);
    let trips = read_trips(
        &repo().join(goldens["current"].as_str().unwrap()),
        &repo().join(goldens["model"].as_str().unwrap()),
    );

    let names = [
        "mean_abs_error",
        "rmse",
        "r2_score",
        "mean_error",
        "mean_abs_perc_error_drop_zeros",
        "mean_abs_perc_error",
    ];
    let mut worst = [0.0f64; 6];
    let mut mape_days = 0;
    for case in cases {
        let day = case["start"].as_str().unwrap();
        let start = NaiveDateTime::parse_from_str(day, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let expected = &case["expected"];
        let evidently = &expected["evidently_regression_quality"];

        // The day's predictions and, of those, the labelled rows, in file order.
        let mut predictions = 0u64;
        let (mut truths, mut predicted) = (Vec::new(), Vec::new());
        for i in 0..trips.prediction.len() {
            let Some(t) = trips.pickup_us[i] else {
                continue;
            };
            if t < start || t >= start + DAY_US {
                continue;
            }
            predictions += 1;
            if let Some(d) = trips.duration_min[i].filter(|d| *d <= horizon) {
                truths.push(d);
                predicted.push(trips.prediction[i]);
            }
        }
        assert_eq!(
            predictions,
            expected["predictions"].as_u64().unwrap(),
            "{day}"
        );
        let n = truths.len() as u64;
        assert_eq!(n, expected["labelled_rows"].as_u64().unwrap(), "{day}");

        let ours = regression_metrics(&truths, &predicted);
        assert_eq!(
            ours.mape_rows,
            expected["mape_rows"].as_u64().unwrap(),
            "{day}"
        );
        let mut check = |index: usize, actual: f64| {
            let name = names[index];
            let want = evidently[name].as_f64().unwrap();
            let diff = relative(want, actual);
            assert!(
                diff <= 1e-12,
                "{day} {name}: Evidently {want:?}, ours {actual:?} (relative difference {diff:e})"
            );
            worst[index] = worst[index].max(diff);
        };
        check(0, ours.mae);
        check(1, ours.rmse);
        check(2, ours.r2.expect("R² of a day"));
        check(3, ours.mean_error);

        // MAPE, only where Evidently's definition is ours up to units and zero handling.
        let same_rows = truths.iter().all(|t| *t == 0.0 || *t > f64::EPSILON);
        if same_rows {
            let k = ours.mape_rows as f64;
            let zeros = n - ours.mape_rows;
            let mape = ours.mape.expect("a day has nonzero targets");
            check(4, 100.0 * mape);
            check(5, 100.0 * (mape * k + zeros as f64 * 1.0) / n as f64);
            assert_eq!(
                evidently["near_zero_values"].as_u64().unwrap(),
                2 * zeros,
                "{day}: near-zero rows"
            );
            mape_days += 1;
        }
    }
    assert_eq!(
        mape_days,
        cases.len(),
        "every February day has only zero or positive targets, so MAPE is compared on all of them"
    );
    for (name, diff) in names.iter().zip(worst) {
        eprintln!("{name}: max relative difference {diff:e}");
    }
}
