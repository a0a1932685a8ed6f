//! A faithful, in-process fake of Meta's Graph API for Customer File Custom Audiences.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_fakes::meta::{MetaFake, MetaOptions, DEFAULT_ACCESS_TOKEN, DEFAULT_AUDIENCE_ID};
//! let fake = MetaFake::start(MetaOptions::default()).await;
//! let base = fake.base_url(); // "http://127.0.0.1:PORT", instead of https://graph.facebook.com
//! // ... send `Authorization: Bearer {DEFAULT_ACCESS_TOKEN}` to {base}/v25.0/{DEFAULT_AUDIENCE_ID}/users ...
//! assert_eq!(fake.invalid_requests(), 0);
//! let members = fake.members(DEFAULT_AUDIENCE_ID); // every stored row: schema key → value
//! # }
//! ```
//!
//! # Endpoints (paths start with an API version such as `/v25.0`)
//!
//! | request | answers |
//! |---|---|
//! | `POST /{audience_id}/users` | 200 `{audience_id, session_id, num_received, num_invalid_entries, invalid_entry_samples}` |
//! | `DELETE /{audience_id}/users` (or `POST` with `method=DELETE`) | the same; matching members are removed |
//! | `POST /{audience_id}/usersreplace` | 200 `{account_id, session_id, num_received, num_invalid_entries, invalid_entry_samples}`; the audience becomes the session's rows when its last batch arrives |
//! | `GET /{audience_id}?fields=…` | the audience's fields (`id`, `name`, `subtype`, `operation_status`, `account_id`, `approximate_count_lower_bound`/`upper_bound`, …) |
//! | `GET /act_{id}?fields=…` | the ad account (`id`, `account_id`, `name`) |
//! | `GET /act_{id}/customaudiences?fields=…&limit=…&after=…` | `{data, paging: {cursors: {before, after}, next?}}` |
//! | `GET /me` | the token's system user `{id, name}` |
//!
//! Parameters come as a form body (`application/x-www-form-urlencoded`, as Meta's curl examples
//! send them), as a JSON body, or in the query string; `payload` and `session` may be JSON text
//! or JSON objects. The access token comes in `Authorization: Bearer` (or `OAuth`) or as
//! `access_token`.
//!
//! # What is checked, from Meta's documentation
//!
//! Sources: the "Customer File Custom Audiences" guide
//! <https://developers.facebook.com/documentation/ads-commerce/marketing-api/audiences/guides/custom-audiences>,
//! the Custom Audience Users reference
//! <https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/custom-audience/users>,
//! "Handling Errors" <https://developers.facebook.com/docs/graph-api/guides/error-handling> and
//! "Rate Limiting" <https://developers.facebook.com/docs/graph-api/overview/rate-limiting>.
//!
//! * Parameters against `specs/meta/CustomAudience.json` (names and `Object`/`string` types of
//!   each edge); `payload` and `session` are required on every upload, as the guide says.
//! * `payload`: `schema` is one key or an array of distinct keys (`EXTERN_ID EMAIL PHONE GEN DOBY
//!   DOBM DOBD LN FN FI CT ST ZIP MADID COUNTRY`, the single-key `EMAIL_SHA256`, `PHONE_SHA256`,
//!   `MOBILE_ADVERTISER_ID`, and `LOOKALIKE_VALUE`, `DATA_PROCESSING_OPTIONS*`); `data` holds at
//!   most [`MetaOptions::batch_limit`] (10,000) rows, each with one value per key; `is_raw` is a
//!   boolean. A malformed payload is a 400 with code 100.
//! * Values: every key but `MADID` and `EXTERN_ID` must be a SHA-256 digest in lowercase hex
//!   ("using lowercase for A through F"); `MADID` must be a lowercase UUID with hyphens ("Use all
//!   lowercase, and keep hyphens"; "Do not hash"); blanks mean "unknown". A row with a bad value,
//!   or with no value at all, is an invalid entry: counted in `num_invalid_entries`, named in
//!   `invalid_entry_samples` (up to 100), not stored.
//! * `session`: `session_id` a positive 64-bit integer, `batch_seq` a positive integer,
//!   `last_batch_flag` a boolean, `estimated_num_total` an integer (optional). A session starts at
//!   `batch_seq` 1 and goes up by one (a batch may be sent again); nothing is accepted after its last
//!   batch or 90 minutes after its first. `num_received` counts the session's rows so far.
//! * Auth: a missing token is code 104; an unknown one code 190 "Invalid OAuth access token -
//!   Cannot parse access token"; an expired one code 190, subcode 463. All are HTTP 400 with a
//!   `WWW-Authenticate: OAuth "Facebook Platform" "invalid_token" …` header, as Graph answers them.
//!   With [`MetaOptions::app_secret`], `appsecret_proof` (HMAC-SHA256 of the token) is required.
//! * Rate limit ([`MetaOptions::requests_per_hour`]): the custom-audience business-use-case
//!   limit of the audience's ad account. Every answer carries `X-Business-Use-Case-Usage`
//!   (`call_count` in percent, `estimated_time_to_regain_access` in minutes); over the limit the
//!   answer is code 80003, subcode 2446079.
//!
//! # Membership
//!
//! An audience keeps the rows it was sent (schema key → value, blanks left out). Adding a row
//! equal to a stored one changes nothing. Removing a row removes every stored member that shares
//! a value of a strong key (`EMAIL`, `PHONE`, `MADID`, `EXTERN_ID`) with it, as Meta removes the
//! person those keys match; a row with no strong key removes members that have all its values.
//! [`MetaFake::members`] returns the rows, for exact assertions.
//!
//! # Modelled, not documented
//!
//! The exact texts and codes of errors Meta documents only by meaning: over 10,000 rows, a bad
//! schema or session (code 100, `OAuthException`), session ordering and expiry on `/users`
//! (Meta documents those codes for `usersreplace`, 2650 with subcodes 1870147, 1870158, 1870159;
//! the fake uses them for both edges), an unknown API version (code 2635), and `WWW-Authenticate`.
//!
//! # Knobs ([`MetaOptions`])
//!
//! Tokens (`access_tokens`, `expired_tokens`), `app_secret`, `api_versions`, `audiences`,
//! `ad_accounts`, `batch_limit`, `requests_per_hour`, `reject_values` (well-formed values counted
//! invalid, as Meta counts entries "sent with incorrect hashing"), and `faults` ([`Fault`]: 429 with
//! `Retry-After`, a throttling code, a 5xx, an expired token, or a delay), consumed one per
//! request. More faults can be queued while running with [`MetaFake::inject_fault`].

