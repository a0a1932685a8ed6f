//! A faithful, in-process fake of the Snapchat Marketing API's Customer Lists (Snap Audience
//! Match) for destination tests.
//!
//! Snap publishes no OpenAPI description of this API (see `specs/SOURCES.md`), so every request
//! is checked field by field against the documentation:
//! - Customer Lists: <https://developers.snap.com/api/marketing-api/Ads-API/customer-lists>
//!   (segment attributes; `POST /v1/segments/{segment_id}/users` adds and `DELETE` on the same
//!   path removes; body `{"users": [{"schema": ["EMAIL_SHA256" | "PHONE_SHA256" |
//!   "MOBILE_AD_ID_SHA256"], "data": [["<sha256>"], …]}]}`; the answer
//!   `{"request_status", "request_id", "users": [{"sub_request_status", "user":
//!   {"number_uploaded_users"}}]}`; at most 100,000 identifiers per request).
//! - Rate limits: <https://developers.snap.com/api/marketing-api/Ads-API/rate-limits> (an app
//!   averages 20 requests per second, each access token 10; beyond, HTTP 429; no rate-limit or
//!   `Retry-After` header is documented).
//! - Authentication: <https://developers.snap.com/api/marketing-api/Ads-API/authentication>
//!   (`POST https://accounts.snapchat.com/login/oauth2/access_token`, form `grant_type=refresh_token`,
//!   `client_id`, `client_secret`, `refresh_token`; access tokens are short-lived: the fake's last
//!   1,800 seconds).
//! - Errors: the Marketing API answers errors as `{"request_status": "ERROR", "request_id",
//!   "debug_message", "display_message", "error_code"}`.
//!
//! # Endpoints
//!
//! | request | answers |
//! |---|---|
//! | `POST /login/oauth2/access_token` (form) | 200 with a new access token, 400 `invalid_grant`, 401 `invalid_client` |
//! | `GET /v1/adaccounts/{id}` | 200 with the ad account, 404 |
//! | `GET /v1/adaccounts/{id}/segments` | 200 with the account's segments |
//! | `GET /v1/segments/{id}` | 200 with the segment, 404 |
//! | `POST /v1/segments/{id}/users` | 200, or 400 with per-entry `sub_request_status` |
//! | `DELETE /v1/segments/{id}/users` | the same, removing |
//!
//! # Checks on user uploads
//!
//! The body must be exactly `{"users": [...]}`, non-empty; each entry exactly `schema` (distinct
//! values of the three schemas) and `data` (non-empty rows, each as long as `schema`, each value 64
//! lowercase hex characters: Snap takes only SHA-256 digests); at most
//! [`SnapchatOptions::identifier_limit`] (100,000) identifiers per request. A request that breaks a
//! rule is answered 400 and logged with `valid: false`, so a test can end with
//! `assert_eq!(fake.invalid_requests(), 0)`.
//!
//! # Modelled where the docs are silent
//!
//! The `error_code` values and messages, and what happens when one entry of `users` fails (here:
//! HTTP 400, `request_status: "ERROR"`, that entry `sub_request_status: "ERROR"` with a
//! `sub_request_error_reason`, the other entries applied and `SUCCESS`), follow the Marketing
//! API's pattern for batch writes, not a documented example. The enforced per-token limit answers
//! 429 without `Retry-After`; an injected [`Fault::TooManyRequests`] carries one.

mod server;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::support::{Fault, OAuthApp};
use crate::support::{Tokens, Window};

/// Identifiers allowed in one request.
pub const IDENTIFIER_LIMIT: usize = 100_000;
/// The default ad account.
pub const DEFAULT_AD_ACCOUNT: &str = "8adc3db7-8148-4fbf-999c-8d2266369d74";
/// The default Customer List segment.
pub const DEFAULT_SEGMENT: &str = "5677923948298240";

/// A Customer List segment the fake knows.
#[derive(Debug, Clone)]
pub struct SegmentDef {
    pub id: String,
    pub ad_account_id: String,
    pub name: String,
}

