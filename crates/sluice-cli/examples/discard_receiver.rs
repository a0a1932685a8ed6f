//! A webhook receiver for benchmarks: answers every request on any path with 200 `{}`
//! after reading and discarding its body. Usage: `discard_receiver PORT`. Prints nothing.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::Router;

async fn discard(_body: Bytes) -> (StatusCode, [(header::HeaderName, &'static str); 1], &'static str) {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}")
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: discard_receiver PORT");
        std::process::exit(2);
    });
    // No body limit: a batch of 10,000 wide records can exceed axum's 2 MB default.
    let app = Router::new().fallback(discard).layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| {
        eprintln!("discard_receiver: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    axum::serve(listener, app).await.expect("the server runs");
}
