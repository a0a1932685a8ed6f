//! Graph API client for Meta: bearer token (plus `appsecret_proof`), captures, rate-limit
//! headers and Meta's error codes mapped to error classes.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{DestinationError, ErrorClass, WriteContext};

use crate::http::exchange::exchange;
pub(crate) use crate::http::exchange::Reply;

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// Sends requests to one Graph API host and version with one token.
pub(crate) struct Client {
    /// e.g. `https://graph.facebook.com`, without a trailing slash.
    pub(crate) base: String,
    /// e.g. `v25.0`.
    pub(crate) version: String,
    http: reqwest::Client,
    token: String,
    /// HMAC-SHA256 of the token with the app secret, hex, when an app secret is configured.
    proof: Option<String>,
}

impl Client {
    pub(crate) fn new(
        base: String,
        version: String,
        http: reqwest::Client,
        token: String,
        app_secret: Option<&str>,
    ) -> Client {
        let proof = app_secret.map(|secret| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
            ring::hmac::sign(&key, token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
        });
        Client { base, version, http, token, proof }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (key, value) in query {
            serializer.append_pair(key, value);
        }
        if let Some(proof) = &self.proof {
            serializer.append_pair("appsecret_proof", proof);
        }
        let query = serializer.finish();
        let url = format!("{}/{}/{path}", self.base, self.version);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }

    /// `GET /{version}/{path}?{query}`.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Reply, DestinationError> {
        let url = self.url(path, query);
        let request = self.http.get(&url).bearer_auth(&self.token);
        exchange("Meta", &Method::GET, &url, request, "", None).await
    }

    /// Sends form parameters (as Meta's examples do: `payload=…&session=…`), records the exchange
    /// when the run captures requests, and reports the custom-audience usage header.
    pub(crate) async fn send_form(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
        context: Option<&WriteContext>,
    ) -> Result<Reply, DestinationError> {
        let url = self.url(path, &[]);
        let body = form_body(form);
        let request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.clone());
        let capture = context.and_then(|c| c.capture.as_ref());
        let reply = exchange("Meta", &method, &url, request, &body, capture).await?;
        if let (Some(rate), Some(wait)) = (context.and_then(|c| c.rate.as_ref()), regain_access(&reply.headers)) {
            // Meta says the account is blocked for this long: every sync of it waits.
            rate.report(0, wait);
        }
        Ok(reply)
    }
}

