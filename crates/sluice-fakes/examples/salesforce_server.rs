//! The Salesforce fake as a standalone server, for benchmarks and manual runs (`scripts/bench-delivery`).
//!
//! ```text
//! cargo run --release -p sluice-fakes --example salesforce_server -- --port 0 --stats stats.json
//! ```
//!
//! * `--port N`: port on 127.0.0.1; `0` (the default) picks a free one. The fake always binds a random
//!   port, so a fixed port is forwarded to it by a small TCP relay in this example. The port serves both
//!   the login endpoint and the instance (`instance_url`).
//! * `--stats FILE`: every 200 ms, the fake's counts are written to FILE as one JSON object (written to
//!   FILE.tmp, then renamed, so readers never see half a file). `seq` grows with every write, so a reader
//!   that wants counts taken after some moment waits for a higher `seq`. Counts: `contacts` stored,
//!   `distinct_customer_ids` (distinct `Customer_Id__c`), `duplicates`, `incomplete` (contacts missing
//!   `LastName`, `Email` or `LTV__c`), `requests` (every request the client made, token requests
//!   included), `api_requests` (those under `/services/data`, which Salesforce counts against the daily
//!   API request allocation), `invalid_requests`, `token_requests`, `bulk_jobs` (ingest jobs created),
//!   `by_status`.
//! * `--move-stored`: every 100 ms, moves the Contacts the fake has stored out of its state into a tally
//!   kept here (counted in the stats, `Customer_Id__c` checked for duplicates). The fake finds a record by
//!   external id (and checks unique fields) with a linear scan over every stored record, so each upsert
//!   costs time proportional to the records stored and 100,000 upserts cost it quadratic time: the fake,
//!   not the client, would set the pace. The fake has no public way to take records out of its state, so
//!   this example deletes them through the fake's own REST API (`DELETE /composite/sobjects?ids=`, 200
//!   ids a request, after one token request); those requests are left out of every count in the stats.
//!   Only for loads that write each external id once (a first sync): an upsert of a moved id creates a
//!   second record, which the stats report as a duplicate.
//!
//! The first line on stdout is `listening on http://127.0.0.1:PORT`. The connected app is the fake's
//! default (`fake-client-id`, `fake-client-secret`, refresh token `fake-refresh-token`). The server runs
//! until it is killed; the stats file is at most 200 ms old then.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "common/mod.rs"]
mod common;

use common::{listen, write_stats};
use serde_json::{json, Value};
use sluice_fakes::salesforce::{SalesforceFake, SalesforceOptions, SfRecord, API_VERSION, COLLECTION_LIMIT};

const USAGE: &str = "usage: salesforce_server [--port N] [--stats FILE] [--move-stored]";
const SOBJECT: &str = "Contact";
const EXTERNAL_ID: &str = "Customer_Id__c";

