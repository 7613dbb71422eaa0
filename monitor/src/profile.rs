//! The stored reference profile: the value counts of every monitored column, written once
//! by `monitor profile` so that restarts load them instead of aggregating the reference.
//!
//! Format: a Parquet file with one row per (column, distinct value) — `column`, `value`
//! (null for the row holding the missing-cell count), `count`, `integer_dtype` — and the
//! schema metadata key `streamwatch.profile` = `1`. Parquet keeps ±inf exactly.

use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, UInt64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;

use crate::evaluate::{ColumnSample, ReferenceColumn};
use crate::mapping::ColumnMapping;
use crate::{MonitorError, Result};

/// Schema metadata key marking a profile file.
pub const PROFILE_MARKER: &str = "streamwatch.profile";

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("column", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("count", DataType::UInt64, false),
        Field::new("integer_dtype", DataType::Boolean, false),
    ])
    .with_metadata([(PROFILE_MARKER.to_owned(), "1".to_owned())].into())
}

/// Writes the profile of `columns` (in `mapping.counted_columns()` order) to `path`.
pub fn write(path: &str, mapping: &ColumnMapping, columns: &[ReferenceColumn]) -> Result<()> {
    let error = |reason: String| MonitorError::Reference {
        path: path.to_owned(),
        reason,
    };
    let (mut names, mut values, mut counts, mut integers) = (vec![], vec![], vec![], vec![]);
    for (name, column) in mapping.counted_columns().iter().zip(columns) {
        let sample = &column.sample;
        names.push(name.clone());
        values.push(None);
        counts.push(sample.nulls);
        integers.push(sample.integer_dtype);
        for (value, count) in sample.values.values().iter().zip(sample.values.counts()) {
            names.push(name.clone());
            values.push(Some(*value));
            counts.push(*count);
            integers.push(sample.integer_dtype);
        }
    }
    let batch = RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(values)),
            Arc::new(UInt64Array::from(counts)),
            Arc::new(BooleanArray::from(integers)),
        ],
    )?;
    let file = File::create(path).map_err(|e| error(format!("cannot be created: {e}")))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| error(format!("cannot be written: {e}")))?;
    writer
        .write(&batch)
        .and_then(|_| writer.close().map(|_| ()))
        .map_err(|e| error(format!("cannot be written: {e}")))
}

#[derive(Default)]
struct StoredColumn {
    pairs: Vec<(f64, u64)>,
    nulls: u64,
    integer_dtype: bool,
}

/// Whether `path` is a stored profile (a Parquet file with the profile marker).
pub fn is_profile(path: &str) -> Result<bool> {
    let file = File::open(path).map_err(|e| MonitorError::Reference {
        path: path.to_owned(),
        reason: format!("cannot be opened: {e}"),
    })?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)
        .is_ok_and(|b| b.schema().metadata().contains_key(PROFILE_MARKER)))
}

/// Reads a profile if `path` is one; `Ok(None)` for any other Parquet file.
pub fn read(path: &str, mapping: &ColumnMapping) -> Result<Option<Vec<ReferenceColumn>>> {
    let error = |reason: String| MonitorError::Reference {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| error(format!("cannot be opened: {e}")))?;
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        // Not Parquet at all: the data path reports it with DataFusion's message.
        return Ok(None);
    };
    if !builder.schema().metadata().contains_key(PROFILE_MARKER) {
        return Ok(None);
    }
    let reader = builder
        .build()
        .map_err(|e| error(format!("cannot be read: {e}")))?;
    let mut samples: std::collections::HashMap<String, StoredColumn> = Default::default();
    for batch in reader {
        let batch = batch.map_err(|e| error(format!("cannot be read: {e}")))?;
        let names = batch.column(0).as_string::<i32>();
        let values = batch.column(1).as_primitive::<Float64Type>();
        let counts = batch.column(2).as_primitive::<UInt64Type>();
        let integers = batch.column(3).as_boolean();
        for row in 0..batch.num_rows() {
            let entry = samples.entry(names.value(row).to_owned()).or_default();
            entry.integer_dtype = integers.value(row);
            if values.is_null(row) {
                entry.nulls += counts.value(row);
            } else {
                entry.pairs.push((values.value(row), counts.value(row)));
            }
        }
    }
    mapping
        .counted_columns()
        .iter()
        .map(|name| {
            let StoredColumn {
                pairs,
                nulls,
                integer_dtype,
            } = samples.remove(name).ok_or_else(|| {
                error(format!(
                    "the profile has no column {name:?}; rebuild it with `monitor profile`"
                ))
            })?;
            Ok(ReferenceColumn::new(ColumnSample {
                values: streamwatch_stats::Distribution::from_counts(pairs),
                nulls,
                integer_dtype,
            }))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
