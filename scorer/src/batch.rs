//! Offline scoring: Arrow batches and Parquet files in, the same plus `prediction` out.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use streamwatch_common::events::PREDICTION;

use crate::model::LinearModel;
use crate::{Error, Result};

/// Rows per batch when reading Parquet.
const BATCH_ROWS: usize = 65_536;

/// The values of a numeric column as f64 (nulls stay null), for use as a model feature.
pub(crate) fn feature_values(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::MissingColumn {
            column: name.to_owned(),
        })?;
    match column.data_type() {
        // The all-null Arrow type counts as a column of missing values.
        DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Null => {
            let values = cast(column, &DataType::Float64).map_err(|source| Error::Arrow {
                context: format!("converting column {name:?} to Float64"),
                source,
            })?;
            Ok(values.as_primitive::<Float64Type>().clone())
        }
        other => Err(Error::ColumnType {
            column: name.to_owned(),
            data_type: other.clone(),
            expected: "Int32, Int64 or Float64",
        }),
    }
}

/// The model's predictions for every row of `batch`, with [`LinearModel::predict`].
pub(crate) fn predictions(model: &LinearModel, batch: &RecordBatch) -> Result<Float64Array> {
    let columns = model
        .features()
        .iter()
        .map(|name| feature_values(batch, name))
        .collect::<Result<Vec<_>>>()?;
    let mut row_values = vec![None; columns.len()];
    Ok(Float64Array::from_iter_values((0..batch.num_rows()).map(
        |row| {
            for (value, column) in row_values.iter_mut().zip(&columns) {
                *value = column.is_valid(row).then(|| column.value(row));
            }
            model.predict(&row_values)
        },
    )))
}

/// `schema` plus a non-null Float64 `prediction` field (schema metadata kept).
fn scored_schema(schema: &Schema) -> Result<SchemaRef> {
    if schema.column_with_name(PREDICTION).is_some() {
        return Err(Error::ColumnExists {
            column: PREDICTION.to_owned(),
        });
    }
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(PREDICTION, DataType::Float64, false)));
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// Appends the model's `prediction` column to `batch`. Features are read by name from Int32,
/// Int64 or Float64 columns, nulls counting as 0.0.
pub fn score_batch(model: &LinearModel, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = scored_schema(&batch.schema())?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(predictions(model, batch)?));
    RecordBatch::try_new(schema, columns).map_err(|source| Error::Arrow {
        context: "appending the prediction column".into(),
        source,
    })
}

/// Scores every row of a Parquet file into a new Parquet file (all columns + `prediction`).
/// Returns the number of rows written.
pub fn score_file(model: &LinearModel, input: &Path, output: &Path) -> Result<u64> {
    let (reader, schema) = parquet_reader(input)?;
    let schema = scored_schema(&schema)?;
    let mut writer = ParquetFileWriter::create(output, schema)?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|source| Error::Arrow {
            context: format!("reading {}", input.display()),
            source,
        })?;
        rows += batch.num_rows() as u64;
        writer.write(&score_batch(model, &batch)?)?;
    }
    writer.close()?;
    Ok(rows)
}

/// A batch reader over a Parquet file and the file's Arrow schema (with its metadata, which
/// the reader's own schema drops).
fn parquet_reader(path: &Path) -> Result<(ParquetRecordBatchReader, SchemaRef)> {
    let file = File::open(path).map_err(|source| Error::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| {
            let schema = builder.schema().clone();
            Ok((builder.with_batch_size(BATCH_ROWS).build()?, schema))
        })
        .map_err(|source| Error::Parquet {
            path: path.to_owned(),
            source,
        })
}

/// Reads a whole Parquet file into one batch.
pub fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let (reader, schema) = parquet_reader(path)?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Arrow {
            context: format!("reading {}", path.display()),
            source,
        })?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|source| Error::Arrow {
        context: format!("concatenating the batches of {}", path.display()),
        source,
    })
}

/// A zstd-compressed Parquet file being written.
pub(crate) struct ParquetFileWriter {
    path: std::path::PathBuf,
    writer: ArrowWriter<File>,
}

impl ParquetFileWriter {
    pub(crate) fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        let file = File::create(path).map_err(|source| Error::Io {
            action: "create",
            path: path.to_owned(),
            source,
        })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(|source| {
            Error::Parquet {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(Self {
            path: path.to_owned(),
            writer,
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|source| Error::Parquet {
            path: self.path.clone(),
            source,
        })
    }

    pub(crate) fn close(self) -> Result<()> {
        self.writer
            .close()
            .map(|_| ())
            .map_err(|source| Error::Parquet {
                path: self.path,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    fn model() -> LinearModel {
        LinearModel::new(
            "test.1",
            vec!["a".into(), "b".into(), "c".into()],
            vec![2.0, 3.0, 0.5],
            1.0,
            None,
        )
        .unwrap()
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Int64Array::from(vec![10, 20, 30])) as ArrayRef,
            ),
            (
                "c",
                Arc::new(Float64Array::from(vec![Some(0.5), Some(-2.0), None])) as ArrayRef,
            ),
            (
                "note",
                Arc::new(StringArray::from(vec!["x", "y", "z"])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn score_batch_appends_predictions_from_mixed_column_types() {
        let scored = score_batch(&model(), &batch()).unwrap();
        assert_eq!(scored.num_columns(), 5);
        assert_eq!(scored.schema().field(4).name(), "prediction");
        let prediction = scored.column(4).as_primitive::<Float64Type>();
        assert_eq!(prediction.null_count(), 0);
        assert_eq!(prediction.values().to_vec(), vec![33.25, 60.0, 97.0]);
    }

    #[test]
    fn score_batch_names_a_missing_or_mistyped_feature() {
        let mut features: Vec<String> = model().features().to_vec();
        features[1] = "fare_amount".into();
        let m = LinearModel::new("t", features, vec![1.0; 3], 0.0, None).unwrap();
        let error = score_batch(&m, &batch()).unwrap_err().to_string();
        assert!(error.contains("\"fare_amount\" is missing"), "{error}");

        let m = LinearModel::new("t", vec!["note".into()], vec![1.0], 0.0, None).unwrap();
        let error = score_batch(&m, &batch()).unwrap_err().to_string();
        assert!(error.contains("\"note\" has type Utf8"), "{error}");
    }

    #[test]
    fn score_batch_refuses_an_existing_prediction_column() {
        let scored = score_batch(&model(), &batch()).unwrap();
        let error = score_batch(&model(), &scored).unwrap_err().to_string();
        assert!(error.contains("\"prediction\" already exists"), "{error}");
    }
}
