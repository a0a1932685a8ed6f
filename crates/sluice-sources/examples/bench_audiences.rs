//! The audience SQL benchmark: is the SQL that `sluice-sql` compiles from an audience as fast
//! as the query a good analyst would write by hand for the same members?
//!
//! It generates users, orders and events in Postgres (with `generate_series` and a hash of the
//! row number, so every run writes the same rows), writes a Sluice project declaring five
//! audiences on them, loads it with `Project::load_with_env` (with `SLUICE_NOW` fixed to the end
//! of the generated data), and times each audience's compiled SQL beside a hand-written
//! reference query, alternating the two. Both are wrapped in
//! `SELECT count(*), sum(hashtext(user_id::text)::bigint)`, so every run also checks that both
//! return the same members; an exact `EXCEPT` check runs once, untimed.
//!
//! Prints a Markdown section on stdout (progress goes to stderr); `scripts/bench-audiences`
//! runs it and writes that section into `docs/benchmarks.md`. Exits with 1 when the compiled
//! query and the reference disagree on the members.
//!
//! Env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test), AUDIENCE_USERS
//! (1000000), AUDIENCE_ORDERS (3 × users), AUDIENCE_EVENTS (10000000), AUDIENCE_REPS (6),
//! AUDIENCE_REUSE=1 (keep tables from an earlier run with the same sizes instead of
//! regenerating them), AUDIENCE_KEEP=1 (do not drop the schema at the end), BENCH_COMMIT (shown
//! in the output).

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{Duration, Instant};

use sluice_config::Project;
use sluice_core::ModelQuery;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const SCHEMA: &str = "sluice_bench_audiences";
/// The end of the generated data, and `SLUICE_NOW` for the compiler.
const NOW: &str = "2026-03-01T00:00:00Z";
const DAYS_OF_EVENTS: i64 = 60;
/// The target: compiled SQL within this factor of the reference.
const TARGET_RATIO: f64 = 1.5;

type BoxError = Box<dyn Error + Send + Sync>;

struct Config {
    url: String,
    users: u64,
    orders: u64,
    events: u64,
    reps: usize,
    reuse: bool,
    keep: bool,
}

fn env_number(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|_| format!("{name} must be a whole number, got {text:?}").into()),
        Err(_) => Ok(default),
    }
}

fn config() -> Result<Config, BoxError> {
    let users = env_number("AUDIENCE_USERS", 1_000_000)?;
    let config = Config {
        url: std::env::var("BENCH_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        users,
        orders: env_number("AUDIENCE_ORDERS", users * 3)?,
        events: env_number("AUDIENCE_EVENTS", 10_000_000)?,
        reps: env_number("AUDIENCE_REPS", 6)? as usize,
        reuse: std::env::var("AUDIENCE_REUSE").as_deref() == Ok("1"),
        keep: std::env::var("AUDIENCE_KEEP").as_deref() == Ok("1"),
    };
    if config.users < 1000 || config.events < 1000 || config.orders < 1000 || config.reps == 0 {
        return Err(
            "AUDIENCE_USERS, AUDIENCE_ORDERS and AUDIENCE_EVENTS must be at least 1000, AUDIENCE_REPS at least 1"
                .into(),
        );
    }
    Ok(config)
}

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("bench-audiences: {}", format!($($arg)*)) };
}

