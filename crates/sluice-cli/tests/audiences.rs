//! Audiences from the command line: preview, overlap, compiled SQL, validation against the
//! source, and `mode: audience` syncs that add members who enter and remove those who leave.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// An SQLite warehouse: 20 users, carts and purchases relative to the real clock.
fn warehouse(dir: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(dir.join("warehouse.db")).unwrap();
    connection
        .execute_batch(
            "create table users (user_id integer primary key, email text, country text);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 20)
             insert into users select i, 'user' || i || '@example.com', case when i % 2 = 0 then 'FR' else 'DE' end from n;
             create table events (event_id integer primary key, user_id integer, name text, occurred_at text);
             -- users 1..6 added to cart two days ago; 1 and 2 bought since.
             insert into events (user_id, name, occurred_at)
               select user_id, 'added_to_cart', datetime('now', '-2 days') from users where user_id <= 6;
             insert into events (user_id, name, occurred_at)
               select user_id, 'purchased', datetime('now', '-1 days') from users where user_id <= 2;
             -- user 7's cart is too old to count.
             insert into events (user_id, name, occurred_at) values (7, 'added_to_cart', datetime('now', '-30 days'));",
        )
        .unwrap();
    connection
}

const PROJECT: &str = r#"version: 1
name: audiences
sources:
  warehouse: { type: sqlite, path: warehouse.db }
destinations:
  ads: { type: file, path: out/members.jsonl }
  control_file: { type: file, path: out/control.jsonl }
models:
  users:
    source: warehouse
    table: users
    primary_key: user_id
    relations:
      carts: { model: carts, join: { user_id: user_id } }
      purchases: { model: purchases, join: { user_id: user_id } }
  carts:
    source: warehouse
    sql: "select * from events where name = 'added_to_cart'"
    primary_key: event_id
    timestamp: occurred_at
  purchases:
    source: warehouse
    sql: "select * from events where name = 'purchased'"
    primary_key: event_id
    timestamp: occurred_at
syncs:
  carts_to_ads:
    model: abandoned_cart
    destination: ads
    mode: audience
    mapping: { email: email }
  control_group:
    model: french
    group: control
    destination: control_file
    mode: audience
"#;

const AUDIENCES: &str = r#"audiences:
  abandoned_cart:
    parent: users
    conditions:
      event: carts
      within_last: 7 days
      then_not: { event: purchases }
  french:
    parent: users
    conditions: { property: country, equals: FR }
    splits:
      salt: test
      groups: { control: 50, exposed: 50 }
"#;

fn project(dir: &Path) -> rusqlite::Connection {
    std::fs::write(dir.join("sluice.yaml"), PROJECT).unwrap();
    std::fs::create_dir_all(dir.join("audiences")).unwrap();
    std::fs::write(dir.join("audiences/marketing.yaml"), AUDIENCES).unwrap();
    warehouse(dir)
}

fn json_of(dir: &Path, args: &[&str]) -> Value {
    let output = sluice(dir, args);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

#[test]
fn audience_syncs_add_members_who_enter_and_remove_those_who_leave() {
    let dir = tempfile::tempdir().unwrap();
    let connection = project(dir.path());

    let (code, report) = sync_json(dir.path(), "carts_to_ads");
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (4, 0, 0, 0), "users 3..6 abandoned their carts");

    // User 3 buys (leaves), user 8 adds to cart (enters), user 4 changes email (update).
    connection
        .execute_batch(
            "insert into events (user_id, name, occurred_at) values (3, 'purchased', datetime('now', '-1 hours'));
             insert into events (user_id, name, occurred_at) values (8, 'added_to_cart', datetime('now', '-1 hours'));
             update users set email = 'new4@example.com' where user_id = 4;",
        )
        .unwrap();
    let (code, report) = sync_json(dir.path(), "carts_to_ads");
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (1, 1, 1, 0));
    let lines = std::fs::read_to_string(dir.path().join("out/members.jsonl")).unwrap();
    let last: Vec<Value> = lines.lines().rev().take(3).map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |op: &str| last.iter().find(|l| l["op"] == op).unwrap_or_else(|| panic!("no {op} in {lines}"));
    assert_eq!(find("insert")["key"], "8");
    assert_eq!(find("delete")["key"], "3");
    assert_eq!(find("update")["key"], "4");

    let (_, report) = sync_json(dir.path(), "carts_to_ads");
    assert_eq!(counts(&report), (0, 0, 0, 0), "nothing changed");
}

