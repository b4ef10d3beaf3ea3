//! One panel's data from its view's live rows (running values of open
//! windows and the newest final ones): a query over `live.<view>` built
//! from the panel, its result shaped for the page — time and series arrays
//! for charts (uPlot's model), rows for tables, a value and the previous
//! window's for tiles.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::Value;

use super::definition::{Panel, PanelKind};
use crate::json;
use crate::sql::quote;

/// What the page gets for one panel (see the module docs of `feed`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PanelData {
    pub kind: &'static str,
    pub freshness: Freshness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<Series>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<json::Column>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Vec<Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_final: Option<Vec<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
    #[serde(rename = "final", skip_serializing_if = "Option::is_none")]
    pub is_final: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Freshness {
    pub newest_event_ms: Option<i64>,
    pub watermark_ms: Option<i64>,
    /// Wall clock when the data last changed.
    pub changed_ms: i64,
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
    #[serde(rename = "final")]
    pub is_final: Vec<bool>,
}

fn kind_name(kind: PanelKind) -> &'static str {
    match kind {
        PanelKind::Line => "line",
        PanelKind::Bar => "bar",
        PanelKind::Table => "table",
        PanelKind::Tile => "tile",
    }
}

/// The panel's query over its live table.
pub fn query(panel: &Panel) -> String {
    let table = format!("live.{}", quote(&panel.view));
    let filter = panel.filter.as_deref().unwrap_or("true");
    let start = quote(kpiflow_engine::WINDOW_START);
    match panel.kind {
        PanelKind::Line | PanelKind::Bar => {
            let x = quote(panel.x.as_deref().unwrap_or(kpiflow_engine::WINDOW_START));
            let y = quote(panel.y.as_deref().unwrap_or_default());
            let series = panel.series.as_deref().map_or("NULL".to_owned(), |s| {
                format!("CAST({} AS VARCHAR)", quote(s))
            });
            format!(
                "SELECT {x} AS x, {series} AS s, CAST({agg}({y}) AS DOUBLE) AS y, bool_and(is_final) AS f \
                 FROM {table} WHERE ({filter}) AND {x} >= \
                 (SELECT max({x}) FROM {table} WHERE ({filter})) - INTERVAL '{range} milliseconds' \
                 GROUP BY 1, 2 ORDER BY 1, 2",
                agg = panel.aggregate.sql(),
                range = panel.range_ms,
            )
        }
        PanelKind::Table => {
            let columns: Vec<String> = panel.columns.iter().map(|c| quote(c)).collect();
            let order = match &panel.sort {
                Some(s) if s.starts_with('-') => format!("{} DESC NULLS LAST", quote(&s[1..])),
                Some(s) => format!("{} ASC NULLS LAST", quote(s)),
                None => format!("{start} DESC"),
            };
            // A dashboard's table shows the newest window; a view's stream
            // every window in its range.
            let windows = if panel.newest_only {
                format!("{start} = (SELECT max({start}) FROM {table} WHERE ({filter}))")
            } else {
                format!(
                    "{start} >= (SELECT max({start}) FROM {table} WHERE ({filter})) - INTERVAL '{} milliseconds'",
                    panel.range_ms
                )
            };
            format!(
                "SELECT {cols}, is_final FROM {table} WHERE ({filter}) AND {windows} \
                 ORDER BY {order} LIMIT {limit}",
                cols = columns.join(", "),
                limit = panel.limit.unwrap_or(20),
            )
        }
        PanelKind::Tile => {
            let y = quote(panel.y.as_deref().unwrap_or_default());
            format!(
                "SELECT {start} AS w, CAST({agg}({y}) AS DOUBLE) AS y, bool_and(is_final) AS f \
                 FROM {table} WHERE ({filter}) GROUP BY 1 ORDER BY 1 DESC LIMIT 2",
                agg = panel.aggregate.sql(),
            )
        }
    }
}

