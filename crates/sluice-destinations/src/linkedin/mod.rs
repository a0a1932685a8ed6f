//! LinkedIn destination: keeps a Matched Audiences DMP segment's users in step with an audience,
//! through `POST /rest/dmpSegments/{id}/users` batches (`X-RestLi-Method: BATCH_CREATE`) of ADD and
//! REMOVE elements.
//!
//! Source: <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>.
//! A sync's `object:` is the segment's id. Members are normalised and hashed by the shared
//! identifier layer (`crate::ads`); each applied record keeps the member sent as its destination
//! id, so a member who leaves, or whose identifiers change, is removed with exactly what was sent.
//!
//! Only `email` (SHA256_EMAIL) and `mobile_ad_id` (GOOGLE_AID, a device id LinkedIn documents as
//! plain) are sent. LinkedIn takes names and country only unhashed, so a sync mapping them is
//! refused: Sluice sends ad platforms hashed identifiers, and stores no plain customer values.

mod client;
mod config;
mod mapping;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use config::LinkedInConfig;
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{
    ChangeBatch, CredentialStore, DeliveryLimits, Destination, DestinationError, ObjectDescription, Outcome,
    RequestQuota, Target, WriteContext,
};

use self::client::Client;
use self::config::Settings;
use self::mapping::{Action, Segment};
use crate::ads::identifiers::{Identifier, NormalizeOptions};
use crate::ads::members::{self, Member};
use crate::ads::Platform;
use crate::audience_sync::{self, Sent};
use crate::http::settings::member_session;

/// Writes audience members to the DMP segments of one LinkedIn ad account.
pub struct LinkedInDestination {
    client: Client,
    settings: Settings,
    account_key: String,
    /// Segment id per sync, learnt by `prepare`.
    prepared: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LinkedInDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(
        config: LinkedInConfig,
        credentials: Option<std::sync::Arc<dyn CredentialStore>>,
    ) -> Result<LinkedInDestination, (&'static str, String)> {
        let settings = config::validate(&config)?;
        // LinkedIn's limits are per member and app.
        let (http, tokens, account_key) = member_session(
            "linkedin",
            &settings.api_url,
            &settings.token_url,
            settings.timeout_seconds,
            config.oauth,
            credentials,
        )?;
        Ok(LinkedInDestination {
            client: Client::new(settings.api_url.clone(), http, tokens, settings.version.clone()),
            account_key,
            settings,
            prepared: Mutex::new(HashMap::new()),
        })
    }

    fn account_urn(&self) -> String {
        format!("urn:li:sponsoredAccount:{}", self.settings.account)
    }

    /// A config error for a sync that maps names or country, which LinkedIn takes only unhashed;
    /// `None` when it maps none. More to the point than the shared "cannot match on" error.
    fn plain_fields_error(target: &Target) -> Option<DestinationError> {
        let plain: Vec<String> = target
            .fields
            .iter()
            .filter(|f| {
                matches!(
                    Identifier::from_field(&f.name),
                    Some(Identifier::FirstName | Identifier::LastName | Identifier::Country)
                )
            })
            .map(|f| format!("`{}`", f.name))
            .collect();
        if plain.is_empty() {
            return None;
        }
        Some(DestinationError::config(format!(
            "sync `{}`: LinkedIn takes names and country unhashed, and Sluice sends only hashed identifiers to ad \
             platforms, so {} cannot be sent; remove {} from the mapping and map `email` (or `mobile_ad_id`, an \
             Android advertising id)",
            target.sync,
            plain.join(", "),
            if plain.len() == 1 { "it" } else { "them" }
        )))
    }

    /// The segment named by a sync's `object:`.
    fn segment_id(object: Option<&str>) -> Result<String, DestinationError> {
        let object = object.ok_or_else(|| {
            DestinationError::config(
                "set `object:` on the sync to the LinkedIn DMP segment's id, e.g. object: \"10804\"",
            )
        })?;
        mapping::segment_id(object).ok_or_else(|| {
            DestinationError::config(format!(
                "`{object}` is not a LinkedIn DMP segment id: use its number, or urn:li:dmpSegment:NUMBER"
            ))
        })
    }

    /// `GET /rest/dmpSegments/{id}`; a 404 is a config error naming the segment.
    async fn segment(&self, id: &str) -> Result<Segment, DestinationError> {
        let path = format!("/dmpSegments/{id}");
        let reply = self.client.send(Method::GET, &path, None, false, None).await?;
        if reply.status == 404 {
            return Err(DestinationError::config(format!(
                "LinkedIn has no DMP segment {id} that this member can see ({})",
                client::message(&reply)
            )));
        }
        if !reply.is_success() {
            return Err(client::failure(&format!("GET {path}"), self.client.version(), &reply));
        }
        Segment::from_json(&reply.json()).ok_or_else(|| {
            DestinationError::transient(format!("LinkedIn answered GET {path} without a segment id and account"))
        })
    }