#[test]
fn a_sync_can_send_one_split_group() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (code, report) = sync_json(dir.path(), "control_group");
    assert_eq!(code, 0, "{report}");
    let preview = json_of(dir.path(), &["audiences", "preview", "french", "--json"]);
    assert_eq!(preview["members"], 10);
    assert_eq!(preview["by"], "split");
    let control = preview["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["value"] == "control")
        .map(|b| b["members"].as_u64().unwrap())
        .unwrap_or(0);
    assert_eq!(counts(&report).0, control, "only the control group is sent");
    let sent = std::fs::read_to_string(dir.path().join("out/control.jsonl")).unwrap();
    assert!(sent.lines().all(|l| l.contains("\"split\":\"control\"")), "{sent}");
}

#[test]
fn preview_shows_size_sample_and_breakdown() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let preview = json_of(dir.path(), &["audiences", "preview", "abandoned_cart", "--by", "country", "--json"]);
    assert_eq!(preview["members"], 4);
    assert_eq!(preview["parent_rows"], 20);
    assert_eq!(preview["sample"].as_array().unwrap().len(), 4);
    let breakdown: Vec<(String, u64)> = preview["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["value"].as_str().unwrap().to_string(), b["members"].as_u64().unwrap()))
        .collect();
    assert_eq!(breakdown, vec![("DE".to_string(), 2), ("FR".to_string(), 2)]);

    let human = sluice(dir.path(), &["audiences", "preview", "abandoned_cart"]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains("audience `abandoned_cart`: 4 member(s) (20.0% of 20 users)"), "{}", text(&human));

    let wrong = sluice(dir.path(), &["audiences", "preview", "abandoned_cart", "--by", "contry"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong).contains("has no column `contry`"), "{}", text(&wrong));
}

#[test]
fn overlap_counts_the_intersection() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let overlap = json_of(dir.path(), &["audiences", "overlap", "abandoned_cart", "french", "--json"]);
    // Abandoned: 3, 4, 5, 6. French: even ids.
    assert_eq!(overlap["in_a"], 4);
    assert_eq!(overlap["in_b"], 10);
    assert_eq!(overlap["in_both"], 2);
    assert_eq!(overlap["only_a"], 2);
    assert_eq!(overlap["parent_rows"], 20);
}

#[test]
fn the_compiled_sql_can_be_printed() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let output = sluice(dir.path(), &["audiences", "sql", "abandoned_cart"]);
    let sql = String::from_utf8_lossy(&output.stdout);
    assert!(sql.contains("NOT EXISTS") && sql.contains("\"occurred_at\""), "{}", text(&output));
    let output = sluice(dir.path(), &["audiences", "sql", "french", "--group", "exposed"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("= 'exposed'"), "{}", text(&output));
}

#[test]
fn validate_checks_declared_columns_and_joins_against_the_source() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let ok = sluice(dir.path(), &["validate"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("2 audience(s)") && text(&ok).contains("declared columns and joins exist"),
        "{}",
        text(&ok)
    );

    let broken = PROJECT
        .replace(
            "carts: { model: carts, join: { user_id: user_id } }",
            "carts: { model: carts, join: { user_id: userid } }",
        )
        .replace("timestamp: occurred_at\n  purchases", "timestamp: happened_at\n  purchases");
    std::fs::write(dir.path().join("sluice.yaml"), broken).unwrap();
    std::fs::write(
        dir.path().join("audiences/marketing.yaml"),
        AUDIENCES.replace("property: country", "property: contry"),
    )
    .unwrap();
    let output = sluice(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output);
    assert!(
        message.contains("sluice.yaml: models.users.relations.carts.join.user_id: model `carts` has no column `userid` (did you mean `user_id`?)"),
        "{message}"
    );
    assert!(
        message.contains("sluice.yaml: models.carts.timestamp: model `carts` has no column `happened_at`"),
        "{message}"
    );
    assert!(
        message.contains("audiences/marketing.yaml: audiences.french.conditions.property: model `users` has no column `contry` (did you mean `country`?)"),
        "{message}"
    );
    // Offline, only the files are checked.
    assert!(sluice(dir.path(), &["validate", "--offline"]).status.success());
}

