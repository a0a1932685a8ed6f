//! Tests of the Meta fake through real HTTP: what it refuses, what it stores, and its answers'
//! shapes, as Meta's Customer File Custom Audiences guide describes them.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::meta::{MetaFake, MetaOptions, Row, DEFAULT_ACCESS_TOKEN, DEFAULT_AD_ACCOUNT, DEFAULT_AUDIENCE_ID};

fn digest(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Sends form parameters (as Meta's curl examples do) and returns the status and JSON answer.
async fn send(fake: &MetaFake, method: Method, path: &str, params: &[(&str, String)]) -> (StatusCode, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        form.append_pair(key, value);
    }
    let response = Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .bearer_auth(DEFAULT_ACCESS_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .expect("request reaches the fake");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
}

fn upload(schema: Value, data: Value, session_id: u64, seq: u64, last: bool) -> Vec<(&'static str, String)> {
    vec![
        ("payload", json!({ "schema": schema, "data": data }).to_string()),
        ("session", json!({ "session_id": session_id, "batch_seq": seq, "last_batch_flag": last }).to_string()),
    ]
}

fn users() -> String {
    format!("/v25.0/{DEFAULT_AUDIENCE_ID}/users")
}

fn row(pairs: &[(&str, String)]) -> Row {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[tokio::test]
async fn uploads_answer_in_metas_shape_and_store_rows() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let data = json!([[digest(1), digest(2)], [digest(3), ""], ["plain@example.com", ""]]);
    let (status, body) =
        send(&fake, Method::POST, &users(), &upload(json!(["EMAIL", "PHONE"]), data, 77, 1, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "audience_id": DEFAULT_AUDIENCE_ID,
            "session_id": 77,
            "num_received": 3,
            "num_invalid_entries": 1,
            "invalid_entry_samples": ["plain@example.com"],
        })
    );
    assert_eq!(
        fake.members(DEFAULT_AUDIENCE_ID),
        [row(&[("EMAIL", digest(1)), ("PHONE", digest(2))]), row(&[("EMAIL", digest(3))])].into_iter().collect()
    );
    assert_eq!(fake.invalid_requests(), 1, "the plain e-mail is an invalid entry the client sent");

    // "Or, you can add the method parameter and set it to DELETE in the POST request."
    let mut removal = upload(json!("EMAIL_SHA256"), json!([digest(3)]), 78, 1, true);
    removal.push(("method", "DELETE".into()));
    let (status, _) = send(&fake, Method::POST, &users(), &removal).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 1);
    assert_eq!(fake.requests().last().unwrap().method, "DELETE");
}

#[tokio::test]
async fn malformed_uploads_are_refused_with_code_100_and_logged() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let too_many = json!(vec![vec![digest(1)]; 10_001]);
    let cases: Vec<Vec<(&str, String)>> = vec![
        upload(json!(["EMAIL"]), too_many, 1, 1, true),
        upload(json!(["EMAIL", "SHOE_SIZE"]), json!([]), 2, 1, true),
        upload(json!(["EMAIL", "PHONE"]), json!([[digest(1)]]), 3, 1, true),
        vec![("payload", json!({"schema": "EMAIL", "data": []}).to_string())],
        vec![
            ("payload", json!({"schema": "EMAIL", "data": []}).to_string()),
            ("session", json!({"session_id": "9", "batch_seq": 1, "last_batch_flag": true}).to_string()),
        ],
        {
            let mut extra = upload(json!("EMAIL"), json!([digest(1)]), 4, 1, true);
            extra.push(("schema", "EMAIL".into()));
            extra
        },
    ];
    for params in &cases {
        let (status, body) = send(&fake, Method::POST, &users(), params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], 100, "{body}");
        assert_eq!(body["error"]["type"], "OAuthException");
        assert!(body["error"]["fbtrace_id"].is_string());
    }
    assert_eq!(fake.invalid_requests(), cases.len());
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
    let (status, body) = send(&fake, Method::POST, "/v2.0/1/users", &[]).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!(2635)));
}

#[tokio::test]
async fn sessions_start_at_one_go_up_by_one_and_end() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let batch = |seq, last| upload(json!("EMAIL_SHA256"), json!([digest(seq as u8)]), 500, seq, last);
    let (_, body) = send(&fake, Method::POST, &users(), &batch(2, false)).await;
    assert_eq!((body["error"]["code"].clone(), body["error"]["error_subcode"].clone()), (json!(2650), json!(1870147)));
    for (seq, received) in [(1, 1), (2, 2), (2, 3)] {
        let (status, body) = send(&fake, Method::POST, &users(), &batch(seq, false)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["num_received"], received, "rows received in the session so far");
    }
    let (status, _) = send(&fake, Method::POST, &users(), &batch(3, true)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(&fake, Method::POST, &users(), &batch(4, false)).await;
    assert_eq!(body["error"]["error_subcode"], 1870159, "nothing after the last batch");
}

#[tokio::test]
async fn usersreplace_swaps_the_audience_when_its_last_batch_arrives() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    send(&fake, Method::POST, &users(), &upload(json!("EMAIL_SHA256"), json!([digest(1), digest(2)]), 1, 1, true))
        .await;
    let replace = format!("/v25.0/{DEFAULT_AUDIENCE_ID}/usersreplace");
    let (status, body) =
        send(&fake, Method::POST, &replace, &upload(json!(["EMAIL"]), json!([[digest(3)]]), 9, 1, false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["account_id"], DEFAULT_AD_ACCOUNT);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 2, "replaced only at the end of the session");
    // "Don't add or remove users via /users during an ongoing replace operation."
    let (_, body) =
        send(&fake, Method::POST, &users(), &upload(json!("EMAIL_SHA256"), json!([digest(4)]), 2, 1, true)).await;
    assert_eq!(body["error"]["error_subcode"], 1870145);
    let (status, _) =
        send(&fake, Method::POST, &replace, &upload(json!(["EMAIL"]), json!([[digest(5)]]), 9, 2, true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.members(DEFAULT_AUDIENCE_ID),
        [row(&[("EMAIL", digest(3))]), row(&[("EMAIL", digest(5))])].into_iter().collect()
    );
}

#[tokio::test]
async fn the_audience_node_answers_only_fields_the_spec_has() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let get = |fields: &str| {
        let url = format!("{}/v25.0/{DEFAULT_AUDIENCE_ID}?fields={fields}", fake.base_url());
        async move {
            let response = Client::new().get(url).bearer_auth(DEFAULT_ACCESS_TOKEN).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get("id,name,subtype,operation_status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": DEFAULT_AUDIENCE_ID, "name": "VIP customers", "subtype": "CUSTOM",
               "operation_status": {"code": 200, "description": "Normal"}})
    );
    let (status, body) = get("id,shoe_size").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("nonexisting field (shoe_size)"));
}
