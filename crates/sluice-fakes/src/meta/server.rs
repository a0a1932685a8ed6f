//! The HTTP side of the Meta fake: parameters, faults, auth, the business-use-case rate limit,
//! routing and logging.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};

use super::audience::{self, Refusal, Upload};
use super::spec::custom_audience;
use super::{lock, Fault, LoggedRequest, MetaState, Shared};

/// Bodies larger than this are refused; 10,000 rows of three digests are about 2 MB.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The rolling window of the business-use-case rate limit.
const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    /// The Graph error code, for the log.
    code: Option<u64>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body: Some(body), headers: Vec::new(), code: None }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => {
                let mut r = Response::new(Body::from(body.to_string()));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
                r
            }
            None => Response::new(Body::empty()),
        };
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn fbtrace_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
    (0..23).map(|_| CHARS[fastrand::usize(..CHARS.len())] as char).collect()
}

/// Graph's error body: `{"error": {message, type, code, error_subcode, is_transient, fbtrace_id}}`.
fn error(status: u16, code: u64, subcode: Option<u64>, kind: &str, message: &str) -> Reply {
    let transient = matches!(code, 1 | 2 | 4 | 17 | 32 | 341 | 613 | 80003);
    let mut body = Map::new();
    body.insert("message".into(), json!(message));
    body.insert("type".into(), json!(kind));
    body.insert("code".into(), json!(code));
    if let Some(subcode) = subcode {
        body.insert("error_subcode".into(), json!(subcode));
    }
    body.insert("is_transient".into(), json!(transient));
    body.insert("fbtrace_id".into(), json!(fbtrace_id()));
    let mut reply = Reply { status, body: Some(json!({ "error": body })), headers: Vec::new(), code: Some(code) };
    if matches!(code, 102 | 104 | 190) {
        reply
            .headers
            .push(("www-authenticate", format!("OAuth \"Facebook Platform\" \"invalid_token\" \"{message}\"")));
    }
    reply
}

fn refusal(refused: Refusal) -> Reply {
    error(400, refused.code, refused.subcode, "OAuthException", &refused.message)
}

fn no_object(id: &str, method: &str) -> Reply {
    error(
        400,
        100,
        Some(33),
        "GraphMethodException",
        &format!(
            "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing \
             permissions, or does not support this operation. Please read the Graph API documentation at \
             https://developers.facebook.com/docs/graph-api"
        ),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Me,
    Account(String),
    AccountAudiences(String),
    Node(String),
    Users(String),
    UsersReplace(String),
    Unknown,
}

fn is_version(segment: &str) -> bool {
    segment.strip_prefix('v').and_then(|v| v.split_once('.')).is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && major.bytes().all(|b| b.is_ascii_digit())
            && minor.bytes().all(|b| b.is_ascii_digit())
    })
}

fn route(method: &Method, parts: &[&str]) -> Route {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let account = |s: &str| s.strip_prefix("act_").filter(|id| numeric(id)).map(str::to_owned);
    match (method, parts) {
        (&Method::GET, ["me"]) => Route::Me,
        (&Method::GET, [node]) if account(node).is_some() => Route::Account(account(node).unwrap_or_default()),
        (&Method::GET, [node, "customaudiences"]) if account(node).is_some() => {
            Route::AccountAudiences(account(node).unwrap_or_default())
        }
        (&Method::GET, [id]) if numeric(id) => Route::Node((*id).to_owned()),
        (&Method::POST | &Method::DELETE, [id, "users"]) if numeric(id) => Route::Users((*id).to_owned()),
        (&Method::POST, [id, "usersreplace"]) if numeric(id) => Route::UsersReplace((*id).to_owned()),
        _ => Route::Unknown,
    }
}

