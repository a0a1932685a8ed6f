//! Snapchat HTTP client: refreshed OAuth bearer tokens, captures and error classes.
//!
//! The Marketing API answers every request in an envelope (`request_status`, `request_id`);
//! errors add `debug_message`, `display_message` and `error_code`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use sluice_core::{DestinationError, ErrorClass, WriteContext};

use crate::http::auth::OAuthTokens;
use crate::http::exchange::{exchange, Reply};

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// Sends requests to the Marketing API for one member.
pub(crate) struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    tokens: OAuthTokens,
}

impl Client {
    pub(crate) fn new(base: reqwest::Url, http: reqwest::Client, tokens: OAuthTokens) -> Client {
        Client { base, http, tokens }
    }

    /// The API root without a trailing slash.
    pub(crate) fn base_text(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// Sends one request; a 401 renews the access token once and sends it again.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let token = self.tokens.token().await?.access_token;
        let reply = self.send_once(&method, path, body, &token, context).await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let token = self.tokens.refresh_after_rejection(&token).await?.access_token;
        self.send_once(&method, path, body, &token, context).await
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&str>,
        token: &str,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let url = format!("{}{path}", self.base_text());
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let capture = context.and_then(|c| c.capture.as_ref());
        exchange("Snapchat", method, &url, request, body.unwrap_or(""), capture).await
    }
}

/// Snap's `debug_message` (with `error_code`), else `display_message`, else the body's start.
pub(crate) fn message(reply: &Reply) -> String {
    let body = reply.json();
    let field = |name: &str| body.get(name).and_then(|v| v.as_str()).filter(|t| !t.is_empty());
    let text = match (field("debug_message").or_else(|| field("display_message")), field("error_code")) {
        (Some(text), Some(code)) => format!("{text} ({code})"),
        (Some(text), None) => text.to_string(),
        (None, _) => reply.body.trim().chars().take(MAX_MESSAGE).collect(),
    };
    if text.is_empty() {
        format!("HTTP {} with an empty body", reply.status)
    } else {
        text
    }
}

/// `Retry-After` in seconds, if Snap sends one (its rate-limit page documents none).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The error for a non-2xx answer concerning the whole request.
pub(crate) fn failure(what: &str, reply: &Reply) -> DestinationError {
    let text = message(reply);
    let status = reply.status;
    let (class, message) = match status {
        401 => (
            ErrorClass::Auth,
            format!(
                "Snapchat refused the access token even after refreshing it ({what}, HTTP 401): {text}; \
                 re-authorise the app and update `oauth.refresh_token`"
            ),
        ),
        403 => (
            ErrorClass::Auth,
            format!(
                "Snapchat denied access ({what}, HTTP 403): {text}; the member needs a role on the ad account \
                 that may manage audiences"
            ),
        ),
        404 => (ErrorClass::Config, format!("Snapchat found no such resource ({what}, HTTP 404): {text}")),
        429 => (ErrorClass::RateLimited, format!("Snapchat rate limit ({what}, HTTP 429): {text}")),
        408 | 500..=599 => (ErrorClass::Transient, format!("Snapchat error ({what}, HTTP {status}): {text}")),
        _ => (ErrorClass::Permanent, format!("Snapchat refused the request ({what}, HTTP {status}): {text}")),
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
        let body = r#"{"request_status":"ERROR","request_id":"5ebc40","debug_message":"Resource can not be found",
            "display_message":"We're sorry, but the requested resource is not available at this time","error_code":"E3003"}"#;
        let error = failure("GET /segments/1", &reply(404, body));
        assert_eq!(error.class, ErrorClass::Config);
        assert!(error.message.contains("Resource can not be found (E3003)"), "{}", error.message);
        assert_eq!(failure("x", &reply(401, "unauthorized")).class, ErrorClass::Auth);
        assert_eq!(failure("x", &reply(503, "")).class, ErrorClass::Transient);
        assert_eq!(failure("x", &reply(400, "{}")).class, ErrorClass::Permanent);
        assert_eq!(message(&reply(400, "")), "HTTP 400 with an empty body");
        let mut throttled = reply(429, "{}");
        throttled.headers.insert(RETRY_AFTER, "4".parse().unwrap());
        let error = failure("x", &throttled);
        assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(4))));
    }
}
