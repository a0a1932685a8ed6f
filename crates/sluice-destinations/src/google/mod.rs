//! Google Customer Match destination: keeps a Customer Match user list equal to an audience through
//! the Data Manager API (`audienceMembers:ingest` and `audienceMembers:remove`).

mod client;
mod config;
mod mapping;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use config::{AccountConfig, ConsentConfig, ConsentStatus, GoogleConfig};
use serde_json::{json, Value as Json};
use sluice_core::{
    ChangeBatch, CredentialStore, DeliveryLimits, Destination, DestinationError, FieldDescription, ObjectDescription,
    Outcome, RequestQuota, SyncMode, Target, WriteContext,
};

use self::client::{Client, RpcError};
use self::mapping::{DataKind, Uploaded};
use crate::ads::delivery::{Delivery, Entry};
use crate::ads::members::{check_target, plan_members};
use crate::ads::{identifiers, Identifier, NormalizeOptions, Platform};
use crate::http::auth::OAuthTokens;

const INGEST: &str = "/v1/audienceMembers:ingest";
const REMOVE: &str = "/v1/audienceMembers:remove";

/// How many times a request is sent again without the members Google named as invalid.
const MAX_RESENDS: usize = 3;

/// Writes audience members to Customer Match lists of one Google account.
pub struct GoogleDestination {
    client: Client,
    operating_account: Json,
    login_account: Option<Json>,
    consent: Option<Json>,
    terms_accepted: bool,
    normalize: NormalizeOptions,
    batch_size: usize,
    limits: DeliveryLimits,
    identity: String,
    account: String,
}

fn parse_url(key: &'static str, text: &str) -> Result<reqwest::Url, (&'static str, String)> {
    reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or((key, format!("expected an http:// or https:// URL, found {text:?}")))
}

fn account_json(key: &'static str, account: &AccountConfig) -> Result<Json, (&'static str, String)> {
    if !config::ACCOUNT_TYPES.contains(&account.account_type.as_str()) {
        return Err((
            key,
            format!(
                "account_type must be one of {}, found {:?}",
                config::ACCOUNT_TYPES.join(", "),
                account.account_type
            ),
        ));
    }
    let id = account.account_id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err((
            key,
            format!("account_id must be digits only (write Google Ads ids without dashes), found {id:?}"),
        ));
    }
    Ok(json!({ "accountType": account.account_type, "accountId": id }))
}

/// The user list a sync writes to: its `object`.
fn user_list(object: Option<&str>) -> Result<&str, DestinationError> {
    let list = object.map(str::trim).filter(|o| !o.is_empty()).ok_or_else(|| {
        DestinationError::config(
            "set `object:` on the sync to the Customer Match user list id (the audience id in Google Ads)",
        )
    })?;
    if list.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
        Ok(list)
    } else {
        Err(DestinationError::config(format!("`{list}` is not a Google user list id")))
    }
}

