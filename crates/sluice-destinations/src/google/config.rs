//! Google Customer Match (Data Manager API) destination settings.

use serde::Deserialize;

use crate::http::auth::OAuthConfig;

/// The Data Manager API's base URL.
pub const DEFAULT_API_URL: &str = "https://datamanager.googleapis.com";
/// Google's OAuth 2.0 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope the refresh token must have been granted
/// (<https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest>).
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
/// "At most 10000 AudienceMember resources can be sent in a single request"
/// (<https://developers.google.com/data-manager/api/devguides/limits>, for ingest and remove).
pub const MAX_BATCH_SIZE: usize = 10_000;
/// IngestionService requests per minute per Google Cloud project (same page).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
/// IngestionService requests per day per Google Cloud project (same page).
pub const DEFAULT_REQUESTS_PER_DAY: u32 = 100_000;
/// Requests in flight unless configured.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The largest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 32;

/// ```yaml
/// type: google_customer_match
/// oauth: { client_id: "…", client_secret: "${GOOGLE_CLIENT_SECRET}", refresh_token: "${GOOGLE_REFRESH_TOKEN}" }
/// operating_account: { account_type: GOOGLE_ADS, account_id: "1234567890" }
/// customer_match_terms_accepted: true
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// An OAuth client and a refresh token granted the `https://www.googleapis.com/auth/datamanager`
    /// scope. Access tokens are obtained and renewed with it; none of it is printed or stored.
    pub oauth: OAuthConfig,
    /// The account whose Customer Match lists the syncs write to.
    pub operating_account: AccountConfig,
    /// The account the credentials act through, when it is not the operating account (a manager
    /// account, or a data partner with a link to the advertiser).
    pub login_account: Option<AccountConfig>,
    /// Consent sent with every member added: `{ ad_user_data: granted, ad_personalization: granted }`.
    /// Each key is `granted` or `denied`; left out, the request says nothing about that consent.
    pub consent: Option<ConsentConfig>,
    /// Confirms that the advertiser accepted Google's Customer Match terms
    /// (<https://support.google.com/adspolicy/answer/6299717>). Google refuses uploads without it, so
    /// syncs stop before sending anything while this is not `true`.
    #[serde(default)]
    pub customer_match_terms_accepted: bool,
    /// Country (ISO 3166-1 alpha-2, e.g. `FR`) for phone numbers written without a `+` and country code.
    pub default_country: Option<String>,
    /// Data Manager API base URL; default `https://datamanager.googleapis.com`.
    pub api_url: Option<String>,
    /// OAuth token endpoint; default `https://oauth2.googleapis.com/token`.
    pub token_url: Option<String>,
    /// Members per request, 1 to 10,000; default 10,000.
    pub batch_size: Option<usize>,
    /// The Cloud project's IngestionService quota per minute; default 300.
    pub requests_per_minute: Option<u32>,
    /// The Cloud project's IngestionService quota per day; default 100,000.
    pub requests_per_day: Option<u32>,
    /// Most requests in flight, 1 to 32; default 4.
    pub max_concurrency: Option<usize>,
    /// Seconds to wait for a response; default 60.
    pub timeout_seconds: Option<u64>,
}

/// A Google account (`ProductAccount` in the API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// `GOOGLE_ADS` (the default), `DISPLAY_VIDEO_ADVERTISER`, `DISPLAY_VIDEO_PARTNER` or `DATA_PARTNER`.
    #[serde(default = "google_ads")]
    pub account_type: String,
    /// The account id, digits only (Google Ads customer ids are written without dashes).
    pub account_id: String,
}

fn google_ads() -> String {
    "GOOGLE_ADS".into()
}

/// Account types a Customer Match list can belong to.
pub const ACCOUNT_TYPES: [&str; 4] =
    ["GOOGLE_ADS", "DISPLAY_VIDEO_ADVERTISER", "DISPLAY_VIDEO_PARTNER", "DATA_PARTNER"];

/// Default consent for the members a sync adds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Consent to use the user's data for advertising: `granted` or `denied`.
    pub ad_user_data: Option<ConsentStatus>,
    /// Consent to personalised advertising: `granted` or `denied`.
    pub ad_personalization: Option<ConsentStatus>,
}

/// A consent answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentStatus {
    Granted,
    Denied,
}

impl ConsentStatus {
    /// The API's `ConsentStatus` value.
    pub fn wire(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "CONSENT_GRANTED",
            ConsentStatus::Denied => "CONSENT_DENIED",
        }
    }
}
