//! End to end: an abandoned-cart audience synced with `mode: audience` to ad-platform fakes.
//! Members who enter are added and members who leave are removed; identifiers arrive
//! normalised and hashed (checked against the platforms' documented test vectors); batch limits
//! and 429s go through the delivery layer; no plain value is stored in request captures.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

/// Meta's documented hash ("Hashing" section of the Customer File Custom Audiences guide):
/// SHA-256 of `mary@example.com`.
const MARY_EMAIL_SHA256: &str = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79";
/// SHA-256 of `33612345678`, Mary's French mobile as Meta wants it: digits with the country code
/// (computed outside Sluice: `printf 33612345678 | sha256sum`).
const MARY_PHONE_SHA256: &str = "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661";

/// Users 1..=4 abandoned a cart; user 1 has `first_email`, written the way people type.
fn warehouse(dir: &Path, first_email: &str) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(dir.join("warehouse.db")).unwrap();
    connection
        .execute_batch(&format!(
            "create table users (user_id integer primary key, email text, phone text, country text);
             insert into users values (1, '{first_email}', '06 12 34 56 78', 'FR');
             with recursive n(i) as (select 2 union all select i + 1 from n where i < 10)
             insert into users select i, 'user' || i || '@example.com', '+3361234000' || (i % 10), 'FR' from n;
             create table events (event_id integer primary key, user_id integer, name text, occurred_at text);
             insert into events (user_id, name, occurred_at)
               select user_id, 'added_to_cart', datetime('now', '-2 days') from users where user_id <= 4;"
        ))
        .unwrap();
    connection
}

const MODELS: &str = r#"models:
  users:
    source: warehouse
    table: users
    primary_key: user_id
    relations:
      carts: { model: carts, join: { user_id: user_id } }
      purchases: { model: purchases, join: { user_id: user_id } }
  carts:
    source: warehouse
    sql: "select * from events where name = 'added_to_cart'"
    primary_key: event_id
    timestamp: occurred_at
  purchases:
    source: warehouse
    sql: "select * from events where name = 'purchased'"
    primary_key: event_id
    timestamp: occurred_at
audiences:
  abandoned_cart:
    parent: users
    conditions:
      event: carts
      within_last: 7 days
      then_not: { event: purchases }
"#;

fn write_project(dir: &Path, destination: &str, sync: &str) {
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            "version: 1\nsources:\n  warehouse: {{ type: sqlite, path: warehouse.db }}\ndestinations:\n  ads: {destination}\n{MODELS}syncs:\n  carts_to_ads:\n{sync}"
        ),
    )
    .unwrap();
}

/// User 2 buys (leaves the audience), user 5 adds to cart (enters).
fn change_members(connection: &rusqlite::Connection) {
    connection
        .execute_batch(
            "insert into events (user_id, name, occurred_at) values (2, 'purchased', datetime('now', '-1 hours'));
             insert into events (user_id, name, occurred_at) values (5, 'added_to_cart', datetime('now', '-1 hours'));",
        )
        .unwrap();
}

/// The sync under test: the abandoned-cart audience into `object`, in audience mode, with its
/// requests captured.
fn audience_sync(object: &str, mapping: &str) -> String {
    format!(
        "    model: abandoned_cart\n    destination: ads\n    object: \"{object}\"\n    mode: audience\n    debug_requests: true\n    mapping: {{ {mapping} }}\n"
    )
}

