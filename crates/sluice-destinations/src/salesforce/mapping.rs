//! Salesforce field descriptions, value coercion, CSV for Bulk API 2.0 and per-record results.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value as Json};
use sluice_core::names::edit_distance;
use sluice_core::Value;

/// One field of an sObject, from `GET /sobjects/{SObject}/describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: String,
    /// Salesforce's type: string, boolean, int, double, currency, percent, date, datetime…
    pub(crate) type_: String,
    pub(crate) external_id: bool,
    pub(crate) id_lookup: bool,
    pub(crate) nillable: bool,
    pub(crate) createable: bool,
    pub(crate) updateable: bool,
    pub(crate) defaulted_on_create: bool,
    /// Most characters for text fields; 0 when not limited.
    pub(crate) length: usize,
}

impl Field {
    pub(crate) fn can_match_on(&self) -> bool {
        self.external_id || self.id_lookup
    }

    /// Whether a create must carry a value for this field.
    pub(crate) fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted_on_create
    }
}

/// Parses the `fields` of a describe answer.
pub(crate) fn fields(describe: &Json) -> Vec<Field> {
    let list = describe.get("fields").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    list.iter()
        .filter_map(|f| {
            let flag = |name: &str| f.get(name).and_then(Json::as_bool).unwrap_or(false);
            Some(Field {
                name: f.get("name")?.as_str()?.to_string(),
                type_: f.get("type").and_then(Json::as_str).unwrap_or("string").to_string(),
                external_id: flag("externalId"),
                id_lookup: flag("idLookup"),
                nillable: flag("nillable"),
                createable: flag("createable"),
                updateable: flag("updateable"),
                defaulted_on_create: flag("defaultedOnCreate"),
                length: f.get("length").and_then(Json::as_u64).unwrap_or(0) as usize,
            })
        })
        .collect()
}

/// How a value looks in a message: quoted and cut short.
fn shown(value: &Value) -> String {
    let text = value.to_text().unwrap_or_default();
    let mut cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("'{cut}'")
}

/// Converts a model value to the JSON Salesforce accepts for the field's type, or says why it
/// cannot (`LTV__c: 'abc' is not a number`).
pub(crate) fn coerce(field: &Field, value: &Value) -> Result<Json, String> {
    if matches!(value, Value::Null) {
        return Ok(Json::Null);
    }
    let name = &field.name;
    let text = || value.to_text().unwrap_or_default();
    match field.type_.as_str() {
        "boolean" => match value {
            Value::Bool(b) => Ok(Json::Bool(*b)),
            Value::Int(0) => Ok(Json::Bool(false)),
            Value::Int(1) => Ok(Json::Bool(true)),
            Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" => Ok(Json::Bool(true)),
                "false" | "f" | "no" | "n" | "0" => Ok(Json::Bool(false)),
                _ => Err(format!("{name}: {} is not a boolean (true or false)", shown(value))),
            },
            _ => Err(format!("{name}: {} is not a boolean (true or false)", shown(value))),
        },
        "int" => {
            let parsed = match value {
                Value::Int(i) => Some(*i),
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
                Value::Decimal(_) | Value::Text(_) => {
                    let t = text();
                    let t = t.trim();
                    t.parse::<i64>().ok().or_else(|| {
                        t.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)
                    })
                }
                _ => None,
            };
            parsed.map(Json::from).ok_or_else(|| format!("{name}: {} is not a whole number", shown(value)))
        }
        "double" | "currency" | "percent" => {
            let number = match value {
                Value::Int(i) => Some(serde_json::Number::from(*i)),
                Value::Float(f) => serde_json::Number::from_f64(*f),
                Value::Decimal(_) | Value::Text(_) => {
                    let t = text();
                    let t = t.trim();
                    t.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(|_| t.parse::<serde_json::Number>().ok())
                }
                _ => None,
            };
            number.map(Json::Number).ok_or_else(|| format!("{name}: {} is not a number", shown(value)))
        }
        "date" => {
            let date = match value {
                Value::Date(_) => value.to_text(),
                Value::Timestamp { .. } => value.to_text().map(|t| t.chars().take(10).collect()),
                Value::Text(s) => parse_date(s.trim()).map(|d| d.format("%Y-%m-%d").to_string()),
                _ => None,
            };
            date.map(Json::String).ok_or_else(|| format!("{name}: {} is not a date (YYYY-MM-DD)", shown(value)))
        }
        "datetime" => {
            let moment = match value {
                Value::Timestamp { micros, .. } => DateTime::from_timestamp_micros(*micros).map(|t| t.naive_utc()),
                Value::Date(_) => value.to_text().and_then(|t| parse_date(&t)).and_then(|d| d.and_hms_opt(0, 0, 0)),
                Value::Text(s) => parse_datetime(s.trim()),
                _ => None,
            };
            moment
                .map(|m| Json::String(m.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
                .ok_or_else(|| format!("{name}: {} is not a date-time (ISO-8601)", shown(value)))
        }
        "string" | "textarea" | "email" | "phone" | "url" | "picklist" | "multipicklist" | "combobox"
        | "encryptedstring" | "reference" | "id" => {
            let text = match value {
                Value::Json(s) => s.clone(),
                _ => text(),
            };
            let count = text.chars().count();
            if field.length > 0 && count > field.length {
                return Err(format!("{name}: {count} characters, Salesforce allows at most {}", field.length));
            }
            Ok(Json::String(text))
        }
        _ => Ok(value.to_json()),
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().or_else(|| parse_datetime(text).map(|m| m.date()))
}

/// ISO-8601 with an offset (converted to UTC) or without one (taken as UTC).
fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(zoned.naive_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(zoned) = DateTime::parse_from_str(text, format) {
            return Some(zoned.naive_utc());
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive);
        }
    }
    None
}

