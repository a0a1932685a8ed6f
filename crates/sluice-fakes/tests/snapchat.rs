//! Tests of the Snapchat fake through real HTTP: it answers the documented envelope and refuses
//! what the Customer Lists docs rule out.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::snapchat::{RejectRule, SnapchatFake, SnapchatOptions, DEFAULT_SEGMENT};

const TOKEN: &str = "snap-access-token-1";
const HASH: &str = "18b258e9ade091623dd829132e1e9d8b4a7f7d90abea194001c54341c3f27b79";
const HASH2: &str = "67d3cb9e9b1b64b913a5f2508beac167cfa7d3fb943f6a52e6767392d425a536";

async fn users(fake: &SnapchatFake, method: Method, body: Value) -> (StatusCode, Value) {
    let response = Client::new()
        .request(method, format!("{}/segments/{DEFAULT_SEGMENT}/users", fake.api_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request reaches the fake");
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn uploads_are_added_and_removed_in_the_documented_envelope() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let body = json!({ "users": [
        { "schema": ["EMAIL_SHA256"], "data": [[HASH]] },
        { "schema": ["EMAIL_SHA256", "PHONE_SHA256"], "data": [[HASH, HASH2]] },
    ]});
    let (status, answer) = users(&fake, Method::POST, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["request_status"], "SUCCESS");
    assert!(answer["request_id"].is_string());
    assert_eq!(answer["users"][0], json!({ "sub_request_status": "SUCCESS", "user": { "number_uploaded_users": 1 } }));
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 2);
    let (status, _) =
        users(&fake, Method::DELETE, json!({ "users": [{ "schema": ["PHONE_SHA256"], "data": [[HASH2]] }] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.members(DEFAULT_SEGMENT), [format!("EMAIL_SHA256:{HASH}")].into_iter().collect());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn bad_uploads_are_refused_whole_and_counted() {
    let fake = SnapchatFake::start(SnapchatOptions { identifier_limit: 2, ..SnapchatOptions::default() }).await;
    let bad = [
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [[HASH.to_uppercase()]] }] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [["mike@example.com"]] }] }),
        json!({ "users": [{ "schema": ["EMAIL"], "data": [[HASH]] }] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256", "EMAIL_SHA256"], "data": [[HASH, HASH]] }] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [[HASH, HASH2]] }] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [] }] }),
        json!({ "users": [] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [[HASH]], "id": 1 }] }),
        json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [[HASH], [HASH2], [HASH]] }] }),
    ];
    for body in &bad {
        let (status, answer) = users(&fake, Method::POST, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["request_status"], "ERROR");
        assert!(answer["debug_message"].is_string() && answer["error_code"].is_string(), "{answer}");
    }
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    assert_eq!(fake.invalid_requests(), bad.len(), "{:?}", fake.problems());
}

#[tokio::test]
async fn a_refused_entry_fails_alone() {
    let reject = RejectRule { hash: HASH2.into(), reason: "not processable".into() };
    let fake = SnapchatFake::start(SnapchatOptions { reject: vec![reject], ..SnapchatOptions::default() }).await;
    let body = json!({ "users": [
        { "schema": ["EMAIL_SHA256"], "data": [[HASH]] },
        { "schema": ["PHONE_SHA256"], "data": [[HASH2]] },
    ]});
    let (status, answer) = users(&fake, Method::POST, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["users"][0]["sub_request_status"], "SUCCESS");
    assert_eq!(
        answer["users"][1],
        json!({ "sub_request_status": "ERROR", "sub_request_error_reason": "not processable" })
    );
    assert_eq!(fake.members(DEFAULT_SEGMENT), [format!("EMAIL_SHA256:{HASH}")].into_iter().collect());
    assert_eq!(fake.invalid_requests(), 0, "a refusal is not a malformed request");
}

#[tokio::test]
async fn tokens_expire_and_are_refreshed_with_the_refresh_token_grant() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    fake.expire_access_tokens();
    let (status, answer) =
        users(&fake, Method::POST, json!({ "users": [{ "schema": ["EMAIL_SHA256"], "data": [[HASH]] }] })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["request_status"], "ERROR");
    let response = Client::new()
        .post(fake.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&client_id=snap-client-id&client_secret=snap-client-secret&refresh_token=snap-refresh-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["access_token"].as_str(), fake.current_access_token().as_deref());
    assert_eq!(fake.state().counters.token_refreshes, 1);
}
