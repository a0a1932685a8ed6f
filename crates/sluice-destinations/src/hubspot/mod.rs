//! HubSpot destination: writes CRM records through the batch create/update/upsert/archive APIs.

mod client;
mod config;
mod mapping;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use config::HubSpotConfig;
use reqwest::Method;
use serde_json::json;
use sluice_core::{
    AssociationTarget, ChangeBatch, ChangeOp, DeliveryLimits, Destination, DestinationError, FieldDescription,
    ObjectDescription, Outcome, OutcomeStatus, RequestQuota, SyncMode, Target, WriteContext, ASSOCIATION_FIELD_PREFIX,
};

use self::client::{Auth, Client};
use self::mapping::{Property, WriteKind, RECORD_ID};
use crate::http::auth::OAuthTokens;

/// The singular used in v3 association type names (`contact_to_company`).
fn singular(object: &str) -> &str {
    match object {
        "contacts" => "contact",
        "companies" => "company",
        "deals" => "deal",
        "tickets" => "ticket",
        other => other,
    }
}

/// Objects listed by discovery when none is named.
const STANDARD_OBJECTS: [&str; 4] = ["contacts", "companies", "deals", "tickets"];

/// Outcome for a delete whose HubSpot id is unknown.
const NO_RECORD_ID: &str =
    "no HubSpot record id is known for this record (it was not created by this sync); archive it in HubSpot";

/// What `prepare` learnt about a sync, needed again by `write`.
#[derive(Debug, Clone)]
struct Prepared {
    object: String,
    match_field: Option<String>,
    associations: Vec<AssociationTarget>,
}

/// Writes changes to one HubSpot account.
pub struct HubSpotDestination {
    client: Client,
    batch_size: usize,
    limits: DeliveryLimits,
    account: String,
    /// Property catalogue per object, fetched once per process.
    catalogue: Mutex<HashMap<String, Arc<Vec<Property>>>>,
    /// Per sync name.
    prepared: Mutex<HashMap<String, Prepared>>,
}

fn parse_url(key: &'static str, text: &str) -> Result<reqwest::Url, (&'static str, String)> {
    reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or((key, format!("expected an http:// or https:// URL, found {text:?}")))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Object names go into URL paths; HubSpot's names and type ids use only these characters.
fn check_object_name(object: &str) -> Result<(), DestinationError> {
    let ok = !object.is_empty() && object.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DestinationError::config(format!(
            "`{object}` is not a HubSpot object name: use contacts, companies, deals, tickets or a custom object's name or type id"
        )))
    }
}

