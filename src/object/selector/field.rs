//! Field selectors, as `fields.ParseSelector` reads them (see the parent
//! module): `metadata.name` and `metadata.namespace` on every kind, and
//! the fields kube-apiserver lets clients select on for some kinds
//! ([`selectable`]: an Event's `involvedObject.*`, which `kubectl
//! describe` asks for, a Secret's `type`, ...), valued as kube values
//! them (defaults included, numbers as decimal text). Any other field is
//! refused in kube-apiserver's words for the kind.

use super::SelectorError;
use serde_json::Value;
use std::borrow::Cow;

/// A field tmc can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace` (`""` for cluster-scoped objects).
    Namespace,
    /// A field of one kind ([`selectable`]), by its label.
    Kind(&'static str),
}

/// The fields beyond `metadata.name` and `metadata.namespace` that
/// kube-apiserver v1.34 selects on for the kinds tmc serves (its
/// `AddFieldLabelConversionFunc`s and `ToSelectableFields`).
pub fn selectable(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("batch", "Job") => &["status.successful"],
        _ => &[],
    }
}

impl Field {
    /// The selector's spelling of the field.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "metadata.name",
            Field::Namespace => "metadata.namespace",
            Field::Kind(label) => label,
        }
    }

    fn get(self, object: &Value) -> Cow<'_, str> {
        let text = |v: &Value| -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let at = |pointer: &str| object.pointer(pointer).and_then(text);
        let value = match self {
            Field::Name => at("/metadata/name"),
            Field::Namespace => at("/metadata/namespace"),
            // An Event's source is its component, else the controller
            // that reported it (kube's `ToSelectableFields`).
            Field::Kind("source") => at("/source/component")
                .filter(|s| !s.is_empty())
                .or_else(|| at("/reportingComponent")),
            // kube-apiserver's defaults, which tmc (storing built-in kinds
            // as sent) does not write.
            Field::Kind("type") if object.get("involvedObject").is_none() => {
                at("/type").or_else(|| Some("Opaque".into()))
            }
            Field::Kind("status.phase") => at("/status/phase").or_else(|| Some("Active".into())),
            Field::Kind("spec.type") => at("/spec/type").or_else(|| Some("ClusterIP".into())),
            Field::Kind("status.successful") => {
                at("/status/succeeded").or_else(|| Some("0".into()))
            }
            Field::Kind(label) => at(&format!("/{}", label.replace('.', "/"))),
        };
        value.map_or(Cow::Borrowed(""), Cow::Owned)
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
    /// Parses the string form (`?fieldSelector=`) for a kind without
    /// fields of its own.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        Self::parse_for(s, "", "")
    }

    /// Parses the string form for objects of `group`/`kind`: its
    /// [`selectable`] fields too.
    pub fn parse_for(s: &str, group: &str, kind: &str) -> Result<Self, SelectorError> {
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
                other => match selectable(group, kind).iter().find(|l| **l == other) {
                    Some(label) => Field::Kind(label),
                    None => {
                        let other = other.to_string();
                        return Err(match (group, kind) {
                            ("batch", "Job") => SelectorError::UnsupportedJobField(other),
                            _ if selectable(group, kind).is_empty() => {
                                SelectorError::UnknownField(other)
                            }
                            _ => SelectorError::UnsupportedField(other),
                        });
                    }
                },
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
            .all(|t| (t.field.get(object) == t.value.as_str()) != t.negated)
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
                r#""spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#,
            ),
            (
                "status.phase!=Running",
                r#""status.phase" is not a known field selector: only "metadata.name", "metadata.namespace""#,
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
                r#"" metadata.name" is not a known field selector: only "metadata.name", "metadata.namespace""#,
            ),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input).to_string();
            assert_eq!(err, *want, "{input}");
        }
    }

    #[test]
    fn kinds_select_on_their_own_fields_as_kube_does() {
        let event = json!({"metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "ScalingReplicaSet", "type": "Normal", "reportingComponent": "deployment-controller"});
        let sel = |s: &str| {
            FieldSelector::parse_for(s, "", "Event").unwrap_or_else(|e| panic!("{s}: {e}"))
        };
        assert!(sel(
            "involvedObject.name=web,involvedObject.kind=Deployment,involvedObject.uid=u1"
        )
        .matches(&event));
        assert!(!sel("involvedObject.name=db").matches(&event));
        assert!(sel("source=deployment-controller,type=Normal,reason!=Failed").matches(&event));
        assert!(sel("involvedObject.fieldPath=").matches(&event));
        let secret = json!({"metadata": {"name": "s"}});
        let typed = FieldSelector::parse_for("type=Opaque", "", "Secret").unwrap();
        assert!(typed.matches(&secret));
        assert!(!typed.matches(&json!({"type": "kubernetes.io/tls"})));
        let jobs = FieldSelector::parse_for("status.successful=2", "batch", "Job").unwrap();
        assert!(jobs.matches(&json!({"status": {"succeeded": 2}})));
        assert!(
            FieldSelector::parse_for("status.phase=Active", "", "Namespace")
                .unwrap()
                .matches(&json!({}))
        );
        assert!(
            FieldSelector::parse_for("spec.type=ClusterIP", "", "Service")
                .unwrap()
                .matches(&json!({"spec": {}}))
        );
        // Another kind's field is refused in kube's words for the kind.
        let refused = |s: &str, group: &str, kind: &str| {
            FieldSelector::parse_for(s, group, kind)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("involvedObject.name=web", "", "ConfigMap"),
            r#""involvedObject.name" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        assert_eq!(
            refused("spec.x=1", "", "Event"),
            "field label not supported: spec.x"
        );
        assert_eq!(
            refused("status.replicas=1", "batch", "Job"),
            r#"field label "status.replicas" not supported for Job"#
        );
        // apps/v1 ReplicaSets have no field of their own (kube converts
        // none), even if their registry lists `status.replicas`.
        assert!(FieldSelector::parse_for("status.replicas=0", "apps", "ReplicaSet").is_err());
        // Values of the wrong type never match, never panic.
        assert!(!sel("reason=x").matches(&json!({"reason": {"a": 1}})));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in r"[a-c=!(),<> \tin0-9/._-]{0,24}|\PC{0,12}") {
            let _ = FieldSelector::parse(&s);
        }
    }
}
