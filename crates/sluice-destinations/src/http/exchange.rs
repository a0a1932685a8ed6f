//! One HTTP exchange for SaaS destinations: send, capture (for `--debug-requests`), read the
//! reply, and describe transport failures as retryable errors.

use std::time::Instant;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value as Json;
use sluice_core::{CaptureSink, DestinationError, RequestCapture};

/// A tool's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON, or `Null` when it is not JSON (edges answer some errors in HTML).
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or(Json::Null)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..=299).contains(&self.status)
    }
}

/// Sends `request` (whose body is `body`) and reads the reply. With a capture sink, the
/// exchange is recorded without headers (credentials travel there) and without the URL's
/// query string. Network errors and timeouts are transient, named after `tool`.
pub async fn exchange(
    tool: &str,
    method: &Method,
    url: &str,
    request: RequestBuilder,
    body: &str,
    capture: Option<&CaptureSink>,
) -> Result<Reply, DestinationError> {
    let started = Instant::now();
    let shown_url = url.split('?').next().unwrap_or_default();
    let record = |status: Option<u16>, response: &str| {
        if let Some(sink) = capture {
            sink.record(RequestCapture {
                method: method.to_string(),
                url: shown_url.to_string(),
                status,
                request_body: RequestCapture::clip(body),
                response_body: RequestCapture::clip(response),
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
    };
    let failed = |error: reqwest::Error| {
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        let what = if error.is_timeout() { "timed out" } else { "failed" };
        DestinationError::transient(format!("{tool} {method} {shown_url} {what}: {cause}"))
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let error = failed(error);
            record(None, &error.message);
            return Err(error);
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    match response.text().await {
        Ok(text) => {
            record(Some(status), &text);
            Ok(Reply { status, headers, body: text })
        }
        Err(error) => {
            let error = failed(error);
            record(Some(status), &error.message);
            Err(error)
        }
    }
}
