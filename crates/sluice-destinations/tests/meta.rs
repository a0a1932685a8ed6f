//! Meta Custom Audiences destination against the faithful fake in `sluice-fakes`.
#![cfg(feature = "meta")]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::DataType;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, RateFeedback, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::ads::identifiers::sha256_hex;
use sluice_destinations::meta::{MetaConfig, MetaDestination};
use sluice_fakes::meta::{
    AudienceDef, Fault, MetaFake, MetaOptions, Row, DEFAULT_ACCESS_TOKEN, DEFAULT_AD_ACCOUNT, DEFAULT_AUDIENCE_ID,
    WEBSITE_AUDIENCE_ID,
};

const FIELDS: [&str; 5] = ["email", "phone", "first_name", "date_of_birth", "mobile_ad_id"];

fn config(fake: &MetaFake, extra: serde_json::Value) -> MetaConfig {
    let mut value = serde_json::json!({
        "access_token": DEFAULT_ACCESS_TOKEN,
        "api_url": fake.base_url(),
        "ad_account_id": format!("act_{DEFAULT_AD_ACCOUNT}"),
    });
    value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).unwrap()
}

fn destination(fake: &MetaFake) -> MetaDestination {
    MetaDestination::new(config(fake, serde_json::json!({}))).unwrap()
}

fn target(mode: SyncMode, object: &str, fields: &[&str]) -> Target {
    Target {
        sync: "vip_to_meta".into(),
        mode,
        fields: fields.iter().map(|f| FieldSpec { name: (*f).into(), data_type: DataType::Utf8 }).collect(),
        key_field: None,
        object: Some(object.into()),
        match_field: None,
        associations: Vec::new(),
        planned_changes: 0,
        full_sync: false,
    }
}

fn context(mode: SyncMode) -> WriteContext {
    WriteContext {
        sync: "vip_to_meta".into(),
        run_id: 1,
        mode,
        object: Some(DEFAULT_AUDIENCE_ID.into()),
        capture: None,
        rate: None,
    }
}

fn text(value: &str) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::Text(value.into())
    }
}

/// A person with the five mapped fields, in FIELDS order.
fn person(op: ChangeOp, key: &str, values: [&str; 5]) -> Change {
    Change { op, key: key.into(), fingerprint: Fingerprint(1), values: values.map(text).to_vec(), destination_id: None }
}

fn batch(changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: FIELDS.iter().map(|f| f.to_string()).collect(), changes }
}

/// What the engine's snapshot keeps between runs: each applied record's destination id.
#[derive(Default)]
struct Snapshot(HashMap<String, String>);

impl Snapshot {
    fn commit(&mut self, batch: &ChangeBatch, outcomes: &[Outcome]) {
        for (change, outcome) in batch.changes.iter().zip(outcomes) {
            if outcome.status != OutcomeStatus::Applied {
                continue;
            }
            match change.op {
                ChangeOp::Delete => {
                    self.0.remove(&change.key);
                }
                _ => {
                    self.0.insert(
                        change.key.clone(),
                        outcome.destination_id.clone().expect("applied members carry an id"),
                    );
                }
            }
        }
    }

    /// The change as the engine hands it over: with the record's destination id.
    fn with_id(&self, mut change: Change) -> Change {
        change.destination_id = self.0.get(&change.key).cloned();
        change
    }
}

