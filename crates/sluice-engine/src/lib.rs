//! The sync engine: plan (diff the model against the snapshot), deliver (batches, retries),
//! commit (snapshot entries only for records the destination confirmed).

pub mod delivery;
mod driver;
mod fingerprint;
mod planner;
mod run;
mod spill;

pub use driver::deliver;
pub use fingerprint::{key_hash, RowHasher};
pub use planner::{plan, Plan, PlanCounts};
pub use run::{run_sync, RunReport};

use std::path::PathBuf;

use sluice_core::{Destination, DestinationError, ModelQuery, Source, SourceError, SyncMode};
use sluice_state::{StateError, StateStore};

/// Everything one sync needs, resolved from the project.
pub struct SyncJob<'a> {
    pub sync: &'a str,
    pub model: &'a str,
    pub mode: SyncMode,
    pub primary_key: &'a str,
    /// Destination field → model column; `None` sends every column under its own name.
    pub mapping: Option<&'a [(String, String)]>,
    /// The destination object, for tools that have several.
    pub object: Option<&'a str>,
    /// Destination field that identifies records in the tool, and its model column.
    pub match_on: Option<(&'a str, &'a str)>,
    /// Links to other objects: (object, field of that object, model column).
    pub associations: &'a [(String, String, String)],
    pub query: &'a ModelQuery,
    pub source: &'a dyn Source,
    pub destination: &'a dyn Destination,
    pub store: &'a dyn StateStore,
    /// Where planned changes are spilled during a run (removed when the run ends).
    pub spill_dir: PathBuf,
    /// Rows per source batch.
    pub batch_rows: usize,
    /// Keep each request and response of the run (bodies redacted), for `runs show --requests`.
    pub debug_requests: bool,
}

impl SyncJob<'_> {
    /// What the sync's snapshot describes: the destination, and the object written to when the
    /// sync names one (another HubSpot object, another ad audience). When it changes, the
    /// snapshot no longer says what the target holds, and every record is sent again.
    pub fn target_identity(&self) -> String {
        match self.object {
            Some(object) => format!("{} object {object}", self.destination.identity()),
            None => self.destination.identity(),
        }
    }
}

/// Reports progress to whoever is watching (a progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// The plan is known: this many changes will be delivered.
    fn planned(&self, _counts: &PlanCounts) {}
    /// Model rows read so far.
    fn scanned(&self, _rows: u64) {}
    /// Changes delivered (with any outcome) so far in this run.
    fn delivered(&self, _changes: u64) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Why a plan or a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the model failed.
    #[error("model `{model}` ({source_name}): {error}")]
    Source { model: String, source_name: String, error: SourceError },
    /// The model's rows break a rule (missing columns, duplicate or null keys).
    #[error("model `{model}`: {message}")]
    Model { model: String, message: String },
    /// The destination refused the run as a whole (auth, configuration, outage).
    #[error("destination {destination}: {error}")]
    Destination { destination: String, error: DestinationError },
    /// The state store failed; nothing was committed past the last confirmed batch.
    #[error(transparent)]
    State(#[from] StateError),
    /// A local file (the spill) failed.
    #[error("{0}")]
    Io(String),
}
