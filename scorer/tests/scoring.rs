//! Offline scoring of the bundled February file.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use streamwatch_scorer::batch::read_parquet;
use streamwatch_scorer::{score_batch, score_file, LinearModel};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn score_batch_scores_every_february_trip() {
    let model = LinearModel::load(repo("models/trip-duration-linear.json")).unwrap();
    let batch = read_parquet(&repo("data/green_tripdata_2022-02.parquet")).unwrap();
    let scored = score_batch(&model, &batch).unwrap();
    assert_eq!(scored.num_rows(), 69_399);
    assert_eq!(scored.num_columns(), batch.num_columns() + 1);
    let prediction = scored
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(prediction.null_count(), 0);
    assert!(prediction.values().iter().all(|p| p.is_finite()));

    // passenger_count is null in thousands of February rows; those count as 0.
    let passengers = batch.column_by_name("passenger_count").unwrap();
    let row = (0..batch.num_rows())
        .find(|&row| passengers.is_null(row))
        .expect("a row without passenger_count");
    let x: Vec<Option<f64>> = model
        .features()
        .iter()
        .map(|name| {
            let column = datafusion::arrow::compute::cast(
                batch.column_by_name(name).unwrap(),
                &DataType::Float64,
            )
            .unwrap();
            let column = column.as_primitive::<Float64Type>();
            column.is_valid(row).then(|| column.value(row))
        })
        .collect();
    assert_eq!(x[0], None);
    assert_eq!(prediction.value(row).to_bits(), model.predict(&x).to_bits());
}

#[test]
fn score_file_writes_all_columns_and_the_prediction() {
    let model = LinearModel::load(repo("models/trip-duration-linear.json")).unwrap();
    let output = std::env::temp_dir().join(format!("scorer-feb-{}.parquet", std::process::id()));
    let input = repo("data/green_tripdata_2022-02.parquet");
    assert_eq!(score_file(&model, &input, &output).unwrap(), 69_399);
    let written = read_parquet(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    let expected = score_batch(&model, &read_parquet(&input).unwrap()).unwrap();
    assert_eq!(written.schema().fields(), expected.schema().fields());
    assert_eq!(written.columns(), expected.columns());
}
