//! The Meta Custom Audiences fake as a standalone server, for benchmarks and manual runs.
//!
//! ```text
//! cargo run --release -p sluice-fakes --example meta_server -- --port 0 --limits on --stats stats.json
//! ```
//!
//! * `--port N`: port on 127.0.0.1; `0` (the default) picks a free one. The fake always binds a random
//!   port, so a fixed port is forwarded to it by a small TCP relay in this example.
//! * `--limits on|off`: `on` (the default) enforces the custom-audience budget Meta gives apps with
//!   standard access, 5,000 calls per ad account per rolling hour; `off` enforces none.
//! * `--stats FILE`: every 200 ms, the fake's counts are written to FILE as one JSON object (written
//!   to FILE.tmp, then renamed, so readers never see half a file): `seq` (grows with every write),
//!   `members` per audience, `requests`, `invalid_requests`, `rate_limited`, `unauthorized`, `added`,
//!   `removed`, `by_status`.
//!
//! The first line on stdout is `listening on http://127.0.0.1:PORT`. The token is
//! `EAAfake-system-user-token`, the ad account `act_1234567890`, the customer-list audience
//! `23850000000000001`. The server runs until it is killed; the stats file is at most 200 ms old then.

use std::time::{SystemTime, UNIX_EPOCH};

#[path = "common/mod.rs"]
mod common;

use common::{listen, parse_server_args, write_stats_forever};
use serde_json::json;
use sluice_fakes::meta::{MetaFake, MetaOptions};

const USAGE: &str = "usage: meta_server [--port N] [--limits on|off] [--stats FILE]";

fn stats_json(fake: &MetaFake, seq: u64) -> serde_json::Value {
    let state = fake.state();
    let members: serde_json::Map<String, serde_json::Value> =
        state.audiences.iter().map(|(id, audience)| (id.clone(), json!(audience.len()))).collect();
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    for request in &state.requests {
        *by_status.entry(request.status).or_default() += 1;
    }
    let by_status: serde_json::Map<String, serde_json::Value> =
        by_status.into_iter().map(|(status, n)| (status.to_string(), json!(n))).collect();
    let c = &state.counters;
    json!({
        "seq": seq,
        "written_at_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "members": members,
        "requests": c.requests,
        "invalid_requests": state.requests.iter().filter(|r| r.is_invalid()).count(),
        "rate_limited": c.rate_limited,
        "unauthorized": c.unauthorized,
        "added": c.added,
        "removed": c.removed,
        "by_status": by_status,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_server_args("meta_server", USAGE);
    let options = MetaOptions { requests_per_hour: args.limits.then_some(5_000), ..MetaOptions::default() };
    let fake = MetaFake::start(options).await;
    listen("meta_server", args.port, fake.base_url());
    write_stats_forever("meta_server", args.stats.as_ref(), |seq| stats_json(&fake, seq)).await;
}
