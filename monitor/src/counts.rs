//! Exact per-value counts of a column: the state every drift test, quantile and missing
//! count needs. Counts add, merge and subtract exactly, so panes combine into windows and
//! partial states from several partitions combine into one, with no approximation.
//!
//! [`ValueCountsAccumulator`] exposes them as a DataFusion aggregate (`value_counts`) with
//! `update_batch`, `merge_batch` and `retract_batch`; the streaming monitor drives the same
//! accumulator directly, the batch command through SQL.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, UInt64Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{create_udaf, Accumulator, AggregateUDF, Volatility};
use streamwatch_stats::Distribution;

/// Counts of each distinct value of a numeric column, plus the count of missing cells
/// (null or NaN). `-0.0` is counted as `0.0`, as numpy's `unique` does.
///
/// Counting is mostly appending: a value that is not a small integer is pushed unsorted onto
/// `pending`, and only folded into the sorted `distinct` counts once `pending` outgrows them
/// (so memory stays within a small multiple of the distinct values). A window's panes are
/// sorted once when the window is evaluated, which it needs anyway, instead of every cell
/// paying a hash-table insert (continuous columns such as the prediction are mostly distinct).
#[derive(Debug, Clone, Default)]
pub struct ValueCounts {
    /// Counts of the integers `0..small.len()` (below [`SMALL_INTEGERS`]): categorical codes
    /// and small counts (location ids, passenger counts) are counted without sorting.
    small: Vec<u64>,
    /// Every other value counted before the last compaction, ascending and distinct, with its
    /// count. A retraction can leave a zero count; the next compaction drops it.
    distinct: Vec<(f64, u64)>,
    /// Other values added since then, one entry per cell, in arrival order.
    pending: Vec<f64>,
    /// Other values added with a count since then (merged states), in arrival order.
    pending_counted: Vec<(f64, u64)>,
    nulls: u64,
}

/// Integer values below this are counted in [`ValueCounts::small`] (at most 4 KiB a column).
const SMALL_INTEGERS: usize = 512;

/// Pending values are folded into the distinct counts once there are this many and at least
/// as many as distinct values: each value is sorted once and merged a logarithmic number of
/// times. Small in unit tests so that they exercise the folding.
const MIN_PENDING: usize = if cfg!(test) { 8 } else { 8192 };

/// The slot of `value` in [`ValueCounts::small`], if it is a small non-negative integer
/// (`-0.0` included: it counts as `0.0`).
#[inline]
fn small_index(value: f64) -> Option<usize> {
    // `as` saturates, and NaN becomes 0, which then differs from the value.
    let index = value as usize;
    (index < SMALL_INTEGERS && index as f64 == value).then_some(index)
}

impl PartialEq for ValueCounts {
    fn eq(&self, other: &Self) -> bool {
        self.nulls == other.nulls && self.sorted_pairs() == other.sorted_pairs()
    }
}

impl ValueCounts {
    /// Adds one cell; `None` and NaN count as missing.
    #[inline]
    pub fn add(&mut self, value: Option<f64>) {
        match value {
            Some(v) if !v.is_nan() => {
                self.add_one(v);
                self.compact_if_due();
            }
            _ => self.nulls += 1,
        }
    }

    /// Adds `count` occurrences of `value`.
    pub fn add_count(&mut self, value: f64, count: u64) {
        if value.is_nan() {
            self.nulls += count;
        } else if count > 0 {
            match small_index(value) {
                Some(index) => self.add_small(index, count),
                None => self.pending_counted.push((value + 0.0, count)),
            }
            self.compact_if_due();
        }
    }

    /// Adds one occurrence of a value that is not NaN.
    #[inline]
    fn add_one(&mut self, value: f64) {
        match small_index(value) {
            Some(index) => self.add_small(index, 1),
            // `+ 0.0` turns `-0.0` into `0.0` and leaves every other value as it is.
            None => self.pending.push(value + 0.0),
        }
    }

