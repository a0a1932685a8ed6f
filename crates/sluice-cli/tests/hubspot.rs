//! End to end: a warehouse model synced to HubSpot contacts (the fake), upsert by email and
//! mirror, with HubSpot's own messages for rejected records.

mod common;

use common::*;
use sluice_fakes::hubspot::{HubSpotFake, HubSpotOptions, RejectRule, DEFAULT_PRIVATE_APP_TOKEN};

fn live_contacts(fake: &HubSpotFake) -> Vec<(String, String)> {
    let mut contacts: Vec<(String, String)> = fake
        .objects("contacts")
        .into_iter()
        .filter(|c| !c.archived)
        .map(|c| (c.properties["email"].clone(), c.properties.get("firstname").cloned().unwrap_or_default()))
        .collect();
    contacts.sort();
    contacts
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_are_upserted_by_email_and_mirrored_with_hubspots_messages() {
    let options = HubSpotOptions {
        reject_values: vec![RejectRule::new("contacts", "email", "user7@example.com")],
        ..HubSpotOptions::default()
    };
    let fake = HubSpotFake::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 20);
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: sqlite, path: warehouse.db }} }}
destinations:
  hubspot: {{ type: hubspot, token: \"${{HUBSPOT_TOKEN:-{}}}\", endpoint: \"{}\" }}
models: {{ customers: {{ source: warehouse, primary_key: customer_id, table: customers }} }}
syncs:
  contacts_to_hubspot:
    model: customers
    destination: hubspot
    object: contacts
    mode: mirror
    match_on: {{ email: email }}
    mapping: {{ firstname: name, ltv: ltv }}
",
            DEFAULT_PRIVATE_APP_TOKEN,
            fake.base_url()
        ),
    )
    .unwrap();
    let sync = |dir: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["sync", "--json", "contacts_to_hubspot"])
                .current_dir(&dir)
                .env("HUBSPOT_TOKEN", DEFAULT_PRIVATE_APP_TOKEN)
                .output()
                .unwrap();
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
            (output.status.code(), report)
        })
        .await
        .unwrap()
    };

    let (code, report) = sync(dir.path().to_path_buf()).await;
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(counts(&report), (19, 0, 0, 1), "{report}");
    assert_eq!(live_contacts(&fake).len(), 19);
    let shown = sluice_async(dir.path(), &["runs", "show", "1"]).await;
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.lines().any(|l| l.starts_with("7 ") && l.contains("rejected")), "{shown}");

    // Change two names, delete one customer, and accept the rejected email.
    fake.state().options_mut().reject_values.clear();
    warehouse
        .execute_batch(
            "update customers set name = 'Renamed ' || customer_id where customer_id in (3, 4);
             delete from customers where customer_id = 5;",
        )
        .unwrap();
    let (code, report) = sync(dir.path().to_path_buf()).await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(counts(&report), (1, 2, 1, 0), "{report}");
    let contacts = live_contacts(&fake);
    assert_eq!(contacts.len(), 19);
    assert!(contacts.contains(&("user3@example.com".into(), "Renamed 3".into())), "{contacts:?}");
    assert!(!contacts.iter().any(|(email, _)| email == "user5@example.com"), "archived in mirror mode");
    assert!(contacts.iter().any(|(email, _)| email == "user7@example.com"), "retried and accepted");

    let (code, report) = sync(dir.path().to_path_buf()).await;
    assert_eq!((code, counts(&report)), (Some(0), (0, 0, 0, 0)), "{report}");
    assert_eq!(fake.invalid_requests(), 0, "every request matched HubSpot's OpenAPI description");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oauth_token_refreshed_by_one_run_is_sealed_in_the_state_and_reused_by_the_next() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let app = fake.state().options().oauth.clone().expect("the fake has an OAuth app");
    let dir = tempfile::tempdir().unwrap();
    let warehouse = sqlite_warehouse(&dir.path().join("warehouse.db"), 5);
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: sqlite, path: warehouse.db }} }}
destinations:
  hubspot:
    type: hubspot
    endpoint: \"{base}\"
    token_url: \"{base}/oauth/v1/token\"
    oauth: {{ client_id: {id}, client_secret: {secret}, refresh_token: {refresh} }}
models: {{ customers: {{ source: warehouse, primary_key: customer_id, table: customers }} }}
syncs:
  contacts: {{ model: customers, destination: hubspot, object: contacts, mode: upsert, match_on: {{ email: email }}, mapping: {{ firstname: name }} }}