/// The first sync: the four members enter. Returns the platform's members afterwards.
async fn first_sync<T: Ord + std::fmt::Debug>(dir: &Path, members: impl Fn() -> BTreeSet<T>) -> BTreeSet<T> {
    let (code, report) = sync_json_async(dir, "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (4, 0, 0, 0));
    let members = members();
    assert_eq!(members.len(), 4, "{members:?}");
    members
}

/// User 2 leaves and user 5 enters; the second sync removes one member and adds one. Returns
/// the platform's members afterwards.
async fn second_sync<T: Ord + std::fmt::Debug>(
    dir: &Path,
    connection: &rusqlite::Connection,
    before: &BTreeSet<T>,
    members: impl Fn() -> BTreeSet<T>,
) -> BTreeSet<T> {
    change_members(connection);
    let (code, report) = sync_json_async(dir, "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (1, 0, 1, 0), "user 5 entered, user 2 left");
    let after = members();
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(before.difference(&after).count(), 1, "one member removed");
    assert_eq!(after.difference(before).count(), 1, "one member added");
    after
}

/// Every captured request body of the project's runs, for the "only hashes leave" check.
async fn captured_bodies(dir: &Path) -> String {
    let mut all = String::new();
    for run in ["1", "2"] {
        let output = sluice_async(dir, &["runs", "show", run, "--requests", "--json"]).await;
        assert!(output.status.success(), "{}", text(&output));
        all.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    assert!(all.contains("request_body"), "requests were captured: {all}");
    all
}

fn assert_no_plain_values(captures: &str) {
    for plain in ["@Example.com", "@example.com", "@gmail.com", "06 12 34 56 78", "33612345678\""] {
        assert!(!captures.contains(plain), "a plain value `{plain}` was captured");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_audience_members_enter_and_leave_as_hashes() {
    use sluice_core::{ChangeBatch, Destination, SyncMode, WriteContext};
    use sluice_fakes::meta::{Fault, MetaFake, MetaOptions, DEFAULT_ACCESS_TOKEN, DEFAULT_AUDIENCE_ID};
    let fake = MetaFake::start(MetaOptions { batch_limit: 2, ..MetaOptions::default() }).await;
    // A member left in the audience from before Sluice: the first run (a full sync) replaces it away.
    let stale = sluice_destinations::meta::MetaDestination::new(
        serde_json::from_value(serde_json::json!({"access_token": DEFAULT_ACCESS_TOKEN, "api_url": fake.base_url()}))
            .unwrap(),
    )
    .unwrap();
    let context = WriteContext {
        sync: "seed".into(),
        run_id: 0,
        mode: SyncMode::Audience,
        object: Some(DEFAULT_AUDIENCE_ID.into()),
        capture: None,
        rate: None,
    };
    let seed = ChangeBatch {
        fields: vec!["email".to_string()].into(),
        changes: vec![sluice_core::Change {
            op: sluice_core::ChangeOp::Insert,
            key: "stale".into(),
            fingerprint: sluice_core::Fingerprint(1),
            values: vec![sluice_core::Value::Text("stale@example.com".into())],
            destination_id: None,
        }],
    };
    stale.write(&context, &seed).await.unwrap();
    assert_eq!(fake.member_count(DEFAULT_AUDIENCE_ID), 1);
    fake.inject_fault(Fault::TooManyRequests { retry_after_secs: 1 });
    fake.inject_fault(Fault::Status(503));
    let seeded = fake.requests().len();
    let dir = tempfile::tempdir().unwrap();
    let connection = warehouse(dir.path(), "  Mary@Example.com ");
    write_project(
        dir.path(),
        &format!(
            "{{ type: meta, access_token: \"{DEFAULT_ACCESS_TOKEN}\", api_url: \"{}\", batch_size: 2, default_country: FR, replace_on_full_sync: true }}",
            fake.base_url()
        ),
        &audience_sync(DEFAULT_AUDIENCE_ID, "email: email, phone: phone"),
    );

    let (code, report) = sync_json_async(dir.path(), "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (4, 0, 0, 0));
    let members = fake.members(DEFAULT_AUDIENCE_ID);
    assert_eq!(members.len(), 4, "the model's 4 members, the stale one gone: {members:?}");
    let replaced = fake.requests()[seeded..].iter().filter(|r| r.path.ends_with("/usersreplace")).count();
    assert!(replaced >= 2, "the first run replaces the audience in batches of 2");
    let first_run = fake.requests().len();
    let mary = members.iter().find(|row| row.get("EMAIL").map(String::as_str) == Some(MARY_EMAIL_SHA256));
    let mary = mary.unwrap_or_else(|| panic!("Mary's documented email hash is a member: {members:?}"));
    assert_eq!(mary["PHONE"], MARY_PHONE_SHA256, "phone normalised to digits with the country code, then hashed");
    let emails = |fake: &MetaFake| -> BTreeSet<String> {
        fake.members(DEFAULT_AUDIENCE_ID).iter().filter_map(|r| r.get("EMAIL").cloned()).collect()
    };
    let before = emails(&fake);

    change_members(&connection);
    let (code, report) = sync_json_async(dir.path(), "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (1, 0, 1, 0), "user 5 entered, user 2 left");
    let later = fake.requests().split_off(first_run);
    assert!(
        later.iter().any(|r| r.path.ends_with("/users")) && !later.iter().any(|r| r.path.ends_with("/usersreplace")),
        "later runs add and remove through /users: {later:?}"
    );
    let after = emails(&fake);
    assert_eq!(after.len(), 4);
    assert_eq!(before.difference(&after).count(), 1, "one member removed");
    assert_eq!(after.difference(&before).count(), 1, "one member added");
    assert!(after.contains(MARY_EMAIL_SHA256));

    assert_eq!(fake.invalid_requests(), 0, "every request met Meta's documented rules (≤ 2 rows each)");
    assert!(fake.requests().len() >= 5, "4 members in batches of 2, a 429 and a 503 retried, then 2 more");
    assert_no_plain_values(&captured_bodies(dir.path()).await);
}

/// Google's documented hash of `danam@example.com`, the formatted `DanaM@example.com` of its
/// quickstart (https://developers.google.com/data-manager/api/get-started/quickstart/send-audience-members).
const DANAM_SHA256: &str = "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_customer_match_members_enter_and_leave_through_a_token_refresh() {
    use sluice_fakes::google::{
        DataManagerFake, DataManagerOptions, Fault, OAuthApp, StoredIdentifier, DEFAULT_ACCOUNT_ID, DEFAULT_USER_LIST,
    };
    let fake = DataManagerFake::start(DataManagerOptions {
        max_members: 2,
        faults: vec![Fault::TooManyRequests { retry_after_secs: Some(1) }, Fault::ExpireTokens, Fault::Status(503)],
        ..DataManagerOptions::default()
    })
    .await;
    let app = OAuthApp::default();
    let dir = tempfile::tempdir().unwrap();
    let connection = warehouse(dir.path(), " DanaM@example.com ");
    write_project(
        dir.path(),
        &format!(
            "{{ type: google_customer_match, oauth: {{ client_id: \"{}\", client_secret: \"{}\", refresh_token: \"{}\" }}, \
             operating_account: {{ account_type: GOOGLE_ADS, account_id: \"{DEFAULT_ACCOUNT_ID}\" }}, customer_match_terms_accepted: true, \
             consent: {{ ad_user_data: granted, ad_personalization: granted }}, api_url: \"{}\", token_url: \"{}\", batch_size: 2, default_country: FR }}",
            app.client_id,
            app.client_secret,
            app.refresh_token,
            fake.base_url(),
            fake.token_url()
        ),
        &audience_sync(DEFAULT_USER_LIST, "email: email, phone: phone"),
    );
    let emails = |fake: &DataManagerFake| -> BTreeSet<String> {
        fake.members(DEFAULT_USER_LIST)
            .iter()
            .flat_map(|m| m.iter())
            .filter_map(|i| match i {
                StoredIdentifier::Email(hash) => Some(hash.clone()),
                _ => None,
            })
            .collect()
    };

    let before = first_sync(dir.path(), || emails(&fake)).await;
    assert!(before.contains(DANAM_SHA256), "Google's documented hash: {before:?}");
    let phones: BTreeSet<StoredIdentifier> = fake
        .members(DEFAULT_USER_LIST)
        .into_iter()
        .flatten()
        .filter(|i| matches!(i, StoredIdentifier::Phone(_)))
        .collect();
    // SHA-256 of "+33612345678": Google wants E.164 with the plus (printf +33612345678 | sha256sum).
    let dana_phone = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8";
    assert!(phones.contains(&StoredIdentifier::Phone(dana_phone.into())), "phones are hashed E.164: {phones:?}");

    let after = second_sync(dir.path(), &connection, &before, || emails(&fake)).await;
    assert!(after.contains(DANAM_SHA256));
    assert_eq!(fake.invalid_requests(), 0, "every request met the documented shape (≤ 2 members each)");
    assert_no_plain_values(&captured_bodies(dir.path()).await);
}

/// TikTok's documented hash of `janedoe@gmail.com`
/// (https://ads.tiktok.com/help/article/how-to-create-a-custom-audience-with-a-customer-file).
const JANEDOE_SHA256: &str = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_audience_members_enter_and_leave_as_hashes() {
    use sluice_fakes::tiktok::{
        Fault, TikTokFake, TikTokOptions, DEFAULT_ACCESS_TOKEN, DEFAULT_ADVERTISER_ID, DEFAULT_AUDIENCE_ID,
    };
    let fake = TikTokFake::start(TikTokOptions {
        batch_limit: 2,
        faults: vec![Fault::RateLimited, Fault::Http(503)],
        ..TikTokOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let connection = warehouse(dir.path(), "JaneDoe@gmail.com ");
    write_project(
        dir.path(),
        &format!(
            "{{ type: tiktok_audiences, access_token: \"{DEFAULT_ACCESS_TOKEN}\", advertiser_id: \"{DEFAULT_ADVERTISER_ID}\", api_url: \"{}\", batch_size: 2, default_country: FR }}",
            fake.base_url()
        ),
        &audience_sync(DEFAULT_AUDIENCE_ID, "email: email, phone: phone"),
    );
    let emails = |fake: &TikTokFake| -> BTreeSet<String> {
        fake.members(DEFAULT_AUDIENCE_ID)
            .into_iter()
            .flatten()
            .filter(|(schema, _)| schema == "EMAIL_SHA256")
            .map(|(_, id)| id)
            .collect()
    };

    let before = first_sync(dir.path(), || emails(&fake)).await;
    assert!(before.contains(JANEDOE_SHA256), "TikTok's documented hash: {before:?}");

    let after = second_sync(dir.path(), &connection, &before, || emails(&fake)).await;
    assert!(after.contains(JANEDOE_SHA256));
    assert_eq!(fake.invalid_requests(), 0, "every request met the documented shape (≤ 2 users each)");
    assert_no_plain_values(&captured_bodies(dir.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapchat_audience_members_enter_and_leave_as_hashes() {
    use sluice_fakes::snapchat::{SnapchatFake, SnapchatOptions, DEFAULT_AD_ACCOUNT, DEFAULT_SEGMENT};
    let options = SnapchatOptions { expire_token_after: Some(2), ..SnapchatOptions::default() };
    let app = options.oauth.clone();
    let fake = SnapchatFake::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let connection = warehouse(dir.path(), " Mary@Example.com");
    write_project(
        dir.path(),
        &format!(
            "{{ type: snapchat, oauth: {{ client_id: \"{}\", client_secret: \"{}\", refresh_token: \"{}\" }}, \
             ad_account_id: \"{DEFAULT_AD_ACCOUNT}\", api_url: \"{}\", token_url: \"{}\", batch_size: 2, default_country: FR }}",
            app.client_id,
            app.client_secret,
            app.refresh_token,
            fake.api_url(),
            fake.token_url()
        ),
        &audience_sync(DEFAULT_SEGMENT, "email: email"),
    );
    let before = first_sync(dir.path(), || fake.members(DEFAULT_SEGMENT)).await;
    assert!(before.contains(&format!("EMAIL_SHA256:{MARY_EMAIL_SHA256}")), "{before:?}");

    second_sync(dir.path(), &connection, &before, || fake.members(DEFAULT_SEGMENT)).await;
    assert_eq!(fake.invalid_requests(), 0);
    assert!(fake.state().counters.token_refreshes >= 1, "an expired token was refreshed mid-run");
    assert_no_plain_values(&captured_bodies(dir.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_segment_members_enter_and_leave_as_hashes() {
    use sluice_fakes::linkedin::{Fault, LinkedInFake, LinkedInOptions, DEFAULT_ACCOUNT, DEFAULT_SEGMENT};
    let options = LinkedInOptions {
        batch_limit: 2,
        faults: vec![Fault::TooManyRequests { retry_after_secs: 1 }],
        ..LinkedInOptions::default()
    };
    let app = options.oauth.clone();
    let fake = LinkedInFake::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let connection = warehouse(dir.path(), "Mary@Example.com");
    write_project(
        dir.path(),
        &format!(
            "{{ type: linkedin, oauth: {{ client_id: \"{}\", client_secret: \"{}\", refresh_token: \"{}\" }}, \
             ad_account: \"{DEFAULT_ACCOUNT}\", api_url: \"{}\", token_url: \"{}\", batch_size: 2 }}",
            app.client_id,
            app.client_secret,
            app.refresh_token,
            fake.api_url(),
            fake.token_url()
        ),
        &audience_sync(DEFAULT_SEGMENT, "email: email"),
    );
    let before = first_sync(dir.path(), || fake.members(DEFAULT_SEGMENT)).await;
    assert!(before.contains(&format!("SHA256_EMAIL:{MARY_EMAIL_SHA256}")), "{before:?}");

    second_sync(dir.path(), &connection, &before, || fake.members(DEFAULT_SEGMENT)).await;
    assert_eq!(fake.invalid_requests(), 0);
    assert_no_plain_values(&captured_bodies(dir.path()).await);
}
