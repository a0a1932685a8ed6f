//! Records behind the endpoints: ids, field checks, describe and sObject Collections.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::server::{rest_error, Reply};
use super::{FieldDef, SObjectDef, SfRecord, State, COLLECTION_LIMIT};

/// Documented status code for records rolled back by `allOrNone: true`.
const ROLLED_BACK: &str = "ALL_OR_NONE_OPERATION_ROLLED_BACK";

/// A per-record error, as in `errors[]` of SaveResult/UpsertResult/DeleteResult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) fields: Vec<String>,
}

impl RecordError {
    pub(crate) fn new(code: &str, message: impl Into<String>, fields: &[&str]) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

/// A write applied to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteOp {
    Insert,
    Update,
    Upsert(String),
}

// ---------------------------------------------------------------- ids

const CHECKSUM_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-character case-safe suffix Salesforce appends to a 15-character id.
fn checksum(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits =
                chunk.iter().enumerate().filter(|(_, c)| c.is_ascii_uppercase()).fold(0, |acc, (i, _)| acc | (1 << i));
            CHECKSUM_CHARS[bits] as char
        })
        .collect()
}

/// A new 18-character id with this key prefix.
pub(crate) fn new_id(state: &mut State, key_prefix: &str) -> String {
    let n = state.next_id;
    state.next_id += 1;
    let id15 = format!("{key_prefix:.3}Dn{:010}", n);
    format!("{id15}{}", checksum(&id15))
}

/// The 18-character form of a well-formed 15- or 18-character id.
pub(crate) fn normalise_id(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(format!("{id}{}", checksum(id))),
        18 if checksum(&id[..15]) == id[15..] => Some(id.to_owned()),
        _ => None,
    }
}

// ---------------------------------------------------------------- values

/// Whether `value` looks like an email address Salesforce accepts.
fn valid_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else { return false };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Converts a JSON (or CSV, as a string) value to what the field stores; `Err` means wrong type.
pub(crate) fn coerce(field: &FieldDef, value: &Value) -> Result<Value, ()> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    match field.type_.as_str() {
        "double" | "currency" | "percent" | "int" => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|_| {
                    serde_json::from_str::<Value>(s.trim())
                        .ok()
                        .filter(Value::is_number)
                        .unwrap_or_else(|| json!(s.trim().parse::<f64>().unwrap_or_default()))
                })
                .ok_or(()),
            _ => Err(()),
        },
        "boolean" => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(json!(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(json!(false)),
            _ => Err(()),
        },
        "date" => match value {
            Value::String(s) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => Ok(value.clone()),
            _ => Err(()),
        },
        "datetime" => match value {
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(value.clone()),
            _ => Err(()),
        },
        "id" | "reference" => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(()),
        },
        _ => text_of(value).map(Value::String).ok_or(()),
    }
}

/// Java type names Salesforce's JSON parser reports.
pub(crate) fn java_type(field: &FieldDef) -> &'static str {
    match field.type_.as_str() {
        "double" | "currency" | "percent" => "double",
        "int" => "int",
        "boolean" => "boolean",
        "date" => "date",
        "datetime" => "datetime",
        _ => "String",
    }
}

fn same_value(field: &FieldDef, a: &Value, b: &str) -> bool {
    match a {
        // External ids and emails are matched case-insensitively, as Salesforce does by default.
        Value::String(s) if field.is_text() => s.eq_ignore_ascii_case(b),
        Value::String(s) => s == b,
        other => text_of(other).is_some_and(|t| t == b),
    }
}

/// Ids of records of `def` whose `field` equals `value`.
fn ids_matching(state: &State, def: &SObjectDef, field: &FieldDef, value: &str) -> Vec<String> {
    let Some(records) = state.records.get(&def.name) else { return Vec::new() };
    if field.name == "Id" {
        return normalise_id(value).filter(|id| records.contains_key(id)).into_iter().collect();
    }
    records
        .values()
        .filter(|r| r.fields.get(&field.name).is_some_and(|v| same_value(field, v, value)))
        .map(|r| r.id.clone())
        .collect()
}

/// The id of the first record of `def` whose `field` equals `value`.
pub(crate) fn find_by(state: &State, def: &SObjectDef, field: &str, value: &str) -> Option<String> {
    let field = def.field(field)?;
    ids_matching(state, def, field, value).into_iter().next()
}

/// The sObject an id belongs to, by key prefix.
fn sobject_of_id(state: &State, id: &str) -> Option<SObjectDef> {
    state.options.sobjects.iter().find(|s| id.starts_with(&s.key_prefix)).cloned()
}

