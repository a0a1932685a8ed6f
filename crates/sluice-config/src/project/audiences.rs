//! Audiences in a project: relations between models, and each audience compiled into a model
//! in its parent's SQL dialect.

use std::collections::BTreeMap;

use sluice_sql::{Compiler, Dialect, ModelSchema, Relation, Schema};

use super::{join_path, AudienceInfo, Builder, Model, Project};
use crate::error::ConfigError;

impl Builder<'_> {
    /// Every relation names an existing model on the same source.
    pub(super) fn check_relations(&mut self) {
        let mut errors = Vec::new();
        for model in self.models.values() {
            for (name, relation) in &model.relations {
                let at = format!("models.{}.relations.{name}.model", model.name);
                match self.models.get(&relation.model) {
                    None => errors.push(ConfigError::at(
                        &model.file,
                        at,
                        format!("no model named `{}`: expected one of {}", relation.model, super::names(&self.models)),
                    )),
                    Some(other) if other.source != model.source => errors.push(ConfigError::at(
                        &model.file,
                        at,
                        format!(
                            "`{}` reads source `{}` but `{}` reads `{}`: related models must live on the same source to be joined",
                            relation.model, other.source, model.name, model.source
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        self.errors.extend(errors);
    }

    fn schema(&self) -> Schema {
        schema_of(&self.models)
    }

    /// The dialect of the parent model's source.
    fn dialect_of(&self, parent: &str) -> Option<Result<Dialect, String>> {
        let model = self.models.get(parent)?;
        let source = self.sources.get(&model.source)?;
        Some(Dialect::for_source_type(&source.kind))
    }

    /// Compiles every audience into a model named like the audience.
    pub(super) fn compile_audiences(&mut self) {
        let schema = self.schema();
        let definitions: BTreeMap<String, sluice_sql::Audience> =
            self.audiences.iter().map(|(name, (audience, _))| (name.clone(), audience.clone())).collect();
        let mut compiled = Vec::new();
        for (name, (audience, file)) in &self.audiences {
            let path = format!("audiences.{name}");
            if let Some(model) = self.models.get(name) {
                self.errors.push(ConfigError::at(
                    file,
                    &path,
                    format!("a model is already named `{name}` (in {}): audiences and models share names", model.file),
                ));
                continue;
            }
            let dialect = match self.dialect_of(&audience.parent) {
                None => {
                    self.errors.push(ConfigError::at(
                        file,
                        format!("{path}.parent"),
                        format!("no model named `{}`: expected one of {}", audience.parent, super::names(&self.models)),
                    ));
                    continue;
                }
                Some(Err(message)) => {
                    self.errors.push(ConfigError::at(file, format!("{path}.parent"), message));
                    continue;
                }
                Some(Ok(dialect)) => dialect,
            };
            let compiler = Compiler::new(&schema, &definitions, dialect, self.now);
            match compiler.compile(name) {
                Ok(result) => {
                    let parent = &self.models[&audience.parent];
                    let info = AudienceInfo {
                        parent: audience.parent.clone(),
                        definition: audience.clone(),
                        groups: result.groups,
                        references: result.references,
                        dialect,
                    };
                    compiled.push(Model {
                        name: name.clone(),
                        source: parent.source.clone(),
                        primary_key: parent.primary_key.clone(),
                        query: sluice_core::ModelQuery::Sql(result.sql),
                        file: file.clone(),
                        timestamp: None,
                        relations: BTreeMap::new(),
                        audience: Some(info),
                    });
                }
                Err(error) => self.errors.push(ConfigError::at(file, join_path(&path, &error.path), error.message)),
            }
        }
        for model in compiled {
            self.models.insert(model.name.clone(), model);
        }
    }

    /// The member query of each (audience, group) a sync sends.
    pub(super) fn compile_groups(&mut self) -> BTreeMap<(String, String), Model> {
        let schema = self.schema();
        let definitions: BTreeMap<String, sluice_sql::Audience> =
            self.audiences.iter().map(|(name, (audience, _))| (name.clone(), audience.clone())).collect();
        let mut groups = BTreeMap::new();
        for sync in self.syncs.values() {
            let Some(group) = &sync.group else { continue };
            let at = format!("syncs.{}.group", sync.name);
            let Some(model) = self.models.get(&sync.model) else { continue };
            let Some(info) = &model.audience else {
                self.errors.push(ConfigError::at(
                    &sync.file,
                    at,
                    format!(
                        "`{}` is a model, not an audience: only audiences with splits or a priority list have groups",
                        sync.model
                    ),
                ));
                continue;
            };
            let compiler = Compiler::new(&schema, &definitions, info.dialect, self.now);
            match compiler.compile_group(&sync.model, group) {
                Ok(result) => {
                    let member_model = Model {
                        name: format!("{} (group {group})", sync.model),
                        query: sluice_core::ModelQuery::Sql(result.sql),
                        ..model.clone()
                    };
                    groups.insert((sync.model.clone(), group.clone()), member_model);
                }
                Err(error) => self.errors.push(ConfigError::at(&sync.file, at, error.message)),
            }
        }
        groups
    }
}

/// The compiler's view of the project's models (audiences excluded).
fn schema_of(models: &BTreeMap<String, Model>) -> Schema {
    let models = models
        .iter()
        .filter(|(_, model)| model.audience.is_none())
        .map(|(name, model)| {
            let relations = model
                .relations
                .iter()
                .map(|(name, r)| (name.clone(), Relation { model: r.model.clone(), on: r.join.clone() }))
                .collect();
            let schema = ModelSchema {
                query: model.query.clone(),
                primary_key: model.primary_key.clone(),
                timestamp: model.timestamp.clone(),
                relations,
            };
            (name.clone(), schema)
        })
        .collect();
    Schema { models }
}

impl Project {
    /// Runs `f` with a compiler for the dialect of audience `name`'s source.
    fn with_compiler<T>(
        &self,
        name: &str,
        f: impl FnOnce(&Compiler<'_>) -> Result<T, sluice_sql::SqlError>,
    ) -> Result<T, String> {
        let info = self
            .models
            .get(name)
            .and_then(|m| m.audience.as_ref())
            .ok_or_else(|| format!("no audience named `{name}`"))?;
        let schema = schema_of(&self.models);
        let definitions: BTreeMap<String, sluice_sql::Audience> = self
            .models
            .values()
            .filter_map(|m| m.audience.as_ref().map(|i| (m.name.clone(), i.definition.clone())))
            .collect();
        let compiler = Compiler::new(&schema, &definitions, info.dialect, self.now);
        f(&compiler).map_err(|e| e.message)
    }

    /// One row: parent rows, members of `a`, members of `b`, members of both.
    pub fn audience_overlap_sql(&self, a: &str, b: &str) -> Result<String, String> {
        self.with_compiler(a, |compiler| compiler.overlap(a, b))
    }

    /// The members of one split group or priority-list entry of audience `name`.
    pub fn audience_group_sql(&self, name: &str, group: &str) -> Result<String, String> {
        self.with_compiler(name, |compiler| compiler.compile_group(name, group).map(|c| c.sql))
    }
}
