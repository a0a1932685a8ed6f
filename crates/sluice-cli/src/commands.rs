//! The subcommands, except `demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use sluice_core::{value_at, ScanOptions};
use sluice_engine::{run_sync, NoProgress, Progress, RunReport};
use sluice_state::{RunRecord, RunStatus, StateStore};

use crate::output::{interactive, print_table, summary, truncate, TerminalProgress};
use crate::workspace::Workspace;

/// Exit code: every change applied.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed (or could not start).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the run finished but some records were rejected or left to retry.
pub const EXIT_PARTIAL: u8 = 2;

/// `sluice runs [SYNC]` and `sluice runs show RUN_ID`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: Option<RunsCommand>,
    /// Only runs of this sync.
    sync: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// One run: its counts and the outcome of each record that was not applied.
    Show {
        run_id: i64,
        /// Also list the records that were applied.
        #[arg(long)]
        all: bool,
        /// How many outcomes to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show the requests and responses captured with `--debug-requests`.
        #[arg(long)]
        requests: bool,
    },
}

const PROJECT_TEMPLATE: &str = r#"# A Sluice project. Reference: docs/configuration.md
version: 1
name: my-project
state: sqlite:.sluice/state.db

sources:
  warehouse: { type: sqlite, path: warehouse.db }
  # warehouse: { type: postgres, url: "${WAREHOUSE_URL}" }

destinations:
  export: { type: file, path: out/customers.jsonl }
  # hook: { type: webhook, url: "http://127.0.0.1:9000/in", batch_size: 500 }
  # crm_table: { type: postgres, url: "${CRM_DB_URL}", table: public.crm_contacts }

models:
  customers:
    source: warehouse
    primary_key: customer_id
    sql_file: models/customers.sql

syncs:
  customers_to_file:
    model: customers
    destination: export
    mode: mirror          # insert | update | upsert | mirror
    # mapping: { id: customer_id, email: email }
"#;

/// `sluice init [DIR]`
pub fn init(dir: PathBuf) -> anyhow::Result<u8> {
    let file = dir.join(sluice_config::PROJECT_FILE);
    if file.exists() {
        bail!("{} already exists; not overwriting it", file.display());
    }
    std::fs::create_dir_all(dir.join("models")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&file, PROJECT_TEMPLATE).with_context(|| format!("cannot write {}", file.display()))?;
    let model = dir.join("models/customers.sql");
    if !model.exists() {
        std::fs::write(&model, "select id as customer_id, first_name, last_name, email from customers\n")
            .with_context(|| format!("cannot write {}", model.display()))?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, ".sluice/\nout/\n").with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    println!("created a project in {}: edit sluice.yaml, then run `sluice validate` and `sluice check`", dir.display());
    Ok(EXIT_OK)
}

/// `sluice validate`
pub async fn validate(project: &Path, offline: bool) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    workspace.check_connectors().map_err(|errors| anyhow!("{errors}"))?;
    let mut errors = crate::discovery::check_mappings(&workspace);
    let p = &workspace.project;
    let uses_sources = p.models.values().any(|m| m.audience.is_some() || !m.relations.is_empty());
    if uses_sources && !offline {
        errors.extend(crate::audiences::check_columns(&workspace).await);
    }
    if !errors.is_empty() {
        return Err(anyhow!("{}", sluice_config::ConfigErrors(errors)));
    }
    let audiences = p.models.values().filter(|m| m.audience.is_some()).count();
    println!(
        "project `{}` is valid: {} source(s), {} destination(s), {} model(s), {} audience(s), {} sync(s){}",
        p.name,
        p.sources.len(),
        p.destinations.len(),
        p.models.len() - audiences,
        audiences,
        p.syncs.len(),
        if uses_sources && !offline { "; declared columns and joins exist in the sources" } else { "" }
    );
    Ok(EXIT_OK)
}

