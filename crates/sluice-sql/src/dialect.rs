//! What differs between warehouses when rendering a condition: quoting, literals, time
//! arithmetic, case-insensitive matching and the split hash.
//!
//! Postgres and SQLite are built. Snowflake, BigQuery, MySQL and DuckDB slot in as new variants:
//! each needs the same handful of methods (see `docs/audiences.md`).

use crate::ast::{Instant, Literal};

/// A SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// Source types whose dialect is planned but not built yet.
const PLANNED: &[&str] = &["snowflake", "bigquery", "mysql", "duckdb"];

impl Dialect {
    /// The dialect of a source type (`type:` of a source entry).
    pub fn for_source_type(kind: &str) -> Result<Dialect, String> {
        match kind {
            "postgres" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            other if PLANNED.contains(&other) => Err(format!(
                "audiences on `{other}` sources are not built yet: the SQL dialect layer has Postgres and SQLite so far"
            )),
            other => Err(format!("audiences cannot be compiled for sources of type `{other}`")),
        }
    }

    /// A quoted identifier: `"name"`, with embedded quotes doubled, so any text is safe.
    pub fn ident(self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// A possibly schema-qualified table name (`analytics.users`), each part quoted.
    pub fn table(self, path: &str) -> String {
        path.split('.').map(|part| self.ident(part)).collect::<Vec<_>>().join(".")
    }

    /// A model's query as something to select from: a quoted table, or the SQL in parentheses.
    pub fn relation(self, query: &sluice_core::ModelQuery) -> String {
        match query {
            sluice_core::ModelQuery::Table(table) => self.table(table),
            // The newline keeps a trailing `-- comment` from swallowing the parenthesis.
            sluice_core::ModelQuery::Sql(sql) => format!("({}\n)", sql.trim().trim_end_matches(';')),
        }
    }

    /// A text constant. Postgres gets an escape string (`E'…'`), whose meaning does not depend
    /// on `standard_conforming_strings`; SQLite has no backslash escapes.
    pub fn string(self, text: &str) -> String {
        match self {
            Dialect::Postgres => format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''")),
            Dialect::Sqlite => format!("'{}'", text.replace('\'', "''")),
        }
    }

    /// A constant from a condition. Postgres gets an untyped constant that takes the type of
    /// the column it meets (so `zip equals 75001` works on a text column); SQLite compares by
    /// column affinity, so numbers stay numbers.
    pub fn literal(self, literal: &Literal) -> String {
        let text = match literal {
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => format!("{f:?}"),
            Literal::Bool(b) => return if *b { "TRUE".into() } else { "FALSE".into() },
            Literal::Text(t) => return self.string(t),
        };
        match self {
            Dialect::Postgres => format!("'{text}'"),
            Dialect::Sqlite => text,
        }
    }

    /// A point in time, comparable with [`Dialect::timestamp`] of a column.
    pub fn instant(self, instant: Instant) -> String {
        let text = instant.0.format("%Y-%m-%d %H:%M:%S");
        match self {
            // Read as UTC by timestamptz columns; the offset is ignored by timestamp columns.
            Dialect::Postgres => format!("'{text}+00'"),
            Dialect::Sqlite => format!("'{text}'"),
        }
    }

    /// A column expression as a comparable timestamp. SQLite keeps times as ISO-8601 text or
    /// Unix seconds; both are brought to `YYYY-MM-DD HH:MM:SS`.
    pub fn timestamp(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => expr.to_string(),
            Dialect::Sqlite => format!(
                "(CASE WHEN typeof({expr}) IN ('integer', 'real') THEN datetime({expr}, 'unixepoch') ELSE datetime({expr}) END)"
            ),
        }
    }

    /// `timestamp(expr)` plus a number of seconds.
    pub fn timestamp_plus(self, expr: &str, seconds: u64) -> String {
        match self {
            Dialect::Postgres => format!("({expr} + INTERVAL '{seconds} seconds')"),
            Dialect::Sqlite => format!("datetime({}, '+{seconds} seconds')", self.timestamp(expr)),
        }
    }

    /// Whether a count or aggregate over a related model's whole history, `and`-ed with a
    /// condition that narrows the parents, is compiled as a correlated subquery rather than a
    /// grouped derived table (see `Compiler::related`). Postgres: yes, it cannot push the
    /// parent's key into a grouped derived table, so it would aggregate every parent's rows.
    /// SQLite keeps the derived table: the measurement behind this was made on Postgres, and
    /// on SQLite a correlated subquery without an index on the join column reads the related
    /// table once per parent.
    pub fn correlates_narrowed_aggregates(self) -> bool {
        match self {
            Dialect::Postgres => true,
            Dialect::Sqlite => false,
        }
    }

    /// Case-insensitive `LIKE` of the column's text against `pattern` (a rendered constant
    /// using `\` as the escape character).
    pub fn like_insensitive(self, expr: &str, pattern: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS TEXT) ILIKE {pattern} ESCAPE {}", self.string("\\")),
            // SQLite's LIKE ignores ASCII case by default.
            Dialect::Sqlite => format!("CAST({expr} AS TEXT) LIKE {pattern} ESCAPE {}", self.string("\\")),
        }
    }

    /// A number in 0..10000 from the key and the salt, the same in every dialect:
    /// the first 32 bits of MD5(`salt:key`) modulo 10,000 (see [`crate::split_bucket`]).
    /// SQLite has no MD5, so Sluice's SQLite source registers `sluice_split_bucket`.
    pub fn split_bucket(self, salt: &str, key_expr: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "(('x' || substr(md5({} || CAST({key_expr} AS TEXT)), 1, 8))::bit(32)::bigint % 10000)",
                self.string(&format!("{salt}:"))
            ),
            Dialect::Sqlite => format!("sluice_split_bucket({}, CAST({key_expr} AS TEXT))", self.string(salt)),
        }
    }
}

/// Escapes `%`, `_` and `\` so a value matches literally inside a `LIKE` pattern.
pub fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