/// The tables, generated in Postgres. `rnd(i, k)` is a number in [0, 1) for row `i` and stream
/// `k`, from `hashint8`, so the rows are the same on every run. Events and orders are written
/// in time order, as an append-only event table is.
fn seed_sql(c: &Config) -> String {
    let s = SCHEMA;
    let (users, orders, events) = (c.users, c.orders, c.events);
    let event_seconds = DAYS_OF_EVENTS * 86_400;
    format!(
        r#"
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET maintenance_work_mem = '512MB';
DROP SCHEMA IF EXISTS {s} CASCADE;
CREATE SCHEMA {s};
CREATE FUNCTION {s}.rnd(i bigint, k int) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS 'SELECT (hashint8(i * 32 + k)::float8 + 2147483648.0) / 4294967296.0';

CREATE TABLE {s}.users (
    user_id bigint PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    country text,
    age int,
    plan text,
    signup_at timestamptz NOT NULL
);
INSERT INTO {s}.users
SELECT i,
       CASE WHEN i % 7 = 0 THEN 'User' || i || '@' || upper(d.domain) ELSE 'user' || i || '@' || d.domain END,
       (ARRAY['Ann', 'Bob', 'Chloé', 'Dmitri', 'Emma', 'Farid', 'Grace', 'Hugo'])[1 + i % 8],
       (ARRAY['FR', 'DE', 'US', 'GB', 'ES', 'IT', 'NL', 'BR', 'JP', NULL])[1 + floor({s}.rnd(i, 2) * 10)::int],
       CASE WHEN {s}.rnd(i, 3) < 0.1 THEN NULL ELSE 18 + floor({s}.rnd(i, 4) * 62)::int END,
       (ARRAY['free', 'free', 'pro', 'team', NULL])[1 + floor({s}.rnd(i, 5) * 5)::int],
       timestamptz '{NOW}' - floor({s}.rnd(i, 6) * 730 * 86400) * interval '1 second'
FROM generate_series(1, {users}) AS i,
     LATERAL (SELECT (ARRAY['gmail.com', 'example.org', 'corp.com', 'outlook.com'])[1 + floor({s}.rnd(i, 1) * 4)::int] AS domain) AS d;

CREATE TABLE {s}.orders (
    order_id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    amount numeric(10, 2) NOT NULL,
    status text NOT NULL,
    ordered_at timestamptz NOT NULL
);
INSERT INTO {s}.orders
SELECT i,
       1 + floor({s}.rnd(i, 7) * {users})::bigint,
       round((5 + {s}.rnd(i, 8) * 495)::numeric, 2),
       CASE WHEN r.x < 0.85 THEN 'paid' WHEN r.x < 0.95 THEN 'refunded' ELSE 'pending' END,
       timestamptz '{NOW}' - interval '365 days' + floor((i - 1) * (365.0 * 86400 / {orders})) * interval '1 second'
FROM generate_series(1, {orders}) AS i,
     LATERAL (SELECT {s}.rnd(i, 9) AS x) AS r;

CREATE TABLE {s}.events (
    event_id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    name text NOT NULL,
    occurred_at timestamptz NOT NULL,
    device text NOT NULL,
    page text,
    value numeric(10, 2)
);
INSERT INTO {s}.events
SELECT i,
       1 + floor({s}.rnd(i, 11) * {users})::bigint,
       k.kind,
       timestamptz '{NOW}' - interval '{event_seconds} seconds'
           + floor((i - 1) * ({event_seconds}.0 / {events})) * interval '1 second',
       (ARRAY['mobile', 'mobile', 'desktop', 'tablet'])[1 + floor({s}.rnd(i, 13) * 4)::int],
       CASE WHEN k.kind = 'page_viewed'
            THEN (ARRAY['/', '/search', '/product/', '/product/', '/blog/'])[1 + floor({s}.rnd(i, 14) * 5)::int]
                 || floor({s}.rnd(i, 15) * 2000)::int
       END,
       CASE WHEN k.kind <> 'page_viewed' THEN round((1 + {s}.rnd(i, 16) * 199)::numeric, 2) END
FROM generate_series(1, {events}) AS i,
     LATERAL (SELECT CASE WHEN r.x < 0.65 THEN 'page_viewed' WHEN r.x < 0.85 THEN 'added_to_cart' ELSE 'purchased' END AS kind
              FROM (SELECT {s}.rnd(i, 12) AS x) AS r) AS k;

CREATE INDEX events_user_id_occurred_at ON {s}.events (user_id, occurred_at);
CREATE INDEX events_name_occurred_at ON {s}.events (name, occurred_at);
CREATE INDEX orders_user_id ON {s}.orders (user_id);
"#
    )
}

