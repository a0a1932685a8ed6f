//! Audience members → LinkedIn DMP segment user elements, and LinkedIn's per-element answers.
//!
//! Element schema (DMP Segment Users,
//! <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>):
//! `action` ADD or REMOVE; `userIds`, a list of `{idType, idValue}` (SHA256_EMAIL: hex, 64
//! characters; GOOGLE_AID: lowercase); `firstName`, `lastName` (at most 35 characters), `country`
//! (ISO 3166-1 alpha-2, "US"). A batch create answers one Rest.li `CreateStatus` per element, in
//! order: `{"status": 201}` or `{"status": 4xx, "error": {"message", …}}`.

use serde_json::{json, Map, Value as Json};
use sluice_core::{FieldDescription, ObjectDescription, SyncMode};

use crate::ads::identifiers::{self, Identifier, Platform};
use crate::ads::members::Member;

/// `userIds[].idType` for an identifier, or `None` when it is sent as a field of its own.
pub(crate) fn id_type(identifier: Identifier) -> Option<&'static str> {
    match identifier {
        Identifier::Email => Some("SHA256_EMAIL"),
        // The identifier layer has one mobile ad id, normalised lowercase as GOOGLE_AID wants;
        // APPLE_IDFA (uppercase) is not sent: an IDFA cannot be told apart from a GAID.
        Identifier::MobileAdId => Some("GOOGLE_AID"),
        _ => None,
    }
}

/// The element field an identifier fills, when it is not a user id.
fn field(identifier: Identifier) -> Option<&'static str> {
    match identifier {
        Identifier::FirstName => Some("firstName"),
        Identifier::LastName => Some("lastName"),
        Identifier::Country => Some("country"),
        _ => None,
    }
}

/// Why a member cannot be sent without any user id.
pub(crate) const NO_USER_ID: &str = "LinkedIn matches members by e-mail (SHA256_EMAIL) or Android advertising id \
     (GOOGLE_AID), and this record has neither; first_name, last_name and country only refine the match";

/// The action of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Add,
    Remove,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "ADD",
            Action::Remove => "REMOVE",
        }
    }
}

/// The element for one member; `Err` (naming no value) when it has no user id.
pub(crate) fn element(member: &Member, action: Action) -> Result<Json, String> {
    let mut user_ids = Vec::new();
    let mut out = Map::new();
    out.insert("action".into(), json!(action.as_str()));
    for (identifier, value) in &member.identifiers {
        if let Some(id_type) = id_type(*identifier) {
            user_ids.push(json!({ "idType": id_type, "idValue": value }));
        } else if let Some(name) = field(*identifier) {
            out.insert(name.into(), json!(value));
        }
    }
    if user_ids.is_empty() {
        return Err(NO_USER_ID.into());
    }
    out.insert("userIds".into(), Json::Array(user_ids));
    Ok(Json::Object(out))
}

/// The segment's id from a sync's `object:`: `10804` or `urn:li:dmpSegment:10804`.
pub(crate) fn segment_id(object: &str) -> Option<String> {
    let text = object.trim();
    let id = text.strip_prefix("urn:li:dmpSegment:").unwrap_or(text);
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// One element's failure, as LinkedIn reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElementFailure {
    pub status: u16,
    pub message: String,
    /// 429 or 5xx for this element: sending it again may work.
    pub retryable: bool,
}

/// Per-element results of a batch create, in request order; `None` when the answer does not hold
/// one status per element.
pub(crate) fn element_results(body: &Json, sent: usize) -> Option<Vec<Result<(), ElementFailure>>> {
    let elements = body.get("elements")?.as_array()?;
    if elements.len() != sent {
        return None;
    }
    elements
        .iter()
        .map(|element| {
            let status = u16::try_from(element.get("status")?.as_u64()?).ok()?;
            if (200..300).contains(&status) {
                return Some(Ok(()));
            }
            let error = element.get("error");
            let message = error
                .and_then(|e| e.get("message"))
                .and_then(Json::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("HTTP {status} for this member, without a message"));
            Some(Err(ElementFailure { status, message, retryable: status == 429 || status >= 500 }))
        })
        .collect()
}

