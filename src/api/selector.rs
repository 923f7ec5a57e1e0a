//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! spell them and as placements hold them (`metav1.LabelSelector`).
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
//! escapes in values. Like kube-apiserver for custom resources, tmc
//! supports only `metadata.name` and `metadata.namespace` (an object
//! without a namespace has namespace `""`); any other field is refused
//! with `field label not supported: X`, the message kube-apiserver gives
//! for built-in kinds.
//!
//! Left out: the Go parser's quirk that a NUL byte ends the input (here
//! it is an ordinary, invalid character), and the `<nil>` field path in
//! key errors (here `key`).

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
    /// The field selector names a field tmc cannot select on.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
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
        let tokens = lex(s);
        let requirements = Parser { tokens, pos: 0 }
            .parse()
            .map_err(SelectorError::Label)?;
        Ok(Self::sorted(requirements))
    }

    /// Converts a `metav1.LabelSelector` (matchLabels and matchExpressions
    /// with In, NotIn, Exists, DoesNotExist), validating keys and values
    /// as kube-apiserver does. An empty one matches everything.
    pub fn from_metav1(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(new_requirement(key, Operator::In, vec![value.clone()])?);
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
            requirements.push(new_requirement(&expr.key, operator, values)?);
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

// ---- Label selector lexer and parser (apimachinery's, token by token) ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector into tokens, each with its literal text.
fn lex(s: &str) -> Vec<(Tok, &str)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && is_whitespace(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            out.push((Tok::End, ""));
            return out;
        }
        let start = i;
        if is_special(bytes[i]) {
            let two = bytes.get(i..i + 2);
            let tok = match (two, bytes[i]) {
                (Some(b"!="), _) => Tok::NotEquals,
                (Some(b"=="), _) => Tok::DoubleEquals,
                (_, b'=') => Tok::Equals,
                (_, b'!') => Tok::Not,
                (_, b'(') => Tok::OpenPar,
                (_, b')') => Tok::ClosePar,
                (_, b',') => Tok::Comma,
                (_, b'>') => Tok::Gt,
                _ => Tok::Lt,
            };
            i += if matches!(tok, Tok::NotEquals | Tok::DoubleEquals) {
                2
            } else {
                1
            };
            out.push((tok, &s[start..i]));
        } else {
            while i < bytes.len() && !is_special(bytes[i]) && !is_whitespace(bytes[i]) {
                i += 1;
            }
            let word = &s[start..i];
            let tok = match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            out.push((tok, word));
        }
    }
}

/// Where the parser stands: `in` and `notin` are keywords only where an
/// operator may come, and identifiers everywhere else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Operator,
    Values,
}

struct Parser<'a> {
    tokens: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn lookahead(&self, ctx: Context) -> (Tok, &'a str) {
        // The lexer always ends with End; never read past it.
        let (tok, lit) = self.tokens[self.pos.min(self.tokens.len() - 1)];
        match tok {
            Tok::In | Tok::NotIn if ctx == Context::Values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn consume(&mut self, ctx: Context) -> (Tok, &'a str) {
        let item = self.lookahead(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut key) = self.consume(Context::Values);
        let negated = tok == Tok::Not;
        if negated {
            (tok, key) = self.consume(Context::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{key}', expected: identifier"));
        }
        validate_key(key)?;
        let (next, _) = self.lookahead(Context::Values);
        if negated {
            return new_req(key, Operator::DoesNotExist, Vec::new());
        }
        if next == Tok::End || next == Tok::Comma {
            return new_req(key, Operator::Exists, Vec::new());
        }
        let (tok, lit) = self.consume(Context::Operator);
        let operator = match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals | Tok::DoubleEquals => Operator::In,
            Tok::NotEquals => Operator::NotIn,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let values = if matches!(tok, Tok::In | Tok::NotIn) {
            self.value_set()?
        } else {
            vec![self.exact_value()?]
        };
        new_req(key, operator, values)
    }

    /// `( v1, v2, ... )`; empty entries are the empty value.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let mut values = Vec::new();
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Tok::ClosePar => {
                self.consume(Context::Values);
                return Ok(vec![String::new()]);
            }
            Tok::Ident | Tok::Comma => {}
            _ => return Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit.to_string());
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosePar => break,
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    // `(,a`, `a,,b` and `a,)` hold the empty value.
                    let (t2, _) = self.lookahead(Context::Values);
                    if values.is_empty() || t2 == Tok::ClosePar || t2 == Tok::Comma {
                        values.push(String::new());
                    }
                    match t2 {
                        Tok::ClosePar => break,
                        Tok::Comma => {
                            self.consume(Context::Values);
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok != Tok::ClosePar {
            return Err(format!("found '{lit}', expected: ')'"));
        }
        Ok(values)
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing is the empty value.
    fn exact_value(&mut self) -> Result<String, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(String::new());
        }
        match self.consume(Context::Values) {
            (Tok::Ident, lit) => Ok(lit.to_string()),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

fn new_req(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
    new_requirement(key, operator, values).map_err(|e| e.to_string())
}

/// apimachinery's `NewRequirement`: validates key, value count and values.
fn new_requirement(
    key: &str,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    let mut errs = Vec::new();
    if let Err(e) = validate_key(key) {
        errs.push(e);
    }
    let shown = || format!("{values:?}");
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
            "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
            shown()
        )),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
            "values: Invalid value: {}: values set must be empty for exists and does not exist",
            shown()
        )),
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(format!(
                    "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                    shown()
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let problems = label_value_errors(v);
        if !problems.is_empty() {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {v:?}: {}",
                problems.join("; ")
            ));
        }
    }
    match errs.len() {
        0 => {
            values.sort();
            values.dedup();
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        }
        1 => Err(SelectorError::Label(errs.remove(0))),
        _ => Err(SelectorError::Label(format!("[{}]", errs.join(", ")))),
    }
}

