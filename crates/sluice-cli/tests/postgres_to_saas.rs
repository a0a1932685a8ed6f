//! Postgres warehouse → HubSpot and Salesforce (fakes), with faults injected: every record
//! arrives exactly once, with the tools' own answers for the ones they refuse.

mod common;

use std::time::Duration;

use common::*;
use sluice_fakes::hubspot::{Fault, HubSpotFake, HubSpotOptions, DEFAULT_PRIVATE_APP_TOKEN};
use sluice_fakes::salesforce::{SalesforceFake, SalesforceOptions};

const SEED: &str = "
create table customers (customer_id bigint primary key, first_name text, last_name text not null,
                        email text not null, lifetime_value numeric(12,2));
insert into customers select i, 'First' || i, 'Last' || i, 'user' || i || '@example.com', i * 10.5
from generate_series(1, 250) i;
";

async fn sync(dir: &std::path::Path, url: &str, sync: &str) -> (i32, serde_json::Value) {
    let (dir, url, sync) = (dir.to_path_buf(), url.to_string(), sync.to_string());
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["sync", "--json", &sync])
            .current_dir(&dir)
            .env("WAREHOUSE_URL", url)
            .output()
            .unwrap();
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
        (output.status.code().unwrap_or(-1), report)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_hubspot_contacts_survives_429_5xx_and_timeouts_without_duplicates() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_to_hubspot").await;
    client.batch_execute(&format!("set search_path = {}; {SEED}", schema.name)).await.unwrap();
    let fake = HubSpotFake::start(HubSpotOptions {
        faults: vec![
            Fault::TooManyRequests { retry_after_secs: 1 },
            Fault::Status(502),
            // Longer than the client's timeout: HubSpot still applies the batch, and the retry
            // must update the same contacts rather than duplicate them.
            Fault::Delay(Duration::from_millis(2500)),
            Fault::Status(503),
        ],
        ..HubSpotOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: postgres, url: \"${{WAREHOUSE_URL}}\" }} }}
destinations:
  hubspot: {{ type: hubspot, token: {DEFAULT_PRIVATE_APP_TOKEN}, endpoint: \"{}\", timeout_seconds: 1, max_concurrency: 2 }}
models: {{ customers: {{ source: warehouse, primary_key: customer_id, sql: select * from {}.customers }} }}
syncs:
  contacts_to_hubspot:
    model: customers
    destination: hubspot
    object: contacts
    mode: upsert
    match_on: {{ email: email }}
    mapping: {{ firstname: first_name, lastname: last_name, ltv: lifetime_value }}
",
            fake.base_url(),
            schema.name
        ),
    )
    .unwrap();
    let (code, report) = sync(dir.path(), &schema.url(), "contacts_to_hubspot").await;
    assert_eq!((code, counts(&report)), (0, (250, 0, 0, 0)), "{report}");
    let contacts = fake.objects("contacts");
    assert_eq!(contacts.len(), 250, "every contact exactly once");
    let ada = fake.find("contacts", "email", "user7@example.com").unwrap();
    assert_eq!(ada.properties["ltv"], "73.50");
    assert_eq!(fake.invalid_requests(), 0);

    let (code, report) = sync(dir.path(), &schema.url(), "contacts_to_hubspot").await;
    assert_eq!((code, counts(&report)), (0, (0, 0, 0, 0)), "{report}");
}

fn bulk_jobs(fake: &SalesforceFake) -> usize {
    fake.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/jobs/ingest")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_salesforce_contacts_upserts_on_an_external_id_through_both_transports() {
    let Some(client) = postgres().await else { return };
    let schema = Schema::create(&client, "sluice_to_salesforce").await;
    client.batch_execute(&format!("set search_path = {}; {SEED}", schema.name)).await.unwrap();
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let app = SalesforceOptions::default().oauth;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: postgres, url: \"${{WAREHOUSE_URL}}\" }} }}
destinations:
  salesforce:
    type: salesforce
    endpoint: \"{}\"
    bulk_threshold: 100
    oauth: {{ client_id: {}, client_secret: {}, refresh_token: {} }}
models: {{ customers: {{ source: warehouse, primary_key: customer_id, sql: select * from {}.customers }} }}
syncs:
  contacts_to_sf:
    model: customers
    destination: salesforce
    object: Contact
    mode: mirror
    match_on: {{ Customer_Id__c: customer_id }}
    mapping: {{ FirstName: first_name, LastName: last_name, Email: email, LTV__c: lifetime_value }}
",
            fake.base_url(),
            app.client_id,
            app.client_secret,
            app.refresh_token,
            schema.name
        ),
    )
    .unwrap();
    let (code, report) = sync(dir.path(), &schema.url(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (250, 0, 0, 0)), "{report}");
    assert_eq!(fake.records("Contact").len(), 250);
    assert_eq!(bulk_jobs(&fake), 1, "250 changes, above the threshold of 100: Bulk API 2.0");
    let contact = fake.find("Contact", "Customer_Id__c", "42").unwrap();
    assert_eq!(contact.fields["LastName"], "Last42");

    client
        .batch_execute(&format!(
            "update {0}.customers set last_name = 'Moved' where customer_id <= 3; delete from {0}.customers where customer_id = 250",
            schema.name
        ))
        .await
        .unwrap();
    let (code, report) = sync(dir.path(), &schema.url(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (0, 3, 1, 0)), "{report}");
    assert_eq!(fake.records("Contact").len(), 249);
    assert_eq!(bulk_jobs(&fake), 1, "4 changes: sObject Collections");
    assert_eq!(fake.find("Contact", "Customer_Id__c", "2").unwrap().fields["LastName"], "Moved");
    assert_eq!(fake.invalid_requests(), 0);
}