impl GoogleDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(
        config: GoogleConfig,
        credentials: Option<Arc<dyn CredentialStore>>,
    ) -> Result<GoogleDestination, (&'static str, String)> {
        let api = parse_url("api_url", config.api_url.as_deref().unwrap_or(config::DEFAULT_API_URL))?;
        let token_url = parse_url("token_url", config.token_url.as_deref().unwrap_or(config::DEFAULT_TOKEN_URL))?;
        let operating_account = account_json("operating_account", &config.operating_account)?;
        let login_account = config.login_account.as_ref().map(|a| account_json("login_account", a)).transpose()?;
        let batch_size = config.batch_size.unwrap_or(config::MAX_BATCH_SIZE);
        if batch_size == 0 || batch_size > config::MAX_BATCH_SIZE {
            return Err((
                "batch_size",
                format!(
                    "expected 1 to {} members (Google's limit per request), found {batch_size}",
                    config::MAX_BATCH_SIZE
                ),
            ));
        }
        let per_minute = config.requests_per_minute.unwrap_or(config::DEFAULT_REQUESTS_PER_MINUTE);
        let per_day = config.requests_per_day.unwrap_or(config::DEFAULT_REQUESTS_PER_DAY);
        if per_minute == 0 || per_day == 0 {
            let key = if per_minute == 0 { "requests_per_minute" } else { "requests_per_day" };
            return Err((key, "expected a positive number of requests".into()));
        }
        let max_concurrency = config.max_concurrency.unwrap_or(config::DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 || max_concurrency > config::MAX_CONCURRENCY {
            return Err((
                "max_concurrency",
                format!("expected 1 to {} requests in flight, found {max_concurrency}", config::MAX_CONCURRENCY),
            ));
        }
        let timeout = config.timeout_seconds.unwrap_or(60);
        if timeout == 0 {
            return Err(("timeout_seconds", "expected a positive number of seconds".into()));
        }
        let default_country = match config.default_country.as_deref().map(str::trim) {
            Some(country) if country.len() == 2 && country.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(country.to_ascii_uppercase())
            }
            Some(other) => {
                return Err(("default_country", format!("expected a two-letter country code, found {other:?}")))
            }
            None => None,
        };
        if [&config.oauth.client_id, &config.oauth.client_secret, &config.oauth.refresh_token]
            .iter()
            .any(|v| v.trim().is_empty())
        {
            return Err((
                "oauth",
                "client_id, client_secret and refresh_token must not be empty (is an environment variable unset?)"
                    .into(),
            ));
        }
        let consent = config.consent.as_ref().map(|c| {
            let mut consent = json!({});
            if let Some(status) = c.ad_user_data {
                consent["adUserData"] = json!(status.wire());
            }
            if let Some(status) = c.ad_personalization {
                consent["adPersonalization"] = json!(status.wire());
            }
            consent
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ("api_url", format!("cannot build an HTTP client: {e}")))?;
        let base = api.as_str().trim_end_matches('/').to_string();
        // Quotas belong to the Cloud project of the OAuth client; the account is named by a hash of
        // the client id, never by a secret.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        config.oauth.client_id.trim().hash(&mut hasher);
        let client_hash = hasher.finish();
        let account = format!("google-data-manager {base} oauth-client {client_hash:016x}");
        let identity = format!(
            "google_customer_match {base} {}/{}",
            config.operating_account.account_type,
            config.operating_account.account_id.trim()
        );
        let credential = format!("google/{base}/{}", config.oauth.client_id.trim());
        let tokens = OAuthTokens::new(token_url.to_string(), config.oauth, credential, credentials, http.clone());
        let limits = DeliveryLimits {
            quotas: vec![
                RequestQuota { requests: per_minute, per: Duration::from_secs(60) },
                RequestQuota { requests: per_day, per: Duration::from_secs(86_400) },
            ],
            max_concurrency,
            // Google refuses a whole request for one malformed member and does not always say which;
            // bisecting finds it.
            split_rejected_batches: true,
        };
        Ok(GoogleDestination {
            client: Client::new(api, http, tokens),
            operating_account,
            login_account,
            consent,
            terms_accepted: config.customer_match_terms_accepted,
            normalize: NormalizeOptions { default_country },
            batch_size,
            limits,
            identity,
            account,
        })
    }

    fn terms(&self) -> Result<(), DestinationError> {
        if self.terms_accepted {
            Ok(())
        } else {
            Err(DestinationError::config(
                "Google accepts Customer Match uploads only from advertisers who accepted the Customer Match terms \
                 (https://support.google.com/adspolicy/answer/6299717); once they are, set \
                 `customer_match_terms_accepted: true` on the destination",
            ))
        }
    }

    /// Sends one request of members, resending without those Google names as invalid. Returns, per
    /// member (by position in `members`), `Ok` or the reason Google refused it.
    async fn send(
        &self,
        context: Option<&WriteContext>,
        ingest: bool,
        user_list: &str,
        kind: DataKind,
        members: &[&Json],
        validate_only: bool,
    ) -> Result<Vec<Result<(), String>>, DestinationError> {
        let path = if ingest { INGEST } else { REMOVE };
        let destination = mapping::destination(&self.operating_account, self.login_account.as_ref(), user_list);
        let mut results: Vec<Option<Result<(), String>>> = vec![None; members.len()];
        let mut pending: Vec<usize> = (0..members.len()).collect();
        for _ in 0..=MAX_RESENDS {
            if pending.is_empty() {
                break;
            }
            let chunk: Vec<&Json> = pending.iter().map(|&i| members[i]).collect();
            let body = mapping::request_body(ingest, &destination, kind, &chunk, self.consent.as_ref(), validate_only);
            let reply = self.client.post(path, &body, context).await?;
            if reply.is_success() {
                for &index in &pending {
                    results[index] = Some(Ok(()));
                }
                pending.clear();
                break;
            }
            let refused =
                if reply.status == 400 { RpcError::read(&reply).member_violations() } else { BTreeMap::new() };
            let named: Vec<(usize, String)> = refused
                .into_iter()
                .filter_map(|(position, reason)| pending.get(position).map(|&i| (i, reason)))
                .collect();
            if named.is_empty() {
                return Err(client::failure(&format!("POST {path}"), &reply));
            }
            // The request failed as a whole because of these members: refuse them, send the rest.
            for (index, reason) in named {
                results[index] = Some(Err(format!("Google refused this member: {reason}")));
            }
            pending.retain(|&i| results[i].is_none());
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("Google kept refusing the request this member was in".into())))
            .collect())
    }
}

