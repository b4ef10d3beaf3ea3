//! Differences between two sets of a view's final rows (stored by the
//! pipeline, recomputed by the batch formulation), row by row and column by
//! column, each naming the window and the key.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime;
use datafusion::common::ScalarValue;

use crate::live::IS_FINAL;
use crate::plan::{WINDOW_END, WINDOW_START};

/// Relative tolerance for floating-point values: sums of doubles added in
/// another order differ in their last bits.
pub const FLOAT_TOLERANCE: f64 = 1e-9;

/// One way the stored rows of a view differ from the recomputed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub view: String,
    /// The row's `window_start` and `window_end` (epoch ms), when the view
    /// has them and the difference is about a row.
    pub window: Option<(i64, i64)>,
    /// The row's other key columns and their values, as text.
    pub key: Vec<(String, String)>,
    pub kind: DifferenceKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DifferenceKind {
    /// A recomputed row has no stored row of its key.
    MissingInStored,
    /// A stored row has no recomputed row of its key.
    MissingInRecomputed,
    /// Both have the row; one column's values differ.
    Value {
        column: String,
        stored: String,
        recomputed: String,
    },
    /// A column only the recomputed rows have (no window or key).
    ColumnMissingInStored(String),
    /// A column only the stored rows have (no window or key).
    ColumnMissingInRecomputed(String),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "view `{}`", self.view)?;
        if let Some((start, end)) = self.window {
            write!(f, ", window {} to {}", time(start), time(end))?;
        }
        for (column, value) in &self.key {
            write!(f, ", {column} = {value}")?;
        }
        match &self.kind {
            DifferenceKind::MissingInStored => write!(f, ": missing in the stored rows"),
            DifferenceKind::MissingInRecomputed => write!(f, ": missing in the recomputed rows"),
            DifferenceKind::Value {
                column,
                stored,
                recomputed,
            } => write!(f, ": {column} is {stored} stored, {recomputed} recomputed"),
            DifferenceKind::ColumnMissingInStored(c) => {
                write!(f, ": column {c} is missing in the stored rows")
            }
            DifferenceKind::ColumnMissingInRecomputed(c) => {
                write!(f, ": column {c} is missing in the recomputed rows")
            }
        }
    }
}

fn time(ms: i64) -> String {
    timestamp_ms_to_datetime(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A value as compared: timestamps as epoch milliseconds, integers of any
/// width as one, floats with [`FLOAT_TOLERANCE`].
#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i128),
    Float(f64),
    Text(String),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int(_) => 1,
            Value::Float(_) => 2,
            Value::Text(_) => 3,
        }
    }

    /// The same within float rounding.
    fn close_to(&self, other: &Value) -> bool {
        let float = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        };
        match (self, other) {
            (Value::Float(_), _) | (_, Value::Float(_)) => match (float(self), float(other)) {
                (Some(x), Some(y)) => {
                    x == y
                        || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs())
                        || (x.is_nan() && y.is_nan())
                }
                _ => false,
            },
            _ => self == other,
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

/// One row: its values (compared) and their text (shown).
type Row = Vec<(Value, String)>;

fn schema_of(batches: &[RecordBatch]) -> Option<SchemaRef> {
    batches.first().map(RecordBatch::schema)
}

fn column_names(schema: &Option<SchemaRef>) -> Vec<String> {
    schema
        .iter()
        .flat_map(|s| s.fields().iter().map(|f| f.name().clone()))
        .filter(|n| n != IS_FINAL)
        .collect()
}

