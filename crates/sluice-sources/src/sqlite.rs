//! SQLite source: the embedded default warehouse, read on a blocking thread in Arrow batches.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use serde::Deserialize;
use sluice_core::{ModelQuery, RecordBatchStream, ScanOptions, Source, SourceError};
use tokio::sync::mpsc;

/// `{ type: sqlite, path: warehouse.db }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// Database file, relative to the project directory.
    pub path: PathBuf,
}

/// Reads models from an SQLite database file.
pub struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    /// A source reading `path`; nothing is opened until used.
    pub fn new(path: PathBuf) -> SqliteSource {
        SqliteSource { path }
    }

    fn open(&self) -> Result<rusqlite::Connection, SourceError> {
        if !self.path.is_file() {
            return Err(SourceError::Connect {
                target: self.describe(),
                cause: "no such file (SQLite sources must point at an existing database)".into(),
            });
        }
        let connection = rusqlite::Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| SourceError::Connect { target: self.describe(), cause: e.to_string() })?;
        register_functions(&connection)
            .map_err(|e| SourceError::Connect { target: self.describe(), cause: e.to_string() })?;
        Ok(connection)
    }
}

/// SQL functions audiences compile to that SQLite lacks: `sluice_split_bucket(salt, key)`,
/// the same split hash Postgres computes with md5.
pub fn register_functions(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.create_scalar_function(
        "sluice_split_bucket",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| {
            let salt: String = context.get(0)?;
            let key: Option<String> = context.get(1)?;
            Ok(key.map(|key| sluice_sql::split_bucket(&salt, &key)))
        },
    )
}

#[async_trait]
impl Source for SqliteSource {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    async fn check(&self) -> Result<(), SourceError> {
        let connection = self.open()?;
        connection
            .query_row("select count(*) from sqlite_master", [], |_| Ok(()))
            .map_err(|e| SourceError::Query { target: self.describe(), cause: e.to_string() })
    }

    async fn scan(&self, query: &ModelQuery, options: ScanOptions) -> Result<RecordBatchStream, SourceError> {
        let connection = self.open()?;
        let target = self.describe();
        let sql = match query {
            ModelQuery::Sql(sql) => sql.trim().trim_end_matches(';').to_string(),
            ModelQuery::Table(table) => format!("select * from {}", quote_identifier_path(table)),
        };
        let sql = match options.limit {
            Some(limit) => format!("select * from ({sql}) limit {limit}"),
            None => sql,
        };
        // Prepare on this thread so SQL errors surface before the stream starts.
        connection.prepare(&sql).map_err(|e| SourceError::Query { target: target.clone(), cause: e.to_string() })?;
        let (sender, mut receiver) = mpsc::channel::<Result<RecordBatch, SourceError>>(2);
        let (schema_sender, schema_receiver) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            read_batches(&connection, &sql, &target, options.batch_rows.max(1), schema_sender, &sender)
        });
        let schema = schema_receiver
            .await
            .map_err(|_| SourceError::Data("sqlite reader stopped before reporting a schema".into()))??;
        let batches = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Ok(RecordBatchStream { schema, batches: Box::pin(batches) })
    }
}

/// Quotes `schema.table` as SQL identifiers.
fn quote_identifier_path(path: &str) -> String {
    path.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// The Arrow type a column gets, from its declared type or, for expressions, its first values.
fn declared_type(decltype: Option<&str>) -> Option<DataType> {
    let decl = decltype?.to_ascii_uppercase();
    // SQLite's own affinity rules, in its order.
    if decl.contains("INT") {
        Some(DataType::Int64)
    } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        Some(DataType::Utf8)
    } else if decl.contains("BLOB") {
        Some(DataType::Binary)
    } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
        Some(DataType::Float64)
    } else {
        // NUMERIC affinity (DECIMAL, DATE, BOOLEAN …) stores whatever it is given.
        None
    }
}

fn inferred_type(value: ValueRef<'_>) -> Option<DataType> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(_) => Some(DataType::Int64),
        ValueRef::Real(_) => Some(DataType::Float64),
        ValueRef::Text(_) => Some(DataType::Utf8),
        ValueRef::Blob(_) => Some(DataType::Binary),
    }
}

enum ColumnBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
}

