//! The delivery driver: batches the plan's changes, sends them under the destination's request
//! budget and adaptive concurrency, retries, and commits the snapshot for confirmed records
//! after each batch (commit on acknowledgement).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use sluice_core::{
    CaptureSink, Change, ChangeBatch, ChangeOp, Destination, DestinationError, ErrorClass, Outcome, OutcomeStatus,
    RateFeedback, Target, WriteContext,
};
use sluice_state::{CommitBatch, OutcomeRecord, RunCounts, RunId};

use crate::delivery::concurrency::{AdaptiveConcurrency, ConcurrencySettings, Signal};
use crate::delivery::rate_limit::{RateBudget, RateLimit};
use crate::planner::Plan;
use crate::spill::SpillReader;
use crate::{EngineError, Progress, SyncJob};

/// Waits on rate-limited answers before a batch gives up; they do not use the retry budget.
const MAX_RATE_LIMITED_WAITS: u32 = 100;

/// Changes recorded per commit when a stopped run marks what it did not send.
const UNSENT_CHUNK: usize = 10_000;

/// What one batch needs to be sent: the destination and its shared controls.
struct Sender<'a> {
    destination: &'a dyn Destination,
    context: WriteContext,
    budget: RateBudget,
    concurrency: AdaptiveConcurrency,
    split_rejected_batches: bool,
}

/// Delivers a plan's spilled changes. Every change gets an outcome; on a run-stopping error
/// the changes not confirmed are recorded as retryable and the error is returned beside the
/// counts committed so far.
pub async fn deliver(
    job: &SyncJob<'_>,
    run_id: RunId,
    target: &Target,
    plan: &mut Plan,
    progress: &dyn Progress,
) -> (RunCounts, Option<EngineError>) {
    let mut totals = RunCounts::default();
    match deliver_into(job, run_id, target, plan, progress, &mut totals).await {
        Ok(()) => (totals, None),
        Err(error) => (totals, Some(error)),
    }
}

async fn deliver_into(
    job: &SyncJob<'_>,
    run_id: RunId,
    target: &Target,
    plan: &mut Plan,
    progress: &dyn Progress,
    totals: &mut RunCounts,
) -> Result<(), EngineError> {
    let fields = plan.field_names();
    let batch_size = job.destination.batch_size_for(target).max(1);
    let limits = job.destination.delivery_limits();
    let budget = account_budget(job.destination);
    let sender = Sender {
        destination: job.destination,
        context: WriteContext {
            sync: job.sync.to_string(),
            run_id,
            mode: job.mode,
            object: job.object.map(str::to_string),
            capture: job.debug_requests.then(|| CaptureSink(Default::default())),
            rate: Some(RateFeedback(std::sync::Arc::new({
                let budget = budget.clone();
                move |remaining, resets_in| budget.observe_remaining(remaining, resets_in)
            }))),
        },
        budget: budget.clone(),
        concurrency: AdaptiveConcurrency::new(ConcurrencySettings {
            max: limits.max_concurrency.max(1),
            ..ConcurrencySettings::default()
        }),
        split_rejected_batches: limits.split_rejected_batches,
    };
    let Some(reader) = plan.spill.as_mut() else {
        return Err(EngineError::Io("the plan has no spilled changes to deliver (it was a dry run)".into()));
    };

    let mut in_flight = FuturesUnordered::new();
    let mut stopped: Option<DestinationError> = None;
    let mut delivered = 0u64;
    loop {
        // Keep as many batches going as the adaptive limit allows; each request inside still
        // waits for a concurrency permit and the shared budget.
        while stopped.is_none() && in_flight.len() < sender.concurrency.limit().max(1) {
            let mut changes = read_changes(reader, batch_size)?;
            if changes.is_empty() {
                break;
            }
            if job.destination.wants_destination_ids() {
                let keys: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
                let mut ids = job.store.destination_ids(job.sync, &keys).await?;
                for change in &mut changes {
                    change.destination_id = ids.remove(&change.key);
                }
            }
            let batch = ChangeBatch { fields: fields.clone(), changes };
            let sender = &sender;
            in_flight.push(async move {
                let result = sender.send(&batch).await;
                (batch, result)
            });
        }
        let Some((batch, result)) = in_flight.next().await else { break };
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // Nothing of this batch is confirmed: record why, keep old fingerprints.
                let reason = format!("not confirmed: the run stopped ({error})");
                let outcomes = batch.changes.iter().map(|_| Outcome::retryable(reason.clone())).collect();
                stopped.get_or_insert(error);
                outcomes
            }
        };
        totals.add(&commit(job, run_id, &batch.changes, outcomes).await?);
        if let Some(sink) = &sender.context.capture {
            job.store.save_captures(run_id, &sink.drain()).await?;
        }
        delivered += batch.changes.len() as u64;
        progress.delivered(delivered);
    }
    if let Some(error) = stopped {
        let reason = format!("not sent: the run stopped ({error})");
        loop {
            let rest = read_changes(reader, UNSENT_CHUNK)?;
            if rest.is_empty() {
                break;
            }
            let outcomes = rest.iter().map(|_| Outcome::retryable(reason.clone())).collect();
            totals.add(&commit(job, run_id, &rest, outcomes).await?);
        }
        return Err(EngineError::Destination { destination: job.destination.describe(), error });
    }
    Ok(())
}

