//! The JSON and event-stream API: dashboards, views, SQL, health.

pub mod dashboards;
pub mod health;
pub mod sql;
pub mod views;
