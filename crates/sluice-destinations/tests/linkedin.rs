#![cfg(feature = "linkedin")]
//! LinkedIn DMP segment destination against the faithful fake in `sluice-fakes`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::DataType;
use serde_json::json;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::linkedin::{LinkedInConfig, LinkedInDestination};
use sluice_fakes::linkedin::{
    Fault, LinkedInFake, LinkedInOptions, RejectRule, SegmentDef, UserAttributes, COMPANY_SEGMENT, DEFAULT_ACCOUNT,
    DEFAULT_SEGMENT,
};

/// SHA-256 of "mary@example.com", as Meta's Custom Audiences docs print it ("Hashing" section):
/// LinkedIn's and Snap's docs give no plain-text → digest pair, and LinkedIn normalises e-mails the
/// same way (trim, lowercase) before SHA256_EMAIL.
const MARY: &str = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79";
/// `printf %s ada@example.com | sha256sum` (coreutils), pinned when the test was written.
const ADA: &str = "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72";
/// `printf %s ada@new.example | sha256sum`.
const ADA_NEW: &str = "abc3a57b8df259fe981cdac132e38dbfeef3f95cd6df081f20be94361e7c8fae";
/// `printf %s grace@example.com | sha256sum`.
const GRACE: &str = "b533d4547eaa5a0fa955965a1ca393ccd2ea013032a105726f232eb41bddc4fa";

/// An Android advertising id as typed, and as sent (GOOGLE_AID, lowercase: a plain device id).
const MAID: &str = "6D92078A-8246-4BA4-AE5B-76104861E7DC";
const MAID_SENT: &str = "6d92078a-8246-4ba4-ae5b-76104861e7dc";

const SYNC: &str = "vip_to_linkedin";
/// The only identifiers LinkedIn is sent: names and country are refused (LinkedIn takes them plain).
const FIELDS: [&str; 2] = ["email", "mobile_ad_id"];

