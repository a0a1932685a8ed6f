//! `sluice destinations describe`, its cache, and the offline mapping check in `validate`.

use sluice_core::names::edit_distance;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_config::{ConfigError, SyncSpec};
use sluice_core::ObjectDescription;

use crate::output::print_table;
use crate::workspace::Workspace;

/// Where the last discovery of a destination is kept, for offline `validate`.
pub fn cache_path(workspace: &Workspace, destination: &str) -> PathBuf {
    workspace.project.root.join(".sluice/discovery").join(format!("{destination}.json"))
}

/// `sluice destinations describe NAME [OBJECT]`
pub async fn describe(project: &Path, name: &str, object: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    let destination = workspace.destination(name)?;
    let objects = destination.discover(object).await.with_context(|| format!("destination `{name}`"))?;
    let objects: Vec<ObjectDescription> = match object {
        Some(wanted) => {
            let found: Vec<ObjectDescription> = objects.iter().filter(|o| o.name == wanted).cloned().collect();
            if found.is_empty() {
                let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
                anyhow::bail!("destination `{name}` has no object `{wanted}`: expected one of {}", names.join(", "));
            }
            found
        }
        None => objects,
    };
    if object.is_none() {
        let path = cache_path(&workspace, name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&objects)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&objects)?);
        return Ok(0);
    }
    for description in &objects {
        let modes: Vec<&str> = description.modes.iter().map(|m| m.as_str()).collect();
        println!("{} {} (modes: {})", destination.describe(), description.name, modes.join(", "));
        if let Some(note) = &description.note {
            println!("  {note}");
        }
        if !description.fields.is_empty() {
            let rows: Vec<Vec<String>> = description
                .fields
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.field_type.clone(),
                        if f.can_match_on { "yes" } else { "" }.to_string(),
                        if f.required { "yes" } else { "" }.to_string(),
                    ]
                })
                .collect();
            print_table(&["FIELD", "TYPE", "MATCH KEY", "REQUIRED"], &rows);
        }
        println!();
    }
    Ok(0)
}

/// Checks each sync's mapping against the cached discovery of its destination, if any.
pub fn check_mappings(workspace: &Workspace) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for sync in workspace.project.syncs.values() {
        let Ok(text) = std::fs::read(cache_path(workspace, &sync.destination)) else { continue };
        let Ok(objects) = serde_json::from_slice::<Vec<ObjectDescription>>(&text) else { continue };
        errors.extend(check_sync(sync, &objects));
    }
    errors
}

fn check_sync(sync: &SyncSpec, objects: &[ObjectDescription]) -> Vec<ConfigError> {
    let at = |key: &str, message: String| ConfigError::at(&sync.file, format!("syncs.{}.{key}", sync.name), message);
    let object = match (&sync.object, objects) {
        (Some(name), _) => match objects.iter().find(|o| &o.name == name) {
            Some(object) => object,
            None => {
                let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
                return vec![at("object", format!("no object `{name}`{}", suggestion(name, &names)))];
            }
        },
        (None, [only]) => only,
        (None, _) => return Vec::new(),
    };
    let mut errors = Vec::new();
    if !object.modes.contains(&sync.mode) {
        let modes: Vec<&str> = object.modes.iter().map(|m| m.as_str()).collect();
        errors.push(at(
            "mode",
            format!(
                "{} does not support mode `{}`: expected one of {}",
                object.name,
                sync.mode.as_str(),
                modes.join(", ")
            ),
        ));
    }
    if object.open_schema {
        return errors;
    }
    let names: Vec<&str> = object.fields.iter().map(|f| f.name.as_str()).collect();
    for (field, _) in sync.mapping.iter().flatten() {
        if !names.contains(&field.as_str()) {
            errors.push(at(
                &format!("mapping.{field}"),
                format!("{} has no field `{field}`{}", object.name, suggestion(field, &names)),
            ));
        }
    }
    if let Some((field, _)) = &sync.match_on {
        match object.fields.iter().find(|f| &f.name == field) {
            None => errors.push(at(
                &format!("match_on.{field}"),
                format!("{} has no field `{field}`{}", object.name, suggestion(field, &names)),
            )),
            Some(description) if !description.can_match_on => errors.push(at(
                &format!("match_on.{field}"),
                format!("`{field}` of {} cannot identify records (it is not unique)", object.name),
            )),
            Some(_) => {}
        }
    }
    errors
}

/// ": did you mean `x` or `y`?" for names within a small edit distance, or nothing.
fn suggestion(wanted: &str, names: &[&str]) -> String {
    let wanted_lower = wanted.to_lowercase();
    let mut close: Vec<(usize, &str)> = names
        .iter()
        .map(|name| (edit_distance(&wanted_lower, &name.to_lowercase()), *name))
        .filter(|(distance, name)| *distance <= 2.max(wanted.len() / 4) || name.to_lowercase().contains(&wanted_lower))
        .collect();
    close.sort();
    let close: Vec<String> = close.iter().take(3).map(|(_, name)| format!("`{name}`")).collect();
    if close.is_empty() {
        String::new()
    } else {
        format!(": did you mean {}?", close.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        let names = ["email", "firstname", "lastname", "phone"];
        assert_eq!(suggestion("emial", &names), ": did you mean `email`?");
        assert_eq!(suggestion("first_name", &names), ": did you mean `firstname`?");
        assert_eq!(suggestion("zzzzzz", &names), "");
    }
}