fn row(pairs: &[(&str, &str)]) -> Row {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sha(text: &str) -> String {
    sha256_hex(text)
}

const MARY: [&str; 5] =
    [" Mary@Example.com", "+1 (650) 253-0000", "Mary", "1990-07-04", "6D92078A-8246-4BA4-AE5B-76104861E7DC"];

/// Mary as Meta must store her: every key normalised by Meta's rules and hashed, except MADID.
fn mary_row() -> Row {
    row(&[
        // https://developers.facebook.com/documentation/ads-commerce/marketing-api/audiences/guides/custom-audiences
        // "Hashing": hash("sha256", "mary@example.com") = f1904cf1…
        ("EMAIL", "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"),
        ("PHONE", &sha("16502530000")),
        ("FN", &sha("mary")),
        ("DOBY", &sha("1990")),
        ("DOBM", &sha("07")),
        ("DOBD", &sha("04")),
        ("MADID", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
    ])
}

#[tokio::test]
async fn members_enter_leave_and_change_identifiers() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    destination.prepare(&target(SyncMode::Audience, DEFAULT_AUDIENCE_ID, &FIELDS)).await.unwrap();
    let mut snapshot = Snapshot::default();

    // Run 1: three members enter; one record has nothing to match on.
    let first = batch(vec![
        person(ChangeOp::Insert, "1", MARY),
        person(ChangeOp::Insert, "2", ["ADA@example.com", "", "", "", ""]),
        person(ChangeOp::Insert, "3", ["", "+44 20 7183 8750", "", "", ""]),
        person(ChangeOp::Insert, "4", ["", " ", "", "", ""]),
    ]);
    let outcomes = destination.write(&context(SyncMode::Audience), &first).await.unwrap();
    assert_eq!(outcomes.iter().map(|o| o.status).collect::<Vec<_>>()[..3], [OutcomeStatus::Applied; 3]);
    assert_eq!(outcomes[3].status, OutcomeStatus::Rejected);
    assert!(outcomes[3].message.as_deref().unwrap().contains("every identifier is empty"), "{:?}", outcomes[3]);
    let ada = row(&[("EMAIL", &sha("ada@example.com"))]);
    let bob = row(&[("PHONE", &sha("442071838750"))]);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([mary_row(), ada.clone(), bob.clone()]));
    assert_eq!(outcomes[1].destination_id.as_deref(), Some(format!("email:{}", sha("ada@example.com")).as_str()));
    snapshot.commit(&first, &outcomes);

    // Run 2: Ada changes her e-mail, Bob leaves, Mary is unchanged (not in the batch).
    let second = batch(vec![
        snapshot.with_id(person(ChangeOp::Update, "2", ["ada@new.example", "", "", "", ""])),
        snapshot.with_id(Change {
            op: ChangeOp::Delete,
            key: "3".into(),
            fingerprint: Fingerprint(0),
            values: Vec::new(),
            destination_id: None,
        }),
    ]);
    let outcomes = destination.write(&context(SyncMode::Audience), &second).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied), "{outcomes:?}");
    let ada_now = row(&[("EMAIL", &sha("ada@new.example"))]);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([mary_row(), ada_now]));
    snapshot.commit(&second, &outcomes);
    assert_eq!(snapshot.0.len(), 2, "Mary and Ada");

    // Removals go before additions, each a one-batch session with the documented fields.
    let uploads: Vec<(String, usize)> =
        fake.requests().iter().filter(|r| r.path.ends_with("/users")).map(|r| (r.method.clone(), r.rows)).collect();
    assert_eq!(uploads, [("POST".into(), 3), ("DELETE".into(), 2), ("POST".into(), 1)]);
    assert_eq!(fake.counters().removed, 2);
    assert_eq!(fake.invalid_requests(), 0);

    // A delete whose member was never sent cannot say whom to remove.
    let orphan = batch(vec![Change {
        op: ChangeOp::Delete,
        key: "9".into(),
        fingerprint: Fingerprint(0),
        values: Vec::new(),
        destination_id: None,
    }]);
    let outcomes = destination.write(&context(SyncMode::Audience), &orphan).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Rejected);
    assert!(outcomes[0].message.as_deref().unwrap().contains("whom to remove"));
}

