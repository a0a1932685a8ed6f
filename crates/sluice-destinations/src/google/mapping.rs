//! Members → Data Manager API `AudienceMember`s and request bodies.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::ads::members::Member;
use crate::ads::Identifier;

/// What a member is uploaded as. One request carries one kind
/// (`ErrorReason.MULTIPLE_DATA_TYPES_NOT_ALLOWED`), and a Customer Match list takes one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DataKind {
    /// `userData`: emails, phones, addresses.
    User,
    /// `mobileData`: advertising ids.
    Mobile,
    /// `userIdData`: the advertiser's own user id.
    UserId,
}

/// One member, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Uploaded {
    pub(crate) kind: DataKind,
    /// The `AudienceMember` object.
    pub(crate) json: Json,
    /// The identifiers actually sent: what a later remove must name.
    pub(crate) sent: Member,
}

/// The parts of an address, which Google matches only all together
/// (<https://developers.google.com/data-manager/api/reference/rest/v1/UserData>: `givenName`,
/// `familyName`, `regionCode` and `postalCode` are each required).
const ADDRESS: [Identifier; 4] = [Identifier::FirstName, Identifier::LastName, Identifier::Country, Identifier::Zip];

/// The kind of list an identifier goes to.
pub(crate) fn kind_of(identifier: Identifier) -> Option<DataKind> {
    match identifier {
        Identifier::MobileAdId => Some(DataKind::Mobile),
        Identifier::ExternalId => Some(DataKind::UserId),
        other if CONTACT.contains(&other) => Some(DataKind::User),
        _ => None,
    }
}

/// Contact identifiers, uploaded as `userData`.
pub(crate) const CONTACT: [Identifier; 6] = [
    Identifier::Email,
    Identifier::Phone,
    Identifier::FirstName,
    Identifier::LastName,
    Identifier::Country,
    Identifier::Zip,
];

/// Builds the `AudienceMember` for a member's wire values (hashes, and the unhashed country and
/// postal code Google documents), keeping only what Google can match. `Err` says why nothing can
/// be sent, without any value.
pub(crate) fn audience_member(member: &Member) -> Result<Uploaded, String> {
    let values = &member.identifiers;
    let mut identifiers = Vec::new();
    let mut sent: BTreeMap<Identifier, String> = BTreeMap::new();
    if let Some(email) = values.get(&Identifier::Email) {
        identifiers.push(json!({ "emailAddress": email }));
        sent.insert(Identifier::Email, email.clone());
    }
    if let Some(phone) = values.get(&Identifier::Phone) {
        identifiers.push(json!({ "phoneNumber": phone }));
        sent.insert(Identifier::Phone, phone.clone());
    }
    let address: Vec<Option<&String>> = ADDRESS.iter().map(|part| values.get(part)).collect();
    let partial_address = address.iter().any(Option::is_some) && !address.iter().all(Option::is_some);
    if let [Some(given), Some(family), Some(region), Some(postal)] = address[..] {
        identifiers.push(json!({ "address": {
            "givenName": given, "familyName": family, "regionCode": region, "postalCode": postal
        }}));
        for (part, value) in ADDRESS.iter().zip([given, family, region, postal]) {
            sent.insert(*part, value.clone());
        }
    }
    let mobile = values.get(&Identifier::MobileAdId);
    let user_id = values.get(&Identifier::ExternalId);
    let kinds = usize::from(!identifiers.is_empty()) + usize::from(mobile.is_some()) + usize::from(user_id.is_some());
    if kinds > 1 {
        return Err("this member mixes contact information, mobile_ad_id and external_id, but a Customer Match list \
             holds one kind: map only one of them"
            .into());
    }
    if !identifiers.is_empty() {
        return Ok(Uploaded {
            kind: DataKind::User,
            json: json!({ "userData": { "userIdentifiers": identifiers } }),
            sent: Member { identifiers: sent },
        });
    }
    if let Some(id) = mobile {
        sent.insert(Identifier::MobileAdId, id.clone());
        return Ok(Uploaded {
            kind: DataKind::Mobile,
            json: json!({ "mobileData": { "mobileIds": [id] } }),
            sent: Member { identifiers: sent },
        });
    }
    if let Some(id) = user_id {
        sent.insert(Identifier::ExternalId, id.clone());
        return Ok(Uploaded {
            kind: DataKind::UserId,
            json: json!({ "userIdData": { "userId": id } }),
            sent: Member { identifiers: sent },
        });
    }
    if partial_address {
        Err("Google matches an address only with first_name, last_name, country and zip together, and this member \
             has no other identifier"
            .into())
    } else {
        Err("this member has no identifier Google can match (email, phone, a full address, mobile_ad_id or \
             external_id)"
            .into())
    }
}

