//! Audience members as sent to an ad platform, and the add/remove operations a batch of changes
//! turns into.
//!
//! A member is known only by the wire values (digests, or the few values a platform takes
//! plain) sent for it. They are kept as the record's destination id in the sync's snapshot, so a
//! member who leaves the audience, or whose identifiers change, can be removed later with exactly
//! what was sent, without keeping the personal data itself.

use std::collections::BTreeMap;

use sluice_core::{ChangeBatch, ChangeOp, DestinationError, SyncMode, Target};

use super::identifiers::{self, Identifier, NormalizeOptions, Platform};

/// One audience member as sent: wire values (hashes) by identifier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    pub identifiers: BTreeMap<Identifier, String>,
}

impl Member {
    /// Kept as the record's destination id in the sync snapshot, so a member who leaves or whose identifiers change can be removed later. Holds only wire values, e.g. "email:<hash>|phone:<hash>".
    ///
    /// Values a platform takes plain (a Google user id, a mobile ad id) may hold `|` or `%`;
    /// those two characters are percent-encoded.
    pub fn to_destination_id(&self) -> String {
        let mut out = String::new();
        for (identifier, value) in &self.identifiers {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(identifier.field_name());
            out.push(':');
            out.push_str(&value.replace('%', "%25").replace('|', "%7C"));
        }
        out
    }

    /// Reads [`Member::to_destination_id`]; `None` for anything else (empty, unknown identifier,
    /// repeated identifier, empty value).
    pub fn from_destination_id(id: &str) -> Option<Member> {
        if id.is_empty() {
            return None;
        }
        let mut identifiers = BTreeMap::new();
        for part in id.split('|') {
            let (field, value) = part.split_once(':')?;
            let identifier = Identifier::from_field(field)?;
            let value = unescape(value)?;
            if value.is_empty() || identifiers.insert(identifier, value).is_some() {
                return None;
            }
        }
        Some(Member { identifiers })
    }

    /// Whether the member has no identifier at all.
    pub fn is_empty(&self) -> bool {
        self.identifiers.is_empty()
    }
}

fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%25") => out.push('%'),
            Some("%7C") => out.push('|'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// What to do for one change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    /// Add the member (it entered the audience, or was never sent).
    Add(Member),
    /// Remove the member (it left the audience).
    Remove(Member),
    /// The record's identifiers changed: remove what was sent before, then add the new member.
    Replace { remove: Member, add: Member },
    /// Nothing can be sent for this record; the message says why and names the field, never
    /// its value.
    Reject(String),
}

/// One op per change, in order. Batch fields are named by Identifier::field_name (values: sluice_core::Value; use its to_text()).
/// Insert → Add; Update → Replace when change.destination_id decodes to a member different from the new one, else Add; Delete → Remove (decoded from destination_id; Reject with a clear message when there is none); a change with no usable identifier, or one whose value cannot be normalised → Reject naming the field (not the value).
pub fn plan_members(platform: Platform, batch: &ChangeBatch, options: &NormalizeOptions) -> Vec<MemberOp> {
    let columns: Vec<Option<Identifier>> = batch.fields.iter().map(|f| Identifier::from_field(f)).collect();
    batch
        .changes
        .iter()
        .map(|change| {
            let previous = change.destination_id.as_deref().and_then(Member::from_destination_id);
            if change.op == ChangeOp::Delete {
                return match previous {
                    Some(member) => MemberOp::Remove(member),
                    None if change.destination_id.as_deref().is_some_and(|id| !id.is_empty()) => MemberOp::Reject(
                        format!("the stored {platform} audience member of this record is unreadable, so Sluice cannot tell {platform} whom to remove"),
                    ),
                    None => MemberOp::Reject(format!(
                        "no {platform} audience member is known for this record (it was not sent by this sync), so Sluice cannot tell {platform} whom to remove"
                    )),
                };
            }
            let mut member = Member::default();
            for (identifier, value) in columns.iter().zip(&change.values) {
                let Some(identifier) = identifier else { continue };
                let Some(text) = value.to_text() else { continue };
                match identifiers::wire_value(platform, *identifier, &text, options) {
                    Ok(Some(wire)) => {
                        member.identifiers.insert(*identifier, wire);
                    }
                    Ok(None) => {}
                    Err(message) => return MemberOp::Reject(message),
                }
            }
            if member.is_empty() {
                let mapped: Vec<&str> = columns.iter().flatten().map(|i| i.field_name()).collect();
                return MemberOp::Reject(if mapped.is_empty() {
                    format!("no identifier is mapped, so {platform} cannot match this record")
                } else {
                    format!("every identifier is empty ({}), so {platform} cannot match this record", mapped.join(", "))
                });
            }
            match (change.op, previous) {
                (ChangeOp::Update, Some(old)) if old != member => MemberOp::Replace { remove: old, add: member },
                _ => MemberOp::Add(member),
            }
        })
        .collect()
}

