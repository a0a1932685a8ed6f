//! A faithful, in-process fake of Google's Data Manager API (Customer Match audience members) and of
//! Google's OAuth token endpoint, for destination tests.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_fakes::google::{DataManagerFake, DataManagerOptions};
//! let fake = DataManagerFake::start(DataManagerOptions::default()).await;
//! let api = fake.base_url(); // instead of https://datamanager.googleapis.com
//! let token_url = fake.token_url(); // instead of https://oauth2.googleapis.com/token
//! // ... POST {api}/v1/audienceMembers:ingest with `Authorization: Bearer <token from token_url>` ...
//! assert_eq!(fake.invalid_requests(), 0);
//! # }
//! ```
//!
//! # Endpoints
//!
//! | request | answers |
//! |---|---|
//! | `POST /v1/audienceMembers:ingest` | 200 `{"requestId"}`, or a `google.rpc.Status` error |
//! | `POST /v1/audienceMembers:remove` | 200 `{"requestId"}`, or a `google.rpc.Status` error |
//! | `POST /token` (form, `grant_type=refresh_token`) | 200 `{access_token, expires_in, scope, token_type}`, or 400/401 `{error, error_description}` |
//!
//! No OpenAPI description of the Data Manager API exists (`specs/SOURCES.md`), so request bodies are
//! checked field by field against the REST reference:
//!
//! * <https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest> and
//!   `…/audienceMembers/remove`: `destinations` (required, at most 10), `audienceMembers` (required, at
//!   most 10,000), `consent` (ingest only), `validateOnly`, `encoding` (required for `userData`),
//!   `encryptionInfo` (refused: the fake does not model encryption), `termsOfService` (ingest only).
//! * `…/v1/Destination`: `operatingAccount` (required `ProductAccount`), `loginAccount`,
//!   `linkedAccount`, `productDestinationId` (required), `reference`. A `ProductAccount` has `accountId`
//!   (required) and `accountType` or the deprecated `product` (one required; both must match).
//! * `…/v1/AudienceMember`: exactly one of `userData`, `mobileData` or `userIdData` (the fake refuses
//!   `pairData`, `ppidData`, `compositeData`: data-partner features), optional `consent`.
//! * `…/v1/UserData`: 1 to 10 `userIdentifiers`, each exactly one of `emailAddress`, `phoneNumber`
//!   (SHA-256, HEX or BASE64 per `encoding`) or `address` (`givenName`, `familyName` hashed;
//!   `regionCode` two upper-case letters, `postalCode`, both unhashed; all four required).
//! * `…/v1/MobileData`: 1 to 10 `mobileIds`, each an IDFA or Android advertising id (a UUID).
//! * `UserIdData`: `userId`, a non-empty string.
//! * `…/v1/Consent`: `adUserData`, `adPersonalization` in `CONSENT_GRANTED`, `CONSENT_DENIED`,
//!   `CONSENT_STATUS_UNSPECIFIED`.
//! * `TermsOfService.customerMatchTermsOfServiceStatus` must be `ACCEPTED` on ingest (`TermsOfService`:
//!   "This must be accepted when ingesting UserData or MobileData").
//! * One data type per request (`ErrorReason.MULTIPLE_DATA_TYPES_NOT_ALLOWED`).
//!
//! HEX hashes must be 64 lower-case hex digits, the form Google's examples use
//! (<https://developers.google.com/data-manager/api/get-started/quickstart/send-audience-members>).
//! Field names must be the lowerCamelCase ones the reference shows; an unknown name is answered as
//! Google's JSON transcoder does (`Invalid JSON payload received. Unknown name …`).
//!
//! A request that breaks these rules is answered 400 `INVALID_ARGUMENT` with `google.rpc.ErrorInfo`
//! and `google.rpc.BadRequest.fieldViolations` (field paths such as
//! `audience_members.audience_members[0].user_data.user_identifiers`, reasons from
//! `…/v1/ErrorReason` such as `INVALID_HEX_ENCODING`, `INVALID_SHA256_FORMAT`,
//! `TOO_MANY_AUDIENCE_MEMBERS`) and logged with `body_valid: false`, so a test can end with
//! `assert_eq!(fake.invalid_requests(), 0)`. Errors that depend on the account's state rather than on
//! the request's shape (an unknown user list, a member [`DataManagerOptions::reject_members`] refuses)
//! are answered the same way but are not invalid requests.
//!
//! # Behaviour
//!
//! * Auth: `Authorization: Bearer <token>` where the token came from `POST /token` for the configured
//!   [`OAuthApp`] and carries the `https://www.googleapis.com/auth/datamanager` scope. Otherwise 401
//!   `UNAUTHENTICATED` (`ErrorInfo.reason` `CREDENTIALS_MISSING` or `ACCESS_TOKEN_EXPIRED`) or 403
//!   `PERMISSION_DENIED` (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`).
//! * An operating account the fake does not know: 403 `PERMISSION_DENIED`. A `productDestinationId`
//!   that is not one of the account's user lists: 400 `INVALID_USER_LIST_ID`; a member whose data
//!   type does not fit the list (mobile ids into a contact-info list): 400 `INVALID_USER_LIST_TYPE`.
//! * Membership: each user list stores the members ingested, each as its set of identifiers.
//!   Ingesting the same member again changes nothing. Removing a member removes every stored member
//!   that shares one of its identifiers, as Customer Match matches people by any identifier; removing
//!   someone absent is not an error. A request with errors changes nothing (`validateOnly` neither).
//! * Limits (<https://developers.google.com/data-manager/api/devguides/limits>): 10,000 members,
//!   10 destinations per request, 10 identifiers per member; per project 300 requests per minute and
//!   100,000 per day (`RateLimit`), beyond which 429 `RESOURCE_EXHAUSTED` with `ErrorInfo.reason`
//!   `RATE_LIMIT_EXCEEDED` and `metadata.quota_limit`. The quota names are not documented; the fake's
//!   are made up.
//! * Faults ([`Fault`]), consumed one per API request before anything else: 429 with or without
//!   `Retry-After`, a 5xx status with Google's body (`INTERNAL`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`),
//!   expiring every access token, or a delay.
//!
//! # Assertions
//!
//! [`DataManagerFake::members`], [`DataManagerFake::requests`], [`DataManagerFake::invalid_requests`],
//! [`DataManagerFake::state`] (counters: token refreshes, 401s, 429s…).