/// The `destinations` entry for a user list.
pub(crate) fn destination(operating: &Json, login: Option<&Json>, user_list: &str) -> Json {
    let mut destination = json!({ "operatingAccount": operating, "productDestinationId": user_list });
    if let Some(login) = login {
        destination["loginAccount"] = login.clone();
    }
    destination
}

/// The body of `audienceMembers:ingest` or `audienceMembers:remove`.
pub(crate) fn request_body(
    ingest: bool,
    destination: &Json,
    kind: DataKind,
    members: &[&Json],
    consent: Option<&Json>,
    validate_only: bool,
) -> String {
    let mut body = json!({ "destinations": [destination], "audienceMembers": members });
    if kind == DataKind::User {
        // "Required for UserData uploads"; the identity layer hashes to lower-case hex.
        body["encoding"] = json!("HEX");
    }
    if ingest {
        if let Some(consent) = consent {
            body["consent"] = consent.clone();
        }
        // "This must be accepted when ingesting UserData or MobileData"; the destination refuses to
        // run unless the config confirms it.
        body["termsOfService"] = json!({ "customerMatchTermsOfServiceStatus": "ACCEPTED" });
    }
    if validate_only {
        body["validateOnly"] = json!(true);
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pairs: &[(Identifier, &str)]) -> Member {
        Member { identifiers: pairs.iter().map(|(i, v)| (*i, v.to_string())).collect() }
    }

    #[test]
    fn a_partial_address_is_left_out_and_not_remembered() {
        let uploaded = audience_member(&member(&[
            (Identifier::Email, "e"),
            (Identifier::FirstName, "f"),
            (Identifier::Zip, "75001"),
        ]))
        .unwrap();
        assert_eq!(uploaded.kind, DataKind::User);
        assert_eq!(uploaded.json, json!({ "userData": { "userIdentifiers": [{ "emailAddress": "e" }] } }));
        assert_eq!(uploaded.sent, member(&[(Identifier::Email, "e")]));
        let error = audience_member(&member(&[(Identifier::FirstName, "f"), (Identifier::Zip, "75001")])).unwrap_err();
        assert!(error.contains("first_name, last_name, country and zip"), "{error}");
        assert!(!error.contains("75001"));
    }

    #[test]
    fn a_full_address_is_one_identifier_and_mobile_ids_are_their_own_kind() {
        let full = member(&[
            (Identifier::FirstName, "g"),
            (Identifier::LastName, "f"),
            (Identifier::Country, "FR"),
            (Identifier::Zip, "75001"),
        ]);
        let uploaded = audience_member(&full).unwrap();
        assert_eq!(
            uploaded.json,
            json!({ "userData": { "userIdentifiers": [{ "address": {
                "givenName": "g", "familyName": "f", "regionCode": "FR", "postalCode": "75001" } }] } })
        );
        assert_eq!(uploaded.sent, full);
        let mobile = audience_member(&member(&[(Identifier::MobileAdId, "m")])).unwrap();
        assert_eq!(mobile.kind, DataKind::Mobile);
        assert!(audience_member(&member(&[(Identifier::MobileAdId, "m"), (Identifier::Email, "e")])).is_err());
        let user_id = audience_member(&member(&[(Identifier::ExternalId, "crm-42")])).unwrap();
        assert_eq!((user_id.kind, user_id.json), (DataKind::UserId, json!({ "userIdData": { "userId": "crm-42" } })));
    }
}
