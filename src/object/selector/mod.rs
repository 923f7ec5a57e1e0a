//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! spell them and as placements hold them (`metav1.LabelSelector`): the
//! one implementation the API (list and watch filters) and the
//! controllers (a placement's cluster, namespace and workload selectors)
//! both use.
//!
//! Label selectors follow apimachinery's `labels.Parse` grammar:
//!
//! ```text
//! selector    ::= requirement ("," requirement)*
//! requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//!                           | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! ```
//!
//! `key` alone means the label exists, `!key` that it does not; `notin`
//! and `!=` also match objects without the label; `>` and `<` compare
//! integers. Whitespace (space, tab, CR, LF) separates tokens and is
//! otherwise ignored, so `a in (x, y)` and `a in(x,y)` are one selector.
//! `in` and `notin` are keywords only where an operator is expected, so a
//! label may be called `in`. A value may be empty (`a=`, `a in ()`).
//! Keys are qualified names (`[prefix/]name`: a DNS-1123 subdomain of at
//! most 253 characters, then at most 63 characters of `[A-Za-z0-9-_.]`
//! that start and end alphanumeric); values at most 63 such characters
//! or empty. Errors read as apimachinery's do, e.g. `unable to parse
//! requirement: found '', expected: in, notin, =, ==, !=, gt, lt`.
//!
//! Field selectors follow `fields.ParseSelector`: comma-separated terms
//! `field=value`, `field==value` or `field!=value`, with `\,` `\=` `\\`
//! escapes in values. Every kind selects on `metadata.name` and
//! `metadata.namespace` (an object without a namespace has namespace
//! `""`); some kinds on fields of their own ([`field::selectable`]). Any
//! other field is refused with kube-apiserver's message for that kind:
//! `field label not supported: X` for the kinds with fields of their own,
//! `"X" is not a known field selector: only "metadata.name",
//! "metadata.namespace"` for the others.
//!
//! A `metav1.LabelSelector` ([`LabelSelector::from_metav1`]) is
//! matchLabels AND matchExpressions (In, NotIn, Exists, DoesNotExist), its
//! keys and values validated as kube-apiserver does; an empty one matches
//! everything, an invalid one (an unknown operator, `In` without values,
//! `Exists` with values, a bad key or value) is an error. A controller
//! that meets an invalid stored selector matches nothing with it
//! ([`matches_metav1`]), as the scheduler did with an unknown operator.
//!
//! The grammar is in [`parse`] and field selectors in [`field`].
//!
//! Left out: the Go parser's quirk that a NUL byte ends the input (here
//! it is an ordinary, invalid character), and the `<nil>` field path in
//! key errors (here `key`).

pub mod field;
pub mod parse;

pub use field::{Field, FieldSelector, FieldTerm};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Why a selector was refused. The message is what a client should see
/// in a `400 Bad Request` Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector does not parse or holds an invalid key or value.
    #[error("{0}")]
    Label(String),
    /// The field selector does not parse.
    #[error("{0}")]
    Field(String),
    /// The field selector names a field its kind does not select on
    /// (kinds with fields of their own: Events, Secrets, ...).
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    /// The same, for a Job (kube words it so).
    #[error("field label {0:?} not supported for Job")]
    UnsupportedJobField(String),
    /// The field selector names a field other than `metadata.name` and
    /// `metadata.namespace` of a kind that has none of its own.
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    UnknownField(String),
}

/// How a label requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// The label has one of the values (`in`, `=`, `==`, matchLabels).
    In,
    /// The label is absent or has none of the values (`notin`, `!=`).
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label is an integer greater than the value.
    GreaterThan,
    /// The label is an integer less than the value.
    LessThan,
}

/// One requirement on one label; a selector is their conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The values, sorted and without duplicates (empty for Exists and
    /// DoesNotExist).
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &impl Labels) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.values.join(",");
        match self.operator {
            Operator::In if self.values.len() == 1 => write!(f, "{}={}", self.key, list),
            Operator::NotIn if self.values.len() == 1 => write!(f, "{}!={}", self.key, list),
            Operator::In => write!(f, "{} in ({list})", self.key),
            Operator::NotIn => write!(f, "{} notin ({list})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{list}", self.key),
            Operator::LessThan => write!(f, "{}<{list}", self.key),
        }
    }
}

