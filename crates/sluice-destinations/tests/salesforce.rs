//! Salesforce destination against the faithful fake in `sluice-fakes`.
#![cfg(feature = "salesforce")]

use arrow_schema::DataType;
use sluice_core::{
    Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome, OutcomeStatus, SyncMode,
    Target, Value, WriteContext,
};
use sluice_destinations::salesforce::{SalesforceConfig, SalesforceDestination};
use sluice_fakes::salesforce::{Fault, SalesforceFake, SalesforceOptions, API_VERSION};

const FIELDS: [&str; 5] = ["Customer_Id__c", "FirstName", "LastName", "Email", "LTV__c"];

fn destination(fake: &SalesforceFake, extra: serde_json::Value) -> SalesforceDestination {
    let mut value = serde_json::json!({
        "endpoint": fake.base_url(),
        "api_version": API_VERSION,
        "oauth": { "client_id": "fake-client-id", "client_secret": "fake-client-secret", "refresh_token": "fake-refresh-token" },
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let config: SalesforceConfig = serde_json::from_value(value).unwrap();
    SalesforceDestination::new(config, None).unwrap()
}

fn target(mode: SyncMode, match_field: Option<&str>, fields: &[&str]) -> Target {
    Target {
        sync: "contacts_to_sf".into(),
        mode,
        fields: fields.iter().map(|f| FieldSpec { name: (*f).into(), data_type: DataType::Utf8 }).collect(),
        key_field: None,
        object: Some("Contact".into()),
        match_field: match_field.map(String::from),
        associations: Vec::new(),
        planned_changes: 0,
        full_sync: false,
    }
}

fn context(mode: SyncMode) -> WriteContext {
    WriteContext {
        sync: "contacts_to_sf".into(),
        run_id: 1,
        mode,
        object: Some("Contact".into()),
        capture: None,
        rate: None,
    }
}

fn person(op: ChangeOp, key: &str, last: Option<&str>, email: &str, ltv: Value) -> Change {
    let text = |s: &str| Value::Text(s.into());
    Change {
        op,
        key: key.into(),
        fingerprint: Fingerprint(1),
        values: vec![text(&format!("C-{key}")), text("First"), last.map(text).unwrap_or(Value::Null), text(email), ltv],
        destination_id: None,
    }
}

fn batch(changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: FIELDS.iter().map(|f| f.to_string()).collect(), changes }
}

async fn prepared(fake: &SalesforceFake, mode: SyncMode, extra: serde_json::Value) -> SalesforceDestination {
    let destination = destination(fake, extra);
    destination.prepare(&target(mode, Some("Customer_Id__c"), &FIELDS)).await.unwrap();
    destination
}

fn applied_all(outcomes: &[Outcome]) -> bool {
    outcomes.iter().all(|o| o.status == OutcomeStatus::Applied)
}

#[tokio::test]
async fn upsert_creates_then_updates_by_external_id_and_returns_ids() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert, serde_json::json!({})).await;
    assert_eq!(destination.batch_size(), 200);
    let first = batch(vec![
        person(ChangeOp::Insert, "1", Some("Lovelace"), "ada@example.com", Value::Text("120.5".into())),
        person(ChangeOp::Insert, "2", Some("Hopper"), "grace@example.com", Value::Int(9)),
    ]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &first).await.unwrap();
    assert!(applied_all(&outcomes), "{outcomes:?}");
    let ada = fake.find("Contact", "Customer_Id__c", "C-1").expect("ada created");
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(ada.id.as_str()));
    assert_eq!(ada.fields["LastName"], "Lovelace");
    assert_eq!(ada.fields["LTV__c"].as_f64(), Some(120.5));

    let second = batch(vec![person(ChangeOp::Update, "1", Some("King"), "ada@example.com", Value::Null)]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &second).await.unwrap();
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(ada.id.as_str()));
    assert_eq!(fake.records("Contact").len(), 2, "updated, not created again");
    let ada = fake.find("Contact", "Customer_Id__c", "C-1").unwrap();
    assert_eq!(ada.fields["LastName"], "King");
    assert!(!ada.fields.contains_key("LTV__c"), "null clears the field: {ada:?}");
    assert!(fake.requests().iter().any(|r| r.path.ends_with("/composite/sobjects/Contact/Customer_Id__c")));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn records_salesforce_refuses_are_rejected_with_its_message() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert, serde_json::json!({})).await;
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", None, "a@example.com", Value::Null),
        person(ChangeOp::Insert, "2", Some("Ok"), "b@example.com", Value::Null),
        person(ChangeOp::Insert, "3", Some("Typo"), "c@example.com", Value::Text("abc".into())),
    ]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Rejected);
    let message = outcomes[0].message.as_deref().unwrap();
    assert!(message.starts_with("REQUIRED_FIELD_MISSING: "), "{message}");
    assert!(message.contains("LastName"), "{message}");
    assert_eq!(outcomes[1].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[2], Outcome::rejected("LTV__c: 'abc' is not a number"));
    assert!(fake.find("Contact", "Customer_Id__c", "C-3").is_none());
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn an_expired_session_is_refreshed_once_and_retried() {
    let options = SalesforceOptions { expire_token_after: Some(1), ..SalesforceOptions::default() };
    let fake = SalesforceFake::start(options).await;
    let destination = prepared(&fake, SyncMode::Upsert, serde_json::json!({})).await;
    let changes = batch(vec![person(ChangeOp::Insert, "1", Some("L"), "a@example.com", Value::Null)]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert!(applied_all(&outcomes), "{outcomes:?}");
    assert_eq!(fake.token_requests(), 2);
    assert!(fake.requests().iter().any(|r| r.status == 401));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn limits_and_outages_are_classified() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert, serde_json::json!({})).await;
    let changes = batch(vec![person(ChangeOp::Insert, "1", Some("L"), "a@example.com", Value::Null)]);
    fake.inject_fault(Fault::RequestLimit);
    let error = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited, "{}", error.message);
    fake.inject_fault(Fault::Status(503));
    let error = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient, "{}", error.message);
    let bad = SalesforceDestination::new(
        serde_json::from_value(serde_json::json!({
            "endpoint": fake.base_url(),
            "oauth": { "client_id": "fake-client-id", "client_secret": "fake-client-secret", "refresh_token": "revoked" },
        }))
        .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(bad.check().await.unwrap_err().class, ErrorClass::Auth);
}

