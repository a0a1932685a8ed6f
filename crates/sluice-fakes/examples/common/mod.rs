//! Pieces the fake servers share: argument parsing, listening (with a relay for fixed ports) and
//! atomic stats files.

// Each server includes this file as its own module and uses only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// The arguments of a server that takes `[--port N] [--limits on|off] [--stats FILE]`.
pub struct ServerArgs {
    pub port: u16,
    pub limits: bool,
    pub stats: Option<PathBuf>,
}

/// Parses `[--port N] [--limits on|off] [--stats FILE]`; `-h` prints `usage` and exits 0, anything
/// else it cannot read is reported as `{name}: {message}` followed by `usage`, and exits 2.
pub fn parse_server_args(name: &str, usage: &str) -> ServerArgs {
    parse_server_args_from(std::env::args().skip(1), usage).unwrap_or_else(|message| {
        eprintln!("{name}: {message}\n{usage}");
        std::process::exit(2);
    })
}

fn parse_server_args_from(mut it: impl Iterator<Item = String>, usage: &str) -> Result<ServerArgs, String> {
    let mut args = ServerArgs { port: 0, limits: true, stats: None };
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
                println!("{usage}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Makes the fake at `fake_base` reachable on 127.0.0.1:`port` (`0`: the fake's own port; otherwise a
/// relay forwards the fixed port to it) and prints `listening on {base}` as the first line on
/// stdout. A port it cannot bind is reported as `{name}: cannot listen on …`, exit 1.
pub fn listen(name: &str, port: u16, fake_base: String) {
    let base = if port == 0 {
        fake_base
    } else {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            eprintln!("{name}: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        });
        let target: SocketAddr = fake_base.trim_start_matches("http://").parse().expect("fake address");
        std::thread::spawn(move || relay(listener, target));
        format!("http://127.0.0.1:{port}")
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {base}");
    let _ = stdout.flush();
}

/// Every 200 ms, writes `stats(seq)` to `path` (when given), `seq` counting up from 1; a failed
/// write is reported as `{name}: cannot write …` and the loop goes on. Runs for good.
pub async fn write_stats_forever(name: &str, path: Option<&PathBuf>, mut stats: impl FnMut(u64) -> serde_json::Value) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for seq in 1u64.. {
        tick.tick().await;
        let Some(path) = path else { continue };
        if let Err(e) = write_stats(path, &stats(seq)) {
            eprintln!("{name}: cannot write {}: {e}", path.display());
        }
    }
}

/// Writes the stats file atomically (a temp file, then a rename), so readers never see half.
pub fn write_stats(path: &PathBuf, value: &serde_json::Value) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{value}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Forwards every connection on `listener` to `target` (used when a fixed port is asked for).
pub fn relay(listener: TcpListener, target: SocketAddr) {
    for client in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let Ok(server) = TcpStream::connect(target) else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else { return };
            let upstream = std::thread::spawn(move || {
                let (mut from, mut to) = (client_read, server);
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
            let (mut from, mut to) = (server_read, client);
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
            let _ = upstream.join();
        });
    }
}
