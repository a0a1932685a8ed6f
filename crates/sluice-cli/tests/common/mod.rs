//! Shared helpers for the CLI's end-to-end tests: running the binary, a fake webhook
//! receiver, and isolated Postgres schemas.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs `sluice` with `args` in project `dir`.
pub fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env("SLUICE_LOG", "error")
        .output()
        .expect("the sluice binary runs")
}

/// Starts `sluice sync SYNC` in the background, output discarded, to be killed or awaited.
pub fn spawn_sync(dir: &Path, sync: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sync", sync])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sluice binary starts")
}

/// [`sluice`] from async tests, off the runtime's threads (the fake receiver runs on them).
pub async fn sluice_async(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || sluice(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// [`sync_json`] from async tests.
pub async fn sync_json_async(dir: &Path, sync: &str) -> (i32, Value) {
    let (dir, sync) = (dir.to_path_buf(), sync.to_string());
    tokio::task::spawn_blocking(move || sync_json(&dir, &sync)).await.unwrap()
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The one JSON object `sluice sync --json SYNC` printed.
pub fn sync_json(dir: &Path, sync: &str) -> (i32, Value) {
    let output = sluice(dir, &["sync", "--json", sync]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no JSON printed; {}", text(&output)));
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}; {}", text(&output)));
    (output.status.code().unwrap_or(-1), value)
}

/// (inserted, updated, deleted, rejected) of a `--json` sync report.
pub fn counts(report: &Value) -> (u64, u64, u64, u64) {
    let get = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("no integer `{k}` in {report}"));
    (get("inserted"), get("updated"), get("deleted"), get("rejected"))
}

/// Connects to the test Postgres. Under CI=true a missing server fails the test; elsewhere
/// the test is skipped with a loud message.
pub async fn postgres() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(PG_URL, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is required under CI=true but {PG_URL} is unreachable: {error}");
            }
            eprintln!("SKIPPED: PostgreSQL not reachable at {PG_URL} ({error}); set up Postgres to run this test");
            None
        }
    }
}

/// A fresh schema, dropped when the test ends.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn create(client: &tokio_postgres::Client, prefix: &str) -> Schema {
        let name = format!("{prefix}_{}_{}", std::process::id(), fastrand::u32(..));
        client.batch_execute(&format!("create schema {name}")).await.unwrap();
        Schema { name }
    }

    /// A URL whose connections default to this schema.
    pub fn url(&self) -> String {
        format!("{PG_URL}?options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("drop schema if exists {name} cascade")).await;
                }
            });
        })
        .join();
    }
}

/// What the fake webhook receiver has seen and holds.
#[derive(Default)]
pub struct Receiver {
    /// Every change received, in order: (op, key, fields).
    pub received: Vec<(String, String, Value)>,
    /// Requests received.
    pub requests: u64,
    /// What the receiver holds after applying accepted changes: key → fields.
    pub records: BTreeMap<String, Value>,
    /// Keys to refuse, with the message to give.
    pub reject: HashMap<String, String>,
    /// Statuses to answer the next requests with, before behaving normally.
    pub fail_next: VecDeque<(u16, Option<u64>)>,
    /// Delay before answering each request.
    pub delay: Duration,
}

pub type SharedReceiver = Arc<Mutex<Receiver>>;

async fn receive(State(state): State<SharedReceiver>, Json(body): Json<Value>) -> (StatusCode, HeaderMap, Json<Value>) {
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut receiver = state.lock().unwrap();
    receiver.requests += 1;
    if let Some((status, retry_after)) = receiver.fail_next.pop_front() {
        let mut headers = HeaderMap::new();
        if let Some(seconds) = retry_after {
            headers.insert("retry-after", seconds.to_string().parse().unwrap());
        }
        return (StatusCode::from_u16(status).unwrap(), headers, Json(json!({"error": format!("injected {status}")})));
    }
    let mut results = Vec::new();
    for change in body["changes"].as_array().expect("changes array") {
        let op = change["op"].as_str().unwrap().to_string();
        let key = change["key"].as_str().expect("keys are strings").to_string();
        receiver.received.push((op.clone(), key.clone(), change["fields"].clone()));
        if let Some(message) = receiver.reject.get(&key).cloned() {
            results.push(json!({"key": key, "ok": false, "error": message}));
            continue;
        }
        if op == "delete" {
            receiver.records.remove(&key);
        } else {
            receiver.records.insert(key.clone(), change["fields"].clone());
        }
        results.push(json!({"key": key, "ok": true}));
    }
    (StatusCode::OK, HeaderMap::new(), Json(json!({ "results": results })))
}

/// Starts a fake webhook receiver on a free loopback port; returns its URL.
pub async fn start_receiver() -> (String, SharedReceiver) {
    let state: SharedReceiver = Arc::default();
    let app = Router::new().route("/in", post(receive)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/in"), state)
}

/// An SQLite warehouse with a `customers` table of `rows` rows (ids 1..=rows).
pub fn sqlite_warehouse(path: &Path, rows: i64) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(&format!(
            "create table customers (customer_id integer primary key, email text, name text, ltv real);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
             insert into customers select i, 'user' || i || '@example.com', 'User ' || i, i * 1.25 from n;"
        ))
        .unwrap();
    connection
}

/// The model rows of [`sqlite_warehouse`] as the receiver should hold them.
pub fn sqlite_model(connection: &rusqlite::Connection) -> BTreeMap<String, Value> {
    let mut statement = connection.prepare("select customer_id, email, name, ltv from customers").unwrap();
    let rows = statement
        .query_map([], |row| {
            let id: i64 = row.get(0)?;
            Ok((
                id.to_string(),
                json!({"customer_id": id, "email": row.get::<_, String>(1)?, "name": row.get::<_, String>(2)?, "ltv": row.get::<_, f64>(3)?}),
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Writes a project with an SQLite warehouse and one webhook sync `to_hook`.
pub fn webhook_project(dir: &Path, url: &str, extra: &str) {
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            "version: 1
name: test
sources:
  warehouse: {{ type: sqlite, path: warehouse.db }}
destinations:
  hook: {{ type: webhook, url: \"{url}\", batch_size: 10, max_retries: 3, backoff_ms: 10{extra} }}
models:
  customers: {{ source: warehouse, primary_key: customer_id, table: customers }}
syncs:
  to_hook: {{ model: customers, destination: hook, mode: mirror }}
"
        ),
    )
    .unwrap();
}
