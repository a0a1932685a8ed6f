//! The HTTP side of the TikTok fake: routing, the `Access-Token` check, rate limits, faults, request
//! validation and membership changes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::{lock, Fault, LoggedRequest, Shared, StoredId, StoredUser, TikTokState};

const MAX_BODY: usize = 64 * 1024 * 1024;

/// `id_schema` values and the length of their ids (hex digits).
const ID_SCHEMAS: [(&str, usize); 8] = [
    ("EMAIL_SHA256", 64),
    ("PHONE_SHA256", 64),
    ("IDFA_SHA256", 64),
    ("GAID_SHA256", 64),
    ("AAID_SHA256", 64),
    ("IDFA_MD5", 32),
    ("GAID_MD5", 32),
    ("AAID_MD5", 32),
];

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    code: Option<i64>,
    body: String,
}

impl Reply {
    /// TikTok's envelope, always HTTP 200.
    fn envelope(state: &mut TikTokState, code: i64, message: &str, data: Value) -> Self {
        let request_id = format!("2024010112000000{:010}", state.next_request_id);
        state.next_request_id += 1;
        let body = json!({ "code": code, "message": message, "request_id": request_id, "data": data });
        Self { status: 200, code: Some(code), body: body.to_string() }
    }

    fn http(status: u16) -> Self {
        let body = match status {
            404 => "404 page not found".to_string(),
            other => format!("<html><body><h1>{other}</h1></body></html>"),
        };
        Self { status, code: None, body }
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = if self.code.is_some() { "application/json" } else { "text/plain; charset=utf-8" };
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Mapping,
    AdvertiserInfo,
    AudienceGet,
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/open_api/v1.3/segment/mapping/") => Route::Mapping,
        (&Method::GET, "/open_api/v1.3/advertiser/info/") => Route::AdvertiserInfo,
        (&Method::GET, "/open_api/v1.3/dmp/custom_audience/get/") => Route::AudienceGet,
        _ => Route::Unknown,
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => Reply::http(500).into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let route = route(&method, &path);

    let fault = lock(&shared).faults.pop_front();
    let served = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, route, &headers, &query, &bytes)
        }
        Some(Fault::RateLimited) => {
            let mut state = lock(&shared);
            Served::answer(rate_limited(&mut state))
        }
        Some(Fault::Code(code, message)) => {
            let mut state = lock(&shared);
            Served::answer(Reply::envelope(&mut state, code, &message, json!({})))
        }
        Some(Fault::Http(status)) => Served::answer(Reply::http(status)),
        None => serve(&shared, route, &headers, &query, &bytes),
    };

    let mut state = lock(&shared);
    state.requests.push(LoggedRequest {
        method: method.to_string(),
        path,
        code: served.reply.code,
        users: served.users,
        body_valid: served.issues.is_empty(),
        validation_errors: served.issues,
    });
    drop(state);
    served.reply.into_response()
}

struct Served {
    reply: Reply,
    users: usize,
    issues: Vec<String>,
}

impl Served {
    fn answer(reply: Reply) -> Self {
        Self { reply, users: 0, issues: Vec::new() }
    }
}

fn rate_limited(state: &mut TikTokState) -> Reply {
    Reply::envelope(state, 40100, "Too many requests. Please retry in some time.", json!({}))
}

fn serve(shared: &Shared, route: Route, headers: &HeaderMap, query: &str, bytes: &[u8]) -> Served {
    let mut state = lock(shared);
    if route == Route::Unknown {
        return Served::answer(Reply::http(404));
    }
    let token = headers.get("access-token").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if token.is_empty() {
        let reply = Reply::envelope(
            &mut state,
            40104,
            "Access token is null, you should set it in http header with key Access-Token.",
            json!({}),
        );
        return Served::answer(reply);
    }
    if !state.options.access_tokens.iter().any(|t| t == token) || state.revoked.contains(token) {
        return Served::answer(Reply::envelope(
            &mut state,
            40105,
            "Access token is incorrect or has been revoked.",
            json!({}),
        ));
    }
    if !spend_quota(&mut state) {
        return Served::answer(rate_limited(&mut state));
    }
    match route {
        Route::Mapping => mapping(&mut state, headers, bytes),
        Route::AdvertiserInfo => Served::answer(advertiser_info(&mut state, query)),
        Route::AudienceGet => Served::answer(audience_get(&mut state, query)),
        Route::Unknown => Served::answer(Reply::http(404)),
    }
}

