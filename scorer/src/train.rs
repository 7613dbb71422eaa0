//! Training the course's model: ordinary least squares with an intercept on the first kept
//! rows of a TLC file, the remaining kept rows becoming the monitor's reference data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use nalgebra::{DMatrix, DVector};
use streamwatch_common::events::PREDICTION;

use crate::batch::{feature_values, predictions, read_parquet, ParquetFileWriter};
use crate::model::{LinearModel, TrainingInfo, FEATURES, TARGET};
use crate::{Error, Result};

pub const PICKUP: &str = "lpep_pickup_datetime";
pub const DROPOFF: &str = "lpep_dropoff_datetime";
const PASSENGER_COUNT: &str = "passenger_count";
/// Schema metadata key of the reference file naming the model that made its predictions.
pub const REFERENCE_MODEL_KEY: &str = "streamwatch.model_version";

/// The course's published fit on `green_tripdata_2022-01.parquet` with 30,000 training rows
/// (scikit-learn `LinearRegression`), kept to report how close a retraining comes.
pub mod course {
    pub const INPUT: &str = "green_tripdata_2022-01.parquet";
    pub const TRAIN_ROWS: usize = 30_000;
    pub const COEFFICIENTS: [f64; 6] = [
        -0.013579399518018597,
        -1.0880067218462571e-05,
        0.4128882540093592,
        0.19890292342197644,
        -0.005173405959499887,
        0.0021842771145854853,
    ];
    pub const INTERCEPT: f64 = 4.4360188162808445;
    pub const MAE_TRAIN: f64 = 3.8047;
    pub const MAE_VALIDATION: f64 = 4.1421;
}

/// What a training run produced.
pub struct Trained {
    pub model: LinearModel,
    pub input_rows: usize,
    /// The kept rows after the training rows: all source columns + `duration_min` + `prediction`.
    pub reference: RecordBatch,
}

/// Fits the model on `input` without writing anything.
pub fn train(input: &Path, train_rows: usize) -> Result<Trained> {
    let failed = |reason: String| Error::Training {
        path: input.to_owned(),
        reason,
    };
    let batch = read_parquet(input)?;
    let duration = duration_minutes(&batch)?;
    let passengers = feature_values(&batch, PASSENGER_COUNT)?;
    // The course's filter; comparisons with a missing value are false, as in pandas.
    let kept: Vec<u32> = (0..batch.num_rows())
        .filter(|&row| {
            duration.is_valid(row)
                && (0.0..=60.0).contains(&duration.value(row))
                && passengers.is_valid(row)
                && passengers.value(row) > 0.0
                && passengers.value(row) <= 8.0
        })
        .map(|row| row as u32)
        .collect();
    if train_rows < FEATURES.len() + 1 || kept.len() <= train_rows {
        return Err(failed(format!(
            "{} rows pass the filter; need more than --train-rows {train_rows} (and at least {})",
            kept.len(),
            FEATURES.len() + 1
        )));
    }
    let features = FEATURES
        .iter()
        .map(|name| feature_values(&batch, name))
        .collect::<Result<Vec<_>>>()?;
    let (fit_rows, reference_rows) = kept.split_at(train_rows);
    let x: Vec<Vec<f64>> = features
        .iter()
        .map(|column| {
            fit_rows
                .iter()
                .map(|&row| value_or_zero(column, row as usize))
                .collect()
        })
        .collect();
    let y: Vec<f64> = fit_rows
        .iter()
        .map(|&row| duration.value(row as usize))
        .collect();
    let (coefficients, intercept) = fit_ols(&x, &y).map_err(failed)?;
    let version = version(input, &coefficients, intercept);
    let feature_names: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    let fitted = LinearModel::new(
        version.clone(),
        feature_names.clone(),
        coefficients.clone(),
        intercept,
        None,
    )?;

    let train_batch = select_rows(&batch, fit_rows)?;
    let mae_train = mean_absolute_error(
        &predictions(&fitted, &train_batch)?,
        &select_values(&duration, fit_rows),
    );
    let reference_source = select_rows(&batch, reference_rows)?;
    let reference_duration = select_values(&duration, reference_rows);
    let reference_prediction = predictions(&fitted, &reference_source)?;
    let mae_validation = mean_absolute_error(&reference_prediction, &reference_duration);

    let info = TrainingInfo {
        input: file_name(input),
        input_rows: batch.num_rows() as u64,
        target_definition: format!("({DROPOFF} - {PICKUP}) in minutes"),
        filter: format!("0 <= {TARGET} <= 60 and 0 < {PASSENGER_COUNT} <= 8 (nulls dropped)"),
        kept_rows: kept.len() as u64,
        train_rows: fit_rows.len() as u64,
        validation_rows: reference_rows.len() as u64,
        null_features: "replaced by 0".into(),
        method: "ordinary least squares with intercept: Householder QR of the centred \
                 design matrix, as scikit-learn LinearRegression centres then solves"
            .into(),
        version_scheme: "<input month>-ols-<first 8 hex digits of the FNV-1a 64 hash of the \
                         little-endian bits of the coefficients then the intercept>"
            .into(),
        mae_train,
        mae_validation,
    };
    let model = LinearModel::new(version, feature_names, coefficients, intercept, Some(info))?;
    let reference = reference_batch(
        &reference_source,
        reference_duration,
        reference_prediction,
        model.version(),
    )?;
    Ok(Trained {
        model,
        input_rows: batch.num_rows(),
        reference,
    })
}