/// The platform's message with the member's plain values (names, country, device id) masked:
/// messages are stored in run outcomes, and those values are personal data. Digests may stay.
pub(crate) fn redact(message: &str, member: &Member) -> String {
    let mut out = message.to_string();
    for (identifier, value) in &member.identifiers {
        if !identifiers::is_hashed(Platform::LinkedIn, *identifier) && value.chars().count() >= 2 {
            out = out.replace(value.as_str(), &format!("[{identifier}]"));
        }
    }
    out
}

/// A segment as `GET /rest/dmpSegments/{id}` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub id: String,
    pub name: String,
    /// The sponsored account's number.
    pub account: String,
    /// `USER`, `COMPANY`, or a list-upload / streaming variant of them.
    pub kind: String,
}

impl Segment {
    pub(crate) fn from_json(body: &Json) -> Option<Segment> {
        let id = match body.get("id")? {
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            _ => return None,
        };
        let account = body.get("account")?.as_str()?;
        Some(Segment {
            id,
            name: body.get("name").and_then(Json::as_str).unwrap_or_default().to_string(),
            account: account.strip_prefix("urn:li:sponsoredAccount:").unwrap_or(account).to_string(),
            kind: body.get("type").and_then(Json::as_str).unwrap_or_default().to_string(),
        })
    }

    /// Whether members (rather than companies) can be added.
    pub(crate) fn takes_users(&self) -> bool {
        !self.kind.to_ascii_uppercase().contains("COMPANY")
    }

    /// The segment as discovery lists it: the identifiers LinkedIn matches on.
    pub(crate) fn describe(&self) -> ObjectDescription {
        let fields = Identifier::ALL
            .into_iter()
            .filter(|i| identifiers::supports(Platform::LinkedIn, *i))
            .map(|i| FieldDescription {
                name: i.field_name().to_string(),
                field_type: match (id_type(i), field(i)) {
                    (Some(id_type), _) => format!("userIds {id_type}"),
                    (None, Some(name)) => format!("{name} (sent unhashed)"),
                    (None, None) => String::new(),
                },
                can_match_on: id_type(i).is_some(),
                required: false,
            })
            .collect();
        ObjectDescription {
            name: self.id.clone(),
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(format!(
                "DMP segment \"{}\" ({}); map email or mobile_ad_id (Android advertising id); first_name, last_name \
                 and country are sent unhashed, as LinkedIn takes them",
                self.name, self.kind
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::identifiers::sha256_hex;

    fn member(pairs: &[(Identifier, &str)]) -> Member {
        Member { identifiers: pairs.iter().map(|(i, v)| (*i, v.to_string())).collect() }
    }

    #[test]
    fn members_become_elements() {
        let hash = sha256_hex("mike@example.com");
        let m = member(&[
            (Identifier::Email, &hash),
            (Identifier::FirstName, "Mike"),
            (Identifier::Country, "US"),
            (Identifier::MobileAdId, "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
        ]);
        assert_eq!(
            element(&m, Action::Add).unwrap(),
            json!({
                "action": "ADD",
                "firstName": "Mike",
                "country": "US",
                "userIds": [
                    { "idType": "SHA256_EMAIL", "idValue": hash },
                    { "idType": "GOOGLE_AID", "idValue": "6d92078a-8246-4ba4-ae5b-76104861e7dc" },
                ],
            })
        );
        let error = element(&member(&[(Identifier::FirstName, "Mike")]), Action::Remove).unwrap_err();
        assert!(!error.contains("Mike"), "{error}");
    }

    #[test]
    fn segment_ids_and_answers_are_read() {
        assert_eq!(segment_id("10804").as_deref(), Some("10804"));
        assert_eq!(segment_id(" urn:li:dmpSegment:10804 ").as_deref(), Some("10804"));
        assert_eq!(segment_id("urn:li:adSegment:1"), None);
        assert_eq!(segment_id("../1"), None);
        let body = json!({ "elements": [{ "status": 201 }, { "status": 400, "error": { "message": "bad" } }, { "status": 503 }] });
        let results = element_results(&body, 3).unwrap();
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1].as_ref().unwrap_err().message, "bad");
        assert!(results[2].as_ref().unwrap_err().retryable);
        assert!(element_results(&body, 2).is_none(), "a count mismatch is not trusted");
    }

    #[test]
    fn plain_values_are_masked_in_messages() {
        let m = member(&[(Identifier::Email, &sha256_hex("a@b.co")), (Identifier::LastName, "Zoë Smith")]);
        assert_eq!(redact("lastName Zoë Smith is too long", &m), "lastName [last_name] is too long");
    }
}
