//! Kafka messages of one stream → Arrow record batches, with a dead letter
//! for every record that cannot be decoded, and never a good record lost
//! because of a bad one.
//!
//! Each message is read once ([`record`]): syntax, field lookup, type checks
//! and conversion in one pass, appending straight into the columns of the
//! next batch ([`columns`]). A record refused halfway is cut back out of the
//! columns, so it is dead-lettered at [`TopicDecoder::push`] with its reason
//! ([`diagnose`]) and the batch never needs decoding again.
//!
//! Times are held to a [`TimeBounds`] where they are converted: outside its
//! range (any time field) or too far ahead of the wall clock (`event_time`),
//! a record is refused like any other bad one, with a reason naming the
//! field, the value as written and the bound.

mod columns;
mod diagnose;
mod json;
mod record;
mod time;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use kpiflow_types::time::TimeBounds;
use kpiflow_types::{DeadLetter, DeadLetterKind, Stream};

use columns::{Column, Kind, Values};
use record::RecordReader;

/// Most rows reserved up front; larger batches grow as they fill.
const MAX_RESERVED_ROWS: usize = 1 << 16;

/// A Kafka message as the decoder needs it, borrowed from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

/// Builds record batches of one stream from its messages.
pub struct TopicDecoder {
    stream: Stream,
    output_schema: SchemaRef,
    reader: RecordReader,
    /// The stream's fields, then `_partition`, `_offset`, `_kafka_ts`.
    columns: Vec<Column>,
    fields: usize,
    rows: usize,
    max_rows: usize,
}

impl TopicDecoder {
    /// A decoder producing batches of at most `max_rows` rows, holding
    /// times to the default [`TimeBounds`] (2000 to 2100, `event_time` at
    /// most a day ahead of the wall clock, read now).
    pub fn new(stream: Stream, max_rows: usize) -> TopicDecoder {
        TopicDecoder::with_time_bounds(stream, max_rows, TimeBounds::default())
    }

    /// A decoder producing batches of at most `max_rows` rows, holding times
    /// to `bounds` (check them with [`TimeBounds::validate`] first: an empty
    /// range refuses every record). The future skew is measured from the
    /// wall clock read here, until [`set_wall_clock_ms`](Self::set_wall_clock_ms)
    /// gives a newer one: a decoder that lives long must be given the clock
    /// regularly, or it refuses times ahead of the clock it last read.
    pub fn with_time_bounds(stream: Stream, max_rows: usize, bounds: TimeBounds) -> TopicDecoder {
        let max_rows = max_rows.max(1);
        let table_schema = stream.schema();
        let output_schema = stream.source_schema();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let reader = RecordReader::new(&table_schema, bounds, now_ms);
        let capacity = max_rows.min(MAX_RESERVED_ROWS);
        let columns = output_schema
            .fields()
            .iter()
            .map(|f| {
                let kind = Kind::of(f).expect("stream and metadata columns have supported types");
                Column::new(f, kind, capacity)
            })
            .collect();
        TopicDecoder {
            stream,
            output_schema,
            reader,
            columns,
            fields: table_schema.fields().len(),
            rows: 0,
            max_rows,
        }
    }

    /// Measures the future-skew bound from `now_ms` (the wall clock, epoch
    /// ms) for the records pushed from now on. Cheap; the source calls it
    /// once per chunk of messages rather than reading the clock per record.
    pub fn set_wall_clock_ms(&mut self, now_ms: i64) {
        let bounds = self.reader.time_bounds();
        self.reader.set_time_bounds(bounds, now_ms);
    }

    /// The bounds times are held to.
    pub fn time_bounds(&self) -> TimeBounds {
        self.reader.time_bounds()
    }

    /// The stream this decoder builds batches for.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Rows held for the next batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// No row held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The next batch has reached its row limit (or holds a gigabyte of
    /// text in one column): call [`finish`](Self::finish).
    pub fn is_full(&self) -> bool {
        self.rows >= self.max_rows || self.reader.text_full()
    }

    /// Decodes a message into the next batch, or returns it as a dead letter
    /// with the reason it cannot be decoded.
    pub fn push(&mut self, m: &RawMessage<'_>) -> Result<(), Box<DeadLetter>> {
        let payload = match m.payload {
            Some(p) if !p.is_empty() => p,
            _ => {
                return Err(self.dead_letter(
                    m,
                    DeadLetterKind::EmptyPayload,
                    "empty payload (tombstone or empty message); expected a JSON object".into(),
                ));
            }
        };
        let (fields, meta) = self.columns.split_at_mut(self.fields);
        if let Err(problem) = self.reader.read(payload, fields) {
            for column in fields {
                column.truncate(self.rows);
            }
            let (kind, reason) = self.reader.explain(&problem, payload);
            return Err(self.dead_letter(m, kind, reason));
        }
        let [partition, offset, kafka_ts] = meta else {
            unreachable!("three metadata columns");
        };
        if let Values::Int32(v) = &mut partition.values {
            v.push(m.partition);
        }
        if let Values::Int64(v) = &mut offset.values {
            v.push(m.offset);
        }
        match m.timestamp_ms {
            Some(ts) => {
                if let Values::Int64(v) = &mut kafka_ts.values {
                    v.push(ts);
                }
                kafka_ts.set_valid();
            }
            None => kafka_ts.push_null(),
        }
        self.rows += 1;
        Ok(())
    }

    fn dead_letter(
        &self,
        m: &RawMessage<'_>,
        kind: DeadLetterKind,
        reason: String,
    ) -> Box<DeadLetter> {
        Box::new(DeadLetter {
            topic: self.stream.name().to_owned(),
            partition: m.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.map(<[u8]>::to_vec),
            payload: m.payload.map(<[u8]>::to_vec),
            kind,
            reason,
        })
    }

    /// The rows held as one batch (`None` when there are none). Records are
    /// refused at [`push`](Self::push), so the dead letters are always empty;
    /// they stay in the signature for the source's sake.
    pub fn finish(&mut self) -> (Option<RecordBatch>, Vec<DeadLetter>) {
        if self.rows == 0 {
            return (None, Vec::new());
        }
        let capacity = self.max_rows.min(MAX_RESERVED_ROWS);
        let arrays = self
            .columns
            .iter_mut()
            .map(|c| c.finish(capacity))
            .collect();
        self.rows = 0;
        self.reader.clear_full();
        let batch = RecordBatch::try_new(self.output_schema.clone(), arrays)
            .expect("decoded columns match the stream's source schema");
        (Some(batch), Vec::new())
    }

    /// Keeps only the rows whose partition passes `keep` (after a rebalance
    /// took the others away).
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        let Values::Int32(partitions) = &self.columns[self.fields].values else {
            unreachable!("_partition is the first metadata column");
        };
        let flags: Vec<bool> = partitions.iter().map(|&p| keep(p)).collect();
        if flags.iter().all(|&k| k) {
            return;
        }
        for column in &mut self.columns {
            column.retain(&flags);
        }
        self.rows = flags.iter().filter(|&&k| k).count();
    }
}
