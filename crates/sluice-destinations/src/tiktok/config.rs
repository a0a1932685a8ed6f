//! TikTok audiences destination settings.

use std::time::Duration;

use serde::Deserialize;
use sluice_core::RequestQuota;

/// TikTok's API for Business base URL.
pub const DEFAULT_API_URL: &str = "https://business-api.tiktok.com";
/// Users per `/segment/mapping/` request unless configured. TikTok's reference page for the endpoint
/// could not be read from here; 1,000 is the smallest batch the partner integrations built on it use
/// (Tealium's TikTok Audiences connector batches at most 1,000 entries).
pub const DEFAULT_BATCH_SIZE: usize = 1_000;
/// The largest `batch_size` accepted.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 2;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 16;

/// ```yaml
/// type: tiktok_audiences
/// access_token: "${TIKTOK_ACCESS_TOKEN}"
/// advertiser_id: "7000000000000000001"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokConfig {
    /// A long-term Marketing API access token with the Audience Management permission, sent in the
    /// `Access-Token` header. Never printed or stored.
    pub access_token: String,
    /// The ad account (advertiser id) that owns the audiences.
    pub advertiser_id: String,
    /// Country (ISO 3166-1 alpha-2, e.g. `FR`) for phone numbers written without a `+` and country code.
    pub default_country: Option<String>,
    /// The `id_schema` mobile advertising ids are sent under: `IDFA_SHA256` (the default),
    /// `GAID_SHA256` or `AAID_SHA256`. TikTok cannot tell an IDFA from a GAID once hashed, so a sync
    /// names the kind its model holds.
    pub mobile_id_schema: Option<String>,
    /// The app's rate-limit tier: `basic` (the default), `advanced`, `premium` or `ultimate`.
    pub rate_limit_tier: Option<RateLimitTier>,
    /// API base URL; default `https://business-api.tiktok.com`.
    pub api_url: Option<String>,
    /// Users per request, 1 to 10,000; default 1,000.
    pub batch_size: Option<usize>,
    /// Most requests in flight, 1 to 16; default 2.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for a response; default 60.
    pub timeout_seconds: Option<u64>,
}

/// Mobile id schemas the segment API takes.
pub const MOBILE_ID_SCHEMAS: [&str; 3] = ["IDFA_SHA256", "GAID_SHA256", "AAID_SHA256"];

/// Rate-limit tiers of a developer app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitTier {
    Basic,
    Advanced,
    Premium,
    Ultimate,
}

impl RateLimitTier {
    /// Per-second, per-minute and per-day request limits of the tier
    /// (<https://business-api.tiktok.com/portal/docs/rate-limits/v1.3>).
    pub fn quotas(self) -> Vec<RequestQuota> {
        let (second, minute, day) = match self {
            RateLimitTier::Basic => (10, 600, 864_000),
            RateLimitTier::Advanced => (20, 1_200, 1_728_000),
            RateLimitTier::Premium => (30, 1_800, 2_592_000),
            RateLimitTier::Ultimate => (50, 3_000, 4_320_000),
        };
        vec![
            RequestQuota { requests: second, per: Duration::from_secs(1) },
            RequestQuota { requests: minute, per: Duration::from_secs(60) },
            RequestQuota { requests: day, per: Duration::from_secs(86_400) },
        ]
    }
}
