//! PostgreSQL source: streams a model's rows over binary COPY into Arrow record batches.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use futures::StreamExt;
use postgres_types::{Kind, Type};
use serde::Deserialize;
use sluice_core::{ModelQuery, RecordBatchStream, ScanOptions, Source, SourceError, LOGICAL_TYPE_KEY};
use sluice_pg::{client_error_text, error_text, quote_ident, ConnectionFailure};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::CopyOutStream;

/// Used when the URL sets no `connect_timeout`, so an unreachable host fails a run in
/// reasonable time instead of waiting for the operating system's TCP timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Days between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_DAYS: i32 = 10_957;

/// Arrow offsets are i32, so one string or binary column of a batch holds at most this many bytes.
const MAX_COLUMN_BYTES: usize = i32::MAX as usize;

/// Project configuration of a PostgreSQL source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// Connection URL, e.g. postgres://user@host:5432/db
    pub url: String,
}

/// A PostgreSQL database that models are read from.
pub struct PostgresSource {
    config: tokio_postgres::Config,
    description: String,
}

impl std::fmt::Debug for PostgresSource {
    // The parsed config holds the password, so only the description is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl PostgresSource {
    /// Parses the URL without connecting.
    pub fn new(config: PostgresSourceConfig) -> Result<Self, String> {
        let parsed = sluice_pg::parse_url(&config.url, DEFAULT_CONNECT_TIMEOUT)?;
        let description = sluice_pg::describe(&parsed);
        Ok(PostgresSource { config: parsed, description })
    }

    async fn connect(&self) -> Result<Connection, SourceError> {
        let connected = sluice_pg::connect(&self.config)
            .await
            .map_err(|e| SourceError::Connect { target: self.describe(), cause: error_text(&e) })?;
        Ok(Connection { client: connected.client, task: connected.task, failure: connected.failure })
    }

    fn query_error(&self, error: &tokio_postgres::Error, failure: &ConnectionFailure) -> SourceError {
        SourceError::Query { target: self.describe(), cause: client_error_text(error, failure) }
    }
}

struct Connection {
    client: Client,
    task: JoinHandle<()>,
    failure: ConnectionFailure,
}

#[async_trait]
impl Source for PostgresSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn check(&self) -> Result<(), SourceError> {
        let connection = self.connect().await?;
        connection.client.simple_query("SELECT 1").await.map_err(|e| self.query_error(&e, &connection.failure))?;
        Ok(())
    }

    async fn scan(&self, query: &ModelQuery, options: ScanOptions) -> Result<RecordBatchStream, SourceError> {
        let model_sql = model_sql(query);
        let connection = self.connect().await?;
        let client = &connection.client;
        let statement = client.prepare(&model_sql).await.map_err(|e| self.query_error(&e, &connection.failure))?;
        let plan = plan_columns(statement.columns().iter().map(|c| (c.name(), c.type_())))?;

        let projection: Vec<String> = plan.iter().map(|c| c.projection.clone()).collect();
        let limit = options.limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        // The newlines keep a trailing `--` comment in the model from swallowing the wrapper.
        let copy_sql = format!(
            "COPY (SELECT {} FROM (\n{model_sql}\n) AS sluice_model{limit}) TO STDOUT (FORMAT binary)",
            projection.join(", ")
        );
        let copy = client.copy_out(copy_sql.as_str()).await.map_err(|e| self.query_error(&e, &connection.failure))?;

        let schema: SchemaRef = Arc::new(Schema::new(plan.iter().map(|c| c.field.clone()).collect::<Vec<_>>()));
        let state = ScanState {
            target: self.describe(),
            schema: Arc::clone(&schema),
            names: plan.iter().map(|c| c.field.name().clone()).collect(),
            builders: plan.iter().map(|c| ColumnBuilder::new(c.decode)).collect(),
            batch_rows: options.batch_rows.max(1),
            copy: Box::pin(copy),
            buffer: Vec::with_capacity(1 << 16),
            position: 0,
            header_read: false,
            fields: Vec::with_capacity(plan.len()),
            finished: false,
            copy_done: false,
            connection,
        };
        // Decoding runs in its own task so that it overlaps with the planner's hashing and
        // diffing on another core; the bounded channel keeps memory to a few batches.
        let (sender, mut receiver) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut state = state;
            while let Some(item) = state.next_batch().await {
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        let batches = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Ok(RecordBatchStream { schema, batches: Box::pin(batches) })
    }
}

/// The model as one SQL query, fit to be wrapped in a subquery.
fn model_sql(query: &ModelQuery) -> String {
    match query {
        ModelQuery::Table(name) => {
            let quoted: Vec<String> = name.split('.').map(quote_ident).collect();
            format!("SELECT * FROM {}", quoted.join("."))
        }
        ModelQuery::Sql(sql) => sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace()).to_string(),
    }
}

