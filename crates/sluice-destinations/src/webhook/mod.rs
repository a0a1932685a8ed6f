//! Webhook destination: POSTs batches of changes as JSON and reads per-record results back.

mod config;

use std::time::Duration;

use async_trait::async_trait;
pub use config::{RateLimitConfig, WebhookConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use sluice_core::{
    ChangeBatch, DeliveryLimits, Destination, DestinationError, ErrorClass, ObjectDescription, Outcome, RequestCapture,
    RequestQuota, RetryPolicy, WriteContext,
};

/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 500;

/// Sends each batch as `{"sync", "run_id", "changes": [{"op", "key", "fields"}]}`.
pub struct WebhookDestination {
    url: reqwest::Url,
    client: reqwest::Client,
    batch_size: usize,
    retry: RetryPolicy,
    limits: DeliveryLimits,
}

impl WebhookDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(config: WebhookConfig) -> Result<WebhookDestination, (&'static str, String)> {
        let url = reqwest::Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(("url", format!("expected an http:// or https:// URL, found {:?}", config.url)))?;
        let batch_size = config.batch_size.unwrap_or(config::DEFAULT_BATCH_SIZE);
        if batch_size == 0 || batch_size > config::MAX_BATCH_SIZE {
            return Err((
                "batch_size",
                format!("expected 1 to {} records, found {batch_size}", config::MAX_BATCH_SIZE),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ("headers", format!("`{name}` is not a valid HTTP header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| ("headers", format!("the value of `{name}` is not a valid HTTP header value")))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(config.timeout_seconds.unwrap_or(30).max(1)))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ("url", format!("cannot build an HTTP client: {e}")))?;
        let mut retry = RetryPolicy::default();
        if let Some(max_retries) = config.max_retries {
            retry.max_retries = max_retries;
        }
        if let Some(backoff) = config.backoff_ms {
            retry.initial_backoff = Duration::from_millis(backoff);
        }
        let max_concurrency = config.max_concurrency.unwrap_or(1);
        if max_concurrency == 0 || max_concurrency > config::MAX_CONCURRENCY {
            return Err((
                "max_concurrency",
                format!("expected 1 to {} requests in flight, found {max_concurrency}", config::MAX_CONCURRENCY),
            ));
        }
        let mut quotas = Vec::new();
        if let Some(limit) = config.rate_limit {
            if limit.requests == 0 || !(limit.per_seconds > 0.0 && limit.per_seconds.is_finite()) {
                return Err((
                    "rate_limit",
                    "expected a positive number of `requests` per a positive number of seconds (`per_seconds`)".into(),
                ));
            }
            quotas.push(RequestQuota { requests: limit.requests, per: Duration::from_secs_f64(limit.per_seconds) });
        }
        let limits = DeliveryLimits { quotas, max_concurrency, split_rejected_batches: false };
        Ok(WebhookDestination { url, client, batch_size, retry, limits })
    }

    /// The URL without credentials or query string, safe to print.
    fn safe_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }

    fn send_error(&self, error: reqwest::Error) -> DestinationError {
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        let what = if error.is_timeout() { "timed out" } else { "request failed" };
        DestinationError::transient(format!("POST {} {what}: {cause}", self.safe_url()))
    }
}

/// Reads `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = chrono_like_http_date(text)?;
    Some(at.saturating_sub(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?))
}

/// Parses an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) into time since the epoch.
fn chrono_like_http_date(text: &str) -> Option<Duration> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[2])? as u64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let clock: Vec<u64> = parts[4].split(':').filter_map(|p| p.parse().ok()).collect();
    if clock.len() != 3 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + (clock[0] * 3600 + clock[1] * 60 + clock[2]) as i64;
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// The most useful text of an error body: its `error` or `message` field, or the body.
fn body_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| body.trim().to_string());
    let mut text: String = text.chars().take(MAX_MESSAGE).collect();
    if text.is_empty() {
        text.push_str("(empty body)");
    }
    text
}

