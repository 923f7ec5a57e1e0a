//! The grammar of label selectors (apimachinery's `labels.Parse`, token
//! by token) and the validation of their keys and values (apimachinery's
//! validation package); see the parent module for the grammar.

use super::{Operator, Requirement, SelectorError};

/// The requirements of the string form `s`, or apimachinery's message.
pub(super) fn requirements(s: &str) -> Result<Vec<Requirement>, String> {
    Parser {
        tokens: lex(s),
        pos: 0,
    }
    .parse()
}

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
pub(super) fn new_requirement(
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

#[cfg(test)]
mod tests {
    use super::super::LabelSelector;

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
}