    /// Sends one action for the members of `items` (step index, member), in requests of at most
    /// `batch_size` elements, and stores each member's answer at its step index.
    async fn send(
        &self,
        context: &WriteContext,
        segment: &str,
        action: Action,
        items: Vec<(usize, &Member)>,
        answers: &mut [Option<Sent>],
    ) -> Result<(), DestinationError> {
        let mut sendable = Vec::new();
        for (index, member) in items {
            match mapping::element(member, action) {
                Ok(element) => sendable.push((index, member, element)),
                Err(message) => answers[index] = Some(Sent::Rejected(message)),
            }
        }
        let path = format!("/dmpSegments/{segment}/users");
        for chunk in sendable.chunks(self.settings.batch_size) {
            let elements: Vec<&Json> = chunk.iter().map(|(_, _, element)| element).collect();
            let body = serde_json::json!({ "elements": elements }).to_string();
            let reply = self.client.send(Method::POST, &path, Some(&body), true, Some(context)).await?;
            if !reply.is_success() {
                return Err(client::failure(&format!("POST {path}"), self.client.version(), &reply));
            }
            let Some(results) = mapping::element_results(&reply.json(), chunk.len()) else {
                // Not one status per element: nothing can be said of any member.
                return Err(DestinationError::transient(format!(
                    "LinkedIn answered POST {path} (HTTP {}) without one status per element",
                    reply.status
                )));
            };
            for ((index, member, _), result) in chunk.iter().zip(results) {
                answers[*index] = Some(match result {
                    Ok(()) => Sent::Done,
                    Err(failure) => {
                        let text = format!(
                            "LinkedIn refused this member (HTTP {}): {}",
                            failure.status,
                            mapping::redact(&failure.message, member)
                        );
                        if failure.retryable {
                            Sent::Retryable(text)
                        } else {
                            Sent::Rejected(text)
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Destination for LinkedInDestination {
    fn describe(&self) -> String {
        format!("linkedin {} ad account {}", self.client.base_text(), self.settings.account)
    }

    fn identity(&self) -> String {
        // Segments belong to one ad account: another account means the snapshot no longer applies.
        format!("linkedin {} ad account {}", self.client.base_text(), self.settings.account)
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    fn delivery_limits(&self) -> DeliveryLimits {
        DeliveryLimits {
            quotas: vec![RequestQuota { requests: self.settings.requests_per_minute, per: Duration::from_secs(60) }],
            max_concurrency: self.settings.max_concurrency,
            // Elements are answered one by one; a batch refused whole (one malformed element can
            // fail Rest.li's decoding of the body) is bisected to find it.
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
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", "account")
            .append_pair("account", &self.account_urn())
            .finish();
        let path = format!("/dmpSegments?{query}");
        let reply = self.client.send(Method::GET, &path, None, false, None).await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(client::failure("GET /dmpSegments?q=account", self.client.version(), &reply))
        }
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        if let Some(object) = object {
            let segment = self.segment(&Self::segment_id(Some(object))?).await?;
            return Ok(vec![segment.describe()]);
        }
        // "When no start or count parameters are provided in the request … all the segments for
        // an account will be returned in the first request" (DMP Segments, Pagination).
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", "account")
            .append_pair("account", &self.account_urn())
            .finish();
        let path = format!("/dmpSegments?{query}");
        let reply = self.client.send(Method::GET, &path, None, false, None).await?;
        if !reply.is_success() {
            return Err(client::failure("GET /dmpSegments?q=account", self.client.version(), &reply));
        }
        Ok(reply
            .json()
            .get("elements")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Segment::from_json)
            .filter(Segment::takes_users)
            .map(|s| s.describe())
            .collect())
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        if let Some(error) = Self::plain_fields_error(target) {
            return Err(error);
        }
        // Accepts only `email` and `mobile_ad_id`, at least one of them: every element has a user id.
        members::check_target(Platform::LinkedIn, target)?;
        let id = Self::segment_id(target.object.as_deref())?;
        let segment = self.segment(&id).await?;
        if segment.account != self.settings.account {
            return Err(DestinationError::config(format!(
                "LinkedIn DMP segment {id} belongs to ad account {}, not to the destination's ad_account {}",
                segment.account, self.settings.account
            )));
        }
        if !segment.takes_users() {
            return Err(DestinationError::config(format!(
                "LinkedIn DMP segment {id} (\"{}\") is a {} segment; Sluice adds users, so use a USER segment",
                segment.name, segment.kind
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
        // LinkedIn takes no phone number, so no default country is needed.
        // Members read from destination ids stored before names and country were refused lose
        // them here: they are never sent again.
        let ops = members::plan_members(Platform::LinkedIn, batch, &NormalizeOptions::default())
            .into_iter()
            .map(mapping::sendable_op)
            .collect();
        let steps = audience_sync::steps(ops, context.mode, Platform::LinkedIn);
        let mut removed = vec![None; steps.len()];
        let mut added = vec![None; steps.len()];
        let removals: Vec<(usize, &Member)> =
            steps.iter().enumerate().filter_map(|(i, s)| s.removal().map(|m| (i, m))).collect();
        self.send(context, &segment, Action::Remove, removals, &mut removed).await?;
        let additions: Vec<(usize, &Member)> =
            steps.iter().enumerate().filter_map(|(i, s)| s.addition().map(|m| (i, m))).collect();
        self.send(context, &segment, Action::Add, additions, &mut added).await?;
        Ok(audience_sync::outcomes(&steps, &removed, &added, Platform::LinkedIn))
    }
}
