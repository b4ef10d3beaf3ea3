//! The growing columns of the next batch: plain `Vec`s of values (string
//! offsets and bytes for text) and, for nullable fields, a validity `Vec`.
//!
//! Unlike arrow's builders they can be cut back to a row count, which is how
//! a record refused halfway through leaves no trace ([`Column::truncate`]),
//! and filtered in place when a rebalance takes partitions away.

use std::sync::Arc;

use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, StringArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, TimeUnit};

/// What a field's values are, as the decoder reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Utf8,
    Int64,
    Int32,
    Float64,
    Boolean,
    /// `TIMESTAMP(ms, tz)`: RFC 3339 text or integer epoch milliseconds.
    TimestampMs,
}

impl Kind {
    /// The kind of `field`, or `None` for a type this decoder does not read.
    pub fn of(field: &Field) -> Option<Kind> {
        Some(match field.data_type() {
            DataType::Utf8 => Kind::Utf8,
            DataType::Int64 => Kind::Int64,
            DataType::Int32 => Kind::Int32,
            DataType::Float64 => Kind::Float64,
            DataType::Boolean => Kind::Boolean,
            DataType::Timestamp(TimeUnit::Millisecond, _) => Kind::TimestampMs,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub enum Values {
    Utf8 { offsets: Vec<i32>, bytes: Vec<u8> },
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Float64(Vec<f64>),
    Boolean(Vec<bool>),
}

/// One field's values for the rows decoded so far.
#[derive(Debug)]
pub struct Column {
    pub values: Values,
    /// One flag a row, for nullable fields only.
    pub valid: Option<Vec<bool>>,
    data_type: DataType,
}

impl Column {
    pub fn new(field: &Field, kind: Kind, capacity: usize) -> Column {
        let values = match kind {
            Kind::Utf8 => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Values::Utf8 {
                    offsets,
                    bytes: Vec::new(),
                }
            }
            Kind::Int64 | Kind::TimestampMs => Values::Int64(Vec::with_capacity(capacity)),
            Kind::Int32 => Values::Int32(Vec::with_capacity(capacity)),
            Kind::Float64 => Values::Float64(Vec::with_capacity(capacity)),
            Kind::Boolean => Values::Boolean(Vec::with_capacity(capacity)),
        };
        Column {
            values,
            valid: field.is_nullable().then(|| Vec::with_capacity(capacity)),
            data_type: field.data_type().clone(),
        }
    }

    /// Marks the value just appended as present (nullable fields only).
    #[inline]
    pub fn set_valid(&mut self) {
        if let Some(valid) = &mut self.valid {
            valid.push(true);
        }
    }

    /// Appends a null; only called for nullable fields.
    pub fn push_null(&mut self) {
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => offsets.push(bytes.len() as i32),
            Values::Int64(v) => v.push(0),
            Values::Int32(v) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.push(false),
        }
        if let Some(valid) = &mut self.valid {
            valid.push(false);
        }
    }

    /// Drops every row from `rows` on.
    pub fn truncate(&mut self, rows: usize) {
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
            }
            Values::Int64(v) => v.truncate(rows),
            Values::Int32(v) => v.truncate(rows),
            Values::Float64(v) => v.truncate(rows),
            Values::Boolean(v) => v.truncate(rows),
        }
        if let Some(valid) = &mut self.valid {
            valid.truncate(rows);
        }
    }

    /// Keeps the rows whose flag in `keep` is set.
    pub fn retain(&mut self, keep: &[bool]) {
        fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut flags = keep.iter();
            v.retain(|_| *flags.next().expect("a flag a row"));
        }
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                let mut rows = 0;
                let mut start = 0;
                for (row, &kept) in keep.iter().enumerate() {
                    let end = offsets[row + 1] as usize;
                    if kept {
                        let to = offsets[rows] as usize;
                        bytes.copy_within(start..end, to);
                        offsets[rows + 1] = (to + end - start) as i32;
                        rows += 1;
                    }
                    start = end;
                }
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
            }
            Values::Int64(v) => retain(v, keep),
            Values::Int32(v) => retain(v, keep),
            Values::Float64(v) => retain(v, keep),
            Values::Boolean(v) => retain(v, keep),
        }
        if let Some(valid) = &mut self.valid {
            retain(valid, keep);
        }
    }

    /// The column as an Arrow array, leaving it empty with room for `capacity` rows.
    pub fn finish(&mut self, capacity: usize) -> ArrayRef {
        let valid = self
            .valid
            .as_mut()
            .map(|valid| std::mem::replace(valid, Vec::with_capacity(capacity)))
            .filter(|valid| valid.contains(&false));
        fn take<T>(v: &mut Vec<T>, capacity: usize) -> Vec<T> {
            std::mem::replace(v, Vec::with_capacity(capacity))
        }
        fn primitive<T: ArrowPrimitiveType>(
            values: Vec<T::Native>,
            valid: Option<Vec<bool>>,
            data_type: &DataType,
        ) -> ArrayRef {
            Arc::new(
                PrimitiveArray::<T>::new(values.into(), valid.map(Into::into))
                    .with_data_type(data_type.clone()),
            )
        }
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                let mut fresh = Vec::with_capacity(capacity + 1);
                fresh.push(0);
                // The offsets as they are: they start at 0 and never decrease.
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, fresh).into());
                let used = bytes.len();
                let bytes = std::mem::replace(bytes, Vec::with_capacity(used));
                Arc::new(
                    StringArray::try_new(offsets, bytes.into(), valid.map(Into::into))
                        .expect("decoded strings are checked UTF-8"),
                )
            }
            Values::Int64(v) => match self.data_type {
                DataType::Timestamp(..) => {
                    primitive::<TimestampMillisecondType>(take(v, capacity), valid, &self.data_type)
                }
                _ => primitive::<Int64Type>(take(v, capacity), valid, &self.data_type),
            },
            Values::Int32(v) => primitive::<Int32Type>(take(v, capacity), valid, &self.data_type),
            Values::Float64(v) => {
                primitive::<Float64Type>(take(v, capacity), valid, &self.data_type)
            }
            Values::Boolean(v) => Arc::new(BooleanArray::new(
                take(v, capacity).into_iter().collect(),
                valid.map(Into::into),
            )),
        }
    }
}
