//! The batch path: DataFusion SQL over Parquet files with the `value_counts` aggregate,
//! for the reference profile and for users who score offline (`monitor batch`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use streamwatch_common::events::format_timestamp;

use crate::counts::{value_counts_udaf, ValueCounts};
use crate::evaluate::{ColumnSample, ReferenceColumn, WindowData};
use crate::mapping::ColumnMapping;
use crate::{MonitorError, Result};

/// Which rows of a file to aggregate and how to cut them into windows.
#[derive(Debug, Clone, Default)]
pub struct Slice {
    /// Event-time column; required for a time range or windows.
    pub time_column: Option<String>,
    /// Keep rows with `from <= time < to`.
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    /// Cut into tumbling windows of this many seconds (aligned to the Unix epoch).
    pub window_seconds: Option<i64>,
    /// Also group by the values of this numeric column (segments).
    pub group_column: Option<String>,
}

/// The aggregates of one group of rows: a window (or the whole slice) and, when the slice
/// groups by a column, one value of it (`None`: missing).
#[derive(Debug)]
pub struct Group {
    pub window_start: Option<NaiveDateTime>,
    pub group_value: Option<f64>,
    pub data: WindowData,
}

/// A file's aggregates: per window start (or `None` for the whole slice).
pub type Aggregates = BTreeMap<Option<NaiveDateTime>, WindowData>;

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_float(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// How each column's missing cells are counted in SQL, by Arrow type.
enum MissingCount {
    /// Floats: null, NaN and ±inf, read off the column's value counts.
    FromValueCounts(usize),
    /// Any other column: an SQL expression giving its missing cells, aliased `missing_<i>`.
    Sql,
}

/// Aggregates a Parquet file with DataFusion: row counts, missing cells over every column
/// of the file, and value counts of the mapping's columns, per window.
pub async fn aggregate_parquet(
    path: &str,
    mapping: &ColumnMapping,
    slice: &Slice,
    error: impl Fn(String) -> MonitorError,
) -> Result<Aggregates> {
    let slice = Slice {
        group_column: None,
        ..slice.clone()
    };
    let groups = aggregate_groups(path, mapping, &slice, error).await?;
    Ok(groups
        .into_iter()
        .map(|group| (group.window_start, group.data))
        .collect())
}

/// [`aggregate_parquet`] per window and value of the slice's group column.
pub async fn aggregate_groups(
    path: &str,
    mapping: &ColumnMapping,
    slice: &Slice,
    error: impl Fn(String) -> MonitorError,
) -> Result<Vec<Group>> {
    let ctx = SessionContext::new();
    ctx.register_udaf(value_counts_udaf());
    ctx.register_parquet("data", path, ParquetReadOptions::default())
        .await
        .map_err(|e| error(format!("cannot be read as Parquet: {e}")))?;
    let schema: Schema = ctx.table("data").await?.schema().as_arrow().clone();

    let counted = mapping.counted_columns();
    for column in &counted {
        match schema.field_with_name(column) {
            Ok(field) if is_integer(field.data_type()) || is_float(field.data_type()) => {}
            Ok(field) => {
                return Err(error(format!(
                    "column {column:?} has type {}, but monitored columns must be numeric",
                    field.data_type()
                )))
            }
            Err(_) => return Err(error(format!("required column {column:?} is missing"))),
        }
    }
    if let Some(time) = &slice.time_column {
        if schema.field_with_name(time).is_err() {
            return Err(error(format!("time column {time:?} is missing")));
        }
    }
    // Without a group column, a null aggregate keeps the column without grouping by it.
    let (group_expr, group_by) = match &slice.group_column {
        Some(column) => (format!("CAST({} AS DOUBLE)", quote(column)), "1, 2"),
        None => ("MIN(CAST(NULL AS DOUBLE))".to_owned(), "1"),
    };

    // Value counts are needed for the monitored columns and for every float column (their
    // missing cells include NaN and ±inf); each column is aggregated once.
    let mut counted_exprs: Vec<String> = counted.clone();
    let mut missing = Vec::new();
    let mut select = Vec::new();
    let data_fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| !mapping.ignored.contains(f.name()))
        .collect();
    for field in &data_fields {
        let name = field.name();
        if is_float(field.data_type()) {
            let index = match counted_exprs.iter().position(|c| c == name) {
                Some(i) => i,
                None => {
                    counted_exprs.push(name.clone());
                    counted_exprs.len() - 1
                }
            };
            missing.push(MissingCount::FromValueCounts(index));
        } else {
            let column = quote(name);
            let expr = if is_string(field.data_type()) {
                format!("SUM(CASE WHEN {column} IS NULL OR {column} = '' THEN 1 ELSE 0 END)")
            } else {
                format!("COUNT(*) - COUNT({column})")
            };
            select.push(format!(
                "CAST({expr} AS BIGINT) AS missing_{}",
                missing.len()
            ));
            missing.push(MissingCount::Sql);
        }
    }
    for (i, column) in counted_exprs.iter().enumerate() {
        select.push(format!(
            "value_counts(CAST({} AS DOUBLE)) AS counts_{i}",
            quote(column)
        ));
    }
    let window_expr = match (&slice.time_column, slice.window_seconds) {
        (Some(time), Some(seconds)) => format!(
            "CAST(date_bin(INTERVAL '{seconds} seconds', CAST({} AS TIMESTAMP), TIMESTAMP '1970-01-01T00:00:00') AS TIMESTAMP)",
            quote(time)
        ),
        _ => "CAST(NULL AS TIMESTAMP)".to_owned(),
    };
    let mut filters = Vec::new();
    if let Some(time) = &slice.time_column {
        if let Some(from) = slice.from {
            filters.push(format!(
                "CAST({} AS TIMESTAMP) >= TIMESTAMP '{}'",
                quote(time),
                format_timestamp(from)
            ));
        }
        if let Some(to) = slice.to {
            filters.push(format!(
                "CAST({} AS TIMESTAMP) < TIMESTAMP '{}'",
                quote(time),
                format_timestamp(to)
            ));
        }
    }
    let where_clause = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let sql = format!(
        "SELECT {window_expr} AS window_start, {group_expr} AS group_value, \
         CAST(COUNT(*) AS BIGINT) AS row_count, {} \
         FROM data {where_clause} GROUP BY {group_by} ORDER BY {group_by}",
        select.join(", ")
    );
    tracing::debug!(%sql, "aggregating");
    let batches = ctx.sql(&sql).await?.collect().await?;

    let mut out = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let group = window_row(
                batch,
                row,
                &schema,
                data_fields.len(),
                &counted,
                counted_exprs.len(),
                &missing,
            )?;
            out.push(group);
        }
    }
    if out.is_empty() && slice.window_seconds.is_none() && slice.group_column.is_none() {
        // An empty selection is still one (empty) window, so its columns report "no values".
        out.push(Group {
            window_start: None,
            group_value: None,
            data: WindowData {
                row_count: 0,
                number_of_columns: data_fields.len() as u32,
                number_of_missing_values: 0,
                columns: vec![ColumnSample::default(); counted.len()],
            },
        });
    }
    Ok(out)
}

