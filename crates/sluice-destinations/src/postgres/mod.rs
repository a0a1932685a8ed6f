//! Postgres table destination: writes changes as multi-row upserts, updates and deletes, one transaction per batch.

mod config;
mod mapping;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::{
    ChangeBatch, ChangeOp, Destination, DestinationError, ErrorClass, FieldDescription, ObjectDescription, Outcome,
    SyncMode, Target, WriteContext,
};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, ToStatement, Transaction};

pub use config::PostgresDestinationConfig;
use config::Settings;
use mapping::{create_table_sql, quote_ident, Kind, Layout, Statement};
use sluice_pg::{client_error_text, error_text, Connected, ConnectionFailure};

/// Parts a refused group is split into: one bad record among 10000 costs about 35 statements,
/// and a batch of only bad records about 1.5 statements per record.
const ISOLATION_FAN_OUT: usize = 8;

/// A Postgres table that changes are written to.
pub struct PostgresDestination {
    settings: Settings,
    description: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for PostgresDestination {
    // The parsed config holds the password, so only the description is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The one connection and what `prepare` learned, behind one lock so writes never interleave.
#[derive(Default)]
struct State {
    connection: Option<Connection>,
    /// Per sync: the key column and the column types, resolved by `prepare`.
    tables: HashMap<String, Arc<TableInfo>>,
}

struct Connection {
    client: Client,
    failure: ConnectionFailure,
}

/// The table as `prepare` found it for one sync.
struct TableInfo {
    key: String,
    /// Column name → the type text parameters are cast to.
    types: HashMap<String, String>,
}

/// A table's catalog entry.
struct Inspected {
    oid: u32,
    kind: String,
    /// (name, type without modifiers, attribute number), in table order.
    columns: Vec<(String, String, i16)>,
}

/// Why a batch could not be applied as a whole.
enum Step {
    /// Some record's data was refused: apply the records again in smaller groups to find which.
    Data,
    /// The request failed as a whole.
    Fatal(DestinationError),
}

impl PostgresDestination {
    /// Validates the configuration without connecting; errors name the offending key.
    pub fn new(config: PostgresDestinationConfig) -> Result<Self, (&'static str, String)> {
        let settings = config.validate()?;
        let description = format!("{} table {}", settings.location, settings.table.display());
        Ok(PostgresDestination { settings, description, state: Mutex::new(State::default()) })
    }

    /// The kept connection, or a new one when there is none or it was closed.
    async fn connection<'s>(&self, state: &'s mut State) -> Result<&'s mut Connection, DestinationError> {
        let connection = match state.connection.take() {
            Some(connection) if !connection.client.is_closed() => connection,
            _ => self.connect().await?,
        };
        Ok(state.connection.insert(connection))
    }

    async fn connect(&self) -> Result<Connection, DestinationError> {
        let connect_error = |error: &tokio_postgres::Error| {
            let class = match error.code().map(|code| code.code()) {
                Some(code) if code.starts_with("28") => ErrorClass::Auth,
                // The database does not exist.
                Some("3D000") => ErrorClass::Config,
                _ => ErrorClass::Transient,
            };
            DestinationError::new(class, format!("cannot connect to {}: {}", self.settings.location, error_text(error)))
        };
        // The connection task ends by itself once the client is dropped.
        let Connected { client, failure, .. } =
            sluice_pg::connect(&self.settings.connection).await.map_err(|e| connect_error(&e))?;
        // Zone-less timestamps written to timestamptz columns then mean UTC, whatever the server's setting.
        client.batch_execute("SET TIME ZONE 'UTC'").await.map_err(|e| connect_error(&e))?;
        Ok(Connection { client, failure })
    }

    /// Classifies a failed statement for the delivery driver.
    fn fatal(&self, error: &tokio_postgres::Error, failure: &ConnectionFailure) -> DestinationError {
        let class = match error.code() {
            Some(code) => class_of(code.code()),
            // No SQLSTATE: the connection broke or timed out.
            None => ErrorClass::Transient,
        };
        DestinationError::new(class, format!("{}: {}", self.description, client_error_text(error, failure)))
    }