/// Makes Snap refuse the `users` entry holding this digest.
#[derive(Debug, Clone)]
pub struct RejectRule {
    /// The SHA-256 digest to refuse.
    pub hash: String,
    /// The entry's `sub_request_error_reason`.
    pub reason: String,
}

/// Options of a [`SnapchatFake`].
#[derive(Debug, Clone)]
pub struct SnapchatOptions {
    pub oauth: OAuthApp,
    /// Requests an access token serves before it expires (401 until refreshed).
    pub expire_token_after: Option<u32>,
    /// Ad accounts served (id → name).
    pub ad_accounts: Vec<(String, String)>,
    pub segments: Vec<SegmentDef>,
    /// Identifiers allowed per request.
    pub identifier_limit: usize,
    /// Requests allowed per access token per second; `None` turns the limit off.
    pub requests_per_second: Option<u32>,
    pub faults: Vec<Fault>,
    pub reject: Vec<RejectRule>,
}

impl Default for SnapchatOptions {
    fn default() -> Self {
        Self {
            oauth: OAuthApp {
                client_id: "snap-client-id".into(),
                client_secret: "snap-client-secret".into(),
                refresh_token: "snap-refresh-token".into(),
                access_token: "snap-access-token-1".into(),
                expires_in: 1800,
            },
            expire_token_after: None,
            ad_accounts: vec![(DEFAULT_AD_ACCOUNT.into(), "Sluice ads".into())],
            segments: vec![SegmentDef {
                id: DEFAULT_SEGMENT.into(),
                ad_account_id: DEFAULT_AD_ACCOUNT.into(),
                name: "all the sams in the world".into(),
            }],
            identifier_limit: IDENTIFIER_LIMIT,
            requests_per_second: Some(10),
            faults: Vec::new(),
            reject: Vec::new(),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub valid: bool,
    pub problems: Vec<String>,
    /// Identifiers in a users request.
    pub identifiers: usize,
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
    pub added: u64,
    pub removed: u64,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct SnapchatState {
    /// Per segment id: `SCHEMA:digest`.
    pub users: BTreeMap<String, BTreeSet<String>>,
    pub requests: Vec<LoggedRequest>,
    pub counters: Counters,
    pub(crate) options: SnapchatOptions,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) tokens: Tokens,
    pub(crate) window: Window,
}

impl SnapchatState {
    /// Changes options while the fake runs.
    pub fn options_mut(&mut self) -> &mut SnapchatOptions {
        &mut self.options
    }
}

pub(crate) type Shared = Arc<Mutex<SnapchatState>>;

pub(crate) use crate::support::lock;

/// A running fake Snapchat Marketing API, stopped when dropped.
pub struct SnapchatFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl SnapchatFake {
    /// Starts the fake on 127.0.0.1 with a random port. Panics if no port can be bound.
    pub async fn start(options: SnapchatOptions) -> SnapchatFake {
        let state = SnapchatState {
            users: options.segments.iter().map(|s| (s.id.clone(), BTreeSet::new())).collect(),
            requests: Vec::new(),
            counters: Counters::default(),
            faults: options.faults.iter().cloned().collect(),
            tokens: Tokens::new(&options.oauth.access_token),
            window: Window::new(),
            options,
        };
        let shared: Shared = Arc::new(Mutex::new(state));
        let (addr, task) = crate::support::serve(server::router(shared.clone()), "Snapchat").await;
        SnapchatFake { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// In place of `https://adsapi.snapchat.com/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// In place of `https://accounts.snapchat.com/login/oauth2/access_token`.
    pub fn token_url(&self) -> String {
        format!("{}/login/oauth2/access_token", self.base_url())
    }

    /// Locks the whole state; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, SnapchatState> {
        lock(&self.shared)
    }

    /// The segment's members, as `SCHEMA:digest`.
    pub fn members(&self, segment: &str) -> BTreeSet<String> {
        self.state().users.get(segment).cloned().unwrap_or_default()
    }

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

    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Expires every access token issued so far; the next use answers 401.
    pub fn expire_access_tokens(&self) {
        self.state().tokens.expire_all();
    }

    pub fn current_access_token(&self) -> Option<String> {
        self.state().tokens.current.clone()
    }
}

impl Drop for SnapchatFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