fn config(fake: &LinkedInFake, extra: serde_json::Value) -> LinkedInConfig {
    let mut value = json!({
        "oauth": {
            "client_id": "linkedin-client-id",
            "client_secret": "linkedin-client-secret",
            "refresh_token": "linkedin-refresh-token",
        },
        "ad_account": DEFAULT_ACCOUNT,
        "api_url": fake.api_url(),
        "token_url": fake.token_url(),
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn destination(fake: &LinkedInFake) -> LinkedInDestination {
    LinkedInDestination::new(config(fake, json!({})), None).unwrap()
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

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |t| Value::Text(t.into()))
}

/// A change to a member: email, mobile ad id.
fn person(op: ChangeOp, key: &str, values: [Option<&str>; 2], destination_id: Option<String>) -> Change {
    Change {
        op,
        key: key.into(),
        fingerprint: Fingerprint(1),
        values: values.iter().map(|v| text(*v)).collect(),
        destination_id,
    }
}

fn leaver(key: &str, destination_id: Option<String>) -> Change {
    Change { op: ChangeOp::Delete, key: key.into(), fingerprint: Fingerprint(1), values: Vec::new(), destination_id }
}

fn batch(changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: FIELDS.iter().map(|f| f.to_string()).collect(), changes }
}

fn email_id(hash: &str) -> String {
    format!("SHA256_EMAIL:{hash}")
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

/// Asserts that every destination id is made only of `email:<64 lowercase hex>` and
/// `mobile_ad_id:<lowercase UUID>` parts: nothing plain but the device id is ever stored.
fn assert_wire_only_ids(outcomes: &[Outcome]) {
    for id in outcomes.iter().filter_map(|o| o.destination_id.as_deref()) {
        for part in id.split('|') {
            let ok = match part.split_once(':') {
                Some(("email", hash)) => {
                    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                }
                Some(("mobile_ad_id", maid)) => {
                    maid.len() == 36
                        && maid.char_indices().all(|(i, c)| {
                            if matches!(i, 8 | 13 | 18 | 23) {
                                c == '-'
                            } else {
                                c.is_ascii_digit() || ('a'..='f').contains(&c)
                            }
                        })
                }
                _ => false,
            };
            assert!(ok, "destination id part {part:?} of {id:?} is not a digest or a device id");
        }
    }
}

async fn prepared(fake: &LinkedInFake, mode: SyncMode) -> LinkedInDestination {
    let destination = destination(fake);
    destination.prepare(&target(mode, &FIELDS, Some(DEFAULT_SEGMENT))).await.unwrap();
    destination
}

#[tokio::test]
async fn members_who_enter_are_added_with_sha256_emails() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", [Some("  Mary@Example.COM "), None], None),
        person(ChangeOp::Insert, "2", [Some("ada@example.com"), Some(MAID)], None),
    ]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied), "{outcomes:?}");
    assert_eq!(
        fake.members(DEFAULT_SEGMENT),
        [email_id(MARY), email_id(ADA), format!("GOOGLE_AID:{MAID_SENT}")].into_iter().collect()
    );
    // Nothing but user ids: no name, title, company or country is stored with a member.
    assert_eq!(fake.attributes(DEFAULT_SEGMENT, &email_id(MARY)), Some(UserAttributes::default()));
    // The destination id is the member as sent: only wire values.
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(format!("email:{MARY}").as_str()));
    assert_eq!(outcomes[1].destination_id.as_deref(), Some(format!("email:{ADA}|mobile_ad_id:{MAID_SENT}").as_str()));
    assert_wire_only_ids(&outcomes);
    assert_nothing_plain(&sink, &outcomes, &["mary@example.com", "Mary@Example.COM", "ada@example.com"]);
    let request = fake.requests().into_iter().find(|r| r.path.ends_with("/users")).unwrap();
    assert_eq!((request.method.as_str(), request.elements), ("POST", 2));
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        json!({ "elements": [
            { "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": MARY }] },
            { "action": "ADD", "userIds": [
                { "idType": "SHA256_EMAIL", "idValue": ADA },
                { "idType": "GOOGLE_AID", "idValue": MAID_SENT },
            ] },
        ]})
    );
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn members_who_leave_are_removed_with_what_was_sent() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let entered = batch(vec![
        person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None),
        person(ChangeOp::Insert, "2", [Some("grace@example.com"), None], None),
    ]);
    let ids: Vec<Option<String>> =
        destination.write(&context, &entered).await.unwrap().into_iter().map(|o| o.destination_id).collect();

    let left = batch(vec![leaver("1", ids[0].clone()), leaver("3", None)]);
    let outcomes = destination.write(&context, &left).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[0].destination_id, ids[0]);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert!(outcomes[1].message.as_deref().unwrap().contains("cannot tell LinkedIn whom to remove"), "{outcomes:?}");
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(GRACE)].into_iter().collect());
    let removal = fake.requests().into_iter().rev().find(|r| r.path.ends_with("/users")).unwrap();
    let body: serde_json::Value = serde_json::from_str(&removal.body).unwrap();
    assert_eq!(
        body,
        json!({ "elements": [{
            "action": "REMOVE",
            "userIds": [{ "idType": "SHA256_EMAIL", "idValue": ADA }],
        }]})
    );
    assert_wire_only_ids(&outcomes);
    assert_nothing_plain(&sink, &outcomes, &["ada@example.com", "grace@example.com"]);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_changed_identifier_removes_the_old_member_then_adds_the_new() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let first = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None)]);
    let old = destination.write(&context, &first).await.unwrap()[0].destination_id.clone();

    // A new e-mail: the old member is removed, the new one added.
    let changed = batch(vec![person(ChangeOp::Update, "1", [Some("ada@new.example"), None], old)]);
    let outcomes = destination.write(&context, &changed).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(format!("email:{ADA_NEW}").as_str()));
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA_NEW)].into_iter().collect());
    let bodies: Vec<serde_json::Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/users"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3, "add, then remove old, then add new");
    assert_eq!(bodies[1]["elements"][0]["action"], "REMOVE");
    assert_eq!(bodies[1]["elements"][0]["userIds"][0]["idValue"], ADA);
    assert_eq!(bodies[2]["elements"][0]["action"], "ADD");
    assert_eq!(bodies[2]["elements"][0]["userIds"][0]["idValue"], ADA_NEW);

    // A device id added keeps the e-mail: removed first, then added again, never lost.
    let from = outcomes[0].destination_id.clone();
    let with_maid = batch(vec![person(ChangeOp::Update, "1", [Some("ada@new.example"), Some(MAID)], from)]);
    let outcomes = destination.write(&context, &with_maid).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied, "{outcomes:?}");
    assert_eq!(
        fake.members(DEFAULT_SEGMENT),
        [email_id(ADA_NEW), format!("GOOGLE_AID:{MAID_SENT}")].into_iter().collect()
    );
    assert_wire_only_ids(&outcomes);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn insert_mode_adds_and_never_removes() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Insert).await;
    let (context, _) = context(SyncMode::Insert);
    let first = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None)]);
    let old = destination.write(&context, &first).await.unwrap()[0].destination_id.clone();
    let changes =
        batch(vec![person(ChangeOp::Update, "1", [Some("ada@new.example"), None], old.clone()), leaver("1", old)]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA), email_id(ADA_NEW)].into_iter().collect());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_large_batch_goes_out_in_requests_of_at_most_5000_elements() {
    let fake = LinkedInFake::start(LinkedInOptions { users_per_minute: None, ..LinkedInOptions::default() }).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    assert_eq!(destination.batch_size(), 5000, "LinkedIn's batch limit");
    let (context, _) = context(SyncMode::Audience);
    let emails: Vec<String> = (0..5001).map(|i| format!("member{i}@example.com")).collect();
    let changes = batch(
        emails
            .iter()
            .enumerate()
            .map(|(i, e)| person(ChangeOp::Insert, &i.to_string(), [Some(e), None], None))
            .collect(),
    );
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied));
    let sizes: Vec<usize> =
        fake.requests().into_iter().filter(|r| r.path.ends_with("/users")).map(|r| r.elements).collect();
    assert_eq!(sizes, [5000, 1]);
    assert_eq!(fake.members(DEFAULT_SEGMENT).len(), 5001);

    // All of them leave: removals are batched the same way.
    let left = batch(outcomes.into_iter().enumerate().map(|(i, o)| leaver(&i.to_string(), o.destination_id)).collect());
    assert!(destination.write(&context, &left).await.unwrap().iter().all(|o| o.status == OutcomeStatus::Applied));
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn the_fake_refuses_a_batch_over_the_limit() {
    // The limit the destination respects is one the fake enforces.
    let fake = LinkedInFake::start(LinkedInOptions { batch_limit: 2, ..LinkedInOptions::default() }).await;
    let destination = LinkedInDestination::new(config(&fake, json!({ "batch_size": 3 })), None).unwrap();
    destination.prepare(&target(SyncMode::Audience, &FIELDS, Some(DEFAULT_SEGMENT))).await.unwrap();
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(
        ["a@x.io", "b@x.io", "c@x.io"]
            .iter()
            .enumerate()
            .map(|(i, e)| person(ChangeOp::Insert, &i.to_string(), [Some(e), None], None))
            .collect(),
    );
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("exceeds the maximum of 2"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 1);
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_then_succeeds() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None)]);
    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 7 });
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA)].into_iter().collect());

    // The documented per-member limit (no Retry-After documented: the driver backs off itself).
    fake.state().options_mut().users_per_minute = Some(0);
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, None));
    assert!(error.message.contains("MEMBER MINUTE"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None)]);
    for status in [500, 503] {
        fake.inject_fault(Fault::Status(status));
        let error = destination.write(&context, &changes).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{status}");
        assert!(error.message.contains(&format!("HTTP {status}")), "{}", error.message);
    }
    assert!(fake.members(DEFAULT_SEGMENT).is_empty());
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, _) = context(SyncMode::Audience);
    fake.expire_access_tokens();
    let changes = batch(vec![person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None)]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    let counters = fake.state().counters.clone();
    assert_eq!(counters.unauthorized, 1);
    assert_eq!(counters.token_refreshes, 2, "one to start, one after the 401");
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA)].into_iter().collect());

    // Tokens that are refused even when fresh: one refresh, then an auth error.
    fake.state().options_mut().expire_token_after = Some(0);
    fake.expire_access_tokens();
    let error = destination.write(&context, &changes).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("even after refreshing"), "{}", error.message);
    assert_eq!(fake.state().counters.token_refreshes, 3);

    // A revoked refresh token stops the run with LinkedIn's reason.
    let revoked = LinkedInDestination::new(
        config(&fake, json!({ "oauth": { "client_id": "linkedin-client-id", "client_secret": "linkedin-client-secret", "refresh_token": "revoked" } })),
        None,
    )
    .unwrap();
    let error = revoked.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.message.contains("invalid, expired or revoked"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_member_linkedin_refuses_is_rejected_with_its_message_and_no_plain_value() {
    // The device id is the one plain value sent: LinkedIn's message may echo it, the outcome not.
    let reject = RejectRule {
        id_value: MAID_SENT.into(),
        status: 400,
        message: format!("GOOGLE_AID {MAID_SENT} is not a valid device id for this segment"),
    };
    let fake = LinkedInFake::start(LinkedInOptions { reject: vec![reject], ..LinkedInOptions::default() }).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let changes = batch(vec![
        person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None),
        person(ChangeOp::Insert, "2", [Some("grace@example.com"), Some(MAID)], None),
        person(ChangeOp::Insert, "3", [Some("not-an-email"), None], None),
    ]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert_eq!(outcomes[1].destination_id, None);
    assert_eq!(
        outcomes[1].message.as_deref(),
        Some("LinkedIn refused this member (HTTP 400): GOOGLE_AID [mobile_ad_id] is not a valid device id for this segment")
    );
    assert_eq!(outcomes[2], Outcome::rejected("email: not an e-mail address (expected name@domain)"));
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA)].into_iter().collect());
    assert!(outcomes.iter().all(|o| !o.message.as_deref().unwrap_or("").contains(MAID_SENT)));
    assert_wire_only_ids(&outcomes);
    assert_nothing_plain(&sink, &outcomes, &["grace@example.com", "ada@example.com", "not-an-email"]);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn mapping_names_or_country_is_refused_in_prepare() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = destination(&fake);
    let error = destination
        .prepare(&target(SyncMode::Audience, &["email", "first_name"], Some(DEFAULT_SEGMENT)))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert_eq!(
        error.message,
        "sync `vip_to_linkedin`: LinkedIn takes names and country unhashed, and Sluice sends only hashed identifiers \
         to ad platforms, so `first_name` cannot be sent; remove it from the mapping and map `email` (or \
         `mobile_ad_id`, an Android advertising id)"
    );
    for fields in [&["country"][..], &["email", "last_name", "country"], &["mobile_ad_id", "first_name"]] {
        let error = destination.prepare(&target(SyncMode::Audience, fields, Some(DEFAULT_SEGMENT))).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Config, "{fields:?}");
        assert!(
            error.message.contains("LinkedIn takes names and country unhashed")
                && error.message.contains("Sluice sends only hashed identifiers to ad platforms")
                && error.message.contains("map `email` (or `mobile_ad_id`"),
            "{fields:?}: {}",
            error.message
        );
    }
    let error = destination
        .prepare(&target(SyncMode::Audience, &["email", "last_name", "country"], Some(DEFAULT_SEGMENT)))
        .await
        .unwrap_err();
    assert!(error.message.contains("so `last_name`, `country` cannot be sent; remove them"), "{}", error.message);
    // Refused before anything is asked of LinkedIn.
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn names_stored_by_earlier_versions_are_never_sent_again() {
    // Destination ids written when LinkedIn was sent names and country. Changing the mapping
    // changes every record's fingerprint, so each comes back as an update (or leaves) with its
    // stored id.
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = prepared(&fake, SyncMode::Audience).await;
    let (context, sink) = context(SyncMode::Audience);
    let entered = batch(vec![
        person(ChangeOp::Insert, "1", [Some("ada@example.com"), None], None),
        person(ChangeOp::Insert, "2", [Some("grace@example.com"), None], None),
    ]);
    destination.write(&context, &entered).await.unwrap();
    let before = fake.requests().len();
    let ada_legacy = format!("email:{ADA}|first_name:Ada|last_name:Lovelace|country:GB");
    let grace_legacy = format!("email:{GRACE}|first_name:Grace|country:US");
    let changes = batch(vec![
        person(ChangeOp::Update, "1", [Some("ada@example.com"), None], Some(ada_legacy)),
        leaver("2", Some(grace_legacy)),
    ]);
    let outcomes = destination.write(&context, &changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied), "{outcomes:?}");
    // Ada keeps her user id (added again, never removed); Grace is removed by her user id alone.
    assert_eq!(outcomes[0].destination_id.as_deref(), Some(format!("email:{ADA}").as_str()));
    assert_eq!(outcomes[1].destination_id.as_deref(), Some(format!("email:{GRACE}").as_str()));
    assert_wire_only_ids(&outcomes);
    assert_eq!(fake.members(DEFAULT_SEGMENT), [email_id(ADA)].into_iter().collect());
    let bodies: Vec<serde_json::Value> = fake.requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("/users"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            json!({ "elements": [{ "action": "REMOVE", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": GRACE }] }] }),
            json!({ "elements": [{ "action": "ADD", "userIds": [{ "idType": "SHA256_EMAIL", "idValue": ADA }] }] }),
        ]
    );
    assert_nothing_plain(
        &sink,
        &outcomes,
        &["Ada", "Lovelace", "Grace", "\"GB\"", "\"US\"", "firstName", "lastName", "country", "ada@example.com"],
    );
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn prepare_checks_the_mode_fields_and_segment() {
    let mut options = LinkedInOptions::default();
    options.segments.push(SegmentDef {
        id: "20001".into(),
        account: "999".into(),
        name: "Someone else's".into(),
        kind: "USER".into(),
    });
    let fake = LinkedInFake::start(options).await;
    let destination = destination(&fake);
    let cases: [(SyncMode, &[&str], Option<&str>, &str); 9] = [
        (SyncMode::Upsert, &["email"], Some(DEFAULT_SEGMENT), "not `mode: upsert`"),
        (SyncMode::Audience, &["email", "phone"], Some(DEFAULT_SEGMENT), "`phone`"),
        (SyncMode::Audience, &["first_name", "last_name"], Some(DEFAULT_SEGMENT), "map `email` (or `mobile_ad_id`"),
        (SyncMode::Audience, &[], Some(DEFAULT_SEGMENT), "map at least one identifier LinkedIn matches on"),
        (SyncMode::Audience, &["email"], None, "set `object:`"),
        (SyncMode::Audience, &["email"], Some("ten"), "not a LinkedIn DMP segment id"),
        (SyncMode::Audience, &["email"], Some("424242"), "no DMP segment 424242"),
        (SyncMode::Audience, &["email"], Some(COMPANY_SEGMENT), "COMPANY segment"),
        (SyncMode::Audience, &["email"], Some("20001"), "belongs to ad account 999"),
    ];
    for (mode, fields, object, expected) in cases {
        let error = destination.prepare(&target(mode, fields, object)).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Config, "{}", error.message);
        assert!(error.message.contains(expected), "{expected}: {}", error.message);
    }
    destination
        .prepare(&target(SyncMode::Audience, &["email"], Some(&format!("urn:li:dmpSegment:{DEFAULT_SEGMENT}"))))
        .await
        .unwrap();
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn check_and_discover_list_the_accounts_user_segments() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = destination(&fake);
    destination.check().await.unwrap();
    let all = destination.discover(None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [DEFAULT_SEGMENT], "company segments take no users");
    let fields: Vec<(&str, bool)> = all[0].fields.iter().map(|f| (f.name.as_str(), f.can_match_on)).collect();
    assert_eq!(fields, [("email", true), ("mobile_ad_id", true)], "names and country are not offered");
    assert_eq!(all[0].modes, [SyncMode::Audience, SyncMode::Insert]);
    assert_eq!(all[0].fields[0].field_type, "userIds SHA256_EMAIL");
    assert_eq!(all[0].fields[1].field_type, "userIds GOOGLE_AID");
    let one = destination.discover(Some(DEFAULT_SEGMENT)).await.unwrap();
    assert_eq!(one, all);
    assert_eq!(fake.invalid_requests(), 0, "{:?}", fake.problems());
}

#[tokio::test]
async fn a_sunset_api_version_is_a_config_error() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let destination = LinkedInDestination::new(config(&fake, json!({ "linkedin_version": "202401" })), None).unwrap();
    let error = destination.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("set `linkedin_version`"), "{}", error.message);
    assert_eq!(fake.invalid_requests(), 1, "the fake flags the inactive version");
}

