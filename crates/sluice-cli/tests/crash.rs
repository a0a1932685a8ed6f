//! Crash safety: `sluice sync` killed with SIGKILL at random points loses nothing, and
//! re-sends at most the batches that were in flight.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn killing_sync_at_random_points_loses_nothing_and_duplicates_only_in_flight_batches() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 3000);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    receiver.lock().unwrap().delay = Duration::from_millis(10);
    let batch_size = 10;
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test seed {seed} (set CRASH_SEED to replay)");
    let mut random = fastrand::Rng::with_seed(seed);

    let mut kills = 0;
    for round in 0..12 {
        if round == 6 {
            // Change the model half-way so updates and deletes are interrupted too.
            warehouse
                .execute_batch(
                    "update customers set ltv = ltv + 1 where customer_id % 7 = 0;
                     delete from customers where customer_id % 50 = 0;
                     insert into customers select customer_id + 10000, email, name, ltv from customers where customer_id <= 40;",
                )
                .unwrap();
        }
        let mut child = spawn_sync(dir.path(), "to_hook");
        tokio::time::sleep(Duration::from_millis(random.u64(20..250))).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 6, "most runs should have been killed mid-way (only {kills} were)");

    let output = sluice_async(dir.path(), &["sync", "to_hook"]).await;
    assert_eq!(output.status.code(), Some(0), "the run after the crashes completes: {}", text(&output));

    let r = receiver.lock().unwrap();
    assert_eq!(r.records, sqlite_model(&warehouse), "the destination equals the model");
    let mut copies: HashMap<String, u64> = HashMap::new();
    for (op, key, fields) in &r.received {
        *copies.entry(format!("{op} {key} {fields}")).or_default() += 1;
    }
    let duplicates: u64 = copies.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= kills * batch_size,
        "{duplicates} re-sent records exceed {kills} kills × {batch_size} records in flight"
    );
    drop(r);

    // Nothing is left to send, and no kill left a lock or a broken run behind.
    let output = sluice(dir.path(), &["sync", "--json", "to_hook"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(counts(&report), (0, 0, 0, 0), "{report}");
    let runs = String::from_utf8_lossy(&sluice(dir.path(), &["runs", "--limit", "100"]).stdout).to_string();
    assert!(!runs.contains("running"), "interrupted runs are marked failed: {runs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_never_blocks_the_next_one_with_the_postgres_state_store() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_crash_state").await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 300);
    let (url, receiver) = start_receiver().await;
    webhook_project(dir.path(), &url, "");
    let project = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        project.replace("name: test", &format!("name: test\nstate: \"{}\"", schema.url())),
    )
    .unwrap();
    receiver.lock().unwrap().delay = Duration::from_millis(20);

    for _ in 0..3 {
        let mut child = spawn_sync(dir.path(), "to_hook");
        // Kill only once the run is delivering, so it certainly held the lock.
        let before = receiver.lock().unwrap().requests;
        for _ in 0..400 {
            if receiver.lock().unwrap().requests > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let output = sluice_async(dir.path(), &["sync", "to_hook"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(receiver.lock().unwrap().records, sqlite_model(&warehouse));
    let interrupted: i64 = client
        .query_one(&format!("select count(*) from {}.runs where error like 'interrupted%'", schema.name), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(interrupted, 3, "each killed run is marked failed as interrupted");
}
