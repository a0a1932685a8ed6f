//! Google Customer Match destination against the Data Manager API fake in `sluice-fakes`.
#![cfg(feature = "google")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::DataType;
use serde_json::json;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, RequestCapture, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::ads::members::Member;
use sluice_destinations::ads::Identifier;
use sluice_destinations::google::{GoogleConfig, GoogleDestination};
use sluice_fakes::google::{
    DataManagerFake, DataManagerOptions, Fault, OAuthApp, StoredIdentifier, StoredMember, DEFAULT_ACCOUNT_ID,
    DEFAULT_MOBILE_USER_LIST, DEFAULT_USER_LIST,
};

/// SHA-256 hex of `dana@example.com` and `danam@example.com` (from `DanaM@example.com`), as Google's
/// quickstart lists them after formatting and hashing its sample file
/// (<https://developers.google.com/data-manager/api/get-started/quickstart/send-audience-members>).
const DANA: &str = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3";
const DANAM: &str = "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7";

fn config(fake: &DataManagerFake, extra: serde_json::Value) -> GoogleConfig {
    let app = OAuthApp::default();
    let mut value = json!({
        "oauth": { "client_id": app.client_id, "client_secret": app.client_secret, "refresh_token": app.refresh_token },
        "operating_account": { "account_type": "GOOGLE_ADS", "account_id": DEFAULT_ACCOUNT_ID },
        "customer_match_terms_accepted": true,
        "consent": { "ad_user_data": "granted", "ad_personalization": "denied" },
        "api_url": fake.base_url(),
        "token_url": fake.token_url(),
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn destination(fake: &DataManagerFake) -> GoogleDestination {
    GoogleDestination::new(config(fake, json!({})), None).unwrap()
}

fn target(mode: SyncMode, object: Option<&str>, fields: &[&str]) -> Target {
    Target {
        sync: "vip_to_google".into(),
        mode,
        fields: fields.iter().map(|f| FieldSpec { name: (*f).into(), data_type: DataType::Utf8 }).collect(),
        key_field: None,
        object: object.map(String::from),
        match_field: None,
        associations: Vec::new(),
        planned_changes: 0,
        full_sync: false,
    }
}

fn context(object: &str) -> WriteContext {
    WriteContext {
        sync: "vip_to_google".into(),
        run_id: 1,
        mode: SyncMode::Audience,
        object: Some(object.into()),
        capture: None,
        rate: None,
    }
}

fn change(op: ChangeOp, key: &str, values: &[&str], destination_id: Option<&str>) -> Change {
    Change {
        op,
        key: key.into(),
        fingerprint: Fingerprint(key.len() as u128),
        values: values.iter().map(|v| if v.is_empty() { Value::Null } else { Value::Text((*v).into()) }).collect(),
        destination_id: destination_id.map(String::from),
    }
}

fn batch(fields: &[&str], changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: fields.iter().map(|f| f.to_string()).collect(), changes }
}

/// What the fake should hold for a member Sluice says it sent.
fn stored(destination_id: &str) -> StoredMember {
    let member = Member::from_destination_id(destination_id).expect("a destination id Sluice can read back");
    let get = |i: Identifier| member.identifiers.get(&i).cloned();
    let mut stored = StoredMember::new();
    if let Some(email) = get(Identifier::Email) {
        stored.insert(StoredIdentifier::Email(email));
    }
    if let Some(phone) = get(Identifier::Phone) {
        stored.insert(StoredIdentifier::Phone(phone));
    }
    if let (Some(given_name), Some(family_name), Some(region_code), Some(postal_code)) =
        (get(Identifier::FirstName), get(Identifier::LastName), get(Identifier::Country), get(Identifier::Zip))
    {
        stored.insert(StoredIdentifier::Address { given_name, family_name, region_code, postal_code });
    }
    if let Some(id) = get(Identifier::MobileAdId) {
        stored.insert(StoredIdentifier::MobileId(id));
    }
    stored
}

fn applied_ids(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| {
            assert_eq!(o.status, OutcomeStatus::Applied, "{o:?}");
            o.destination_id.clone().expect("applied members carry the id a later remove needs")
        })
        .collect()
}

const CONTACT: [&str; 2] = ["email", "phone"];

#[tokio::test]
async fn members_enter_leave_and_change_identifiers() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &CONTACT)).await.unwrap();
    let ctx = context(DEFAULT_USER_LIST);

    let entered = batch(
        &CONTACT,
        vec![
            change(ChangeOp::Insert, "1", &[" Dana@Example.com ", "+33 6 12 34 56 78"], None),
            change(ChangeOp::Insert, "2", &["DanaM@example.com", ""], None),
        ],
    );
    let ids = applied_ids(&destination.write(&ctx, &entered).await.unwrap());
    let members = fake.members(DEFAULT_USER_LIST);
    assert_eq!(members, BTreeSet::from([stored(&ids[0]), stored(&ids[1])]));
    assert!(stored(&ids[0]).contains(&StoredIdentifier::Email(DANA.into())), "Google's test vector");
    assert_eq!(stored(&ids[1]), StoredMember::from([StoredIdentifier::Email(DANAM.into())]));
    assert_eq!(stored(&ids[0]).len(), 2, "email and phone");

    // Member 1 changes email: the old identifiers are removed, the new ones added.
    let changed =
        batch(&CONTACT, vec![change(ChangeOp::Update, "1", &["dana.new@example.com", "+33612345678"], Some(&ids[0]))]);
    let new_ids = applied_ids(&destination.write(&ctx, &changed).await.unwrap());
    assert_ne!(new_ids[0], ids[0]);
    assert_eq!(fake.members(DEFAULT_USER_LIST), BTreeSet::from([stored(&new_ids[0]), stored(&ids[1])]));

    // Member 2 leaves: removed by the identifiers sent when it entered.
    let left = batch(&CONTACT, vec![change(ChangeOp::Delete, "2", &[], Some(&ids[1]))]);
    let outcomes = destination.write(&ctx, &left).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(fake.members(DEFAULT_USER_LIST), BTreeSet::from([stored(&new_ids[0])]));

    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/v1/audienceMembers:remove".to_string()), "{paths:?}");
    assert_eq!(fake.state().counters.token_refreshes, 1, "one access token serves the whole sync");
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn a_full_address_is_sent_with_its_unhashed_country_and_postal_code() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let fields = ["first_name", "last_name", "country", "zip"];
    destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &fields)).await.unwrap();
    let changes = batch(
        &fields,
        vec![
            change(ChangeOp::Insert, "1", &["Dana", "Martin", "fr", "75001"], None),
            change(ChangeOp::Insert, "2", &["Alex", "Jones", "", "10001"], None),
        ],
    );
    let outcomes = destination.write(&context(DEFAULT_USER_LIST), &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected, "an address without a country cannot be matched");
    let message = outcomes[1].message.as_deref().unwrap();
    assert!(!message.contains("Alex") && !message.contains("10001"), "{message}");
    let members = fake.members(DEFAULT_USER_LIST);
    let [member] = members.iter().collect::<Vec<_>>()[..] else { panic!("{members:?}") };
    let [StoredIdentifier::Address { given_name, region_code, postal_code, .. }] =
        member.iter().collect::<Vec<_>>()[..]
    else {
        panic!("{member:?}")
    };
    assert_eq!((region_code.as_str(), postal_code.as_str()), ("FR", "75001"));
    assert_eq!(given_name.len(), 64);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn batches_of_25000_members_stay_within_googles_limit() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    assert_eq!(destination.batch_size(), 10_000, "the documented maximum per request");
    let ctx = context(DEFAULT_USER_LIST);
    let emails: Vec<String> = (0..25_000).map(|i| format!("member{i}@example.com")).collect();
    let mut ids = Vec::new();
    let all: Vec<Change> =
        emails.iter().enumerate().map(|(i, e)| change(ChangeOp::Insert, &i.to_string(), &[e.as_str()], None)).collect();
    for chunk in all.chunks(destination.batch_size()) {
        ids.extend(applied_ids(&destination.write(&ctx, &batch(&["email"], chunk.to_vec())).await.unwrap()));
    }
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 25_000);
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.members).collect();
    assert_eq!(sizes, [10_000, 10_000, 5_000]);

    let leaving: Vec<Change> =
        ids.iter().enumerate().map(|(i, id)| change(ChangeOp::Delete, &i.to_string(), &[], Some(id))).collect();
    for chunk in leaving.chunks(destination.batch_size()) {
        let outcomes = destination.write(&ctx, &batch(&["email"], chunk.to_vec())).await.unwrap();
        assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied));
    }
    assert!(fake.members(DEFAULT_USER_LIST).is_empty());
    assert!(fake.requests().iter().all(|r| r.members <= 10_000));
    assert_eq!(fake.invalid_requests(), 0);

    // The fake holds Google to its limit: 10,001 members are refused whole.
    let too_many: Vec<serde_json::Value> = (0..10_001)
        .map(|i| json!({ "userData": { "userIdentifiers": [{ "emailAddress": format!("{i:064x}") }] } }))
        .collect();
    let token = fake.state().issued_tokens().last().cloned().unwrap();
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/audienceMembers:remove", fake.base_url()))
        .bearer_auth(token)
        .json(&json!({
            "destinations": [{ "operatingAccount": { "accountType": "GOOGLE_ADS", "accountId": DEFAULT_ACCOUNT_ID },
                               "productDestinationId": DEFAULT_USER_LIST }],
            "audienceMembers": too_many, "encoding": "HEX" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 400);
    assert!(reply.text().await.unwrap().contains("TOO_MANY_AUDIENCE_MEMBERS"));
    assert_eq!(fake.invalid_requests(), 1);
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_then_succeeds() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context(DEFAULT_USER_LIST);
    let one = batch(&["email"], vec![change(ChangeOp::Insert, "1", &["dana@example.com"], None)]);

    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: Some(7) });
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    assert!(
        error.message.contains("RESOURCE_EXHAUSTED") || error.message.contains("Quota exceeded"),
        "{}",
        error.message
    );
    assert!(fake.members(DEFAULT_USER_LIST).is_empty(), "nothing applied by a refused request");

    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: None });
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, None));

    applied_ids(&destination.write(&ctx, &one).await.unwrap());
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 1);
    assert_eq!(fake.state().counters.rate_limited, 2);

    let limits = destination.delivery_limits();
    assert_eq!(limits.quotas[0].requests, 300);
    assert_eq!(limits.quotas[0].per, Duration::from_secs(60));
    assert_eq!(limits.quotas[1].requests, 100_000);
    assert!(limits.split_rejected_batches);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn the_projects_quota_is_enforced_by_the_fake_and_reported_as_rate_limited() {
    let options = DataManagerOptions {
        rate_limit: Some(sluice_fakes::google::RateLimit { per_minute: 2, per_day: 100, retry_after_secs: Some(30) }),
        ..DataManagerOptions::default()
    };
    let fake = DataManagerFake::start(options).await;
    let destination = destination(&fake);
    let ctx = context(DEFAULT_USER_LIST);
    for i in 0..2 {
        let one = batch(&["email"], vec![change(ChangeOp::Insert, "1", &[&format!("m{i}@example.com")], None)]);
        destination.write(&ctx, &one).await.unwrap();
    }
    let one = batch(&["email"], vec![change(ChangeOp::Insert, "3", &["m3@example.com"], None)]);
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(30))));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context(DEFAULT_USER_LIST);
    let one = batch(&["email"], vec![change(ChangeOp::Insert, "1", &["dana@example.com"], None)]);
    for status in [500, 503, 504] {
        fake.inject_fault(Fault::Status(status));
        let error = destination.write(&ctx, &one).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{status}: {}", error.message);
    }
    applied_ids(&destination.write(&ctx, &one).await.unwrap());
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_and_the_request_sent_again() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context(DEFAULT_USER_LIST);
    let first = batch(&["email"], vec![change(ChangeOp::Insert, "1", &["dana@example.com"], None)]);
    applied_ids(&destination.write(&ctx, &first).await.unwrap());

    fake.expire_access_tokens();
    let second = batch(&["email"], vec![change(ChangeOp::Insert, "2", &["danam@example.com"], None)]);
    applied_ids(&destination.write(&ctx, &second).await.unwrap());
    {
        let state = fake.state();
        assert_eq!(state.counters.unauthorized, 1);
        assert_eq!(state.counters.token_refreshes, 2, "one to start, one after the 401");
    }
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 2);

    // A token that expires again at once is not refreshed in a loop: the second 401 is an Auth error.
    fake.state().options_mut().expire_token_after = Some(0);
    let third = batch(&["email"], vec![change(ChangeOp::Insert, "3", &["x@example.com"], None)]);
    let error = destination.write(&ctx, &third).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth, "{}", error.message);
    assert_eq!(fake.state().counters.unauthorized, 3);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_revoked_refresh_token_stops_the_sync_with_an_auth_error() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let revoked = GoogleDestination::new(
        config(&fake, json!({ "oauth": { "client_id": OAuthApp::default().client_id, "client_secret": "fake-client-secret", "refresh_token": "1//revoked" } })),
        None,
    )
    .unwrap();
    let error = revoked.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("Token has been expired or revoked"), "{}", error.message);
    assert!(!error.message.contains("fake-client-secret"));
    destination(&fake).check().await.unwrap();
}

