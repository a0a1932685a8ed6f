//! Typed configuration of the Postgres destination and its validation, done without connecting.

use std::time::Duration;

use serde::Deserialize;

use sluice_pg::quote_ident;

/// Records per statement when the project does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// The largest `batch_size` accepted.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// Used when the URL sets no `connect_timeout`, so an unreachable host fails a request in
/// reasonable time instead of waiting for the operating system's TCP timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL truncates longer identifiers silently, which would make us write elsewhere.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Project configuration of a Postgres table destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestinationConfig {
    /// Connection URL.
    pub url: String,
    /// Target table, optionally schema-qualified (`public.crm_contacts`).
    pub table: String,
    /// Records per statement (default 1000, at most 10000).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Create the table when it does not exist (default true).
    #[serde(default)]
    pub create_table: Option<bool>,
}

/// A table name as configured; the parts are used exactly (case-sensitive), always quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// Parses `name` or `schema.name`.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let expected = "expected a table name such as crm_contacts or public.crm_contacts";
        let parts: Vec<&str> = text.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => return Err(format!("{expected} (at most one `.`), got `{text}`")),
        };
        for part in schema.iter().chain([&name]) {
            if part.is_empty() {
                return Err(format!("{expected}, got `{text}` (an empty name)"));
            }
            if part.len() > MAX_IDENTIFIER_BYTES {
                return Err(format!("{expected}, got `{text}` (`{part}` is longer than {MAX_IDENTIFIER_BYTES} bytes)"));
            }
            if !part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-') {
                return Err(format!("{expected} using letters, digits, `_`, `$` and `-`, got `{text}`"));
            }
        }
        Ok(TableName { schema: schema.map(str::to_string), name: name.to_string() })
    }

    /// The name as SQL, quoted.
    pub fn sql(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }

    /// The name as the project wrote it, for messages.
    pub fn display(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connection: tokio_postgres::Config,
    /// `postgres host:port/database`, without the password.
    pub location: String,
    pub table: TableName,
    pub batch_size: usize,
    pub create_table: bool,
}

impl PostgresDestinationConfig {
    /// Checks every value; errors name the offending key and say what was expected.
    pub fn validate(&self) -> Result<Settings, (&'static str, String)> {
        let connection =
            sluice_pg::parse_url(&self.url, DEFAULT_CONNECT_TIMEOUT).map_err(|message| ("url", message))?;
        let table = TableName::parse(&self.table).map_err(|message| ("table", message))?;
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err((
                "batch_size",
                format!("expected a number of records per statement from 1 to {MAX_BATCH_SIZE}, got {batch_size}"),
            ));
        }
        let location = sluice_pg::describe(&connection);
        Ok(Settings { connection, location, table, batch_size, create_table: self.create_table.unwrap_or(true) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, table: &str, batch_size: Option<usize>) -> PostgresDestinationConfig {
        PostgresDestinationConfig { url: url.into(), table: table.into(), batch_size, create_table: None }
    }

    #[test]
    fn location_hides_the_password() {
        let settings = config("postgres://alice:s3cret@db.example.com:6543/sales", "t", None).validate().unwrap();
        assert_eq!(settings.location, "postgres db.example.com:6543/sales");
        assert_eq!(settings.batch_size, DEFAULT_BATCH_SIZE);
        assert!(settings.create_table);
    }

    #[test]
    fn table_names_are_one_or_two_parts() {
        let table = TableName::parse("public.crm_contacts").unwrap();
        assert_eq!(table.sql(), "\"public\".\"crm_contacts\"");
        assert_eq!(TableName::parse("Contacts").unwrap().sql(), "\"Contacts\"");
        for bad in ["", "a.b.c", ".x", "x.", "a b", "a\"b", &"x".repeat(64)] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(config("mysql://x", "t", None).validate().unwrap_err().0, "url");
        assert_eq!(config("postgres://h/db", "a.b.c", None).validate().unwrap_err().0, "table");
        assert_eq!(config("postgres://h/db", "t", Some(0)).validate().unwrap_err().0, "batch_size");
        assert_eq!(config("postgres://h/db", "t", Some(10_001)).validate().unwrap_err().0, "batch_size");
        assert!(config("postgres://h/db", "t", Some(10_000)).validate().is_ok());
    }
}