#[test]
fn audience_mistakes_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    std::fs::write(
        dir.path().join("audiences/marketing.yaml"),
        "audiences:\n  bad:\n    parent: users\n    conditions:\n      and:\n        - event: cart\n",
    )
    .unwrap();
    let output = sluice(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("audiences/marketing.yaml: audiences.bad.conditions.and[0]: model `users` has no relation named `cart` (did you mean `carts`?)"),
        "{}",
        text(&output)
    );
}

/// Postgres warehouse: preview and overlap run in Postgres, and `mode: audience` keeps a
/// members table in step as people enter and leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audiences_preview_overlap_and_sync_members() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_cli_aud").await;
    let s = &schema.name;
    client
        .batch_execute(&format!(
            "create table {s}.users (user_id bigint primary key, email text, country text);
             insert into {s}.users select i, 'user' || i || '@example.com', case when i % 2 = 0 then 'FR' else 'DE' end
               from generate_series(1, 20) i;
             create table {s}.events (event_id bigserial primary key, user_id bigint, name text, occurred_at timestamptz);
             insert into {s}.events (user_id, name, occurred_at)
               select i, 'added_to_cart', now() - interval '2 days' from generate_series(1, 6) i;
             insert into {s}.events (user_id, name, occurred_at)
               select i, 'purchased', now() - interval '1 day' from generate_series(1, 2) i;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = PROJECT
        .replace(
            "warehouse: { type: sqlite, path: warehouse.db }",
            &format!("warehouse: {{ type: postgres, url: \"{PG_URL}\" }}"),
        )
        .replace("table: users", &format!("table: {s}.users"))
        .replace("mapping: { email: email }", "mapping: { user_id: user_id, email: email }")
        .replace("from events", &format!("from {s}.events"))
        .replace(
            "ads: { type: file, path: out/members.jsonl }",
            &format!("ads: {{ type: postgres, url: \"{PG_URL}\", table: {s}.cart_members }}"),
        );
    std::fs::write(dir.path().join("sluice.yaml"), project).unwrap();
    std::fs::create_dir_all(dir.path().join("audiences")).unwrap();
    std::fs::write(dir.path().join("audiences/marketing.yaml"), AUDIENCES).unwrap();

    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert!(validated.status.success(), "{}", text(&validated));
    let preview =
        sluice_async(dir.path(), &["audiences", "preview", "abandoned_cart", "--by", "country", "--json"]).await;
    let preview: Value = serde_json::from_slice(&preview.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&preview)));
    assert_eq!((preview["members"].as_u64(), preview["parent_rows"].as_u64()), (Some(4), Some(20)));
    let overlap = sluice_async(dir.path(), &["audiences", "overlap", "abandoned_cart", "french", "--json"]).await;
    let overlap: Value = serde_json::from_slice(&overlap.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&overlap)));
    assert_eq!(overlap["in_both"], 2);

    let (code, report) = sync_json_async(dir.path(), "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    let count: i64 = client.query_one(&format!("select count(*) from {s}.cart_members"), &[]).await.unwrap().get(0);
    assert_eq!(count, 4);
    client
        .batch_execute(&format!(
            "insert into {s}.events (user_id, name, occurred_at) values (3, 'purchased', now()), (9, 'added_to_cart', now() - interval '1 hour');"
        ))
        .await
        .unwrap();
    let (code, report) = sync_json_async(dir.path(), "carts_to_ads").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (1, 0, 1, 0), "user 9 entered, user 3 left");
    let emails: Vec<String> = client
        .query(&format!("select email from {s}.cart_members order by email"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails, ["user4@example.com", "user5@example.com", "user6@example.com", "user9@example.com"]);
}
