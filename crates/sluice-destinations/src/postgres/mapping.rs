//! SQL building for the Postgres destination: column types, CREATE TABLE and multi-row statements.

use std::collections::HashSet;

use arrow_schema::DataType;
use sluice_core::{Change, ChangeOp, FieldSpec, SyncMode};
pub use sluice_pg::quote_ident;

/// PostgreSQL's wire protocol counts bind parameters in 16 bits.
pub const MAX_PARAMS: usize = 65_535;

/// The column type created for a model column of this Arrow type.
pub fn column_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Binary | DataType::LargeBinary => "bytea",
        DataType::Date32 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        // Decimals and JSON arrive as Utf8 too; text holds them exactly.
        _ => "text",
    }
}

/// `CREATE TABLE IF NOT EXISTS` with one column per field and the key as primary key.
pub fn create_table_sql(table: &str, fields: &[FieldSpec], key: &str) -> String {
    let columns: Vec<String> =
        fields.iter().map(|f| format!("{} {}", quote_ident(&f.name), column_type(&f.data_type))).collect();
    format!("CREATE TABLE IF NOT EXISTS {table} ({}, PRIMARY KEY ({}))", columns.join(", "), quote_ident(key))
}

/// The statement a change turns into under a sync mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `INSERT … ON CONFLICT DO UPDATE`.
    Upsert,
    /// `INSERT … ON CONFLICT DO NOTHING`, so a re-sent insert is harmless.
    InsertIgnore,
    /// `UPDATE … FROM (VALUES …) RETURNING`, reporting which keys matched.
    Update,
    /// `DELETE … WHERE key IN (…)`.
    Delete,
}

impl Kind {
    /// The statement for `op` under `mode`.
    pub fn of(mode: SyncMode, op: ChangeOp) -> Kind {
        match (op, mode) {
            (ChangeOp::Delete, _) => Kind::Delete,
            (_, SyncMode::Insert) => Kind::InsertIgnore,
            (_, SyncMode::Update) => Kind::Update,
            (_, SyncMode::Upsert | SyncMode::Mirror | SyncMode::Audience) => Kind::Upsert,
        }
    }

    /// Bind parameters one record takes.
    fn params_per_row(self, columns: usize) -> usize {
        match self {
            Kind::Delete => 1,
            _ => columns.max(1),
        }
    }
}

/// The batch's fields resolved against the table: quoted names, cast types and the key.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The table as SQL.
    table: String,
    /// (quoted column, column type to cast the text parameter to), in batch field order.
    columns: Vec<(String, String)>,
    /// Position of the key among `columns`.
    key: usize,
}

/// One statement and the changes (indices into the batch) it carries, in row order.
#[derive(Debug, Clone)]
pub struct Statement {
    pub kind: Kind,
    pub sql: String,
    pub params: Vec<Option<String>>,
    pub rows: Vec<usize>,
}

impl Layout {
    /// A layout; `None` unless `key` is one of `columns`.
    pub fn new(table: String, columns: Vec<(String, String)>, key: usize) -> Option<Layout> {
        (key < columns.len()).then_some(Layout { table, columns, key })
    }

    /// Splits the changes at `indices` into statements: a new one starts when the kind
    /// changes, a key repeats (one statement cannot touch a row twice) or the parameters
    /// would pass PostgreSQL's limit. Order is kept, so the result equals applying them one by one.
    pub fn statements(&self, mode: SyncMode, changes: &[Change], indices: &[usize]) -> Vec<Statement> {
        let mut statements = Vec::new();
        let mut current: Option<(Kind, Vec<usize>)> = None;
        let mut keys: HashSet<&str> = HashSet::new();
        for &index in indices {
            let Some(change) = changes.get(index) else { continue };
            let kind = Kind::of(mode, change.op);
            let limit = (MAX_PARAMS / kind.params_per_row(self.columns.len())).max(1);
            let fits = match &current {
                Some((k, rows)) => *k == kind && rows.len() < limit && !keys.contains(change.key.as_str()),
                None => false,
            };
            if !fits {
                if let Some((k, rows)) = current.take() {
                    statements.push(self.statement(k, changes, rows));
                }
                keys.clear();
                current = Some((kind, Vec::new()));
            }
            if let Some((_, rows)) = current.as_mut() {
                rows.push(index);
            }
            keys.insert(change.key.as_str());
        }
        if let Some((k, rows)) = current {
            statements.push(self.statement(k, changes, rows));
        }
        statements
    }