// ---- Label key and value validation (apimachinery's validation package) ----

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// `[A-Za-z0-9]` at both ends, `[-A-Za-z0-9_.]` inside.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Dot-separated labels of `[a-z0-9-]`, each starting and ending alphanumeric.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    })
}

fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) if !name.contains('/') => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                         alphanumeric characters, '-' or '.', and must start and end with an \
                         alphanumeric character (e.g. 'example.com', regex used for validation \
                         is '{DNS1123_SUBDOMAIN_FMT}')"
                    ));
                }
            }
            name
        }
        Some(_) => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', \
                 and must start and end with an alphanumeric character (e.g. 'MyName',  or \
                 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}') \
                 with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_name_part(name) {
            errs.push(format!(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
                 start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  \
                 or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}')"
            ));
        }
    }
    errs
}

fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
             'MyValue',  or 'my_value',  or '12345', regex used for validation is \
             '({QUALIFIED_NAME_FMT})?')"
        ));
    }
    errs
}

fn validate_key(key: &str) -> Result<(), String> {
    let errs = qualified_name_errors(key);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("key: Invalid value: {key:?}: {}", errs.join("; ")))
    }
}

// ---- Field selectors ----

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
    fn invalid_label_selectors_say_why() {
        let name_part = "name part must consist of alphanumeric characters";
        let cases: &[(&str, &str)] = &[
            (
                "=web",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            ("app=web,", "found '', expected: identifier after ','"),
            ("app=web,,x", "found ',', expected: identifier after ','"),
            (
                "app web",
                "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "app in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "app in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "app in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "app in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "app==(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            ("app=a=b", "found '=', expected: ',' or 'end of string'"),
            ("!app=b", "found '=', expected: ',' or 'end of string'"),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "a b=c",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("-app=x", name_part),
            ("app-=x", name_part),
            ("a/b/c", "a qualified name must consist of"),
            ("/app", "prefix part must be non-empty"),
            (
                "Example.com/app",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            ("app/", "name part must be non-empty"),
            (
                "app=-web",
                "values[0][app]: Invalid value: \"-web\": a valid label must be an empty string",
            ),
            ("app=web_", "a valid label must be an empty string"),
            ("app=ünï", "a valid label must be an empty string"),
            (
                "n>x",
                "for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            ("n>-1", "a valid label must be an empty string"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(want),
                "{input:?}: {err:?} should contain {want:?}"
            );
        }

        let long_name = "a".repeat(64);
        let err = LabelSelector::parse(&long_name).unwrap_err().to_string();
        assert!(
            err.contains("name part must be no more than 63 characters"),
            "{err}"
        );
        let ok_name = "a".repeat(63);
        assert!(LabelSelector::parse(&format!("{ok_name}={ok_name}")).is_ok());
        let err = LabelSelector::parse(&format!("a={long_name}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        let long_prefix = format!("{}/a", vec!["a".repeat(63); 4].join(".")); // 255 characters
        let err = LabelSelector::parse(&long_prefix).unwrap_err().to_string();
        assert!(
            err.contains("prefix part must be no more than 253 characters"),
            "{err}"
        );
        let ok_prefix = format!(
            "{}/a",
            [
                "a".repeat(61),
                "a".repeat(63),
                "a".repeat(63),
                "a".repeat(63)
            ]
            .join(".")
        );
        assert!(LabelSelector::parse(&ok_prefix).is_ok());
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
        fn parsing_never_panics_and_the_canonical_form_round_trips(
            s in r"[a-c=!(),<> \tin0-9/._-]{0,24}|\PC{0,12}"
        ) {
            if let Ok(sel) = LabelSelector::parse(&s) {
                let again = LabelSelector::parse(&sel.to_string());
                proptest::prop_assert_eq!(again, Ok(sel));
            }
            let _ = FieldSelector::parse(&s);
        }
    }
}
