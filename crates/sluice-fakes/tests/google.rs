//! Tests of the Data Manager API fake through real HTTP: it must refuse what Google documents as
//! invalid, answer in Google's error shapes, and keep membership as Customer Match does.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::google::{
    DataManagerFake, DataManagerOptions, OAuthApp, StoredIdentifier, DATAMANAGER_SCOPE, DEFAULT_ACCOUNT_ID,
    DEFAULT_MOBILE_USER_LIST, DEFAULT_USER_LIST,
};

/// SHA-256 of `dana@example.com` as the quickstart lists it.
const DANA: &str = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3";
const DANAM: &str = "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7";

async fn token(fake: &DataManagerFake) -> String {
    let app = OAuthApp::default();
    let response = Client::new()
        .post(fake.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("refresh_token", app.refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], DATAMANAGER_SCOPE);
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_string()
}

async fn call(fake: &DataManagerFake, token: &str, method: &str, body: Value) -> (StatusCode, Value) {
    let response = Client::new()
        .post(format!("{}/v1/audienceMembers:{method}", fake.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn destinations(list: &str) -> Value {
    json!([{ "operatingAccount": { "accountType": "GOOGLE_ADS", "accountId": DEFAULT_ACCOUNT_ID }, "productDestinationId": list }])
}

fn ingest(members: Value) -> Value {
    json!({
        "destinations": destinations(DEFAULT_USER_LIST),
        "audienceMembers": members,
        "encoding": "HEX",
        "termsOfService": { "customerMatchTermsOfServiceStatus": "ACCEPTED" },
    })
}

fn email(hash: &str) -> Value {
    json!({ "userData": { "userIdentifiers": [{ "emailAddress": hash }] } })
}

fn reasons(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().cloned().unwrap_or_default())
        .map(|v| v["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_plain_text_email_is_refused_as_in_googles_example() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let token = token(&fake).await;
    let (status, body) = call(&fake, &token, "ingest", ingest(json!([email("dana@example.com")]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The quickstart's documented answer, field for field.
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["error"]["message"], "There was a problem with the request.");
    assert_eq!(body["error"]["details"][0]["reason"], "INVALID_ARGUMENT");
    let violation = &body["error"]["details"][1]["fieldViolations"][0];
    assert_eq!(violation["field"], "audience_members.audience_members[0].user_data.user_identifiers");
    assert_eq!(violation["reason"], "INVALID_HEX_ENCODING");
    assert_eq!(violation["description"], "Email is not hex encoded.");

    // Hex, but not a SHA-256: INVALID_SHA256_FORMAT on the member.
    let (_, body) = call(&fake, &token, "ingest", ingest(json!([email("abcdef")]))).await;
    assert_eq!(body["error"]["details"][1]["fieldViolations"][0]["field"], "audience_members.audience_members[0]");
    assert_eq!(reasons(&body), ["INVALID_SHA256_FORMAT"]);
    // Upper-case hex is refused too: the fake holds clients to Google's lower-case examples.
    let (_, body) = call(&fake, &token, "ingest", ingest(json!([email(&DANA.to_uppercase())]))).await;
    assert_eq!(reasons(&body), ["INVALID_HEX_ENCODING"]);
    assert_eq!(fake.invalid_requests(), 3);
    assert!(fake.members(DEFAULT_USER_LIST).is_empty());
}

#[tokio::test]
async fn documented_shapes_are_enforced_field_by_field() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let token = token(&fake).await;
    let cases: Vec<(Value, &str)> = vec![
        // Ingesting user data needs the Customer Match terms.
        (
            json!({ "destinations": destinations(DEFAULT_USER_LIST), "audienceMembers": [email(DANA)], "encoding": "HEX" }),
            "TERMS_AND_CONDITIONS_NOT_SIGNED",
        ),
        // User data needs an encoding.
        (
            json!({ "destinations": destinations(DEFAULT_USER_LIST), "audienceMembers": [email(DANA)],
                 "termsOfService": { "customerMatchTermsOfServiceStatus": "ACCEPTED" } }),
            "REQUIRED_FIELD_MISSING",
        ),
        // One data type per request.
        (
            ingest(json!([email(DANA), { "mobileData": { "mobileIds": ["6D92078A-8246-4BA4-AE5B-76104861E7DC"] } }])),
            "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
        ),
        // An address needs all four parts, the region code as two upper-case letters.
        (
            ingest(
                json!([{ "userData": { "userIdentifiers": [{ "address": { "givenName": DANA, "familyName": DANAM, "regionCode": "fr" } }] } }]),
            ),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            ingest(
                json!([{ "userData": { "userIdentifiers": [{ "address": { "givenName": DANA, "familyName": DANAM, "regionCode": "France", "postalCode": "75001" } }] } }]),
            ),
            "INVALID_COUNTRY_CODE",
        ),
        // Postal codes go unhashed.
        (
            ingest(
                json!([{ "userData": { "userIdentifiers": [{ "address": { "givenName": DANA, "familyName": DANAM, "regionCode": "FR", "postalCode": DANA } }] } }]),
            ),
            "INVALID_POSTAL_CODE",
        ),
        // More than ten identifiers for one member.
        (
            ingest(json!([{ "userData": { "userIdentifiers": vec![json!({ "emailAddress": DANA }); 11] } }])),
            "TOO_MANY_USER_IDENTIFIERS",
        ),
        // A mobile id that is not an IDFA or advertising id.
        (ingest(json!([{ "mobileData": { "mobileIds": ["not-a-device"] } }])), "INVALID_MOBILE_ID_FORMAT"),
        // No destinations.
        (json!({ "audienceMembers": [email(DANA)], "encoding": "HEX" }), "REQUIRED_FIELD_MISSING"),
        // A ProductAccount without an account type.
        (
            json!({ "destinations": [{ "operatingAccount": { "accountId": "1" }, "productDestinationId": "1" }],
                 "audienceMembers": [email(DANA)], "encoding": "HEX" }),
            "REQUIRED_FIELD_MISSING",
        ),
    ];
    for (index, (body, reason)) in cases.into_iter().enumerate() {
        let (status, answer) = call(&fake, &token, "ingest", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "case {index}: {answer}");
        assert!(reasons(&answer).iter().any(|r| r == reason), "case {index}: expected {reason} in {answer}");
    }
    // Unknown names are refused as the JSON transcoder does; remove takes no termsOfService.
    let mut remove = ingest(json!([email(DANA)]));
    let (status, answer) = call(&fake, &token, "remove", remove.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("Unknown name \"termsOfService\""), "{answer}");
    remove.as_object_mut().unwrap().remove("termsOfService");
    remove["audienceMembers"][0]["userData"]["emails"] = json!([]);
    let (_, answer) = call(&fake, &token, "remove", remove).await;
    assert!(answer["error"]["message"].as_str().unwrap().contains("Unknown name \"emails\""), "{answer}");
    assert_eq!(fake.invalid_requests(), 12);
    assert!(fake.members(DEFAULT_USER_LIST).is_empty());
}

#[tokio::test]
async fn membership_follows_ingest_and_remove_by_any_identifier() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let token = token(&fake).await;
    let both = json!({ "userData": { "userIdentifiers": [{ "emailAddress": DANA }, { "emailAddress": DANAM }] } });
    let (status, body) = call(&fake, &token, "ingest", ingest(json!([both.clone(), both]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 1, "the same member twice is one member");

    // validateOnly changes nothing and returns no result.
    let mut validate = json!({ "destinations": destinations(DEFAULT_USER_LIST), "audienceMembers": [email(DANAM)], "encoding": "HEX", "validateOnly": true });
    let (status, body) = call(&fake, &token, "remove", validate.clone()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 1);

    // Removing by one of its emails removes the member; removing someone absent is fine.
    validate.as_object_mut().unwrap().remove("validateOnly");
    let (status, _) = call(&fake, &token, "remove", validate.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fake.members(DEFAULT_USER_LIST).is_empty());
    let (status, _) = call(&fake, &token, "remove", validate).await;
    assert_eq!(status, StatusCode::OK);

    // A member of the wrong kind for the list, and an unknown list, are refused but not malformed.
    let mut mobile_into_contact =
        ingest(json!([{ "mobileData": { "mobileIds": ["6D92078A-8246-4BA4-AE5B-76104861E7DC"] } }]));
    let (_, body) = call(&fake, &token, "ingest", mobile_into_contact.clone()).await;
    assert_eq!(reasons(&body), ["INVALID_USER_LIST_TYPE"]);
    mobile_into_contact["destinations"] = destinations(DEFAULT_MOBILE_USER_LIST);
    let (status, _) = call(&fake, &token, "ingest", mobile_into_contact).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.members(DEFAULT_MOBILE_USER_LIST).into_iter().next().unwrap().into_iter().collect::<Vec<_>>(),
        [StoredIdentifier::MobileId("6D92078A-8246-4BA4-AE5B-76104861E7DC".into())]
    );
    let mut unknown = ingest(json!([email(DANA)]));
    unknown["destinations"] = destinations("999");
    let (_, body) = call(&fake, &token, "ingest", unknown).await;
    assert_eq!(reasons(&body), ["INVALID_USER_LIST_ID"]);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn auth_is_checked_with_googles_error_bodies() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let (status, body) = call(&fake, "ya29.unknown", "ingest", ingest(json!([email(DANA)]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let token = token(&fake).await;
    fake.expire_access_tokens();
    let (status, body) = call(&fake, &token, "ingest", ingest(json!([email(DANA)]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["details"][0]["reason"], "ACCESS_TOKEN_EXPIRED");

    let narrow = DataManagerFake::start(DataManagerOptions {
        oauth: OAuthApp { scope: "https://www.googleapis.com/auth/adwords".into(), ..OAuthApp::default() },
        ..DataManagerOptions::default()
    })
    .await;
    let token = self::token_with_scope(&narrow).await;
    let (status, body) = call(&narrow, &token, "ingest", ingest(json!([email(DANA)]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["details"][0]["reason"], "ACCESS_TOKEN_SCOPE_INSUFFICIENT");

    let response = Client::new()
        .post(fake.token_url())
        .form(&[("grant_type", "refresh_token"), ("client_id", "x"), ("client_secret", "y"), ("refresh_token", "z")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");
}

async fn token_with_scope(fake: &DataManagerFake) -> String {
    let app = OAuthApp::default();
    let response = Client::new()
        .post(fake.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("refresh_token", app.refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}