fn spend_quota(state: &mut TikTokState) -> bool {
    let Some(limit) = state.options.rate_limit.clone() else { return true };
    let now = Instant::now();
    while state.second.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        state.second.pop_front();
    }
    while state.minute.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
        state.minute.pop_front();
    }
    if state.second.len() >= limit.per_second as usize
        || state.minute.len() >= limit.per_minute as usize
        || state.daily_used >= limit.per_day
    {
        return false;
    }
    state.second.push_back(now);
    state.minute.push_back(now);
    state.daily_used += 1;
    true
}

fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// A JSON list of strings passed in a query parameter (`advertiser_ids=["1","2"]`).
fn id_list(text: &str) -> Option<Vec<String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.as_array()?.iter().map(|v| v.as_str().map(String::from)).collect()
}

fn advertiser_info(state: &mut TikTokState, query: &str) -> Reply {
    let Some(ids) = query_param(query, "advertiser_ids").as_deref().and_then(id_list).filter(|l| !l.is_empty()) else {
        return Reply::envelope(state, 40002, "advertiser_ids: Missing data for required field.", json!({}));
    };
    let mut list = Vec::new();
    for id in &ids {
        match state.options.advertisers.iter().find(|a| &a.id == id) {
            Some(advertiser) => list.push(json!({ "advertiser_id": advertiser.id, "name": advertiser.name })),
            None => {
                let message = format!("No permission to operate advertiser {id}.");
                return Reply::envelope(state, 40001, &message, json!({}));
            }
        }
    }
    Reply::envelope(state, 0, "OK", json!({ "list": list }))
}

fn audience_get(state: &mut TikTokState, query: &str) -> Reply {
    let advertiser_id = query_param(query, "advertiser_id").unwrap_or_default();
    let Some(ids) = query_param(query, "custom_audience_ids").as_deref().and_then(id_list).filter(|l| !l.is_empty())
    else {
        return Reply::envelope(state, 40002, "custom_audience_ids: Missing data for required field.", json!({}));
    };
    let Some(advertiser) = state.options.advertisers.iter().find(|a| a.id == advertiser_id).cloned() else {
        let message = format!("No permission to operate advertiser {advertiser_id}.");
        return Reply::envelope(state, 40001, &message, json!({}));
    };
    let mut list = Vec::new();
    for id in &ids {
        if !advertiser.audiences.contains(id) {
            let message = format!("Custom audience {id} does not exist.");
            return Reply::envelope(state, 40007, &message, json!({}));
        }
        let size = state.audiences.get(id).map_or(0, BTreeSet::len);
        list.push(
            json!({ "audience_details": { "audience_id": id, "name": format!("Audience {id}"), "cover_num": size } }),
        );
    }
    Reply::envelope(state, 0, "OK", json!({ "list": list }))
}

/// A parsed `/segment/mapping/` body.
struct Mapping {
    advertiser_ids: Vec<String>,
    delete: bool,
    users: Vec<(StoredUser, BTreeSet<String>)>,
}

