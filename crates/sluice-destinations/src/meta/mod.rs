//! Meta Custom Audiences destination: keeps a customer-list custom audience equal to a Sluice
//! audience, sending only normalised SHA-256 digests (and mobile ad ids, which Meta takes plain).
//!
//! A sync's `object:` is the custom audience's id. Members who enter are added with
//! `POST /{audience_id}/users`, members who leave are removed with `DELETE /{audience_id}/users`
//! (mode `audience`; mode `insert` only adds). Each member's digests are kept as its destination
//! id, so a removal, or a change of identifiers (remove the old, add the new), sends exactly what
//! was added.
//!
//! A full sync in mode `audience` (the snapshot was empty, so nothing is known of what the audience
//! holds) uploads the members with `POST /{audience_id}/usersreplace` instead, in one session for
//! the run, so members left from before are dropped when its last batch arrives
//! (`replace_on_full_sync`, off by default).

mod client;
mod config;
mod mapping;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use config::MetaConfig;
use reqwest::Method;
use serde_json::Value as Json;
use sluice_core::{
    ChangeBatch, DeliveryLimits, Destination, DestinationError, ErrorClass, FieldDescription, ObjectDescription,
    Outcome, RequestQuota, SyncMode, Target, WriteContext,
};

use self::client::Client;
use crate::ads::identifiers::{self, is_hashed};
use crate::ads::members::{self, Member, MemberOp};
use crate::ads::{Identifier, NormalizeOptions, Platform};

/// Writes audience members to Meta custom audiences of one ad account.
pub struct MetaDestination {
    client: Client,
    batch_size: usize,
    limits: DeliveryLimits,
    identity: String,
    /// The ad account id without `act_`.
    ad_account: Option<String>,
    options: NormalizeOptions,
    /// Audience id per sync, from `prepare`.
    prepared: Mutex<HashMap<String, String>>,
    /// Whether a full sync replaces the audience (`replace_on_full_sync`).
    replace_on_full_sync: bool,
    /// The replace session of each sync whose run is a full sync, from `prepare`. The async lock
    /// keeps the session's requests one at a time, in `batch_seq` order, whatever the driver does.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ReplaceSession>>>>,
}

/// One run's `/usersreplace` session.
struct ReplaceSession {
    audience: String,
    id: u64,
    /// The `batch_seq` of the next request. It moves on only when Meta accepts a request, so a
    /// retried request is sent again under its own number (Meta takes a batch sent again).
    next_seq: u64,
    /// `estimated_num_total`: the changes planned for the run, one per record.
    planned: u64,
    /// Keys of the changes that are done with: sent in an accepted request, or refused for good.
    /// Counted once each, however often a batch is retried or split.
    settled: HashSet<String>,
    /// The last accepted payload, sent again to close the session when its last records are
    /// refused for good and no request is left to carry `last_batch_flag`.
    last_payload: Option<mapping::Payload>,
    /// `last_batch_flag` was accepted: the audience is being replaced.
    finished: bool,
}

impl ReplaceSession {
    /// `last_batch_flag` for a request carrying these keys: every planned record is then done.
    fn completes_with(&self, keys: &[&str]) -> bool {
        let new = keys.iter().filter(|k| !self.settled.contains(**k)).collect::<HashSet<_>>().len();
        (self.settled.len() + new) as u64 >= self.planned
    }

    fn session(&self, last: bool) -> mapping::Session {
        mapping::Session { id: self.id, seq: self.next_seq, last, total: self.planned }
    }

    /// Says which session a failure broke, and what an unfinished one means.
    fn explain(&self, mut error: DestinationError) -> DestinationError {
        error.message = format!(
            "{} (replace session {} of audience {}, batch_seq {}, {} of {} records done; Meta keeps the audience's \
             old members until the session's last batch arrives: if this run stops, run `sluice reset` on the sync \
             once Meta has ended the session, 90 minutes after it started)",
            error.message,
            self.id,
            self.audience,
            self.next_seq,
            self.settled.len(),
            self.planned
        );
        error
    }
}