/// The project: the three tables, event models as SQL models filtering `events` by name, and
/// the audiences. `loyal` is only there to be excluded by `retarget`.
fn project_yaml(url: &str) -> String {
    let s = SCHEMA;
    format!(
        r#"version: 1
name: bench_audiences
sources:
  pg: {{ type: postgres, url: "{url}" }}
models:
  users:
    source: pg
    table: {s}.users
    primary_key: user_id
    relations:
      orders: {{ model: orders, join: {{ user_id: user_id }} }}
      cart_adds: {{ model: cart_adds, join: {{ user_id: user_id }} }}
      purchases: {{ model: purchases, join: {{ user_id: user_id }} }}
      page_views: {{ model: page_views, join: {{ user_id: user_id }} }}
  orders:
    source: pg
    table: {s}.orders
    primary_key: order_id
    timestamp: ordered_at
  cart_adds:
    source: pg
    sql: "select * from {s}.events where name = 'added_to_cart'"
    primary_key: event_id
    timestamp: occurred_at
  purchases:
    source: pg
    sql: "select * from {s}.events where name = 'purchased'"
    primary_key: event_id
    timestamp: occurred_at
  page_views:
    source: pg
    sql: "select * from {s}.events where name = 'page_viewed'"
    primary_key: event_id
    timestamp: occurred_at
audiences:
  abandoned_cart:
    parent: users
    conditions:
      event: cart_adds
      within_last: 7 days
      then_not: {{ event: purchases }}
  profile_match:
    parent: users
    conditions:
      and:
        - property: country
          in: [FR, DE, ES]
        - or:
            - property: age
              gt: 30
            - property: plan
              is_null: true
        - not:
            property: email
            contains: "@example.org"
        - not:
            property: plan
            equals: team
        - property: signup_at
          after: 2025-01-01
  repeat_buyers:
    parent: users
    conditions:
      related: orders
      where: {{ property: amount, gt: 50 }}
      count: {{ at_least: 2 }}
  mobile_browsers:
    parent: users
    conditions:
      event: page_views
      within_last: 14 days
      where: {{ property: device, equals: mobile }}
      count: {{ at_least: 3 }}
  loyal:
    parent: users
    conditions:
      related: orders
      where: {{ property: status, equals: paid }}
      sum: {{ column: amount, gt: 1000 }}
  retarget:
    parent: users
    conditions:
      and:
        - member_of: abandoned_cart
        - not_member_of: loyal
"#
    )
}

/// One benchmarked audience: its name in the project, what it asks, and the hand-written query.
struct Case {
    audience: &'static str,
    label: &'static str,
    reference: String,
}

/// The reference queries, written the way an analyst who knows Postgres would: EXISTS / NOT
/// EXISTS for "has (no) such row", a grouped subquery for counts and sums. `ts` renders a
/// moment relative to NOW as a timestamptz constant.
fn cases() -> Vec<Case> {
    let s = SCHEMA;
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().naive_utc();
    let ts = |days_before: i64| {
        format!("timestamptz '{}+00'", (now - chrono::Duration::days(days_before)).format("%Y-%m-%d %H:%M:%S"))
    };
    // A cart add in the last 7 days that no purchase followed; used by two audiences.
    let abandoned = dedent(&format!(
        "EXISTS (SELECT 1 FROM {s}.events AS c
                 WHERE c.user_id = u.user_id AND c.name = 'added_to_cart'
                   AND c.occurred_at BETWEEN {week_ago} AND {now}
                   AND NOT EXISTS (SELECT 1 FROM {s}.events AS p
                                   WHERE p.user_id = c.user_id AND p.name = 'purchased'
                                     AND p.occurred_at > c.occurred_at))",
        week_ago = ts(7),
        now = ts(0),
    ));
    // Goes after `WHERE ` in the queries below, put in after `dedent`, which must not see its
    // indentation.
    let abandoned = abandoned.replace('\n', &format!("\n{}", " ".repeat("WHERE EXISTS (".len())));
    vec![
        Case {
            audience: "abandoned_cart",
            label: "abandoned cart: cart add in the last 7 days, no purchase after it",
            reference: dedent(&format!(
                "SELECT u.* FROM {s}.users AS u
                 WHERE ABANDONED"
            ))
            .replace("ABANDONED", &abandoned),
        },
        Case {
            audience: "profile_match",
            label: "nested property conditions (and / or / not, in, contains, after)",
            reference: dedent(&format!(
                "SELECT u.* FROM {s}.users AS u
                 WHERE u.country IN ('FR', 'DE', 'ES')
                   AND (u.age > 30 OR u.plan IS NULL)
                   AND u.email NOT ILIKE '%@example.org%'
                   AND u.plan IS DISTINCT FROM 'team'
                   AND u.signup_at > timestamptz '2025-01-01 00:00:00+00'"
            )),
        },
        Case {
            audience: "repeat_buyers",
            label: "at least 2 orders with amount > 50",
            reference: dedent(&format!(
                "SELECT u.* FROM {s}.users AS u
                 JOIN (SELECT user_id FROM {s}.orders WHERE amount > 50
                       GROUP BY user_id HAVING count(*) >= 2) AS o USING (user_id)"
            )),
        },
        Case {
            audience: "mobile_browsers",
            label: "at least 3 mobile page views in the last 14 days",
            reference: dedent(&format!(
                "SELECT u.* FROM {s}.users AS u
                 JOIN (SELECT user_id FROM {s}.events
                       WHERE name = 'page_viewed' AND device = 'mobile'
                         AND occurred_at BETWEEN {two_weeks_ago} AND {now}
                       GROUP BY user_id HAVING count(*) >= 3) AS v USING (user_id)",
                two_weeks_ago = ts(14),
                now = ts(0),
            )),
        },
        Case {
            audience: "retarget",
            label: "abandoned cart, not member of loyal (paid orders summing over 1000)",
            reference: dedent(&format!(
                "SELECT u.* FROM {s}.users AS u
                 WHERE ABANDONED
                   AND NOT EXISTS (SELECT 1 FROM {s}.orders AS o
                                   WHERE o.user_id = u.user_id AND o.status = 'paid'
                                   GROUP BY o.user_id HAVING sum(o.amount) > 1000)"
            ))
            .replace("ABANDONED", &abandoned),
        },
    ]
}

