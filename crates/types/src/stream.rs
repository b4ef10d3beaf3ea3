//! The four input streams: their topic names, message keys and Arrow schemas.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the event schemas below. Bump it when a field changes meaning or
/// type; it is stored in each schema's metadata under [`SCHEMA_VERSION_KEY`].
pub const SCHEMA_VERSION: u32 = 1;

/// Schema metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "kpiflow.schema_version";

/// Name of the event-time column present in every stream.
pub const EVENT_TIME: &str = "event_time";

/// One of the input event streams. Each stream is one Kafka topic and one SQL table
/// of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Retail, online and dealer orders and returns; keyed by SKU.
    Sales,
    /// Production reports of work orders per line; keyed by SKU.
    Production,
    /// Shipment status changes; keyed by shipment id.
    Logistics,
    /// Device telemetry, state changes and QR-scan inspections; keyed by device id.
    Equipment,
}

impl Stream {
    /// Every stream, in a fixed order used for display.
    pub const ALL: [Stream; 4] = [
        Stream::Sales,
        Stream::Production,
        Stream::Logistics,
        Stream::Equipment,
    ];

    /// The stream's name: its default topic and its SQL table.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Sales => "sales",
            Stream::Production => "production",
            Stream::Logistics => "logistics",
            Stream::Equipment => "equipment",
        }
    }

    /// The field whose value is the Kafka message key (and so decides the partition).
    pub fn key_field(self) -> &'static str {
        match self {
            Stream::Sales | Stream::Production => "sku",
            Stream::Logistics => "shipment_id",
            Stream::Equipment => "device_id",
        }
    }

    /// The Arrow schema of the stream's table (without Kafka metadata columns).
    pub fn schema(self) -> SchemaRef {
        let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
        let utf8_null = |name: &str| Field::new(name, DataType::Utf8, true);
        let int = |name: &str| Field::new(name, DataType::Int64, false);
        let float = |name: &str| Field::new(name, DataType::Float64, false);
        let float_null = |name: &str| Field::new(name, DataType::Float64, true);
        let mut fields = vec![Field::new(EVENT_TIME, timestamp_ms(), false)];
        fields.extend(match self {
            Stream::Sales => vec![
                utf8("order_id"),
                utf8("channel"),
                utf8("region"),
                utf8("store_id"),
                utf8("sku"),
                int("quantity"),
                float("unit_price"),
                float("amount"),
                utf8("kind"),
            ],
            Stream::Production => vec![
                utf8("plant_id"),
                utf8("line_id"),
                utf8("work_order_id"),
                utf8("sku"),
                int("quantity_good"),
                int("quantity_scrap"),
                utf8("shift"),
            ],
            Stream::Logistics => vec![
                utf8("shipment_id"),
                utf8("warehouse_id"),
                utf8("destination_region"),
                utf8("sku"),
                int("quantity"),
                utf8("carrier"),
                utf8("status"),
                Field::new("promised_time", timestamp_ms(), false),
            ],
            Stream::Equipment => vec![
                utf8("device_id"),
                utf8("plant_id"),
                utf8("line_id"),
                utf8("kind"),
                utf8("state"),
                float_null("temperature_c"),
                float_null("vibration_mm_s"),
                utf8_null("fault_code"),
                utf8_null("inspector"),
                utf8_null("inspection"),
            ],
        });
        let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]);
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }
}

/// `TIMESTAMP(ms, UTC)`, the type of every event-time column.
pub fn timestamp_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream name that is none of `sales`, `production`, `logistics`, `equipment`.
#[derive(Debug, thiserror::Error)]
#[error("unknown stream '{0}': expected one of sales, production, logistics, equipment")]
pub struct UnknownStream(pub String);

impl FromStr for Stream {
    type Err = UnknownStream;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stream::ALL
            .into_iter()
            .find(|stream| stream.name() == s)
            .ok_or_else(|| UnknownStream(s.to_owned()))
    }
}
