//! Outlier shares against NumPy: the 28 February 2022 days of
//! `tests/golden/feb-2022-outliers.json` (made by `scripts/goldens/make_goldens.sh --only
//! outliers`) computed by `monitor batch`'s library path, compared column by column: the
//! reference bounds within 1e-12 relative, the counts and shares exactly (ratios of counts).
//! Also the range's configuration (CLI, spec) and which columns get outliers.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use streamwatch_common::events::ColumnOutliers;
use streamwatch_monitor::config::{BatchArgs, Cli, Command};
use streamwatch_monitor::evaluate::{evaluate, ColumnSample, ReferenceColumn, WindowData};
use streamwatch_monitor::mapping::ColumnMapping;
use streamwatch_monitor::report::batch;
use streamwatch_monitor::spec::{mapping, Spec};
use streamwatch_stats::Distribution;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn batch_args(args: &[&str]) -> BatchArgs {
    let cli = Cli::try_parse_from(["monitor", "batch"].iter().chain(args))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Batch(args) => *args,
        _ => unreachable!(),
    }
}

fn assert_close(what: &str, expected: f64, actual: f64) {
    let ok =
        expected == actual || (expected - actual).abs() <= 1e-12 * expected.abs().max(actual.abs());
    assert!(ok, "{what}: expected {expected:?}, got {actual:?}");
}

fn share(value: &Value) -> Option<f64> {
    match value {
        Value::Null => None,
        v => Some(v.as_f64().expect("a share is a number or null")),
    }
}

fn check(what: &str, golden: &Value, actual: &ColumnOutliers) {
    assert_eq!(actual.column, golden["column"].as_str().unwrap(), "{what}");
    assert_eq!(
        actual.lower_quantile,
        golden["lower_quantile"].as_f64().unwrap(),
        "{what}"
    );
    assert_eq!(
        actual.upper_quantile,
        golden["upper_quantile"].as_f64().unwrap(),
        "{what}"
    );
    for (name, value) in [
        ("lower_bound", actual.lower_bound),
        ("upper_bound", actual.upper_bound),
        ("iqr_lower_fence", actual.iqr_lower_fence),
        ("iqr_upper_fence", actual.iqr_upper_fence),
    ] {
        assert_close(
            &format!("{what}: {name}"),
            golden[name].as_f64().unwrap(),
            value,
        );
    }
    let values = golden["values"].as_u64().unwrap();
    assert_eq!(actual.values, values, "{what}: values");
    for (name, count, value) in [
        (
            "share_outside_quantiles",
            "outside_quantiles",
            actual.share_outside_quantiles,
        ),
        ("share_outside_iqr", "outside_iqr", actual.share_outside_iqr),
    ] {
        let expected = share(&golden[name]);
        assert_eq!(value, expected, "{what}: {name}");
        // The shares are exact ratios of the counts.
        let outside = golden[count].as_u64().unwrap();
        assert_eq!(
            value,
            (values > 0).then(|| outside as f64 / values as f64),
            "{what}: {name} from {outside} of {values}"
        );
    }
}

#[tokio::test]
async fn february_days_match_numpy() {
    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/golden/feb-2022-outliers.json")).unwrap(),
    )
    .unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 28);
    let range = goldens["outlier_quantiles"].as_array().unwrap();
    let range = format!(
        "{},{}",
        range[0].as_f64().unwrap(),
        range[1].as_f64().unwrap()
    );

    // The February file scored once with the committed model, as the scorer would.
    let first = &cases[0];
    let model = streamwatch_scorer::LinearModel::load(
        repo().join(first["score_current_with"].as_str().unwrap()),
    )
    .unwrap();
    let scored =
        std::env::temp_dir().join(format!("outliers-scored-{}.parquet", std::process::id()));
    streamwatch_scorer::score_file(
        &model,
        &repo().join(first["current"].as_str().unwrap()),
        &scored,
    )
    .unwrap();
    let reference = repo().join(first["reference"].as_str().unwrap());
    let args = batch_args(&[
        "--current",
        scored.to_str().unwrap(),
        "--reference",
        reference.to_str().unwrap(),
        "--time-column",
        first["time_column"].as_str().unwrap(),
        "--window",
        "1d",
        "--from",
        "2022-02-01",
        "--to",
        "2022-03-01",
        "--outlier-quantiles",
        &range,
    ]);
    let windows = batch(&args).await;
    let _ = std::fs::remove_file(&scored);
    let windows = windows.unwrap();
    assert_eq!(windows.len(), cases.len());

    for (case, window) in cases.iter().zip(&windows) {
        let name = case["name"].as_str().unwrap();
        assert_eq!(
            window.window_start.as_deref(),
            case["start"].as_str(),
            "{name}: window"
        );
        let expected = &case["expected"];
        assert_eq!(
            window.metrics.row_count,
            expected["row_count"].as_u64().unwrap(),
            "{name}: rows"
        );
        let golden = expected["outliers"].as_array().unwrap();
        let actual = &window.metrics.outliers;
        // Every numerical column and the prediction, in mapping order; no categorical one.
        assert_eq!(
            actual.iter().map(|o| o.column.as_str()).collect::<Vec<_>>(),
            golden
                .iter()
                .map(|o| o["column"].as_str().unwrap())
                .collect::<Vec<_>>(),
            "{name}: columns"
        );
        for (golden, actual) in golden.iter().zip(actual) {
            check(&format!("{name} {}", actual.column), golden, actual);
        }
    }
}

