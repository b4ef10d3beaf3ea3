//! Arrow rows as the JSON the pages and the APIs share: column names with a
//! coarse type (`number`, `string`, `bool`, `time`) and rows as arrays.
//! Times are Unix milliseconds (UTC); other types print as text.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A column of a result.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// `number`, `string`, `bool` or `time` (Unix ms).
    #[serde(rename = "type")]
    pub kind: &'static str,
}

pub fn kind_of(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "bool",
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "time",
        t if t.is_numeric() => "number",
        _ => "string",
    }
}

pub fn columns(schema: &SchemaRef) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            kind: kind_of(f.data_type()),
        })
        .collect()
}

/// One column's values as JSON.
pub fn values(array: &ArrayRef) -> Vec<Value> {
    let converted = match kind_of(array.data_type()) {
        "bool" => Some(Ok(array
            .as_boolean()
            .iter()
            .map(|v| v.map(Value::from))
            .collect())),
        // Every timestamp unit and date as milliseconds: arrow's cast scales.
        "time" => Some(
            cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))
                .and_then(|t| cast(&t, &DataType::Int64))
                .map(|a| ints(&a)),
        ),
        "number" if array.data_type().is_integer() => {
            Some(cast(array, &DataType::Int64).map(|a| ints(&a)))
        }
        "number" => Some(cast(array, &DataType::Float64).map(|a| {
            a.as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.and_then(serde_json::Number::from_f64).map(Value::Number))
                .collect()
        })),
        _ => None,
    };
    match converted {
        Some(Ok(values)) => values
            .into_iter()
            .map(|v: Option<Value>| v.unwrap_or(Value::Null))
            .collect(),
        _ => text(array),
    }
}

fn ints(array: &ArrayRef) -> Vec<Option<Value>> {
    array
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.map(Value::from))
        .collect()
}

fn text(array: &ArrayRef) -> Vec<Value> {
    let options = FormatOptions::default();
    let Ok(formatter) = ArrayFormatter::try_new(array.as_ref(), &options) else {
        return vec![Value::Null; array.len()];
    };
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                Value::Null
            } else {
                Value::String(formatter.value(i).to_string())
            }
        })
        .collect()
}

/// Every row of `batches` as an array of values, at most `limit`.
pub fn rows(batches: &[RecordBatch], limit: usize) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for batch in batches {
        if out.len() >= limit {
            break;
        }
        let take = (limit - out.len()).min(batch.num_rows());
        let columns: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(|c| values(&c.slice(0, take)))
            .collect();
        for i in 0..take {
            out.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Float64Array, Int32Array, StringArray, TimestampMillisecondArray,
    };

    use super::*;

    #[test]
    fn numbers_times_and_text() {
        let t: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![Some(1_000), None]).with_timezone("UTC"));
        assert_eq!(values(&t), vec![Value::from(1_000), Value::Null]);
        let i: ArrayRef = Arc::new(Int32Array::from(vec![7, -1]));
        assert_eq!(values(&i), vec![Value::from(7), Value::from(-1)]);
        let f: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN, 0.5]));
        assert_eq!(values(&f), vec![Value::Null, Value::from(0.5)]);
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        assert_eq!(values(&s), vec![Value::from("a"), Value::Null]);
    }
}