#[tokio::test]
async fn config_errors_name_the_key_and_limits_follow_the_docs() {
    let fake = LinkedInFake::start(LinkedInOptions::default()).await;
    let key = |extra: serde_json::Value| LinkedInDestination::new(config(&fake, extra), None).err().map(|(key, _)| key);
    assert_eq!(key(json!({ "ad_account": "acct-1" })), Some("ad_account"));
    assert_eq!(key(json!({ "linkedin_version": "2026-10" })), Some("linkedin_version"));
    assert_eq!(key(json!({ "linkedin_version": "202613" })), Some("linkedin_version"));
    assert_eq!(key(json!({ "batch_size": 5001 })), Some("batch_size"));
    assert_eq!(key(json!({ "max_concurrency": 0 })), Some("max_concurrency"));
    assert_eq!(key(json!({ "api_url": "ftp://x" })), Some("api_url"));
    assert_eq!(key(json!({ "ad_account": format!("urn:li:sponsoredAccount:{DEFAULT_ACCOUNT}") })), None);
    let unknown = json!({ "oauth": { "client_id": "a", "client_secret": "b", "refresh_token": "c" }, "ad_account": "1", "segment": "2" });
    assert!(serde_json::from_value::<LinkedInConfig>(unknown).is_err(), "unknown keys are refused");

    let destination = destination(&fake);
    let limits = destination.delivery_limits();
    assert_eq!((limits.quotas[0].requests, limits.quotas[0].per), (600, Duration::from_secs(60)));
    assert!(limits.split_rejected_batches);
    assert!(destination.accepts_object() && destination.wants_destination_ids() && !destination.accepts_match_on());
    assert!(!destination.account_key().contains("linkedin-refresh-token"));
    assert!(sluice_destinations::supported_types().contains(&"linkedin"));
}
