//! Tests of the LinkedIn fake through real HTTP: it answers the documented shapes and refuses what
//! the DMP Segment Users docs rule out.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::linkedin::{LinkedInFake, LinkedInOptions, DEFAULT_ACCOUNT, DEFAULT_SEGMENT};

const TOKEN: &str = "linkedin-access-token-1";
const HASH: &str = "18b258e9ade091623dd829132e1e9d8b4a7f7d90abea194001c54341c3f27b79";

/// POSTs `body` to the segment's users with the documented headers, minus those named in `skip`.
async fn users(fake: &LinkedInFake, body: Value, batch: bool, skip: &[&str]) -> (StatusCode, Value) {
    let mut request = Client::new()
        .post(format!("{}/dmpSegments/{DEFAULT_SEGMENT}/users", fake.api_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in [
        ("authorization", format!("Bearer {TOKEN}")),
        ("linkedin-version", "202610".to_string()),
        ("x-restli-protocol-version", "2.0.0".to_string()),
    ] {
        if !skip.contains(&name) {
            request = request.header(name, value);
        }
    }
    if batch {
        request = request.header("x-restli-method", "BATCH_CREATE");
    }
    let response = request.send().await.expect("request reaches the fake");
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn element(action: &str, id_type: &str, id_value: &str) -> Value {
    json!({ "action": action, "userIds": [{ "idType": id_type, "idValue": id_value }] })
}

#[tokio::test]
async fn a_valid_batch_is_answered_element_by_element_and_stored() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let body = json!({ "elements": [
        { "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": HASH }], "firstName": "Mike", "country": "US" },
        element("ADD", "GOOGLE_AID", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
    ]});
    let (status, answer) = users(&fake, body, true, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({ "elements": [{ "status": 201 }, { "status": 201 }] }));
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 2);
    assert_eq!(
        fake.attributes(DEFAULT_SEGMENT, &format!("SHA256_EMAIL:{HASH}")).unwrap().first_name.as_deref(),
        Some("Mike")
    );
    // Removing twice is a 201 both times ("by design"), and the member is gone.
    for _ in 0..2 {
        let (_, answer) =
            users(&fake, json!({ "elements": [element("REMOVE", "SHA256_EMAIL", HASH)] }), true, &[]).await;
        assert_eq!(answer["elements"][0]["status"], 201);
    }
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 1);
    // One user without BATCH_CREATE.
    let (status, _) = users(&fake, element("ADD", "SHA256_EMAIL", HASH), false, &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn bad_elements_are_refused_one_by_one_and_counted() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let bad = [
        element("ADD", "SHA256_EMAIL", &HASH.to_uppercase()),
        element("ADD", "SHA256_EMAIL", &HASH[..63]),
        element("ADD", "SHA256_EMAIL", "mike@example.com"),
        element("ADD", "SHA256_PHONE", HASH),
        element("UPSERT", "SHA256_EMAIL", HASH),
        element("ADD", "GOOGLE_AID", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        json!({ "action": "ADD", "userIds": [] }),
        json!({ "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": HASH }], "firstName": "x".repeat(36) }),
        json!({ "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": HASH }], "country": "us" }),
        json!({ "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": HASH }], "email": "mike@example.com" }),
    ];
    let mut elements = bad.to_vec();
    elements.push(element("ADD", "SHA256_EMAIL", HASH));
    let (status, answer) = users(&fake, json!({ "elements": elements }), true, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<u64> =
        answer["elements"].as_array().unwrap().iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 201]);
    assert!(answer["elements"][0]["error"]["message"].as_str().unwrap().contains("not a valid SHA256_EMAIL"));
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 1, "only the valid element is stored");
    assert_eq!(fake.invalid_requests(), 1);
    assert_eq!(fake.problems().len(), 10, "{:?}", fake.problems());
}

#[tokio::test]
async fn missing_headers_and_bad_batches_are_refused() {
    let fake = LinkedInFake::start(LinkedInOptions { batch_limit: 2, ..LinkedInOptions::default() }).await;
    let one = json!({ "elements": [element("ADD", "SHA256_EMAIL", HASH)] });
    let (status, answer) = users(&fake, one.clone(), true, &["linkedin-version"]).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VERSION_MISSING")));
    let (status, _) = users(&fake, one.clone(), true, &["x-restli-protocol-version"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = users(&fake, one.clone(), true, &["authorization"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer, json!({ "status": 401, "serviceErrorCode": 401, "message": "Empty oauth2_access_token" }));
    // A batch body without BATCH_CREATE is read as one user, and is not one.
    let (status, _) = users(&fake, one.clone(), false, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let three = json!({ "elements": [element("ADD", "SHA256_EMAIL", HASH), element("ADD", "SHA256_EMAIL", HASH), element("ADD", "SHA256_EMAIL", HASH)] });
    let (status, answer) = users(&fake, three, true, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["message"].as_str().unwrap().contains("exceeds the maximum of 2"));
    let (status, _) = users(&fake, json!({ "elements": [] }), true, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    // The 401 is an auth answer, not a malformed request.
    assert_eq!(fake.invalid_requests(), 5, "{:?}", fake.problems());
}

#[tokio::test]
async fn the_token_endpoint_and_finder_follow_the_docs() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let token = |form: &'static str| {
        let url = fake.token_url();
        async move {
            let response = Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = token(
        "grant_type=refresh_token&refresh_token=linkedin-refresh-token&client_id=linkedin-client-id&client_secret=linkedin-client-secret",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["access_token"].is_string() && answer["refresh_token_expires_in"].is_u64(), "{answer}");
    let (status, answer) = token(
        "grant_type=refresh_token&refresh_token=old&client_id=linkedin-client-id&client_secret=linkedin-client-secret",
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));

    let access = fake.current_access_token().unwrap();
    let response = Client::new()
        .get(format!(
            "{}/dmpSegments?q=account&account=urn%3Ali%3AsponsoredAccount%3A{DEFAULT_ACCOUNT}",
            fake.api_url()
        ))
        .bearer_auth(access)
        .header("linkedin-version", "202610")
        .header("x-restli-protocol-version", "2.0.0")
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["paging"]["total"], 2);
    assert_eq!(answer["elements"][0]["account"], format!("urn:li:sponsoredAccount:{DEFAULT_ACCOUNT}"));
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}
