//! The HTTP side of the LinkedIn fake: routing, header and body checks, auth, limits, membership.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};

use super::{lock, Fault, LinkedInState, LoggedRequest, Shared, UserAttributes};
use crate::support::{self, bearer, header_text, is_json, is_lower_hex, is_uuid, Reply, TokenProblem};

const MAX_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Token,
    Segment(String),
    FindSegments,
    Users(String),
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["oauth", "v2", "accessToken"]) => Route::Token,
        (&Method::GET, ["rest", "dmpSegments"]) => Route::FindSegments,
        (&Method::GET, ["rest", "dmpSegments", id]) => Route::Segment((*id).to_owned()),
        (&Method::POST, ["rest", "dmpSegments", id, "users"]) => Route::Users((*id).to_owned()),
        _ => Route::Unknown,
    }
}

/// LinkedIn's error body (error-handling guide: `message`, `serviceErrorCode`, `status`), with
/// Rest.li's canonical `code` where LinkedIn sends one.
fn error(status: u16, code: Option<&str>, service_error_code: u32, message: &str) -> Reply {
    let mut body = Map::new();
    body.insert("status".into(), json!(status));
    body.insert("serviceErrorCode".into(), json!(service_error_code));
    if let Some(code) = code {
        body.insert("code".into(), json!(code));
    }
    body.insert("message".into(), json!(message));
    Reply::json(status, Value::Object(body))
}

/// What a request did wrong, and how the fake answers it.
struct Problems {
    list: Vec<String>,
}

impl Problems {
    fn new() -> Self {
        Problems { list: Vec::new() }
    }
    fn add(&mut self, problem: impl Into<String>) {
        self.list.push(problem.into());
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    // Served in its own task so a client that gives up does not cancel the write.
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => error(500, None, 0, "Internal Server Error").into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
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
    let mut problems = Problems::new();
    let mut elements = 0;
    let reply = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, &route, &headers, &query, &bytes, &mut problems, &mut elements)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            throttled().with_header("retry-after", retry_after_secs.to_string())
        }
        Some(Fault::Status(status)) => fault_status(status),
        None => serve(&shared, &route, &headers, &query, &bytes, &mut problems, &mut elements),
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
        valid: problems.list.is_empty(),
        problems: problems.list,
        elements,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    drop(state);
    reply.into_response()
}

fn throttled() -> Reply {
    error(
        429,
        Some("TOO_MANY_REQUESTS"),
        101,
        "Resource level throttle MEMBER MINUTE limit for calls to this resource is reached.",
    )
}

fn fault_status(status: u16) -> Reply {
    match status {
        // LinkedIn's edge answers gateway errors without its JSON body.
        502..=504 => Reply::empty(status),
        _ => error(status, None, 0, "Internal Server Error"),
    }
}

fn serve(
    shared: &Shared,
    route: &Route,
    headers: &HeaderMap,
    query: &str,
    bytes: &[u8],
    problems: &mut Problems,
    elements: &mut usize,
) -> Reply {
    let mut state = lock(shared);
    if *route == Route::Token {
        return token(&mut state, headers, bytes, problems);
    }
    if *route == Route::Unknown {
        return error(404, Some("RESOURCE_NOT_FOUND"), 0, "No virtual resource found");
    }
    let expire_after = state.options.expire_token_after;
    match state.tokens.check(bearer(headers), expire_after) {
        Ok(()) => {}
        // The error-handling guide's own sample.
        Err(TokenProblem::Missing) => return error(401, None, 401, "Empty oauth2_access_token"),
        Err(TokenProblem::Unknown) => return error(401, Some("INVALID_ACCESS_TOKEN"), 65600, "Invalid access token"),
        Err(TokenProblem::Expired) => {
            return error(401, Some("EXPIRED_ACCESS_TOKEN"), 65602, "The token used in the request has expired")
        }
    }
    if let Some(reply) = check_versions(&state, headers, problems) {
        return reply;
    }
    match route {
        Route::Segment(id) => match state.options.segments.iter().find(|s| s.id == *id) {
            Some(segment) => Reply::json(200, segment_json(segment)),
            None => error(404, Some("NOT_FOUND"), 0, &format!("DmpSegment {id} does not exist")),
        },
        Route::FindSegments => find_segments(&state, query, problems),
        Route::Users(id) => {
            if let Some(max) = state.options.users_per_minute {
                if state.window.take(max, Duration::from_secs(60)).is_err() {
                    return throttled();
                }
            }
            users(&mut state, id, headers, bytes, problems, elements)
        }
        Route::Token | Route::Unknown => error(404, Some("RESOURCE_NOT_FOUND"), 0, "No virtual resource found"),
    }
}

