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

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "common/mod.rs"]
mod common;

use common::{relay, write_stats};
use serde_json::json;
use sluice_fakes::meta::{MetaFake, MetaOptions};

const USAGE: &str = "usage: meta_server [--port N] [--limits on|off] [--stats FILE]";

struct Args {
    port: u16,
    limits: bool,
    stats: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 0, limits: true, stats: None };
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
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("meta_server: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let options = MetaOptions { requests_per_hour: args.limits.then_some(5_000), ..MetaOptions::default() };
    let fake = MetaFake::start(options).await;
    let base = if args.port == 0 {
        fake.base_url()
    } else {
        let listener = TcpListener::bind(("127.0.0.1", args.port)).unwrap_or_else(|e| {
            eprintln!("meta_server: cannot listen on 127.0.0.1:{}: {e}", args.port);
            std::process::exit(1);
        });
        let target: SocketAddr = fake.base_url().trim_start_matches("http://").parse().expect("fake address");
        std::thread::spawn(move || relay(listener, target));
        format!("http://127.0.0.1:{}", args.port)
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {base}");
    let _ = stdout.flush();

    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Some(path) = &args.stats {
            seq += 1;
            if let Err(e) = write_stats(path, &stats_json(&fake, seq)) {
                eprintln!("meta_server: cannot write {}: {e}", path.display());
            }
        }
    }
}
