//! Sources: one module per warehouse, each behind a cargo feature, and the registry that
//! maps a project's `type:` to the module.

use std::path::Path;

use sluice_config::{ConfigError, ConnectorSpec};
use sluice_core::Source;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Source types this build supports.
pub fn supported_types() -> Vec<&'static str> {
    vec![
        #[cfg(feature = "postgres")]
        "postgres",
        #[cfg(feature = "sqlite")]
        "sqlite",
    ]
}

/// Builds a source from its project entry. Pure: no connection is made.
pub fn build(spec: &ConnectorSpec, project_root: &Path) -> Result<Box<dyn Source>, ConfigError> {
    let _ = project_root;
    match spec.kind.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config: sqlite::SqliteSourceConfig = spec.decode()?;
            Ok(Box::new(sqlite::SqliteSource::new(project_root.join(&config.path))))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let config: postgres::PostgresSourceConfig = spec.decode()?;
            let source = postgres::PostgresSource::new(config).map_err(|message| spec.error("url", message))?;
            Ok(Box::new(source))
        }
        other => Err(spec
            .error("type", format!("unknown source type `{other}`: expected one of {}", supported_types().join(", ")))),
    }
}
