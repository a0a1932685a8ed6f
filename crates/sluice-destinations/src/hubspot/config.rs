//! HubSpot destination settings.

use serde::Deserialize;

use crate::http::auth::OAuthConfig;

/// HubSpot's API base URL.
pub const DEFAULT_ENDPOINT: &str = "https://api.hubapi.com";
/// HubSpot's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://api.hubapi.com/oauth/v1/token";
/// HubSpot's batch endpoints take at most 100 inputs.
pub const MAX_BATCH_SIZE: usize = 100;
/// Private apps on Professional/Enterprise: 190 requests per 10 seconds (Free/Starter: 100).
pub const DEFAULT_REQUESTS_PER_10_SECONDS: u32 = 190;
/// Private apps on Professional: 650,000 requests per day (Free/Starter 250,000, Enterprise 1,000,000).
pub const DEFAULT_DAILY_LIMIT: u32 = 650_000;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 64;

/// `{ type: hubspot, token: "${HUBSPOT_TOKEN}" }` or `{ type: hubspot, oauth: { client_id, client_secret, refresh_token } }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    /// A private app's access token (`pat-…`). Exactly one of `token` and `oauth` is required.
    /// Never printed or stored.
    pub token: Option<String>,
    /// A public app's OAuth credentials; access tokens are obtained with the refresh token.
    pub oauth: Option<OAuthConfig>,
    /// API base URL; default `https://api.hubapi.com`.
    pub endpoint: Option<String>,
    /// OAuth token endpoint; default `https://api.hubapi.com/oauth/v1/token`.
    pub token_url: Option<String>,
    /// Records per batch request, 1 to 100; default 100.
    pub batch_size: Option<usize>,
    /// The account's burst limit; default 190 (private apps on Professional/Enterprise; Free and
    /// Starter get 100).
    pub requests_per_10_seconds: Option<u32>,
    /// The account's daily limit; default 650,000 (Professional; Free/Starter 250,000,
    /// Enterprise 1,000,000).
    pub daily_limit: Option<u32>,
    /// Most requests in flight, 1 to 64; default 4.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for a response; default 30.
    pub timeout_seconds: Option<u64>,
}
