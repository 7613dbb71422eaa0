//! Segments: the values of a column, optionally mapped through a lookup table (pickup zone
//! id → borough), by which performance (`crate::performance`) and, for dimensions with
//! `drift = true`, drift and data quality are also reported.
//!
//! Segment drift tests a window's rows of one segment against the reference rows of the same
//! segment (Evidently's report on both frames filtered to the segment): a borough's trips are
//! compared with that borough's reference trips, not with the whole city's. The reference is
//! cut by one DataFusion query grouped by the segment column; the window's segment value
//! counts are kept in sub-panes (`crate::window`).

use rustc_hash::FxHashMap;
use streamwatch_common::events::SegmentDrift;
use streamwatch_common::spec::SegmentSpec;
use streamwatch_stats::Distribution;

use crate::batch::{aggregate_groups, Slice};
use crate::evaluate::{evaluate, ColumnSample, ReferenceColumn, WindowData};
use crate::mapping::ColumnMapping;
use crate::{MonitorError, Result};

/// Segment value of events whose segment column is missing.
pub const MISSING_SEGMENT: &str = "(missing)";
/// Segment value of events whose column value the lookup table does not have.
pub const UNMAPPED_SEGMENT: &str = "(unmapped)";

/// One segment dimension, ready to classify events.
#[derive(Debug, Clone)]
pub struct Segmenter {
    pub name: String,
    /// Index of the segment column among the monitor's counted columns.
    pub column: usize,
    /// Column value (as text) → segment name.
    lookup: Option<FxHashMap<String, String>>,
    /// Interned segment names; events carry their index.
    names: Vec<String>,
    ids: FxHashMap<String, u32>,
    /// Segment ids of the values classified so far (by their bits; `None`: missing), so a
    /// value seen before costs one lookup instead of formatting and two.
    classified: FxHashMap<Option<u64>, u32>,
}

/// Values whose segment [`Segmenter::classify`] remembers, at most (a segment column has few
/// distinct values; this bounds the memory of one that has many).
const MAX_CLASSIFIED: usize = 1 << 16;

impl Segmenter {
    /// `counted` are the monitor's counted columns (the segment column must be one).
    pub fn new(spec: &SegmentSpec, counted: &[String]) -> Result<Self> {
        let column = counted
            .iter()
            .position(|c| *c == spec.column)
            .ok_or_else(|| {
                MonitorError::Config(format!(
                    "segment {:?}: column {:?} is not monitored",
                    spec.name, spec.column
                ))
            })?;
        let lookup = match &spec.lookup {
            None => None,
            Some(lookup) => Some(read_lookup(&lookup.path, &lookup.key, &lookup.value)?),
        };
        Ok(Self {
            name: spec.name.clone(),
            column,
            lookup,
            names: Vec::new(),
            ids: FxHashMap::default(),
            classified: FxHashMap::default(),
        })
    }

    /// The segment of a column value (numbers as their shortest text: `74`, `2.5`).
    pub fn classify(&mut self, value: Option<f64>) -> u32 {
        let bits = value.map(f64::to_bits);
        if let Some(&id) = self.classified.get(&bits) {
            return id;
        }
        let id = self.classify_text(value);
        if self.classified.len() < MAX_CLASSIFIED {
            self.classified.insert(bits, id);
        }
        id
    }

    fn classify_text(&mut self, value: Option<f64>) -> u32 {
        let text = match value {
            None => MISSING_SEGMENT.to_owned(),
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
            Some(v) => format!("{v}"),
        };
        let name = match &self.lookup {
            None => text,
            Some(_) if value.is_none() => text,
            Some(table) => table
                .get(&text)
                .cloned()
                .unwrap_or_else(|| UNMAPPED_SEGMENT.to_owned()),
        };
        self.intern(name)
    }