#[tokio::test]
async fn bulk_transport_runs_an_ingest_job_and_reports_failed_rows() {
    let fake =
        SalesforceFake::start(SalesforceOptions { bulk_poll_until_complete: 2, ..SalesforceOptions::default() }).await;
    let destination = prepared(&fake, SyncMode::Upsert, serde_json::json!({ "transport": "bulk" })).await;
    assert_eq!(destination.batch_size(), 10_000);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", Some("Lovelace"), "ada@example.com", Value::Float(1.5)),
        person(ChangeOp::Insert, "2", None, "b@example.com", Value::Null),
        person(ChangeOp::Insert, "3", Some("Hopper, \"Amazing\" Grace"), "grace@example.com", Value::Int(3)),
    ]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[2].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected, "{outcomes:?}");
    assert!(outcomes[1].message.as_deref().unwrap().contains("REQUIRED_FIELD_MISSING"), "{outcomes:?}");
    let grace = fake.find("Contact", "Customer_Id__c", "C-3").unwrap();
    assert_eq!(outcomes[2].destination_id.as_deref(), Some(grace.id.as_str()));
    assert_eq!(grace.fields["LastName"], "Hopper, \"Amazing\" Grace");
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.iter().any(|p| p.ends_with("/jobs/ingest")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("/composite/")), "{paths:?}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn mirror_deletes_by_salesforce_id_and_updates_by_id() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Mirror, serde_json::json!({})).await;
    let created = batch(vec![
        person(ChangeOp::Insert, "1", Some("A"), "a@example.com", Value::Null),
        person(ChangeOp::Insert, "2", Some("B"), "b@example.com", Value::Null),
    ]);
    let outcomes = destination.write(&context(SyncMode::Mirror), &created).await.unwrap();
    let ids: Vec<String> = outcomes.iter().map(|o| o.destination_id.clone().unwrap()).collect();
    let delete = |key: &str, id: Option<String>| Change {
        op: ChangeOp::Delete,
        key: key.into(),
        fingerprint: Fingerprint(0),
        values: Vec::new(),
        destination_id: id,
    };
    let deletes = batch(vec![delete("1", Some(ids[0].clone())), delete("9", None)]);
    let outcomes = destination.write(&context(SyncMode::Mirror), &deletes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert!(outcomes[1].message.as_deref().unwrap().contains("no Salesforce Id known"));
    assert_eq!(fake.records("Contact").len(), 1);

    // Update mode writes by the stored Id, and refuses records without one.
    let updater = destination_for_update(&fake).await;
    let mut known = person(ChangeOp::Update, "2", Some("Bee"), "b@example.com", Value::Null);
    known.destination_id = Some(ids[1].clone());
    let unknown = person(ChangeOp::Update, "7", Some("X"), "x@example.com", Value::Null);
    let outcomes = updater.write(&context(SyncMode::Update), &batch(vec![known, unknown])).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert!(outcomes[1].message.as_deref().unwrap().contains("no Salesforce Id known"), "{outcomes:?}");
    assert_eq!(fake.find("Contact", "Id", &ids[1]).unwrap().fields["LastName"], "Bee");
    assert_eq!(fake.invalid_requests(), 0);
}

