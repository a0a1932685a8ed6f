//! Typed configuration of the Postgres destination and its validation, done without connecting.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::config::Host;

use super::mapping::quote_ident;

/// Records per statement when the project does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// The largest `batch_size` accepted.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// Used when the URL sets no `connect_timeout`, so an unreachable host fails a request in
/// reasonable time instead of waiting for the operating system's TCP timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL truncates longer identifiers silently, which would make us write elsewhere.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The `url` form shown when a URL cannot be used.
const EXPECTED_URL: &str = "expected a url such as postgres://user:password@host:5432/database";

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
        let mut connection = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| ("url", format!("invalid postgres url ({}): {EXPECTED_URL}", error_chain(&e))))?;
        if connection.get_hosts().is_empty() && connection.get_hostaddrs().is_empty() {
            return Err(("url", format!("the postgres url names no host: {EXPECTED_URL}")));
        }
        if connection.get_connect_timeout().is_none() {
            connection.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if connection.get_application_name().is_none() {
            connection.application_name("sluice");
        }
        let table = TableName::parse(&self.table).map_err(|message| ("table", message))?;
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err((
                "batch_size",
                format!("expected a number of records per statement from 1 to {MAX_BATCH_SIZE}, got {batch_size}"),
            ));
        }
        let location = describe_config(&connection);
        Ok(Settings { connection, location, table, batch_size, create_table: self.create_table.unwrap_or(true) })
    }
}

/// `postgres host:port/database`, from the parsed config so the password never appears.
fn describe_config(config: &tokio_postgres::Config) -> String {
    let host = match (config.get_hosts().first(), config.get_hostaddrs().first()) {
        (Some(Host::Tcp(host)), _) => host.clone(),
        #[cfg(unix)]
        (Some(Host::Unix(path)), _) => path.display().to_string(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => "localhost".to_string(),
    };
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    // PostgreSQL defaults the database to the user name.
    match config.get_dbname().or(config.get_user()) {
        Some(db) => format!("postgres {host}:{port}/{db}"),
        None => format!("postgres {host}:{port}"),
    }
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
