//! The HubSpot fake as a standalone server, for benchmarks and manual runs (`scripts/bench-delivery`).
//!
//! ```text
//! cargo run --release -p sluice-fakes --example hubspot_server -- --port 0 --limits on --stats stats.json
//! ```
//!
//! * `--port N`: port on 127.0.0.1; `0` (the default) picks a free one. The fake always binds a random
//!   port, so a fixed port is forwarded to it by a small TCP relay in this example.
//! * `--limits on|off`: `on` (the default) enforces HubSpot's documented limits for private apps on
//!   Professional: 190 requests per rolling 10 s and 650,000 per day. `off` enforces nothing (and
//!   reports limits so high that no client backs off because of the rate-limit headers).
//! * `--stats FILE`: every 200 ms, the fake's counts are written to FILE as one JSON object (written
//!   to FILE.tmp, then renamed, so readers never see half a file). `seq` grows with every write, so a
//!   reader that wants counts taken after some moment waits for a higher `seq`.
//!
//! * `--move-stored`: every 100 ms, moves the contacts the fake has stored out of its state into a
//!   tally kept here (counted in the stats, emails checked for duplicates). The fake finds records by
//!   a unique property with a linear scan and copies the whole object map on every batch write, so
//!   with 100,000 contacts stored each batch costs the fake far more than HubSpot's pacing allows and
//!   the fake, not the client, sets the pace. Moving stored contacts out keeps every batch cheap. Only
//!   for loads that write each email once (a first sync): an upsert of a moved email creates a second
//!   record, which the stats report as a duplicate.
//!
//! The first line on stdout is `listening on http://127.0.0.1:PORT`. The private-app token is
//! `pat-na1-fake`. The server runs until it is killed; the stats file is at most 200 ms old then.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "common/mod.rs"]
mod common;

use common::{listen, write_stats};
use serde_json::json;
use sluice_fakes::hubspot::{HubSpotFake, HubSpotOptions, RateLimit};

const USAGE: &str = "usage: hubspot_server [--port N] [--limits on|off] [--stats FILE] [--move-stored]";

struct Args {
    port: u16,
    limits: bool,
    stats: Option<PathBuf>,
    move_stored: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 0, limits: true, stats: None, move_stored: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let text = value("--port")?;
                args.port = text.parse().map_err(|_| format!("--port: expected 0 to 65535, found {text:?}"))?;
            }
            "--limits" => {
                args.limits = match value("--limits")?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--limits: expected on or off, found {other:?}")),
                }
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

/// HubSpot's documented private-app limits on Professional, or none at all.
fn rate_limit(on: bool) -> RateLimit {
    if on {
        RateLimit { enforce: true, max: 190, interval: Duration::from_secs(10), daily: 650_000 }
    } else {
        RateLimit { enforce: false, max: u32::MAX, interval: Duration::from_secs(10), daily: u32::MAX }
    }
}

/// Contacts moved out of the fake's state (`--move-stored`): live records per email.
#[derive(Default)]
struct Moved {
    per_email: HashMap<String, u64>,
    records: u64,
    archived: u64,
}

impl Moved {
    /// Takes every stored contact out of the fake; the lock is held only for the swap.
    fn take_from(&mut self, fake: &HubSpotFake) {
        let taken = {
            let mut state = fake.state();
            state.objects.get_mut("contacts").map(std::mem::take).unwrap_or_default()
        };
        for object in taken.into_values() {
            if object.archived {
                self.archived += 1;
                continue;
            }
            self.records += 1;
            let email = object.properties.get("email").cloned().unwrap_or_default();
            *self.per_email.entry(email).or_default() += 1;
        }
    }
}

fn stats_json(fake: &HubSpotFake, moved: &Moved, seq: u64, args: &Args) -> serde_json::Value {
    let state = fake.state();
    let live: Vec<&str> = state.objects.get("contacts").map_or_else(Vec::new, |m| {
        m.values().filter(|o| !o.archived).map(|o| o.properties.get("email").map_or("", String::as_str)).collect()
    });
    let contacts = live.len() as u64 + moved.records;
    let mut new_emails: HashSet<&str> = HashSet::new();
    for email in &live {
        if !moved.per_email.contains_key(*email) {
            new_emails.insert(email);
        }
    }
    let distinct_emails = (moved.per_email.len() + new_emails.len()) as u64;
    let invalid = state.requests.iter().filter(|r| !r.body_valid).count();
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    for request in &state.requests {
        *by_status.entry(request.status).or_default() += 1;
    }
    let by_status: serde_json::Map<String, serde_json::Value> =
        by_status.into_iter().map(|(status, n)| (status.to_string(), json!(n))).collect();
    let c = &state.counters;
    let written_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "seq": seq,
        "written_at_ms": written_at_ms,
        "limits": if args.limits { "on" } else { "off" },
        "move_stored": args.move_stored,
        "contacts": contacts,
        "distinct_emails": distinct_emails,
        "duplicates": contacts - distinct_emails,
        "requests": c.requests,
        "invalid_requests": invalid,
        "rate_limited": c.rate_limited,
        "unauthorized": c.unauthorized,
        "created": c.created,
        "updated": c.updated,
        "archived": c.archived,
        "by_status": by_status,
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("hubspot_server: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let options = HubSpotOptions { rate_limit: rate_limit(args.limits), ..HubSpotOptions::default() };
    let fake = HubSpotFake::start(options).await;
    listen("hubspot_server", args.port, fake.base_url());

    let mut seq = 0u64;
    let mut moved = Moved::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0u64.. {
        tick.tick().await;
        if args.move_stored {
            moved.take_from(&fake);
        }
        if let (Some(path), true) = (&args.stats, round % 2 == 0) {
            seq += 1;
            let value = stats_json(&fake, &moved, seq, &args);
            if let Err(e) = write_stats(path, &value) {
                eprintln!("hubspot_server: cannot write {}: {e}", path.display());
            }
        }
    }
}