impl HubSpotDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(
        config: HubSpotConfig,
        credentials: Option<std::sync::Arc<dyn sluice_core::CredentialStore>>,
    ) -> Result<HubSpotDestination, (&'static str, String)> {
        let endpoint = parse_url("endpoint", config.endpoint.as_deref().unwrap_or(config::DEFAULT_ENDPOINT))?;
        let token_url = parse_url("token_url", config.token_url.as_deref().unwrap_or(config::DEFAULT_TOKEN_URL))?;
        let batch_size = config.batch_size.unwrap_or(config::MAX_BATCH_SIZE);
        if batch_size == 0 || batch_size > config::MAX_BATCH_SIZE {
            return Err((
                "batch_size",
                format!("expected 1 to {} records (HubSpot's batch limit), found {batch_size}", config::MAX_BATCH_SIZE),
            ));
        }
        let burst = config.requests_per_10_seconds.unwrap_or(config::DEFAULT_REQUESTS_PER_10_SECONDS);
        if burst == 0 {
            return Err(("requests_per_10_seconds", "expected a positive number of requests".into()));
        }
        let daily = config.daily_limit.unwrap_or(config::DEFAULT_DAILY_LIMIT);
        if daily == 0 {
            return Err(("daily_limit", "expected a positive number of requests".into()));
        }
        let max_concurrency = config.max_concurrency.unwrap_or(config::DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 || max_concurrency > config::MAX_CONCURRENCY {
            return Err((
                "max_concurrency",
                format!("expected 1 to {} requests in flight, found {max_concurrency}", config::MAX_CONCURRENCY),
            ));
        }
        let timeout = config.timeout_seconds.unwrap_or(30);
        if timeout == 0 {
            return Err(("timeout_seconds", "expected a positive number of seconds".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ("endpoint", format!("cannot build an HTTP client: {e}")))?;
        // The account is named by a hash of the credential's public part, never by a secret.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let base = endpoint.as_str().trim_end_matches('/').to_string();
        let auth = match (config.token, config.oauth) {
            (Some(token), None) if !token.trim().is_empty() => {
                ("token", token.trim()).hash(&mut hasher);
                Auth::Token(token.trim().to_string())
            }
            (Some(_), None) => return Err(("token", "the token is empty (is the environment variable set?)".into())),
            (None, Some(oauth)) => {
                ("oauth", oauth.client_id.as_str()).hash(&mut hasher);
                let credential = format!("hubspot/{base}/{}", oauth.client_id);
                Auth::OAuth(Box::new(OAuthTokens::new(token_url.to_string(), oauth, credential, credentials.clone(), http.clone())))
            }
            (Some(_), Some(_)) => return Err(("oauth", "set either `token` or `oauth`, not both".into())),
            (None, None) => {
                return Err((
                    "token",
                    "set `token` (a private app's access token) or an `oauth` block (client_id, client_secret, refresh_token)"
                        .into(),
                ))
            }
        };
        let account = format!("hubspot {base} account {:016x}", hasher.finish());
        let limits = DeliveryLimits {
            quotas: vec![
                RequestQuota { requests: burst, per: Duration::from_secs(10) },
                RequestQuota { requests: daily, per: Duration::from_secs(86_400) },
            ],
            max_concurrency,
            // HubSpot fails a whole batch for one bad value unless every input is traced; bisecting
            // isolates it.
            split_rejected_batches: true,
        };
        Ok(HubSpotDestination {
            client: Client::new(endpoint, http, auth),
            batch_size,
            limits,
            account,
            catalogue: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
        })
    }

    /// The object's property catalogue, from the cache or the properties API. `Ok(None)` when
    /// HubSpot does not know the object, or (with `skip_forbidden`) the app may not read it.
    async fn properties(
        &self,
        object: &str,
        skip_forbidden: bool,
    ) -> Result<Option<Arc<Vec<Property>>>, DestinationError> {
        check_object_name(object)?;
        if let Some(found) = lock(&self.catalogue).get(object) {
            return Ok(Some(found.clone()));
        }
        let path = format!("/crm/v3/properties/{object}");
        let reply = self.client.send(Method::GET, &path, None, None).await?;
        match reply.status {
            200..=299 => {
                let found = Arc::new(mapping::properties(&reply.json()));
                lock(&self.catalogue).insert(object.to_string(), found.clone());
                Ok(Some(found))
            }
            // "Unable to infer object type from: …" is a 400.
            400 | 404 => Ok(None),
            403 if skip_forbidden => Ok(None),
            _ => Err(client::failure(&format!("GET {path}"), &reply)),
        }
    }

    async fn known_properties(&self, object: &str) -> Result<Arc<Vec<Property>>, DestinationError> {
        self.properties(object, false).await?.ok_or_else(|| {
            DestinationError::config(format!(
                "HubSpot has no object `{object}`: use contacts, companies, deals, tickets or a custom object's name or type id"
            ))
        })
    }

    async fn write_group(
        &self,
        context: &WriteContext,
        batch: &ChangeBatch,
        object: &str,
        kind: WriteKind,
        match_field: Option<&str>,
        indices: &[usize],
    ) -> Result<Vec<(usize, Outcome)>, DestinationError> {
        let (inputs, sent, mut outcomes) = mapping::write_inputs(batch, indices, kind, match_field);
        if inputs.is_empty() {
            return Ok(outcomes);
        }
        let path = format!("/crm/v3/objects/{object}/batch/{}", kind.endpoint());
        let body = json!({ "inputs": inputs }).to_string();
        let reply = self.client.send(Method::POST, &path, Some(&body), Some(context)).await?;
        outcomes.extend(mapping::write_outcomes(&format!("POST {path}"), &reply, &sent, match_field)?);
        Ok(outcomes)
    }

    /// Links each record written in this batch to the `association.object` record whose
    /// unique field holds the record's value. A record whose link fails is rejected (and so
    /// sent again next run: writing it is idempotent) with the reason.
    async fn associate(
        &self,
        context: &WriteContext,
        batch: &ChangeBatch,
        object: &str,
        association: &AssociationTarget,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), DestinationError> {
        let Some(position) = batch.fields.iter().position(|f| *f == association.value_field) else {
            return Ok(());
        };
        let mut wanted: Vec<(usize, String, String)> = Vec::new();
        for (index, change) in batch.changes.iter().enumerate() {
            let Some(Some(outcome)) = outcomes.get(index) else { continue };
            let (Some(from_id), Some(value)) = (&outcome.destination_id, change.values.get(position)) else { continue };
            let value = mapping::text(value);
            if outcome.status == OutcomeStatus::Applied && !value.trim().is_empty() {
                wanted.push((index, from_id.clone(), value));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // Find the other records' ids by their unique field.
        let read_path = format!("/crm/v3/objects/{}/batch/read", association.object);
        let mut values: Vec<&str> = wanted.iter().map(|(_, _, v)| v.as_str()).collect();
        values.sort_unstable();
        values.dedup();
        let body = json!({
            "idProperty": association.field,
            "properties": [association.field],
            "propertiesWithHistory": [],
            "inputs": values.iter().map(|v| json!({ "id": v })).collect::<Vec<_>>(),
        })
        .to_string();
        let reply = self.client.send(Method::POST, &read_path, Some(&body), Some(context)).await?;
        if !matches!(reply.status, 200 | 207) {
            return Err(client::failure(&format!("POST {read_path}"), &reply));
        }
        let found: HashMap<String, String> = reply
            .json()
            .get("results")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
            .filter_map(|record| {
                let id = record.get("id")?.as_str()?.to_string();
                let value = record.pointer(&format!("/properties/{}", association.field))?.as_str()?.to_lowercase();
                Some((value, id))
            })
            .collect();
        let mut links = Vec::new();
        for (index, from_id, value) in wanted {
            match found.get(&value.to_lowercase()) {
                Some(to_id) => links.push((index, from_id, to_id.clone())),
                None => {
                    outcomes[index] = Some(Outcome::rejected(format!(
                        "written, but not linked: no HubSpot {} record has {} = {value:?}",
                        association.object, association.field
                    )))
                }
            }
        }
        if links.is_empty() {
            return Ok(());
        }
        let kind = format!("{}_to_{}", singular(object), singular(&association.object));
        let path = format!("/crm/v3/associations/{object}/{}/batch/create", association.object);
        let inputs: Vec<_> = links
            .iter()
            .map(|(_, from, to)| json!({ "from": { "id": from }, "to": { "id": to }, "type": kind }))
            .collect();
        let body = json!({ "inputs": inputs }).to_string();
        let reply = self.client.send(Method::POST, &path, Some(&body), Some(context)).await?;
        if !(200..=299).contains(&reply.status) || reply.status == 207 {
            let failure = client::failure(&format!("POST {path}"), &reply);
            if failure.class.is_retryable() || failure.class.stops_run() {
                return Err(failure);
            }
            for (index, _, _) in links {
                outcomes[index] = Some(Outcome::rejected(format!("written, but not linked: {}", failure.message)));
            }
        }
        Ok(())
    }

    async fn archive(
        &self,
        context: &WriteContext,
        batch: &ChangeBatch,
        object: &str,
        indices: &[usize],
    ) -> Result<Vec<(usize, Outcome)>, DestinationError> {
        let mut outcomes = Vec::new();
        let mut ids = Vec::new();
        for &index in indices {
            match batch.changes[index].destination_id.as_deref().filter(|id| !id.is_empty()) {
                Some(id) => ids.push((index, id)),
                None => outcomes.push((index, Outcome::rejected(NO_RECORD_ID))),
            }
        }
        if ids.is_empty() {
            return Ok(outcomes);
        }
        let path = format!("/crm/v3/objects/{object}/batch/archive");
        let inputs: Vec<_> = ids.iter().map(|(_, id)| json!({ "id": id })).collect();
        let body = json!({ "inputs": inputs }).to_string();
        let reply = self.client.send(Method::POST, &path, Some(&body), Some(context)).await?;
        if !(200..=299).contains(&reply.status) {
            return Err(client::failure(&format!("POST {path}"), &reply));
        }
        // HubSpot answers 204 for ids already archived or gone, which is what a delete wants.
        outcomes.extend(ids.into_iter().map(|(index, id)| {
            let mut applied = Outcome::applied();
            applied.destination_id = Some(id.to_string());
            (index, applied)
        }));
        Ok(outcomes)
    }
}

#[async_trait]
impl Destination for HubSpotDestination {
    fn describe(&self) -> String {
        format!("hubspot {}", self.client.base_text())
    }

    fn identity(&self) -> String {
        // Record ids belong to one portal: another account means the snapshot no longer applies.
        self.account.clone()
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn delivery_limits(&self) -> DeliveryLimits {
        self.limits.clone()
    }

    fn wants_destination_ids(&self) -> bool {
        true
    }

    fn accepts_object(&self) -> bool {
        true
    }

    fn accepts_match_on(&self) -> bool {
        true
    }

    fn accepts_associations(&self) -> bool {
        true
    }

    fn account_key(&self) -> String {
        self.account.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let path = "/crm/v3/properties/contacts";
        let reply = self.client.send(Method::GET, path, None, None).await?;
        if (200..=299).contains(&reply.status) {
            Ok(())
        } else {
            Err(client::failure(&format!("GET {path}"), &reply))
        }
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        let names: Vec<&str> = match object {
            Some(name) => vec![name],
            None => STANDARD_OBJECTS.to_vec(),
        };
        let mut objects = Vec::new();
        for name in names {
            let properties = match object {
                Some(_) => self.known_properties(name).await?,
                // Accounts without a standard object (or the scope to read it) just do not list it.
                None => match self.properties(name, true).await? {
                    Some(found) => found,
                    None => continue,
                },
            };
            let fields = properties
                .iter()
                .filter(|p| !p.read_only || p.name == RECORD_ID)
                .map(|p| FieldDescription {
                    name: p.name.clone(),
                    field_type: p.type_.clone(),
                    can_match_on: p.can_match_on(name),
                    required: false,
                })
                .collect();
            objects.push(ObjectDescription {
                name: name.to_string(),
                fields,
                open_schema: false,
                modes: vec![SyncMode::Insert, SyncMode::Update, SyncMode::Upsert, SyncMode::Mirror],
                note: Some(
                    "read-only properties are not listed; mirror deletes archive records this sync created".into(),
                ),
            });
        }
        Ok(objects)
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        if target.mode == SyncMode::Audience {
            return Err(DestinationError::config(format!(
                "sync `{}`: HubSpot does not take `mode: audience`, which removes records that leave the audience; \
                 use `upsert` to keep members up to date, or `mirror` to also delete the records that leave",
                target.sync
            )));
        }
        let object = target
            .object
            .as_deref()
            .ok_or_else(|| DestinationError::config("set `object:` on the sync, e.g. contacts"))?;
        let needs_match = matches!(target.mode, SyncMode::Upsert | SyncMode::Update | SyncMode::Mirror);
        if needs_match && target.match_field.is_none() {
            let example = if mapping::is_contacts(object) { "email: email" } else { "domain: domain" };
            return Err(DestinationError::config(format!(
                "sync `{}` writes HubSpot {object} in {} mode, which finds records by a unique property: set `match_on`, e.g. match_on: {{ {example} }}",
                target.sync,
                target.mode.as_str()
            )));
        }
        let properties = self.known_properties(object).await?;
        let find = |name: &str| properties.iter().find(|p| p.name == name);
        let mut names: Vec<&str> = target
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .filter(|name| !name.starts_with(ASSOCIATION_FIELD_PREFIX))
            .collect();
        if let Some(field) = target.match_field.as_deref() {
            if !names.contains(&field) {
                names.push(field);
            }
        }
        let missing: Vec<String> = names.iter().filter(|n| find(n).is_none()).map(|n| format!("`{n}`")).collect();
        if !missing.is_empty() {
            return Err(DestinationError::config(format!(
                "HubSpot {object} has no propert{} {}; create {} in HubSpot (Settings → Properties) or fix the sync's mapping",
                if missing.len() == 1 { "y" } else { "ies" },
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
            )));
        }
        let read_only: Vec<String> = names
            .iter()
            .filter(|n| Some(**n) != target.match_field.as_deref() && find(n).is_some_and(|p| p.read_only))
            .map(|n| format!("`{n}`"))
            .collect();
        if !read_only.is_empty() {
            return Err(DestinationError::config(format!(
                "HubSpot computes {} on {object}; it cannot be written, remove it from the mapping",
                read_only.join(", ")
            )));
        }
        if let Some(field) = target.match_field.as_deref() {
            if !find(field).is_some_and(|p| p.can_match_on(object)) {
                let unique: Vec<String> =
                    properties.iter().filter(|p| p.can_match_on(object)).map(|p| format!("`{}`", p.name)).collect();
                return Err(DestinationError::config(format!(
                    "`{field}` cannot be used in match_on: HubSpot finds {object} only by properties with unique values ({})",
                    unique.join(", ")
                )));
            }
        }
        for association in &target.associations {
            let other = self.known_properties(&association.object).await?;
            if !other.iter().any(|p| p.name == association.field && p.can_match_on(&association.object)) {
                let unique: Vec<String> = other
                    .iter()
                    .filter(|p| p.can_match_on(&association.object))
                    .map(|p| format!("`{}`", p.name))
                    .collect();
                return Err(DestinationError::config(format!(
                    "sync `{}` links {object} to {} by `{}`, which is not a unique property of {}; use one of {}",
                    target.sync,
                    association.object,
                    association.field,
                    association.object,
                    unique.join(", ")
                )));
            }
        }
        lock(&self.prepared).insert(
            target.sync.clone(),
            Prepared {
                object: object.to_string(),
                match_field: target.match_field.clone(),
                associations: target.associations.clone(),
            },
        );
        Ok(())
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let prepared = lock(&self.prepared).get(&context.sync).cloned();
        let object = context
            .object
            .clone()
            .or_else(|| prepared.as_ref().map(|p| p.object.clone()))
            .ok_or_else(|| DestinationError::config("set `object:` on the sync, e.g. contacts"))?;
        check_object_name(&object)?;
        let associations = prepared.as_ref().map(|p| p.associations.clone()).unwrap_or_default();
        let match_field = prepared.and_then(|p| p.match_field);
        let kind = match context.mode {
            SyncMode::Insert => WriteKind::Create,
            SyncMode::Update => WriteKind::Update,
            // Upsert needs a unique property; matching on the record id can only update.
            SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience if match_field.as_deref() == Some(RECORD_ID) => {
                WriteKind::Update
            }
            SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience => WriteKind::Upsert,
        };
        if kind != WriteKind::Create && match_field.is_none() {
            return Err(DestinationError::config(format!(
                "sync `{}` writes HubSpot {object} in {} mode without `match_on`",
                context.sync,
                context.mode.as_str()
            )));
        }
        let (deletes, writes): (Vec<usize>, Vec<usize>) =
            (0..batch.changes.len()).partition(|&i| batch.changes[i].op == ChangeOp::Delete);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.changes.len()];
        if !writes.is_empty() {
            for (index, outcome) in
                self.write_group(context, batch, &object, kind, match_field.as_deref(), &writes).await?
            {
                outcomes[index] = Some(outcome);
            }
        }
        for association in &associations {
            self.associate(context, batch, &object, association, &mut outcomes).await?;
        }
        if !deletes.is_empty() {
            for (index, outcome) in self.archive(context, batch, &object, &deletes).await? {
                outcomes[index] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::retryable("HubSpot's answer did not cover this record")))
            .collect())
    }
}
