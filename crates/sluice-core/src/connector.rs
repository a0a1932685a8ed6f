//! The Source and Destination contracts every connector implements.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use async_trait::async_trait;
use futures::Stream;

use crate::change::{ChangeBatch, ErrorClass, Outcome, SyncMode};

/// What to read from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelQuery {
    /// A SQL query in the source's dialect.
    Sql(String),
    /// A table or view, possibly schema-qualified (`public.customers`).
    Table(String),
}

/// How to read.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Rows per Arrow record batch.
    pub batch_rows: usize,
    /// Stop after this many rows (previews).
    pub limit: Option<usize>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { batch_rows: 8192, limit: None }
    }
}

/// A failure while reading a source. Messages name the source and the cause.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be reached.
    #[error("cannot connect to {target}: {cause}")]
    Connect { target: String, cause: String },
    /// The query failed in the source.
    #[error("query failed on {target}: {cause}")]
    Query { target: String, cause: String },
    /// The data cannot be represented (unsupported type, inconsistent column types).
    #[error("{0}")]
    Data(String),
}

/// A stream of Arrow record batches sharing one schema.
pub struct RecordBatchStream {
    pub schema: SchemaRef,
    pub batches: Pin<Box<dyn Stream<Item = Result<RecordBatch, SourceError>> + Send>>,
}

/// A warehouse or database that models are read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// A human description such as `postgres 127.0.0.1:5432/test`, without secrets.
    fn describe(&self) -> String;

    /// Connects and runs a trivial query.
    async fn check(&self) -> Result<(), SourceError>;

    /// Streams the model's rows as Arrow record batches.
    async fn scan(&self, query: &ModelQuery, options: ScanOptions) -> Result<RecordBatchStream, SourceError>;
}

/// A failure of a whole destination request, classified for the delivery driver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DestinationError {
    pub class: ErrorClass,
    pub message: String,
    /// When the tool said to come back (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl DestinationError {
    /// An error of the given class.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> DestinationError {
        DestinationError { class, message: message.into(), retry_after: None }
    }

    /// A configuration error: the run stops.
    pub fn config(message: impl Into<String>) -> DestinationError {
        DestinationError::new(ErrorClass::Config, message)
    }

    /// A transient error: retried with backoff.
    pub fn transient(message: impl Into<String>) -> DestinationError {
        DestinationError::new(ErrorClass::Transient, message)
    }
}

/// How the delivery driver retries a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt for transient failures. Rate-limited responses do
    /// not count against this budget.
    pub max_retries: u32,
    /// The first backoff; it doubles each retry, with full jitter.
    pub initial_backoff: Duration,
    /// The longest backoff, and the longest `Retry-After` honoured.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): full jitter over an exponential
    /// ceiling, or the tool's own `Retry-After` when it gave one.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        let ceiling = self.initial_backoff.saturating_mul(1u32 << retry.min(20)).min(self.max_backoff);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// One object of a destination, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectDescription {
    pub name: String,
    /// Known fields; with `open_schema`, fields not listed are accepted too.
    pub fields: Vec<FieldDescription>,
    /// Whether any field name is accepted (files, webhooks, tables Sluice will create).
    pub open_schema: bool,
    /// The sync modes the object supports.
    pub modes: Vec<SyncMode>,
    /// Something the user should know, such as "the table will be created".
    pub note: Option<String>,
}

/// One field of a destination object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldDescription {
    pub name: String,
    /// The tool's own type name.
    pub field_type: String,
    /// Whether the field can identify records (`match_on`, the key of an upsert).
    pub can_match_on: bool,
    /// Whether the tool requires a value.
    pub required: bool,
}

/// A documented request quota: at most `requests` every `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestQuota {
    pub requests: u32,
    pub per: Duration,
}

/// How hard the delivery driver may push one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLimits {
    /// Quotas shared by every sync using the same account; all must allow a request.
    pub quotas: Vec<RequestQuota>,
    /// The most requests in flight; adaptive concurrency starts at 1 and stays at or below it.
    pub max_concurrency: usize,
    /// When the tool refuses a whole batch for good, bisect it to find the records at fault
    /// and apply the rest. Off where a batch refusal is meant for the batch (webhooks).
    pub split_rejected_batches: bool,
}

impl Default for DeliveryLimits {
    fn default() -> Self {
        DeliveryLimits { quotas: Vec::new(), max_concurrency: 1, split_rejected_batches: false }
    }
}

/// A destination field and the Arrow type of the model column feeding it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub data_type: DataType,
}

/// What a sync will write, known once the model's schema is known.
#[derive(Debug, Clone)]
pub struct Target {
    pub sync: String,
    pub mode: SyncMode,
    /// Destination fields in mapping order.
    pub fields: Vec<FieldSpec>,
    /// The destination field fed by the model's primary key, if the mapping includes it.
    pub key_field: Option<String>,
    /// The destination object (`contacts`, `Contact`…) for tools that have several.
    pub object: Option<String>,
    /// The destination field that identifies records in the tool (`match_on`), if set.
    pub match_field: Option<String>,
    /// Records of other objects each record is linked to (`associate:`).
    pub associations: Vec<AssociationTarget>,
    /// Changes this run will send, so a destination can pick its transport (Salesforce's
    /// Bulk API for large runs).
    pub planned_changes: u64,
    /// The run starts from an empty snapshot (first run, `sluice reset`, or a changed destination
    /// or object): every record of the model is planned as an insert, and nothing is known of what
    /// the tool held before. A destination may then replace the tool's whole list instead of
    /// adding to it (Meta's `usersreplace`).
    pub full_sync: bool,
}

/// "Link each record to the `object` record whose `field` equals the value of batch field
/// `value_field`" (for example contacts → the company with that domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationTarget {
    pub object: String,
    pub field: String,
    /// The batch field carrying the value; it is not a property of the record itself.
    pub value_field: String,
}

