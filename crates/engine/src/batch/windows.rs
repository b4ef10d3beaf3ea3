//! The explicit table of windows the batch formulation joins rows to: for
//! tumble, date_bin and hop every window over the rows' time range, for
//! sessions every key's sessions computed from its sorted event times.
//!
//! This is the definition of window assignment for `verify`: a row belongs
//! to a window when `window_start <= t < window_end` (and, for sessions, its
//! key is the session's), decided by the join, not by the engine's pane
//! arithmetic, watermarks or session merging.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMillisecondArray, new_empty_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue};

use crate::plan::{WINDOW_END, WINDOW_START};
use crate::window::WindowSpec;

/// Column of the rows' table holding each row's event time (ms, UTC).
pub(super) const TIME: &str = "__time";
/// Prefix of the columns holding a session view's group keys (`__key0`, …),
/// in the rows' table and in the sessions table alike.
pub(super) const KEY: &str = "__key";

/// Most windows a batch recomputation enumerates: 10 million windows of one
/// minute are 19 years; beyond it the input's time range is not one a view
/// was run over (an event far from the others).
pub(super) const MAX_WINDOWS: i64 = 10_000_000;

pub(super) fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn times(batch: &RecordBatch) -> &TimestampMillisecondArray {
    batch
        .column_by_name(TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("the rows' time column is TIMESTAMP(ms) by construction")
}

/// Every window of a pane kind (tumble, hop) holding a time in `rows`'s
/// [`TIME`] range, with columns `window_start`, `window_end`. Fails when the
/// range spans more than [`MAX_WINDOWS`].
pub(super) fn pane_windows(spec: WindowSpec, rows: &[RecordBatch]) -> Result<RecordBatch, String> {
    let (step, size, origin) = match spec {
        WindowSpec::Tumble { size, origin } => (size, size, origin),
        WindowSpec::Hop { slide, size } => (slide, size, 0),
        WindowSpec::Session { .. } => unreachable!("sessions have their own table"),
    };
    let mut range: Option<(i64, i64)> = None;
    for t in rows.iter().flat_map(|b| times(b).iter().flatten()) {
        range = Some(range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
    }
    let mut starts = Vec::new();
    if let Some((lo, hi)) = range {
        // i128: the time range itself may be most of i64.
        let count = (i128::from(hi) - i128::from(lo) + i128::from(size)) / i128::from(step) + 1;
        if count > i128::from(MAX_WINDOWS) {
            return Err(format!(
                "the event times span {} to {} ms, over {MAX_WINDOWS} windows of {spec}; \
                 recompute a shorter time range",
                lo, hi
            ));
        }
        // The first window that can hold `lo` starts after `lo - size`.
        let mut s = (lo - size - origin).div_euclid(step) * step + origin;
        while s <= hi {
            if s + size > lo {
                starts.push(s);
            }
            s += step;
        }
    }
    let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
    Ok(bounds_batch(Vec::new(), Vec::new(), starts, ends))
}

/// Every key's sessions over `rows` (its [`KEY`] columns and [`TIME`]):
/// events less than `gap` apart share one, `[first, last + gap)`. Columns
/// `__key0…`, `window_start`, `window_end`. Rows without a time are in none.
pub(super) fn session_windows(
    gap: i64,
    keys: usize,
    rows: &[RecordBatch],
) -> DfResult<RecordBatch> {
    // Key as displayed (ScalarValue is not Ord) -> (key values, times).
    let mut by_key: BTreeMap<Vec<String>, (Vec<ScalarValue>, Vec<i64>)> = BTreeMap::new();
    let mut key_fields: Vec<Field> = Vec::new();
    for b in rows {
        let columns: Vec<&ArrayRef> = (0..keys)
            .map(|k| {
                b.column_by_name(&format!("{KEY}{k}"))
                    .expect("key columns by construction")
            })
            .collect();
        if key_fields.is_empty() {
            key_fields = columns
                .iter()
                .enumerate()
                .map(|(k, c)| Field::new(format!("{KEY}{k}"), c.data_type().clone(), true))
                .collect();
        }
        let t = times(b);
        for row in 0..b.num_rows() {
            if t.is_null(row) {
                continue;
            }
            let values = columns
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<DfResult<Vec<_>>>()?;
            let shown = values.iter().map(|v| format!("{v:?}")).collect();
            let entry = by_key.entry(shown).or_insert_with(|| (values, Vec::new()));
            entry.1.push(t.value(row));
        }
    }
    let mut key_values: Vec<Vec<ScalarValue>> = vec![Vec::new(); keys];
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for (_, (values, mut times)) in by_key {
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            let mut last = times[i];
            let mut j = i + 1;
            while j < times.len() && times[j] - last < gap {
                last = times[j];
                j += 1;
            }
            starts.push(times[i]);
            ends.push(last + gap);
            for (k, v) in values.iter().enumerate() {
                key_values[k].push(v.clone());
            }
            i = j;
        }
    }
    let mut columns = Vec::with_capacity(keys);
    for (k, values) in key_values.into_iter().enumerate() {
        columns.push(match key_fields.get(k) {
            Some(_) if !values.is_empty() => ScalarValue::iter_to_array(values)?,
            Some(f) => new_empty_array(f.data_type()),
            // No rows at all: any type joins nothing.
            None => new_empty_array(&DataType::Null),
        });
    }
    if key_fields.is_empty() {
        key_fields = (0..keys)
            .map(|k| Field::new(format!("{KEY}{k}"), DataType::Null, true))
            .collect();
    }
    Ok(bounds_batch(key_fields, columns, starts, ends))
}

fn bounds_batch(
    mut fields: Vec<Field>,
    mut columns: Vec<ArrayRef>,
    starts: Vec<i64>,
    ends: Vec<i64>,
) -> RecordBatch {
    fields.push(Field::new(WINDOW_START, ts_ms(), false));
    fields.push(Field::new(WINDOW_END, ts_ms(), false));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(starts).with_timezone("UTC"),
    ));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(ends).with_timezone("UTC"),
    ));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("window bounds match their schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn rows(keys: Vec<&str>, times: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(format!("{KEY}0"), DataType::Utf8, true),
            Field::new(TIME, ts_ms(), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    fn bounds(b: &RecordBatch) -> Vec<(i64, i64)> {
        let col = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .values()
                .to_vec()
        };
        col(WINDOW_START).into_iter().zip(col(WINDOW_END)).collect()
    }

    #[test]
    fn hop_windows_cover_every_time_in_range() {
        let spec = WindowSpec::Hop {
            slide: 10,
            size: 30,
        };
        let w = pane_windows(spec, &[rows(vec!["a", "a"], vec![Some(5), Some(25)])]).unwrap();
        assert_eq!(
            bounds(&w),
            vec![(-20, 10), (-10, 20), (0, 30), (10, 40), (20, 50)]
        );
    }

    #[test]
    fn sessions_split_at_the_gap_per_key() {
        let b = rows(
            vec!["a", "a", "b", "a", "a"],
            vec![Some(0), Some(9), Some(5), Some(19), None],
        );
        let s = session_windows(10, 1, &[b]).unwrap();
        assert_eq!(bounds(&s), vec![(0, 19), (19, 29), (5, 15)]);
    }

    #[test]
    fn a_time_range_of_too_many_windows_is_refused() {
        let spec = WindowSpec::Tumble { size: 1, origin: 0 };
        let far = rows(vec!["a", "a"], vec![Some(0), Some(MAX_WINDOWS * 2)]);
        let e = pane_windows(spec, &[far]).unwrap_err();
        assert!(e.contains("shorter time range"), "{e}");
    }
}
