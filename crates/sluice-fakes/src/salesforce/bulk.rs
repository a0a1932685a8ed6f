//! Bulk API 2.0 ingest jobs: create, upload CSV, close, poll, results.

use std::collections::HashMap;

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};

use super::records::{self, coerce, RecordError, WriteOp};
use super::server::{rest_error, Reply};
use super::{FieldDef, State, API_VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultKind {
    Successful,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct RowResult {
    id: String,
    outcome: Result<bool, RecordError>,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    id: String,
    object: String,
    operation: String,
    external_id_field: Option<String>,
    line_ending: String,
    column_delimiter: String,
    state: String,
    created: String,
    data: Option<String>,
    polls: u32,
    header: Vec<String>,
    results: Vec<RowResult>,
    error_message: Option<String>,
}

const DELIMITERS: [(&str, char); 6] =
    [("BACKQUOTE", '`'), ("CARET", '^'), ("COMMA", ','), ("PIPE", '|'), ("SEMICOLON", ';'), ("TAB", '\t')];

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true).replace('Z', "+0000")
}

impl Job {
    fn info(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("operation".into(), json!(self.operation));
        m.insert("object".into(), json!(self.object));
        m.insert("createdById".into(), json!("005Dn0000000FAKEAA"));
        m.insert("createdDate".into(), json!(self.created));
        m.insert("systemModstamp".into(), json!(now()));
        m.insert("state".into(), json!(self.state));
        if let Some(field) = &self.external_id_field {
            m.insert("externalIdFieldName".into(), json!(field));
        }
        m.insert("concurrencyMode".into(), json!("Parallel"));
        m.insert("contentType".into(), json!("CSV"));
        m.insert("apiVersion".into(), json!(API_VERSION.parse::<f64>().unwrap_or_default()));
        m.insert("jobType".into(), json!("V2Ingest"));
        m.insert("contentUrl".into(), json!(format!("services/data/v{API_VERSION}/jobs/ingest/{}/batches", self.id)));
        m.insert("lineEnding".into(), json!(self.line_ending));
        m.insert("columnDelimiter".into(), json!(self.column_delimiter));
        Value::Object(m)
    }

    fn full_info(&self) -> Value {
        let mut info = self.info();
        let failed = self.results.iter().filter(|r| r.outcome.is_err()).count();
        if let Some(m) = info.as_object_mut() {
            m.insert("numberRecordsProcessed".into(), json!(self.results.len()));
            m.insert("numberRecordsFailed".into(), json!(failed));
            m.insert("retries".into(), json!(0));
            m.insert("totalProcessingTime".into(), json!(0));
            m.insert("apiActiveProcessingTime".into(), json!(0));
            m.insert("apexProcessingTime".into(), json!(0));
            if let Some(message) = &self.error_message {
                m.insert("errorMessage".into(), json!(message));
            }
        }
        info
    }

    fn delimiter(&self) -> char {
        DELIMITERS.iter().find(|(n, _)| *n == self.column_delimiter).map(|(_, c)| *c).unwrap_or(',')
    }
}

fn job_not_found() -> Reply {
    Reply::json(404, rest_error("NOT_FOUND", "The requested resource does not exist"))
}

fn invalid_state(job: &Job, wanted: &str) -> Reply {
    let message = format!("Job {} is in state {}; this operation needs it to be {wanted}", job.id, job.state);
    Reply::json(409, rest_error("INVALIDJOBSTATE", &message))
}

