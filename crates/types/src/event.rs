//! Serde types of the four event streams, field for field as their Arrow
//! schemas in [`crate::stream`]. The simulator writes them; tests read them back.
//!
//! Sales and logistics carry `event_time` as RFC 3339 text, production and
//! equipment as epoch milliseconds (as MES and PLC gateways tend to): both
//! forms are accepted on input for every stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as it appears in JSON and SQL.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

wire_enum!(
    /// Where a sale happened.
    Channel { Online => "online", Retail => "retail", Dealer => "dealer" }
);
wire_enum!(
    /// An order, or the return of an earlier one.
    SaleKind { Order => "order", Return => "return" }
);
wire_enum!(
    /// A shipment's status change.
    ShipmentStatus { Picked => "picked", Shipped => "shipped", Delivered => "delivered", Delayed => "delayed" }
);
wire_enum!(
    /// What an equipment event reports.
    EquipmentKind { Telemetry => "telemetry", State => "state", Inspection => "inspection" }
);
wire_enum!(
    /// A device's operating state.
    MachineState { Running => "running", Idle => "idle", Fault => "fault", Maintenance => "maintenance" }
);
wire_enum!(
    /// The kind of a QR-code inspection scan.
    Inspection { Disinfection => "disinfection", Safety => "safety", None => "none" }
);

/// One order line or return (`sales` topic, keyed by `sku`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesEvent {
    #[serde(
        serialize_with = "crate::time::serialize_rfc3339",
        deserialize_with = "crate::time::deserialize"
    )]
    pub event_time: DateTime<Utc>,
    pub order_id: String,
    pub channel: Channel,
    pub region: String,
    pub store_id: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_price: f64,
    pub amount: f64,
    pub kind: SaleKind,
}

/// Output of one work order on one line since its last report
/// (`production` topic, keyed by `sku`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductionEvent {
    #[serde(
        serialize_with = "crate::time::serialize_epoch_ms",
        deserialize_with = "crate::time::deserialize"
    )]
    pub event_time: DateTime<Utc>,
    pub plant_id: String,
    pub line_id: String,
    pub work_order_id: String,
    pub sku: String,
    pub quantity_good: i64,
    pub quantity_scrap: i64,
    pub shift: String,
}

/// A shipment's status change (`logistics` topic, keyed by `shipment_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticsEvent {
    #[serde(
        serialize_with = "crate::time::serialize_rfc3339",
        deserialize_with = "crate::time::deserialize"
    )]
    pub event_time: DateTime<Utc>,
    pub shipment_id: String,
    pub warehouse_id: String,
    pub destination_region: String,
    pub sku: String,
    pub quantity: i64,
    pub carrier: String,
    pub status: ShipmentStatus,
    #[serde(
        serialize_with = "crate::time::serialize_rfc3339",
        deserialize_with = "crate::time::deserialize"
    )]
    pub promised_time: DateTime<Utc>,
}

/// Telemetry, a state change or an inspection scan of one device
/// (`equipment` topic, keyed by `device_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquipmentEvent {
    #[serde(
        serialize_with = "crate::time::serialize_epoch_ms",
        deserialize_with = "crate::time::deserialize"
    )]
    pub event_time: DateTime<Utc>,
    pub device_id: String,
    pub plant_id: String,
    pub line_id: String,
    pub kind: EquipmentKind,
    pub state: MachineState,
    pub temperature_c: Option<f64>,
    pub vibration_mm_s: Option<f64>,
    pub fault_code: Option<String>,
    pub inspector: Option<String>,
    pub inspection: Option<Inspection>,
}