async fn destination_for_update(fake: &SalesforceFake) -> SalesforceDestination {
    let destination = destination(fake, serde_json::json!({}));
    destination.prepare(&target(SyncMode::Update, None, &FIELDS)).await.unwrap();
    destination
}

#[tokio::test]
async fn prepare_checks_fields_match_keys_and_required_fields() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = destination(&fake, serde_json::json!({}));
    let error = destination.prepare(&target(SyncMode::Upsert, Some("Customer_Id__c"), &["LastName", "Emial"])).await;
    let error = error.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("`Emial` (did you mean `Email`?)"), "{}", error.message);
    let error = destination.prepare(&target(SyncMode::Upsert, Some("FirstName"), &["LastName"])).await.unwrap_err();
    assert!(error.message.contains("`FirstName` cannot be used in match_on"), "{}", error.message);
    let error = destination.prepare(&target(SyncMode::Insert, None, &["FirstName"])).await.unwrap_err();
    assert!(error.message.contains("requires `LastName`"), "{}", error.message);
    destination.prepare(&target(SyncMode::Update, None, &["FirstName"])).await.unwrap();
    let mut unknown = target(SyncMode::Insert, None, &["LastName"]);
    unknown.object = Some("Invoice__c".into());
    assert!(destination.prepare(&unknown).await.unwrap_err().message.contains("no object `Invoice__c`"));
}

#[tokio::test]
async fn discover_lists_the_objects_the_org_has() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = destination(&fake, serde_json::json!({}));
    let objects = destination.discover(None).await.unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["Contact", "Account"]);
    let contact = &objects[0];
    let field = |name: &str| contact.fields.iter().find(|f| f.name == name).unwrap();
    assert!(field("Customer_Id__c").can_match_on);
    assert!(!field("FirstName").can_match_on);
    assert!(field("LastName").required);
    assert!(!field("VIP__c").required);
    assert_eq!(contact.modes.len(), 4);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn values_are_coerced_to_salesforce_types() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = destination(&fake, serde_json::json!({}));
    let fields = ["Customer_Id__c", "LastName", "VIP__c", "Birthdate"];
    destination.prepare(&target(SyncMode::Upsert, Some("Customer_Id__c"), &fields)).await.unwrap();
    let row = |key: &str, vip: Value, birth: Value| Change {
        op: ChangeOp::Insert,
        key: key.into(),
        fingerprint: Fingerprint(1),
        values: vec![Value::Text(format!("C-{key}")), Value::Text("L".into()), vip, birth],
        destination_id: None,
    };
    let changes = ChangeBatch {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        changes: vec![
            row("1", Value::Text("yes".into()), Value::Date(11_000)),
            row("2", Value::Text("perhaps".into()), Value::Null),
            row("3", Value::Bool(false), Value::Text("31/12/1999".into())),
        ],
    };
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[1], Outcome::rejected("VIP__c: 'perhaps' is not a boolean (true or false)"));
    assert_eq!(outcomes[2], Outcome::rejected("Birthdate: '31/12/1999' is not a date (YYYY-MM-DD)"));
    let one = fake.find("Contact", "Customer_Id__c", "C-1").unwrap();
    assert_eq!(one.fields["VIP__c"], true);
    assert_eq!(one.fields["Birthdate"], "2000-02-13");
    assert_eq!(fake.invalid_requests(), 0);
}