fn window_row(
    batch: &RecordBatch,
    row: usize,
    schema: &Schema,
    data_columns: usize,
    counted: &[String],
    counted_exprs: usize,
    missing: &[MissingCount],
) -> Result<Group> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .expect("the query selects it")
            .clone()
    };
    // DataFusion's TIMESTAMP is nanoseconds; read it as microseconds like the events.
    let start_column = cast(
        &column("window_start"),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )?;
    let start_column = start_column.as_primitive::<TimestampMicrosecondType>();
    let start = (!start_column.is_null(row))
        .then(|| chrono::DateTime::from_timestamp_micros(start_column.value(row)))
        .flatten()
        .map(|t| t.naive_utc());
    let group_column = column("group_value");
    let group_column = group_column.as_primitive::<Float64Type>();
    let group_value = (!group_column.is_null(row)).then(|| group_column.value(row));
    let row_count = column("row_count").as_primitive::<Int64Type>().value(row) as u64;
    let counts: Vec<ValueCounts> = (0..counted_exprs)
        .map(|i| {
            let column = batch
                .column_by_name(&format!("counts_{i}"))
                .expect("every counted column is selected");
            ValueCounts::from_struct_scalar(
                column
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .expect("value_counts returns a struct"),
                row,
            )
        })
        .collect();
    let mut number_of_missing_values = 0u64;
    for (i, how) in missing.iter().enumerate() {
        number_of_missing_values += match how {
            MissingCount::FromValueCounts(index) => {
                let c = &counts[*index];
                c.nulls() + c.count_of(f64::INFINITY) + c.count_of(f64::NEG_INFINITY)
            }
            MissingCount::Sql => {
                let column = batch
                    .column_by_name(&format!("missing_{i}"))
                    .expect("every missing count is selected");
                let values = column.as_primitive::<Int64Type>();
                if values.is_null(row) {
                    0
                } else {
                    values.value(row) as u64
                }
            }
        };
    }
    let columns = counted
        .iter()
        .zip(counts)
        .map(|(name, counts)| {
            let integer = schema
                .field_with_name(name)
                .map(|f| is_integer(f.data_type()))
                .unwrap_or(false)
                && counts.nulls() == 0;
            ColumnSample::new(&counts, integer)
        })
        .collect();
    Ok(Group {
        window_start: start,
        group_value,
        data: WindowData {
            row_count,
            number_of_columns: data_columns as u32,
            number_of_missing_values,
            columns,
        },
    })
}

