//! Tests of the Salesforce fake through real HTTP, checking its answers against Salesforce's documented shapes.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sluice_fakes::salesforce::{SalesforceFake, SalesforceOptions, API_VERSION};

fn data(fake: &SalesforceFake, path: &str) -> String {
    format!("{}/services/data/v{API_VERSION}{path}", fake.base_url())
}

async fn refresh_token(fake: &SalesforceFake) -> Value {
    let response = Client::new()
        .post(format!("{}/services/oauth2/token", fake.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "fake-client-id"),
            ("client_secret", "fake-client-secret"),
            ("refresh_token", "fake-refresh-token"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("token JSON")
}

async fn login(fake: &SalesforceFake) -> String {
    refresh_token(fake).await["access_token"].as_str().expect("access_token").to_owned()
}

async fn call(token: &str, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Client::new().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request reaches the fake");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn jwt(claims: Value) -> String {
    let header = b64url(br#"{"alg":"RS256"}"#);
    format!("{header}.{}.{}", b64url(claims.to_string().as_bytes()), b64url(b"not-a-real-signature"))
}

#[tokio::test]
async fn refresh_token_flow_issues_a_token_for_the_instance() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let token = refresh_token(&fake).await;
    assert_eq!(token["instance_url"], json!(fake.base_url()));
    assert_eq!(token["token_type"], json!("Bearer"));
    for key in ["access_token", "id", "issued_at", "signature"] {
        assert!(token[key].is_string(), "{key} missing: {token}");
    }
    let response = Client::new()
        .post(format!("{}/services/oauth2/token", fake.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "fake-client-id"),
            ("client_secret", "fake-client-secret"),
            ("refresh_token", "nope"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"error": "invalid_grant", "error_description": "expired access/refresh token"}));
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn jwt_bearer_flow_checks_claims_but_not_the_signature() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let exp = chrono::Utc::now().timestamp() + 180;
    let post = |assertion: String| {
        let url = format!("{}/services/oauth2/token", fake.base_url());
        async move {
            let response = Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .expect("token request");
            (response.status(), response.json::<Value>().await.expect("JSON"))
        }
    };
    let good = json!({"iss": "fake-client-id", "sub": "integration@example.com", "aud": "https://login.salesforce.com", "exp": exp});
    let (status, body) = post(jwt(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, _) = call(&token, Method::GET, data(&fake, "/sobjects/Contact/describe"), None).await;
    assert_eq!(status, StatusCode::OK);

    let mut expired = good.clone();
    expired["exp"] = json!(exp - 3600);
    let (status, body) = post(jwt(expired)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], json!("invalid_grant"));
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("https://example.com");
    assert_eq!(post(jwt(wrong_aud)).await.1["error_description"], json!("audience is invalid"));
    let mut wrong_iss = good;
    wrong_iss["iss"] = json!("someone-else");
    assert_eq!(post(jwt(wrong_iss)).await.1["error"], json!("invalid_client_id"));
    assert_eq!(post("garbage".to_owned()).await.1["error_description"], json!("invalid assertion"));
}

#[tokio::test]
async fn collections_upsert_creates_then_updates() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let token = login(&fake).await;
    let url = data(&fake, "/composite/sobjects/Contact/Customer_Id__c");
    let body = |last: &str| {
        json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Contact"}, "Customer_Id__c": "C-1", "LastName": last, "Email": "ada@example.com", "LTV__c": 12.5, "VIP__c": true},
            {"attributes": {"type": "Contact"}, "Customer_Id__c": "C-2", "LastName": "Hopper", "Birthdate": "1906-12-09"}
        ]})
    };
    let (status, first) = call(&token, Method::PATCH, url.clone(), Some(body("Lovelace"))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first[0]["success"], json!(true));
    assert_eq!(first[0]["created"], json!(true));
    assert_eq!(first[1]["created"], json!(true));
    let id = first[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("003"));

    let (status, second) = call(&token, Method::PATCH, url, Some(body("King"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second[0], json!({"id": id, "success": true, "errors": [], "created": false}));
    assert_eq!(fake.records("Contact").len(), 2);
    let record = fake.find("Contact", "Customer_Id__c", "c-1").expect("found case-insensitively");
    assert_eq!(record.fields["LastName"], json!("King"));
    assert_eq!(record.fields["VIP__c"], json!(true));
    assert_eq!(fake.find("Contact", "Id", &id).map(|r| r.id), Some(id));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn per_record_errors_use_the_documented_shape() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let token = login(&fake).await;
    let long = "x".repeat(41);
    let body = json!({"records": [
        {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
        {"attributes": {"type": "Contact"}, "LastName": "Bad", "Email": "not-an-email"},
        {"attributes": {"type": "Contact"}, "LastName": "Long", "FirstName": long},
        {"attributes": {"type": "Contact"}, "LastName": "Fine"}
    ]});
    let (status, results) = call(&token, Method::POST, data(&fake, "/composite/sobjects"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(
        results[0],
        json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]})
    );
    assert_eq!(results[1]["errors"][0]["statusCode"], json!("INVALID_EMAIL_ADDRESS"));
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Email"]));
    assert_eq!(results[2]["errors"][0]["statusCode"], json!("STRING_TOO_LONG"));
    assert_eq!(results[3]["success"], json!(true));
    assert_eq!(fake.records("Contact").len(), 1);

    // allOrNone rolls the valid record back.
    let mut all = body;
    all["allOrNone"] = json!(true);
    let (_, results) = call(&token, Method::POST, data(&fake, "/composite/sobjects"), Some(all)).await;
    assert_eq!(results[3]["errors"][0]["statusCode"], json!("ALL_OR_NONE_OPERATION_ROLLED_BACK"));
    assert_eq!(fake.records("Contact").len(), 1);

    // Wrong types and unknown fields fail the whole request while it is deserialised.
    let bad_type = json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "T", "LTV__c": "abc"}]});
    let (status, body) = call(&token, Method::POST, data(&fake, "/composite/sobjects"), Some(bad_type)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], json!("JSON_PARSER_ERROR"));
    let unknown = json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "T", "Nope__c": 1}]});
    let (status, body) = call(&token, Method::POST, data(&fake, "/composite/sobjects"), Some(unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], json!("INVALID_FIELD"));

    // Deletes: unknown and already deleted ids.
    let id = fake.records("Contact")[0].id.clone();
    let ids = format!("/composite/sobjects?ids={id},003Dn0000009999AAA&allOrNone=false");
    let (_, results) = call(&token, Method::DELETE, data(&fake, &ids), None).await;
    assert_eq!(results[0]["success"], json!(true));
    assert_eq!(results[1]["errors"][0]["statusCode"], json!("MALFORMED_ID"));
    let (_, results) = call(&token, Method::DELETE, data(&fake, &format!("/composite/sobjects?ids={id}")), None).await;
    assert_eq!(results[0]["errors"][0]["statusCode"], json!("ENTITY_IS_DELETED"));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn more_than_200_records_is_a_request_error() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let token = login(&fake).await;
    let records: Vec<Value> =
        (0..201).map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("L{i}")})).collect();
    let (status, body) =
        call(&token, Method::POST, data(&fake, "/composite/sobjects"), Some(json!({"records": records}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], json!("EXCEEDED_ID_LIMIT"));
    assert!(fake.records("Contact").is_empty());
}

