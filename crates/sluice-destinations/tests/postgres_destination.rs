//! Integration tests of the Postgres destination against the PostgreSQL server at TEST_URL.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_schema::{DataType, TimeUnit};
use sluice_core::{
    Change, ChangeBatch, ChangeOp, Destination, DestinationError, ErrorClass, FieldSpec, Fingerprint, Outcome,
    OutcomeStatus, SyncMode, Target, Value, WriteContext,
};
use sluice_destinations::postgres::{PostgresDestination, PostgresDestinationConfig};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static SCHEMA_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh schema for one test, dropped when the test ends, even by panicking.
struct TestSchema {
    name: String,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // Drop cannot await, and the test's runtime may be gone, so cleanup gets its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(TEST_URL, NoTls).await {
                    tokio::spawn(connection);
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!("cannot drop test schema: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Connects as admin and creates a fresh schema, or returns `None` (after saying so loudly)
/// when no server is reachable outside CI.
async fn setup() -> Option<(Client, TestSchema)> {
    let connected = tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(TEST_URL, NoTls)).await;
    let (client, connection) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return unreachable(&e.to_string()),
        Err(_) => return unreachable("timed out"),
    };
    tokio::spawn(connection);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name =
        format!("sluice_pgdest_{}_{}_{}", std::process::id(), SCHEMA_COUNTER.fetch_add(1, Ordering::SeqCst), nanos);
    client.batch_execute(&format!("CREATE SCHEMA \"{name}\"")).await.expect("create test schema");
    Some((client, TestSchema { name }))
}

fn unreachable<T>(cause: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("postgres at {TEST_URL} is not reachable in CI: {cause}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: postgres not reachable at {TEST_URL} ({cause}) !!!!!!!!\n");
    None
}

fn config(url: &str, table: &str) -> PostgresDestinationConfig {
    PostgresDestinationConfig { url: url.to_string(), table: table.to_string(), batch_size: None, create_table: None }
}

fn destination(schema: &TestSchema, table: &str) -> PostgresDestination {
    PostgresDestination::new(config(TEST_URL, &format!("{}.{table}", schema.name))).expect("valid config")
}

fn target(mode: SyncMode, fields: &[(&str, DataType)], key: &str) -> Target {
    Target {
        sync: "contacts".to_string(),
        mode,
        fields: fields
            .iter()
            .map(|(name, data_type)| FieldSpec { name: name.to_string(), data_type: data_type.clone() })
            .collect(),
        key_field: Some(key.to_string()),
        object: None,
        match_field: None,
        associations: Vec::new(),
        planned_changes: 0,
        full_sync: false,
    }
}

fn context(mode: SyncMode) -> WriteContext {
    WriteContext { sync: "contacts".to_string(), run_id: 1, mode, object: None, capture: None, rate: None }
}

fn batch(fields: &[&str], changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch { fields: fields.iter().map(|f| f.to_string()).collect::<Vec<_>>().into(), changes }
}

fn change(op: ChangeOp, key: i64, values: Vec<Value>) -> Change {
    Change { op, key: key.to_string(), fingerprint: Fingerprint(0), values, destination_id: None }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Rows of a query as text, via the simple protocol.
async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .expect("query")
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

fn row(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| if *v == "NULL" { None } else { Some(v.to_string()) }).collect()
}

fn statuses(outcomes: &[Outcome]) -> Vec<OutcomeStatus> {
    outcomes.iter().map(|o| o.status).collect()
}

const CONTACT_FIELDS: [&str; 3] = ["id", "email", "name"];

fn contact_target(mode: SyncMode) -> Target {
    target(mode, &[("id", DataType::Int64), ("email", DataType::Utf8), ("name", DataType::Utf8)], "id")
}

fn contact(op: ChangeOp, id: i64, email: Option<&str>, name: &str) -> Change {
    change(op, id, vec![Value::Int(id), email.map(text).unwrap_or(Value::Null), text(name)])
}

