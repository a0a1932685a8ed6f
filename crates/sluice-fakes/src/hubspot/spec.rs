//! HubSpot's OpenAPI descriptions, embedded and corrected where they lag HubSpot's documentation.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::openapi::Spec;

const OBJECTS: &str = include_str!("../../specs/hubspot/hubspot_crm_objects.oas.json");
const PROPERTIES: &str = include_str!("../../specs/hubspot/hubspot_crm_properties.oas.json");
const ASSOCIATIONS_V3: &str = include_str!("../../specs/hubspot/hubspot_crm_associations.oas.json");
const ASSOCIATIONS_V4: &str = include_str!("../../specs/hubspot/hubspot_crm_crm_associations.oas.json");

/// Name under which the upsert body schema is added to the objects spec.
pub const UPSERT_SCHEMA: &str = "BatchInputSimplePublicObjectBatchInputUpsert";

/// The four HubSpot descriptions the fake checks requests (and its own answers) against.
#[derive(Debug)]
pub struct HubSpotSpecs {
    /// CRM objects: `/crm/v3/objects/{objectType}/...`, plus the upsert schema defined here.
    pub objects: Spec,
    /// Properties: `/crm/v3/properties/{objectType}`.
    pub properties: Spec,
    /// Associations v3: `/crm/v3/associations/{from}/{to}/...`.
    pub associations_v3: Spec,
    /// Associations v4: `/crm/v4/associations/{from}/{to}/...`.
    pub associations_v4: Spec,
}

/// The embedded, corrected specs, parsed once per process.
pub fn specs() -> &'static HubSpotSpecs {
    static SPECS: OnceLock<HubSpotSpecs> = OnceLock::new();
    SPECS.get_or_init(load)
}

fn parse(name: &str, text: &str) -> Spec {
    // The files are embedded at compile time, so a parse failure is a broken build, not bad input.
    Spec::parse(text).unwrap_or_else(|e| panic!("embedded spec {name} is not valid JSON: {e}"))
}

fn load() -> HubSpotSpecs {
    let mut objects = parse("objects", OBJECTS);
    // The copy (2024-02) lists `associations` as required on each create input. HubSpot's CRM
    // docs ("Create contacts": "You can also add an associations object") and its current
    // reference (SimplePublicObjectBatchInputForCreate: `associations?`) make it optional.
    drop_required(&mut objects, "SimplePublicObjectInputForCreate", &["associations"]);
    // The copy requires `properties` and `propertiesWithHistory` on batch/read; the docs'
    // batch read examples send only `inputs` and `properties`, and both lists are optional.
    drop_required(&mut objects, "BatchReadInputSimplePublicObjectId", &["properties", "propertiesWithHistory"]);
    // Batch upsert postdates the copy. HubSpot's reference ("Create or update a batch of objects
    // by unique property values", POST /crm/v3/objects/{objectType}/batch/upsert) documents
    // `{"inputs": [{"id", "properties", "idProperty"?, "objectWriteTraceId"?}]}`, with `id` and
    // `properties` required: the batch/update body where `id` holds the unique property's value.
    objects.insert_schema(
        UPSERT_SCHEMA,
        json!({
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/SimplePublicObjectBatchInputUpsert"}}
            }
        }),
    );
    objects.insert_schema(
        "SimplePublicObjectBatchInputUpsert",
        json!({
            "type": "object",
            "required": ["id", "properties"],
            "properties": {
                "id": {"type": "string"},
                "idProperty": {"type": "string"},
                "objectWriteTraceId": {"type": "string"},
                "properties": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }),
    );
    HubSpotSpecs {
        objects,
        properties: parse("properties", PROPERTIES),
        associations_v3: parse("associations v3", ASSOCIATIONS_V3),
        associations_v4: parse("associations v4", ASSOCIATIONS_V4),
    }
}

fn drop_required(spec: &mut Spec, schema: &str, names: &[&str]) {
    if let Some(Value::Array(required)) = spec.schema_mut(schema).and_then(|s| s.get_mut("required")) {
        required.retain(|r| !names.iter().any(|n| r == n));
    }
}