/// Builds the reference profile from a Parquet file (the whole file is the reference), or
/// loads it when the file is a stored profile (`monitor profile`).
pub async fn reference_from_parquet(
    path: &str,
    mapping: &ColumnMapping,
) -> Result<Vec<ReferenceColumn>> {
    if let Some(profile) = crate::profile::read(path, mapping)? {
        return Ok(profile);
    }
    let reference_error = |reason| MonitorError::Reference {
        path: path.to_owned(),
        reason,
    };
    let aggregates = aggregate_parquet(path, mapping, &Slice::default(), reference_error).await?;
    let data = aggregates
        .into_values()
        .next()
        .filter(|d| d.row_count > 0)
        .ok_or_else(|| reference_error("has no rows".to_owned()))?;
    Ok(data.columns.into_iter().map(ReferenceColumn::new).collect())
}

/// The model's errors (prediction − target) over the reference rows that have both, for the
/// outliers of the errors; `None` when the reference is a stored profile or lacks the target.
pub async fn reference_errors(
    path: &str,
    prediction: &str,
    target: &str,
) -> Result<Option<streamwatch_stats::Distribution>> {
    if crate::profile::is_profile(path)? {
        return Ok(None);
    }
    let ctx = SessionContext::new();
    ctx.register_parquet("data", path, ParquetReadOptions::default())
        .await
        .map_err(|e| MonitorError::Reference {
            path: path.to_owned(),
            reason: format!("cannot be read as Parquet: {e}"),
        })?;
    let schema: Schema = ctx.table("data").await?.schema().as_arrow().clone();
    if schema.field_with_name(target).is_err() || schema.field_with_name(prediction).is_err() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT CAST(\"{prediction}\" AS DOUBLE) - CAST(\"{target}\" AS DOUBLE) AS error \
         FROM data WHERE \"{prediction}\" IS NOT NULL AND \"{target}\" IS NOT NULL"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut errors = Vec::new();
    for batch in &batches {
        let column = batch.column(0).as_primitive::<Float64Type>();
        errors.extend(column.iter().flatten().filter(|e| e.is_finite()));
    }
    Ok(Some(streamwatch_stats::Distribution::from_values(&errors)))
}
