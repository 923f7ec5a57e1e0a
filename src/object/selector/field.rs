//! Field selectors, as `fields.ParseSelector` reads them (see the parent
//! module): `metadata.name` and `metadata.namespace` only.

use super::SelectorError;
use serde_json::Value;

/// A field tmc can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace` (`""` for cluster-scoped objects).
    Namespace,
}

impl Field {
    /// The selector's spelling of the field.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "metadata.name",
            Field::Namespace => "metadata.namespace",
        }
    }

    fn get(self, object: &Value) -> &str {
        let pointer = match self {
            Field::Name => "/metadata/name",
            Field::Namespace => "/metadata/namespace",
        };
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field.
    pub field: Field,
    /// True for `!=`, false for `=` and `==`.
    pub negated: bool,
    /// The unescaped value.
    pub value: String,
}

/// A parsed field selector: all terms must hold. The empty selector
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the string form (`?fieldSelector=`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in split_terms(s) {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, negated, rhs)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape(rhs)?;
            let field = match lhs {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => return Err(SelectorError::UnsupportedField(other.to_string())),
            };
            terms.push(FieldTerm {
                field,
                negated,
                value,
            });
        }
        Ok(Self { terms })
    }

    /// Whether every term holds for `object`.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (t.field.get(object) == t.value) != t.negated)
    }

    /// True when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, in the order given.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The value `field` must equal, if a term requires one (e.g.
    /// `metadata.name=x`, which lets a list or watch read one key).
    pub fn requires_exact_match(&self, field: Field) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

/// Splits on commas not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first `!=`, `==` or `=`: (field, negated, raw value).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], true, v));
        }
        if let Some(v) = rest.strip_prefix("==") {
            return Some((&term[..i], false, v));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((&term[..i], false, v));
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError::Field(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    )))
                }
                None => {
                    return Err(SelectorError::Field(
                        "invalid field selector: invalid escape sequence: \\".to_string(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {c:?}"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_selectors_match_name_and_namespace() {
        let obj = json!({"metadata": {"name": "web", "namespace": "prod"}});
        let cluster_scoped = json!({"metadata": {"name": "web"}});
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("metadata.name=web", true, true),
            ("metadata.name==web", true, true),
            ("metadata.name!=web", false, false),
            ("metadata.name=db", false, false),
            ("metadata.namespace=prod", true, false),
            ("metadata.namespace!=prod", false, true),
            ("metadata.namespace=", false, true),
            ("metadata.name=web,metadata.namespace=prod", true, false),
            ("metadata.name=web,,", true, true),
        ];
        for (input, on_obj, on_cluster_scoped) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.matches(&obj), *on_obj, "{input} on {obj}");
            assert_eq!(sel.matches(&cluster_scoped), *on_cluster_scoped, "{input}");
        }
        let sel = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(sel.requires_exact_match(Field::Name), Some(r"a,b=c\d"));
        assert_eq!(sel.requires_exact_match(Field::Namespace), None);
        assert!(sel.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
    }

    #[test]
    fn invalid_field_selectors_say_why() {
        let cases: &[(&str, &str)] = &[
            (
                "spec.replicas=1",
                "field label not supported: spec.replicas",
            ),
            (
                "status.phase!=Running",
                "field label not supported: status.phase",
            ),
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            (
                "metadata.name=a,b",
                "invalid selector: 'metadata.name=a,b'; can't understand 'b'",
            ),
            (
                r"metadata.name=a\x",
                r"invalid field selector: invalid escape sequence: \x",
            ),
            (
                "metadata.name=a\\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "metadata.name=a=b",
                "invalid field selector: unescaped character in value: '='",
            ),
            (
                " metadata.name=a",
                "field label not supported:  metadata.name",
            ),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input).to_string();
            assert_eq!(err, *want, "{input}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in r"[a-c=!(),<> \tin0-9/._-]{0,24}|\PC{0,12}") {
            let _ = FieldSelector::parse(&s);
        }
    }
}
