//! `${VAR}` and `${VAR:-default}` interpolation over the raw config text.
//!
//! Interpolation runs on the text before YAML parsing so that every line keeps
//! its number: a value that came from the environment is reported at the line
//! that referenced it. `$$` writes a literal `$` (as in Alertmanager's and
//! Docker Compose's configs). This module never reads files.

use super::ConfigIssue;

/// Replaces every reference with its value. Every unset variable without a
/// default is reported, not just the first.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigIssue>> {
    let mut out = String::with_capacity(text.len());
    let mut issues = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(end) = body.find('}') else {
                issues.push(ConfigIssue::at_line(
                    lineno + 1,
                    "unterminated ${...} reference".to_string(),
                ));
                out.push_str(&rest[pos..]);
                rest = "";
                continue;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if !valid_name(name) {
                issues.push(ConfigIssue::at_line(
                    lineno + 1,
                    format!("invalid environment variable name {name:?} in ${{{expr}}}"),
                ));
            } else {
                match (lookup(name), default) {
                    // An empty value counts as unset for `:-`, as in POSIX shells.
                    (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => issues.push(ConfigIssue::at_line(
                        lineno + 1,
                        format!("environment variable {name} is not set and has no default (write ${{{name}:-default}})"),
                    )),
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let got = interpolate("a: ${HOST}:${PORT:-5432}\nb: ${EMPTY:-x}\n", &env).unwrap();
        assert_eq!(got, "a: db.local:5432\nb: x\n");
    }

    #[test]
    fn dollar_dollar_is_literal_and_bare_dollar_kept() {
        let got = interpolate("re: '^$$'\nv: $HOST\n", &env).unwrap();
        assert_eq!(got, "re: '^$'\nv: $HOST\n");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line() {
        let errs = interpolate("a: ${A}\nb: ok\nc: ${C} ${1BAD}\n", &env).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(1), Some(3), Some(3)]);
        assert!(errs[0].message.contains("A is not set"));
        assert!(errs[2]
            .message
            .contains("invalid environment variable name"));
    }

    #[test]
    fn unterminated_reference_is_an_error() {
        let errs = interpolate("a: ${HOST\n", &env).unwrap_err();
        assert_eq!(errs[0].line, Some(1));
    }
}
