//! A faithful, in-process fake of the HubSpot CRM API for destination tests.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_fakes::hubspot::{HubSpotFake, HubSpotOptions};
//! let fake = HubSpotFake::start(HubSpotOptions::default()).await;
//! let base = fake.base_url(); // "http://127.0.0.1:PORT", use instead of https://api.hubapi.com
//! // ... run the destination against `base` with `Authorization: Bearer pat-na1-fake` ...
//! assert_eq!(fake.invalid_requests(), 0);
//! # }
//! ```
//!
//! # Endpoints
//!
//! | request | answers |
//! |---|---|
//! | `POST /crm/v3/objects/{type}/batch/create` | 201, or 207 / 400 / 409 with per-input errors |
//! | `POST /crm/v3/objects/{type}/batch/update` | 200 (by record id, or by `idProperty`), or 207 / 400 / 404 / 409 |
//! | `POST /crm/v3/objects/{type}/batch/upsert` | 200 with `new: true/false` per result, or 207 / 400 |
//! | `POST /crm/v3/objects/{type}/batch/archive` | 204 |
//! | `POST /crm/v3/objects/{type}/batch/read` | 200, or 207 naming ids not found |
//! | `GET /crm/v3/properties/{type}` | 200 with the property catalogue |
//! | `POST /crm/v4/associations/{from}/{to}/batch/create` | 201, or 207 / 400 |
//! | `POST /crm/v3/associations/{from}/{to}/batch/create` | 201, or 207 / 400 |
//! | `POST /oauth/v1/token` (form-encoded, `grant_type=refresh_token`) | 200 with a new access token, or 400 |
//!
//! `{type}` may be the plural name (`contacts`), the singular (`contact`), the type id (`0-1`) or, for
//! custom objects, any name registered in [`ObjectTypeDef::aliases`].
//!
//! Every request body is checked against HubSpot's OpenAPI description (`specs/hubspot/`, loaded with
//! `include_str!`; `batch/upsert`, absent from that copy, against the schema in `spec.rs` taken from
//! HubSpot's reference docs). A body that does not match is answered 400 `VALIDATION_ERROR` and logged
//! with `body_valid: false`, so a test can end with `assert_eq!(fake.invalid_requests(), 0)`.
//!
//! # Behaviour modelled on HubSpot's docs
//!
//! * More than [`HubSpotOptions::batch_limit`] (100) inputs: 400 `VALIDATION_ERROR`, nothing written.
//! * Unknown, read-only or invalid property values: by default the whole batch fails with 400
//!   `Property values were not valid: [...]` and nothing is written. When **every** input carries a
//!   unique `objectWriteTraceId` (HubSpot's "multi-status errors"), valid inputs are written and the
//!   answer is 207 with `numErrors` and `errors[].context.objectWriteTraceId` naming the failed inputs;
//!   if every input fails it is still a 400.
//! * Duplicate ids in one update/upsert: 400 `Duplicate IDs found in batch input: [..]. IDs must be unique`.
//! * Emails are stored lower-cased and matched case-insensitively, as HubSpot does.
//! * Missing or unknown token: 401 `INVALID_AUTHENTICATION`; expired OAuth token: 401
//!   `EXPIRED_AUTHENTICATION` ("The OAuth token used to make this call expired N second(s) ago.").
//! * Rate limits: `X-HubSpot-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds` on every
//!   authenticated answer, plus `-Daily` and `-Daily-Remaining` for private-app tokens only (HubSpot
//!   omits them for OAuth). Over the limit: 429 `{"errorType":"RATE_LIMIT","policyName":
//!   "TEN_SECONDLY_ROLLING"}` (or `DAILY`) with `Retry-After` in seconds. Requests answered 429 do not
//!   use up the window.
//!
//! # Knobs ([`HubSpotOptions`])
//!
//! * `private_app_tokens`: bearer tokens that never expire (default `["pat-na1-fake"]`).
//! * `oauth`: the OAuth app ([`OAuthApp`]: client id/secret, refresh token, first access token,
//!   `expires_in`). `None` disables OAuth tokens and the token endpoint.
//! * `expire_token_after`: an OAuth access token answers N requests, then every later use gets 401
//!   `EXPIRED_AUTHENTICATION` until the client refreshes through `/oauth/v1/token`, which issues a new
//!   access token (which again lasts N requests). [`HubSpotFake::expire_access_tokens`] expires them now.
//! * `rate_limit`: [`RateLimit`] (`enforce`, `max` per rolling `interval`, `daily`); defaults to
//!   HubSpot's private-app limits for Professional/Enterprise: 190 per 10 s, 1,000,000 per day.
//! * `faults`: a queue of [`Fault`]s consumed one per request, before anything else: 429 with
//!   `Retry-After`, a 5xx status, or a delay (to make clients time out) after which the request is
//!   served normally. More can be queued while running with [`HubSpotFake::inject_fault`].
//! * `object_types`: the property catalogue per object type ([`ObjectTypeDef`], [`PropertyDef`]);
//!   contacts and companies by default, add custom objects with [`HubSpotOptions::with_object_type`].
//! * `reject_values`: extra per-record rules ([`RejectRule`]) making a given property value invalid.
//! * `batch_limit`: maximum inputs per batch request (100).
//!
//! # Where HubSpot's docs and the spec copy disagree (the fake follows the docs)
//!
//! * `associations` on batch-create inputs: required in the copy, optional in the docs.
//! * `properties`/`propertiesWithHistory` on batch/read: required in the copy, optional in the docs.
//! * `batch/upsert`: missing from the copy; schema from the reference docs (see `spec.rs`).
//! * 207 error entries: the copy's `StandardError` requires `errors` and `links`, the docs' example
//!   omits them; the fake sends both, empty. The v4 associations copy types `category` as an object,
//!   the docs as a string; the fake sends a string.
//! * Not documented, so modelled on observed HubSpot answers: the over-100 message
//!   ([`BATCH_LIMIT_MESSAGE`]), `Retry-After` on 429, the token endpoint's error statuses
//!   (`BAD_CLIENT_ID`, `BAD_CLIENT_SECRET`, `BAD_REFRESH_TOKEN`), and the per-property error codes other
//!   than `PROPERTY_DOESNT_EXIST` (`INVALID_EMAIL`, `INVALID_OPTION`, `INVALID_FLOAT`, ...).
//!
//! # Assertions
//!
//! [`HubSpotFake::state`] locks the whole [`HubSpotState`]: stored objects per type (id → properties,
//! `createdAt`/`updatedAt`, archived flag), associations, the request log and [`Counters`]. Shortcuts:
//! [`HubSpotFake::objects`], [`HubSpotFake::find`], [`HubSpotFake::requests`],
//! [`HubSpotFake::invalid_requests`].

