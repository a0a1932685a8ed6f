//! Bulk API 2.0 ingest jobs: create, upload CSV, close, poll, read the results files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value as Json};
use sluice_core::{CaptureSink, DestinationError, ErrorClass};

use super::client::{self, Body, Client};
use super::mapping::{self, RecordResult};

/// One job's work: an operation and its records as CSV cells under `columns`.
pub(crate) struct Job<'a> {
    pub(crate) object: &'a str,
    /// `insert`, `update`, `upsert` or `delete`.
    pub(crate) operation: &'static str,
    pub(crate) external_id: Option<&'a str>,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// Runs one job to completion and returns one result per row, in row order; `None` for rows
/// the results files did not mention.
pub(crate) async fn run(
    client: &Client,
    job: &Job<'_>,
    timeout: Duration,
    capture: Option<&CaptureSink>,
) -> Result<Vec<Option<RecordResult>>, DestinationError> {
    let mut spec = json!({
        "object": job.object,
        "operation": job.operation,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    });
    if let Some(field) = job.external_id {
        spec["externalIdFieldName"] = json!(field);
    }
    let path = "/jobs/ingest";
    let reply = client.send(Method::POST, path, Body::Json(&spec.to_string()), capture).await?;
    if !reply.is_success() {
        return Err(client::failure(&format!("POST {path}"), &reply));
    }
    let id = reply
        .json()
        .get("id")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| DestinationError::transient("Salesforce created a bulk job without an id"))?;
    let job_path = format!("/jobs/ingest/{id}");

    let mut csv = mapping::csv_line(&job.columns);
    for row in &job.rows {
        csv.push_str(&mapping::csv_line(row));
    }
    let batches = format!("{job_path}/batches");
    let reply = client.send(Method::PUT, &batches, Body::Csv(&csv), capture).await?;
    if !reply.is_success() {
        abort(client, &job_path, capture).await;
        return Err(client::failure(&format!("PUT {batches}"), &reply));
    }
    let close = json!({ "state": "UploadComplete" }).to_string();
    let reply = client.send(Method::PATCH, &job_path, Body::Json(&close), capture).await?;
    if !reply.is_success() {
        abort(client, &job_path, capture).await;
        return Err(client::failure(&format!("PATCH {job_path}"), &reply));
    }

    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        let reply = client.send(Method::GET, &job_path, Body::None, capture).await?;
        if !reply.is_success() {
            return Err(client::failure(&format!("GET {job_path}"), &reply));
        }
        let info = reply.json();
        match info.get("state").and_then(Json::as_str).unwrap_or("") {
            "JobComplete" => break,
            state @ ("Failed" | "Aborted") => {
                let why = info.get("errorMessage").and_then(Json::as_str).unwrap_or("no reason given");
                return Err(DestinationError::new(
                    ErrorClass::Permanent,
                    format!("Salesforce bulk job {id} ({} {}) {state}: {why}", job.operation, job.object),
                ));
            }
            _ => {}
        }
        if started.elapsed() > timeout {
            return Err(DestinationError::transient(format!(
                "Salesforce bulk job {id} did not finish within {} seconds; see Setup → Bulk Data Load Jobs",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }

    let mut results: Vec<Option<RecordResult>> = vec![None; job.rows.len()];
    let mut unmatched_rows: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
    for (index, row) in job.rows.iter().enumerate().rev() {
        unmatched_rows.entry(row.clone()).or_default().push(index);
    }
    let mut strays = Vec::new();
    for kind in ["successfulResults", "failedResults"] {
        let path = format!("{job_path}/{kind}/");
        let reply = client.send(Method::GET, &path, Body::None, capture).await?;
        if !reply.is_success() {
            return Err(client::failure(&format!("GET {path}"), &reply));
        }
        let mut rows = mapping::parse_csv(&reply.body).into_iter();
        let Some(header) = rows.next() else { continue };
        let position = |name: &str| header.iter().position(|h| h == name);
        let (id_at, error_at) = (position("sf__Id"), position("sf__Error"));
        let columns: Vec<Option<usize>> = job.columns.iter().map(|c| position(c)).collect();
        for row in rows {
            let cell = |at: Option<usize>| at.and_then(|i| row.get(i)).filter(|s| !s.is_empty()).cloned();
            let result = RecordResult {
                id: cell(id_at),
                error: if kind == "failedResults" {
                    Some(cell(error_at).unwrap_or_else(|| "rejected by Salesforce (no message given)".into()))
                } else {
                    None
                },
            };
            let key: Vec<String> =
                columns.iter().map(|at| at.and_then(|i| row.get(i)).cloned().unwrap_or_default()).collect();
            match unmatched_rows.get_mut(&key).and_then(Vec::pop) {
                Some(index) => results[index] = Some(result),
                None => strays.push(result),
            }
        }
    }
    // A single row Salesforce echoed differently from how it was sent can still be placed.
    let missing: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_none()).collect();
    if missing.len() == 1 && strays.len() == 1 {
        results[missing[0]] = strays.pop();
    }
    Ok(results)
}

/// Best effort: a job that cannot be completed is aborted so it does not linger open.
async fn abort(client: &Client, job_path: &str, capture: Option<&CaptureSink>) {
    let body = json!({ "state": "Aborted" }).to_string();
    if let Err(error) = client.send(Method::PATCH, job_path, Body::Json(&body), capture).await {
        tracing::warn!(%error, "could not abort a Salesforce bulk job");
    }
}