/// Parameters from the query string and the body (form or JSON).
fn parameters(query: &str, headers: &HeaderMap, bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        params.insert(key.into_owned(), Value::String(value.into_owned()));
    }
    if bytes.is_empty() {
        return Ok(params);
    }
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        for (key, value) in form_urlencoded::parse(bytes) {
            params.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    } else if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => params.extend(object),
            Ok(_) => return Err("the JSON body must be an object of parameters".into()),
            Err(e) => return Err(format!("the JSON body does not parse: {e}")),
        }
    } else {
        return Err(format!("unsupported content type '{content_type}'"));
    }
    Ok(params)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    // Served in its own task so a client that times out and disconnects does not cancel the work,
    // just as Meta finishes an upload whose caller has given up.
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => error(500, 1, None, "OAuthException", "An unknown error occurred").into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let mut issues = Vec::new();
    let mut params = parameters(&query, &headers, &bytes).unwrap_or_else(|issue| {
        issues.push(issue);
        BTreeMap::new()
    });
    // "You can add the method parameter and set it to DELETE in the POST request."
    let effective = match params.get("method").and_then(Value::as_str) {
        Some(m) if method == Method::POST && m.eq_ignore_ascii_case("delete") => {
            params.remove("method");
            Method::DELETE
        }
        _ => method.clone(),
    };
    let param_names: Vec<String> = params.keys().cloned().collect();

    let fault = {
        let mut state = lock(&shared);
        state.counters.requests += 1;
        let fault = state.faults.pop_front();
        if fault.is_some() {
            state.counters.faults += 1;
        }
        fault
    };
    let mut outcome = Served::default();
    let reply = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, &effective, &path, &headers, &params, &mut issues, &mut outcome)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut reply = error(429, 4, None, "OAuthException", "(#4) Application request limit reached");
            reply.headers.push(("retry-after", retry_after_secs.to_string()));
            reply
        }
        Some(Fault::Throttle { code, regain_access_minutes }) => {
            throttled(&lock(&shared), &path, code, regain_access_minutes)
        }
        Some(Fault::Status(status)) => match status {
            502..=504 if status != 503 => {
                Reply { status, body: None, headers: vec![("content-type", "text/html".to_owned())], code: None }
            }
            503 => error(503, 2, None, "OAuthException", "Service temporarily unavailable"),
            _ => error(status, 1, None, "OAuthException", "An unknown error occurred"),
        },
        Some(Fault::ExpiredToken) => expired(),
        None => serve(&shared, &effective, &path, &headers, &params, &mut issues, &mut outcome),
    };

    let mut state = lock(&shared);
    match reply.code {
        Some(104 | 190) => state.counters.unauthorized += 1,
        Some(4 | 17 | 32 | 613 | 80003) => state.counters.rate_limited += 1,
        _ if reply.status == 429 => state.counters.rate_limited += 1,
        _ => {}
    }
    state.requests.push(LoggedRequest {
        method: effective.to_string(),
        path,
        status: reply.status,
        error_code: reply.code,
        issues,
        rows: outcome.rows,
        invalid_entries: outcome.invalid_entries,
        refused_entries: outcome.refused_entries,
        params: param_names,
    });
    drop(state);
    reply.into_response()
}

/// What an upload contained, for the log.
#[derive(Default)]
struct Served {
    rows: usize,
    invalid_entries: usize,
    refused_entries: usize,
}

fn expired() -> Reply {
    error(
        400,
        190,
        Some(463),
        "OAuthException",
        "Error validating access token: Session has expired on Tuesday, 01-Sep-26 10:00:00 PDT. The current time is \
         Wednesday, 02-Sep-26 10:00:00 PDT.",
    )
}

/// The ad account whose custom-audience budget a request uses, if it names an audience.
fn account_of(state: &MetaState, path: &str) -> Option<String> {
    let id = path.trim_matches('/').split('/').nth(1)?;
    state.audiences.get(id).and_then(|a| a.def.as_ref()).map(|d| d.account_id.clone())
}

fn usage_header(account: &str, call_count: u64, regain_minutes: u64) -> (&'static str, String) {
    let usage = json!({ account: [{
        "type": "custom_audience",
        "call_count": call_count,
        "total_cputime": 1,
        "total_time": 1,
        "estimated_time_to_regain_access": regain_minutes,
    }]});
    ("x-business-use-case-usage", usage.to_string())
}