/// Field names close to `name`, for "did you mean" hints.
pub(crate) fn close_names<'a>(name: &str, fields: &'a [Field]) -> Vec<&'a str> {
    let wanted = name.to_ascii_lowercase();
    let bare = |n: &str| n.to_ascii_lowercase().trim_end_matches("__c").replace('_', "");
    let mut close: Vec<(usize, &str)> = fields
        .iter()
        .filter_map(|f| {
            let candidate = f.name.to_ascii_lowercase();
            let distance =
                if candidate == wanted || bare(&f.name) == bare(name) { 0 } else { edit_distance(&candidate, &wanted) };
            (distance <= 2.max(wanted.len() / 4)).then_some((distance, f.name.as_str()))
        })
        .collect();
    close.sort();
    close.into_iter().take(3).map(|(_, n)| n).collect()
}

/// One record's result, from a collections answer or a Bulk API 2.0 results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordResult {
    pub(crate) id: Option<String>,
    /// `None` when Salesforce accepted the record, else its errors.
    pub(crate) error: Option<String>,
}

/// Reads one element of a collections answer (`{id, success, errors:[{statusCode,message,fields}]}`).
pub(crate) fn collection_result(result: &Json) -> RecordResult {
    let id = result.get("id").and_then(Json::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    if result.get("success").and_then(Json::as_bool).unwrap_or(false) {
        return RecordResult { id, error: None };
    }
    let errors = result.get("errors").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let messages: Vec<String> = errors.iter().map(error_text).collect();
    let error =
        if messages.is_empty() { "rejected by Salesforce (no message given)".to_string() } else { messages.join("; ") };
    RecordResult { id, error: Some(error) }
}

/// `STATUS_CODE: message (fields)`.
fn error_text(error: &Json) -> String {
    let code = error.get("statusCode").or_else(|| error.get("errorCode")).and_then(Json::as_str).unwrap_or("ERROR");
    let message = error.get("message").and_then(Json::as_str).unwrap_or("(no message)");
    let fields: Vec<&str> =
        error.get("fields").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str).collect();
    if fields.is_empty() {
        format!("{code}: {message}")
    } else {
        format!("{code}: {message} ({})", fields.join(", "))
    }
}

