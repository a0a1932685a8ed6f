//! Salesforce destination: writes sObject records through sObject Collections (200 records per
//! request) or Bulk API 2.0 ingest jobs, with OAuth refresh-token credentials.

mod bulk;
mod client;
mod config;
mod jwt;
mod mapping;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use config::{JwtConfig, SalesforceConfig, Transport};
use reqwest::Method;
use serde_json::{json, Map, Value as Json};
use sluice_core::{
    ChangeBatch, ChangeOp, DeliveryLimits, Destination, DestinationError, FieldDescription, ObjectDescription, Outcome,
    RequestQuota, SyncMode, Target, WriteContext,
};

use self::client::{Body, Client, Tokens};
use self::config::COLLECTION_LIMIT;
use self::mapping::{Field, RecordResult};
use crate::http::auth::OAuthTokens;

/// Objects listed by discovery when none is named.
const STANDARD_OBJECTS: [&str; 4] = ["Contact", "Account", "Lead", "Opportunity"];

/// Salesforce's record id field.
const ID: &str = "Id";

/// Outcome for an update or delete whose Salesforce id is unknown.
const NO_ID: &str = "no Salesforce Id known for this record (it was not created by this sync)";

/// What `prepare` learnt about a sync, needed again by `write`.
#[derive(Debug, Clone)]
struct Prepared {
    object: String,
    match_field: Option<String>,
    /// Whether this run is large enough for Bulk API 2.0 (`transport: auto`).
    large_run: bool,
}

/// How one change is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Op {
    Create,
    /// By Salesforce Id.
    Update,
    /// By external id field.
    Upsert,
    Delete,
}

/// Writes changes to one Salesforce org.
pub struct SalesforceDestination {
    client: Client,
    login: String,
    transport: Transport,
    bulk_threshold: usize,
    bulk_batch_size: usize,
    bulk_timeout: Duration,
    limits: DeliveryLimits,
    account: String,
    /// Describe results per object, fetched once per process.
    describes: Mutex<HashMap<String, Arc<Vec<Field>>>>,
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

/// sObject names go into URL paths: letters, digits and underscores only.
fn check_object_name(object: &str) -> Result<(), DestinationError> {
    if !object.is_empty() && object.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(DestinationError::config(format!(
            "`{object}` is not a Salesforce object name: use an API name such as Contact, Account or Customer__c"
        )))
    }
}

fn applied(id: Option<String>) -> Outcome {
    let mut outcome = Outcome::applied();
    outcome.destination_id = id;
    outcome
}