    /// Finds the table through the search path, as the statements will.
    async fn inspect(&self, connection: &Connection) -> Result<Option<Inspected>, DestinationError> {
        let fatal = |e: tokio_postgres::Error| self.fatal(&e, &connection.failure);
        let client = &connection.client;
        let name = self.settings.table.sql();
        let row = client
            .query_opt(
                "SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1::text)",
                &[&name],
            )
            .await
            .map_err(fatal)?;
        let Some(row) = row else { return Ok(None) };
        let oid: u32 = row.try_get(0).map_err(fatal)?;
        let kind: String = row.try_get(1).map_err(fatal)?;
        // Types without modifiers: an explicit cast to varchar(n) would truncate silently, while
        // the assignment to the column checks the length and reports it. `character` and `bit`
        // without a modifier mean a length of one, so they are cast to their unbounded forms.
        let rows = client
            .query(
                "SELECT a.attname::text, CASE a.atttypid WHEN 'pg_catalog.bpchar'::pg_catalog.regtype THEN 'bpchar' \
                 WHEN 'pg_catalog.bit'::pg_catalog.regtype THEN 'varbit' \
                 ELSE pg_catalog.format_type(a.atttypid, NULL) END, a.attnum \
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(fatal)?;
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            columns.push((
                row.try_get(0).map_err(fatal)?,
                row.try_get(1).map_err(fatal)?,
                row.try_get(2).map_err(fatal)?,
            ));
        }
        Ok(Some(Inspected { oid, kind, columns }))
    }

    /// Checks that the schema a missing table would be created in exists and allows creating it.
    async fn check_schema(&self, connection: &Connection) -> Result<(), DestinationError> {
        let fatal = |e: tokio_postgres::Error| self.fatal(&e, &connection.failure);
        let table = self.settings.table.display();
        let schema: String = match &self.settings.table.schema {
            Some(schema) => schema.clone(),
            None => {
                let row = connection.client.query_one("SELECT current_schema()", &[]).await.map_err(fatal)?;
                let schema: Option<String> = row.try_get(0).map_err(fatal)?;
                schema.ok_or_else(|| {
                    DestinationError::config(format!(
                        "table {table} does not exist in {} and no schema on the search_path exists to create it in",
                        self.settings.location
                    ))
                })?
            }
        };
        let row = connection
            .client
            .query_opt(
                "SELECT pg_catalog.has_schema_privilege(n.oid, 'CREATE') FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
                &[&schema],
            )
            .await
            .map_err(fatal)?;
        let Some(row) = row else {
            return Err(DestinationError::config(format!(
                "table {table} does not exist in {} and neither does its schema `{schema}`; create the schema first",
                self.settings.location
            )));
        };
        let can_create: bool = row.try_get(0).map_err(fatal)?;
        if !can_create {
            return Err(DestinationError::config(format!(
                "table {table} does not exist in {} and the user may not create tables in schema `{schema}`; \
                 create the table or grant CREATE on the schema",
                self.settings.location
            )));
        }
        Ok(())
    }

