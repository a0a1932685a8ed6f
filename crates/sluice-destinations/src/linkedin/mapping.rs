//! Audience members → LinkedIn DMP segment user elements, and LinkedIn's per-element answers.
//!
//! Element schema (DMP Segment Users,
//! <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>):
//! `action` ADD or REMOVE; `userIds`, a list of `{idType, idValue}` (SHA256_EMAIL: hex, 64
//! characters; GOOGLE_AID: lowercase). A batch create answers one Rest.li `CreateStatus` per
//! element, in order: `{"status": 201}` or `{"status": 4xx, "error": {"message", …}}`.
//!
//! Elements also take `firstName`, `lastName` and `country`, but LinkedIn documents them as plain
//! text; Sluice sends ad platforms only digests (and the device ids they document as plain), so
//! those fields are never sent. Members read from destination ids stored before that rule (e.g.
//! `email:<hash>|first_name:Mary`) lose such values here, before anything is sent.

use serde_json::{json, Value as Json};
use sluice_core::{FieldDescription, ObjectDescription, SyncMode};

use crate::ads::identifiers::{self, Identifier, Platform};
use crate::ads::members::{Member, MemberOp};

/// `userIds[].idType` for an identifier; `None` for identifiers LinkedIn is not sent.
pub(crate) fn id_type(identifier: Identifier) -> Option<&'static str> {
    match identifier {
        Identifier::Email => Some("SHA256_EMAIL"),
        // The identifier layer has one mobile ad id, normalised lowercase as GOOGLE_AID wants;
        // APPLE_IDFA (uppercase) is not sent: an IDFA cannot be told apart from a GAID.
        Identifier::MobileAdId => Some("GOOGLE_AID"),
        _ => None,
    }
}

/// Why a member cannot be sent without any user id.
pub(crate) const NO_USER_ID: &str = "LinkedIn matches members by e-mail (SHA256_EMAIL) or Android advertising id \
     (GOOGLE_AID), and this record has neither";

/// The member with only the identifiers LinkedIn is sent (its user ids).
fn sendable(member: Member) -> Member {
    let mut member = member;
    member.identifiers.retain(|identifier, _| id_type(*identifier).is_some());
    member
}

/// An op with every member cut down to what LinkedIn is sent. Only members decoded from stored
/// destination ids can hold more (names and country, sent before Sluice stopped sending plain
/// values); they must not be sent again, nor end up in an outcome. A change of identifiers that
/// only drops such values is an addition of the same user ids, not a removal and re-addition.
pub(crate) fn sendable_op(op: MemberOp) -> MemberOp {
    match op {
        MemberOp::Add(member) => MemberOp::Add(sendable(member)),
        MemberOp::Remove(member) => MemberOp::Remove(sendable(member)),
        MemberOp::Replace { remove, add } => {
            let (remove, add) = (sendable(remove), sendable(add));
            if remove == add {
                MemberOp::Add(add)
            } else {
                MemberOp::Replace { remove, add }
            }
        }
        MemberOp::Reject(message) => MemberOp::Reject(message),
    }
}

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

