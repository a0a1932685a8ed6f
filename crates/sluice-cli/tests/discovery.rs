//! `sluice destinations describe`, and `validate` checking mappings against its cached result.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn describe_lists_fields_and_validate_names_an_unknown_field_with_suggestions() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_discovery").await;
    client
        .batch_execute(&format!(
            "create table {}.crm_contacts (id bigint primary key, email text not null unique, first_name text, ltv numeric(12,2))",
            schema.name
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 5);
    let project = |mapping: &str| {
        format!(
            "version: 1
sources: {{ w: {{ type: sqlite, path: warehouse.db }} }}
destinations:
  crm: {{ type: postgres, url: \"{PG_URL}\", table: {}.crm_contacts }}
  export: {{ type: file, path: out.jsonl }}
models: {{ customers: {{ source: w, primary_key: customer_id, table: customers }} }}
syncs:
  to_crm: {{ model: customers, destination: crm, mode: upsert, mapping: {{ {mapping} }} }}
  to_file: {{ model: customers, destination: export, mode: mirror, mapping: {{ anything: email }} }}
",
            schema.name
        )
    };
    std::fs::write(dir.path().join("sluice.yaml"), project("id: customer_id, emial: email")).unwrap();

    let described = sluice_async(dir.path(), &["destinations", "describe", "crm"]).await;
    assert!(described.status.success(), "{}", text(&described));
    let shown = String::from_utf8_lossy(&described.stdout);
    assert!(shown.contains("modes: insert, update, upsert, mirror"), "{shown}");
    let email = shown.lines().find(|l| l.starts_with("email")).unwrap_or_else(|| panic!("{shown}"));
    assert!(email.contains("text") && email.contains("yes"), "email is a unique match key: {email}");
    let described = sluice_async(dir.path(), &["destinations", "describe", "export"]).await;
    assert!(String::from_utf8_lossy(&described.stdout).contains("any field name is accepted"), "{}", text(&described));

    // Offline now: the cached description catches the typo, and suggests the real field.
    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", text(&validated));
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(
        stderr.contains("sluice.yaml: syncs.to_crm.mapping.emial: ")
            && stderr.contains("has no field `emial`: did you mean `email`?"),
        "{stderr}"
    );
    assert!(!stderr.contains("to_file"), "open-schema destinations accept any field: {stderr}");

    std::fs::write(dir.path().join("sluice.yaml"), project("id: customer_id, email: email")).unwrap();
    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert!(validated.status.success(), "{}", text(&validated));

    let missing = sluice_async(dir.path(), &["destinations", "describe", "crm", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no object `nope`"), "{}", text(&missing));
}