#[tokio::test]
async fn creates_the_table_with_column_types_and_primary_key() {
    let Some((client, schema)) = setup().await else { return };
    let dest = destination(&schema, "typed");
    dest.check().await.expect("check passes when the table can be created");
    let fields = [
        ("id", DataType::Int64),
        ("flag", DataType::Boolean),
        ("small", DataType::Int16),
        ("medium", DataType::Int32),
        ("ratio", DataType::Float32),
        ("score", DataType::Float64),
        ("email", DataType::Utf8),
        ("blob", DataType::Binary),
        ("born", DataType::Date32),
        ("seen_local", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("seen_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        ("other", DataType::Duration(TimeUnit::Second)),
    ];
    dest.prepare(&target(SyncMode::Upsert, &fields, "id")).await.expect("prepare creates the table");

    let columns = rows(
        &client,
        &format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'typed' ORDER BY ordinal_position",
            schema.name
        ),
    )
    .await;
    let expected = [
        ("id", "bigint"),
        ("flag", "boolean"),
        ("small", "smallint"),
        ("medium", "integer"),
        ("ratio", "real"),
        ("score", "double precision"),
        ("email", "text"),
        ("blob", "bytea"),
        ("born", "date"),
        ("seen_local", "timestamp without time zone"),
        ("seen_at", "timestamp with time zone"),
        ("other", "text"),
    ];
    let expected: Vec<Vec<Option<String>>> = expected.iter().map(|(n, t)| row(&[n, t])).collect();
    assert_eq!(columns, expected);
    let primary_key = rows(
        &client,
        &format!(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = '\"{}\".typed'::regclass AND i.indisprimary",
            schema.name
        ),
    )
    .await;
    assert_eq!(primary_key, vec![row(&["id"])]);

    // Every type takes its value through the text cast.
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let values = vec![
        Value::Int(1),
        Value::Bool(true),
        Value::Int(7),
        Value::Int(70_000),
        Value::Float(0.5),
        Value::Float(2.25),
        text("a@example.com"),
        Value::Bytes(vec![0xde, 0xad]),
        Value::Date(19_723),
        Value::Timestamp { micros: 1_704_067_200_000_001, utc: false },
        Value::Timestamp { micros: 1_704_067_200_000_001, utc: true },
        Value::Null,
    ];
    let outcomes = dest
        .write(&context(SyncMode::Upsert), &batch(&names, vec![change(ChangeOp::Insert, 1, values)]))
        .await
        .expect("write");
    assert_eq!(outcomes, vec![Outcome::applied()]);
    let stored = rows(
        &client,
        &format!(
            "SELECT id, flag, small, medium, ratio, score, email, blob, born, seen_local, \
             to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), other FROM \"{}\".typed",
            schema.name
        ),
    )
    .await;
    assert_eq!(
        stored,
        vec![row(&[
            "1",
            "t",
            "7",
            "70000",
            "0.5",
            "2.25",
            "a@example.com",
            "\\xdead",
            "2024-01-01",
            "2024-01-01 00:00:00.000001",
            "2024-01-01 00:00:00.000001",
            "NULL",
        ])]
    );
}

#[tokio::test]
async fn upsert_then_update_then_delete_leaves_the_expected_rows() {
    let Some((client, schema)) = setup().await else { return };
    let dest = destination(&schema, "crm_contacts");
    dest.prepare(&contact_target(SyncMode::Mirror)).await.expect("prepare");
    let ctx = context(SyncMode::Mirror);

    let inserts = vec![
        contact(ChangeOp::Insert, 1, Some("a@x.io"), "Ada"),
        contact(ChangeOp::Insert, 2, Some("b@x.io"), "Bob"),
        contact(ChangeOp::Insert, 3, Some("c@x.io"), "Cy"),
    ];
    let outcomes = dest.write(&ctx, &batch(&CONTACT_FIELDS, inserts)).await.expect("inserts");
    assert_eq!(statuses(&outcomes), vec![OutcomeStatus::Applied; 3]);

    let mixed = vec![
        contact(ChangeOp::Update, 2, Some("bob@x.io"), "Robert"),
        contact(ChangeOp::Insert, 4, None, "Di"),
        change(ChangeOp::Delete, 3, Vec::new()),
        // Already gone: deleting again is still applied.
        change(ChangeOp::Delete, 99, Vec::new()),
    ];
    let outcomes = dest.write(&ctx, &batch(&CONTACT_FIELDS, mixed)).await.expect("mixed batch");
    assert_eq!(statuses(&outcomes), vec![OutcomeStatus::Applied; 4]);

    let table = format!("\"{}\".crm_contacts", schema.name);
    assert_eq!(
        rows(&client, &format!("SELECT id, email, name FROM {table} ORDER BY id")).await,
        vec![row(&["1", "a@x.io", "Ada"]), row(&["2", "bob@x.io", "Robert"]), row(&["4", "NULL", "Di"])]
    );
}

#[tokio::test]
async fn insert_mode_is_idempotent_on_re_send() {
    let Some((client, schema)) = setup().await else { return };
    let dest = destination(&schema, "crm_contacts");
    dest.prepare(&contact_target(SyncMode::Insert)).await.expect("prepare");
    let ctx = context(SyncMode::Insert);
    let first = vec![contact(ChangeOp::Insert, 1, Some("a@x.io"), "Ada"), contact(ChangeOp::Insert, 2, None, "Bob")];
    assert_eq!(
        statuses(&dest.write(&ctx, &batch(&CONTACT_FIELDS, first)).await.expect("first")),
        vec![OutcomeStatus::Applied; 2]
    );
    // After a crash the same records come again, possibly changed meanwhile: insert mode keeps the first.
    let again = vec![contact(ChangeOp::Insert, 1, Some("new@x.io"), "Ada"), contact(ChangeOp::Insert, 2, None, "Bob")];
    assert_eq!(
        statuses(&dest.write(&ctx, &batch(&CONTACT_FIELDS, again)).await.expect("re-send")),
        vec![OutcomeStatus::Applied; 2]
    );
    assert_eq!(
        rows(&client, &format!("SELECT id, email FROM \"{}\".crm_contacts ORDER BY id", schema.name)).await,
        vec![row(&["1", "a@x.io"]), row(&["2", "NULL"])]
    );
}

#[tokio::test]
async fn update_mode_rejects_unknown_keys() {
    let Some((client, schema)) = setup().await else { return };
    // Update mode matches rows by join, so a key without a unique index is accepted.
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{0}\".crm_contacts (id bigint, email text, name text); \
             INSERT INTO \"{0}\".crm_contacts VALUES (1, 'a@x.io', 'Ada'), (2, 'b@x.io', 'Bob');",
            schema.name
        ))
        .await
        .expect("create table");
    let dest = destination(&schema, "crm_contacts");
    dest.prepare(&contact_target(SyncMode::Update)).await.expect("prepare");
    let changes = vec![
        contact(ChangeOp::Update, 1, Some("ada@x.io"), "Ada L"),
        contact(ChangeOp::Update, 42, Some("nobody@x.io"), "Nobody"),
        contact(ChangeOp::Update, 2, Some("bob@x.io"), "Bob"),
    ];
    let outcomes = dest.write(&context(SyncMode::Update), &batch(&CONTACT_FIELDS, changes)).await.expect("write");
    assert_eq!(outcomes[0], Outcome::applied());
    assert_eq!(outcomes[1].status, OutcomeStatus::Rejected);
    assert_eq!(
        outcomes[1].message.as_deref(),
        Some(format!("no row with id = 42 in {}.crm_contacts", schema.name).as_str())
    );
    assert_eq!(outcomes[2], Outcome::applied());
    assert_eq!(
        rows(&client, &format!("SELECT id, email, name FROM \"{}\".crm_contacts ORDER BY id", schema.name)).await,
        vec![row(&["1", "ada@x.io", "Ada L"]), row(&["2", "bob@x.io", "Bob"])]
    );
}

