//! A loaded project and the connectors and state store built from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use sluice_config::{ConfigError, ConfigErrors, Project, StateLocation, SyncSpec};
use sluice_core::{CredentialStore, Destination, Source};
use sluice_engine::SyncJob;
use sluice_state::secrets::{SealedCredentials, SecretBox};
use sluice_state::sqlite::SqliteStateStore;
use sluice_state::StateStore;

/// Rows per Arrow batch read from sources.
const BATCH_ROWS: usize = 8192;

/// A project plus the means to build what it describes.
pub struct Workspace {
    pub project: Project,
    /// `--debug-requests`: capture requests of every sync run by this command.
    pub debug_requests: bool,
}

/// The connectors one sync needs, owned so a [`SyncJob`] can borrow them.
pub struct SyncParts {
    pub source: Box<dyn Source>,
    pub destination: Box<dyn Destination>,
}

impl Workspace {
    /// Loads and validates the project files in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Workspace> {
        // An absolute root keeps destination identities (file paths) the same whichever
        // folder the command is run from.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let project = Project::load(&dir).map_err(|errors| anyhow!("{errors}"))?;
        Ok(Workspace { project, debug_requests: false })
    }

    /// Decodes every source and destination entry into its typed config (no connections),
    /// collecting every problem.
    pub fn check_connectors(&self) -> Result<(), ConfigErrors> {
        let root = &self.project.root;
        let mut errors = Vec::new();
        for spec in self.project.sources.values() {
            if let Err(error) = sluice_sources::build(spec, root) {
                errors.push(error);
            }
        }
        for spec in self.project.destinations.values() {
            match sluice_destinations::build(spec, root) {
                Err(error) => errors.push(error),
                Ok(destination) => {
                    for sync in self.project.syncs.values().filter(|s| s.destination == spec.name) {
                        let unsupported = |key: &str| {
                            ConfigError::at(
                                &sync.file,
                                format!("syncs.{}.{key}", sync.name),
                                format!("destinations of type `{}` take no `{key}`: remove it", spec.kind),
                            )
                        };
                        if sync.object.is_some() && !destination.accepts_object() {
                            errors.push(unsupported("object"));
                        }
                        if sync.match_on.is_some() && !destination.accepts_match_on() {
                            errors.push(unsupported("match_on"));
                        }
                        if !sync.associations.is_empty() && !destination.accepts_associations() {
                            errors.push(unsupported("associate"));
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Builds the named source.
    pub fn source(&self, name: &str) -> anyhow::Result<Box<dyn Source>> {
        let spec = self.project.sources.get(name).ok_or_else(|| anyhow!("no source named `{name}`"))?;
        Ok(sluice_sources::build(spec, &self.project.root)?)
    }

    /// Builds the named destination.
    pub fn destination(&self, name: &str) -> anyhow::Result<Box<dyn Destination>> {
        let spec = self.project.destinations.get(name).ok_or_else(|| anyhow!("no destination named `{name}`"))?;
        Ok(sluice_destinations::build(spec, &self.project.root)?)
    }

    /// The sync named `name`, or an error listing the project's syncs.
    pub fn sync(&self, name: &str) -> anyhow::Result<&SyncSpec> {
        self.project.syncs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.project.syncs.keys().map(String::as_str).collect();
            anyhow!("no sync named `{name}` in this project: expected one of {}", list_or_none(&known))
        })
    }

    /// Opens the state store the project names.
    pub async fn state(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        Ok(match &self.project.state {
            StateLocation::Sqlite(path) => Arc::new(SqliteStateStore::open(path)?),
            #[cfg(feature = "postgres")]
            StateLocation::Postgres(url) => Arc::new(sluice_state::postgres::PostgresStateStore::open(url).await?),
            #[cfg(not(feature = "postgres"))]
            StateLocation::Postgres(_) => {
                anyhow::bail!("this build of sluice has no Postgres support: rebuild with `--features postgres`")
            }
        })
    }

    /// Builds the source and destination of a sync. With a state store, OAuth destinations
    /// keep refreshed tokens in it, sealed with the project's key.
    pub fn parts(&self, sync: &SyncSpec, store: Option<&Arc<dyn StateStore>>) -> anyhow::Result<SyncParts> {
        let model = self.project.model_of(sync);
        let context = || format!("sync `{}`", sync.name);
        let source = self.source(&model.source).with_context(context)?;
        let spec = self
            .project
            .destinations
            .get(&sync.destination)
            .ok_or_else(|| anyhow!("no destination named `{}`", sync.destination))?;
        // Only OAuth destinations need the key, so other projects never get a key file.
        let credentials: Option<Arc<dyn CredentialStore>> = match store {
            Some(store) if spec.options.contains_key("oauth") => {
                let secrets = SecretBox::load(&self.project.root.join(".sluice/secret.key"))?;
                Some(Arc::new(SealedCredentials::new(store.clone(), secrets)))
            }
            _ => None,
        };
        let destination =
            sluice_destinations::build_with(spec, &self.project.root, credentials).with_context(context)?;
        Ok(SyncParts { source, destination })
    }

    /// Where runs spill their planned changes.
    pub fn spill_dir(&self) -> PathBuf {
        self.project.root.join(".sluice/tmp")
    }

    /// The engine's view of one sync.
    pub fn job<'a>(&'a self, sync: &'a SyncSpec, parts: &'a SyncParts, store: &'a dyn StateStore) -> SyncJob<'a> {
        let model = self.project.model_of(sync);
        SyncJob {
            sync: &sync.name,
            model: &model.name,
            mode: sync.mode,
            primary_key: &model.primary_key,
            mapping: sync.mapping.as_deref(),
            object: sync.object.as_deref(),
            match_on: sync.match_on.as_ref().map(|(field, column)| (field.as_str(), column.as_str())),
            associations: &sync.associations,
            query: &model.query,
            source: parts.source.as_ref(),
            destination: parts.destination.as_ref(),
            store,
            spill_dir: self.spill_dir(),
            batch_rows: BATCH_ROWS,
            debug_requests: self.debug_requests || sync.debug_requests,
        }
    }
}

/// `a, b, c`, or `(none)`.
pub fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    }
}
