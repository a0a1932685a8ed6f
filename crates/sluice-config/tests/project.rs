//! Loading project files: the documented contract, and precise errors for bad input.

use std::path::Path;

use sluice_config::{Project, StateLocation};
use sluice_core::{ModelQuery, SyncMode};

const CONTRACT: &str = r#"
version: 1
name: demo
state: sqlite:.sluice/state.db
sources:
  warehouse: { type: postgres, url: "${WAREHOUSE_URL}" }
destinations:
  crm_table: { type: postgres, url: "postgres://localhost/test", table: public.crm_contacts }
  hook:      { type: webhook, url: "http://127.0.0.1:9000/in", batch_size: 500 }
  export:    { type: file, path: out/contacts.jsonl }
models:
  customers:
    source: warehouse
    primary_key: customer_id
    sql: select * from customers
syncs:
  customers_to_crm:
    model: customers
    destination: crm_table
    mode: mirror
    mapping: { id: customer_id, email: email }
"#;

fn env(name: &str) -> Option<String> {
    (name == "WAREHOUSE_URL").then(|| "postgres://127.0.0.1/test".to_string())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn project_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn load_error(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> String {
    Project::load_with_env(dir, env).unwrap_err().to_string()
}

#[test]
fn the_documented_contract_loads() {
    let dir = project_with(&[("sluice.yaml", CONTRACT)]);
    let project = Project::load_with_env(dir.path(), &env).unwrap();
    assert_eq!(project.name, "demo");
    assert_eq!(project.state, StateLocation::Sqlite(dir.path().join(".sluice/state.db")));
    assert_eq!(project.sources["warehouse"].kind, "postgres");
    assert_eq!(
        project.sources["warehouse"].options.get("url").and_then(|v| v.as_str()),
        Some("postgres://127.0.0.1/test")
    );
    assert_eq!(project.destinations.len(), 3);
    let sync = &project.syncs["customers_to_crm"];
    assert_eq!(sync.mode, SyncMode::Mirror);
    assert_eq!(
        sync.mapping.as_deref().unwrap(),
        &[("id".to_string(), "customer_id".to_string()), ("email".to_string(), "email".to_string())]
    );
    assert_eq!(project.models["customers"].query, ModelQuery::Sql("select * from customers".into()));
}

#[test]
fn models_and_syncs_folders_merge_in() {
    let dir = project_with(&[
        ("sluice.yaml", "version: 1\nsources: { w: { type: sqlite, path: w.db } }\ndestinations: { f: { type: file, path: o.jsonl } }\n"),
        ("models/customers.yaml", "models:\n  customers: { source: w, primary_key: id, sql_file: models/customers.sql }\n"),
        ("models/customers.sql", "select 1 as id"),
        ("syncs/c.yml", "syncs:\n  c: { model: customers, destination: f, mode: upsert }\n"),
    ]);
    let project = Project::load_with_env(dir.path(), &no_env).unwrap();
    assert_eq!(project.models["customers"].query, ModelQuery::Sql("select 1 as id".into()));
    assert_eq!(project.syncs["c"].file, "syncs/c.yml");
    assert!(project.syncs["c"].mapping.is_none());
}

#[test]
fn malformed_yaml_names_the_file() {
    let dir = project_with(&[("sluice.yaml", "version: 1\nsources: [unclosed\n")]);
    let error = load_error(dir.path(), &no_env);
    assert!(error.starts_with("sluice.yaml: not valid YAML"), "{error}");
}

#[test]
fn unknown_key_names_the_path_and_the_expected_keys() {
    let text = CONTRACT.replace("    primary_key: customer_id", "    primary_key: customer_id\n    primary_kye: x");
    let dir = project_with(&[("sluice.yaml", &text)]);
    let error = load_error(dir.path(), &env);
    assert!(error.contains("sluice.yaml: models.customers"), "{error}");
    assert!(error.contains("unknown key `primary_kye`"), "{error}");
    assert!(error.contains("expected one of"), "{error}");
}

#[test]
fn missing_env_var_names_the_variable_and_key() {
    let dir = project_with(&[("sluice.yaml", CONTRACT)]);
    let error = load_error(dir.path(), &no_env);
    assert!(
        error.contains("sluice.yaml: sources.warehouse.url: environment variable WAREHOUSE_URL is not set"),
        "{error}"
    );
}

#[test]
fn bad_mode_lists_the_modes() {
    let dir = project_with(&[("sluice.yaml", &CONTRACT.replace("mode: mirror", "mode: mirorr"))]);
    let error = load_error(dir.path(), &env);
    assert!(error.contains("syncs.customers_to_crm.mode"), "{error}");
    assert!(error.contains("`insert`, `update`, `upsert`, `mirror`"), "{error}");
}

#[test]
fn dangling_references_and_bad_state_are_all_reported() {
    let text = CONTRACT
        .replace("destination: crm_table", "destination: nowhere")
        .replace("state: sqlite:.sluice/state.db", "state: mysql://x");
    let dir = project_with(&[("sluice.yaml", &text)]);
    let error = load_error(dir.path(), &env);
    assert!(error.contains("syncs.customers_to_crm.destination: no destination named `nowhere`"), "{error}");
    assert!(error.contains("sluice.yaml: state: expected `sqlite:PATH` or a `postgres://` URL"), "{error}");
}

#[test]
fn model_needs_exactly_one_query() {
    let text = CONTRACT.replace("    sql: select * from customers", "    sql: select 1\n    table: customers");
    let dir = project_with(&[("sluice.yaml", &text)]);
    let error = load_error(dir.path(), &env);
    assert!(error.contains("models.customers: expected exactly one of `sql`, `sql_file` or `table`"), "{error}");
}

#[test]
fn duplicate_names_across_files_are_errors() {
    let dir = project_with(&[
        ("sluice.yaml", CONTRACT),
        ("models/more.yaml", "models:\n  customers: { source: warehouse, primary_key: id, table: t }\n"),
    ]);
    let error = load_error(dir.path(), &env);
    assert!(
        error.contains("models/more.yaml: models.customers: defined twice: also defined in sluice.yaml"),
        "{error}"
    );
}

#[test]
fn missing_project_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_error(dir.path(), &no_env);
    assert!(error.contains("expected sluice.yaml"), "{error}");
}

#[test]
fn object_and_match_on_are_read_and_checked() {
    let text = CONTRACT.replace(
        "    mapping: { id: customer_id, email: email }",
        "    object: contacts\n    match_on: { email: email }\n    mapping: { firstname: first_name }",
    );
    let dir = project_with(&[("sluice.yaml", &text)]);
    let project = Project::load_with_env(dir.path(), &env).unwrap();
    let sync = &project.syncs["customers_to_crm"];
    assert_eq!(sync.object.as_deref(), Some("contacts"));
    assert_eq!(sync.match_on, Some(("email".to_string(), "email".to_string())));

    let text =
        CONTRACT.replace("    mapping: { id: customer_id, email: email }", "    match_on: { email: email, id: id }");
    let dir = project_with(&[("sluice.yaml", &text)]);
    let error = load_error(dir.path(), &env);
    assert!(error.contains("syncs.customers_to_crm.match_on: expected exactly one"), "{error}");
}

#[test]
fn a_bad_sluice_now_is_named_with_what_was_expected() {
    let dir = project_with(&[("sluice.yaml", CONTRACT)]);
    let error =
        load_error(dir.path(), &|name| (name == "SLUICE_NOW").then(|| "yesterday".to_string()).or_else(|| env(name)));
    assert!(error.contains("SLUICE_NOW: expected an RFC 3339 timestamp"), "{error}");
    assert!(error.contains("\"yesterday\""), "{error}");
}