// ---------------------------------------------------------------- writes

/// Checks one value against its field, as Salesforce's save does.
fn check_value(state: &State, field: &FieldDef, value: &Value) -> Result<(), RecordError> {
    let Value::String(text) = value else { return Ok(()) };
    let name = field.name.as_str();
    if field.is_text() && field.length > 0 && text.chars().count() > field.length as usize {
        let message = format!("{}: data value too large: {text} (max length={})", field.label, field.length);
        return Err(RecordError::new("STRING_TOO_LONG", message, &[name]));
    }
    if field.type_ == "email" && !valid_email(text) {
        let message = format!("{}: invalid email address: {text}", field.label);
        return Err(RecordError::new("INVALID_EMAIL_ADDRESS", message, &[name]));
    }
    if field.type_ == "reference" {
        let bad_type = || {
            let message = format!("{}: id value of incorrect type: {text}", field.label);
            RecordError::new("FIELD_INTEGRITY_EXCEPTION", message, &[name])
        };
        let Some(id) = normalise_id(text) else {
            return Err(RecordError::new(
                "MALFORMED_ID",
                format!("{}: id value of incorrect type: {text}", field.label),
                &[name],
            ));
        };
        let target = sobject_of_id(state, &id).filter(|s| field.reference_to.contains(&s.name)).ok_or_else(bad_type)?;
        if !state.records.get(&target.name).is_some_and(|r| r.contains_key(&id)) {
            return Err(RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[name]));
        }
    }
    Ok(())
}

/// Applies one insert, update (values include `Id`) or upsert to the store.
///
/// `values` are already resolved to field API names and coerced; `Value::Null` clears a field.
/// Returns the record id and whether it was created.
pub(crate) fn write(
    state: &mut State,
    def: &SObjectDef,
    op: &WriteOp,
    values: Vec<(FieldDef, Value)>,
) -> Result<(String, bool), RecordError> {
    let value_of = |name: &str| values.iter().find(|(f, _)| f.name == name).map(|(_, v)| v.clone());
    // Which record is written, if it exists.
    let existing: Option<String> = match op {
        WriteOp::Insert => {
            if values.iter().any(|(f, _)| f.name == "Id") {
                return Err(RecordError::new("INVALID_FIELD", "cannot specify Id in an insert call", &["Id"]));
            }
            None
        }
        WriteOp::Update => {
            let Some(raw) = value_of("Id").and_then(|v| text_of(&v)).filter(|v| !v.is_empty()) else {
                return Err(RecordError::new("MISSING_ARGUMENT", "Id not specified in an update call", &[]));
            };
            Some(existing_id(state, def, &raw)?)
        }
        WriteOp::Upsert(field_name) => {
            let Some(key) = value_of(field_name).and_then(|v| text_of(&v)).filter(|v| !v.is_empty()) else {
                return Err(RecordError::new("MISSING_ARGUMENT", format!("{field_name} not specified"), &[]));
            };
            if field_name == "Id" {
                Some(existing_id(state, def, &key)?)
            } else {
                let field = def
                    .field(field_name)
                    .cloned()
                    .unwrap_or_else(|| FieldDef::new(field_name, field_name, "string", 0));
                let ids = ids_matching(state, def, &field, &key);
                if ids.len() > 1 {
                    let message = format!("{field_name}: more than one record found for external id field: {ids:?}");
                    return Err(RecordError::new("DUPLICATE_EXTERNAL_ID", message, &[field_name]));
                }
                ids.into_iter().next()
            }
        }
    };
    let creating = existing.is_none();
    for (field, value) in &values {
        if field.name == "Id" {
            continue;
        }
        let allowed = if creating { field.createable } else { field.updateable };
        if !allowed {
            let verb = if creating { "create" } else { "update" };
            let message = format!(
                "Unable to {verb} fields: {}. Please check the security settings of this field and verify that it is \
                 read/write for your profile or permission set.",
                field.name
            );
            return Err(RecordError::new("INVALID_FIELD_FOR_INSERT_UPDATE", message, &[&field.name]));
        }
        check_value(state, field, value)?;
    }
    let mut fields: BTreeMap<String, Value> = match &existing {
        Some(id) => state.records[&def.name][id].fields.clone(),
        None => BTreeMap::new(),
    };
    for (field, value) in values {
        if field.name == "Id" {
            continue;
        }
        match value {
            // A non-nillable checkbox set to null becomes false, as in Salesforce.
            Value::Null if field.type_ == "boolean" => {
                fields.insert(field.name.clone(), json!(false));
            }
            Value::Null => {
                fields.remove(&field.name);
            }
            value => {
                fields.insert(field.name.clone(), value);
            }
        }
    }
    if creating {
        for field in def.fields.iter().filter(|f| f.type_ == "boolean" && f.defaulted_on_create) {
            fields.entry(field.name.clone()).or_insert(json!(false));
        }
    }
    let missing: Vec<&str> = def
        .fields
        .iter()
        .filter(|f| f.is_required() && !fields.contains_key(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        let message = format!("Required fields are missing: [{}]", missing.join(", "));
        return Err(RecordError::new("REQUIRED_FIELD_MISSING", message, &missing));
    }
    for field in def.fields.iter().filter(|f| f.unique) {
        let Some(value) = fields.get(&field.name).and_then(text_of) else { continue };
        let clash = ids_matching(state, def, field, &value).into_iter().find(|id| Some(id) != existing.as_ref());
        if let Some(other) = clash {
            let message = format!("duplicate value found: {} duplicates value on record with id: {other}", field.name);
            return Err(RecordError::new("DUPLICATE_VALUE", message, &[&field.name]));
        }
    }
    let id = match existing {
        Some(id) => id,
        None => new_id(state, &def.key_prefix),
    };
    state.records.entry(def.name.clone()).or_default().insert(id.clone(), SfRecord { id: id.clone(), fields });
    Ok((id, creating))
}

/// The stored id named by `raw` for `def`, or the documented error.
fn existing_id(state: &State, def: &SObjectDef, raw: &str) -> Result<String, RecordError> {
    let Some(id) = normalise_id(raw) else {
        return Err(RecordError::new(
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {raw}", def.label),
            &["Id"],
        ));
    };
    if state.records.get(&def.name).is_some_and(|r| r.contains_key(&id)) {
        return Ok(id);
    }
    if state.deleted.contains(&id) {
        return Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
    }
    Err(RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]))
}

