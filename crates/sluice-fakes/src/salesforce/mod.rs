//! A faithful, in-process fake of the Salesforce REST API (OAuth, describe, sObject Collections and
//! Bulk API 2.0 ingest) for destination tests.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_fakes::salesforce::{SalesforceFake, SalesforceOptions};
//! let fake = SalesforceFake::start(SalesforceOptions::default()).await;
//! let base = fake.base_url(); // login endpoint *and* instance: "http://127.0.0.1:PORT"
//! // ... POST {base}/services/oauth2/token, then call {instance_url}/services/data/v61.0/... ...
//! assert_eq!(fake.invalid_requests(), 0);
//! # }
//! ```
//!
//! # Endpoints (`{v}` is [`API_VERSION`], `61.0`)
//!
//! | request | answers |
//! |---|---|
//! | `POST /services/oauth2/token` (form, `grant_type=refresh_token` or JWT bearer) | 200 token, or 400 `{error, error_description}` |
//! | `GET /services/data/v{v}/sobjects/{SObject}/describe` | 200 describe subset, or 404 `NOT_FOUND` |
//! | `POST /services/data/v{v}/composite/sobjects` | 200 `[SaveResult]` (insert) |
//! | `PATCH /services/data/v{v}/composite/sobjects` | 200 `[SaveResult]` (update by `Id`) |
//! | `PATCH /services/data/v{v}/composite/sobjects/{SObject}/{ExternalIdField}` | 200 `[UpsertResult]` with `created` |
//! | `DELETE /services/data/v{v}/composite/sobjects?ids=..&allOrNone=..` | 200 `[DeleteResult]` |
//! | `POST /services/data/v{v}/jobs/ingest` | 200 job info, `state: Open` |
//! | `PUT /services/data/v{v}/jobs/ingest/{id}/batches` (`text/csv`) | 201 |
//! | `PATCH /services/data/v{v}/jobs/ingest/{id}` (`{"state":"UploadComplete"}` or `Aborted`) | 200 job info |
//! | `GET /services/data/v{v}/jobs/ingest/{id}` | 200 job info: `InProgress`, then `JobComplete` / `Failed` |
//! | `GET /services/data/v{v}/jobs/ingest/{id}/successfulResults/` | CSV `sf__Id,sf__Created,<columns>` |
//! | `GET /services/data/v{v}/jobs/ingest/{id}/failedResults/` | CSV `sf__Id,sf__Error,<columns>` |
//!
//! Every `/services/data/...` request needs `Authorization: Bearer <access token>`; otherwise 401
//! `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`. REST errors use
//! Salesforce's array shape `[{"message", "errorCode", "fields"?}]`; per-record errors use
//! `{"statusCode", "message", "fields"}` inside each result.
//!
//! Request bodies are checked explicitly against the documented shapes (there is no OpenAPI description
//! of these APIs): a body that does not match is answered 400 (`JSON_PARSER_ERROR`, `INVALIDJOB`, ...)
//! and logged with `body_valid: false`, so a test can end with `assert_eq!(fake.invalid_requests(), 0)`.
//! Record-level problems (a missing `LastName`, a bad email, ...) are *not* invalid bodies.
//!
//! # Behaviour modelled on Salesforce's docs
//!
//! * Collections: at most 200 records (ids for delete), else 400 `EXCEEDED_ID_LIMIT`, nothing written.
//!   Results come back in request order. Per-record errors: `REQUIRED_FIELD_MISSING` (`LastName` on
//!   insert, or nulled), `INVALID_EMAIL_ADDRESS`, `STRING_TOO_LONG`, `DUPLICATE_VALUE` (unique fields,
//!   and an external id repeated within one upsert), `MISSING_ARGUMENT` (no `Id` on update / no external
//!   id value on upsert), `MALFORMED_ID`, `INVALID_CROSS_REFERENCE_KEY` (unknown id), `ENTITY_IS_DELETED`.
//!   With `allOrNone: true` any failure rolls everything back and the records that would have succeeded
//!   answer `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
//! * Unknown fields and values of the wrong JSON type (`"abc"` for a double, `"yes"` for a boolean, a bad
//!   date) are **request-level** errors in the REST API, because Salesforce fails while deserialising
//!   the body: 400 `[{"errorCode":"INVALID_FIELD","message":"No such column 'X' on sobject of type
//!   Contact"}]` or 400 `JSON_PARSER_ERROR`, nothing written. Numeric strings for numbers are accepted.
//! * Bulk API 2.0: empty CSV values leave a field unchanged (not set on insert), `#N/A` sets it to null.
//!   Rows are applied when the job completes (after [`SalesforceOptions::bulk_poll_until_complete`]
//!   `InProgress` polls), with the same per-record rules; a value of the wrong type fails only its row
//!   (`INVALID_TYPE_ON_FIELD_IN_RECORD`). A header naming an unknown field, or data whose line ending
//!   does not match the job's `lineEnding`, makes the job `Failed` with an `errorMessage`.
//!   Result CSVs quote every value; `sf__Error` is `CODE:message`. Row order follows the upload.
//! * Ids are 18-character Salesforce ids (15-character body plus the case-safe checksum suffix) with
//!   the object's key prefix; 15-character ids are accepted on input.
//! * Faults ([`Fault`]) and token expiry apply to data requests only, never to the token endpoint.
//!
//! # Knobs ([`SalesforceOptions`])
//!
//! * `oauth`: the connected app ([`ConnectedApp`]): client id/secret, refresh token and username.
//! * `expire_token_after`: an access token answers N data requests, then 401 `INVALID_SESSION_ID`
//!   until a new one is obtained from the token endpoint.
//! * `faults`: a queue consumed one per data request: an error status (5xx bodies as Salesforce sends
//!   them), `RequestLimit` (403 `REQUEST_LIMIT_EXCEEDED`), or a delay after which the request is served.
//! * `sobjects`: the schema ([`SObjectDef`], [`FieldDef`]); Contact and Account by default.
//! * `bulk_poll_until_complete`: `GET` polls answering `InProgress` before a closed job completes.
//!
//! # Assertions
//!
//! [`SalesforceFake::records`], [`SalesforceFake::find`], [`SalesforceFake::requests`],
//! [`SalesforceFake::invalid_requests`], [`SalesforceFake::token_requests`].

