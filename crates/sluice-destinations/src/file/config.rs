//! File destination settings.

use std::path::PathBuf;

use serde::Deserialize;

/// Records per write (each write ends with an fsync).
pub const DEFAULT_BATCH_SIZE: usize = 10_000;

/// `{ type: file, path: out/contacts.jsonl }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The JSON-lines file to append to, relative to the project directory.
    pub path: PathBuf,
    /// Records per write; default 10,000.
    pub batch_size: Option<usize>,
}
