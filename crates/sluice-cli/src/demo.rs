//! `sluice demo`: a jaffle_shop warehouse in SQLite, synced to a file twice, so a newcomer
//! sees a full sync and then exactly the rows that changed.

use std::path::Path;

use anyhow::{bail, Context};

use crate::commands;

const CUSTOMERS: &str = include_str!("../fixtures/jaffle_shop/raw_customers.csv");
const ORDERS: &str = include_str!("../fixtures/jaffle_shop/raw_orders.csv");
const PAYMENTS: &str = include_str!("../fixtures/jaffle_shop/raw_payments.csv");

const PROJECT: &str = r#"# The Sluice demo project (written by `sluice demo`).
version: 1
name: jaffle-shop-demo
state: sqlite:.sluice/state.db

sources:
  warehouse: { type: sqlite, path: warehouse.db }

destinations:
  export: { type: file, path: out/customers.jsonl }

models:
  customers:
    source: warehouse
    primary_key: customer_id
    sql_file: models/customers.sql
    relations:
      orders: { model: orders, join: { customer_id: user_id } }
  orders:
    source: warehouse
    table: raw_orders
    primary_key: id
    timestamp: order_date

# Audiences: members chosen by conditions, no SQL (see docs/audiences.md).
audiences:
  repeat_buyers:
    parent: customers
    description: Customers with at least two completed orders
    conditions:
      related: orders
      where: { property: status, equals: completed }
      count: { at_least: 2 }

syncs:
  customers_to_file:
    model: customers
    destination: export
    mode: mirror
    mapping:
      customer_id: customer_id
      first_name: first_name
      last_name: last_name
      email: email
      order_count: order_count
      lifetime_value: lifetime_value
      most_recent_order: most_recent_order
"#;

const MODEL_SQL: &str = "-- One row per customer with order counts and lifetime value (completed orders).
select
    c.id as customer_id,
    c.first_name,
    c.last_name,
    lower(c.first_name) || '.' || lower(replace(c.last_name, '.', '')) || c.id || '@example.com' as email,
    count(distinct o.id) as order_count,
    round(coalesce(sum(case when o.status = 'completed' then p.amount end), 0) / 100.0, 2) as lifetime_value,
    max(o.order_date) as most_recent_order
from raw_customers c
left join raw_orders o on o.user_id = c.id
left join raw_payments p on p.order_id = o.id
group by c.id, c.first_name, c.last_name
";

/// The changes made between the two demo syncs, shown to the user.
const CHANGES: &[(&str, &str)] = &[
    ("customer 1 places a new completed order paid 42.00", "insert into raw_orders values (1000, 1, '2018-05-01', 'completed'); insert into raw_payments values (1000, 1000, 'credit_card', 4200);"),
    ("customer 2 changes their last name", "update raw_customers set last_name = 'Q.' where id = 2;"),
    ("a new customer signs up", "insert into raw_customers values (101, 'Ada', 'L.');"),
    ("customer 100 is erased (GDPR request)", "delete from raw_customers where id = 100;"),
];

/// Runs the demo in `dir`.
pub async fn run(dir: &Path) -> anyhow::Result<u8> {
    prepare_dir(dir)?;
    let warehouse = dir.join("warehouse.db");
    let connection =
        rusqlite::Connection::open(&warehouse).with_context(|| format!("cannot create {}", warehouse.display()))?;
    load_seeds(&connection)?;
    std::fs::create_dir_all(dir.join("models"))?;
    std::fs::write(dir.join("sluice.yaml"), PROJECT)?;
    std::fs::write(dir.join("models/customers.sql"), MODEL_SQL)?;
    println!("Built a jaffle_shop warehouse in {} (100 customers, 99 orders, 113 payments)", warehouse.display());
    println!("Wrote the project {}/sluice.yaml\n", dir.display());

    println!("== First sync: every customer is new ==");
    println!("$ sluice sync customers_to_file");
    let output = dir.join("out/customers.jsonl");
    let first = commands::sync(dir, &["customers_to_file".to_string()], false, false, false).await?;
    if first != commands::EXIT_OK {
        bail!("the first demo sync did not succeed");
    }
    let before = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);

    println!("\n== Changing the warehouse ==");
    for (what, sql) in CHANGES {
        connection.execute_batch(sql).with_context(|| format!("cannot apply demo change: {what}"))?;
        println!("- {what}");
    }

    println!("\n== Second sync: only what changed flows ==");
    println!("$ sluice sync customers_to_file");
    let second = commands::sync(dir, &["customers_to_file".to_string()], false, false, false).await?;
    let text = std::fs::read_to_string(&output).with_context(|| format!("cannot read {}", output.display()))?;
    let new_lines = text.get(before as usize..).unwrap_or_default();
    println!("\nLines the second sync appended to {}:", output.display());
    for line in new_lines.lines() {
        println!("  {line}");
    }

    println!("\n== An audience, defined by conditions instead of SQL ==");
    println!("$ sluice audiences preview repeat_buyers --limit 3");
    let command =
        crate::audiences::AudiencesCommand::Preview { name: "repeat_buyers".into(), by: None, limit: 3, json: false };
    crate::audiences::run(dir, command).await?;
    println!(
        "\nNext: `cd {}` and try `sluice runs`, `sluice plan customers_to_file`, \
         `sluice audiences sql repeat_buyers` or edit sluice.yaml.",
        dir.display()
    );
    Ok(second)
}

/// Makes `dir` ready: new, empty, or an earlier demo (which is replaced).
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let project = dir.join("sluice.yaml");
        let is_demo = std::fs::read_to_string(&project).map(|t| t.contains("name: jaffle-shop-demo")).unwrap_or(false);
        let is_empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !is_demo && !is_empty {
            bail!("{} exists and is not a Sluice demo; pass another folder: `sluice demo DIR`", dir.display());
        }
        for owned in ["warehouse.db", "out", ".sluice", "models", "sluice.yaml"] {
            let path = dir.join(owned);
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn load_seeds(connection: &rusqlite::Connection) -> anyhow::Result<()> {
    let transaction = connection.unchecked_transaction()?;
    transaction.execute_batch(
        "create table raw_customers (id integer primary key, first_name text, last_name text);
         create table raw_orders (id integer primary key, user_id integer, order_date text, status text);
         create table raw_payments (id integer primary key, order_id integer, payment_method text, amount integer);",
    )?;
    for (table, csv, columns) in
        [("raw_customers", CUSTOMERS, 3), ("raw_orders", ORDERS, 4), ("raw_payments", PAYMENTS, 4)]
    {
        let placeholders = vec!["?"; columns].join(", ");
        let mut statement = transaction.prepare(&format!("insert into {table} values ({placeholders})"))?;
        for (number, line) in csv.lines().skip(1).enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != columns {
                bail!("fixture {table}.csv line {}: expected {columns} cells, found {}", number + 2, cells.len());
            }
            statement.execute(rusqlite::params_from_iter(cells))?;
        }
    }
    transaction.commit()?;
    Ok(())
}
