//! TikTok audiences destination against the TikTok fake in `sluice-fakes`.
#![cfg(feature = "tiktok")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::DataType;
use serde_json::json;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::ads::members::Member;
use sluice_destinations::ads::Identifier;
use sluice_destinations::tiktok::{TikTokConfig, TikTokDestination};
use sluice_fakes::tiktok::{
    Fault, StoredUser, TikTokFake, TikTokOptions, DEFAULT_ACCESS_TOKEN, DEFAULT_ADVERTISER_ID, DEFAULT_AUDIENCE_ID,
};

/// TikTok's own example of a normalised, SHA-256 hashed email in its customer file specification:
/// `janedoe@gmail.com` (<https://ads.tiktok.com/help/article/how-to-create-a-custom-audience-with-a-customer-file>).
const JANEDOE: &str = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69";

fn config(fake: &TikTokFake, extra: serde_json::Value) -> TikTokConfig {
    let mut value = json!({
        "access_token": DEFAULT_ACCESS_TOKEN,
        "advertiser_id": DEFAULT_ADVERTISER_ID,
        "api_url": fake.base_url(),
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn destination(fake: &TikTokFake) -> TikTokDestination {
    TikTokDestination::new(config(fake, json!({}))).unwrap()
}

fn target(mode: SyncMode, object: Option<&str>, fields: &[&str]) -> Target {
    Target {
        sync: "vip_to_tiktok".into(),
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

fn context() -> WriteContext {
    WriteContext {
        sync: "vip_to_tiktok".into(),
        run_id: 1,
        mode: SyncMode::Audience,
        object: Some(DEFAULT_AUDIENCE_ID.into()),
        capture: None,
        rate: None,
    }
}

fn change(op: ChangeOp, key: &str, values: &[&str], destination_id: Option<&str>) -> Change {
    Change {
        op,
        key: key.into(),
        fingerprint: Fingerprint(1),
        values: values.iter().map(|v| if v.is_empty() { Value::Null } else { Value::Text((*v).into()) }).collect(),
        destination_id: destination_id.map(String::from),
    }
}

fn batch(fields: &[&str], changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: fields.iter().map(|f| f.to_string()).collect(), changes }
}

/// What the fake should hold for a member Sluice says it sent.
fn stored(destination_id: &str, mobile_schema: &str) -> StoredUser {
    let member = Member::from_destination_id(destination_id).expect("a destination id Sluice can read back");
    member
        .identifiers
        .iter()
        .map(|(identifier, value)| {
            let schema = match identifier {
                Identifier::Email => "EMAIL_SHA256",
                Identifier::Phone => "PHONE_SHA256",
                Identifier::MobileAdId => mobile_schema,
                other => panic!("TikTok was sent {other:?}"),
            };
            (schema.to_string(), value.clone())
        })
        .collect()
}

fn applied_ids(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| {
            assert_eq!(o.status, OutcomeStatus::Applied, "{o:?}");
            o.destination_id.clone().expect("applied members carry the id a later delete needs")
        })
        .collect()
}

const FIELDS: [&str; 3] = ["email", "phone", "mobile_ad_id"];

#[tokio::test]
async fn members_enter_leave_and_change_identifiers() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    destination.check().await.unwrap();
    destination.prepare(&target(SyncMode::Audience, Some(DEFAULT_AUDIENCE_ID), &FIELDS)).await.unwrap();
    let ctx = context();

    let entered = batch(
        &FIELDS,
        vec![
            change(ChangeOp::Insert, "1", &["JaneDoe@Gmail.com ", "+1 (650) 555-0123", ""], None),
            change(ChangeOp::Insert, "2", &["", "", "6D92078A-8246-4BA4-AE5B-76104861E7DC"], None),
        ],
    );
    let ids = applied_ids(&destination.write(&ctx, &entered).await.unwrap());
    assert_eq!(
        fake.members(DEFAULT_AUDIENCE_ID),
        BTreeSet::from([stored(&ids[0], "IDFA_SHA256"), stored(&ids[1], "IDFA_SHA256")])
    );
    assert!(
        stored(&ids[0], "IDFA_SHA256").contains(&("EMAIL_SHA256".to_string(), JANEDOE.to_string())),
        "TikTok's test vector"
    );

    let changed =
        batch(&FIELDS, vec![change(ChangeOp::Update, "1", &["jane.new@gmail.com", "+16505550123", ""], Some(&ids[0]))]);
    let new_ids = applied_ids(&destination.write(&ctx, &changed).await.unwrap());
    assert_eq!(
        fake.members(DEFAULT_AUDIENCE_ID),
        BTreeSet::from([stored(&new_ids[0], "IDFA_SHA256"), stored(&ids[1], "IDFA_SHA256")])
    );

    let left = batch(&FIELDS, vec![change(ChangeOp::Delete, "2", &[], Some(&ids[1]))]);
    assert_eq!(destination.write(&ctx, &left).await.unwrap()[0].status, OutcomeStatus::Applied);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([stored(&new_ids[0], "IDFA_SHA256")]));
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn batches_of_25000_members_stay_within_the_batch_limit() {
    let options = TikTokOptions { rate_limit: None, ..TikTokOptions::default() };
    let fake = TikTokFake::start(options).await;
    let destination = destination(&fake);
    assert_eq!(destination.batch_size(), 1_000);
    let ctx = context();
    let all: Vec<Change> = (0..25_000)
        .map(|i| change(ChangeOp::Insert, &i.to_string(), &[&format!("member{i}@example.com"), "", ""], None))
        .collect();
    let mut ids = Vec::new();
    for chunk in all.chunks(destination.batch_size()) {
        ids.extend(applied_ids(&destination.write(&ctx, &batch(&FIELDS, chunk.to_vec())).await.unwrap()));
    }
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 25_000);
    let requests = fake.requests();
    assert_eq!(requests.len(), 25);
    assert!(requests.iter().all(|r| r.users == 1_000 && r.code == Some(0)));

    let leaving: Vec<Change> =
        ids.iter().enumerate().map(|(i, id)| change(ChangeOp::Delete, &i.to_string(), &[], Some(id))).collect();
    for chunk in leaving.chunks(destination.batch_size()) {
        applied_ids(&destination.write(&ctx, &batch(&FIELDS, chunk.to_vec())).await.unwrap());
    }
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
    assert_eq!(fake.invalid_requests(), 0);

    // The fake holds clients to the limit: a larger batch is refused with 40011 and changes nothing.
    let big = TikTokDestination::new(config(&fake, json!({ "batch_size": 1_001 }))).unwrap();
    let error = big.write(&ctx, &batch(&FIELDS, all[..1_001].to_vec())).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Permanent, "{}", error.message);
    assert!(error.message.contains("40011"), "{}", error.message);
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
}