/// `POST /jobs/ingest`.
pub(crate) fn create(state: &mut State, body: &Value) -> Reply {
    let Some(obj) = body.as_object() else {
        return Reply::invalid("JSON_PARSER_ERROR", "the body must be a JSON object".into());
    };
    const KNOWN: [&str; 7] = [
        "object",
        "operation",
        "externalIdFieldName",
        "contentType",
        "lineEnding",
        "columnDelimiter",
        "assignmentRuleId",
    ];
    if let Some(key) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Reply::invalid("JSON_PARSER_ERROR", format!("Unrecognized field \"{key}\""));
    }
    let text = |key: &str| obj.get(key).and_then(Value::as_str);
    for key in KNOWN {
        if obj.get(key).is_some_and(|v| !v.is_string()) {
            return Reply::invalid("JSON_PARSER_ERROR", format!("{key} must be a string"));
        }
    }
    let Some(object) = text("object") else {
        return Reply::invalid("INVALIDJOB", "InvalidJob : object is required".into());
    };
    let Some(operation) = text("operation") else {
        return Reply::invalid("INVALIDJOB", "InvalidJob : operation is required".into());
    };
    if !["insert", "update", "upsert", "delete", "hardDelete"].contains(&operation) {
        return Reply::invalid("INVALIDJOB", format!("InvalidJob : Invalid operation: {operation}"));
    }
    if text("contentType").is_some_and(|c| c != "CSV") {
        return Reply::invalid("INVALIDJOB", "InvalidJob : contentType must be CSV".into());
    }
    let line_ending = text("lineEnding").unwrap_or("LF");
    if !["LF", "CRLF"].contains(&line_ending) {
        return Reply::invalid("INVALIDJOB", format!("InvalidJob : Invalid lineEnding: {line_ending}"));
    }
    let column_delimiter = text("columnDelimiter").unwrap_or("COMMA");
    if !DELIMITERS.iter().any(|(n, _)| *n == column_delimiter) {
        return Reply::invalid("INVALIDJOB", format!("InvalidJob : Invalid columnDelimiter: {column_delimiter}"));
    }
    let Some(def) = state.sobject(object) else {
        return Reply::json(400, rest_error("INVALIDJOB", &format!("InvalidJob : Invalid object: {object}")));
    };
    let external_id_field = match (operation, text("externalIdFieldName")) {
        ("upsert", None | Some("")) => {
            let message = format!(
                "InvalidJob : External ID was blank for {}. An External ID must be specified for upsert.",
                def.name
            );
            return Reply::invalid("INVALIDJOB", message);
        }
        ("upsert", Some(field)) => match def.field(field).filter(|f| f.external_id || f.name == "Id") {
            Some(f) => Some(f.name.clone()),
            None => {
                let message = format!(
                    "InvalidJob : Field name provided, {field} is not an External ID or indexed field for {}",
                    def.name
                );
                return Reply::json(400, rest_error("INVALIDJOB", &message));
            }
        },
        _ => None,
    };
    let n = state.next_job;
    state.next_job += 1;
    let id15 = format!("750Dn{n:010}");
    let id = records::normalise_id(&id15).unwrap_or(id15);
    let job = Job {
        id: id.clone(),
        object: def.name.clone(),
        operation: operation.to_owned(),
        external_id_field,
        line_ending: line_ending.to_owned(),
        column_delimiter: column_delimiter.to_owned(),
        state: "Open".to_owned(),
        created: now(),
        data: None,
        polls: 0,
        header: Vec::new(),
        results: Vec::new(),
        error_message: None,
    };
    let info = job.info();
    state.jobs.insert(id, job);
    Reply::json(200, info)
}

/// `PUT /jobs/ingest/{id}/batches`.
pub(crate) fn upload(state: &mut State, id: &str, content_type: &str, bytes: &[u8]) -> Reply {
    let Some(job) = state.jobs.get_mut(id) else { return job_not_found() };
    if !content_type.starts_with("text/csv") {
        let message = format!("Unsupported content type for job data: '{content_type}'; use text/csv");
        let mut reply = Reply::json(415, rest_error("UNSUPPORTED_MEDIA_TYPE", &message));
        reply.issues.push(message);
        return reply;
    }
    if job.state != "Open" {
        return invalid_state(job, "Open");
    }
    if job.data.is_some() {
        // Bulk API 2.0 takes a single upload per job.
        let mut reply = invalid_state(job, "Open with no data uploaded yet");
        reply.issues.push("second data upload to one ingest job".to_owned());
        return reply;
    }
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        let mut reply = Reply::empty(201);
        reply.issues.push("job data is not UTF-8".to_owned());
        job.data = Some(String::new());
        job.error_message = Some("ClientInputError : data must be UTF-8".to_owned());
        return reply;
    };
    let mut reply = Reply::empty(201);
    // Salesforce accepts the upload and fails the job while processing; the fake also flags the body.
    if let Err(issue) = parse_csv(&text, job.delimiter(), &job.line_ending) {
        reply.issues.push(issue.clone());
        job.error_message = Some(format!("ClientInputError : {issue}"));
    }
    job.data = Some(text);
    reply
}

