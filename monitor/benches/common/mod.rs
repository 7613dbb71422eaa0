//! Shared by the monitor's benchmarks: the scored February 2022 file as decoded events.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use streamwatch_monitor::decode::DecodedEvent;
use streamwatch_monitor::mapping::{ColumnMapping, MappingArgs};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The course's column mapping.
pub fn taxi_mapping() -> ColumnMapping {
    ColumnMapping::from_args(&MappingArgs {
        monitor_name: "bench".into(),
        prediction: "prediction".into(),
        numerical: [
            "passenger_count",
            "trip_distance",
            "fare_amount",
            "total_amount",
        ]
        .map(String::from)
        .to_vec(),
        categorical: ["PULocationID", "DOLocationID"].map(String::from).to_vec(),
        quantiles: vec!["fare_amount:0.5".into()],
        drift_share: 0.5,
        outlier_quantiles: vec![0.01, 0.99],
    })
    .unwrap()
}

/// February 2022 scored with the committed model, as the events the consumer decodes.
pub fn scored_february(counted: &[String]) -> Vec<DecodedEvent> {
    let model =
        streamwatch_scorer::LinearModel::load(repo().join("models/trip-duration-linear.json"))
            .unwrap();
    let raw = streamwatch_scorer::batch::read_parquet(
        &repo().join("data/green_tripdata_2022-02.parquet"),
    )
    .unwrap();
    let scored = streamwatch_scorer::score_batch(&model, &raw).unwrap();
    february_events(&scored, counted)
}

/// The scored February file as decoded events, the form the window operator receives.
fn february_events(batch: &RecordBatch, counted: &[String]) -> Vec<DecodedEvent> {
    let times = cast(
        batch.column_by_name("lpep_pickup_datetime").unwrap(),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .unwrap();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let values: Vec<_> = counted
        .iter()
        .map(|c| cast(batch.column_by_name(c).unwrap(), &DataType::Float64).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let cells = batch
                .columns()
                .iter()
                .enumerate()
                .map(|(id, column)| {
                    let missing = column.is_null(row)
                        || matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                            && cast(&column.slice(row, 1), &DataType::Utf8)
                                .unwrap()
                                .as_string::<i32>()
                                .value(0)
                                .is_empty()
                        || matches!(column.data_type(), DataType::Float64)
                            && !column.as_primitive::<Float64Type>().value(row).is_finite();
                    (id as u32, missing)
                })
                .collect();
            DecodedEvent {
                event_time_us: times.value(row),
                trip_id: None,
                values: values
                    .iter()
                    .map(|v| {
                        let v = v.as_primitive::<Float64Type>();
                        (!v.is_null(row)).then(|| v.value(row))
                    })
                    .collect(),
                cells,
            }
        })
        .collect()
}
