//! Webhook destination settings.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Records per request unless configured.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// The largest batch a user may configure.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// `{ type: webhook, url: "http://127.0.0.1:9000/in", batch_size: 500 }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL each batch is POSTed to.
    pub url: String,
    /// Records per request; default 100, at most 10,000.
    pub batch_size: Option<usize>,
    /// Extra request headers, such as `Authorization: "Bearer ${HOOK_TOKEN}"`. Values are
    /// never printed or stored.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for a response; default 30.
    pub timeout_seconds: Option<u64>,
    /// Retries of a failed request (network errors, 5xx); default 5. 429 answers wait
    /// without using this budget.
    pub max_retries: Option<u32>,
    /// First retry delay in milliseconds, doubled each retry with full jitter; default 250.
    pub backoff_ms: Option<u64>,
    /// Most requests in flight, 1 to 64; default 1, which keeps batches in order. Above 1,
    /// adaptive concurrency starts at 1 and grows while the receiver's latency holds.
    pub max_concurrency: Option<usize>,
    /// The receiver's quota, shared by every sync posting to the same URL.
    pub rate_limit: Option<RateLimitConfig>,
}

/// `rate_limit: { requests: 100, per_seconds: 10 }`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window, in seconds.
    pub per_seconds: f64,
}

/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 64;
