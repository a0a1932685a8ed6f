//! Data Manager API client: bearer tokens renewed once on 401, captures, and `google.rpc.Status`
//! errors read into error classes and per-member refusals.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{DestinationError, ErrorClass, WriteContext};

use crate::http::auth::OAuthTokens;
use crate::http::exchange::{exchange, Reply};

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// `ErrorReason`s that say the sync's settings cannot work, whatever the members
/// (<https://developers.google.com/data-manager/api/reference/rest/v1/ErrorReason>).
const CONFIG_REASONS: [&str; 6] = [
    "INVALID_USER_LIST_ID",
    "INVALID_USER_LIST_TYPE",
    "INVALID_DESTINATION",
    "TERMS_AND_CONDITIONS_NOT_SIGNED",
    "DATA_PARTNER_USER_LIST_MUTATE_NOT_ALLOWED",
    "DIFFERENT_LOGIN_ACCOUNTS_NOT_ALLOWED_FOR_DATA_PARTNER",
];

/// Sends requests to the Data Manager API.
pub(crate) struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    tokens: OAuthTokens,
}

impl Client {
    pub(crate) fn new(base: reqwest::Url, http: reqwest::Client, tokens: OAuthTokens) -> Client {
        Client { base, http, tokens }
    }

    /// The base URL as text, without a trailing slash.
    pub(crate) fn base_text(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// An access token, obtained or renewed when needed: proves the OAuth credentials work.
    pub(crate) async fn token(&self) -> Result<(), DestinationError> {
        self.tokens.token().await.map(|_| ())
    }

    /// POSTs a JSON body; a 401 renews the access token and sends once more. Transport failures
    /// are transient errors; every HTTP answer is returned as is.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &str,
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let capture = context.and_then(|c| c.capture.as_ref());
        let url = format!("{}{path}", self.base_text());
        let mut token = self.tokens.token().await?.access_token;
        let mut attempt = 0;
        loop {
            let request = self
                .http
                .request(Method::POST, &url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            let reply = exchange("Google Data Manager API", &Method::POST, &url, request, body, capture).await?;
            if reply.status != 401 || attempt > 0 {
                return Ok(reply);
            }
            attempt += 1;
            token = self.tokens.refresh_after_rejection(&token).await?.access_token;
        }
    }
}

/// A `google.rpc.Status` error body, read.
#[derive(Debug, Default)]
pub(crate) struct RpcError {
    pub(crate) status: String,
    pub(crate) message: String,
    /// `ErrorInfo.reason`, when given.
    pub(crate) reason: Option<String>,
    /// `BadRequest.fieldViolations` as (field, reason, description).
    pub(crate) violations: Vec<(String, String, String)>,
    /// `RetryInfo.retryDelay`, when given.
    pub(crate) retry_delay: Option<Duration>,
}

impl RpcError {
    pub(crate) fn read(reply: &Reply) -> RpcError {
        let body = reply.json();
        let error = body.get("error").cloned().unwrap_or(Json::Null);
        let text = |v: &Json, key: &str| v.get(key).and_then(Json::as_str).unwrap_or("").to_string();
        let mut parsed =
            RpcError { status: text(&error, "status"), message: text(&error, "message"), ..Default::default() };
        if parsed.message.is_empty() {
            parsed.message = reply.body.trim().chars().take(MAX_MESSAGE).collect();
        }
        for detail in error.get("details").and_then(Json::as_array).into_iter().flatten() {
            let kind = text(detail, "@type");
            if kind.ends_with("google.rpc.ErrorInfo") {
                parsed.reason.get_or_insert_with(|| text(detail, "reason"));
            } else if kind.ends_with("google.rpc.BadRequest") {
                for violation in detail.get("fieldViolations").and_then(Json::as_array).into_iter().flatten() {
                    parsed.violations.push((
                        text(violation, "field"),
                        text(violation, "reason"),
                        text(violation, "description"),
                    ));
                }
            } else if kind.ends_with("google.rpc.RetryInfo") {
                parsed.retry_delay = detail.get("retryDelay").and_then(Json::as_str).and_then(parse_duration);
            }
        }
        parsed
    }

    /// The violations that name one audience member, by the member's index in the request.
    pub(crate) fn member_violations(&self) -> BTreeMap<usize, String> {
        let mut found: BTreeMap<usize, String> = BTreeMap::new();
        for (field, reason, description) in &self.violations {
            let Some(index) = member_index(field) else { continue };
            let text = match (reason.is_empty(), description.is_empty()) {
                (false, false) => format!("{reason}: {description}"),
                (false, true) => reason.clone(),
                _ => description.clone(),
            };
            let entry = found.entry(index).or_default();
            if !entry.is_empty() {
                entry.push_str("; ");
            }
            entry.push_str(&text);
        }
        found
    }

