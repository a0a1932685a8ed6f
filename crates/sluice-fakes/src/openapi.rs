//! A small OpenAPI 3.0 schema validator, enough for the request bodies the fakes check.
//!
//! Supported: `$ref` to `#/components/schemas/*`, `type` (object, array, string, integer, number,
//! boolean), `required`, `properties`, `additionalProperties` (boolean or schema), `items`, `enum`
//! and `nullable`. `format` and every other keyword are ignored, as OpenAPI allows. Following
//! OpenAPI 3.0, keywords next to a `$ref` are ignored.

use serde_json::{Map, Value};

/// Nesting beyond this is treated as a `$ref` cycle rather than followed forever.
const MAX_DEPTH: usize = 64;

/// One reason a value does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// JSON pointer-like location of the offending value, e.g. `/inputs/0/properties/email`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// A parsed OpenAPI document whose component schemas can validate JSON values.
#[derive(Debug, Clone)]
pub struct Spec {
    doc: Value,
}

impl Spec {
    /// Parses an OpenAPI document in JSON.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        Ok(Self { doc: serde_json::from_str(text)? })
    }

    /// The named schema under `components.schemas`.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    /// Mutable access to a named schema, to correct a copy that lags the vendor's documentation.
    pub fn schema_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.doc.get_mut("components")?.get_mut("schemas")?.get_mut(name)
    }

    /// Adds (or replaces) a named schema, for operations the copy of the spec lacks.
    pub fn insert_schema(&mut self, name: &str, schema: Value) {
        let root = ensure_object(&mut self.doc);
        let components = ensure_object(root.entry("components").or_insert_with(|| Value::Object(Map::new())));
        let schemas = ensure_object(components.entry("schemas").or_insert_with(|| Value::Object(Map::new())));
        schemas.insert(name.to_owned(), schema);
    }

    /// Validates `value` against the named component schema; an unknown name is itself an issue.
    pub fn validate(&self, schema_name: &str, value: &Value) -> Vec<Issue> {
        match self.schema(schema_name) {
            Some(schema) => self.validate_against(schema, value),
            None => vec![Issue { path: String::new(), message: format!("unknown schema {schema_name}") }],
        }
    }

    /// Validates `value` against an inline schema whose `$ref`s point into this document.
    pub fn validate_against(&self, schema: &Value, value: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        self.check(schema, value, &mut String::new(), 0, &mut issues);
        issues
    }

    fn resolve<'a>(&'a self, reference: &str) -> Option<&'a Value> {
        self.schema(reference.strip_prefix("#/components/schemas/")?)
    }

    fn check(&self, schema: &Value, value: &Value, path: &mut String, depth: usize, issues: &mut Vec<Issue>) {
        let issue = |issues: &mut Vec<Issue>, path: &str, message: String| {
            issues.push(Issue { path: path.to_owned(), message })
        };
        if depth > MAX_DEPTH {
            issue(issues, path, "schema nesting too deep (reference cycle?)".to_owned());
            return;
        }
        let Some(schema) = schema.as_object() else {
            // `true`/`{}`-like schemas accept anything; a `false` schema accepts nothing.
            if schema == &Value::Bool(false) {
                issue(issues, path, "no value is allowed here".to_owned());
            }
            return;
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.check(target, value, path, depth + 1, issues),
                None => issue(issues, path, format!("unresolvable $ref {reference}")),
            }
            return;
        }
        if value.is_null() {
            let nullable = schema.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            if !nullable && schema.contains_key("type") {
                issue(issues, path, "null is not allowed".to_owned());
            }
            return;
        }
        if let Some(expected) = schema.get("type").and_then(Value::as_str) {
            if !has_type(value, expected) {
                issue(issues, path, format!("expected {expected}, found {}", type_name(value)));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                issue(issues, path, format!("{value} is not one of {}", Value::Array(allowed.clone())));
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, path, depth, issues);
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{index}"));
                self.check(items, item, path, depth + 1, issues);
                path.truncate(len);
            }
        }
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &mut String,
        depth: usize,
        issues: &mut Vec<Issue>,
    ) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    issues.push(Issue { path: path.clone(), message: format!("missing required property {name}") });
                }
            }
        }
        let declared = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (name, member) in object {
            let len = path.len();
            path.push('/');
            path.push_str(&escape_pointer(name));
            match (declared.and_then(|d| d.get(name)), additional) {
                (Some(sub), _) => self.check(sub, member, path, depth + 1, issues),
                (None, Some(Value::Bool(false))) => {
                    issues.push(Issue { path: path.clone(), message: "property is not allowed".to_owned() })
                }
                (None, Some(sub @ Value::Object(_))) => self.check(sub, member, path, depth + 1, issues),
                (None, _) => {}
            }
            path.truncate(len);
        }
    }
}

fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        // Unreachable: the value was made an object just above.
        _ => unreachable!("value was just made an object"),
    }
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        // With arbitrary_precision, an integer is a number without fraction or exponent.
        "integer" => value.as_number().is_some_and(|n| n.is_i64() || n.is_u64() || is_integral(&n.to_string())),
        _ => true,
    }
}

fn is_integral(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The JSON type name of a value, as used in validation messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        let doc = json!({"components": {"schemas": {
            "Batch": {"type": "object", "required": ["inputs"], "properties": {
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Input"}}}},
            "Input": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "n": {"type": "integer", "nullable": true},
                "kind": {"type": "string", "enum": ["A", "B"]},
                "props": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Closed": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "boolean"}}}
        }}});
        Spec { doc }
    }

    #[test]
    fn accepts_a_matching_value() {
        let value = json!({"inputs": [{"id": "1", "n": null, "kind": "A", "props": {"x": "y"}}]});
        assert_eq!(spec().validate("Batch", &value), vec![]);
    }

    #[test]
    fn reports_each_mismatch_with_its_path() {
        let value = json!({"inputs": [{"n": 1.5, "kind": "C", "props": {"x": 3}}, 7]});
        let issues: Vec<String> = spec().validate("Batch", &value).iter().map(ToString::to_string).collect();
        assert_eq!(
            issues,
            vec![
                "/inputs/0: missing required property id",
                "/inputs/0/n: expected integer, found number",
                "/inputs/0/kind: \"C\" is not one of [\"A\",\"B\"]",
                "/inputs/0/props/x: expected string, found number",
                "/inputs/1: expected object, found number",
            ]
        );
    }

    #[test]
    fn rejects_wrong_top_level_type_and_closed_objects() {
        assert_eq!(spec().validate("Batch", &json!({"inputs": {}})).len(), 1);
        assert_eq!(spec().validate("Closed", &json!({"a": true, "b": 1})).len(), 1);
        assert_eq!(spec().validate("Missing", &json!({})).len(), 1);
    }
}
