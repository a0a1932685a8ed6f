//! The delivery layer against simulated tools: split-retry, adaptive concurrency below a
//! saturation point, and one request budget shared by several syncs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use sluice_core::{
    ChangeBatch, DeliveryLimits, Destination, DestinationError, ErrorClass, ModelQuery, Outcome, RecordBatchStream,
    RequestQuota, RetryPolicy, ScanOptions, Source, SourceError, SyncMode, WriteContext,
};
use sluice_engine::{run_sync, NoProgress, SyncJob};
use sluice_state::sqlite::SqliteStateStore;
use sluice_state::{RunStatus, StateStore};

/// `rows` records with ids 1..=rows.
struct Rows(i64);

#[async_trait]
impl Source for Rows {
    fn describe(&self) -> String {
        "rows".into()
    }
    async fn check(&self) -> Result<(), SourceError> {
        Ok(())
    }
    async fn scan(&self, _query: &ModelQuery, _options: ScanOptions) -> Result<RecordBatchStream, SourceError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from((1..=self.0).collect::<Vec<_>>()));
        let emails: ArrayRef =
            Arc::new(StringArray::from((1..=self.0).map(|i| format!("u{i}@x.io")).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, emails]).unwrap();
        Ok(RecordBatchStream { schema, batches: Box::pin(futures::stream::iter(vec![Ok(batch)])) })
    }
}

/// A simulated tool: optional poison key that sinks a whole batch, latency that grows with
/// load past a saturation point, 429 beyond an overload point.
#[derive(Default)]
struct SimulatedTool {
    account: String,
    batch_size: usize,
    limits: DeliveryLimits,
    poison: Option<String>,
    saturation: usize,
    overload: usize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requests: Mutex<Vec<Instant>>,
    applied: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Destination for SimulatedTool {
    fn describe(&self) -> String {
        "simulated".into()
    }
    fn identity(&self) -> String {
        "simulated".into()
    }
    fn account_key(&self) -> String {
        self.account.clone()
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
        }
    }
    fn delivery_limits(&self) -> DeliveryLimits {
        self.limits.clone()
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, _context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        self.requests.lock().unwrap().push(Instant::now());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let result = self.answer(now, batch).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl SimulatedTool {
    async fn answer(&self, in_flight: usize, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        if self.saturation > 0 {
            // Past saturation every extra request adds queueing delay; past overload, 429.
            let extra = in_flight.saturating_sub(self.saturation) as u64;
            tokio::time::sleep(Duration::from_millis(4 + 6 * extra)).await;
            if in_flight > self.overload {
                return Err(DestinationError {
                    class: ErrorClass::RateLimited,
                    message: "429 too many requests".into(),
                    retry_after: None,
                });
            }
        }
        if let Some(poison) = &self.poison {
            if batch.changes.iter().any(|c| &c.key == poison) {
                return Err(DestinationError::new(ErrorClass::Permanent, format!("invalid record {poison} in batch")));
            }
        }
        let mut applied = self.applied.lock().unwrap();
        for change in &batch.changes {
            *applied.entry(change.key.clone()).or_default() += 1;
        }
        Ok(batch.changes.iter().map(|_| Outcome::applied()).collect())
    }
}

fn job<'a>(
    sync: &'a str,
    source: &'a Rows,
    tool: &'a SimulatedTool,
    store: &'a SqliteStateStore,
    spill: &std::path::Path,
) -> SyncJob<'a> {
    static QUERY: std::sync::OnceLock<ModelQuery> = std::sync::OnceLock::new();
    SyncJob {
        sync,
        model: "m",
        mode: SyncMode::Upsert,
        primary_key: "id",
        mapping: None,
        object: None,
        match_on: None,
        associations: &[],
        query: QUERY.get_or_init(|| ModelQuery::Table("m".into())),
        source,
        destination: tool,
        store,
        spill_dir: spill.to_path_buf(),
        batch_rows: 1000,
        debug_requests: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_retry_isolates_one_poison_record_in_a_batch_of_100() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let tool = SimulatedTool {
        account: "poison".into(),
        batch_size: 100,
        limits: DeliveryLimits { split_rejected_batches: true, ..DeliveryLimits::default() },
        poison: Some("37".into()),
        ..SimulatedTool::default()
    };
    let source = Rows(100);
    let report = run_sync(&job("s", &source, &tool, &store, dir.path()), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!((report.counts.inserted, report.counts.rejected), (99, 1));
    let outcomes = store.outcomes(report.run_id, false, 10).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].key, "37");
    assert_eq!(outcomes[0].message.as_deref(), Some("invalid record 37 in batch"));
    let applied = tool.applied.lock().unwrap();
    assert_eq!(applied.len(), 99);
    assert!(applied.values().all(|&n| n == 1), "no record is applied twice");
    // Bisection: one failed request per level (about log2(100) levels) plus the good halves.
    assert!(tool.requests.lock().unwrap().len() <= 2 * 7 + 1, "{} requests", tool.requests.lock().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_converges_below_the_saturation_point_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let tool = SimulatedTool {
        account: "saturating".into(),
        batch_size: 5,
        limits: DeliveryLimits { max_concurrency: 64, ..DeliveryLimits::default() },
        saturation: 8,
        overload: 14,
        ..SimulatedTool::default()
    };
    let source = Rows(3000);
    let report = run_sync(&job("s", &source, &tool, &store, dir.path()), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.counts.inserted, 3000);
    let applied = tool.applied.lock().unwrap();
    assert_eq!(applied.len(), 3000, "no record lost");
    assert!(applied.values().all(|&n| n == 1), "429s apply nothing, so nothing is applied twice");
    let peak = tool.max_in_flight.load(Ordering::SeqCst);
    assert!(peak > 1, "concurrency grew from 1 (peak {peak})");
    assert!(peak <= 20, "concurrency stayed near the saturation point, far below the ceiling of 64 (peak {peak})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_syncs_on_one_account_share_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let quota = RequestQuota { requests: 10, per: Duration::from_millis(200) };
    let tool = SimulatedTool {
        account: "shared-account".into(),
        batch_size: 2,
        limits: DeliveryLimits { quotas: vec![quota], max_concurrency: 4, ..DeliveryLimits::default() },
        ..SimulatedTool::default()
    };
    let source = Rows(40);
    let jobs = ["a", "b", "c"].map(|sync| job(sync, &source, &tool, &store, dir.path()));
    let (a, b, c) = tokio::join!(
        run_sync(&jobs[0], &NoProgress),
        run_sync(&jobs[1], &NoProgress),
        run_sync(&jobs[2], &NoProgress),
    );
    for report in [a, b, c] {
        assert_eq!(report.unwrap().counts.inserted, 40);
    }
    let mut times = tool.requests.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 60);
    for (index, start) in times.iter().enumerate() {
        let in_window = times[index..].iter().take_while(|t| t.duration_since(*start) < quota.per).count();
        assert!(in_window <= quota.requests as usize, "{in_window} requests within one window of the quota");
    }
}
