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
use rustc_hash::FxHashMap;
use streamwatch_stats::Distribution;

/// Counts of each distinct value of a numeric column, plus the count of missing cells
/// (null or NaN). `-0.0` is counted as `0.0`, as numpy's `unique` does.
#[derive(Debug, Clone, Default)]
pub struct ValueCounts {
    /// Counts of the integers `0..small.len()` (below [`SMALL_INTEGERS`]): categorical codes
    /// and small counts (location ids, passenger counts) are counted without hashing.
    small: Vec<u64>,
    /// Counts of every other value, keyed by its bits.
    counts: FxHashMap<u64, u64>,
    nulls: u64,
}

/// Integer values below this are counted in [`ValueCounts::small`] (at most 4 KiB a column).
const SMALL_INTEGERS: usize = 512;

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
        // Slots of `small` past the last non-zero count are not part of the value.
        let used =
            |small: &[u64]| small.len() - small.iter().rev().take_while(|c| **c == 0).count();
        self.nulls == other.nulls
            && self.counts == other.counts
            && self.small[..used(&self.small)] == other.small[..used(&other.small)]
    }
}

fn key(value: f64) -> u64 {
    if value == 0.0 {
        0.0f64.to_bits()
    } else {
        value.to_bits()
    }
}

impl ValueCounts {
    /// Adds one cell; `None` and NaN count as missing.
    #[inline]
    pub fn add(&mut self, value: Option<f64>) {
        match value {
            Some(v) if !v.is_nan() => self.add_value(v, 1),
            _ => self.nulls += 1,
        }
    }

    /// Adds `count` occurrences of `value`.
    pub fn add_count(&mut self, value: f64, count: u64) {
        if value.is_nan() {
            self.nulls += count;
        } else if count > 0 {
            self.add_value(value, count);
        }
    }

    /// Adds `count` occurrences of a value that is not NaN.
    #[inline]
    fn add_value(&mut self, value: f64, count: u64) {
        match small_index(value) {
            Some(index) => self.add_small(index, count),
            None => *self.counts.entry(key(value)).or_insert(0) += count,
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
        match value {
            Some(v) if !v.is_nan() => {
                if let Some(index) = small_index(v) {
                    if let Some(count) = self.small.get_mut(index) {
                        *count = count.saturating_sub(1);
                    }
                    return;
                }
                let k = key(v);
                if let Some(count) = self.counts.get_mut(&k) {
                    *count -= 1;
                    if *count == 0 {
                        self.counts.remove(&k);
                    }
                }
            }
            _ => self.nulls = self.nulls.saturating_sub(1),
        }
    }

    /// Missing cells (null or NaN).
    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// Cells with a value (finite or infinite).
    pub fn present(&self) -> u64 {
        self.small.iter().sum::<u64>() + self.counts.values().sum::<u64>()
    }

    /// Occurrences of one value.
    pub fn count_of(&self, value: f64) -> u64 {
        match small_index(value) {
            Some(index) => self.small.get(index).copied().unwrap_or(0),
            None => self.counts.get(&key(value)).copied().unwrap_or(0),
        }
    }

    pub fn has_infinite(&self) -> bool {
        self.counts.keys().any(|k| f64::from_bits(*k).is_infinite())
    }

    /// The non-missing values as a sorted distribution (infinite values kept).
    pub fn distribution(&self) -> Distribution {
        Distribution::from_counts(self.iter())
    }

    /// Distinct values with their counts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let small = self
            .small
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (index as f64, *count));
        small.chain(self.counts.iter().map(|(k, c)| (f64::from_bits(*k), *c)))
    }

    /// Adds every cell of a Float64 array.
    pub fn update_array(&mut self, values: &Float64Array) {
        // Room for every remaining value being new, made at the first value the hash table
        // takes: growing it once beats rehashing it several times within a batch
        // (continuous columns such as the prediction are mostly unique), and a column of
        // small integers never needs it.
        let mut reserved = false;
        let len = values.len();
        if values.null_count() == 0 {
            for (position, v) in values.values().iter().enumerate() {
                self.add_one(*v, len - position, &mut reserved);
            }
        } else {
            for (position, v) in values.iter().enumerate() {
                match v {
                    Some(v) => self.add_one(v, len - position, &mut reserved),
                    None => self.nulls += 1,
                }
            }
        }
    }

    /// Adds one cell of a batch with `remaining` cells left (this one included).
    #[inline]
    fn add_one(&mut self, value: f64, remaining: usize, reserved: &mut bool) {
        if value.is_nan() {
            self.nulls += 1;
        } else if let Some(index) = small_index(value) {
            self.add_small(index, 1);
        } else {
            if !*reserved {
                self.counts.reserve(remaining);
                *reserved = true;
            }
            *self.counts.entry(key(value)).or_insert(0) += 1;
        }
    }

    fn retract_array(&mut self, values: &Float64Array) {
        for v in values.iter() {
            self.retract(v);
        }
    }

    /// The state as DataFusion scalars: distinct values, their counts, missing cells.
    fn to_scalars(&self) -> [ScalarValue; 3] {
        let (values, counts): (Vec<f64>, Vec<u64>) = self.iter().unzip();
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
        std::mem::size_of_val(self)
            + self.counts.small.capacity() * 8
            + self.counts.counts.capacity() * 24
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
        // Small integers take the array, everything else the hash table; the two must agree
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