mod bulk;
mod records;
mod server;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

/// The REST API version the fake serves (`/services/data/v61.0/...`).
pub const API_VERSION: &str = "61.0";

/// Maximum number of records (or ids) in one sObject Collections request.
pub const COLLECTION_LIMIT: usize = 200;

/// Options of a [`SalesforceFake`]; see the module docs for what each knob does.
#[derive(Debug, Clone)]
pub struct SalesforceOptions {
    /// The connected app and integration user accepted by the token endpoint.
    pub oauth: ConnectedApp,
    /// Number of data requests an access token serves before it expires (401 `INVALID_SESSION_ID`).
    pub expire_token_after: Option<u32>,
    /// Faults answered to the first data requests, one per request.
    pub faults: Vec<Fault>,
    /// The schema: sObjects and their fields.
    pub sobjects: Vec<SObjectDef>,
    /// Number of job polls answering `InProgress` before a closed ingest job completes.
    pub bulk_poll_until_complete: u32,
}

impl Default for SalesforceOptions {
    fn default() -> Self {
        Self {
            oauth: ConnectedApp::default(),
            expire_token_after: None,
            faults: Vec::new(),
            sobjects: vec![SObjectDef::contact(), SObjectDef::account()],
            bulk_poll_until_complete: 1,
        }
    }
}

/// A connected app and the user it logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    /// Consumer key (`client_id`, and `iss` of JWT assertions).
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: String,
    /// Refresh token accepted by `grant_type=refresh_token`.
    pub refresh_token: String,
    /// Username (`sub` of JWT assertions).
    pub username: String,
}

impl Default for ConnectedApp {
    fn default() -> Self {
        Self {
            client_id: "fake-client-id".to_owned(),
            client_secret: "fake-client-secret".to_owned(),
            refresh_token: "fake-refresh-token".to_owned(),
            username: "integration@example.com".to_owned(),
        }
    }
}

/// A fault answered instead of (or before) the normal response of a data request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An error status such as 500 or 503.
    Status(u16),
    /// 403 `REQUEST_LIMIT_EXCEEDED` (the org's API request limit).
    RequestLimit,
    /// Wait this long, then serve the request normally (to make clients time out).
    Delay(Duration),
}

/// An sObject and its fields, as served by describe.
#[derive(Debug, Clone)]
pub struct SObjectDef {
    /// API name, e.g. `Contact`.
    pub name: String,
    /// Label, e.g. `Contact`.
    pub label: String,
    /// Three-character id prefix, e.g. `003`.
    pub key_prefix: String,
    /// Fields, including `Id`.
    pub fields: Vec<FieldDef>,
}