/// `LinkedIn-Version` (YYYYMM, active) and `X-Restli-Protocol-Version: 2.0.0` on every `/rest` call.
fn check_versions(state: &LinkedInState, headers: &HeaderMap, problems: &mut Problems) -> Option<Reply> {
    let Some(version) = header_text(headers, "linkedin-version") else {
        problems.add("missing LinkedIn-Version header");
        return Some(error(
            400,
            Some("VERSION_MISSING"),
            0,
            "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
        ));
    };
    let number = (version.len() == 6).then(|| version.parse::<u32>().ok()).flatten();
    let active = number.is_some_and(|n| {
        (1..=12).contains(&(n % 100)) && n >= state.options.oldest_active_version && n <= state.options.newest_version
    });
    if !active {
        problems.add(format!("LinkedIn-Version {version:?} is not an active YYYYMM version"));
        return Some(error(426, Some("NONEXISTENT_VERSION"), 0, &format!("Requested version {version} is not active")));
    }
    if header_text(headers, "x-restli-protocol-version") != Some("2.0.0") {
        problems.add("missing X-Restli-Protocol-Version: 2.0.0");
        return Some(error(400, None, 0, "The X-Restli-Protocol-Version header must be 2.0.0"));
    }
    None
}

fn segment_json(segment: &super::SegmentDef) -> Value {
    json!({
        "id": segment.id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(segment.id.clone())),
        "name": segment.name,
        "account": format!("urn:li:sponsoredAccount:{}", segment.account),
        "type": segment.kind,
        "sourcePlatform": "SLUICE",
        "accessPolicy": "PRIVATE",
        "destinations": [{ "destination": "LINKEDIN", "status": "READY" }],
    })
}

/// `GET /rest/dmpSegments?q=account&account=urn:li:sponsoredAccount:{id}` (values URL-encoded, as
/// Rest.li 2.0 wants).
fn find_segments(state: &LinkedInState, query: &str, problems: &mut Problems) -> Reply {
    let params = support::form(query.as_bytes());
    if params.get("q").map(String::as_str) != Some("account") {
        problems.add("dmpSegments finder without q=account");
        return error(400, None, 0, "Missing or unknown finder: use q=account");
    }
    let Some(account) = params.get("account").and_then(|a| a.strip_prefix("urn:li:sponsoredAccount:")) else {
        problems.add("dmpSegments finder without an account urn");
        return error(400, None, 0, "Parameter 'account' must be a sponsoredAccount urn");
    };
    let elements: Vec<Value> =
        state.options.segments.iter().filter(|s| s.account == account).map(segment_json).collect();
    let total = elements.len();
    Reply::json(200, json!({ "elements": elements, "paging": { "start": 0, "count": total, "total": total } }))
}

/// The element's problems against the documented schema; empty when it is valid.
fn element_problems(element: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(object) = element.as_object() else {
        return vec!["an element is not an object".into()];
    };
    for key in object.keys() {
        if !matches!(key.as_str(), "action" | "userIds" | "firstName" | "lastName" | "title" | "company" | "country") {
            found.push(format!("unknown field `{key}`"));
        }
    }
    match object.get("action").and_then(Value::as_str) {
        Some("ADD" | "REMOVE") => {}
        other => found.push(format!("`action` must be ADD or REMOVE, found {other:?}")),
    }
    match object.get("userIds").and_then(Value::as_array) {
        None => found.push("`userIds` must be an array".into()),
        Some(ids) if ids.is_empty() => found.push("`userIds` is empty".into()),
        Some(ids) => {
            for id in ids {
                let keys_ok = id.as_object().is_some_and(|o| o.len() == 2);
                let id_type = id.get("idType").and_then(Value::as_str);
                let value = id.get("idValue").and_then(Value::as_str).unwrap_or("");
                let value_ok = match id_type {
                    Some("SHA256_EMAIL") => is_lower_hex(value, 64),
                    Some("SHA512_EMAIL") => is_lower_hex(value, 128),
                    Some("GOOGLE_AID") => is_uuid(value, false),
                    Some("APPLE_IDFA") => is_uuid(value, true),
                    _ => {
                        found.push(format!("unknown idType {id_type:?}"));
                        continue;
                    }
                };
                if !keys_ok {
                    found.push("a userId must have exactly idType and idValue".into());
                }
                if !value_ok {
                    found.push(format!("idValue is not a valid {}", id_type.unwrap_or_default()));
                }
            }
        }
    }
    for (key, max) in [("firstName", 35), ("lastName", 35), ("title", 50), ("company", 50)] {
        if let Some(value) = object.get(key) {
            match value.as_str() {
                Some(text) if !text.is_empty() && text.chars().count() <= max => {}
                _ => found.push(format!("`{key}` must be a string of 1 to {max} characters")),
            }
        }
    }
    if let Some(country) = object.get("country") {
        let ok = country.as_str().is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
        if !ok {
            found.push("`country` must be an ISO 3166-1 alpha-2 code in uppercase".into());
        }
    }
    found
}