/// `application/x-www-form-urlencoded` text of the parameters.
fn form_body(form: &[(&str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// Meta's error object: `{"error": {"message", "type", "code", "error_subcode", …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub(crate) message: String,
    pub(crate) kind: Option<String>,
    pub(crate) code: Option<u64>,
    pub(crate) subcode: Option<u64>,
    pub(crate) user_message: Option<String>,
    pub(crate) transient: Option<bool>,
    pub(crate) trace: Option<String>,
}

pub(crate) fn graph_error(reply: &Reply) -> Option<GraphError> {
    let body = reply.json();
    let error = body.get("error")?;
    let text = |key: &str| error.get(key).and_then(Json::as_str).map(str::to_string);
    let number = |key: &str| error.get(key).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    Some(GraphError {
        message: text("message").unwrap_or_default().chars().take(MAX_MESSAGE).collect(),
        kind: text("type"),
        code: number("code"),
        subcode: number("error_subcode"),
        user_message: text("error_user_msg"),
        transient: error.get("is_transient").and_then(Json::as_bool),
        trace: text("fbtrace_id"),
    })
}

/// `estimated_time_to_regain_access` (minutes) of the custom-audience entries of
/// `X-Business-Use-Case-Usage`, when Meta says the account is blocked.
pub(crate) fn regain_access(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("x-business-use-case-usage")?.to_str().ok()?;
    let usage: Json = serde_json::from_str(text).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Json::as_array)
        .flatten()
        .filter(|entry| entry.get("type").and_then(Json::as_str).is_none_or(|t| t == "custom_audience"))
        .filter_map(|entry| entry.get("estimated_time_to_regain_access").and_then(Json::as_u64))
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The error for an answer that is not a success, classified by Meta's code first (Graph sends
/// most errors, throttling and expired tokens included, as HTTP 400), then by HTTP status.
pub(crate) fn failure(what: &str, reply: &Reply) -> DestinationError {
    let status = reply.status;
    let error = graph_error(reply);
    let code = error.as_ref().and_then(|e| e.code);
    let subcode = error.as_ref().and_then(|e| e.subcode);
    let text = match &error {
        Some(e) => {
            let mut text = if e.message.is_empty() { format!("HTTP {status}") } else { e.message.clone() };
            if let Some(user) = e.user_message.as_deref().filter(|u| !u.is_empty() && *u != e.message) {
                text.push_str(&format!(" ({user})"));
            }
            text
        }
        None if reply.body.trim().is_empty() => format!("HTTP {status} with an empty body"),
        None => reply.body.trim().chars().take(MAX_MESSAGE).collect(),
    };
    let codes = match (code, subcode) {
        (Some(code), Some(sub)) => format!("HTTP {status}, code {code}, subcode {sub}"),
        (Some(code), None) => format!("HTTP {status}, code {code}"),
        _ => format!("HTTP {status}"),
    };
    let trace =
        error.as_ref().and_then(|e| e.trace.as_deref()).map(|t| format!(" [fbtrace_id {t}]")).unwrap_or_default();
    let (class, message) = match code {
        // 190: "Access token has expired"; 102: "API session"; 104: no token.
        Some(190 | 102 | 104) => (
            ErrorClass::Auth,
            format!(
                "Meta refused the access token ({what}, {codes}): {text}{trace}. Meta tokens are not refreshed: \
                 generate a new system user token (Business Settings → Users → System users → Generate new token, \
                 with ads_management) and update `access_token`"
            ),
        ),
        // 10 and 200-299: permission errors ("Permission not granted or has been removed").
        Some(10 | 200..=299) => (
            ErrorClass::Auth,
            format!(
                "Meta denied access ({what}, {codes}): {text}{trace}; the system user needs the ads_management \
                 permission and access to the ad account and the audience"
            ),
        ),
        // 4 app, 17 user, 32 page, 613 calls per time, 341 application limit, 80000-80014 business
        // use cases (80003: custom audiences).
        Some(4 | 17 | 32 | 341 | 613 | 80_000..=80_014) => {
            (ErrorClass::RateLimited, format!("Meta rate limit ({what}, {codes}): {text}{trace}"))
        }
        // 1 "API Unknown", 2 "API Service": temporary, retry.
        Some(1 | 2) => (ErrorClass::Transient, format!("Meta error ({what}, {codes}): {text}{trace}")),
        // 33: the object does not exist, or the token cannot see it.
        Some(100) if subcode == Some(33) => (
            ErrorClass::Config,
            format!(
                "Meta has no audience or account here that this token can use ({what}, {codes}): {text}{trace}; check the \
                 sync's `object:` (the custom audience id) and that the system user is assigned to it"
            ),
        ),
        // The audience is flagged for integrity (operation_status 471): every upload fails until resolved.
        Some(100) if subcode == Some(1_713_230) => (
            ErrorClass::Config,
            format!("Meta blocks uploads to this audience ({what}, {codes}): {text}{trace}; resolve it in Audience Manager"),
        ),
        Some(100) if text.contains("appsecret_proof") => (
            ErrorClass::Config,
            format!("Meta requires an app secret proof ({what}, {codes}): {text}{trace}; set `app_secret` to the app's secret"),
        ),
        // Deprecated API version.
        Some(2635) => (
            ErrorClass::Config,
            format!("Meta refused the API version ({what}, {codes}): {text}{trace}; set `api_version` to a current one"),
        ),
        // "Audience Update In Progress": a replace is running on the audience.
        Some(2650) if subcode == Some(1_870_145) => {
            (ErrorClass::Transient, format!("Meta is updating the audience ({what}, {codes}): {text}{trace}"))
        }
        _ => match status {
            429 => (ErrorClass::RateLimited, format!("Meta rate limit ({what}, {codes}): {text}{trace}")),
            401 | 403 => (ErrorClass::Auth, format!("Meta refused the credentials ({what}, {codes}): {text}{trace}")),
            408 | 500..=599 => (ErrorClass::Transient, format!("Meta error ({what}, {codes}): {text}{trace}")),
            _ if error.as_ref().and_then(|e| e.transient) == Some(true) => {
                (ErrorClass::Transient, format!("Meta error ({what}, {codes}): {text}{trace}"))
            }
            _ => (ErrorClass::Permanent, format!("Meta refused the request ({what}, {codes}): {text}{trace}")),
        },
    };
    let retry_after =
        if class.is_retryable() { retry_after(&reply.headers).or_else(|| regain_access(&reply.headers)) } else { None };
    DestinationError { class, message, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str, headers: &[(&'static str, &str)]) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        Reply { status, headers: map, body: body.into() }
    }

    fn error_body(code: u64, subcode: Option<u64>) -> String {
        let sub = subcode.map(|s| format!(r#","error_subcode":{s}"#)).unwrap_or_default();
        format!(r#"{{"error":{{"message":"m","type":"OAuthException","code":{code}{sub},"fbtrace_id":"Axyz"}}}}"#)
    }

    #[test]
    fn meta_codes_decide_the_class() {
        let class = |status, code, sub| failure("x", &reply(status, &error_body(code, sub), &[])).class;
        assert_eq!(class(400, 190, Some(463)), ErrorClass::Auth);
        assert_eq!(class(400, 102, None), ErrorClass::Auth);
        assert_eq!(class(403, 200, None), ErrorClass::Auth);
        for code in [4, 17, 32, 613, 80_003] {
            assert_eq!(class(400, code, None), ErrorClass::RateLimited, "{code}");
        }
        assert_eq!(class(500, 1, None), ErrorClass::Transient);
        assert_eq!(class(503, 2, None), ErrorClass::Transient);
        assert_eq!(class(400, 100, Some(33)), ErrorClass::Config);
        assert_eq!(class(400, 100, Some(1_713_230)), ErrorClass::Config);
        assert_eq!(class(400, 100, None), ErrorClass::Permanent);
        assert_eq!(class(400, 2650, Some(1_870_145)), ErrorClass::Transient);
        assert_eq!(failure("x", &reply(502, "<html>bad gateway</html>", &[])).class, ErrorClass::Transient);
        assert_eq!(failure("x", &reply(429, "", &[])).class, ErrorClass::RateLimited);
        assert_eq!(failure("x", &reply(400, "[1]", &[])).class, ErrorClass::Permanent);
    }

    #[test]
    fn expired_tokens_say_how_to_renew_them() {
        let error = failure("POST /1/users", &reply(400, &error_body(190, Some(463)), &[]));
        assert!(
            error.message.contains("code 190, subcode 463") && error.message.contains("access_token"),
            "{}",
            error.message
        );
        assert!(error.message.contains("fbtrace_id Axyz"), "{}", error.message);
        assert_eq!(error.retry_after, None);
    }

    #[test]
    fn waits_come_from_retry_after_or_the_usage_header() {
        let usage = r#"{"1234":[{"type":"custom_audience","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":3}]}"#;
        let throttled =
            failure("x", &reply(400, &error_body(80_003, Some(2_446_079)), &[("x-business-use-case-usage", usage)]));
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(180)));
        let too_many = failure("x", &reply(429, &error_body(4, None), &[("retry-after", "7")]));
        assert_eq!(too_many.retry_after, Some(Duration::from_secs(7)));
        let idle = r#"{"1234":[{"type":"custom_audience","call_count":3,"estimated_time_to_regain_access":0}]}"#;
        assert_eq!(regain_access(&reply(200, "{}", &[("x-business-use-case-usage", idle)]).headers), None);
    }
}
