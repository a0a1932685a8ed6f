//! Tests of the TikTok fake through real HTTP: HTTP 200 envelopes with `code`, the `Access-Token`
//! header, and the segment mapping body checked field by field.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::tiktok::{
    TikTokFake, TikTokOptions, DEFAULT_ACCESS_TOKEN, DEFAULT_ADVERTISER_ID, DEFAULT_AUDIENCE_ID,
};

/// TikTok's hashed example for `janedoe@gmail.com` in its customer file specification.
const JANEDOE: &str = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69";
const OTHER: &str = "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7";

async fn mapping(fake: &TikTokFake, token: Option<&str>, body: Value) -> Value {
    let mut request = Client::new().post(format!("{}/open_api/v1.3/segment/mapping/", fake.base_url())).json(&body);
    if let Some(token) = token {
        request = request.header("Access-Token", token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "TikTok answers 200 and puts the outcome in `code`");
    let body: Value = response.json().await.unwrap();
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    body
}

fn body(action: &str, schema: &[&str], rows: Value) -> Value {
    json!({ "advertiser_ids": [DEFAULT_ADVERTISER_ID], "action": action, "id_schema": schema, "batch_data": rows })
}

fn entry(id: &str) -> Value {
    json!({ "id": id, "audience_ids": [DEFAULT_AUDIENCE_ID] })
}

#[tokio::test]
async fn users_are_added_and_deleted_by_any_id() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let token = Some(DEFAULT_ACCESS_TOKEN);
    let rows = json!([[entry(JANEDOE), {}], [{}, entry(OTHER)]]);
    let answer = mapping(&fake, token, body("add", &["EMAIL_SHA256", "PHONE_SHA256"], rows)).await;
    assert_eq!((answer["code"].as_i64(), answer["message"].as_str()), (Some(0), Some("OK")));
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 2);
    let answer = mapping(&fake, token, body("delete", &["EMAIL_SHA256"], json!([[entry(JANEDOE)]]))).await;
    assert_eq!(answer["code"], 0);
    let left: Vec<_> = fake.members(DEFAULT_AUDIENCE_ID).into_iter().flatten().collect();
    assert_eq!(left, [("PHONE_SHA256".to_string(), OTHER.to_string())]);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_40002_and_counted() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let token = Some(DEFAULT_ACCESS_TOKEN);
    let cases = [
        body("add", &["EMAIL_SHA256"], json!([[entry("janedoe@gmail.com")]])),
        body("add", &["EMAIL_SHA256"], json!([[entry(&JANEDOE.to_uppercase())]])),
        body("add", &["EMAIL_MD5"], json!([[entry(JANEDOE)]])),
        body("add", &["EMAIL_SHA256", "PHONE_SHA256"], json!([[entry(JANEDOE)]])),
        body("append", &["EMAIL_SHA256"], json!([[entry(JANEDOE)]])),
        body("add", &["EMAIL_SHA256"], json!([[{}]])),
        body("add", &["EMAIL_SHA256"], json!([[{ "id": JANEDOE }]])),
        json!({ "advertiser_ids": [DEFAULT_ADVERTISER_ID], "action": "add", "id_schema": ["EMAIL_SHA256"] }),
    ];
    let count = cases.len();
    for (index, case) in cases.into_iter().enumerate() {
        let answer = mapping(&fake, token, case).await;
        assert_eq!(answer["code"], 40002, "case {index}: {answer}");
    }
    assert_eq!(fake.invalid_requests(), count);
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
}

#[tokio::test]
async fn tokens_advertisers_audiences_and_limits_are_checked() {
    let fake = TikTokFake::start(TikTokOptions { batch_limit: 2, ..TikTokOptions::default() }).await;
    let valid = body("add", &["EMAIL_SHA256"], json!([[entry(JANEDOE)]]));
    assert_eq!(mapping(&fake, None, valid.clone()).await["code"], 40104);
    assert_eq!(mapping(&fake, Some("stolen"), valid.clone()).await["code"], 40105);
    let mut stranger = valid.clone();
    stranger["advertiser_ids"] = json!(["42"]);
    assert_eq!(mapping(&fake, Some(DEFAULT_ACCESS_TOKEN), stranger).await["code"], 40001);
    let other_audience = body("add", &["EMAIL_SHA256"], json!([[{ "id": JANEDOE, "audience_ids": ["99"] }]]));
    assert_eq!(mapping(&fake, Some(DEFAULT_ACCESS_TOKEN), other_audience).await["code"], 40007);
    let three = body("add", &["EMAIL_SHA256"], json!([[entry(JANEDOE)], [entry(OTHER)], [entry(&"ab".repeat(32))]]));
    assert_eq!(mapping(&fake, Some(DEFAULT_ACCESS_TOKEN), three).await["code"], 40011);
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());

    // A path without its trailing slash never reaches the API.
    let response = Client::new()
        .post(format!("{}/open_api/v1.3/segment/mapping", fake.base_url()))
        .header("Access-Token", DEFAULT_ACCESS_TOKEN)
        .json(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let info = Client::new()
        .get(format!("{}/open_api/v1.3/advertiser/info/", fake.base_url()))
        .query(&[("advertiser_ids", json!([DEFAULT_ADVERTISER_ID]).to_string())])
        .header("Access-Token", DEFAULT_ACCESS_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(info["data"]["list"][0]["advertiser_id"], DEFAULT_ADVERTISER_ID);
}