mod audience;
mod server;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use audience::{Row, HASHED_KEYS, IDENTIFIER_KEYS, STRONG_KEYS};

/// The system user token accepted by default.
pub const DEFAULT_ACCESS_TOKEN: &str = "EAAfake-system-user-token";
/// The ad account of the default audiences (without `act_`).
pub const DEFAULT_AD_ACCOUNT: &str = "1234567890";
/// A customer-file (subtype CUSTOM) audience present by default.
pub const DEFAULT_AUDIENCE_ID: &str = "23850000000000001";
/// A website (subtype WEBSITE) audience present by default, which takes no uploaded members.
pub const WEBSITE_AUDIENCE_ID: &str = "23850000000000002";
/// The API version Meta documents at the time of writing.
pub const CURRENT_API_VERSION: &str = "v25.0";

/// Options of a [`MetaFake`].
#[derive(Debug, Clone)]
pub struct MetaOptions {
    /// Valid access tokens.
    pub access_tokens: Vec<String>,
    /// Tokens that have expired (answered with code 190, subcode 463).
    pub expired_tokens: Vec<String>,
    /// When set, every request must carry `appsecret_proof` = HMAC-SHA256(app_secret, token) in hex.
    pub app_secret: Option<String>,
    /// API versions served; others get code 2635.
    pub api_versions: Vec<String>,
    /// Ad accounts (ids without `act_`) and their names.
    pub ad_accounts: Vec<(String, String)>,
    /// Custom audiences.
    pub audiences: Vec<AudienceDef>,
    /// Most rows in one upload (Meta: 10,000).
    pub batch_limit: usize,
    /// The custom-audience business-use-case limit per ad account per rolling hour; `None` for none.
    pub requests_per_hour: Option<u32>,
    /// Faults answered to the first requests, one per request.
    pub faults: Vec<Fault>,
    /// Values Meta is made to count as invalid entries although well formed (as it does for
    /// "entries sent with incorrect hashing"), to test how a client reports them.
    pub reject_values: Vec<String>,
}

