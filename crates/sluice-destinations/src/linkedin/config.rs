//! LinkedIn DMP segment destination settings.
//!
//! Sources: DMP Segment Users
//! <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>
//! (batch of elements, 600 requests per member per minute on `/users`), DMP Segments
//! <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segments>,
//! programmatic refresh tokens
//! <https://learn.microsoft.com/en-us/linkedin/shared/authentication/programmatic-refresh-tokens>.

use serde::Deserialize;

use crate::http::auth::OAuthConfig;
use crate::http::settings::{self, parse_url};

/// LinkedIn's versioned Marketing API root.
pub const DEFAULT_API_URL: &str = "https://api.linkedin.com/rest";
/// LinkedIn's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://www.linkedin.com/oauth/v2/accessToken";
/// The `LinkedIn-Version` sent unless configured. LinkedIn keeps a version active for about a
/// year after its release; set `linkedin_version` when this one is sunset (LinkedIn answers 426).
pub const DEFAULT_VERSION: &str = "202610";
/// Elements per `BATCH_CREATE` request on `/dmpSegments/{id}/users`.
pub const MAX_BATCH_SIZE: usize = 5000;
/// "For the /users endpoint, an application will have a 1 minute limit of 600 requests per user."
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 600;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 2;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 16;

/// `{ type: linkedin, ad_account: "507404993", oauth: { client_id, client_secret, refresh_token } }`.
/// A sync's `object:` is the DMP segment's id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedInConfig {
    /// The member's app credentials; access tokens are obtained with the refresh token
    /// (LinkedIn issues refresh tokens to Marketing Developer Platform partners). The app needs
    /// the `rw_dmp_segments` permission of the Audiences program.
    pub oauth: OAuthConfig,
    /// The sponsored ad account that owns the segments: its number, or
    /// `urn:li:sponsoredAccount:{number}`.
    pub ad_account: String,
    /// API root; default `https://api.linkedin.com/rest`.
    pub api_url: Option<String>,
    /// OAuth token endpoint; default `https://www.linkedin.com/oauth/v2/accessToken`.
    pub token_url: Option<String>,
    /// The `LinkedIn-Version` header, YYYYMM; default 202610.
    pub linkedin_version: Option<String>,
    /// Records per request, 1 to 5,000; default 5,000.
    pub batch_size: Option<usize>,
    /// The member's limit on `/users` requests per minute; default 600.
    pub requests_per_minute: Option<u32>,
    /// Most requests in flight, 1 to 16; default 2.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for a response; default 60.
    pub timeout_seconds: Option<u64>,
}

/// The settings after validation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub api_url: reqwest::Url,
    pub token_url: reqwest::Url,
    /// The ad account's number.
    pub account: String,
    pub version: String,
    pub batch_size: usize,
    pub requests_per_minute: u32,
    pub max_concurrency: usize,
    pub timeout_seconds: u64,
}

/// The ad account's number from `123` or `urn:li:sponsoredAccount:123`.
pub(crate) fn account_number(text: &str) -> Option<String> {
    let text = text.trim();
    let number = text.strip_prefix("urn:li:sponsoredAccount:").unwrap_or(text);
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| number.to_string())
}

/// Checks the config without any I/O; errors name the key.
pub(crate) fn validate(config: &LinkedInConfig) -> Result<Settings, (&'static str, String)> {
    let api_url = parse_url("api_url", config.api_url.as_deref().unwrap_or(DEFAULT_API_URL))?;
    let token_url = parse_url("token_url", config.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL))?;
    let account = account_number(&config.ad_account).ok_or((
        "ad_account",
        format!(
            "expected the sponsored ad account's number (as in Campaign Manager) or urn:li:sponsoredAccount:NUMBER, found {:?}",
            config.ad_account
        ),
    ))?;
    let version = config.linkedin_version.as_deref().unwrap_or(DEFAULT_VERSION).trim().to_string();
    let month = version.get(4..).and_then(|m| m.parse::<u32>().ok());
    if version.len() != 6
        || !version.bytes().all(|b| b.is_ascii_digit())
        || !month.is_some_and(|m| (1..=12).contains(&m))
    {
        return Err((
            "linkedin_version",
            format!("expected a version written YYYYMM such as 202610, found {version:?}"),
        ));
    }
    let batch_size = config.batch_size.unwrap_or(MAX_BATCH_SIZE);
    if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
        return Err((
            "batch_size",
            format!("expected 1 to {MAX_BATCH_SIZE} records (LinkedIn's batch limit), found {batch_size}"),
        ));
    }
    let requests_per_minute =
        settings::request_rate("requests_per_minute", config.requests_per_minute, DEFAULT_REQUESTS_PER_MINUTE)?;
    let max_concurrency = settings::max_concurrency(config.max_concurrency, DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY)?;
    let timeout_seconds = settings::timeout_seconds(config.timeout_seconds)?;
    settings::check_oauth(&config.oauth)?;
    Ok(Settings {
        api_url,
        token_url,
        account,
        version,
        batch_size,
        requests_per_minute,
        max_concurrency,
        timeout_seconds,
    })
}
