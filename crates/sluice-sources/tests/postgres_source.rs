//! Integration tests of the PostgreSQL source against the real server at 127.0.0.1:5432.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use futures::{StreamExt, TryStreamExt};
use sluice_core::{ModelQuery, ScanOptions, Source, SourceError, LOGICAL_TYPE_KEY};
use sluice_sources::postgres::{PostgresSource, PostgresSourceConfig};
use tokio_postgres::{Client, NoTls};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A schema of its own for one test, dropped when the test ends, even by panic.
struct TestSchema {
    name: String,
    client: Client,
}

impl TestSchema {
    /// `None` when the server is unreachable outside CI, so local runs without postgres pass.
    async fn create() -> Option<TestSchema> {
        let client = match tokio_postgres::connect(URL, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("!!! postgres not reachable at {URL} in CI: {e} !!!");
                }
                eprintln!("!!! SKIPPED: postgres not reachable at {URL}: {e} !!!");
                return None;
            }
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("sluice_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create schema");
        Some(TestSchema { name, client })
    }

    async fn execute(&self, sql: &str) {
        self.client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Async drop does not exist, so the schema is dropped from a fresh runtime on its own thread.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(URL, NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

fn source(url: &str) -> PostgresSource {
    PostgresSource::new(PostgresSourceConfig { url: url.to_string() }).expect("valid url")
}

fn sql(text: &str) -> ModelQuery {
    ModelQuery::Sql(text.to_string())
}

fn options(batch_rows: usize, limit: Option<usize>) -> ScanOptions {
    ScanOptions { batch_rows, limit }
}

async fn scan_all(query: ModelQuery, options: ScanOptions) -> Result<Vec<RecordBatch>, SourceError> {
    let stream = source(URL).scan(&query, options).await?;
    let batches: Vec<RecordBatch> = stream.batches.try_collect().await?;
    for batch in &batches {
        assert_eq!(batch.schema(), stream.schema, "every batch carries the announced schema");
    }
    Ok(batches)
}

#[tokio::test]
async fn every_type_round_trips() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let s = &db.name;
    db.execute(&format!(
        "CREATE TABLE {s}.everything (
            id int4, b bool, i2 int2, i8 int8, f4 float4, f8 float8, t text, vc varchar(10),
            bp char(5), nm name, by bytea, d date, ts timestamp, tstz timestamptz,
            num numeric(30, 4), js jsonb, u uuid);
         INSERT INTO {s}.everything VALUES
           (1, true, -32768, 9223372036854775807, 1.5, -2.25, 'héllo', 'var', 'ab', 'a_name',
            '\\xdeadbeef', '2024-01-01', '2024-01-02 03:04:05.123456',
            '2024-01-02 03:04:05.123456+02', 12345678901234567890.12, '{{\"a\": [1, 2]}}',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
           (2, false, 7, -1, 0, 0, '', '', '', '', '', '1969-12-31', '1960-01-01 00:00:00',
            '1970-01-01 00:00:00+00', -0.5, '[]', '00000000-0000-0000-0000-000000000000'),
           (3, null, null, null, null, null, null, null, null, null, null, null, null, null,
            null, null, null);"
    ))
    .await;
    let batches =
        scan_all(sql(&format!("SELECT * FROM {s}.everything ORDER BY id")), options(100, None)).await.expect("scan");
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 3);

    let schema = batch.schema();
    let expected_types = [
        ("id", DataType::Int32),
        ("b", DataType::Boolean),
        ("i2", DataType::Int16),
        ("i8", DataType::Int64),
        ("f4", DataType::Float32),
        ("f8", DataType::Float64),
        ("t", DataType::Utf8),
        ("vc", DataType::Utf8),
        ("bp", DataType::Utf8),
        ("nm", DataType::Utf8),
        ("by", DataType::Binary),
        ("d", DataType::Date32),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("tstz", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        ("num", DataType::Utf8),
        ("js", DataType::Utf8),
        ("u", DataType::Utf8),
    ];
    assert_eq!(schema.fields().len(), expected_types.len());
    for (field, (name, data_type)) in schema.fields().iter().zip(&expected_types) {
        assert_eq!(field.name(), name);
        assert_eq!(field.data_type(), data_type, "type of {name}");
        assert!(field.is_nullable(), "{name} is nullable");
        let logical = field.metadata().get(LOGICAL_TYPE_KEY).map(String::as_str);
        let expected_logical = match *name {
            "num" => Some("decimal"),
            "js" => Some("json"),
            _ => None,
        };
        assert_eq!(logical, expected_logical, "logical type of {name}");
    }

    let col = |name: &str| batch.column_by_name(name).expect(name).clone();
    assert_eq!(col("id").as_primitive::<Int32Type>().values().to_vec(), vec![1, 2, 3]);
    let b = col("b");
    assert!(b.as_boolean().value(0));
    assert!(!b.as_boolean().value(1));
    let i2 = col("i2");
    assert_eq!(i2.as_primitive::<Int16Type>().value(0), -32768);
    assert_eq!(i2.as_primitive::<Int16Type>().value(1), 7);
    let i8 = col("i8");
    assert_eq!(i8.as_primitive::<Int64Type>().value(0), i64::MAX);
    assert_eq!(i8.as_primitive::<Int64Type>().value(1), -1);
    assert_eq!(col("f4").as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(col("f8").as_primitive::<Float64Type>().value(0), -2.25);
    let text = |name: &str, row: usize| col(name).as_string::<i32>().value(row).to_string();
    assert_eq!(text("t", 0), "héllo");
    assert_eq!(text("t", 1), "");
    assert_eq!(text("vc", 0), "var");
    assert_eq!(text("bp", 0), "ab   ", "char(n) keeps its padding");
    assert_eq!(text("nm", 0), "a_name");
    assert_eq!(col("by").as_binary::<i32>().value(0), &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(col("by").as_binary::<i32>().value(1), b"");
    let d = col("d");
    assert_eq!(d.as_primitive::<Date32Type>().value(0), 19_723);
    assert_eq!(d.as_primitive::<Date32Type>().value(1), -1);
    let ts = col("ts");
    assert_eq!(ts.as_primitive::<TimestampMicrosecondType>().value(0), 1_704_164_645_123_456);
    assert_eq!(ts.as_primitive::<TimestampMicrosecondType>().value(1), -315_619_200_000_000);
    let tstz = col("tstz");
    assert_eq!(tstz.as_primitive::<TimestampMicrosecondType>().value(0), 1_704_157_445_123_456);
    assert_eq!(tstz.as_primitive::<TimestampMicrosecondType>().value(1), 0);
    assert_eq!(text("num", 0), "12345678901234567890.1200");
    assert_eq!(text("num", 1), "-0.5000");
    assert_eq!(text("js", 0), r#"{"a": [1, 2]}"#);
    assert_eq!(text("js", 1), "[]");
    assert_eq!(text("u", 0), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");

    for (index, field) in schema.fields().iter().enumerate().skip(1) {
        let column = batch.column(index);
        assert!(column.is_null(2), "{} is null in the null row", field.name());
        assert!(!column.is_null(0), "{} is set in the first row", field.name());
    }
}

#[tokio::test]
async fn values_decode_into_core_values() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let batches = scan_all(
        sql("SELECT 1.50::numeric AS n, '{\"k\": 1}'::json AS j, 'x'::text AS t, DATE '2024-01-01' AS d"),
        options(10, None),
    )
    .await
    .expect("scan");
    let batch = &batches[0];
    let schema = batch.schema();
    let value = |i: usize| sluice_core::value_at(schema.field(i), batch.column(i).as_ref(), 0);
    assert_eq!(value(0), sluice_core::Value::Decimal("1.50".into()));
    assert_eq!(value(1), sluice_core::Value::Json("{\"k\": 1}".into()));
    assert_eq!(value(2), sluice_core::Value::Text("x".into()));
    assert_eq!(value(3), sluice_core::Value::Date(19_723));
}

#[tokio::test]
async fn domains_decode_as_their_base_type() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let s = &db.name;
    db.execute(&format!(
        "CREATE DOMAIN {s}.positive AS int4 CHECK (VALUE > 0);
         CREATE DOMAIN {s}.money_amount AS numeric(10, 2);
         CREATE TABLE {s}.accounts (id {s}.positive, balance {s}.money_amount);
         INSERT INTO {s}.accounts VALUES (42, 10.5);"
    ))
    .await;
    let batches = scan_all(ModelQuery::Table(format!("{s}.accounts")), options(10, None)).await.expect("scan");
    let batch = &batches[0];
    assert_eq!(batch.schema().field(0).data_type(), &DataType::Int32);
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 42);
    let balance = batch.schema().field(1).clone();
    assert_eq!(balance.metadata().get(LOGICAL_TYPE_KEY).map(String::as_str), Some("decimal"));
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "10.50");
}

#[tokio::test]
async fn scans_stream_in_batches() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let stream = source(URL)
        .scan(&sql("SELECT x AS n, 'row ' || x AS label FROM generate_series(1, 10000) AS x"), options(1000, None))
        .await
        .expect("scan");
    assert_eq!(stream.schema.fields().len(), 2, "the schema is known before the first batch");
    let batches: Vec<RecordBatch> = stream.batches.try_collect().await.expect("batches");
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.num_rows() == 1000));
    let mut sum = 0i64;
    for batch in &batches {
        sum += batch.column(0).as_primitive::<Int32Type>().values().iter().map(|&v| i64::from(v)).sum::<i64>();
    }
    assert_eq!(sum, 50_005_000);
    assert_eq!(batches[9].column(1).as_string::<i32>().value(999), "row 10000");
}