mod server;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The OAuth scope the Data Manager API requires.
pub const DATAMANAGER_SCOPE: &str = "https://www.googleapis.com/auth/datamanager";

/// Google Ads customer id of the default operating account.
pub const DEFAULT_ACCOUNT_ID: &str = "1234567890";

/// The default account's contact-info Customer Match list.
pub const DEFAULT_USER_LIST: &str = "5550001";

/// The default account's mobile-id Customer Match list.
pub const DEFAULT_MOBILE_USER_LIST: &str = "5550002";

/// The default account's user-id Customer Match list.
pub const DEFAULT_USER_ID_LIST: &str = "5550003";

/// Options of a [`DataManagerFake`].
#[derive(Debug, Clone)]
pub struct DataManagerOptions {
    /// The OAuth client whose refresh token `POST /token` accepts.
    pub oauth: OAuthApp,
    /// Number of API requests an access token serves before it expires.
    pub expire_token_after: Option<u32>,
    /// Accounts the credentials may write to, with their user lists.
    pub accounts: Vec<OperatingAccount>,
    /// Per-project request quotas; `None` enforces none.
    pub rate_limit: Option<RateLimit>,
    /// Faults answered to the first API requests, one per request.
    pub faults: Vec<Fault>,
    /// Members refused as `INVALID_AUDIENCE_MEMBER` (any member holding one of these identifiers).
    pub reject_members: Vec<StoredIdentifier>,
    /// Most audience members per request (documented: 10,000).
    pub max_members: usize,
}

impl Default for DataManagerOptions {
    fn default() -> Self {
        Self {
            oauth: OAuthApp::default(),
            expire_token_after: None,
            accounts: vec![OperatingAccount::google_ads(DEFAULT_ACCOUNT_ID)],
            rate_limit: Some(RateLimit::default()),
            faults: Vec::new(),
            reject_members: Vec::new(),
            max_members: 10_000,
        }
    }
}