/// `POST /rest/dmpSegments/{id}/users`: one user, or a batch with `X-RestLi-Method: BATCH_CREATE`.
fn users(
    state: &mut LinkedInState,
    segment: &str,
    headers: &HeaderMap,
    bytes: &[u8],
    problems: &mut Problems,
    count: &mut usize,
) -> Reply {
    if !is_json(headers) {
        problems.add("Content-Type is not application/json");
        return error(415, None, 0, "Unsupported Media Type: use application/json");
    }
    let body: Value = match serde_json::from_slice(bytes) {
        Ok(body) => body,
        Err(e) => {
            problems.add(format!("body is not JSON: {e}"));
            return error(400, None, 0, &format!("Cannot parse request body: {e}"));
        }
    };
    let Some(def) = state.options.segments.iter().find(|s| s.id == segment).cloned() else {
        return error(404, Some("NOT_FOUND"), 0, &format!("DmpSegment {segment} does not exist"));
    };
    if def.kind != "USER" {
        return error(400, None, 0, &format!("DmpSegment {segment} is a {} segment; users cannot be added", def.kind));
    }
    let batch = header_text(headers, "x-restli-method").is_some_and(|m| m.eq_ignore_ascii_case("BATCH_CREATE"));
    if !batch {
        // A single create: the body is one element.
        let found = element_problems(&body);
        if !found.is_empty() {
            for p in &found {
                problems.add(p.clone());
            }
            return error(400, None, 0, &found.join("; "));
        }
        *count = 1;
        return match apply(state, segment, &body) {
            None => Reply::empty(201),
            Some((status, message)) => error(status, None, 0, &message),
        };
    }
    let elements = match body.as_object().map(|o| (o.len(), o.get("elements").and_then(Value::as_array))) {
        Some((1, Some(elements))) => elements.clone(),
        _ => {
            problems.add("a BATCH_CREATE body must be exactly {\"elements\": [...]}");
            return error(400, None, 0, "Request body must be a batch of elements");
        }
    };
    *count = elements.len();
    if elements.is_empty() {
        problems.add("empty batch");
        return error(400, None, 0, "A batch must have at least one element");
    }
    if elements.len() > state.options.batch_limit {
        problems.add(format!("{} elements in one batch (limit {})", elements.len(), state.options.batch_limit));
        return error(
            400,
            None,
            0,
            &format!("Batch size {} exceeds the maximum of {}", elements.len(), state.options.batch_limit),
        );
    }
    let mut statuses = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let found = element_problems(element);
        if !found.is_empty() {
            for p in &found {
                problems.add(format!("elements[{index}]: {p}"));
            }
            statuses.push(json!({ "status": 400, "error": { "status": 400, "message": found.join("; ") } }));
            continue;
        }
        statuses.push(match apply(state, segment, element) {
            None => json!({ "status": 201 }),
            Some((status, message)) => json!({ "status": status, "error": { "status": status, "message": message } }),
        });
    }
    Reply::json(200, json!({ "elements": statuses }))
}

/// Applies one valid element; `Some((status, message))` when a reject rule refuses it.
fn apply(state: &mut LinkedInState, segment: &str, element: &Value) -> Option<(u16, String)> {
    let ids: Vec<String> = element["userIds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| format!("{}:{}", id["idType"].as_str().unwrap_or(""), id["idValue"].as_str().unwrap_or("")))
        .collect();
    for rule in &state.options.reject {
        if ids.iter().any(|id| id.split_once(':').is_some_and(|(_, value)| value == rule.id_value)) {
            return Some((rule.status, rule.message.clone()));
        }
    }
    let text = |key: &str| element.get(key).and_then(Value::as_str).map(String::from);
    let attributes = UserAttributes {
        first_name: text("firstName"),
        last_name: text("lastName"),
        title: text("title"),
        company: text("company"),
        country: text("country"),
    };
    let users: &mut BTreeMap<String, UserAttributes> = state.users.entry(segment.to_owned()).or_default();
    let adding = element["action"] == "ADD";
    let mut changed = 0;
    for id in ids {
        if adding {
            users.insert(id, attributes.clone());
            changed += 1;
        } else if users.remove(&id).is_some() {
            changed += 1;
        }
    }
    if adding {
        state.counters.added += changed;
    } else {
        state.counters.removed += changed;
    }
    None
}

/// `POST /oauth/v2/accessToken` with the refresh-token grant.
fn token(state: &mut LinkedInState, headers: &HeaderMap, bytes: &[u8], problems: &mut Problems) -> Reply {
    let oauth_error = |status: u16, code: &str, description: &str| {
        Reply::json(status, json!({ "error": code, "error_description": description }))
    };
    let content_type = header_text(headers, "content-type").unwrap_or("").to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        problems.add("token request is not form-encoded");
        return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
    }
    let form = support::form(bytes);
    let get = |key: &str| form.get(key).map(String::as_str).unwrap_or("");
    let app = state.options.oauth.clone();
    if get("grant_type") != "refresh_token" {
        problems.add(format!("unsupported grant_type {:?}", get("grant_type")));
        return oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token");
    }
    if get("client_id") != app.client_id || get("client_secret") != app.client_secret {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    }
    if get("refresh_token") != app.refresh_token {
        return oauth_error(
            400,
            "invalid_request",
            "The provided authorization grant or refresh token is invalid, expired or revoked",
        );
    }
    let access_token = state.tokens.issue("linkedin-access-token");
    state.counters.token_refreshes += 1;
    Reply::json(
        200,
        json!({
            "access_token": access_token,
            "expires_in": app.expires_in,
            "refresh_token": app.refresh_token,
            "refresh_token_expires_in": 31_536_000,
            "scope": "rw_dmp_segments",
        }),
    )
}
