//! The HTTP side of the Snapchat fake: routing, body checks, auth, limits, membership.

use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::{lock, Fault, LoggedRequest, Shared, SnapchatState};
use crate::support::{self, bearer, header_text, is_json, is_lower_hex, request_id, Reply, TokenProblem};

const MAX_BODY: usize = 64 * 1024 * 1024;
/// The three Customer List schemas.
const SCHEMAS: [&str; 3] = ["EMAIL_SHA256", "PHONE_SHA256", "MOBILE_AD_ID_SHA256"];

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Token,
    AdAccount(String),
    AccountSegments(String),
    Segment(String),
    AddUsers(String),
    RemoveUsers(String),
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let owned = |s: &str| s.to_owned();
    match (method, parts.as_slice()) {
        (&Method::POST, ["login", "oauth2", "access_token"]) => Route::Token,
        (&Method::GET, ["v1", "adaccounts", id]) => Route::AdAccount(owned(id)),
        (&Method::GET, ["v1", "adaccounts", id, "segments"]) => Route::AccountSegments(owned(id)),
        (&Method::GET, ["v1", "segments", id]) => Route::Segment(owned(id)),
        (&Method::POST, ["v1", "segments", id, "users"]) => Route::AddUsers(owned(id)),
        (&Method::DELETE, ["v1", "segments", id, "users"]) => Route::RemoveUsers(owned(id)),
        _ => Route::Unknown,
    }
}

/// The Marketing API's error envelope.
fn error(status: u16, code: &str, debug: &str, display: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "request_status": "ERROR",
            "request_id": request_id(),
            "debug_message": debug,
            "display_message": display,
            "error_code": code,
        }),
    )
}

fn bad_request(debug: &str) -> Reply {
    error(400, "E1001", debug, "We're sorry, but the data provided in the request is incomplete or incorrect")
}