/// Trains on `input`, then writes the model JSON and the reference Parquet file.
pub fn train_and_write(
    input: &Path,
    train_rows: usize,
    model_out: &Path,
    reference_out: &Path,
) -> Result<Trained> {
    let trained = train(input, train_rows)?;
    for path in [model_out, reference_out] {
        create_parent(path)?;
    }
    trained.model.save(model_out)?;
    let mut writer = ParquetFileWriter::create(reference_out, trained.reference.schema())?;
    writer.write(&trained.reference)?;
    writer.close()?;
    Ok(trained)
}

/// Per coefficient (then the intercept): name, this fit, the course's value and the relative
/// difference, when `input`/`train_rows` are the course's setup.
pub fn compare_with_course(
    model: &LinearModel,
    input: &Path,
    train_rows: usize,
) -> Option<Vec<(String, f64, f64, f64)>> {
    if file_name(input) != course::INPUT || train_rows != course::TRAIN_ROWS {
        return None;
    }
    let ours = model
        .coefficients()
        .iter()
        .copied()
        .chain([model.intercept()]);
    let theirs = course::COEFFICIENTS.into_iter().chain([course::INTERCEPT]);
    let names = model.features().iter().cloned().chain(["intercept".into()]);
    Some(
        names
            .zip(ours.zip(theirs))
            .map(|(name, (a, b))| (name, a, b, ((a - b) / b).abs()))
            .collect(),
    )
}

/// `(dropoff - pickup)` in minutes, computed as pandas does: the difference in the column's
/// unit, divided by that unit's count per second, divided by 60.
fn duration_minutes(batch: &RecordBatch) -> Result<Float64Array> {
    let raw = |name: &str| -> Result<(ArrayRef, TimeUnit)> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| Error::MissingColumn {
                column: name.to_owned(),
            })?;
        let DataType::Timestamp(unit, _) = column.data_type() else {
            return Err(Error::ColumnType {
                column: name.to_owned(),
                data_type: column.data_type().clone(),
                expected: "Timestamp",
            });
        };
        let values = cast(column, &DataType::Int64).map_err(|source| Error::Arrow {
            context: format!("reading timestamps of {name:?}"),
            source,
        })?;
        Ok((values, *unit))
    };
    let (pickup, pickup_unit) = raw(PICKUP)?;
    let (dropoff, dropoff_unit) = raw(DROPOFF)?;
    if pickup_unit != dropoff_unit {
        return Err(Error::ColumnType {
            column: DROPOFF.to_owned(),
            data_type: batch
                .schema()
                .field_with_name(DROPOFF)
                .map_or(DataType::Null, |f| f.data_type().clone()),
            expected: "the time unit of the pickup column",
        });
    }
    let per_second = match pickup_unit {
        TimeUnit::Second => 1.0,
        TimeUnit::Millisecond => 1e3,
        TimeUnit::Microsecond => 1e6,
        TimeUnit::Nanosecond => 1e9,
    };
    let (pickup, dropoff) = (
        pickup.as_primitive::<Int64Type>(),
        dropoff.as_primitive::<Int64Type>(),
    );
    Ok(pickup
        .iter()
        .zip(dropoff.iter())
        .map(|(start, end)| Some((end? - start?) as f64 / per_second / 60.0))
        .collect())
}

