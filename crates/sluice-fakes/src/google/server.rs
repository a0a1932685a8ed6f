//! The HTTP side of the Data Manager fake: token endpoint, auth, quotas, faults, request validation
//! against the documented shapes, and membership changes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{
    lock, AccessToken, DataManagerState, Fault, LoggedRequest, Shared, StoredIdentifier, StoredMember, UserListKind,
    DATAMANAGER_SCOPE,
};

/// Bodies larger than this are refused (10,000 members with ten identifiers each stay far below).
const MAX_BODY: usize = 64 * 1024 * 1024;

const SERVICE: &str = "datamanager.googleapis.com";

/// `ProductAccount.AccountType` (<https://developers.google.com/data-manager/api/reference/rest/v1/Destination>).
const ACCOUNT_TYPES: [&str; 7] = [
    "GOOGLE_ADS",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "DATA_PARTNER",
    "GOOGLE_ANALYTICS_PROPERTY",
    "GOOGLE_AD_MANAGER_AUDIENCE_LINK",
    "FLOODLIGHT_CONFIG",
];

/// The deprecated `ProductAccount.product` enum.
const PRODUCTS: [&str; 4] = ["GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER"];

/// `ConsentStatus` (<https://developers.google.com/data-manager/api/reference/rest/v1/Consent>).
const CONSENT_STATUSES: [&str; 3] = ["CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"];

/// `TermsOfServiceStatus`.
const TERMS_STATUSES: [&str; 3] = ["TERMS_OF_SERVICE_STATUS_UNSPECIFIED", "ACCEPTED", "REJECTED"];

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self { status, body, headers: Vec::new() }
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body.to_string()));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// A `google.rpc.Status` error body as Google's REST surface sends it.
fn status_error(code: u16, status: &str, message: &str, details: Vec<Value>) -> Reply {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    Reply::json(code, json!({ "error": error }))
}

fn error_info(reason: &str, domain: &str, metadata: Value) -> Value {
    json!({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain, "metadata": metadata })
}

/// One entry of `google.rpc.BadRequest.fieldViolations`.
#[derive(Debug, Clone)]
struct Violation {
    field: String,
    reason: Option<&'static str>,
    description: String,
}

impl Violation {
    fn new(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Self {
        Self { field: field.into(), reason: Some(reason), description: description.into() }
    }

    /// A body the JSON transcoder cannot map onto the request message.
    fn transcoding(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), reason: None, description: description.into() }
    }

    fn to_json(&self) -> Value {
        let mut value = json!({ "field": self.field, "description": self.description });
        if let Some(reason) = self.reason {
            value["reason"] = json!(reason);
        }
        value
    }
}

/// 400 for violations: transcoding errors as Google's JSON transcoder reports them, the rest as the
/// quickstart's examples show (`ErrorInfo` `INVALID_ARGUMENT` plus `BadRequest`).
fn bad_request(violations: &[Violation]) -> Reply {
    let field_violations: Vec<Value> = violations.iter().map(Violation::to_json).collect();
    let bad_request =
        json!({ "@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": field_violations });
    if let Some(first) = violations.iter().find(|v| v.reason.is_none()) {
        return status_error(400, "INVALID_ARGUMENT", &first.description, vec![bad_request]);
    }
    let reason = match violations {
        [only] => only.reason.unwrap_or("INVALID_ARGUMENT"),
        _ => "INVALID_ARGUMENT",
    };
    let reason =
        if matches!(reason, "TERMS_AND_CONDITIONS_NOT_SIGNED" | "INVALID_USER_LIST_ID" | "INVALID_USER_LIST_TYPE") {
            reason
        } else {
            "INVALID_ARGUMENT"
        };
    status_error(
        400,
        "INVALID_ARGUMENT",
        "There was a problem with the request.",
        vec![error_info(reason, SERVICE, json!({})), bad_request],
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Ingest,
    Remove,
    Token,
    Unknown,
}

impl Route {
    fn method_name(self) -> &'static str {
        match self {
            Route::Ingest => "google.ads.datamanager.v1.IngestionService.IngestAudienceMembers",
            Route::Remove => "google.ads.datamanager.v1.IngestionService.RemoveAudienceMembers",
            _ => "",
        }
    }
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/v1/audienceMembers:ingest") => Route::Ingest,
        (&Method::POST, "/v1/audienceMembers:remove") => Route::Remove,
        (&Method::POST, "/token") => Route::Token,
        _ => Route::Unknown,
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    // Served in its own task so a client that gives up does not cancel work already started.
    match tokio::spawn(process(shared, request)).await {
        Ok(response) => response,
        Err(_) => status_error(500, "INTERNAL", "Internal error encountered.", Vec::new()).into_response(),
    }
}

