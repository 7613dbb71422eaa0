//! Retrains on the bundled January file and checks the fit against the course's published
//! model, and the committed model and reference files against the fresh fit.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use streamwatch_scorer::batch::read_parquet;
use streamwatch_scorer::train::{self, course, REFERENCE_MODEL_KEY};
use streamwatch_scorer::LinearModel;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn trained() -> train::Trained {
    train::train(
        &repo("data/green_tripdata_2022-01.parquet"),
        course::TRAIN_ROWS,
    )
    .unwrap()
}

#[test]
fn training_reproduces_the_course_model() {
    let trained = trained();
    let model = &trained.model;
    assert_eq!(model.features(), train_features());
    for (name, ours, theirs) in model
        .features()
        .iter()
        .map(String::as_str)
        .zip(model.coefficients())
        .zip(course::COEFFICIENTS)
        .map(|((n, a), b)| (n, *a, b))
        .chain([("intercept", model.intercept(), course::INTERCEPT)])
    {
        let relative = ((ours - theirs) / theirs).abs();
        assert!(
            relative < 1e-9,
            "{name}: {ours} vs course {theirs} ({relative:e})"
        );
    }
    let info = model.training().unwrap();
    assert_eq!(trained.input_rows, 62_495);
    assert_eq!(info.kept_rows, 55_211);
    assert_eq!(info.train_rows, 30_000);
    assert_eq!(info.validation_rows, 25_211);
    assert!(
        (info.mae_train - course::MAE_TRAIN).abs() < 1e-4,
        "{}",
        info.mae_train
    );
    assert!(
        (info.mae_validation - course::MAE_VALIDATION).abs() < 1e-4,
        "{}",
        info.mae_validation
    );
    assert!(
        model.version().starts_with("2022-01-ols-"),
        "{}",
        model.version()
    );
}

fn train_features() -> Vec<String> {
    streamwatch_scorer::model::FEATURES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[test]
fn committed_model_and_reference_match_a_fresh_training() {
    let trained = trained();
    let committed = LinearModel::load(repo("models/trip-duration-linear.json")).unwrap();
    assert_eq!(
        committed, trained.model,
        "models/trip-duration-linear.json is stale: run `scorer train`"
    );

    let reference = read_parquet(&repo("data/reference.parquet")).unwrap();
    let source = read_parquet(&repo("data/green_tripdata_2022-01.parquet")).unwrap();
    assert_eq!(reference.num_rows(), 25_211);
    let schema = reference.schema();
    assert_eq!(schema.fields().len(), source.num_columns() + 2);
    for (ours, theirs) in schema.fields().iter().zip(source.schema().fields()) {
        assert_eq!(ours.name(), theirs.name());
        assert_eq!(ours.data_type(), theirs.data_type(), "{}", ours.name());
    }
    assert_eq!(
        schema.field_with_name("ehail_fee").unwrap().data_type(),
        &DataType::Null
    );
    assert_eq!(
        schema
            .metadata()
            .get(REFERENCE_MODEL_KEY)
            .map(String::as_str),
        Some(committed.version())
    );
    assert_eq!(reference, trained.reference);

    // Every stored prediction is the bit-exact formula applied to the row's features.
    let prediction = reference
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(prediction.null_count(), 0);
    let features: Vec<_> = committed
        .features()
        .iter()
        .map(|name| {
            datafusion::arrow::compute::cast(
                reference.column_by_name(name).unwrap(),
                &DataType::Float64,
            )
            .unwrap()
        })
        .collect();
    for row in 0..reference.num_rows() {
        let x: Vec<Option<f64>> = features
            .iter()
            .map(|c| {
                let c = c.as_primitive::<Float64Type>();
                c.is_valid(row).then(|| c.value(row))
            })
            .collect();
        assert_eq!(
            prediction.value(row).to_bits(),
            committed.predict(&x).to_bits(),
            "row {row}"
        );
    }
}

#[test]
fn too_few_rows_is_a_clear_error() {
    let error = train::train(&repo("data/green_tripdata_2022-01.parquet"), 60_000)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("55211 rows pass the filter"), "{error}");
    assert!(error.contains("green_tripdata_2022-01.parquet"), "{error}");
}
