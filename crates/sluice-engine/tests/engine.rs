//! The engine against an in-memory source and a scripted destination, on a real SQLite store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use sluice_core::{
    ChangeBatch, ChangeOp, Destination, DestinationError, ErrorClass, ModelQuery, Outcome, RecordBatchStream,
    RetryPolicy, ScanOptions, Source, SourceError, SyncMode, WriteContext,
};
use sluice_engine::{plan, run_sync, NoProgress, SyncJob};
use sluice_state::sqlite::SqliteStateStore;
use sluice_state::{RunStatus, StateStore};

/// A model held in memory: (id, email) rows.
struct MemorySource {
    rows: Mutex<Vec<(i64, String)>>,
}

#[async_trait]
impl Source for MemorySource {
    fn describe(&self) -> String {
        "memory".into()
    }
    async fn check(&self) -> Result<(), SourceError> {
        Ok(())
    }
    async fn scan(&self, _query: &ModelQuery, options: ScanOptions) -> Result<RecordBatchStream, SourceError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("email", DataType::Utf8, true),
        ]));
        let rows = self.rows.lock().unwrap().clone();
        let batches: Vec<Result<RecordBatch, SourceError>> = rows
            .chunks(options.batch_rows)
            .map(|chunk| {
                let ids: ArrayRef = Arc::new(Int64Array::from(chunk.iter().map(|r| r.0).collect::<Vec<_>>()));
                let emails: ArrayRef =
                    Arc::new(StringArray::from(chunk.iter().map(|r| r.1.clone()).collect::<Vec<_>>()));
                Ok(RecordBatch::try_new(schema.clone(), vec![ids, emails]).unwrap())
            })
            .collect();
        Ok(RecordBatchStream { schema, batches: Box::pin(futures::stream::iter(batches)) })
    }
}

/// What the scripted destination answers next.
enum Answer {
    Fail(ErrorClass, Option<Duration>),
    /// Per-record: the keys to mark retryable on this request.
    Retryable(Vec<&'static str>),
    WrongCount,
}

#[derive(Default)]
struct ScriptedDestination {
    script: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<Vec<(ChangeOp, String)>>>,
}

#[async_trait]
impl Destination for ScriptedDestination {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn identity(&self) -> String {
        "scripted".into()
    }
    fn batch_size(&self) -> usize {
        4
    }
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { max_retries: 2, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(5) }
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, _context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        self.requests.lock().unwrap().push(batch.changes.iter().map(|c| (c.op, c.key.clone())).collect());
        match self.script.lock().unwrap().pop_front() {
            None => Ok(batch.changes.iter().map(|_| Outcome::applied()).collect()),
            Some(Answer::Fail(class, retry_after)) => {
                Err(DestinationError { class, message: format!("scripted {class:?}"), retry_after })
            }
            Some(Answer::Retryable(keys)) => Ok(batch
                .changes
                .iter()
                .map(|c| if keys.contains(&c.key.as_str()) { Outcome::retryable("busy") } else { Outcome::applied() })
                .collect()),
            Some(Answer::WrongCount) => Ok(vec![Outcome::applied()]),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    spill: std::path::PathBuf,
    source: MemorySource,
    destination: ScriptedDestination,
    store: SqliteStateStore,
    query: ModelQuery,
}

impl Fixture {
    fn new(rows: i64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
        Fixture {
            spill: dir.path().join("tmp"),
            _dir: dir,
            source: MemorySource { rows: Mutex::new((1..=rows).map(|i| (i, format!("u{i}@x.io"))).collect()) },
            destination: ScriptedDestination::default(),
            store,
            query: ModelQuery::Table("m".into()),
        }
    }

    fn job(&self, mode: SyncMode) -> SyncJob<'_> {
        SyncJob {
            sync: "s",
            model: "m",
            mode,
            primary_key: "id",
            mapping: None,
            object: None,
            match_on: None,
            associations: &[],
            query: &self.query,
            source: &self.source,
            destination: &self.destination,
            store: &self.store,
            spill_dir: self.spill.clone(),
            batch_rows: 3,
            debug_requests: false,
        }
    }

    fn edit(&self, edit: impl FnOnce(&mut Vec<(i64, String)>)) {
        edit(&mut self.source.rows.lock().unwrap());
    }

    fn sent(&self) -> Vec<(ChangeOp, String)> {
        std::mem::take(&mut *self.destination.requests.lock().unwrap()).into_iter().flatten().collect()
    }
}

#[tokio::test]
async fn modes_decide_what_is_sent() {
    let fixture = Fixture::new(6);
    let report = run_sync(&fixture.job(SyncMode::Insert), &NoProgress).await.unwrap();
    assert_eq!(report.counts.inserted, 6);
    fixture.sent();
    fixture.edit(|rows| {
        rows[0].1 = "changed@x.io".into();
        rows.pop();
        rows.push((7, "new@x.io".into()));
    });

    let report = run_sync(&fixture.job(SyncMode::Insert), &NoProgress).await.unwrap();
    assert_eq!((report.counts.inserted, report.plan.skipped), (1, 1), "insert mode skips updates");
    assert_eq!(fixture.sent(), vec![(ChangeOp::Insert, "7".to_string())]);

    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.counts.updated, 1, "upsert sends the update insert mode skipped");
    assert_eq!(report.plan.deletes, 0, "upsert never deletes");
    fixture.sent();

