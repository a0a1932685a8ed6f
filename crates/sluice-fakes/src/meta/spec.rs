//! Meta's SDK-codegen description of the CustomAudience node, embedded: edge parameters (name,
//! type, required) and the node's field names.

use std::sync::OnceLock;

use serde_json::Value;

const CUSTOM_AUDIENCE: &str = include_str!("../../specs/meta/CustomAudience.json");

/// One parameter of an edge, as the spec lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name, e.g. `payload`.
    pub name: String,
    /// The spec's type name: `Object`, `string`, `bool`, `list<string>`…
    pub kind: String,
    /// Whether the spec marks it required.
    pub required: bool,
}

/// One API of the node: `POST users`, `GET #get`…
#[derive(Debug, Clone)]
pub struct Api {
    /// HTTP method.
    pub method: String,
    /// Edge name (`users`), or `#get`/`#update`/`#delete` for the node itself.
    pub endpoint: String,
    /// Parameters.
    pub params: Vec<Param>,
}

/// The parsed description.
#[derive(Debug)]
pub struct CustomAudienceSpec {
    /// Edges and node operations.
    pub apis: Vec<Api>,
    /// Field names of the node (`id`, `name`, `subtype`, `operation_status`…).
    pub fields: Vec<String>,
}

impl CustomAudienceSpec {
    /// The API for a method and an edge (or `#get` for the node), if the spec has it.
    pub fn api(&self, method: &str, endpoint: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.method.eq_ignore_ascii_case(method) && a.endpoint == endpoint)
    }

    /// Whether the node has this field.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f == name)
    }
}

/// The embedded spec, parsed once per process.
pub fn custom_audience() -> &'static CustomAudienceSpec {
    static SPEC: OnceLock<CustomAudienceSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        // Embedded at compile time: a parse failure is a broken build, not bad input.
        let doc: Value = serde_json::from_str(CUSTOM_AUDIENCE).expect("embedded CustomAudience.json is JSON");
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let apis = doc["apis"]
            .as_array()
            .expect("CustomAudience.json has apis")
            .iter()
            .map(|api| Api {
                method: text(api, "method"),
                endpoint: api.get("endpoint").or_else(|| api.get("name")).and_then(Value::as_str).unwrap_or("").into(),
                params: api["params"]
                    .as_array()
                    .map(|params| {
                        params
                            .iter()
                            .map(|p| Param {
                                name: text(p, "name"),
                                kind: text(p, "type"),
                                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let fields =
            doc["fields"].as_array().expect("CustomAudience.json has fields").iter().map(|f| text(f, "name")).collect();
        CustomAudienceSpec { apis, fields }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_edges_are_described() {
        let spec = custom_audience();
        for (method, edge) in [("POST", "users"), ("DELETE", "users"), ("POST", "usersreplace")] {
            let api = spec.api(method, edge).unwrap_or_else(|| panic!("{method} {edge}"));
            let names: Vec<&str> = api.params.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["namespace", "payload", "session"], "{method} {edge}");
            assert!(api.params.iter().any(|p| p.name == "payload" && p.kind == "Object"));
        }
        let replace = spec.api("POST", "usersreplace").unwrap();
        assert!(replace.params.iter().filter(|p| p.required).count() == 2);
        for field in ["id", "name", "subtype", "operation_status", "approximate_count_lower_bound", "account_id"] {
            assert!(spec.has_field(field), "{field}");
        }
    }
}