/// A throwaway 2048-bit RSA key generated for this test only (the fake does not verify signatures).
const TEST_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDIm+mQQ3fuR+x5\nJlnbx7ecwh4TWk6rgCL/Ytpq/quE2rEUPCpDmGUrgIpDZm57BxY2uUOJ1jY2q5Ov\nmjC1H9TSx6NPw2um+5SixSlo0n2Ix27k89DREPXwg4POzbL68l6qJfL/JgZpgHzL\nL/gJaPIhLT7W7cBZZamaPpGecw7xBv03Zf3et64tl7eqVgqjVpUuvdNiCe4GhOgC\nu5DN1+yES57LdN0bHIOEVe2x/3ikQLVDMRadOfJ/9rh+EQErMOJ0b9Xnv6AyxzZG\nz6JK9WsX6PRpieOd1GuiUmYUvhf442VypJi9MXwRFeDCPXmhevKgo29hcns1KlC5\nJ10LslhbAgMBAAECggEAUHHZPN0ZVEeqR8C9yvjxI97h4Z/WqUZGgoP5E2vRiwKJ\nfRRNXHLZqxKuHy4Nwq8KVOKA916budue6w2ZV6COnwGodx1l532+UnFe1CaIaZeT\n3CL7i0LSZOLQMddh3OjhVjjGk1ODwb3hDTfMrrVTV0OGDfkkJ5UxaGWLzm7UQIl3\naDYpg9hsOlrsDG5AyIWxEY24VlJklI1DnBnDvvkIZpkp0olprcrFkujws8rHgWM+\nSCtFydJ3TqoAhVPqkArvM29ZzEsO5Qyun+rWRQol0jg0Gy5EfnaRnwHpQCKf/cXZ\nw6Q4tcMPFXYnWCWl5DOBo3yj8gUdpJgSlzKrhlbrJQKBgQDv6J7ri33XR8awd0l7\nizkziP0SjIkKMJaU9toxJO15l8gm1cV/PLKx0mwYpQmMjb+WK5caMzTKKn5Ow0Zx\nAZoFCI12Mvqv5QkhMnzdGxloqlGD9F2yJkOcvU9qzqbcnhaJJQNsuKtF1Yg0WIwm\nW3GfJmcAQHpBsT0vIJAON6LkxwKBgQDWEH4anBvywmMF8vlqapoymcJGIBuoLVRM\nEXkT3f880hwaIcBVYKHils3L3g6+kjfkMFfg8YQO2FkoMYVUYIinvB20U0l5SA2Q\nFqvZt6pNXM13BPnuuVJ0bvbZ9XrT/4Xs/98moYru0hlms/Bq82Ev6bXHeAtdQNUm\n3QO9B2azzQKBgQDoTFRlOyJUq/llsXuDluGCVyjFJzMinL2R7ByF7X3MeP2jLOcZ\nNsrIiDmG+3btk+tpGzgqdF6vSsoWtdqlXamnKgrf4qj+XEWk0WA6MB1ATXq0zI9V\nCtv5Dw2xG/xSLvkfPqm8QmwFKKfEF+FM2sqAEg02HzjCFz5pPZx/R7wAzQKBgDex\npM2Rjifz8UWL+N56C9JcdNI/6lIwMP11klXb7VtKoysdWugbsyK776E6DgYBDu+c\nsFCDJcOjAFdXwwO39fYGGIhhHv2iBH1XmLCVe4aTPZXYwpoct1o5wJnmp2Ve1t5Z\nmBp57ybBnQA+kq+Q0Nlhaf0Su4owowRwfleBBHSFAoGARn7/0tIJj/J0v4COC5xT\nb1YP+GAhzTykWydLIUfi4qPrYg5LoWbUauEysIewVCCmcTcNzNPOGJFIX0ltTBx8\nmRPC2YXaNGN0EpyJsqQVnUd2dW62i/1+wXeHwmyd9zxlOtW3SBlImjR8WjJPBYwI\nwYwm1hI8E4menyWjbvtCsUA=\n-----END PRIVATE KEY-----";

#[tokio::test]
async fn jwt_bearer_flow_signs_an_assertion_for_the_user() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let config = serde_json::json!({
        "endpoint": fake.base_url(),
        "jwt": { "client_id": "fake-client-id", "username": "integration@example.com", "private_key": TEST_PRIVATE_KEY },
    });
    let destination = SalesforceDestination::new(serde_json::from_value(config).unwrap(), None).unwrap();
    destination.check().await.unwrap();
    assert_eq!(fake.token_requests(), 1);
    let wrong_user = serde_json::json!({
        "endpoint": fake.base_url(),
        "jwt": { "client_id": "fake-client-id", "username": "someone@example.com", "private_key": TEST_PRIVATE_KEY },
    });
    let destination = SalesforceDestination::new(serde_json::from_value(wrong_user).unwrap(), None).unwrap();
    let error = destination.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("user hasn't approved this consumer"), "{}", error.message);
    let not_a_key = serde_json::json!({
        "endpoint": fake.base_url(),
        "jwt": { "client_id": "x", "username": "y", "private_key": "not a key" },
    });
    let Err((key, _)) = SalesforceDestination::new(serde_json::from_value(not_a_key).unwrap(), None) else {
        panic!("a bad key must be refused")
    };
    assert_eq!(key, "jwt");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn audience_mode_is_refused_so_leaving_an_audience_never_deletes_a_record() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let destination = destination(&fake, serde_json::json!({}));
    let error = destination.prepare(&target(SyncMode::Audience, Some("Customer_Id__c"), &FIELDS)).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("Salesforce does not take `mode: audience`"), "{}", error.message);
    assert!(error.message.contains("use `upsert`"), "{}", error.message);
}
