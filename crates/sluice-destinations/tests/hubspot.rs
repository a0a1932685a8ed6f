//! HubSpot destination against the faithful fake in `sluice-fakes`.
#![cfg(feature = "hubspot")]

use std::time::Duration;

use arrow_schema::DataType;
use sluice_core::{
    Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome, OutcomeStatus, SyncMode,
    Target, Value, WriteContext,
};
use sluice_destinations::hubspot::{HubSpotConfig, HubSpotDestination};
use sluice_fakes::hubspot::{Fault, HubSpotFake, HubSpotOptions, DEFAULT_PRIVATE_APP_TOKEN};

const FIELDS: [&str; 4] = ["email", "firstname", "lastname", "ltv"];

fn config(fake: &HubSpotFake, auth: serde_json::Value) -> HubSpotConfig {
    let mut value =
        serde_json::json!({ "endpoint": fake.base_url(), "token_url": format!("{}/oauth/v1/token", fake.base_url()) });
    value.as_object_mut().unwrap().extend(auth.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn with_token(fake: &HubSpotFake, token: &str) -> HubSpotDestination {
    HubSpotDestination::new(config(fake, serde_json::json!({ "token": token })), None).unwrap()
}

fn with_oauth(fake: &HubSpotFake) -> HubSpotDestination {
    let oauth = serde_json::json!({ "oauth": {
        "client_id": "fake-client-id", "client_secret": "fake-client-secret", "refresh_token": "fake-refresh-token"
    }});
    HubSpotDestination::new(config(fake, oauth), None).unwrap()
}

fn target(mode: SyncMode, object: Option<&str>, match_field: Option<&str>, fields: &[&str]) -> Target {
    Target {
        sync: "contacts_to_hubspot".into(),
        mode,
        fields: fields.iter().map(|f| FieldSpec { name: (*f).into(), data_type: DataType::Utf8 }).collect(),
        key_field: None,
        object: object.map(String::from),
        match_field: match_field.map(String::from),
        associations: Vec::new(),
        planned_changes: 0,
        full_sync: false,
    }
}

fn context(mode: SyncMode) -> WriteContext {
    WriteContext {
        sync: "contacts_to_hubspot".into(),
        run_id: 1,
        mode,
        object: Some("contacts".into()),
        capture: None,
        rate: None,
    }
}

fn change(op: ChangeOp, key: &str, values: &[Value]) -> Change {
    Change { op, key: key.into(), fingerprint: Fingerprint(1), values: values.to_vec(), destination_id: None }
}

fn person(op: ChangeOp, key: &str, email: &str, first: &str, ltv: Value) -> Change {
    change(op, key, &[Value::Text(email.into()), Value::Text(first.into()), Value::Null, ltv])
}

fn batch(changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: FIELDS.iter().map(|f| f.to_string()).collect(), changes }
}

/// A destination prepared for upserting contacts by email.
async fn prepared(fake: &HubSpotFake, mode: SyncMode) -> HubSpotDestination {
    let destination = with_token(fake, DEFAULT_PRIVATE_APP_TOKEN);
    destination.prepare(&target(mode, Some("contacts"), Some("email"), &FIELDS)).await.unwrap();
    destination
}

#[tokio::test]
async fn upsert_creates_then_updates_by_email_and_returns_ids() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert).await;
    let limits = destination.delivery_limits();
    assert!(limits.split_rejected_batches);
    assert_eq!(limits.quotas[0].requests, 190);
    assert_eq!(limits.quotas[1].per, Duration::from_secs(86_400));

    let first = batch(vec![
        person(ChangeOp::Insert, "1", "Ada@Example.com", "Ada", Value::Int(120)),
        person(ChangeOp::Insert, "2", "grace@example.com", "Grace", Value::Float(9.5)),
    ]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &first).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied), "{outcomes:?}");
    let ada = fake.find("contacts", "email", "ada@example.com").expect("ada created");
    let grace = fake.find("contacts", "email", "grace@example.com").expect("grace created");
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(ada.id.as_str()));
    assert_eq!(outcomes[1].destination_id.as_deref(), Some(grace.id.as_str()));
    assert_eq!(ada.properties["ltv"], "120");
    assert_eq!(ada.properties["lastname"], "", "null is sent as an empty string");

    let second = batch(vec![person(ChangeOp::Update, "1", "ada@example.com", "Augusta", Value::Int(130))]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &second).await.unwrap();
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(ada.id.as_str()));
    assert_eq!(fake.objects("contacts").len(), 2, "updated, not created again");
    assert_eq!(fake.find("contacts", "email", "ada@example.com").unwrap().properties["firstname"], "Augusta");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn insert_and_update_modes_use_create_and_update() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = with_token(&fake, DEFAULT_PRIVATE_APP_TOKEN);
    destination.prepare(&target(SyncMode::Insert, Some("contacts"), None, &FIELDS)).await.unwrap();
    let created = batch(vec![person(ChangeOp::Insert, "1", "a@example.com", "A", Value::Null)]);
    let outcomes = destination.write(&context(SyncMode::Insert), &created).await.unwrap();
    let id = fake.find("contacts", "email", "a@example.com").unwrap().id;
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(id.as_str()));

    destination.prepare(&target(SyncMode::Update, Some("contacts"), Some("email"), &FIELDS)).await.unwrap();
    let updated = batch(vec![
        person(ChangeOp::Update, "1", "a@example.com", "B", Value::Null),
        person(ChangeOp::Update, "2", "", "C", Value::Null),
    ]);
    let outcomes = destination.write(&context(SyncMode::Update), &updated).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1], Outcome::rejected("`email` is empty, so HubSpot cannot match this record"));
    assert_eq!(fake.find("contacts", "email", "a@example.com").unwrap().properties["firstname"], "B");
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/crm/v3/objects/contacts/batch/create".to_string()), "{paths:?}");
    assert!(paths.contains(&"/crm/v3/objects/contacts/batch/update".to_string()), "{paths:?}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_partial_failure_rejects_exactly_the_bad_input() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert).await;
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", "good@example.com", "Good", Value::Int(1)),
        person(ChangeOp::Insert, "2", "bad@example.com", "Bad", Value::Text("lots".into())),
        person(ChangeOp::Insert, "3", "fine@example.com", "Fine", Value::Int(3)),
    ]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[2].status, OutcomeStatus::Applied);
    assert!(outcomes[0].destination_id.is_some() && outcomes[2].destination_id.is_some());
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    let message = outcomes[1].message.as_deref().unwrap();
    assert!(message.contains("lots was not a valid number"), "{message}");
    assert!(fake.find("contacts", "email", "bad@example.com").is_none());
    assert_eq!(fake.requests().last().unwrap().status, 207);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_is_permanent_for_bisecting() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert).await;
    let changes = batch(vec![person(ChangeOp::Insert, "1", "bad@example.com", "Bad", Value::Text("x".into()))]);
    let error = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("x was not a valid number"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn an_expired_oauth_token_is_refreshed_once_and_the_request_retried() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = with_oauth(&fake);
    destination.prepare(&target(SyncMode::Upsert, Some("contacts"), Some("email"), &FIELDS)).await.unwrap();
    fake.expire_access_tokens();
    let changes = batch(vec![person(ChangeOp::Insert, "1", "o@example.com", "O", Value::Null)]);
    let outcomes = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    let state = fake.state();
    assert_eq!(state.counters.unauthorized, 1);
    assert_eq!(state.counters.token_refreshes, 2, "one to start, one after the 401");
    drop(state);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_rejected_private_app_token_is_an_auth_error() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = with_token(&fake, "pat-na1-revoked");
    let error = destination.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("Authentication credentials not found"), "{}", error.message);
    let error = destination
        .write(&context(SyncMode::Insert), &batch(vec![person(ChangeOp::Insert, "1", "a@b.co", "A", Value::Null)]))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert_eq!(fake.state().counters.unauthorized, 2, "a private-app token is not retried");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_with_the_wait() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert).await;
    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 7 });
    let changes = batch(vec![person(ChangeOp::Insert, "1", "a@example.com", "A", Value::Null)]);
    let error = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));

    fake.inject_fault(Fault::Status(502));
    let error = destination.write(&context(SyncMode::Upsert), &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn mirror_deletes_archive_by_record_id() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Mirror).await;
    let created = batch(vec![person(ChangeOp::Insert, "1", "gone@example.com", "Gone", Value::Null)]);
    let id = destination.write(&context(SyncMode::Mirror), &created).await.unwrap()[0].destination_id.clone();
    assert!(id.is_some());

    let mut delete = change(ChangeOp::Delete, "1", &[]);
    delete.destination_id = id;
    let changes = batch(vec![
        delete,
        change(ChangeOp::Delete, "2", &[]),
        person(ChangeOp::Insert, "3", "new@example.com", "New", Value::Null),
    ]);
    let outcomes = destination.write(&context(SyncMode::Mirror), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(
        outcomes[1],
        Outcome::rejected(
            "no HubSpot record id is known for this record (it was not created by this sync); archive it in HubSpot"
        )
    );
    assert_eq!(outcomes[2].status, OutcomeStatus::Applied);
    assert!(fake.find("contacts", "email", "gone@example.com").is_none(), "archived");
    assert!(fake.find("contacts", "email", "new@example.com").is_some());
    assert_eq!(fake.state().counters.archived, 1);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn prepare_checks_the_object_fields_and_match_key() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = with_token(&fake, DEFAULT_PRIVATE_APP_TOKEN);

    let error = destination.prepare(&target(SyncMode::Upsert, None, Some("email"), &FIELDS)).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("set `object:` on the sync, e.g. contacts"), "{}", error.message);

    let fields = ["email", "favourite_colour", "shoe_size"];
    let error = destination.prepare(&target(SyncMode::Upsert, Some("contacts"), Some("email"), &fields)).await;
    let error = error.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("`favourite_colour`, `shoe_size`"), "{}", error.message);

    let error = destination.prepare(&target(SyncMode::Upsert, Some("contacts"), Some("firstname"), &FIELDS)).await;
    let error = error.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("`firstname` cannot be used in match_on"), "{}", error.message);

    let error = destination.prepare(&target(SyncMode::Mirror, Some("contacts"), None, &FIELDS)).await.unwrap_err();
    assert!(error.message.contains("match_on"), "{}", error.message);

    let error = destination.prepare(&target(SyncMode::Insert, Some("widgets"), None, &FIELDS)).await.unwrap_err();
    assert!(error.message.contains("no object `widgets`"), "{}", error.message);

    // Leaving an audience must not delete a CRM record.
    let error = destination.prepare(&target(SyncMode::Audience, Some("contacts"), None, &FIELDS)).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("HubSpot does not take `mode: audience`"), "{}", error.message);

    destination
        .prepare(&target(SyncMode::Upsert, Some("companies"), Some("domain"), &["domain", "name"]))
        .await
        .unwrap();
    destination.prepare(&target(SyncMode::Upsert, Some("contacts"), Some("email"), &FIELDS)).await.unwrap();
    let catalogue_reads = fake.requests().iter().filter(|r| r.path == "/crm/v3/properties/contacts").count();
    assert_eq!(catalogue_reads, 1, "the property catalogue is cached");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn discover_lists_contact_properties_with_email_as_the_match_key() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = with_token(&fake, DEFAULT_PRIVATE_APP_TOKEN);
    destination.check().await.unwrap();

    let contacts = destination.discover(Some("contacts")).await.unwrap();
    assert_eq!(contacts.len(), 1);
    let email = contacts[0].fields.iter().find(|f| f.name == "email").expect("email listed");
    assert!(email.can_match_on);
    let ltv = contacts[0].fields.iter().find(|f| f.name == "ltv").expect("ltv listed");
    assert_eq!(ltv.field_type, "number");
    assert!(!ltv.can_match_on);
    assert_eq!(contacts[0].modes.len(), 4);

    // The fake's account has contacts and companies only: deals and tickets are left out.
    let all = destination.discover(None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["contacts", "companies"]);
    assert!(all[1].fields.iter().any(|f| f.name == "domain" && f.can_match_on));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn config_errors_name_the_key_and_accounts_hide_secrets() {
    let decode = |value: serde_json::Value| serde_json::from_value::<HubSpotConfig>(value).unwrap();
    let key = |value: serde_json::Value| HubSpotDestination::new(decode(value), None).err().map(|(key, _)| key);
    assert_eq!(key(serde_json::json!({})), Some("token"));
    assert_eq!(
        key(serde_json::json!({"token": "t", "oauth": {"client_id": "a", "client_secret": "b", "refresh_token": "c"}})),
        Some("oauth")
    );
    assert_eq!(key(serde_json::json!({"token": "t", "batch_size": 101})), Some("batch_size"));
    assert_eq!(key(serde_json::json!({"token": "t", "endpoint": "ftp://x"})), Some("endpoint"));
    assert_eq!(key(serde_json::json!({"token": "t", "max_concurrency": 0})), Some("max_concurrency"));
    assert!(serde_json::from_value::<HubSpotConfig>(serde_json::json!({"token": "t", "tokn": "x"})).is_err());

    let destination = HubSpotDestination::new(decode(serde_json::json!({"token": "pat-na1-secret"})), None).unwrap();
    assert!(destination.account_key().starts_with("hubspot https://api.hubapi.com"));
    assert!(!destination.account_key().contains("secret"));
    assert!(destination.accepts_object() && destination.accepts_match_on() && destination.wants_destination_ids());
    assert_eq!(destination.batch_size(), 100);
    assert_eq!(destination.delivery_limits().max_concurrency, 4);
}

#[tokio::test]
async fn rate_limit_headers_are_reported_so_the_account_budget_can_slow_down() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Upsert).await;
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(u64, Duration)>>> = Default::default();
    let mut context = context(SyncMode::Upsert);
    context.rate = Some(sluice_core::RateFeedback(std::sync::Arc::new({
        let seen = seen.clone();
        move |remaining, resets_in| seen.lock().unwrap().push((remaining, resets_in))
    })));
    let write = batch(vec![person(ChangeOp::Insert, "1", "ada@example.com", "Ada", Value::Int(1))]);
    destination.write(&context, &write).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (remaining, resets_in) = seen[0];
    assert!(remaining < 190, "the fake counts this request: {remaining}");
    assert_eq!(resets_in, Duration::from_millis(10_000 / 190), "one slot of the rolling window");
}