#[tokio::test]
async fn limit_caps_the_rows() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let batches = scan_all(sql("SELECT x FROM generate_series(1, 1000) AS x ORDER BY x"), options(10, Some(25)))
        .await
        .expect("scan");
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(batches[2].column(0).as_primitive::<Int32Type>().value(4), 25);
}

#[tokio::test]
async fn empty_results_give_a_schema_and_no_batches() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let stream = source(URL).scan(&sql("SELECT 1 AS one WHERE false"), options(10, None)).await.expect("scan");
    assert_eq!(stream.schema.field(0).name(), "one");
    let batches: Vec<RecordBatch> = stream.batches.try_collect().await.expect("batches");
    assert!(batches.is_empty());
}

#[tokio::test]
async fn tables_may_be_schema_qualified_and_mixed_case() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let s = &db.name;
    db.execute(&format!(
        "CREATE TABLE {s}.people (id int8, name text);
         INSERT INTO {s}.people VALUES (1, 'ada'), (2, 'grace');
         CREATE TABLE {s}.\"Mixed \"\"Case\"\"\" (v int4);
         INSERT INTO {s}.\"Mixed \"\"Case\"\"\" VALUES (7);"
    ))
    .await;
    let batches = scan_all(ModelQuery::Table(format!("{s}.people")), options(10, None)).await.expect("scan");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    assert_eq!(batches[0].schema().field(1).name(), "name");

    let batches = scan_all(ModelQuery::Table(format!("{s}.Mixed \"Case\"")), options(10, None)).await.expect("scan");
    assert_eq!(batches[0].column(0).as_primitive::<Int32Type>().value(0), 7);
}

