//! Loading a project directory into a validated [`Project`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use sluice_core::{ModelQuery, SyncMode};

use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::interpolate;

mod audiences;

/// The project's main file.
pub const PROJECT_FILE: &str = "sluice.yaml";

/// Where run state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// An SQLite file (the embedded default), resolved against the project directory.
    Sqlite(PathBuf),
    /// A Postgres connection URL.
    Postgres(String),
}

/// A source or destination entry: its `type` and its other keys, decoded later by the
/// connector registry into the connector's own typed config.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    pub name: String,
    pub kind: String,
    pub options: Mapping,
    /// File the entry came from.
    pub file: String,
    /// Key path of the entry, such as `destinations.hook`.
    pub path: String,
}

impl ConnectorSpec {
    /// Decodes the options into a connector's typed config. Unknown keys, missing keys and
    /// wrong types come back as errors that name the file and the key path.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        decode_value(Value::Mapping(self.options.clone()), &self.file, &self.path)
    }

    /// An error about this entry's key `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let path = if key.is_empty() { self.path.clone() } else { format!("{}.{key}", self.path) };
        ConfigError::at(&self.file, path, message)
    }
}

/// A model: a query on a source with a primary key. Audiences are models too, with the
/// query compiled from their conditions.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub source: String,
    pub primary_key: String,
    pub query: ModelQuery,
    pub file: String,
    /// For event models: the column holding each event's time.
    pub timestamp: Option<String>,
    /// Related models by relation name (audiences follow these joins).
    pub relations: BTreeMap<String, ModelRelation>,
    /// Set when this model is an audience.
    pub audience: Option<AudienceInfo>,
}

/// A declared join from a model to a related model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRelation {
    pub model: String,
    /// (column of this model, column of the related model) pairs.
    pub join: Vec<(String, String)>,
    pub cardinality: Cardinality,
}

/// How many related rows a row of the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cardinality {
    OneToMany,
    ManyToOne,
    OneToOne,
}

/// What a model that is an audience was compiled from.
#[derive(Debug, Clone)]
pub struct AudienceInfo {
    pub parent: String,
    pub definition: sluice_sql::Audience,
    /// Split groups or priority-list entries, with the column that names them.
    pub groups: Option<sluice_sql::Groups>,
    /// Columns the compiled SQL reads, for `sluice validate` to check against the source.
    pub references: Vec<sluice_sql::ColumnRef>,
    /// The SQL dialect it was compiled for.
    pub dialect: sluice_sql::Dialect,
}

/// A sync: model → destination, with a mode and a field mapping.
#[derive(Debug, Clone)]
pub struct SyncSpec {
    pub name: String,
    pub model: String,
    pub destination: String,
    pub mode: SyncMode,
    /// Destination field → model column, in file order; `None` sends every column as is.
    pub mapping: Option<Vec<(String, String)>>,
    /// The destination object written to (`contacts`, `Contact`…), for tools that have several.
    pub object: Option<String>,
    /// The destination field that identifies records in the tool, and the model column feeding
    /// it (`match_on: { email: email }`).
    pub match_on: Option<(String, String)>,
    /// Links to records of other objects: (object, destination field, model column), from
    /// `associate: { companies: { domain: company_domain } }`.
    pub associations: Vec<(String, String, String)>,
    /// Keep each request and response of this sync's runs (bodies included) for 7 days.
    pub debug_requests: bool,
    /// For audiences with splits or a priority list: the one group this sync sends.
    pub group: Option<String>,
    pub file: String,
}

