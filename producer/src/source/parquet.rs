//! Turns a TLC Parquet file into trip events: every source column in file order under its own
//! name, plus `trip_id` and `event_time`, sorted by event time. Pure (no Kafka), so it is tested
//! on the bundled files directly.
//!
//! With completions on, each trip also has a completion event (its ground truth), built from the
//! completion-time column and the truth column or the trip's duration; `source::schedule` merges
//! them with the trips.
//!
//! JSON cannot carry NaN or infinities: such float values are written as null, like missing ones.
//! Timestamps with a time zone are written as their UTC wall time.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int8Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::ser::{CompactFormatter, Formatter};
use streamwatch_common::events::{parse_timestamp, push_timestamp, EVENT_TIME, TRIP_ID};

use crate::error::{Error, Result};

/// Rows per decoded record batch.
const BATCH_ROWS: usize = 8192;

/// Field of a completion event holding the event time of the trip it completes: when the trip
/// was published, and so predicted.
pub const PREDICTION_TIME: &str = "prediction_time";
/// Default field of a completion event holding the truth: the course's target.
pub const DEFAULT_TRUTH_FIELD: &str = "duration_min";
/// Completion-time columns looked for, after the time column with `pickup` replaced by
/// `dropoff`, when none is named: TLC's green, yellow, high-volume and other FHV files.
const DROPOFF_COLUMNS: [&str; 4] = [
    "lpep_dropoff_datetime",
    "tpep_dropoff_datetime",
    "dropoff_datetime",
    "dropOff_datetime",
];

/// How completion events are built.
#[derive(Debug, Clone)]
pub struct CompletionOptions {
    /// Column holding the completion time; `None`: the file's dropoff column.
    pub time_column: Option<String>,
    /// Name of the truth field: the file's column of that name when it has one, otherwise the
    /// duration in minutes.
    pub truth_field: String,
}

/// Which rows of the file to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub time_column: String,
    pub required_columns: Vec<String>,
    /// Inclusive lower bound on the event time.
    pub from: Option<NaiveDateTime>,
    /// Exclusive upper bound on the event time.
    pub to: Option<NaiveDateTime>,
    /// Keep only the first `limit` events after sorting and filtering.
    pub limit: Option<usize>,
    /// Build a completion event for every trip; `None`: trips only.
    pub completions: Option<CompletionOptions>,
}

/// Row counts of a loaded file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Rows in the file.
    pub rows: u64,
    /// Rows skipped because their event time is null.
    pub null_event_time: u64,
    /// Rows outside `[from, to)`.
    pub outside_range: u64,
    /// Rows left out by `--limit`.
    pub over_limit: u64,
    /// Replayed trips without a completion time (they get no completion event).
    pub no_completion_time: u64,
    /// Replayed trips whose completion time precedes their event time (their completion is
    /// published before them).
    pub early_completions: u64,
}

/// The events of one file, in event-time order, encoded on demand.
pub struct TripEvents {
    path: PathBuf,
    /// Prefix of every trip id: the file stem and a colon, JSON-escaped without quotes.
    id_prefix: String,
    /// `"name":` for every column, JSON-escaped.
    keys: Vec<Vec<u8>>,
    names: Vec<String>,
    batches: Vec<Vec<Column>>,
    order: Vec<RowRef>,
    stats: LoadStats,
    completions: Option<Completions>,
}

/// Where the completion events come from.
struct Completions {
    /// The completion-time column.
    column: String,
    index: usize,
    /// The truth column; `None`: the duration in minutes.
    truth: Option<usize>,
    /// `"<truth field>":`, JSON-escaped.
    truth_key: Vec<u8>,
    /// Subsecond unit the duration is counted in before it is divided: nanoseconds when either
    /// time column has them, otherwise microseconds (TLC's unit).
    nanos: bool,
    /// Completions that precede their trip's event time, as (completion time, trip position),
    /// sorted: the only ones that cannot wait for their trip to be published.
    early: Vec<(NaiveDateTime, usize)>,
}

#[derive(Debug, Clone, Copy)]
struct RowRef {
    time: NaiveDateTime,
    batch: u32,
    row: u32,
    index: u64,
}

/// One column of one batch, downcast once so encoding a value is a single match.
enum Column {
    Int8(Int8Array),
    Int16(Int16Array),
    Int32(Int32Array),
    Int64(Int64Array),
    UInt8(UInt8Array),
    UInt16(UInt16Array),
    UInt32(UInt32Array),
    UInt64(UInt64Array),
    Float32(Float32Array),
    Float64(Float64Array),
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    Utf8View(StringViewArray),
    Boolean(BooleanArray),
    TimestampSecond(TimestampSecondArray),
    TimestampMillisecond(TimestampMillisecondArray),
    TimestampMicrosecond(TimestampMicrosecondArray),
    TimestampNanosecond(TimestampNanosecondArray),
    Date32(Date32Array),
    Null,
}