mod crm;
mod server;
pub mod spec;

pub use crm::BATCH_LIMIT_MESSAGE;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Private-app token accepted by default.
pub const DEFAULT_PRIVATE_APP_TOKEN: &str = "pat-na1-fake";

/// Options of a [`HubSpotFake`]; see the module docs for what each knob does.
#[derive(Debug, Clone)]
pub struct HubSpotOptions {
    /// Bearer tokens of private apps; they never expire.
    pub private_app_tokens: Vec<String>,
    /// The OAuth app whose access tokens are accepted and refreshed; `None` turns OAuth off.
    pub oauth: Option<OAuthApp>,
    /// Number of requests an OAuth access token serves before it expires.
    pub expire_token_after: Option<u32>,
    /// Burst and daily rate limits.
    pub rate_limit: RateLimit,
    /// Faults answered to the first requests, one per request.
    pub faults: Vec<Fault>,
    /// Property catalogue per object type.
    pub object_types: Vec<ObjectTypeDef>,
    /// Property values rejected as invalid, in addition to the built-in type checks.
    pub reject_values: Vec<RejectRule>,
    /// Maximum number of inputs in one batch request.
    pub batch_limit: usize,
    /// Hub id reported in property error details.
    pub portal_id: u64,
}

impl Default for HubSpotOptions {
    fn default() -> Self {
        Self {
            private_app_tokens: vec![DEFAULT_PRIVATE_APP_TOKEN.to_owned()],
            oauth: Some(OAuthApp::default()),
            expire_token_after: None,
            rate_limit: RateLimit::default(),
            faults: Vec::new(),
            object_types: vec![ObjectTypeDef::contacts(), ObjectTypeDef::companies()],
            reject_values: Vec::new(),
            batch_limit: 100,
            portal_id: 12_345_678,
        }
    }
}

impl HubSpotOptions {
    /// Registers another object type (e.g. a custom object) with its properties.
    pub fn with_object_type(mut self, def: ObjectTypeDef) -> Self {
        self.object_types.push(def);
        self
    }
}

