//! The continuous views and reference tables shipped in `sql/`, built into
//! the binary so that `kpiflow demo` runs from anywhere.

use kpiflow_engine::{Engine, EngineConfig};

macro_rules! sql_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../sql/", $name, ".sql")))),*]
    };
}

macro_rules! csv_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../sql/reference/", $name, ".csv")))),*]
    };
}

/// `sql/<name>.sql`: name and text.
pub const VIEWS: &[(&str, &str)] = sql_files![
    "sales_by_channel_region",
    "top_skus_5min",
    "line_output_hourly",
    "production_vs_sales_hourly",
    "carrier_on_time_hourly",
    "equipment_health_hourly",
    "last_inspection_daily",
];

/// `sql/reference/<name>.csv`: name and text.
pub const REFERENCES: &[(&str, &str)] = csv_files![
    "plants",
    "lines",
    "skus",
    "stores",
    "warehouses",
    "devices",
    "carriers",
];

/// An engine with the reference tables and every view.
pub async fn engine() -> anyhow::Result<Engine> {
    let all: Vec<String> = VIEWS.iter().map(|(n, _)| (*n).to_owned()).collect();
    engine_with(EngineConfig::default(), &all).await
}

/// An engine with `config`, the reference tables and the views named.
pub async fn engine_with(config: EngineConfig, views: &[String]) -> anyhow::Result<Engine> {
    let mut engine = Engine::new(config)?;
    for (name, csv) in REFERENCES {
        engine.register_reference_csv(name, csv)?;
    }
    for (name, text) in VIEWS {
        if views.iter().any(|v| v == name) {
            engine.create_view_file(name, text).await?;
        }
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &str, extension: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == extension))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_file_in_sql_is_built_in() {
        let mut views: Vec<String> = VIEWS.iter().map(|(n, _)| n.to_string()).collect();
        views.sort();
        assert_eq!(
            views,
            names_in("../../sql", "sql"),
            "add new sql/ views to VIEWS"
        );
        let mut references: Vec<String> = REFERENCES.iter().map(|(n, _)| n.to_string()).collect();
        references.sort();
        assert_eq!(references, names_in("../../sql/reference", "csv"));
    }
}