impl Column {
    fn new(array: &ArrayRef) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Int8 => Column::Int8(array.as_primitive::<Int8Type>().clone()),
            DataType::Int16 => Column::Int16(array.as_primitive::<Int16Type>().clone()),
            DataType::Int32 => Column::Int32(array.as_primitive::<Int32Type>().clone()),
            DataType::Int64 => Column::Int64(array.as_primitive::<Int64Type>().clone()),
            DataType::UInt8 => Column::UInt8(array.as_primitive::<UInt8Type>().clone()),
            DataType::UInt16 => Column::UInt16(array.as_primitive::<UInt16Type>().clone()),
            DataType::UInt32 => Column::UInt32(array.as_primitive::<UInt32Type>().clone()),
            DataType::UInt64 => Column::UInt64(array.as_primitive::<UInt64Type>().clone()),
            DataType::Float32 => Column::Float32(array.as_primitive::<Float32Type>().clone()),
            DataType::Float64 => Column::Float64(array.as_primitive::<Float64Type>().clone()),
            DataType::Utf8 => Column::Utf8(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Column::LargeUtf8(array.as_string::<i64>().clone()),
            DataType::Utf8View => Column::Utf8View(array.as_string_view().clone()),
            DataType::Boolean => Column::Boolean(array.as_boolean().clone()),
            DataType::Timestamp(TimeUnit::Second, _) => {
                Column::TimestampSecond(array.as_primitive::<TimestampSecondType>().clone())
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => Column::TimestampMillisecond(
                array.as_primitive::<TimestampMillisecondType>().clone(),
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Column::TimestampMicrosecond(
                array.as_primitive::<TimestampMicrosecondType>().clone(),
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                Column::TimestampNanosecond(array.as_primitive::<TimestampNanosecondType>().clone())
            }
            DataType::Date32 => Column::Date32(array.as_primitive::<Date32Type>().clone()),
            DataType::Null => Column::Null,
            _ => return None,
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Int8(a) => a.is_null(row),
            Column::Int16(a) => a.is_null(row),
            Column::Int32(a) => a.is_null(row),
            Column::Int64(a) => a.is_null(row),
            Column::UInt8(a) => a.is_null(row),
            Column::UInt16(a) => a.is_null(row),
            Column::UInt32(a) => a.is_null(row),
            Column::UInt64(a) => a.is_null(row),
            Column::Float32(a) => a.is_null(row),
            Column::Float64(a) => a.is_null(row),
            Column::Utf8(a) => a.is_null(row),
            Column::LargeUtf8(a) => a.is_null(row),
            Column::Utf8View(a) => a.is_null(row),
            Column::Boolean(a) => a.is_null(row),
            Column::TimestampSecond(a) => a.is_null(row),
            Column::TimestampMillisecond(a) => a.is_null(row),
            Column::TimestampMicrosecond(a) => a.is_null(row),
            Column::TimestampNanosecond(a) => a.is_null(row),
            Column::Date32(a) => a.is_null(row),
            // A NullArray reports no validity buffer, so `is_null` would say false.
            Column::Null => true,
        }
    }

    /// The value as a timestamp, for the event-time column. `Ok(None)` for null;
    /// `Err(Some(text))` for a string that does not parse, `Err(None)` for a value out of range.
    fn timestamp(&self, row: usize) -> Result<Option<NaiveDateTime>, Option<String>> {
        if self.is_null(row) {
            return Ok(None);
        }
        let value = match self {
            Column::TimestampSecond(a) => a.value_as_datetime(row),
            Column::TimestampMillisecond(a) => a.value_as_datetime(row),
            Column::TimestampMicrosecond(a) => a.value_as_datetime(row),
            Column::TimestampNanosecond(a) => a.value_as_datetime(row),
            Column::Date32(a) => a.value_as_datetime(row),
            Column::Utf8(a) => return parse_text_time(a.value(row)),
            Column::LargeUtf8(a) => return parse_text_time(a.value(row)),
            Column::Utf8View(a) => return parse_text_time(a.value(row)),
            _ => None,
        };
        value.map(Some).ok_or(None)
    }

    /// The value as a number, for the truth column; `None` for null. Integers beyond 2^53 are
    /// rounded.
    fn number(&self, row: usize) -> Option<f64> {
        if self.is_null(row) {
            return None;
        }
        Some(match self {
            Column::Int8(a) => a.value(row).into(),
            Column::Int16(a) => a.value(row).into(),
            Column::Int32(a) => a.value(row).into(),
            Column::Int64(a) => a.value(row) as f64,
            Column::UInt8(a) => a.value(row).into(),
            Column::UInt16(a) => a.value(row).into(),
            Column::UInt32(a) => a.value(row).into(),
            Column::UInt64(a) => a.value(row) as f64,
            Column::Float32(a) => a.value(row).into(),
            Column::Float64(a) => a.value(row),
            _ => return None,
        })
    }

    /// Appends the JSON value of `row`; `false` when a temporal value is out of range.
    fn write_json(&self, row: usize, out: &mut Vec<u8>) -> bool {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return true;
        }
        match self {
            Column::Int8(a) => write_i64(out, a.value(row).into()),
            Column::Int16(a) => write_i64(out, a.value(row).into()),
            Column::Int32(a) => write_i64(out, a.value(row).into()),
            Column::Int64(a) => write_i64(out, a.value(row)),
            Column::UInt8(a) => write_u64(out, a.value(row).into()),
            Column::UInt16(a) => write_u64(out, a.value(row).into()),
            Column::UInt32(a) => write_u64(out, a.value(row).into()),
            Column::UInt64(a) => write_u64(out, a.value(row)),
            Column::Float32(a) => write_f64(out, a.value(row).into()),
            Column::Float64(a) => write_f64(out, a.value(row)),
            Column::Utf8(a) => write_str(out, a.value(row)),
            Column::LargeUtf8(a) => write_str(out, a.value(row)),
            Column::Utf8View(a) => write_str(out, a.value(row)),
            Column::Boolean(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Column::TimestampSecond(a) => return write_time(out, a.value_as_datetime(row)),
            Column::TimestampMillisecond(a) => return write_time(out, a.value_as_datetime(row)),
            Column::TimestampMicrosecond(a) => return write_time(out, a.value_as_datetime(row)),
            Column::TimestampNanosecond(a) => return write_time(out, a.value_as_datetime(row)),
            Column::Date32(a) => return write_date(out, a.value_as_date(row)),
            Column::Null => out.extend_from_slice(b"null"),
        }
        true
    }
}

fn parse_text_time(text: &str) -> Result<Option<NaiveDateTime>, Option<String>> {
    parse_timestamp(text)
        .map(Some)
        .map_err(|_| Some(text.chars().take(64).collect()))
}

// Writing into a Vec<u8> cannot fail, so the io::Results below are always Ok.
const VEC_WRITE: &str = "writing into a Vec<u8> cannot fail";

fn write_i64(out: &mut Vec<u8>, value: i64) {
    CompactFormatter.write_i64(out, value).expect(VEC_WRITE);
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    CompactFormatter.write_u64(out, value).expect(VEC_WRITE);
}

/// Shortest representation that parses back to the same f64; NaN and ±inf become null.
fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        CompactFormatter.write_f64(out, value).expect(VEC_WRITE);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(&mut *out, value).expect(VEC_WRITE);
}

