//! LinkedIn HTTP client: refreshed OAuth bearer tokens, the headers every versioned call needs,
//! captures and error classes.
//!
//! Every `/rest` request carries `LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0`
//! ("All API requests are represented in protocol 2.0.0 and require the header", DMP Segments
//! page). Errors follow <https://learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts/error-handling>:
//! `{"message", "serviceErrorCode", "status"}`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use sluice_core::{DestinationError, ErrorClass, WriteContext};

use crate::http::auth::OAuthTokens;
use crate::http::exchange::{exchange, Reply};

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// Sends requests to LinkedIn's versioned API for one member.
pub(crate) struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    tokens: OAuthTokens,
    version: String,
}

impl Client {
    pub(crate) fn new(base: reqwest::Url, http: reqwest::Client, tokens: OAuthTokens, version: String) -> Client {
        Client { base, http, tokens, version }
    }

    /// The API root without a trailing slash.
    pub(crate) fn base_text(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Sends one request (`path` may carry a query string). A 401 renews the access token once
    /// and sends the request again; every HTTP answer is returned as is.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        batch_create: bool,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let token = self.tokens.token().await?.access_token;
        let reply = self.send_once(&method, path, body, batch_create, &token, context).await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let token = self.tokens.refresh_after_rejection(&token).await?.access_token;
        self.send_once(&method, path, body, batch_create, &token, context).await
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&str>,
        batch_create: bool,
        token: &str,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let url = format!("{}{path}", self.base_text());
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(token)
            .header("LinkedIn-Version", &self.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .header(reqwest::header::ACCEPT, "application/json");
        if batch_create {
            request = request.header("X-RestLi-Method", "BATCH_CREATE");
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let capture = context.and_then(|c| c.capture.as_ref());
        exchange("LinkedIn", method, &url, request, body.unwrap_or(""), capture).await
    }
}

/// LinkedIn's `message`, or the start of the body.
pub(crate) fn message(reply: &Reply) -> String {
    let text = match reply.json().get("message").and_then(|m| m.as_str()) {
        Some(text) => text.to_string(),
        None => reply.body.trim().chars().take(MAX_MESSAGE).collect(),
    };
    if text.is_empty() {
        format!("HTTP {} with an empty body", reply.status)
    } else {
        text
    }
}

/// The wait LinkedIn asks for in `Retry-After` (seconds), if it sends one; LinkedIn documents no
/// such header, so without one the driver backs off on its own.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The error for a non-2xx answer concerning the whole request.
pub(crate) fn failure(what: &str, version: &str, reply: &Reply) -> DestinationError {
    let text = message(reply);
    let status = reply.status;
    let (class, message) = match status {
        401 => (
            ErrorClass::Auth,
            format!(
                "LinkedIn refused the access token even after refreshing it ({what}, HTTP 401): {text}; \
                 re-authorise the app and update `oauth.refresh_token`"
            ),
        ),
        403 => (
            ErrorClass::Auth,
            format!(
                "LinkedIn denied access ({what}, HTTP 403): {text}; the app needs the rw_dmp_segments permission \
                 (Audiences program) and the member a role other than VIEWER on the ad account"
            ),
        ),
        404 => (ErrorClass::Config, format!("LinkedIn found no such resource ({what}, HTTP 404): {text}")),
        426 => (
            ErrorClass::Config,
            format!(
                "LinkedIn no longer serves API version {version} ({what}, HTTP 426): {text}; \
                 set `linkedin_version` to an active version (YYYYMM)"
            ),
        ),
        429 => (ErrorClass::RateLimited, format!("LinkedIn rate limit ({what}, HTTP 429): {text}")),
        408 | 500..=599 => (ErrorClass::Transient, format!("LinkedIn error ({what}, HTTP {status}): {text}")),
        _ => (ErrorClass::Permanent, format!("LinkedIn refused the request ({what}, HTTP {status}): {text}")),
    };
    let retry_after = if class.is_retryable() { retry_after(&reply.headers) } else { None };
    DestinationError { class, message, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, headers: HeaderMap::new(), body: body.into() }
    }

    #[test]
    fn answers_are_classified() {
        let body = r#"{"message":"Empty oauth2_access_token","serviceErrorCode":401,"status":401}"#;
        let error = failure("POST x", "202610", &reply(401, body));
        assert_eq!(error.class, ErrorClass::Auth);
        assert!(error.message.contains("Empty oauth2_access_token"), "{}", error.message);
        assert_eq!(failure("x", "202610", &reply(426, "{}")).class, ErrorClass::Config);
        assert!(failure("x", "202001", &reply(426, "{}")).message.contains("version 202001"));
        assert_eq!(failure("x", "v", &reply(502, "")).class, ErrorClass::Transient);
        assert_eq!(failure("x", "v", &reply(400, "[1]")).class, ErrorClass::Permanent);
        assert_eq!(message(&reply(400, "")), "HTTP 400 with an empty body");
        let mut throttled = reply(429, r#"{"message":"Resource level throttle"}"#);
        throttled.headers.insert(RETRY_AFTER, "3".parse().unwrap());
        let error = failure("x", "v", &throttled);
        assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(3))));
    }
}