/// How a column's binary COPY value is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Binary,
    Date,
    Timestamp,
    TimestampTz,
}

struct ColumnPlan {
    field: Field,
    projection: String,
    decode: Decode,
}

fn plan_columns<'a>(columns: impl Iterator<Item = (&'a str, &'a Type)>) -> Result<Vec<ColumnPlan>, SourceError> {
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (name, pg_type) in columns {
        if !seen.insert(name) {
            return Err(SourceError::Data(format!(
                "the model returns more than one column named `{name}`: give each column a unique alias (SELECT ... AS other_name)"
            )));
        }
        plan.push(plan_column(name, pg_type));
    }
    if plan.is_empty() {
        return Err(SourceError::Data("the model returns no columns".to_string()));
    }
    Ok(plan)
}

fn plan_column(name: &str, pg_type: &Type) -> ColumnPlan {
    // Domains travel in their base type's binary format.
    let base = base_type(pg_type);
    let native = match *base {
        Type::BOOL => Some((Decode::Bool, DataType::Boolean)),
        Type::INT2 => Some((Decode::Int16, DataType::Int16)),
        Type::INT4 => Some((Decode::Int32, DataType::Int32)),
        Type::INT8 => Some((Decode::Int64, DataType::Int64)),
        Type::FLOAT4 => Some((Decode::Float32, DataType::Float32)),
        Type::FLOAT8 => Some((Decode::Float64, DataType::Float64)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Some((Decode::Text, DataType::Utf8)),
        Type::BYTEA => Some((Decode::Binary, DataType::Binary)),
        Type::DATE => Some((Decode::Date, DataType::Date32)),
        Type::TIMESTAMP => Some((Decode::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, None))),
        Type::TIMESTAMPTZ => {
            Some((Decode::TimestampTz, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))))
        }
        _ => None,
    };
    let quoted = quote_ident(name);
    match native {
        Some((decode, data_type)) => {
            ColumnPlan { field: Field::new(name, data_type, true), projection: quoted, decode }
        }
        None => {
            let logical = match *base {
                Type::NUMERIC => Some("decimal"),
                Type::JSON | Type::JSONB => Some("json"),
                _ => None,
            };
            let mut field = Field::new(name, DataType::Utf8, true);
            if let Some(logical) = logical {
                field = field.with_metadata(HashMap::from([(LOGICAL_TYPE_KEY.to_string(), logical.to_string())]));
            }
            ColumnPlan { field, projection: format!("{quoted}::text"), decode: Decode::Text }
        }
    }
}

fn base_type(pg_type: &Type) -> &Type {
    match pg_type.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => pg_type,
    }
}

enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(decode: Decode) -> ColumnBuilder {
        match decode {
            Decode::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            Decode::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            Decode::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            Decode::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            Decode::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            Decode::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            Decode::Text => ColumnBuilder::Text(StringBuilder::new()),
            Decode::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            Decode::Date => ColumnBuilder::Date(Date32Builder::new()),
            Decode::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            Decode::TimestampTz => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        }
    }

    /// Whether `len` more bytes fit in this batch's column.
    fn has_room(&self, len: usize) -> bool {
        match self {
            ColumnBuilder::Text(b) => b.values_slice().len().saturating_add(len) <= MAX_COLUMN_BYTES,
            ColumnBuilder::Binary(b) => b.values_slice().len().saturating_add(len) <= MAX_COLUMN_BYTES,
            _ => true,
        }
    }

    fn append(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            match self {
                ColumnBuilder::Bool(b) => b.append_null(),
                ColumnBuilder::Int16(b) => b.append_null(),
                ColumnBuilder::Int32(b) => b.append_null(),
                ColumnBuilder::Int64(b) => b.append_null(),
                ColumnBuilder::Float32(b) => b.append_null(),
                ColumnBuilder::Float64(b) => b.append_null(),
                ColumnBuilder::Text(b) => b.append_null(),
                ColumnBuilder::Binary(b) => b.append_null(),
                ColumnBuilder::Date(b) => b.append_null(),
                ColumnBuilder::Timestamp(b) => b.append_null(),
            }
            return Ok(());
        };
        match self {
            ColumnBuilder::Bool(b) => b.append_value(fixed::<1>(raw)?[0] != 0),
            ColumnBuilder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(raw)?)),
            ColumnBuilder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(raw)?)),
            ColumnBuilder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            ColumnBuilder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(raw)?)),
            ColumnBuilder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(raw)?)),
            ColumnBuilder::Text(b) => {
                b.append_value(std::str::from_utf8(raw).map_err(|e| format!("the value is not valid utf-8 ({e})"))?)
            }
            ColumnBuilder::Binary(b) => b.append_value(raw),
            ColumnBuilder::Date(b) => b.append_value(unix_days(i32::from_be_bytes(fixed(raw)?))?),
            ColumnBuilder::Timestamp(b) => b.append_value(unix_micros(i64::from_be_bytes(fixed(raw)?))?),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(raw).map_err(|_| format!("expected a {N}-byte value, got {} bytes", raw.len()))
}