/// For Destination::prepare: mode must be `audience` (add + remove) or `insert` (add only) — other modes get a config error saying so; every target field must be an identifier the platform supports — else a config error listing the accepted field names.
pub fn check_target(platform: Platform, target: &Target) -> Result<(), DestinationError> {
    if !matches!(target.mode, SyncMode::Audience | SyncMode::Insert) {
        return Err(DestinationError::config(format!(
            "sync `{}`: a {platform} audience takes `mode: audience` (add members who enter, remove those who leave) \
             or `mode: insert` (add only), not `mode: {}`",
            target.sync,
            target.mode.as_str()
        )));
    }
    let accepted: Vec<&str> = Identifier::ALL
        .into_iter()
        .filter(|i| identifiers::supports(platform, *i))
        .map(Identifier::field_name)
        .collect();
    let refused: Vec<String> = target
        .fields
        .iter()
        .filter(|f| !Identifier::from_field(&f.name).is_some_and(|i| identifiers::supports(platform, i)))
        .map(|f| format!("`{}`", f.name))
        .collect();
    if !refused.is_empty() {
        return Err(DestinationError::config(format!(
            "sync `{}`: {platform} cannot match audience members on {}; map the model's columns to {}",
            target.sync,
            refused.join(", "),
            accepted.join(", ")
        )));
    }
    if target.fields.is_empty() {
        return Err(DestinationError::config(format!(
            "sync `{}`: map at least one identifier {platform} matches on: {}",
            target.sync,
            accepted.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow_schema::DataType;
    use sluice_core::{Change, ErrorClass, FieldSpec, Fingerprint, Value};

    use super::*;
    use crate::ads::identifiers::sha256_hex;

    fn batch(fields: &[&str], changes: Vec<Change>) -> ChangeBatch {
        ChangeBatch { fields: fields.iter().map(|f| f.to_string()).collect::<Vec<_>>().into(), changes }
    }

    fn change(op: ChangeOp, values: &[Option<&str>], destination_id: Option<String>) -> Change {
        Change {
            op,
            key: "k".into(),
            fingerprint: Fingerprint(1),
            values: values.iter().map(|v| v.map_or(Value::Null, |t| Value::Text(t.into()))).collect(),
            destination_id,
        }
    }

    fn member(pairs: &[(Identifier, &str)]) -> Member {
        Member { identifiers: pairs.iter().map(|(i, v)| (*i, v.to_string())).collect() }
    }

    #[test]
    fn destination_ids_round_trip() {
        let m = member(&[(Identifier::Phone, &sha256_hex("2")), (Identifier::Email, &sha256_hex("1"))]);
        let id = m.to_destination_id();
        assert_eq!(id, format!("email:{}|phone:{}", sha256_hex("1"), sha256_hex("2")));
        assert_eq!(Member::from_destination_id(&id), Some(m));
        let odd = member(&[(Identifier::ExternalId, "a|b%7C:c"), (Identifier::FirstName, "Mary Ann")]);
        assert_eq!(Member::from_destination_id(&odd.to_destination_id()), Some(odd));
        for bad in ["", "email", "email:", "nope:x", "email:a|email:b", "email:%zz", "email:a||phone:b"] {
            assert_eq!(Member::from_destination_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn changes_become_member_ops() {
        let fields = ["email", "phone"];
        let alice = member(&[
            (Identifier::Email, &sha256_hex("alice@example.com")),
            (Identifier::Phone, &sha256_hex("16502530000")),
        ]);
        let alice_new_email = member(&[
            (Identifier::Email, &sha256_hex("alice@new.example")),
            (Identifier::Phone, &sha256_hex("16502530000")),
        ]);
        let changes = vec![
            change(ChangeOp::Insert, &[Some("Alice@Example.com"), Some("+1 650 253 0000")], None),
            change(
                ChangeOp::Update,
                &[Some("alice@new.example"), Some("+16502530000")],
                Some(alice.to_destination_id()),
            ),
            change(
                ChangeOp::Update,
                &[Some("alice@example.com"), Some("+16502530000")],
                Some(alice.to_destination_id()),
            ),
            change(ChangeOp::Delete, &[], Some(alice.to_destination_id())),
            change(ChangeOp::Delete, &[], None),
            change(ChangeOp::Insert, &[None, Some(" ")], None),
            change(ChangeOp::Insert, &[Some("secret-value-not-an-email"), None], None),
        ];
        let ops = plan_members(Platform::Meta, &batch(&fields, changes), &NormalizeOptions::default());
        assert_eq!(ops[0], MemberOp::Add(alice.clone()));
        assert_eq!(ops[1], MemberOp::Replace { remove: alice.clone(), add: alice_new_email });
        assert_eq!(ops[2], MemberOp::Add(alice.clone()), "same identifiers: nothing to remove");
        assert_eq!(ops[3], MemberOp::Remove(alice));
        assert!(
            matches!(&ops[4], MemberOp::Reject(m) if m.contains("cannot tell Meta whom to remove")),
            "{:?}",
            ops[4]
        );
        assert!(
            matches!(&ops[5], MemberOp::Reject(m) if m.contains("every identifier is empty (email, phone)")),
            "{:?}",
            ops[5]
        );
        let MemberOp::Reject(message) = &ops[6] else { panic!("{:?}", ops[6]) };
        assert!(message.starts_with("email: ") && !message.contains("secret-value"), "{message}");
    }

    #[test]
    fn blank_identifiers_are_left_out_of_the_member() {
        let ops = plan_members(
            Platform::Meta,
            &batch(&["email", "phone"], vec![change(ChangeOp::Insert, &[Some("a@b.co"), None], None)]),
            &NormalizeOptions::default(),
        );
        assert_eq!(ops, vec![MemberOp::Add(member(&[(Identifier::Email, &sha256_hex("a@b.co"))]))]);
    }

    fn target(mode: SyncMode, fields: &[&str]) -> Target {
        Target {
            sync: "vip".into(),
            mode,
            fields: fields.iter().map(|f| FieldSpec { name: f.to_string(), data_type: DataType::Utf8 }).collect(),
            key_field: None,
            object: Some("123".into()),
            match_field: None,
            associations: Vec::new(),
            planned_changes: 0,
            full_sync: false,
        }
    }

    #[test]
    fn targets_are_checked() {
        assert!(check_target(Platform::Meta, &target(SyncMode::Audience, &["email", "date_of_birth"])).is_ok());
        assert!(check_target(Platform::Meta, &target(SyncMode::Insert, &["email"])).is_ok());
        let error = check_target(Platform::Meta, &target(SyncMode::Upsert, &["email"])).unwrap_err();
        assert_eq!(error.class, ErrorClass::Config);
        assert!(
            error.message.contains("mode: audience") && error.message.contains("not `mode: upsert`"),
            "{}",
            error.message
        );
        let error =
            check_target(Platform::TikTok, &target(SyncMode::Audience, &["email", "first_name", "mail"])).unwrap_err();
        assert!(
            error.message.contains("`first_name`, `mail`") && error.message.contains("email, phone, mobile_ad_id"),
            "{}",
            error.message
        );
        assert!(check_target(Platform::Meta, &target(SyncMode::Audience, &[])).is_err());
    }
}
