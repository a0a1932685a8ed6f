//! `sluice audiences …`: size, sample and breakdown of an audience, overlaps, the compiled SQL,
//! and the source-side checks `sluice validate` runs on declared columns and joins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, Context};
use clap::Subcommand;
use futures::StreamExt;
use sluice_config::{AudienceInfo, ConfigError, Model};
use sluice_core::{value_at, ModelQuery, ScanOptions, Value};

use crate::commands::EXIT_OK;
use crate::output::{print_table, truncate};
use crate::workspace::{list_or_none, Workspace};

#[derive(Subcommand)]
pub enum AudiencesCommand {
    /// List the project's audiences.
    List,
    /// The audience's size, a sample of members and a breakdown by one column.
    Preview {
        name: String,
        /// Break members down by this column (default: the split or priority column, if any).
        #[arg(long, value_name = "COLUMN")]
        by: Option<String>,
        /// Sample members to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How many parent rows are in A, in B, and in both.
    Overlap {
        a: String,
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the SQL an audience compiles to (for one group with `--group`).
    Sql {
        name: String,
        #[arg(long)]
        group: Option<String>,
    },
}

pub async fn run(project: &Path, command: AudiencesCommand) -> anyhow::Result<u8> {
    let workspace = Workspace::load(project)?;
    match command {
        AudiencesCommand::List => list(&workspace),
        AudiencesCommand::Preview { name, by, limit, json } => preview(&workspace, &name, by, limit, json).await,
        AudiencesCommand::Overlap { a, b, json } => overlap(&workspace, &a, &b, json).await,
        AudiencesCommand::Sql { name, group } => sql(&workspace, &name, group.as_deref()),
    }
}

fn audience<'w>(workspace: &'w Workspace, name: &str) -> anyhow::Result<(&'w Model, &'w AudienceInfo)> {
    match workspace.project.models.get(name) {
        Some(model) => match &model.audience {
            Some(info) => Ok((model, info)),
            None => Err(anyhow!("`{name}` is a model, not an audience (see `sluice preview {name}`)")),
        },
        None => {
            let known: Vec<&str> =
                workspace.project.models.values().filter(|m| m.audience.is_some()).map(|m| m.name.as_str()).collect();
            Err(anyhow!("no audience named `{name}`: expected one of {}", list_or_none(&known)))
        }
    }
}

fn list(workspace: &Workspace) -> anyhow::Result<u8> {
    let rows: Vec<Vec<String>> = workspace
        .project
        .models
        .values()
        .filter_map(|m| m.audience.as_ref().map(|info| (m, info)))
        .map(|(model, info)| {
            let groups = info
                .groups
                .as_ref()
                .map(|g| format!("{}: {}", g.column, g.names.join(", ")))
                .unwrap_or_else(|| "-".into());
            vec![model.name.clone(), info.parent.clone(), model.source.clone(), groups, model.file.clone()]
        })
        .collect();
    print_table(&["AUDIENCE", "PARENT", "SOURCE", "GROUPS", "FILE"], &rows);
    Ok(EXIT_OK)
}

/// Runs `sql` on the model's source and returns the column names and rows.
async fn query(
    workspace: &Workspace,
    source_name: &str,
    sql: String,
    limit: Option<usize>,
) -> anyhow::Result<(Vec<String>, Vec<Vec<Value>>)> {
    let source = workspace.source(source_name)?;
    let options = ScanOptions { batch_rows: limit.unwrap_or(1024).clamp(1, 8192), limit };
    let query = ModelQuery::Sql(sql);
    let mut stream = source.scan(&query, options).await.with_context(|| source.describe())?;
    let headers = stream.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    while let Some(batch) = stream.batches.next().await {
        let batch = batch.with_context(|| source.describe())?;
        for row in 0..batch.num_rows() {
            rows.push(
                stream
                    .schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, array)| value_at(field, array.as_ref(), row))
                    .collect(),
            );
        }
    }
    Ok((headers, rows))
}

fn integer(value: Option<&Value>) -> u64 {
    value.and_then(Value::to_text).and_then(|t| t.parse::<f64>().ok()).map(|n| n as u64).unwrap_or(0)
}

fn text(value: &Value) -> String {
    value.to_text().unwrap_or_else(|| "null".into())
}

