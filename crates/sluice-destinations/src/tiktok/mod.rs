//! TikTok audiences destination: keeps a TikTok audience equal to a Sluice audience with the
//! Marketing API's audience segment endpoint (`/segment/mapping/`, actions `add` and `delete`),
//! which changes membership incrementally instead of re-uploading customer files.

mod client;
mod config;
mod mapping;

use std::hash::{Hash, Hasher};
use std::time::Duration;

use async_trait::async_trait;
pub use config::{RateLimitTier, TikTokConfig};
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{
    ChangeBatch, DeliveryLimits, Destination, DestinationError, ErrorClass, FieldDescription, ObjectDescription,
    Outcome, OutcomeStatus, SyncMode, Target, WriteContext,
};

use self::client::Client;
use crate::ads::delivery::Delivery;
use crate::ads::members::{check_target, plan_members, Member};
use crate::ads::{identifiers, Identifier, NormalizeOptions, Platform};

const API: &str = "/open_api/v1.3";

/// Writes audience members to audiences of one TikTok advertiser.
pub struct TikTokDestination {
    client: Client,
    advertiser_id: String,
    mobile_schema: String,
    normalize: NormalizeOptions,
    batch_size: usize,
    limits: DeliveryLimits,
    identity: String,
    account: String,
}

/// The audience a sync writes to: its `object`.
fn audience(object: Option<&str>) -> Result<&str, DestinationError> {
    let id = object.map(str::trim).filter(|o| !o.is_empty()).ok_or_else(|| {
        DestinationError::config("set `object:` on the sync to the TikTok audience id (custom_audience_id)")
    })?;
    if id.chars().all(|c| c.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(DestinationError::config(format!("`{id}` is not a TikTok audience id (digits only)")))
    }
}

/// A JSON list of one string, as TikTok's GET endpoints take lists in the query.
fn one_id_list(id: &str) -> String {
    serde_json::json!([id]).to_string()
}

impl TikTokDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(config: TikTokConfig) -> Result<TikTokDestination, (&'static str, String)> {
        let text = config.api_url.as_deref().unwrap_or(config::DEFAULT_API_URL);
        let api = reqwest::Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(("api_url", format!("expected an http:// or https:// URL, found {text:?}")))?;
        let token = config.access_token.trim().to_string();
        if token.is_empty() {
            return Err(("access_token", "the access token is empty (is the environment variable set?)".into()));
        }
        let advertiser_id = config.advertiser_id.trim().to_string();
        if advertiser_id.is_empty() || !advertiser_id.chars().all(|c| c.is_ascii_digit()) {
            return Err((
                "advertiser_id",
                format!("expected the advertiser id (digits only), found {advertiser_id:?}"),
            ));
        }
        let mobile_schema = config.mobile_id_schema.unwrap_or_else(|| "IDFA_SHA256".into());
        if !config::MOBILE_ID_SCHEMAS.contains(&mobile_schema.as_str()) {
            return Err((
                "mobile_id_schema",
                format!("expected one of {}, found {mobile_schema:?}", config::MOBILE_ID_SCHEMAS.join(", ")),
            ));
        }
        let batch_size = config.batch_size.unwrap_or(config::DEFAULT_BATCH_SIZE);
        if batch_size == 0 || batch_size > config::MAX_BATCH_SIZE {
            return Err(("batch_size", format!("expected 1 to {} users, found {batch_size}", config::MAX_BATCH_SIZE)));
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ("api_url", format!("cannot build an HTTP client: {e}")))?;
        let base = api.as_str().trim_end_matches('/').to_string();
        // TikTok's limits are per developer app; the token stands for the app here, named by a hash.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        let account = format!("tiktok {base} app-token {:016x}", hasher.finish());
        let identity = format!("tiktok_audiences {base} advertiser {advertiser_id}");
        let limits = DeliveryLimits {
            quotas: config.rate_limit_tier.unwrap_or(RateLimitTier::Basic).quotas(),
            max_concurrency,
            // TikTok refuses a whole request for one bad id and does not say which; bisecting finds it.
            split_rejected_batches: true,
        };
        Ok(TikTokDestination {
            client: Client::new(api, http, token),
            advertiser_id,
            mobile_schema,
            normalize: NormalizeOptions { default_country },
            batch_size,
            limits,
            identity,
            account,
        })
    }

    /// One `/segment/mapping/` request. `Ok(true)` when TikTok applied it, `Ok(false)` when it
    /// reported partial success without saying for whom.
    async fn map(
        &self,
        context: &WriteContext,
        audience_id: &str,
        delete: bool,
        members: &[&Member],
    ) -> Result<bool, DestinationError> {
        let path = format!("{API}/segment/mapping/");
        let body = mapping::mapping_body(&self.advertiser_id, audience_id, delete, members, &self.mobile_schema);
        let envelope = self.client.send(Method::POST, &path, Some(&body), Some(context)).await?;
        match envelope.code {
            0 => Ok(true),
            20001 => Ok(false),
            _ => Err(client::failure(&format!("POST {path}"), &envelope)),
        }
    }
}