/// A loaded and validated project.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub name: String,
    pub state: StateLocation,
    pub sources: BTreeMap<String, ConnectorSpec>,
    pub destinations: BTreeMap<String, ConnectorSpec>,
    pub models: BTreeMap<String, Model>,
    pub syncs: BTreeMap<String, SyncSpec>,
    /// The member query of each (audience, group) that a sync sends.
    pub group_models: BTreeMap<(String, String), Model>,
    /// When audience windows (`within_last`) end: now, or `SLUICE_NOW`.
    pub now: chrono::NaiveDateTime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<u32>,
    name: Option<String>,
    state: Option<String>,
    #[serde(default)]
    sources: Mapping,
    #[serde(default)]
    destinations: Mapping,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    syncs: BTreeMap<String, RawSync>,
    #[serde(default)]
    audiences: Mapping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    source: String,
    primary_key: String,
    sql: Option<String>,
    sql_file: Option<String>,
    table: Option<String>,
    timestamp: Option<String>,
    #[serde(default)]
    relations: BTreeMap<String, RawRelation>,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelation {
    model: String,
    join: Mapping,
    #[serde(rename = "type")]
    cardinality: Option<Cardinality>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    model: String,
    destination: String,
    mode: SyncMode,
    mapping: Option<Mapping>,
    object: Option<String>,
    match_on: Option<Mapping>,
    associate: Option<Mapping>,
    #[serde(default)]
    debug_requests: bool,
    group: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
}

impl Project {
    /// Loads the project in `root`, reading the environment for `${VAR}` references.
    pub fn load(root: &Path) -> Result<Project, ConfigErrors> {
        Project::load_with_env(root, &|name| std::env::var(name).ok())
    }

