//! Webhook syncs end to end: per-record rejections, retries and the outcomes users see.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn rejected_records_are_reported_retried_and_nothing_else_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 50);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    receiver.lock().unwrap().reject.insert("7".into(), "email domain is blocked".into());
    receiver.lock().unwrap().reject.insert("23".into(), "name too long for field `name`".into());

    let (code, report) = sync_json_async(dir.path(), "to_hook").await;
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["status"], "partial");
    assert_eq!(counts(&report), (48, 0, 0, 2));

    let run_id = report["run_id"].as_i64().unwrap().to_string();
    let shown = sluice(dir.path(), &["runs", "show", &run_id]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(shown_text.contains("email domain is blocked"), "{shown_text}");
    assert!(shown_text.contains("name too long for field `name`"), "{shown_text}");
    assert!(shown_text.lines().any(|l| l.starts_with("7 ") && l.contains("rejected")), "{shown_text}");

    // The receiver now accepts them: the next run sends exactly those two records.
    {
        let mut r = receiver.lock().unwrap();
        r.reject.clear();
        r.received.clear();
    }
    let (code, report) = sync_json_async(dir.path(), "to_hook").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (2, 0, 0, 0));
    let mut resent: Vec<String> = receiver.lock().unwrap().received.iter().map(|(_, k, _)| k.clone()).collect();
    resent.sort();
    assert_eq!(resent, vec!["23", "7"]);
    assert_eq!(receiver.lock().unwrap().records, sqlite_model(&warehouse));

    // And then nothing at all.
    receiver.lock().unwrap().received.clear();
    let (code, report) = sync_json_async(dir.path(), "to_hook").await;
    assert_eq!((code, counts(&report)), (0, (0, 0, 0, 0)));
    assert_eq!(report["unchanged"], 50);
    assert!(receiver.lock().unwrap().received.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_server_errors_are_retried_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 30);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    receiver.lock().unwrap().fail_next.extend([(429, Some(1)), (503, None), (500, None), (429, Some(0))]);

    let (code, report) = sync_json_async(dir.path(), "to_hook").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (30, 0, 0, 0));
    let r = receiver.lock().unwrap();
    assert_eq!(r.records, sqlite_model(&warehouse));
    assert_eq!(r.requests, 3 + 4, "three batches of ten plus four refused requests");
    assert_eq!(r.received.len(), 30, "refused requests apply nothing, so nothing is duplicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_error_rejects_the_batch_with_the_receivers_message() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 15);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    receiver.lock().unwrap().fail_next.push_back((422, None));

    let output = sluice_async(dir.path(), &["sync", "to_hook"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("5 inserted") && stdout.contains("10 rejected"), "{stdout}");
    let shown = sluice(dir.path(), &["runs", "show", "1"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("HTTP 422: injected 422"), "{}", text(&shown));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sync_of_the_same_sync_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 40);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    receiver.lock().unwrap().delay = Duration::from_millis(300);

    let mut first = spawn_sync(dir.path(), "to_hook");
    // Wait until the first run is delivering (its first request was answered), so it
    // certainly holds the lock and has batches left to send.
    for _ in 0..200 {
        if receiver.lock().unwrap().requests > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = sluice_async(dir.path(), &["sync", "to_hook"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("sync `to_hook` is already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert!(first.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_requests_keeps_each_request_and_response_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 12);
    let (url, receiver) = start_receiver().await;
    webhook_project(
        dir.path(),
        &format!("{url}?token=secret-in-query"),
        ", headers: { Authorization: \"Bearer hook-secret\" }",
    );
    receiver.lock().unwrap().fail_next.push_back((429, Some(0)));

    let output = sluice_async(dir.path(), &["sync", "--debug-requests", "to_hook"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let shown = sluice_async(dir.path(), &["runs", "show", "1", "--requests"]).await;
    let stdout = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(stdout.contains("#1 POST") && stdout.contains("→ 429"), "{stdout}");
    assert_eq!(stdout.matches("→ 200").count(), 2, "two batches of ten and two: {stdout}");
    assert!(stdout.contains("\"op\":\"insert\""), "request bodies are kept: {stdout}");
    assert!(stdout.contains("injected 429"), "response bodies are kept: {stdout}");
    assert!(!stdout.contains("secret"), "no credentials, in the URL or in headers: {stdout}");

    // Without the flag, nothing is captured, and the user is told how to get captures.
    sqlite_warehouse_update(dir.path());
    let output = sluice_async(dir.path(), &["sync", "to_hook"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let shown = sluice_async(dir.path(), &["runs", "show", "2", "--requests"]).await;
    assert!(String::from_utf8_lossy(&shown.stdout).contains("no requests were captured"), "{}", text(&shown));
}

fn sqlite_warehouse_update(dir: &std::path::Path) {
    let connection = rusqlite::Connection::open(dir.join("warehouse.db")).unwrap();
    connection.execute("update customers set name = 'Renamed' where customer_id = 1", []).unwrap();
}
