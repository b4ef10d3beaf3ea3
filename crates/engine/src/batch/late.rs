//! Late rows taken out of the batch formulation's rows: a multiset
//! difference on the columns the aggregation reads (and the window).
//!
//! A late row is one per-row (pre-aggregation) row of the view and the
//! window it missed, or no window when it missed all (no usable event time,
//! a session event behind the watermark). Each removes exactly one equal row
//! from the rows of that window (or from the rows before windows are
//! assigned): equal rows are interchangeable, since the aggregation reads
//! nothing else, so which copy goes does not matter, but how many does.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use crate::plan::{WINDOW_END, WINDOW_START};

/// Late rows with and without a window, cut to the columns to match on.
pub(super) struct LateRows {
    /// Late for every window: match on the aggregation's columns.
    pub unplaced: Vec<RecordBatch>,
    /// Late for one window: match on those columns and the window.
    pub placed: Vec<RecordBatch>,
}

/// Splits `late` by whether `window_start` is set, keeping `columns`
/// (+ the window columns for the placed ones), cast to `types`' types.
/// Fails naming a column the late rows lack or cannot be cast.
pub(super) fn split(
    late: &[RecordBatch],
    columns: &[String],
    types: &SchemaRef,
) -> Result<LateRows, String> {
    let mut out = LateRows {
        unplaced: Vec::new(),
        placed: Vec::new(),
    };
    for batch in late.iter().filter(|b| b.num_rows() > 0) {
        let mut arrays: Vec<ArrayRef> = Vec::new();
        let mut with_window: Vec<&str> = columns.iter().map(String::as_str).collect();
        with_window.extend([WINDOW_START, WINDOW_END]);
        for name in &with_window {
            let column = batch.column_by_name(name).ok_or_else(|| {
                format!(
                    "the late rows have no column `{name}`, which the view's aggregation reads \
                     (they have {}; expected {})",
                    names(&batch.schema()),
                    with_window.join(", ")
                )
            })?;
            let want = types
                .field_with_name(name)
                .map_err(|e| e.to_string())?
                .data_type();
            arrays.push(cast(column, want).map_err(|e| {
                format!("late rows' column `{name}` is not the view's {want}: {e}")
            })?);
        }
        let start = arrays[columns.len()].clone();
        let placed = BooleanArray::from_iter((0..start.len()).map(|i| Some(start.is_valid(i))));
        let unplaced = datafusion::arrow::compute::not(&placed).map_err(|e| e.to_string())?;
        let schema = types
            .project(
                &with_window
                    .iter()
                    .map(|n| types.index_of(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
        // Nullable: a late row with a null where the input has none is one
        // that matches no input row, reported as such by `subtract`.
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let whole = RecordBatch::try_new(schema, arrays).map_err(|e| e.to_string())?;
        let placed = filter_record_batch(&whole, &placed).map_err(|e| e.to_string())?;
        let unplaced = filter_record_batch(&whole, &unplaced).map_err(|e| e.to_string())?;
        let unplaced = unplaced
            .project(&(0..columns.len()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())?;
        out.placed.push(placed);
        out.unplaced.push(unplaced);
    }
    Ok(out)
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` minus `late`, as multisets on `late`'s columns (which `rows` has,
/// of the same types). Fails when a late row has no equal row left in
/// `rows`, naming the first few.
pub(super) fn subtract(
    rows: &[RecordBatch],
    late: &[RecordBatch],
) -> Result<Vec<RecordBatch>, String> {
    let late_rows: usize = late.iter().map(RecordBatch::num_rows).sum();
    if late_rows == 0 {
        return Ok(rows.to_vec());
    }
    let late_schema = late[0].schema();
    let on: Vec<String> = late_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let sort_fields = late_schema
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(sort_fields).map_err(|e| e.to_string())?;
    // Every row to remove, with how many times.
    let mut wanted: HashMap<Box<[u8]>, usize> = HashMap::new();
    let late_all = concat_batches(&late_schema, late).map_err(|e| e.to_string())?;
    let encoded = converter
        .convert_columns(late_all.columns())
        .map_err(|e| e.to_string())?;
    for row in encoded.iter() {
        *wanted.entry(row.as_ref().into()).or_default() += 1;
    }
    let mut out = Vec::with_capacity(rows.len());
    for batch in rows {
        let columns = on
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .cloned()
                    .ok_or_else(|| format!("no column `{n}` among the rows"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = converter
            .convert_columns(&columns)
            .map_err(|e| e.to_string())?;
        let keep =
            BooleanArray::from_iter(
                encoded
                    .iter()
                    .map(|row| match wanted.get_mut(row.as_ref()) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            Some(false)
                        }
                        _ => Some(true),
                    }),
            );
        out.push(filter_record_batch(batch, &keep).map_err(|e| e.to_string())?);
    }
    let missing: usize = wanted.values().sum();
    if missing > 0 {
        let mut shown = Vec::new();
        for (i, row) in encoded.iter().enumerate() {
            if shown.len() == 3 {
                break;
            }
            if wanted.get(row.as_ref()).is_some_and(|n| *n > 0) {
                shown.push(describe(&late_all, i));
            }
        }
        return Err(format!(
            "{missing} of {late_rows} late rows match no row of the input (was the input not \
             the one the view ran over?), e.g. {}",
            shown.join("; ")
        ));
    }
    Ok(out)
}

/// `name=value, …` of one row.
fn describe(batch: &RecordBatch, row: usize) -> String {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            let v = ScalarValue::try_from_array(c, row)
                .map(|v| v.to_string())
                .unwrap_or_else(|e| e.to_string());
            format!("{}={v}", f.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(keys: Vec<&str>, values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .unwrap()
    }

    fn count(rows: &[RecordBatch]) -> usize {
        rows.iter().map(RecordBatch::num_rows).sum()
    }

    #[test]
    fn equal_rows_are_removed_as_often_as_they_are_late() {
        let rows = batch(vec!["a", "a", "a", "b"], vec![1, 1, 1, 1]);
        let late = batch(vec!["a", "a"], vec![1, 1]);
        let kept = subtract(&[rows], &[late]).unwrap();
        assert_eq!(count(&kept), 2);
        assert_eq!(
            kept[0].column(0).as_ref(),
            &StringArray::from(vec!["a", "b"]) as &dyn Array
        );
    }

    #[test]
    fn a_late_row_without_its_input_row_is_an_error() {
        let rows = batch(vec!["a"], vec![1]);
        let late = batch(vec!["a", "a"], vec![1, 1]);
        let e = subtract(&[rows], &[late]).unwrap_err();
        assert!(e.starts_with("1 of 2 late rows match no row"), "{e}");
        assert!(e.contains("k=a, v=1"), "{e}");
    }
}