/// The element for one member: its action and user ids, nothing else. `Err` (naming no value)
/// when it has no user id.
pub(crate) fn element(member: &Member, action: Action) -> Result<Json, String> {
    let user_ids: Vec<Json> = member
        .identifiers
        .iter()
        .filter_map(|(identifier, value)| {
            id_type(*identifier).map(|id_type| json!({ "idType": id_type, "idValue": value }))
        })
        .collect();
    if user_ids.is_empty() {
        return Err(NO_USER_ID.into());
    }
    Ok(json!({ "action": action.as_str(), "userIds": user_ids }))
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

/// The platform's message with the member's plain values (the Android advertising id) masked:
/// messages are stored in run outcomes, and device ids are personal data. Digests may stay.
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

    /// The segment as discovery lists it: the identifiers Sluice sends LinkedIn.
    pub(crate) fn describe(&self) -> ObjectDescription {
        let fields = Identifier::ALL
            .into_iter()
            .filter(|i| identifiers::supports(Platform::LinkedIn, *i))
            .filter_map(|i| {
                Some(FieldDescription {
                    name: i.field_name().to_string(),
                    field_type: format!("userIds {}", id_type(i)?),
                    can_match_on: true,
                    required: false,
                })
            })
            .collect();
        ObjectDescription {
            name: self.id.clone(),
            fields,
            open_schema: false,
            modes: vec![SyncMode::Audience, SyncMode::Insert],
            note: Some(format!(
                "DMP segment \"{}\" ({}); map email (sent as a SHA-256 digest) or mobile_ad_id (Android advertising \
                 id, a device id LinkedIn takes unhashed); names and country are not sent, as LinkedIn takes them \
                 only unhashed",
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
    fn members_become_elements_of_user_ids_only() {
        let hash = sha256_hex("mike@example.com");
        let m = member(&[(Identifier::Email, &hash), (Identifier::MobileAdId, "6d92078a-8246-4ba4-ae5b-76104861e7dc")]);
        let expected = json!({
            "action": "ADD",
            "userIds": [
                { "idType": "SHA256_EMAIL", "idValue": hash },
                { "idType": "GOOGLE_AID", "idValue": "6d92078a-8246-4ba4-ae5b-76104861e7dc" },
            ],
        });
        assert_eq!(element(&m, Action::Add).unwrap(), expected);
        // A member stored before names and country were refused: they are not sent.
        let mut legacy = m.clone();
        legacy.identifiers.insert(Identifier::FirstName, "Mike".into());
        legacy.identifiers.insert(Identifier::Country, "US".into());
        assert_eq!(element(&legacy, Action::Add).unwrap(), expected);
        let error = element(&member(&[(Identifier::FirstName, "Mike")]), Action::Remove).unwrap_err();
        assert_eq!(error, NO_USER_ID);
        assert!(!error.contains("Mike"), "{error}");
    }

    #[test]
    fn stored_members_lose_values_linkedin_is_not_sent() {
        let email = member(&[(Identifier::Email, &sha256_hex("ada@example.com"))]);
        let legacy = member(&[
            (Identifier::Email, &sha256_hex("ada@example.com")),
            (Identifier::FirstName, "Ada"),
            (Identifier::Country, "GB"),
        ]);
        assert_eq!(sendable_op(MemberOp::Remove(legacy.clone())), MemberOp::Remove(email.clone()));
        // Only the plain values differ: the same user id is added, never removed.
        assert_eq!(
            sendable_op(MemberOp::Replace { remove: legacy.clone(), add: email.clone() }),
            MemberOp::Add(email.clone())
        );
        let new = member(&[(Identifier::Email, &sha256_hex("ada@new.example"))]);
        assert_eq!(
            sendable_op(MemberOp::Replace { remove: legacy, add: new.clone() }),
            MemberOp::Replace { remove: email, add: new }
        );
        let names_only = member(&[(Identifier::FirstName, "Ada")]);
        assert_eq!(sendable_op(MemberOp::Remove(names_only)), MemberOp::Remove(Member::default()));
        assert_eq!(sendable_op(MemberOp::Reject("x".into())), MemberOp::Reject("x".into()));
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
        let hash = sha256_hex("a@b.co");
        let m = member(&[(Identifier::Email, &hash), (Identifier::MobileAdId, "6d92078a-8246-4ba4-ae5b-76104861e7dc")]);
        assert_eq!(
            redact("GOOGLE_AID 6d92078a-8246-4ba4-ae5b-76104861e7dc is unknown", &m),
            "GOOGLE_AID [mobile_ad_id] is unknown"
        );
        assert_eq!(redact(&format!("SHA256_EMAIL {hash} is unknown"), &m), format!("SHA256_EMAIL {hash} is unknown"));
    }

    #[test]
    fn discovery_lists_only_user_ids() {
        let segment = Segment { id: "1".into(), name: "VIP".into(), account: "2".into(), kind: "USER".into() };
        let fields: Vec<(String, String, bool)> =
            segment.describe().fields.into_iter().map(|f| (f.name, f.field_type, f.can_match_on)).collect();
        assert_eq!(
            fields,
            [
                ("email".to_string(), "userIds SHA256_EMAIL".to_string(), true),
                ("mobile_ad_id".to_string(), "userIds GOOGLE_AID".to_string(), true),
            ]
        );
    }
}
