//! The compiler's contract, without a database: parse errors name their key path, constants
//! and identifiers are escaped per dialect, and audience references are checked.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_core::ModelQuery;
use sluice_sql::ast::{CompareOp, Comparison, Literal};
use sluice_sql::dialect::like_escape;
use sluice_sql::{parse_audience, Compiler, Dialect, ModelSchema, Relation, Schema};

fn schema() -> Schema {
    let mut models = BTreeMap::new();
    let mut relations = BTreeMap::new();
    relations
        .insert("orders".to_string(), Relation { model: "orders".into(), on: vec![("id".into(), "user_id".into())] });
    models.insert(
        "users".to_string(),
        ModelSchema {
            query: ModelQuery::Table("app.users".into()),
            primary_key: "id".into(),
            timestamp: None,
            relations,
        },
    );
    models.insert(
        "orders".to_string(),
        ModelSchema {
            query: ModelQuery::Sql("select * from orders -- all of them".into()),
            primary_key: "order_id".into(),
            timestamp: None,
            relations: BTreeMap::new(),
        },
    );
    Schema { models }
}

fn now() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(12, 0, 0).unwrap()
}

fn audiences(entries: serde_json::Value) -> BTreeMap<String, sluice_sql::Audience> {
    entries
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), parse_audience(name, value).unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect()
}

fn parse_error(value: serde_json::Value) -> String {
    parse_audience("a", &value).unwrap_err().to_string()
}

#[test]
fn parse_errors_name_the_key_path_and_what_was_expected() {
    let cases = [
        (json!({"conditions": {}}), "missing key `parent`"),
        (
            json!({"parent": "users", "conditions": {"and": [{"property": "x"}]}}),
            "conditions.and[0]: expected an operator",
        ),
        (
            json!({"parent": "users", "conditions": {"property": "x", "gt": 1, "lt": 2}}),
            "expected one operator, found lt and gt",
        ),
        (
            json!({"parent": "users", "conditions": {"related": "orders", "count": {"atleast": 2}}}),
            "conditions.count.atleast: unknown key (did you mean `at_least`?)",
        ),
        (
            json!({"parent": "users", "conditions": {"related": "orders", "count": {"at_least": "two"}}}),
            "conditions.count.at_least: expected a number",
        ),
        (
            json!({"parent": "users", "conditions": {"event": "e", "within_last": "7 fortnights"}}),
            "conditions.within_last: expected a duration",
        ),
        (
            json!({"parent": "users", "conditions": {"property": "d", "after": "yesterday"}}),
            "conditions.after: expected a date",
        ),
        (
            json!({"parent": "users", "conditions": {"event": "e", "count": {"gt": 1}, "then": {"event": "f"}}}),
            "cannot be combined with `count`",
        ),
        (
            json!({"parent": "users", "conditions": {"wat": 1}}),
            "cannot tell what kind of condition this is (keys: wat)",
        ),
        (
            json!({"parent": "users", "priority": ["a"], "conditions": {}}),
            "conditions: a priority list takes no `conditions`",
        ),
        (json!({"parent": "users", "splits": {"groups": {"a": 50.005, "b": 49.995}}}), "at most two decimals"),
        (json!({"parent": "users", "splits": {"groups": {"a b": 100}}}), "splits.groups.a b: group names may only use"),
        (
            json!({"parent": "users", "conditions": {"property": "x", "in": []}}),
            "conditions.in: expected a list of at least one value",
        ),
    ];
    for (value, want) in cases {
        let error = parse_error(value.clone());
        assert!(error.contains(want), "{value}\n→ {error}\nwanted: {want}");
    }
}

#[test]
fn constants_and_identifiers_are_escaped_per_dialect() {
    assert_eq!(Dialect::Postgres.string(r"it's a \ back"), r"E'it''s a \\ back'");
    assert_eq!(Dialect::Sqlite.string(r"it's a \ back"), r"'it''s a \ back'");
    assert_eq!(Dialect::Postgres.ident("we\"ird"), "\"we\"\"ird\"");
    assert_eq!(Dialect::Sqlite.table("app.users"), "\"app\".\"users\"");
    assert_eq!(Dialect::Postgres.literal(&Literal::Int(5)), "'5'", "Postgres numbers take the column's type");
    assert_eq!(Dialect::Sqlite.literal(&Literal::Float(2.5)), "2.5");
    assert_eq!(Dialect::Sqlite.literal(&Literal::Bool(true)), "TRUE");
    assert_eq!(like_escape(r"100%_\x"), r"100\%\_\\x");
    assert!(Dialect::for_source_type("snowflake").unwrap_err().contains("not built yet"));
}

#[test]
fn counts_that_accept_zero_are_known() {
    let int = |n| Literal::Int(n);
    assert!(Comparison::Compare(CompareOp::Lte, int(2)).accepts_zero());
    assert!(Comparison::Equals(int(0)).accepts_zero());
    assert!(!Comparison::Compare(CompareOp::Gte, int(1)).accepts_zero());
    assert!(Comparison::Between(int(0), int(3)).accepts_zero());
    assert!(!Comparison::NotEquals(int(0)).accepts_zero());
}

#[test]
fn sql_models_end_on_their_own_line_so_comments_cannot_swallow_the_query() {
    let schema = schema();
    let defs = audiences(json!({"buyers": {"parent": "users", "conditions": {"related": "orders"}}}));
    let sql = Compiler::new(&schema, &defs, Dialect::Postgres, now()).compile("buyers").unwrap().sql;
    assert!(sql.contains("(select * from orders -- all of them\n) AS \"r1\""), "{sql}");
    assert!(sql.starts_with("SELECT \"p0\".* FROM \"app\".\"users\" AS \"p0\" WHERE EXISTS"), "{sql}");
}

#[test]
fn references_between_audiences_are_checked() {
    let schema = schema();
    let defs = audiences(json!({
        "a": {"parent": "users", "conditions": {"member_of": "b"}},
        "b": {"parent": "users", "conditions": {"not_member_of": "a"}},
        "c": {"parent": "orders", "conditions": {"member_of": "d"}},
        "d": {"parent": "users"},
        "e": {"parent": "users", "priority": ["d", "ghost"]},
    }));
    let compiler = Compiler::new(&schema, &defs, Dialect::Sqlite, now());
    assert!(compiler.compile("a").unwrap_err().message.contains("cycle: a → b → a"));
    assert!(compiler.compile("c").unwrap_err().message.contains("selects from `users`, not from `orders`"));
    let error = compiler.compile("e").unwrap_err();
    assert_eq!(error.path, "priority[1]");
    assert!(error.message.contains("no audience named `ghost`"));
    assert!(compiler.overlap("c", "d").unwrap_err().message.contains("same parent model"));
    assert!(compiler.compile_group("d", "x").unwrap_err().message.contains("has no split groups"));
}

#[test]
fn split_buckets_follow_the_documented_formula() {
    // The first 32 bits of MD5("s:1"), big-endian, modulo 10,000.
    let digest = {
        use md5::{Digest, Md5};
        Md5::digest(b"s:1")
    };
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    assert_eq!(sluice_sql::split_bucket("s", "1"), i64::from(first % 10_000));
    assert_ne!(sluice_sql::split_bucket("s", "1"), sluice_sql::split_bucket("t", "1"), "the salt reshuffles");
}