impl SObjectDef {
    /// An sObject with an `Id` field plus `fields`.
    pub fn new(name: &str, key_prefix: &str, fields: Vec<FieldDef>) -> Self {
        let mut all = vec![FieldDef::id()];
        all.extend(fields);
        Self {
            name: name.to_owned(),
            label: name.trim_end_matches("__c").to_owned(),
            key_prefix: key_prefix.to_owned(),
            fields: all,
        }
    }

    /// Contact (`003`): FirstName, LastName (required), Email, Phone, Birthdate, Customer_Id__c
    /// (external id), LTV__c (currency), VIP__c (boolean), AccountId (reference to Account).
    pub fn contact() -> Self {
        Self::new(
            "Contact",
            "003",
            vec![
                FieldDef::new("FirstName", "First Name", "string", 40),
                FieldDef::new("LastName", "Last Name", "string", 80).required(),
                FieldDef::new("Email", "Email", "email", 80).id_lookup(),
                FieldDef::new("Phone", "Business Phone", "phone", 40),
                FieldDef::new("Birthdate", "Birthdate", "date", 0),
                FieldDef::new("Customer_Id__c", "Customer Id", "string", 64).external_id().unique(),
                FieldDef::new("LTV__c", "LTV", "currency", 0),
                FieldDef::new("VIP__c", "VIP", "boolean", 0).not_nillable(),
                FieldDef::new("AccountId", "Account ID", "reference", 18).references("Account"),
            ],
        )
    }

    /// Account (`001`): Name (required), Website, External_Key__c (external id).
    pub fn account() -> Self {
        Self::new(
            "Account",
            "001",
            vec![
                FieldDef::new("Name", "Account Name", "string", 255).required(),
                FieldDef::new("Website", "Website", "url", 255),
                FieldDef::new("External_Key__c", "External Key", "string", 255).external_id(),
            ],
        )
    }

    /// The field with this API name (exact, then case-insensitive as Salesforce matches names).
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .or_else(|| self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
    }
}

/// One field of an sObject (a subset of describe's field properties).
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name.
    pub name: String,
    /// Label, used in error messages.
    pub label: String,
    /// Describe type: `id`, `string`, `email`, `phone`, `url`, `date`, `datetime`, `double`,
    /// `currency`, `int`, `boolean`, `reference`, `picklist`, `textarea`.
    pub type_: String,
    /// Maximum length of text values (0 for non-text types).
    pub length: u32,
    /// Whether the field is an external id (usable for upsert).
    pub external_id: bool,
    /// Whether the field can identify a record.
    pub id_lookup: bool,
    /// Whether values are unique.
    pub unique: bool,
    /// Whether the field may be null; non-nillable, non-defaulted fields are required on create.
    pub nillable: bool,
    /// Whether the field can be set on create.
    pub createable: bool,
    /// Whether the field can be updated.
    pub updateable: bool,
    /// Whether Salesforce supplies a value on create.
    pub defaulted_on_create: bool,
    /// Target sObjects of a reference field.
    pub reference_to: Vec<String>,
}

impl FieldDef {
    /// A nillable, createable, updateable field.
    pub fn new(name: &str, label: &str, type_: &str, length: u32) -> Self {
        Self {
            name: name.to_owned(),
            label: label.to_owned(),
            type_: type_.to_owned(),
            length,
            external_id: false,
            id_lookup: false,
            unique: false,
            nillable: true,
            createable: true,
            updateable: true,
            defaulted_on_create: false,
            reference_to: Vec::new(),
        }
    }

    /// The `Id` field every sObject has.
    pub fn id() -> Self {
        Self {
            id_lookup: true,
            nillable: false,
            createable: false,
            updateable: false,
            defaulted_on_create: true,
            ..Self::new("Id", "Record ID", "id", 18)
        }
    }

    /// Required on create: not nillable and not defaulted.
    pub fn required(mut self) -> Self {
        self.nillable = false;
        self.id_lookup = self.id_lookup || self.name == "Name";
        self
    }

    /// Not nillable but defaulted on create (like checkboxes, which default to false).
    pub fn not_nillable(mut self) -> Self {
        self.nillable = false;
        self.defaulted_on_create = true;
        self
    }

    /// Marks the field as an external id (which Salesforce also makes an id lookup).
    pub fn external_id(mut self) -> Self {
        self.external_id = true;
        self.id_lookup = true;
        self
    }

