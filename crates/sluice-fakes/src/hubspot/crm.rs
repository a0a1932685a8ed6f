//! CRM behaviour behind the endpoints: batch writes, reads, archive, properties and associations.

use std::collections::{BTreeMap, HashSet};

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};

use super::server::{error_body, Reply};
use super::{Association, CrmObject, HubSpotState, ObjectTypeDef, PropertyDef};

/// Message for a batch over the limit. HubSpot documents the limit (100 inputs) but not the message;
/// this follows the wording HubSpot uses for its other batch-size limit ("The maximum number of inputs
/// supported in a batch request for property histories is 50. Please reduce ...").
pub const BATCH_LIMIT_MESSAGE: &str =
    "The maximum number of inputs supported in a batch request is {limit}. Please reduce the number of items and try again";

/// Object writes and reads under `/crm/v3/objects/{objectType}/batch/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Create,
    Update,
    Upsert,
    Archive,
    Read,
}

impl BatchOp {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "create" => Self::Create,
            "update" => Self::Update,
            "upsert" => Self::Upsert,
            "archive" => Self::Archive,
            "read" => Self::Read,
            _ => return None,
        })
    }
}

/// Current time as HubSpot writes it: RFC 3339 in UTC with milliseconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn unknown_type(name: &str) -> Reply {
    Reply::json(
        400,
        Value::Object(error_body(&format!("Unable to infer object type from: {name}"), "VALIDATION_ERROR")),
    )
}

/// Whether values of this property are compared case-insensitively (HubSpot lower-cases emails).
fn folds_case(property: &str) -> bool {
    property == "email"
}

fn normalise(property: &str, value: &str) -> String {
    if folds_case(property) {
        value.trim().to_lowercase()
    } else {
        value.to_owned()
    }
}

/// Id of the live record whose `property` equals `value`.
pub(crate) fn find_by_property(objects: &BTreeMap<String, CrmObject>, property: &str, value: &str) -> Option<String> {
    let wanted = normalise(property, value);
    objects
        .values()
        .find(|o| !o.archived && o.properties.get(property).is_some_and(|v| normalise(property, v) == wanted))
        .map(|o| o.id.clone())
}

/// One failed input of a batch.
#[derive(Debug, Clone)]
struct InputError {
    status: u16,
    category: &'static str,
    message: String,
    context: Map<String, Value>,
    /// Property problems, reported together as "Property values were not valid".
    properties: Vec<PropertyProblem>,
}

impl InputError {
    fn new(status: u16, category: &'static str, message: String) -> Self {
        Self { status, category, message, context: Map::new(), properties: Vec::new() }
    }

    fn with_ids(mut self, ids: &[&str]) -> Self {
        self.context.insert("ids".into(), json!(ids));
        self
    }
}

#[derive(Debug, Clone)]
struct PropertyProblem {
    name: String,
    code: String,
    message: String,
}

fn property_values_message(problems: &[PropertyProblem], portal_id: u64) -> String {
    let items: Vec<Value> = problems
        .iter()
        .map(|p| {
            json!({"isValid": false, "message": p.message, "error": p.code, "name": p.name,
                   "localizedErrorMessage": p.message, "portalId": portal_id})
        })
        .collect();
    format!("Property values were not valid: {}", Value::Array(items))
}

fn property_error(problems: Vec<PropertyProblem>, portal_id: u64) -> InputError {
    let message = property_values_message(&problems, portal_id);
    InputError { properties: problems, ..InputError::new(400, "VALIDATION_ERROR", message) }
}

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(char::is_whitespace)
}

fn check_value(def: &ObjectTypeDef, prop: &PropertyDef, value: &str) -> Option<(String, String)> {
    if value.is_empty() {
        // An empty string clears the property, whatever its type.
        return None;
    }
    let bad = |code: &str, message: String| Some((code.to_owned(), message));
    if prop.name == "email" && def.name == "contacts" && !is_email(value.trim()) {
        return bad("INVALID_EMAIL", format!("Email address {value} is invalid"));
    }
    match prop.type_.as_str() {
        "number" if value.trim().parse::<f64>().map_or(true, |n| !n.is_finite()) => {
            bad("INVALID_FLOAT", format!("{value} was not a valid number."))
        }
        "bool" if !matches!(value, "true" | "false") => {
            bad("INVALID_BOOLEAN", format!("{value} was not a valid boolean."))
        }
        "date" | "datetime"
            if !value.bytes().all(|b| b.is_ascii_digit())
                && chrono::DateTime::parse_from_rfc3339(value).is_err()
                && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_err() =>
        {
            bad("INVALID_DATE", format!("{value} was not a valid date."))
        }
        "enumeration" if !prop.options.is_empty() => {
            let allowed = value.split(';').all(|v| prop.options.iter().any(|o| o == v));
            if allowed {
                None
            } else {
                bad(
                    "INVALID_OPTION",
                    format!("{value} was not one of the allowed options: [{}]", prop.options.join(", ")),
                )
            }
        }
        _ => None,
    }
}

