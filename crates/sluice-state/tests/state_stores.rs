//! One test suite, run against every state store backend.

use std::collections::BTreeMap;

use sluice_core::{ChangeOp, Fingerprint, OutcomeStatus};
use sluice_state::sqlite::SqliteStateStore;
use sluice_state::{CommitBatch, OutcomeRecord, RunCounts, RunStatus, StateError, StateStore};

async fn snapshot(store: &dyn StateStore, sync: &str) -> BTreeMap<String, Fingerprint> {
    let mut entries = BTreeMap::new();
    store
        .scan_snapshot(sync, &mut |key, fingerprint| {
            entries.insert(key.to_string(), fingerprint);
        })
        .await
        .unwrap();
    entries
}

fn outcome(key: &str, op: ChangeOp, status: OutcomeStatus, message: Option<&str>) -> OutcomeRecord {
    OutcomeRecord { key: key.into(), op, status, message: message.map(String::from) }
}

/// The behaviour every backend must share.
async fn suite(store: &dyn StateStore) {
    locks_are_exclusive_and_released_on_drop(store).await;
    runs_commit_snapshots_outcomes_and_counts(store).await;
    a_new_destination_identity_discards_the_snapshot(store).await;
    interrupted_runs_are_marked_failed(store).await;
    syncs_do_not_see_each_other(store).await;
    credentials_are_stored_sealed_and_replaced(store).await;
    request_captures_are_kept_per_run_and_pruned(store).await;
}

