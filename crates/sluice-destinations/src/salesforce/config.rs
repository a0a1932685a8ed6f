//! Salesforce destination settings.

use serde::Deserialize;

use crate::http::auth::OAuthConfig;

/// Salesforce's production login URL (sandboxes use `https://test.salesforce.com`).
pub const DEFAULT_ENDPOINT: &str = "https://login.salesforce.com";
/// The REST API version used unless configured.
pub const DEFAULT_API_VERSION: &str = "61.0";
/// sObject Collections take at most 200 records per request.
pub const COLLECTION_LIMIT: usize = 200;
/// Records per write with `transport: bulk`, unless configured.
pub const DEFAULT_BULK_BATCH_SIZE: usize = 10_000;
/// The largest `bulk_batch_size` accepted (one Bulk API 2.0 job holds at most 150,000,000 records,
/// but a batch is held in memory).
pub const MAX_BULK_BATCH_SIZE: usize = 100_000;
/// Changes per run above which `auto` uses Bulk API 2.0 (see [`Transport::Auto`]).
pub const DEFAULT_BULK_THRESHOLD: usize = 2_000;
/// Enterprise Edition's base daily API request allocation.
pub const DEFAULT_REQUESTS_PER_24_HOURS: u32 = 100_000;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The largest `max_concurrency` accepted: Salesforce allows 25 concurrent long-running requests.
pub const MAX_CONCURRENCY: usize = 25;
/// How long a Bulk API 2.0 job may take before the write is given up, unless configured.
pub const DEFAULT_BULK_TIMEOUT_SECONDS: u64 = 1800;

/// How records travel to Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Bulk API 2.0 for runs of more than `bulk_threshold` changes, sObject Collections
    /// otherwise.
    #[default]
    Auto,
    /// sObject Collections: 200 records per request, synchronous per-record results.
    Collections,
    /// Bulk API 2.0 ingest jobs of up to `bulk_batch_size` records.
    Bulk,
}

/// `jwt: { client_id, username, private_key }`: the OAuth 2.0 JWT bearer flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The connected app's consumer key.
    pub client_id: String,
    /// The Salesforce user the integration acts as.
    pub username: String,
    /// The PEM private key whose certificate is uploaded to the connected app; never printed.
    pub private_key: String,
    /// The assertion's `aud`. Default: for a My Domain endpoint, `https://login.salesforce.com`
    /// (`https://test.salesforce.com` for sandboxes); otherwise the endpoint itself.
    pub audience: Option<String>,
}

/// `{ type: salesforce, oauth: { client_id, client_secret, refresh_token } }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// A connected app's credentials and a refresh token. Exactly one of `oauth` and `jwt`.
    pub oauth: Option<OAuthConfig>,
    /// The JWT bearer flow: a connected app with a certificate, and a pre-authorized user.
    pub jwt: Option<JwtConfig>,
    /// Login URL; default `https://login.salesforce.com`. The instance URL comes with the token.
    pub endpoint: Option<String>,
    /// OAuth token endpoint; default `{endpoint}/services/oauth2/token`.
    pub token_url: Option<String>,
    /// REST API version; default "61.0".
    pub api_version: Option<String>,
    /// `auto` (default), `collections` or `bulk`.
    pub transport: Option<Transport>,
    /// Changes per run above which `auto` uses Bulk API 2.0; default 2000 (see [`Transport::Auto`]).
    pub bulk_threshold: Option<usize>,
    /// Records per Bulk API 2.0 job with `transport: bulk`; default 10,000.
    pub bulk_batch_size: Option<usize>,
    /// The org's daily API request allocation; default 100,000.
    pub requests_per_24_hours: Option<u32>,
    /// Most requests in flight, 1 to 25; default 4.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for a response; default 60.
    pub timeout_seconds: Option<u64>,
    /// Seconds a Bulk API 2.0 job may take; default 1800.
    pub bulk_timeout_seconds: Option<u64>,
}
