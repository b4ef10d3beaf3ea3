//! Hand-made sales batches for engine tests.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::util::pretty::pretty_format_batches;
use kpiflow_types::{PartitionProgress, SourceBatch, Stream};

/// One sales event: (event time ms, partition, sku, channel, region, quantity, amount).
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub t: i64,
    pub partition: i32,
    pub sku: String,
    pub channel: String,
    pub region: String,
    pub quantity: i64,
    pub amount: f64,
}

pub fn sale(t: i64, partition: i32, sku: &str, channel: &str, quantity: i64, amount: f64) -> Sale {
    Sale {
        t,
        partition,
        sku: sku.into(),
        channel: channel.into(),
        region: "east".into(),
        quantity,
        amount,
    }
}

/// Sales rows with the source schema; offsets numbered from `first_offset`.
pub fn sales_rows(sales: &[Sale], first_offset: i64) -> RecordBatch {
    let schema = Stream::Sales.source_schema();
    let n = sales.len();
    let s = |f: &dyn Fn(&Sale) -> String| -> ArrayRef {
        Arc::new(StringArray::from(sales.iter().map(f).collect::<Vec<_>>()))
    };
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        ts(sales.iter().map(|x| x.t).collect()),
        s(&|x| format!("O-{}", x.t)),
        s(&|x| x.channel.clone()),
        s(&|x| x.region.clone()),
        s(&|_| "ST-1".into()),
        s(&|x| x.sku.clone()),
        Arc::new(Int64Array::from(
            sales.iter().map(|x| x.quantity).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(vec![10.0; n])),
        Arc::new(Float64Array::from(
            sales.iter().map(|x| x.amount).collect::<Vec<_>>(),
        )),
        s(&|_| "order".into()),
        Arc::new(Int32Array::from(
            sales.iter().map(|x| x.partition).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            (0..n as i64).map(|i| first_offset + i).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMillisecondArray::from(vec![None::<i64>; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema, columns).expect("sales batch")
}

/// A batch of sales with progress for `partitions` partitions (max event time
/// per partition over everything pushed so far is the caller's to track).
pub fn batch(stream: Stream, rows: RecordBatch, progress: Vec<PartitionProgress>) -> SourceBatch {
    SourceBatch {
        stream,
        rows,
        partitions: progress,
    }
}

pub fn progress(partition: i32, max: Option<i64>, idle: bool) -> PartitionProgress {
    PartitionProgress {
        partition,
        max_event_time_ms: max,
        next_offset: 0,
        idle,
    }
}

pub fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("format").to_string()
}