    /// Adds `count` occurrences of the small integer `index`.
    #[inline]
    fn add_small(&mut self, index: usize, count: u64) {
        if index >= self.small.len() {
            self.small.resize(index + 1, 0);
        }
        self.small[index] += count;
    }

    pub fn add_nulls(&mut self, count: u64) {
        self.nulls += count;
    }

    /// Removes one cell that was added before.
    pub fn retract(&mut self, value: Option<f64>) {
        let Some(v) = value.filter(|v| !v.is_nan()) else {
            self.nulls = self.nulls.saturating_sub(1);
            return;
        };
        if let Some(index) = small_index(v) {
            if let Some(count) = self.small.get_mut(index) {
                *count = count.saturating_sub(1);
            }
            return;
        }
        let v = v + 0.0;
        if let Ok(at) = self.distinct.binary_search_by(|(d, _)| d.total_cmp(&v)) {
            if self.distinct[at].1 > 0 {
                self.distinct[at].1 -= 1;
                return;
            }
        }
        if let Some(at) = self.pending.iter().position(|p| *p == v) {
            self.pending.swap_remove(at);
        } else if let Some(at) = self.pending_counted.iter().position(|(p, _)| *p == v) {
            let count = &mut self.pending_counted[at].1;
            *count -= 1;
            if *count == 0 {
                self.pending_counted.swap_remove(at);
            }
        }
    }

    /// Missing cells (null or NaN).
    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// Cells with a value (finite or infinite).
    pub fn present(&self) -> u64 {
        self.small.iter().sum::<u64>()
            + self.distinct.iter().map(|(_, c)| c).sum::<u64>()
            + self.pending.len() as u64
            + self.pending_counted.iter().map(|(_, c)| c).sum::<u64>()
    }

    /// Occurrences of one value.
    pub fn count_of(&self, value: f64) -> u64 {
        if let Some(index) = small_index(value) {
            return self.small.get(index).copied().unwrap_or(0);
        }
        let value = value + 0.0;
        let distinct = self
            .distinct
            .binary_search_by(|(d, _)| d.total_cmp(&value))
            .map_or(0, |at| self.distinct[at].1);
        distinct
            + self.pending.iter().filter(|p| **p == value).count() as u64
            + self
                .pending_counted
                .iter()
                .filter(|(p, _)| *p == value)
                .map(|(_, c)| c)
                .sum::<u64>()
    }

    pub fn has_infinite(&self) -> bool {
        self.iter().any(|(v, _)| v.is_infinite())
    }

    /// The non-missing values as a sorted distribution (infinite values kept).
    pub fn distribution(&self) -> Distribution {
        Distribution::from_singles_and_counts(self.pending.iter().copied(), self.counted())
    }

    /// Values with their counts, in no particular order; a value may come more than once
    /// (its counts add up), and never with a zero count.
    pub fn iter(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.counted().chain(self.pending.iter().map(|v| (*v, 1)))
    }

    /// Values added one at a time and not yet folded (each counts once), in arrival order.
    pub fn pending_singles(&self) -> &[f64] {
        &self.pending
    }