    fixture.edit(|rows| rows[1].1 = "again@x.io".into());
    fixture.edit(|rows| rows.push((8, "eight@x.io".into())));
    let report = run_sync(&fixture.job(SyncMode::Update), &NoProgress).await.unwrap();
    assert_eq!(report.counts.updated, 2, "update mode sends new records as updates too");
    assert!(fixture.sent().iter().all(|(op, _)| *op == ChangeOp::Update));

    let report = run_sync(&fixture.job(SyncMode::Mirror), &NoProgress).await.unwrap();
    assert_eq!(report.counts.deleted, 1, "mirror deletes the record that left the model");
    assert_eq!(fixture.sent(), vec![(ChangeOp::Delete, "6".to_string())]);
    let report = run_sync(&fixture.job(SyncMode::Mirror), &NoProgress).await.unwrap();
    assert_eq!(report.plan.changes(), 0);
    assert_eq!(report.plan.unchanged, 7);
}

#[tokio::test]
async fn a_dry_run_plans_without_sending_or_writing_state() {
    let fixture = Fixture::new(5);
    let planned = plan(&fixture.job(SyncMode::Mirror), true, false, &NoProgress).await.unwrap();
    assert_eq!(planned.counts.inserts, 5);
    assert_eq!(planned.samples.len(), 5);
    assert!(fixture.sent().is_empty());
    assert_eq!(fixture.store.snapshot_len("s").await.unwrap(), 0);
    assert!(fixture.store.runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn transient_and_rate_limited_failures_are_retried_to_success() {
    let fixture = Fixture::new(8);
    fixture.destination.script.lock().unwrap().extend([
        Answer::Fail(ErrorClass::Transient, None),
        Answer::Fail(ErrorClass::RateLimited, Some(Duration::from_millis(2))),
        Answer::Fail(ErrorClass::RateLimited, None),
        Answer::Fail(ErrorClass::RateLimited, None),
        Answer::Fail(ErrorClass::Transient, None),
    ]);
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "rate limits do not use the budget of 2 retries");
    assert_eq!(report.counts.inserted, 8);
}

#[tokio::test]
async fn only_records_still_retryable_are_sent_again() {
    let fixture = Fixture::new(4);
    fixture
        .destination
        .script
        .lock()
        .unwrap()
        .extend([Answer::Retryable(vec!["2", "3"]), Answer::Retryable(vec!["3"])]);
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.counts.inserted, 4);
    let requests = fixture.destination.requests.lock().unwrap().clone();
    let keys: Vec<Vec<&str>> = requests.iter().map(|r| r.iter().map(|(_, k)| k.as_str()).collect()).collect();
    assert_eq!(keys, vec![vec!["1", "2", "3", "4"], vec!["2", "3"], vec!["3"]]);
}

#[tokio::test]
async fn records_still_retryable_after_the_budget_stay_unconfirmed() {
    let fixture = Fixture::new(2);
    fixture.destination.script.lock().unwrap().extend([
        Answer::Retryable(vec!["2"]),
        Answer::Retryable(vec!["2"]),
        Answer::Retryable(vec!["2"]),
    ]);
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!((report.counts.inserted, report.counts.retryable), (1, 1));
    let outcomes = fixture.store.outcomes(report.run_id, false, 10).await.unwrap();
    assert_eq!(outcomes[0].message.as_deref(), Some("busy"));
    // The next run sends only record 2.
    fixture.sent();
    run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(fixture.sent(), vec![(ChangeOp::Insert, "2".to_string())]);
}

#[tokio::test]
async fn auth_errors_stop_the_run_and_leave_every_record_unconfirmed() {
    let fixture = Fixture::new(10);
    fixture.destination.script.lock().unwrap().push_back(Answer::Fail(ErrorClass::Auth, None));
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.error.as_deref().unwrap().contains("scripted Auth"));
    assert_eq!(report.counts.retryable, 10, "every record has an outcome");
    assert_eq!(fixture.destination.requests.lock().unwrap().len(), 1, "no retry with bad credentials");
    assert_eq!(fixture.store.snapshot_len("s").await.unwrap(), 0);
}

#[tokio::test]
async fn permanent_batch_errors_reject_the_batch_and_the_run_goes_on() {
    let fixture = Fixture::new(6);
    fixture.destination.script.lock().unwrap().push_back(Answer::Fail(ErrorClass::Permanent, None));
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!((report.counts.rejected, report.counts.inserted), (4, 2));
}