#[tokio::test]
async fn only_digests_leave_the_machine() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    let sink = CaptureSink(Arc::new(Mutex::new(Vec::new())));
    let mut context = context(SyncMode::Audience);
    context.capture = Some(sink.clone());
    let sent = batch(vec![
        person(ChangeOp::Insert, "1", MARY),
        person(ChangeOp::Insert, "2", ["not-an-address-qwerty", "", "", "", ""]),
        person(ChangeOp::Insert, "3", ["", "+33 6 12 34 56 78", "Élodie", "2001-02-29", ""]),
    ]);
    let outcomes = destination.write(&context, &sent).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected, "not an e-mail address");
    assert_eq!(outcomes[2].status, OutcomeStatus::Rejected, "2001 is not a leap year");

    let captures = sink.drain();
    assert_eq!(captures.len(), 1);
    let body: String =
        form_urlencoded::parse(captures[0].request_body.as_bytes()).map(|(k, v)| format!("{k}={v}\n")).collect();
    // Long enough that no digest or random session id can hold them by chance.
    let plain = [
        "mary@example.com",
        "Mary@Example.com",
        "Mary",
        "\"mary\"",
        "16502530000",
        "(650) 253-0000",
        "1990-07-04",
        "19900704",
        "not-an-address-qwerty",
        "33612345678",
        "Élodie",
        "élodie",
        "2001-02-29",
    ];
    for value in plain {
        assert!(!body.contains(value), "the request body holds {value:?}: {body}");
        assert!(!captures[0].request_body.contains(value), "{value:?}");
        for outcome in &outcomes {
            assert!(!outcome.message.as_deref().unwrap_or("").contains(value), "{outcome:?} holds {value:?}");
            assert!(!outcome.destination_id.as_deref().unwrap_or("").contains(value), "{outcome:?}");
        }
    }
    // Meta takes mobile ad ids unhashed ("Do not hash"): the only plain identifier sent.
    assert!(body.contains("6d92078a-8246-4ba4-ae5b-76104861e7dc"));
    assert!(
        !captures[0].url.contains(DEFAULT_ACCESS_TOKEN) && !captures[0].request_body.contains(DEFAULT_ACCESS_TOKEN)
    );

    // The documented payload: a multi-key schema of the identifiers present, one session.
    let params: HashMap<String, String> =
        form_urlencoded::parse(captures[0].request_body.as_bytes()).into_owned().collect();
    let payload: serde_json::Value = serde_json::from_str(&params["payload"]).unwrap();
    assert_eq!(payload["schema"], serde_json::json!(["EMAIL", "PHONE", "FN", "DOBY", "DOBM", "DOBD", "MADID"]));
    assert_eq!(payload["data"].as_array().unwrap().len(), 1);
    let session: serde_json::Value = serde_json::from_str(&params["session"]).unwrap();
    assert_eq!(session["batch_seq"], 1);
    assert_eq!(session["last_batch_flag"], true);
    assert_eq!(session["estimated_num_total"], 1);
    assert!(session["session_id"].as_u64().unwrap() > 0);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn documented_vectors_and_prehashed_values_reach_meta_unchanged() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    // Meta's "Hashing" examples: hash("sha256", "15559876543") = 1ef97083…, given already hashed
    // (uppercase): it passes through, lowercased. The e-mail is normalised, then hashed.
    let hashed_phone = "1EF970831D7963307784FA8688E8FCE101A15685D62AA765FED23F3A2C576A4E";
    let sent = batch(vec![person(ChangeOp::Insert, "1", ["MARY@example.COM", hashed_phone, "", "", ""])]);
    let outcomes = destination.write(&context(SyncMode::Audience), &sent).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(
        fake.members(DEFAULT_AUDIENCE_ID),
        BTreeSet::from([row(&[
            ("EMAIL", "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"),
            ("PHONE", "1ef970831d7963307784fa8688e8fce101a15685d62aa765fed23f3a2c576a4e"),
        ])])
    );
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn batch_limits_hold_on_25000_members() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    assert_eq!(destination.batch_size(), 10_000);
    let changes: Vec<Change> = (0..25_000)
        .map(|i| person(ChangeOp::Insert, &i.to_string(), [&format!("member{i}@example.com"), "", "", "", ""]))
        .collect();
    // Split as the delivery driver splits a run: batch_size changes per write.
    let mut applied = 0;
    for chunk in changes.chunks(destination.batch_size()) {
        let outcomes = destination.write(&context(SyncMode::Audience), &batch(chunk.to_vec())).await.unwrap();
        applied += outcomes.iter().filter(|o| o.status == OutcomeStatus::Applied).count();
    }
    assert_eq!(applied, 25_000);
    assert_eq!(fake.member_count(DEFAULT_AUDIENCE_ID), 25_000);
    let rows: Vec<usize> = fake.requests().iter().map(|r| r.rows).collect();
    assert_eq!(rows, [10_000, 10_000, 5_000]);

    // A write larger than batch_size (never sent by the driver) is still cut to it.
    let small = MetaDestination::new(config(&fake, serde_json::json!({"batch_size": 3}))).unwrap();
    let seven: Vec<Change> = (0..7)
        .map(|i| person(ChangeOp::Insert, &format!("s{i}"), [&format!("small{i}@example.com"), "", "", "", ""]))
        .collect();
    small.write(&context(SyncMode::Audience), &batch(seven)).await.unwrap();
    let rows: Vec<usize> = fake.requests().iter().skip(3).map(|r| r.rows).collect();
    assert_eq!(rows, [3, 3, 1]);
    assert_eq!(fake.invalid_requests(), 0);

    let error = MetaDestination::new(config(&fake, serde_json::json!({"batch_size": 10_001}))).err().unwrap();
    assert_eq!(error.0, "batch_size");
}