/// A record's value as a Bulk API 2.0 CSV cell: `#N/A` sets a field to null.
pub(crate) fn csv_cell(value: &Json) -> String {
    match value {
        Json::Null => "#N/A".to_string(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One CSV line, every cell quoted.
pub(crate) fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
    let mut line = quoted.join(",");
    line.push('\n');
    line
}

/// Parses RFC 4180 CSV (quoted cells may hold commas, quotes and line breaks).
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut cell)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            _ => cell.push(c),
        }
    }
    if any {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// A JSON record for sObject Collections.
pub(crate) fn collection_record(object: &str, fields: Map<String, Json>) -> Json {
    let mut record = Map::new();
    record.insert("attributes".into(), serde_json::json!({ "type": object }));
    record.extend(fields);
    Json::Object(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, type_: &str, length: usize) -> Field {
        Field {
            name: name.into(),
            type_: type_.into(),
            external_id: false,
            id_lookup: false,
            nillable: true,
            createable: true,
            updateable: true,
            defaulted_on_create: false,
            length,
        }
    }

    #[test]
    fn values_are_coerced_to_field_types() {
        let ltv = field("LTV__c", "double", 0);
        assert_eq!(coerce(&ltv, &Value::Text("12.5".into())).unwrap(), serde_json::json!(12.5));
        assert_eq!(coerce(&ltv, &Value::Text("abc".into())).unwrap_err(), "LTV__c: 'abc' is not a number");
        let vip = field("VIP__c", "boolean", 0);
        assert_eq!(coerce(&vip, &Value::Text("Yes".into())).unwrap(), Json::Bool(true));
        assert!(coerce(&vip, &Value::Text("maybe".into())).is_err());
        let birth = field("Birthdate", "date", 0);
        assert_eq!(coerce(&birth, &Value::Date(0)).unwrap(), "1970-01-01");
        assert_eq!(coerce(&birth, &Value::Text("2001-02-03".into())).unwrap(), "2001-02-03");
        assert!(coerce(&birth, &Value::Text("03/02/2001".into())).is_err());
        let seen = field("Seen__c", "datetime", 0);
        assert_eq!(
            coerce(&seen, &Value::Text("2024-05-01T10:00:00+02:00".into())).unwrap(),
            "2024-05-01T08:00:00.000Z"
        );
        let name = field("LastName", "string", 3);
        assert_eq!(
            coerce(&name, &Value::Text("Lovelace".into())).unwrap_err(),
            "LastName: 8 characters, Salesforce allows at most 3"
        );
        assert_eq!(coerce(&field("Count__c", "int", 0), &Value::Text("7".into())).unwrap(), serde_json::json!(7));
        assert_eq!(coerce(&name, &Value::Null).unwrap(), Json::Null);
    }

    #[test]
    fn csv_round_trips_quotes_commas_and_line_breaks() {
        let line = csv_line(&["a,b".into(), "say \"hi\"".into(), "two\nlines".into()]);
        let text = format!("\"sf__Id\",\"x\",\"y\"\n{line}");
        let rows = parse_csv(&text);
        assert_eq!(rows[1], vec!["a,b", "say \"hi\"", "two\nlines"]);
        assert_eq!(parse_csv("a,b\r\n1,2"), vec![vec!["a", "b"], vec!["1", "2"]]);
    }

    #[test]
    fn record_errors_read_as_code_message_fields() {
        let result = serde_json::json!({"success": false, "errors": [
            {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]});
        assert_eq!(
            collection_result(&result).error.unwrap(),
            "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (LastName)"
        );
    }

    #[test]
    fn close_names_suggest_fixes() {
        let fields =
            vec![field("Customer_Id__c", "string", 0), field("Email", "email", 80), field("LastName", "string", 80)];
        assert_eq!(close_names("CustomerId", &fields), vec!["Customer_Id__c"]);
        assert_eq!(close_names("Emial", &fields), vec!["Email"]);
    }
}