/// Deletes one record by id.
pub(crate) fn delete(state: &mut State, raw: &str, only: Option<&SObjectDef>) -> Result<String, RecordError> {
    let Some(id) = normalise_id(raw) else {
        return Err(RecordError::new("MALFORMED_ID", format!("malformed id {raw}"), &[]));
    };
    if state.deleted.contains(&id) {
        return Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
    }
    let def = sobject_of_id(state, &id).filter(|d| only.is_none_or(|o| o.name == d.name));
    let removed = def.and_then(|d| state.records.get_mut(&d.name)?.remove(&id));
    if removed.is_none() {
        return Err(RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]));
    }
    state.deleted.insert(id.clone());
    Ok(id)
}

// ---------------------------------------------------------------- describe

/// `GET /sobjects/{SObject}/describe`.
pub(crate) fn describe(state: &State, name: &str, base_url: &str) -> Reply {
    let Some(def) = state.sobject(name) else { return not_found() };
    let fields: Vec<Value> = def
        .fields
        .iter()
        .map(|f| {
            let numeric = matches!(f.type_.as_str(), "double" | "currency" | "percent");
            json!({
                "name": f.name,
                "label": f.label,
                "type": f.type_,
                "soapType": soap_type(f),
                "length": f.length,
                "precision": if numeric { 18 } else { 0 },
                "scale": if numeric { 2 } else { 0 },
                "externalId": f.external_id,
                "idLookup": f.id_lookup,
                "unique": f.unique,
                "nillable": f.nillable,
                "createable": f.createable,
                "updateable": f.updateable,
                "defaultedOnCreate": f.defaulted_on_create,
                "custom": f.name.ends_with("__c"),
                "referenceTo": f.reference_to,
                "relationshipName": (f.type_ == "reference").then(|| f.name.trim_end_matches("Id").to_owned()),
            })
        })
        .collect();
    let v = super::API_VERSION;
    let urls = json!({
        "sobject": format!("/services/data/v{v}/sobjects/{}", def.name),
        "describe": format!("/services/data/v{v}/sobjects/{}/describe", def.name),
        "rowTemplate": format!("/services/data/v{v}/sobjects/{}/{{ID}}", def.name),
    });
    let _ = base_url;
    Reply::json(
        200,
        json!({
            "name": def.name,
            "label": def.label,
            "keyPrefix": def.key_prefix,
            "custom": def.name.ends_with("__c"),
            "createable": true,
            "updateable": true,
            "deletable": true,
            "queryable": true,
            "fields": fields,
            "urls": urls,
        }),
    )
}