#[tokio::test]
async fn rate_limit_code_40100_then_success() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context();
    let one = batch(&FIELDS, vec![change(ChangeOp::Insert, "1", &["janedoe@gmail.com", "", ""], None)]);
    fake.inject_fault(Fault::RateLimited);
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(1)), "retry after the current second");
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
    applied_ids(&destination.write(&ctx, &one).await.unwrap());
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 1);

    let limits = destination.delivery_limits();
    let quotas: Vec<(u32, Duration)> = limits.quotas.iter().map(|q| (q.requests, q.per)).collect();
    assert_eq!(
        quotas,
        [(10, Duration::from_secs(1)), (600, Duration::from_secs(60)), (864_000, Duration::from_secs(86_400))]
    );
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn the_fakes_per_second_limit_answers_40100_as_rate_limited() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context();
    let mut rate_limited = 0;
    for i in 0..20 {
        let one = batch(&FIELDS, vec![change(ChangeOp::Insert, "1", &[&format!("m{i}@example.com"), "", ""], None)]);
        if let Err(error) = destination.write(&ctx, &one).await {
            assert_eq!(error.class, ErrorClass::RateLimited, "{}", error.message);
            rate_limited += 1;
        }
    }
    assert!(rate_limited >= 1, "20 requests in well under a second exceed 10 per second");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn service_errors_are_transient_and_bad_tokens_stop_the_sync() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    let ctx = context();
    let one = batch(&FIELDS, vec![change(ChangeOp::Insert, "1", &["janedoe@gmail.com", "", ""], None)]);
    fake.inject_fault(Fault::Code(50000, "System error".into()));
    assert_eq!(destination.write(&ctx, &one).await.unwrap_err().class, ErrorClass::Transient);
    fake.inject_fault(Fault::Http(503));
    assert_eq!(destination.write(&ctx, &one).await.unwrap_err().class, ErrorClass::Transient);
    fake.inject_fault(Fault::Code(40002, "Parameter error".into()));
    assert_eq!(destination.write(&ctx, &one).await.unwrap_err().class, ErrorClass::Permanent);
    fake.inject_fault(Fault::Code(20001, "Partially successful.".into()));
    let outcomes = destination.write(&ctx, &one).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Retryable, "partial success names nobody: send again");
    applied_ids(&destination.write(&ctx, &one).await.unwrap());

    fake.revoke(DEFAULT_ACCESS_TOKEN);
    let error = destination.write(&ctx, &one).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("40105"), "{}", error.message);
    assert!(!error.message.contains(DEFAULT_ACCESS_TOKEN));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn only_hashes_leave_the_machine() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    let sink = CaptureSink(Arc::new(Mutex::new(Vec::new())));
    let mut ctx = context();
    ctx.capture = Some(sink.clone());
    let plain = ["Quinn@CymbalGroup.com", "+44 20 7946 0958", "6D92078A-8246-4BA4-AE5B-76104861E7DC"];
    let changes = batch(
        &FIELDS,
        vec![
            change(ChangeOp::Insert, "1", &plain, None),
            change(ChangeOp::Insert, "2", &["not an email", "", ""], None),
        ],
    );
    let outcomes = destination.write(&ctx, &changes).await.unwrap();
    let ids = applied_ids(&outcomes[..1]);
    let after = destination
        .write(&ctx, &batch(&FIELDS, vec![change(ChangeOp::Delete, "1", &[], Some(&ids[0]))]))
        .await
        .unwrap();
    let captures = sink.drain();
    assert_eq!(captures.len(), 2);
    let mut texts: Vec<String> =
        captures.iter().map(|c| format!("{} {} {}", c.url, c.request_body, c.response_body)).collect();
    texts.extend(outcomes.iter().chain(&after).filter_map(|o| o.message.clone()));
    texts.extend(outcomes.iter().chain(&after).filter_map(|o| o.destination_id.clone()));
    for text in &texts {
        let lower = text.to_lowercase();
        for value in plain.iter().chain(&["not an email", "442079460958", "quinn@cymbalgroup.com"]) {
            assert!(!lower.contains(&value.to_lowercase()), "{value:?} left in {text}");
        }
        assert!(!text.contains(DEFAULT_ACCESS_TOKEN), "the token travels in a header only");
    }
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn mobile_ids_use_the_configured_schema() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = TikTokDestination::new(config(&fake, json!({ "mobile_id_schema": "GAID_SHA256" }))).unwrap();
    let ids = applied_ids(
        &destination
            .write(
                &context(),
                &batch(
                    &["mobile_ad_id"],
                    vec![change(ChangeOp::Insert, "1", &["38400000-8cf0-11bd-b23e-10b96e40000d"], None)],
                ),
            )
            .await
            .unwrap(),
    );
    let members = fake.members(DEFAULT_AUDIENCE_ID);
    assert_eq!(members, BTreeSet::from([stored(&ids[0], "GAID_SHA256")]));
    assert!(members.iter().flatten().all(|(schema, _)| schema == "GAID_SHA256"));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn prepare_checks_the_audience_and_the_fields() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let destination = destination(&fake);
    let error =
        destination.prepare(&target(SyncMode::Audience, Some("1800000000000999"), &["email"])).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config, "{}", error.message);
    assert!(error.message.contains("40007"), "{}", error.message);
    let error = destination.prepare(&target(SyncMode::Audience, None, &["email"])).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    let error =
        destination.prepare(&target(SyncMode::Mirror, Some(DEFAULT_AUDIENCE_ID), &["email"])).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    destination.prepare(&target(SyncMode::Insert, Some(DEFAULT_AUDIENCE_ID), &["email", "phone"])).await.unwrap();

    let stranger = TikTokDestination::new(config(&fake, json!({ "advertiser_id": "123" }))).unwrap();
    let error = stranger.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth, "{}", error.message);

    let objects = destination.discover(Some(DEFAULT_AUDIENCE_ID)).await.unwrap();
    let names: Vec<&str> = objects[0].fields.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"email") && names.contains(&"phone"), "{names:?}");
    assert_eq!(objects[0].modes, [SyncMode::Audience, SyncMode::Insert]);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let fake = TikTokFake::start(TikTokOptions::default()).await;
    let key = |extra: serde_json::Value| TikTokDestination::new(config(&fake, extra)).err().map(|(key, _)| key);
    assert_eq!(key(json!({ "access_token": " " })), Some("access_token"));
    assert_eq!(key(json!({ "advertiser_id": "abc" })), Some("advertiser_id"));
    assert_eq!(key(json!({ "mobile_id_schema": "IDFA_MD5" })), Some("mobile_id_schema"));
    assert_eq!(key(json!({ "batch_size": 0 })), Some("batch_size"));
    assert!(serde_json::from_value::<TikTokConfig>(json!({ "access_token": "t", "advertiser_id": "1", "tier": "x" }))
        .is_err());
    let destination = destination(&fake);
    assert!(!destination.account_key().contains(DEFAULT_ACCESS_TOKEN));
    assert!(destination.identity().contains(DEFAULT_ADVERTISER_ID));
    assert!(destination.wants_destination_ids() && destination.accepts_object());
}