/// `sluice check`
pub async fn check(project: &Path) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    workspace.check_connectors().map_err(|errors| anyhow!("{errors}"))?;
    let mut failures = 0;
    let mut report = |kind: &str, name: &str, what: String, result: Result<(), String>| match result {
        Ok(()) => println!("ok    {kind} {name} ({what})"),
        Err(error) => {
            failures += 1;
            println!("FAIL  {kind} {name} ({what}): {error}");
        }
    };
    match workspace.state().await {
        Ok(store) => report("state", "store", store.describe(), Ok(())),
        Err(error) => report("state", "store", "state store".into(), Err(format!("{error:#}"))),
    }
    for name in workspace.project.sources.keys() {
        let source = workspace.source(name)?;
        report("source", name, source.describe(), source.check().await.map_err(|e| e.to_string()));
    }
    for name in workspace.project.destinations.keys() {
        let destination = workspace.destination(name)?;
        report("destination", name, destination.describe(), destination.check().await.map_err(|e| e.to_string()));
    }
    Ok(if failures == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// `sluice preview MODEL`
pub async fn preview(project: &Path, model: &str, limit: usize) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    let spec = workspace.project.models.get(model).ok_or_else(|| {
        let known: Vec<&str> = workspace.project.models.keys().map(String::as_str).collect();
        anyhow!("no model named `{model}`: expected one of {}", crate::workspace::list_or_none(&known))
    })?;
    let source = workspace.source(&spec.source)?;
    let options = ScanOptions { batch_rows: limit.clamp(1, 8192), limit: Some(limit) };
    let mut stream =
        source.scan(&spec.query, options).await.with_context(|| format!("model `{model}` ({})", source.describe()))?;
    let schema = stream.schema.clone();
    let mut rows = Vec::new();
    while let Some(batch) = stream.batches.next().await {
        let batch = batch.with_context(|| format!("model `{model}`"))?;
        for row in 0..batch.num_rows() {
            rows.push(
                schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, array)| {
                        truncate(&value_at(field, array.as_ref(), row).to_text().unwrap_or_else(|| "null".into()), 40)
                    })
                    .collect(),
            );
        }
    }
    let headers: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    print_table(&headers, &rows);
    println!("({} row(s) shown, primary key `{}`)", rows.len(), spec.primary_key);
    if schema.index_of(&spec.primary_key).is_err() {
        println!("warning: the primary key column `{}` is not among the model's columns", spec.primary_key);
    }
    Ok(EXIT_OK)
}

/// `sluice plan SYNC`
pub async fn plan(project: &Path, sync: &str, samples: usize) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    let spec = workspace.sync(sync)?;
    workspace.check_connectors().map_err(|errors| anyhow!("{errors}"))?;
    let store = workspace.state().await?;
    let parts = workspace.parts(spec, Some(&store))?;
    let job = workspace.job(spec, &parts, store.as_ref());
    let identity = job.target_identity();
    let stored = store.target_identity(sync).await?;
    let same_target = stored.as_deref().is_none_or(|s| s == identity);
    let plan = sluice_engine::plan(&job, same_target, false, &NoProgress).await?;
    let c = plan.counts;
    println!(
        "{sync} ({} → {}, mode {}): {} to insert, {} to update, {} to delete, {} unchanged{} — nothing was sent",
        spec.model,
        parts.destination.describe(),
        spec.mode.as_str(),
        c.inserts,
        c.updates,
        c.deletes,
        c.unchanged,
        if c.skipped > 0 { format!(", {} skipped by the mode", c.skipped) } else { String::new() }
    );
    if !same_target {
        println!("note: the destination changed since the last run, so every record would be sent again");
    }
    let names = plan.field_names();
    let mut rows = Vec::new();
    for op in [sluice_core::ChangeOp::Insert, sluice_core::ChangeOp::Update, sluice_core::ChangeOp::Delete] {
        for change in plan.samples.iter().filter(|c| c.op == op).take(samples) {
            let fields: serde_json::Map<String, serde_json::Value> =
                names.iter().zip(&change.values).map(|(n, v)| (n.clone(), v.to_json())).collect();
            rows.push(vec![
                op.to_string(),
                change.key.clone(),
                truncate(&serde_json::Value::Object(fields).to_string(), 100),
            ]);
        }
    }
    if !rows.is_empty() {
        println!();
        print_table(&["CHANGE", "KEY", "FIELDS"], &rows);
    }
    Ok(EXIT_OK)
}