impl AssociationTarget {
    /// The batch field name that carries the value of an association to `object` by `field`.
    pub fn value_field_name(object: &str, field: &str) -> String {
        format!("{ASSOCIATION_FIELD_PREFIX}{object}.{field}")
    }
}

/// Batch fields starting with this carry association values, not record properties.
pub const ASSOCIATION_FIELD_PREFIX: &str = "@associate:";

/// Per-request context passed to [`Destination::write`].
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub sync: String,
    pub run_id: i64,
    pub mode: SyncMode,
    /// The destination object, for tools that have several.
    pub object: Option<String>,
    /// Where to record each request and response, when the run debugs requests.
    pub capture: Option<CaptureSink>,
    /// Where to report the tool's rate-limit headers, so every sync of the account slows down.
    pub rate: Option<RateFeedback>,
}

/// Receives a tool's rate-limit headers: requests remaining in the current window and when
/// the window resets. With none remaining, every sync of the account waits for the reset.
#[derive(Clone)]
pub struct RateFeedback(pub std::sync::Arc<dyn Fn(u64, Duration) + Send + Sync>);

impl RateFeedback {
    /// Reports `remaining` requests until the window resets in `resets_in`.
    pub fn report(&self, remaining: u64, resets_in: Duration) {
        (self.0)(remaining, resets_in)
    }
}

impl fmt::Debug for RateFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RateFeedback")
    }
}

/// One request and its response, kept for debugging (`--debug-requests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCapture {
    pub method: String,
    /// Without credentials or query string.
    pub url: String,
    /// `None` when no response came (network error, timeout).
    pub status: Option<u16>,
    /// Bodies with secrets redacted, cut to [`MAX_CAPTURED_BODY`] bytes.
    pub request_body: String,
    pub response_body: String,
    pub duration_ms: u64,
}

/// The longest body kept in a capture.
pub const MAX_CAPTURED_BODY: usize = 64 * 1024;

impl RequestCapture {
    /// Cuts a body to [`MAX_CAPTURED_BODY`] bytes on a character boundary.
    pub fn clip(body: &str) -> String {
        if body.len() <= MAX_CAPTURED_BODY {
            return body.to_string();
        }
        let mut end = MAX_CAPTURED_BODY;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &body[..end], body.len())
    }
}

/// Collects request captures for the run.
#[derive(Clone)]
pub struct CaptureSink(pub std::sync::Arc<std::sync::Mutex<Vec<RequestCapture>>>);

impl CaptureSink {
    /// Records one request.
    pub fn record(&self, capture: RequestCapture) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(capture);
    }

    /// Takes what was recorded so far.
    pub fn drain(&self) -> Vec<RequestCapture> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaptureSink")
    }
}

/// A tool that changes are delivered to.
#[async_trait]
pub trait Destination: Send + Sync {
    /// A human description such as `webhook http://host/in`, without secrets.
    fn describe(&self) -> String;

    /// What the sync's snapshot is bound to: when this changes, the snapshot no longer
    /// describes what the destination holds.
    fn identity(&self) -> String;

    /// Records per request.
    fn batch_size(&self) -> usize;

    /// Records per request for this run; by default [`Destination::batch_size`].
    fn batch_size_for(&self, _target: &Target) -> usize {
        self.batch_size()
    }

    /// How failed requests are retried.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Request budgets, concurrency ceiling and split-retry, as the tool documents them.
    fn delivery_limits(&self) -> DeliveryLimits {
        DeliveryLimits::default()
    }

    /// Lists the destination's objects (all, or the one named), with their fields, which fields
    /// can serve as the match key, and the modes each object supports.
    async fn discover(&self, _object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        Err(DestinationError::config(format!("{} cannot list its objects and fields", self.describe())))
    }

    /// Whether changes should carry the record's destination id from the snapshot (tools
    /// that update or delete by their own ids).
    fn wants_destination_ids(&self) -> bool {
        false
    }

    /// Whether syncs may name an `object` of this destination.
    fn accepts_object(&self) -> bool {
        false
    }

    /// Whether syncs may link records to other objects (`associate:`).
    fn accepts_associations(&self) -> bool {
        false
    }

    /// Whether syncs may set `match_on` for this destination.
    fn accepts_match_on(&self) -> bool {
        false
    }

    /// Syncs whose destinations share this key share one request budget (one tool account).
    fn account_key(&self) -> String {
        self.identity()
    }

    /// Connects and verifies access without writing.
    async fn check(&self) -> Result<(), DestinationError>;

    /// Validates the target before anything is sent (and creates what is missing, where
    /// the destination does that). Errors here stop the run before delivery.
    async fn prepare(&self, _target: &Target) -> Result<(), DestinationError> {
        Ok(())
    }

    /// Applies a batch and returns one outcome per change, in order. `Err` means the
    /// request as a whole failed and says why.
    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError>;
}

impl fmt::Debug for dyn Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The single, schemaless object of destinations that take any field (files, webhooks).
pub fn open_records_object() -> ObjectDescription {
    ObjectDescription {
        name: "records".into(),
        fields: Vec::new(),
        open_schema: true,
        modes: vec![SyncMode::Insert, SyncMode::Update, SyncMode::Upsert, SyncMode::Mirror, SyncMode::Audience],
        note: Some("any field name is accepted; changes carry the model's primary key".into()),
    }
}

/// Where destinations keep credentials they obtain at run time (refreshed OAuth tokens).
/// The state store implements it, sealed with the project's key.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The stored value, if any.
    async fn load(&self, name: &str) -> Result<Option<String>, String>;
    /// Stores or replaces a value.
    async fn save(&self, name: &str, value: &str) -> Result<(), String>;
}