/// `columns` of every row of `batches`, in that order.
fn rows(batches: &[RecordBatch], columns: &[String]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let arrays: Vec<_> = columns
            .iter()
            .map(|c| {
                b.column_by_name(c)
                    .cloned()
                    .unwrap_or_else(|| new_null_array(&DataType::Null, b.num_rows()))
            })
            .map(|a| match a.data_type() {
                DataType::Timestamp(_, _) => (
                    a.clone(),
                    cast(&a, &DataType::Timestamp(TimeUnit::Millisecond, None))
                        .unwrap_or_else(|_| a.clone()),
                ),
                _ => (a.clone(), a.clone()),
            })
            .collect();
        for row in 0..b.num_rows() {
            out.push(
                arrays
                    .iter()
                    .map(|(shown, compared)| {
                        let text = ScalarValue::try_from_array(shown, row)
                            .map(|v| {
                                if v.is_null() {
                                    "NULL".into()
                                } else {
                                    v.to_string()
                                }
                            })
                            .unwrap_or_else(|e| e.to_string());
                        let value = match ScalarValue::try_from_array(compared, row) {
                            Ok(v) if v.is_null() => Value::Null,
                            Ok(ScalarValue::Float64(Some(f))) => Value::Float(f),
                            Ok(ScalarValue::Float32(Some(f))) => Value::Float(f64::from(f)),
                            Ok(ScalarValue::Float16(Some(f))) => Value::Float(f64::from(f)),
                            Ok(ScalarValue::Int8(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::Int16(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::Int32(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::Int64(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::UInt8(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::UInt16(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::UInt32(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::UInt64(Some(v))) => Value::Int(v.into()),
                            Ok(ScalarValue::TimestampMillisecond(Some(v), _)) => {
                                Value::Int(v.into())
                            }
                            _ => Value::Text(text.clone()),
                        };
                        (value, text)
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Every difference between a view's `stored` and `recomputed` final rows.
///
/// Rows are matched by their key: `window_start` and `window_end` (when the
/// rows have them) and `key_columns` — for a windowed aggregation, its output
/// columns that are not computed from aggregates (the group-by columns and
/// expressions of them; [`super::key_columns`] finds them in the view's
/// plan). Key values compare exactly; other values exactly, except floats,
/// within a relative [`FLOAT_TOLERANCE`]. Rows sharing a key (a view whose
/// SELECT leaves out a group-by column) are sorted and paired in order.
/// Columns are compared by name; `is_final` is ignored; a column only one
/// side has is one difference, and is not compared further.
pub fn compare(
    view: &str,
    key_columns: &[String],
    stored: &[RecordBatch],
    recomputed: &[RecordBatch],
) -> Vec<Difference> {
    let mut out = Vec::new();
    let (stored_schema, recomputed_schema) = (schema_of(stored), schema_of(recomputed));
    let stored_columns = column_names(&stored_schema);
    let mut columns = column_names(&recomputed_schema);
    if recomputed_schema.is_none() {
        columns = stored_columns.clone();
    }
    let difference = |kind| Difference {
        view: view.to_owned(),
        window: None,
        key: Vec::new(),
        kind,
    };
    if stored_schema.is_some() && recomputed_schema.is_some() {
        for c in columns.iter().filter(|c| !stored_columns.contains(c)) {
            out.push(difference(DifferenceKind::ColumnMissingInStored(c.clone())));
        }
        for c in stored_columns.iter().filter(|c| !columns.contains(c)) {
            out.push(difference(DifferenceKind::ColumnMissingInRecomputed(
                c.clone(),
            )));
        }
        columns.retain(|c| stored_columns.contains(c));
    }
    let windowed = [WINDOW_START, WINDOW_END]
        .iter()
        .all(|w| columns.iter().any(|c| c == w));
    let mut keys: Vec<usize> = Vec::new();
    if windowed {
        keys.extend(
            [WINDOW_START, WINDOW_END].map(|w| columns.iter().position(|c| c == w).unwrap()),
        );
    }
    for k in key_columns {
        if let Some(i) = columns.iter().position(|c| c == k)
            && !keys.contains(&i)
        {
            keys.push(i);
        }
    }
    // Key -> (stored rows, recomputed rows).
    let mut by_key: BTreeMap<Vec<Value>, (Vec<Row>, Vec<Row>)> = BTreeMap::new();
    let key_of = |row: &Row| keys.iter().map(|&i| row[i].0.clone()).collect::<Vec<_>>();
    for row in rows(stored, &columns) {
        by_key.entry(key_of(&row)).or_default().0.push(row);
    }
    for row in rows(recomputed, &columns) {
        by_key.entry(key_of(&row)).or_default().1.push(row);
    }
    let sort = |rows: &mut Vec<Row>| {
        rows.sort_by(|a, b| a.iter().map(|c| &c.0).cmp(b.iter().map(|c| &c.0)));
    };
    for (_, (mut s, mut r)) in by_key {
        sort(&mut s);
        sort(&mut r);
        let any = s.first().or(r.first()).expect("a key has a row");
        let window = match windowed.then(|| (&any[keys[0]].0, &any[keys[1]].0)) {
            Some((Value::Int(a), Value::Int(b))) => Some((*a as i64, *b as i64)),
            _ => None,
        };
        let key: Vec<(String, String)> = keys
            .iter()
            .skip(if windowed { 2 } else { 0 })
            .map(|&i| (columns[i].clone(), any[i].1.clone()))
            .collect();
        let at = |kind| Difference {
            view: view.to_owned(),
            window,
            key: key.clone(),
            kind,
        };
        for (a, b) in s.iter().zip(&r) {
            for (i, column) in columns.iter().enumerate() {
                if !keys.contains(&i) && !a[i].0.close_to(&b[i].0) {
                    out.push(at(DifferenceKind::Value {
                        column: column.clone(),
                        stored: a[i].1.clone(),
                        recomputed: b[i].1.clone(),
                    }));
                }
            }
        }
        for _ in r.len()..s.len() {
            out.push(at(DifferenceKind::MissingInRecomputed));
        }
        for _ in s.len()..r.len() {
            out.push(at(DifferenceKind::MissingInStored));
        }
    }
    out
}
