//! State stores: what each sync's destination is known to hold (snapshots), runs, per-record
//! outcomes and per-sync locks. SQLite is the embedded default; Postgres serves several workers.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::{ChangeOp, Fingerprint, OutcomeStatus, RequestCapture};

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod secrets;
pub mod sqlite;

/// A run's id, unique within a state store.
pub type RunId = i64;

/// A failure of the state store itself.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process is running this sync.
    #[error("sync `{sync}` is already running ({holder}); wait for it to finish, or stop that process")]
    Locked { sync: String, holder: String },
    /// The store could not be opened or reached.
    #[error("cannot open the state store {target}: {cause}")]
    Open { target: String, cause: String },
    /// A read or write failed.
    #[error("state store error ({target}): {cause}")]
    Query { target: String, cause: String },
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Every change was applied.
    Succeeded,
    /// The run finished, and some records were rejected or could not be confirmed.
    Partial,
    /// The run stopped early.
    Failed,
}

impl RunStatus {
    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses the stored name; unknown text reads as failed.
    pub fn parse(text: &str) -> RunStatus {
        match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "partial" => RunStatus::Partial,
            _ => RunStatus::Failed,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records applied or not, per kind, in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub rejected: u64,
    pub retryable: u64,
}

impl RunCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &RunCounts) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.rejected += other.rejected;
        self.retryable += other.retryable;
    }

    /// Counts one outcome of one change.
    pub fn count(&mut self, op: ChangeOp, status: OutcomeStatus) {
        match (status, op) {
            (OutcomeStatus::Applied, ChangeOp::Insert) => self.inserted += 1,
            (OutcomeStatus::Applied, ChangeOp::Update) => self.updated += 1,
            (OutcomeStatus::Applied, ChangeOp::Delete) => self.deleted += 1,
            (OutcomeStatus::Rejected, _) => self.rejected += 1,
            (OutcomeStatus::Retryable, _) => self.retryable += 1,
        }
    }
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub sync: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: RunCounts,
    /// Records whose fingerprint had not changed.
    pub unchanged: u64,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

/// The outcome of one change, as stored for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub key: String,
    pub op: ChangeOp,
    pub status: OutcomeStatus,
    pub message: Option<String>,
}

/// What one delivered batch commits, atomically.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// Records the destination confirmed: key → new fingerprint and destination id.
    pub upserts: Vec<(String, Fingerprint, Option<String>)>,
    /// Keys whose deletion the destination confirmed.
    pub deletes: Vec<String>,
    /// One outcome per change of the batch.
    pub outcomes: Vec<OutcomeRecord>,
    /// The batch's contribution to the run's counts.
    pub counts: RunCounts,
}

/// What [`StateStore::start_run`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    pub run_id: RunId,
    /// The destination changed since the last run, so the old snapshot was discarded.
    pub snapshot_reset: bool,
    /// Runs of this sync left `running` by a process that died, now marked failed.
    pub interrupted_runs: u64,
}

/// Proof that this process holds a sync's lock; dropping it releases the lock.
pub trait SyncLock: Send + Sync {}

/// Where a sync's state lives. Both implementations pass one shared test suite.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// A description without secrets, for messages.
    fn describe(&self) -> String;

    /// Takes the sync's lock, or fails with [`StateError::Locked`] naming the holder.
    /// A lock left by a process that died never blocks.
    async fn lock(&self, sync: &str) -> Result<Box<dyn SyncLock>, StateError>;

    /// The destination identity the sync's snapshot belongs to, if any.
    async fn target_identity(&self, sync: &str) -> Result<Option<String>, StateError>;

    /// Records a new run. Call with the lock held. Marks runs left `running` as failed and
    /// discards the snapshot when `target_identity` differs from the stored one.
    async fn start_run(&self, sync: &str, target_identity: &str) -> Result<RunStart, StateError>;

    /// Number of records in the sync's snapshot.
    async fn snapshot_len(&self, sync: &str) -> Result<u64, StateError>;

    /// Calls `visit` with every snapshot entry (key, fingerprint), streaming.
    async fn scan_snapshot(
        &self,
        sync: &str,
        visit: &mut (dyn for<'k> FnMut(&'k str, Fingerprint) + Send),
    ) -> Result<(), StateError>;

    /// The destination ids stored for `keys` (keys without one are left out).
    async fn destination_ids(
        &self,
        sync: &str,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StateError>;

    /// Commits one delivered batch: snapshot changes, outcomes and counts, in one transaction.
    async fn commit(&self, run: RunId, sync: &str, batch: &CommitBatch) -> Result<(), StateError>;

    /// Ends a run with its final status.
    async fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        unchanged: u64,
        error: Option<&str>,
    ) -> Result<(), StateError>;

    /// The latest runs, newest first, of one sync or of all.
    async fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    /// One run.
    async fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError>;

    /// A run's outcomes; applied ones only when `include_applied`. Not-applied come first.
    async fn outcomes(&self, run: RunId, include_applied: bool, limit: usize)
        -> Result<Vec<OutcomeRecord>, StateError>;

    /// Forgets the sync's snapshot so the next run sends everything; returns entries removed.
    async fn reset(&self, sync: &str) -> Result<u64, StateError>;

    /// A stored credential (sealed by [`secrets::SecretBox`]), such as a refreshed OAuth token.
    async fn load_credential(&self, name: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores or replaces a sealed credential.
    async fn save_credential(&self, name: &str, sealed: &[u8]) -> Result<(), StateError>;

    /// Keeps request captures of a run that debugs its requests.
    async fn save_captures(&self, run: RunId, captures: &[RequestCapture]) -> Result<(), StateError>;

    /// A run's request captures, in the order they were made.
    async fn captures(&self, run: RunId) -> Result<Vec<RequestCapture>, StateError>;

    /// Deletes captures made before `before`; returns how many went.
    async fn prune_captures(&self, before: DateTime<Utc>) -> Result<u64, StateError>;
}

/// Who this process is, as written into locks and shown to a user who is refused.
pub fn holder_description(pid: u32, host: &str, since: DateTime<Utc>) -> String {
    format!("held by pid {pid} on {host} since {}", since.format("%Y-%m-%d %H:%M:%S UTC"))
}

/// This machine's name, for lock holders.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
