//! The bottom of the kpiflow crate graph: the four event streams, their Arrow
//! schemas and serde types, and the event-time encoding they share.
//!
//! Nothing here knows Kafka, DataFusion, files or HTTP. Every other crate
//! takes stream names and schemas from here so that the simulator, the
//! decoders and the SQL tables can never disagree about a field.

pub mod event;
pub mod source;
pub mod stream;
pub mod time;

pub use event::{
    Channel, EquipmentEvent, EquipmentKind, Inspection, LogisticsEvent, MachineState,
    ProductionEvent, SaleKind, SalesEvent, ShipmentStatus,
};
pub use source::{DeadLetter, DeadLetterKind, PartitionProgress, SourceBatch};
pub use stream::{Stream, UnknownStream};