/// The queries are indented to fit this file; removes the indentation their continuation
/// lines share, so they print flush left.
fn dedent(sql: &str) -> String {
    let mut lines = sql.lines();
    let first = lines.next().unwrap_or("").trim().to_string();
    let rest: Vec<&str> = lines.collect();
    let indent =
        rest.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    std::iter::once(first)
        .chain(rest.iter().map(|l| l.get(indent..).unwrap_or("").trim_end().to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a query returned: how many members, and a checksum of their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Members {
    count: i64,
    checksum: i64,
}

async fn one_row(client: &Client, sql: &str) -> Result<Vec<Option<String>>, BoxError> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
        }
    }
    Err(format!("no row from: {sql}").into())
}

async fn scalar(client: &Client, sql: &str) -> Result<String, BoxError> {
    one_row(client, sql).await?.into_iter().next().flatten().ok_or_else(|| format!("null from: {sql}").into())
}

/// Runs `sql` wrapped in the member count and checksum; returns them and the wall time.
async fn timed(client: &Client, sql: &str) -> Result<(Members, Duration), BoxError> {
    let wrapped =
        format!("SELECT count(*), coalesce(sum(hashtext(user_id::text)::bigint), 0) FROM (\n{sql}\n) AS members");
    let start = Instant::now();
    let row = one_row(client, &wrapped).await?;
    let elapsed = start.elapsed();
    let number = |i: usize| -> Result<i64, BoxError> {
        Ok(row.get(i).cloned().flatten().ok_or("missing value")?.parse::<i64>()?)
    };
    Ok((Members { count: number(0)?, checksum: number(1)? }, elapsed))
}

struct Outcome {
    audience: &'static str,
    label: &'static str,
    members: i64,
    compiled: Vec<f64>,
    reference: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn tables_match(client: &Client, c: &Config) -> Result<bool, BoxError> {
    let exists = scalar(client, &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{SCHEMA}'")).await?;
    if exists != "3" {
        return Ok(false);
    }
    let counts = one_row(
        client,
        &format!(
            "SELECT (SELECT count(*) FROM {SCHEMA}.users), (SELECT count(*) FROM {SCHEMA}.orders), (SELECT count(*) FROM {SCHEMA}.events)"
        ),
    )
    .await?;
    let want = [c.users, c.orders, c.events].map(|n| Some(n.to_string()));
    Ok(counts == want)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("bench-audiences: error: {message}");
            std::process::exit(2);
        }
    }
}

