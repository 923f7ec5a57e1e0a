//! The JSONPath of printer columns (`additionalPrinterColumns[].jsonPath`,
//! evaluated by kube-apiserver with client-go's `util/jsonpath`, missing
//! keys allowed): the subset CRDs use.
//!
//! Supported: `.a.b` (a `\.` inside a name is a dot of the key), `['a.b']`
//! and `["a"]`, `[0]` and `[-1]`, `[*]` and `.*`, and filters
//! `[?(@.type=="Ready")]` with `==` or `!=` against a string, number or
//! boolean, or `[?(@.x)]` (the field exists). A path is at most
//! [`MAX_PATH`] bytes.
//!
//! Left out (a parse error, as a CRD using them would be refused):
//! recursive descent `..`, slices `[1:3]`, unions `[a,b]`, `range`/`end`
//! templates and filter operators other than `==`, `!=` and existence.

use serde_json::Value;

/// The longest path parsed (kube-apiserver's CRD validation bounds the
/// whole CRD; this bounds each path).
pub const MAX_PATH: usize = 4096;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A map key.
    Key(String),
    /// A list index (negative: from the end).
    Index(i64),
    /// Every element of a list or value of a map.
    All,
    /// The elements of a list that pass.
    Filter(Filter),
}

/// `[?(@.path op literal)]`, or `[?(@.path)]` with no comparison.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<Step>,
    cmp: Option<(bool, Value)>,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `path` (with or without the `{...}` around it).
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        if path.len() > MAX_PATH {
            return Err(format!("a JSONPath is at most {MAX_PATH} bytes"));
        }
        let inner = path
            .trim()
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(path.trim());
        let mut p = Parser {
            s: inner.as_bytes(),
            i: 0,
        };
        let steps = p.steps(false)?;
        if p.i != p.s.len() {
            return Err(format!("unexpected {:?} in {path:?}", p.rest()));
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches in `v`, in order (none when a key is
    /// missing).
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.steps {
            cur = apply(step, cur);
            if cur.is_empty() {
                break;
            }
        }
        cur
    }

    /// The first value the path reaches, as printer columns use.
    pub fn first<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.find(v).into_iter().next()
    }
}

fn apply<'a>(step: &Step, cur: Vec<&'a Value>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in cur {
        match (step, v) {
            (Step::Key(k), Value::Object(m)) => out.extend(m.get(k)),
            (Step::Index(i), Value::Array(a)) => {
                let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
                let i = if *i < 0 { len + i } else { *i };
                if let Some(x) = usize::try_from(i).ok().and_then(|i| a.get(i)) {
                    out.push(x);
                }
            }
            (Step::All, Value::Array(a)) => out.extend(a.iter()),
            (Step::All, Value::Object(m)) => out.extend(m.values()),
            (Step::Filter(f), Value::Array(a)) => out.extend(a.iter().filter(|x| f.passes(x))),
            _ => {}
        }
    }
    out
}

impl Filter {
    fn passes(&self, x: &Value) -> bool {
        let mut cur = vec![x];
        for step in &self.path {
            cur = apply(step, cur);
        }
        match (&self.cmp, cur.first()) {
            (None, found) => found.is_some(),
            (Some((eq, want)), Some(got)) => (same(got, want)) == *eq,
            (Some((eq, _)), None) => !*eq,
        }
    }
}