/// `sluice sync SYNC…|--all`
pub async fn sync(project: &Path, names: &[String], all: bool, json: bool, debug_requests: bool) -> anyhow::Result<u8> {
    let mut workspace = Workspace::load(project)?;
    workspace.debug_requests = debug_requests;
    let names: Vec<String> = if all { workspace.project.syncs.keys().cloned().collect() } else { names.to_vec() };
    if names.is_empty() {
        bail!("the project defines no syncs");
    }
    for name in &names {
        workspace.sync(name)?;
    }
    workspace.check_connectors().map_err(|errors| anyhow!("{errors}"))?;
    let store = workspace.state().await?;
    let mut worst = EXIT_OK;
    for name in &names {
        let result = run_one(&workspace, name, &store, json).await;
        let code = match &result {
            Ok(report) => match report.status {
                RunStatus::Succeeded => EXIT_OK,
                RunStatus::Partial => EXIT_PARTIAL,
                RunStatus::Running | RunStatus::Failed => EXIT_FAILED,
            },
            Err(_) => EXIT_FAILED,
        };
        match (&result, json) {
            (Ok(report), true) => println!("{}", report_json(report)),
            (Ok(report), false) => println!("{}", summary(report)),
            (Err(error), true) => println!(
                "{}",
                serde_json::json!({
                    "sync": name, "run_id": null, "status": "failed",
                    "inserted": 0, "updated": 0, "deleted": 0, "rejected": 0, "retryable": 0,
                    "error": format!("{error:#}"),
                })
            ),
            (Err(error), false) => eprintln!("error: sync `{name}`: {error:#}"),
        }
        worst = match (worst, code) {
            (EXIT_FAILED, _) | (_, EXIT_FAILED) => EXIT_FAILED,
            (EXIT_PARTIAL, _) | (_, EXIT_PARTIAL) => EXIT_PARTIAL,
            _ => EXIT_OK,
        };
    }
    Ok(worst)
}

async fn run_one(
    workspace: &Workspace,
    name: &str,
    store: &Arc<dyn StateStore>,
    json: bool,
) -> anyhow::Result<RunReport> {
    let spec = workspace.sync(name)?;
    let parts = workspace.parts(spec, Some(store))?;
    let job = workspace.job(spec, &parts, store.as_ref());
    let bar = (!json && interactive()).then(|| TerminalProgress::new(name));
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let report = run_sync(&job, progress).await;
    if let Some(bar) = &bar {
        bar.finish();
    }
    Ok(report?)
}

fn report_json(report: &RunReport) -> serde_json::Value {
    let c = &report.counts;
    serde_json::json!({
        "sync": report.sync,
        "run_id": report.run_id,
        "status": report.status.as_str(),
        "inserted": c.inserted,
        "updated": c.updated,
        "deleted": c.deleted,
        "rejected": c.rejected,
        "retryable": c.retryable,
        "unchanged": report.plan.unchanged,
        "skipped": report.plan.skipped,
        "planned": { "inserts": report.plan.inserts, "updates": report.plan.updates, "deletes": report.plan.deletes },
        "snapshot_reset": report.snapshot_reset,
        "duration_ms": report.duration.as_millis() as u64,
        "error": report.error,
    })
}