#[tokio::test]
async fn a_bad_record_is_rejected_alone_with_the_database_message() {
    let Some((client, schema)) = setup().await else { return };
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{}\".crm_contacts (id bigint PRIMARY KEY, email text NOT NULL, name text)",
            schema.name
        ))
        .await
        .expect("create table");
    let dest = destination(&schema, "crm_contacts");
    dest.prepare(&contact_target(SyncMode::Upsert)).await.expect("prepare");
    let changes = vec![
        contact(ChangeOp::Insert, 1, Some("a@x.io"), "Ada"),
        contact(ChangeOp::Insert, 2, None, "Bob"),
        contact(ChangeOp::Insert, 3, Some("c@x.io"), "Cy"),
        change(ChangeOp::Delete, 4, Vec::new()),
    ];
    let outcomes = dest.write(&context(SyncMode::Upsert), &batch(&CONTACT_FIELDS, changes)).await.expect("write");
    assert_eq!(
        statuses(&outcomes),
        vec![OutcomeStatus::Applied, OutcomeStatus::Rejected, OutcomeStatus::Applied, OutcomeStatus::Applied]
    );
    let message = outcomes[1].message.as_deref().unwrap_or_default();
    assert!(message.contains("null value in column \"email\""), "{message}");
    assert!(message.contains("(SQLSTATE 23502)"), "{message}");
    assert!(!message.contains("Bob"), "the row's values stay out of stored messages: {message}");
    assert_eq!(
        rows(&client, &format!("SELECT id FROM \"{}\".crm_contacts ORDER BY id", schema.name)).await,
        vec![row(&["1"]), row(&["3"])]
    );
}