/// An OAuth client and the refresh token its user granted.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The refresh token; refreshing does not rotate it.
    pub refresh_token: String,
    /// Scopes granted to the refresh token, space separated.
    pub scope: String,
    /// `expires_in` of issued access tokens, in seconds.
    pub expires_in: u64,
}

impl Default for OAuthApp {
    fn default() -> Self {
        Self {
            client_id: "fake-client-id.apps.googleusercontent.com".into(),
            client_secret: "fake-client-secret".into(),
            refresh_token: "1//fake-refresh-token".into(),
            scope: DATAMANAGER_SCOPE.into(),
            expires_in: 3599,
        }
    }
}

/// An account data can be sent to (`Destination.operatingAccount`).
#[derive(Debug, Clone)]
pub struct OperatingAccount {
    /// `ProductAccount.accountType`, e.g. `GOOGLE_ADS`.
    pub account_type: String,
    /// `ProductAccount.accountId`.
    pub account_id: String,
    /// Customer Match user lists of the account.
    pub user_lists: Vec<UserList>,
}

impl OperatingAccount {
    /// A Google Ads account with [`DEFAULT_USER_LIST`], [`DEFAULT_MOBILE_USER_LIST`] and
    /// [`DEFAULT_USER_ID_LIST`].
    pub fn google_ads(account_id: &str) -> Self {
        Self {
            account_type: "GOOGLE_ADS".into(),
            account_id: account_id.into(),
            user_lists: vec![
                UserList { id: DEFAULT_USER_LIST.into(), kind: UserListKind::ContactInfo },
                UserList { id: DEFAULT_MOBILE_USER_LIST.into(), kind: UserListKind::MobileIds },
                UserList { id: DEFAULT_USER_ID_LIST.into(), kind: UserListKind::UserIds },
            ],
        }
    }
}

/// A Customer Match user list.
#[derive(Debug, Clone)]
pub struct UserList {
    /// The id used as `productDestinationId`.
    pub id: String,
    /// What the list is uploaded with.
    pub kind: UserListKind,
}

/// Customer Match lists hold contact information, mobile device ids or the advertiser's user ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserListKind {
    /// `userData` (emails, phones, addresses).
    ContactInfo,
    /// `mobileData` (advertising ids).
    MobileIds,
    /// `userIdData` (the advertiser's user ids).
    UserIds,
}

/// Per-project quotas of the IngestionService.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Requests per rolling minute (documented: 300).
    pub per_minute: u32,
    /// Requests per day, i.e. over the fake's lifetime (documented: 100,000).
    pub per_day: u32,
    /// `Retry-After` sent with a 429 caused by these limits, in seconds; Google does not document one.
    pub retry_after_secs: Option<u64>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_minute: 300, per_day: 100_000, retry_after_secs: None }
    }
}

/// A fault answered instead of (or before) the normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 `RESOURCE_EXHAUSTED`, with this `Retry-After` (seconds) when given.
    TooManyRequests {
        /// Value of the `Retry-After` header.
        retry_after_secs: Option<u64>,
    },
    /// An error status such as 500, 503 or 504, with Google's body for it.
    Status(u16),
    /// Expire every access token issued so far, then serve the request (which gets 401).
    ExpireTokens,
    /// Wait this long, then serve the request normally.
    Delay(Duration),
}

/// One identifier of a stored member, in the form Google received it (hashes as lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoredIdentifier {
    /// `userIdentifiers[].emailAddress`.
    Email(String),
    /// `userIdentifiers[].phoneNumber`.
    Phone(String),
    /// `userIdentifiers[].address`.
    Address {
        /// Hashed given name.
        given_name: String,
        /// Hashed family name.
        family_name: String,
        /// ISO 3166-1 alpha-2, unhashed.
        region_code: String,
        /// Postal code, unhashed.
        postal_code: String,
    },
    /// `mobileData.mobileIds[]`.
    MobileId(String),
    /// `userIdData.userId`.
    UserId(String),
}

/// A member of a user list: the identifiers one `AudienceMember` carried.
pub type StoredMember = BTreeSet<StoredIdentifier>;

/// One API request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Audience members in the body (0 when it could not be read).
    pub members: usize,
    /// Whether the body had the documented shape.
    pub body_valid: bool,
    /// Why it did not.
    pub validation_errors: Vec<String>,
}