#[tokio::test]
async fn throttling_waits_then_succeeds() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    let reported: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
    let seen = reported.clone();
    let mut context = context(SyncMode::Audience);
    context.rate = Some(RateFeedback(Arc::new(move |remaining, wait| seen.lock().unwrap().push((remaining, wait)))));
    let sent = batch(vec![person(ChangeOp::Insert, "1", MARY)]);

    fake.inject_fault(Fault::Throttle { code: 80_003, regain_access_minutes: 2 });
    let error = destination.write(&context, &sent).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(120)));
    assert!(error.message.contains("code 80003"), "{}", error.message);
    assert_eq!(reported.lock().unwrap().as_slice(), [(0, Duration::from_secs(120))], "every sync of the account waits");

    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 3 });
    let error = destination.write(&context, &sent).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(3)));

    for code in [4, 17, 32, 613] {
        fake.inject_fault(Fault::Throttle { code, regain_access_minutes: 1 });
        assert_eq!(destination.write(&context, &sent).await.unwrap_err().class, ErrorClass::RateLimited, "{code}");
    }
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty(), "nothing stored while throttled");

    let outcomes = destination.write(&context, &sent).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([mary_row()]));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn the_accounts_hourly_budget_is_enforced_with_meta_code_80003() {
    let fake = MetaFake::start(MetaOptions { requests_per_hour: Some(2), ..MetaOptions::default() }).await;
    let destination = MetaDestination::new(config(&fake, serde_json::json!({"requests_per_hour": 2}))).unwrap();
    let quota = destination.delivery_limits().quotas[0];
    assert_eq!((quota.requests, quota.per), (2, Duration::from_secs(3600)));
    for key in ["1", "2"] {
        let sent = batch(vec![person(ChangeOp::Insert, key, [&format!("{key}@example.com"), "", "", "", ""])]);
        destination.write(&context(SyncMode::Audience), &sent).await.unwrap();
    }
    let sent = batch(vec![person(ChangeOp::Insert, "3", ["3@example.com", "", "", "", ""])]);
    let error = destination.write(&context(SyncMode::Audience), &sent).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert!(error.retry_after.is_some_and(|wait| wait > Duration::from_secs(3000)), "{:?}", error.retry_after);
}

#[tokio::test]
async fn an_expired_or_unknown_token_stops_the_run_and_says_to_renew_it() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    destination.check().await.unwrap();
    let sent = batch(vec![person(ChangeOp::Insert, "1", MARY)]);

    fake.inject_fault(Fault::ExpiredToken);
    let error = destination.write(&context(SyncMode::Audience), &sent).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(error.class.stops_run());
    assert!(error.message.contains("code 190, subcode 463"), "{}", error.message);
    assert!(error.message.contains("update `access_token`"), "{}", error.message);

    let stranger = MetaDestination::new(config(&fake, serde_json::json!({"access_token": "EAAstolen"}))).unwrap();
    let error = stranger.check().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(
        error.message.contains("Cannot parse access token") && !error.message.contains("EAAstolen"),
        "{}",
        error.message
    );
    assert_eq!(fake.counters().unauthorized, 2);
    assert!(fake.members(DEFAULT_AUDIENCE_ID).is_empty());
}

#[tokio::test]
async fn server_errors_and_timeouts_are_transient() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = MetaDestination::new(config(&fake, serde_json::json!({"timeout_seconds": 1}))).unwrap();
    let sent = batch(vec![person(ChangeOp::Insert, "1", MARY)]);
    for fault in [Fault::Status(500), Fault::Status(503), Fault::Status(502), Fault::Delay(Duration::from_secs(3))] {
        fake.inject_fault(fault.clone());
        let error = destination.write(&context(SyncMode::Audience), &sent).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{fault:?}: {}", error.message);
    }
    let outcomes = destination.write(&context(SyncMode::Audience), &sent).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    // The delayed upload was finished by Meta although the client gave up: sending again is harmless.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([mary_row()]));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn members_meta_counts_invalid_are_rejected_and_the_rest_applied() {
    let options = MetaOptions { reject_values: vec![sha("bad@example.com")], ..MetaOptions::default() };
    let fake = MetaFake::start(options).await;
    let destination = destination(&fake);
    let sent = batch(vec![
        person(ChangeOp::Insert, "1", ["good@example.com", "", "", "", ""]),
        person(ChangeOp::Insert, "2", ["bad@example.com", "", "", "", ""]),
    ]);
    let outcomes = destination.write(&context(SyncMode::Audience), &sent).await.unwrap();
    assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert!(outcomes[1].message.as_deref().unwrap().contains("invalid entry"));
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([row(&[("EMAIL", &sha("good@example.com"))])]));
    assert_eq!(fake.invalid_requests(), 0, "refused by Meta, not malformed by the client");
}

