//! The TikTok audience segment fake as a standalone server, for benchmarks and manual runs.
//!
//! ```text
//! cargo run --release -p sluice-fakes --example tiktok_server -- --port 0 --limits on --stats stats.json
//! ```
//!
//! * `--port N`: port on 127.0.0.1; `0` (the default) picks a free one (a fixed port is forwarded to
//!   the fake's random one by a small TCP relay).
//! * `--limits on|off`: `on` (the default) enforces TikTok's Basic-tier rate limits, 10 requests per
//!   second, 600 per minute and 864,000 per day; `off` enforces none.
//! * `--stats FILE`: every 200 ms, the fake's counts are written to FILE as one JSON object (written
//!   atomically; `seq` grows with every write).
//!
//! The first line on stdout is `listening on http://127.0.0.1:PORT`. The access token is
//! `fake-tiktok-access-token`, the advertiser `7000000000000000001`, its audience `1800000000000001`.

#[path = "common/mod.rs"]
mod common;

use common::{listen, parse_server_args, write_stats_forever};
use serde_json::json;
use sluice_fakes::tiktok::{RateLimit, TikTokFake, TikTokOptions};

const USAGE: &str = "usage: tiktok_server [--port N] [--limits on|off] [--stats FILE]";

#[tokio::main]
async fn main() {
    let args = parse_server_args("tiktok_server", USAGE);
    let limits = args.limits;
    let options = TikTokOptions { rate_limit: limits.then(RateLimit::default), ..TikTokOptions::default() };
    let fake = TikTokFake::start(options).await;
    listen("tiktok_server", args.port, fake.base_url());
    write_stats_forever("tiktok_server", args.stats.as_ref(), |seq| {
        let state = fake.state();
        let members: usize = state.audiences.values().map(|a| a.len()).sum();
        let mut by_code = std::collections::BTreeMap::<String, u64>::new();
        for request in &state.requests {
            *by_code.entry(request.code.map_or("http".into(), |c| c.to_string())).or_default() += 1;
        }
        json!({
            "seq": seq,
            "limits": if limits { "on" } else { "off" },
            "members": members,
            "requests": state.requests.len(),
            "invalid_requests": state.requests.iter().filter(|r| !r.body_valid).count(),
            "by_code": by_code,
        })
    })
    .await;
}
