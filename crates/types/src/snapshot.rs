//! An engine's state as named record batches, with the format version that
//! wrote it. The engine builds and validates them; storage writes them to
//! files (Arrow IPC) without looking inside.

use arrow_array::RecordBatch;

/// Version of the snapshot layout this build writes and reads. Raised when
/// the meaning of an entry changes; a snapshot of another version is refused.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Engine state: named record batches (see the engine's `snapshot`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub format_version: u32,
    pub entries: Vec<(String, RecordBatch)>,
}

impl Snapshot {
    /// An empty snapshot of this build's format.
    pub fn new() -> Snapshot {
        Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            entries: Vec::new(),
        }
    }

    /// The batches of the entry `name`, in order.
    pub fn entry<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RecordBatch> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, b)| b)
    }

    /// Bytes held by the batches.
    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, b)| b.get_array_memory_size())
            .sum()
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new()
    }
}