    /// The message with the first violations, for whole-request errors.
    fn summary(&self) -> String {
        let mut text = if self.message.is_empty() { self.status.clone() } else { self.message.clone() };
        for (field, reason, description) in self.violations.iter().take(3) {
            let detail = match (reason.is_empty(), description.is_empty()) {
                (false, false) => format!("{reason}: {description}"),
                (false, true) => reason.clone(),
                _ => description.clone(),
            };
            text.push_str(&format!(" [{field}: {detail}]"));
        }
        text.chars().take(MAX_MESSAGE).collect()
    }
}

/// `audience_members.audience_members[12].user_data…` → 12.
fn member_index(field: &str) -> Option<usize> {
    let start = field.rfind("audience_members[")? + "audience_members[".len();
    let end = field[start..].find(']')? + start;
    field[start..end].parse().ok()
}

/// A protobuf JSON duration such as `"30s"` or `"1.5s"`.
fn parse_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The error for an answer that is not a success, classified for the delivery driver.
pub(crate) fn failure(what: &str, reply: &Reply) -> DestinationError {
    let error = RpcError::read(reply);
    let status = reply.status;
    let text = error.summary();
    let reason = error.reason.clone().unwrap_or_default();
    let (class, message) = match (status, error.status.as_str()) {
        (401, _) | (_, "UNAUTHENTICATED") => (
            ErrorClass::Auth,
            format!("Google refused the credentials ({what}, HTTP {status}): {text}; check the `oauth` block"),
        ),
        (403, _) | (_, "PERMISSION_DENIED") => {
            let hint = if reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
                format!("; the refresh token must be granted the {} scope", super::config::SCOPE)
            } else {
                "; check that the credentials' Google account can manage `operating_account` (and `login_account`)"
                    .to_string()
            };
            (ErrorClass::Auth, format!("Google denied access ({what}, HTTP {status}): {text}{hint}"))
        }
        (429, _) | (_, "RESOURCE_EXHAUSTED") => {
            (ErrorClass::RateLimited, format!("Google quota exceeded ({what}, HTTP {status}): {text}"))
        }
        (500..=599, _) | (_, "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED") => {
            (ErrorClass::Transient, format!("Google error ({what}, HTTP {status}): {text}"))
        }
        (404, _) => (ErrorClass::Config, format!("Google does not know {what} (HTTP 404): {text}; check `api_url`")),
        _ if CONFIG_REASONS.contains(&reason.as_str())
            || error.violations.iter().any(|(_, r, _)| CONFIG_REASONS.contains(&r.as_str())) =>
        {
            (ErrorClass::Config, format!("Google refused the sync's settings ({what}, HTTP {status}): {text}"))
        }
        _ => (ErrorClass::Permanent, format!("Google refused the request ({what}, HTTP {status}): {text}")),
    };
    let retry_after = if class.is_retryable() { retry_after(&reply.headers).or(error.retry_delay) } else { None };
    DestinationError { class, message, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, headers: HeaderMap::new(), body: body.into() }
    }

    #[test]
    fn member_violations_are_read_from_the_documented_error() {
        // The quickstart's example of a plain-text email, verbatim.
        let body = r#"{"error":{"code":400,"message":"There was a problem with the request.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_ARGUMENT","domain":"datamanager.googleapis.com"},{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"audience_members.audience_members[0].user_data.user_identifiers","description":"Email is not hex encoded.","reason":"INVALID_HEX_ENCODING"}]}]}}"#;
        let error = RpcError::read(&reply(400, body));
        assert_eq!(error.reason.as_deref(), Some("INVALID_ARGUMENT"));
        let members = error.member_violations();
        assert_eq!(members.get(&0).map(String::as_str), Some("INVALID_HEX_ENCODING: Email is not hex encoded."));
        assert_eq!(failure("ingest", &reply(400, body)).class, ErrorClass::Permanent);
    }

    #[test]
    fn statuses_map_to_classes() {
        let status =
            |code: u16, status: &str| format!(r#"{{"error":{{"code":{code},"message":"m","status":"{status}"}}}}"#);
        assert_eq!(failure("x", &reply(401, &status(401, "UNAUTHENTICATED"))).class, ErrorClass::Auth);
        assert_eq!(failure("x", &reply(403, &status(403, "PERMISSION_DENIED"))).class, ErrorClass::Auth);
        assert_eq!(failure("x", &reply(429, &status(429, "RESOURCE_EXHAUSTED"))).class, ErrorClass::RateLimited);
        assert_eq!(failure("x", &reply(503, &status(503, "UNAVAILABLE"))).class, ErrorClass::Transient);
        assert_eq!(failure("x", &reply(502, "<html>bad gateway</html>")).class, ErrorClass::Transient);
        let terms = r#"{"error":{"code":400,"message":"There was a problem with the request.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"TERMS_AND_CONDITIONS_NOT_SIGNED"}]}}"#;
        assert_eq!(failure("x", &reply(400, terms)).class, ErrorClass::Config);
    }

    #[test]
    fn waits_come_from_retry_after_or_retry_info() {
        let body = r#"{"error":{"code":429,"message":"q","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12.5s"}]}}"#;
        assert_eq!(failure("x", &reply(429, body)).retry_after, Some(Duration::from_millis(12_500)));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let with_header = Reply { status: 429, headers, body: body.into() };
        assert_eq!(failure("x", &with_header).retry_after, Some(Duration::from_secs(7)));
        assert_eq!(member_index("audience_members.audience_members[12].user_data"), Some(12));
        assert_eq!(member_index("destinations[0].product_destination_id"), None);
    }
}
