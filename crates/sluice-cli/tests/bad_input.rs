//! Bad input gets a clear error naming the file, key or cause, and leaves the state as it was.

mod common;

use std::path::Path;

use common::*;

/// A synced project whose file destination holds 20 customers.
fn synced_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 20);
    std::fs::write(dir.path().join("sluice.yaml"), PROJECT).unwrap();
    let output = sluice(dir.path(), &["sync", "to_file"]);
    assert!(output.status.success(), "{}", text(&output));
    dir
}

const PROJECT: &str = "version: 1
name: test
sources:
  warehouse: { type: sqlite, path: warehouse.db }
destinations:
  export: { type: file, path: out/customers.jsonl }
models:
  customers: { source: warehouse, primary_key: customer_id, table: customers }
syncs:
  to_file: { model: customers, destination: export, mode: mirror }
";

/// Runs the sync with a broken project, checks the error, restores the project and checks
/// that the state is intact: nothing left to send.
fn fails_cleanly(dir: &Path, broken: &str, expected: &[&str]) {
    std::fs::write(dir.join("sluice.yaml"), broken).unwrap();
    let before = std::fs::read_to_string(dir.join("out/customers.jsonl")).unwrap();
    let output = sluice(dir, &["sync", "to_file"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    for needle in expected {
        assert!(all.contains(needle), "expected {needle:?} in {all}");
    }
    assert!(!all.contains("panicked"), "{all}");
    assert_eq!(std::fs::read_to_string(dir.join("out/customers.jsonl")).unwrap(), before, "nothing was sent");
    std::fs::write(dir.join("sluice.yaml"), PROJECT).unwrap();
    let plan = sluice(dir, &["plan", "to_file"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("0 to insert, 0 to update, 0 to delete, 20 unchanged"), "state intact: {}", text(&plan));
}

#[test]
fn malformed_yaml_names_the_file() {
    let dir = synced_project();
    fails_cleanly(dir.path(), "version: 1\nsources: {warehouse: [\n", &["sluice.yaml: not valid YAML"]);
}

#[test]
fn an_unknown_key_names_its_path() {
    let dir = synced_project();
    let broken = PROJECT.replace("mode: mirror", "mode: mirror, batch: 5");
    fails_cleanly(dir.path(), &broken, &["sluice.yaml: syncs.to_file.batch: unknown key `batch`", "expected one of"]);
}

#[test]
fn an_unknown_connector_key_names_its_path() {
    let dir = synced_project();
    let broken = PROJECT.replace("path: out/customers.jsonl", "path: out/customers.jsonl, format: csv");
    fails_cleanly(dir.path(), &broken, &["sluice.yaml: destinations.export.format: unknown key `format`"]);
}

#[test]
fn a_missing_environment_variable_is_named() {
    let dir = synced_project();
    let broken = PROJECT.replace("path: warehouse.db", "path: \"${SLUICE_TEST_UNSET_VARIABLE}\"");
    fails_cleanly(
        dir.path(),
        &broken,
        &["sluice.yaml: sources.warehouse.path: environment variable SLUICE_TEST_UNSET_VARIABLE is not set"],
    );
}

#[test]
fn a_primary_key_that_is_not_a_column_is_named() {
    let dir = synced_project();
    let broken = PROJECT.replace("primary_key: customer_id", "primary_key: id");
    fails_cleanly(
        dir.path(),
        &broken,
        &["model `customers`: primary_key `id` is not a column of the model", "customer_id, email"],
    );
}

#[test]
fn duplicate_primary_keys_are_named_and_nothing_is_sent() {
    let dir = synced_project();
    let broken = PROJECT.replace(
        "table: customers",
        "sql: \"select * from customers union all select * from customers where customer_id in (3, 5)\"",
    );
    fails_cleanly(
        dir.path(),
        &broken,
        &["primary key `customer_id` is not unique", "\"3\", \"5\"", "nothing was sent"],
    );
}

#[test]
fn a_sql_error_names_the_source_and_the_cause() {
    let dir = synced_project();
    let broken = PROJECT.replace("table: customers", "sql: select * from custmers");
    fails_cleanly(dir.path(), &broken, &["model `customers`", "sqlite", "no such table: custmers"]);
}

#[test]
fn a_destination_that_is_down_fails_the_run_and_names_the_cause() {
    let dir = synced_project();
    // A second destination so the sync has records to send; the receiver does not exist.
    let broken = PROJECT.replace(
        "  export: { type: file, path: out/customers.jsonl }",
        "  export: { type: file, path: out/customers.jsonl }\n  hook: { type: webhook, url: \"http://127.0.0.1:9/in\", max_retries: 1, backoff_ms: 10 }",
    ) + "  to_hook: { model: customers, destination: hook, mode: upsert }\n";
    std::fs::write(dir.path().join("sluice.yaml"), &broken).unwrap();
    let output = sluice(dir.path(), &["sync", "--json", "to_hook"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("webhook http://127.0.0.1:9/in"), "{error}");
    assert!(error.to_lowercase().contains("connect"), "{error}");
    assert!(error.contains("gave up after"), "{error}");
    // Every record is accounted for, and the snapshot did not move.
    assert_eq!(report["retryable"], 20, "{report}");
    let plan = sluice(dir.path(), &["plan", "to_hook"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("20 to insert"), "{}", text(&plan));
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let broken = PROJECT.replace("destination: export", "destination: nowhere").replace("type: file", "type: ftp");
    std::fs::write(dir.path().join("sluice.yaml"), broken).unwrap();
    let output = sluice(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("syncs.to_file.destination: no destination named `nowhere`"), "{stderr}");
    std::fs::write(dir.path().join("sluice.yaml"), PROJECT.replace("type: file", "type: ftp")).unwrap();
    let output = sluice(dir.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("destinations.export.type: unknown destination type `ftp`"), "{stderr}");
}

#[test]
fn init_validate_and_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path(), &["init", "proj"]);
    assert!(output.status.success(), "{}", text(&output));
    let project = dir.path().join("proj");
    let output = sluice(&project, &["validate"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = sluice(&project, &["sync", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no sync named `nope`"), "{}", text(&output));
    let output = sluice(dir.path(), &["init", "proj"]);
    assert_eq!(output.status.code(), Some(1), "init never overwrites");
}

#[test]
fn the_snapshot_does_not_depend_on_the_folder_the_command_runs_from() {
    let dir = synced_project();
    let parent = dir.path().parent().unwrap();
    let project = dir.path().file_name().unwrap().to_str().unwrap();
    let output = sluice(parent, &["--project", project, "plan", "to_file"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("0 to insert, 0 to update, 0 to delete, 20 unchanged"), "{}", text(&output));
    assert!(!stdout.contains("destination changed"), "{stdout}");
}

#[test]
fn object_and_match_on_are_refused_where_the_destination_has_none() {
    let dir = synced_project();
    let broken = PROJECT.replace("mode: mirror }", "mode: mirror, object: contacts, match_on: { email: email } }");
    fails_cleanly(
        dir.path(),
        &broken,
        &[
            "sluice.yaml: syncs.to_file.object: destinations of type `file` take no `object`",
            "sluice.yaml: syncs.to_file.match_on: destinations of type `file` take no `match_on`",
        ],
    );
}