/// The request budget of the destination's account, shared by every sync using it.
pub(crate) fn account_budget(destination: &dyn Destination) -> RateBudget {
    let quotas: Vec<RateLimit> = destination
        .delivery_limits()
        .quotas
        .iter()
        .map(|q| RateLimit { requests: q.requests.max(1), per: q.per })
        .collect();
    RateBudget::shared(&destination.account_key(), &quotas)
}

fn read_changes(reader: &mut SpillReader, limit: usize) -> Result<Vec<Change>, EngineError> {
    let mut changes = Vec::with_capacity(limit.min(reader.remaining() as usize));
    while changes.len() < limit {
        match reader.next_change().map_err(|e| EngineError::Io(format!("cannot read the run's spill file: {e}")))? {
            Some(change) => changes.push(change),
            None => break,
        }
    }
    Ok(changes)
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

impl Sender<'_> {
    /// One request: waits for the shared budget and a concurrency permit, and feeds the
    /// round trip back to adaptive concurrency.
    async fn request(&self, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        // Permit first: the budget's slot must be spent by a send made right away.
        let permit = self.concurrency.acquire().await;
        self.budget.until_ready().await;
        let started = Instant::now();
        let result = self.destination.write(&self.context, batch).await;
        let signal = match &result {
            Err(error) if error.class.is_retryable() => Signal::Backpressure,
            _ => Signal::Ok,
        };
        permit.done(started.elapsed(), signal);
        if let Err(error) = &result {
            if let (ErrorClass::RateLimited, Some(wait)) = (error.class, error.retry_after) {
                // Everyone using this account waits, not only this batch.
                self.budget.pause_for(wait);
            }
        }
        result
    }

    /// Sends a batch until every record has a final outcome or the retry budget is spent.
    /// Returns `Err` only when the run must stop: bad credentials or configuration, or a
    /// destination that kept failing whole requests.
    fn send<'s>(
        &'s self,
        batch: &'s ChangeBatch,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Outcome>, DestinationError>> + Send + 's>> {
        Box::pin(async move {
            let policy = self.destination.retry_policy();
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
                match self.request(request).await {
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
                            self.destination.describe(),
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
                        if self.split_rejected_batches && pending.len() > 1 {
                            // One bad record can sink a whole batch: bisect to find it.
                            let halves = split_in_two(request);
                            for (half, indices) in halves.iter().zip(pending.chunks(pending.len().div_ceil(2))) {
                                let results = self.send(half).await?;
                                for (&index, outcome) in indices.iter().zip(results) {
                                    outcomes[index] = Some(outcome);
                                }
                            }
                        } else {
                            for &index in &pending {
                                outcomes[index] = Some(Outcome::rejected(error.message.clone()));
                            }
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
        })
    }
}

/// The batch's first and second halves.
fn split_in_two(batch: &ChangeBatch) -> [ChangeBatch; 2] {
    let middle = batch.changes.len().div_ceil(2);
    let (first, second) = batch.changes.split_at(middle);
    [
        ChangeBatch { fields: batch.fields.clone(), changes: first.to_vec() },
        ChangeBatch { fields: batch.fields.clone(), changes: second.to_vec() },
    ]
}
