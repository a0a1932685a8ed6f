//! One run of a sync: lock, plan, prepare the destination, deliver, finish.

use std::time::{Duration, Instant};

use sluice_core::{AssociationTarget, Target};
use sluice_state::{RunCounts, RunId, RunStatus};

use crate::planner::{plan, PlanCounts};
use crate::{EngineError, Progress, SyncJob};

/// How long request captures (`--debug-requests`) are kept.
pub const CAPTURE_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub sync: String,
    pub run_id: RunId,
    pub status: RunStatus,
    /// Records applied, rejected or left retryable in this run.
    pub counts: RunCounts,
    /// What the diff found.
    pub plan: PlanCounts,
    /// The destination changed, so the old snapshot was dropped and everything re-sent.
    pub snapshot_reset: bool,
    pub error: Option<String>,
    pub duration: Duration,
}

/// Runs a sync once. Fails before a run is recorded when the lock is held by another
/// process or the state store is unreachable; afterwards every failure is recorded on the
/// run and returned in the report.
pub async fn run_sync(job: &SyncJob<'_>, progress: &dyn Progress) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let _lock = job.store.lock(job.sync).await?;
    crate::spill::remove_stale(&job.spill_dir, job.sync);
    let start = job.store.start_run(job.sync, &job.target_identity()).await?;
    // Captured requests hold row values: they are opt-in, and kept for a bounded time.
    job.store.prune_captures(chrono::Utc::now() - CAPTURE_RETENTION).await?;
    if start.snapshot_reset {
        tracing::info!(sync = job.sync, "the destination changed since the last run; sending every record again");
    }
    let mut plan_counts = PlanCounts::default();
    let outcome = execute(job, start.run_id, start.snapshot_reset, progress, &mut plan_counts).await;
    let (status, counts, error) = match outcome {
        Ok(counts) if counts.rejected + counts.retryable > 0 => (RunStatus::Partial, counts, None),
        Ok(counts) => (RunStatus::Succeeded, counts, None),
        Err((counts, error)) => (RunStatus::Failed, counts, Some(error.to_string())),
    };
    job.store.finish_run(start.run_id, status, plan_counts.unchanged, error.as_deref()).await?;
    Ok(RunReport {
        sync: job.sync.to_string(),
        run_id: start.run_id,
        status,
        counts,
        plan: plan_counts,
        snapshot_reset: start.snapshot_reset,
        error,
        duration: started.elapsed(),
    })
}

async fn execute(
    job: &SyncJob<'_>,
    run_id: RunId,
    snapshot_reset: bool,
    progress: &dyn Progress,
    plan_counts: &mut PlanCounts,
) -> Result<RunCounts, (RunCounts, EngineError)> {
    let failed = |error| (RunCounts::default(), error);
    // Read before planning: with an empty snapshot (first run, `sluice reset`, a changed
    // destination or object) every record of the model is planned as an insert.
    let full_sync =
        snapshot_reset || job.store.snapshot_len(job.sync).await.map_err(|e| failed(EngineError::from(e)))? == 0;
    let mut plan = plan(job, true, true, progress).await.map_err(failed)?;
    *plan_counts = plan.counts;
    progress.planned(&plan.counts);
    if plan.counts.changes() == 0 {
        return Ok(RunCounts::default());
    }
    let target = Target {
        sync: job.sync.to_string(),
        mode: job.mode,
        fields: plan.fields.clone(),
        key_field: plan.key_field.clone(),
        object: job.object.map(str::to_string),
        match_field: job.match_on.map(|(field, _)| field.to_string()),
        associations: job
            .associations
            .iter()
            .map(|(object, field, _)| AssociationTarget {
                object: object.clone(),
                field: field.clone(),
                value_field: AssociationTarget::value_field_name(object, field),
            })
            .collect(),
        planned_changes: plan.counts.changes(),
        full_sync,
    };
    prepare_with_retries(job, &target)
        .await
        .map_err(|error| failed(EngineError::Destination { destination: job.destination.describe(), error }))?;
    match crate::driver::deliver(job, run_id, &target, &mut plan, progress).await {
        (counts, None) => Ok(counts),
        (counts, Some(error)) => Err((counts, error)),
    }
}

/// Prepares the destination, retrying what the tool says may pass later (429, 5xx, timeouts)
/// with the destination's retry policy, as deliveries are.
async fn prepare_with_retries(job: &SyncJob<'_>, target: &Target) -> Result<(), sluice_core::DestinationError> {
    let policy = job.destination.retry_policy();
    let budget = crate::driver::account_budget(job.destination);
    let mut retry = 0;
    loop {
        // Preparing reads the tool's schema: that request counts against the account's quota too.
        budget.until_ready().await;
        match job.destination.prepare(target).await {
            Err(error) if error.class.is_retryable() && retry < policy.max_retries => {
                let wait = policy.backoff(retry, error.retry_after, fastrand::f64());
                tracing::debug!(?wait, %error, "retrying prepare");
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            other => return other,
        }
    }
}