/// An OAuth app: the credentials `/oauth/v1/token` checks and the first access token.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The refresh token HubSpot issued at install; refreshing does not change it.
    pub refresh_token: String,
    /// The access token valid when the fake starts.
    pub access_token: String,
    /// `expires_in` reported by the token endpoint, in seconds.
    pub expires_in: u32,
}

impl Default for OAuthApp {
    fn default() -> Self {
        Self {
            client_id: "fake-client-id".to_owned(),
            client_secret: "fake-client-secret".to_owned(),
            refresh_token: "fake-refresh-token".to_owned(),
            access_token: "fake-access-token-1".to_owned(),
            expires_in: 1800,
        }
    }
}

/// Burst (rolling window) and daily request limits.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Whether requests over the limits are answered 429; headers are sent either way.
    pub enforce: bool,
    /// Requests allowed per rolling `interval`.
    pub max: u32,
    /// Length of the rolling window.
    pub interval: Duration,
    /// Requests allowed per day (the fake's lifetime).
    pub daily: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { enforce: true, max: 190, interval: Duration::from_secs(10), daily: 1_000_000 }
    }
}

/// A fault answered instead of (or before) the normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with HubSpot's `TEN_SECONDLY_ROLLING` body and this `Retry-After` (seconds).
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// An error status such as 500, 502 or 503.
    Status(u16),
    /// Wait this long, then serve the request normally (to make clients time out).
    Delay(Duration),
}

/// An object type and its properties, as served by the properties API.
#[derive(Debug, Clone)]
pub struct ObjectTypeDef {
    /// Object type id, e.g. `0-1` for contacts or `2-123456` for a custom object.
    pub object_type_id: String,
    /// Plural name used in paths and as the key in [`HubSpotState::objects`].
    pub name: String,
    /// Upper-case singular label used in HubSpot's messages, e.g. `CONTACT`.
    pub label: String,
    /// Other names accepted in paths (singular, fully qualified name, ...).
    pub aliases: Vec<String>,
    /// The property catalogue.
    pub properties: Vec<PropertyDef>,
}

impl ObjectTypeDef {
    /// A custom object type with the given id, name and properties (plus `hs_object_id`).
    pub fn custom(object_type_id: &str, name: &str, properties: Vec<PropertyDef>) -> Self {
        let mut all = vec![PropertyDef::read_only("hs_object_id", "Record ID", "number", "number")];
        all.extend(properties);
        Self {
            object_type_id: object_type_id.to_owned(),
            name: name.to_owned(),
            label: name.trim_end_matches('s').to_uppercase(),
            aliases: Vec::new(),
            properties: all,
        }
    }

    /// Contacts: `email` (unique), `firstname`, `lastname`, `phone`, `lifecyclestage`, `ltv` (number).
    pub fn contacts() -> Self {
        let stages = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"];
        Self {
            object_type_id: "0-1".to_owned(),
            name: "contacts".to_owned(),
            label: "CONTACT".to_owned(),
            aliases: vec!["contact".to_owned()],
            properties: vec![
                PropertyDef::read_only("hs_object_id", "Record ID", "number", "number"),
                PropertyDef::new("email", "Email", "string", "text").unique(),
                PropertyDef::new("firstname", "First Name", "string", "text"),
                PropertyDef::new("lastname", "Last Name", "string", "text"),
                PropertyDef::new("phone", "Phone Number", "string", "phonenumber"),
                PropertyDef::new("lifecyclestage", "Lifecycle Stage", "enumeration", "radio").with_options(&stages),
                PropertyDef::new("ltv", "Lifetime value", "number", "number"),
            ],
        }
    }

    /// Companies: `domain` (unique), `name`, `industry`.
    pub fn companies() -> Self {
        Self {
            object_type_id: "0-2".to_owned(),
            name: "companies".to_owned(),
            label: "COMPANY".to_owned(),
            aliases: vec!["company".to_owned()],
            properties: vec![
                PropertyDef::read_only("hs_object_id", "Record ID", "number", "number"),
                PropertyDef::new("domain", "Company Domain Name", "string", "text").unique(),
                PropertyDef::new("name", "Name", "string", "text"),
                PropertyDef::new("industry", "Industry", "string", "text"),
            ],
        }
    }

    /// The property with this name, if any.
    pub fn property(&self, name: &str) -> Option<&PropertyDef> {
        self.properties.iter().find(|p| p.name == name)
    }

    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.object_type_id == name || self.aliases.iter().any(|a| a == name)
    }
}