fn run_row(run: &RunRecord) -> Vec<String> {
    let duration = run
        .finished_at
        .map(|end| format!("{:.1}s", (end - run.started_at).num_milliseconds() as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    let c = &run.counts;
    vec![
        run.id.to_string(),
        run.sync.clone(),
        run.status.to_string(),
        run.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        duration,
        c.inserted.to_string(),
        c.updated.to_string(),
        c.deleted.to_string(),
        c.rejected.to_string(),
        c.retryable.to_string(),
        run.unchanged.to_string(),
    ]
}

/// `sluice runs …`
pub async fn runs(project: &Path, args: RunsArgs) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    let store = workspace.state().await?;
    match args.command {
        None => {
            if let Some(sync) = &args.sync {
                workspace.sync(sync)?;
            }
            let runs = store.runs(args.sync.as_deref(), args.limit).await?;
            if runs.is_empty() {
                println!("no runs yet");
                return Ok(EXIT_OK);
            }
            let rows: Vec<Vec<String>> = runs.iter().map(run_row).collect();
            print_table(
                &[
                    "RUN",
                    "SYNC",
                    "STATUS",
                    "STARTED (UTC)",
                    "TOOK",
                    "INSERTED",
                    "UPDATED",
                    "DELETED",
                    "REJECTED",
                    "RETRYABLE",
                    "UNCHANGED",
                ],
                &rows,
            );
            Ok(EXIT_OK)
        }
        Some(RunsCommand::Show { run_id, all, limit, json, requests }) => {
            let run =
                store.run(run_id).await?.ok_or_else(|| anyhow!("no run with id {run_id} in {}", store.describe()))?;
            if requests {
                return show_requests(store.as_ref(), run_id, json).await;
            }
            let outcomes = store.outcomes(run_id, all, limit).await?;
            if json {
                let records: Vec<serde_json::Value> = outcomes
                    .iter()
                    .map(|o| serde_json::json!({"key": o.key, "op": o.op.as_str(), "status": o.status.as_str(), "message": o.message}))
                    .collect();
                let c = &run.counts;
                println!(
                    "{}",
                    serde_json::json!({
                        "run_id": run.id, "sync": run.sync, "status": run.status.as_str(),
                        "started_at": run.started_at.to_rfc3339(), "finished_at": run.finished_at.map(|t| t.to_rfc3339()),
                        "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted,
                        "rejected": c.rejected, "retryable": c.retryable, "unchanged": run.unchanged,
                        "error": run.error, "outcomes": records,
                    })
                );
                return Ok(EXIT_OK);
            }
            let c = &run.counts;
            println!("run {} of {}: {}", run.id, run.sync, run.status);
            println!(
                "started {} UTC, {}",
                run.started_at.format("%Y-%m-%d %H:%M:%S"),
                run.finished_at
                    .map(|t| format!("finished {} UTC", t.format("%Y-%m-%d %H:%M:%S")))
                    .unwrap_or_else(|| "not finished".into())
            );
            println!(
                "{} inserted, {} updated, {} deleted, {} rejected, {} to retry, {} unchanged",
                c.inserted, c.updated, c.deleted, c.rejected, c.retryable, run.unchanged
            );
            if let Some(error) = &run.error {
                println!("error: {error}");
            }
            if outcomes.is_empty() {
                println!(
                    "{}",
                    if all { "no records were sent in this run" } else { "every record sent in this run was applied" }
                );
            } else {
                println!();
                let rows: Vec<Vec<String>> = outcomes
                    .iter()
                    .map(|o| {
                        vec![
                            o.key.clone(),
                            o.op.to_string(),
                            o.status.as_str().to_string(),
                            o.message.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["KEY", "CHANGE", "STATUS", "MESSAGE"], &rows);
                if outcomes.len() == limit {
                    println!("(first {limit} shown; use --limit to see more)");
                }
            }
            Ok(EXIT_OK)
        }
    }
}

async fn show_requests(store: &dyn StateStore, run_id: i64, json: bool) -> anyhow::Result<u8> {
    let captures = store.captures(run_id).await?;
    if json {
        let list: Vec<serde_json::Value> = captures
            .iter()
            .map(|c| {
                serde_json::json!({
                    "method": c.method, "url": c.url, "status": c.status, "duration_ms": c.duration_ms,
                    "request_body": c.request_body, "response_body": c.response_body,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(EXIT_OK);
    }
    if captures.is_empty() {
        println!(
            "no requests were captured for run {run_id}: run syncs with `--debug-requests` (or `debug_requests: true`) \
             to keep them; captures are deleted after 7 days"
        );
        return Ok(EXIT_OK);
    }
    for (index, capture) in captures.iter().enumerate() {
        let status = capture.status.map(|s| s.to_string()).unwrap_or_else(|| "no response".into());
        println!("#{} {} {} → {} ({} ms)", index + 1, capture.method, capture.url, status, capture.duration_ms);
        println!("  request:  {}", truncate(&capture.request_body, 2000));
        println!("  response: {}", truncate(&capture.response_body, 2000));
    }
    Ok(EXIT_OK)
}

/// `sluice reset SYNC`
pub async fn reset(project: &Path, sync: &str) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    workspace.sync(sync)?;
    let store = workspace.state().await?;
    let _lock = store.lock(sync).await?;
    let removed = store.reset(sync).await?;
    println!("{sync}: forgot {removed} record(s); the next run sends every record again");
    Ok(EXIT_OK)
}
