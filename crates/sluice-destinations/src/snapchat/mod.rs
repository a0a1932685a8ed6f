//! Snapchat destination: keeps a Customer List (Snap Audience Match) segment in step with an
//! audience, adding members with `POST /v1/segments/{id}/users` and removing them with `DELETE`
//! on the same path.
//!
//! Source: <https://developers.snap.com/api/marketing-api/Ads-API/customer-lists>. A sync's
//! `object:` is the segment's id. Every identifier is normalised and sent as a SHA-256 digest by
//! the shared identifier layer (`crate::ads`); each applied record keeps the member sent as its
//! destination id, so a member who leaves, or whose identifiers change, is removed with exactly
//! the digests that were added.

mod client;
mod config;
mod mapping;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use config::SnapchatConfig;
use reqwest::Method;
use sluice_core::{
    ChangeBatch, CredentialStore, DeliveryLimits, Destination, DestinationError, ErrorClass, ObjectDescription,
    Outcome, RequestQuota, Target, WriteContext,
};

use self::client::Client;
use self::config::Settings;
use self::mapping::Segment;
use crate::ads::identifiers::Identifier;
use crate::ads::members::{self, Member};
use crate::ads::Platform;
use crate::audience_sync::{self, Sent};
use crate::http::settings::member_session;

/// Writes audience members to the Customer Lists of one Snapchat ad account.
pub struct SnapchatDestination {
    client: Client,
    settings: Settings,
    account_key: String,
    /// Segment id per sync, learnt by `prepare`.
    prepared: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SnapchatDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(
        config: SnapchatConfig,
        credentials: Option<std::sync::Arc<dyn CredentialStore>>,
    ) -> Result<SnapchatDestination, (&'static str, String)> {
        let settings = config::validate(&config)?;
        // Snap limits each access token.
        let (http, tokens, account_key) = member_session(
            "snapchat",
            &settings.api_url,
            &settings.token_url,
            settings.timeout_seconds,
            config.oauth,
            credentials,
        )?;
        Ok(SnapchatDestination {
            client: Client::new(settings.api_url.clone(), http, tokens),
            account_key,
            settings,
            prepared: Mutex::new(HashMap::new()),
        })
    }

    fn segment_id(object: Option<&str>) -> Result<String, DestinationError> {
        let object = object.ok_or_else(|| {
            DestinationError::config("set `object:` on the sync to the Snapchat Customer List segment's id")
        })?;
        mapping::segment_id(object)
            .ok_or_else(|| DestinationError::config(format!("`{object}` is not a Snapchat segment id")))
    }

