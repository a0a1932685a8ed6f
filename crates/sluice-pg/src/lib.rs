//! PostgreSQL connection helpers shared by the Postgres source, destination and state store:
//! URL parsing, password-free descriptions, connecting, and error text for users.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// The URL form shown when a URL cannot be used.
pub const EXPECTED_URL: &str = "expected a url such as postgres://user:password@host:5432/database";

/// Longest server `detail` kept in messages: "Failing row contains (…)" repeats whole rows.
const MAX_DETAIL_CHARS: usize = 300;

/// Parses a connection URL without connecting. Sets `connect_timeout` when the URL does not,
/// so an unreachable host fails in reasonable time, and names the application `sluice`.
pub fn parse_url(url: &str, connect_timeout: Duration) -> Result<Config, String> {
    let mut config =
        Config::from_str(url).map_err(|e| format!("invalid postgres url ({}): {EXPECTED_URL}", error_chain(&e)))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(format!("the postgres url names no host: {EXPECTED_URL}"));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("sluice");
    }
    Ok(config)
}

/// `postgres host:port/database`, from the parsed config so the password never appears.
pub fn describe(config: &Config) -> String {
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

/// Why a connection ended, kept by its task: the client itself only says "connection closed".
pub type ConnectionFailure = Arc<Mutex<Option<String>>>;

/// A connected client and the task driving its connection.
pub struct Connected {
    pub client: Client,
    /// Ends by itself once the client is dropped; abort it to drop the connection at once.
    pub task: JoinHandle<()>,
    pub failure: ConnectionFailure,
}

/// Connects without TLS and spawns the connection task, which keeps the reason it ended.
pub async fn connect(config: &Config) -> Result<Connected, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let failure = ConnectionFailure::default();
    let slot = Arc::clone(&failure);
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(error_text(&e));
        }
    });
    Ok(Connected { client, task, failure })
}

/// The server's message with its SQLSTATE, detail and hint, or the whole error chain
/// (for example "connection refused").
pub fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            // "Failing row contains (…)" repeats the customer's row, which must not reach the
            // state store (data minimisation); the message and SQLSTATE already say what failed.
            if let Some(detail) = db.detail().filter(|d| !d.starts_with("Failing row contains")) {
                text.push_str("; ");
                if detail.chars().count() > MAX_DETAIL_CHARS {
                    text.extend(detail.chars().take(MAX_DETAIL_CHARS));
                    text.push('…');
                } else {
                    text.push_str(detail);
                }
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => error_chain(error),
    }
}

/// Like [`error_text`], adding why the connection closed when that is the error.
pub fn client_error_text(error: &tokio_postgres::Error, failure: &ConnectionFailure) -> String {
    let text = error_text(error);
    if error.is_closed() {
        if let Some(cause) = failure.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return format!("{text}: {cause}");
        }
    }
    text
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

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_the_password() {
        let config = parse_url("postgres://u:secret@db.example:6543/shop", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&config), "postgres db.example:6543/shop");
        let config = parse_url("postgres://u@[::1]/shop", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&config), "postgres [::1]:5432/shop");
    }

    #[test]
    fn bad_urls_say_what_was_expected() {
        assert!(parse_url("mysql://x", Duration::from_secs(1)).unwrap_err().contains(EXPECTED_URL));
        assert!(parse_url("postgres:///db", Duration::from_secs(1)).unwrap_err().contains("names no host"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
