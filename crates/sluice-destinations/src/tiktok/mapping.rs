//! Members → TikTok `/segment/mapping/` rows: one row per user, one entry per `id_schema` value.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::ads::members::Member;
use crate::ads::Identifier;

/// The `id_schema` of each identifier TikTok's segment API takes, in request order.
pub(crate) fn schemas(mobile_schema: &str) -> [(Identifier, String); 3] {
    [
        (Identifier::Email, "EMAIL_SHA256".to_string()),
        (Identifier::Phone, "PHONE_SHA256".to_string()),
        (Identifier::MobileAdId, mobile_schema.to_string()),
    ]
}

/// The identifiers of `member` TikTok can take, or why there are none (without any value).
pub(crate) fn sendable(member: &Member, mobile_schema: &str) -> Result<Member, String> {
    let kept: BTreeMap<Identifier, String> = schemas(mobile_schema)
        .iter()
        .filter_map(|(identifier, _)| member.identifiers.get(identifier).map(|v| (*identifier, v.clone())))
        .collect();
    if kept.is_empty() {
        Err("this member has no identifier TikTok's segment API takes (email, phone or mobile_ad_id)".into())
    } else {
        Ok(Member { identifiers: kept })
    }
}

/// The body of one `/segment/mapping/` request for `members`, all bound for `audience_id`.
pub(crate) fn mapping_body(
    advertiser_id: &str,
    audience_id: &str,
    delete: bool,
    members: &[&Member],
    mobile_schema: &str,
) -> String {
    // Only the schemas some member uses, so no column is empty for everyone.
    let schemas: Vec<(Identifier, String)> = schemas(mobile_schema)
        .into_iter()
        .filter(|(identifier, _)| members.iter().any(|m| m.identifiers.contains_key(identifier)))
        .collect();
    let rows: Vec<Json> = members
        .iter()
        .map(|member| {
            Json::Array(
                schemas
                    .iter()
                    .map(|(identifier, _)| match member.identifiers.get(identifier) {
                        Some(id) => json!({ "id": id, "audience_ids": [audience_id] }),
                        None => json!({}),
                    })
                    .collect(),
            )
        })
        .collect();
    json!({
        "advertiser_ids": [advertiser_id],
        "action": if delete { "delete" } else { "add" },
        "id_schema": schemas.iter().map(|(_, schema)| schema.as_str()).collect::<Vec<_>>(),
        "batch_data": rows,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pairs: &[(Identifier, &str)]) -> Member {
        Member { identifiers: pairs.iter().map(|(i, v)| (*i, v.to_string())).collect() }
    }

    #[test]
    fn rows_follow_the_schema_and_leave_missing_ids_empty() {
        let a = member(&[(Identifier::Email, "e1"), (Identifier::Phone, "p1")]);
        let b = member(&[(Identifier::Email, "e2")]);
        let body: Json = serde_json::from_str(&mapping_body("adv", "aud", false, &[&a, &b], "IDFA_SHA256")).unwrap();
        assert_eq!(body["id_schema"], json!(["EMAIL_SHA256", "PHONE_SHA256"]));
        assert_eq!(body["action"], "add");
        assert_eq!(
            body["batch_data"],
            json!([
                [{ "id": "e1", "audience_ids": ["aud"] }, { "id": "p1", "audience_ids": ["aud"] }],
                [{ "id": "e2", "audience_ids": ["aud"] }, {}]
            ])
        );
    }

    #[test]
    fn only_segment_identifiers_are_kept() {
        let kept = sendable(&member(&[(Identifier::Email, "e"), (Identifier::FirstName, "f")]), "GAID_SHA256").unwrap();
        assert_eq!(kept, member(&[(Identifier::Email, "e")]));
        assert!(sendable(&member(&[(Identifier::FirstName, "f")]), "GAID_SHA256").is_err());
    }
}
