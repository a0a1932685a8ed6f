//! `${VAR}` and `${VAR:-default}` environment interpolation in string values.

/// Replaces `${VAR}` and `${VAR:-default}` in `text` using `lookup`; `$${` stands for a
/// literal `${`. Returns the name of the first variable that is unset and has no default,
/// or a description of a malformed reference.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {text:?}: expected `${{NAME}}` or `${{NAME:-default}}`"))?;
            let reference = &tail[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{reference}}}` is not a valid reference: expected an environment variable name of letters, digits and `_`"
                ));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                    "environment variable {name} is not set (set it, or write ${{{name}:-default}} to give a default)"
                ))
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "db.local".to_string())
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        assert_eq!(interpolate("pg://${HOST}:5432", &env).unwrap(), "pg://db.local:5432");
        assert_eq!(interpolate("${PORT:-5432}", &env).unwrap(), "5432");
        assert_eq!(interpolate("${HOST:-x}", &env).unwrap(), "db.local");
        assert_eq!(interpolate("cost $5 $${HOST}", &env).unwrap(), "cost $5 ${HOST}");
    }

    #[test]
    fn missing_variable_is_named() {
        let error = interpolate("${WAREHOUSE_URL}", &env).unwrap_err();
        assert!(error.contains("WAREHOUSE_URL is not set"), "{error}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(interpolate("${HOST", &env).unwrap_err().contains("unclosed"));
        assert!(interpolate("${a b}", &env).unwrap_err().contains("not a valid reference"));
    }
}
