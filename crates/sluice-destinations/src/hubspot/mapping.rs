//! Turns changes into HubSpot batch inputs and HubSpot's answers back into per-record outcomes.

use serde_json::{json, Value as Json};
use sluice_core::{ChangeBatch, DestinationError, Outcome, Value, ASSOCIATION_FIELD_PREFIX};

use super::client::{self, Reply};

/// HubSpot's record id property: matched by record id rather than by a property value.
pub(crate) const RECORD_ID: &str = "hs_object_id";

/// Which batch endpoint a group of changes goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// `batch/create`: new records only.
    Create,
    /// `batch/update`: existing records, found by `idProperty` or record id.
    Update,
    /// `batch/upsert`: found by `idProperty`, created when missing.
    Upsert,
}

impl WriteKind {
    /// The path segment after `batch/`.
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            WriteKind::Create => "create",
            WriteKind::Update => "update",
            WriteKind::Upsert => "upsert",
        }
    }
}

/// One input sent, remembered to map answers back to its change.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Position of the change in the batch.
    pub(crate) index: usize,
    /// `objectWriteTraceId`: the change's key.
    pub(crate) trace: String,
    /// The match value sent as `id`, if any.
    pub(crate) id: Option<String>,
}

/// Every value is sent as text; null clears the property, which HubSpot spells "".
pub(crate) fn text(value: &Value) -> String {
    value.to_text().unwrap_or_default()
}

/// Builds the inputs of one write request. Changes without a match value cannot be found in
/// HubSpot and are rejected here rather than sent.
pub(crate) fn write_inputs(
    batch: &ChangeBatch,
    indices: &[usize],
    kind: WriteKind,
    match_field: Option<&str>,
) -> (Vec<Json>, Vec<Sent>, Vec<(usize, Outcome)>) {
    let mut inputs = Vec::new();
    let mut sent = Vec::new();
    let mut rejected = Vec::new();
    let match_position = match_field.and_then(|m| batch.fields.iter().position(|f| f == m));
    for &index in indices {
        let change = &batch.changes[index];
        let properties: serde_json::Map<String, Json> = batch
            .fields
            .iter()
            .zip(&change.values)
            // The record id is HubSpot's to set; it only ever identifies the record.
            .filter(|(name, _)| name.as_str() != RECORD_ID && !name.starts_with(ASSOCIATION_FIELD_PREFIX))
            .map(|(name, value)| (name.clone(), Json::String(text(value))))
            .collect();
        let mut input = json!({ "properties": properties, "objectWriteTraceId": change.key });
        let mut id = None;
        if kind != WriteKind::Create {
            let (Some(field), Some(position)) = (match_field, match_position) else {
                rejected
                    .push((index, Outcome::rejected("no `match_on` field is mapped; HubSpot cannot find the record")));
                continue;
            };
            let value = change.values.get(position).map(text).unwrap_or_default();
            if value.trim().is_empty() {
                rejected.push((
                    index,
                    Outcome::rejected(format!("`{field}` is empty, so HubSpot cannot match this record")),
                ));
                continue;
            }
            if field != RECORD_ID {
                input["idProperty"] = json!(field);
            }
            input["id"] = json!(value);
            id = Some(value);
        }
        inputs.push(input);
        sent.push(Sent { index, trace: change.key.clone(), id });
    }
    (inputs, sent, rejected)
}

/// Compares match values as HubSpot does for emails: trimmed and case-insensitive.
fn same_value(a: &str, b: &str) -> bool {
    a == b || a.trim().eq_ignore_ascii_case(b.trim())
}