fn not_found(debug: &str) -> Reply {
    error(404, "E3003", debug, "We're sorry, but the requested resource is not available at this time")
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => error(500, "E5001", "internal error", "We're sorry, something went wrong").into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let route = route(&method, &path);
    let fault = {
        let mut state = lock(&shared);
        state.counters.requests += 1;
        let fault = state.faults.pop_front();
        if fault.is_some() {
            state.counters.faults += 1;
        }
        fault
    };
    let mut problems = Vec::new();
    let mut identifiers = 0;
    let reply = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, &route, &headers, &bytes, &mut problems, &mut identifiers)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            throttled().with_header("retry-after", retry_after_secs.to_string())
        }
        Some(Fault::Status(status @ 502..=504)) => Reply::empty(status),
        Some(Fault::Status(status)) => error(status, "E5001", "internal error", "We're sorry, something went wrong"),
        None => serve(&shared, &route, &headers, &bytes, &mut problems, &mut identifiers),
    };
    let mut state = lock(&shared);
    match reply.status {
        401 => state.counters.unauthorized += 1,
        429 => state.counters.rate_limited += 1,
        _ => {}
    }
    state.requests.push(LoggedRequest {
        method: method.to_string(),
        path,
        status: reply.status,
        valid: problems.is_empty(),
        problems,
        identifiers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    drop(state);
    reply.into_response()
}

fn throttled() -> Reply {
    error(429, "E1008", "Too many requests", "We're sorry, you have made too many requests; please slow down")
}

fn serve(
    shared: &Shared,
    route: &Route,
    headers: &HeaderMap,
    bytes: &[u8],
    problems: &mut Vec<String>,
    identifiers: &mut usize,
) -> Reply {
    let mut state = lock(shared);
    if *route == Route::Token {
        return token(&mut state, headers, bytes, problems);
    }
    if *route == Route::Unknown {
        return not_found("No such endpoint");
    }
    let expire_after = state.options.expire_token_after;
    match state.tokens.check(bearer(headers), expire_after) {
        Ok(()) => {}
        Err(TokenProblem::Missing | TokenProblem::Unknown) => {
            return error(401, "E3001", "Invalid access token", "We're sorry, you are not authorized")
        }
        Err(TokenProblem::Expired) => {
            return error(401, "E3001", "The access token has expired", "We're sorry, you are not authorized")
        }
    }
    if let Some(max) = state.options.requests_per_second {
        if state.window.take(max, Duration::from_secs(1)).is_err() {
            return throttled();
        }
    }
    match route {
        Route::AdAccount(id) => match state.options.ad_accounts.iter().find(|(a, _)| a == id) {
            Some((id, name)) => Reply::json(
                200,
                json!({
                    "request_status": "SUCCESS",
                    "request_id": request_id(),
                    "adaccounts": [{ "sub_request_status": "SUCCESS", "adaccount": {
                        "id": id, "name": name, "type": "PARTNER", "status": "ACTIVE", "currency": "USD",
                        "timezone": "UTC",
                    }}],
                }),
            ),
            None => not_found(&format!("Ad account {id} not found")),
        },
        Route::AccountSegments(id) => {
            if !state.options.ad_accounts.iter().any(|(a, _)| a == id) {
                return not_found(&format!("Ad account {id} not found"));
            }
            let segments: Vec<Value> = state
                .options
                .segments
                .iter()
                .filter(|s| s.ad_account_id == *id)
                .map(|s| json!({ "sub_request_status": "SUCCESS", "segment": segment_json(&state, s) }))
                .collect();
            Reply::json(200, json!({ "request_status": "SUCCESS", "request_id": request_id(), "segments": segments }))
        }
        Route::Segment(id) => match state.options.segments.iter().find(|s| s.id == *id) {
            Some(segment) => Reply::json(
                200,
                json!({
                    "request_status": "SUCCESS",
                    "request_id": request_id(),
                    "segments": [{ "sub_request_status": "SUCCESS", "segment": segment_json(&state, segment) }],
                }),
            ),
            None => not_found(&format!("Segment {id} not found")),
        },
        Route::AddUsers(id) => users(&mut state, id, true, headers, bytes, problems, identifiers),
        Route::RemoveUsers(id) => users(&mut state, id, false, headers, bytes, problems, identifiers),
        Route::Token | Route::Unknown => not_found("No such endpoint"),
    }
}

fn segment_json(state: &SnapchatState, segment: &super::SegmentDef) -> Value {
    let size = state.users.get(&segment.id).map_or(0, |u| u.len());
    json!({
        "id": segment.id,
        "name": segment.name,
        "ad_account_id": segment.ad_account_id,
        "description": segment.name,
        "status": "ACTIVE",
        "source_type": "FIRST_PARTY",
        "retention_in_days": 9999,
        "approximate_number_users": size,
        "upload_status": if size == 0 { "NO_UPLOAD" } else { "COMPLETE" },
        "targetable_status": if size < 1000 { "TOO_FEW_USERS" } else { "READY" },
    })
}

/// One `users` entry's problems against the documented shape; empty when it is valid.
fn entry_problems(index: usize, entry: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let at = |what: String| format!("users[{index}]: {what}");
    let Some(object) = entry.as_object() else {
        return vec![at("not an object".into())];
    };
    for key in object.keys() {
        if key != "schema" && key != "data" {
            found.push(at(format!("unknown field `{key}`")));
        }
    }
    let schema: Vec<&str> =
        object.get("schema").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let schema_len = object.get("schema").and_then(Value::as_array).map_or(0, Vec::len);
    if schema.is_empty() || schema.len() != schema_len {
        found.push(at("`schema` must be a non-empty array of schema names".into()));
    }
    for (i, name) in schema.iter().enumerate() {
        if !SCHEMAS.contains(name) {
            found.push(at(format!("unknown schema {name:?}")));
        }
        if schema[..i].contains(name) {
            found.push(at(format!("schema {name:?} is repeated")));
        }
    }
    match object.get("data").and_then(Value::as_array) {
        None => found.push(at("`data` must be an array of rows".into())),
        Some(rows) if rows.is_empty() => found.push(at("`data` is empty".into())),
        Some(rows) => {
            for (r, row) in rows.iter().enumerate() {
                let cells = row.as_array().map(Vec::as_slice).unwrap_or(&[]);
                if cells.len() != schema.len() {
                    found.push(at(format!("data[{r}] has {} values for {} schema names", cells.len(), schema.len())));
                }
                if !cells.iter().all(|c| c.as_str().is_some_and(|t| is_lower_hex(t, 64))) {
                    found.push(at(format!("data[{r}] holds a value that is not a lowercase SHA-256 hex digest")));
                }
            }
        }
    }
    found
}

/// `POST` (add) or `DELETE` (remove) `/v1/segments/{id}/users`.
fn users(
    state: &mut SnapchatState,
    segment: &str,
    adding: bool,
    headers: &HeaderMap,
    bytes: &[u8],
    problems: &mut Vec<String>,
    count: &mut usize,
) -> Reply {
    if !is_json(headers) {
        problems.push("Content-Type is not application/json".into());
        return error(415, "E1001", "Unsupported content type", "Use application/json");
    }
    let body: Value = match serde_json::from_slice(bytes) {
        Ok(body) => body,
        Err(e) => {
            problems.push(format!("body is not JSON: {e}"));
            return bad_request(&format!("Malformed JSON: {e}"));
        }
    };
    if !state.options.segments.iter().any(|s| s.id == segment) {
        return not_found(&format!("Segment {segment} not found"));
    }
    let entries = match body.as_object().map(|o| (o.len(), o.get("users").and_then(Value::as_array))) {
        Some((1, Some(entries))) if !entries.is_empty() => entries.clone(),
        _ => {
            problems.push("the body must be exactly {\"users\": [...]} with at least one entry".into());
            return bad_request("Request body must have a non-empty users array");
        }
    };
    let found: Vec<String> = entries.iter().enumerate().flat_map(|(i, e)| entry_problems(i, e)).collect();
    *count = entries
        .iter()
        .map(|e| e["data"].as_array().map_or(0, |rows| rows.iter().map(|r| r.as_array().map_or(0, Vec::len)).sum()))
        .sum();
    if !found.is_empty() {
        let message = found.join("; ");
        problems.extend(found);
        return bad_request(&message);
    }
    if *count > state.options.identifier_limit {
        problems.push(format!("{} identifiers in one request (limit {})", count, state.options.identifier_limit));
        return bad_request(&format!(
            "Too many identifiers: {} in one request, the maximum is {}",
            count, state.options.identifier_limit
        ));
    }
    let mut statuses = Vec::with_capacity(entries.len());
    let mut failed = false;
    for entry in &entries {
        let schema: Vec<&str> = entry["schema"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let rows: Vec<Vec<&str>> = entry["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row.as_array().into_iter().flatten().filter_map(Value::as_str).collect())
            .collect();
        let refused = state
            .options
            .reject
            .iter()
            .find(|rule| rows.iter().any(|row| row.contains(&rule.hash.as_str())))
            .map(|rule| rule.reason.clone());
        if let Some(reason) = refused {
            failed = true;
            statuses.push(json!({ "sub_request_status": "ERROR", "sub_request_error_reason": reason }));
            continue;
        }
        let members = state.users.entry(segment.to_owned()).or_default();
        let mut changed = 0;
        for row in &rows {
            for (name, value) in schema.iter().zip(row) {
                let key = format!("{name}:{value}");
                let done = if adding { members.insert(key) } else { members.remove(&key) };
                changed += u64::from(done);
            }
        }
        if adding {
            state.counters.added += changed;
        } else {
            state.counters.removed += changed;
        }
        statuses.push(json!({ "sub_request_status": "SUCCESS", "user": { "number_uploaded_users": rows.len() } }));
    }
    let (status, request_status) = if failed { (400, "ERROR") } else { (200, "SUCCESS") };
    Reply::json(status, json!({ "request_status": request_status, "request_id": request_id(), "users": statuses }))
}

/// `POST /login/oauth2/access_token` with the refresh-token grant.
fn token(state: &mut SnapchatState, headers: &HeaderMap, bytes: &[u8], problems: &mut Vec<String>) -> Reply {
    let oauth_error = |status: u16, code: &str, description: &str| {
        Reply::json(status, json!({ "error": code, "error_description": description }))
    };
    let content_type = header_text(headers, "content-type").unwrap_or("").to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        problems.push("token request is not form-encoded".into());
        return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
    }
    let form = support::form(bytes);
    let get = |key: &str| form.get(key).map(String::as_str).unwrap_or("");
    let app = state.options.oauth.clone();
    if get("grant_type") != "refresh_token" {
        problems.push(format!("unsupported grant_type {:?}", get("grant_type")));
        return oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token");
    }
    if get("client_id") != app.client_id || get("client_secret") != app.client_secret {
        return oauth_error(401, "invalid_client", "Invalid client credentials");
    }
    if get("refresh_token") != app.refresh_token {
        return oauth_error(400, "invalid_grant", "Invalid refresh token");
    }
    let access_token = state.tokens.issue("snap-access-token");
    state.counters.token_refreshes += 1;
    Reply::json(
        200,
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": app.expires_in,
            "refresh_token": app.refresh_token,
            "scope": "snapchat-marketing-api",
        }),
    )
}