fn write_time(out: &mut Vec<u8>, value: Option<NaiveDateTime>) -> bool {
    match value {
        Some(ts) => {
            out.push(b'"');
            push_timestamp(out, ts);
            out.push(b'"');
            true
        }
        None => false,
    }
}

fn write_date(out: &mut Vec<u8>, value: Option<NaiveDate>) -> bool {
    match value {
        Some(date) => {
            out.push(b'"');
            out.extend_from_slice(date.format("%Y-%m-%d").to_string().as_bytes());
            out.push(b'"');
            true
        }
        None => false,
    }
}

/// Checks that a time column is a timestamp, a date or a string.
fn check_time_type(path: &Path, schema: &Schema, index: usize) -> Result<()> {
    let field = schema.field(index);
    let time_type_ok = matches!(
        field.data_type(),
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    );
    if !time_type_ok {
        return Err(Error::TimeColumnType {
            path: path.to_owned(),
            column: field.name().clone(),
            data_type: field.data_type().clone(),
        });
    }
    Ok(())
}

/// Reads a time column's value at `row` (row `index` of the file); `None` for null.
fn read_time(
    path: &Path,
    name: &str,
    column: &Column,
    row: usize,
    index: u64,
) -> Result<Option<NaiveDateTime>> {
    column.timestamp(row).map_err(|bad| match bad {
        Some(value) => Error::InvalidTimestamp {
            path: path.to_owned(),
            column: name.to_owned(),
            row: index,
            value,
        },
        None => Error::TimestampOutOfRange {
            path: path.to_owned(),
            column: name.to_owned(),
            row: index,
        },
    })
}