async fn preview(
    workspace: &Workspace,
    name: &str,
    by: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<u8> {
    let (model, info) = audience(workspace, name)?;
    let d = info.dialect;
    let ModelQuery::Sql(members) = &model.query else { unreachable!("audiences compile to SQL") };
    let parent = &workspace.project.models[&info.parent];
    let count_sql = format!(
        "SELECT (SELECT COUNT(*) FROM ({members}) AS {}) AS {}, (SELECT COUNT(*) FROM {} AS {}) AS {}",
        d.ident("m"),
        d.ident("members"),
        d.relation(&parent.query),
        d.ident("p"),
        d.ident("parent_rows")
    );
    let (_, counts) = query(workspace, &model.source, count_sql, None).await.context("counting members")?;
    let size = integer(counts.first().and_then(|r| r.first()));
    let total = integer(counts.first().and_then(|r| r.get(1)));
    let (headers, sample) = query(workspace, &model.source, members.clone(), Some(limit)).await?;
    let by = by.or_else(|| info.groups.as_ref().map(|g| g.column.clone()));
    let breakdown = match &by {
        Some(column) => {
            if !headers.contains(column) {
                return Err(anyhow!(
                    "audience `{name}` has no column `{column}` to break down by: its columns are {}",
                    headers.join(", ")
                ));
            }
            let sql = format!(
                "SELECT {c} AS {v}, COUNT(*) AS {n} FROM ({members}) AS {m} GROUP BY {c} ORDER BY COUNT(*) DESC, {c} LIMIT 20",
                c = d.ident(column),
                v = d.ident("value"),
                n = d.ident("members"),
                m = d.ident("m"),
            );
            Some(query(workspace, &model.source, sql, None).await?.1)
        }
        None => None,
    };
    if json {
        let sample_json: Vec<serde_json::Value> = sample
            .iter()
            .map(|row| serde_json::Value::Object(headers.iter().cloned().zip(row.iter().map(Value::to_json)).collect()))
            .collect();
        let breakdown_json = breakdown.as_ref().map(|rows| {
            rows.iter()
                .map(|r| serde_json::json!({ "value": r[0].to_json(), "members": integer(r.get(1)) }))
                .collect::<Vec<_>>()
        });
        let body = serde_json::json!({
            "audience": name, "parent": info.parent, "members": size, "parent_rows": total,
            "sample": sample_json, "by": by, "breakdown": breakdown_json,
        });
        println!("{body}");
        return Ok(EXIT_OK);
    }
    let share = if total > 0 {
        format!(" ({:.1}% of {total} {})", size as f64 * 100.0 / total as f64, info.parent)
    } else {
        String::new()
    };
    println!("audience `{name}`: {size} member(s){share}");
    if !sample.is_empty() {
        println!();
        let rows: Vec<Vec<String>> =
            sample.iter().map(|r| r.iter().map(|v| truncate(&text(v), 40)).collect()).collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        print_table(&headers, &rows);
    }
    if let (Some(column), Some(rows)) = (&by, breakdown) {
        println!();
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let n = integer(r.get(1));
                let pct = if size > 0 { n as f64 * 100.0 / size as f64 } else { 0.0 };
                vec![truncate(&text(&r[0]), 40), n.to_string(), format!("{pct:.1}%")]
            })
            .collect();
        print_table(&[column.as_str(), "MEMBERS", "SHARE"], &rows);
    }
    Ok(EXIT_OK)
}

async fn overlap(workspace: &Workspace, a: &str, b: &str, json: bool) -> anyhow::Result<u8> {
    let (model, info) = audience(workspace, a)?;
    audience(workspace, b)?;
    let sql = workspace.project.audience_overlap_sql(a, b).map_err(|e| anyhow!(e))?;
    let (_, rows) = query(workspace, &model.source, sql, None).await?;
    let row = rows.first().ok_or_else(|| anyhow!("the overlap query returned no row"))?;
    let [total, in_a, in_b, both] = [0, 1, 2, 3].map(|i| integer(row.get(i)));
    if json {
        let body = serde_json::json!({
            "a": a, "b": b, "parent": info.parent, "parent_rows": total,
            "in_a": in_a, "in_b": in_b, "in_both": both, "only_a": in_a - both, "only_b": in_b - both,
            "in_either": in_a + in_b - both,
        });
        println!("{body}");
        return Ok(EXIT_OK);
    }
    let pct = |n: u64, of: u64| if of > 0 { format!("{:.1}%", n as f64 * 100.0 / of as f64) } else { "-".into() };
    print_table(
        &["", "MEMBERS", "SHARE OF A", "SHARE OF B"],
        &[
            vec![format!("{a} (A)"), in_a.to_string(), pct(in_a, in_a), String::new()],
            vec![format!("{b} (B)"), in_b.to_string(), String::new(), pct(in_b, in_b)],
            vec!["both".into(), both.to_string(), pct(both, in_a), pct(both, in_b)],
            vec!["only A".into(), (in_a - both).to_string(), pct(in_a - both, in_a), String::new()],
            vec!["only B".into(), (in_b - both).to_string(), String::new(), pct(in_b - both, in_b)],
        ],
    );
    println!("({total} {} in all)", info.parent);
    Ok(EXIT_OK)
}

