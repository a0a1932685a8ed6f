//! Changes computed by the planner and the outcomes destinations report for them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// A 128-bit hash of a record's mapped fields; equal fingerprints mean "nothing to send".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// Big-endian bytes, the form stored in the state store.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Reads the stored form; anything but 16 bytes is treated as "unknown" (zero), which
    /// makes the record look changed and so re-sends it rather than losing it.
    pub fn from_bytes(bytes: &[u8]) -> Fingerprint {
        <[u8; 16]>::try_from(bytes).map(|b| Fingerprint(u128::from_be_bytes(b))).unwrap_or(Fingerprint(0))
    }
}

/// How a sync treats the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Send new records only; changes to records already sent are ignored.
    Insert,
    /// Send changes to records; the destination updates and does not create.
    Update,
    /// Create or update.
    Upsert,
    /// Create, update and delete, so the destination mirrors the model.
    Mirror,
    /// Audience membership: add members who enter, remove members who leave, so a list in the
    /// tool (an ad platform's audience) tracks the audience exactly. Planned like `mirror`.
    Audience,
}

impl SyncMode {
    /// The mode's name as written in project files.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Insert => "insert",
            SyncMode::Update => "update",
            SyncMode::Upsert => "upsert",
            SyncMode::Mirror => "mirror",
            SyncMode::Audience => "audience",
        }
    }

    /// Whether records that left the model are deleted (removed) from the destination.
    pub fn removes_leavers(self) -> bool {
        matches!(self, SyncMode::Mirror | SyncMode::Audience)
    }
}

/// What happens to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
}

impl ChangeOp {
    /// The operation's name as sent to destinations and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<ChangeOp> {
        match text {
            "insert" => Some(ChangeOp::Insert),
            "update" => Some(ChangeOp::Update),
            "delete" => Some(ChangeOp::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for ChangeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to one record. `values` line up with the batch's `fields`; deletes carry none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub op: ChangeOp,
    pub key: String,
    pub fingerprint: Fingerprint,
    pub values: Vec<Value>,
    /// The tool's id for the record, from the snapshot, for destinations that ask for it
    /// ([`crate::Destination::wants_destination_ids`]); deletes by id need it.
    #[serde(default)]
    pub destination_id: Option<String>,
}

/// A batch of changes bound for one destination request.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// Destination field names, in mapping order.
    pub fields: Arc<[String]>,
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    /// The change's fields as a JSON object, destination field → value.
    pub fn fields_json(&self, change: &Change) -> serde_json::Map<String, serde_json::Value> {
        self.fields.iter().zip(&change.values).map(|(name, value)| (name.clone(), value.to_json())).collect()
    }
}

/// The final state of one change in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeStatus {
    /// The destination confirmed the record.
    Applied,
    /// The destination refused the record for good; it is retried next run.
    Rejected,
    /// The record could not be confirmed this run (timeouts, outages); retried next run.
    Retryable,
}

impl OutcomeStatus {
    /// The status's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Applied => "applied",
            OutcomeStatus::Rejected => "rejected",
            OutcomeStatus::Retryable => "retryable",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<OutcomeStatus> {
        match text {
            "applied" => Some(OutcomeStatus::Applied),
            "rejected" => Some(OutcomeStatus::Rejected),
            "retryable" => Some(OutcomeStatus::Retryable),
            _ => None,
        }
    }
}

/// What a destination reports for one change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: OutcomeStatus,
    /// The tool's own message for rejected or retryable records.
    pub message: Option<String>,
    /// The tool's id for the record, when it returns one.
    pub destination_id: Option<String>,
}

impl Outcome {
    /// The destination confirmed the record.
    pub fn applied() -> Outcome {
        Outcome { status: OutcomeStatus::Applied, message: None, destination_id: None }
    }

    /// The destination refused the record, with its reason.
    pub fn rejected(message: impl Into<String>) -> Outcome {
        Outcome { status: OutcomeStatus::Rejected, message: Some(message.into()), destination_id: None }
    }

    /// The record may succeed if sent again.
    pub fn retryable(message: impl Into<String>) -> Outcome {
        Outcome { status: OutcomeStatus::Retryable, message: Some(message.into()), destination_id: None }
    }
}

/// Why a request failed, which decides what the delivery driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Credentials are wrong or expired: stop the run.
    Auth,
    /// The configuration cannot work (missing table, bad URL): stop the run.
    Config,
    /// The tool asked us to slow down: wait and retry without using up the retry budget.
    RateLimited,
    /// A network error, timeout or 5xx: retry with backoff.
    Transient,
    /// The tool refused the whole request for good: reject its records.
    Permanent,
}

impl ErrorClass {
    /// Whether sending again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimited | ErrorClass::Transient)
    }

    /// Whether the whole run must stop.
    pub fn stops_run(self) -> bool {
        matches!(self, ErrorClass::Auth | ErrorClass::Config)
    }
}

/// A hint for when to retry, from a `Retry-After` header or similar.
pub type RetryAfter = Option<Duration>;