fn soap_type(field: &FieldDef) -> &'static str {
    match field.type_.as_str() {
        "id" | "reference" => "tns:ID",
        "double" | "currency" | "percent" => "xsd:double",
        "int" => "xsd:int",
        "boolean" => "xsd:boolean",
        "date" => "xsd:date",
        "datetime" => "xsd:dateTime",
        _ => "xsd:string",
    }
}

pub(crate) fn not_found() -> Reply {
    Reply::json(404, rest_error("NOT_FOUND", "The requested resource does not exist"))
}

fn too_many() -> Reply {
    // The limit (200) is documented; the message is the one Salesforce answers, not in the docs.
    Reply::json(
        400,
        rest_error("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"),
    )
}

// ---------------------------------------------------------------- collections

/// How a collections request names its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CollectionOp {
    Insert,
    Update,
    Upsert { sobject: String, field: String },
}

/// A body that does not match the documented shape: 400 and logged as invalid.
fn shape_error(issue: String) -> Reply {
    let mut reply = Reply::json(400, rest_error("JSON_PARSER_ERROR", &issue));
    reply.issues.push(issue);
    reply
}

/// One parsed record of a collections request.
struct Input {
    def: SObjectDef,
    values: Vec<(FieldDef, Value)>,
}

/// `POST` / `PATCH /composite/sobjects[/{SObject}/{ExternalIdField}]`.
pub(crate) fn collections(state: &mut State, op: &CollectionOp, body: &Value) -> Reply {
    let Some(obj) = body.as_object() else { return shape_error("the body must be a JSON object".to_owned()) };
    if let Some(key) = obj.keys().find(|k| *k != "records" && *k != "allOrNone") {
        return shape_error(format!("Unrecognized field \"{key}\" (expected allOrNone, records)"));
    }
    let all_or_none = match obj.get("allOrNone") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return shape_error(format!("allOrNone must be a boolean, got {other}")),
    };
    let Some(records) = obj.get("records").and_then(Value::as_array) else {
        return shape_error("records is required and must be an array".to_owned());
    };
    if records.len() > COLLECTION_LIMIT {
        return too_many();
    }
    let upsert = match op {
        CollectionOp::Upsert { sobject, field } => {
            let Some(def) = state.sobject(sobject) else { return not_found() };
            let Some(f) = def.field(field).filter(|f| f.external_id || f.name == "Id").cloned() else {
                let message =
                    format!("Field name provided, {field} is not an External ID or indexed field for {}", def.name);
                return Reply::json(400, rest_error("INVALID_FIELD", &message));
            };
            Some((def, f))
        }
        _ => None,
    };
    let mut inputs = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Some(record) = record.as_object() else { return shape_error(format!("records[{i}] must be an object")) };
        let Some(type_) = record.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str) else {
            return shape_error(format!("records[{i}]: each record must have an attributes map with a type"));
        };
        let Some(def) = state.sobject(type_) else {
            let mut reply =
                Reply::json(400, rest_error("INVALID_TYPE", &format!("sObject type '{type_}' is not supported.")));
            reply.issues.push(format!("records[{i}]: unknown sObject type {type_}"));
            return reply;
        };
        if let Some((upsert_def, _)) = &upsert {
            if upsert_def.name != def.name {
                return shape_error(format!("records[{i}] is a {} but the URI names {}", def.name, upsert_def.name));
            }
        }
        match parse_values(&def, record) {
            Ok(values) => inputs.push(Input { def, values }),
            Err(reply) => return reply,
        }
    }
    let write_op = match &upsert {
        Some((_, field)) => WriteOp::Upsert(field.name.clone()),
        None if *op == CollectionOp::Insert => WriteOp::Insert,
        None => WriteOp::Update,
    };
    // External ids repeated within the request fail every record that carries them.
    let mut key_counts: HashMap<String, usize> = HashMap::new();
    let key_of = |input: &Input| match &write_op {
        WriteOp::Upsert(field) => {
            input.values.iter().find(|(f, _)| &f.name == field).and_then(|(_, v)| text_of(v)).map(|v| v.to_lowercase())
        }
        _ => None,
    };
    for input in &inputs {
        if let Some(key) = key_of(input) {
            *key_counts.entry(key).or_default() += 1;
        }
    }
    let snapshot = all_or_none.then(|| (state.records.clone(), state.deleted.clone(), state.next_id));
    let mut results: Vec<Result<(String, bool), RecordError>> = Vec::new();
    for input in inputs {
        if let Some(key) = key_of(&input).filter(|k| key_counts.get(k).copied().unwrap_or(0) > 1) {
            let original = input
                .values
                .iter()
                .find(|(f, _)| WriteOp::Upsert(f.name.clone()) == write_op)
                .and_then(|(_, v)| text_of(v));
            let message = format!("Duplicate external id specified: {}", original.unwrap_or(key));
            results.push(Err(RecordError::new("DUPLICATE_EXTERNAL_ID", message, &[])));
            continue;
        }
        results.push(write(state, &input.def, &write_op, input.values));
    }
    let failed = results.iter().any(Result::is_err);
    if let (true, Some((records, deleted, next_id))) = (failed, snapshot) {
        state.records = records;
        state.deleted = deleted;
        state.next_id = next_id;
        let rolled_back = RecordError::new(
            ROLLED_BACK,
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
            &[],
        );
        results = results.into_iter().map(|r| r.and(Err(rolled_back.clone()))).collect();
    }
    let with_created = matches!(write_op, WriteOp::Upsert(_));
    let answers: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok((id, created)) => {
                let mut m = Map::new();
                m.insert("id".into(), json!(id));
                m.insert("success".into(), json!(true));
                m.insert("errors".into(), json!([]));
                if with_created {
                    m.insert("created".into(), json!(created));
                }
                Value::Object(m)
            }
            Err(e) => json!({"success": false, "errors": [e.to_json()]}),
        })
        .collect();
    Reply::json(200, Value::Array(answers))
}