async fn process(shared: Shared, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let bytes = to_bytes(request.into_body(), MAX_BODY).await.unwrap_or_default();
    let route = route(&method, &path);
    if route == Route::Token {
        let mut state = lock(&shared);
        state.counters.token_requests += 1;
        return token(&mut state, &headers, &bytes).into_response();
    }
    if route == Route::Unknown {
        // Google's front end answers unknown paths with an HTML 404; the fake keeps JSON.
        return status_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL {path} was not found on this server."),
            Vec::new(),
        )
        .into_response();
    }

    let fault = {
        let mut state = lock(&shared);
        state.counters.requests += 1;
        state.faults.pop_front()
    };
    let outcome = match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, route, &headers, &bytes)
        }
        Some(Fault::ExpireTokens) => {
            for token in lock(&shared).tokens.values_mut() {
                token.expired = true;
            }
            serve(&shared, route, &headers, &bytes)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            Served { reply: quota_exceeded("per minute", retry_after_secs), members: 0, issues: Vec::new() }
        }
        Some(Fault::Status(status)) => Served { reply: server_error(status), members: 0, issues: Vec::new() },
        None => serve(&shared, route, &headers, &bytes),
    };

    let mut state = lock(&shared);
    match outcome.reply.status {
        401 => state.counters.unauthorized += 1,
        429 => state.counters.rate_limited += 1,
        _ => {}
    }
    state.requests.push(LoggedRequest {
        method: method.to_string(),
        path,
        status: outcome.reply.status,
        members: outcome.members,
        body_valid: outcome.issues.is_empty(),
        validation_errors: outcome.issues,
    });
    drop(state);
    outcome.reply.into_response()
}

fn server_error(status: u16) -> Reply {
    match status {
        503 => status_error(503, "UNAVAILABLE", "The service is currently unavailable.", Vec::new()),
        504 => status_error(504, "DEADLINE_EXCEEDED", "The request took too long to respond.", Vec::new()),
        500 => status_error(500, "INTERNAL", "Internal error encountered.", Vec::new()),
        other => status_error(other, "UNKNOWN", "Unknown error.", Vec::new()),
    }
}

fn quota_exceeded(window: &str, retry_after_secs: Option<u64>) -> Reply {
    let limit = format!("IngestionRequestsPer{}PerProject", if window == "per day" { "Day" } else { "Minute" });
    let mut reply = status_error(
        429,
        "RESOURCE_EXHAUSTED",
        &format!(
            "Quota exceeded for quota metric 'Ingestion requests' and limit 'Ingestion requests {window} per project' \
             of service '{SERVICE}' for consumer 'project_number:123456789012'."
        ),
        vec![error_info(
            "RATE_LIMIT_EXCEEDED",
            "googleapis.com",
            json!({
                "quota_limit": limit,
                "quota_metric": "datamanager.googleapis.com/ingestion_requests",
                "service": SERVICE,
                "consumer": "projects/123456789012",
            }),
        )],
    );
    if let Some(seconds) = retry_after_secs {
        reply.headers.push(("retry-after", seconds.to_string()));
    }
    reply
}

struct Served {
    reply: Reply,
    members: usize,
    issues: Vec<String>,
}

impl Served {
    fn answer(reply: Reply) -> Self {
        Self { reply, members: 0, issues: Vec::new() }
    }
}