    /// Whether `ON CONFLICT (column)` can use a unique index on exactly that column.
    async fn has_unique_index(&self, connection: &Connection, oid: u32, attnum: i16) -> Result<bool, DestinationError> {
        let fatal = |e: tokio_postgres::Error| self.fatal(&e, &connection.failure);
        // Partial, expression and deferrable indexes cannot serve as ON CONFLICT arbiters.
        let row = connection
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1 AND i.indisunique \
                 AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL \
                 AND i.indnkeyatts = 1 AND i.indkey[0] = $2)",
                &[&oid, &attnum],
            )
            .await
            .map_err(fatal)?;
        row.try_get(0).map_err(fatal)
    }

    /// Resolves the batch's fields against what `prepare` found.
    fn layout(&self, table: &TableInfo, fields: &[String]) -> Result<Layout, DestinationError> {
        let mut columns = Vec::with_capacity(fields.len());
        for field in fields {
            let Some(cast) = table.types.get(field) else {
                return Err(DestinationError::config(format!(
                    "{}: field `{field}` was not part of the target the destination was prepared for",
                    self.description
                )));
            };
            columns.push((quote_ident(field), cast.clone()));
        }
        let key = fields.iter().position(|f| *f == table.key).ok_or_else(|| {
            DestinationError::config(format!(
                "{}: the batch does not carry the key column `{}`, which identifies rows",
                self.description, table.key
            ))
        })?;
        Layout::new(self.settings.table.sql(), columns, key).ok_or_else(|| {
            DestinationError::config(format!("{}: the key column is not among the fields", self.description))
        })
    }

    fn not_found(&self, key_column: &str, key: &str) -> Outcome {
        Outcome::rejected(format!("no row with {key_column} = {key} in {}", self.settings.table.display()))
    }

    /// The outcomes of a statement that succeeded: applied, or for updates, rejected when the key matched no row.
    fn record_outcomes(
        &self,
        statement: &Statement,
        matched: Option<HashSet<usize>>,
        batch: &ChangeBatch,
        key_column: &str,
        results: &mut Vec<(usize, Outcome)>,
    ) {
        for (position, &index) in statement.rows.iter().enumerate() {
            let outcome = match (&matched, batch.changes.get(index)) {
                (Some(matched), Some(change)) if !matched.contains(&position) => {
                    self.not_found(key_column, &change.key)
                }
                _ => Outcome::applied(),
            };
            results.push((index, outcome));
        }
    }

    /// Applies every statement in one transaction; any failure rolls all of them back.
    async fn apply_batch(
        &self,
        connection: &mut Connection,
        statements: &[Statement],
        batch: &ChangeBatch,
        key_column: &str,
    ) -> Result<Vec<(usize, Outcome)>, Step> {
        let failure = Arc::clone(&connection.failure);
        let step = |e: tokio_postgres::Error| {
            if is_data_error(&e) {
                tracing::debug!(destination = %self.description, error = %error_text(&e), "batch refused; isolating the refused records");
                Step::Data
            } else {
                Step::Fatal(self.fatal(&e, &failure))
            }
        };
        let transaction = connection.client.transaction().await.map_err(step)?;
        let mut results = Vec::new();
        for statement in statements {
            let matched = run(&transaction, statement.sql.as_str(), statement).await.map_err(step)?;
            self.record_outcomes(statement, matched, batch, key_column, &mut results);
        }
        transaction.commit().await.map_err(step)?;
        Ok(results)
    }

    /// Applies the records again in a new transaction, each group under a savepoint, splitting
    /// refused groups down to single records so that only the refused records are rejected.
    /// Splitting keeps one bad record among thousands to a few dozen statements instead of one
    /// round trip per record, which matters since a refused record comes back every run.
    async fn apply_isolating(
        &self,
        connection: &mut Connection,
        statements: Vec<Statement>,
        layout: &Layout,
        batch: &ChangeBatch,
        key_column: &str,
    ) -> Result<Vec<(usize, Outcome)>, DestinationError> {
        let failure = Arc::clone(&connection.failure);
        let fatal = |e: tokio_postgres::Error| self.fatal(&e, &failure);
        let mut transaction = connection.client.transaction().await.map_err(fatal)?;
        // Deferred constraints would otherwise fail the commit instead of the record.
        transaction.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await.map_err(fatal)?;
        let mut single: HashMap<Kind, tokio_postgres::Statement> = HashMap::new();
        let mut results = Vec::with_capacity(statements.iter().map(|s| s.rows.len()).sum());
        // A stack of (kind, rows) popped in batch order, so changes still apply in order.
        let mut work: Vec<(Kind, Vec<usize>)> = statements.into_iter().rev().map(|s| (s.kind, s.rows)).collect();
        while let Some((kind, rows)) = work.pop() {
            let statement = layout.statement(kind, &batch.changes, rows);
            let attempt = if statement.rows.len() == 1 {
                // Single-record statements of a kind share their SQL, so each kind is parsed once.
                let prepared = match single.get(&kind) {
                    Some(prepared) => prepared.clone(),
                    None => {
                        let prepared = transaction.prepare(&statement.sql).await.map_err(fatal)?;
                        single.insert(kind, prepared.clone());
                        prepared
                    }
                };
                let savepoint = transaction.savepoint("sluice_records").await.map_err(fatal)?;
                let result = run(&savepoint, &prepared, &statement).await;
                (savepoint, result)
            } else {
                let savepoint = transaction.savepoint("sluice_records").await.map_err(fatal)?;
                let result = run(&savepoint, statement.sql.as_str(), &statement).await;
                (savepoint, result)
            };
            match attempt {
                (savepoint, Ok(matched)) => {
                    savepoint.commit().await.map_err(fatal)?;
                    self.record_outcomes(&statement, matched, batch, key_column, &mut results);
                }
                (savepoint, Err(error)) if is_data_error(&error) => {
                    savepoint.rollback().await.map_err(fatal)?;
                    let rows = statement.rows;
                    match rows.as_slice() {
                        [index] => results.push((*index, Outcome::rejected(error_text(&error)))),
                        _ => {
                            let size = rows.len().div_ceil(ISOLATION_FAN_OUT);
                            let parts: Vec<Vec<usize>> = rows.chunks(size).map(<[usize]>::to_vec).collect();
                            work.extend(parts.into_iter().rev().map(|part| (kind, part)));
                        }
                    }
                }
                (_, Err(error)) => return Err(fatal(error)),
            }
        }
        transaction.commit().await.map_err(fatal)?;
        Ok(results)
    }
}