#[tokio::test]
async fn insert_mode_only_adds() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let destination = destination(&fake);
    destination.prepare(&target(SyncMode::Insert, DEFAULT_AUDIENCE_ID, &FIELDS)).await.unwrap();
    let mut snapshot = Snapshot::default();
    let first = batch(vec![person(ChangeOp::Insert, "1", ["old@example.com", "", "", "", ""])]);
    let outcomes = destination.write(&context(SyncMode::Insert), &first).await.unwrap();
    snapshot.commit(&first, &outcomes);
    let second = batch(vec![snapshot.with_id(person(ChangeOp::Update, "1", ["new@example.com", "", "", "", ""]))]);
    destination.write(&context(SyncMode::Insert), &second).await.unwrap();
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID).len(), 2, "nothing is removed in insert mode");
    assert!(fake.requests().iter().filter(|r| r.path.ends_with("/users")).all(|r| r.method == "POST"));
}

#[tokio::test]
async fn prepare_checks_the_mode_the_fields_and_the_audience() {
    let mut options = MetaOptions::default();
    options
        .audiences
        .push(AudienceDef { operation_status: 471, ..AudienceDef::custom("777", "Flagged", DEFAULT_AD_ACCOUNT) });
    let fake = MetaFake::start(options).await;
    let destination = destination(&fake);
    destination.prepare(&target(SyncMode::Audience, DEFAULT_AUDIENCE_ID, &FIELDS)).await.unwrap();

    let config_error = |result: Result<(), sluice_core::DestinationError>| {
        let error = result.unwrap_err();
        assert_eq!(error.class, ErrorClass::Config, "{}", error.message);
        error.message
    };
    let message = config_error(destination.prepare(&target(SyncMode::Upsert, DEFAULT_AUDIENCE_ID, &FIELDS)).await);
    assert!(message.contains("mode: audience"), "{message}");
    let message =
        config_error(destination.prepare(&target(SyncMode::Audience, DEFAULT_AUDIENCE_ID, &["email", "ltv"])).await);
    assert!(message.contains("`ltv`") && message.contains("external_id"), "{message}");
    let message = config_error(destination.prepare(&target(SyncMode::Audience, WEBSITE_AUDIENCE_ID, &FIELDS)).await);
    assert!(message.contains("WEBSITE") && message.contains("customer list"), "{message}");
    let message = config_error(destination.prepare(&target(SyncMode::Audience, "999", &FIELDS)).await);
    assert!(message.contains("`object:`"), "{message}");
    let message = config_error(destination.prepare(&target(SyncMode::Audience, "vip list", &FIELDS)).await);
    assert!(message.contains("numeric id"), "{message}");
    let message = config_error(destination.prepare(&target(SyncMode::Audience, "777", &FIELDS)).await);
    assert!(message.contains("integrity"), "{message}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn discover_lists_the_accounts_customer_list_audiences_and_the_identifier_fields() {
    let mut options = MetaOptions::default();
    for i in 0..150 {
        options.audiences.push(AudienceDef::custom(&format!("3000{i:04}"), &format!("List {i}"), DEFAULT_AD_ACCOUNT));
    }
    let fake = MetaFake::start(options).await;
    let destination = destination(&fake);
    let objects = destination.discover(None).await.unwrap();
    assert_eq!(objects.len(), 151, "150 lists and the default one; the website audience is left out");
    assert!(objects.iter().all(|o| o.name != WEBSITE_AUDIENCE_ID));
    assert_eq!(fake.requests().iter().filter(|r| r.path.ends_with("/customaudiences")).count(), 2, "two pages");

    let one = destination.discover(Some(DEFAULT_AUDIENCE_ID)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].modes, [SyncMode::Audience, SyncMode::Insert]);
    assert!(one[0].note.as_deref().unwrap().contains("VIP customers"));
    let fields: Vec<&str> = one[0].fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields.len(), 12);
    assert!(one[0].fields.iter().all(|f| f.can_match_on));
    let madid = one[0].fields.iter().find(|f| f.name == "mobile_ad_id").unwrap();
    assert_eq!(madid.field_type, "MADID (plain)");
    let dob = one[0].fields.iter().find(|f| f.name == "date_of_birth").unwrap();
    assert_eq!(dob.field_type, "DOBY+DOBM+DOBD (SHA-256)");

    let without_account = MetaDestination::new(config(&fake, serde_json::json!({"ad_account_id": null}))).unwrap();
    assert_eq!(without_account.discover(None).await.unwrap_err().class, ErrorClass::Config);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn app_secret_proof_is_sent_when_configured() {
    let options = MetaOptions { app_secret: Some("s3cret-app".into()), ..MetaOptions::default() };
    let fake = MetaFake::start(options).await;
    let signed = MetaDestination::new(config(&fake, serde_json::json!({"app_secret": "s3cret-app"}))).unwrap();
    signed.check().await.unwrap();
    let sent = batch(vec![person(ChangeOp::Insert, "1", MARY)]);
    signed.write(&context(SyncMode::Audience), &sent).await.unwrap();
    assert_eq!(fake.member_count(DEFAULT_AUDIENCE_ID), 1);

    let unsigned = destination(&fake);
    let error = unsigned.write(&context(SyncMode::Audience), &sent).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("app_secret") && !error.message.contains("s3cret"), "{}", error.message);
}

