//! The HTTP side of the fake: routing, body validation, faults, auth, rate limits and logging.

use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};

use super::crm::{self, BatchOp};
use super::spec::{specs, UPSERT_SCHEMA};
use super::{lock, Fault, LoggedRequest, OAuthToken, Shared};
use crate::openapi::Spec;

/// Bodies larger than this are refused; HubSpot batches are far smaller.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// An answer before it becomes an HTTP response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self { status, body: Some(body), headers: Vec::new() }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self { status, body: None, headers: Vec::new() }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            Some(body) => {
                let mut r = Response::new(Body::from(body.to_string()));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
                r
            }
            None => Response::new(Body::empty()),
        };
        *response.status_mut() = status;
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// HubSpot's standard error body.
pub(crate) fn error_body(message: &str, category: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("status".into(), json!("error"));
    body.insert("message".into(), json!(message));
    body.insert("correlationId".into(), json!(correlation_id()));
    body.insert("category".into(), json!(category));
    body
}

pub(crate) fn correlation_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Objects { object_type: String, op: BatchOp },
    Properties { object_type: String },
    AssociationsV4 { from: String, to: String },
    AssociationsV3 { from: String, to: String },
    Token,
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let owned = |s: &str| s.to_owned();
    match (method, parts.as_slice()) {
        (&Method::POST, ["crm", "v3", "objects", object_type, "batch", op]) => match BatchOp::parse(op) {
            Some(op) => Route::Objects { object_type: owned(object_type), op },
            None => Route::Unknown,
        },
        (&Method::GET, ["crm", "v3", "properties", object_type]) => {
            Route::Properties { object_type: owned(object_type) }
        }
        (&Method::POST, ["crm", "v4", "associations", from, to, "batch", "create"]) => {
            Route::AssociationsV4 { from: owned(from), to: owned(to) }
        }
        (&Method::POST, ["crm", "v3", "associations", from, to, "batch", "create"]) => {
            Route::AssociationsV3 { from: owned(from), to: owned(to) }
        }
        (&Method::POST, ["oauth", "v1", "token"]) => Route::Token,
        _ => Route::Unknown,
    }
}

/// The spec and schema a route's JSON body must match.
fn body_schema(route: &Route) -> Option<(&'static Spec, &'static str)> {
    let s = specs();
    match route {
        Route::Objects { op, .. } => Some((
            &s.objects,
            match op {
                BatchOp::Create => "BatchInputSimplePublicObjectInputForCreate",
                BatchOp::Update => "BatchInputSimplePublicObjectBatchInput",
                BatchOp::Upsert => UPSERT_SCHEMA,
                BatchOp::Archive => "BatchInputSimplePublicObjectId",
                BatchOp::Read => "BatchReadInputSimplePublicObjectId",
            },
        )),
        Route::AssociationsV4 { .. } => Some((&s.associations_v4, "BatchInputPublicAssociationMultiPost")),
        Route::AssociationsV3 { .. } => Some((&s.associations_v3, "BatchInputPublicAssociation")),
        _ => None,
    }
}

/// The request body after checking it against the route's spec.
enum Payload {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
    Invalid { status: u16, body: Value, issues: Vec<String> },
}

fn check_body(route: &Route, headers: &HeaderMap, bytes: &[u8]) -> Payload {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if *route == Route::Token {
        return check_token_form(&content_type, bytes);
    }
    let Some((spec, schema)) = body_schema(route) else {
        return Payload::None;
    };
    if !content_type.starts_with("application/json") {
        let message = format!("Content type '{content_type}' not supported; use application/json");
        let issue = format!("unsupported content type '{content_type}'");
        return Payload::Invalid {
            status: 415,
            body: Value::Object(error_body(&message, "VALIDATION_ERROR")),
            issues: vec![issue],
        };
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column());
            return Payload::Invalid {
                status: 400,
                body: Value::Object(error_body(&message, "VALIDATION_ERROR")),
                issues: vec![message],
            };
        }
    };
    let issues = spec.validate(schema, &value);
    if issues.is_empty() {
        return Payload::Json(value);
    }
    let texts: Vec<String> = issues.iter().map(ToString::to_string).collect();
    let mut body = error_body(&format!("Invalid input JSON: {}", texts.join("; ")), "VALIDATION_ERROR");
    let details: Vec<Value> =
        issues.iter().map(|i| json!({"message": i.message, "in": i.path, "code": "INVALID_INPUT"})).collect();
    body.insert("errors".into(), Value::Array(details));
    Payload::Invalid { status: 400, body: Value::Object(body), issues: texts }
}