#[tokio::test]
async fn members_google_refuses_are_rejected_one_by_one_and_the_rest_applied() {
    let bad = "bad@example.com";
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context(DEFAULT_USER_LIST);
    // Find the hash the destination sends for `bad`, then have the fake refuse it.
    let probe = applied_ids(
        &destination.write(&ctx, &batch(&["email"], vec![change(ChangeOp::Insert, "0", &[bad], None)])).await.unwrap(),
    );
    let refused: Vec<StoredIdentifier> = stored(&probe[0]).into_iter().collect();
    {
        let mut state = fake.state();
        state.options_mut().reject_members = refused;
        state.lists.values_mut().for_each(|l| l.clear());
    }
    let before = fake.requests().len();
    let changes = batch(
        &["email"],
        vec![
            change(ChangeOp::Insert, "1", &["good1@example.com"], None),
            change(ChangeOp::Insert, "2", &[bad], None),
            change(ChangeOp::Insert, "3", &["good2@example.com"], None),
        ],
    );
    let outcomes = destination.write(&ctx, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[2].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    let message = outcomes[1].message.as_deref().unwrap();
    assert!(message.contains("INVALID_AUDIENCE_MEMBER"), "{message}");
    assert!(!message.contains(bad), "{message}");
    let statuses: Vec<u16> = fake.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 200], "refused whole, then sent again without the member Google named");
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 2);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn only_hashes_and_documented_plain_fields_leave_the_machine() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let fields = ["email", "phone", "first_name", "last_name", "country", "zip"];
    destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &fields)).await.unwrap();
    let sink = CaptureSink(Arc::new(Mutex::new(Vec::new())));
    let mut ctx = context(DEFAULT_USER_LIST);
    ctx.capture = Some(sink.clone());
    let plain = ["Quinn@CymbalGroup.com", "+1 650 555 0123", "Quinnella", "Baklavaoglu"];
    let changes = batch(
        &fields,
        vec![
            change(ChangeOp::Insert, "1", &[plain[0], plain[1], plain[2], plain[3], "US", "94043"], None),
            change(ChangeOp::Insert, "2", &["not an email", "", "", "", "", ""], None),
        ],
    );
    let outcomes = destination.write(&ctx, &changes).await.unwrap();
    let ids = applied_ids(&outcomes[..1]);
    let removed = batch(&fields, vec![change(ChangeOp::Delete, "1", &[], Some(&ids[0]))]);
    let outcomes_after = destination.write(&ctx, &removed).await.unwrap();

    let captures: Vec<RequestCapture> = sink.drain();
    assert!(captures.len() >= 2, "{captures:?}");
    let mut texts: Vec<String> =
        captures.iter().map(|c| format!("{} {} {}", c.url, c.request_body, c.response_body)).collect();
    texts.extend(outcomes.iter().chain(&outcomes_after).filter_map(|o| o.message.clone()));
    texts.extend(outcomes.iter().chain(&outcomes_after).filter_map(|o| o.destination_id.clone()));
    for text in &texts {
        let lower = text.to_lowercase();
        for value in plain.iter().chain(&["not an email", "16505550123", "quinn@cymbalgroup.com"]) {
            assert!(!lower.contains(&value.to_lowercase()), "{value:?} left in {text}");
        }
    }
    let body = &captures[0].request_body;
    assert!(body.contains("\"regionCode\":\"US\"") && body.contains("\"postalCode\":\"94043\""), "{body}");
    assert!(
        body.contains("\"adUserData\":\"CONSENT_GRANTED\"")
            && body.contains("\"adPersonalization\":\"CONSENT_DENIED\""),
        "{body}"
    );
    assert!(body.contains("\"customerMatchTermsOfServiceStatus\":\"ACCEPTED\""), "{body}");
    assert!(body.contains("\"encoding\":\"HEX\""), "{body}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn mobile_ids_go_to_mobile_id_lists() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_MOBILE_USER_LIST), &["mobile_ad_id"])).await.unwrap();
    let ctx = context(DEFAULT_MOBILE_USER_LIST);
    let changes =
        batch(&["mobile_ad_id"], vec![change(ChangeOp::Insert, "1", &["6D92078A-8246-4BA4-AE5B-76104861E7DC"], None)]);
    let ids = applied_ids(&destination.write(&ctx, &changes).await.unwrap());
    assert_eq!(fake.members(DEFAULT_MOBILE_USER_LIST), BTreeSet::from([stored(&ids[0])]));
    let left = batch(&["mobile_ad_id"], vec![change(ChangeOp::Delete, "1", &[], Some(&ids[0]))]);
    destination.write(&ctx, &left).await.unwrap();
    assert!(fake.members(DEFAULT_MOBILE_USER_LIST).is_empty());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn prepare_refuses_what_cannot_work_before_anything_is_sent() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let config_error = |result: Result<(), sluice_core::DestinationError>| {
        let error = result.unwrap_err();
        assert_eq!(error.class, ErrorClass::Config, "{}", error.message);
        error.message
    };
    let message = config_error(destination.prepare(&target(SyncMode::Audience, None, &["email"])).await);
    assert!(message.contains("object"), "{message}");
    let message = config_error(destination.prepare(&target(SyncMode::Audience, Some("999"), &["email"])).await);
    assert!(message.contains("INVALID_USER_LIST_ID"), "{message}");
    let message = config_error(
        destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_MOBILE_USER_LIST), &["email"])).await,
    );
    assert!(message.contains("INVALID_USER_LIST_TYPE"), "{message}");
    config_error(destination.prepare(&target(SyncMode::Upsert, Some(DEFAULT_USER_LIST), &["email"])).await);
    let message = config_error(
        destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &["email", "mobile_ad_id"])).await,
    );
    assert!(message.contains("split it into one sync per list"), "{message}");
    destination.prepare(&target(SyncMode::Insert, Some(DEFAULT_USER_LIST), &["email"])).await.unwrap();

    let unsigned =
        GoogleDestination::new(config(&fake, json!({ "customer_match_terms_accepted": false })), None).unwrap();
    let message =
        config_error(unsigned.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &["email"])).await);
    assert!(message.contains("customer_match_terms_accepted"), "{message}");

    let other = GoogleDestination::new(
        config(&fake, json!({ "operating_account": { "account_type": "GOOGLE_ADS", "account_id": "111" } })),
        None,
    )
    .unwrap();
    let error = other.prepare(&target(SyncMode::Audience, Some(DEFAULT_USER_LIST), &["email"])).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth, "{}", error.message);
    assert!(fake.members(DEFAULT_USER_LIST).is_empty(), "validation requests change nothing");
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn discovery_lists_the_identifiers_google_matches() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = destination(&fake);
    let objects = destination.discover(Some(DEFAULT_USER_LIST)).await.unwrap();
    assert_eq!(objects[0].name, DEFAULT_USER_LIST);
    assert_eq!(objects[0].modes, [SyncMode::Audience, SyncMode::Insert]);
    let names: Vec<&str> = objects[0].fields.iter().map(|f| f.name.as_str()).collect();
    for expected in ["email", "phone", "first_name", "last_name", "country", "zip"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(destination.wants_destination_ids() && destination.accepts_object());
}