#[tokio::test]
async fn config_errors_name_the_key_and_the_identity_hides_the_token() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    let bad = |extra: serde_json::Value| MetaDestination::new(config(&fake, extra)).err().map(|(key, _)| key);
    assert_eq!(bad(serde_json::json!({"access_token": " "})), Some("access_token"));
    assert_eq!(bad(serde_json::json!({"api_version": "25"})), Some("api_version"));
    assert_eq!(bad(serde_json::json!({"api_url": "graph.facebook.com"})), Some("api_url"));
    assert_eq!(bad(serde_json::json!({"ad_account_id": "acct-12"})), Some("ad_account_id"));
    assert_eq!(bad(serde_json::json!({"default_country": "France"})), Some("default_country"));
    assert_eq!(bad(serde_json::json!({"requests_per_hour": 0})), Some("requests_per_hour"));
    assert_eq!(bad(serde_json::json!({"requests_per_hour": 700_001})), Some("requests_per_hour"));
    assert_eq!(bad(serde_json::json!({"max_concurrency": 17})), Some("max_concurrency"));
    assert!(serde_json::from_value::<MetaConfig>(serde_json::json!({"access_token": "x", "token": "y"})).is_err());

    let destination = destination(&fake);
    assert_eq!(destination.identity(), format!("meta {} act_{DEFAULT_AD_ACCOUNT}", fake.base_url()));
    assert!(!destination.describe().contains(DEFAULT_ACCESS_TOKEN));
    assert!(destination.wants_destination_ids() && destination.accepts_object());
    let limits = destination.delivery_limits();
    assert_eq!(limits.quotas[0].requests, 5_000);
    assert!(limits.split_rejected_batches);

    // A national phone number needs the default country.
    let french = MetaDestination::new(config(&fake, serde_json::json!({"default_country": "FR"}))).unwrap();
    let sent = batch(vec![person(ChangeOp::Insert, "1", ["", "06 12 34 56 78", "", "", ""])]);
    french.write(&context(SyncMode::Audience), &sent).await.unwrap();
    assert_eq!(fake.members(DEFAULT_AUDIENCE_ID), BTreeSet::from([row(&[("PHONE", &sha("33612345678"))])]));
}

/// A full sync's target: every record planned as an insert.
fn full_sync(planned: u64) -> Target {
    Target { full_sync: true, planned_changes: planned, ..target(SyncMode::Audience, DEFAULT_AUDIENCE_ID, &FIELDS) }
}

fn emails(fake: &MetaFake) -> BTreeSet<String> {
    fake.members(DEFAULT_AUDIENCE_ID).iter().filter_map(|r| r.get("EMAIL").cloned()).collect()
}

fn people(prefix: &str, count: usize) -> Vec<Change> {
    (0..count)
        .map(|i| {
            person(ChangeOp::Insert, &format!("{prefix}{i}"), [&format!("{prefix}{i}@example.com"), "", "", "", ""])
        })
        .collect()
}

/// Puts members in the audience the way an earlier, forgotten sync would have.
async fn seed_stale_members(fake: &MetaFake, count: usize) {
    let destination = destination(fake);
    destination.prepare(&target(SyncMode::Audience, DEFAULT_AUDIENCE_ID, &FIELDS)).await.unwrap();
    destination.write(&context(SyncMode::Audience), &batch(people("stale", count))).await.unwrap();
    assert_eq!(fake.member_count(DEFAULT_AUDIENCE_ID), count);
}

