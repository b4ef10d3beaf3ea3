//! The bottom of the kpiflow crate graph: the four event streams, their Arrow
//! schemas and serde types, the event-time encoding they share, and what
//! flows between crates: source batches, dead letters, sink rows, snapshots, checkpoints.
//!
//! Nothing here knows Kafka, DataFusion, files or HTTP. Every other crate
//! takes stream names and schemas from here so that the simulator, the
//! decoders and the SQL tables can never disagree about a field.

pub mod checkpoint;
pub mod event;
pub mod failpoint;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod stream;
pub mod time;

pub use checkpoint::{Checkpoint, CheckpointStore, SourcePosition};
pub use event::{
    Channel, EquipmentEvent, EquipmentKind, Inspection, LogisticsEvent, MachineState,
    ProductionEvent, SaleKind, SalesEvent, ShipmentStatus,
};
pub use sink::{BoxError, Emit, Epoch, Prepared, Sink, SinkError, ViewRows};
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, Snapshot};
pub use source::{DeadLetter, DeadLetterKind, PartitionProgress, SourceBatch};
pub use stream::{Stream, UnknownStream};
pub use time::TimeBounds;