fn strings(value: Option<&Json>) -> Vec<String> {
    match value {
        Some(Json::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        Some(Json::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Finds which sent input a result belongs to: by echoed trace id, else by match value, else by
/// position when every input has a result.
fn result_owner(
    result: &Json,
    position: usize,
    sent: &[Sent],
    match_field: Option<&str>,
    positional: bool,
) -> Option<usize> {
    if let Some(trace) = result.get("objectWriteTraceId").and_then(Json::as_str) {
        if let Some(found) = sent.iter().position(|s| s.trace == trace) {
            return Some(found);
        }
    }
    if let Some(field) = match_field {
        let value = if field == RECORD_ID {
            result.get("id").and_then(Json::as_str)
        } else {
            result.get("properties").and_then(|p| p.get(field)).and_then(Json::as_str)
        };
        if let Some(value) = value {
            if let Some(found) = sent.iter().position(|s| s.id.as_deref().is_some_and(|id| same_value(id, value))) {
                return Some(found);
            }
        }
    }
    positional.then_some(position)
}

/// Reads the answer to a create, update or upsert request into one outcome per sent input.
pub(crate) fn write_outcomes(
    what: &str,
    reply: &Reply,
    sent: &[Sent],
    match_field: Option<&str>,
) -> Result<Vec<(usize, Outcome)>, DestinationError> {
    match reply.status {
        200..=299 => {}
        // A conflict on a single record is that record's problem; on a batch, bisect to find it.
        409 if sent.len() == 1 => return Ok(vec![(sent[0].index, Outcome::rejected(client::message(reply)))]),
        _ => return Err(client::failure(what, reply)),
    }
    let body = reply.json();
    let results = body.get("results").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let errors = body.get("errors").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; sent.len()];

    let mut unattributed = Vec::new();
    for error in errors {
        let message = error.get("message").and_then(Json::as_str).unwrap_or("rejected by HubSpot (no message given)");
        let context = error.get("context");
        let traces = strings(context.and_then(|c| c.get("objectWriteTraceId")));
        let ids = strings(context.and_then(|c| c.get("ids")));
        let mut matched = false;
        for (slot, input) in sent.iter().enumerate() {
            let by_trace = traces.contains(&input.trace);
            let by_id =
                traces.is_empty() && input.id.as_deref().is_some_and(|id| ids.iter().any(|i| same_value(i, id)));
            if by_trace || by_id {
                outcomes[slot] = Some(Outcome::rejected(message));
                matched = true;
            }
        }
        if !matched {
            unattributed.push(message.to_string());
        }
    }

    let positional = errors.is_empty() && results.len() == sent.len();
    for (position, result) in results.iter().enumerate() {
        let Some(slot) = result_owner(result, position, sent, match_field, positional) else { continue };
        if outcomes[slot].is_none() {
            let mut applied = Outcome::applied();
            applied.destination_id = result.get("id").and_then(Json::as_str).map(str::to_string);
            outcomes[slot] = Some(applied);
        }
    }

    Ok(sent
        .iter()
        .zip(outcomes)
        .map(|(input, outcome)| {
            let outcome = outcome.unwrap_or_else(|| {
                if unattributed.is_empty() {
                    // HubSpot answered success without naming this input: it was written.
                    Outcome::applied()
                } else {
                    // An error HubSpot did not tie to an input may be this one's: never claim success.
                    Outcome::rejected(unattributed.join("; "))
                }
            });
            (input.index, outcome)
        })
        .collect())
}

/// Parses HubSpot's answer to `GET /crm/v3/properties/{object}`.
pub(crate) fn properties(body: &Json) -> Vec<Property> {
    let results = body.get("results").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    results
        .iter()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_string();
            let flag = |v: Option<&Json>| v.and_then(Json::as_bool).unwrap_or(false);
            Some(Property {
                name,
                type_: p.get("type").and_then(Json::as_str).unwrap_or("string").to_string(),
                has_unique_value: flag(p.get("hasUniqueValue")),
                read_only: flag(p.pointer("/modificationMetadata/readOnlyValue")) || flag(p.get("calculated")),
            })
        })
        .collect()
}

/// One property of a HubSpot object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Property {
    pub(crate) name: String,
    /// HubSpot's data type: string, number, enumeration, bool, date, datetime…
    pub(crate) type_: String,
    pub(crate) has_unique_value: bool,
    pub(crate) read_only: bool,
}

impl Property {
    /// Whether records can be matched on this property.
    pub(crate) fn can_match_on(&self, object: &str) -> bool {
        // HubSpot does not flag contacts' email as unique, yet upserts by it.
        self.has_unique_value || self.name == RECORD_ID || (self.name == "email" && is_contacts(object))
    }
}

/// Whether `object` names the contacts object (by name, singular or type id).
pub(crate) fn is_contacts(object: &str) -> bool {
    matches!(object, "contacts" | "contact" | "0-1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn sent(keys: &[(&str, &str)]) -> Vec<Sent> {
        keys.iter()
            .enumerate()
            .map(|(index, (trace, id))| Sent { index, trace: (*trace).into(), id: Some((*id).into()) })
            .collect()
    }

    fn reply(status: u16, body: Json) -> Reply {
        Reply { status, headers: HeaderMap::new(), body: body.to_string() }
    }

    #[test]
    fn results_map_back_by_match_value_case_insensitively() {
        let body = json!({"status": "COMPLETE", "results": [
            {"id": "2", "properties": {"email": "b@x.io"}},
            {"id": "1", "properties": {"email": "a@x.io"}}]});
        let outcomes =
            write_outcomes("w", &reply(200, body), &sent(&[("1", "A@x.io"), ("2", "b@x.io")]), Some("email")).unwrap();
        assert_eq!(outcomes[0].1.destination_id.as_deref(), Some("1"));
        assert_eq!(outcomes[1].1.destination_id.as_deref(), Some("2"));
    }

    #[test]
    fn unattributed_errors_never_become_successes() {
        let body = json!({"status": "COMPLETE", "results": [{"id": "1", "properties": {"email": "a@x.io"}}],
            "errors": [{"status": "error", "message": "boom", "context": {}}]});
        let outcomes =
            write_outcomes("w", &reply(207, body), &sent(&[("1", "a@x.io"), ("2", "b@x.io")]), Some("email")).unwrap();
        assert_eq!(outcomes[0].1, Outcome { destination_id: Some("1".into()), ..Outcome::applied() });
        assert_eq!(outcomes[1].1, Outcome::rejected("boom"));
    }

    #[test]
    fn a_single_conflict_is_the_records_rejection() {
        let body =
            json!({"status": "error", "message": "Contact already exists. Existing ID: 7", "category": "CONFLICT"});
        let outcomes = write_outcomes("w", &reply(409, body.clone()), &sent(&[("1", "a")]), None).unwrap();
        assert_eq!(outcomes, vec![(0, Outcome::rejected("Contact already exists. Existing ID: 7"))]);
        let error = write_outcomes("w", &reply(409, body), &sent(&[("1", "a"), ("2", "b")]), None).unwrap_err();
        assert_eq!(error.class, sluice_core::ErrorClass::Permanent);
    }

    #[test]
    fn odd_success_bodies_apply_everything() {
        let outcomes = write_outcomes("w", &reply(200, json!("?")), &sent(&[("1", "a")]), None).unwrap();
        assert_eq!(outcomes, vec![(0, Outcome::applied())]);
    }
}
