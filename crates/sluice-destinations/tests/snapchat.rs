#![cfg(feature = "snapchat")]
//! Snapchat Customer List destination against the faithful fake in `sluice-fakes`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::DataType;
use serde_json::json;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::snapchat::{SnapchatConfig, SnapchatDestination};
use sluice_fakes::snapchat::{
    Fault, RejectRule, SegmentDef, SnapchatFake, SnapchatOptions, DEFAULT_AD_ACCOUNT, DEFAULT_SEGMENT,
};

/// SHA-256 of "mary@example.com" as Meta's Custom Audiences docs print it: Snap's docs give no
/// plain-text → digest pair, and Snap normalises e-mails the same way (trim, lowercase).
const MARY: &str = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79";
/// SHA-256 of the mobile ad id 5f3a2b18-9c4d-4e7f-b8e2-17d3a1e69b25 (lowercase, with hyphens) as
/// TikTok's customer-file article prints it; Snap hashes the same lowercase form.
const MAID: &str = "83dc3f5f32b9472613b0f038d36f22585a609d018af6f6067f50da318bf354bd";
/// `printf %s 33612345678 | sha256sum` (coreutils): +33 6 12 34 56 78 as digits with the country
/// code and no `+`, pinned when the test was written.
const FR_PHONE: &str = "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661";
/// `printf %s 16502530000 | sha256sum`.
const US_PHONE: &str = "67d3cb9e9b1b64b913a5f2508beac167cfa7d3fb943f6a52e6767392d425a536";
/// `printf %s ada@example.com | sha256sum`.
const ADA: &str = "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72";
/// `printf %s ada@new.example | sha256sum`.
const ADA_NEW: &str = "abc3a57b8df259fe981cdac132e38dbfeef3f95cd6df081f20be94361e7c8fae";
/// `printf %s grace@example.com | sha256sum`.
const GRACE: &str = "b533d4547eaa5a0fa955965a1ca393ccd2ea013032a105726f232eb41bddc4fa";

const SYNC: &str = "vip_to_snapchat";
const FIELDS: [&str; 3] = ["email", "phone", "mobile_ad_id"];