/// `PATCH /jobs/ingest/{id}` with `{"state": "UploadComplete" | "Aborted"}`.
pub(crate) fn patch(state: &mut State, id: &str, body: &Value) -> Reply {
    let Some(job) = state.jobs.get_mut(id) else { return job_not_found() };
    let target = body.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("state")).and_then(Value::as_str);
    match target {
        Some("UploadComplete") if job.state == "Open" => job.state = "UploadComplete".to_owned(),
        Some("Aborted") if !matches!(job.state.as_str(), "JobComplete" | "Failed" | "Aborted") => {
            job.state = "Aborted".to_owned()
        }
        Some("UploadComplete" | "Aborted") => return invalid_state(job, "Open"),
        _ => return Reply::invalid("INVALIDJOB", "InvalidJob : state must be UploadComplete or Aborted".into()),
    }
    Reply::json(200, job.info())
}

/// `GET /jobs/ingest/{id}`: `InProgress` for the configured number of polls, then processes the data.
pub(crate) fn get(state: &mut State, id: &str) -> Reply {
    let polls_needed = state.options.bulk_poll_until_complete;
    let Some(job) = state.jobs.get_mut(id) else { return job_not_found() };
    if matches!(job.state.as_str(), "UploadComplete" | "InProgress") {
        if job.polls < polls_needed {
            job.polls += 1;
            job.state = "InProgress".to_owned();
        } else {
            let mut job = job.clone();
            run(state, &mut job);
            let info = job.full_info();
            state.jobs.insert(job.id.clone(), job);
            return Reply::json(200, info);
        }
    }
    Reply::json(200, job.full_info())
}

/// `DELETE /jobs/ingest/{id}`.
pub(crate) fn delete_job(state: &mut State, id: &str) -> Reply {
    match state.jobs.get(id) {
        None => job_not_found(),
        Some(job) if matches!(job.state.as_str(), "UploadComplete" | "InProgress") => {
            invalid_state(job, "JobComplete, Failed, Aborted or Open")
        }
        Some(_) => {
            state.jobs.remove(id);
            Reply::empty(204)
        }
    }
}

