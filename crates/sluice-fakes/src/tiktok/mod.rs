//! A faithful, in-process fake of TikTok's Marketing API (API for Business v1.3) audience segment
//! endpoints, for destination tests.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_fakes::tiktok::{TikTokFake, TikTokOptions, DEFAULT_ACCESS_TOKEN};
//! let fake = TikTokFake::start(TikTokOptions::default()).await;
//! let base = fake.base_url(); // instead of https://business-api.tiktok.com
//! // ... POST {base}/open_api/v1.3/segment/mapping/ with `Access-Token: fake-tiktok-access-token` ...
//! assert_eq!(fake.invalid_requests(), 0);
//! # }
//! ```
//!
//! # Endpoints
//!
//! | request | answers |
//! |---|---|
//! | `POST /open_api/v1.3/segment/mapping/` | `{code, message, request_id, data}` |
//! | `GET /open_api/v1.3/advertiser/info/?advertiser_ids=["…"]` | `data.list[]` of `{advertiser_id, name}` |
//! | `GET /open_api/v1.3/dmp/custom_audience/get/?advertiser_id=…&custom_audience_ids=["…"]` | `data.list[].audience_details` |
//!
//! TikTok answers HTTP 200 for every request that reaches the API and carries the outcome in the
//! envelope's `code`: 0 for success, 4xxxx for client errors, 5xxxx for service errors
//! (<https://business-api.tiktok.com/portal/docs?id=1737172488964097>, "Return codes"). A path the API
//! does not know (a missing trailing slash, for one) is an HTTP 404 without the envelope.
//!
//! No OpenAPI description of these endpoints exists (`specs/SOURCES.md`), and TikTok's portal pages are
//! not reachable from here; the body of `/segment/mapping/` is checked against the shape TikTok's
//! Audience segment API takes as the partner integrations built on it send it (Segment's
//! `tiktok-audiences` destination, RudderStack's `tiktok_audience`): `advertiser_ids` (non-empty list of
//! strings), `action` (`add` or `delete`), `id_schema` (distinct values among `EMAIL_SHA256`,
//! `PHONE_SHA256`, `IDFA_SHA256`, `GAID_SHA256`, `AAID_SHA256`, `IDFA_MD5`, `GAID_MD5`, `AAID_MD5`) and
//! `batch_data`: one list per user with one entry per `id_schema` position, each `{}` (no value) or
//! `{"id", "audience_ids"}`, where `id` is 64 lower-case hex digits for `*_SHA256` and 32 for `*_MD5`.
//! A body that breaks these rules is answered `code` 40002 and logged with `body_valid: false`, so a test
//! can end with `assert_eq!(fake.invalid_requests(), 0)`.
//!
//! # Behaviour
//!
//! * Auth: the `Access-Token` header. Missing: 40104; unknown or revoked: 40105. An advertiser the
//!   token may not manage: 40001. An audience id the advertiser does not own: 40007.
//! * More users than [`TikTokOptions::batch_limit`] in `batch_data`: 40011 ("Too many IDs are
//!   provided in a single request").
//! * Membership: each audience stores the users added, each as its set of `(schema, id)` pairs; adding
//!   the same user again changes nothing, deleting a user removes every stored user that shares one of
//!   its ids, and deleting someone absent is not an error. A request that fails changes nothing.
//! * Rate limits (<https://business-api.tiktok.com/portal/docs/rate-limits/v1.3>): per developer app,
//!   Basic tier 10 requests per second, 600 per minute, 864,000 per day; beyond them `code` 40100 with
//!   HTTP 200 and no `Retry-After`, as TikTok documents.
//! * Faults ([`Fault`]), consumed one per request before anything else: 40100, any other `code`, an
//!   HTTP status without the envelope, or a delay.
//!
//! # Assertions
//!
//! [`TikTokFake::members`], [`TikTokFake::requests`], [`TikTokFake::invalid_requests`],
//! [`TikTokFake::state`].

mod server;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Access token accepted by default.
pub const DEFAULT_ACCESS_TOKEN: &str = "fake-tiktok-access-token";

/// The default advertiser.
pub const DEFAULT_ADVERTISER_ID: &str = "7000000000000000001";

/// The default advertiser's audience.
pub const DEFAULT_AUDIENCE_ID: &str = "1800000000000001";

/// Options of a [`TikTokFake`].
#[derive(Debug, Clone)]
pub struct TikTokOptions {
    /// Long-term access tokens; each may manage every advertiser listed.
    pub access_tokens: Vec<String>,
    /// Advertisers and the audiences they own.
    pub advertisers: Vec<Advertiser>,
    /// Most users in one `batch_data`.
    pub batch_limit: usize,
    /// Per-app request limits; `None` enforces none.
    pub rate_limit: Option<RateLimit>,
    /// Faults answered to the first requests, one per request.
    pub faults: Vec<Fault>,
}