/// Auth, quotas, then the body.
fn serve(shared: &Shared, route: Route, headers: &HeaderMap, bytes: &[u8]) -> Served {
    let mut state = lock(shared);
    if let Err(reply) = authenticate(&mut state, headers, route) {
        return Served::answer(reply);
    }
    if let Err(reply) = spend_quota(&mut state) {
        return Served::answer(reply);
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            let violation = Violation::transcoding("", format!("Invalid JSON payload received. {e}"));
            return Served { reply: bad_request(&[violation]), members: 0, issues: vec![e.to_string()] };
        }
    };
    let members = value.get("audienceMembers").and_then(Value::as_array).map_or(0, Vec::len);
    let parsed = match parse_request(route, &value, state.options.max_members) {
        Ok(parsed) => parsed,
        Err(violations) => {
            let issues = violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
            return Served { reply: bad_request(&violations), members, issues };
        }
    };
    Served { reply: apply(&mut state, route, parsed), members, issues: Vec::new() }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn authenticate(state: &mut DataManagerState, headers: &HeaderMap, route: Route) -> Result<(), Reply> {
    let metadata = json!({ "service": SERVICE, "method": route.method_name() });
    let unauthenticated = |reason: &str, message: &str| {
        status_error(401, "UNAUTHENTICATED", message, vec![error_info(reason, "googleapis.com", metadata.clone())])
    };
    let Some(token) = bearer(headers) else {
        return Err(unauthenticated(
            "CREDENTIALS_MISSING",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or \
             other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        ));
    };
    let expire_after = state.options.expire_token_after;
    let invalid = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
                   other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let Some(entry) = state.tokens.get_mut(token) else {
        return Err(unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", invalid));
    };
    if !entry.expired {
        entry.uses += 1;
        if expire_after.is_some_and(|n| entry.uses > n) {
            entry.expired = true;
        }
    }
    if entry.expired {
        return Err(unauthenticated("ACCESS_TOKEN_EXPIRED", invalid));
    }
    if !entry.scope.split_whitespace().any(|s| s == DATAMANAGER_SCOPE) {
        return Err(status_error(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
            vec![error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)],
        ));
    }
    Ok(())
}

fn spend_quota(state: &mut DataManagerState) -> Result<(), Reply> {
    let Some(limit) = state.options.rate_limit.clone() else { return Ok(()) };
    let now = Instant::now();
    while state.window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
        state.window.pop_front();
    }
    if state.daily_used >= limit.per_day {
        return Err(quota_exceeded("per day", limit.retry_after_secs));
    }
    if state.window.len() >= limit.per_minute as usize {
        return Err(quota_exceeded("per minute", limit.retry_after_secs));
    }
    state.window.push_back(now);
    state.daily_used += 1;
    Ok(())
}

/// `POST /token` with `grant_type=refresh_token`
/// (<https://developers.google.com/identity/protocols/oauth2/web-server#offline>).
fn token(state: &mut DataManagerState, headers: &HeaderMap, bytes: &[u8]) -> Reply {
    let error = |status: u16, error: &str, description: &str| {
        Reply::json(status, json!({ "error": error, "error_description": description }))
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return error(400, "invalid_request", "Invalid content type");
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
    let app = state.options.oauth.clone();
    if get("grant_type") != "refresh_token" {
        return error(400, "unsupported_grant_type", "Invalid grant_type: ");
    }
    if get("client_id") != app.client_id || get("client_secret") != app.client_secret {
        return error(401, "invalid_client", "The OAuth client was not found.");
    }
    if get("refresh_token") != app.refresh_token {
        return error(400, "invalid_grant", "Token has been expired or revoked.");
    }
    let access_token = format!("ya29.fake-access-token-{}", state.next_token);
    state.next_token += 1;
    state.tokens.insert(access_token.clone(), AccessToken { scope: app.scope.clone(), uses: 0, expired: false });
    state.issued.push(access_token.clone());
    state.counters.token_refreshes += 1;
    Reply::json(
        200,
        json!({ "access_token": access_token, "expires_in": app.expires_in, "scope": app.scope, "token_type": "Bearer" }),
    )
}

/// A `Destination` as the fake uses it.
#[derive(Debug, Clone)]
struct Destination {
    reference: Option<String>,
    account_type: String,
    account_id: String,
    list: String,
}

#[derive(Debug, Clone)]
enum MemberData {
    User(Vec<StoredIdentifier>),
    Mobile(Vec<String>),
    UserId(String),
}

impl MemberData {
    fn list_kind(&self) -> UserListKind {
        match self {
            MemberData::User(_) => UserListKind::ContactInfo,
            MemberData::Mobile(_) => UserListKind::MobileIds,
            MemberData::UserId(_) => UserListKind::UserIds,
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    references: Vec<String>,
    data: MemberData,
}

#[derive(Debug)]
struct Parsed {
    destinations: Vec<Destination>,
    members: Vec<Member>,
    validate_only: bool,
}

/// Checks an object's field names the way the JSON transcoder does; returns the object.
fn object<'v>(
    value: &'v Value,
    path: &str,
    allowed: &[&str],
    violations: &mut Vec<Violation>,
) -> Option<&'v Map<String, Value>> {
    let Some(map) = value.as_object() else {
        violations.push(Violation::transcoding(
            path,
            format!("Invalid value at '{path}': Starting an object on a scalar field"),
        ));
        return None;
    };
    for name in map.keys() {
        if !allowed.contains(&name.as_str()) {
            violations.push(Violation::transcoding(
                path,
                format!("Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."),
            ));
        }
    }
    Some(map)
}

fn string<'v>(map: &'v Map<String, Value>, key: &str, path: &str, violations: &mut Vec<Violation>) -> Option<&'v str> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            violations.push(Violation::transcoding(path, format!("Invalid value at '{path}' (TYPE_STRING), {other}")));
            None
        }
    }
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn enum_value(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    allowed: &[&str],
    violations: &mut Vec<Violation>,
) -> Option<String> {
    let field = format!("{path}.{}", snake(key));
    let value = string(map, key, &field, violations)?;
    if allowed.contains(&value) {
        Some(value.to_string())
    } else {
        violations.push(Violation::transcoding(&field, format!("Invalid value at '{field}' ({}), \"{value}\"", key)));
        None
    }
}

