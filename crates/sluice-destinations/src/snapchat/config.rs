//! Snapchat Customer List (Snap Audience Match) destination settings.
//!
//! Sources: Customer Lists <https://developers.snap.com/api/marketing-api/Ads-API/customer-lists>
//! (add and remove users, three SHA-256 schemas), Rate Limits
//! <https://developers.snap.com/api/marketing-api/Ads-API/rate-limits> ("the App is able to support
//! an overall average volume of 20 requests/second, individual Access tokens issued by the App can
//! make requests at an average of 10 requests/second"), Authentication
//! <https://developers.snap.com/api/marketing-api/Ads-API/authentication>.

use serde::Deserialize;

use crate::ads::identifiers::{self, Identifier, NormalizeOptions, Platform};
use crate::http::auth::OAuthConfig;
use crate::http::settings::{self, parse_url};

/// The Marketing API root.
pub const DEFAULT_API_URL: &str = "https://adsapi.snapchat.com/v1";
/// Snap's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://accounts.snapchat.com/login/oauth2/access_token";
/// Identifiers (digests) per add or remove request.
pub const MAX_IDENTIFIERS: usize = 100_000;
/// An access token's average request rate.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 2;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 16;

/// `{ type: snapchat, ad_account_id: "…", oauth: { client_id, client_secret, refresh_token } }`.
/// A sync's `object:` is the Customer List segment's id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapchatConfig {
    /// The OAuth app (Business Manager → Business Details) and the refresh token of a member
    /// with a role that may manage the ad account's audiences.
    pub oauth: OAuthConfig,
    /// The ad account that owns the segments (a UUID).
    pub ad_account_id: String,
    /// API root; default `https://adsapi.snapchat.com/v1`.
    pub api_url: Option<String>,
    /// OAuth token endpoint; default `https://accounts.snapchat.com/login/oauth2/access_token`.
    pub token_url: Option<String>,
    /// ISO 3166-1 alpha-2 country of phone numbers written without their country code.
    pub default_country: Option<String>,
    /// Records per request, 1 to 100,000; default 100,000 (fewer when several identifiers are
    /// mapped, so a request never holds more than 100,000 identifiers).
    pub batch_size: Option<usize>,
    /// The access token's average rate; default 10 requests per second.
    pub requests_per_second: Option<u32>,
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
    pub ad_account_id: String,
    pub normalize: NormalizeOptions,
    pub batch_size: usize,
    pub requests_per_second: u32,
    pub max_concurrency: usize,
    pub timeout_seconds: u64,
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Checks the config without any I/O; errors name the key.
pub(crate) fn validate(config: &SnapchatConfig) -> Result<Settings, (&'static str, String)> {
    let api_url = parse_url("api_url", config.api_url.as_deref().unwrap_or(DEFAULT_API_URL))?;
    let token_url = parse_url("token_url", config.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL))?;
    let ad_account_id = config.ad_account_id.trim().to_ascii_lowercase();
    if !is_uuid(&ad_account_id) {
        return Err((
            "ad_account_id",
            format!(
                "expected the ad account's id, a UUID such as 8adc3db7-8148-4fbf-999c-8d2266369d74, found {:?}",
                config.ad_account_id
            ),
        ));
    }
    let normalize = NormalizeOptions { default_country: config.default_country.clone() };
    // The identifier layer reads `default_country` for every phone; check it once here.
    if config.default_country.is_some() {
        identifiers::wire_value(Platform::Snapchat, Identifier::Phone, "+1 650 253 0000", &normalize).map_err(
            |_| ("default_country", "expected a two-letter ISO 3166-1 country code such as US or FR".to_string()),
        )?;
    }
    let batch_size = config.batch_size.unwrap_or(MAX_IDENTIFIERS);
    if batch_size == 0 || batch_size > MAX_IDENTIFIERS {
        return Err((
            "batch_size",
            format!("expected 1 to {MAX_IDENTIFIERS} records (Snapchat's limit per request), found {batch_size}"),
        ));
    }
    let requests_per_second =
        settings::request_rate("requests_per_second", config.requests_per_second, DEFAULT_REQUESTS_PER_SECOND)?;
    let max_concurrency = settings::max_concurrency(config.max_concurrency, DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY)?;
    let timeout_seconds = settings::timeout_seconds(config.timeout_seconds)?;
    settings::check_oauth(&config.oauth)?;
    Ok(Settings {
        api_url,
        token_url,
        ad_account_id,
        normalize,
        batch_size,
        requests_per_second,
        max_concurrency,
        timeout_seconds,
    })
}
