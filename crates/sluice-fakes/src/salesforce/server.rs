//! The HTTP side of the fake: routing, the token endpoint, faults, session checks and logging.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::records::{self, CollectionOp};
use super::{bulk, lock, AccessToken, Fault, LoggedRequest, Shared, State, API_VERSION};

/// Bodies larger than this are refused; Bulk API 2.0 uploads are at most 150 MB, tests far less.
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct App {
    shared: Shared,
    base_url: String,
}

pub(crate) fn router(shared: Shared, base_url: String) -> Router {
    Router::new().fallback(handle).with_state(App { shared, base_url })
}

/// An answer before it becomes an HTTP response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Why the request body did not match the documented shape (logged as `body_valid: false`).
    pub(crate) issues: Vec<String>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            content_type: "application/json;charset=UTF-8",
            body: body.to_string(),
            headers: Vec::new(),
            issues: Vec::new(),
        }
    }

    pub(crate) fn csv(status: u16, body: String) -> Self {
        Self { status, content_type: "text/csv", body, headers: Vec::new(), issues: Vec::new() }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self { status, content_type: "", body: String::new(), headers: Vec::new(), issues: Vec::new() }
    }

    /// A 400 for a body that does not match the documented shape.
    pub(crate) fn invalid(error_code: &str, issue: String) -> Self {
        let mut reply = Self::json(400, rest_error(error_code, &issue));
        reply.issues.push(issue);
        reply
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if !self.content_type.is_empty() {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Salesforce's REST error body: an array of `{message, errorCode}`.
pub(crate) fn rest_error(error_code: &str, message: &str) -> Value {
    json!([{"message": message, "errorCode": error_code}])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Token,
    Describe(String),
    Collections(CollectionOp),
    DeleteCollection,
    CreateJob,
    UploadJob(String),
    PatchJob(String),
    GetJob(String),
    DeleteJob(String),
    JobResults(String, bulk::ResultKind),
    UnknownData,
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let version = format!("v{API_VERSION}");
    let s = |v: &str| v.to_owned();
    match (method, parts.as_slice()) {
        (&Method::POST, ["services", "oauth2", "token"]) => Route::Token,
        (_, ["services", "data", v, rest @ ..]) if *v == version => match (method, rest) {
            (&Method::GET, ["sobjects", sobject, "describe"]) => Route::Describe(s(sobject)),
            (&Method::POST, ["composite", "sobjects"]) => Route::Collections(CollectionOp::Insert),
            (&Method::PATCH, ["composite", "sobjects"]) => Route::Collections(CollectionOp::Update),
            (&Method::PATCH, ["composite", "sobjects", sobject, field]) => {
                Route::Collections(CollectionOp::Upsert { sobject: s(sobject), field: s(field) })
            }
            (&Method::DELETE, ["composite", "sobjects"]) => Route::DeleteCollection,
            (&Method::POST, ["jobs", "ingest"]) => Route::CreateJob,
            (&Method::PUT, ["jobs", "ingest", id, "batches"]) => Route::UploadJob(s(id)),
            (&Method::PATCH, ["jobs", "ingest", id]) => Route::PatchJob(s(id)),
            (&Method::GET, ["jobs", "ingest", id]) => Route::GetJob(s(id)),
            (&Method::DELETE, ["jobs", "ingest", id]) => Route::DeleteJob(s(id)),
            (&Method::GET, ["jobs", "ingest", id, "successfulResults"]) => {
                Route::JobResults(s(id), bulk::ResultKind::Successful)
            }
            (&Method::GET, ["jobs", "ingest", id, "failedResults"]) => {
                Route::JobResults(s(id), bulk::ResultKind::Failed)
            }
            _ => Route::UnknownData,
        },
        (_, ["services", "data", ..]) => Route::UnknownData,
        _ => Route::Unknown,
    }
}

async fn handle(AxumState(app): AxumState<App>, request: Request) -> Response {
    // Served in its own task so a client that times out and disconnects does not cancel the work,
    // just as Salesforce finishes a write whose caller has given up.
    match tokio::spawn(process(app, request)).await {
        Ok(response) => response,
        Err(_) => Reply::json(500, rest_error("UNKNOWN_EXCEPTION", "internal error")).into_response(),
    }
}

async fn process(app: App, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let route = route(&method, &path);

    let reply = if route == Route::Token {
        let mut state = lock(&app.shared);
        state.token_requests += 1;
        token(&mut state, &headers, &bytes, &app.base_url)
    } else if matches!(route, Route::Unknown) {
        Reply::json(404, rest_error("NOT_FOUND", "The requested resource does not exist"))
    } else {
        let fault = lock(&app.shared).faults.pop_front();
        match fault {
            Some(Fault::Status(status)) => fault_status(status),
            Some(Fault::RequestLimit) => {
                Reply::json(403, rest_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
            }
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                serve(&app, &route, &headers, &query, &bytes)
            }
            None => serve(&app, &route, &headers, &query, &bytes),
        }
    };

    let mut state = lock(&app.shared);
    state.requests.push(LoggedRequest {
        method: method.to_string(),
        path,
        status: reply.status,
        body_valid: reply.issues.is_empty(),
        validation_errors: reply.issues.clone(),
    });
    drop(state);
    reply.into_response()
}

fn fault_status(status: u16) -> Reply {
    match status {
        500 => Reply::json(
            500,
            rest_error(
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-123456789)",
            ),
        ),
        503 => Reply::json(503, rest_error("SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again later")),
        // Gateways in front of Salesforce answer other 5xx with an HTML page.
        502 | 504 => Reply { status, content_type: "text/html", ..Reply::empty(status) },
        _ => Reply::json(status, rest_error("UNKNOWN_EXCEPTION", "injected fault")),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    // Salesforce also accepts the legacy `OAuth <token>` scheme.
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")).then_some(token.trim())
}

/// Checks the session of a data request; an expired or unknown token answers 401 `INVALID_SESSION_ID`.
fn authenticate(state: &mut State, headers: &HeaderMap) -> Result<(), Reply> {
    let invalid = || {
        let mut reply = Reply::json(401, rest_error("INVALID_SESSION_ID", "Session expired or invalid"));
        reply.headers.push(("www-authenticate", "Token".to_owned()));
        reply
    };
    let expire_after = state.options.expire_token_after;
    let Some(token) = bearer(headers).and_then(|t| state.tokens.get_mut(t)) else { return Err(invalid()) };
    if !token.expired {
        token.uses += 1;
        token.expired = expire_after.is_some_and(|n| token.uses > n);
    }
    if token.expired {
        Err(invalid())
    } else {
        Ok(())
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

/// The JSON body of a request, or the 400/415 Salesforce answers.
fn json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, Reply> {
    let ct = content_type(headers);
    if !ct.starts_with("application/json") {
        let message = format!("Content-Type header specified in HTTP request is not supported: {ct}");
        let mut reply = Reply::json(415, rest_error("UNSUPPORTED_MEDIA_TYPE", &message));
        reply.issues.push(message);
        return Err(reply);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Reply::invalid(
            "JSON_PARSER_ERROR",
            format!("Unexpected character or end of input at [line:{}, column:{}]: {e}", e.line(), e.column()),
        )
    })
}

/// Everything after faults: session, then the endpoint.
fn serve(app: &App, route: &Route, headers: &HeaderMap, query: &str, bytes: &[u8]) -> Reply {
    let mut state = lock(&app.shared);
    if let Err(reply) = authenticate(&mut state, headers) {
        return reply;
    }
    let with_json = |f: &mut dyn FnMut(&Value) -> Reply| match json_body(headers, bytes) {
        Ok(body) => f(&body),
        Err(reply) => reply,
    };
    match route {
        Route::Describe(sobject) => records::describe(&state, sobject, &app.base_url),
        Route::Collections(op) => with_json(&mut |body| records::collections(&mut state, op, body)),
        Route::DeleteCollection => records::delete_collection(&mut state, query),
        Route::CreateJob => with_json(&mut |body| bulk::create(&mut state, body)),
        Route::UploadJob(id) => bulk::upload(&mut state, id, &content_type(headers), bytes),
        Route::PatchJob(id) => with_json(&mut |body| bulk::patch(&mut state, id, body)),
        Route::GetJob(id) => bulk::get(&mut state, id),
        Route::DeleteJob(id) => bulk::delete_job(&mut state, id),
        Route::JobResults(id, kind) => bulk::results(&state, id, *kind),
        _ => records::not_found(),
    }
}

// ---------------------------------------------------------------- OAuth

fn oauth_error(error: &str, description: &str) -> Reply {
    Reply::json(400, json!({"error": error, "error_description": description}))
}

/// `POST /services/oauth2/token`: refresh-token and JWT bearer flows.
fn token(state: &mut State, headers: &HeaderMap, bytes: &[u8], base_url: &str) -> Reply {
    let ct = content_type(headers);
    if !ct.starts_with("application/x-www-form-urlencoded") {
        let mut reply = oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded");
        reply.issues.push(format!("token request with content type '{ct}'"));
        return reply;
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
    let app = state.options.oauth.clone();
    let scope = match get("grant_type") {
        "refresh_token" => {
            if get("client_id") != app.client_id {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if get("client_secret") != app.client_secret {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            if get("refresh_token") != app.refresh_token {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
            "api refresh_token"
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            if let Err(reply) = check_jwt(get("assertion"), &app, base_url) {
                return reply;
            }
            "api"
        }
        "" => {
            let mut reply = oauth_error("unsupported_grant_type", "grant type not supported");
            reply.issues.push("missing grant_type".to_owned());
            return reply;
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    };
    let n = state.next_token;
    state.next_token += 1;
    let access_token = format!("00DDn0000000FAKE!AQ{n:04}.fake-access-token-{n}");
    state.tokens.insert(access_token.clone(), AccessToken { uses: 0, expired: false });
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    Reply::json(
        200,
        json!({
            "access_token": access_token,
            "signature": "ZmFrZS1zaWduYXR1cmUtb2YtdGhlLWlkLWFuZC1pc3N1ZWRfYXQ=",
            "scope": scope,
            "instance_url": base_url,
            "id": format!("{base_url}/id/00DDn0000000FAKEAA/005Dn0000000FAKEAA"),
            "token_type": "Bearer",
            "issued_at": issued_at,
        }),
    )
}

/// Checks a JWT bearer assertion's header and claims.
///
/// The RS256 signature is NOT verified: the fake has no access to the customer's certificate (uploaded
/// to the connected app in a real org), so any signature is accepted as long as the JWT is well formed.
fn check_jwt(assertion: &str, app: &super::ConnectedApp, base_url: &str) -> Result<(), Reply> {
    let invalid = || oauth_error("invalid_grant", "invalid assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else { return Err(invalid()) };
    if signature.is_empty() {
        return Err(invalid());
    }
    let decode = |part: &str| base64url_decode(part).and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let (Some(header), Some(claims)) = (decode(header), decode(claims)) else { return Err(invalid()) };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(invalid());
    }
    let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    if claim("iss") != app.client_id {
        return Err(oauth_error("invalid_client_id", "client identifier invalid"));
    }
    let aud = claim("aud").trim_end_matches('/');
    if aud != base_url && aud != "https://login.salesforce.com" && aud != "https://test.salesforce.com" {
        return Err(oauth_error("invalid_grant", "audience is invalid"));
    }
    if claim("sub") != app.username {
        return Err(oauth_error("invalid_grant", "user hasn't approved this consumer"));
    }
    // The docs' example writes `exp` as a string; numbers are accepted too.
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    };
    let Some(exp) = exp else { return Err(invalid()) };
    if exp <= chrono::Utc::now().timestamp() as f64 {
        // Salesforce answers an expired assertion with this (undocumented) description.
        return Err(oauth_error("invalid_grant", "expired authorization code"));
    }
    Ok(())
}

/// Decodes unpadded (or padded) base64url.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