/// Resolves and coerces the fields of one JSON record; unknown fields and wrong types fail the request.
fn parse_values(def: &SObjectDef, record: &Map<String, Value>) -> Result<Vec<(FieldDef, Value)>, Reply> {
    let mut values = Vec::new();
    for (name, value) in record {
        if name == "attributes" {
            continue;
        }
        let Some(field) = def.field(name) else {
            let message = format!("No such column '{name}' on sobject of type {}", def.name);
            return Err(Reply::json(400, rest_error("INVALID_FIELD", &message)));
        };
        match coerce(field, value) {
            Ok(v) => values.push((field.clone(), v)),
            Err(()) => {
                let kind = match value {
                    Value::String(_) => "VALUE_STRING",
                    Value::Number(_) => "VALUE_NUMBER",
                    Value::Bool(true) => "VALUE_TRUE",
                    Value::Bool(false) => "VALUE_FALSE",
                    Value::Array(_) => "START_ARRAY",
                    _ => "START_OBJECT",
                };
                let shown = text_of(value).unwrap_or_else(|| value.to_string());
                let message = format!(
                    "Cannot deserialize instance of {} from {kind} value {shown} or request may be missing a required field",
                    java_type(field)
                );
                return Err(Reply::json(400, rest_error("JSON_PARSER_ERROR", &message)));
            }
        }
    }
    Ok(values)
}

/// `DELETE /composite/sobjects?ids=...&allOrNone=...`.
pub(crate) fn delete_collection(state: &mut State, query: &str) -> Reply {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(ids) = get("ids").filter(|v| !v.is_empty()) else {
        let mut reply = Reply::json(400, rest_error("MISSING_ARGUMENT", "ids parameter is required"));
        reply.issues.push("missing ids query parameter".to_owned());
        return reply;
    };
    let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
    if ids.len() > COLLECTION_LIMIT {
        return too_many();
    }
    let all_or_none = get("allOrNone").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let snapshot = all_or_none.then(|| (state.records.clone(), state.deleted.clone()));
    let mut results: Vec<(String, Result<String, RecordError>)> =
        ids.iter().map(|raw| ((*raw).to_owned(), delete(state, raw, None))).collect();
    if let (true, Some((records, deleted))) = (results.iter().any(|(_, r)| r.is_err()), snapshot) {
        state.records = records;
        state.deleted = deleted;
        let rolled_back = RecordError::new(
            ROLLED_BACK,
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
            &[],
        );
        results = results.into_iter().map(|(raw, r)| (raw, r.and(Err(rolled_back.clone())))).collect();
    }
    let answers: Vec<Value> = results
        .into_iter()
        .map(|(raw, r)| match r {
            Ok(id) => json!({"id": id, "success": true, "errors": []}),
            Err(e) => json!({"id": normalise_id(&raw).unwrap_or(raw), "success": false, "errors": [e.to_json()]}),
        })
        .collect();
    Reply::json(200, Value::Array(answers))
}