fn sql(workspace: &Workspace, name: &str, group: Option<&str>) -> anyhow::Result<u8> {
    let (model, _) = audience(workspace, name)?;
    let query = match group {
        None => model.query.clone(),
        Some(group) => ModelQuery::Sql(workspace.project.audience_group_sql(name, group).map_err(|e| anyhow!(e))?),
    };
    if let ModelQuery::Sql(sql) = query {
        println!("{sql}");
    }
    Ok(EXIT_OK)
}

/// The columns of a model, read from its source (no rows are fetched).
async fn columns(workspace: &Workspace, model: &Model) -> Result<Vec<String>, String> {
    let source = workspace.source(&model.source).map_err(|e| format!("{e:#}"))?;
    let stream =
        source.scan(&model.query, ScanOptions { batch_rows: 1, limit: Some(0) }).await.map_err(|e| e.to_string())?;
    Ok(stream.schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// Checks against the sources that every column and join the project declares for audiences
/// exists: primary keys, relation joins, event timestamps and the columns audiences test.
/// Only models that take part in audiences or relations are read.
pub async fn check_columns(workspace: &Workspace) -> Vec<ConfigError> {
    let project = &workspace.project;
    let mut involved: BTreeSet<&str> = BTreeSet::new();
    for model in project.models.values() {
        if let Some(info) = &model.audience {
            involved.insert(&info.parent);
            involved.extend(info.references.iter().map(|r| r.model.as_str()));
        }
        if !model.relations.is_empty() || model.timestamp.is_some() {
            involved.insert(&model.name);
            involved.extend(model.relations.values().map(|r| r.model.as_str()));
        }
    }
    let mut errors = Vec::new();
    let mut known: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in involved {
        let Some(model) = project.models.get(name) else { continue };
        match columns(workspace, model).await {
            Ok(columns) => {
                known.insert(name, columns);
            }
            Err(error) => errors.push(ConfigError::at(
                &model.file,
                format!("models.{name}"),
                format!("cannot read the model's columns from source `{}`: {error}", model.source),
            )),
        }
    }
    let missing = |model: &str, column: &str| -> Option<String> {
        let columns = known.get(model)?;
        if columns.iter().any(|c| c == column) {
            return None;
        }
        let close = columns
            .iter()
            .map(|c| (sluice_core::names::edit_distance(column, c), c))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, c)| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        Some(format!("model `{model}` has no column `{column}`{close}: its columns are {}", columns.join(", ")))
    };
    for model in project.models.values() {
        if model.audience.is_some() || !known.contains_key(model.name.as_str()) {
            continue;
        }
        if let Some(message) = missing(&model.name, &model.primary_key) {
            errors.push(ConfigError::at(&model.file, format!("models.{}.primary_key", model.name), message));
        }
        if let Some(ts) = &model.timestamp {
            if let Some(message) = missing(&model.name, ts) {
                errors.push(ConfigError::at(&model.file, format!("models.{}.timestamp", model.name), message));
            }
        }
        for (relation, target) in &model.relations {
            for (mine, theirs) in &target.join {
                let at = format!("models.{}.relations.{relation}.join.{mine}", model.name);
                for message in [missing(&model.name, mine), missing(&target.model, theirs)].into_iter().flatten() {
                    errors.push(ConfigError::at(&model.file, &at, message));
                }
            }
        }
    }
    for model in project.models.values() {
        let Some(info) = &model.audience else { continue };
        for reference in &info.references {
            if reference.path.starts_with("models.") || reference.path == "parent" {
                continue; // reported above, once, against the model's own file
            }
            if let Some(message) = missing(&reference.model, &reference.column) {
                errors.push(ConfigError::at(
                    &model.file,
                    format!("audiences.{}.{}", model.name, reference.path),
                    message,
                ));
            }
        }
        if let (Some(groups), Some(columns)) = (&info.groups, known.get(info.parent.as_str())) {
            if columns.contains(&groups.column) {
                errors.push(ConfigError::at(
                    &model.file,
                    format!("audiences.{}", model.name),
                    format!(
                        "the group column `{}` is already a column of `{}`: pick another name (`splits.column` or `column`)",
                        groups.column, info.parent
                    ),
                ));
            }
        }
    }
    errors
}