/// Runs one statement; for updates, returns the positions of the rows that matched.
async fn run<T>(
    transaction: &Transaction<'_>,
    sql: &T,
    statement: &Statement,
) -> Result<Option<HashSet<usize>>, tokio_postgres::Error>
where
    T: ?Sized + ToStatement,
{
    let params: Vec<&(dyn ToSql + Sync)> = statement.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    if statement.kind == Kind::Update {
        let rows = transaction.query(sql, &params).await?;
        let matched = rows
            .iter()
            .filter_map(|row| row.try_get::<_, i32>(0).ok())
            .filter_map(|position| usize::try_from(position).ok())
            .collect();
        Ok(Some(matched))
    } else {
        transaction.execute(sql, &params).await?;
        Ok(None)
    }
}

#[async_trait]
impl Destination for PostgresDestination {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn identity(&self) -> String {
        format!("{} {}", self.settings.location, self.settings.table.display())
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    async fn discover(&self, _object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        let mut state = self.state.lock().await;
        let connection = self.connection(&mut state).await?;
        let fatal = |e: tokio_postgres::Error| self.fatal(&e, &connection.failure);
        let all_modes =
            vec![SyncMode::Insert, SyncMode::Update, SyncMode::Upsert, SyncMode::Mirror, SyncMode::Audience];
        let rows = connection
            .client
            .query(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull AND NOT a.atthasdef, \
                 EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique \
                         AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = pg_catalog.to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&self.settings.table.sql()],
            )
            .await
            .map_err(fatal)?;
        let name = self.settings.table.display();
        if rows.is_empty() {
            return Ok(vec![ObjectDescription {
                name,
                fields: Vec::new(),
                open_schema: self.settings.create_table,
                modes: all_modes,
                note: Some(if self.settings.create_table {
                    "the table does not exist yet; the first sync creates it from the mapped fields".into()
                } else {
                    "the table does not exist, and create_table is false".into()
                }),
            }]);
        }
        let mut fields = Vec::with_capacity(rows.len());
        for row in rows {
            fields.push(FieldDescription {
                name: row.try_get(0).map_err(fatal)?,
                field_type: row.try_get(1).map_err(fatal)?,
                required: row.try_get(2).map_err(fatal)?,
                can_match_on: row.try_get(3).map_err(fatal)?,
            });
        }
        // Upserts and mirrors need a unique key for ON CONFLICT; updates only need the column.
        let modes = if fields.iter().any(|f| f.can_match_on) { all_modes } else { vec![SyncMode::Update] };
        Ok(vec![ObjectDescription { name, fields, open_schema: false, modes, note: None }])
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let mut state = self.state.lock().await;
        let connection = self.connection(&mut state).await?;
        if self.inspect(connection).await?.is_some() {
            return Ok(());
        }
        if !self.settings.create_table {
            return Err(DestinationError::config(format!(
                "table {} does not exist in {} and create_table is false",
                self.settings.table.display(),
                self.settings.location
            )));
        }
        self.check_schema(connection).await
    }

