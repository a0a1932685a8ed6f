//! Salesforce HTTP client: OAuth access tokens with their instance URL, captures and error classes.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{CaptureSink, DestinationError, ErrorClass};

use super::jwt::JwtTokens;
use crate::http::auth::{AccessToken, OAuthTokens};
use crate::http::exchange::exchange;

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// Where access tokens come from.
pub(crate) enum Tokens {
    /// The refresh-token grant.
    Refresh(Box<OAuthTokens>),
    /// The JWT bearer flow.
    Jwt(Box<JwtTokens>),
}

impl Tokens {
    async fn token(&self) -> Result<AccessToken, DestinationError> {
        match self {
            Tokens::Refresh(tokens) => tokens.token().await,
            Tokens::Jwt(tokens) => tokens.token().await,
        }
    }

    async fn refresh_after_rejection(&self, rejected: &str) -> Result<AccessToken, DestinationError> {
        match self {
            Tokens::Refresh(tokens) => tokens.refresh_after_rejection(rejected).await,
            Tokens::Jwt(tokens) => tokens.refresh_after_rejection(rejected).await,
        }
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    None,
    Json(&'a str),
    Csv(&'a str),
}

impl Body<'_> {
    fn text(&self) -> &str {
        match self {
            Body::None => "",
            Body::Json(text) | Body::Csv(text) => text,
        }
    }
}

pub(crate) use crate::http::exchange::Reply;

/// Sends requests to one Salesforce org.
pub(crate) struct Client {
    /// The login URL, used when the token response names no instance.
    login: String,
    /// `/services/data/v61.0`
    data_path: String,
    http: reqwest::Client,
    tokens: Tokens,
}

impl Client {
    pub(crate) fn new(login: String, api_version: &str, http: reqwest::Client, tokens: Tokens) -> Client {
        Client { login, data_path: format!("/services/data/v{api_version}"), http, tokens }
    }

    fn instance(&self, token: &AccessToken) -> String {
        token.instance_url.as_deref().unwrap_or(&self.login).trim_end_matches('/').to_string()
    }

    /// Sends one request to `{instance}/services/data/vXX.X{path}`; a 401 renews the access
    /// token and sends it once more. Transport failures are transient errors; every HTTP answer
    /// is returned as is.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        capture: Option<&CaptureSink>,
    ) -> Result<Reply, DestinationError> {
        let token = self.tokens.token().await?;
        let reply = self.send_once(method.clone(), path, body, &token, capture).await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let token = self.tokens.refresh_after_rejection(&token.access_token).await?;
        self.send_once(method, path, body, &token, capture).await
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        token: &AccessToken,
        capture: Option<&CaptureSink>,
    ) -> Result<Reply, DestinationError> {
        let url = format!("{}{}{path}", self.instance(token), self.data_path);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&token.access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        match body {
            Body::None => {}
            Body::Json(text) => {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(text.to_string())
            }
            Body::Csv(text) => {
                request = request.header(reqwest::header::CONTENT_TYPE, "text/csv").body(text.to_string())
            }
        }
        exchange("Salesforce", &method, &url, request, body.text(), capture).await
    }
}

/// Salesforce's error codes and messages (`[{"errorCode","message"}]`), or the start of the body.
pub(crate) fn message(reply: &Reply) -> (Option<String>, String) {
    let parsed = reply.json();
    let first = match &parsed {
        Json::Array(items) => items.first().cloned(),
        Json::Object(_) => Some(parsed.clone()),
        _ => None,
    };
    if let Some(first) = first {
        let code = first.get("errorCode").and_then(Json::as_str).map(str::to_string);
        if let Some(message) = first.get("message").and_then(Json::as_str) {
            return (code, message.to_string());
        }
    }
    let text: String = reply.body.trim().chars().take(MAX_MESSAGE).collect();
    if text.is_empty() {
        (None, format!("HTTP {} with an empty body", reply.status))
    } else {
        (None, text)
    }
}

/// The error for a non-2xx answer that concerns the whole request.
pub(crate) fn failure(what: &str, reply: &Reply) -> DestinationError {
    let (code, text) = message(reply);
    let text = match &code {
        Some(code) => format!("{code}: {text}"),
        None => text,
    };
    let status = reply.status;
    let (class, message) = match (status, code.as_deref()) {
        (401, _) => (
            ErrorClass::Auth,
            format!("Salesforce refused the credentials ({what}, HTTP 401): {text}; check the `oauth` or `jwt` block"),
        ),
        (403, Some("REQUEST_LIMIT_EXCEEDED")) | (429, _) => {
            (ErrorClass::RateLimited, format!("Salesforce API limit reached ({what}, HTTP {status}): {text}"))
        }
        (403, _) => (
            ErrorClass::Auth,
            format!("Salesforce denied access ({what}, HTTP 403): {text}; check the integration user's permissions"),
        ),
        (408 | 500..=599, _) => (ErrorClass::Transient, format!("Salesforce error ({what}, HTTP {status}): {text}")),
        _ => (ErrorClass::Permanent, format!("Salesforce refused the request ({what}, HTTP {status}): {text}")),
    };
    let retry_after = if class.is_retryable() { retry_after(&reply.headers) } else { None };
    DestinationError { class, message, retry_after }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, headers: HeaderMap::new(), body: body.into() }
    }

    #[test]
    fn errors_are_classified_by_status_and_code() {
        let limit = r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let error = failure("GET x", &reply(403, limit));
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert!(error.message.contains("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."), "{}", error.message);
        let session = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        assert_eq!(failure("x", &reply(401, session)).class, ErrorClass::Auth);
        assert_eq!(
            failure("x", &reply(403, r#"[{"message":"no","errorCode":"INSUFFICIENT_ACCESS"}]"#)).class,
            ErrorClass::Auth
        );
        assert_eq!(failure("x", &reply(503, "<html>down</html>")).class, ErrorClass::Transient);
        assert_eq!(failure("x", &reply(400, "")).class, ErrorClass::Permanent);
        assert_eq!(message(&reply(400, "")).1, "HTTP 400 with an empty body");
    }
}
