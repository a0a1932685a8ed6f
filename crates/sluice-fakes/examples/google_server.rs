//! The Data Manager API fake as a standalone server, for benchmarks and manual runs.
//!
//! ```text
//! cargo run --release -p sluice-fakes --example google_server -- --port 0 --limits on --stats stats.json
//! ```
//!
//! * `--port N`: port on 127.0.0.1; `0` (the default) picks a free one (a fixed port is forwarded to
//!   the fake's random one by a small TCP relay).
//! * `--limits on|off`: `on` (the default) enforces Google's documented per-project quotas, 300
//!   requests per minute and 100,000 per day; `off` enforces none.
//! * `--stats FILE`: every 200 ms, the fake's counts are written to FILE as one JSON object (written
//!   atomically; `seq` grows with every write).
//!
//! The first line on stdout is `listening on http://127.0.0.1:PORT`. The token endpoint is
//! `{base}/token`; the OAuth client is `fake-client-id.apps.googleusercontent.com` /
//! `fake-client-secret` with refresh token `1//fake-refresh-token`; the operating account is
//! `GOOGLE_ADS` `1234567890` with user lists `5550001` (contact info), `5550002` (mobile ids) and
//! `5550003` (user ids).

#[path = "common/mod.rs"]
mod common;

use common::{listen, parse_server_args, write_stats_forever};
use serde_json::json;
use sluice_fakes::google::{DataManagerFake, DataManagerOptions, RateLimit};

const USAGE: &str = "usage: google_server [--port N] [--limits on|off] [--stats FILE]";

#[tokio::main]
async fn main() {
    let args = parse_server_args("google_server", USAGE);
    let limits = args.limits;
    let options = DataManagerOptions { rate_limit: limits.then(RateLimit::default), ..DataManagerOptions::default() };
    let fake = DataManagerFake::start(options).await;
    listen("google_server", args.port, fake.base_url());
    write_stats_forever("google_server", args.stats.as_ref(), |seq| {
        let state = fake.state();
        let members: usize = state.lists.values().map(|l| l.len()).sum();
        let c = &state.counters;
        json!({
            "seq": seq,
            "limits": if limits { "on" } else { "off" },
            "members": members,
            "requests": c.requests,
            "invalid_requests": state.requests.iter().filter(|r| !r.body_valid).count(),
            "rate_limited": c.rate_limited,
            "unauthorized": c.unauthorized,
            "token_refreshes": c.token_refreshes,
            "ingested": c.ingested,
            "removed": c.removed,
        })
    })
    .await;
}