/// Equality of a found value and a literal (numbers by value).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// What is left to read.
    fn tail(&self) -> &[u8] {
        self.s.get(self.i..).unwrap_or_default()
    }

    /// What was read since `start`.
    fn since(&self, start: usize) -> &[u8] {
        self.s.get(start..self.i).unwrap_or_default()
    }

    fn rest(&self) -> String {
        String::from_utf8_lossy(self.tail()).into_owned()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Steps until the end, or (inside a filter) until what cannot
    /// continue a path.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        // A leading `$` names the root.
        self.eat(b'$');
        while let Some(b) = self.peek() {
            match b {
                b'.' => {
                    self.i += 1;
                    if self.peek() == Some(b'.') {
                        return Err("recursive descent (..) is not supported".into());
                    }
                    if self.eat(b'*') {
                        steps.push(Step::All);
                    } else {
                        let key = self.name()?;
                        if !key.is_empty() {
                            steps.push(Step::Key(key));
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    steps.push(self.bracket()?);
                }
                _ if in_filter => break,
                _ => return Err(format!("unexpected {:?}", self.rest())),
            }
        }
        Ok(steps)
    }

    /// A dotted name, up to the next unescaped `.` or `[` (or, in a
    /// filter, an operator or `)`).
    fn name(&mut self) -> Result<String, String> {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            match b {
                b'\\' if self.s.get(self.i + 1) == Some(&b'.') => {
                    out.push(b'.');
                    self.i += 2;
                }
                b'.' | b'[' | b'=' | b'!' | b')' | b' ' | b'<' | b'>' => break,
                _ => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    fn bracket(&mut self) -> Result<Step, String> {
        let step = match self.peek() {
            Some(b'\'') | Some(b'"') => Step::Key(self.quoted()?),
            Some(b'*') => {
                self.i += 1;
                Step::All
            }
            Some(b'?') => {
                self.i += 1;
                Step::Filter(self.filter()?)
            }
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(self.since(start)).unwrap_or("");
                Step::Index(
                    n.parse()
                        .map_err(|_| format!("unsupported subscript [{}", self.rest()))?,
                )
            }
        };
        if !self.eat(b']') {
            return Err(format!("expected ] before {:?}", self.rest()));
        }
        Ok(step)
    }

    fn quoted(&mut self) -> Result<String, String> {
        let Some(q) = self.peek() else {
            return Err("unterminated quote".into());
        };
        self.i += 1;
        let start = self.i;
        while let Some(b) = self.peek() {
            if b == q {
                let s = String::from_utf8(self.since(start).to_vec()).map_err(|e| e.to_string())?;
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err("unterminated quote".into())
    }

    fn skip_spaces(&mut self) {
        while self.eat(b' ') {}
    }

    fn filter(&mut self) -> Result<Filter, String> {
        if !self.eat(b'(') || !self.eat(b'@') {
            return Err("a filter is [?(@...)]".into());
        }
        let path = self.steps(true)?;
        self.skip_spaces();
        let cmp = if self.eat(b')') {
            return Ok(Filter { path, cmp: None });
        } else if self.tail().starts_with(b"==") {
            self.i += 2;
            true
        } else if self.tail().starts_with(b"!=") {
            self.i += 2;
            false
        } else {
            return Err(format!("unsupported filter operator at {:?}", self.rest()));
        };
        self.skip_spaces();
        let literal = match self.peek() {
            Some(b'\'') | Some(b'"') => Value::String(self.quoted()?),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if b != b')' && b != b' ') {
                    self.i += 1;
                }
                let raw = std::str::from_utf8(self.since(start)).unwrap_or("");
                match raw {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    n => serde_json::from_str::<serde_json::Number>(n)
                        .map(Value::Number)
                        .map_err(|_| format!("unsupported filter literal {n:?}"))?,
                }
            }
        };
        self.skip_spaces();
        if !self.eat(b')') {
            return Err(format!("expected ) before {:?}", self.rest()));
        }
        Ok(Filter {
            path,
            cmp: Some((cmp, literal)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(path: &str, v: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap().first(v).cloned()
    }

    #[test]
    fn paths_printer_columns_use() {
        let v = json!({
            "metadata": {"labels": {"region": "eu", "app.kubernetes.io/name": "web"}},
            "spec": {"type": {"name": "universal"}, "URL": "https://x", "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [
                {"type": "Scheduled", "status": "True"},
                {"type": "Ready", "status": "False", "observedGeneration": 3}
            ]}
        });
        assert_eq!(first(".spec.type.name", &v), Some(json!("universal")));
        assert_eq!(first("{.spec.URL}", &v), Some(json!("https://x")));
        assert_eq!(first(".metadata.labels['region']", &v), Some(json!("eu")));
        assert_eq!(first(".metadata.labels[\"region\"]", &v), Some(json!("eu")));
        assert_eq!(
            first(".metadata.labels.app\\.kubernetes\\.io/name", &v),
            Some(json!("web"))
        );
        assert_eq!(first(".spec.ports[1].port", &v), Some(json!(443)));
        assert_eq!(first(".spec.ports[-1].port", &v), Some(json!(443)));
        assert_eq!(first(".spec.ports[*].port", &v), Some(json!(80)));
        assert_eq!(
            first(".status.conditions[?(@.type==\"Ready\")].status", &v),
            Some(json!("False"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type == 'Ready')].status", &v),
            Some(json!("False"))
        );
        assert_eq!(
            first(".status.conditions[?(@.observedGeneration==3)].type", &v),
            Some(json!("Ready"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type!=\"Ready\")].type", &v),
            Some(json!("Scheduled"))
        );
        assert_eq!(
            first(".status.conditions[?(@.observedGeneration)].type", &v),
            Some(json!("Ready"))
        );
        assert_eq!(first(".spec.missing.deeper", &v), None);
        assert_eq!(first(".spec.ports[7]", &v), None);
        assert_eq!(first(".spec.type.name.more", &v), None);
    }

    #[test]
    fn what_is_left_out_is_refused() {
        for bad in [
            "..name",
            ".a[1:2]",
            ".a[?(@.x > 1)]",
            ".a[",
            ".a['x",
            ".a[b]",
            "a b",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert!(JsonPath::parse(&".a".repeat(MAX_PATH)).is_err());
    }

    proptest::proptest! {
        // A CRD's printer column paths are a tenant's text.
        #[test]
        fn parsing_and_evaluating_never_panic(s in r"[.\[\]?()@=!'\x22a-c0-9* <>$\\-]{0,32}|\PC{0,16}") {
            if let Ok(p) = JsonPath::parse(&s) {
                let _ = p.first(&json!({"a": [{"b": 1}, {"c": "x"}], "b": {"c": [1, 2]}}));
            }
        }
    }
}