fn check_properties(
    state: &HubSpotState,
    def: &ObjectTypeDef,
    properties: &Map<String, Value>,
) -> Vec<PropertyProblem> {
    let mut problems = Vec::new();
    for (name, value) in properties {
        let value = value.as_str().unwrap_or_default();
        let problem = match def.property(name) {
            None => Some(("PROPERTY_DOESNT_EXIST".to_owned(), format!("Property \"{name}\" does not exist"))),
            Some(prop) if prop.read_only => Some((
                "READ_ONLY_VALUE".to_owned(),
                format!("\"{name}\" is a read only property; its value cannot be set."),
            )),
            Some(prop) => check_value(def, prop, value).or_else(|| {
                state
                    .options
                    .reject_values
                    .iter()
                    .find(|r| {
                        r.object_type == def.name
                            && r.property == *name
                            && !value.is_empty()
                            && r.value.as_deref().is_none_or(|v| v == value)
                    })
                    .map(|r| (r.code.clone(), r.message.clone()))
            }),
        };
        if let Some((code, message)) = problem {
            problems.push(PropertyProblem { name: name.clone(), code, message });
        }
    }
    problems
}

fn object_json(object: &CrmObject, only: Option<&[String]>) -> Value {
    let properties: Map<String, Value> = match only {
        None => object.properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
        Some(names) => {
            let always = ["hs_object_id", "createdate", "lastmodifieddate"];
            let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
            names.extend(always);
            names
                .into_iter()
                .map(|n| (n.to_owned(), object.properties.get(n).map_or(Value::Null, |v| json!(v))))
                .collect()
        }
    };
    let mut out = json!({
        "id": object.id,
        "properties": properties,
        "createdAt": object.created_at,
        "updatedAt": object.updated_at,
        "archived": object.archived,
    });
    if let (Some(at), Some(map)) = (&object.archived_at, out.as_object_mut()) {
        map.insert("archivedAt".into(), json!(at));
    }
    out
}

fn batch_limit_reply(limit: usize) -> Reply {
    let message = BATCH_LIMIT_MESSAGE.replace("{limit}", &limit.to_string());
    Reply::json(400, Value::Object(error_body(&message, "VALIDATION_ERROR")))
}

/// `POST /crm/v3/objects/{objectType}/batch/{op}` with a body that already matched the spec.
pub(crate) fn batch(state: &mut HubSpotState, type_name: &str, op: BatchOp, body: &Value) -> Reply {
    let Some(def) = state.object_type(type_name) else { return unknown_type(type_name) };
    let inputs: &[Value] = body.get("inputs").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    if inputs.len() > state.options.batch_limit {
        return batch_limit_reply(state.options.batch_limit);
    }
    match op {
        BatchOp::Archive => archive(state, &def, inputs),
        BatchOp::Read => read(state, &def, body, inputs),
        BatchOp::Create | BatchOp::Update | BatchOp::Upsert => write(state, &def, op, inputs),
    }
}

fn archive(state: &mut HubSpotState, def: &ObjectTypeDef, inputs: &[Value]) -> Reply {
    let stamp = now();
    let objects = state.objects.entry(def.name.clone()).or_default();
    let mut archived = 0;
    for id in inputs.iter().filter_map(|i| i.get("id").and_then(Value::as_str)) {
        // HubSpot answers 204 for ids that do not exist or are already archived.
        if let Some(object) = objects.get_mut(id).filter(|o| !o.archived) {
            object.archived = true;
            object.archived_at = Some(stamp.clone());
            archived += 1;
        }
    }
    state.counters.archived += archived;
    Reply::empty(204)
}