/// Sends a batch as the delivery driver does: retries what may pass later.
async fn deliver(destination: &MetaDestination, context: &WriteContext, sent: &ChangeBatch) -> Vec<Outcome> {
    for _ in 0..6 {
        match destination.write(context, sent).await {
            Ok(outcomes) => return outcomes,
            Err(error) if error.class.is_retryable() => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(error) => panic!("{}", error.message),
        }
    }
    panic!("still failing after 6 attempts");
}

/// Each `/usersreplace` request's `session` and answer status, in the order sent.
fn replace_sessions(sink: &CaptureSink) -> Vec<(serde_json::Value, Option<u16>)> {
    sink.drain()
        .into_iter()
        .filter(|c| c.url.ends_with("/usersreplace"))
        .map(|c| {
            let params: HashMap<String, String> =
                form_urlencoded::parse(c.request_body.as_bytes()).into_owned().collect();
            (serde_json::from_str(&params["session"]).unwrap(), c.status)
        })
        .collect()
}

/// One session id; the accepted requests numbered 1, 2, 3…; `last_batch_flag` on the final one only;
/// `estimated_num_total` the planned changes. Returns the accepted requests' count.
fn assert_one_ordered_session(sessions: &[(serde_json::Value, Option<u16>)], planned: u64) -> usize {
    let ids: BTreeSet<u64> = sessions.iter().map(|(s, _)| s["session_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one session for the run: {sessions:?}");
    let accepted: Vec<&serde_json::Value> =
        sessions.iter().filter(|(_, status)| *status == Some(200)).map(|(s, _)| s).collect();
    let seqs: Vec<u64> = accepted.iter().map(|s| s["batch_seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=accepted.len() as u64).collect::<Vec<_>>(), "{sessions:?}");
    let lasts: Vec<bool> = accepted.iter().map(|s| s["last_batch_flag"].as_bool().unwrap()).collect();
    assert_eq!(lasts.iter().filter(|l| **l).count(), 1, "{sessions:?}");
    assert_eq!(lasts.last(), Some(&true), "{sessions:?}");
    assert!(sessions.iter().all(|(s, _)| s["estimated_num_total"] == planned), "{sessions:?}");
    accepted.len()
}

#[tokio::test]
async fn a_full_sync_replaces_the_audience_in_one_session_then_runs_go_back_to_users() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    seed_stale_members(&fake, 3).await;
    let destination =
        MetaDestination::new(config(&fake, serde_json::json!({"batch_size": 2, "replace_on_full_sync": true})))
            .unwrap();
    destination.prepare(&full_sync(5)).await.unwrap();
    assert_eq!(destination.delivery_limits().max_concurrency, 1, "a replace session sends one batch at a time");
    let sink = CaptureSink(Default::default());
    let mut context = context(SyncMode::Audience);
    context.capture = Some(sink.clone());
    let changes = people("vip", 5);
    let batches: Vec<ChangeBatch> = changes.chunks(2).map(|c| batch(c.to_vec())).collect();
    // Even sent at once, the session's batches go out one by one, numbered in send order.
    let (a, b, c) = tokio::join!(
        destination.write(&context, &batches[0]),
        destination.write(&context, &batches[1]),
        destination.write(&context, &batches[2]),
    );
    for outcomes in [a.unwrap(), b.unwrap(), c.unwrap()] {
        assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied && o.destination_id.is_some()));
    }
    let expected: BTreeSet<String> = (0..5).map(|i| sha(&format!("vip{i}@example.com"))).collect();
    assert_eq!(emails(&fake), expected, "exactly the model's members: the stale ones are gone");
    assert_eq!(assert_one_ordered_session(&replace_sessions(&sink), 5), 3);
    assert_eq!(fake.invalid_requests(), 0);
    assert_eq!(destination.delivery_limits().max_concurrency, 4, "a finished session no longer holds requests back");

    // The next run starts from a full snapshot: changes go through /users again.
    destination.prepare(&Target { full_sync: false, ..full_sync(1) }).await.unwrap();
    assert_eq!(destination.delivery_limits().max_concurrency, 4);
    let before = fake.requests().len();
    destination.write(&context, &batch(people("late", 1))).await.unwrap();
    let paths: Vec<String> = fake.requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, [format!("/v25.0/{DEFAULT_AUDIENCE_ID}/users")]);
    assert_eq!(emails(&fake).len(), 6);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn replace_on_full_sync_false_and_insert_mode_keep_stale_members() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    seed_stale_members(&fake, 2).await;
    let destination = MetaDestination::new(config(&fake, serde_json::json!({"replace_on_full_sync": false}))).unwrap();
    destination.prepare(&full_sync(2)).await.unwrap();
    destination.write(&context(SyncMode::Audience), &batch(people("vip", 2))).await.unwrap();
    assert_eq!(emails(&fake).len(), 4, "the stale members stay");

    let destination = self::destination(&fake);
    destination.prepare(&Target { mode: SyncMode::Insert, ..full_sync(1) }).await.unwrap();
    destination.write(&context(SyncMode::Insert), &batch(people("ins", 1))).await.unwrap();
    assert_eq!(emails(&fake).len(), 5, "insert mode only adds");
    assert!(fake.requests().iter().all(|r| !r.path.ends_with("/usersreplace")));
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_429_or_5xx_inside_a_replace_session_is_retried_in_order() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    seed_stale_members(&fake, 2).await;
    let destination =
        MetaDestination::new(config(&fake, serde_json::json!({"batch_size": 1, "replace_on_full_sync": true})))
            .unwrap();
    destination.prepare(&full_sync(4)).await.unwrap();
    let sink = CaptureSink(Default::default());
    let mut context = context(SyncMode::Audience);
    context.capture = Some(sink.clone());
    let changes = people("vip", 4);
    for (index, change) in changes.iter().enumerate() {
        match index {
            1 => fake.inject_fault(Fault::Status(503)),
            2 => fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 1 }),
            3 => fake.inject_fault(Fault::Status(500)),
            _ => {}
        }
        let outcomes = deliver(&destination, &context, &batch(vec![change.clone()])).await;
        assert_eq!(outcomes[0].status, OutcomeStatus::Applied);
        if index < 3 {
            assert_eq!(emails(&fake).len(), 2, "the old members stay until the last batch");
        }
    }
    let sessions = replace_sessions(&sink);
    assert_eq!(sessions.len(), 7, "4 batches, 3 of them sent twice: {sessions:?}");
    assert_eq!(assert_one_ordered_session(&sessions, 4), 4);
    // A failed request is sent again under its own number.
    let failed: Vec<u64> =
        sessions.iter().filter(|(_, s)| *s != Some(200)).map(|(s, _)| s["batch_seq"].as_u64().unwrap()).collect();
    assert_eq!(failed, [2, 3, 4]);
    let last_failed = sessions.iter().find(|(s, st)| *st != Some(200) && s["batch_seq"] == 4).unwrap();
    assert_eq!(last_failed.0["last_batch_flag"], true, "the retried last batch carries the flag again");
    let expected: BTreeSet<String> = (0..4).map(|i| sha(&format!("vip{i}@example.com"))).collect();
    assert_eq!(emails(&fake), expected);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test]
