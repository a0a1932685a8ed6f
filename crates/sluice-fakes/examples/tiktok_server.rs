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

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

#[path = "common/mod.rs"]
mod common;

use common::{relay, write_stats};
use serde_json::json;
use sluice_fakes::tiktok::{RateLimit, TikTokFake, TikTokOptions};

const USAGE: &str = "usage: tiktok_server [--port N] [--limits on|off] [--stats FILE]";

fn parse_args() -> Result<(u16, bool, Option<PathBuf>), String> {
    let (mut port, mut limits, mut stats) = (0u16, true, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let text = value("--port")?;
                port = text.parse().map_err(|_| format!("--port: expected 0 to 65535, found {text:?}"))?;
            }
            "--limits" => {
                limits = match value("--limits")?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--limits: expected on or off, found {other:?}")),
                }
            }
            "--stats" => stats = Some(PathBuf::from(value("--stats")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((port, limits, stats))
}

#[tokio::main]
async fn main() {
    let (port, limits, stats) = parse_args().unwrap_or_else(|message| {
        eprintln!("tiktok_server: {message}\n{USAGE}");
        std::process::exit(2);
    });
    let options = TikTokOptions { rate_limit: limits.then(RateLimit::default), ..TikTokOptions::default() };
    let fake = TikTokFake::start(options).await;
    let base = if port == 0 {
        fake.base_url()
    } else {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            eprintln!("tiktok_server: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        });
        let target: SocketAddr = fake.base_url().trim_start_matches("http://").parse().expect("fake address");
        std::thread::spawn(move || relay(listener, target));
        format!("http://127.0.0.1:{port}")
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {base}");
    let _ = stdout.flush();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for seq in 1u64.. {
        tick.tick().await;
        let Some(path) = &stats else { continue };
        let value = {
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
        };
        if let Err(e) = write_stats(path, &value) {
            eprintln!("tiktok_server: cannot write {}: {e}", path.display());
        }
    }
}
