//! Types and traits shared by every Sluice crate: values, changes, outcomes and the connector contracts.

pub mod change;
pub mod connector;
pub mod names;
pub mod value;

pub use change::{Change, ChangeBatch, ChangeOp, ErrorClass, Fingerprint, Outcome, OutcomeStatus, SyncMode};
pub use connector::{
    open_records_object, AssociationTarget, CaptureSink, CredentialStore, DeliveryLimits, Destination,
    DestinationError, FieldDescription, FieldSpec, ModelQuery, ObjectDescription, RateFeedback, RecordBatchStream,
    RequestCapture, RequestQuota, RetryPolicy, ScanOptions, Source, SourceError, Target, WriteContext,
    ASSOCIATION_FIELD_PREFIX, MAX_CAPTURED_BODY,
};
pub use value::{value_at, LogicalType, Value, LOGICAL_TYPE_KEY};