/// Runs the panel's query and shapes the result; an error becomes the
/// panel's `error`, never the page's.
pub async fn compute(ctx: &SessionContext, panel: &Panel) -> PanelData {
    let mut data = PanelData {
        kind: kind_name(panel.kind),
        ..PanelData::default()
    };
    let batches = match run(ctx, &query(panel)).await {
        Ok(b) => b,
        Err(e) => {
            data.error = Some(e);
            return data;
        }
    };
    let shaped = match panel.kind {
        PanelKind::Line | PanelKind::Bar => chart(&batches, panel, &mut data),
        PanelKind::Table => table(&batches, &mut data),
        PanelKind::Tile => tile(&batches, &mut data),
    };
    if let Err(e) = shaped {
        data.error = Some(e);
    }
    data
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let frame = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    frame.collect().await.map_err(|e| e.to_string())
}

fn floats(batch: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>, String> {
    let a = cast(batch.column(i), &DataType::Float64).map_err(|e| e.to_string())?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
}

fn times(batch: &RecordBatch, i: usize) -> Vec<Option<i64>> {
    json::values(batch.column(i))
        .into_iter()
        .map(|v| v.as_i64())
        .collect()
}

fn flags(batch: &RecordBatch, i: usize) -> Vec<bool> {
    let a = batch.column(i).as_boolean();
    (0..a.len()).map(|j| a.is_valid(j) && a.value(j)).collect()
}

fn chart(batches: &[RecordBatch], panel: &Panel, data: &mut PanelData) -> Result<(), String> {
    // x → (series → (value, final))
    let mut points: BTreeMap<i64, BTreeMap<String, (Option<f64>, bool)>> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    let default_name = panel.y.clone().unwrap_or_default();
    for batch in batches {
        let xs = times(batch, 0);
        let series = json::values(batch.column(1));
        let ys = floats(batch, 2)?;
        let fs = flags(batch, 3);
        for j in 0..batch.num_rows() {
            let Some(x) = xs[j] else { continue };
            let name = match &series[j] {
                Value::String(s) => s.clone(),
                Value::Null if panel.series.is_none() => default_name.clone(),
                Value::Null => "(none)".to_owned(),
                other => other.to_string(),
            };
            if !names.contains(&name) {
                names.push(name.clone());
            }
            points.entry(x).or_default().insert(name, (ys[j], fs[j]));
        }
    }
    names.sort();
    let x: Vec<i64> = points.keys().copied().collect();
    let series = names
        .into_iter()
        .map(|name| {
            let (values, is_final) = points
                .values()
                .map(|at| at.get(&name).map_or((None, true), |&(v, f)| (v, f)))
                .unzip();
            Series {
                name,
                values,
                is_final,
            }
        })
        .collect();
    data.x = Some(x);
    data.series = Some(series);
    Ok(())
}

fn table(batches: &[RecordBatch], data: &mut PanelData) -> Result<(), String> {
    let Some(first) = batches.first() else {
        data.columns = Some(Vec::new());
        data.rows = Some(Vec::new());
        data.row_final = Some(Vec::new());
        return Ok(());
    };
    let schema = first.schema();
    let last = schema.fields().len() - 1;
    data.columns = Some(json::columns(&schema).into_iter().take(last).collect());
    let mut rows = json::rows(batches, usize::MAX);
    let mut finals = Vec::with_capacity(rows.len());
    for row in &mut rows {
        finals.push(row.pop().and_then(|v| v.as_bool()).unwrap_or(false));
    }
    data.rows = Some(rows);
    data.row_final = Some(finals);
    Ok(())
}

fn tile(batches: &[RecordBatch], data: &mut PanelData) -> Result<(), String> {
    let mut values = Vec::new();
    for batch in batches {
        let ys = floats(batch, 1)?;
        let fs = flags(batch, 2);
        values.extend(ys.into_iter().zip(fs));
    }
    if let Some((value, is_final)) = values.first() {
        data.value = *value;
        data.is_final = Some(*is_final);
    }
    data.previous = values.get(1).and_then(|(v, _)| *v);
    Ok(())
}