/// One property of an object type.
#[derive(Debug, Clone)]
pub struct PropertyDef {
    /// Internal name.
    pub name: String,
    /// Label shown in HubSpot.
    pub label: String,
    /// Data type: `string`, `number`, `enumeration`, `bool`, `date` or `datetime`.
    pub type_: String,
    /// UI field type: `text`, `number`, `select`, `radio`, `booleancheckbox`, `date`, ...
    pub field_type: String,
    /// Whether values are unique, making it usable as `idProperty`.
    pub has_unique_value: bool,
    /// Allowed values of an enumeration.
    pub options: Vec<String>,
    /// Whether writes are rejected.
    pub read_only: bool,
    /// Property group.
    pub group_name: String,
}

impl PropertyDef {
    /// A writable, non-unique property.
    pub fn new(name: &str, label: &str, type_: &str, field_type: &str) -> Self {
        Self {
            name: name.to_owned(),
            label: label.to_owned(),
            type_: type_.to_owned(),
            field_type: field_type.to_owned(),
            has_unique_value: false,
            options: Vec::new(),
            read_only: false,
            group_name: "information".to_owned(),
        }
    }

    /// A property HubSpot computes; writing it is an error.
    pub fn read_only(name: &str, label: &str, type_: &str, field_type: &str) -> Self {
        Self { read_only: true, ..Self::new(name, label, type_, field_type) }
    }

    /// Marks the property as holding unique values.
    pub fn unique(mut self) -> Self {
        self.has_unique_value = true;
        self
    }

    /// Sets the allowed values of an enumeration.
    pub fn with_options(mut self, options: &[&str]) -> Self {
        self.options = options.iter().map(|o| (*o).to_owned()).collect();
        self
    }
}

/// A property value to reject as invalid for one object type.
#[derive(Debug, Clone)]
pub struct RejectRule {
    /// Object type name (as in [`ObjectTypeDef::name`]).
    pub object_type: String,
    /// Property name.
    pub property: String,
    /// Rejected value; `None` rejects every non-empty value.
    pub value: Option<String>,
    /// Error code reported, e.g. `INVALID_OPTION`.
    pub code: String,
    /// Error message reported.
    pub message: String,
}

impl RejectRule {
    /// Rejects `value` of `property` with HubSpot's `INVALID_OPTION` wording.
    pub fn new(object_type: &str, property: &str, value: &str) -> Self {
        Self {
            object_type: object_type.to_owned(),
            property: property.to_owned(),
            value: Some(value.to_owned()),
            code: "INVALID_OPTION".to_owned(),
            message: format!("{value} was not one of the allowed options"),
        }
    }
}

/// A stored CRM record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmObject {
    /// Record id (`hs_object_id`).
    pub id: String,
    /// Property values, including `hs_object_id`, `createdate` and `lastmodifieddate`.
    pub properties: BTreeMap<String, String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last update time, RFC 3339.
    pub updated_at: String,
    /// Whether the record was archived.
    pub archived: bool,
    /// Archive time, RFC 3339.
    pub archived_at: Option<String>,
}

/// A stored association between two records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// Object type name of the source record.
    pub from_type: String,
    /// Source record id.
    pub from_id: String,
    /// Object type name of the target, when known (create-with-associations does not say).
    pub to_type: Option<String>,
    /// Target record id.
    pub to_id: String,
    /// v4 association type id, if given.
    pub type_id: Option<i64>,
    /// v4 association category, or the v3 type name (e.g. `contact_to_company`).
    pub category: String,
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
    /// Whether the body matched the spec (true for requests that carry no body).
    pub body_valid: bool,
    /// Why the body did not match, if it did not.
    pub validation_errors: Vec<String>,
}

/// Running totals, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every request received.
    pub requests: u64,
    /// Answers with status 401.
    pub unauthorized: u64,
    /// Answers with status 429 (limits or injected faults).
    pub rate_limited: u64,
    /// Injected faults consumed.
    pub faults: u64,
    /// Requests whose body did not match the spec.
    pub invalid_bodies: u64,
    /// Successful token refreshes.
    pub token_refreshes: u64,
    /// Records created.
    pub created: u64,
    /// Records updated.
    pub updated: u64,
    /// Records archived.
    pub archived: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct OAuthToken {
    pub(crate) uses: u32,
    pub(crate) expired_at: Option<(Instant, String)>,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct HubSpotState {
    /// Records per object type name, by id.
    pub objects: BTreeMap<String, BTreeMap<String, CrmObject>>,
    /// Associations created.
    pub associations: Vec<Association>,
    /// Every request, in arrival order.
    pub requests: Vec<LoggedRequest>,
    /// Running totals.
    pub counters: Counters,
    pub(crate) options: HubSpotOptions,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) oauth_tokens: HashMap<String, OAuthToken>,
    pub(crate) current_access_token: Option<String>,
    pub(crate) window: VecDeque<Instant>,
    pub(crate) daily_used: u32,
    pub(crate) next_id: u64,
    pub(crate) next_token: u64,
}