fn read(state: &mut HubSpotState, def: &ObjectTypeDef, body: &Value, inputs: &[Value]) -> Reply {
    let started = now();
    let id_property = body.get("idProperty").and_then(Value::as_str);
    let only: Option<Vec<String>> = body
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    let objects = state.objects.entry(def.name.clone()).or_default();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for id in inputs.iter().filter_map(|i| i.get("id").and_then(Value::as_str)) {
        let found = match id_property {
            Some(p) if p != "hs_object_id" => find_by_property(objects, p, id),
            _ => objects.get(id).filter(|o| !o.archived).map(|o| o.id.clone()),
        };
        match found.and_then(|f| objects.get(&f)) {
            Some(object) => results.push(object_json(object, only.as_deref())),
            None => missing.push(id.to_owned()),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": now()});
    if missing.is_empty() {
        return Reply::json(200, out);
    }
    let label = &def.label;
    let error = json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!("Could not get some {label} objects, they may be deleted or not exist. Check that ids are valid."),
        "context": {"ids": missing},
        "errors": [],
        "links": {},
    });
    if let Some(map) = out.as_object_mut() {
        map.insert("numErrors".into(), json!(1));
        map.insert("errors".into(), json!([error]));
    }
    Reply::json(207, out)
}

/// Whether the caller asked for multi-status answers: every input has a distinct objectWriteTraceId.
fn multi_status(inputs: &[Value]) -> bool {
    let ids: Vec<&str> = inputs.iter().filter_map(|i| i.get("objectWriteTraceId").and_then(Value::as_str)).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    !inputs.is_empty() && ids.len() == inputs.len() && distinct.len() == ids.len()
}

fn duplicate_ids(inputs: &[Value], id_property: Option<&str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    for input in inputs {
        let Some(id) = input.get("id").and_then(Value::as_str) else { continue };
        let property = input.get("idProperty").and_then(Value::as_str).or(id_property).unwrap_or("hs_object_id");
        let key = normalise(property, id);
        if !seen.insert(key.clone()) && !duplicates.contains(&key) {
            duplicates.push(key);
        }
    }
    duplicates
}

