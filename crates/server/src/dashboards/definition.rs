//! Dashboard files (`dashboards/*.toml`): a title and panels, each reading
//! one view. Checked against the views at start, so a typo in a column is
//! an error naming the file, the panel and the columns there are — not an
//! empty chart.

use std::collections::BTreeSet;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kpiflow_engine::ViewInfo;

/// The dashboards built into the binary: `dashboards/<name>.toml`.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("sales", include_str!("../../../../dashboards/sales.toml")),
    (
        "production",
        include_str!("../../../../dashboards/production.toml"),
    ),
    (
        "production_vs_sales",
        include_str!("../../../../dashboards/production_vs_sales.toml"),
    ),
    (
        "logistics",
        include_str!("../../../../dashboards/logistics.toml"),
    ),
    (
        "equipment",
        include_str!("../../../../dashboards/equipment.toml"),
    ),
];

/// How a panel draws its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    Line,
    Bar,
    Table,
    Tile,
}

/// How rows sharing a time and a series are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

/// One panel as the file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PanelFile {
    id: String,
    title: String,
    view: String,
    kind: PanelKind,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    series: Option<String>,
    #[serde(default)]
    aggregate: Aggregate,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    span: Option<u8>,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardFile {
    title: String,
    #[serde(default)]
    description: String,
    panels: Vec<PanelFile>,
}

/// A checked panel, as `GET /api/dashboards/<name>` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Panel {
    pub id: String,
    pub title: String,
    pub view: String,
    pub kind: PanelKind,
    /// The time column (line, bar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The value column (line, bar, tile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// One series per distinct value of this column (line, bar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    pub aggregate: Aggregate,
    /// The columns shown (table).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Table order: a column, `-` first for descending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The time shown: windows starting at most this long before the newest.
    pub range_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// number | percent | integer
    pub format: String,
    pub span: u8,
    /// A SQL boolean expression over the view's columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// A table shows the newest window only (a view's stream: all in range).
    #[serde(skip)]
    pub newest_only: bool,
}

/// A checked dashboard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dashboard {
    pub name: String,
    pub title: String,
    pub description: String,
    pub panels: Vec<Panel>,
}

/// Default time range of a panel.
const DEFAULT_RANGE: Duration = Duration::from_secs(3600);

impl Dashboard {
    /// Parses `text` (the file `name`.toml) and checks it against `views`.
    pub fn parse(name: &str, text: &str, views: &[ViewInfo]) -> Result<Dashboard, String> {
        let file = format!("dashboards/{name}.toml");
        let parsed: DashboardFile = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let mut ids = BTreeSet::new();
        let mut panels = Vec::new();
        let mut problems = Vec::new();
        for p in parsed.panels {
            let here = format!("{file}, panel '{}'", p.id);
            if !ids.insert(p.id.clone()) {
                problems.push(format!("{here}: the id is used twice"));
                continue;
            }
            match check_panel(p, views) {
                Ok(panel) => panels.push(panel),
                Err(e) => problems.push(format!("{here}: {e}")),
            }
        }
        if panels.is_empty() && problems.is_empty() {
            problems.push(format!("{file}: no panels"));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Dashboard {
            name: name.to_owned(),
            title: parsed.title,
            description: parsed.description,
            panels,
        })
    }
}