#[tokio::test]
async fn config_errors_name_the_key_and_the_account_hides_secrets() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let key = |extra: serde_json::Value| GoogleDestination::new(config(&fake, extra), None).err().map(|(key, _)| key);
    assert_eq!(key(json!({ "batch_size": 10_001 })), Some("batch_size"));
    assert_eq!(key(json!({ "api_url": "ftp://x" })), Some("api_url"));
    assert_eq!(key(json!({ "operating_account": { "account_id": "123-456-7890" } })), Some("operating_account"));
    assert_eq!(
        key(json!({ "operating_account": { "account_type": "YOUTUBE", "account_id": "1" } })),
        Some("operating_account")
    );
    assert_eq!(key(json!({ "default_country": "France" })), Some("default_country"));
    assert_eq!(key(json!({ "max_concurrency": 0 })), Some("max_concurrency"));
    assert!(serde_json::from_value::<GoogleConfig>(json!({ "oauth": {}, "operting_account": {} })).is_err());
    let destination = destination(&fake);
    assert!(!destination.account_key().contains("fake-client-secret"));
    assert!(!destination.account_key().contains("refresh"));
    assert!(destination.identity().contains(DEFAULT_ACCOUNT_ID));
}

#[tokio::test]
async fn a_slow_answer_times_out_as_transient_and_expiry_mid_sync_is_survived() {
    let fake = DataManagerFake::start(DataManagerOptions::default()).await;
    let destination = GoogleDestination::new(config(&fake, json!({ "timeout_seconds": 1 })), None).unwrap();
    let ctx = context(DEFAULT_USER_LIST);
    let one = batch(&["email"], vec![change(ChangeOp::Insert, "1", &["dana@example.com"], None)]);
    fake.inject_fault(Fault::Delay(Duration::from_millis(1_500)));
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient, "{}", error.message);
    assert!(error.message.contains("timed out"), "{}", error.message);

    // Tokens expiring between two requests of one write: refreshed once, nothing lost.
    fake.inject_fault(Fault::ExpireTokens);
    applied_ids(&destination.write(&ctx, &one).await.unwrap());
    assert_eq!(fake.members(DEFAULT_USER_LIST).len(), 1);
    assert_eq!(fake.state().counters.unauthorized, 1);
    assert_eq!(fake.invalid_requests(), 0);
}