async fn a_session_whose_last_records_are_refused_is_still_closed() {
    let fake = MetaFake::start(MetaOptions::default()).await;
    seed_stale_members(&fake, 2).await;
    let destination =
        MetaDestination::new(config(&fake, serde_json::json!({"batch_size": 2, "replace_on_full_sync": true})))
            .unwrap();
    destination.prepare(&full_sync(4)).await.unwrap();
    let sink = CaptureSink(Default::default());
    let mut context = context(SyncMode::Audience);
    context.capture = Some(sink.clone());
    let first = batch(people("vip", 2));
    assert!(destination.write(&context, &first).await.unwrap().iter().all(|o| o.status == OutcomeStatus::Applied));
    assert_eq!(emails(&fake).len(), 2, "not replaced yet");
    // The run's last two records have no identifier: nothing of them can be sent.
    let last = batch(vec![
        person(ChangeOp::Insert, "x", ["", "", "", "", ""]),
        person(ChangeOp::Insert, "y", ["", "", "", "", ""]),
    ]);
    let outcomes = destination.write(&context, &last).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Rejected));
    let expected: BTreeSet<String> = (0..2).map(|i| sha(&format!("vip{i}@example.com"))).collect();
    assert_eq!(emails(&fake), expected, "the session was closed: the stale members are gone");
    assert_eq!(assert_one_ordered_session(&replace_sessions(&sink), 4), 2);
    assert_eq!(fake.invalid_requests(), 0);
}
