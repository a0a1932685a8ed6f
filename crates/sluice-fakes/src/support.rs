//! Pieces the ad-platform fakes (LinkedIn, Snapchat) share: answers, injected faults, OAuth
//! refresh-token apps and shape checks on identifiers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

/// A fault answered instead of (or before) the normal response, one per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 in the platform's throttling shape, with this `Retry-After` (seconds).
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// An error status such as 500, 502 or 503.
    Status(u16),
    /// Wait this long, then serve the request normally (to make clients time out).
    Delay(Duration),
}

/// An OAuth app: what the token endpoint checks, and the first access token it considers valid.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The refresh token issued when the member authorised the app.
    pub refresh_token: String,
    /// The access token valid when the fake starts.
    pub access_token: String,
    /// `expires_in` reported by the token endpoint, in seconds.
    pub expires_in: u64,
}

/// Serves `app` on 127.0.0.1 with a random port until the returned task is aborted. Panics if no
/// port can be bound; `fake` names the fake in the message (`LinkedIn`, `Snapchat`).
pub(crate) async fn serve(app: axum::Router, fake: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0 for the {fake} fake: {e:?}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("local address of the {fake} fake: {e:?}"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// Locks a fake's state, also after a handler panicked while holding it.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An answer before it becomes an HTTP response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self { status, body: Some(body), headers: Vec::new() }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self { status, body: None, headers: Vec::new() }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            Some(body) => {
                let mut r = Response::new(Body::from(body.to_string()));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            None => Response::new(Body::empty()),
        };
        *response.status_mut() = status;
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// A header's value as text.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Whether the request says its body is JSON.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    header_text(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"))
}

/// Lowercase hex of exactly `len` characters (a SHA-256 digest is 64, SHA-512 is 128).
pub(crate) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A UUID written 8-4-4-4-12 with hyphens, in lowercase (`upper == false`) or uppercase.
pub(crate) fn is_uuid(text: &str, upper: bool) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => {
                let letter_case_ok = if upper { c.is_ascii_uppercase() } else { c.is_ascii_lowercase() };
                c.is_ascii_digit() || (c.is_ascii_hexdigit() && letter_case_ok)
            }
        })
}

/// A form body as key → value (the last value of a repeated key wins).
pub(crate) fn form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// Access tokens issued by a fake token endpoint, with their use counts and expiry.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// token → (uses, expired at)
    issued: HashMap<String, (u32, Option<Instant>)>,
    next: u64,
    pub(crate) current: Option<String>,
}

/// Why a bearer token was refused.
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

impl Tokens {
    pub(crate) fn new(first: &str) -> Self {
        let mut tokens = Tokens { issued: HashMap::new(), next: 2, current: Some(first.to_owned()) };
        tokens.issued.insert(first.to_owned(), (0, None));
        tokens
    }

    /// Checks a bearer token and counts its use; after `expire_after` uses it expires.
    pub(crate) fn check(&mut self, token: Option<&str>, expire_after: Option<u32>) -> Result<(), TokenProblem> {
        let token = token.ok_or(TokenProblem::Missing)?;
        let entry = self.issued.get_mut(token).ok_or(TokenProblem::Unknown)?;
        if entry.1.is_none() {
            entry.0 += 1;
            if expire_after.is_some_and(|n| entry.0 > n) {
                entry.1 = Some(Instant::now());
            }
        }
        match entry.1 {
            None => Ok(()),
            Some(_) => Err(TokenProblem::Expired),
        }
    }

    /// Issues a new access token with the given prefix.
    pub(crate) fn issue(&mut self, prefix: &str) -> String {
        let token = format!("{prefix}-{}", self.next);
        self.next += 1;
        self.issued.insert(token.clone(), (0, None));
        self.current = Some(token.clone());
        token
    }

    /// Expires every token issued so far.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for entry in self.issued.values_mut() {
            entry.1.get_or_insert(now);
        }
    }
}

/// A fixed-window request counter (per minute, per second…).
#[derive(Debug)]
pub(crate) struct Window {
    started: Instant,
    used: u32,
}

impl Window {
    pub(crate) fn new() -> Self {
        Window { started: Instant::now(), used: 0 }
    }

    /// Counts a request; `Err(seconds until the window resets)` when `max` are already used.
    pub(crate) fn take(&mut self, max: u32, length: Duration) -> Result<(), u64> {
        if self.started.elapsed() >= length {
            self.started = Instant::now();
            self.used = 0;
        }
        if self.used >= max {
            let left = length.saturating_sub(self.started.elapsed());
            return Err(left.as_millis().div_ceil(1000).max(1) as u64);
        }
        self.used += 1;
        Ok(())
    }
}

/// A request id in the style of the platforms' opaque ids.
pub(crate) fn request_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_shapes() {
        assert!(is_lower_hex(&"a".repeat(64), 64));
        assert!(!is_lower_hex(&"A".repeat(64), 64));
        assert!(!is_lower_hex(&"a".repeat(63), 64));
        assert!(is_uuid("6d92078a-8246-4ba4-ae5b-76104861e7dc", false));
        assert!(!is_uuid("6D92078A-8246-4BA4-AE5B-76104861E7DC", false));
        assert!(is_uuid("6D92078A-8246-4BA4-AE5B-76104861E7DC", true));
        assert!(!is_uuid("6d92078a82464ba4ae5b76104861e7dc", false));
    }

    #[test]
    fn windows_refuse_past_their_maximum() {
        let mut window = Window::new();
        assert!(window.take(2, Duration::from_secs(60)).is_ok());
        assert!(window.take(2, Duration::from_secs(60)).is_ok());
        let wait = window.take(2, Duration::from_secs(60)).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
    }
}