impl HubSpotState {
    fn new(options: HubSpotOptions) -> Self {
        let mut oauth_tokens = HashMap::new();
        let current_access_token = options.oauth.as_ref().map(|app| app.access_token.clone());
        if let Some(token) = &current_access_token {
            oauth_tokens.insert(token.clone(), OAuthToken { uses: 0, expired_at: None });
        }
        let objects = options.object_types.iter().map(|t| (t.name.clone(), BTreeMap::new())).collect();
        Self {
            objects,
            associations: Vec::new(),
            requests: Vec::new(),
            counters: Counters::default(),
            faults: options.faults.iter().cloned().collect(),
            options,
            oauth_tokens,
            current_access_token,
            window: VecDeque::new(),
            daily_used: 0,
            next_id: 1001,
            next_token: 2,
        }
    }

    /// The options the fake was started with.
    pub fn options(&self) -> &HubSpotOptions {
        &self.options
    }

    /// Changes options while the fake runs (for example, stop rejecting a value).
    pub fn options_mut(&mut self) -> &mut HubSpotOptions {
        &mut self.options
    }

    pub(crate) fn object_type(&self, name: &str) -> Option<ObjectTypeDef> {
        self.options.object_types.iter().find(|t| t.answers_to(name)).cloned()
    }
}

pub(crate) type Shared = Arc<Mutex<HubSpotState>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, HubSpotState> {
    // A panicking test thread must not make every later assertion panic too.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake HubSpot API, stopped when dropped.
pub struct HubSpotFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl HubSpotFake {
    /// Starts the fake on 127.0.0.1 with a random port.
    ///
    /// Panics if no local port can be bound: a test cannot proceed without its fake.
    pub async fn start(options: HubSpotOptions) -> HubSpotFake {
        let shared: Shared = Arc::new(Mutex::new(HubSpotState::new(options)));
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the HubSpot fake");
        let addr = listener.local_addr().expect("local address of the HubSpot fake");
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            // An accept error ends the fake; the test then sees connection errors.
            let _ = axum::serve(listener, app).await;
        });
        HubSpotFake { addr, shared, task }
    }

    /// Base URL to use instead of `https://api.hubapi.com`, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Locks the whole state for assertions; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, HubSpotState> {
        lock(&self.shared)
    }

    /// Non-archived records of an object type (by any of its names), ordered by id.
    pub fn objects(&self, object_type: &str) -> Vec<CrmObject> {
        let state = self.state();
        let Some(def) = state.object_type(object_type) else { return Vec::new() };
        state.objects.get(&def.name).map(|m| m.values().filter(|o| !o.archived).cloned().collect()).unwrap_or_default()
    }

    /// The non-archived record whose `property` equals `value` (emails compared case-insensitively).
    pub fn find(&self, object_type: &str, property: &str, value: &str) -> Option<CrmObject> {
        let state = self.state();
        let def = state.object_type(object_type)?;
        let objects = state.objects.get(&def.name)?;
        crm::find_by_property(objects, property, value).and_then(|id| objects.get(&id)).cloned()
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    /// Number of requests whose body did not match HubSpot's spec.
    pub fn invalid_requests(&self) -> usize {
        self.state().requests.iter().filter(|r| !r.body_valid).count()
    }

    /// Queues a fault for the next request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Expires every OAuth access token issued so far; the next use answers 401.
    pub fn expire_access_tokens(&self) {
        let mut state = self.state();
        let now = (Instant::now(), crm::now());
        for token in state.oauth_tokens.values_mut() {
            token.expired_at.get_or_insert_with(|| now.clone());
        }
    }

    /// The access token most recently issued (initially [`OAuthApp::access_token`]).
    pub fn current_access_token(&self) -> Option<String> {
        self.state().current_access_token.clone()
    }
}

impl Drop for HubSpotFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