    /// Every other value with its count, as [`iter`](Self::iter) gives them.
    pub fn counted(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let small = self
            .small
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (index as f64, *count));
        let distinct = self.distinct.iter().copied().filter(|(_, c)| *c > 0);
        small
            .chain(distinct)
            .chain(self.pending_counted.iter().copied())
    }

    /// Distinct values ascending, each with its total count.
    pub fn sorted_pairs(&self) -> Vec<(f64, u64)> {
        let distribution = self.distribution();
        distribution
            .values()
            .iter()
            .copied()
            .zip(distribution.counts().iter().copied())
            .collect()
    }

    /// Adds every cell of a Float64 array.
    pub fn update_array(&mut self, values: &Float64Array) {
        if values.null_count() == 0 {
            for v in values.values().iter() {
                if v.is_nan() {
                    self.nulls += 1;
                } else {
                    self.add_one(*v);
                }
            }
        } else {
            for v in values.iter() {
                match v {
                    Some(v) if !v.is_nan() => self.add_one(v),
                    _ => self.nulls += 1,
                }
            }
        }
        self.compact_if_due();
    }

    /// Folds the pending values into the distinct counts once they outgrow them.
    #[inline]
    fn compact_if_due(&mut self) {
        let pending = self.pending.len() + self.pending_counted.len();
        if pending >= MIN_PENDING && pending >= self.distinct.len() {
            self.compact();
        }
    }

    /// Sorts the pending values and merges them with the distinct counts.
    fn compact(&mut self) {
        let merged = Distribution::from_singles_and_counts(
            self.pending.drain(..),
            self.distinct
                .drain(..)
                .chain(self.pending_counted.drain(..)),
        );
        self.distinct = merged
            .values()
            .iter()
            .copied()
            .zip(merged.counts().iter().copied())
            .collect();
    }

    fn retract_array(&mut self, values: &Float64Array) {
        for v in values.iter() {
            self.retract(v);
        }
    }

    /// The state as DataFusion scalars: distinct values, their counts, missing cells.
    fn to_scalars(&self) -> [ScalarValue; 3] {
        let (values, counts): (Vec<f64>, Vec<u64>) = self.sorted_pairs().into_iter().unzip();
        [
            ScalarValue::List(Arc::new(list_of(Arc::new(Float64Array::from(values))))),
            ScalarValue::List(Arc::new(list_of(Arc::new(UInt64Array::from(counts))))),
            ScalarValue::UInt64(Some(self.nulls)),
        ]
    }

    /// Merges serialized states (three columns as produced by [`Self::to_scalars`]).
    fn merge_state_arrays(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let [values, counts, nulls] = states else {
            return Err(DataFusionError::Internal(format!(
                "value_counts state has {} columns, expected 3",
                states.len()
            )));
        };
        let values = values.as_list::<i32>();
        let counts = counts.as_list::<i32>();
        let nulls = nulls.as_primitive::<UInt64Type>();
        for row in 0..values.len() {
            if values.is_null(row) {
                continue;
            }
            let row_values = values.value(row);
            let row_counts = counts.value(row);
            let row_values = row_values.as_primitive::<Float64Type>();
            let row_counts = row_counts.as_primitive::<UInt64Type>();
            for (v, c) in row_values.values().iter().zip(row_counts.values().iter()) {
                self.add_count(*v, *c);
            }
            self.nulls += nulls.value(row);
        }
        Ok(())
    }

    /// Decodes the struct `value_counts` returns (see [`return_type`]).
    pub fn from_struct_scalar(array: &StructArray, row: usize) -> Self {
        let mut out = ValueCounts::default();
        let columns: Vec<ArrayRef> = array.columns().iter().map(|c| c.slice(row, 1)).collect();
        // The struct's fields are the state's fields, so the state decoder applies.
        out.merge_state_arrays(&columns)
            .expect("value_counts result has the state's layout");
        out
    }

    /// Bytes held on the heap.
    fn heap_size(&self) -> usize {
        self.small.capacity() * 8
            + self.distinct.capacity() * 16
            + self.pending.capacity() * 8
            + self.pending_counted.capacity() * 16
    }
}

fn list_of(values: ArrayRef) -> ListArray {
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), false));
    ListArray::new(
        field,
        OffsetBuffer::from_lengths([values.len()]),
        values,
        None,
    )
}

fn state_fields() -> Fields {
    Fields::from(vec![
        Field::new(
            "values",
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false))),
            true,
        ),
        Field::new(
            "counts",
            DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, false))),
            true,
        ),
        Field::new("nulls", DataType::UInt64, true),
    ])
}

/// The type `value_counts` returns: a struct of the distinct values, their counts and
/// the number of missing cells.
pub fn return_type() -> DataType {
    DataType::Struct(state_fields())
}

/// The accumulator behind the `value_counts(x DOUBLE)` aggregate.
#[derive(Debug, Default)]
pub struct ValueCountsAccumulator {
    counts: ValueCounts,
}

impl ValueCountsAccumulator {
    pub fn counts(&self) -> &ValueCounts {
        &self.counts
    }