fn parse_mapping(body: &Value, batch_limit: usize, issues: &mut Vec<String>) -> Result<Mapping, i64> {
    let Some(map) = body.as_object() else {
        issues.push("the body is not a JSON object".into());
        return Err(40002);
    };
    for key in map.keys() {
        if !["advertiser_ids", "action", "id_schema", "batch_data"].contains(&key.as_str()) {
            issues.push(format!("unknown field `{key}`"));
        }
    }
    let strings = |key: &str, issues: &mut Vec<String>| -> Vec<String> {
        match map.get(key).and_then(Value::as_array) {
            Some(items) if !items.is_empty() && items.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {
                items.iter().filter_map(Value::as_str).map(String::from).collect()
            }
            _ => {
                issues.push(format!("{key}: expected a non-empty list of strings"));
                Vec::new()
            }
        }
    };
    let advertiser_ids = strings("advertiser_ids", issues);
    let id_schema = strings("id_schema", issues);
    let delete = match map.get("action").and_then(Value::as_str) {
        Some("add") => false,
        Some("delete") => true,
        other => {
            issues.push(format!("action: expected add or delete, found {other:?}"));
            false
        }
    };
    let mut lengths = Vec::new();
    for schema in &id_schema {
        match ID_SCHEMAS.iter().find(|(name, _)| name == schema) {
            Some((_, length)) => lengths.push(*length),
            None => issues.push(format!("id_schema: unknown value {schema}")),
        }
    }
    if id_schema.iter().collect::<BTreeSet<_>>().len() != id_schema.len() {
        issues.push("id_schema: values must be distinct".into());
    }
    let rows = match map.get("batch_data").and_then(Value::as_array) {
        Some(rows) if !rows.is_empty() => rows,
        _ => {
            issues.push("batch_data: expected a non-empty list".into());
            return Err(40002);
        }
    };
    if !issues.is_empty() {
        return Err(40002);
    }
    if rows.len() > batch_limit {
        issues.push(format!("batch_data: {} users, more than {batch_limit}", rows.len()));
        return Err(40011);
    }
    let mut users = Vec::new();
    for (row_index, row) in rows.iter().enumerate() {
        let Some(entries) = row.as_array().filter(|e| e.len() == id_schema.len()) else {
            issues.push(format!("batch_data[{row_index}]: expected one entry per id_schema value"));
            continue;
        };
        let mut user = StoredUser::new();
        let mut audiences = BTreeSet::new();
        for ((entry, schema), length) in entries.iter().zip(&id_schema).zip(&lengths) {
            let Some(fields) = entry.as_object() else {
                issues.push(format!("batch_data[{row_index}]: entries must be objects"));
                continue;
            };
            if fields.is_empty() {
                continue;
            }
            if fields.keys().any(|k| k != "id" && k != "audience_ids") {
                issues.push(format!("batch_data[{row_index}]: entries take only id and audience_ids"));
            }
            let id = fields.get("id").and_then(Value::as_str).unwrap_or("");
            let hex = id.len() == *length && id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            if !hex {
                issues.push(format!("batch_data[{row_index}]: {schema} id is not {length} lower-case hex digits"));
            }
            match fields.get("audience_ids").and_then(Value::as_array) {
                Some(ids) if !ids.is_empty() && ids.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {
                    audiences.extend(ids.iter().filter_map(Value::as_str).map(String::from));
                }
                _ => issues.push(format!("batch_data[{row_index}]: audience_ids must be a non-empty list of strings")),
            }
            user.insert((schema.clone(), id.to_string()) as StoredId);
        }
        if user.is_empty() {
            issues.push(format!("batch_data[{row_index}]: the user has no id"));
        }
        users.push((user, audiences));
    }
    if issues.is_empty() {
        Ok(Mapping { advertiser_ids, delete, users })
    } else {
        Err(40002)
    }
}

fn mapping(state: &mut TikTokState, headers: &HeaderMap, bytes: &[u8]) -> Served {
    let mut issues = Vec::new();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        issues.push(format!("Content-Type must be application/json, found {content_type:?}"));
    }
    let body: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        issues.push(format!("the body is not JSON: {e}"));
        Value::Null
    });
    let users = body.get("batch_data").and_then(Value::as_array).map_or(0, Vec::len);
    let parsed =
        if issues.is_empty() { parse_mapping(&body, state.options.batch_limit, &mut issues) } else { Err(40002) };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(code) => {
            let message = match code {
                40011 => "Too many IDs are provided in a single request.".to_string(),
                _ => format!("Parameter error: {}", issues.first().map_or("invalid request", String::as_str)),
            };
            let reply = Reply::envelope(state, code, &message, json!({}));
            return Served { reply, users, issues };
        }
    };
    let owned: BTreeSet<String> = parsed
        .advertiser_ids
        .iter()
        .filter_map(|id| state.options.advertisers.iter().find(|a| &a.id == id))
        .flat_map(|a| a.audiences.iter().cloned())
        .collect();
    if let Some(unknown) =
        parsed.advertiser_ids.iter().find(|id| !state.options.advertisers.iter().any(|a| &a.id == *id))
    {
        let message = format!("No permission to operate advertiser {unknown}.");
        return Served { reply: Reply::envelope(state, 40001, &message, json!({})), users, issues };
    }
    let mentioned: BTreeSet<&String> = parsed.users.iter().flat_map(|(_, audiences)| audiences).collect();
    if let Some(missing) = mentioned.iter().find(|id| !owned.contains(**id)) {
        let message = format!("Custom audience {missing} does not exist.");
        return Served { reply: Reply::envelope(state, 40007, &message, json!({})), users, issues };
    }
    // Deletes are applied in one pass per audience: every stored user sharing an id with a deleted
    // one goes.
    let mut deleted: std::collections::BTreeMap<&String, BTreeSet<StoredId>> = Default::default();
    for (user, audiences) in &parsed.users {
        for audience in audiences {
            if parsed.delete {
                deleted.entry(audience).or_default().extend(user.iter().cloned());
            } else {
                state.audiences.entry(audience.clone()).or_default().insert(user.clone());
            }
        }
    }
    for (audience, gone) in deleted {
        if let Some(stored) = state.audiences.get_mut(audience) {
            stored.retain(|existing| existing.is_disjoint(&gone));
        }
    }
    Served { reply: Reply::envelope(state, 0, "OK", json!({})), users, issues }
}
