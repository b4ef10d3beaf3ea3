//! The manifest of a checkpoint: the last object written, with a
//! conditional put, and so the commit point of its epoch. It records the
//! pipeline, the epoch, where each source partition resumes (and so which
//! partitions this worker owned), the engine state object with its size and
//! checksum, and each sink's prepared commit (for the Delta sink, the files
//! to add per table).

use serde::{Deserialize, Serialize};

/// Raised when the manifest's meaning changes; another version is refused.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub pipeline: String,
    pub epoch: u64,
    /// RFC 3339, when it was written.
    pub created_at: String,
    pub state: StateObject,
    pub positions: Vec<Position>,
    pub prepared: Vec<PreparedCommit>,
}

/// The engine's snapshot: its named batches as Arrow IPC files, one after
/// the other in one object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateObject {
    /// Relative to the checkpoint's folder.
    pub file: String,
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
    /// The snapshot format version the engine wrote.
    pub snapshot_format: u32,
    pub entries: Vec<StateEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    pub name: String,
    pub offset: u64,
    pub length: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub stream: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A sink's prepared commit; its payload kept as JSON when it is JSON (the
/// Delta sink's is), as hex otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreparedCommit {
    pub sink: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

impl PreparedCommit {
    pub fn new(sink: &str, payload: &[u8]) -> PreparedCommit {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(json) if !payload.is_empty() => PreparedCommit {
                sink: sink.to_owned(),
                payload: Some(json),
                payload_hex: None,
            },
            _ => PreparedCommit {
                sink: sink.to_owned(),
                payload: None,
                payload_hex: (!payload.is_empty()).then(|| hex(payload)),
            },
        }
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.payload, &self.payload_hex) {
            (Some(json), None) => serde_json::to_vec(json).map_err(|e| e.to_string()),
            (None, Some(hex)) => unhex(hex),
            (None, None) => Ok(Vec::new()),
            (Some(_), Some(_)) => Err(format!("sink `{}` has two payloads", self.sink)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd-length hex payload".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}