    /// Marks the field as usable to look records up.
    pub fn id_lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }

    /// Marks values as unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Makes it a reference to `sobject`.
    pub fn references(mut self, sobject: &str) -> Self {
        self.reference_to.push(sobject.to_owned());
        self
    }

    /// Whether values are text with a maximum length.
    pub(crate) fn is_text(&self) -> bool {
        matches!(self.type_.as_str(), "string" | "email" | "phone" | "url" | "textarea" | "picklist")
    }

    /// Required on create.
    pub(crate) fn is_required(&self) -> bool {
        !self.nillable && !self.defaulted_on_create && self.createable
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct SfRecord {
    /// 18-character record id.
    pub id: String,
    /// Non-null field values by API name (nulled fields are removed); `Id` is not repeated here.
    pub fields: BTreeMap<String, Value>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Whether the body matched the documented shape (true for requests that carry no body).
    pub body_valid: bool,
    /// Why the body did not match, if it did not.
    pub validation_errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub(crate) uses: u32,
    pub(crate) expired: bool,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) options: SalesforceOptions,
    /// Records per sObject name, by id, in creation order of ids.
    pub(crate) records: BTreeMap<String, BTreeMap<String, SfRecord>>,
    pub(crate) deleted: HashSet<String>,
    pub(crate) jobs: HashMap<String, bulk::Job>,
    pub(crate) requests: Vec<LoggedRequest>,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) tokens: HashMap<String, AccessToken>,
    pub(crate) token_requests: usize,
    pub(crate) next_id: u64,
    pub(crate) next_token: u64,
    pub(crate) next_job: u64,
}

impl State {
    fn new(options: SalesforceOptions) -> Self {
        let records = options.sobjects.iter().map(|s| (s.name.clone(), BTreeMap::new())).collect();
        Self {
            records,
            deleted: HashSet::new(),
            jobs: HashMap::new(),
            requests: Vec::new(),
            faults: options.faults.iter().cloned().collect(),
            options,
            tokens: HashMap::new(),
            token_requests: 0,
            next_id: 1,
            next_token: 1,
            next_job: 1,
        }
    }

    /// The sObject with this name (case-insensitive, as Salesforce resolves names).
    pub(crate) fn sobject(&self, name: &str) -> Option<SObjectDef> {
        self.options.sobjects.iter().find(|s| s.name.eq_ignore_ascii_case(name)).cloned()
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not make every later assertion panic too.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake Salesforce org, stopped when dropped.
pub struct SalesforceFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl SalesforceFake {
    /// Starts the fake on 127.0.0.1 with a random port.
    ///
    /// Panics if no local port can be bound: a test cannot proceed without its fake.
    pub async fn start(options: SalesforceOptions) -> SalesforceFake {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the Salesforce fake");
        let addr = listener.local_addr().expect("local address of the Salesforce fake");
        let shared: Shared = Arc::new(Mutex::new(State::new(options)));
        let app = server::router(shared.clone(), format!("http://{addr}"));
        let task = tokio::spawn(async move {
            // An accept error ends the fake; the test then sees connection errors.
            let _ = axum::serve(listener, app).await;
        });
        SalesforceFake { addr, shared, task }
    }

    /// Base URL of both the login endpoint and the instance (`instance_url`), e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stored records of an sObject, ordered by id (which is creation order).
    pub fn records(&self, sobject: &str) -> Vec<SfRecord> {
        let state = lock(&self.shared);
        let Some(def) = state.sobject(sobject) else { return Vec::new() };
        state.records.get(&def.name).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The record whose `field` equals `value` (`Id` accepted; emails compared case-insensitively).
    pub fn find(&self, sobject: &str, field: &str, value: &str) -> Option<SfRecord> {
        let state = lock(&self.shared);
        let def = state.sobject(sobject)?;
        records::find_by(&state, &def, field, value).and_then(|id| state.records.get(&def.name)?.get(&id).cloned())
    }

    /// A copy of the request log (token requests included).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Number of requests whose body did not match the documented shape.
    pub fn invalid_requests(&self) -> usize {
        lock(&self.shared).requests.iter().filter(|r| !r.body_valid).count()
    }

    /// Number of requests to `POST /services/oauth2/token`, successful or not.
    pub fn token_requests(&self) -> usize {
        lock(&self.shared).token_requests
    }

    /// Queues a fault for the next data request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared).faults.push_back(fault);
    }

    /// Expires every access token issued so far; the next data request answers 401.
    pub fn expire_access_tokens(&self) {
        for token in lock(&self.shared).tokens.values_mut() {
            token.expired = true;
        }
    }
}

impl Drop for SalesforceFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
