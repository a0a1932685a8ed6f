//! Postgres warehouse → Postgres table in `mirror` mode, with each state store.

mod common;

use common::*;

const SEED: &str = "
create table customers (
    customer_id bigint primary key,
    first_name text not null,
    last_name text not null,
    email text not null,
    phone text,
    city text,
    country char(2),
    birth_date date,
    created_at timestamptz not null,
    lifetime_value numeric(12, 2) not null,
    order_count integer not null,
    is_vip boolean not null
);
insert into customers
select i, 'First' || i, 'Last' || i, 'user' || i || '@example.com',
       case when i % 5 = 0 then null else '+3361234' || lpad(i::text, 4, '0') end,
       (array['Paris', 'Lyon', 'Nantes', 'Lille'])[1 + i % 4], 'FR',
       date '1970-01-01' + (i * 37 % 15000),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '17 minutes',
       round((i * 13.37)::numeric % 5000, 2), i % 40, i % 97 = 0
from generate_series(1, 2000) i;
";

/// Rows in one table and not the other, both ways.
async fn difference(client: &tokio_postgres::Client, left: &str, right: &str) -> i64 {
    client
        .query_one(
            &format!(
                "select count(*) from ((({left}) except all ({right})) union all (({right}) except all ({left}))) d"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn project(dir: &std::path::Path, schema: &Schema, state: &str, mapping: &str) {
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            "version: 1
name: pg
state: {state}
sources:
  warehouse: {{ type: postgres, url: \"${{WAREHOUSE_URL}}\" }}
destinations:
  crm_table: {{ type: postgres, url: \"{url}\", table: {schema}.crm_contacts }}
models:
  customers:
    source: warehouse
    primary_key: customer_id
    sql: select * from {schema}.customers
syncs:
  customers_to_crm:
    model: customers
    destination: crm_table
    mode: mirror
{mapping}",
            url = PG_URL,
            schema = schema.name,
        ),
    )
    .unwrap();
}

async fn sync(dir: &std::path::Path, schema: &Schema) -> (i32, serde_json::Value) {
    let dir = dir.to_path_buf();
    let url = schema.url();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["sync", "--json", "customers_to_crm"])
            .current_dir(&dir)
            .env("WAREHOUSE_URL", url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let report: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
        (output.status.code().unwrap_or(-1), report)
    })
    .await
    .unwrap()
}

const CHANGES: &str = "
update customers set lifetime_value = lifetime_value + 1, is_vip = not is_vip where customer_id % 100 = 0;
delete from customers where customer_id % 300 = 7;
insert into customers
select i, 'New' || i, 'Customer', 'new' || i || '@example.com', null, 'Paris', 'FR', null, now(), 0, 0, false
from generate_series(5001, 5013) i;
";

#[tokio::test(flavor = "multi_thread")]
async fn mirror_to_a_postgres_table_tracks_the_model_exactly() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_mirror").await;
    client.batch_execute(&format!("set search_path = {}; {SEED}", schema.name)).await.unwrap();
    client
        .batch_execute(&format!("create table {0}.crm_contacts (like {0}.customers including all)", schema.name))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &schema, "sqlite:.sluice/state.db", "");
    let model = format!("select * from {}.customers", schema.name);
    let table = format!("select * from {}.crm_contacts", schema.name);

    let (code, report) = sync(dir.path(), &schema).await;
    assert_eq!((code, counts(&report)), (0, (2000, 0, 0, 0)), "{report}");
    assert_eq!(difference(&client, &model, &table).await, 0, "after the first sync the table equals the model");

    client.batch_execute(&format!("set search_path = {}; {CHANGES}", schema.name)).await.unwrap();
    let (code, report) = sync(dir.path(), &schema).await;
    // 20 updated (ids 100..2000 step 100), 7 deleted (ids 7, 307 … 1807), 13 inserted.
    assert_eq!((code, counts(&report)), (0, (13, 20, 7, 0)), "{report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(difference(&client, &model, &table).await, 0, "after the changes the table equals the model");

    let (code, report) = sync(dir.path(), &schema).await;
    assert_eq!((code, counts(&report)), (0, (0, 0, 0, 0)), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_with_a_mapping_a_created_table_and_the_postgres_state_store() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_mirror_pgstate").await;
    client.batch_execute(&format!("set search_path = {}; {SEED}", schema.name)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = schema.url();
    project(
        dir.path(),
        &schema,
        &state,
        "    mapping: { id: customer_id, email: email, ltv: lifetime_value, vip: is_vip, signed_up: created_at }\n",
    );
    let model =
        format!("select customer_id, email, lifetime_value::text, is_vip, created_at from {}.customers", schema.name);
    let table = format!("select id, email, ltv::text, vip, signed_up from {}.crm_contacts", schema.name);

    let (code, report) = sync(dir.path(), &schema).await;
    assert_eq!((code, counts(&report)), (0, (2000, 0, 0, 0)), "{report}");
    assert_eq!(difference(&client, &model, &table).await, 0);

    client.batch_execute(&format!("set search_path = {}; {CHANGES}", schema.name)).await.unwrap();
    let (code, report) = sync(dir.path(), &schema).await;
    assert_eq!((code, counts(&report)), (0, (13, 20, 7, 0)), "{report}");
    assert_eq!(difference(&client, &model, &table).await, 0);

    let (code, report) = sync(dir.path(), &schema).await;
    assert_eq!((code, counts(&report)), (0, (0, 0, 0, 0)), "{report}");
    let runs: i64 = client
        .query_one(&format!("select count(*) from {}.runs where status = 'succeeded'", schema.name), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 3, "runs are recorded in the Postgres state store");
}