fn throttled(state: &MetaState, path: &str, code: u32, regain_minutes: u64) -> Reply {
    let (subcode, message) = match code {
        4 => (None, "(#4) Application request limit reached".to_owned()),
        17 => (Some(2446079), "(#17) User request limit reached".to_owned()),
        32 => (None, "(#32) Page request limit reached".to_owned()),
        613 => (
            Some(1487742),
            "(#613) There have been too many calls from this ad-account. Please wait a bit and try again.".to_owned(),
        ),
        other => (
            Some(2446079),
            format!("(#{other}) There have been too many calls to this ad-account. Wait a bit and try again."),
        ),
    };
    let mut reply = error(400, u64::from(code), subcode, "OAuthException", &message);
    let account = account_of(state, path).unwrap_or_else(|| super::DEFAULT_AD_ACCOUNT.to_owned());
    reply.headers.push(usage_header(&account, 100, regain_minutes));
    reply
}

fn token(headers: &HeaderMap, params: &BTreeMap<String, Value>) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth") {
                return Some(token.trim().to_owned());
            }
        }
    }
    params.get("access_token").and_then(Value::as_str).map(str::to_owned)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn authenticate(state: &MetaState, headers: &HeaderMap, params: &BTreeMap<String, Value>) -> Result<(), Reply> {
    let Some(token) = token(headers, params) else {
        return Err(error(400, 104, None, "OAuthException", "An access token is required to request this resource."));
    };
    if state.options.expired_tokens.contains(&token) {
        return Err(expired());
    }
    if !state.options.access_tokens.contains(&token) {
        return Err(error(400, 190, None, "OAuthException", "Invalid OAuth access token - Cannot parse access token"));
    }
    if let Some(secret) = &state.options.app_secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let expected = hex(ring::hmac::sign(&key, token.as_bytes()).as_ref());
        match params.get("appsecret_proof").and_then(Value::as_str) {
            None => {
                return Err(error(
                    400,
                    100,
                    None,
                    "GraphMethodException",
                    "API calls from the server require an appsecret_proof argument",
                ))
            }
            Some(proof) if proof != expected => {
                return Err(error(
                    400,
                    100,
                    None,
                    "GraphMethodException",
                    "Invalid appsecret_proof provided in the API argument",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The custom-audience business-use-case limit of an ad account: one more call, or code 80003.
fn rate_limit(state: &mut MetaState, account: &str) -> Result<(&'static str, String), Reply> {
    let limit = state.options.requests_per_hour;
    let now = Instant::now();
    let window = state.windows.entry(account.to_owned()).or_default();
    while window.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
        window.pop_front();
    }
    let Some(limit) = limit else {
        window.push_back(now);
        return Ok(usage_header(account, 0, 0));
    };
    if window.len() >= limit as usize {
        let oldest = window.front().copied().unwrap_or(now);
        let minutes = HOUR.saturating_sub(now.duration_since(oldest)).as_secs().div_ceil(60).max(1);
        let message = "(#80003) There have been too many calls to this ad-account. Wait a bit and try again. For \
                       more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#custom-audience.";
        let mut reply = error(400, 80003, Some(2446079), "OAuthException", message);
        reply.headers.push(usage_header(account, 100, minutes));
        return Err(reply);
    }
    window.push_back(now);
    let percent = (window.len() as u64 * 100) / u64::from(limit.max(1));
    Ok(usage_header(account, percent, 0))
}

/// Checks parameter names and types against the spec's description of the edge.
fn check_params(
    method: &str,
    endpoint: &str,
    params: &BTreeMap<String, Value>,
    extra: &[&str],
    issues: &mut Vec<String>,
) {
    let Some(api) = custom_audience().api(method, endpoint) else {
        issues.push(format!("{method} {endpoint} is not in CustomAudience.json"));
        return;
    };
    for (name, value) in params {
        if matches!(name.as_str(), "access_token" | "appsecret_proof") || extra.contains(&name.as_str()) {
            continue;
        }
        let Some(param) = api.params.iter().find(|p| &p.name == name) else {
            issues.push(format!("unknown parameter `{name}` for {method} {endpoint}"));
            continue;
        };
        let ok = match param.kind.as_str() {
            "Object" => value.is_object() || value.as_str().is_some_and(|s| s.trim_start().starts_with('{')),
            "string" => value.is_string(),
            _ => true,
        };
        if !ok {
            issues.push(format!("parameter `{name}` must be {}", param.kind));
        }
    }
    for param in api.params.iter().filter(|p| p.required) {
        if !params.contains_key(&param.name) {
            issues.push(format!("{method} {endpoint} requires `{}`", param.name));
        }
    }
}

/// A JSON parameter given as text (form) or as a value (JSON body).
fn json_param(params: &BTreeMap<String, Value>, name: &str) -> Result<Option<Value>, Refusal> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => serde_json::from_str(text).map(Some).map_err(|_| Refusal {
            code: 100,
            subcode: None,
            message: format!("(#100) param {name} must be JSON"),
        }),
        Some(value) => Ok(Some(value.clone())),
    }
}

fn serve(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &BTreeMap<String, Value>,
    issues: &mut Vec<String>,
    served: &mut Served,
) -> Reply {
    let mut state = lock(shared);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some((version, rest)) = parts.split_first().filter(|(v, _)| is_version(v)) else {
        issues.push("the path does not start with an API version".into());
        return error(400, 2635, None, "OAuthException", "(#2635) Calls must name a Graph API version, e.g. /v25.0/");
    };
    if !state.options.api_versions.iter().any(|v| v == version) {
        issues.push(format!("API version {version} is not served"));
        let latest = state.options.api_versions.first().cloned().unwrap_or_default();
        return error(
            400,
            2635,
            None,
            "OAuthException",
            &format!("(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: {latest}."),
        );
    }
    if let Err(reply) = authenticate(&state, headers, params) {
        return reply;
    }
    if !issues.is_empty() {
        return error(400, 100, None, "OAuthException", &format!("(#100) {}", issues.join("; ")));
    }
    let route = route(method, rest);
    let audience_route = matches!(&route, Route::Node(_) | Route::Users(_) | Route::UsersReplace(_));
    let mut usage = None;
    if audience_route {
        if let Some(account) = account_of(&state, path) {
            match rate_limit(&mut state, &account) {
                Ok(header) => usage = Some(header),
                Err(reply) => return reply,
            }
        }
    }
    let mut reply = match route {
        Route::Me => Reply::ok(json!({"id": "100000000000001", "name": "Sluice system user"})),
        Route::Account(id) => account(&state, &id, params, issues),
        Route::AccountAudiences(id) => account_audiences(&state, &id, params, headers, path, issues),
        Route::Node(id) => node(&state, &id, params, issues),
        Route::Users(id) => upload(&mut state, &id, method == Method::DELETE, false, params, issues, served),
        Route::UsersReplace(id) => upload(&mut state, &id, false, true, params, issues, served),
        Route::Unknown => no_object(rest.first().copied().unwrap_or(""), &method.as_str().to_ascii_lowercase()),
    };
    reply.headers.extend(usage);
    reply
}

fn requested_fields<'p>(params: &'p BTreeMap<String, Value>, default: &'p str) -> Vec<&'p str> {
    params
        .get("fields")
        .and_then(Value::as_str)
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect()
}

fn account(state: &MetaState, id: &str, params: &BTreeMap<String, Value>, issues: &mut Vec<String>) -> Reply {
    let Some((_, name)) = state.options.ad_accounts.iter().find(|(account, _)| account == id) else {
        return no_object(&format!("act_{id}"), "get");
    };
    let mut body = Map::new();
    for field in requested_fields(params, "id") {
        let value = match field {
            "id" => json!(format!("act_{id}")),
            "account_id" => json!(id),
            "name" => json!(name),
            other => {
                issues.push(format!("field `{other}` is not modelled on ad accounts"));
                return error(
                    400,
                    100,
                    None,
                    "OAuthException",
                    &format!("(#100) Tried accessing nonexisting field ({other}) on node type (AdAccount)"),
                );
            }
        };
        body.insert(field.to_owned(), value);
    }
    Reply::ok(Value::Object(body))
}

fn audience_fields(state: &MetaState, id: &str, fields: &[&str]) -> Result<Map<String, Value>, String> {
    let audience = state.audiences.get(id).ok_or_else(String::new)?;
    let def = audience.def.as_ref().ok_or_else(String::new)?;
    let size = audience.members.len();
    let mut body = Map::new();
    for field in fields {
        if !custom_audience().has_field(field) {
            return Err((*field).to_owned());
        }
        let value = match *field {
            "id" => json!(def.id),
            "name" => json!(def.name),
            "subtype" => json!(def.subtype),
            "account_id" => json!(def.account_id),
            "description" => json!(""),
            "approximate_count_lower_bound" | "approximate_count_upper_bound" => json!(size),
            "operation_status" => {
                let description = match def.operation_status {
                    200 => "Normal",
                    471 => "This audience has been flagged for integrity reasons",
                    _ => "Updating",
                };
                json!({"code": def.operation_status, "description": description})
            }
            // Fields the fake does not model are left out, as Graph leaves out empty ones.
            _ => continue,
        };
        body.insert((*field).to_owned(), value);
    }
    Ok(body)
}

fn node(state: &MetaState, id: &str, params: &BTreeMap<String, Value>, issues: &mut Vec<String>) -> Reply {
    check_params("GET", "#get", params, &["fields"], issues);
    if !issues.is_empty() {
        return error(400, 100, None, "OAuthException", &format!("(#100) {}", issues.join("; ")));
    }
    match audience_fields(state, id, &requested_fields(params, "id")) {
        Ok(body) => Reply::ok(Value::Object(body)),
        Err(field) if field.is_empty() => no_object(id, "get"),
        Err(field) => {
            issues.push(format!("nonexisting field `{field}`"));
            error(
                400,
                100,
                None,
                "OAuthException",
                &format!("(#100) Tried accessing nonexisting field ({field}) on node type (CustomAudience)"),
            )
        }
    }
}

fn account_audiences(
    state: &MetaState,
    account: &str,
    params: &BTreeMap<String, Value>,
    headers: &HeaderMap,
    path: &str,
    issues: &mut Vec<String>,
) -> Reply {
    if !state.options.ad_accounts.iter().any(|(id, _)| id == account) {
        return no_object(&format!("act_{account}"), "get");
    }
    let limit = match params.get("limit").and_then(Value::as_str).map(str::parse::<usize>) {
        None => 25,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            issues.push("limit must be 1 to 1000".into());
            return error(400, 100, None, "OAuthException", "(#100) limit must be between 1 and 1000");
        }
    };
    let start = match params.get("after").and_then(Value::as_str) {
        None => 0,
        Some(cursor) => match cursor.strip_prefix('c').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => {
                issues.push("unknown paging cursor".into());
                return error(400, 100, None, "OAuthException", "(#100) Invalid cursor");
            }
        },
    };
    let fields = requested_fields(params, "id");
    let ids: Vec<&String> = state
        .audiences
        .iter()
        .filter(|(_, a)| a.def.as_ref().is_some_and(|d| d.account_id == account))
        .map(|(id, _)| id)
        .collect();
    let mut data = Vec::new();
    for id in ids.iter().skip(start).take(limit) {
        match audience_fields(state, id, &fields) {
            Ok(body) => data.push(Value::Object(body)),
            Err(field) => {
                issues.push(format!("nonexisting field `{field}`"));
                return error(
                    400,
                    100,
                    None,
                    "OAuthException",
                    &format!("(#100) Tried accessing nonexisting field ({field}) on node type (CustomAudience)"),
                );
            }
        }
    }
    let end = start + data.len();
    let mut paging = json!({"cursors": {"before": format!("c{start}"), "after": format!("c{end}")}});
    if end < ids.len() {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        paging["next"] = json!(format!("http://{host}{path}?fields={}&limit={limit}&after=c{end}", fields.join(",")));
    }
    Reply::ok(json!({"data": data, "paging": paging}))
}