/// Maps a 2xx body to outcomes: records named in `results` with `ok: false` are rejected
/// (or retryable with `retryable: true`), everything else is applied.
fn outcomes_from_body(batch: &ChangeBatch, body: &str) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = batch.changes.iter().map(|_| Outcome::applied()).collect();
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(body) else {
        return outcomes;
    };
    let Some(serde_json::Value::Array(results)) = object.get("results") else {
        return outcomes;
    };
    let mut positions: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (index, change) in batch.changes.iter().enumerate() {
        positions.entry(change.key.as_str()).or_default().push(index);
    }
    for result in results {
        let key = match result.get("key") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        if result.get("ok").and_then(|v| v.as_bool()) != Some(false) {
            continue;
        }
        let message = result
            .get("error")
            .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
            .unwrap_or_else(|| "rejected by the receiver (no error message given)".into());
        let retryable = result.get("retryable").and_then(|v| v.as_bool()) == Some(true);
        for &index in positions.get(key.as_str()).into_iter().flatten() {
            outcomes[index] =
                if retryable { Outcome::retryable(message.clone()) } else { Outcome::rejected(message.clone()) };
        }
    }
    outcomes
}

#[async_trait]
impl Destination for WebhookDestination {
    fn describe(&self) -> String {
        format!("webhook {}", self.safe_url())
    }

    fn identity(&self) -> String {
        self.describe()
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    async fn discover(&self, _object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        Ok(vec![sluice_core::open_records_object()])
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    fn delivery_limits(&self) -> DeliveryLimits {
        self.limits.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        // Any HTTP answer proves the receiver is reachable; only transport errors fail.
        self.client.head(self.url.clone()).send().await.map(|_| ()).map_err(|e| self.send_error(e))
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let changes: Vec<serde_json::Value> = batch
            .changes
            .iter()
            .map(|change| {
                serde_json::json!({ "op": change.op.as_str(), "key": change.key, "fields": batch.fields_json(change) })
            })
            .collect();
        let body =
            serde_json::json!({ "sync": context.sync, "run_id": context.run_id, "changes": changes }).to_string();
        let started = std::time::Instant::now();
        let capture = |status: Option<u16>, response: &str| {
            if let Some(sink) = &context.capture {
                // The URL loses credentials and query string; headers (auth) are never kept.
                sink.record(RequestCapture {
                    method: "POST".into(),
                    url: self.safe_url(),
                    status,
                    request_body: RequestCapture::clip(&body),
                    response_body: RequestCapture::clip(response),
                    duration_ms: started.elapsed().as_millis() as u64,
                });
            }
        };
        let response = match self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                let error = self.send_error(error);
                capture(None, &error.message);
                return Err(error);
            }
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        let text = response.text().await.map_err(|e| self.send_error(e))?;
        capture(Some(status.as_u16()), &text);
        let failure = |class: ErrorClass| DestinationError {
            class,
            message: format!("HTTP {}: {}", status.as_u16(), body_message(&text)),
            retry_after: wait,
        };
        match status.as_u16() {
            200..=299 => Ok(outcomes_from_body(batch, &text)),
            429 => Err(failure(ErrorClass::RateLimited)),
            401 | 403 => Err(failure(ErrorClass::Auth)),
            408 | 500..=599 => Err(failure(ErrorClass::Transient)),
            _ => Err(failure(ErrorClass::Permanent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_seconds_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        assert_eq!(chrono_like_http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::from_secs(1_445_412_480)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past means now");
    }

    #[test]
    fn bad_config_names_the_key() {
        let config = |url: &str, batch_size| WebhookConfig {
            url: url.into(),
            batch_size,
            headers: Default::default(),
            timeout_seconds: None,
            max_retries: None,
            backoff_ms: None,
            max_concurrency: None,
            rate_limit: None,
        };
        assert_eq!(WebhookDestination::new(config("ftp://x", None)).err().unwrap().0, "url");
        assert_eq!(WebhookDestination::new(config("http://x/in", Some(0))).err().unwrap().0, "batch_size");
        let destination = WebhookDestination::new(config("http://user:secret@x/in?token=t", None)).unwrap();
        assert_eq!(destination.describe(), "webhook http://x/in");
    }

    #[test]
    fn error_bodies_prefer_their_message_field() {
        assert_eq!(body_message(r#"{"error":"bad payload"}"#), "bad payload");
        assert_eq!(body_message("plain text\n"), "plain text");
        assert_eq!(body_message(""), "(empty body)");
    }
}