#[tokio::test]
async fn a_wrong_number_of_outcomes_confirms_nothing() {
    let fixture = Fixture::new(3);
    fixture.destination.script.lock().unwrap().push_back(Answer::WrongCount);
    let report = run_sync(&fixture.job(SyncMode::Upsert), &NoProgress).await.unwrap();
    assert_eq!(report.counts.retryable, 3);
    assert_eq!(fixture.store.snapshot_len("s").await.unwrap(), 0);
}

#[tokio::test]
async fn the_match_field_is_sent_and_fingerprinted_like_a_mapped_field() {
    let fixture = Fixture::new(2);
    let mapping = vec![("id".to_string(), "id".to_string())];
    let job = SyncJob {
        mapping: Some(&mapping),
        match_on: Some(("contact_email", "email")),
        ..fixture.job(SyncMode::Upsert)
    };
    let planned = plan(&job, true, false, &NoProgress).await.unwrap();
    let names: Vec<&str> = planned.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["id", "contact_email"]);
    run_sync(&job, &NoProgress).await.unwrap();
    fixture.edit(|rows| rows[0].1 = "moved@x.io".into());
    let report = run_sync(&job, &NoProgress).await.unwrap();
    assert_eq!(report.counts.updated, 1, "a change of the match field alone is a change");

    let missing = SyncJob { match_on: Some(("contact_email", "mail")), ..fixture.job(SyncMode::Upsert) };
    let error = plan(&missing, true, false, &NoProgress).await.err().unwrap().to_string();
    assert!(error.contains("matches on `contact_email` from column `mail`"), "{error}");
}

/// A tool that assigns its own ids on create and deletes by them.
#[derive(Default)]
struct IdTool {
    deleted_ids: Mutex<Vec<Option<String>>>,
}

#[async_trait]
impl Destination for IdTool {
    fn describe(&self) -> String {
        "ids".into()
    }
    fn identity(&self) -> String {
        "ids".into()
    }
    fn batch_size(&self) -> usize {
        10
    }
    fn wants_destination_ids(&self) -> bool {
        true
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, _context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        Ok(batch
            .changes
            .iter()
            .map(|change| {
                if change.op == ChangeOp::Delete {
                    self.deleted_ids.lock().unwrap().push(change.destination_id.clone());
                }
                Outcome { destination_id: Some(format!("tool-{}", change.key)), ..Outcome::applied() }
            })
            .collect())
    }
}

#[tokio::test]
async fn ids_the_tool_returned_come_back_with_later_deletes() {
    let fixture = Fixture::new(3);
    let tool = IdTool::default();
    let job = SyncJob { destination: &tool, ..fixture.job(SyncMode::Mirror) };
    run_sync(&job, &NoProgress).await.unwrap();
    fixture.edit(|rows| rows.retain(|r| r.0 != 2));
    let report = run_sync(&job, &NoProgress).await.unwrap();
    assert_eq!(report.counts.deleted, 1);
    assert_eq!(*tool.deleted_ids.lock().unwrap(), vec![Some("tool-2".to_string())]);
}

#[tokio::test]
async fn audience_mode_adds_who_enters_and_removes_who_leaves() {
    let fixture = Fixture::new(5);
    let report = run_sync(&fixture.job(SyncMode::Audience), &NoProgress).await.unwrap();
    assert_eq!(report.counts.inserted, 5);
    fixture.sent();
    fixture.edit(|rows| {
        rows.remove(0);
        rows.push((9, "nine@x.io".into()));
    });
    let report = run_sync(&fixture.job(SyncMode::Audience), &NoProgress).await.unwrap();
    assert_eq!((report.counts.inserted, report.counts.deleted), (1, 1));
    let sent = fixture.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent.contains(&(ChangeOp::Insert, "9".to_string())), "{sent:?}");
    assert!(sent.contains(&(ChangeOp::Delete, "1".to_string())), "{sent:?}");
}

#[tokio::test]
async fn a_sync_pointed_at_another_object_sends_everything_again() {
    let fixture = Fixture::new(4);
    let first = SyncJob { object: Some("audience-1"), ..fixture.job(SyncMode::Audience) };
    assert_eq!(run_sync(&first, &NoProgress).await.unwrap().counts.inserted, 4);
    fixture.sent();
    assert_eq!(run_sync(&first, &NoProgress).await.unwrap().plan.changes(), 0);
    let moved = SyncJob { object: Some("audience-2"), ..fixture.job(SyncMode::Audience) };
    let report = run_sync(&moved, &NoProgress).await.unwrap();
    assert!(report.snapshot_reset, "the snapshot described audience-1");
    assert_eq!(report.counts.inserted, 4, "every member goes to the new audience");
}
