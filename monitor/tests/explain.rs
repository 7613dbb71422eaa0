//! Per-feature contributions of the linear model against NumPy/SciPy: the 28 February 2022
//! days of `tests/golden/feb-2022-contributions.json` (made by `scripts/goldens/make_goldens.sh
//! --only contributions`) computed by `monitor batch`'s library path with `--model`.
//! Coefficients and the reference mean exactly as loaded; means and the drift score within
//! 1e-12 relative (the mean contribution within 1e-12 of the reference's mean absolute
//! contribution, as it is a difference of near-equal means); flags and row counts exactly.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use streamwatch_monitor::config::{BatchArgs, Cli, Command};
use streamwatch_monitor::report::batch;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn close(expected: f64, actual: f64, scale: f64) -> bool {
    expected == actual || (expected - actual).abs() <= 1e-12 * scale
}

#[tokio::test]
async fn february_days_match_numpy() {
    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/golden/feb-2022-contributions.json")).unwrap(),
    )
    .unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 28);
    let model_path = repo().join(goldens["model"].as_str().unwrap());
    let model = streamwatch_scorer::LinearModel::load(&model_path).unwrap();
    let scored =
        std::env::temp_dir().join(format!("explain-scored-{}.parquet", std::process::id()));
    streamwatch_scorer::score_file(
        &model,
        &repo().join(goldens["current"].as_str().unwrap()),
        &scored,
    )
    .unwrap();
    let reference = repo().join(goldens["reference"].as_str().unwrap());
    let cli = Cli::try_parse_from([
        "monitor",
        "batch",
        "--current",
        scored.to_str().unwrap(),
        "--reference",
        reference.to_str().unwrap(),
        "--model",
        model_path.to_str().unwrap(),
        "--window",
        "1d",
        "--from",
        "2022-02-01",
        "--to",
        "2022-03-01",
    ])
    .unwrap();
    let Command::Batch(args) = cli.command else {
        unreachable!()
    };
    let args: BatchArgs = *args;
    let windows = batch(&args).await;
    let _ = std::fs::remove_file(&scored);
    let windows = windows.unwrap();
    assert_eq!(windows.len(), 28);
    for (case, window) in cases.iter().zip(&windows) {
        let day = case["start"].as_str().unwrap();
        assert_eq!(window.window_start.as_deref(), Some(day));
        let expected = case["features"].as_array().unwrap();
        let actual = &window.metrics.contributions;
        assert_eq!(actual.len(), expected.len(), "{day}: one entry per feature");
        for (want, got) in expected.iter().zip(actual) {
            let what = format!("{day} {}", got.feature);
            let f = |name: &str| want[name].as_f64().unwrap();
            assert_eq!(got.feature, want["feature"].as_str().unwrap(), "{what}");
            assert_eq!(got.coefficient, f("coefficient"), "{what}: coefficient");
            assert_eq!(got.rows, want["rows"].as_u64().unwrap(), "{what}: rows");
            let scale = f("reference_mean").abs();
            assert!(
                close(f("reference_mean"), got.reference_mean, scale),
                "{what}: reference mean {} vs {}",
                got.reference_mean,
                f("reference_mean")
            );
            let abs = f("mean_abs_contribution");
            let got_abs = got.mean_abs_contribution.unwrap();
            assert!(
                close(abs, got_abs, abs),
                "{what}: mean |c| {got_abs} vs {abs}"
            );
            let ref_abs = f("reference_mean_abs_contribution");
            assert!(
                close(ref_abs, got.reference_mean_abs_contribution, ref_abs),
                "{what}: reference mean |c|"
            );
            let mean = got.mean_contribution.unwrap();
            assert!(
                close(f("mean_contribution"), mean, abs),
                "{what}: mean c {mean} vs {}",
                f("mean_contribution")
            );
            let score = got.drift_score.unwrap();
            assert!(
                close(f("drift_score"), score, f("drift_score")),
                "{what}: drift {score} vs {}",
                f("drift_score")
            );
            assert_eq!(
                got.drift_detected,
                want["drift_detected"].as_bool().unwrap(),
                "{what}"
            );
        }
    }
}

/// A scikit-learn ONNX export of the same regression (float32 coefficients) loads through
/// tract and explains the same day almost identically; its features come from the option.
#[tokio::test]
async fn an_onnx_model_gets_the_same_treatment() {
    let model =
        streamwatch_scorer::LinearModel::load(repo().join("models/trip-duration-linear.json"))
            .unwrap();
    let scored = std::env::temp_dir().join(format!("explain-onnx-{}.parquet", std::process::id()));
    streamwatch_scorer::score_file(
        &model,
        &repo().join("data/green_tripdata_2022-02.parquet"),
        &scored,
    )
    .unwrap();
    let run = |model_args: Vec<String>| {
        let mut argv: Vec<String> = [
            "monitor",
            "batch",
            "--current",
            scored.to_str().unwrap(),
            "--reference",
            repo().join("data/reference.parquet").to_str().unwrap(),
            "--from",
            "2022-02-01",
            "--to",
            "2022-02-02",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(model_args);
        let Command::Batch(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        args
    };
    let json = run(vec![
        "--model".into(),
        repo()
            .join("models/trip-duration-linear.json")
            .display()
            .to_string(),
    ]);
    let onnx = run(vec![
        "--model".into(),
        repo()
            .join("models/onnx/trip-duration-linreg.onnx")
            .display()
            .to_string(),
        "--model-features".into(),
        model.features().join(","),
    ]);
    let from_json = batch(&json).await.unwrap().remove(0).metrics.contributions;
    let from_onnx = batch(&onnx).await.unwrap().remove(0).metrics.contributions;
    let _ = std::fs::remove_file(&scored);
    assert_eq!(from_onnx.len(), 6);
    for (a, b) in from_json.iter().zip(&from_onnx) {
        assert_eq!(a.feature, b.feature);
        let (x, y) = (
            a.mean_abs_contribution.unwrap(),
            b.mean_abs_contribution.unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-5 * x.abs().max(1e-9),
            "{}: {x} vs {y}",
            a.feature
        );
        assert_eq!(a.drift_detected, b.drift_detected, "{}", a.feature);
    }
    // Without the feature names an ONNX model is refused with the reason.
    let unnamed = run(vec![
        "--model".into(),
        repo()
            .join("models/onnx/trip-duration-linreg.onnx")
            .display()
            .to_string(),
    ]);
    let error = batch(&unnamed).await.unwrap_err().to_string();
    assert!(error.contains("model"), "{error}");
}