#[async_trait]
impl Destination for GoogleDestination {
    fn describe(&self) -> String {
        format!("google_customer_match {}", self.client.base_text())
    }

    crate::ads::audience_destination_settings!();

    async fn check(&self) -> Result<(), DestinationError> {
        // The Data Manager API has no read-only call on audience members; obtaining an access token
        // proves the OAuth client and refresh token. `prepare` validates the list itself.
        self.client.token().await
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        let name = match object {
            Some(object) => user_list(Some(object))?.to_string(),
            None => "user_list".to_string(),
        };
        let fields = Identifier::ALL
            .iter()
            .filter(|i| identifiers::supports(Platform::Google, **i))
            .map(|i| FieldDescription {
                name: i.field_name().to_string(),
                field_type: if matches!(i, Identifier::Country | Identifier::Zip) { "string" } else { "sha256" }.into(),
                can_match_on: false,
                required: false,
            })
            .collect();
        Ok(vec![ObjectDescription {
            name,
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(
                "the object is the Customer Match user list id; values are normalised and SHA-256 hashed before \
                 they leave (country, zip, mobile_ad_id and external_id are sent as they are); an address needs \
                 first_name, last_name, country and zip; a list takes contact fields, mobile_ad_id or external_id"
                    .into(),
            ),
        }])
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        let list = user_list(target.object.as_deref())?;
        check_target(Platform::Google, target)?;
        self.terms()?;
        let kinds: BTreeSet<DataKind> =
            target.fields.iter().filter_map(|f| Identifier::from_field(&f.name)).filter_map(mapping::kind_of).collect();
        if kinds.len() > 1 {
            return Err(DestinationError::config(format!(
                "sync `{}` maps identifiers of different kinds (contact fields, mobile_ad_id, external_id), but a \
                 Customer Match list holds contact information, mobile ids or user ids: split it into one sync per \
                 list",
                target.sync
            )));
        }
        // Checks the list, the accounts and the permissions without changing anything: a
        // validate-only remove of a placeholder that holds no personal data (the SHA-256 of the
        // empty string, the all-zero advertising id, a made-up user id).
        let (kind, placeholder) = match kinds.first() {
            Some(DataKind::Mobile) => {
                (DataKind::Mobile, json!({ "mobileData": { "mobileIds": ["00000000-0000-0000-0000-000000000000"] } }))
            }
            Some(DataKind::UserId) => {
                (DataKind::UserId, json!({ "userIdData": { "userId": "sluice-validation-placeholder" } }))
            }
            _ => {
                let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
                (DataKind::User, json!({ "userData": { "userIdentifiers": [{ "emailAddress": empty_sha256 }] } }))
            }
        };
        match self.send(None, false, list, kind, &[&placeholder], true).await {
            Ok(_) => Ok(()),
            Err(error) if error.class == sluice_core::ErrorClass::Permanent => Err(DestinationError::config(format!(
                "Google refused a validation request for user list {list}: {}",
                error.message
            ))),
            Err(error) => Err(error),
        }
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let list = user_list(context.object.as_deref())?;
        self.terms()?;
        let ops = plan_members(Platform::Google, batch, &self.normalize);
        let (mut delivery, removes, adds) = Delivery::plan(ops, mapping::audience_member);
        // Removes go first: a member who left and one who entered may share an identifier, and
        // Google removes by any identifier.
        for (ingest, entries, what) in [(false, &removes, "not removed"), (true, &adds, "not added")] {
            for kind in [DataKind::User, DataKind::Mobile, DataKind::UserId] {
                let group: Vec<&Entry<Uploaded>> = entries.iter().filter(|e| e.item.kind == kind).collect();
                for chunk in group.chunks(config::MAX_BATCH_SIZE) {
                    let members: Vec<&Json> = chunk.iter().map(|e| &e.item.json).collect();
                    let results = self.send(Some(context), ingest, list, kind, &members, false).await?;
                    for (entry, result) in chunk.iter().zip(results) {
                        match result {
                            Ok(()) => delivery.applied(entry.change, ingest, entry.item.sent.to_destination_id()),
                            Err(reason) => delivery.refused(entry.change, what, &reason),
                        }
                    }
                }
            }
        }
        Ok(delivery.outcomes(|_| None))
    }
}