    /// The id of a segment name (a new id for a name not seen before).
    pub fn intern(&mut self, name: String) -> u32 {
        if let Some(id) = self.ids.get(&name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// A dimension of a column's own values (no lookup table), for tests.
    pub fn by_value(name: &str, column: usize) -> Self {
        Self {
            name: name.to_owned(),
            column,
            lookup: None,
            names: Vec::new(),
            ids: FxHashMap::default(),
            classified: FxHashMap::default(),
        }
    }

    pub fn name_of(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// Reads `key → value` from a CSV file with a header row.
fn read_lookup(path: &str, key: &str, value: &str) -> Result<FxHashMap<String, String>> {
    let fail = |reason: String| MonitorError::Config(format!("lookup table {path}: {reason}"));
    let mut reader = csv::Reader::from_path(path).map_err(|e| fail(e.to_string()))?;
    let headers = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
    let position = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| fail(format!("no column {name:?} (columns: {headers:?})")))
    };
    let (key_at, value_at) = (position(key)?, position(value)?);
    let mut table = FxHashMap::default();
    for record in reader.records() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        if let (Some(k), Some(v)) = (record.get(key_at), record.get(value_at)) {
            table.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(table)
}

/// One segment of the reference: its rows and its columns, in counted-column order.
#[derive(Debug)]
pub struct ReferenceSegment {
    pub rows: u64,
    pub columns: Vec<ReferenceColumn>,
}

/// The reference cut by every drift dimension: per dimension, segment name → segment.
#[derive(Debug, Default)]
pub struct SegmentReference {
    dimensions: Vec<FxHashMap<String, ReferenceSegment>>,
}

impl SegmentReference {
    /// Cuts the reference Parquet file by each dimension. `reference` is the whole
    /// reference, whose column types (pandas' integer dtype) every segment keeps.
    pub async fn from_parquet(
        path: &str,
        mapping: &ColumnMapping,
        reference: &[ReferenceColumn],
        segmenters: &mut [Segmenter],
    ) -> Result<Self> {
        if segmenters.is_empty() {
            return Ok(Self::default());
        }
        if crate::profile::is_profile(path)? {
            return Err(MonitorError::Config(format!(
                "segment drift needs the reference rows, but {path} is a stored profile: \
                 point the spec at the reference Parquet file"
            )));
        }
        let counted = mapping.counted_columns();
        let mut dimensions = Vec::with_capacity(segmenters.len());
        for segmenter in segmenters.iter_mut() {
            let slice = Slice {
                group_column: Some(counted[segmenter.column].clone()),
                ..Slice::default()
            };
            let groups =
                aggregate_groups(path, mapping, &slice, |reason| MonitorError::Reference {
                    path: path.to_owned(),
                    reason,
                })
                .await?;
            let mut by_segment: FxHashMap<String, Vec<WindowData>> = FxHashMap::default();
            for group in groups {
                let id = segmenter.classify(group.group_value);
                by_segment
                    .entry(segmenter.name_of(id).to_owned())
                    .or_default()
                    .push(group.data);
            }
            let segments = by_segment
                .into_iter()
                .map(|(name, parts)| {
                    let data = merge_window_data(&parts, reference);
                    let segment = ReferenceSegment {
                        rows: data.row_count,
                        columns: data.columns.into_iter().map(ReferenceColumn::new).collect(),
                    };
                    (name, segment)
                })
                .collect();
            dimensions.push(segments);
        }
        Ok(Self { dimensions })
    }

    pub fn segment(&self, dimension: usize, name: &str) -> Option<&ReferenceSegment> {
        self.dimensions.get(dimension)?.get(name)
    }
}

/// Several groups of rows as one: counts added, distributions merged; the integer dtype is
/// the whole reference column's.
fn merge_window_data(parts: &[WindowData], reference: &[ReferenceColumn]) -> WindowData {
    let columns = reference
        .iter()
        .enumerate()
        .map(|(index, whole)| {
            let pairs = parts.iter().flat_map(|part| {
                let values = &part.columns[index].values;
                values
                    .values()
                    .iter()
                    .copied()
                    .zip(values.counts().iter().copied())
            });
            ColumnSample {
                values: Distribution::from_counts(pairs),
                nulls: parts.iter().map(|part| part.columns[index].nulls).sum(),
                integer_dtype: whole.sample.integer_dtype,
            }
        })
        .collect();
    WindowData {
        row_count: parts.iter().map(|p| p.row_count).sum(),
        number_of_columns: parts.iter().map(|p| p.number_of_columns).max().unwrap_or(0),
        number_of_missing_values: parts.iter().map(|p| p.number_of_missing_values).sum(),
        columns,
    }
}

/// A window's rows of one segment of one drift dimension.
#[derive(Debug)]
pub struct SegmentWindow {
    /// Index among the drift dimensions.
    pub dimension: usize,
    pub segment: u32,
    pub data: WindowData,
}

/// Drift and data quality of each segment of a window against the same reference segment.
/// Segments with fewer than `min_rows` rows in the window or in the reference (absent
/// from it: none) are reported `too_small`, with counts and missing values only.
pub fn segment_drift(
    mapping: &ColumnMapping,
    reference: &SegmentReference,
    segmenters: &[Segmenter],
    windows: &[SegmentWindow],
    min_rows: u64,
) -> Vec<SegmentDrift> {
    windows
        .iter()
        .map(|window| {
            let segmenter = &segmenters[window.dimension];
            let name = segmenter.name_of(window.segment);
            let data = &window.data;
            let reference = reference.segment(window.dimension, name);
            let reference_rows = reference.map_or(0, |r| r.rows);
            let cells = data.row_count * u64::from(data.number_of_columns);
            let mut drift = SegmentDrift {
                dimension: segmenter.name.clone(),
                segment: name.to_owned(),
                row_count: data.row_count,
                reference_rows,
                too_small: true,
                number_of_missing_values: data.number_of_missing_values,
                share_of_missing_values: (cells > 0)
                    .then(|| data.number_of_missing_values as f64 / cells as f64),
                prediction_drift: None,
                number_of_drifted_columns: None,
                share_of_drifted_columns: None,
                dataset_drift: None,
                columns: Vec::new(),
            };
            if let Some(reference) =
                reference.filter(|r| r.rows >= min_rows && data.row_count >= min_rows)
            {
                let metrics = evaluate(mapping, &reference.columns, data);
                drift.too_small = false;
                drift.prediction_drift = metrics.prediction_drift;
                drift.number_of_drifted_columns = Some(metrics.number_of_drifted_columns);
                drift.share_of_drifted_columns = Some(metrics.share_of_drifted_columns);
                drift.dataset_drift = Some(metrics.dataset_drift);
                drift.columns = metrics.columns;
            }
            drift
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Role;

    fn sample(values: &[f64], nulls: u64) -> ColumnSample {
        ColumnSample {
            values: Distribution::from_values(values),
            nulls,
            integer_dtype: false,
        }
    }

    fn data(values: &[f64], nulls: u64) -> WindowData {
        WindowData {
            row_count: values.len() as u64 + nulls,
            number_of_columns: 2,
            number_of_missing_values: nulls,
            columns: vec![sample(values, nulls)],
        }
    }

    fn mapping() -> ColumnMapping {
        ColumnMapping {
            monitor_name: "m".into(),
            drift_columns: vec![("p".into(), Role::Prediction)],
            quantiles: Vec::new(),
            drift_share: 0.5,
            outlier_quantiles: (0.01, 0.99),
            tests: Default::default(),
            ignored: Vec::new(),
            explain: Vec::new(),
        }
    }

    #[test]
    fn merged_groups_add_up_and_keep_the_whole_columns_dtype() {
        let whole = [ReferenceColumn::new(ColumnSample {
            integer_dtype: true,
            ..sample(&[1.0], 0)
        })];
        let merged = merge_window_data(&[data(&[1.0, 2.0], 1), data(&[2.0, 5.0], 0)], &whole);
        assert_eq!(merged.row_count, 5);
        assert_eq!(merged.number_of_missing_values, 1);
        assert_eq!(
            merged.columns[0].values,
            Distribution::from_values(&[1.0, 2.0, 2.0, 5.0])
        );
        assert_eq!(merged.columns[0].nulls, 1);
        assert!(merged.columns[0].integer_dtype);
    }

    #[test]
    fn small_or_unknown_segments_get_counts_only_and_others_are_tested() {
        let values: Vec<f64> = (0..40).map(f64::from).collect();
        let mut segments = SegmentReference::default();
        let mut queens = FxHashMap::default();
        queens.insert(
            "Queens".to_owned(),
            ReferenceSegment {
                rows: 40,
                columns: vec![ReferenceColumn::new(sample(&values, 0))],
            },
        );
        segments.dimensions.push(queens);
        let mut segmenter = Segmenter::by_value("borough", 0);
        // Segment names are the column values here: intern "Queens"-less ids 0 and 1.
        let (big, small) = (segmenter.classify(Some(1.0)), segmenter.classify(Some(2.0)));
        segmenter.names[big as usize] = "Queens".to_owned();
        let windows = [
            SegmentWindow {
                dimension: 0,
                segment: big,
                data: data(&values, 0),
            },
            SegmentWindow {
                dimension: 0,
                segment: small,
                data: data(&values[..5], 1),
            },
        ];
        let drift = segment_drift(&mapping(), &segments, &[segmenter], &windows, 30);
        assert_eq!(drift.len(), 2);
        let tested = &drift[0];
        assert_eq!(
            (tested.segment.as_str(), tested.too_small),
            ("Queens", false)
        );
        assert_eq!((tested.row_count, tested.reference_rows), (40, 40));
        assert_eq!(tested.columns.len(), 1);
        assert_eq!(tested.number_of_drifted_columns, Some(0));
        assert_eq!(tested.dataset_drift, Some(false));
        let prediction = tested.prediction_drift.as_ref().expect("prediction tested");
        assert!(!prediction.drift_detected);

        let small = &drift[1];
        assert_eq!((small.segment.as_str(), small.too_small), ("2", true));
        assert_eq!((small.row_count, small.reference_rows), (6, 0));
        assert_eq!(small.share_of_missing_values, Some(1.0 / 12.0));
        assert!(small.columns.is_empty() && small.prediction_drift.is_none());
        assert_eq!(small.dataset_drift, None);
    }
}
