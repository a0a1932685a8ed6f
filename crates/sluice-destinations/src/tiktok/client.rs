//! TikTok API for Business client: the `Access-Token` header, captures, and the `{code, message,
//! request_id, data}` envelope read into error classes.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{DestinationError, ErrorClass, WriteContext};

use crate::http::exchange::{exchange, Reply};

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 1000;

/// Sends requests for one access token.
pub(crate) struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    token: String,
}

/// A read envelope.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) request_id: String,
    pub(crate) data: Json,
}

impl Client {
    pub(crate) fn new(base: reqwest::Url, http: reqwest::Client, token: String) -> Client {
        Client { base, http, token }
    }

    /// The base URL as text, without a trailing slash.
    pub(crate) fn base_text(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// Sends one request and reads TikTok's envelope. Transport failures and answers without the
    /// envelope are errors; an envelope with any `code` is returned for the caller to judge.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&str>,
        context: Option<&WriteContext>,
    ) -> Result<Envelope, DestinationError> {
        let capture = context.and_then(|c| c.capture.as_ref());
        let url = format!("{}{path_and_query}", self.base_text());
        let mut request = self.http.request(method.clone(), &url).header("Access-Token", &self.token);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let what = format!("{method} {}", path_and_query.split('?').next().unwrap_or_default());
        let reply = exchange("TikTok", &method, &url, request, body.unwrap_or(""), capture).await?;
        read_envelope(&what, &reply)
    }
}

fn read_envelope(what: &str, reply: &Reply) -> Result<Envelope, DestinationError> {
    let status = reply.status;
    let body = reply.json();
    let code = body.get("code").and_then(Json::as_i64);
    let (200..=299, Some(code)) = (status, code) else {
        // TikTok answers 200 whenever a request reaches the API; anything else never got there
        // ("Return codes": a 4xx is a wrong path or method, a 5xx a server fault).
        let text: String = reply.body.trim().chars().take(300).collect();
        let (class, hint) = match status {
            429 => (ErrorClass::RateLimited, ""),
            500..=599 => (ErrorClass::Transient, ""),
            200..=299 => (ErrorClass::Transient, " (no TikTok envelope in the answer)"),
            _ => (ErrorClass::Config, "; check `api_url`"),
        };
        return Err(DestinationError::new(class, format!("TikTok {what} answered HTTP {status}: {text}{hint}")));
    };
    let text = |key: &str| body.get(key).and_then(Json::as_str).unwrap_or("").to_string();
    Ok(Envelope {
        code,
        message: text("message").chars().take(MAX_MESSAGE).collect(),
        request_id: text("request_id"),
        data: body.get("data").cloned().unwrap_or(Json::Null),
    })
}

/// The error for an envelope whose `code` is not 0, classified by TikTok's return codes
/// (<https://business-api.tiktok.com/portal/docs?id=1737172488964097>).
pub(crate) fn failure(what: &str, envelope: &Envelope) -> DestinationError {
    let code = envelope.code;
    let detail = format!("{} (code {code}, request_id {})", envelope.message, envelope.request_id);
    let (class, message) = match code {
        // Requests made too frequently: per app, per endpoint, per advertiser.
        40016 | 40100 | 40133 => (ErrorClass::RateLimited, format!("TikTok rate limit ({what}): {detail}")),
        // Access token expired, empty, invalid; core user invalid; app blocked; not allowlisted;
        // developer and advertiser of different companies; missing permission.
        40001 | 40102 | 40104 | 40105 | 40106 | 40113 | 40118 | 40119 | 40124 | 40125 => (
            ErrorClass::Auth,
            format!(
                "TikTok refused the access token ({what}): {detail}; check `access_token` and that it may manage `advertiser_id` with the Audience Management permission"
            ),
        ),
        // The advertiser or the audience does not exist; an endpoint that is not there.
        40300 | 40301 | 40007 | 40008 | 41001 => (
            ErrorClass::Config,
            format!("TikTok does not know the advertiser or audience ({what}): {detail}; check `advertiser_id` and the sync's `object`"),
        ),
        // "Write or update entity conflict. Retry may resolve this issue."
        40202 => (ErrorClass::Transient, format!("TikTok write conflict ({what}): {detail}")),
        // Service errors and maintenance.
        50000..=59999 | 60001 => (ErrorClass::Transient, format!("TikTok service error ({what}): {detail}")),
        _ => (ErrorClass::Permanent, format!("TikTok refused the request ({what}): {detail}")),
    };
    let retry_after = (class == ErrorClass::RateLimited).then(|| rate_limit_wait(&envelope.message));
    DestinationError { class, message, retry_after }
}

/// TikTok sends no `Retry-After`. Its rate-limit page says to retry after the current second when
/// the per-second limit is hit and to pause five minutes for the per-minute one; the message is the
/// only hint of which.
fn rate_limit_wait(message: &str) -> Duration {
    let lower = message.to_ascii_lowercase();
    if lower.contains("day") || lower.contains("daily") {
        Duration::from_secs(3600)
    } else if lower.contains("minute") {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn envelope(code: i64, message: &str) -> Envelope {
        Envelope { code, message: message.into(), request_id: "r".into(), data: Json::Null }
    }

    #[test]
    fn return_codes_map_to_classes() {
        assert_eq!(failure("x", &envelope(40100, "Too many requests")).class, ErrorClass::RateLimited);
        assert_eq!(failure("x", &envelope(40100, "Too many requests")).retry_after, Some(Duration::from_secs(1)));
        assert_eq!(failure("x", &envelope(40105, "bad token")).class, ErrorClass::Auth);
        assert_eq!(failure("x", &envelope(50000, "System error")).class, ErrorClass::Transient);
        assert_eq!(failure("x", &envelope(40002, "Parameter error")).class, ErrorClass::Permanent);
        assert_eq!(failure("x", &envelope(40007, "does not exist")).class, ErrorClass::Config);
    }

    #[test]
    fn answers_without_the_envelope_are_classified_by_status() {
        let reply = |status: u16, body: &str| Reply { status, headers: HeaderMap::new(), body: body.into() };
        assert_eq!(read_envelope("x", &reply(404, "404 page not found")).unwrap_err().class, ErrorClass::Config);
        assert_eq!(read_envelope("x", &reply(502, "<html/>")).unwrap_err().class, ErrorClass::Transient);
        let ok = read_envelope("x", &reply(200, r#"{"code":0,"message":"OK","request_id":"1","data":{}}"#)).unwrap();
        assert_eq!((ok.code, ok.request_id.as_str()), (0, "1"));
    }
}