fn value_or_zero(column: &Float64Array, row: usize) -> f64 {
    if column.is_valid(row) {
        column.value(row)
    } else {
        0.0
    }
}

fn select_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    take_record_batch(batch, &UInt32Array::from(rows.to_vec())).map_err(|source| Error::Arrow {
        context: "selecting the kept rows".into(),
        source,
    })
}

fn select_values(column: &Float64Array, rows: &[u32]) -> Float64Array {
    rows.iter().map(|&row| column.value(row as usize)).collect()
}

fn mean_absolute_error(prediction: &Float64Array, truth: &Float64Array) -> f64 {
    let errors: Vec<f64> = prediction
        .values()
        .iter()
        .zip(truth.values().iter())
        .map(|(p, t)| (p - t).abs())
        .collect();
    mean(&errors)
}

/// Mean with Neumaier-compensated summation.
fn mean(values: &[f64]) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for &v in values {
        let t = sum + v;
        compensation += if sum.abs() >= v.abs() {
            (sum - t) + v
        } else {
            (v - t) + sum
        };
        sum = t;
    }
    (sum + compensation) / values.len() as f64
}

/// Least squares with an intercept, as scikit-learn's `LinearRegression`: centre the columns
/// and the target, solve the centred problem, then `intercept = mean(y) - mean(x) . beta`.
/// The centred problem is solved by Householder QR rather than normal equations, whose
/// squared condition number would cost digits with trip_distance's outliers.
/// `x` holds one vector per feature.
fn fit_ols(x: &[Vec<f64>], y: &[f64]) -> Result<(Vec<f64>, f64), String> {
    let (rows, cols) = (y.len(), x.len());
    let x_mean: Vec<f64> = x.iter().map(|column| mean(column)).collect();
    let y_mean = mean(y);
    let design = DMatrix::from_fn(rows, cols, |i, j| x[j][i] - x_mean[j]);
    let mut target = DVector::from_fn(rows, |i, _| y[i] - y_mean);
    let qr = design.qr();
    qr.q_tr_mul(&mut target);
    let r = qr.r();
    let largest = r.diagonal().amax();
    let tolerance = largest * rows as f64 * f64::EPSILON;
    if let Some(j) = (0..cols).find(|&j| r[(j, j)].abs() <= tolerance) {
        return Err(format!(
            "feature {:?} is constant or a combination of the others in the training rows",
            FEATURES.get(j).copied().unwrap_or("?")
        ));
    }
    let beta = r
        .solve_upper_triangular(&target.rows(0, cols).into_owned())
        .ok_or_else(|| "the triangular solve failed".to_owned())?;
    let shift: f64 = x_mean.iter().zip(beta.iter()).map(|(m, b)| m * b).sum();
    Ok((beta.iter().copied().collect(), y_mean - shift))
}

/// `<month>-ols-<hash>`: the month from the input's name (`green_tripdata_2022-01` gives
/// `2022-01`) and FNV-1a 64 over the coefficients' and intercept's bits, so the same fit
/// always gets the same version and any other fit a different one.
fn version(input: &Path, coefficients: &[f64], intercept: f64) -> String {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = stem.rsplit('_').next().unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for value in coefficients.iter().chain([&intercept]) {
        for byte in value.to_bits().to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let hash = format!("{:08x}", hash >> 32);
    if label.is_empty() {
        format!("ols-{hash}")
    } else {
        format!("{label}-ols-{hash}")
    }
}

/// The reference data: the source columns (names and Arrow types unchanged) followed by
/// `duration_min` and `prediction`, with the model version in the schema metadata.
fn reference_batch(
    source: &RecordBatch,
    duration: Float64Array,
    prediction: Float64Array,
    model_version: &str,
) -> Result<RecordBatch> {
    let mut fields: Vec<Arc<Field>> = source.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(TARGET, DataType::Float64, false)));
    fields.push(Arc::new(Field::new(PREDICTION, DataType::Float64, false)));
    let metadata = [(REFERENCE_MODEL_KEY.to_owned(), model_version.to_owned())].into();
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let mut columns = source.columns().to_vec();
    columns.push(Arc::new(duration));
    columns.push(Arc::new(prediction));
    RecordBatch::try_new(schema, columns).map_err(|source| Error::Arrow {
        context: "building the reference batch".into(),
        source,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            action: "create folder",
            path: PathBuf::from(parent),
            source,
        }),
        None => Ok(()),
    }
}