fn invalid(count: usize) -> String {
    format!(
        "Meta counted this member as an invalid entry ({count} in its request) and did not add or remove it; \
         its identifiers were normalised and hashed by Sluice, so report this with the request's session"
    )
}

/// What a change becomes once its member was sent.
fn sent_outcome(op: &MemberOp) -> Outcome {
    match op {
        MemberOp::Add(sent) | MemberOp::Remove(sent) | MemberOp::Replace { add: sent, .. } => {
            // What was sent is what a later removal must send.
            let mut applied = Outcome::applied();
            applied.destination_id = Some(sent.to_destination_id());
            applied
        }
        MemberOp::Reject(message) => Outcome::rejected(message.clone()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_audience_id(id: &str) -> Result<(), DestinationError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(DestinationError::config(format!(
            "`{id}` is not a Meta custom audience id: set the sync's `object:` to the audience's numeric id \
             (Ads Manager → Audiences, or `sluice destinations describe`)"
        )))
    }
}

impl MetaDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(config: MetaConfig) -> Result<MetaDestination, (&'static str, String)> {
        let token = config.access_token.trim().to_string();
        if token.is_empty() {
            return Err(("access_token", "the token is empty (is the environment variable set?)".into()));
        }
        let api_url = config.api_url.as_deref().unwrap_or(config::DEFAULT_API_URL);
        let parsed = reqwest::Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(("api_url", format!("expected an http:// or https:// URL, found {api_url:?}")))?;
        let base = parsed.as_str().trim_end_matches('/').to_string();
        let version = config.api_version.as_deref().unwrap_or(config::DEFAULT_API_VERSION).trim().to_string();
        let well_formed = version.strip_prefix('v').and_then(|v| v.split_once('.')).is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
        if !well_formed {
            return Err((
                "api_version",
                format!("expected a Graph API version such as {}, found {version:?}", config::DEFAULT_API_VERSION),
            ));
        }
        let ad_account = match config.ad_account_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => {
                let digits = id.strip_prefix("act_").unwrap_or(id);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err((
                        "ad_account_id",
                        format!("expected an ad account id such as act_1234567890, found {id:?}"),
                    ));
                }
                Some(digits.to_string())
            }
        };
        let options = NormalizeOptions { default_country: config.default_country.clone() };
        if let Some(country) = options.default_country.as_deref() {
            if identifiers::wire_value(Platform::Meta, Identifier::Country, country, &NormalizeOptions::default())
                .ok()
                .flatten()
                .is_none()
            {
                return Err((
                    "default_country",
                    format!("expected a two-letter ISO 3166-1 country code such as FR, found {country:?}"),
                ));
            }
        }
        let batch_size = config.batch_size.unwrap_or(config::MAX_BATCH_SIZE);
        if batch_size == 0 || batch_size > config::MAX_BATCH_SIZE {
            return Err((
                "batch_size",
                format!(
                    "expected 1 to {} members (Meta's limit per request), found {batch_size}",
                    config::MAX_BATCH_SIZE
                ),
            ));
        }
        let per_hour = config.requests_per_hour.unwrap_or(config::DEFAULT_REQUESTS_PER_HOUR);
        if per_hour == 0 || per_hour > config::MAX_REQUESTS_PER_HOUR {
            return Err((
                "requests_per_hour",
                format!(
                    "expected 1 to {} requests (Meta's ceiling per ad account), found {per_hour}",
                    config::MAX_REQUESTS_PER_HOUR
                ),
            ));
        }
        let max_concurrency = config.max_concurrency.unwrap_or(config::DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 || max_concurrency > config::MAX_CONCURRENCY {
            return Err((
                "max_concurrency",
                format!("expected 1 to {} requests in flight, found {max_concurrency}", config::MAX_CONCURRENCY),
            ));
        }
        let timeout = config.timeout_seconds.unwrap_or(config::DEFAULT_TIMEOUT_SECONDS);
        if timeout == 0 {
            return Err(("timeout_seconds", "expected a positive number of seconds".into()));
        }
        let connect_timeout = config.connect_timeout_seconds.unwrap_or(config::DEFAULT_CONNECT_TIMEOUT_SECONDS);
        if connect_timeout == 0 {
            return Err(("connect_timeout_seconds", "expected a positive number of seconds".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(connect_timeout))
            .build()
            .map_err(|e| ("api_url", format!("cannot build an HTTP client: {e}")))?;
        // Named by the ad account (the scope of Meta's custom-audience budget), never by the token,
        // which is renewed from time to time and must not invalidate the snapshot.
        let identity = match &ad_account {
            Some(account) => format!("meta {base} act_{account}"),
            None => format!("meta {base}"),
        };
        let replace_on_full_sync = config.replace_on_full_sync.unwrap_or(false);
        let limits = DeliveryLimits {
            quotas: vec![RequestQuota { requests: per_hour, per: Duration::from_secs(3600) }],
            max_concurrency,
            // Meta refuses a whole upload for one malformed row; bisecting isolates it.
            split_rejected_batches: true,
        };
        Ok(MetaDestination {
            client: Client::new(base, version, http, token, config.app_secret.as_deref()),
            batch_size,
            limits,
            identity,
            ad_account,
            options,
            prepared: Mutex::new(HashMap::new()),
            replace_on_full_sync,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The audience's `id`, `name`, `subtype` and `operation_status`.
    async fn audience(&self, id: &str) -> Result<Json, DestinationError> {
        check_audience_id(id)?;
        let reply = self
            .client
            .get(id, &[("fields", "id,name,subtype,operation_status,approximate_count_lower_bound")])
            .await?;
        if !reply.is_success() {
            return Err(client::failure(&format!("GET /{id}"), &reply));
        }
        Ok(reply.json())
    }

    /// One upload of at most `batch_size` members; returns the positions (in `members`) of the
    /// ones Meta counted invalid.
    async fn upload(
        &self,
        context: &WriteContext,
        audience: &str,
        method: Method,
        members: &[&Member],
    ) -> Result<Vec<usize>, DestinationError> {
        let mut invalid = Vec::new();
        for (chunk_index, chunk) in members.chunks(self.batch_size.min(config::MAX_BATCH_SIZE)).enumerate() {
            let payload = mapping::payload(chunk);
            let form = mapping::form(&payload, mapping::Session::single(payload.rows.len()));
            let path = format!("{audience}/users");
            let reply = self.client.send_form(method.clone(), &path, &form, Some(context)).await?;
            if !reply.is_success() {
                return Err(client::failure(&format!("{method} /{path}"), &reply));
            }
            let answer = mapping::answer(&reply.json(), &payload);
            if answer.num_invalid_entries as usize > answer.invalid_rows.len() {
                tracing::warn!(
                    audience,
                    invalid = answer.num_invalid_entries,
                    named = answer.invalid_rows.len(),
                    "Meta counted invalid entries it did not name; those members are reported as sent"
                );
            }
            let offset = chunk_index * self.batch_size.min(config::MAX_BATCH_SIZE);
            invalid.extend(answer.invalid_rows.into_iter().map(|row| offset + row));
        }
        Ok(invalid)
    }

    fn describe_audience(name: &str, note: String) -> ObjectDescription {
        let fields = Identifier::ALL
            .into_iter()
            .map(|identifier| {
                let keys = mapping::keys(identifier).join("+");
                let form = if is_hashed(Platform::Meta, identifier) { "SHA-256" } else { "plain" };
                FieldDescription {
                    name: identifier.field_name().to_string(),
                    field_type: format!("{keys} ({form})"),
                    can_match_on: true,
                    required: false,
                }
            })
            .collect();
        ObjectDescription {
            name: name.to_string(),
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(note),
        }
    }
}

const NOTE: &str = "map any of these fields; values are normalised and hashed before they leave (mobile ad ids are \
                    sent plain, as Meta asks); `audience` adds and removes members, `insert` only adds";

#[async_trait]
impl Destination for MetaDestination {
    fn describe(&self) -> String {
        self.identity.clone()
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn delivery_limits(&self) -> DeliveryLimits {
        let mut limits = self.limits.clone();
        // A session in use (locked) or not finished is open.
        if lock(&self.sessions).values().any(|s| s.try_lock().map_or(true, |s| !s.finished)) {
            // A replace session takes its batches one after the other (the session lock would
            // queue them anyway; this keeps the driver from holding batches that only wait).
            limits.max_concurrency = 1;
        }
        limits
    }

    fn wants_destination_ids(&self) -> bool {
        true
    }

    fn accepts_object(&self) -> bool {
        true
    }

    fn account_key(&self) -> String {
        self.identity.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let reply = self.client.get("me", &[("fields", "id")]).await?;
        if !reply.is_success() {
            return Err(client::failure("GET /me", &reply));
        }
        if let Some(account) = &self.ad_account {
            let path = format!("act_{account}");
            let reply = self.client.get(&path, &[("fields", "id,name")]).await?;
            if !reply.is_success() {
                return Err(client::failure(&format!("GET /{path}"), &reply));
            }
        }
        Ok(())
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        if let Some(id) = object {
            let audience = self.audience(id).await?;
            let name = audience.get("name").and_then(Json::as_str).unwrap_or("");
            let subtype = audience.get("subtype").and_then(Json::as_str).unwrap_or("");
            let note = if subtype == "CUSTOM" {
                format!("Meta custom audience \"{name}\"; {NOTE}")
            } else {
                format!("Meta audience \"{name}\" is a {subtype} audience, which takes no uploaded members")
            };
            return Ok(vec![Self::describe_audience(id, note)]);
        }
        let Some(account) = &self.ad_account else {
            return Err(DestinationError::config(
                "set `ad_account_id` to list the account's custom audiences, or describe one audience by its id",
            ));
        };
        let path = format!("act_{account}/customaudiences");
        let mut objects = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("fields", "id,name,subtype"), ("limit", "100")];
            if let Some(cursor) = after.as_deref() {
                query.push(("after", cursor));
            }
            let reply = self.client.get(&path, &query).await?;
            if !reply.is_success() {
                return Err(client::failure(&format!("GET /{path}"), &reply));
            }
            let body = reply.json();
            for audience in body.get("data").and_then(Json::as_array).into_iter().flatten() {
                let (Some(id), Some("CUSTOM")) =
                    (audience.get("id").and_then(Json::as_str), audience.get("subtype").and_then(Json::as_str))
                else {
                    continue;
                };
                let name = audience.get("name").and_then(Json::as_str).unwrap_or("");
                objects.push(Self::describe_audience(id, format!("Meta custom audience \"{name}\"; {NOTE}")));
            }
            let next = body.pointer("/paging/cursors/after").and_then(Json::as_str).map(str::to_string);
            match (body.pointer("/paging/next"), next) {
                (Some(_), Some(cursor)) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
                _ => break,
            }
        }
        Ok(objects)
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        members::check_target(Platform::Meta, target)?;
        let id = target.object.as_deref().ok_or_else(|| {
            DestinationError::config(format!(
                "sync `{}`: set `object:` to the Meta custom audience's id (Ads Manager → Audiences)",
                target.sync
            ))
        })?;
        let audience = self.audience(id).await?;
        let name = audience.get("name").and_then(Json::as_str).unwrap_or("");
        match audience.get("subtype").and_then(Json::as_str) {
            Some("CUSTOM") => {}
            other => {
                return Err(DestinationError::config(format!(
                    "sync `{}`: Meta audience {id} (\"{name}\") is a {} audience; only customer list (CUSTOM) \
                     audiences take uploaded members; create one in Ads Manager → Audiences → Custom audience → Customer list",
                    target.sync,
                    other.unwrap_or("unknown")
                )))
            }
        }
        if audience.pointer("/operation_status/code").and_then(Json::as_u64) == Some(471) {
            return Err(DestinationError::config(format!(
                "sync `{}`: Meta flagged audience {id} (\"{name}\") for integrity reasons and refuses member updates; \
                 resolve the restriction in Audience Manager or create a new audience",
                target.sync
            )));
        }
        lock(&self.prepared).insert(target.sync.clone(), id.to_string());
        let mut sessions = lock(&self.sessions);
        if self.replace_on_full_sync
            && target.full_sync
            && target.mode == SyncMode::Audience
            && target.planned_changes > 0
        {
            let session = ReplaceSession {
                audience: id.to_string(),
                id: mapping::session_id(),
                next_seq: 1,
                planned: target.planned_changes,
                settled: HashSet::new(),
                last_payload: None,
                finished: false,
            };
            tracing::info!(
                sync = target.sync,
                audience = id,
                session = session.id,
                "full sync: replacing the audience"
            );
            sessions.insert(target.sync.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        } else {
            sessions.remove(&target.sync);
        }
        Ok(())
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let audience = match context.object.clone().or_else(|| lock(&self.prepared).get(&context.sync).cloned()) {
            Some(id) => id,
            None => return Err(DestinationError::config("set `object:` on the sync to the Meta custom audience's id")),
        };
        check_audience_id(&audience)?;
        let session = lock(&self.sessions).get(&context.sync).cloned();
        if let Some(session) = session.filter(|_| context.mode == SyncMode::Audience) {
            let mut session = session.lock().await;
            if session.audience == audience && !session.finished {
                return self.write_replace(context, batch, &mut session).await;
            }
        }
        self.write_incremental(context, &audience, batch).await
    }
}

impl MetaDestination {
    /// Adds and removes members through `/users`.
    async fn write_incremental(
        &self,
        context: &WriteContext,
        audience: &str,
        batch: &ChangeBatch,
    ) -> Result<Vec<Outcome>, DestinationError> {
        let ops = members::plan_members(Platform::Meta, batch, &self.options);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; ops.len()];
        let mut removals: Vec<(usize, &Member)> = Vec::new();
        let mut additions: Vec<(usize, &Member)> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            match op {
                MemberOp::Add(member) => additions.push((index, member)),
                MemberOp::Remove(member) => removals.push((index, member)),
                // Removed first: if the old and new members share a key, the person stays in.
                MemberOp::Replace { remove, add } => {
                    removals.push((index, remove));
                    additions.push((index, add));
                }
                MemberOp::Reject(message) => outcomes[index] = Some(Outcome::rejected(message.clone())),
            }
        }
        if context.mode == SyncMode::Insert {
            // Insert mode only adds; a replaced member's old identifiers stay in the audience.
            removals.clear();
        }
        if !removals.is_empty() {
            let sent: Vec<&Member> = removals.iter().map(|(_, m)| *m).collect();
            let refused = self.upload(context, audience, Method::DELETE, &sent).await?;
            for position in &refused {
                outcomes[removals[*position].0] = Some(Outcome::rejected(invalid(refused.len())));
            }
        }
        // A change whose old member could not be removed is not re-added under new identifiers.
        additions.retain(|(index, _)| outcomes[*index].is_none());
        if !additions.is_empty() {
            let sent: Vec<&Member> = additions.iter().map(|(_, m)| *m).collect();
            let refused = self.upload(context, audience, Method::POST, &sent).await?;
            for position in &refused {
                outcomes[additions[*position].0] = Some(Outcome::rejected(invalid(refused.len())));
            }
        }
        Ok(ops.iter().zip(outcomes).map(|(op, outcome)| outcome.unwrap_or_else(|| sent_outcome(op))).collect())
    }

    /// Uploads a batch of a full sync into the run's `/usersreplace` session.
    async fn write_replace(
        &self,
        context: &WriteContext,
        batch: &ChangeBatch,
        session: &mut ReplaceSession,
    ) -> Result<Vec<Outcome>, DestinationError> {
        let ops = members::plan_members(Platform::Meta, batch, &self.options);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; ops.len()];
        let mut sent: Vec<(usize, &Member)> = Vec::new();
        for (index, (op, change)) in ops.iter().zip(&batch.changes).enumerate() {
            match op {
                // A full sync plans inserts; a changed member is sent as it is now.
                MemberOp::Add(member) | MemberOp::Replace { add: member, .. } => sent.push((index, member)),
                // Nobody is removed one by one: whoever the session does not name leaves.
                MemberOp::Remove(_) => {
                    session.settled.insert(change.key.clone());
                    outcomes[index] = Some(Outcome::applied());
                }
                MemberOp::Reject(message) => {
                    session.settled.insert(change.key.clone());
                    outcomes[index] = Some(Outcome::rejected(message.clone()));
                }
            }
        }
        let path = format!("{}/usersreplace", session.audience);
        for chunk in sent.chunks(self.batch_size.min(config::MAX_BATCH_SIZE)) {
            let keys: Vec<&str> = chunk.iter().map(|(index, _)| batch.changes[*index].key.as_str()).collect();
            let members: Vec<&Member> = chunk.iter().map(|(_, member)| *member).collect();
            let payload = mapping::payload(&members);
            let last = session.completes_with(&keys);
            let form = mapping::form(&payload, session.session(last));
            let reply = match self.client.send_form(Method::POST, &path, &form, Some(context)).await {
                Ok(reply) => reply,
                Err(error) => return Err(session.explain(error)),
            };
            let answer = if reply.is_success() {
                mapping::answer(&reply.json(), &payload)
            } else if last && is_session_finished(&reply) {
                // An earlier attempt of this very request arrived and closed the session, but
                // its answer was lost: the members are in.
                mapping::Answer::default()
            } else {
                let error = client::failure(&format!("POST /{path}"), &reply);
                if error.class == ErrorClass::Permanent && batch.changes.len() == 1 {
                    // The driver cannot split a single record further: it is refused for good,
                    // and the session must still end.
                    session.settled.extend(keys.iter().map(|k| k.to_string()));
                    self.close(context, session).await?;
                }
                return Err(session.explain(error));
            };
            session.next_seq += 1;
            session.settled.extend(keys.iter().map(|k| k.to_string()));
            session.last_payload = Some(payload);
            if last {
                session.finished = true;
                tracing::info!(audience = session.audience, session = session.id, "replace session complete");
            }
            for row in &answer.invalid_rows {
                outcomes[chunk[*row].0] = Some(Outcome::rejected(invalid(answer.invalid_rows.len())));
            }
        }
        self.close(context, session).await?;
        Ok(ops.iter().zip(outcomes).map(|(op, outcome)| outcome.unwrap_or_else(|| sent_outcome(op))).collect())
    }

    /// Ends a session whose records are all done but whose last request was refused, by sending
    /// the last accepted payload again with `last_batch_flag` (members already in the session).
    async fn close(&self, context: &WriteContext, session: &mut ReplaceSession) -> Result<(), DestinationError> {
        if session.finished || (session.settled.len() as u64) < session.planned {
            return Ok(());
        }
        let Some(payload) = session.last_payload.clone() else {
            // Nothing was accepted, so the session never started: the audience is unchanged.
            tracing::warn!(
                audience = session.audience,
                "every record of the full sync was refused; the audience was not replaced"
            );
            session.finished = true;
            return Ok(());
        };
        let path = format!("{}/usersreplace", session.audience);
        let form = mapping::form(&payload, session.session(true));
        let reply =
            self.client.send_form(Method::POST, &path, &form, Some(context)).await.map_err(|e| session.explain(e))?;
        if !reply.is_success() && !is_session_finished(&reply) {
            return Err(session.explain(client::failure(&format!("POST /{path}"), &reply)));
        }
        session.next_seq += 1;
        session.finished = true;
        Ok(())
    }
}

/// Meta's "Session Finished" (code 2650, subcode 1870159): a batch with `last_batch_flag` was
/// already received for the session.
fn is_session_finished(reply: &client::Reply) -> bool {
    client::graph_error(reply).is_some_and(|e| e.code == Some(2650) && e.subcode == Some(1_870_159))
}
