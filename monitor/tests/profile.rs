//! A stored reference profile loads to exactly the profile built from the data.

use std::path::{Path, PathBuf};

use streamwatch_monitor::batch::reference_from_parquet;
use streamwatch_monitor::mapping::{ColumnMapping, MappingArgs};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn taxi(numerical: &[&str]) -> ColumnMapping {
    ColumnMapping::from_args(&MappingArgs {
        monitor_name: "taxi".into(),
        prediction: "prediction".into(),
        numerical: numerical.iter().map(|c| c.to_string()).collect(),
        categorical: vec!["PULocationID".into(), "DOLocationID".into()],
        quantiles: vec!["fare_amount:0.5".into()],
        drift_share: 0.5,
        outlier_quantiles: vec![0.01, 0.99],
    })
    .unwrap()
}

#[tokio::test]
async fn stored_profiles_round_trip_exactly() {
    let mapping = taxi(&[
        "passenger_count",
        "trip_distance",
        "fare_amount",
        "total_amount",
    ]);
    let data = repo().join("data/reference.parquet");
    let built = reference_from_parquet(data.to_str().unwrap(), &mapping)
        .await
        .unwrap();
    let stored = std::env::temp_dir().join(format!("profile-{}.parquet", std::process::id()));
    let stored = stored.to_str().unwrap();
    streamwatch_monitor::profile::write(stored, &mapping, &built).unwrap();

    let loaded = reference_from_parquet(stored, &mapping).await.unwrap();
    assert_eq!(loaded.len(), built.len());
    for (a, b) in loaded.iter().zip(&built) {
        assert_eq!(a.sample.values, b.sample.values);
        assert_eq!(a.sample.nulls, b.sample.nulls);
        assert_eq!(a.sample.integer_dtype, b.sample.integer_dtype);
    }
    assert!(built.iter().all(|c| c.sample.values.total() == 25_211));

    // A mapping asking for a column the profile lacks is refused with the column's name.
    let other = taxi(&["passenger_count", "extra"]);
    let error = reference_from_parquet(stored, &other)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"extra\"") && error.contains("monitor profile"),
        "{error}"
    );
    std::fs::remove_file(stored).unwrap();
}