    /// Loads the project in `root` with an explicit environment (for tests).
    pub fn load_with_env(root: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Project, ConfigErrors> {
        let main = root.join(PROJECT_FILE);
        if !main.is_file() {
            return Err(ConfigError::file(
                main.display().to_string(),
                "no project file here: expected sluice.yaml (run `sluice init` to create a project)",
            )
            .into());
        }
        let mut files = vec![main];
        for folder in ["models", "audiences", "syncs"] {
            files.extend(yaml_files(&root.join(folder)).map_err(ConfigErrors::from)?);
        }

        let mut builder = Builder::new(root);
        builder.now = match env("SLUICE_NOW") {
            Some(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(now) => now.naive_utc(),
                Err(_) => {
                    return Err(ConfigError::file(
                        "SLUICE_NOW",
                        format!("expected an RFC 3339 timestamp such as 2026-11-25T10:00:00Z, found {text:?}"),
                    )
                    .into())
                }
            },
            None => chrono::Utc::now().naive_utc(),
        };
        for path in &files {
            let shown = display_path(root, path);
            match read_file(path, &shown, env) {
                Ok(raw) => builder.add(raw, &shown, path == &files[0]),
                Err(error) => builder.errors.push(error),
            }
        }
        builder.finish()
    }

    /// The model a sync reads (for a sync of one audience group, that group's members).
    pub fn model_of(&self, sync: &SyncSpec) -> &Model {
        match &sync.group {
            Some(group) => &self.group_models[&(sync.model.clone(), group.clone())],
            None => &self.models[&sync.model],
        }
    }
}

fn yaml_files(folder: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(folder)
        .map_err(|e| ConfigError::file(folder.display().to_string(), format!("cannot list folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn read_file(path: &Path, shown: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RawFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(shown, format!("cannot read: {e}")))?;
    let mut value: Value =
        serde_yaml::from_str(&text).map_err(|e| ConfigError::file(shown, format!("not valid YAML: {e}")))?;
    if value.is_null() {
        value = Value::Mapping(Mapping::new());
    }
    if !value.is_mapping() {
        return Err(ConfigError::file(
            shown,
            "expected a mapping of keys (version, name, sources, models, …) at the top level",
        ));
    }
    interpolate_tree(&mut value, "", &|path, error| ConfigError::at(shown, path, error), env)?;
    decode_value(value, shown, "")
}

fn interpolate_tree(
    value: &mut Value,
    path: &str,
    fail: &dyn Fn(&str, String) -> ConfigError,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains('$') => {
            *text = interpolate(text, env).map_err(|error| fail(path, error))?;
        }
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let key = key_text(key);
                let child_path = if path.is_empty() { key } else { format!("{path}.{key}") };
                interpolate_tree(child, &child_path, fail, env)?;
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                interpolate_tree(child, &format!("{path}[{index}]"), fail, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// Deserializes `value` into `T`, reporting the key path of the first problem.
fn decode_value<T: DeserializeOwned>(value: Value, file: &str, base: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let path = match (base.is_empty(), inner == ".") {
            (_, true) => base.to_string(),
            (true, false) => inner,
            (false, false) => format!("{base}.{inner}"),
        };
        ConfigError::at(file, path, expected_message(&error.inner().to_string()))
    })
}

/// Makes serde's wording say what was expected in project-file terms.
fn expected_message(message: &str) -> String {
    let message = message.replace("unknown field", "unknown key").replace("missing field", "missing key");
    message.replace(" at line 1 column 1", "")
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

struct Builder<'a> {
    root: &'a Path,
    errors: Vec<ConfigError>,
    name: Option<String>,
    state: Option<(String, String)>,
    sources: BTreeMap<String, ConnectorSpec>,
    destinations: BTreeMap<String, ConnectorSpec>,
    models: BTreeMap<String, Model>,
    syncs: BTreeMap<String, SyncSpec>,
    audiences: BTreeMap<String, (sluice_sql::Audience, String)>,
    now: chrono::NaiveDateTime,
    main_file: String,
}

impl<'a> Builder<'a> {
    fn new(root: &'a Path) -> Self {
        Builder {
            root,
            errors: Vec::new(),
            name: None,
            state: None,
            sources: BTreeMap::new(),
            destinations: BTreeMap::new(),
            models: BTreeMap::new(),
            syncs: BTreeMap::new(),
            audiences: BTreeMap::new(),
            now: chrono::NaiveDateTime::default(),
            main_file: PROJECT_FILE.to_string(),
        }
    }

    fn add(&mut self, raw: RawFile, file: &str, is_main: bool) {
        if is_main {
            self.main_file = file.to_string();
            match raw.version {
                Some(1) => {}
                Some(other) => self.errors.push(ConfigError::at(file, "version", format!("expected 1, found {other}"))),
                None => self.errors.push(ConfigError::at(file, "version", "missing key: expected `version: 1`")),
            }
            self.name = raw.name;
            self.state = raw.state.map(|s| (file.to_string(), s));
        } else {
            for (key, present) in
                [("version", raw.version.is_some()), ("name", raw.name.is_some()), ("state", raw.state.is_some())]
            {
                if present {
                    self.errors.push(ConfigError::at(file, key, format!("only {PROJECT_FILE} may set `{key}`")));
                }
            }
        }
        for (section, entries) in [("sources", raw.sources), ("destinations", raw.destinations)] {
            for (key, value) in entries {
                self.add_connector(section, key, value, file);
            }
        }
        for (name, model) in raw.models {
            self.add_model(name, model, file);
        }
        for (name, sync) in raw.syncs {
            self.add_sync(name, sync, file);
        }
        for (name, definition) in raw.audiences {
            self.add_audience(key_text(&name), definition, file);
        }
    }

    fn add_audience(&mut self, name: String, definition: Value, file: &str) {
        let path = format!("audiences.{name}");
        let taken = self.audiences.get(&name).map(|(_, f)| f.clone());
        if !self.check_name(file, &path, &name, taken.as_deref()) {
            return;
        }
        let json = match serde_json::to_value(&definition) {
            Ok(json) => json,
            Err(error) => {
                self.errors.push(ConfigError::at(file, &path, format!("cannot read the audience: {error}")));
                return;
            }
        };
        match sluice_sql::parse_audience(&name, &json) {
            Ok(audience) => {
                self.audiences.insert(name, (audience, file.to_string()));
            }
            Err(error) => self.errors.push(ConfigError::at(file, join_path(&path, &error.path), error.message)),
        }
    }

    fn check_name(&mut self, file: &str, path: &str, name: &str, taken_in: Option<&str>) -> bool {
        if !is_valid_name(name) {
            self.errors.push(ConfigError::at(file, path, "names may only use letters, digits, `_` and `-`"));
            return false;
        }
        if let Some(other) = taken_in {
            self.errors.push(ConfigError::at(file, path, format!("defined twice: also defined in {other}")));
            return false;
        }
        true
    }

    fn add_connector(&mut self, section: &str, key: Value, value: Value, file: &str) {
        let name = key_text(&key);
        let path = format!("{section}.{name}");
        let existing = if section == "sources" { &self.sources } else { &self.destinations };
        let taken = existing.get(&name).map(|c| c.file.clone());
        if !self.check_name(file, &path, &name, taken.as_deref()) {
            return;
        }
        let Value::Mapping(mut options) = value else {
            self.errors.push(ConfigError::at(file, &path, "expected a mapping with a `type` key"));
            return;
        };
        let kind = match options.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => {
                self.errors.push(ConfigError::at(file, format!("{path}.type"), "expected a string such as `postgres`"));
                return;
            }
            None => {
                self.errors.push(ConfigError::at(file, &path, "missing key `type`"));
                return;
            }
        };
        let spec = ConnectorSpec { name: name.clone(), kind, options, file: file.to_string(), path };
        if section == "sources" {
            self.sources.insert(name, spec);
        } else {
            self.destinations.insert(name, spec);
        }
    }

    fn add_model(&mut self, name: String, raw: RawModel, file: &str) {
        let path = format!("models.{name}");
        let taken = self.models.get(&name).map(|m| m.file.clone());
        if !self.check_name(file, &path, &name, taken.as_deref()) {
            return;
        }
        let query = match (raw.sql, raw.sql_file, raw.table) {
            (Some(sql), None, None) => ModelQuery::Sql(sql),
            (None, Some(sql_file), None) => match std::fs::read_to_string(self.root.join(&sql_file)) {
                Ok(sql) => ModelQuery::Sql(sql),
                Err(error) => {
                    self.errors.push(ConfigError::at(
                        file,
                        format!("{path}.sql_file"),
                        format!("cannot read {sql_file} (relative to the project directory): {error}"),
                    ));
                    return;
                }
            },
            (None, None, Some(table)) => ModelQuery::Table(table),
            _ => {
                self.errors.push(ConfigError::at(file, &path, "expected exactly one of `sql`, `sql_file` or `table`"));
                return;
            }
        };
        if let ModelQuery::Sql(sql) = &query {
            if sql.trim().is_empty() {
                self.errors.push(ConfigError::at(file, &path, "the model's SQL is empty"));
                return;
            }
        }
        if raw.primary_key.trim().is_empty() {
            self.errors.push(ConfigError::at(file, format!("{path}.primary_key"), "expected a column name"));
            return;
        }
        let mut relations = BTreeMap::new();
        for (relation, raw_relation) in raw.relations {
            let at = format!("{path}.relations.{relation}");
            if !is_valid_name(&relation) {
                self.errors.push(ConfigError::at(file, &at, "names may only use letters, digits, `_` and `-`"));
                continue;
            }
            let join = self.field_pairs(raw_relation.join, file, &format!("{at}.join"));
            if join.is_empty() {
                self.errors.push(ConfigError::at(
                    file,
                    format!("{at}.join"),
                    "expected at least one `this_model_column: related_model_column` pair, such as `{ user_id: user_id }`",
                ));
                continue;
            }
            let cardinality = raw_relation.cardinality.unwrap_or(Cardinality::OneToMany);
            relations.insert(relation, ModelRelation { model: raw_relation.model, join, cardinality });
        }
        if matches!(&raw.timestamp, Some(ts) if ts.trim().is_empty()) {
            self.errors.push(ConfigError::at(file, format!("{path}.timestamp"), "expected a column name"));
        }
        self.models.insert(
            name.clone(),
            Model {
                name,
                source: raw.source,
                primary_key: raw.primary_key,
                query,
                file: file.to_string(),
                timestamp: raw.timestamp,
                relations,
                audience: None,
            },
        );
    }

    fn add_sync(&mut self, name: String, raw: RawSync, file: &str) {
        let path = format!("syncs.{name}");
        let taken = self.syncs.get(&name).map(|s| s.file.clone());
        if !self.check_name(file, &path, &name, taken.as_deref()) {
            return;
        }
        let mapping = raw.mapping.map(|entries| {
            let pairs = self.field_pairs(entries, file, &format!("{path}.mapping"));
            if pairs.is_empty() {
                self.errors.push(ConfigError::at(
                    file,
                    format!("{path}.mapping"),
                    "the mapping is empty: map at least one field, or leave `mapping` out to send every column",
                ));
            }
            pairs
        });
        let match_on = raw.match_on.and_then(|entries| {
            let mut pairs = self.field_pairs(entries, file, &format!("{path}.match_on"));
            if pairs.len() != 1 {
                self.errors.push(ConfigError::at(
                    file,
                    format!("{path}.match_on"),
                    "expected exactly one `destination_field: model_column` pair, such as `{ email: email }`",
                ));
            }
            pairs.pop()
        });
        let mut associations = Vec::new();
        for (object, target) in raw.associate.unwrap_or_default() {
            let object = key_text(&object);
            let at = format!("{path}.associate.{object}");
            let pairs = match target {
                Value::Mapping(entries) => self.field_pairs(entries, file, &at),
                _ => Vec::new(),
            };
            match pairs.as_slice() {
                [(field, column)] => associations.push((object, field.clone(), column.clone())),
                _ => self.errors.push(ConfigError::at(
                    file,
                    at,
                    "expected one `field: model_column` pair naming the other object's unique field, such as `companies: { domain: company_domain }`",
                )),
            }
        }
        if matches!(&raw.object, Some(object) if object.trim().is_empty()) {
            self.errors.push(ConfigError::at(file, format!("{path}.object"), "expected an object name"));
        }
        self.syncs.insert(
            name.clone(),
            SyncSpec {
                name,
                model: raw.model,
                destination: raw.destination,
                mode: raw.mode,
                mapping,
                object: raw.object,
                match_on,
                associations,
                debug_requests: raw.debug_requests,
                group: raw.group,
                file: file.to_string(),
            },
        );
    }

    /// Reads `destination_field: model_column` pairs, reporting entries that are not.
    fn field_pairs(&mut self, entries: Mapping, file: &str, path: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::with_capacity(entries.len());
        for (field, column) in entries {
            let field = key_text(&field);
            match column {
                Value::String(column) if !column.is_empty() && !field.is_empty() => pairs.push((field, column)),
                _ => self.errors.push(ConfigError::at(
                    file,
                    format!("{path}.{field}"),
                    "expected `destination_field: model_column` with a column name",
                )),
            }
        }
        pairs
    }

    fn finish(mut self) -> Result<Project, ConfigErrors> {
        self.check_relations();
        self.compile_audiences();
        let group_models = self.compile_groups();
        for model in self.models.values() {
            if !self.sources.contains_key(&model.source) {
                self.errors.push(ConfigError::at(
                    &model.file,
                    format!("models.{}.source", model.name),
                    format!("no source named `{}`: expected one of {}", model.source, names(&self.sources)),
                ));
            }
        }
        for sync in self.syncs.values() {
            if !self.models.contains_key(&sync.model) {
                self.errors.push(ConfigError::at(
                    &sync.file,
                    format!("syncs.{}.model", sync.name),
                    format!("no model named `{}`: expected one of {}", sync.model, names(&self.models)),
                ));
            }
            if !self.destinations.contains_key(&sync.destination) {
                self.errors.push(ConfigError::at(
                    &sync.file,
                    format!("syncs.{}.destination", sync.name),
                    format!(
                        "no destination named `{}`: expected one of {}",
                        sync.destination,
                        names(&self.destinations)
                    ),
                ));
            }
        }
        let state = match self.state.take() {
            None => StateLocation::Sqlite(self.root.join(".sluice/state.db")),
            Some((file, text)) => match parse_state(&text, self.root) {
                Some(state) => state,
                None => {
                    self.errors.push(ConfigError::at(
                        file,
                        "state",
                        format!("expected `sqlite:PATH` or a `postgres://` URL, found {text:?}"),
                    ));
                    StateLocation::Sqlite(PathBuf::new())
                }
            },
        };
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        let name = self.name.unwrap_or_else(|| {
            self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sluice".into())
        });
        let _ = &self.main_file;
        Ok(Project {
            root: self.root.to_path_buf(),
            name,
            state,
            sources: self.sources,
            destinations: self.destinations,
            models: self.models,
            syncs: self.syncs,
            group_models,
            now: self.now,
        })
    }
}

fn join_path(base: &str, inner: &str) -> String {
    if inner.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{inner}")
    }
}

fn names<V>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "(none defined)".to_string();
    }
    map.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

fn parse_state(text: &str, root: &Path) -> Option<StateLocation> {
    if let Some(path) = text.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return None;
        }
        return Some(StateLocation::Sqlite(root.join(path)));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Some(StateLocation::Postgres(text.to_string()));
    }
    None
}
