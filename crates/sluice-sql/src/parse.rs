//! Reading audience definitions from a JSON tree (YAML files are converted to one), with
//! errors that name the key path and say what was expected.

use serde_json::{Map, Value};

use crate::ast::*;
use crate::SqlError;

/// Keys an audience entry may have.
const AUDIENCE_KEYS: &[&str] = &["parent", "description", "conditions", "splits", "priority", "column"];

/// Property tests and their keys.
const PROPERTY_OPS: &[&str] = &[
    "equals",
    "not_equals",
    "in",
    "not_in",
    "lt",
    "less_than",
    "lte",
    "at_most",
    "gt",
    "greater_than",
    "gte",
    "at_least",
    "between",
    "contains",
    "starts_with",
    "is_null",
    "is_not_null",
    "within_last",
    "before",
    "after",
];

const COMPARISON_OPS: &[&str] = &[
    "equals",
    "exactly",
    "not_equals",
    "lt",
    "less_than",
    "lte",
    "at_most",
    "gt",
    "greater_than",
    "gte",
    "at_least",
    "between",
];

const MEASURES: &[&str] = &["exists", "count", "sum", "avg", "min", "max"];

/// Parses one audience entry (`audiences.NAME` in a project file).
pub fn parse_audience(name: &str, value: &Value) -> Result<Audience, SqlError> {
    let map = object(value, "", "a mapping with `parent` and `conditions` (or `priority`)")?;
    check_keys(map, "", AUDIENCE_KEYS)?;
    let parent = text(required(map, "", "parent")?, "parent")?;
    let body = match map.get("priority") {
        Some(list) => {
            for key in ["conditions", "splits"] {
                if map.contains_key(key) {
                    return Err(SqlError::at(
                        key,
                        "a priority list takes no `conditions` or `splits`: its members come from the listed audiences",
                    ));
                }
            }
            let items = array(list, "priority")?;
            if items.is_empty() {
                return Err(SqlError::at("priority", "expected a list of at least one audience name"));
            }
            let audiences = items
                .iter()
                .enumerate()
                .map(|(i, item)| text(item, &format!("priority[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let column = match map.get("column") {
                Some(value) => column_name(value, "column")?,
                None => "audience".to_string(),
            };
            AudienceBody::Priority { audiences, column }
        }
        None => {
            if map.contains_key("column") {
                return Err(SqlError::at(
                    "column",
                    "only priority lists take `column`; for splits, set `splits.column`",
                ));
            }
            let condition = map.get("conditions").map(|c| condition(c, "conditions")).transpose()?;
            let splits = map.get("splits").map(|s| splits(name, s)).transpose()?;
            AudienceBody::Conditions { condition, splits }
        }
    };
    Ok(Audience { name: name.to_string(), parent, body })
}

fn splits(audience: &str, value: &Value) -> Result<Splits, SqlError> {
    let map = object(value, "splits", "a mapping with `groups` (and optionally `salt` and `column`)")?;
    check_keys(map, "splits", &["salt", "column", "groups"])?;
    let salt = match map.get("salt") {
        Some(v) => text(v, "splits.salt")?,
        None => audience.to_string(),
    };
    let column = match map.get("column") {
        Some(v) => column_name(v, "splits.column")?,
        None => "split".to_string(),
    };
    let groups_value = required(map, "splits", "groups")?;
    let groups_map =
        object(groups_value, "splits.groups", "group names with percentages, such as `{ control: 10, test: 90 }`")?;
    let mut groups = Vec::new();
    let mut total = 0u32;
    for (name, share) in groups_map {
        let path = format!("splits.groups.{name}");
        if !is_plain_name(name) {
            return Err(SqlError::at(path, "group names may only use letters, digits, `_` and `-`"));
        }
        let percent = share
            .as_f64()
            .filter(|p| *p > 0.0 && *p <= 100.0)
            .ok_or_else(|| SqlError::at(&path, "expected a percentage above 0 and at most 100, such as 10 or 12.5"))?;
        let hundredths = (percent * 100.0).round();
        if (percent * 100.0 - hundredths).abs() > 1e-6 {
            return Err(SqlError::at(path, "percentages may have at most two decimals"));
        }
        total += hundredths as u32;
        groups.push((name.clone(), hundredths as u32));
    }
    if groups.is_empty() {
        return Err(SqlError::at("splits.groups", "expected at least one group"));
    }
    if total != 10_000 {
        return Err(SqlError::at(
            "splits.groups",
            format!("the percentages add up to {}, expected 100", total as f64 / 100.0),
        ));
    }
    Ok(Splits { salt, column, groups })
}

/// Parses a condition node at `path`.
pub fn condition(value: &Value, path: &str) -> Result<Condition, SqlError> {
    let map = object(
        value,
        path,
        "a condition: `and`, `or`, `not`, `property`, `related`, `event`, `member_of` or `not_member_of`",
    )?;
    for key in ["and", "or"] {
        if let Some(items) = map.get(key) {
            check_keys(map, path, &[key])?;
            let at = join(path, key);
            let items = array(items, &at)?;
            if items.is_empty() {
                return Err(SqlError::at(at, "expected a list of at least one condition"));
            }
            let children = items
                .iter()
                .enumerate()
                .map(|(i, item)| condition(item, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if key == "and" { Condition::And(children) } else { Condition::Or(children) });
        }
    }
    if let Some(inner) = map.get("not") {
        check_keys(map, path, &["not"])?;
        return Ok(Condition::Not(Box::new(condition(inner, &join(path, "not"))?)));
    }
    for (key, member) in [("member_of", true), ("not_member_of", false)] {
        if let Some(name) = map.get(key) {
            check_keys(map, path, &[key])?;
            return Ok(Condition::MemberOf { audience: text(name, &join(path, key))?, member });
        }
    }
    if let Some(column) = map.get("property") {
        let mut allowed = vec!["property"];
        allowed.extend_from_slice(PROPERTY_OPS);
        check_keys(map, path, &allowed)?;
        let column = column_name(column, &join(path, "property"))?;
        let test = property_test(map, path)?;
        return Ok(Condition::Property { column, test });
    }
    for key in ["related", "event"] {
        if map.contains_key(key) {
            return related(map, path, key).map(|r| Condition::Related(Box::new(r)));
        }
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    Err(SqlError::at(
        path,
        format!(
            "cannot tell what kind of condition this is (keys: {}): expected one of `and`, `or`, `not`, `property`, `related`, `event`, `member_of`, `not_member_of`",
            keys.join(", ")
        ),
    ))
}

fn related(map: &Map<String, Value>, path: &str, key: &str) -> Result<RelatedCondition, SqlError> {
    let mut allowed = vec![key, "where", "within_last", "before", "after", "then", "then_not"];
    allowed.extend_from_slice(MEASURES);
    check_keys(map, path, &allowed)?;
    let relation = text(&map[key], &join(path, key))?;
    let filter = map.get("where").map(|w| condition(w, &join(path, "where"))).transpose()?;
    let window = window(map, path)?;
    let present: Vec<&str> = MEASURES.iter().copied().filter(|m| map.contains_key(*m)).collect();
    let measure = match present.as_slice() {
        [] => Measure::Exists(true),
        ["exists"] => Measure::Exists(
            map["exists"].as_bool().ok_or_else(|| SqlError::at(join(path, "exists"), "expected true or false"))?,
        ),
        ["count"] => Measure::Count(comparison(&map["count"], &join(path, "count"), &[])?),
        [key] => {
            let at = join(path, key);
            let inner = object(&map[*key], &at, "a mapping such as `{ column: amount, gt: 100 }`")?;
            let column = column_name(required(inner, &at, "column")?, &join(&at, "column"))?;
            let function = match *key {
                "sum" => Aggregate::Sum,
                "avg" => Aggregate::Avg,
                "min" => Aggregate::Min,
                _ => Aggregate::Max,
            };
            Measure::Aggregate { function, column, comparison: comparison(&map[*key], &at, &["column"])? }
        }
        many => {
            return Err(SqlError::at(
                path,
                format!("expected one of `exists`, `count`, `sum`, `avg`, `min`, `max`, found {}", many.join(" and ")),
            ))
        }
    };
    let mut then = None;
    for (key, did) in [("then", true), ("then_not", false)] {
        if let Some(value) = map.get(key) {
            if then.is_some() {
                return Err(SqlError::at(path, "expected `then` or `then_not`, not both"));
            }
            if !matches!(measure, Measure::Exists(true)) {
                return Err(SqlError::at(
                    join(path, key),
                    "a sequence asks whether some event was (not) followed by another: it cannot be combined with `count`, an aggregate or `exists: false`",
                ));
            }
            then = Some(Box::new(sequence(value, &join(path, key), did)?));
        }
    }
    Ok(RelatedCondition { relation, filter, window, measure, then })
}

fn sequence(value: &Value, path: &str, did: bool) -> Result<Sequence, SqlError> {
    let map = object(value, path, "a mapping such as `{ event: purchased, within: 7 days }`")?;
    check_keys(map, path, &["event", "where", "within"])?;
    let relation = text(required(map, path, "event")?, &join(path, "event"))?;
    let filter = map.get("where").map(|w| condition(w, &join(path, "where"))).transpose()?;
    let within = map.get("within").map(|w| duration(w, &join(path, "within"))).transpose()?;
    Ok(Sequence { relation, filter, within, did })
}

fn window(map: &Map<String, Value>, path: &str) -> Result<Vec<Test>, SqlError> {
    let mut tests = Vec::new();
    if let Some(value) = map.get("within_last") {
        tests.push(Test::WithinLast(duration(value, &join(path, "within_last"))?));
    }
    if let Some(value) = map.get("after") {
        tests.push(Test::After(instant(value, &join(path, "after"))?));
    }
    if let Some(value) = map.get("before") {
        tests.push(Test::Before(instant(value, &join(path, "before"))?));
    }
    Ok(tests)
}

fn property_test(map: &Map<String, Value>, path: &str) -> Result<Test, SqlError> {
    let present: Vec<&str> = PROPERTY_OPS.iter().copied().filter(|op| map.contains_key(*op)).collect();
    let op = match present.as_slice() {
        [op] => *op,
        [] => {
            return Err(SqlError::at(
                path,
                format!("expected an operator next to `property`: one of {}", PROPERTY_OPS.join(", ")),
            ))
        }
        many => return Err(SqlError::at(path, format!("expected one operator, found {}", many.join(" and ")))),
    };
    let at = join(path, op);
    let value = &map[op];
    Ok(match op {
        "equals" => match value {
            Value::Null => Test::IsNull,
            _ => Test::Equals(literal(value, &at)?),
        },
        "not_equals" => match value {
            Value::Null => Test::IsNotNull,
            _ => Test::NotEquals(literal(value, &at)?),
        },
        "in" | "not_in" => {
            let items = array(value, &at)?;
            if items.is_empty() {
                return Err(SqlError::at(at, "expected a list of at least one value"));
            }
            let values =
                items.iter().enumerate().map(|(i, v)| literal(v, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?;
            if op == "in" {
                Test::In(values)
            } else {
                Test::NotIn(values)
            }
        }
        "between" => {
            let (low, high) = pair(value, &at)?;
            Test::Between(low, high)
        }
        "contains" | "starts_with" => {
            let text = match value {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(SqlError::at(at, "expected a non-empty text")),
            };
            if op == "contains" {
                Test::Contains(text)
            } else {
                Test::StartsWith(text)
            }
        }
        "is_null" | "is_not_null" => match value {
            Value::Bool(true) => {
                if op == "is_null" {
                    Test::IsNull
                } else {
                    Test::IsNotNull
                }
            }
            _ => return Err(SqlError::at(at, "expected `true`")),
        },
        "within_last" => Test::WithinLast(duration(value, &at)?),
        "before" => Test::Before(instant(value, &at)?),
        "after" => Test::After(instant(value, &at)?),
        other => match compare_op(other) {
            Some(op) => Test::Compare(op, literal(value, &at)?),
            None => unreachable!("every property operator is handled"),
        },
    })
}

fn compare_op(key: &str) -> Option<CompareOp> {
    Some(match key {
        "lt" | "less_than" => CompareOp::Lt,
        "lte" | "at_most" => CompareOp::Lte,
        "gt" | "greater_than" => CompareOp::Gt,
        "gte" | "at_least" => CompareOp::Gte,
        _ => return None,
    })
}

/// A comparison such as `{ at_least: 2 }`; `extra` keys may sit beside it (`column`).
fn comparison(value: &Value, path: &str, extra: &[&str]) -> Result<Comparison, SqlError> {
    let map = object(value, path, "a comparison such as `{ at_least: 2 }`")?;
    let mut allowed = extra.to_vec();
    allowed.extend_from_slice(COMPARISON_OPS);
    check_keys(map, path, &allowed)?;
    let present: Vec<&str> = COMPARISON_OPS.iter().copied().filter(|op| map.contains_key(*op)).collect();
    let [op] = present.as_slice() else {
        return Err(SqlError::at(
            path,
            format!("expected exactly one comparison: one of {}", COMPARISON_OPS.join(", ")),
        ));
    };
    let at = join(path, op);
    let number = |v: &Value| -> Result<Literal, SqlError> {
        match literal(v, &at)? {
            number @ (Literal::Int(_) | Literal::Float(_)) => Ok(number),
            _ => Err(SqlError::at(&at, "expected a number")),
        }
    };
    Ok(match *op {
        "equals" | "exactly" => Comparison::Equals(number(&map[*op])?),
        "not_equals" => Comparison::NotEquals(number(&map[*op])?),
        "between" => {
            let (low, high) = pair(&map[*op], &at)?;
            for bound in [&low, &high] {
                if !matches!(bound, Literal::Int(_) | Literal::Float(_)) {
                    return Err(SqlError::at(&at, "expected two numbers"));
                }
            }
            Comparison::Between(low, high)
        }
        other => Comparison::Compare(compare_op(other).expect("listed comparison"), number(&map[other])?),
    })
}

fn pair(value: &Value, path: &str) -> Result<(Literal, Literal), SqlError> {
    match value.as_array().map(Vec::as_slice) {
        Some([low, high]) => Ok((literal(low, path)?, literal(high, path)?)),
        _ => Err(SqlError::at(path, "expected a list of two values, such as [10, 20]")),
    }
}

fn literal(value: &Value, path: &str) -> Result<Literal, SqlError> {
    match value {
        Value::String(text) => {
            if text.contains('\0') {
                return Err(SqlError::at(path, "text values may not contain a NUL character"));
            }
            Ok(Literal::Text(text.clone()))
        }
        Value::Bool(b) => Ok(Literal::Bool(*b)),
        Value::Number(number) => {
            let text = number.to_string();
            if let Ok(int) = text.parse::<i64>() {
                return Ok(Literal::Int(int));
            }
            match text.parse::<f64>() {
                Ok(float) if float.is_finite() => Ok(Literal::Float(float)),
                _ => Err(SqlError::at(path, format!("the number {text} is out of range"))),
            }
        }
        Value::Null => Err(SqlError::at(path, "expected a value; use `is_null: true` to test for null")),
        _ => Err(SqlError::at(path, "expected a text, number or boolean")),
    }
}

/// `7 days`, `24 hours`, `30 minutes`, `2 weeks`, or a bare number of days.
fn duration(value: &Value, path: &str) -> Result<Duration, SqlError> {
    let expected = "expected a duration such as `7 days`, `24 hours`, `30 minutes` or `2 weeks`";
    let (amount, unit) = match value {
        Value::Number(n) => (n.as_u64().ok_or_else(|| SqlError::at(path, expected))?, "days"),
        Value::String(text) => {
            let mut parts = text.split_whitespace();
            let amount =
                parts.next().and_then(|a| a.parse::<u64>().ok()).ok_or_else(|| SqlError::at(path, expected))?;
            let unit = parts.next().ok_or_else(|| SqlError::at(path, expected))?;
            if parts.next().is_some() {
                return Err(SqlError::at(path, expected));
            }
            (amount, unit)
        }
        _ => return Err(SqlError::at(path, expected)),
    };
    let seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return Err(SqlError::at(path, expected)),
    };
    if amount == 0 || amount > 100 * 366 * 86_400 / seconds {
        return Err(SqlError::at(path, "expected a duration above zero and at most 100 years"));
    }
    Ok(Duration(amount * seconds))
}

/// `2026-01-31` (midnight UTC) or an RFC 3339 timestamp.
fn instant(value: &Value, path: &str) -> Result<Instant, SqlError> {
    let expected = "expected a date such as 2026-01-31 or a timestamp such as 2026-01-31T12:00:00Z";
    let text = value.as_str().ok_or_else(|| SqlError::at(path, expected))?;
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Instant(date.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Instant(t.naive_utc()))
        .map_err(|_| SqlError::at(path, format!("{expected}, found {text:?}")))
}

fn column_name(value: &Value, path: &str) -> Result<String, SqlError> {
    let name = text(value, path)?;
    if name.contains('\0') || name.trim() != name {
        return Err(SqlError::at(path, "expected a column name without NUL characters or surrounding spaces"));
    }
    Ok(name)
}

fn text(value: &Value, path: &str) -> Result<String, SqlError> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(SqlError::at(path, "expected a name")),
    }
}

fn object<'v>(value: &'v Value, path: &str, expected: &str) -> Result<&'v Map<String, Value>, SqlError> {
    value.as_object().ok_or_else(|| SqlError::at(path, format!("expected {expected}")))
}

fn array<'v>(value: &'v Value, path: &str) -> Result<&'v Vec<Value>, SqlError> {
    value.as_array().ok_or_else(|| SqlError::at(path, "expected a list"))
}

fn required<'v>(map: &'v Map<String, Value>, path: &str, key: &str) -> Result<&'v Value, SqlError> {
    map.get(key).ok_or_else(|| SqlError::at(path, format!("missing key `{key}`")))
}

fn check_keys(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), SqlError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let close = allowed.iter().find(|a| sluice_core::names::edit_distance(a, key) <= 2);
            let hint = close.map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            return Err(SqlError::at(
                join(path, key),
                format!("unknown key{hint}: expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Letters, digits, `_` and `-`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
