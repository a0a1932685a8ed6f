//! A faithful, in-process fake of LinkedIn's Matched Audiences API (DMP segments and their users)
//! for destination tests.
//!
//! LinkedIn publishes no OpenAPI description of this API (see `specs/SOURCES.md`), so every
//! request is checked field by field against the documentation:
//! - DMP Segment Users: <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>
//!   (`POST /rest/dmpSegments/{id}/users`; one user, or many with `X-RestLi-Method: BATCH_CREATE`;
//!   `action` ADD or REMOVE; `userIds[]` of `{idType, idValue}`; `firstName`, `lastName` at most
//!   35 characters, `title`, `company` at most 50, `country` an ISO 3166-1 alpha-2 code; a 201 for
//!   each element, "also if you add the same ID again or remove an already deleted ID"; 600
//!   requests per member per minute on `/users`, answered 429 beyond).
//! - DMP Segments: <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segments>
//!   (segment fields; the finder `GET /rest/dmpSegments?q=account&account={sponsoredAccount urn}`;
//!   "All API requests … require the header `X-Restli-Protocol-Version: 2.0.0`").
//! - Error handling: <https://learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts/error-handling>
//!   (`{"message", "serviceErrorCode", "status"}`), and Rest.li's `CreateStatus`/`ErrorResponse`
//!   records for the per-element answers of a batch create (`{"status": 201}` or
//!   `{"status": 400, "error": {"status", "message", …}}`).
//! - Refresh tokens: <https://learn.microsoft.com/en-us/linkedin/shared/authentication/programmatic-refresh-tokens>
//!   (`POST https://www.linkedin.com/oauth/v2/accessToken`, form `grant_type=refresh_token`,
//!   `refresh_token`, `client_id`, `client_secret`; answers `access_token`, `expires_in`,
//!   `refresh_token`, `refresh_token_expires_in`).
//!
//! # Endpoints
//!
//! | request | answers |
//! |---|---|
//! | `POST /oauth/v2/accessToken` (form) | 200 with a new access token, 400 `invalid_request`, 401 `invalid_client` |
//! | `GET /rest/dmpSegments/{id}` | 200 with the segment, 404 |
//! | `GET /rest/dmpSegments?q=account&account=urn:li:sponsoredAccount:{id}` | 200 `{elements, paging}` |
//! | `POST /rest/dmpSegments/{id}/users` + `X-RestLi-Method: BATCH_CREATE` | 200 `{elements: [{status}…]}`, one status per element |
//! | `POST /rest/dmpSegments/{id}/users` (one user) | 201, or 400 |
//!
//! Every `/rest` request needs `Authorization: Bearer`, `LinkedIn-Version: YYYYMM` (missing: 400
//! `VERSION_MISSING`; older than [`LinkedInOptions::oldest_active_version`] or newer than
//! [`LinkedInOptions::newest_version`]: 426 `NONEXISTENT_VERSION`) and `X-Restli-Protocol-Version:
//! 2.0.0`; bodies need `Content-Type: application/json`.
//!
//! # Checks on user elements
//!
//! Unknown keys; `action` other than ADD/REMOVE; empty `userIds`; an `idType` other than
//! SHA256_EMAIL (64 lowercase hex), SHA512_EMAIL (128 lowercase hex), GOOGLE_AID (lowercase UUID) or
//! APPLE_IDFA (uppercase UUID); names and titles over their lengths; a `country` that is not two
//! uppercase letters. A bad element is answered with its own 400 inside the batch; a bad batch (not
//! an `elements` array, empty, or over [`LinkedInOptions::batch_limit`] = 5,000 elements) with a 400
//! for the request. Both are logged with `valid: false`, so a test can end with
//! `assert_eq!(fake.invalid_requests(), 0)`.
//!
//! # Modelled where the docs are silent
//!
//! The texts of the 400s for bad elements and oversize batches, the 404 for an unknown segment,
//! and the 401 codes (`EXPIRED_ACCESS_TOKEN` 65602, `INVALID_ACCESS_TOKEN` 65600) follow observed
//! LinkedIn answers, not documentation. LinkedIn documents no `Retry-After`: the enforced
//! per-minute limit answers 429 without it; an injected [`Fault::TooManyRequests`] carries one.
//!
//! # Assertions
//!
//! [`LinkedInFake::members`] lists a segment's stored user ids as `IDTYPE:idValue`;
//! [`LinkedInFake::attributes`] gives the names and country stored with one;
//! [`LinkedInFake::requests`] keeps each request with its body; [`LinkedInFake::invalid_requests`]
//! counts requests that broke a documented rule.

mod server;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::support::{Fault, OAuthApp};
use crate::support::{Tokens, Window};

/// The most elements one batch request may carry.
pub const BATCH_LIMIT: usize = 5000;
/// The sponsored ad account the default segments belong to.
pub const DEFAULT_ACCOUNT: &str = "507404993";
/// The default user segment's id.
pub const DEFAULT_SEGMENT: &str = "10804";
/// A company segment of the default account (users cannot be added to it).
pub const COMPANY_SEGMENT: &str = "10805";

/// A DMP segment the fake knows.
#[derive(Debug, Clone)]
pub struct SegmentDef {
    /// Numeric id.
    pub id: String,
    /// The sponsored ad account's numeric id.
    pub account: String,
    /// Display name.
    pub name: String,
    /// `USER` or `COMPANY`.
    pub kind: String,
}

/// Makes LinkedIn refuse one element whose `userIds` hold this `idValue`.
#[derive(Debug, Clone)]
pub struct RejectRule {
    /// The `idValue` (a digest or a device id) to refuse.
    pub id_value: String,
    /// The element's status, e.g. 400.
    pub status: u16,
    /// The element's `error.message`.
    pub message: String,
}