impl Default for MetaOptions {
    fn default() -> Self {
        MetaOptions {
            access_tokens: vec![DEFAULT_ACCESS_TOKEN.to_owned()],
            expired_tokens: Vec::new(),
            app_secret: None,
            api_versions: vec![CURRENT_API_VERSION.to_owned(), "v24.0".to_owned()],
            ad_accounts: vec![(DEFAULT_AD_ACCOUNT.to_owned(), "Sluice test account".to_owned())],
            audiences: vec![
                AudienceDef::custom(DEFAULT_AUDIENCE_ID, "VIP customers", DEFAULT_AD_ACCOUNT),
                AudienceDef {
                    subtype: "WEBSITE".to_owned(),
                    ..AudienceDef::custom(WEBSITE_AUDIENCE_ID, "Site visitors", DEFAULT_AD_ACCOUNT)
                },
            ],
            batch_limit: 10_000,
            // Meta's floor for apps with standard access: 5000 + 40 × active custom audiences per hour.
            requests_per_hour: Some(5_000),
            faults: Vec::new(),
            reject_values: Vec::new(),
        }
    }
}

/// A custom audience the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceDef {
    /// Numeric id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `CUSTOM` for customer-file audiences; `WEBSITE`, `LOOKALIKE`… take no uploads.
    pub subtype: String,
    /// Owning ad account, without `act_`.
    pub account_id: String,
    /// `operation_status.code`: 200 Normal; 471 flagged (uploads refused with subcode 1713230).
    pub operation_status: u32,
}

impl AudienceDef {
    /// A customer-file audience in a normal state.
    pub fn custom(id: &str, name: &str, account_id: &str) -> AudienceDef {
        AudienceDef {
            id: id.to_owned(),
            name: name.to_owned(),
            subtype: "CUSTOM".to_owned(),
            account_id: account_id.to_owned(),
            operation_status: 200,
        }
    }
}

/// A fault answered instead of (or before) the normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After` (seconds) and an application-limit body (code 4).
    TooManyRequests {
        /// `Retry-After`, in seconds.
        retry_after_secs: u64,
    },
    /// A throttling error as Graph sends it (HTTP 400, `is_transient`): code 4 (application), 17
    /// (user), 32 (page), 613 (calls per time) or 80003 (custom-audience business use case, with
    /// subcode 2446079), and `X-Business-Use-Case-Usage` naming the wait.
    Throttle {
        /// The error code.
        code: u32,
        /// `estimated_time_to_regain_access`, in minutes.
        regain_access_minutes: u64,
    },
    /// An error status: 500 (code 1 "An unknown error occurred"), 503 (code 2 "Service temporarily
    /// unavailable"); 502 and 504 come as an HTML page from the edge.
    Status(u16),
    /// The token expired: code 190, subcode 463.
    ExpiredToken,
    /// Wait this long, then serve the request normally (to make clients time out).
    Delay(Duration),
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method (the effective one: `POST` with `method=DELETE` is logged as `DELETE`).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// The Graph error code answered, if any.
    pub error_code: Option<u64>,
    /// Why the request was malformed, if it was (bad parameters, schema, session, too many rows).
    pub issues: Vec<String>,
    /// Rows of the upload, if it was one.
    pub rows: usize,
    /// Rows counted as invalid entries because the client sent them malformed (a value that is
    /// not a lowercase digest, a mobile ad id not in lowercase UUID form, a row with no value).
    pub invalid_entries: usize,
    /// Rows refused because of [`MetaOptions::reject_values`] (not the client's fault).
    pub refused_entries: usize,
    /// The parameter names sent (never their values).
    pub params: Vec<String>,
}

impl LoggedRequest {
    /// Whether the client sent something Meta would refuse or count as invalid.
    pub fn is_invalid(&self) -> bool {
        !self.issues.is_empty() || self.invalid_entries > 0
    }
}