/// Running totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// API requests (token requests excluded).
    pub requests: u64,
    /// Token requests.
    pub token_requests: u64,
    /// Access tokens issued.
    pub token_refreshes: u64,
    /// Answers with status 401.
    pub unauthorized: u64,
    /// Answers with status 429.
    pub rate_limited: u64,
    /// Members added to a list (duplicates included).
    pub ingested: u64,
    /// Members named in remove requests that were applied.
    pub removed: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub(crate) scope: String,
    pub(crate) uses: u32,
    pub(crate) expired: bool,
}

/// Everything the fake stores, behind one lock.
#[derive(Debug)]
pub struct DataManagerState {
    /// Members per (account id, user list id).
    pub lists: BTreeMap<(String, String), BTreeSet<StoredMember>>,
    /// Every API request, in arrival order.
    pub requests: Vec<LoggedRequest>,
    /// Running totals.
    pub counters: Counters,
    pub(crate) options: DataManagerOptions,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) tokens: BTreeMap<String, AccessToken>,
    pub(crate) issued: Vec<String>,
    pub(crate) window: VecDeque<Instant>,
    pub(crate) daily_used: u32,
    pub(crate) next_token: u64,
    pub(crate) next_request_id: u64,
}

impl DataManagerState {
    fn new(options: DataManagerOptions) -> Self {
        let mut lists = BTreeMap::new();
        for account in &options.accounts {
            for list in &account.user_lists {
                lists.insert((account.account_id.clone(), list.id.clone()), BTreeSet::new());
            }
        }
        Self {
            lists,
            requests: Vec::new(),
            counters: Counters::default(),
            faults: options.faults.iter().cloned().collect(),
            options,
            tokens: BTreeMap::new(),
            issued: Vec::new(),
            window: VecDeque::new(),
            daily_used: 0,
            next_token: 1,
            next_request_id: 1,
        }
    }

    /// Access tokens issued by `POST /token`, oldest first.
    pub fn issued_tokens(&self) -> &[String] {
        &self.issued
    }

    /// The options the fake runs with; they may be changed while it runs.
    pub fn options_mut(&mut self) -> &mut DataManagerOptions {
        &mut self.options
    }
}

pub(crate) type Shared = Arc<Mutex<DataManagerState>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, DataManagerState> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake Data Manager API, stopped when dropped.
pub struct DataManagerFake {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl DataManagerFake {
    /// Starts the fake on 127.0.0.1 with a random port.
    ///
    /// Panics if no local port can be bound: a test cannot proceed without its fake.
    pub async fn start(options: DataManagerOptions) -> DataManagerFake {
        let shared: Shared = Arc::new(Mutex::new(DataManagerState::new(options)));
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the Google fake");
        let addr = listener.local_addr().expect("local address of the Google fake");
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DataManagerFake { addr, shared, task }
    }

    /// Base URL to use instead of `https://datamanager.googleapis.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Token endpoint to use instead of `https://oauth2.googleapis.com/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Locks the whole state; do not hold it across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, DataManagerState> {
        lock(&self.shared)
    }

    /// The members of a user list of the default account ([`DEFAULT_ACCOUNT_ID`]).
    pub fn members(&self, user_list: &str) -> BTreeSet<StoredMember> {
        self.members_of(DEFAULT_ACCOUNT_ID, user_list)
    }

    /// The members of a user list of an account.
    pub fn members_of(&self, account_id: &str, user_list: &str) -> BTreeSet<StoredMember> {
        self.state().lists.get(&(account_id.to_string(), user_list.to_string())).cloned().unwrap_or_default()
    }

    /// A copy of the request log (API requests only).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    /// Number of API requests whose body did not have the documented shape.
    pub fn invalid_requests(&self) -> usize {
        self.state().requests.iter().filter(|r| !r.body_valid).count()
    }

    /// Queues a fault for the next API request that has none queued before it.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Expires every access token issued so far; the next use answers 401.
    pub fn expire_access_tokens(&self) {
        for token in self.state().tokens.values_mut() {
            token.expired = true;
        }
    }
}

impl Drop for DataManagerFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