/// Checks the form body of `POST /oauth/v1/token` (no OpenAPI description in the copy).
fn check_token_form(content_type: &str, bytes: &[u8]) -> Payload {
    let token_error =
        |status: &str, message: &str| json!({"status": status, "message": message, "correlationId": correlation_id()});
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        let message = "Content-Type must be application/x-www-form-urlencoded";
        return Payload::Invalid { status: 415, body: token_error("error", message), issues: vec![message.to_owned()] };
    }
    let form: Vec<(String, String)> =
        form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let problem = match get("grant_type") {
        None => Some(("BAD_GRANT_TYPE", "missing grant_type")),
        Some("refresh_token") if get("refresh_token").is_none() => {
            Some(("BAD_REFRESH_TOKEN", "missing or unknown refresh token"))
        }
        Some("authorization_code") if get("code").is_none() => Some(("BAD_AUTH_CODE", "missing or unknown auth code")),
        Some("refresh_token" | "authorization_code") => None,
        Some(_) => Some(("BAD_GRANT_TYPE", "unsupported grant_type")),
    };
    let problem = problem.or_else(|| match (get("client_id"), get("client_secret")) {
        (None, _) => Some(("BAD_CLIENT_ID", "missing or unknown client id")),
        (_, None) => Some(("BAD_CLIENT_SECRET", "missing or invalid client secret")),
        _ => None,
    });
    match problem {
        Some((status, message)) => {
            Payload::Invalid { status: 400, body: token_error(status, message), issues: vec![message.to_owned()] }
        }
        None => Payload::Form(form),
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    // Served in its own task so a client that times out and disconnects does not cancel the work,
    // just as HubSpot finishes a write whose caller has given up.
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => Reply::json(500, Value::Object(error_body("internal error", "INTERNAL_ERROR"))).into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let route = route(&method, &path);
    let body = check_body(&route, &headers, &bytes);
    let validation_errors = match &body {
        Payload::Invalid { issues, .. } => issues.clone(),
        _ => Vec::new(),
    };

    let fault = {
        let mut state = lock(&shared);
        state.counters.requests += 1;
        if !validation_errors.is_empty() {
            state.counters.invalid_bodies += 1;
        }
        let fault = state.faults.pop_front();
        if fault.is_some() {
            state.counters.faults += 1;
        }
        fault
    };
    let reply = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, &route, &headers, &query, body)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut reply = Reply::json(429, rate_limit_body("TEN_SECONDLY_ROLLING"));
            reply.headers.push(("retry-after", retry_after_secs.to_string()));
            reply
        }
        Some(Fault::Status(status)) => fault_status(status),
        None => serve(&shared, &route, &headers, &query, body),
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
        body_valid: validation_errors.is_empty(),
        validation_errors,
    });
    drop(state);
    reply.into_response()
}

fn fault_status(status: u16) -> Reply {
    match status {
        // HubSpot's edge answers gateway errors with an HTML page, not its JSON error body.
        502..=504 => Reply { status, body: None, headers: vec![("content-type", "text/html".to_owned())] },
        _ => Reply::json(
            status,
            Value::Object(error_body("internal error", if status >= 500 { "INTERNAL_ERROR" } else { "ERROR" })),
        ),
    }
}

fn rate_limit_body(policy: &str) -> Value {
    let message = match policy {
        "DAILY" => "You have reached your daily limit.".to_owned(),
        _ => format!("You have reached your {} limit.", policy.to_ascii_lowercase()),
    };
    json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
    })
}

enum Caller {
    PrivateApp,
    OAuth,
}