/// Running totals, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every request received.
    pub requests: u64,
    /// Answers refused for the token (codes 104, 190).
    pub unauthorized: u64,
    /// Throttled answers (429, codes 4/17/32/613/80003).
    pub rate_limited: u64,
    /// Injected faults consumed.
    pub faults: u64,
    /// Rows added (new members).
    pub added: u64,
    /// Members removed.
    pub removed: u64,
}

/// An upload session (`session_id` within an audience).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) started: Instant,
    pub(crate) last_seq: u64,
    pub(crate) finished: bool,
    pub(crate) received: u64,
    /// `usersreplace` only: the rows that will replace the audience.
    pub(crate) replacement: Option<Vec<Row>>,
}

/// An audience's stored members, indexed by their strong keys.
#[derive(Debug, Default)]
pub struct Audience {
    /// Its definition.
    pub def: Option<AudienceDef>,
    pub(crate) members: BTreeMap<u64, Row>,
    pub(crate) by_row: HashMap<Row, u64>,
    pub(crate) by_key: HashMap<(String, String), BTreeSet<u64>>,
    pub(crate) next_member: u64,
    pub(crate) sessions: HashMap<u64, Session>,
    /// The session of a replace in progress, if any.
    pub(crate) replacing: Option<u64>,
}

impl Audience {
    /// Number of stored members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no member is stored.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The stored members' rows.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.members.values()
    }
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct MetaState {
    /// Audiences by id.
    pub audiences: BTreeMap<String, Audience>,
    /// Every request, in arrival order.
    pub requests: Vec<LoggedRequest>,
    /// Running totals.
    pub counters: Counters,
    pub(crate) options: MetaOptions,
    pub(crate) faults: VecDeque<Fault>,
    /// Per ad account: times of the requests within the last hour.
    pub(crate) windows: HashMap<String, VecDeque<Instant>>,
}

impl MetaState {
    fn new(options: MetaOptions) -> MetaState {
        let audiences = options
            .audiences
            .iter()
            .map(|def| (def.id.clone(), Audience { def: Some(def.clone()), ..Audience::default() }))
            .collect();
        MetaState {
            audiences,
            requests: Vec::new(),
            counters: Counters::default(),
            faults: options.faults.iter().cloned().collect(),
            options,
            windows: HashMap::new(),
        }
    }

    /// The options the fake was started with.
    pub fn options(&self) -> &MetaOptions {
        &self.options
    }

    /// Changes options while the fake runs.
    pub fn options_mut(&mut self) -> &mut MetaOptions {
        &mut self.options
    }
}

pub(crate) type Shared = Arc<Mutex<MetaState>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, MetaState> {
    // A panicking test thread must not make every later assertion panic too.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake Graph API, stopped when dropped.
pub struct MetaFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl MetaFake {
    /// Starts the fake on 127.0.0.1 with a random port.
    ///
    /// Panics if no local port can be bound: a test cannot proceed without its fake.
    pub async fn start(options: MetaOptions) -> MetaFake {
        let shared: Shared = Arc::new(Mutex::new(MetaState::new(options)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the Meta fake");
        let addr = listener.local_addr().expect("local address of the Meta fake");
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            // An accept error ends the fake; the test then sees connection errors.
            let _ = axum::serve(listener, app).await;
        });
        MetaFake { addr, shared, task }
    }

    /// Base URL to use instead of `https://graph.facebook.com`, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Locks the whole state for assertions; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, MetaState> {
        lock(&self.shared)
    }

    /// The rows stored in an audience (empty for an unknown one).
    pub fn members(&self, audience_id: &str) -> BTreeSet<Row> {
        self.state().audiences.get(audience_id).map(|a| a.rows().cloned().collect()).unwrap_or_default()
    }

    /// Number of members of an audience.
    pub fn member_count(&self, audience_id: &str) -> usize {
        self.state().audiences.get(audience_id).map_or(0, Audience::len)
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    /// Requests Meta would have refused as malformed or counted invalid entries in; a test of a
    /// correct client ends with `assert_eq!(fake.invalid_requests(), 0)`.
    pub fn invalid_requests(&self) -> usize {
        self.state().requests.iter().filter(|r| r.is_invalid()).count()
    }

    /// Queues a fault for the next request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Running totals.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }
}

impl Drop for MetaFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