#[tokio::test]
async fn scattered_bad_records_in_a_large_batch_are_each_rejected() {
    let Some((client, schema)) = setup().await else { return };
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{0}\".crm_contacts (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text); \
             INSERT INTO \"{0}\".crm_contacts VALUES (-1, 'taken@x.io', 'Old')",
            schema.name
        ))
        .await
        .expect("create table");
    let mut config = config(TEST_URL, &format!("{}.crm_contacts", schema.name));
    config.batch_size = Some(5000);
    let dest = PostgresDestination::new(config).expect("config");
    dest.prepare(&contact_target(SyncMode::Upsert)).await.expect("prepare");
    let changes: Vec<Change> = (0..5000)
        .map(|id| {
            let email = match id {
                3 | 2500 => None,
                4999 => Some("taken@x.io".to_string()),
                _ => Some(format!("{id}@x.io")),
            };
            contact(ChangeOp::Insert, id, email.as_deref(), "n")
        })
        .collect();
    let outcomes = dest.write(&context(SyncMode::Upsert), &batch(&CONTACT_FIELDS, changes)).await.expect("write");
    let rejected: Vec<usize> =
        outcomes.iter().enumerate().filter(|(_, o)| o.status == OutcomeStatus::Rejected).map(|(i, _)| i).collect();
    assert_eq!(rejected, vec![3, 2500, 4999]);
    let duplicate = outcomes[4999].message.as_deref().unwrap_or_default();
    assert!(duplicate.contains("(SQLSTATE 23505)") && duplicate.contains("taken@x.io"), "{duplicate}");
    assert_eq!(
        rows(&client, &format!("SELECT count(*) FROM \"{}\".crm_contacts WHERE id >= 0", schema.name)).await,
        vec![row(&["4997"])]
    );
}

#[tokio::test]
async fn an_existing_table_missing_a_mapped_column_is_a_config_error() {
    let Some((client, schema)) = setup().await else { return };
    client
        .batch_execute(&format!("CREATE TABLE \"{}\".crm_contacts (id bigint PRIMARY KEY, email text)", schema.name))
        .await
        .expect("create table");
    let dest = destination(&schema, "crm_contacts");
    let error = dest.prepare(&contact_target(SyncMode::Upsert)).await.expect_err("name is missing");
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("`name`"), "{}", error.message);
    assert!(error.message.contains("id, email"), "{}", error.message);
}

#[tokio::test]
async fn a_key_without_unique_index_or_missing_key_mapping_is_a_config_error() {
    let Some((client, schema)) = setup().await else { return };
    client
        .batch_execute(&format!("CREATE TABLE \"{}\".crm_contacts (id bigint, email text, name text)", schema.name))
        .await
        .expect("create table");
    let dest = destination(&schema, "crm_contacts");
    let error = dest.prepare(&contact_target(SyncMode::Upsert)).await.expect_err("no unique key");
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("unique"), "{}", error.message);

    let mut no_key = contact_target(SyncMode::Upsert);
    no_key.key_field = None;
    let error = dest.prepare(&no_key).await.expect_err("no key field");
    assert_eq!(error.class, ErrorClass::Config);
    assert!(error.message.contains("primary key"), "{}", error.message);
}