/// Everything after faults: token endpoint, auth, rate limits, body errors, then the endpoint.
fn serve(shared: &Shared, route: &Route, headers: &HeaderMap, query: &str, body: Payload) -> Reply {
    let mut state = lock(shared);
    if *route == Route::Token {
        return match body {
            Payload::Form(form) => token(&mut state, &form),
            Payload::Invalid { status, body, .. } => Reply::json(status, body),
            _ => Reply::json(400, json!({"status": "BAD_GRANT_TYPE", "message": "missing grant_type"})),
        };
    }
    let caller = match authenticate(&mut state, headers) {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };
    let rate_headers = match rate_limit(&mut state, &caller) {
        Ok(headers) => headers,
        Err(reply) => return reply,
    };
    let mut reply = match (route, body) {
        (_, Payload::Invalid { status, body, .. }) => Reply::json(status, body),
        (Route::Objects { object_type, op }, Payload::Json(body)) => crm::batch(&mut state, object_type, *op, &body),
        (Route::Properties { object_type }, _) => crm::properties(&state, object_type, query),
        (Route::AssociationsV4 { from, to }, Payload::Json(body)) => crm::associate_v4(&mut state, from, to, &body),
        (Route::AssociationsV3 { from, to }, Payload::Json(body)) => crm::associate_v3(&mut state, from, to, &body),
        _ => Reply::json(404, Value::Object(error_body("Resource not found", "OBJECT_NOT_FOUND"))),
    };
    reply.headers.extend(rate_headers);
    reply
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn authenticate(state: &mut super::HubSpotState, headers: &HeaderMap) -> Result<Caller, Reply> {
    let invalid = || {
        Reply::json(
            401,
            Value::Object(error_body(
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find \
                 more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )),
        )
    };
    let Some(token) = bearer(headers) else { return Err(invalid()) };
    if state.options.private_app_tokens.iter().any(|t| t == token) {
        return Ok(Caller::PrivateApp);
    }
    let expire_after = state.options.expire_token_after;
    let Some(entry) = state.oauth_tokens.get_mut(token) else { return Err(invalid()) };
    if entry.expired_at.is_none() {
        entry.uses += 1;
        if expire_after.is_some_and(|n| entry.uses > n) {
            entry.expired_at = Some((Instant::now(), crm::now()));
        }
    }
    match &entry.expired_at {
        None => Ok(Caller::OAuth),
        Some((at, stamp)) => {
            let ago = at.elapsed().as_secs();
            let mut body = error_body(
                &format!("The OAuth token used to make this call expired {ago} second(s) ago."),
                "EXPIRED_AUTHENTICATION",
            );
            body.insert("context".into(), json!({"expire time": [stamp]}));
            Err(Reply::json(401, Value::Object(body)))
        }
    }
}

fn rate_limit(state: &mut super::HubSpotState, caller: &Caller) -> Result<Vec<(&'static str, String)>, Reply> {
    let limits = state.options.rate_limit.clone();
    let now = Instant::now();
    while state.window.front().is_some_and(|t| now.duration_since(*t) >= limits.interval) {
        state.window.pop_front();
    }
    let over_burst = state.window.len() >= limits.max as usize;
    let over_daily = state.daily_used >= limits.daily;
    let blocked = limits.enforce && (over_burst || over_daily);
    if !blocked {
        state.window.push_back(now);
        state.daily_used = state.daily_used.saturating_add(1);
    }
    let mut headers = vec![
        ("x-hubspot-ratelimit-max", limits.max.to_string()),
        ("x-hubspot-ratelimit-remaining", (limits.max as usize).saturating_sub(state.window.len()).to_string()),
        ("x-hubspot-ratelimit-interval-milliseconds", limits.interval.as_millis().to_string()),
    ];
    // HubSpot sends the daily headers for private apps only: OAuth apps have no daily limit.
    if matches!(caller, Caller::PrivateApp) {
        headers.push(("x-hubspot-ratelimit-daily", limits.daily.to_string()));
        headers
            .push(("x-hubspot-ratelimit-daily-remaining", limits.daily.saturating_sub(state.daily_used).to_string()));
    }
    if !blocked {
        return Ok(headers);
    }
    let (policy, wait) = if over_daily {
        ("DAILY", 86_400)
    } else {
        let oldest = state.window.front().copied().unwrap_or(now);
        let left = limits.interval.saturating_sub(now.duration_since(oldest));
        ("TEN_SECONDLY_ROLLING", left.as_millis().div_ceil(1000).max(1) as u64)
    };
    let mut reply = Reply::json(429, rate_limit_body(policy));
    reply.headers = headers;
    reply.headers.push(("retry-after", wait.to_string()));
    Err(reply)
}

/// `POST /oauth/v1/token`: refreshes the access token of the configured app.
fn token(state: &mut super::HubSpotState, form: &[(String, String)]) -> Reply {
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
    let error = |status: &str, message: &str| {
        Reply::json(400, json!({"status": status, "message": message, "correlationId": correlation_id()}))
    };
    let Some(app) = state.options.oauth.clone() else {
        return error("BAD_CLIENT_ID", "missing or unknown client id");
    };
    if get("client_id") != app.client_id {
        return error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if get("client_secret") != app.client_secret {
        return error("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    if get("grant_type") != "refresh_token" {
        return error("BAD_AUTH_CODE", "missing or unknown auth code");
    }
    if get("refresh_token") != app.refresh_token {
        return error("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    let access_token = format!("fake-access-token-{}", state.next_token);
    state.next_token += 1;
    state.oauth_tokens.insert(access_token.clone(), OAuthToken { uses: 0, expired_at: None });
    state.current_access_token = Some(access_token.clone());
    state.counters.token_refreshes += 1;
    // HubSpot keeps the same refresh token across refreshes.
    Reply::json(
        200,
        json!({
            "token_type": "bearer",
            "refresh_token": app.refresh_token,
            "access_token": access_token,
            "expires_in": app.expires_in,
        }),
    )
}