",
            base = fake.base_url(),
            id = app.client_id,
            secret = app.client_secret,
            refresh = app.refresh_token,
        ),
    )
    .unwrap();
    let token_requests = || fake.requests().iter().filter(|r| r.path == "/oauth/v1/token").count();

    let output = sluice_async(dir.path(), &["sync", "contacts"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(token_requests(), 1, "the first run gets a token");
    let key = std::fs::read_to_string(dir.path().join(".sluice/secret.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    let state = std::fs::read(dir.path().join(".sluice/state.db")).unwrap();
    let token = fake.current_access_token().unwrap();
    assert!(!state.windows(token.len()).any(|w| w == token.as_bytes()), "the token is stored sealed");

    warehouse.execute("update customers set name = 'Changed' where customer_id = 1", []).unwrap();
    let output = sluice_async(dir.path(), &["sync", "contacts"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(token_requests(), 1, "the next run reuses the stored token");
    assert_eq!(fake.find("contacts", "email", "user1@example.com").unwrap().properties["firstname"], "Changed");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_are_linked_to_their_companies_by_domain() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap();
    warehouse
        .execute_batch(
            "create table companies (domain text primary key, name text);
             insert into companies values ('acme.io', 'Acme'), ('globex.com', 'Globex');
             create table people (id integer primary key, email text, first_name text, company_domain text);
             insert into people values (1, 'ada@acme.io', 'Ada', 'acme.io'), (2, 'bob@globex.com', 'Bob', 'globex.com'),
                                       (3, 'cy@nowhere.net', 'Cy', 'nowhere.net'), (4, 'di@solo.me', 'Di', null);",
        )
        .unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "version: 1
sources: {{ warehouse: {{ type: sqlite, path: warehouse.db }} }}
destinations:
  hubspot: {{ type: hubspot, token: {DEFAULT_PRIVATE_APP_TOKEN}, endpoint: \"{}\" }}
models:
  companies: {{ source: warehouse, primary_key: domain, table: companies }}
  people: {{ source: warehouse, primary_key: id, table: people }}
syncs:
  companies: {{ model: companies, destination: hubspot, object: companies, mode: upsert, match_on: {{ domain: domain }}, mapping: {{ name: name }} }}
  contacts:
    model: people
    destination: hubspot
    object: contacts
    mode: upsert
    match_on: {{ email: email }}
    mapping: {{ firstname: first_name }}
    associate: {{ companies: {{ domain: company_domain }} }}
",
            fake.base_url()
        ),
    )
    .unwrap();
    let output = sluice_async(dir.path(), &["sync", "companies", "contacts"]).await;
    assert_eq!(output.status.code(), Some(2), "one contact's company does not exist: {}", text(&output));

    let company_id = |domain: &str| fake.find("companies", "domain", domain).unwrap().id;
    let contact_id = |email: &str| fake.find("contacts", "email", email).unwrap().id;
    let mut links: Vec<(String, String)> =
        fake.state().associations.iter().map(|a| (a.from_id.clone(), a.to_id.clone())).collect();
    links.sort();
    let mut expected = vec![
        (contact_id("ada@acme.io"), company_id("acme.io")),
        (contact_id("bob@globex.com"), company_id("globex.com")),
    ];
    expected.sort();
    assert_eq!(links, expected);
    assert!(fake.find("contacts", "email", "di@solo.me").is_some(), "a contact without a company is still written");

    let runs = sluice_async(dir.path(), &["runs", "show", "2"]).await;
    let shown = String::from_utf8_lossy(&runs.stdout).to_string();
    assert!(shown.contains("no HubSpot companies record has domain = \"nowhere.net\""), "{shown}");
    assert_eq!(fake.invalid_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_lists_hubspot_properties_and_validate_suggests_close_names() {
    let fake = HubSpotFake::start(HubSpotOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 3);
    let project = |mapping: &str| {
        format!(
            "version: 1
sources: {{ warehouse: {{ type: sqlite, path: warehouse.db }} }}
destinations: {{ hubspot: {{ type: hubspot, token: {DEFAULT_PRIVATE_APP_TOKEN}, endpoint: \"{}\" }} }}
models: {{ customers: {{ source: warehouse, primary_key: customer_id, table: customers }} }}
syncs:
  contacts: {{ model: customers, destination: hubspot, object: contacts, mode: upsert, match_on: {{ email: email }}, mapping: {{ {mapping} }} }}
",
            fake.base_url()
        )
    };
    std::fs::write(dir.path().join("sluice.yaml"), project("first_name: name")).unwrap();
    let described = sluice_async(dir.path(), &["destinations", "describe", "hubspot", "contacts"]).await;
    let shown = String::from_utf8_lossy(&described.stdout).to_string();
    assert!(described.status.success(), "{}", text(&described));
    let email = shown.lines().find(|l| l.starts_with("email")).unwrap_or_else(|| panic!("{shown}"));
    assert!(email.contains("yes"), "email is a match key: {shown}");
    // The listing of all objects is what validate caches.
    let described = sluice_async(dir.path(), &["destinations", "describe", "hubspot"]).await;
    assert!(String::from_utf8_lossy(&described.stdout).contains("companies"), "{}", text(&described));

    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", text(&validated));
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(
        stderr.contains(
            "syncs.contacts.mapping.first_name: contacts has no field `first_name`: did you mean `firstname`?"
        ),
        "{stderr}"
    );
    std::fs::write(dir.path().join("sluice.yaml"), project("firstname: name")).unwrap();
    let validated = sluice_async(dir.path(), &["validate"]).await;
    assert!(validated.status.success(), "{}", text(&validated));
}
