//! Audience members → Snapchat Customer List uploads, and Snap's per-entry answers.
//!
//! Body (Customer Lists, <https://developers.snap.com/api/marketing-api/Ads-API/customer-lists>):
//! `{"users": [{"schema": ["EMAIL_SHA256"], "data": [["<sha256>"], …]}, …]}`. Each member's
//! identifiers are sent one per schema: one entry per schema used, each row one digest. Snap
//! answers `users[]` in the same order, each with a `sub_request_status`.

use serde_json::{json, Value as Json};
use sluice_core::{FieldDescription, ObjectDescription, SyncMode};

use crate::ads::identifiers::{self, Identifier, Platform};
use crate::ads::members::Member;

/// The schema of an identifier.
pub(crate) fn schema(identifier: Identifier) -> Option<&'static str> {
    match identifier {
        Identifier::Email => Some("EMAIL_SHA256"),
        Identifier::Phone => Some("PHONE_SHA256"),
        Identifier::MobileAdId => Some("MOBILE_AD_ID_SHA256"),
        _ => None,
    }
}

/// Identifiers `member` sends.
pub(crate) fn identifier_count(member: &Member) -> usize {
    member.identifiers.keys().filter(|i| schema(**i).is_some()).count()
}

/// One `users` entry of a request: its schema, digests, and the step each digest belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub schema: &'static str,
    pub data: Vec<String>,
    pub owners: Vec<usize>,
}

/// The entries for members `(step index, member)`, one per schema, in a fixed schema order.
pub(crate) fn entries(members: &[(usize, &Member)]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for identifier in [Identifier::Email, Identifier::Phone, Identifier::MobileAdId] {
        let Some(schema) = schema(identifier) else { continue };
        let mut entry = Entry { schema, data: Vec::new(), owners: Vec::new() };
        for (index, member) in members {
            if let Some(value) = member.identifiers.get(&identifier) {
                entry.data.push(value.clone());
                entry.owners.push(*index);
            }
        }
        if !entry.data.is_empty() {
            out.push(entry);
        }
    }
    out
}

/// The request body for `entries`.
pub(crate) fn body(entries: &[Entry]) -> String {
    let users: Vec<Json> = entries
        .iter()
        .map(|e| json!({ "schema": [e.schema], "data": e.data.iter().map(|d| [d]).collect::<Vec<_>>() }))
        .collect();
    json!({ "users": users }).to_string()
}

/// Per-entry results of an upload, in request order (`Err` holds Snap's reason); `None` when the
/// answer does not hold one status per entry.
pub(crate) fn entry_results(body: &Json, sent: usize) -> Option<Vec<Result<(), String>>> {
    let users = body.get("users")?.as_array()?;
    if users.len() != sent {
        return None;
    }
    users
        .iter()
        .map(|user| {
            let status = user.get("sub_request_status")?.as_str()?;
            if status.eq_ignore_ascii_case("SUCCESS") {
                return Some(Ok(()));
            }
            let reason = ["sub_request_error_reason", "debug_message", "display_message"]
                .iter()
                .find_map(|k| user.get(*k).and_then(Json::as_str))
                .map(String::from)
                .unwrap_or_else(|| format!("sub_request_status {status}"));
            Some(Err(reason))
        })
        .collect()
}

/// A Customer List segment as Snap describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub id: String,
    pub name: String,
    pub ad_account_id: String,
    pub source_type: String,
}

impl Segment {
    /// The segments of a `{"segments": [{"sub_request_status", "segment": {…}}]}` answer.
    pub(crate) fn list(body: &Json) -> Vec<Segment> {
        body.get("segments")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let segment = s.get("segment")?;
                let text = |k: &str| segment.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
                let id = match segment.get("id")? {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(Segment {
                    id,
                    name: text("name"),
                    ad_account_id: text("ad_account_id"),
                    source_type: text("source_type"),
                })
            })
            .collect()
    }

    /// Whether users can be uploaded: only first-party Customer Lists take them.
    pub(crate) fn takes_users(&self) -> bool {
        self.source_type.is_empty() || self.source_type.eq_ignore_ascii_case("FIRST_PARTY")
    }

    pub(crate) fn describe(&self) -> ObjectDescription {
        let fields = Identifier::ALL
            .into_iter()
            .filter(|i| identifiers::supports(Platform::Snapchat, *i))
            .map(|i| FieldDescription {
                name: i.field_name().to_string(),
                field_type: schema(i).unwrap_or_default().to_string(),
                can_match_on: true,
                required: false,
            })
            .collect();
        ObjectDescription {
            name: self.id.clone(),
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(format!("Customer List \"{}\"; every identifier is sent as a SHA-256 digest", self.name)),
        }
    }
}

/// A segment id that is safe in a URL path.
pub(crate) fn segment_id(object: &str) -> Option<String> {
    let id = object.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::identifiers::sha256_hex;

    fn member(pairs: &[(Identifier, String)]) -> Member {
        Member { identifiers: pairs.iter().cloned().collect() }
    }

    #[test]
    fn members_become_one_entry_per_schema() {
        let a = member(&[(Identifier::Email, sha256_hex("a")), (Identifier::Phone, sha256_hex("1"))]);
        let b = member(&[(Identifier::Email, sha256_hex("b"))]);
        let entries = entries(&[(0, &a), (3, &b)]);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            Entry { schema: "EMAIL_SHA256", data: vec![sha256_hex("a"), sha256_hex("b")], owners: vec![0, 3] }
        );
        assert_eq!(entries[1].owners, vec![0]);
        let body: Json = serde_json::from_str(&body(&entries)).unwrap();
        assert_eq!(body["users"][1], json!({ "schema": ["PHONE_SHA256"], "data": [[sha256_hex("1")]] }));
        assert_eq!(identifier_count(&a), 2);
    }

    #[test]
    fn entry_answers_are_read() {
        let answer = json!({ "request_status": "ERROR", "users": [
            { "sub_request_status": "SUCCESS", "user": { "number_uploaded_users": 2 } },
            { "sub_request_status": "ERROR", "sub_request_error_reason": "bad digest" },
        ]});
        assert_eq!(entry_results(&answer, 2), Some(vec![Ok(()), Err("bad digest".into())]));
        assert_eq!(entry_results(&answer, 3), None);
        assert_eq!(segment_id("5677923948298240").as_deref(), Some("5677923948298240"));
        assert_eq!(segment_id("../x"), None);
    }
}