/// A set of labels a selector can be matched against.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// `metadata.labels` as JSON; a value that is not a string counts as absent.
impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A parsed label selector: all requirements must hold. The empty
/// selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the string form (`?labelSelector=`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let requirements = parse::requirements(s).map_err(SelectorError::Label)?;
        Ok(Self::sorted(requirements))
    }

    /// Converts a `metav1.LabelSelector` (matchLabels and matchExpressions
    /// with In, NotIn, Exists, DoesNotExist), validating keys and values
    /// as kube-apiserver does. An empty one matches everything.
    pub fn from_metav1(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(parse::new_requirement(
                key,
                Operator::In,
                vec![value.clone()],
            )?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Label(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(parse::new_requirement(&expr.key, operator, values)?);
        }
        Ok(Self::sorted(requirements))
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector matches an object's `metadata.labels` (absent
    /// labels are an empty set).
    pub fn matches_object(&self, object: &Value) -> bool {
        match object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
        {
            Some(labels) => self.matches(labels),
            None => self.matches(&BTreeMap::new()),
        }
    }

    /// True when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }
}

/// The canonical string form, which [`LabelSelector::parse`] reads back.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `sel` (absent: everything) as a selector; an invalid one is an error.
pub fn from_optional(sel: Option<&metav1::LabelSelector>) -> Result<LabelSelector, SelectorError> {
    match sel {
        None => Ok(LabelSelector::everything()),
        Some(s) => LabelSelector::from_metav1(s),
    }
}

/// Whether the `metav1.LabelSelector` `sel` (absent: everything) matches
/// `labels`; an invalid selector matches nothing (see the module docs).
pub fn matches_metav1(sel: Option<&metav1::LabelSelector>, labels: &impl Labels) -> bool {
    from_optional(sel).is_ok_and(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn valid_label_selectors_match_as_kubernetes_does() {
        // (selector, canonical form, labels it matches, labels it does not)
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static [(&'static str, &'static str)],
        );
        let cases: &[Case] = &[
            ("", "", &[], &[]),
            ("  ", "", &[("a", "b")], &[]),
            ("app=web", "app=web", &[("app", "web")], &[("app", "db")]),
            ("app==web", "app=web", &[("app", "web"), ("x", "y")], &[]),
            ("app!=web", "app!=web", &[], &[("app", "web")]),
            ("app!=web", "app!=web", &[("app", "db")], &[("app", "web")]),
            ("app", "app", &[("app", "")], &[("other", "x")]),
            ("!app", "!app", &[("other", "x")], &[("app", "")]),
            (
                "env in (prod, staging)",
                "env in (prod,staging)",
                &[("env", "staging")],
                &[("env", "dev")],
            ),
            ("env in(prod)", "env=prod", &[("env", "prod")], &[]),
            (
                "env notin (prod,dev)",
                "env notin (dev,prod)",
                &[("env", "qa")],
                &[("env", "prod")],
            ),
            ("env notin (prod)", "env!=prod", &[], &[("env", "prod")]),
            ("x in ()", "x=", &[("x", "")], &[("x", "a")]),
            ("x=", "x=", &[("x", "")], &[]),
            ("x in (a,,b)", "x in (,a,b)", &[("x", "")], &[("x", "c")]),
            (
                " app = web ,tier in (fe,be), !legacy ",
                "app=web,!legacy,tier in (be,fe)",
                &[("app", "web"), ("tier", "fe")],
                &[("app", "web"), ("tier", "fe"), ("legacy", "1")],
            ),
            ("in in (in)", "in=in", &[("in", "in")], &[("in", "x")]),
            (
                "example.com/app-name_1.x=V.1_a-2",
                "example.com/app-name_1.x=V.1_a-2",
                &[("example.com/app-name_1.x", "V.1_a-2")],
                &[],
            ),
            (
                "replicas>2",
                "replicas>2",
                &[("replicas", "3")],
                &[("replicas", "2")],
            ),
            (
                "replicas<2",
                "replicas<2",
                &[("replicas", "1")],
                &[("replicas", "x")],
            ),
            ("a\tin\n(b)", "a=b", &[("a", "b")], &[]),
        ];
        for (input, canonical, yes, no) in cases {
            let sel = LabelSelector::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(sel.to_string(), *canonical, "{input:?}");
            assert_eq!(LabelSelector::parse(canonical).unwrap(), sel, "{input:?}");
            assert!(sel.matches(&labels(yes)), "{input:?} should match {yes:?}");
            if !no.is_empty() {
                assert!(
                    !sel.matches(&labels(no)),
                    "{input:?} should not match {no:?}"
                );
            }
        }
    }

    #[test]
    fn metav1_selectors_convert_and_match() {
        let sel: metav1::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"team": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "region", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let sel = LabelSelector::from_metav1(&sel).unwrap();
        assert_eq!(
            sel.to_string(),
            "env in (prod,staging),!legacy,region,team=web,tier!=db"
        );
        let good = labels(&[("team", "web"), ("env", "prod"), ("region", "eu")]);
        assert!(sel.matches(&good));
        let mut bad = good.clone();
        bad.insert("legacy".into(), "yes".into());
        assert!(!sel.matches(&bad));
        assert!(LabelSelector::from_metav1(&Default::default())
            .unwrap()
            .is_empty());

        let bad: &[(serde_json::Value, &str)] = &[
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"a b": "c"}}),
                "key: Invalid value: \"a b\"",
            ),
            (
                json!({"matchLabels": {"a": "c d"}}),
                "values[0][a]: Invalid value: \"c d\"",
            ),
        ];
        for (json, want) in bad {
            let sel: metav1::LabelSelector = serde_json::from_value(json.clone()).unwrap();
            let err = LabelSelector::from_metav1(&sel).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{json}: {err:?} should contain {want:?}"
            );
        }
    }

    /// The cases where the scheduler's own matcher and this one used to
    /// disagree (issue 14): the scheduler matched a selector Kubernetes
    /// refuses. Now both are this one: invalid matches nothing.
    #[test]
    fn the_one_selector_of_api_and_controllers() {
        let l = labels(&[("region", "eu"), ("tier", "prod")]);
        // (selector, matches `l`)
        let cases: &[(serde_json::Value, bool)] = &[
            (json!({}), true),
            (json!({"matchLabels": {}}), true),
            (json!({"matchLabels": {"region": "eu"}}), true),
            (json!({"matchLabels": {"region": "us"}}), false),
            (
                json!({"matchLabels": {"region": "eu"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu", "us"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "gone", "operator": "NotIn", "values": ["x"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "region", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "region", "operator": "DoesNotExist"}]}),
                false,
            ),
            // Invalid: an unknown operator (both matched nothing).
            (
                json!({"matchExpressions": [{"key": "region", "operator": "Bogus"}]}),
                false,
            ),
            // Invalid where the scheduler matched: Exists with values.
            (
                json!({"matchExpressions": [{"key": "region", "operator": "Exists", "values": ["x"]}]}),
                false,
            ),
            // DoesNotExist with values, on an absent key.
            (
                json!({"matchExpressions": [{"key": "gone", "operator": "DoesNotExist", "values": ["x"]}]}),
                false,
            ),
            // NotIn without values (the scheduler matched everything).
            (
                json!({"matchExpressions": [{"key": "region", "operator": "NotIn"}]}),
                false,
            ),
            // A key or value Kubernetes refuses, matched literally before.
            (
                json!({"matchLabels": {"region": "eu", "bad key": "x"}}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu", "not valid"]}]}),
                false,
            ),
        ];
        for (json, want) in cases {
            let sel: metav1::LabelSelector = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(matches_metav1(Some(&sel), &l), *want, "{json}");
        }
        assert!(
            matches_metav1(None, &l),
            "an absent selector matches everything"
        );
        assert!(matches_metav1(None, &labels(&[])));
    }

    #[test]
    fn objects_match_through_their_labels() {
        let sel = LabelSelector::parse("app=web,!legacy").unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {"name": "x"}})));
        assert!(!sel.matches_object(&json!({"metadata": {"labels": {"app": 1}}})));
        assert!(LabelSelector::parse("!app")
            .unwrap()
            .matches_object(&json!({})));
        let map: HashMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(sel.matches(&map));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_the_canonical_form_round_trips(
            s in r"[a-c=!(),<> \tin0-9/._-]{0,24}|\PC{0,12}"
        ) {
            if let Ok(sel) = LabelSelector::parse(&s) {
                let again = LabelSelector::parse(&sel.to_string());
                proptest::prop_assert_eq!(again, Ok(sel));
            }
        }
    }
}