/// Finds the completion-time and truth columns and checks their types.
fn resolve_completions(
    path: &Path,
    schema: &Schema,
    options: &ReplayOptions,
    completions: &CompletionOptions,
) -> Result<Completions> {
    let column = match &completions.time_column {
        Some(column) => column.clone(),
        None => {
            let mut candidates = Vec::new();
            if options.time_column.contains("pickup") {
                candidates.push(options.time_column.replace("pickup", "dropoff"));
            }
            for name in DROPOFF_COLUMNS {
                if !candidates.iter().any(|c| c == name) {
                    candidates.push(name.to_owned());
                }
            }
            match candidates.iter().find(|c| schema.index_of(c).is_ok()) {
                Some(found) => found.clone(),
                None => {
                    return Err(Error::NoCompletionColumn {
                        path: path.to_owned(),
                        candidates,
                    })
                }
            }
        }
    };
    let index = schema
        .index_of(&column)
        .map_err(|_| Error::MissingColumns {
            path: path.to_owned(),
            columns: vec![column.clone()],
        })?;
    check_time_type(path, schema, index)?;
    let truth = schema.index_of(&completions.truth_field).ok();
    if let Some(truth) = truth {
        let data_type = schema.field(truth).data_type();
        if !(data_type.is_numeric() || *data_type == DataType::Null) {
            return Err(Error::TruthColumnType {
                path: path.to_owned(),
                column: completions.truth_field.clone(),
                data_type: data_type.clone(),
            });
        }
    }
    let time_index = schema
        .index_of(&options.time_column)
        .expect("the time column was checked before");
    let nanos = [time_index, index].iter().any(|&i| {
        matches!(
            schema.field(i).data_type(),
            DataType::Timestamp(TimeUnit::Nanosecond, _)
        )
    });
    let mut truth_key = Vec::new();
    write_str(&mut truth_key, &completions.truth_field);
    truth_key.push(b':');
    Ok(Completions {
        column,
        index,
        truth,
        truth_key,
        nanos,
        early: Vec::new(),
    })
}

/// `(completion - start)` in minutes as pandas computes `.total_seconds() / 60`: the whole
/// difference in the subsecond unit (micro- or nanoseconds), divided by that unit's count per
/// second, then by 60. For whole seconds (TLC data) every unit gives the same `f64`.
pub fn duration_minutes(start: NaiveDateTime, completion: NaiveDateTime, nanos: bool) -> f64 {
    let delta = completion - start;
    let nanoseconds = if nanos { delta.num_nanoseconds() } else { None };
    if let Some(ns) = nanoseconds {
        return ns as f64 / 1e9 / 60.0;
    }
    match delta.num_microseconds() {
        Some(us) => us as f64 / 1e6 / 60.0,
        // More than 292,000 years apart: milliseconds are precise enough.
        None => delta.num_milliseconds() as f64 / 1e3 / 60.0,
    }
}