/// `GET /jobs/ingest/{id}/successfulResults/` and `/failedResults/`.
pub(crate) fn results(state: &State, id: &str, kind: ResultKind) -> Reply {
    let Some(job) = state.jobs.get(id) else { return job_not_found() };
    type Row<'a> = (String, String, &'a Vec<String>);
    let (second, rows): (&str, Vec<Row<'_>>) = match kind {
        ResultKind::Successful => (
            "sf__Created",
            job.results
                .iter()
                .filter_map(|r| r.outcome.as_ref().ok().map(|created| (r.id.clone(), created.to_string(), &r.values)))
                .collect(),
        ),
        ResultKind::Failed => (
            "sf__Error",
            job.results
                .iter()
                .filter_map(|r| {
                    r.outcome.as_ref().err().map(|e| (r.id.clone(), format!("{}:{}", e.code, e.message), &r.values))
                })
                .collect(),
        ),
    };
    let mut out = String::new();
    let mut header = vec![quote("sf__Id"), quote(second)];
    header.extend(job.header.iter().map(|h| quote(h)));
    out.push_str(&header.join(","));
    out.push('\n');
    for (id, second, values) in rows {
        let mut line = vec![quote(&id), quote(&second)];
        line.extend(values.iter().map(|v| quote(v)));
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Reply::csv(200, out)
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Applies the job's rows to the store and completes (or fails) it.
fn run(state: &mut State, job: &mut Job) {
    job.state = "JobComplete".to_owned();
    if job.error_message.is_some() {
        job.state = "Failed".to_owned();
        return;
    }
    let Some(def) = state.sobject(&job.object) else { return };
    let rows = match parse_csv(job.data.as_deref().unwrap_or(""), job.delimiter(), &job.line_ending) {
        Ok(rows) => rows,
        Err(issue) => {
            job.state = "Failed".to_owned();
            job.error_message = Some(format!("ClientInputError : {issue}"));
            return;
        }
    };
    let Some((header, rows)) = rows.split_first() else { return };
    job.header = header.clone();
    let mut columns: Vec<FieldDef> = Vec::new();
    for name in header {
        match def.field(name) {
            Some(field) => columns.push(field.clone()),
            None => {
                job.state = "Failed".to_owned();
                job.error_message = Some(format!("InvalidBatch : Field name not found : {name}"));
                return;
            }
        }
    }
    let key_column = match job.operation.as_str() {
        "delete" | "hardDelete" | "update" => columns.iter().position(|c| c.name == "Id"),
        "upsert" => columns.iter().position(|c| Some(&c.name) == job.external_id_field.as_ref()),
        _ => None,
    };
    let mut key_counts: HashMap<String, usize> = HashMap::new();
    if job.operation == "upsert" {
        for row in rows {
            if let Some(key) = key_column.and_then(|k| row.get(k)).filter(|v| !v.is_empty()) {
                *key_counts.entry(key.to_lowercase()).or_default() += 1;
            }
        }
    }
    for row in rows {
        let key = key_column.and_then(|k| row.get(k)).cloned().unwrap_or_default();
        let outcome = apply_row(state, job, &def, &columns, row, &key, &key_counts);
        let id = match &outcome {
            Ok((id, _)) => id.clone(),
            Err(_) if job.operation != "insert" && job.operation != "upsert" => key.clone(),
            Err(_) => String::new(),
        };
        job.results.push(RowResult { id, outcome: outcome.map(|(_, created)| created), values: row.clone() });
    }
}

fn apply_row(
    state: &mut State,
    job: &Job,
    def: &super::SObjectDef,
    columns: &[FieldDef],
    row: &[String],
    key: &str,
    key_counts: &HashMap<String, usize>,
) -> Result<(String, bool), RecordError> {
    if job.operation == "delete" || job.operation == "hardDelete" {
        if key.is_empty() {
            return Err(RecordError::new("MISSING_ARGUMENT", "Id not specified in a delete call", &[]));
        }
        return records::delete(state, key, Some(def)).map(|id| (id, false));
    }
    if job.operation == "upsert" && key_counts.get(&key.to_lowercase()).copied().unwrap_or(0) > 1 {
        return Err(RecordError::new("DUPLICATE_EXTERNAL_ID", format!("Duplicate external id specified: {key}"), &[]));
    }
    let mut values = Vec::new();
    for (field, raw) in columns.iter().zip(row) {
        // Empty values leave the field unchanged; `#N/A` sets it to null (documented for Bulk API 2.0).
        if raw.is_empty() {
            continue;
        }
        if raw == "#N/A" {
            values.push((field.clone(), Value::Null));
            continue;
        }
        match coerce(field, &Value::String(raw.clone())) {
            Ok(v) => values.push((field.clone(), v)),
            Err(()) => {
                let message = format!("{}: value not of required type: {raw}", field.label);
                return Err(RecordError::new("INVALID_TYPE_ON_FIELD_IN_RECORD", message, &[&field.name]));
            }
        }
    }
    let op = match (job.operation.as_str(), &job.external_id_field) {
        ("upsert", Some(field)) => WriteOp::Upsert(field.clone()),
        ("update", _) => WriteOp::Update,
        _ => WriteOp::Insert,
    };
    records::write(state, def, &op, values)
}

/// Parses RFC 4180 CSV with a header row; every row must have the header's number of columns.
pub(crate) fn parse_csv(text: &str, delimiter: char, line_ending: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut field_started_quoted = false;
    let crlf = line_ending == "CRLF";
    let mismatch = || format!("LineEnding is invalid on user data. Current LineEnding setting is {line_ending}");
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !field_started_quoted => {
                quoted = true;
                field_started_quoted = true;
            }
            '"' => return Err(format!("unexpected double quote in field on line {}", rows.len() + 1)),
            c if c == delimiter => {
                row.push(std::mem::take(&mut field));
                field_started_quoted = false;
            }
            '\r' if crlf && chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                field_started_quoted = false;
            }
            '\r' if !crlf && chars.peek() == Some(&'\n') => return Err(mismatch()),
            '\n' if crlf => return Err(mismatch()),
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                field_started_quoted = false;
            }
            c => {
                if field_started_quoted {
                    return Err(format!("characters after a closing double quote on line {}", rows.len() + 1));
                }
                field.push(c);
            }
        }
    }
    if quoted {
        return Err("unterminated double quote".to_owned());
    }
    if !field.is_empty() || !row.is_empty() || field_started_quoted {
        row.push(field);
        rows.push(row);
    }
    let Some(header) = rows.first() else { return Err("no header row".to_owned()) };
    if header.iter().any(String::is_empty) {
        return Err("empty column name in the header row".to_owned());
    }
    let width = header.len();
    if let Some(pos) = rows.iter().position(|r| r.len() != width) {
        return Err(format!("line {} has {} columns, the header has {width}", pos + 1, rows[pos].len()));
    }
    Ok(rows)
}