struct Args {
    port: u16,
    stats: Option<PathBuf>,
    move_stored: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 0, stats: None, move_stored: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let text = value("--port")?;
                args.port = text.parse().map_err(|_| format!("--port: expected 0 to 65535, found {text:?}"))?;
            }
            "--stats" => args.stats = Some(PathBuf::from(value("--stats")?)),
            "--move-stored" => args.move_stored = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn text(record: &SfRecord, field: &str) -> Option<String> {
    match record.fields.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn complete(record: &SfRecord) -> bool {
    ["LastName", "Email", "LTV__c"].iter().all(|f| record.fields.contains_key(*f))
}

/// Contacts moved out of the fake's state (`--move-stored`), and the requests made to move them.
#[derive(Default)]
struct Moved {
    per_external_id: HashMap<String, u64>,
    records: u64,
    incomplete: u64,
    /// Requests this example made to the fake (token and deletes): left out of the counts.
    own_requests: usize,
    own_token_requests: usize,
    own_invalid_requests: usize,
    own_by_status: BTreeMap<u16, u64>,
    failed_deletes: u64,
    session: Option<(reqwest::Client, String)>,
}

impl Moved {
    /// Copies the counts (not the session) of `other`, for the stats writer.
    fn copy_counts(&mut self, other: &Moved) {
        self.per_external_id.clone_from(&other.per_external_id);
        self.records = other.records;
        self.incomplete = other.incomplete;
        self.own_requests = other.own_requests;
        self.own_token_requests = other.own_token_requests;
        self.own_invalid_requests = other.own_invalid_requests;
        self.own_by_status.clone_from(&other.own_by_status);
        self.failed_deletes = other.failed_deletes;
    }

    async fn session(&mut self, base: &str) -> Result<(reqwest::Client, String), String> {
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        let app = SalesforceOptions::default().oauth;
        let client = reqwest::Client::new();
        self.own_requests += 1;
        self.own_token_requests += 1;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("refresh_token", app.refresh_token.as_str()),
        ];
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = client
            .post(format!("{base}/services/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("token request: {e}"))?;
        *self.own_by_status.entry(response.status().as_u16()).or_default() += 1;
        let token: Value = response.json().await.map_err(|e| format!("token response: {e}"))?;
        let access = token["access_token"].as_str().ok_or_else(|| format!("no access_token in {token}"))?;
        self.session = Some((client, access.to_owned()));
        Ok(self.session.clone().expect("session just set"))
    }

    /// Deletes every stored Contact through the fake's REST API, all chunks at once, and tallies the
    /// ones deleted.
    async fn take_from(&mut self, fake: &SalesforceFake, base: &str) -> Result<(), String> {
        let stored = fake.records(SOBJECT);
        if stored.is_empty() {
            return Ok(());
        }
        let (client, token) = self.session(base).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in stored.chunks(COLLECTION_LIMIT) {
            let chunk = chunk.to_vec();
            let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
            let url =
                format!("{base}/services/data/v{API_VERSION}/composite/sobjects?ids={}&allOrNone=false", ids.join(","));
            let request = client.delete(url).bearer_auth(&token);
            tasks.spawn(async move {
                let response = request.send().await.map_err(|e| format!("delete request: {e}"))?;
                let status = response.status().as_u16();
                let body = response.text().await.map_err(|e| format!("delete response: {e}"))?;
                Ok::<_, String>((chunk, status, body))
            });
        }
        let mut problem = None;
        while let Some(joined) = tasks.join_next().await {
            let (chunk, status, body) = joined.map_err(|e| format!("delete task: {e}"))??;
            self.own_requests += 1;
            *self.own_by_status.entry(status).or_default() += 1;
            if status != 200 {
                self.own_invalid_requests += usize::from(status == 400);
                problem = Some(format!("delete answered {status}: {body}"));
                continue;
            }
            let results: Value = serde_json::from_str(&body).map_err(|e| format!("delete response: {e}"))?;
            let results = results.as_array().cloned().unwrap_or_default();
            for (record, result) in chunk.iter().zip(results) {
                if result["success"] != json!(true) {
                    self.failed_deletes += 1;
                    continue;
                }
                self.records += 1;
                self.incomplete += u64::from(!complete(record));
                *self.per_external_id.entry(text(record, EXTERNAL_ID).unwrap_or_default()).or_default() += 1;
            }
        }
        problem.map_or(Ok(()), Err)
    }
}

fn stats_json(fake: &SalesforceFake, moved: &Moved, seq: u64, args: &Args) -> Value {
    let live = fake.records(SOBJECT);
    let contacts = live.len() as u64 + moved.records;
    let mut new_ids = std::collections::HashSet::new();
    let mut incomplete = moved.incomplete;
    for record in &live {
        incomplete += u64::from(!complete(record));
        let key = text(record, EXTERNAL_ID).unwrap_or_default();
        if !moved.per_external_id.contains_key(&key) {
            new_ids.insert(key);
        }
    }
    let distinct = (moved.per_external_id.len() + new_ids.len()) as u64;
    let requests = fake.requests();
    let token_requests = fake.token_requests() - moved.own_token_requests;
    let mut by_status = BTreeMap::<u16, u64>::new();
    for request in &requests {
        *by_status.entry(request.status).or_default() += 1;
    }
    for (status, n) in &moved.own_by_status {
        if let Some(count) = by_status.get_mut(status) {
            *count = count.saturating_sub(*n);
        }
    }
    by_status.retain(|_, n| *n > 0);
    let by_status: serde_json::Map<String, Value> =
        by_status.into_iter().map(|(status, n)| (status.to_string(), json!(n))).collect();
    let all = requests.len() - moved.own_requests;
    let api = requests.iter().filter(|r| r.path.starts_with("/services/data")).count()
        - (moved.own_requests - moved.own_token_requests);
    let invalid = requests.iter().filter(|r| !r.body_valid).count() - moved.own_invalid_requests;
    let bulk_jobs =
        requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/jobs/ingest") && r.status == 200).count();
    let written_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "seq": seq,
        "written_at_ms": written_at_ms,
        "move_stored": args.move_stored,
        "contacts": contacts,
        "stored_now": live.len(),
        "distinct_customer_ids": distinct,
        "duplicates": contacts - distinct,
        "incomplete": incomplete,
        "requests": all,
        "api_requests": api,
        "invalid_requests": invalid,
        "token_requests": token_requests,
        "bulk_jobs": bulk_jobs,
        "failed_moves": moved.failed_deletes,
        "by_status": by_status,
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("salesforce_server: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    // The instance URL handed out with tokens is the fake's own address, so with a fixed port only the
    // login request goes through the relay; data requests go to the fake's port directly.
    listen("salesforce_server", args.port, fake.base_url());

    let fake = Arc::new(fake);
    let moved = Arc::new(Mutex::new(Moved::default()));
    if args.move_stored {
        // Its own thread and runtime: the fake's handlers block their worker threads while they hold the
        // fake's lock, and the mover must not wait behind them for a worker.
        let (fake, moved) = (fake.clone(), moved.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("mover runtime");
            runtime.block_on(async move {
                let base = fake.base_url();
                let mut mover = Moved::default();
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(message) = mover.take_from(&fake, &base).await {
                        eprintln!("salesforce_server: --move-stored: {message}");
                    }
                    let shared = &mut *moved.lock().unwrap_or_else(|p| p.into_inner());
                    shared.copy_counts(&mover);
                }
            });
        });
    }

    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Some(path) = &args.stats {
            seq += 1;
            let value = {
                let moved = moved.lock().unwrap_or_else(|p| p.into_inner());
                stats_json(&fake, &moved, seq, &args)
            };
            if let Err(e) = write_stats(path, &value) {
                eprintln!("salesforce_server: cannot write {}: {e}", path.display());
            }
        }
    }
}