fn config(fake: &SnapchatFake, extra: serde_json::Value) -> SnapchatConfig {
    let mut value = json!({
        "oauth": { "client_id": "snap-client-id", "client_secret": "snap-client-secret", "refresh_token": "snap-refresh-token" },
        "ad_account_id": DEFAULT_AD_ACCOUNT,
        "api_url": fake.api_url(),
        "token_url": fake.token_url(),
        "default_country": "FR",
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn destination(fake: &SnapchatFake) -> SnapchatDestination {
    SnapchatDestination::new(config(fake, json!({})), None).unwrap()
}

fn target(mode: SyncMode, fields: &[&str], object: Option<&str>) -> Target {
    Target {
        sync: SYNC.into(),
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

fn context(mode: SyncMode) -> (WriteContext, CaptureSink) {
    let sink = CaptureSink(Arc::new(Mutex::new(Vec::new())));
    let context = WriteContext {
        sync: SYNC.into(),
        run_id: 1,
        mode,
        object: Some(DEFAULT_SEGMENT.into()),
        capture: Some(sink.clone()),
        rate: None,
    };
    (context, sink)
}

/// A change to a member: email, phone, mobile ad id.
fn person(op: ChangeOp, key: &str, values: [Option<&str>; 3], destination_id: Option<String>) -> Change {
    Change {
        op,
        key: key.into(),
        fingerprint: Fingerprint(1),
        values: values.iter().map(|v| v.map_or(Value::Null, |t| Value::Text(t.into()))).collect(),
        destination_id,
    }
}

fn leaver(key: &str, destination_id: Option<String>) -> Change {
    Change { op: ChangeOp::Delete, key: key.into(), fingerprint: Fingerprint(1), values: Vec::new(), destination_id }
}

fn batch(changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: FIELDS.iter().map(|f| f.to_string()).collect(), changes }
}

fn email(hash: &str) -> String {
    format!("EMAIL_SHA256:{hash}")
}

/// Asserts that no request or answer carried any of `plain` and no outcome message holds any.
fn assert_nothing_plain(sink: &CaptureSink, outcomes: &[Outcome], plain: &[&str]) {
    let captures = sink.drain();
    assert!(!captures.is_empty(), "requests were captured");
    for capture in &captures {
        for value in plain {
            assert!(!capture.request_body.contains(value), "{value} sent in {}", capture.request_body);
            assert!(!capture.response_body.contains(value), "{value} in an answer: {}", capture.response_body);
        }
    }
    for outcome in outcomes {
        for value in plain {
            assert!(!outcome.message.as_deref().unwrap_or("").contains(value), "{value} in {outcome:?}");
        }
    }
}

async fn prepared(fake: &SnapchatFake, mode: SyncMode) -> SnapchatDestination {
    let destination = destination(fake);
    destination.prepare(&target(mode, &FIELDS, Some(DEFAULT_SEGMENT))).await.unwrap();
    destination
}

#[tokio::test]
async fn members_who_enter_are_added_as_sha256_digests_only() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", [Some(" Mary@Example.com"), Some("06 12 34 56 78"), None], None),
        person(
            ChangeOp::Insert,
            "2",
            [None, Some("+1 (650) 253-0000"), Some("5F3A2B18-9C4D-4E7F-B8E2-17D3A1E69B25")],
            None,
        ),
    ]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied), "{outcomes:?}");
    assert_eq!(
        fake.members(DEFAULT_SEGMENT),
        [
            email(MARY),
            format!("PHONE_SHA256:{FR_PHONE}"),
            format!("PHONE_SHA256:{US_PHONE}"),
            format!("MOBILE_AD_ID_SHA256:{MAID}"),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(format!("email:{MARY}|phone:{FR_PHONE}").as_str()));
    assert_eq!(outcomes[1].destination_id.as_deref(), Some(format!("phone:{US_PHONE}|mobile_ad_id:{MAID}").as_str()));
    // One request, one entry per schema, one digest per row, as the docs show.
    let request = fake.requests().into_iter().find(|r| r.path.ends_with("/users")).unwrap();
    assert_eq!((request.method.as_str(), request.identifiers), ("POST", 4));
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        json!({ "users": [
            { "schema": ["EMAIL_SHA256"], "data": [[MARY]] },
            { "schema": ["PHONE_SHA256"], "data": [[FR_PHONE], [US_PHONE]] },
            { "schema": ["MOBILE_AD_ID_SHA256"], "data": [[MAID]] },
        ]})
    );
    assert_nothing_plain(
        &sink,
        &outcomes,
        &["mary@example.com", "Mary@Example", "33612345678", "0612345678", "16502530000", "5f3a2b18", "5F3A2B18"],
    );
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn members_who_leave_are_removed_with_the_digests_that_were_added() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let entered = batch(vec![
        person(ChangeOp::Insert, "1", [Some("ada@example.com"), Some("+16502530000"), None], None),
        person(ChangeOp::Insert, "2", [Some("grace@example.com"), None, None], None),
    ]);
    let ids: Vec<Option<String>> =
        destination.write(&context, &entered).await.unwrap().into_iter().map(|o| o.destination_id).collect();
    let outcomes =
        destination.write(&context, &batch(vec![leaver("1", ids[0].clone()), leaver("3", None)])).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[0].destination_id, ids[0]);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert!(outcomes[1].message.as_deref().unwrap().contains("cannot tell Snapchat whom to remove"));
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email(GRACE)].into_iter().collect());
    let removal = fake.requests().into_iter().rev().find(|r| r.path.ends_with("/users")).unwrap();
    assert_eq!(removal.method, "DELETE");
    let body: serde_json::Value = serde_json::from_str(&removal.body).unwrap();
    assert_eq!(
        body,
        json!({ "users": [
            { "schema": ["EMAIL_SHA256"], "data": [[ADA]] },
            { "schema": ["PHONE_SHA256"], "data": [[US_PHONE]] },
        ]})
    );
    assert_nothing_plain(&sink, &outcomes, &["ada@example.com", "grace@example.com", "16502530000"]);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_changed_identifier_removes_the_old_digest_then_adds_the_new() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let first = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), Some("+16502530000"), None], None)]);
    let old = destination.write(&context, &first).await.unwrap()[0].destination_id.clone();
    // New e-mail, same phone: the phone is removed and added back, never lost.
    let changed =
        batch(vec![person(ChangeOp::Update, "1", [Some("ada@new.example"), Some("+16502530000"), None], old)]);
    let outcomes = destination.write(&context, &changed).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(format!("email:{ADA_NEW}|phone:{US_PHONE}").as_str()));
    assert_eq!(
        fake.members(DEFAULT_SEGMENT),
        [email(ADA_NEW), format!("PHONE_SHA256:{US_PHONE}")].into_iter().collect()
    );
    let methods: Vec<String> =
        fake.requests().into_iter().filter(|r| r.path.ends_with("/users")).map(|r| r.method).collect();
    assert_eq!(methods, ["POST", "DELETE", "POST"]);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_large_batch_goes_out_in_requests_of_at_most_100000_identifiers() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    assert_eq!(destination.batch_size(), 100_000);
    assert_eq!(destination.batch_size_for(&target(SyncMode::Audience, &FIELDS, None)), 33_333);
    assert_eq!(destination.batch_size_for(&target(SyncMode::Audience, &["email", "phone"], None)), 50_000);
    assert_eq!(destination.batch_size_for(&target(SyncMode::Audience, &["email"], None)), 100_000);
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(
        (0..100_001)
            .map(|i| person(ChangeOp::Insert, &i.to_string(), [Some(&format!("m{i}@example.com")), None, None], None))
            .collect(),
    );
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied));
    let sizes: Vec<usize> =
        fake.requests().into_iter().filter(|r| r.path.ends_with("/users")).map(|r| r.identifiers).collect();
    assert_eq!(sizes, [100_000, 1]);
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 100_001);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn the_fake_refuses_a_request_over_the_limit() {
    let fake = SnapchatFake::start(SnapchatOptions { identifier_limit: 3, ..SnapchatOptions::default() }).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", [Some("a@x.io"), Some("+16502530000"), None], None),
        person(ChangeOp::Insert, "2", [Some("b@x.io"), Some("+33612345678"), None], None),
    ]);
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("the maximum is 3"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 1);
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_then_succeeds() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None, None], None)]);
    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 3 });
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(3))));
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    assert_eq!(destination.write(&context, &changes).await.unwrap()[0].status, OutcomeStatus::Applied);
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email(ADA)].into_iter().collect());

    // The documented per-token rate, answered without Retry-After.
    fake.state().options_mut().requests_per_second = Some(0);
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, None));
    let limits = destination.delivery_limits();
    assert_eq!((limits.quotas[0].requests, limits.quotas[0].per), (10, Duration::from_secs(1)));
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None, None], None)]);
    for status in [500, 502] {
        fake.inject_fault(Fault::Status(status));
        let error = destination.write(&context, &changes).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{status}");
    }
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    fake.expire_access_tokens();
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None, None], None)]);
    assert_eq!(destination.write(&context, &changes).await.unwrap()[0].status, OutcomeStatus::Applied);
    let counters = fake.state().counters.clone();
    assert_eq!((counters.unauthorized, counters.token_refreshes), (1, 2), "one to start, one after the 401");

    fake.state().options_mut().expire_token_after = Some(0);
    fake.expire_access_tokens();
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("even after refreshing"), "{}", error.message);

    let revoked = SnapchatDestination::new(
        config(&fake, json!({ "oauth": { "client_id": "snap-client-id", "client_secret": "snap-client-secret", "refresh_token": "gone" } })),
        None,
    )
    .unwrap();
    let error = revoked.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("Invalid refresh token"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn an_entry_snapchat_refuses_rejects_its_members_with_snaps_reason() {
    let reject = RejectRule { hash: US_PHONE.into(), reason: "Phone identifier could not be processed".into() };
    let fake = SnapchatFake::start(SnapchatOptions { reject: vec![reject], ..SnapchatOptions::default() }).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", [Some("ada@example.com"), None, None], None),
        person(ChangeOp::Insert, "2", [Some("grace@example.com"), Some("+1 650 253 0000"), None], None),
        person(ChangeOp::Insert, "3", [None, Some("12"), None], None),
    ]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(
        outcomes[1],
        Outcome::rejected("Snapchat refused this member's PHONE_SHA256: Phone identifier could not be processed")
    );
    assert_eq!(outcomes[2].status, OutcomeStatus::Rejected);
    assert!(outcomes[2].message.as_deref().unwrap().starts_with("phone: not a valid phone number"), "{outcomes:?}");
    // The e-mail entry was applied; the phone entry was not.
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email(ADA), email(GRACE)].into_iter().collect());
    assert_eq!(fake.requests().last().unwrap().status, 400);
    assert_nothing_plain(&sink, &outcomes, &["ada@example.com", "grace@example.com", "16502530000", "650 253"]);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn prepare_checks_the_mode_fields_and_segment() {
    let mut options = SnapchatOptions::default();
    options.segments.push(SegmentDef {
        id: "111".into(),
        ad_account_id: "00000000-0000-4000-8000-000000000000".into(),
        name: "elsewhere".into(),
    });
    let fake = SnapchatFake::start(options).await;
    let destination = destination(&fake);
    let cases: [(SyncMode, &[&str], Option<&str>, &str); 5] = [
        (SyncMode::Mirror, &["email"], Some(DEFAULT_SEGMENT), "not `mode: mirror`"),
        (SyncMode::Audience, &["email", "first_name"], Some(DEFAULT_SEGMENT), "`first_name`"),
        (SyncMode::Audience, &["email"], None, "set `object:`"),
        (SyncMode::Audience, &["email"], Some("999"), "no segment 999"),
        (SyncMode::Audience, &["email"], Some("111"), "belongs to ad account 00000000"),
    ];
    for (mode, fields, object, expected) in cases {
        let error = destination.prepare(&target(mode, fields, object)).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Config, "{}", error.message);
        assert!(error.message.contains(expected), "{expected}: {}", error.message);
    }
    destination.prepare(&target(SyncMode::Insert, &["phone"], Some(DEFAULT_SEGMENT))).await.unwrap();
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn check_and_discover_list_the_accounts_customer_lists() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let destination = destination(&fake);
    destination.check().await.unwrap();
    let all = destination.discover(None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, DEFAULT_SEGMENT);
    let fields: Vec<(&str, &str)> = all[0].fields.iter().map(|f| (f.name.as_str(), f.field_type.as_str())).collect();
    assert_eq!(fields, [("email", "EMAIL_SHA256"), ("phone", "PHONE_SHA256"), ("mobile_ad_id", "MOBILE_AD_ID_SHA256")]);
    assert_eq!(all[0].modes, [SyncMode::Audience, SyncMode::Insert]);
    assert_eq!(destination.discover(Some(DEFAULT_SEGMENT)).await.unwrap(), all);

    let elsewhere = SnapchatDestination::new(
        config(&fake, json!({ "ad_account_id": "00000000-0000-4000-8000-000000000000" })),
        None,
    )
    .unwrap();
    let error = elsewhere.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("not found"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let fake = SnapchatFake::start(SnapchatOptions::default()).await;
    let key = |extra: serde_json::Value| SnapchatDestination::new(config(&fake, extra), None).err().map(|(key, _)| key);
    assert_eq!(key(json!({ "ad_account_id": "acct-1" })), Some("ad_account_id"));
    assert_eq!(key(json!({ "default_country": "France" })), Some("default_country"));
    assert_eq!(key(json!({ "batch_size": 100_001 })), Some("batch_size"));
    assert_eq!(key(json!({ "requests_per_second": 0 })), Some("requests_per_second"));
    assert_eq!(key(json!({ "token_url": "not a url" })), Some("token_url"));
    assert_eq!(key(json!({ "default_country": null })), None);
    let unknown = json!({ "oauth": { "client_id": "a", "client_secret": "b", "refresh_token": "c" }, "ad_account_id": DEFAULT_AD_ACCOUNT, "schema": "EMAIL" });
    assert!(serde_json::from_value::<SnapchatConfig>(unknown).is_err(), "unknown keys are refused");
    let destination = destination(&fake);
    assert!(destination.accepts_object() && destination.wants_destination_ids());
    assert!(!destination.account_key().contains("snap-refresh-token"));
    assert!(sluice_destinations::supported_types().contains(&"snapchat"));
}