impl SalesforceDestination {
    /// Validates the config and builds the HTTP client; no request is sent.
    pub fn new(
        config: SalesforceConfig,
        credentials: Option<Arc<dyn sluice_core::CredentialStore>>,
    ) -> Result<SalesforceDestination, (&'static str, String)> {
        let endpoint = parse_url("endpoint", config.endpoint.as_deref().unwrap_or(config::DEFAULT_ENDPOINT))?;
        let login = endpoint.as_str().trim_end_matches('/').to_string();
        let token_url = match config.token_url.as_deref() {
            Some(url) => parse_url("token_url", url)?.to_string(),
            None => format!("{login}/services/oauth2/token"),
        };
        let api_version = config.api_version.unwrap_or_else(|| config::DEFAULT_API_VERSION.to_string());
        let version_ok = api_version.split_once('.').is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit())
        });
        if !version_ok {
            return Err(("api_version", format!("expected a version such as \"61.0\", found {api_version:?}")));
        }
        let transport = config.transport.unwrap_or_default();
        let bulk_batch_size = config.bulk_batch_size.unwrap_or(config::DEFAULT_BULK_BATCH_SIZE);
        if bulk_batch_size == 0 || bulk_batch_size > config::MAX_BULK_BATCH_SIZE {
            return Err((
                "bulk_batch_size",
                format!("expected 1 to {} records per bulk job, found {bulk_batch_size}", config::MAX_BULK_BATCH_SIZE),
            ));
        }
        if config.bulk_threshold == Some(0) {
            return Err(("bulk_threshold", "expected a positive number of changes".into()));
        }
        let daily = config.requests_per_24_hours.unwrap_or(config::DEFAULT_REQUESTS_PER_24_HOURS);
        if daily == 0 {
            return Err(("requests_per_24_hours", "expected a positive number of requests".into()));
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
        let bulk_timeout = config.bulk_timeout_seconds.unwrap_or(config::DEFAULT_BULK_TIMEOUT_SECONDS);
        if bulk_timeout == 0 {
            return Err(("bulk_timeout_seconds", "expected a positive number of seconds".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ("endpoint", format!("cannot build an HTTP client: {e}")))?;
        // The account is named by a hash of the credential's public part, never by a secret.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let tokens = match (config.oauth, config.jwt) {
            (Some(oauth), None) => {
                if oauth.refresh_token.trim().is_empty() {
                    return Err(("oauth", "the refresh_token is empty (is the environment variable set?)".into()));
                }
                ("oauth", oauth.client_id.as_str()).hash(&mut hasher);
                let credential = format!("salesforce/{login}/{}", oauth.client_id);
                Tokens::Refresh(Box::new(OAuthTokens::new(token_url, oauth, credential, credentials, http.clone())))
            }
            (None, Some(jwt)) => {
                if jwt.private_key.trim().is_empty() {
                    return Err(("jwt", "the private_key is empty (is the environment variable set?)".into()));
                }
                ("jwt", jwt.client_id.as_str(), jwt.username.as_str()).hash(&mut hasher);
                let audience = match jwt.audience.as_deref() {
                    Some(audience) => audience.trim_end_matches('/').to_string(),
                    None => jwt::default_audience(&endpoint),
                };
                let tokens = jwt::JwtTokens::new(
                    token_url,
                    audience,
                    jwt.client_id,
                    jwt.username,
                    &jwt.private_key,
                    http.clone(),
                )
                .map_err(|message| ("jwt", message))?;
                Tokens::Jwt(Box::new(tokens))
            }
            (Some(_), Some(_)) => return Err(("oauth", "set either `oauth` or `jwt`, not both".into())),
            (None, None) => {
                return Err((
                    "oauth",
                    "set an `oauth` block (client_id, client_secret, refresh_token) or a `jwt` block (client_id, username, private_key)"
                        .into(),
                ))
            }
        };
        let account = format!("salesforce {login} org {:016x}", hasher.finish());
        let limits = DeliveryLimits {
            quotas: vec![RequestQuota { requests: daily, per: Duration::from_secs(86_400) }],
            max_concurrency,
            // Collections answer per record (allOrNone=false); a whole-request refusal is bisected
            // to find the record at fault.
            split_rejected_batches: true,
        };
        Ok(SalesforceDestination {
            client: Client::new(login.clone(), &api_version, http, tokens),
            login,
            transport,
            bulk_threshold: config.bulk_threshold.unwrap_or(config::DEFAULT_BULK_THRESHOLD),
            bulk_batch_size,
            bulk_timeout: Duration::from_secs(bulk_timeout),
            limits,
            account,
            describes: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
        })
    }

    /// The object's fields, from the cache or describe. `Ok(None)` when Salesforce does not
    /// know the object (or, with `skip_forbidden`, the user may not see it).
    async fn describe_object(
        &self,
        object: &str,
        skip_forbidden: bool,
    ) -> Result<Option<Arc<Vec<Field>>>, DestinationError> {
        check_object_name(object)?;
        if let Some(found) = lock(&self.describes).get(object) {
            return Ok(Some(found.clone()));
        }
        let path = format!("/sobjects/{object}/describe");
        let reply = self.client.send(Method::GET, &path, Body::None, None).await?;
        match reply.status {
            200..=299 => {
                let found = Arc::new(mapping::fields(&reply.json()));
                lock(&self.describes).insert(object.to_string(), found.clone());
                Ok(Some(found))
            }
            404 => Ok(None),
            403 if skip_forbidden && client::message(&reply).0.as_deref() != Some("REQUEST_LIMIT_EXCEEDED") => Ok(None),
            _ => Err(client::failure(&format!("GET {path}"), &reply)),
        }
    }

    async fn known_fields(&self, object: &str) -> Result<Arc<Vec<Field>>, DestinationError> {
        self.describe_object(object, false).await?.ok_or_else(|| {
            DestinationError::config(format!(
                "Salesforce has no object `{object}` (or the integration user cannot see it): use an API name such as Contact, Account or Customer__c"
            ))
        })
    }

    /// Changes per run above which `transport: auto` uses Bulk API 2.0.
    pub fn bulk_threshold(&self) -> usize {
        self.bulk_threshold
    }

    fn use_bulk(&self, records: usize, large_run: bool) -> bool {
        match self.transport {
            Transport::Bulk => true,
            Transport::Collections => false,
            Transport::Auto => large_run || records > COLLECTION_LIMIT,
        }
    }

    /// Salesforce Ids of the records whose `field` has one of `values`.
    async fn lookup_ids(
        &self,
        context: &WriteContext,
        object: &str,
        field: &str,
        values: &[String],
    ) -> Result<HashMap<String, String>, DestinationError> {
        let mut found = HashMap::new();
        for chunk in values.chunks(COLLECTION_LIMIT) {
            let quoted: Vec<String> =
                chunk.iter().map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
            let soql = format!("SELECT Id, {field} FROM {object} WHERE {field} IN ({})", quoted.join(","));
            let query: String = form_urlencoded::byte_serialize(soql.as_bytes()).collect();
            let path = format!("/query?q={query}");
            let reply = self.client.send(Method::GET, &path, Body::None, context.capture.as_ref()).await?;
            if !reply.is_success() {
                return Err(client::failure("GET /query", &reply));
            }
            let body = reply.json();
            for record in body.get("records").and_then(Json::as_array).into_iter().flatten() {
                let id = record.get(ID).and_then(Json::as_str);
                let value = record.get(field).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                if let (Some(id), Some(value)) = (id, value) {
                    found.insert(value, id.to_string());
                }
            }
        }
        Ok(found)
    }

    /// Sends one group of records with sObject Collections, 200 per request.
    async fn collections(
        &self,
        context: &WriteContext,
        object: &str,
        op: &Op,
        match_field: Option<&str>,
        records: &[Map<String, Json>],
    ) -> Result<Vec<Option<RecordResult>>, DestinationError> {
        let mut results = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_LIMIT) {
            let (method, path, body) = match op {
                Op::Delete => {
                    let ids: Vec<&str> = chunk.iter().filter_map(|r| r.get(ID).and_then(Json::as_str)).collect();
                    (Method::DELETE, format!("/composite/sobjects?ids={}&allOrNone=false", ids.join(",")), None)
                }
                _ => {
                    let list: Vec<Json> = chunk.iter().map(|r| mapping::collection_record(object, r.clone())).collect();
                    let body = json!({ "allOrNone": false, "records": list }).to_string();
                    match op {
                        Op::Create => (Method::POST, "/composite/sobjects".to_string(), Some(body)),
                        Op::Update => (Method::PATCH, "/composite/sobjects".to_string(), Some(body)),
                        _ => (
                            Method::PATCH,
                            format!("/composite/sobjects/{object}/{}", match_field.unwrap_or(ID)),
                            Some(body),
                        ),
                    }
                }
            };
            let what = format!("{method} {}", path.split('?').next().unwrap_or_default());
            let body = body.as_deref().map(Body::Json).unwrap_or(Body::None);
            let reply = self.client.send(method, &path, body, context.capture.as_ref()).await?;
            if !reply.is_success() {
                return Err(client::failure(&what, &reply));
            }
            let answer = reply.json();
            let list = answer.as_array().map(Vec::as_slice).unwrap_or(&[]);
            if list.len() != chunk.len() {
                return Err(DestinationError::transient(format!(
                    "Salesforce answered {what} with {} results for {} records",
                    list.len(),
                    chunk.len()
                )));
            }
            results.extend(list.iter().map(|r| Some(mapping::collection_result(r))));
        }
        Ok(results)
    }

    /// Sends one group of records as a Bulk API 2.0 job.
    async fn bulk(
        &self,
        context: &WriteContext,
        object: &str,
        op: &Op,
        match_field: Option<&str>,
        records: &[Map<String, Json>],
    ) -> Result<Vec<Option<RecordResult>>, DestinationError> {
        let mut columns: Vec<String> = Vec::new();
        for record in records {
            for name in record.keys() {
                if !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
        }
        let rows = records
            .iter()
            .map(|r| {
                // A field a record does not carry is left as it is: an empty cell.
                columns.iter().map(|c| r.get(c).map(mapping::csv_cell).unwrap_or_default()).collect()
            })
            .collect();
        let (operation, external_id) = match op {
            Op::Create => ("insert", None),
            Op::Update => ("update", None),
            Op::Upsert => ("upsert", match_field),
            Op::Delete => ("delete", None),
        };
        let job = bulk::Job { object, operation, external_id, columns, rows };
        bulk::run(&self.client, &job, self.bulk_timeout, context.capture.as_ref()).await
    }
}