impl ColumnBuilder {
    fn new(data_type: &DataType) -> ColumnBuilder {
        match data_type {
            DataType::Int64 => ColumnBuilder::Int(Int64Builder::new()),
            DataType::Float64 => ColumnBuilder::Float(Float64Builder::new()),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            _ => ColumnBuilder::Text(StringBuilder::new()),
        }
    }

    /// Appends a value, widening where SQLite's dynamic typing allows it without loss of
    /// meaning; anything else is an error for the caller to describe.
    fn append(&mut self, value: ValueRef<'_>) -> Result<(), &'static str> {
        match (self, value) {
            (ColumnBuilder::Int(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Float(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Text(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Binary(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (ColumnBuilder::Float(b), ValueRef::Real(f)) => b.append_value(f),
            (ColumnBuilder::Float(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (ColumnBuilder::Text(b), ValueRef::Text(t)) => b.append_value(String::from_utf8_lossy(t)),
            (ColumnBuilder::Text(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (ColumnBuilder::Text(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (ColumnBuilder::Binary(b), ValueRef::Blob(bytes)) => b.append_value(bytes),
            (ColumnBuilder::Binary(b), ValueRef::Text(t)) => b.append_value(t),
            (_, ValueRef::Integer(_)) => return Err("an integer"),
            (_, ValueRef::Real(_)) => return Err("a real number"),
            (_, ValueRef::Text(_)) => return Err("text"),
            (_, ValueRef::Blob(_)) => return Err("a blob"),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

fn type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int64 => "integer",
        DataType::Float64 => "real",
        DataType::Binary => "blob",
        _ => "text",
    }
}

/// Reads the whole query on a blocking thread, sending batches as they fill.
fn read_batches(
    connection: &rusqlite::Connection,
    sql: &str,
    target: &str,
    batch_rows: usize,
    schema_sender: tokio::sync::oneshot::Sender<Result<SchemaRef, SourceError>>,
    sender: &mpsc::Sender<Result<RecordBatch, SourceError>>,
) {
    let query_error = |e: rusqlite::Error| SourceError::Query { target: target.to_string(), cause: e.to_string() };
    let mut statement = match connection.prepare(sql) {
        Ok(statement) => statement,
        Err(e) => {
            let _ = schema_sender.send(Err(query_error(e)));
            return;
        }
    };
    let names: Vec<String> = statement.column_names().iter().map(|n| n.to_string()).collect();
    if let Some(duplicate) = first_duplicate(&names) {
        let _ = schema_sender.send(Err(SourceError::Data(format!(
            "the query returns two columns named `{duplicate}`: give one an alias (`… as other_name`)"
        ))));
        return;
    }
    let declared: Vec<Option<DataType>> = statement.columns().iter().map(|c| declared_type(c.decl_type())).collect();
    let mut rows = match statement.query([]) {
        Ok(rows) => rows,
        Err(e) => {
            let _ = schema_sender.send(Err(query_error(e)));
            return;
        }
    };

    // Buffer the first batch as owned values to infer expression column types.
    let mut first: Vec<Vec<rusqlite::types::Value>> = Vec::new();
    let mut exhausted = false;
    while first.len() < batch_rows {
        match rows.next() {
            Ok(Some(row)) => first.push(
                (0..names.len())
                    .map(|i| row.get_ref(i).map(rusqlite::types::Value::from).unwrap_or(rusqlite::types::Value::Null))
                    .collect(),
            ),
            Ok(None) => {
                exhausted = true;
                break;
            }
            Err(e) => {
                let _ = schema_sender.send(Err(query_error(e)));
                return;
            }
        }
    }
    let types: Vec<DataType> = declared
        .iter()
        .enumerate()
        .map(|(column, declared)| {
            declared.clone().unwrap_or_else(|| {
                let mut seen = None;
                for row in &first {
                    match (inferred_type(ValueRef::from(&row[column])), &seen) {
                        (None, _) => {}
                        (Some(t), None) => seen = Some(t),
                        (Some(DataType::Float64), Some(DataType::Int64)) => seen = Some(DataType::Float64),
                        (Some(DataType::Int64), Some(DataType::Float64)) => {}
                        (Some(t), Some(s)) if &t != s => seen = Some(DataType::Utf8),
                        _ => {}
                    }
                }
                seen.unwrap_or(DataType::Utf8)
            })
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(
        names.iter().zip(&types).map(|(name, t)| Field::new(name, t.clone(), true)).collect::<Vec<_>>(),
    ));
    if schema_sender.send(Ok(schema.clone())).is_err() {
        return;
    }

    let mut builders: Vec<ColumnBuilder> = types.iter().map(ColumnBuilder::new).collect();
    let mut filled = 0usize;
    let flush = |builders: &mut Vec<ColumnBuilder>| -> Result<RecordBatch, SourceError> {
        let columns: Vec<ArrayRef> = builders.iter_mut().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| SourceError::Data(e.to_string()))
    };
    for row in &first {
        if let Err(error) = append_row(&mut builders, &names, &types, |column| ValueRef::from(&row[column])) {
            let _ = sender.blocking_send(Err(error));
            return;
        }
        filled += 1;
    }
    drop(first);
    if !exhausted {
        loop {
            if filled >= batch_rows {
                if sender.blocking_send(flush(&mut builders)).is_err() {
                    return;
                }
                filled = 0;
            }
            match rows.next() {
                Ok(Some(row)) => {
                    let result = append_row(&mut builders, &names, &types, |column| {
                        row.get_ref(column).unwrap_or(ValueRef::Null)
                    });
                    if let Err(error) = result {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                    filled += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = sender.blocking_send(Err(query_error(e)));
                    return;
                }
            }
        }
    }
    if filled > 0 {
        let _ = sender.blocking_send(flush(&mut builders));
    }
}

fn append_row<'v>(
    builders: &mut [ColumnBuilder],
    names: &[String],
    types: &[DataType],
    value: impl Fn(usize) -> ValueRef<'v>,
) -> Result<(), SourceError> {
    for (column, builder) in builders.iter_mut().enumerate() {
        builder.append(value(column)).map_err(|found| {
            SourceError::Data(format!(
                "column `{}` holds {found} where earlier rows hold {} values: cast it in the model's SQL (for example `cast({} as text)`)",
                names[column],
                type_name(&types[column]),
                names[column]
            ))
        })?;
    }
    Ok(())
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    names.iter().find(|name| !seen.insert(name.as_str())).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn database(sql: &str) -> (tempfile::TempDir, SqliteSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        rusqlite::Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, SqliteSource::new(path))
    }

    async fn read_all(source: &SqliteSource, query: &str, batch_rows: usize) -> Result<Vec<RecordBatch>, SourceError> {
        let stream = source.scan(&ModelQuery::Sql(query.into()), ScanOptions { batch_rows, limit: None }).await?;
        stream.batches.collect::<Vec<_>>().await.into_iter().collect()
    }

    #[tokio::test]
    async fn streams_typed_batches() {
        let (_dir, source) = database(
            "create table c (id integer primary key, name text, score real, note);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 2500)
             insert into c select i, 'n' || i, i * 1.5, case when i % 2 = 0 then null else 'x' end from n;",
        );
        let batches = read_all(&source, "select * from c", 1000).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        let schema = batches[0].schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        assert_eq!(schema.field(3).data_type(), &DataType::Utf8);
    }

    #[tokio::test]
    async fn expression_columns_take_their_values_type() {
        let (_dir, source) = database("create table t (a integer);  insert into t values (1), (2);");
        let batches = read_all(&source, "select a * 2 as doubled, a / 4.0 as quarter from t", 10).await.unwrap();
        let schema = batches[0].schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
    }

    #[tokio::test]
    async fn inconsistent_types_are_a_clear_error() {
        let (_dir, source) = database(
            "create table t (v);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 20)
             insert into t select i from n; insert into t values ('oops');",
        );
        let error = read_all(&source, "select v from t", 5).await.unwrap_err().to_string();
        assert!(error.contains("column `v` holds text where earlier rows hold integer values"), "{error}");
    }

    #[tokio::test]
    async fn sql_errors_name_the_source() {
        let (_dir, source) = database("create table t (a integer);");
        let error = read_all(&source, "select * from missing_table", 5).await.unwrap_err().to_string();
        assert!(error.contains("query failed on sqlite"), "{error}");
        assert!(error.contains("no such table: missing_table"), "{error}");
    }

    #[tokio::test]
    async fn missing_file_is_a_connect_error() {
        let source = SqliteSource::new(PathBuf::from("/nonexistent/w.db"));
        let error = source.check().await.unwrap_err().to_string();
        assert!(error.contains("cannot connect to sqlite /nonexistent/w.db"), "{error}");
    }
}
