//! Pieces the fake servers share: atomic stats files and a relay for fixed ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

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