/// Returns false when a compiled query and its reference disagree on the members.
async fn run() -> Result<bool, BoxError> {
    let c = config()?;
    let load_at_start = load_average();
    let (client, connection) = tokio_postgres::connect(&c.url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("bench-audiences: connection: {e}");
        }
    });

    // ------------------------------------------------------------------------ data
    if c.reuse && tables_match(&client, &c).await? {
        log!("reusing {SCHEMA} ({} users, {} orders, {} events)", c.users, c.orders, c.events);
    } else {
        log!(
            "generating {SCHEMA}: {} users, {} orders, {} events (a few minutes at full size)",
            c.users,
            c.orders,
            c.events
        );
        let start = Instant::now();
        client.batch_execute(&seed_sql(&c)).await?;
        // One statement each: a multi-statement string runs as one transaction, which VACUUM refuses.
        for table in ["users", "orders", "events"] {
            client.batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.{table}")).await?;
        }
        log!("generated and indexed in {:.0} s", start.elapsed().as_secs_f64());
    }

    // ------------------------------------------------------------------------ compile
    let dir = std::env::temp_dir().join(format!("sluice-bench-audiences-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("sluice.yaml"), project_yaml(&c.url))?;
    let project = Project::load_with_env(&dir, &|name| (name == "SLUICE_NOW").then(|| NOW.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    let project = project.map_err(|e| format!("the benchmark project does not load: {e}"))?;
    let cases = cases();
    let mut compiled = BTreeMap::new();
    for case in &cases {
        match &project.models[case.audience].query {
            ModelQuery::Sql(sql) => compiled.insert(case.audience, sql.clone()),
            other => return Err(format!("{}: expected compiled SQL, got {other:?}", case.audience).into()),
        };
    }

    // ------------------------------------------------------------------------ measure
    let mut outcomes = Vec::new();
    let mut agree = true;
    for case in &cases {
        let sql = &compiled[case.audience];
        log!("{}: warm-up and exact member check", case.audience);
        // Warm-up, which also loads the pages both queries read into the cache.
        let (mine, _) = timed(&client, sql).await?;
        let (theirs, _) = timed(&client, &case.reference).await?;
        let differ = scalar(
            &client,
            &format!(
                "SELECT count(*) FROM ((SELECT user_id FROM ({sql}) AS a EXCEPT SELECT user_id FROM ({r}) AS b)
                                      UNION ALL
                                      (SELECT user_id FROM ({r}) AS b EXCEPT SELECT user_id FROM ({sql}) AS a)) AS d",
                r = case.reference
            ),
        )
        .await?;
        if mine != theirs || differ != "0" {
            log!(
                "{}: MEMBERS DIFFER: compiled {mine:?}, reference {theirs:?}, {differ} users in one but not the other",
                case.audience
            );
            agree = false;
            continue;
        }
        let mut outcome = Outcome {
            audience: case.audience,
            label: case.label,
            members: mine.count,
            compiled: Vec::new(),
            reference: Vec::new(),
        };
        for rep in 0..c.reps {
            // Alternate which goes first, so neither always runs on the other's leftovers.
            let order: [bool; 2] = if rep % 2 == 0 { [true, false] } else { [false, true] };
            for is_compiled in order {
                let query = if is_compiled { sql.as_str() } else { case.reference.as_str() };
                let (members, elapsed) = timed(&client, query).await?;
                if members != mine {
                    log!("{}: members changed between runs: {members:?} vs {mine:?}", case.audience);
                    agree = false;
                }
                if is_compiled {
                    outcome.compiled.push(ms(elapsed));
                } else {
                    outcome.reference.push(ms(elapsed));
                }
            }
        }
        log!(
            "{}: {} members, compiled {:.0} ms, reference {:.0} ms (medians)",
            case.audience,
            outcome.members,
            median(&outcome.compiled),
            median(&outcome.reference)
        );
        outcomes.push(outcome);
    }
    if !agree {
        return Ok(false);
    }

    // ------------------------------------------------------------------------ report
    let settings = one_row(
        &client,
        "SELECT current_setting('server_version'), current_setting('shared_buffers'), current_setting('work_mem'),
                current_setting('max_parallel_workers_per_gather'), current_setting('jit')",
    )
    .await?;
    let setting = |i: usize| settings[i].clone().unwrap_or_default();
    let sizes = one_row(
        &client,
        &format!(
            "SELECT pg_size_pretty(pg_total_relation_size('{SCHEMA}.users')), pg_size_pretty(pg_total_relation_size('{SCHEMA}.orders')),
                    pg_size_pretty(pg_total_relation_size('{SCHEMA}.events'))"
        ),
    )
    .await?;
    let size = |i: usize| sizes[i].clone().unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let load = match (load_at_start, load_average()) {
        (Some(start), Some(end)) => format!("; load average (1 min) {start} at the start of the run, {end} at the end"),
        _ => String::new(),
    };
    let commit = std::env::var("BENCH_COMMIT").unwrap_or_else(|_| "unknown".into());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");

    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("## Audience SQL".into());
    line(String::new());
    line(format!(
        "`scripts/bench-audiences` times the SQL that `sluice-sql` compiles for five audiences against a \
         hand-written reference query for the same members, side by side in one run, on {} users, {} orders and \
         {} events generated in Postgres (`{SCHEMA}`; users {}, orders {}, events {} with indexes). Orders have a \
         user, an amount from 5 to 500 and a status (85% paid) over the last year; events are 65% `page_viewed`, \
         20% `added_to_cart` and 15% `purchased`, with a device, over the {DAYS_OF_EVENTS} days before `SLUICE_NOW`. \
         Both tables are written in time order, as append-only tables are. The project declares `users` with \
         relations to `orders` and to the event models `cart_adds`, `purchases` and `page_views`, which are SQL \
         models selecting one `name` from `events`; the audiences and both queries of each are below.",
        c.users,
        c.orders,
        c.events,
        size(0),
        size(1),
        size(2)
    ));
    line(String::new());
    line(format!(
        "- Machine: {cores} cores{}; PostgreSQL {} on the same host, default settings (shared_buffers {}, work_mem {}, \
         max_parallel_workers_per_gather {}, jit {}){}",
        if cpu.is_empty() { String::new() } else { format!(" ({cpu})") },
        setting(0),
        setting(1),
        setting(2),
        setting(3),
        setting(4),
        load
    ));
    line(format!("- Date: {date}; commit: {commit}; `SLUICE_NOW={NOW}`"));
    line(
        "- Indexes, the same for both sides: the primary keys, `events (user_id, occurred_at)`, \
         `events (name, occurred_at)` and `orders (user_id)`; `VACUUM ANALYZE` after loading."
            .into(),
    );
    line(format!(
        "- Each query is wrapped in `SELECT count(*), sum(hashtext(user_id::text)::bigint) FROM (…)`, run once to warm \
         the cache (and the member sets compared exactly with `EXCEPT`), then {} times each, alternating which of the two \
         goes first. Times are wall-clock milliseconds at the client; the ratio is compiled median ÷ reference median.",
        c.reps
    ));
    line(String::new());
    line(format!("| Audience | Members | Compiled ms (median / best) | Reference ms (median / best) | Ratio | Within {TARGET_RATIO}× |"));
    line("|---|---:|---:|---:|---:|---|".into());
    let mut all_within = true;
    for o in &outcomes {
        let ratio = median(&o.compiled) / median(&o.reference);
        let within = ratio <= TARGET_RATIO;
        all_within &= within;
        line(format!(
            "| `{}`: {} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}× | {} |",
            o.audience,
            o.label,
            o.members,
            median(&o.compiled),
            best(&o.compiled),
            median(&o.reference),
            best(&o.reference),
            ratio,
            if within { "yes" } else { "**no**" }
        ));
    }
    let ratios: Vec<f64> = outcomes.iter().map(|o| median(&o.compiled) / median(&o.reference)).collect();
    line(String::new());
    line(format!(
        "Target — compiled SQL within {TARGET_RATIO}× of the hand-written query for all five audiences: **{}** \
         (ratios from {:.2}× to {:.2}×).",
        if all_within { "met" } else { "not met" },
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    ));
    line(String::new());
    line(
        "`retarget` missed the target until commit 84529eb: the `loyal` sum was compiled as a grouped derived \
         table, so Postgres summed the orders of every user to judge the abandoned-cart candidates; it is now correlated when other conditions \
         narrow the parents (see `Compiler::related` in `crates/sluice-sql/src/compile.rs`)."
            .into(),
    );
    line(String::new());
    line("<details><summary>The audiences and the queries compared</summary>".into());
    line(String::new());
    line("```yaml".into());
    let yaml = project_yaml(&c.url);
    line(yaml[yaml.find("audiences:").unwrap_or(0)..].trim_end().to_string());
    line("```".into());
    line(String::new());
    for case in &cases {
        line(format!("`{}`, compiled:", case.audience));
        line(String::new());
        line("```sql".into());
        line(compiled[case.audience].clone());
        line("```".into());
        line(String::new());
        line("Reference:".into());
        line(String::new());
        line("```sql".into());
        line(case.reference.clone());
        line("```".into());
        line(String::new());
    }
    line("</details>".into());
    print!("{out}");

    if !c.keep {
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).await?;
    }
    Ok(true)
}

/// The 1-minute load average, to show how busy the machine was.
fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next().map(str::to_string)
}