/// Checks that the required columns and the time column exist and that every column has a
/// type events can carry.
fn check_schema(path: &Path, schema: &Schema, options: &ReplayOptions) -> Result<usize> {
    let mut missing: Vec<String> = Vec::new();
    for name in std::iter::once(&options.time_column).chain(&options.required_columns) {
        if schema.index_of(name).is_err() && !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    if !missing.is_empty() {
        return Err(Error::MissingColumns {
            path: path.to_owned(),
            columns: missing,
        });
    }
    for field in schema.fields() {
        if field.name() == TRIP_ID || field.name() == EVENT_TIME {
            return Err(Error::ReservedColumn {
                path: path.to_owned(),
                column: field.name().clone(),
            });
        }
    }
    let time_index = schema
        .index_of(&options.time_column)
        .expect("the time column was checked above");
    check_time_type(path, schema, time_index)?;
    Ok(time_index)
}

impl TripEvents {
    /// Reads the whole file, keeps the rows with an event time in `[from, to)`, sorts them by
    /// event time (ties keep file order) and applies the limit. With completions, checks every
    /// kept trip's completion time and notes the ones that precede their trip.
    pub fn load(path: &Path, options: &ReplayOptions) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        let parquet_error = |source| Error::Parquet {
            path: path.to_owned(),
            source,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
        let schema = builder.schema().clone();
        let time_index = check_schema(path, &schema, options)?;
        let mut completions = options
            .completions
            .as_ref()
            .map(|c| resolve_completions(path, &schema, options, c))
            .transpose()?;
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(parquet_error)?;

        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let keys = names
            .iter()
            .map(|name| {
                let mut key = Vec::with_capacity(name.len() + 3);
                write_str(&mut key, name);
                key.push(b':');
                key
            })
            .collect();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut id_prefix = Vec::new();
        write_str(&mut id_prefix, &format!("{stem}:"));
        // Drop the quotes: the row number follows inside them.
        let id_prefix = String::from_utf8_lossy(&id_prefix[1..id_prefix.len() - 1]).into_owned();

        let mut batches = Vec::new();
        let mut order = Vec::new();
        let mut stats = LoadStats::default();
        for batch in reader {
            let batch = batch.map_err(|source| Error::Arrow {
                path: path.to_owned(),
                source,
            })?;
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(array, field)| {
                    Column::new(array).ok_or_else(|| Error::UnsupportedType {
                        path: path.to_owned(),
                        column: field.name().clone(),
                        data_type: array.data_type().clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let batch_index = batches.len() as u32;
            for row in 0..batch.num_rows() {
                let index = stats.rows + row as u64;
                let time = read_time(path, &options.time_column, &columns[time_index], row, index)?;
                match time {
                    None => stats.null_event_time += 1,
                    Some(time)
                        if options.from.is_some_and(|from| time < from)
                            || options.to.is_some_and(|to| time >= to) =>
                    {
                        stats.outside_range += 1
                    }
                    Some(time) => order.push(RowRef {
                        time,
                        batch: batch_index,
                        row: row as u32,
                        index,
                    }),
                }
            }
            stats.rows += batch.num_rows() as u64;
            batches.push(columns);
        }
        // A stable sort: trips with equal pickup times keep their order in the file.
        order.sort_by_key(|r| r.time);
        if let Some(limit) = options.limit {
            stats.over_limit = order.len().saturating_sub(limit) as u64;
            order.truncate(limit);
        }
        if let Some(completions) = &mut completions {
            for (position, event) in order.iter().enumerate() {
                let column = &batches[event.batch as usize][completions.index];
                match read_time(
                    path,
                    &completions.column,
                    column,
                    event.row as usize,
                    event.index,
                )? {
                    None => stats.no_completion_time += 1,
                    Some(time) if time < event.time => completions.early.push((time, position)),
                    Some(_) => {}
                }
            }
            completions.early.sort_unstable();
            stats.early_completions = completions.early.len() as u64;
        }
        Ok(Self {
            path: path.to_owned(),
            id_prefix,
            keys,
            names,
            batches,
            order,
            stats,
            completions,
        })
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn stats(&self) -> LoadStats {
        self.stats
    }

    /// The source columns, in file order.
    pub fn column_names(&self) -> &[String] {
        &self.names
    }

    /// The event time of the `i`-th event.
    pub fn event_time(&self, i: usize) -> NaiveDateTime {
        self.order[i].time
    }

    /// The row of the file the `i`-th event comes from: the number in its trip id.
    pub fn row_index(&self, i: usize) -> u64 {
        self.order[i].index
    }

    /// What every trip id of this file starts with, as the message keys carry it: the file
    /// stem and a colon (JSON-escaped, without quotes).
    pub fn trip_id_prefix(&self) -> &str {
        &self.id_prefix
    }

    /// Whether completion events are built.
    pub fn has_completions(&self) -> bool {
        self.completions.is_some()
    }

    /// The column completion times are read from, when completions are on.
    pub fn completion_column(&self) -> Option<&str> {
        self.completions.as_ref().map(|c| c.column.as_str())
    }

    /// The completion time of the `i`-th event; `None` when it has none or completions are off.
    pub fn completion_time(&self, i: usize) -> Option<NaiveDateTime> {
        let completions = self.completions.as_ref()?;
        let event = self.order[i];
        let column = &self.batches[event.batch as usize][completions.index];
        // Every kept row's value was read successfully by `load`.
        column.timestamp(event.row as usize).ok().flatten()
    }

    /// Completions that precede their trip's event time, as (completion time, event index),
    /// sorted; empty when completions are off.
    pub fn early_completions(&self) -> &[(NaiveDateTime, usize)] {
        self.completions.as_ref().map_or(&[], |c| &c.early)
    }

    /// The truth of the `i`-th event's completion: the truth column's value (`None` for null),
    /// or the minutes from its event time to `completion`.
    fn truth(&self, i: usize, completion: NaiveDateTime) -> Option<f64> {
        let completions = self.completions.as_ref()?;
        let event = self.order[i];
        match completions.truth {
            Some(column) => self.batches[event.batch as usize][column].number(event.row as usize),
            None => Some(duration_minutes(event.time, completion, completions.nanos)),
        }
    }

    fn write_key(&self, event: RowRef, key: &mut String) {
        use std::fmt::Write as _;
        key.clear();
        key.push_str(&self.id_prefix);
        write!(key, "{}", event.index).expect("writing into a String cannot fail");
    }

    /// Writes the completion event of the `i`-th event (key: its trip id), replacing the
    /// buffers' contents: `{"trip_id", "event_time" (the completion time), "prediction_time"
    /// (the trip's event time), <truth field>}`. `false` (buffers untouched) when the event
    /// has no completion time or completions are off.
    pub fn write_completion(&self, i: usize, key: &mut String, payload: &mut Vec<u8>) -> bool {
        let (Some(completions), Some(completion)) =
            (self.completions.as_ref(), self.completion_time(i))
        else {
            return false;
        };
        let event = self.order[i];
        self.write_key(event, key);
        payload.clear();
        payload.extend_from_slice(b"{\"trip_id\":\"");
        payload.extend_from_slice(key.as_bytes());
        payload.extend_from_slice(b"\",\"event_time\":\"");
        push_timestamp(payload, completion);
        payload.extend_from_slice(b"\",\"prediction_time\":\"");
        push_timestamp(payload, event.time);
        payload.extend_from_slice(b"\",");
        payload.extend_from_slice(&completions.truth_key);
        match self.truth(i, completion) {
            Some(truth) => write_f64(payload, truth),
            None => payload.extend_from_slice(b"null"),
        }
        payload.push(b'}');
        true
    }

    /// Writes the `i`-th event's key (its trip id) and JSON payload, replacing the buffers'
    /// contents so they can be reused for every event.
    pub fn write_event(&self, i: usize, key: &mut String, payload: &mut Vec<u8>) -> Result<()> {
        let event = self.order[i];
        let columns = &self.batches[event.batch as usize];
        let row = event.row as usize;

        self.write_key(event, key);

        payload.clear();
        payload.push(b'{');
        for (c, column) in columns.iter().enumerate() {
            if c > 0 {
                payload.push(b',');
            }
            payload.extend_from_slice(&self.keys[c]);
            if !column.write_json(row, payload) {
                return Err(Error::TimestampOutOfRange {
                    path: self.path.clone(),
                    column: self.names[c].clone(),
                    row: event.index,
                });
            }
        }
        if !columns.is_empty() {
            payload.push(b',');
        }
        payload.extend_from_slice(b"\"trip_id\":\"");
        payload.extend_from_slice(key.as_bytes());
        payload.extend_from_slice(b"\",\"event_time\":\"");
        push_timestamp(payload, event.time);
        payload.extend_from_slice(b"\"}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, NullArray, RecordBatch};
    use datafusion::arrow::datatypes::Field;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::record::Field as ParquetField;
    use serde_json::{json, Map, Value};

    use streamwatch_common::events::format_timestamp;

    use super::*;
    use crate::config::DEFAULT_REQUIRED_COLUMNS;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data")
            .join(name)
    }

    fn options() -> ReplayOptions {
        ReplayOptions {
            time_column: "lpep_pickup_datetime".into(),
            required_columns: DEFAULT_REQUIRED_COLUMNS
                .split(',')
                .map(str::to_owned)
                .collect(),
            from: None,
            to: None,
            limit: None,
            completions: None,
        }
    }

    fn ts(text: &str) -> NaiveDateTime {
        crate::config::parse_time_bound(text).unwrap()
    }

    fn decode_all(events: &TripEvents) -> Vec<(String, Map<String, Value>)> {
        let (mut key, mut payload) = (String::new(), Vec::new());
        (0..events.len())
            .map(|i| {
                events.write_event(i, &mut key, &mut payload).unwrap();
                let Value::Object(map) = serde_json::from_slice(&payload).unwrap() else {
                    panic!("event {i} is not an object");
                };
                (key.clone(), map)
            })
            .collect()
    }

    /// The same rows decoded by the parquet crate's record reader (not Arrow), as JSON.
    fn rows_via_record_api(path: &Path) -> Vec<Vec<(String, Value)>> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(name, field)| {
                        let value = match field {
                            ParquetField::Null => Value::Null,
                            ParquetField::Int(v) => json!(v),
                            ParquetField::Long(v) => json!(v),
                            ParquetField::Double(v) => json!(v),
                            ParquetField::Str(v) => json!(v),
                            ParquetField::TimestampMicros(v) => json!(format_timestamp(
                                chrono::DateTime::from_timestamp_micros(*v)
                                    .unwrap()
                                    .naive_utc()
                            )),
                            other => panic!("unexpected field {other:?} in {name}"),
                        };
                        (name.clone(), value)
                    })
                    .collect()
            })
            .collect()
    }

    fn check_against_record_api(file: &str, expected_rows: usize, schema_types: &[(&str, &str)]) {
        let path = data(file);
        let events = TripEvents::load(&path, &options()).unwrap();
        let stats = events.stats();
        assert_eq!(stats.rows, expected_rows as u64);
        assert_eq!(stats.null_event_time, 0);
        assert_eq!(events.len(), expected_rows);
        for (column, wanted) in schema_types {
            let schema = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .schema()
                .clone();
            assert_eq!(
                schema
                    .field_with_name(column)
                    .unwrap()
                    .data_type()
                    .to_string(),
                *wanted,
                "{column}"
            );
        }

        let decoded = decode_all(&events);
        let rows = rows_via_record_api(&path);
        assert_eq!(rows.len(), expected_rows);
        let stem = file.trim_end_matches(".parquet");
        let mut seen = vec![false; rows.len()];
        let mut previous: Option<(NaiveDateTime, usize)> = None;
        for (key, event) in &decoded {
            let index: usize = key
                .strip_prefix(&format!("{stem}:"))
                .unwrap_or_else(|| panic!("trip id {key} lacks the file stem"))
                .parse()
                .unwrap();
            assert!(!std::mem::replace(&mut seen[index], true), "{key} twice");
            assert_eq!(event[TRIP_ID], json!(key));
            let time = parse_timestamp(event[EVENT_TIME].as_str().unwrap()).unwrap();
            assert_eq!(event[EVENT_TIME], event["lpep_pickup_datetime"]);
            if let Some((previous_time, previous_index)) = previous {
                assert!(previous_time <= time, "{key} out of event-time order");
                if previous_time == time {
                    assert!(previous_index < index, "tie at {time} not in file order");
                }
            }
            previous = Some((time, index));

            let row = &rows[index];
            let names: Vec<&str> = event.keys().map(String::as_str).collect();
            assert_eq!(names.len(), row.len() + 2, "{key}: {names:?}");
            for (name, value) in row {
                assert_eq!(&event[name], value, "{key}: column {name}");
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn february_2022_events_match_the_file() {
        check_against_record_api(
            "green_tripdata_2022-02.parquet",
            69_399,
            &[
                ("VendorID", "Int64"),
                ("passenger_count", "Float64"),
                ("ehail_fee", "Null"),
                ("lpep_pickup_datetime", "Timestamp(µs)"),
            ],
        );
    }

    #[test]
    fn march_2024_events_match_the_file() {
        check_against_record_api(
            "green_tripdata_2024-03.parquet",
            57_457,
            &[
                ("VendorID", "Int32"),
                ("passenger_count", "Int64"),
                ("store_and_fwd_flag", "LargeUtf8"),
                ("ehail_fee", "Float64"),
            ],
        );
    }

    #[test]
    fn events_keep_file_column_order_types_and_nulls() {
        let events = TripEvents::load(&data("green_tripdata_2022-02.parquet"), &options()).unwrap();
        let (mut key, mut payload) = (String::new(), Vec::new());
        let mut null_rows = 0;
        for i in 0..events.len() {
            events.write_event(i, &mut key, &mut payload).unwrap();
            let text = std::str::from_utf8(&payload).unwrap();
            assert!(text.starts_with("{\"VendorID\":"), "{text}");
            assert!(text.contains(",\"ehail_fee\":null,"), "{text}");
            if text.contains("\"store_and_fwd_flag\":null") {
                null_rows += 1;
                assert!(text.contains("\"passenger_count\":null"), "{text}");
            } else {
                // Doubles stay doubles (1.0, not 1), so consumers see the source type.
                assert!(text.contains("\"passenger_count\":"), "{text}");
                let event: Value = serde_json::from_str(text).unwrap();
                assert!(event["passenger_count"].is_f64(), "{text}");
                assert!(event["PULocationID"].is_i64(), "{text}");
            }
        }
        assert_eq!(null_rows, 7421);
        let names = events.column_names();
        assert_eq!(names.len(), 20);
        assert_eq!(names[0], "VendorID");
        assert_eq!(names[19], "congestion_surcharge");
    }

    #[test]
    fn one_event_exactly() {
        let events = TripEvents::load(&data("green_tripdata_2022-02.parquet"), &options()).unwrap();
        let (mut key, mut payload) = (String::new(), Vec::new());
        let i = (0..events.len())
            .find(|&i| {
                events.write_event(i, &mut key, &mut payload).unwrap();
                key == "green_tripdata_2022-02:0"
            })
            .unwrap();
        // Row 0 is the 35th trip by pickup time (earlier ones are outliers and January trips).
        assert_eq!(i, 34);
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            EXPECTED_ROW_0.trim_end()
        );
    }

    /// Row 0 of the February 2022 file, as the producer publishes it.
    const EXPECTED_ROW_0: &str =
        include_str!("../../tests/fixtures/green_tripdata_2022-02_row0.json");

    #[test]
    fn time_range_and_limit() {
        let path = data("green_tripdata_2022-02.parquet");
        let mut opts = options();
        opts.from = Some(ts("2022-02-01"));
        opts.to = Some(ts("2022-03-01T00:00:00"));
        let events = TripEvents::load(&path, &opts).unwrap();
        assert_eq!(events.len(), 69_376);
        assert_eq!(events.stats().outside_range, 69_399 - 69_376);
        assert!(events.event_time(0) >= ts("2022-02-01"));
        assert!(events.event_time(events.len() - 1) < ts("2022-03-01"));

        opts.limit = Some(500);
        let limited = TripEvents::load(&path, &opts).unwrap();
        assert_eq!(limited.len(), 500);
        assert_eq!(limited.stats().over_limit, 69_376 - 500);
        let all = decode_all(&events);
        let first = decode_all(&limited);
        assert_eq!(first[..], all[..500]);
    }

    #[test]
    fn january_2022_keeps_its_outliers_first() {
        let events = TripEvents::load(&data("green_tripdata_2022-01.parquet"), &options()).unwrap();
        assert_eq!(events.len(), 62_495);
        assert_eq!(events.event_time(0), ts("2009-01-01T00:34:01"));
        assert_eq!(
            events.event_time(events.len() - 1),
            ts("2022-01-31T23:57:37")
        );
    }

    fn temp_parquet(name: &str, batch: &RecordBatch) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "streamwatch-producer-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.parquet"));
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        path
    }

    fn small_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn missing_columns_are_named_with_the_file() {
        let micros = |t: &str| ts(t).and_utc().timestamp_micros();
        let pickup: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(micros("2022-02-01T00:00:05")),
            None,
            Some(micros("2022-02-01T00:00:01")),
        ]));
        let int = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v; 3])) };
        let float = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v; 3])) };
        let batch = small_batch(vec![
            ("lpep_pickup_datetime", pickup.clone()),
            ("lpep_dropoff_datetime", pickup),
            ("PULocationID", int(74)),
            ("DOLocationID", int(75)),
            ("passenger_count", float(1.0)),
            ("trip_distance", float(1.5)),
            ("total_amount", float(9.0)),
        ]);
        let path = temp_parquet("no-fare", &batch);
        let error = TripEvents::load(&path, &options()).err().unwrap();
        let message = error.to_string();
        assert!(message.contains("fare_amount"), "{message}");
        assert!(message.contains("no-fare.parquet"), "{message}");
        assert!(!message.contains("total_amount"), "{message}");

        // Without that requirement the file loads; the null pickup is skipped and counted.
        let mut opts = options();
        opts.required_columns.retain(|c| c != "fare_amount");
        let events = TripEvents::load(&path, &opts).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events.stats().null_event_time, 1);
        let decoded = decode_all(&events);
        assert_eq!(decoded[0].0, "no-fare:2");
        assert_eq!(decoded[1].0, "no-fare:0");

        opts.time_column = "pickup_at".into();
        let message = TripEvents::load(&path, &opts).err().unwrap().to_string();
        assert!(message.contains("pickup_at"), "{message}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn generic_types_nan_and_unsupported_columns() {
        let time: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![
                1_643_673_600_123_456_789,
                1_643_673_601_000_000_000,
            ])
            .with_timezone("UTC"),
        );
        let batch = small_batch(vec![
            ("t", time),
            ("i8", Arc::new(Int8Array::from(vec![Some(-3), None]))),
            ("u64", Arc::new(UInt64Array::from(vec![u64::MAX, 0]))),
            (
                "f32",
                Arc::new(Float32Array::from(vec![0.1f32, f32::INFINITY])),
            ),
            ("f64", Arc::new(Float64Array::from(vec![f64::NAN, 1e300]))),
            ("b", Arc::new(BooleanArray::from(vec![Some(true), None]))),
            ("s", Arc::new(StringArray::from(vec!["a\"b\\c\n", "é"]))),
            ("v", Arc::new(StringViewArray::from(vec!["x", "y"]))),
            ("d", Arc::new(Date32Array::from(vec![19_024, 0]))),
            ("n", Arc::new(NullArray::new(2))),
        ]);
        let path = temp_parquet("types", &batch);
        let mut opts = options();
        opts.time_column = "t".into();
        opts.required_columns.clear();
        let events = TripEvents::load(&path, &opts).unwrap();
        let (mut key, mut payload) = (String::new(), Vec::new());
        events.write_event(0, &mut key, &mut payload).unwrap();
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            concat!(
                r#"{"t":"2022-02-01T00:00:00.123456789","i8":-3,"u64":18446744073709551615,"#,
                r#""f32":0.10000000149011612,"f64":null,"b":true,"s":"a\"b\\c\n","v":"x","#,
                r#""d":"2022-02-01","n":null,"trip_id":"types:0","#,
                r#""event_time":"2022-02-01T00:00:00.123456789"}"#
            )
        );
        events.write_event(1, &mut key, &mut payload).unwrap();
        let second: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(second["f32"], Value::Null);
        assert_eq!(second["f64"], json!(1e300));
        assert_eq!(second["i8"], Value::Null);
        assert_eq!(second["d"], json!("1970-01-01"));

        opts.time_column = "i8".into();
        let message = TripEvents::load(&path, &opts).err().unwrap().to_string();
        assert!(
            message.contains("time column i8") && message.contains("Int8"),
            "{message}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

        let list =
            datafusion::arrow::array::ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1)]),
                None,
            ]);
        let batch = small_batch(vec![
            ("t", Arc::new(TimestampSecondArray::from(vec![0, 1]))),
            ("tags", Arc::new(list)),
        ]);
        let path = temp_parquet("list", &batch);
        opts.time_column = "t".into();
        let message = TripEvents::load(&path, &opts).err().unwrap().to_string();
        assert!(
            message.contains("column tags") && message.contains("List"),
            "{message}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