const NOT_REPRESENTABLE: &str =
    "which arrow cannot represent; filter such rows out or cast the column to text in the model's sql";

/// PostgreSQL days since 2000-01-01 to days since 1970-01-01.
fn unix_days(pg_days: i32) -> Result<i32, String> {
    match pg_days {
        i32::MAX => Err(format!("it holds the date 'infinity', {NOT_REPRESENTABLE}")),
        i32::MIN => Err(format!("it holds the date '-infinity', {NOT_REPRESENTABLE}")),
        days => {
            days.checked_add(PG_EPOCH_DAYS).ok_or_else(|| format!("it holds a date out of range, {NOT_REPRESENTABLE}"))
        }
    }
}

/// PostgreSQL microseconds since 2000-01-01 to microseconds since the Unix epoch.
fn unix_micros(pg_micros: i64) -> Result<i64, String> {
    match pg_micros {
        i64::MAX => Err(format!("it holds the timestamp 'infinity', {NOT_REPRESENTABLE}")),
        i64::MIN => Err(format!("it holds the timestamp '-infinity', {NOT_REPRESENTABLE}")),
        micros => micros
            .checked_add(PG_EPOCH_MICROS)
            .ok_or_else(|| format!("it holds a timestamp out of range, {NOT_REPRESENTABLE}")),
    }
}

/// The state of a running scan, carried from batch to batch by the stream.
struct ScanState {
    target: String,
    schema: SchemaRef,
    names: Vec<String>,
    builders: Vec<ColumnBuilder>,
    batch_rows: usize,
    copy: Pin<Box<CopyOutStream>>,
    /// Bytes received and not parsed yet start at `position`.
    buffer: Vec<u8>,
    position: usize,
    header_read: bool,
    /// Scratch: the current tuple's fields as (start, length) in `buffer`, `None` for null.
    fields: Vec<Option<(usize, usize)>>,
    /// No more batches will be yielded.
    finished: bool,
    /// The server has ended the COPY, so the connection can close without discarding data.
    copy_done: bool,
    /// Owns the client: the COPY runs on its connection.
    connection: Connection,
}