#[tokio::test]
async fn bulk_upsert_job_end_to_end() {
    let options = SalesforceOptions { bulk_poll_until_complete: 2, ..SalesforceOptions::default() };
    let fake = SalesforceFake::start(options).await;
    let token = login(&fake).await;
    let create = json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Customer_Id__c", "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"});
    let (status, job) = call(&token, Method::POST, data(&fake, "/jobs/ingest"), Some(create)).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], json!("Open"));
    let id = job["id"].as_str().expect("job id").to_owned();
    assert_eq!(job["contentUrl"], json!(format!("services/data/v{API_VERSION}/jobs/ingest/{id}/batches")));

    let csv = "Customer_Id__c,LastName,Email,LTV__c\nC-1,Lovelace,ada@example.com,10\n\"C-2\",\"Hopper, Grace\",,#N/A\nC-3,,x@example.com,abc\nC-4,Bad,nope,1\n";
    let response = Client::new()
        .put(data(&fake, &format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let (_, job) = call(
        &token,
        Method::PATCH,
        data(&fake, &format!("/jobs/ingest/{id}")),
        Some(json!({"state": "UploadComplete"})),
    )
    .await;
    assert_eq!(job["state"], json!("UploadComplete"));
    let mut states = Vec::new();
    loop {
        let (_, job) = call(&token, Method::GET, data(&fake, &format!("/jobs/ingest/{id}")), None).await;
        states.push(job["state"].as_str().expect("state").to_owned());
        if job["state"] == json!("JobComplete") {
            assert_eq!(job["numberRecordsProcessed"], json!(4));
            assert_eq!(job["numberRecordsFailed"], json!(2));
            break;
        }
        assert!(states.len() < 5, "job never completed: {states:?}");
    }
    assert_eq!(states, ["InProgress", "InProgress", "JobComplete"]);

    let get_csv = |kind: &str| {
        let url = data(&fake, &format!("/jobs/ingest/{id}/{kind}/"));
        let token = token.clone();
        async move { Client::new().get(url).bearer_auth(token).send().await.expect("results").text().await.expect("csv") }
    };
    let ok = get_csv("successfulResults").await;
    let lines: Vec<&str> = ok.lines().collect();
    assert_eq!(lines[0], r#""sf__Id","sf__Created","Customer_Id__c","LastName","Email","LTV__c""#);
    assert_eq!(lines.len(), 3, "{ok}");
    assert!(lines[2].contains(r##""true","C-2","Hopper, Grace","","#N/A""##), "{ok}");
    let failed = get_csv("failedResults").await;
    let lines: Vec<&str> = failed.lines().collect();
    assert_eq!(lines[0], r#""sf__Id","sf__Error","Customer_Id__c","LastName","Email","LTV__c""#);
    assert!(
        lines[1].starts_with(r#""","INVALID_TYPE_ON_FIELD_IN_RECORD:LTV: value not of required type: abc""#),
        "{failed}"
    );
    assert!(lines[2].contains("INVALID_EMAIL_ADDRESS:"), "{failed}");

    let grace = fake.find("Contact", "Customer_Id__c", "C-2").expect("C-2 upserted");
    assert_eq!(grace.fields["LastName"], json!("Hopper, Grace"));
    assert!(!grace.fields.contains_key("LTV__c"));
    assert_eq!(fake.find("Contact", "Customer_Id__c", "C-1").expect("C-1").fields["LTV__c"], json!(10));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn expired_token_answers_401_until_a_new_one_is_obtained() {
    let options = SalesforceOptions { expire_token_after: Some(2), ..SalesforceOptions::default() };
    let fake = SalesforceFake::start(options).await;
    let token = login(&fake).await;
    let url = data(&fake, "/sobjects/Account/describe");
    for _ in 0..2 {
        assert_eq!(call(&token, Method::GET, url.clone(), None).await.0, StatusCode::OK);
    }
    let (status, body) = call(&token, Method::GET, url.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    assert_eq!(call(&token, Method::GET, url.clone(), None).await.0, StatusCode::UNAUTHORIZED);
    let fresh = login(&fake).await;
    assert_ne!(fresh, token);
    assert_eq!(call(&fresh, Method::GET, url.clone(), None).await.0, StatusCode::OK);
    assert_eq!(call("", Method::GET, url, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn describe_lists_fields_and_404s_unknown_objects() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let token = login(&fake).await;
    let (status, body) = call(&token, Method::GET, data(&fake, "/sobjects/Contact/describe"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], json!("Contact"));
    let field = |name: &str| {
        body["fields"].as_array().expect("fields").iter().find(|f| f["name"] == json!(name)).cloned().expect(name)
    };
    let ext = field("Customer_Id__c");
    assert_eq!(
        (ext["externalId"].clone(), ext["unique"].clone(), ext["idLookup"].clone()),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(ext["length"], json!(64));
    assert_eq!(field("LastName")["nillable"], json!(false));
    assert_eq!(field("LTV__c")["type"], json!("currency"));
    assert_eq!(field("AccountId")["referenceTo"], json!(["Account"]));
    let (status, body) = call(&token, Method::GET, data(&fake, "/sobjects/Nope__c/describe"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]));
}

#[tokio::test]
async fn faults_apply_to_data_requests() {
    use sluice_fakes::salesforce::Fault;
    let options =
        SalesforceOptions { faults: vec![Fault::Status(503), Fault::RequestLimit], ..SalesforceOptions::default() };
    let fake = SalesforceFake::start(options).await;
    let token = login(&fake).await;
    let url = data(&fake, "/sobjects/Contact/describe");
    assert_eq!(call(&token, Method::GET, url.clone(), None).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = call(&token, Method::GET, url.clone(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body[0]["errorCode"], json!("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(call(&token, Method::GET, url, None).await.0, StatusCode::OK);
}