#[tokio::test]
async fn a_batch_past_the_parameter_limit_is_split() {
    let Some((client, schema)) = setup().await else { return };
    let mut config = config(TEST_URL, &format!("{}.wide", schema.name));
    config.batch_size = Some(10_000);
    let dest = PostgresDestination::new(config).expect("config");
    assert_eq!(dest.batch_size(), 10_000);
    let names = ["id", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    let fields: Vec<(&str, DataType)> =
        names.iter().map(|n| (*n, if *n == "id" { DataType::Int64 } else { DataType::Utf8 })).collect();
    dest.prepare(&target(SyncMode::Mirror, &fields, "id")).await.expect("prepare");
    let changes: Vec<Change> = (0..10_000)
        .map(|id| {
            let mut values = vec![Value::Int(id)];
            values.extend((1..8).map(|c| text(&format!("r{id}c{c}"))));
            change(ChangeOp::Insert, id, values)
        })
        .collect();
    let ctx = context(SyncMode::Mirror);
    let outcomes = dest.write(&ctx, &batch(&names, changes)).await.expect("write 80000 values");
    assert_eq!(outcomes.len(), 10_000);
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied));
    let table = format!("\"{}\".wide", schema.name);
    assert_eq!(
        rows(&client, &format!("SELECT count(*), max(c7) FILTER (WHERE id = 9999) FROM {table}")).await,
        vec![row(&["10000", "r9999c7"])]
    );

    let deletes: Vec<Change> = (0..10_000).map(|id| change(ChangeOp::Delete, id, Vec::new())).collect();
    let outcomes = dest.write(&ctx, &batch(&names, deletes)).await.expect("delete all");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Applied));
    assert_eq!(rows(&client, &format!("SELECT count(*) FROM {table}")).await, vec![row(&["0"])]);
}

#[tokio::test]
async fn reconnects_after_the_connection_is_closed() {
    let Some((client, schema)) = setup().await else { return };
    let application = schema.name.clone();
    let url = format!("{TEST_URL}?application_name={application}");
    let dest = PostgresDestination::new(config(&url, &format!("{}.crm_contacts", schema.name))).expect("config");
    dest.prepare(&contact_target(SyncMode::Upsert)).await.expect("prepare");
    client
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{application}'"
        ))
        .await
        .expect("terminate");
    let write = batch(&CONTACT_FIELDS, vec![contact(ChangeOp::Insert, 1, None, "Ada")]);
    // A write that races the closing may fail as transient, as the driver would then retry.
    let outcomes = match dest.write(&context(SyncMode::Upsert), &write).await {
        Err(error) if error.class == ErrorClass::Transient => dest.write(&context(SyncMode::Upsert), &write).await,
        other => other,
    }
    .expect("write after reconnect");
    assert_eq!(outcomes, vec![Outcome::applied()]);
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_names_the_host() {
    let dest = PostgresDestination::new(config("postgres://postgres:hunter2@127.0.0.1:1/test", "public.crm_contacts"))
        .expect("config");
    let check: Result<(), DestinationError> = dest.check().await;
    let error = check.expect_err("nothing listens on port 1");
    assert_eq!(error.class, ErrorClass::Transient);
    assert!(error.message.contains("127.0.0.1:1"), "{}", error.message);
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    let error = dest.prepare(&contact_target(SyncMode::Upsert)).await.expect_err("prepare connects too");
    assert_eq!(error.class, ErrorClass::Transient);
}

#[test]
fn bad_config_values_name_the_key_and_descriptions_hide_the_password() {
    let error = |config: PostgresDestinationConfig| PostgresDestination::new(config).expect_err("refused");
    let (key, message) = error(config("not a url", "t"));
    assert_eq!(key, "url");
    assert!(message.contains("postgres://"), "{message}");
    let (key, message) = error(config(TEST_URL, "a.b.c"));
    assert_eq!(key, "table");
    assert!(message.contains("public.crm_contacts"), "{message}");
    for size in [0, 10_001] {
        let mut bad = config(TEST_URL, "t");
        bad.batch_size = Some(size);
        let (key, message) = error(bad);
        assert_eq!(key, "batch_size");
        assert!(message.contains("10000"), "{message}");
    }

    let dest = PostgresDestination::new(config("postgres://sluice:s3cret@127.0.0.1:5432/test", "public.crm_contacts"))
        .expect("config");
    assert_eq!(dest.describe(), "postgres 127.0.0.1:5432/test table public.crm_contacts");
    assert_eq!(dest.batch_size(), 1000);
    assert!(!dest.identity().contains("s3cret"));
    assert!(dest.identity().contains("127.0.0.1:5432/test") && dest.identity().contains("public.crm_contacts"));
    assert!(!format!("{dest:?}").contains("s3cret"));
    let _: Arc<dyn Destination> = Arc::new(dest);
}