impl ScanState {
    async fn next_batch(&mut self) -> Option<Result<RecordBatch, SourceError>> {
        if self.finished {
            return None;
        }
        match self.fill().await {
            Ok(0) => {
                self.finished = true;
                None
            }
            Ok(_) => {
                let columns = self.builders.iter_mut().map(ColumnBuilder::finish).collect();
                let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
                    .map_err(|e| SourceError::Data(format!("cannot build a record batch from {}: {e}", self.target)));
                if batch.is_err() {
                    self.finished = true;
                }
                Some(batch)
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }

    /// Appends rows to the builders until the batch is full or the data ends.
    async fn fill(&mut self) -> Result<usize, SourceError> {
        let mut count = 0;
        while count < self.batch_rows {
            match self.parse_tuple().map_err(|message| self.data_error(&message))? {
                Parsed::Incomplete => {
                    if !self.read_more().await? {
                        if self.position < self.buffer.len() {
                            return Err(self.data_error("the COPY data ended in the middle of a row"));
                        }
                        self.copy_done = true;
                        self.finished = true;
                        break;
                    }
                }
                Parsed::End => {
                    // The server sends nothing after the trailer but the end of the COPY.
                    self.copy_done = true;
                    self.finished = true;
                    break;
                }
                Parsed::Row(end) => {
                    let buffer = &self.buffer;
                    let fits = self
                        .builders
                        .iter()
                        .zip(&self.fields)
                        .all(|(builder, field)| builder.has_room(field.map_or(0, |(_, len)| len)));
                    if !fits && count > 0 {
                        break;
                    }
                    for ((builder, field), name) in self.builders.iter_mut().zip(&self.fields).zip(&self.names) {
                        let value = field.map(|(start, len)| &buffer[start..start + len]);
                        builder.append(value).map_err(|message| {
                            SourceError::Data(format!("cannot read column `{name}` of {}: {message}", self.target))
                        })?;
                    }
                    self.position = end;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    fn data_error(&self, message: &str) -> SourceError {
        SourceError::Data(format!("cannot read the binary COPY data of {}: {message}", self.target))
    }

    /// Appends the next chunk of COPY data to the buffer; false when the COPY has ended.
    async fn read_more(&mut self) -> Result<bool, SourceError> {
        match self.copy.next().await {
            Some(Ok(chunk)) => {
                if self.position > 0 {
                    self.buffer.drain(..self.position);
                    self.position = 0;
                }
                self.buffer.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => {
                self.copy_done = true;
                Err(SourceError::Query {
                    target: self.target.clone(),
                    cause: client_error_text(&e, &self.connection.failure),
                })
            }
            None => Ok(false),
        }
    }

    /// Finds the next whole tuple in the buffer (after the file header), recording its fields
    /// in `self.fields` without copying them.
    fn parse_tuple(&mut self) -> Result<Parsed, String> {
        let data = &self.buffer[self.position..];
        let mut at = 0;
        if !self.header_read {
            const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
            let Some(extension) = read_i32(data, SIGNATURE.len() + 4) else { return Ok(Parsed::Incomplete) };
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err("the data does not start with the binary COPY signature".into());
            }
            let header = SIGNATURE.len() + 8 + usize::try_from(extension).map_err(|_| "negative header extension")?;
            if data.len() < header {
                return Ok(Parsed::Incomplete);
            }
            self.header_read = true;
            self.position += header;
            return self.parse_tuple();
        }
        let Some(count) = read_i16(data, 0) else { return Ok(Parsed::Incomplete) };
        if count == -1 {
            return Ok(Parsed::End);
        }
        if count as usize != self.names.len() {
            return Err(format!("a row has {count} fields where {} were expected", self.names.len()));
        }
        at += 2;
        self.fields.clear();
        for _ in 0..count {
            let Some(length) = read_i32(data, at) else { return Ok(Parsed::Incomplete) };
            at += 4;
            if length < 0 {
                self.fields.push(None);
                continue;
            }
            let length = length as usize;
            if data.len() < at + length {
                return Ok(Parsed::Incomplete);
            }
            self.fields.push(Some((self.position + at, length)));
            at += length;
        }
        Ok(Parsed::Row(self.position + at))
    }
}

/// What [`ScanState::parse_tuple`] found.
enum Parsed {
    /// A whole row, ending at this buffer offset.
    Row(usize),
    /// The binary COPY trailer.
    End,
    /// More data is needed.
    Incomplete,
}

fn read_i16(data: &[u8], at: usize) -> Option<i16> {
    data.get(at..at + 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

fn read_i32(data: &[u8], at: usize) -> Option<i32> {
    data.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Drop for ScanState {
    fn drop(&mut self) {
        // Dropping the client alone would leave the connection reading the rest of the
        // COPY to discard it; closing the socket makes the server stop instead.
        if !self.copy_done {
            self.connection.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> Result<PostgresSource, String> {
        PostgresSource::new(PostgresSourceConfig { url: url.to_string() })
    }

    #[test]
    fn describe_hides_the_password() {
        let source = source("postgres://alice:s3cret@db.example.com:6543/sales").unwrap();
        assert_eq!(source.describe(), "postgres db.example.com:6543/sales");
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[test]
    fn describe_defaults_port_and_database() {
        assert_eq!(source("postgres://alice@localhost").unwrap().describe(), "postgres localhost:5432/alice");
        assert_eq!(source("postgres://alice@[::1]/db").unwrap().describe(), "postgres [::1]:5432/db");
    }

    #[test]
    fn bad_urls_say_what_was_expected() {
        let error = source("postgres://alice:s3cret@host:notaport/db").unwrap_err();
        assert!(error.contains("expected a url such as postgres://"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        let error = source("postgres:///db").unwrap_err();
        assert!(error.contains("no host"), "{error}");
    }

    #[test]
    fn table_names_are_quoted_per_part() {
        let sql = model_sql(&ModelQuery::Table("public.My \"Table\"".to_string()));
        assert_eq!(sql, "SELECT * FROM \"public\".\"My \"\"Table\"\"\"");
    }

    #[test]
    fn trailing_semicolons_and_whitespace_are_trimmed() {
        assert_eq!(model_sql(&ModelQuery::Sql("SELECT 1 ;\n ; \n".to_string())), "SELECT 1");
    }

    #[test]
    fn epochs_convert_and_infinity_is_an_error() {
        assert_eq!(unix_days(0), Ok(10_957));
        assert_eq!(unix_micros(0), Ok(946_684_800_000_000));
        assert!(unix_days(i32::MAX).unwrap_err().contains("'infinity'"));
        assert!(unix_micros(i64::MIN).unwrap_err().contains("'-infinity'"));
        assert!(unix_micros(i64::MAX - 1).is_err());
    }
}
