//! Pieces shared by OAuth ad destinations (LinkedIn, Snapchat): config checks, whose errors name
//! the key, and the HTTP client and tokens they send with.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use sluice_core::CredentialStore;

use super::auth::{OAuthConfig, OAuthTokens};

/// An `http://` or `https://` URL with a host.
pub(crate) fn parse_url(key: &'static str, text: &str) -> Result<reqwest::Url, (&'static str, String)> {
    reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or((key, format!("expected an http:// or https:// URL, found {text:?}")))
}

/// A positive request rate under `key`, `default` when unset.
pub(crate) fn request_rate(key: &'static str, value: Option<u32>, default: u32) -> Result<u32, (&'static str, String)> {
    let rate = value.unwrap_or(default);
    if rate == 0 {
        return Err((key, "expected a positive number of requests".into()));
    }
    Ok(rate)
}

/// `max_concurrency`: 1 to `max` requests in flight, `default` when unset.
pub(crate) fn max_concurrency(
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, (&'static str, String)> {
    let max_concurrency = value.unwrap_or(default);
    if max_concurrency == 0 || max_concurrency > max {
        return Err(("max_concurrency", format!("expected 1 to {max} requests in flight, found {max_concurrency}")));
    }
    Ok(max_concurrency)
}

/// `timeout_seconds`: positive, 60 when unset.
pub(crate) fn timeout_seconds(value: Option<u64>) -> Result<u64, (&'static str, String)> {
    let timeout_seconds = value.unwrap_or(60);
    if timeout_seconds == 0 {
        return Err(("timeout_seconds", "expected a positive number of seconds".into()));
    }
    Ok(timeout_seconds)
}

/// Every `oauth.*` value is set (an unset environment variable leaves one empty).
pub(crate) fn check_oauth(oauth: &OAuthConfig) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("oauth.client_id", &oauth.client_id),
        ("oauth.client_secret", &oauth.client_secret),
        ("oauth.refresh_token", &oauth.refresh_token),
    ] {
        if value.trim().is_empty() {
            return Err((key, "is empty (is the environment variable set?)".into()));
        }
    }
    Ok(())
}

/// The HTTP client, access tokens and account key of a destination whose platform limits each app
/// and member (`platform` is `linkedin`, `snapchat`). The account key and the stored access
/// token are named by a hash of the app and refresh token, never by a secret itself.
pub(crate) fn member_session(
    platform: &str,
    api_url: &reqwest::Url,
    token_url: &reqwest::Url,
    timeout_seconds: u64,
    oauth: OAuthConfig,
    credentials: Option<Arc<dyn CredentialStore>>,
) -> Result<(reqwest::Client, OAuthTokens, String), (&'static str, String)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_seconds))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ("api_url", format!("cannot build an HTTP client: {e}")))?;
    let base = api_url.as_str().trim_end_matches('/').to_string();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (oauth.client_id.as_str(), oauth.refresh_token.as_str()).hash(&mut hasher);
    let member = hasher.finish();
    let credential = format!("{platform}/{base}/{}/{member:016x}", oauth.client_id);
    let tokens = OAuthTokens::new(token_url.to_string(), oauth, credential, credentials, http.clone());
    Ok((http, tokens, format!("{platform} {base} member {member:016x}")))
}
