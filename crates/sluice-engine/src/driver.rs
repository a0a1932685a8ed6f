//! The delivery driver: batches the plan's changes, sends them with retries, and commits the
//! snapshot for confirmed records after each batch (commit on acknowledgement).

use std::time::Duration;

use sluice_core::{
    Change, ChangeBatch, ChangeOp, Destination, DestinationError, ErrorClass, Outcome, OutcomeStatus, WriteContext,
};
use sluice_state::{CommitBatch, OutcomeRecord, RunCounts, RunId};

use crate::planner::Plan;
use crate::{EngineError, Progress, SyncJob};

/// Waits on rate-limited answers before a batch gives up; they do not use the retry budget.
const MAX_RATE_LIMITED_WAITS: u32 = 100;

/// Delivers a plan's spilled changes. Every change gets an outcome; on a run-stopping error
/// the changes not confirmed are recorded as retryable and the error is returned beside the
/// counts committed so far.
pub async fn deliver(
    job: &SyncJob<'_>,
    run_id: RunId,
    plan: &mut Plan,
    progress: &dyn Progress,
) -> (RunCounts, Option<EngineError>) {
    let mut totals = RunCounts::default();
    match deliver_into(job, run_id, plan, progress, &mut totals).await {
        Ok(()) => (totals, None),
        Err(error) => (totals, Some(error)),
    }
}

async fn deliver_into(
    job: &SyncJob<'_>,
    run_id: RunId,
    plan: &mut Plan,
    progress: &dyn Progress,
    totals: &mut RunCounts,
) -> Result<(), EngineError> {
    let fields = plan.field_names();
    let batch_size = job.destination.batch_size().max(1);
    let context = WriteContext { sync: job.sync.to_string(), run_id, mode: job.mode };
    let mut delivered = 0u64;
    let Some(reader) = plan.spill.as_mut() else {
        return Err(EngineError::Io("the plan has no spilled changes to deliver (it was a dry run)".into()));
    };
    let read_error = |e: std::io::Error| EngineError::Io(format!("cannot read the run's spill file: {e}"));
    loop {
        let mut changes = Vec::with_capacity(batch_size.min(reader.remaining() as usize));
        while changes.len() < batch_size {
            match reader.next_change().map_err(read_error)? {
                Some(change) => changes.push(change),
                None => break,
            }
        }
        if changes.is_empty() {
            break;
        }
        let batch = ChangeBatch { fields: fields.clone(), changes };
        match send_with_retries(job.destination, &context, &batch).await {
            Ok(outcomes) => {
                totals.add(&commit(job, run_id, &batch.changes, outcomes).await?);
                delivered += batch.changes.len() as u64;
                progress.delivered(delivered);
            }
            Err(error) => {
                // Nothing past this point is confirmed: record why, keep old fingerprints.
                let reason = format!("not confirmed: the run stopped ({error})");
                let unsent = |changes: &[Change]| changes.iter().map(|_| Outcome::retryable(reason.clone())).collect();
                totals.add(&commit(job, run_id, &batch.changes, unsent(&batch.changes)).await?);
                loop {
                    let mut rest = Vec::with_capacity(10_000);
                    while rest.len() < 10_000 {
                        match reader.next_change().map_err(read_error)? {
                            Some(change) => rest.push(change),
                            None => break,
                        }
                    }
                    if rest.is_empty() {
                        break;
                    }
                    totals.add(&commit(job, run_id, &rest, unsent(&rest)).await?);
                }
                return Err(EngineError::Destination { destination: job.destination.describe(), error });
            }
        }
    }
    Ok(())
}

/// Commits one batch's outcomes: snapshot entries for confirmed records only.
async fn commit(
    job: &SyncJob<'_>,
    run_id: RunId,
    changes: &[Change],
    outcomes: Vec<Outcome>,
) -> Result<RunCounts, EngineError> {
    let mut batch = CommitBatch::default();
    for (change, outcome) in changes.iter().zip(outcomes) {
        if outcome.status == OutcomeStatus::Applied {
            match change.op {
                ChangeOp::Delete => batch.deletes.push(change.key.clone()),
                ChangeOp::Insert | ChangeOp::Update => {
                    batch.upserts.push((change.key.clone(), change.fingerprint, outcome.destination_id.clone()))
                }
            }
        }
        batch.counts.count(change.op, outcome.status);
        batch.outcomes.push(OutcomeRecord {
            key: change.key.clone(),
            op: change.op,
            status: outcome.status,
            message: outcome.message,
        });
    }
    job.store.commit(run_id, job.sync, &batch).await?;
    Ok(batch.counts)
}

/// Sends a batch until every record has a final outcome or the retry budget is spent.
/// Returns `Err` only when the run must stop: bad credentials or configuration, or a
/// destination that kept failing whole requests.
async fn send_with_retries(
    destination: &dyn Destination,
    context: &WriteContext,
    batch: &ChangeBatch,
) -> Result<Vec<Outcome>, DestinationError> {
    let policy = destination.retry_policy();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.changes.len()];
    let mut pending: Vec<usize> = (0..batch.changes.len()).collect();
    let (mut retries, mut rate_limited_waits) = (0u32, 0u32);
    loop {
        let subset;
        let request = if pending.len() == batch.changes.len() {
            batch
        } else {
            subset = ChangeBatch {
                fields: batch.fields.clone(),
                changes: pending.iter().map(|&i| batch.changes[i].clone()).collect(),
            };
            &subset
        };
        let mut batch_error: Option<DestinationError> = None;
        match destination.write(context, request).await {
            Ok(results) if results.len() == pending.len() => {
                let mut still_pending = Vec::new();
                for (&index, outcome) in pending.iter().zip(results) {
                    if outcome.status == OutcomeStatus::Retryable {
                        still_pending.push(index);
                    }
                    outcomes[index] = Some(outcome);
                }
                pending = still_pending;
            }
            Ok(results) => {
                let message = format!(
                    "{} answered with {} outcomes for {} records; treating the records as unconfirmed",
                    destination.describe(),
                    results.len(),
                    pending.len()
                );
                for &index in &pending {
                    outcomes[index] = Some(Outcome::retryable(message.clone()));
                }
                pending.clear();
            }
            Err(error) if error.class.stops_run() => return Err(error),
            Err(error) if error.class == ErrorClass::Permanent => {
                for &index in &pending {
                    outcomes[index] = Some(Outcome::rejected(error.message.clone()));
                }
                pending.clear();
            }
            Err(error) => {
                for &index in &pending {
                    outcomes[index] = Some(Outcome::retryable(error.message.clone()));
                }
                batch_error = Some(error);
            }
        }
        if pending.is_empty() {
            break;
        }
        let rate_limited = batch_error.as_ref().is_some_and(|e| e.class == ErrorClass::RateLimited);
        let exhausted = if rate_limited {
            rate_limited_waits += 1;
            rate_limited_waits > MAX_RATE_LIMITED_WAITS
        } else {
            retries += 1;
            retries > policy.max_retries
        };
        if exhausted {
            if let Some(error) = batch_error {
                let attempts = retries + rate_limited_waits;
                return Err(DestinationError {
                    message: format!("{} (gave up after {attempts} attempts)", error.message),
                    ..error
                });
            }
            break;
        }
        let retry_after = batch_error.as_ref().and_then(|e| e.retry_after);
        let wait = policy.backoff(retries.saturating_sub(1), retry_after, fastrand::f64());
        tracing::debug!(?wait, pending = pending.len(), "retrying");
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Outcome::retryable("no outcome was reported for this record")))
        .collect())
}
