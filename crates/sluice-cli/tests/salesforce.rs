//! End to end: a warehouse model synced to Salesforce Contacts (the fake), upsert on an
//! external id through both transports, and mirror deletes by Salesforce Id.

mod common;

use common::*;
use sluice_fakes::salesforce::{SalesforceFake, SalesforceOptions};

fn project(dir: &std::path::Path, fake: &SalesforceFake, extra: &str) {
    let app = SalesforceOptions::default().oauth;
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: sqlite, path: warehouse.db }} }}
destinations:
  salesforce:
    type: salesforce
    endpoint: \"{base}\"
    oauth: {{ client_id: {id}, client_secret: {secret}, refresh_token: {refresh} }}
{extra}models: {{ customers: {{ source: warehouse, primary_key: customer_id, table: customers }} }}
syncs:
  contacts_to_sf:
    model: customers
    destination: salesforce
    object: Contact
    mode: mirror
    match_on: {{ Customer_Id__c: customer_id }}
    mapping: {{ LastName: name, Email: email, LTV__c: ltv }}
",
            base = fake.base_url(),
            id = app.client_id,
            secret = app.client_secret,
            refresh = app.refresh_token,
        ),
    )
    .unwrap();
}

fn bulk_jobs(fake: &SalesforceFake) -> usize {
    fake.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/jobs/ingest")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn small_runs_use_collections_and_large_runs_use_bulk_api_2() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 60);
    // 60 changes: above a threshold of 50, so the first run goes through Bulk API 2.0.
    project(dir.path(), &fake, "    bulk_threshold: 50\n");
    let (code, report) = sync_json_async(dir.path(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (60, 0, 0, 0)), "{report}");
    assert_eq!(bulk_jobs(&fake), 1, "one ingest job for the large run");
    assert_eq!(fake.records("Contact").len(), 60);

    // A few changes go through sObject Collections.
    warehouse
        .execute_batch(
            "update customers set name = 'Renamed' where customer_id in (1, 2);
             delete from customers where customer_id = 3;",
        )
        .unwrap();
    let (code, report) = sync_json_async(dir.path(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (0, 2, 1, 0)), "{report}");
    assert_eq!(bulk_jobs(&fake), 1, "no new ingest job for a small run");
    assert_eq!(fake.find("Contact", "Customer_Id__c", "1").unwrap().fields["LastName"], "Renamed");
    assert!(fake.find("Contact", "Customer_Id__c", "3").is_none(), "deleted by its Salesforce Id in mirror mode");
    assert_eq!(fake.records("Contact").len(), 59);

    let (code, report) = sync_json_async(dir.path(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (0, 0, 0, 0)), "{report}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_contacts_show_salesforces_message_and_are_retried() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 5);
    warehouse.execute("update customers set email = 'not-an-email' where customer_id = 4", []).unwrap();
    project(dir.path(), &fake, "");
    let (code, report) = sync_json_async(dir.path(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (2, (4, 0, 0, 1)), "{report}");
    let shown = sluice_async(dir.path(), &["runs", "show", "1"]).await;
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.contains("INVALID_EMAIL_ADDRESS"), "{shown}");

    warehouse.execute("update customers set email = 'four@example.com' where customer_id = 4", []).unwrap();
    let (code, report) = sync_json_async(dir.path(), "contacts_to_sf").await;
    assert_eq!((code, counts(&report)), (0, (1, 0, 0, 0)), "{report}");
    assert_eq!(fake.records("Contact").len(), 5);
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_lists_salesforce_fields_and_validate_suggests_close_names() {
    let fake = SalesforceFake::start(SalesforceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 3);
    project(dir.path(), &fake, "");
    let described = sluice_async(dir.path(), &["destinations", "describe", "salesforce"]).await;
    assert!(described.status.success(), "{}", text(&described));
    let shown = String::from_utf8_lossy(&described.stdout).to_string();
    let external = shown.lines().find(|l| l.starts_with("Customer_Id__c")).unwrap_or_else(|| panic!("{shown}"));
    assert!(external.contains("yes"), "the external id is a match key: {shown}");

    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
    std::fs::write(dir.path().join("sluice.yaml"), yaml.replace("LastName: name", "Lastname: name")).unwrap();
    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", text(&validated));
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(stderr.contains("mapping.Lastname: Contact has no field `Lastname`: did you mean `LastName`?"), "{stderr}");
}