fn product_account(value: &Value, path: &str, violations: &mut Vec<Violation>) -> Option<(String, String)> {
    let map = object(value, path, &["accountType", "product", "accountId"], violations)?;
    let account_type = enum_value(map, "accountType", path, &ACCOUNT_TYPES, violations);
    let product = enum_value(map, "product", path, &PRODUCTS, violations);
    let account_id = string(map, "accountId", &format!("{path}.account_id"), violations);
    let account_type = match (account_type, product) {
        (Some(a), Some(p)) if a != p => {
            violations.push(Violation::new(
                format!("{path}.account_type"),
                "INVALID_ARGUMENT",
                "account_type and product must match when both are set",
            ));
            return None;
        }
        (Some(a), _) => a,
        (None, Some(p)) => p,
        (None, None) => {
            violations.push(Violation::new(
                format!("{path}.account_type"),
                "REQUIRED_FIELD_MISSING",
                "Either account_type or the deprecated product is required.",
            ));
            return None;
        }
    };
    match account_id {
        Some(id) if !id.trim().is_empty() => Some((account_type, id.to_string())),
        _ => {
            violations.push(Violation::new(
                format!("{path}.account_id"),
                "REQUIRED_FIELD_MISSING",
                "Required field is missing.",
            ));
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

/// A SHA-256 as Google wants it, normalised to lower-case hex for storage.
fn sha256(value: &str, encoding: Encoding, what: &str, path: &str, violations: &mut Vec<Violation>) -> Option<String> {
    match encoding {
        Encoding::Hex => {
            if !value.chars().all(|c| c.is_ascii_hexdigit()) || value.len() % 2 == 1 {
                violations.push(Violation::new(
                    format!("{path}.user_data.user_identifiers"),
                    "INVALID_HEX_ENCODING",
                    format!("{what} is not hex encoded."),
                ));
                return None;
            }
            if value.chars().any(|c| c.is_ascii_uppercase()) {
                violations.push(Violation::new(
                    format!("{path}.user_data.user_identifiers"),
                    "INVALID_HEX_ENCODING",
                    format!("{what} is not lower-case hex (the fake requires the form of Google's examples)."),
                ));
                return None;
            }
            if value.len() != 64 {
                violations.push(Violation::new(
                    path,
                    "INVALID_SHA256_FORMAT",
                    format!("{what} is not a SHA-256 hash."),
                ));
                return None;
            }
            Some(value.to_string())
        }
        Encoding::Base64 => {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value) else {
                violations.push(Violation::new(
                    format!("{path}.user_data.user_identifiers"),
                    "INVALID_BASE64_ENCODING",
                    format!("{what} is not base64 encoded."),
                ));
                return None;
            };
            if bytes.len() != 32 {
                violations.push(Violation::new(
                    path,
                    "INVALID_SHA256_FORMAT",
                    format!("{what} is not a SHA-256 hash."),
                ));
                return None;
            }
            Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }
    }
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn consent(value: &Value, path: &str, violations: &mut Vec<Violation>) {
    if let Some(map) = object(value, path, &["adUserData", "adPersonalization"], violations) {
        enum_value(map, "adUserData", path, &CONSENT_STATUSES, violations);
        enum_value(map, "adPersonalization", path, &CONSENT_STATUSES, violations);
    }
}

fn user_data(
    value: &Value,
    path: &str,
    encoding: Option<Encoding>,
    violations: &mut Vec<Violation>,
) -> Option<Vec<StoredIdentifier>> {
    let map = object(value, &format!("{path}.user_data"), &["userIdentifiers"], violations)?;
    let Some(list) = map.get("userIdentifiers").and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        violations.push(Violation::new(
            format!("{path}.user_data.user_identifiers"),
            "REQUIRED_FIELD_MISSING",
            "At least one user identifier is required.",
        ));
        return None;
    };
    if list.len() > 10 {
        violations.push(Violation::new(
            format!("{path}.user_data.user_identifiers"),
            "TOO_MANY_USER_IDENTIFIERS",
            "Maximum number of user identifiers allowed per audience member is 10.",
        ));
        return None;
    }
    let Some(encoding) = encoding else {
        // Reported once for the request by the caller.
        return None;
    };
    let before = violations.len();
    let mut identifiers = Vec::new();
    for (index, item) in list.iter().enumerate() {
        let item_path = format!("{path}.user_data.user_identifiers[{index}]");
        let Some(map) = object(item, &item_path, &["emailAddress", "phoneNumber", "address"], violations) else {
            continue;
        };
        if map.len() != 1 {
            violations.push(Violation::new(
                &item_path,
                "INVALID_ARGUMENT",
                "Exactly one of email_address, phone_number or address must be set.",
            ));
            continue;
        }
        if let Some(email) = string(map, "emailAddress", &format!("{item_path}.email_address"), violations) {
            if let Some(hash) = sha256(email, encoding, "Email", path, violations) {
                identifiers.push(StoredIdentifier::Email(hash));
            }
        } else if let Some(phone) = string(map, "phoneNumber", &format!("{item_path}.phone_number"), violations) {
            if let Some(hash) = sha256(phone, encoding, "Phone number", path, violations) {
                identifiers.push(StoredIdentifier::Phone(hash));
            }
        } else if let Some(address) = map.get("address") {
            let address_path = format!("{item_path}.address");
            let Some(fields) =
                object(address, &address_path, &["givenName", "familyName", "regionCode", "postalCode"], violations)
            else {
                continue;
            };
            let get = |key: &str, violations: &mut Vec<Violation>| {
                let found = string(fields, key, &format!("{address_path}.{}", snake(key)), violations);
                if found.is_none_or(|s| s.is_empty()) {
                    violations.push(Violation::new(
                        format!("{address_path}.{}", snake(key)),
                        "REQUIRED_FIELD_MISSING",
                        "Required field is missing.",
                    ));
                }
                found.filter(|s| !s.is_empty()).map(str::to_string)
            };
            let given = get("givenName", violations).and_then(|g| sha256(&g, encoding, "Given name", path, violations));
            let family =
                get("familyName", violations).and_then(|f| sha256(&f, encoding, "Family name", path, violations));
            let region = get("regionCode", violations).filter(|r| {
                let ok = r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase());
                if !ok {
                    violations.push(Violation::new(
                        format!("{address_path}.region_code"),
                        "INVALID_COUNTRY_CODE",
                        "Country code is not valid.",
                    ));
                }
                ok
            });
            let postal = get("postalCode", violations).filter(|p| {
                // Postal codes are sent unhashed; a hash or padding means the client got it wrong.
                let hashed = p.len() == 64 && p.chars().all(|c| c.is_ascii_hexdigit());
                let ok = !hashed && p.trim() == p && p.len() <= 32;
                if !ok {
                    violations.push(Violation::new(
                        format!("{address_path}.postal_code"),
                        "INVALID_POSTAL_CODE",
                        "Postal code is not valid.",
                    ));
                }
                ok
            });
            if let (Some(given_name), Some(family_name), Some(region_code), Some(postal_code)) =
                (given, family, region, postal)
            {
                identifiers.push(StoredIdentifier::Address { given_name, family_name, region_code, postal_code });
            }
        }
    }
    (violations.len() == before).then_some(identifiers)
}

fn mobile_data(value: &Value, path: &str, violations: &mut Vec<Violation>) -> Option<Vec<String>> {
    let map = object(value, &format!("{path}.mobile_data"), &["mobileIds"], violations)?;
    let ids: Vec<&Value> =
        map.get("mobileIds").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    if ids.is_empty() || ids.len() > 10 {
        violations.push(Violation::new(
            format!("{path}.mobile_data.mobile_ids"),
            if ids.is_empty() { "REQUIRED_FIELD_MISSING" } else { "TOO_MANY_USER_IDENTIFIERS" },
            "Between 1 and 10 mobile ids are required.",
        ));
        return None;
    }
    let mut out = Vec::new();
    for id in ids {
        // Customer Match mobile lists take Android advertising ids and IDFAs, both UUIDs.
        match id.as_str() {
            Some(text) if is_uuid(text) => out.push(text.to_string()),
            _ => {
                violations.push(Violation::new(
                    format!("{path}.mobile_data.mobile_ids"),
                    "INVALID_MOBILE_ID_FORMAT",
                    "Mobile ID format is not valid.",
                ));
                return None;
            }
        }
    }
    Some(out)
}

fn user_id_data(value: &Value, path: &str, violations: &mut Vec<Violation>) -> Option<String> {
    let field = format!("{path}.user_id_data");
    let map = object(value, &field, &["userId"], violations)?;
    match string(map, "userId", &format!("{field}.user_id"), violations) {
        Some(id) if !id.trim().is_empty() => Some(id.to_string()),
        _ => {
            violations.push(Violation::new(
                format!("{field}.user_id"),
                "REQUIRED_FIELD_MISSING",
                "Required field is missing.",
            ));
            None
        }
    }
}

fn parse_request(route: Route, value: &Value, max_members: usize) -> Result<Parsed, Vec<Violation>> {
    let mut violations = Vec::new();
    let allowed: &[&str] = match route {
        Route::Ingest => &[
            "destinations",
            "audienceMembers",
            "consent",
            "validateOnly",
            "encoding",
            "encryptionInfo",
            "termsOfService",
        ],
        _ => &["destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"],
    };
    let Some(map) = object(value, "", allowed, &mut violations) else { return Err(violations) };
    if map.contains_key("encryptionInfo") {
        violations.push(Violation::new(
            "encryption_info",
            "INVALID_ARGUMENT",
            "The fake does not model encrypted uploads.",
        ));
    }
    let validate_only = match map.get("validateOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            violations.push(Violation::transcoding(
                "validate_only",
                format!("Invalid value at 'validate_only' (TYPE_BOOL), {other}"),
            ));
            false
        }
    };
    let encoding =
        match enum_value(map, "encoding", "", &["ENCODING_UNSPECIFIED", "HEX", "BASE64"], &mut violations).as_deref() {
            Some("HEX") => Some(Encoding::Hex),
            Some("BASE64") => Some(Encoding::Base64),
            _ => None,
        };
    if let Some(consent_value) = map.get("consent") {
        consent(consent_value, "consent", &mut violations);
    }

    // Destinations.
    let mut destinations = Vec::new();
    match map.get("destinations").and_then(Value::as_array) {
        None => violations.push(Violation::new("destinations", "REQUIRED_FIELD_MISSING", "Required field is missing.")),
        Some(list) if list.is_empty() => {
            violations.push(Violation::new("destinations", "REQUIRED_FIELD_MISSING", "Required field is missing."))
        }
        Some(list) if list.len() > 10 => violations.push(Violation::new(
            "destinations",
            "TOO_MANY_DESTINATIONS",
            "Maximum number of destinations allowed per request is 10.",
        )),
        Some(list) => {
            for (index, item) in list.iter().enumerate() {
                let path = format!("destinations[{index}]");
                let Some(fields) = object(
                    item,
                    &path,
                    &["reference", "loginAccount", "linkedAccount", "operatingAccount", "productDestinationId"],
                    &mut violations,
                ) else {
                    continue;
                };
                for optional in ["loginAccount", "linkedAccount"] {
                    if let Some(account) = fields.get(optional) {
                        product_account(account, &format!("{path}.{}", snake(optional)), &mut violations);
                    }
                }
                let operating = match fields.get("operatingAccount") {
                    Some(account) => product_account(account, &format!("{path}.operating_account"), &mut violations),
                    None => {
                        violations.push(Violation::new(
                            format!("{path}.operating_account"),
                            "REQUIRED_FIELD_MISSING",
                            "Required field is missing.",
                        ));
                        None
                    }
                };
                let list_id =
                    string(fields, "productDestinationId", &format!("{path}.product_destination_id"), &mut violations)
                        .filter(|s| !s.trim().is_empty());
                if list_id.is_none() {
                    violations.push(Violation::new(
                        format!("{path}.product_destination_id"),
                        "REQUIRED_FIELD_MISSING",
                        "Required field is missing.",
                    ));
                }
                let reference =
                    string(fields, "reference", &format!("{path}.reference"), &mut violations).map(String::from);
                if let (Some((account_type, account_id)), Some(list)) = (operating, list_id) {
                    destinations.push(Destination { reference, account_type, account_id, list: list.to_string() });
                }
            }
        }
    }

    // Members.
    let mut members = Vec::new();
    match map.get("audienceMembers").and_then(Value::as_array) {
        None => {
            violations.push(Violation::new("audience_members", "REQUIRED_FIELD_MISSING", "Required field is missing."))
        }
        Some(list) if list.is_empty() => {
            violations.push(Violation::new("audience_members", "REQUIRED_FIELD_MISSING", "Required field is missing."))
        }
        Some(list) if list.len() > max_members => violations.push(Violation::new(
            "audience_members",
            "TOO_MANY_AUDIENCE_MEMBERS",
            format!("Maximum number of audience members allowed per request is {max_members}."),
        )),
        Some(list) => {
            let mut needs_encoding = false;
            for (index, item) in list.iter().enumerate() {
                // The field path Google reports for members, as in the quickstart's error examples.
                let path = format!("audience_members.audience_members[{index}]");
                let member_fields: &[&str] = match route {
                    Route::Ingest => &[
                        "destinationReferences",
                        "consent",
                        "userData",
                        "mobileData",
                        "pairData",
                        "userIdData",
                        "ppidData",
                        "compositeData",
                    ],
                    _ => &[
                        "destinationReferences",
                        "userData",
                        "mobileData",
                        "pairData",
                        "userIdData",
                        "ppidData",
                        "compositeData",
                    ],
                };
                let Some(fields) = object(item, &path, member_fields, &mut violations) else { continue };
                let kinds: Vec<&str> =
                    ["userData", "mobileData", "pairData", "userIdData", "ppidData", "compositeData"]
                        .into_iter()
                        .filter(|k| fields.contains_key(*k))
                        .collect();
                if kinds.len() != 1 {
                    violations.push(Violation::new(
                        &path,
                        "INVALID_AUDIENCE_MEMBER",
                        "Exactly one of user_data, mobile_data, pair_data, user_id_data, ppid_data or composite_data must be set.",
                    ));
                    continue;
                }
                if let Some(consent_value) = fields.get("consent") {
                    consent(consent_value, &format!("{path}.consent"), &mut violations);
                }
                let references: Vec<String> = match fields.get("destinationReferences") {
                    None => Vec::new(),
                    Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                        items.iter().filter_map(Value::as_str).map(String::from).collect()
                    }
                    Some(_) => {
                        violations.push(Violation::transcoding(
                            format!("{path}.destination_references"),
                            format!("Invalid value at '{path}.destination_references' (TYPE_STRING)"),
                        ));
                        Vec::new()
                    }
                };
                let data = match kinds[0] {
                    "userData" => {
                        needs_encoding = true;
                        user_data(&fields["userData"], &path, encoding, &mut violations).map(MemberData::User)
                    }
                    "mobileData" => mobile_data(&fields["mobileData"], &path, &mut violations).map(MemberData::Mobile),
                    "userIdData" => user_id_data(&fields["userIdData"], &path, &mut violations).map(MemberData::UserId),
                    other => {
                        violations.push(Violation::new(
                            &path,
                            "INVALID_ARGUMENT",
                            format!("{} is only available to data partners; the fake does not model it.", snake(other)),
                        ));
                        None
                    }
                };
                if let Some(data) = data {
                    members.push(Member { references, data });
                }
            }
            if needs_encoding && encoding.is_none() {
                violations.push(Violation::new(
                    "encoding",
                    "REQUIRED_FIELD_MISSING",
                    "Encoding is required for UserData uploads.",
                ));
            }
            let kinds: Vec<UserListKind> = members.iter().map(|m| m.data.list_kind()).collect();
            if kinds.windows(2).any(|pair| pair[0] != pair[1]) {
                violations.push(Violation::new(
                    "audience_members",
                    "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
                    "Multiple data types are not allowed to be ingested in a single request.",
                ));
            }
        }
    }
    let references: BTreeSet<&str> = destinations.iter().filter_map(|d| d.reference.as_deref()).collect();
    for (index, member) in members.iter().enumerate() {
        if member.references.iter().any(|r| !references.contains(r.as_str())) {
            violations.push(Violation::new(
                format!("audience_members.audience_members[{index}].destination_references"),
                "INVALID_DESTINATION",
                "This Destination is not valid.",
            ));
        }
    }

    if route == Route::Ingest && !members.is_empty() {
        let accepted = map
            .get("termsOfService")
            .map(|terms| {
                let Some(fields) =
                    object(terms, "terms_of_service", &["customerMatchTermsOfServiceStatus"], &mut violations)
                else {
                    return false;
                };
                enum_value(
                    fields,
                    "customerMatchTermsOfServiceStatus",
                    "terms_of_service",
                    &TERMS_STATUSES,
                    &mut violations,
                )
                .as_deref()
                    == Some("ACCEPTED")
            })
            .unwrap_or(false);
        if !accepted {
            violations.push(Violation::new(
                "terms_of_service.customer_match_terms_of_service_status",
                "TERMS_AND_CONDITIONS_NOT_SIGNED",
                "Required terms and conditions are not accepted.",
            ));
        }
    }
    if violations.is_empty() {
        Ok(Parsed { destinations, members, validate_only })
    } else {
        Err(violations)
    }
}