fn check_panel(p: PanelFile, views: &[ViewInfo]) -> Result<Panel, String> {
    if p.id.is_empty()
        || !p
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("the id must be [a-z0-9_]+".into());
    }
    let Some(view) = views.iter().find(|v| v.name == p.view) else {
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        return Err(format!(
            "no view '{}'; the views are {}",
            p.view,
            names.join(", ")
        ));
    };
    let schema = &view.schema;
    let has = |c: &str| schema.column_with_name(c).is_some();
    let need = |what: &str, c: &Option<String>| -> Result<String, String> {
        match c {
            Some(c) if has(c) => Ok(c.clone()),
            Some(c) => Err(format!(
                "{what} '{c}' is not a column of {}: {}",
                view.name,
                columns_of(schema)
            )),
            None => Err(format!("a {:?} panel needs '{what}'", p.kind).to_lowercase()),
        }
    };
    if !has(kpiflow_engine::WINDOW_START) {
        return Err(format!(
            "view {} has no window_start: dashboards show windowed views",
            view.name
        ));
    }
    let (x, y, series) = match p.kind {
        PanelKind::Line | PanelKind::Bar => (
            Some(need("x", &p.x)?),
            Some(need("y", &p.y)?),
            match &p.series {
                Some(_) => Some(need("series", &p.series)?),
                None => None,
            },
        ),
        PanelKind::Tile => (None, Some(need("y", &p.y)?), None),
        PanelKind::Table => (None, None, None),
    };
    let mut columns = Vec::new();
    if p.kind == PanelKind::Table {
        if p.columns.is_empty() {
            return Err("a table panel needs 'columns'".into());
        }
        for c in &p.columns {
            columns.push(need("column", &Some(c.clone()))?);
        }
    }
    if let Some(sort) = &p.sort {
        need("sort", &Some(sort.trim_start_matches('-').to_owned()))?;
    }
    let range_ms = match &p.range {
        Some(r) => humantime::parse_duration(r)
            .map_err(|e| format!("range '{r}': {e} (e.g. 30m, 1h, 2d)"))?
            .as_millis() as u64,
        None => DEFAULT_RANGE.as_millis() as u64,
    };
    let format = p.format.unwrap_or_else(|| "number".into());
    if !matches!(format.as_str(), "number" | "percent" | "integer") {
        return Err(format!(
            "format '{format}': expected number, percent or integer"
        ));
    }
    if let Some(filter) = &p.filter
        && (filter.contains(';') || filter.contains("--"))
    {
        return Err("the filter must be one SQL boolean expression".into());
    }
    Ok(Panel {
        id: p.id,
        title: p.title,
        view: p.view,
        kind: p.kind,
        x,
        y,
        series,
        aggregate: p.aggregate,
        columns,
        sort: p.sort,
        limit: p.limit,
        range_ms,
        unit: p.unit,
        format,
        span: p.span.unwrap_or(1).clamp(1, 4),
        filter: p.filter,
        newest_only: true,
    })
}

fn columns_of(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Dashboard {
    /// The feed behind `GET /api/views/<view>/stream`: one table of every
    /// column, the windows of the last hour, newest first.
    pub fn of_view(view: &ViewInfo) -> Dashboard {
        Dashboard {
            name: format!("view:{}", view.name),
            title: view.name.clone(),
            description: view.description.clone(),
            panels: vec![Panel {
                id: "rows".into(),
                title: view.name.clone(),
                view: view.name.clone(),
                kind: PanelKind::Table,
                x: None,
                y: None,
                series: None,
                aggregate: Aggregate::Sum,
                columns: view
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
                sort: Some(format!("-{}", kpiflow_engine::WINDOW_START)),
                limit: Some(10_000),
                range_ms: DEFAULT_RANGE.as_millis() as u64,
                unit: None,
                format: "number".into(),
                span: 1,
                filter: None,
                newest_only: false,
            }],
        }
    }
}

/// The built-in dashboards, or those of `dir` (`*.toml`) when given.
pub fn load(dir: Option<&std::path::Path>, views: &[ViewInfo]) -> Result<Vec<Dashboard>, String> {
    let mut files: Vec<(String, String)> = Vec::new();
    match dir {
        None => {
            for (name, text) in BUILT_IN {
                files.push(((*name).to_owned(), (*text).to_owned()));
            }
        }
        Some(dir) => {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                format!(
                    "cannot read the dashboards directory {}: {e}",
                    dir.display()
                )
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "toml") {
                    continue;
                }
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                files.push((name, text));
            }
            files.sort();
            if files.is_empty() {
                return Err(format!("no *.toml dashboard in {}", dir.display()));
            }
        }
    }
    let mut dashboards = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        match Dashboard::parse(&name, &text, views) {
            Ok(d) => dashboards.push(d),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(dashboards)
    } else {
        Err(problems.join("; "))
    }
}