    pub fn counts_mut(&mut self) -> &mut ValueCounts {
        &mut self.counts
    }

    pub fn into_counts(self) -> ValueCounts {
        self.counts
    }
}

impl Accumulator for ValueCountsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.counts
            .update_array(values[0].as_primitive::<Float64Type>());
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.counts
            .retract_array(values[0].as_primitive::<Float64Type>());
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.counts.merge_state_arrays(states)
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(self.counts.to_scalars().into())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let [values, counts, nulls] = self.counts.to_scalars();
        let arrays = vec![values.to_array()?, counts.to_array()?, nulls.to_array()?];
        Ok(ScalarValue::Struct(Arc::new(StructArray::new(
            state_fields(),
            arrays,
            None,
        ))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.heap_size()
    }
}

/// The `value_counts(x DOUBLE)` aggregate function for SQL.
pub fn value_counts_udaf() -> AggregateUDF {
    let fields = state_fields();
    create_udaf(
        "value_counts",
        vec![DataType::Float64],
        Arc::new(return_type()),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<ValueCountsAccumulator>::default())),
        Arc::new(fields.iter().map(|f| f.data_type().clone()).collect()),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn array(values: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }

    #[test]
    fn update_merge_and_retract_are_exact() {
        let mut a = ValueCountsAccumulator::default();
        a.update_batch(&[array(&[
            Some(1.0),
            Some(2.0),
            None,
            Some(f64::NAN),
            Some(-0.0),
        ])])
        .unwrap();
        let mut b = ValueCountsAccumulator::default();
        b.update_batch(&[array(&[Some(2.0), Some(0.0), Some(f64::INFINITY)])])
            .unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        let counts = a.counts();
        assert_eq!(counts.nulls(), 2);
        assert_eq!(counts.present(), 6);
        assert!(counts.has_infinite());
        let d = counts.distribution();
        assert_eq!(d.values(), &[0.0, 1.0, 2.0, f64::INFINITY]);
        assert_eq!(d.counts(), &[2, 1, 2, 1]);

        a.retract_batch(&[array(&[Some(2.0), Some(f64::INFINITY), None])])
            .unwrap();
        let d = a.counts().distribution();
        assert_eq!(d.values(), &[0.0, 1.0, 2.0]);
        assert_eq!(d.counts(), &[2, 1, 1]);
        assert_eq!(a.counts().nulls(), 1);
    }

    #[test]
    fn small_integers_and_other_values_count_alike() {
        // Small integers take the array, everything else the pending list; the two must agree
        // with a plain count of the values, and states equal whatever slots were used.
        let values = [
            0.0, -0.0, 1.0, 1.0, 511.0, 512.0, -1.0, 2.5, 1e300, 3.0, 3.0, 265.0,
        ];
        let mut counts = ValueCounts::default();
        counts.update_array(&Float64Array::from(values.to_vec()));
        assert_eq!(counts.present(), values.len() as u64);
        assert_eq!(counts.count_of(0.0), 2);
        assert_eq!(counts.count_of(-0.0), 2);
        assert_eq!(counts.count_of(3.0), 2);
        assert_eq!(counts.count_of(512.0), 1);
        assert_eq!(counts.count_of(-1.0), 1);
        let d = counts.distribution();
        assert_eq!(
            d.values(),
            &[-1.0, 0.0, 1.0, 2.5, 3.0, 265.0, 511.0, 512.0, 1e300]
        );
        assert_eq!(d.counts(), &[1, 2, 2, 1, 2, 1, 1, 1, 1]);

        let mut one_by_one = ValueCounts::default();
        for v in values {
            one_by_one.add_count(v, 1);
        }
        assert_eq!(one_by_one, counts);

        // Retracting the largest small integer leaves a zero slot: still equal to a state
        // that never saw it.
        counts.retract(Some(511.0));
        let mut without: Vec<f64> = values.to_vec();
        without.retain(|v| *v != 511.0);
        let mut expected = ValueCounts::default();
        expected.update_array(&Float64Array::from(without));
        assert_eq!(counts, expected);
        assert_eq!(counts.count_of(511.0), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(Option<f64>),
        AddCount(f64, u64),
        Array(Vec<Option<f64>>),
        /// Retracts the value the index picks among those counted so far (or a missing cell).
        Retract(usize),
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            prop::sample::select(vec![
                0.0,
                -0.0,
                1.0,
                511.0,
                512.0,
                2.5,
                -3.25,
                1e300,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ]),
            (-40i32..40).prop_map(|n| f64::from(n) / 4.0),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::option::weighted(0.9, value()).prop_map(Op::Add),
            1 => (value(), 0u64..4).prop_map(|(v, c)| Op::AddCount(v, c)),
            2 => prop::collection::vec(prop::option::weighted(0.9, value()), 0..40)
                .prop_map(Op::Array),
            2 => any::<usize>().prop_map(Op::Retract),
        ]
    }

    proptest! {
        /// Whatever the mix of appends, folds and retractions, the counts are those of a plain
        /// multiset of the cells.
        #[test]
        fn counts_match_a_plain_multiset(ops in prop::collection::vec(op(), 0..80)) {
            let mut counts = ValueCounts::default();
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            let mut nulls = 0u64;
            let count = |model: &mut BTreeMap<u64, u64>, nulls: &mut u64, v: Option<f64>, n: u64| {
                match v.filter(|v| !v.is_nan()) {
                    Some(v) => *model.entry((v + 0.0).to_bits()).or_insert(0) += n,
                    None => *nulls += n,
                }
            };
            for op in ops {
                match op {
                    Op::Add(v) => {
                        counts.add(v);
                        count(&mut model, &mut nulls, v, 1);
                    }
                    Op::AddCount(v, n) => {
                        counts.add_count(v, n);
                        count(&mut model, &mut nulls, Some(v), n);
                    }
                    Op::Array(values) => {
                        counts.update_array(&Float64Array::from(values.clone()));
                        for v in values {
                            count(&mut model, &mut nulls, v, 1);
                        }
                    }
                    Op::Retract(pick) => {
                        let present: Vec<u64> =
                            model.iter().filter(|(_, c)| **c > 0).map(|(k, _)| *k).collect();
                        if pick % 5 == 0 || present.is_empty() {
                            counts.retract(None);
                            nulls = nulls.saturating_sub(1);
                        } else {
                            let key = present[pick % present.len()];
                            counts.retract(Some(f64::from_bits(key)));
                            *model.get_mut(&key).unwrap() -= 1;
                        }
                    }
                }
            }
            let mut expected: Vec<(f64, u64)> = model
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(k, c)| (f64::from_bits(*k), *c))
                .collect();
            expected.sort_by(|a, b| a.0.total_cmp(&b.0));
            prop_assert_eq!(counts.sorted_pairs(), expected.clone());
            prop_assert_eq!(counts.nulls(), nulls);
            prop_assert_eq!(counts.present(), expected.iter().map(|(_, c)| c).sum::<u64>());
            for (v, c) in &expected {
                prop_assert_eq!(counts.count_of(*v), *c);
            }
            prop_assert_eq!(
                counts.has_infinite(),
                expected.iter().any(|(v, _)| v.is_infinite())
            );
            let mut rebuilt = ValueCounts::default();
            rebuilt.add_nulls(nulls);
            for (v, c) in expected.iter().rev() {
                rebuilt.add_count(*v, *c);
            }
            prop_assert_eq!(&rebuilt, &counts);
        }
    }

    #[test]
    fn evaluate_round_trips_through_the_struct() {
        let mut a = ValueCountsAccumulator::default();
        a.update_batch(&[array(&[Some(3.5), Some(3.5), None])])
            .unwrap();
        let ScalarValue::Struct(result) = a.evaluate().unwrap() else {
            panic!("value_counts returns a struct")
        };
        assert_eq!(
            ValueCounts::from_struct_scalar(&result, 0),
            a.counts().clone()
        );
    }
}
