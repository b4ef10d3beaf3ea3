//! The batch formulation on small hand-made inputs: late rows of hop and
//! session views, duplicates, refusals, keys, joins of views, and the
//! differences `compare` reports.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::*;
use crate::error::ErrorClass;

fn ts(v: Vec<Option<i64>>) -> Arc<TimestampMillisecondArray> {
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

/// `sales` rows: (event time, sku, quantity).
fn sales(rows: &[(i64, &str, i64)]) -> Table {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_time", windows::ts_ms(), false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            ts(rows.iter().map(|r| Some(r.0)).collect()),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "online"))),
        ],
    )
    .unwrap();
    Table::new("sales", schema, vec![batch])
}

/// A late row of a view reading `event_time, sku, quantity`: (event time,
/// sku, quantity, missed window's start and end).
type Missed<'a> = (i64, &'a str, i64, Option<(i64, i64)>);

/// Late-table rows.
fn late(rows: &[Missed<'_>]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_time", windows::ts_ms(), false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new(WINDOW_START, windows::ts_ms(), true),
        Field::new(WINDOW_END, windows::ts_ms(), true),
        Field::new("watermark", windows::ts_ms(), true),
        Field::new("late_reason", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            ts(rows.iter().map(|r| Some(r.0)).collect()),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ts(rows.iter().map(|r| r.3.map(|w| w.0)).collect()),
            ts(rows.iter().map(|r| r.3.map(|w| w.1)).collect()),
            ts(vec![Some(1_000_000); rows.len()]),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "late"))),
        ],
    )
    .unwrap()
}

/// (window start, sku, units) of every output row, sorted.
fn units(batches: &[RecordBatch]) -> Vec<(i64, String, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let start = b
            .column_by_name(WINDOW_START)
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let sku = b.column_by_name("sku").unwrap();
        let sku = datafusion::arrow::compute::cast(sku, &DataType::Utf8).unwrap();
        let sku = sku.as_any().downcast_ref::<StringArray>().unwrap();
        let units = b
            .column_by_name("units")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.push((start.value(i), sku.value(i).to_owned(), units.value(i)));
        }
    }
    out.sort();
    out
}

const HOP: &str = "SELECT sku, sum(quantity) AS units FROM sales \
    GROUP BY hop(event_time, INTERVAL '10 seconds', INTERVAL '20 seconds'), sku";

#[tokio::test]
async fn a_hop_row_late_for_one_window_still_counts_in_the_others() {
    // Two equal events at 15 s: one copy missed [0 s, 20 s) only.
    let input = sales(&[(5_000, "a", 1), (15_000, "a", 10), (15_000, "a", 10)]);
    let missed = late(&[(15_000, "a", 10, Some((0, 20_000)))]);
    let got = batch_query("hop", HOP, &[input], &[missed]).await.unwrap();
    assert_eq!(
        units(&got),
        vec![
            (-10_000, "a".into(), 1),
            (0, "a".into(), 11),
            (10_000, "a".into(), 20),
        ]
    );
}

#[tokio::test]
async fn a_session_row_late_for_every_window_is_left_out_before_sessions_form() {
    // Without the late event at 14 s, 5 s and 23 s are two sessions.
    let sql = "SELECT sku, sum(quantity) AS units FROM sales \
        GROUP BY session(event_time, INTERVAL '10 seconds'), sku";
    let input = sales(&[(5_000, "a", 1), (14_000, "a", 2), (23_000, "a", 4)]);
    let missed = late(&[(14_000, "a", 2, None)]);
    let got = batch_query("s", sql, std::slice::from_ref(&input), &[missed])
        .await
        .unwrap();
    assert_eq!(
        units(&got),
        vec![(5_000, "a".into(), 1), (23_000, "a".into(), 4)]
    );
    let all = batch_query("s", sql, &[input], &[]).await.unwrap();
    assert_eq!(units(&all), vec![(5_000, "a".into(), 7)]);
}

#[tokio::test]
async fn late_rows_that_match_no_input_row_are_an_error() {
    let input = sales(&[(15_000, "a", 10)]);
    let missed = late(&[
        (15_000, "a", 10, Some((0, 20_000))),
        (15_000, "a", 10, Some((0, 20_000))),
    ]);
    let e = batch_query("hop", HOP, &[input], &[missed])
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadInput);
    assert!(
        e.to_string().contains("1 of 2 late rows match no row"),
        "{e}"
    );
}

#[tokio::test]
async fn late_rows_without_a_column_the_aggregation_reads_are_an_error() {
    let input = sales(&[(15_000, "a", 10)]);
    let missed = late(&[(15_000, "a", 10, Some((0, 20_000)))]);
    let missed = missed.project(&[0, 1, 3, 4]).unwrap();
    let e = batch_query("hop", HOP, &[input], &[missed])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no column `quantity`"), "{e}");
}

#[tokio::test]
async fn what_the_rewrite_cannot_handle_is_named() {
    let input = sales(&[(15_000, "a", 10)]);
    for (sql, named) in [
        (
            "SELECT sku, count(*) AS n FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku ORDER BY n",
            "ORDER BY",
        ),
        (
            "SELECT sku, count(*) AS n FROM sales GROUP BY sku",
            "GROUP BY without a window",
        ),
        (
            "SELECT sku, count(*) AS n FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), \
             tumble(event_time, INTERVAL '2 minutes'), sku",
            "more than one window",
        ),
    ] {
        let e = batch_query("v", sql, std::slice::from_ref(&input), &[])
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::BadInput, "{sql}");
        assert!(e.to_string().contains(named), "{sql}: {e}");
    }
}

