//! Meta Custom Audiences destination settings.

use serde::Deserialize;

/// Graph API host.
pub const DEFAULT_API_URL: &str = "https://graph.facebook.com";
/// The Graph API version Meta documents at the time of writing (the custom audience guides and
/// references are for v25.0).
pub const DEFAULT_API_VERSION: &str = "v25.0";
/// "You can add an unlimited number of records to an audience, but only up to 10000 at a time."
/// (Customer File Custom Audiences guide.)
pub const MAX_BATCH_SIZE: usize = 10_000;
/// Calls per rolling hour of the custom-audience business use case, per ad account: "5000 + 40 ×
/// Number of Active Custom Audiences" for apps with standard access, "190000 + 40 × …" with
/// advanced access, never more than 700,000 (Graph API "Rate Limiting", Custom Audience). The
/// default is the floor every app has.
pub const DEFAULT_REQUESTS_PER_HOUR: u32 = 5_000;
/// "…but will never exceed 700000".
pub const MAX_REQUESTS_PER_HOUR: u32 = 700_000;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 16;
/// Seconds to wait for an answer: a 10,000-row upload is a few megabytes.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 120;
/// Seconds to wait for a connection.
pub const DEFAULT_CONNECT_TIMEOUT_SECONDS: u64 = 10;

/// `{ type: meta, access_token: "${META_TOKEN}", ad_account_id: "act_123" }`; a sync's `object:`
/// is the custom audience's id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// A system user's access token with the `ads_management` permission on the ad account. Meta
    /// has no refresh tokens: when it expires or is revoked, runs stop with an auth error until a
    /// new one is generated. Never printed or stored.
    pub access_token: String,
    /// The app secret, when the app requires `appsecret_proof` ("Require App Secret"); used to
    /// sign each call, never sent. Optional.
    pub app_secret: Option<String>,
    /// Graph API version, `vMAJOR.MINOR`; default v25.0.
    pub api_version: Option<String>,
    /// Graph API base URL; default `https://graph.facebook.com`.
    pub api_url: Option<String>,
    /// The ad account (`act_123` or `123`) the audiences belong to. It names the rate budget
    /// shared by the account's syncs and lets `describe` list its customer-list audiences.
    pub ad_account_id: Option<String>,
    /// ISO 3166-1 alpha-2 country for phone numbers written without their country code, e.g. FR.
    pub default_country: Option<String>,
    /// Members per request, 1 to 10,000; default 10,000.
    pub batch_size: Option<usize>,
    /// The ad account's custom-audience call budget per hour; default 5,000 (standard access);
    /// with advanced access, 190,000 + 40 × active custom audiences, at most 700,000.
    pub requests_per_hour: Option<u32>,
    /// Most requests in flight, 1 to 16; default 4.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for an answer; default 120.
    pub timeout_seconds: Option<u64>,
    /// Seconds to wait for a connection; default 10.
    pub connect_timeout_seconds: Option<u64>,
    /// On a full sync (first run, `sluice reset`, a changed destination or audience) in `audience`
    /// mode, upload the members with `/usersreplace` in one session, so members the audience held
    /// from before are dropped. Default false: each batch of a replace session is acknowledged
    /// before the session ends, so a run that stops mid-session leaves the audience to Meta's
    /// handling of unfinished sessions until `sluice reset`; `/users` batches are final.
    pub replace_on_full_sync: Option<bool>,
}