fn stored(member: &Member) -> StoredMember {
    match &member.data {
        MemberData::User(ids) => ids.iter().cloned().collect(),
        MemberData::Mobile(ids) => ids.iter().map(|id| StoredIdentifier::MobileId(id.clone())).collect(),
        MemberData::UserId(id) => StoredMember::from([StoredIdentifier::UserId(id.clone())]),
    }
}

/// Checks the request against the account's state, then changes membership.
fn apply(state: &mut DataManagerState, route: Route, parsed: Parsed) -> Reply {
    let mut violations = Vec::new();
    for (index, destination) in parsed.destinations.iter().enumerate() {
        let Some(account) = state
            .options
            .accounts
            .iter()
            .find(|a| a.account_id == destination.account_id && a.account_type == destination.account_type)
        else {
            return status_error(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
                vec![error_info("PERMISSION_DENIED", SERVICE, json!({}))],
            );
        };
        match account.user_lists.iter().find(|l| l.id == destination.list) {
            None => violations.push(Violation::new(
                format!("destinations[{index}].product_destination_id"),
                "INVALID_USER_LIST_ID",
                "User list is not valid.",
            )),
            Some(list) => {
                let wrong_type = parsed.members.iter().any(|m| {
                    let applies = m.references.is_empty()
                        || destination.reference.as_ref().is_some_and(|r| m.references.contains(r));
                    applies && m.data.list_kind() != list.kind
                });
                if wrong_type {
                    violations.push(Violation::new(
                        format!("destinations[{index}].product_destination_id"),
                        "INVALID_USER_LIST_TYPE",
                        "Type of the user list is not applicable for this request.",
                    ));
                }
            }
        }
    }
    for (index, member) in parsed.members.iter().enumerate() {
        if stored(member).iter().any(|id| state.options.reject_members.contains(id)) {
            violations.push(Violation::new(
                format!("audience_members.audience_members[{index}]"),
                "INVALID_AUDIENCE_MEMBER",
                "This audience member is not valid.",
            ));
        }
    }
    if !violations.is_empty() {
        return bad_request(&violations);
    }
    if parsed.validate_only {
        // "If true, the request is validated but not executed. Only errors are returned, not results."
        return Reply::json(200, json!({}));
    }
    // Removals are applied in one pass per list: every stored member sharing an identifier with a
    // removed one goes.
    let mut removed: std::collections::BTreeMap<(String, String), BTreeSet<StoredIdentifier>> = Default::default();
    for member in &parsed.members {
        let identifiers = stored(member);
        for destination in &parsed.destinations {
            let applies = member.references.is_empty()
                || destination.reference.as_ref().is_some_and(|r| member.references.contains(r));
            if !applies {
                continue;
            }
            let key = (destination.account_id.clone(), destination.list.clone());
            match route {
                Route::Ingest => {
                    state.lists.entry(key).or_default().insert(identifiers.clone());
                }
                _ => removed.entry(key).or_default().extend(identifiers.iter().cloned()),
            }
        }
        match route {
            Route::Ingest => state.counters.ingested += 1,
            _ => state.counters.removed += 1,
        }
    }
    for (key, gone) in removed {
        if let Some(list) = state.lists.get_mut(&key) {
            list.retain(|existing| existing.is_disjoint(&gone));
        }
    }
    let request_id = format!("{:08x}-0000-4000-8000-{:012x}", fastrand::u32(..), state.next_request_id);
    state.next_request_id += 1;
    Reply::json(200, json!({ "requestId": request_id }))
}