#[async_trait]
impl Destination for TikTokDestination {
    fn describe(&self) -> String {
        format!("tiktok_audiences {}", self.client.base_text())
    }

    crate::ads::audience_destination_settings!();

    async fn check(&self) -> Result<(), DestinationError> {
        let path = format!("{API}/advertiser/info/?advertiser_ids={}", encode(&one_id_list(&self.advertiser_id)));
        let envelope = self.client.send(Method::GET, &path, None, None).await?;
        if envelope.code == 0 {
            Ok(())
        } else {
            Err(client::failure("GET /advertiser/info/", &envelope))
        }
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        let name = match object {
            Some(object) => audience(Some(object))?.to_string(),
            None => "audience".to_string(),
        };
        let fields = mapping::schemas(&self.mobile_schema)
            .iter()
            .filter(|(identifier, _)| identifiers::supports(Platform::TikTok, *identifier))
            .map(|(identifier, schema)| FieldDescription {
                name: identifier.field_name().to_string(),
                field_type: schema.clone(),
                can_match_on: false,
                required: false,
            })
            .collect();
        Ok(vec![ObjectDescription {
            name,
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(format!(
                "the object is the TikTok audience id; values are normalised and SHA-256 hashed before they leave; \
                 mobile ids are sent as {}",
                self.mobile_schema
            )),
        }])
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        let id = audience(target.object.as_deref())?;
        check_target(Platform::TikTok, target)?;
        let unsupported: Vec<String> = target
            .fields
            .iter()
            .filter(|f| {
                Identifier::from_field(&f.name)
                    .is_some_and(|i| !mapping::schemas(&self.mobile_schema).iter().any(|(s, _)| *s == i))
            })
            .map(|f| format!("`{}`", f.name))
            .collect();
        if !unsupported.is_empty() {
            return Err(DestinationError::config(format!(
                "sync `{}` maps {}, which TikTok's audience segment API does not take: map email, phone or mobile_ad_id",
                target.sync,
                unsupported.join(", ")
            )));
        }
        let path = format!(
            "{API}/dmp/custom_audience/get/?advertiser_id={}&custom_audience_ids={}",
            encode(&self.advertiser_id),
            encode(&one_id_list(id))
        );
        let envelope = self.client.send(Method::GET, &path, None, None).await?;
        if envelope.code != 0 {
            let error = client::failure("GET /dmp/custom_audience/get/", &envelope);
            return Err(match error.class {
                ErrorClass::Permanent => DestinationError::config(error.message),
                _ => error,
            });
        }
        let found = envelope
            .data
            .get("list")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .any(|item| item.pointer("/audience_details/audience_id").and_then(Json::as_str) == Some(id));
        if found {
            Ok(())
        } else {
            Err(DestinationError::config(format!(
                "TikTok advertiser {} has no audience {id}; set `object:` to one of its audience ids",
                self.advertiser_id
            )))
        }
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let audience_id = audience(context.object.as_deref())?;
        let mut unconfirmed: Vec<bool> = vec![false; batch.changes.len()];
        let ops = plan_members(Platform::TikTok, batch, &self.normalize);
        let (mut delivery, removes, adds) =
            Delivery::plan(ops, |member| mapping::sendable(member, &self.mobile_schema));
        // Deletes go first: a user who left and one who entered may share an id.
        for (delete, entries) in [(true, &removes), (false, &adds)] {
            for chunk in entries.chunks(config::MAX_BATCH_SIZE) {
                let members: Vec<&Member> = chunk.iter().map(|e| &e.item).collect();
                let confirmed = self.map(context, audience_id, delete, &members).await?;
                for entry in chunk {
                    if !confirmed {
                        unconfirmed[entry.change] = true;
                    } else {
                        delivery.applied(entry.change, !delete, entry.item.to_destination_id());
                    }
                }
            }
        }
        Ok(delivery.outcomes(|change| {
            unconfirmed[change].then(|| Outcome {
                status: OutcomeStatus::Retryable,
                message: Some(
                    "TikTok reported partial success (code 20001) without naming the users; sent again".into(),
                ),
                destination_id: None,
            })
        }))
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
