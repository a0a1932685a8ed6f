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
}