/// Options of a [`LinkedInFake`].
#[derive(Debug, Clone)]
pub struct LinkedInOptions {
    /// The OAuth app whose refresh token the token endpoint accepts.
    pub oauth: OAuthApp,
    /// Requests an access token serves before it expires (401 until refreshed).
    pub expire_token_after: Option<u32>,
    /// Segments served.
    pub segments: Vec<SegmentDef>,
    /// Elements allowed in one batch request.
    pub batch_limit: usize,
    /// `/users` requests allowed per member per minute; `None` turns the limit off.
    pub users_per_minute: Option<u32>,
    /// The oldest `LinkedIn-Version` still active (YYYYMM).
    pub oldest_active_version: u32,
    /// The newest `LinkedIn-Version` released (YYYYMM).
    pub newest_version: u32,
    /// Faults answered to the first requests, one per request.
    pub faults: Vec<Fault>,
    /// Elements refused with a given status and message.
    pub reject: Vec<RejectRule>,
}

impl Default for LinkedInOptions {
    fn default() -> Self {
        Self {
            oauth: OAuthApp {
                client_id: "linkedin-client-id".into(),
                client_secret: "linkedin-client-secret".into(),
                refresh_token: "linkedin-refresh-token".into(),
                access_token: "linkedin-access-token-1".into(),
                // LinkedIn access tokens live 60 days.
                expires_in: 5_184_000,
            },
            expire_token_after: None,
            segments: vec![
                SegmentDef {
                    id: DEFAULT_SEGMENT.into(),
                    account: DEFAULT_ACCOUNT.into(),
                    name: "Sluice VIP customers".into(),
                    kind: "USER".into(),
                },
                SegmentDef {
                    id: COMPANY_SEGMENT.into(),
                    account: DEFAULT_ACCOUNT.into(),
                    name: "Target accounts".into(),
                    kind: "COMPANY".into(),
                },
            ],
            batch_limit: BATCH_LIMIT,
            users_per_minute: Some(600),
            // Versions are active for about a year; 202511 was sunset on 2026-11-16.
            oldest_active_version: 202_512,
            newest_version: 202_611,
            faults: Vec::new(),
            reject: Vec::new(),
        }
    }
}

/// Names, title, company and country stored with one user id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAttributes {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub country: Option<String>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub status: u16,
    /// Whether the request followed every documented rule the fake checks.
    pub valid: bool,
    /// The rules it broke.
    pub problems: Vec<String>,
    /// Elements in a batch request.
    pub elements: usize,
    /// The request body as received.
    pub body: String,
}

/// Running totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    pub faults: u64,
    pub token_refreshes: u64,
    /// User ids added (one per `userIds` entry of an applied ADD).
    pub added: u64,
    /// User ids removed.
    pub removed: u64,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct LinkedInState {
    /// Per segment id: `IDTYPE:idValue` → attributes.
    pub users: BTreeMap<String, BTreeMap<String, UserAttributes>>,
    pub requests: Vec<LoggedRequest>,
    pub counters: Counters,
    pub(crate) options: LinkedInOptions,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) tokens: Tokens,
    pub(crate) window: Window,
}

impl LinkedInState {
    /// Changes options while the fake runs.
    pub fn options_mut(&mut self) -> &mut LinkedInOptions {
        &mut self.options
    }
}

pub(crate) type Shared = Arc<Mutex<LinkedInState>>;

pub(crate) use crate::support::lock;

/// A running fake LinkedIn API, stopped when dropped.
pub struct LinkedInFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl LinkedInFake {
    /// Starts the fake on 127.0.0.1 with a random port. Panics if no port can be bound.
    pub async fn start(options: LinkedInOptions) -> LinkedInFake {
        let state = LinkedInState {
            users: options.segments.iter().map(|s| (s.id.clone(), BTreeMap::new())).collect(),
            requests: Vec::new(),
            counters: Counters::default(),
            faults: options.faults.iter().cloned().collect(),
            tokens: Tokens::new(&options.oauth.access_token),
            window: Window::new(),
            options,
        };
        let shared: Shared = Arc::new(Mutex::new(state));
        let (addr, task) = crate::support::serve(server::router(shared.clone()), "LinkedIn").await;
        LinkedInFake { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The versioned API root, in place of `https://api.linkedin.com/rest`.
    pub fn api_url(&self) -> String {
        format!("{}/rest", self.base_url())
    }

    /// The token endpoint, in place of `https://www.linkedin.com/oauth/v2/accessToken`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/v2/accessToken", self.base_url())
    }

    /// Locks the whole state; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, LinkedInState> {
        lock(&self.shared)
    }

    /// The segment's user ids, as `IDTYPE:idValue`.
    pub fn members(&self, segment: &str) -> BTreeSet<String> {
        self.state().users.get(segment).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// What is stored with one user id of a segment.
    pub fn attributes(&self, segment: &str, user_id: &str) -> Option<UserAttributes> {
        self.state().users.get(segment)?.get(user_id).cloned()
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    /// Requests that broke a documented rule.
    pub fn invalid_requests(&self) -> usize {
        self.state().requests.iter().filter(|r| !r.valid).count()
    }

    /// The problems of every invalid request, for assertion messages.
    pub fn problems(&self) -> Vec<String> {
        self.state().requests.iter().flat_map(|r| r.problems.clone()).collect()
    }

    /// Queues a fault for the next request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Expires every access token issued so far; the next use answers 401.
    pub fn expire_access_tokens(&self) {
        self.state().tokens.expire_all();
    }

    /// The access token most recently issued.
    pub fn current_access_token(&self) -> Option<String> {
        self.state().tokens.current.clone()
    }
}

impl Drop for LinkedInFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