/// `POST`/`DELETE /{id}/users` and `POST /{id}/usersreplace`.
fn upload(
    state: &mut MetaState,
    id: &str,
    remove: bool,
    replace: bool,
    params: &BTreeMap<String, Value>,
    issues: &mut Vec<String>,
    served: &mut Served,
) -> Reply {
    let (method, endpoint) = match (remove, replace) {
        (_, true) => ("POST", "usersreplace"),
        (true, _) => ("DELETE", "users"),
        _ => ("POST", "users"),
    };
    let Some(def) = state.audiences.get(id).and_then(|a| a.def.clone()) else {
        return no_object(id, &method.to_ascii_lowercase());
    };
    check_params(method, endpoint, params, &[], issues);
    // The guide: session and payload are "Required" on /users too.
    for required in ["payload", "session"] {
        if !params.contains_key(required) && !issues.iter().any(|i| i.contains(&format!("`{required}`"))) {
            issues.push(format!("{method} {endpoint} requires `{required}`"));
        }
    }
    if !issues.is_empty() {
        return error(400, 100, None, "OAuthException", &format!("(#100) {}", issues.join("; ")));
    }
    if def.subtype != "CUSTOM" {
        issues.push(format!("uploads to a {} audience", def.subtype));
        return error(
            400,
            100,
            None,
            "OAuthException",
            &format!(
                "(#100) Users can only be added to or removed from customer list (CUSTOM) audiences; this one is {}",
                def.subtype
            ),
        );
    }
    if def.operation_status == 471 {
        let mut reply = error(400, 100, Some(1713230), "OAuthException", "Invalid parameter");
        if let Some(Value::Object(body)) = reply.body.as_mut().and_then(|b| b.get_mut("error")) {
            body.insert("error_user_title".into(), json!("Audience Upload Blocked"));
            body.insert(
                "error_user_msg".into(),
                json!("Before updating user memberships, you must resolve integrity restrictions on this Data File Custom Audience. Go to Audience Manager to appeal the restrictions or create a new audience with updated data"),
            );
        }
        return reply;
    }
    let checked = json_param(params, "payload").and_then(|payload| {
        let upload = audience::parse_payload(&payload.unwrap_or(Value::Null), state.options.batch_limit)?;
        let session = audience::parse_session(&json_param(params, "session")?.unwrap_or(Value::Null))?;
        Ok((upload, session))
    });
    let (Upload { mut rows, received, invalid, mut samples }, session) = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            issues.push(refused.message.clone());
            return refusal(refused);
        }
    };
    served.rows = received;
    served.invalid_entries = invalid;
    let reject = &state.options.reject_values;
    let before = rows.len();
    rows.retain(|row| match row.values().find(|value| reject.contains(value)) {
        Some(value) => {
            if samples.len() < 100 {
                samples.push(Value::String(value.clone()));
            }
            false
        }
        None => true,
    });
    served.refused_entries = before - rows.len();
    let invalid = invalid + served.refused_entries;
    let Some(audience) = state.audiences.get_mut(id) else { return no_object(id, "post") };
    let received_so_far = match audience.accept_batch(session, received, replace.then_some(rows.as_slice())) {
        Ok(n) => n,
        Err(refused) => {
            issues.push(refused.message.clone());
            return refusal(refused);
        }
    };
    let (mut added, mut removed) = (0, 0);
    if !replace {
        for row in rows {
            if remove {
                removed += audience.remove(&row) as u64;
            } else if audience.add(row) {
                added += 1;
            }
        }
    }
    state.counters.added += added;
    state.counters.removed += removed;
    let mut body = Map::new();
    if replace {
        body.insert("account_id".into(), json!(def.account_id));
    } else {
        body.insert("audience_id".into(), json!(def.id));
    }
    body.insert("session_id".into(), json!(session.id));
    body.insert("num_received".into(), json!(received_so_far));
    body.insert("num_invalid_entries".into(), json!(invalid));
    body.insert("invalid_entry_samples".into(), Value::Array(samples));
    Reply::ok(Value::Object(body))
}