#[test]
fn the_range_comes_from_the_cli_or_the_spec() {
    let mapping_of = |args: &[&str]| {
        let mut all = vec!["--current", "x.parquet"];
        all.extend(args);
        ColumnMapping::from_args(&batch_args(&all).monitored.mapping)
    };
    assert_eq!(mapping_of(&[]).unwrap().outlier_quantiles, (0.01, 0.99));
    assert_eq!(
        mapping_of(&["--outlier-quantiles", "0.05,0.95"])
            .unwrap()
            .outlier_quantiles,
        (0.05, 0.95)
    );
    for bad in [
        "0.99,0.01",
        "0.5,0.5",
        "-0.1,0.5",
        "0.5,1.1",
        "0.1",
        "0.1,0.2,0.3",
    ] {
        let err = mapping_of(&[&format!("--outlier-quantiles={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("outlier quantiles"), "{bad}: {err}");
    }

    let taxi = Spec::load(&repo().join("examples/specs/taxi.toml")).unwrap();
    assert_eq!(mapping(&taxi).unwrap().outlier_quantiles, (0.01, 0.99));
    let spec = Spec::parse(
        "name = \"m\"\nprediction = \"p\"\nnumerical = [\"a\"]\noutlier_quantiles = [0.1, 0.9]\n\
         [reference]\npath = \"r.parquet\"\n",
    )
    .unwrap();
    assert_eq!(mapping(&spec).unwrap().outlier_quantiles, (0.1, 0.9));
}

fn sample(values: &[f64], nulls: u64, integer_dtype: bool) -> ColumnSample {
    ColumnSample {
        values: Distribution::from_values(values),
        nulls,
        integer_dtype,
    }
}

#[test]
fn only_numerical_columns_and_a_numerical_prediction_get_outliers() {
    let spec = Spec::parse(
        "name = \"m\"\nprediction = \"p\"\nnumerical = [\"a\", \"empty\"]\ncategorical = [\"c\"]\n\
         outlier_quantiles = [0.25, 0.75]\n[reference]\npath = \"r.parquet\"\n",
    )
    .unwrap();
    let mapping = mapping(&spec).unwrap();
    let reference_values: Vec<f64> = (0..=100).map(f64::from).collect();
    let window = |prediction: ColumnSample| WindowData {
        row_count: 4,
        number_of_columns: 4,
        number_of_missing_values: 1,
        columns: vec![
            prediction,
            sample(&[-1.0, 30.0, 200.0, f64::INFINITY], 1, false),
            sample(&[1.0], 3, false),
            sample(&[1.0, 500.0, 2.0, 3.0], 0, true),
        ],
    };
    let reference = |prediction: ColumnSample| -> Vec<ReferenceColumn> {
        [
            prediction,
            sample(&reference_values, 0, false),
            sample(&[], 5, false),
            sample(&reference_values, 0, true),
        ]
        .into_iter()
        .map(ReferenceColumn::new)
        .collect()
    };

    // A prediction with few integer values is categorical (ColumnDriftMetric's rule on the
    // reference): no outliers for it, nor for the categorical column or a column whose
    // reference has no values.
    let few = sample(&[0.0, 1.0, 1.0, 0.0], 0, true);
    let metrics = evaluate(&mapping, &reference(few.clone()), &window(few));
    assert_eq!(metrics.outliers.len(), 1, "{:?}", metrics.outliers);
    let a = &metrics.outliers[0];
    assert_eq!(a.column, "a");
    assert_eq!((a.lower_quantile, a.upper_quantile), (0.25, 0.75));
    assert_eq!((a.lower_bound, a.upper_bound), (25.0, 75.0));
    assert_eq!((a.iqr_lower_fence, a.iqr_upper_fence), (-50.0, 150.0));
    // +inf is a missing cell: 3 finite values, 2 outside 25..75, 1 outside the fences.
    assert_eq!(a.values, 3);
    assert_eq!(a.share_outside_quantiles, Some(2.0 / 3.0));
    assert_eq!(a.share_outside_iqr, Some(1.0 / 3.0));

    // A continuous prediction gets them, first.
    let continuous = sample(&[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5], 0, false);
    let metrics = evaluate(
        &mapping,
        &reference(continuous),
        &window(sample(&[], 4, false)),
    );
    let columns: Vec<_> = metrics.outliers.iter().map(|o| o.column.as_str()).collect();
    assert_eq!(columns, ["p", "a"]);
    let p = &metrics.outliers[0];
    assert_eq!(
        (p.values, p.share_outside_quantiles, p.share_outside_iqr),
        (0, None, None)
    );
}