#[tokio::test]
async fn keys_are_the_window_and_the_outputs_not_computed_from_aggregates() {
    let sql = "SELECT sku, upper(sku) AS up, count(*) AS n, sum(quantity) * 2 AS twice FROM sales \
        GROUP BY tumble(event_time, INTERVAL '1 minute'), sku, channel HAVING count(*) > 0";
    let keys = key_columns("v", sql, &[sales(&[])]).await.unwrap();
    assert_eq!(keys, [WINDOW_START, WINDOW_END, "sku", "up"]);
}

#[tokio::test]
async fn a_join_of_two_views_has_the_left_window_first() {
    let input = sales(&[(5_000, "a", 1), (65_000, "b", 2)]);
    let sql = "SELECT sku, sum(quantity) AS units FROM sales \
        GROUP BY tumble(event_time, INTERVAL '1 minute'), sku";
    let view = batch_query("per_minute", sql, &[input], &[]).await.unwrap();
    let table = |name: &str| Table::new(name, view[0].schema(), view.clone());
    let join = "SELECT a.sku, a.units, b.units AS again FROM per_minute a \
        JOIN per_minute_too b ON a.window_start = b.window_start AND a.sku = b.sku";
    let got = batch_query(
        "joined",
        join,
        &[table("per_minute"), table("per_minute_too")],
        &[],
    )
    .await
    .unwrap();
    let names: Vec<String> = got[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, [WINDOW_START, WINDOW_END, "sku", "units", "again"]);
    assert_eq!(
        units(&got),
        vec![(0, "a".into(), 1), (60_000, "b".into(), 2)]
    );
    assert!(compare("joined", &[], &got, &got).is_empty());
}

#[tokio::test]
async fn rows_per_window_are_what_the_late_table_holds() {
    let input = sales(&[(15_000, "a", 10)]);
    let rows = batch_rows("hop", HOP, &[input], &[]).await.unwrap();
    let schema = rows[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["event_time", "sku", "quantity", WINDOW_START, WINDOW_END]
    );
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert!(rows[0].column(3).null_count() == 0);
}

/// Rows of one-minute windows: (start, sku, units, revenue) by column.
fn minute_rows(
    starts: Vec<i64>,
    skus: Vec<&str>,
    units: Vec<i64>,
    revenue: Vec<f64>,
) -> RecordBatch {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new(WINDOW_START, ts.clone(), false),
        Field::new(WINDOW_END, ts, false),
        Field::new("sku", DataType::Utf8, true),
        Field::new("units", DataType::Int64, true),
        Field::new("revenue", DataType::Float64, true),
    ]));
    let ends: Vec<i64> = starts.iter().map(|s| s + 60_000).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(starts).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(ends).with_timezone("UTC")),
            Arc::new(StringArray::from(skus)),
            Arc::new(Int64Array::from(units)),
            Arc::new(Float64Array::from(revenue)),
        ],
    )
    .unwrap()
}

#[test]
fn differences_name_the_window_key_and_column() {
    let keys = ["sku".to_owned()];
    let stored = minute_rows(
        vec![0, 0, 60_000],
        vec!["a", "b", "a"],
        vec![1, 2, 3],
        vec![0.1 + 0.2, 1.0, 2.0],
    );
    let recomputed = minute_rows(
        vec![0, 0, 120_000],
        vec!["a", "b", "a"],
        vec![1, 5, 3],
        vec![0.3, 1.0, 2.0],
    );
    let d = compare("v", &keys, &[stored], &[recomputed]);
    let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "view `v`, window 1970-01-01T00:00:00.000Z to 1970-01-01T00:01:00.000Z, sku = b: units is 2 stored, 5 recomputed",
            "view `v`, window 1970-01-01T00:01:00.000Z to 1970-01-01T00:02:00.000Z, sku = a: missing in the recomputed rows",
            "view `v`, window 1970-01-01T00:02:00.000Z to 1970-01-01T00:03:00.000Z, sku = a: missing in the stored rows",
        ]
    );
    assert_eq!(d[0].window, Some((0, 60_000)));
    assert_eq!(d[0].key, vec![("sku".to_owned(), "b".to_owned())]);
}

#[test]
fn equal_rows_in_another_order_do_not_differ() {
    let a = minute_rows(vec![0, 60_000], vec!["a", "b"], vec![1, 2], vec![1.5, 2.5]);
    let b = minute_rows(vec![60_000, 0], vec!["b", "a"], vec![2, 1], vec![2.5, 1.5]);
    assert!(
        compare(
            "v",
            &["sku".to_owned()],
            std::slice::from_ref(&a),
            std::slice::from_ref(&b)
        )
        .is_empty()
    );
    assert!(compare("v", &[], &[a], &[b]).is_empty());
}

#[test]
fn rows_without_windows_are_compared_as_wholes() {
    let a = sales(&[(1, "a", 1), (2, "b", 2)]).rows;
    let b = sales(&[(2, "b", 2), (1, "a", 3)]).rows;
    let d = compare("plain", &["sku".to_owned()], &a, &b);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].window, None);
    assert_eq!(
        d[0].to_string(),
        "view `plain`, sku = a: quantity is 1 stored, 3 recomputed"
    );
}