async fn request_captures_are_kept_per_run_and_pruned(store: &dyn StateStore) {
    let capture = |n: u16| sluice_core::RequestCapture {
        method: "POST".into(),
        url: "http://hook/in".into(),
        status: if n == 0 { None } else { Some(n) },
        request_body: format!("{{\"n\":{n}}}"),
        response_body: "{}".into(),
        duration_ms: u64::from(n),
    };
    let _lock = store.lock("captured").await.unwrap();
    let run = store.start_run("captured", "t").await.unwrap().run_id;
    store.save_captures(run, &[capture(200), capture(0)]).await.unwrap();
    store.save_captures(run, &[capture(429)]).await.unwrap();
    let kept = store.captures(run).await.unwrap();
    assert_eq!(kept, vec![capture(200), capture(0), capture(429)]);
    assert_eq!(store.prune_captures(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(store.prune_captures(chrono::Utc::now() + chrono::Duration::hours(1)).await.unwrap(), 3);
    assert!(store.captures(run).await.unwrap().is_empty());
}

async fn credentials_are_stored_sealed_and_replaced(store: &dyn StateStore) {
    let secrets = sluice_state::secrets::SecretBox::from_key(&[3; 32]);
    assert_eq!(store.load_credential("hubspot/oauth").await.unwrap(), None);
    let first = secrets.seal("hubspot/oauth", b"token-1").unwrap();
    store.save_credential("hubspot/oauth", &first).await.unwrap();
    let second = secrets.seal("hubspot/oauth", b"token-2").unwrap();
    store.save_credential("hubspot/oauth", &second).await.unwrap();
    let stored = store.load_credential("hubspot/oauth").await.unwrap().unwrap();
    assert_eq!(secrets.open("hubspot/oauth", &stored).unwrap(), b"token-2");
}

async fn locks_are_exclusive_and_released_on_drop(store: &dyn StateStore) {
    let held = store.lock("locked_sync").await.unwrap();
    match store.lock("locked_sync").await {
        Err(StateError::Locked { sync, holder }) => {
            assert_eq!(sync, "locked_sync");
            assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
        }
        Err(other) => panic!("expected a lock error, got {other}"),
        Ok(_) => panic!("a second lock on the same sync must be refused"),
    }
    let other_sync = store.lock("another_sync").await.unwrap();
    drop(held);
    let again = store.lock("locked_sync").await.expect("a released lock can be taken again");
    drop(again);
    drop(other_sync);
    let message = StateError::Locked { sync: "s".into(), holder: "held by pid 1 on h".into() }.to_string();
    assert!(message.contains("already running"), "{message}");
}

async fn runs_commit_snapshots_outcomes_and_counts(store: &dyn StateStore) {
    let _lock = store.lock("main").await.unwrap();
    let start = store.start_run("main", "file out.jsonl").await.unwrap();
    assert!(!start.snapshot_reset);
    let batch = CommitBatch {
        upserts: vec![("1".into(), Fingerprint(11), None), ("2".into(), Fingerprint(22), Some("d-2".into()))],
        deletes: vec![],
        outcomes: vec![
            outcome("1", ChangeOp::Insert, OutcomeStatus::Applied, None),
            outcome("2", ChangeOp::Insert, OutcomeStatus::Applied, None),
            outcome("3", ChangeOp::Insert, OutcomeStatus::Rejected, Some("email is invalid")),
        ],
        counts: RunCounts { inserted: 2, rejected: 1, ..RunCounts::default() },
    };
    store.commit(start.run_id, "main", &batch).await.unwrap();
    store.finish_run(start.run_id, RunStatus::Partial, 7, None).await.unwrap();

    assert_eq!(store.snapshot_len("main").await.unwrap(), 2);
    let entries = snapshot(store, "main").await;
    assert_eq!(entries.get("2"), Some(&Fingerprint(22)));
    let ids = store.destination_ids("main", &["1".into(), "2".into(), "9".into()]).await.unwrap();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![("2".to_string(), "d-2".to_string())]);
    assert!(!entries.contains_key("3"), "a rejected record must keep its old (absent) fingerprint");

    let run = store.run(start.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Partial);
    assert_eq!(run.counts, RunCounts { inserted: 2, rejected: 1, ..RunCounts::default() });
    assert_eq!(run.unchanged, 7);
    assert!(run.finished_at.is_some());

    let not_applied = store.outcomes(start.run_id, false, 100).await.unwrap();
    assert_eq!(not_applied, vec![outcome("3", ChangeOp::Insert, OutcomeStatus::Rejected, Some("email is invalid"))]);
    let all = store.outcomes(start.run_id, true, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].status, OutcomeStatus::Rejected, "problems are listed first");

    // Second run: update one, delete one; counts accumulate across batches.
    let second = store.start_run("main", "file out.jsonl").await.unwrap();
    assert!(second.run_id > start.run_id);
    for batch in [
        CommitBatch {
            upserts: vec![("1".into(), Fingerprint(111), None)],
            outcomes: vec![outcome("1", ChangeOp::Update, OutcomeStatus::Applied, None)],
            counts: RunCounts { updated: 1, ..RunCounts::default() },
            ..CommitBatch::default()
        },
        CommitBatch {
            deletes: vec!["2".into()],
            outcomes: vec![outcome("2", ChangeOp::Delete, OutcomeStatus::Applied, None)],
            counts: RunCounts { deleted: 1, ..RunCounts::default() },
            ..CommitBatch::default()
        },
    ] {
        store.commit(second.run_id, "main", &batch).await.unwrap();
    }
    store.finish_run(second.run_id, RunStatus::Succeeded, 0, None).await.unwrap();
    let entries = snapshot(store, "main").await;
    assert_eq!(entries.into_iter().collect::<Vec<_>>(), vec![("1".to_string(), Fingerprint(111))]);
    let runs = store.runs(Some("main"), 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![second.run_id, start.run_id]);
    assert_eq!(runs[0].counts, RunCounts { updated: 1, deleted: 1, ..RunCounts::default() });
    assert_eq!(store.runs(None, 1).await.unwrap().len(), 1);

    assert_eq!(store.reset("main").await.unwrap(), 1);
    assert_eq!(store.snapshot_len("main").await.unwrap(), 0);
    assert_eq!(store.target_identity("main").await.unwrap(), None);
}

async fn a_new_destination_identity_discards_the_snapshot(store: &dyn StateStore) {
    let _lock = store.lock("moved").await.unwrap();
    let first = store.start_run("moved", "postgres db/a").await.unwrap();
    let batch = CommitBatch {
        upserts: vec![("k".into(), Fingerprint(1), None)],
        outcomes: vec![outcome("k", ChangeOp::Insert, OutcomeStatus::Applied, None)],
        counts: RunCounts { inserted: 1, ..RunCounts::default() },
        ..CommitBatch::default()
    };
    store.commit(first.run_id, "moved", &batch).await.unwrap();
    store.finish_run(first.run_id, RunStatus::Succeeded, 0, None).await.unwrap();
    assert_eq!(store.target_identity("moved").await.unwrap().as_deref(), Some("postgres db/a"));

    let same = store.start_run("moved", "postgres db/a").await.unwrap();
    assert!(!same.snapshot_reset);
    assert_eq!(store.snapshot_len("moved").await.unwrap(), 1);
    store.finish_run(same.run_id, RunStatus::Succeeded, 1, None).await.unwrap();

    let moved = store.start_run("moved", "postgres db/b").await.unwrap();
    assert!(moved.snapshot_reset);
    assert_eq!(store.snapshot_len("moved").await.unwrap(), 0);
    store.finish_run(moved.run_id, RunStatus::Succeeded, 0, None).await.unwrap();
}