fn write(state: &mut HubSpotState, def: &ObjectTypeDef, op: BatchOp, inputs: &[Value]) -> Reply {
    let started = now();
    if op != BatchOp::Create {
        let duplicates = duplicate_ids(inputs, None);
        if !duplicates.is_empty() {
            let message =
                format!("Duplicate IDs found in batch input: [{}]. IDs must be unique", duplicates.join(", "));
            let mut body = error_body(&message, "VALIDATION_ERROR");
            body.insert("context".into(), json!({"ids": duplicates}));
            return Reply::json(400, Value::Object(body));
        }
    }
    // Work on a copy so a batch that fails as a whole leaves nothing behind.
    let mut objects = state.objects.get(&def.name).cloned().unwrap_or_default();
    let mut next_id = state.next_id;
    let mut outcomes: Vec<Result<(Value, bool), Box<InputError>>> = Vec::with_capacity(inputs.len());
    let mut associations = Vec::new();
    for input in inputs {
        let outcome = write_one(state, def, op, input, &mut objects, &mut next_id);
        if let (Ok((result, _)), Some(links)) = (&outcome, input.get("associations").and_then(Value::as_array)) {
            let from_id = result.get("id").and_then(Value::as_str).unwrap_or_default();
            associations.extend(links.iter().flat_map(|link| create_links(def, from_id, link)));
        }
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let partial = multi_status(inputs) && failed < outcomes.len();
    if failed > 0 && !partial {
        return whole_batch_error(
            outcomes.into_iter().filter_map(|o| o.err().map(|e| *e)).collect(),
            state.options.portal_id,
        );
    }
    let (created, updated) = outcomes.iter().fold((0, 0), |(c, u), o| match o {
        Ok((_, true)) => (c + 1, u),
        Ok((_, false)) => (c, u + 1),
        Err(_) => (c, u),
    });
    state.counters.created += created;
    state.counters.updated += updated;
    state.objects.insert(def.name.clone(), objects);
    state.next_id = next_id;
    state.associations.extend(associations);

    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (input, outcome) in inputs.iter().zip(outcomes) {
        match outcome {
            Ok((result, _)) => results.push(result),
            Err(error) => errors.push(multi_status_error(input, *error)),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": now()});
    if errors.is_empty() {
        return Reply::json(if op == BatchOp::Create { 201 } else { 200 }, out);
    }
    if let Some(map) = out.as_object_mut() {
        map.insert("numErrors".into(), json!(errors.len()));
        map.insert("errors".into(), Value::Array(errors));
    }
    Reply::json(207, out)
}

/// The error entry of a 207 answer, in the shape of HubSpot's multi-status example.
fn multi_status_error(input: &Value, error: InputError) -> Value {
    let mut context = error.context;
    if let Some(trace) = input.get("objectWriteTraceId").and_then(Value::as_str) {
        context.insert("objectWriteTraceId".into(), json!([trace]));
    }
    // `errors` and `links` are absent from the docs' example but required by the spec's StandardError
    // and present in HubSpot's current reference; sending them empty satisfies both.
    json!({"status": "error", "category": error.category, "message": error.message, "context": context,
           "errors": [], "links": {}})
}

/// The single error answered when a batch fails as a whole.
fn whole_batch_error(errors: Vec<InputError>, portal_id: u64) -> Reply {
    let problems: Vec<PropertyProblem> = errors.iter().flat_map(|e| e.properties.clone()).collect();
    if !problems.is_empty() {
        let mut body = error_body(&property_values_message(&problems, portal_id), "VALIDATION_ERROR");
        let details: Vec<Value> = problems
            .iter()
            .map(|p| json!({"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}}))
            .collect();
        body.insert("errors".into(), Value::Array(details));
        return Reply::json(400, Value::Object(body));
    }
    let Some(first) = errors.into_iter().next() else {
        return Reply::json(500, Value::Object(error_body("internal error", "INTERNAL_ERROR")));
    };
    let mut body = error_body(&first.message, first.category);
    if !first.context.is_empty() {
        body.insert("context".into(), Value::Object(first.context));
    }
    Reply::json(first.status, Value::Object(body))
}

/// Applies one input to `objects`; returns the result JSON and whether a record was created.
fn write_one(
    state: &HubSpotState,
    def: &ObjectTypeDef,
    op: BatchOp,
    input: &Value,
    objects: &mut BTreeMap<String, CrmObject>,
    next_id: &mut u64,
) -> Result<(Value, bool), Box<InputError>> {
    let empty = Map::new();
    let properties = input.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
    let id_property = input.get("idProperty").and_then(Value::as_str).filter(|p| *p != "hs_object_id");

    let mut problems = check_properties(state, def, properties);
    if let Some(p) = id_property {
        match def.property(p) {
            None => problems.push(PropertyProblem {
                name: p.to_owned(),
                code: "PROPERTY_DOESNT_EXIST".to_owned(),
                message: format!("Property \"{p}\" does not exist"),
            }),
            Some(prop) if !prop.has_unique_value => {
                let message = format!("Property \"{p}\" is not a unique property and cannot be used as idProperty");
                return Err(Box::new(InputError::new(400, "VALIDATION_ERROR", message).with_ids(&[id])));
            }
            Some(_) => {}
        }
    }
    if op == BatchOp::Upsert && id_property.is_none() {
        let message = "idProperty is required for upsert and must name a property with unique values".to_owned();
        return Err(Box::new(InputError::new(400, "VALIDATION_ERROR", message).with_ids(&[id])));
    }
    if !problems.is_empty() {
        return Err(Box::new(property_error(problems, state.options.portal_id)));
    }

    let existing = match (op, id_property) {
        (BatchOp::Create, _) => None,
        (_, Some(p)) => find_by_property(objects, p, id),
        (_, None) => objects.get(id).filter(|o| !o.archived).map(|o| o.id.clone()),
    };
    if op == BatchOp::Update && existing.is_none() {
        let label = &def.label;
        let message =
            format!("Could not get some {label} objects, they may be deleted or not exist. Check that ids are valid.");
        return Err(Box::new(InputError::new(404, "OBJECT_NOT_FOUND", message).with_ids(&[id])));
    }

    let mut values: BTreeMap<String, String> =
        properties.iter().map(|(k, v)| (k.clone(), normalise(k, v.as_str().unwrap_or_default()))).collect();
    if let (BatchOp::Upsert, Some(p)) = (op, id_property) {
        values.insert(p.to_owned(), normalise(p, id));
    }
    // A unique value may not move onto a second record.
    for prop in def.properties.iter().filter(|p| p.has_unique_value) {
        let Some(value) = values.get(&prop.name).filter(|v| !v.is_empty()) else { continue };
        if let Some(other) = find_by_property(objects, &prop.name, value).filter(|o| Some(o) != existing.as_ref()) {
            let label = title_case(&def.label);
            return Err(Box::new(InputError::new(
                409,
                "CONFLICT",
                format!("{label} already exists. Existing ID: {other}"),
            )));
        }
    }

    let stamp = now();
    let (object, created) = match existing.and_then(|id| objects.get_mut(&id)) {
        Some(object) => {
            object.properties.extend(values);
            object.properties.insert("lastmodifieddate".into(), stamp.clone());
            object.updated_at = stamp;
            (object.clone(), false)
        }
        None => {
            let new_id = next_id.to_string();
            *next_id += 1;
            values.insert("hs_object_id".into(), new_id.clone());
            values.insert("createdate".into(), stamp.clone());
            values.insert("lastmodifieddate".into(), stamp.clone());
            let object = CrmObject {
                id: new_id.clone(),
                properties: values,
                created_at: stamp.clone(),
                updated_at: stamp,
                archived: false,
                archived_at: None,
            };
            objects.insert(new_id, object.clone());
            (object, true)
        }
    };
    let mut result = object_json(&object, None);
    if op == BatchOp::Upsert {
        if let Some(map) = result.as_object_mut() {
            map.insert("new".into(), json!(created));
        }
    }
    Ok((result, created))
}

fn title_case(label: &str) -> String {
    let lower = label.to_lowercase();
    let mut chars = lower.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Associations given inline in a create input (`{"to": {"id"}, "types": [...]}`).
fn create_links(def: &ObjectTypeDef, from_id: &str, link: &Value) -> Vec<Association> {
    let to_id = link.pointer("/to/id").and_then(Value::as_str).unwrap_or_default();
    let types = link.get("types").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    types
        .iter()
        .map(|t| Association {
            from_type: def.name.clone(),
            from_id: from_id.to_owned(),
            to_type: None,
            to_id: to_id.to_owned(),
            type_id: t.get("associationTypeId").and_then(Value::as_i64),
            category: t.get("associationCategory").and_then(Value::as_str).unwrap_or_default().to_owned(),
        })
        .collect()
}

/// `GET /crm/v3/properties/{objectType}`.
pub(crate) fn properties(state: &HubSpotState, type_name: &str, query: &str) -> Reply {
    let Some(def) = state.object_type(type_name) else { return unknown_type(type_name) };
    let archived = form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "archived" && v == "true");
    if archived {
        // The catalogue has no archived properties.
        return Reply::json(200, json!({"results": []}));
    }
    let stamp = "2020-01-01T00:00:00.000Z";
    let results: Vec<Value> = def
        .properties
        .iter()
        .enumerate()
        .map(|(order, p)| {
            let options: Vec<Value> = p
                .options
                .iter()
                .enumerate()
                .map(|(i, o)| json!({"label": o, "value": o, "displayOrder": i, "hidden": false}))
                .collect();
            json!({
                "name": p.name,
                "label": p.label,
                "type": p.type_,
                "fieldType": p.field_type,
                "description": "",
                "groupName": p.group_name,
                "options": options,
                "displayOrder": order,
                "hasUniqueValue": p.has_unique_value,
                "hidden": false,
                "formField": !p.read_only,
                "calculated": false,
                "externalOptions": false,
                "hubspotDefined": true,
                "archived": false,
                "createdAt": stamp,
                "updatedAt": stamp,
                "modificationMetadata": {
                    "archivable": !p.read_only,
                    "readOnlyDefinition": true,
                    "readOnlyValue": p.read_only,
                },
            })
        })
        .collect();
    Reply::json(200, json!({"results": results}))
}

fn exists(state: &HubSpotState, def: &ObjectTypeDef, id: &str) -> bool {
    state.objects.get(&def.name).and_then(|m| m.get(id)).is_some_and(|o| !o.archived)
}

/// Result of one association input: the stored association and its answer, or an error.
type LinkOutcome = Result<(Association, Value), Value>;

fn finish_links(state: &mut HubSpotState, outcomes: Vec<LinkOutcome>, started: String) -> Reply {
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if failed > 0 && failed == outcomes.len() {
        let first = outcomes.into_iter().find_map(Result::err).unwrap_or_else(|| json!({}));
        let message = first.get("message").and_then(Value::as_str).unwrap_or("Invalid input");
        let mut body = error_body(message, "VALIDATION_ERROR");
        if let Some(context) = first.get("context") {
            body.insert("context".into(), context.clone());
        }
        return Reply::json(400, Value::Object(body));
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok((association, result)) => {
                state.associations.push(association);
                results.push(result);
            }
            Err(error) => errors.push(error),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": now()});
    if errors.is_empty() {
        return Reply::json(201, out);
    }
    if let Some(map) = out.as_object_mut() {
        map.insert("numErrors".into(), json!(errors.len()));
        map.insert("errors".into(), Value::Array(errors));
    }
    Reply::json(207, out)
}

fn missing_link(def: &ObjectTypeDef, id: &str) -> Value {
    let label = title_case(&def.label);
    json!({"status": "error", "category": "VALIDATION_ERROR",
           "message": format!("{label} {id} does not exist"), "context": {"ids": [id]}, "errors": [], "links": {}})
}

fn link_ends(
    state: &HubSpotState,
    from: &str,
    to: &str,
    inputs_len: usize,
) -> Result<(ObjectTypeDef, ObjectTypeDef), Reply> {
    let from_def = state.object_type(from).ok_or_else(|| unknown_type(from))?;
    let to_def = state.object_type(to).ok_or_else(|| unknown_type(to))?;
    if inputs_len > state.options.batch_limit {
        return Err(batch_limit_reply(state.options.batch_limit));
    }
    Ok((from_def, to_def))
}

/// `POST /crm/v4/associations/{from}/{to}/batch/create`.
pub(crate) fn associate_v4(state: &mut HubSpotState, from: &str, to: &str, body: &Value) -> Reply {
    let started = now();
    let inputs: &[Value] = body.get("inputs").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let (from_def, to_def) = match link_ends(state, from, to, inputs.len()) {
        Ok(ends) => ends,
        Err(reply) => return reply,
    };
    let mut outcomes = Vec::new();
    for input in inputs {
        let from_id = input.pointer("/from/id").and_then(Value::as_str).unwrap_or_default();
        let to_id = input.pointer("/to/id").and_then(Value::as_str).unwrap_or_default();
        let types = input.get("types").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if !exists(state, &from_def, from_id) {
            outcomes.push(Err(missing_link(&from_def, from_id)));
            continue;
        }
        if !exists(state, &to_def, to_id) {
            outcomes.push(Err(missing_link(&to_def, to_id)));
            continue;
        }
        let first = types.first();
        let association = Association {
            from_type: from_def.name.clone(),
            from_id: from_id.to_owned(),
            to_type: Some(to_def.name.clone()),
            to_id: to_id.to_owned(),
            type_id: first.and_then(|t| t.get("associationTypeId")).and_then(Value::as_i64),
            category: first.and_then(|t| t.get("associationCategory")).and_then(Value::as_str).unwrap_or("").to_owned(),
        };
        let as_number = |id: &str| id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
        let result = json!({
            "fromObjectTypeId": from_def.object_type_id,
            "fromObjectId": as_number(from_id),
            "toObjectTypeId": to_def.object_type_id,
            "toObjectId": as_number(to_id),
            "labels": [],
        });
        outcomes.push(Ok((association, result)));
    }
    finish_links(state, outcomes, started)
}

/// `POST /crm/v3/associations/{from}/{to}/batch/create`.
pub(crate) fn associate_v3(state: &mut HubSpotState, from: &str, to: &str, body: &Value) -> Reply {
    let started = now();
    let inputs: &[Value] = body.get("inputs").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let (from_def, to_def) = match link_ends(state, from, to, inputs.len()) {
        Ok(ends) => ends,
        Err(reply) => return reply,
    };
    let mut outcomes = Vec::new();
    for input in inputs {
        let from_id = input.pointer("/from/id").and_then(Value::as_str).unwrap_or_default();
        let to_id = input.pointer("/to/id").and_then(Value::as_str).unwrap_or_default();
        let kind = input.get("type").and_then(Value::as_str).unwrap_or_default();
        if !exists(state, &from_def, from_id) {
            outcomes.push(Err(missing_link(&from_def, from_id)));
            continue;
        }
        if !exists(state, &to_def, to_id) {
            outcomes.push(Err(missing_link(&to_def, to_id)));
            continue;
        }
        let association = Association {
            from_type: from_def.name.clone(),
            from_id: from_id.to_owned(),
            to_type: Some(to_def.name.clone()),
            to_id: to_id.to_owned(),
            type_id: None,
            category: kind.to_owned(),
        };
        let result = json!({"from": {"id": from_id}, "to": {"id": to_id}, "type": kind});
        outcomes.push(Ok((association, result)));
    }
    finish_links(state, outcomes, started)
}