impl Default for TikTokOptions {
    fn default() -> Self {
        Self {
            access_tokens: vec![DEFAULT_ACCESS_TOKEN.to_string()],
            advertisers: vec![Advertiser {
                id: DEFAULT_ADVERTISER_ID.into(),
                name: "Fake Advertiser".into(),
                audiences: vec![DEFAULT_AUDIENCE_ID.into()],
            }],
            batch_limit: 1_000,
            rate_limit: Some(RateLimit::default()),
            faults: Vec::new(),
        }
    }
}

/// An ad account.
#[derive(Debug, Clone)]
pub struct Advertiser {
    /// `advertiser_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Audience ids the advertiser owns.
    pub audiences: Vec<String>,
}

/// Requests allowed per second, minute and day (Basic tier by default).
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Queries per second.
    pub per_second: u32,
    /// Queries per minute.
    pub per_minute: u32,
    /// Queries per day (the fake's lifetime).
    pub per_day: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 10, per_minute: 600, per_day: 864_000 }
    }
}

/// A fault answered instead of the normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `code` 40100, "Too many requests".
    RateLimited,
    /// Any other envelope `code` with this message (50000 "System error", 40102, …).
    Code(i64, String),
    /// An HTTP status without TikTok's envelope (a gateway error).
    Http(u16),
    /// Wait this long, then serve the request normally.
    Delay(Duration),
}

/// One id of a stored user: `(id_schema, id)`.
pub type StoredId = (String, String);

/// A user of an audience: the ids one `batch_data` row carried.
pub type StoredUser = BTreeSet<StoredId>;

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The envelope `code` answered (`None` for answers without the envelope).
    pub code: Option<i64>,
    /// Users in `batch_data` (0 for other requests).
    pub users: usize,
    /// Whether the request had the documented shape.
    pub body_valid: bool,
    /// Why it did not.
    pub validation_errors: Vec<String>,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct TikTokState {
    /// Users per audience id.
    pub audiences: BTreeMap<String, BTreeSet<StoredUser>>,
    /// Every request, in arrival order.
    pub requests: Vec<LoggedRequest>,
    pub(crate) options: TikTokOptions,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) revoked: BTreeSet<String>,
    pub(crate) second: VecDeque<Instant>,
    pub(crate) minute: VecDeque<Instant>,
    pub(crate) daily_used: u32,
    pub(crate) next_request_id: u64,
}

impl TikTokState {
    /// The options the fake runs with; they may be changed while it runs.
    pub fn options_mut(&mut self) -> &mut TikTokOptions {
        &mut self.options
    }
}

pub(crate) type Shared = Arc<Mutex<TikTokState>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, TikTokState> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake TikTok API, stopped when dropped.
pub struct TikTokFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl TikTokFake {
    /// Starts the fake on 127.0.0.1 with a random port.
    ///
    /// Panics if no local port can be bound: a test cannot proceed without its fake.
    pub async fn start(options: TikTokOptions) -> TikTokFake {
        let audiences = options
            .advertisers
            .iter()
            .flat_map(|a| a.audiences.iter().map(|id| (id.clone(), BTreeSet::new())))
            .collect();
        let state = TikTokState {
            audiences,
            requests: Vec::new(),
            faults: options.faults.iter().cloned().collect(),
            options,
            revoked: BTreeSet::new(),
            second: VecDeque::new(),
            minute: VecDeque::new(),
            daily_used: 0,
            next_request_id: 1,
        };
        let shared: Shared = Arc::new(Mutex::new(state));
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the TikTok fake");
        let addr = listener.local_addr().expect("local address of the TikTok fake");
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TikTokFake { addr, shared, task }
    }

    /// Base URL to use instead of `https://business-api.tiktok.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Locks the whole state; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, TikTokState> {
        lock(&self.shared)
    }

    /// The users of an audience.
    pub fn members(&self, audience_id: &str) -> BTreeSet<StoredUser> {
        self.state().audiences.get(audience_id).cloned().unwrap_or_default()
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    /// Number of requests that did not have the documented shape.
    pub fn invalid_requests(&self) -> usize {
        self.state().requests.iter().filter(|r| !r.body_valid).count()
    }

    /// Queues a fault for the next request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Revokes an access token: later uses answer 40105.
    pub fn revoke(&self, token: &str) {
        self.state().revoked.insert(token.to_string());
    }
}

impl Drop for TikTokFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