async fn interrupted_runs_are_marked_failed(store: &dyn StateStore) {
    let _lock = store.lock("crashy").await.unwrap();
    let abandoned = store.start_run("crashy", "t").await.unwrap();
    let next = store.start_run("crashy", "t").await.unwrap();
    assert_eq!(next.interrupted_runs, 1);
    let run = store.run(abandoned.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("interrupted"));
    store.finish_run(next.run_id, RunStatus::Failed, 0, Some("destination down")).await.unwrap();
    let run = store.run(next.run_id).await.unwrap().unwrap();
    assert_eq!(run.error.as_deref(), Some("destination down"));
    assert!(store.run(i64::MAX).await.unwrap().is_none());
}

async fn syncs_do_not_see_each_other(store: &dyn StateStore) {
    for sync in ["left", "right"] {
        let _lock = store.lock(sync).await.unwrap();
        let start = store.start_run(sync, "t").await.unwrap();
        let batch = CommitBatch {
            upserts: vec![(format!("{sync}-key"), Fingerprint(5), None)],
            outcomes: vec![outcome(&format!("{sync}-key"), ChangeOp::Insert, OutcomeStatus::Applied, None)],
            counts: RunCounts { inserted: 1, ..RunCounts::default() },
            ..CommitBatch::default()
        };
        store.commit(start.run_id, sync, &batch).await.unwrap();
        store.finish_run(start.run_id, RunStatus::Succeeded, 0, None).await.unwrap();
    }
    assert_eq!(snapshot(store, "left").await.keys().collect::<Vec<_>>(), vec!["left-key"]);
    assert_eq!(store.runs(Some("right"), 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_state_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("nested/state.db")).unwrap();
    suite(&store).await;
    // Data survives reopening.
    drop(store);
    let store = SqliteStateStore::open(&dir.path().join("nested/state.db")).unwrap();
    assert_eq!(store.snapshot_len("left").await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_state_store_reports_unopenable_paths() {
    let error = SqliteStateStore::open(std::path::Path::new("/proc/definitely/not/here.db")).err().unwrap();
    assert!(
        error.to_string().starts_with("cannot open the state store sqlite /proc/definitely/not/here.db"),
        "{error}"
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    //! The suite against Postgres, each test in a schema of its own.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use sluice_core::{ChangeOp, Fingerprint, OutcomeStatus};
    use sluice_state::postgres::PostgresStateStore;
    use sluice_state::{CommitBatch, RunCounts, StateError, StateStore};
    use tokio_postgres::NoTls;

    use super::{outcome, snapshot, suite};

    const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh schema, dropped when the test ends, even by panic.
    struct TestSchema {
        name: String,
    }

    impl TestSchema {
        /// `None` when the server is unreachable outside CI, so local runs without postgres pass.
        async fn create() -> Option<TestSchema> {
            let client = match tokio_postgres::connect(URL, NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client
                }
                Err(e) => {
                    if std::env::var("CI").as_deref() == Ok("true") {
                        panic!("!!! postgres not reachable at {URL} in CI: {e} !!!");
                    }
                    eprintln!("!!! SKIPPED: postgres not reachable at {URL}: {e} !!!");
                    return None;
                }
            };
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let name =
                format!("sluice_state_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create schema");
            Some(TestSchema { name })
        }

        fn url(&self) -> String {
            format!("{URL}?options=-c%20search_path%3D{}", self.name)
        }

        async fn open(&self) -> PostgresStateStore {
            PostgresStateStore::open(&self.url()).await.unwrap_or_else(|e| panic!("open: {e}"))
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            // Async drop does not exist, so the schema is dropped from a runtime on its own thread.
            let name = self.name.clone();
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(URL, NoTls).await?;
                    tokio::spawn(connection);
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {dropped:?}", self.name);
            }
        }
    }

    #[tokio::test]
    async fn postgres_state_store_passes_the_suite() {
        let Some(schema) = TestSchema::create().await else { return };
        let store = schema.open().await;
        assert_eq!(store.describe(), "postgres 127.0.0.1:5432/test");
        suite(&store).await;
        // Data survives reopening, and opening again finds the tables made.
        drop(store);
        let store = schema.open().await;
        assert_eq!(store.snapshot_len("left").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn postgres_locks_exclude_other_connections_until_dropped() {
        let Some(schema) = TestSchema::create().await else { return };
        let (first, second) = (schema.open().await, schema.open().await);
        let held = first.lock("shared").await.unwrap();
        match second.lock("shared").await {
            Err(StateError::Locked { sync, holder }) => {
                assert_eq!(sync, "shared");
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
                assert!(holder.contains(&sluice_state::host_name()), "{holder}");
            }
            Err(other) => panic!("expected a lock error, got {other}"),
            Ok(_) => panic!("another store must be refused the lock"),
        }

        // Stores in other schemas are as independent for locks as for their tables.
        let Some(elsewhere) = TestSchema::create().await else { return };
        drop(elsewhere.open().await.lock("shared").await.expect("another schema's lock is separate"));

        drop(held);
        // The other store does not wait for this one's release, and the server frees the lock
        // only once it has processed the unlock or seen the connection close.
        let deadline = Instant::now() + Duration::from_secs(5);
        let again = loop {
            match second.lock("shared").await {
                Ok(lock) => break lock,
                Err(StateError::Locked { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("a dropped lock must be freed: {e}"),
            }
        };
        assert!(matches!(first.lock("shared").await, Err(StateError::Locked { .. })));
        drop(again);
    }

    #[tokio::test]
    async fn postgres_commits_large_batches_atomically() {
        let Some(schema) = TestSchema::create().await else { return };
        let store = schema.open().await;
        let _lock = store.lock("big").await.unwrap();
        let run = store.start_run("big", "t").await.unwrap().run_id;
        let mut batch = CommitBatch {
            upserts: (0..10_000).map(|i| (format!("k{i}"), Fingerprint(i), Some(format!("d{i}")))).collect(),
            outcomes: (0..10_000)
                .map(|i| outcome(&format!("k{i}"), ChangeOp::Insert, OutcomeStatus::Applied, None))
                .collect(),
            counts: RunCounts { inserted: 10_000, ..RunCounts::default() },
            ..CommitBatch::default()
        };
        // A key twice in one batch ends as if upserted one by one.
        batch.upserts.push(("k1".into(), Fingerprint(7), None));
        batch.outcomes.push(outcome("k1", ChangeOp::Update, OutcomeStatus::Rejected, Some("late")));
        let started = Instant::now();
        store.commit(run, "big", &batch).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(store.snapshot_len("big").await.unwrap(), 10_000);
        let entries = snapshot(&store, "big").await;
        assert_eq!(entries.len(), 10_000);
        assert_eq!(entries.get("k1"), Some(&Fingerprint(7)));
        assert_eq!(entries.get("k9999"), Some(&Fingerprint(9999)));
        let outcomes = store.outcomes(run, true, 3).await.unwrap();
        assert_eq!(outcomes[0], outcome("k1", ChangeOp::Update, OutcomeStatus::Rejected, Some("late")));
        assert_eq!(outcomes[1].key, "k0", "outcomes keep the batch's order");
        assert_eq!(outcomes[2].key, "k1");

        // A batch failing part way changes nothing. Outcomes are written after the snapshot, and
        // a NUL, which text cannot hold, makes them fail.
        let broken = CommitBatch {
            deletes: (0..10_000).map(|i| format!("k{i}")).collect(),
            outcomes: vec![outcome("bad\0key", ChangeOp::Delete, OutcomeStatus::Applied, None)],
            counts: RunCounts { deleted: 10_000, ..RunCounts::default() },
            ..CommitBatch::default()
        };
        let error = store.commit(run, "big", &broken).await.err().unwrap();
        assert!(error.to_string().contains("0x00"), "{error}");
        assert_eq!(store.snapshot_len("big").await.unwrap(), 10_000);
        assert_eq!(store.run(run).await.unwrap().unwrap().counts.deleted, 0);
    }

    #[tokio::test]
    async fn postgres_state_store_reports_unreachable_servers() {
        let error = PostgresStateStore::open("postgres://postgres:secret@127.0.0.1:1/test").await.err().unwrap();
        match &error {
            StateError::Open { target, cause } => {
                assert_eq!(target, "postgres 127.0.0.1:1/test");
                assert!(cause.to_lowercase().contains("connection refused"), "{cause}");
            }
            other => panic!("expected an open error, got {other}"),
        }
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