#[tokio::test]
async fn sql_is_trimmed_and_may_end_in_a_comment() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    for text in ["SELECT 1 AS one;  \n", "SELECT 1 AS one -- the answer", "SELECT 1 AS one ; ;"] {
        let batches = scan_all(sql(text), options(10, Some(5))).await.unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(batches[0].column(0).as_primitive::<Int32Type>().value(0), 1, "{text}");
    }
}

#[tokio::test]
async fn sql_errors_carry_the_sqlstate() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let error = scan_all(sql("SELECT * FROM custmers"), options(10, None)).await.unwrap_err();
    assert!(matches!(error, SourceError::Query { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(r#"relation "custmers" does not exist (SQLSTATE 42P01)"#), "{text}");
    assert!(text.contains("postgres 127.0.0.1:5432/test"), "{text}");
}

#[tokio::test]
async fn errors_while_streaming_end_the_stream() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let stream = source(URL)
        .scan(&sql("SELECT 1 / (x - 5000) AS v FROM generate_series(1, 10000) AS x"), options(100, None))
        .await
        .expect("scan starts");
    let results: Vec<_> = stream.batches.collect::<Vec<_>>().await;
    let last = results.last().expect("at least one item");
    let error = last.as_ref().unwrap_err();
    assert!(error.to_string().contains("SQLSTATE 22012"), "{error}");
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
}

#[tokio::test]
async fn abandoned_scans_do_not_hang() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let mut stream = source(URL)
        // In the select list generate_series streams; it would take minutes to run out.
        .scan(&sql("SELECT generate_series(1, 1000000000) AS x"), options(1000, None))
        .await
        .expect("scan");
    let first = stream.batches.next().await.expect("a batch").expect("ok");
    assert_eq!(first.num_rows(), 1000);
    drop(stream);
    // The server must have let go of the abandoned COPY.
    let check = async {
        loop {
            let (client, connection) = tokio_postgres::connect(URL, NoTls).await.expect("connect");
            tokio::spawn(connection);
            let active = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT \"x\" FROM (%generate_series(1, 1000000000)%' AND state = 'active' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .expect("query");
            if active.get::<_, i64>(0) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), check).await.expect("abandoned copy ended");
}

#[tokio::test]
async fn infinite_dates_are_data_errors() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    for (query, column) in [
        ("SELECT 'infinity'::date AS due", "due"),
        ("SELECT '-infinity'::timestamp AS since", "since"),
        ("SELECT 'infinity'::timestamptz AS until", "until"),
    ] {
        let error = scan_all(sql(query), options(10, None)).await.unwrap_err();
        assert!(matches!(error, SourceError::Data(_)), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&format!("`{column}`")) && text.contains("infinity"), "{text}");
    }
}

#[tokio::test]
async fn duplicate_column_names_ask_for_an_alias() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    let error = scan_all(sql("SELECT 1 AS id, 2 AS id"), options(10, None)).await.unwrap_err();
    assert!(matches!(error, SourceError::Data(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("`id`") && text.contains("alias"), "{text}");
}

#[tokio::test]
async fn unreachable_servers_are_connect_errors() {
    let source = source("postgres://postgres:hunter2@127.0.0.1:1/test");
    let error = source.scan(&sql("SELECT 1"), ScanOptions::default()).await.err().expect("an error");
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let error = source.check().await.unwrap_err();
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn check_runs_a_query() {
    let Some(_db) = TestSchema::create().await else {
        return;
    };
    source(URL).check().await.expect("check");
    let error = source("postgres://postgres@127.0.0.1:5432/sluice_no_such_db").check().await.unwrap_err();
    assert!(error.to_string().contains("3D000"), "{error}");
}
