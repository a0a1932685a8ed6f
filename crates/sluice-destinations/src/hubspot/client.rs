//! HubSpot HTTP client: bearer auth (private app or refreshed OAuth), captures and error classes.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{CaptureSink, DestinationError, ErrorClass, WriteContext};

use crate::http::auth::OAuthTokens;
use crate::http::exchange::exchange;

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// How requests are authenticated.
pub(crate) enum Auth {
    /// A private app's token; it does not expire, so a 401 means it was revoked.
    Token(String),
    /// OAuth access tokens, renewed once when HubSpot answers 401.
    OAuth(Box<OAuthTokens>),
}

pub(crate) use crate::http::exchange::Reply;

/// Sends requests to one HubSpot account.
pub(crate) struct Client {
    pub(crate) base: reqwest::Url,
    http: reqwest::Client,
    auth: Auth,
}

impl Client {
    pub(crate) fn new(base: reqwest::Url, http: reqwest::Client, auth: Auth) -> Client {
        Client { base, http, auth }
    }

    /// The base URL as text, without a trailing slash.
    pub(crate) fn base_text(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    async fn bearer(&self) -> Result<String, DestinationError> {
        match &self.auth {
            Auth::Token(token) => Ok(token.clone()),
            Auth::OAuth(tokens) => Ok(tokens.token().await?.access_token),
        }
    }

    /// Sends one request; with OAuth, a 401 renews the access token and sends it once more.
    /// Transport failures are transient errors; every HTTP answer is returned as is.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let capture = context.and_then(|c| c.capture.as_ref());
        let mut token = self.bearer().await?;
        let mut reply = self.send_once(method.clone(), path, body, &token, capture).await?;
        if reply.status == 401 {
            if let Auth::OAuth(tokens) = &self.auth {
                token = tokens.refresh_after_rejection(&token).await?.access_token;
                reply = self.send_once(method, path, body, &token, capture).await?;
            }
        }
        if let Some(rate) = context.and_then(|c| c.rate.as_ref()) {
            // HubSpot says how many requests its rolling window still allows. The window rolls,
            // so when none are left a slot frees after about interval / max, not a whole
            // interval: every sync of the account waits that long.
            let number = |name: &str| reply.headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
            if let (Some(remaining), Some(interval), Some(max)) = (
                number("x-hubspot-ratelimit-remaining"),
                number("x-hubspot-ratelimit-interval-milliseconds"),
                number("x-hubspot-ratelimit-max"),
            ) {
                rate.report(remaining, std::time::Duration::from_millis(interval / max.max(1)));
            }
        }
        Ok(reply)
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        token: &str,
        capture: Option<&CaptureSink>,
    ) -> Result<Reply, DestinationError> {
        let url = format!("{}{path}", self.base_text());
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        exchange("HubSpot", &method, &url, request, body.unwrap_or(""), capture).await
    }
}

/// HubSpot's `message` field, or the start of the body.
pub(crate) fn message(reply: &Reply) -> String {
    let parsed = reply.json();
    let text = match parsed.get("message") {
        Some(Json::String(s)) => s.clone(),
        _ => reply.body.trim().chars().take(MAX_MESSAGE).collect(),
    };
    if text.is_empty() {
        format!("HTTP {} with an empty body", reply.status)
    } else {
        text
    }
}

/// The wait HubSpot asks for: `Retry-After` (seconds), else the rate-limit window.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header(RETRY_AFTER.as_str()).and_then(|t| t.parse::<f64>().ok()) {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds));
        }
    }
    // Without Retry-After, the rolling window's length is the longest wait that can be needed.
    header("x-hubspot-ratelimit-interval-milliseconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_millis)
}

/// Scopes a 403 names (`errors[].context.requiredGranularScopes` or `requiredScopes`).
fn missing_scopes(body: &Json) -> Vec<String> {
    let mut scopes = Vec::new();
    let errors = body.get("errors").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for context in errors.iter().filter_map(|e| e.get("context")).chain(body.get("context")) {
        for key in ["requiredGranularScopes", "requiredScopes", "requiredAllGranularScopes"] {
            for scope in context.get(key).and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str) {
                if !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_string());
                }
            }
        }
    }
    scopes
}

/// The error for a non-2xx answer that concerns the whole request. 207 and 409 are read by the caller.
pub(crate) fn failure(what: &str, reply: &Reply) -> DestinationError {
    let text = message(reply);
    let status = reply.status;
    let (class, message) = match status {
        401 => (
            ErrorClass::Auth,
            format!("HubSpot refused the credentials ({what}, HTTP 401): {text}; check `token` or the `oauth` block"),
        ),
        403 => {
            let scopes = missing_scopes(&reply.json());
            let scopes = if scopes.is_empty() {
                String::new()
            } else {
                format!("; grant the app these scopes: {}", scopes.join(", "))
            };
            (ErrorClass::Auth, format!("HubSpot denied access ({what}, HTTP 403): {text}{scopes}"))
        }
        429 => (ErrorClass::RateLimited, format!("HubSpot rate limit ({what}, HTTP 429): {text}")),
        408 | 500..=599 => (ErrorClass::Transient, format!("HubSpot error ({what}, HTTP {status}): {text}")),
        _ => (ErrorClass::Permanent, format!("HubSpot refused the request ({what}, HTTP {status}): {text}")),
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
    fn forbidden_names_the_missing_scopes() {
        let body = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.",
            "category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.",
            "context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]}"#;
        let error = failure("POST batch/upsert", &reply(403, body));
        assert_eq!(error.class, ErrorClass::Auth);
        assert!(error.message.contains("crm.objects.contacts.write"), "{}", error.message);
    }

    #[test]
    fn odd_bodies_do_not_panic() {
        assert_eq!(failure("x", &reply(502, "<html>bad gateway</html>")).class, ErrorClass::Transient);
        assert_eq!(message(&reply(400, "")), "HTTP 400 with an empty body");
        assert_eq!(failure("x", &reply(400, "[1,2]")).class, ErrorClass::Permanent);
    }

    #[test]
    fn rate_limit_waits_fall_back_to_the_window() {
        let mut headers = HeaderMap::new();
        headers.insert("x-hubspot-ratelimit-interval-milliseconds", "10000".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(10)));
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    }
}