    /// Builds one statement over `rows` (indices into `changes`).
    pub fn statement(&self, kind: Kind, changes: &[Change], rows: Vec<usize>) -> Statement {
        let per_row = kind.params_per_row(self.columns.len());
        let mut params: Vec<Option<String>> = Vec::with_capacity(rows.len() * per_row);
        let mut tuples: Vec<String> = Vec::with_capacity(rows.len());
        for (position, &index) in rows.iter().enumerate() {
            let Some(change) = changes.get(index) else { continue };
            let mut tuple: Vec<String> = Vec::with_capacity(per_row + 1);
            if kind == Kind::Update {
                // The row's position lets RETURNING say which records matched.
                tuple.push(position.to_string());
            }
            if kind == Kind::Delete {
                params.push(Some(change.key.clone()));
                tuple.push(format!("${}::text::{}", params.len(), self.columns[self.key].1));
            } else {
                for (column, (_, cast)) in self.columns.iter().enumerate() {
                    params.push(change.values.get(column).and_then(|v| v.to_text()));
                    tuple.push(format!("${}::text::{cast}", params.len()));
                }
            }
            tuples.push(tuple.join(", "));
        }
        let table = &self.table;
        let key = &self.columns[self.key].0;
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| name.as_str()).collect();
        let others: Vec<usize> = (0..self.columns.len()).filter(|&c| c != self.key).collect();
        let sql = match kind {
            Kind::Upsert | Kind::InsertIgnore => {
                let values: Vec<String> = tuples.iter().map(|t| format!("({t})")).collect();
                let action = if kind == Kind::InsertIgnore || others.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    let sets: Vec<String> =
                        others.iter().map(|&c| format!("{0} = EXCLUDED.{0}", self.columns[c].0)).collect();
                    format!("DO UPDATE SET {}", sets.join(", "))
                };
                format!(
                    "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({key}) {action}",
                    names.join(", "),
                    values.join(", ")
                )
            }
            Kind::Update => {
                let values: Vec<String> = tuples.iter().map(|t| format!("({t})")).collect();
                // Positional aliases for the VALUES columns cannot collide with column names.
                let aliases: Vec<String> = (0..self.columns.len()).map(|c| format!("c{c}")).collect();
                let assigned = if others.is_empty() { vec![self.key] } else { others };
                let sets: Vec<String> = assigned.iter().map(|&c| format!("{} = v.c{c}", self.columns[c].0)).collect();
                format!(
                    "UPDATE {table} AS t SET {} FROM (VALUES {}) AS v(r, {}) WHERE t.{key} = v.c{} RETURNING v.r",
                    sets.join(", "),
                    values.join(", "),
                    aliases.join(", "),
                    self.key
                )
            }
            Kind::Delete => format!("DELETE FROM {table} WHERE {key} IN ({})", tuples.join(", ")),
        };
        Statement { kind, sql, params, rows }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::{Fingerprint, Value};

    use super::*;

    fn layout(columns: usize) -> Layout {
        let columns = (0..columns).map(|c| (quote_ident(&format!("f{c}")), "integer".to_string())).collect();
        Layout::new("\"s\".\"t\"".into(), columns, 0).unwrap()
    }

    fn change(op: ChangeOp, key: i64, columns: usize) -> Change {
        let values = if op == ChangeOp::Delete {
            Vec::new()
        } else {
            (0..columns as i64).map(|c| Value::Int(key + c)).collect()
        };
        Change { op, key: key.to_string(), fingerprint: Fingerprint(0), values, destination_id: None }
    }

    #[test]
    fn upsert_updates_every_non_key_column() {
        let changes = vec![change(ChangeOp::Insert, 1, 2), change(ChangeOp::Update, 2, 2)];
        let statements = layout(2).statements(SyncMode::Upsert, &changes, &[0, 1]);
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            "INSERT INTO \"s\".\"t\" (\"f0\", \"f1\") VALUES ($1::text::integer, $2::text::integer), \
             ($3::text::integer, $4::text::integer) ON CONFLICT (\"f0\") DO UPDATE SET \"f1\" = EXCLUDED.\"f1\""
        );
        assert_eq!(statements[0].params, vec![Some("1".into()), Some("2".into()), Some("2".into()), Some("3".into())]);
    }

    #[test]
    fn update_returns_matched_positions() {
        let changes = vec![change(ChangeOp::Update, 7, 2)];
        let statements = layout(2).statements(SyncMode::Update, &changes, &[0]);
        assert_eq!(
            statements[0].sql,
            "UPDATE \"s\".\"t\" AS t SET \"f1\" = v.c1 FROM (VALUES (0, $1::text::integer, $2::text::integer)) \
             AS v(r, c0, c1) WHERE t.\"f0\" = v.c0 RETURNING v.r"
        );
    }

    #[test]
    fn statements_split_on_kind_repeated_key_and_parameter_limit() {
        let changes =
            vec![change(ChangeOp::Insert, 1, 8), change(ChangeOp::Insert, 1, 8), change(ChangeOp::Delete, 3, 8)];
        let kinds: Vec<Kind> =
            layout(8).statements(SyncMode::Mirror, &changes, &[0, 1, 2]).iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![Kind::Upsert, Kind::Upsert, Kind::Delete]);

        let many: Vec<Change> = (0..10_000).map(|k| change(ChangeOp::Insert, k, 8)).collect();
        let indices: Vec<usize> = (0..many.len()).collect();
        let statements = layout(8).statements(SyncMode::Upsert, &many, &indices);
        assert_eq!(statements.len(), 2);
        assert!(statements.iter().all(|s| s.params.len() <= MAX_PARAMS));
        assert_eq!(statements.iter().map(|s| s.rows.len()).sum::<usize>(), 10_000);
    }

    #[test]
    fn arrow_types_map_to_postgres_types() {
        use arrow_schema::TimeUnit;
        assert_eq!(column_type(&DataType::Int64), "bigint");
        assert_eq!(column_type(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))), "timestamptz");
        assert_eq!(column_type(&DataType::Timestamp(TimeUnit::Microsecond, None)), "timestamp");
        assert_eq!(column_type(&DataType::Utf8), "text");
    }
}