    async fn prepare(&self, target: &Target) -> Result<(), DestinationError> {
        let table = self.settings.table.display();
        let Some(key) = target.key_field.clone() else {
            return Err(DestinationError::config(format!(
                "{}: the mapping must include the model's primary key column for a postgres destination; \
                 it identifies the row each record inserts, updates or deletes",
                self.description
            )));
        };
        if !target.fields.iter().any(|f| f.name == key) {
            return Err(DestinationError::config(format!(
                "{}: the key field `{key}` is not among the mapped fields",
                self.description
            )));
        }
        let mut state = self.state.lock().await;
        let connection = self.connection(&mut state).await?;
        let mut inspected = self.inspect(connection).await?;
        if inspected.is_none() {
            if !self.settings.create_table {
                return Err(DestinationError::config(format!(
                    "table {table} does not exist in {} and create_table is false; create it or set create_table: true",
                    self.settings.location
                )));
            }
            self.check_schema(connection).await?;
            let sql = create_table_sql(&self.settings.table.sql(), &target.fields, &key);
            connection.client.batch_execute(&sql).await.map_err(|e| self.fatal(&e, &connection.failure))?;
            tracing::info!(destination = %self.description, "created table");
            inspected = self.inspect(connection).await?;
        }
        let Some(inspected) = inspected else {
            return Err(DestinationError::config(format!(
                "table {table} does not exist in {} even after CREATE TABLE (is the schema on the search_path?)",
                self.settings.location
            )));
        };
        if !matches!(inspected.kind.as_str(), "r" | "p") {
            return Err(DestinationError::config(format!(
                "{table} in {} is not a table (relkind {}); a postgres destination writes to a table",
                self.settings.location, inspected.kind
            )));
        }
        let types: HashMap<String, String> =
            inspected.columns.iter().map(|(name, kind, _)| (name.clone(), kind.clone())).collect();
        let missing: Vec<String> =
            target.fields.iter().filter(|f| !types.contains_key(&f.name)).map(|f| format!("`{}`", f.name)).collect();
        if !missing.is_empty() {
            let existing: Vec<&str> = inspected.columns.iter().map(|(name, _, _)| name.as_str()).collect();
            return Err(DestinationError::config(format!(
                "table {table} in {} has no column {} for the mapped field{}; its columns are: {}",
                self.settings.location,
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" },
                existing.join(", ")
            )));
        }
        // Updates match rows with a join; every other mode needs ON CONFLICT and so a unique index.
        if target.mode != SyncMode::Update {
            let attnum = inspected.columns.iter().find(|(name, _, _)| *name == key).map(|(_, _, n)| *n).unwrap_or(0);
            if !self.has_unique_index(connection, inspected.oid, attnum).await? {
                return Err(DestinationError::config(format!(
                    "column `{key}` of table {table} has no primary key or unique constraint of its own, which \
                     postgres needs to insert or update rows by key (ON CONFLICT); add one, e.g. \
                     ALTER TABLE {table} ADD PRIMARY KEY ({})",
                    quote_ident(&key)
                )));
            }
        }
        state.tables.insert(target.sync.clone(), Arc::new(TableInfo { key, types }));
        Ok(())
    }

    async fn write(&self, context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        if batch.changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.state.lock().await;
        let Some(table) = state.tables.get(&context.sync).cloned() else {
            return Err(DestinationError::config(format!(
                "{}: sync `{}` wrote before the destination was prepared, so the table's columns are unknown",
                self.description, context.sync
            )));
        };
        let layout = self.layout(&table, &batch.fields)?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.changes.len()];
        let mut pending = Vec::with_capacity(batch.changes.len());
        for (index, change) in batch.changes.iter().enumerate() {
            if change.op != ChangeOp::Delete && change.values.len() != batch.fields.len() {
                outcomes[index] = Some(Outcome::rejected(format!(
                    "the record carries {} values for {} fields",
                    change.values.len(),
                    batch.fields.len()
                )));
            } else {
                pending.push(index);
            }
        }
        let statements = layout.statements(context.mode, &batch.changes, &pending);
        let connection = self.connection(&mut state).await?;
        let applied = match self.apply_batch(connection, &statements, batch, &table.key).await {
            Ok(results) => Ok(results),
            Err(Step::Data) => self.apply_isolating(connection, statements, &layout, batch, &table.key).await,
            Err(Step::Fatal(error)) => Err(error),
        };
        let results = match applied {
            Ok(results) => results,
            Err(error) => {
                // The client may not have noticed yet that its connection is gone; never
                // reuse one that just failed as transient, so the retry reconnects.
                if error.class == ErrorClass::Transient {
                    state.connection = None;
                }
                return Err(error);
            }
        };
        for (index, outcome) in results {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Outcome::retryable("the record was not sent")))
            .collect())
    }
}

/// How a failed statement's SQLSTATE is treated when it fails a whole request.
fn class_of(code: &str) -> ErrorClass {
    match code.get(..2).unwrap_or("") {
        "28" => ErrorClass::Auth,
        // Connection trouble, serialization failures and deadlocks, resources, lock timeouts,
        // cancelled statements and shutdowns: the same request may succeed later.
        "08" | "40" | "53" | "55" | "57" | "58" => ErrorClass::Transient,
        // Permissions, missing tables or columns, read-only servers, unsupported features.
        "42" | "3D" | "3F" | "25" | "0A" => ErrorClass::Config,
        _ => ErrorClass::Permanent,
    }
}

/// Errors caused by one record's data, which reject that record and not the batch: cardinality,
/// data exceptions, integrity violations, WITH CHECK OPTION, oversized index rows and trigger exceptions.
fn is_data_error(error: &tokio_postgres::Error) -> bool {
    match error.code().map(|code| code.code()) {
        Some(code) => matches!(code.get(..2), Some("21" | "22" | "23" | "44")) || code == "54000" || code == "P0001",
        None => false,
    }
}