#[async_trait]
impl Destination for SalesforceDestination {
    fn describe(&self) -> String {
        format!("salesforce {}", self.login)
    }

    fn identity(&self) -> String {
        // Record ids belong to one org: another org means the snapshot no longer applies.
        self.account.clone()
    }

    fn batch_size(&self) -> usize {
        match self.transport {
            Transport::Bulk => self.bulk_batch_size,
            Transport::Collections | Transport::Auto => COLLECTION_LIMIT,
        }
    }

    fn batch_size_for(&self, target: &Target) -> usize {
        // Large runs go through Bulk API 2.0 ingest jobs; small ones through collections,
        // which answer at once. `write` picks the transport from the batch's size.
        match self.transport {
            Transport::Auto if target.planned_changes > self.bulk_threshold as u64 => self.bulk_batch_size,
            _ => self.batch_size(),
        }
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

    fn account_key(&self) -> String {
        self.account.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.describe_object("Contact", true).await.map(|_| ())
    }

    async fn discover(&self, object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        let names: Vec<&str> = match object {
            Some(name) => vec![name],
            None => STANDARD_OBJECTS.to_vec(),
        };
        let mut objects = Vec::new();
        for name in names {
            let fields = match object {
                Some(_) => self.known_fields(name).await?,
                None => match self.describe_object(name, true).await? {
                    Some(found) => found,
                    None => continue,
                },
            };
            let fields = fields
                .iter()
                .filter(|f| f.createable || f.updateable || f.name == ID)
                .map(|f| FieldDescription {
                    name: f.name.clone(),
                    field_type: f.type_.clone(),
                    can_match_on: f.can_match_on(),
                    required: f.required_on_create(),
                })
                .collect();
            objects.push(ObjectDescription {
                name: name.to_string(),
                fields,
                open_schema: false,
                modes: vec![SyncMode::Insert, SyncMode::Update, SyncMode::Upsert, SyncMode::Mirror],
                note: Some(
                    "read-only fields are not listed; upserts match on External ID fields; mirror deletes records this sync created"
                        .into(),
                ),
            });
        }
        Ok(objects)
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        if target.mode == SyncMode::Audience {
            return Err(DestinationError::config(format!(
                "sync `{}`: Salesforce does not take `mode: audience`, which removes records that leave the audience; \
                 use `upsert` to keep members up to date, or `mirror` to also delete the records that leave",
                target.sync
            )));
        }
        let object = target
            .object
            .as_deref()
            .ok_or_else(|| DestinationError::config("set `object:` on the sync, e.g. Contact"))?;
        let fields = self.known_fields(object).await?;
        let find = |name: &str| fields.iter().find(|f| f.name == name);
        let mut names: Vec<&str> = target.fields.iter().map(|f| f.name.as_str()).collect();
        if let Some(field) = target.match_field.as_deref() {
            if !names.contains(&field) {
                names.push(field);
            }
        }
        let missing: Vec<String> = names
            .iter()
            .filter(|n| find(n).is_none())
            .map(|n| {
                let close = mapping::close_names(n, &fields);
                if close.is_empty() {
                    format!("`{n}`")
                } else {
                    format!(
                        "`{n}` (did you mean {}?)",
                        close.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                    )
                }
            })
            .collect();
        if !missing.is_empty() {
            return Err(DestinationError::config(format!(
                "Salesforce {object} has no field {}; use the field's API name (custom fields end in __c) or create it in Setup → Object Manager",
                missing.join(", ")
            )));
        }
        let read_only: Vec<String> = names
            .iter()
            .filter(|n| **n != ID && Some(**n) != target.match_field.as_deref())
            .filter(|n| find(n).is_some_and(|f| !f.createable && !f.updateable))
            .map(|n| format!("`{n}`"))
            .collect();
        if !read_only.is_empty() {
            return Err(DestinationError::config(format!(
                "Salesforce {object} fields {} are read-only for the integration user; remove them from the mapping or grant edit access",
                read_only.join(", ")
            )));
        }
        if let Some(field) = target.match_field.as_deref() {
            if !find(field).is_some_and(Field::can_match_on) {
                let usable: Vec<String> =
                    fields.iter().filter(|f| f.can_match_on()).map(|f| format!("`{}`", f.name)).collect();
                return Err(DestinationError::config(format!(
                    "`{field}` cannot be used in match_on: Salesforce finds {object} records by External ID or ID-lookup fields ({}); mark the field as External ID in Setup",
                    usable.join(", ")
                )));
            }
        }
        if matches!(target.mode, SyncMode::Insert | SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience) {
            let required: Vec<String> = fields
                .iter()
                .filter(|f| f.required_on_create() && !names.contains(&f.name.as_str()))
                .map(|f| format!("`{}`", f.name))
                .collect();
            if !required.is_empty() {
                return Err(DestinationError::config(format!(
                    "Salesforce requires {} to create {object} records; add {} to the sync's mapping",
                    required.join(", "),
                    if required.len() == 1 { "it" } else { "them" }
                )));
            }
        }
        lock(&self.prepared).insert(
            target.sync.clone(),
            Prepared {
                object: object.to_string(),
                match_field: target.match_field.clone(),
                large_run: target.planned_changes > self.bulk_threshold as u64,
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
            .ok_or_else(|| DestinationError::config("set `object:` on the sync, e.g. Contact"))?;
        let fields = self.known_fields(&object).await?;
        let large_run = prepared.as_ref().is_some_and(|p| p.large_run);
        let match_field = prepared.and_then(|p| p.match_field);
        let match_position = match_field.as_deref().and_then(|m| batch.fields.iter().position(|f| f == m));
        let by_external_id = match_field.as_deref().is_some_and(|m| m != ID);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.changes.len()];

        // Each change becomes a record of one operation, or an outcome right away.
        let mut groups: Vec<(Op, Vec<usize>, Vec<Map<String, Json>>)> = Vec::new();
        let mut push =
            |op: Op, index: usize, record: Map<String, Json>| match groups.iter_mut().find(|(o, _, _)| *o == op) {
                Some((_, indices, records)) => {
                    indices.push(index);
                    records.push(record);
                }
                None => groups.push((op, vec![index], vec![record])),
            };
        let mut lookups: Vec<(usize, String, Map<String, Json>)> = Vec::new();
        for (index, change) in batch.changes.iter().enumerate() {
            let known_id = change.destination_id.clone().filter(|id| !id.trim().is_empty());
            let match_value = match_position
                .and_then(|p| change.values.get(p))
                .and_then(|v| v.to_text())
                .filter(|v| !v.trim().is_empty());
            if change.op == ChangeOp::Delete {
                match known_id {
                    Some(id) => push(Op::Delete, index, Map::from_iter([(ID.to_string(), Json::String(id))])),
                    None => outcomes[index] = Some(Outcome::rejected(NO_ID)),
                }
                continue;
            }
            let mut record = Map::new();
            let mut problems = Vec::new();
            for (name, value) in batch.fields.iter().zip(&change.values) {
                if name == ID {
                    continue;
                }
                match fields.iter().find(|f| &f.name == name) {
                    Some(field) => match mapping::coerce(field, value) {
                        Ok(json) => {
                            record.insert(name.clone(), json);
                        }
                        Err(problem) => problems.push(problem),
                    },
                    None => problems.push(format!("{name}: Salesforce {object} has no such field")),
                }
            }
            if !problems.is_empty() {
                outcomes[index] = Some(Outcome::rejected(problems.join("; ")));
                continue;
            }
            let id_from_match = (!by_external_id).then(|| match_value.clone()).flatten();
            let op = match context.mode {
                SyncMode::Insert => Op::Create,
                SyncMode::Update => match known_id.or(id_from_match) {
                    Some(id) => {
                        record.insert(ID.to_string(), Json::String(id));
                        Op::Update
                    }
                    None if by_external_id && match_value.is_some() => {
                        lookups.push((index, match_value.clone().unwrap_or_default(), record));
                        continue;
                    }
                    None => {
                        outcomes[index] = Some(Outcome::rejected(NO_ID));
                        continue;
                    }
                },
                SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience if by_external_id => {
                    if match_value.is_none() {
                        let field = match_field.as_deref().unwrap_or_default();
                        outcomes[index] = Some(Outcome::rejected(format!(
                            "`{field}` is empty, so Salesforce cannot match this record"
                        )));
                        continue;
                    }
                    Op::Upsert
                }
                SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience => match known_id.or(id_from_match) {
                    Some(id) => {
                        record.insert(ID.to_string(), Json::String(id));
                        Op::Update
                    }
                    None => Op::Create,
                },
            };
            push(op, index, record);
        }
        // Updates matched on an external id: find the records' Ids first (an upsert would create).
        if !lookups.is_empty() {
            let field = match_field.as_deref().unwrap_or_default();
            let values: Vec<String> = lookups.iter().map(|(_, v, _)| v.clone()).collect();
            let ids = self.lookup_ids(context, &object, field, &values).await?;
            for (index, value, mut record) in lookups {
                match ids.get(&value) {
                    Some(id) => {
                        record.insert(ID.to_string(), Json::String(id.clone()));
                        push(Op::Update, index, record);
                    }
                    None => {
                        outcomes[index] =
                            Some(Outcome::rejected(format!("{NO_ID}, and no {object} has {field} = '{value}'")))
                    }
                }
            }
        }

        for (op, indices, records) in groups {
            let results = if self.use_bulk(records.len(), large_run) {
                self.bulk(context, &object, &op, match_field.as_deref(), &records).await?
            } else {
                self.collections(context, &object, &op, match_field.as_deref(), &records).await?
            };
            for ((index, record), result) in indices.into_iter().zip(&records).zip(results) {
                let sent_id = record.get(ID).and_then(Json::as_str).map(str::to_string);
                outcomes[index] = Some(match result {
                    Some(RecordResult { id, error: None }) => applied(id.or(sent_id)),
                    // Deleting what is already gone is what a delete wants.
                    Some(RecordResult { error: Some(e), .. })
                        if op == Op::Delete && e.starts_with("ENTITY_IS_DELETED") =>
                    {
                        applied(sent_id)
                    }
                    Some(RecordResult { error: Some(e), .. }) => Outcome::rejected(e),
                    None => Outcome::retryable("Salesforce's bulk job results did not mention this record"),
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::retryable("Salesforce's answer did not cover this record")))
            .collect())
    }
}
