//! The simulated factory: plants, lines, SKUs, stores, warehouses, devices and
//! carriers, read from the reference CSVs in `sql/reference/` that the SQL
//! views join. Embedding the same files keeps simulator and reference tables
//! consistent by construction.

use serde::Deserialize;

const PLANTS: &str = include_str!("../../../../sql/reference/plants.csv");
const LINES: &str = include_str!("../../../../sql/reference/lines.csv");
const SKUS: &str = include_str!("../../../../sql/reference/skus.csv");
const STORES: &str = include_str!("../../../../sql/reference/stores.csv");
const WAREHOUSES: &str = include_str!("../../../../sql/reference/warehouses.csv");
const DEVICES: &str = include_str!("../../../../sql/reference/devices.csv");
const CARRIERS: &str = include_str!("../../../../sql/reference/carriers.csv");

/// A plant (`plants.csv`).
#[derive(Debug, Clone, Deserialize)]
pub struct Plant {
    pub plant_id: String,
    pub name: String,
    pub city: String,
    pub region: String,
}

/// A production line making one product category (`lines.csv`).
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub line_id: String,
    pub plant_id: String,
    pub name: String,
    pub category: String,
    pub capacity_per_hour: f64,
}

/// A product (`skus.csv`); `daily_demand` is units sold on an average day.
#[derive(Debug, Clone, Deserialize)]
pub struct Sku {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub unit_price: f64,
    pub daily_demand: f64,
}

/// A point of sale (`stores.csv`); online storefronts are one per region.
#[derive(Debug, Clone, Deserialize)]
pub struct Store {
    pub store_id: String,
    pub name: String,
    pub channel: String,
    pub region: String,
    pub city: String,
}

/// A distribution centre (`warehouses.csv`).
#[derive(Debug, Clone, Deserialize)]
pub struct Warehouse {
    pub warehouse_id: String,
    pub name: String,
    pub region: String,
    pub city: String,
}

/// A machine on a line (`devices.csv`).
#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub device_id: String,
    pub plant_id: String,
    pub line_id: String,
    pub kind: String,
}

/// A logistics carrier (`carriers.csv`): promised delivery within `sla_hours`,
/// late on `delay_rate` of shipments in normal times.
#[derive(Debug, Clone, Deserialize)]
pub struct Carrier {
    pub carrier: String,
    pub name: String,
    pub sla_hours: f64,
    pub delay_rate: f64,
}

/// Every reference table of the factory.
#[derive(Debug, Clone)]
pub struct Factory {
    pub plants: Vec<Plant>,
    pub lines: Vec<Line>,
    pub skus: Vec<Sku>,
    pub stores: Vec<Store>,
    pub warehouses: Vec<Warehouse>,
    pub devices: Vec<Device>,
    pub carriers: Vec<Carrier>,
}

impl Factory {
    /// The factory described by `sql/reference/*.csv`.
    pub fn reference() -> Factory {
        // The files are compiled in and checked by this crate's tests, so a parse
        // failure here is a bug in the repository, not bad user input.
        Factory {
            plants: parse(PLANTS, "plants.csv"),
            lines: parse(LINES, "lines.csv"),
            skus: parse(SKUS, "skus.csv"),
            stores: parse(STORES, "stores.csv"),
            warehouses: parse(WAREHOUSES, "warehouses.csv"),
            devices: parse(DEVICES, "devices.csv"),
            carriers: parse(CARRIERS, "carriers.csv"),
        }
    }

    /// Regions, in the order warehouses list them.
    pub fn regions(&self) -> Vec<&str> {
        self.warehouses.iter().map(|w| w.region.as_str()).collect()
    }
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, file: &str) -> Vec<T> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .unwrap_or_else(|e| panic!("sql/reference/{file} is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reference_tables_are_consistent() {
        let f = Factory::reference();
        let plants: HashSet<_> = f.plants.iter().map(|p| &p.plant_id).collect();
        let lines: HashSet<_> = f.lines.iter().map(|l| &l.line_id).collect();
        let regions: HashSet<_> = f.regions().into_iter().collect();
        let categories: HashSet<_> = f.lines.iter().map(|l| &l.category).collect();
        for line in &f.lines {
            assert!(plants.contains(&line.plant_id), "{}", line.line_id);
            assert!(line.capacity_per_hour > 0.0);
        }
        for sku in &f.skus {
            assert!(
                categories.contains(&sku.category),
                "no line makes {}",
                sku.sku
            );
        }
        for device in &f.devices {
            assert!(lines.contains(&device.line_id), "{}", device.device_id);
            let line = f
                .lines
                .iter()
                .find(|l| l.line_id == device.line_id)
                .unwrap();
            assert_eq!(line.plant_id, device.plant_id, "{}", device.device_id);
        }
        for store in &f.stores {
            assert!(
                regions.contains(store.region.as_str()),
                "{}",
                store.store_id
            );
            assert!(
                kpiflow_types::Channel::ALL
                    .iter()
                    .any(|c| c.as_str() == store.channel),
                "{}",
                store.store_id
            );
        }
        for line in &f.lines {
            assert!(
                f.devices.iter().any(|d| d.line_id == line.line_id),
                "line {} has no devices",
                line.line_id
            );
        }
        assert!(!f.carriers.is_empty());
    }
}
