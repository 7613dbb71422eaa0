//! A monitoring spec for a second, non-taxi data set drives `monitor batch`: columns not
//! overridden match Evidently's golden values, the overridden one uses the chosen test.

use std::path::{Path, PathBuf};

use serde_json::Value;
use streamwatch_monitor::config::{BatchArgs, MonitoredArgs};
use streamwatch_monitor::mapping::MappingArgs;
use streamwatch_monitor::report::batch;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn a_spec_for_another_data_set_drives_the_batch_command() {
    let args = BatchArgs {
        monitored: MonitoredArgs {
            spec: Some(repo().join("examples/specs/synthetic-rides.toml")),
            mapping: MappingArgs {
                monitor_name: "ignored".into(),
                prediction: "ignored".into(),
                numerical: vec![],
                categorical: vec![],
                quantiles: vec![],
                drift_share: 0.5,
                outlier_quantiles: vec![0.01, 0.99],
            },
            reference: "ignored".into(),
            model: None,
            model_features: vec![],
        },
        current: repo()
            .join("tests/golden/synthetic/large_ref_small_window/current.parquet")
            .to_string_lossy()
            .into_owned(),
        time_column: "ignored".into(),
        from: None,
        to: None,
        window: None,
    };
    let windows = batch(&args).await.unwrap();
    assert_eq!(windows.len(), 1);
    let window = &windows[0].metrics;

    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/golden/synthetic.json")).unwrap(),
    )
    .unwrap();
    let case = goldens["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "large_ref_small_window")
        .unwrap();
    let expected = &case["expected"];
    assert_eq!(window.row_count, expected["row_count"].as_u64().unwrap());
    for golden in expected["columns"].as_array().unwrap() {
        let name = golden["column"].as_str().unwrap();
        let actual = window.columns.iter().find(|c| c.column == name).unwrap();
        if name == "fare" {
            assert_eq!(actual.stattest, "psi");
            assert_eq!(actual.threshold, 0.2);
            assert!(actual.score.is_some_and(|s| s >= 0.0));
            continue;
        }
        assert_eq!(
            actual.stattest,
            golden["stattest"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            actual.drift_detected,
            golden["drift_detected"].as_bool().unwrap(),
            "{name}"
        );
        let (e, a) = (
            golden["drift_score"].as_f64().unwrap(),
            actual.score.unwrap(),
        );
        assert!(
            (e - a).abs() <= 1e-12 * e.abs().max(a.abs()),
            "{name}: {a} vs {e}"
        );
    }
    assert_eq!(window.quantiles[0].column, "fare");
}