    /// `GET /v1/segments/{id}`; a 404 is a config error naming the segment.
    async fn segment(&self, id: &str) -> Result<Segment, DestinationError> {
        let path = format!("/segments/{id}");
        let reply = self.client.send(Method::GET, &path, None, None).await?;
        if reply.status == 404 {
            return Err(DestinationError::config(format!(
                "Snapchat has no segment {id} that this member can see ({})",
                client::message(&reply)
            )));
        }
        if !reply.is_success() {
            return Err(client::failure(&format!("GET {path}"), &reply));
        }
        Segment::list(&reply.json())
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| DestinationError::transient(format!("Snapchat answered GET {path} without segment {id}")))
    }

    /// Adds (`POST`) or removes (`DELETE`) the members of `items` (step index, member), in requests
    /// of at most 100,000 identifiers, and stores each member's answer at its step index.
    async fn send(
        &self,
        context: &WriteContext,
        segment: &str,
        method: Method,
        items: Vec<(usize, &Member)>,
        answers: &mut [Option<Sent>],
    ) -> Result<(), DestinationError> {
        let path = format!("/segments/{segment}/users");
        let what = format!("{method} {path}");
        let mut start = 0;
        while start < items.len() {
            // As many members as fit in one request's identifier limit (at least one).
            let mut end = start;
            let mut identifiers = 0;
            while end < items.len() {
                let count = mapping::identifier_count(items[end].1);
                if end > start && identifiers + count > config::MAX_IDENTIFIERS {
                    break;
                }
                identifiers += count;
                end += 1;
            }
            let chunk = &items[start..end];
            start = end;
            let entries = mapping::entries(chunk);
            if entries.is_empty() {
                continue;
            }
            let body = mapping::body(&entries);
            let reply = self.client.send(method.clone(), &path, Some(&body), Some(context)).await?;
            let results = if reply.is_success() {
                vec![Ok(()); entries.len()]
            } else {
                let failure = client::failure(&what, &reply);
                // A refusal of some entries (HTTP 400 with one `sub_request_status` per entry) is
                // read entry by entry; anything else concerns the whole request.
                match mapping::entry_results(&reply.json(), entries.len()) {
                    Some(results) if failure.class == ErrorClass::Permanent => results,
                    _ => return Err(failure),
                }
            };
            for (index, _) in chunk {
                answers[*index] = Some(Sent::Done);
            }
            for (entry, result) in entries.iter().zip(results) {
                if let Err(reason) = result {
                    let text = format!("Snapchat refused this member's {}: {reason}", entry.schema);
                    for owner in &entry.owners {
                        answers[*owner] = Some(Sent::Rejected(text.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Destination for SnapchatDestination {
    fn describe(&self) -> String {
        format!("snapchat {} ad account {}", self.client.base_text(), self.settings.ad_account_id)
    }

    fn identity(&self) -> String {
        // Segments belong to one ad account: another account means the snapshot no longer applies.
        format!("snapchat {} ad account {}", self.client.base_text(), self.settings.ad_account_id)
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    /// Each record sends up to one digest per mapped identifier in a request, and a request may
    /// hold 100,000: with e-mail and phone mapped, 50,000 records.
    fn batch_size_for(&self, target: &Target) -> usize {
        let per_record = target
            .fields
            .iter()
            .filter(|f| Identifier::from_field(&f.name).and_then(mapping::schema).is_some())
            .count()
            .max(1);
        self.settings.batch_size.min(config::MAX_IDENTIFIERS / per_record)
    }

    fn delivery_limits(&self) -> DeliveryLimits {
        DeliveryLimits {
            quotas: vec![RequestQuota { requests: self.settings.requests_per_second, per: Duration::from_secs(1) }],
            max_concurrency: self.settings.max_concurrency,
            // Entries are answered one by one; a request refused whole is bisected to find the
            // records at fault.
            split_rejected_batches: true,
        }
    }

    fn wants_destination_ids(&self) -> bool {
        true
    }

    fn accepts_object(&self) -> bool {
        true
    }

    fn account_key(&self) -> String {
        self.account_key.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let path = format!("/adaccounts/{}", self.settings.ad_account_id);
        let reply = self.client.send(Method::GET, &path, None, None).await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(client::failure(&format!("GET {path}"), &reply))
        }
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        if let Some(object) = object {
            return Ok(vec![self.segment(&Self::segment_id(Some(object))?).await?.describe()]);
        }
        let path = format!("/adaccounts/{}/segments", self.settings.ad_account_id);
        let reply = self.client.send(Method::GET, &path, None, None).await?;
        if !reply.is_success() {
            return Err(client::failure(&format!("GET {path}"), &reply));
        }
        Ok(Segment::list(&reply.json()).iter().filter(|s| s.takes_users()).map(Segment::describe).collect())
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        members::check_target(Platform::Snapchat, target)?;
        let id = Self::segment_id(target.object.as_deref())?;
        let segment = self.segment(&id).await?;
        if !segment.ad_account_id.eq_ignore_ascii_case(&self.settings.ad_account_id) {
            return Err(DestinationError::config(format!(
                "Snapchat segment {id} belongs to ad account {}, not to the destination's ad_account_id {}",
                segment.ad_account_id, self.settings.ad_account_id
            )));
        }
        if !segment.takes_users() {
            return Err(DestinationError::config(format!(
                "Snapchat segment {id} (\"{}\") is a {} audience; users can only be uploaded to a Customer List \
                 (source_type FIRST_PARTY)",
                segment.name, segment.source_type
            )));
        }
        lock(&self.prepared).insert(target.sync.clone(), id);
        Ok(())
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let segment = match context.object.as_deref() {
            Some(object) => Self::segment_id(Some(object))?,
            None => match lock(&self.prepared).get(&context.sync).cloned() {
                Some(id) => id,
                None => Self::segment_id(None)?,
            },
        };
        let ops = members::plan_members(Platform::Snapchat, batch, &self.settings.normalize);
        let steps = audience_sync::steps(ops, context.mode, Platform::Snapchat);
        let mut removed = vec![None; steps.len()];
        let mut added = vec![None; steps.len()];
        let removals: Vec<(usize, &Member)> =
            steps.iter().enumerate().filter_map(|(i, s)| s.removal().map(|m| (i, m))).collect();
        self.send(context, &segment, Method::DELETE, removals, &mut removed).await?;
        let additions: Vec<(usize, &Member)> =
            steps.iter().enumerate().filter_map(|(i, s)| s.addition().map(|m| (i, m))).collect();
        self.send(context, &segment, Method::POST, additions, &mut added).await?;
        Ok(audience_sync::outcomes(&steps, &removed, &added, Platform::Snapchat))
    }
}
