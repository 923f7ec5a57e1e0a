//! Which representation a read answers with, from its `Accept` header, in
//! kube-apiserver's two steps:
//!
//! 1. go-restful's route match: some entry's media type (parameters cut
//!    off) must be one the route produces, or `*/*`; otherwise 406
//!    `406: Not Acceptable\n\nAvailable representations: ...`.
//! 2. apiserver's negotiation (`NegotiateMediaTypeOptions`): the entries
//!    sorted by `q` and then specificity, the first whose type matches a
//!    serializer (JSON, YAML, protobuf, in that order) and whose
//!    parameters that serializer allows wins: `as=Table` with
//!    `g=meta.k8s.io` and `v=v1` or `v1beta1` only over JSON or YAML,
//!    `as=PartialObjectMetadata[List]` over any, `stream=watch` only
//!    over JSON or protobuf. None: 406 `only the following media types
//!    are accepted: ...`; for a watch, an entry of a serializer without
//!    streaming (YAML) is 406 too, naming the streaming types.
//!
//! tmc writes JSON only: a YAML or protobuf answer is sent as JSON (with
//! `Content-Type: application/json`), as tmc has always done; clients
//! decode by the response's content type.

use crate::api::status::{ApiError, ApiResult};

/// The meta.k8s.io version a Table or PartialObjectMetadata is asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaVersion {
    /// `meta.k8s.io/v1`.
    V1,
    /// `meta.k8s.io/v1beta1`.
    V1Beta1,
}

impl MetaVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// What a read answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object or list as stored.
    Object,
    /// A `Table` (`as=Table`).
    Table(MetaVersion),
    /// `PartialObjectMetadata` (a get; each object of a watch).
    Partial(MetaVersion),
    /// `PartialObjectMetadataList` (a list).
    PartialList(MetaVersion),
}

/// The read being negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// A watch.
    Watch,
}

/// The serializers kube-apiserver offers for built-in resources, in its
/// order: (type, subtype, can stream).
const SERIALIZERS: [(&str, &str, bool); 3] = [
    ("application", "json", true),
    ("application", "yaml", false),
    ("application", "vnd.kubernetes.protobuf", true),
];

const MEDIA_TYPES: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";
const STREAM_TYPES: &str =
    "application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch";

/// The most `Accept` entries looked at (a header of thousands of entries
/// is answered from its first ones).
const MAX_CLAUSES: usize = 64;

/// The representation `accept` asks for `read`, or 406 as kube-apiserver
/// answers.
pub fn negotiate(accept: Option<&str>, read: Read) -> ApiResult<Output> {
    let accept = accept.unwrap_or("");
    if !route_accepts(if accept.is_empty() { "*/*" } else { accept }) {
        let available = match read {
            Read::Get => MEDIA_TYPES.to_string(),
            Read::List | Read::Watch => format!("{MEDIA_TYPES}, {STREAM_TYPES}"),
        };
        return Err(ApiError {
            details: Some(serde_json::json!({})),
            ..not_acceptable(format!(
                "406: Not Acceptable\n\nAvailable representations: {available}"
            ))
        });
    }
    if accept.is_empty() {
        return Ok(Output::Object);
    }
    let Some((convert, streams)) = choose(accept) else {
        return Err(not_acceptable(format!(
            "only the following media types are accepted: {MEDIA_TYPES}"
        )));
    };
    if read == Read::Watch && !streams {
        return Err(not_acceptable(format!(
            "only the following media types are accepted: {STREAM_TYPES}"
        )));
    }
    Ok(convert)
}

fn not_acceptable(message: String) -> ApiError {
    ApiError::new(406, "NotAcceptable", message)
}

/// go-restful's `matchesAccept`: whether some entry's media type is one
/// the route produces (JSON, YAML, protobuf) or `*/*`.
fn route_accepts(accept: &str) -> bool {
    accept.split(',').any(|entry| {
        let media = entry.split(';').next().unwrap_or("").trim_matches(' ');
        media == "*/*"
            || SERIALIZERS
                .iter()
                .any(|(t, s, _)| media.split_once('/') == Some((t, s)))
    })
}

/// One entry of an `Accept` header, as goautoneg parses it.
struct Clause<'a> {
    type_: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

fn parse_accept(header: &str) -> Vec<Clause<'_>> {
    let mut out = Vec::new();
    for part in header.split(',').take(MAX_CLAUSES) {
        let part = part.trim_matches(' ');
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("");
        let (type_, subtype) = match media.split_once('/') {
            None if media.trim_matches(' ') == "*" => ("*", "*"),
            None => continue,
            Some((_, s)) if s.contains('/') => continue,
            Some((t, s)) => (t.trim_matches(' '), s.trim_matches(' ')),
        };
        let mut c = Clause {
            type_,
            subtype,
            q: 1.0,
            params: Vec::new(),
        };
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if v.contains('=') {
                continue;
            }
            let k = k.trim_matches(' ');
            if k == "q" {
                // Go keeps 0 for what does not parse.
                c.q = v.parse().unwrap_or(0.0);
            } else {
                c.params.push((k, v.trim_matches(' ')));
            }
        }
        out.push(c);
    }
    // Higher q first, then concrete types before wildcards; stable.
    out.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.type_ == "*").cmp(&(b.type_ == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    out
}

/// The first acceptable (clause, serializer): its conversion and whether
/// the serializer streams.
fn choose(header: &str) -> Option<(Output, bool)> {
    for c in parse_accept(header) {
        for (t, s, streams) in SERIALIZERS {
            let matches = (c.type_ == t && (c.subtype == s || c.subtype == "*"))
                || (c.type_ == "*" && c.subtype == "*");
            if !matches {
                continue;
            }
            if let Some(out) = allowed(&c, s, streams) {
                return Some((out, streams));
            }
        }
    }
    None
}

/// `acceptMediaTypeOptions` with the endpoint's restrictions: the
/// conversion `c` asks for, if serializer `subtype` may give it.
fn allowed(c: &Clause, subtype: &str, streams: bool) -> Option<Output> {
    let (mut as_, mut g, mut v) = (None, None, None);
    for (k, val) in &c.params {
        match *k {
            "as" => as_ = Some(*val),
            "g" => g = Some(*val),
            "v" => v = Some(*val),
            "stream" if !val.is_empty() && (!streams || *val != "watch") => return None,
            // The server version of meta.k8s.io is v1.
            "sv" if !val.is_empty() && *val != "v1" => return None,
            _ => {}
        }
    }
    if as_.is_none() && g.is_none() && v.is_none() {
        return Some(Output::Object);
    }
    let version = match (g, v) {
        (Some("meta.k8s.io"), Some("v1")) => MetaVersion::V1,
        (Some("meta.k8s.io"), Some("v1beta1")) => MetaVersion::V1Beta1,
        _ => return None,
    };
    match as_ {
        Some("Table") if subtype == "json" || subtype == "yaml" => Some(Output::Table(version)),
        Some("PartialObjectMetadata") => Some(Output::Partial(version)),
        Some("PartialObjectMetadataList") => Some(Output::PartialList(version)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

    #[test]
    fn kubectl_and_clients_get_what_they_ask_for() {
        use MetaVersion::*;
        use Output::*;
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let cases: &[(Option<&str>, Read, Output)] = &[
            (None, Read::List, Object),
            (Some(""), Read::Get, Object),
            (Some("*/*"), Read::Get, Object),
            (Some("application/json"), Read::Watch, Object),
            (Some("application/yaml"), Read::Get, Object),
            (Some("application/vnd.kubernetes.protobuf, */*"), Read::List, Object),
            (Some(kubectl), Read::List, Table(V1)),
            (Some(kubectl), Read::Watch, Table(V1)),
            (Some(TABLE), Read::Get, Table(V1)),
            (Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io"), Read::List, Table(V1Beta1)),
            // The first acceptable alternative wins: v2 is skipped.
            (Some("application/json;as=Table;v=v2;g=meta.k8s.io, application/json;as=Table;v=v1beta1;g=meta.k8s.io"), Read::List, Table(V1Beta1)),
            // Table is never protobuf: the JSON fallback answers.
            (Some("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"), Read::List, Object),
            // q orders the entries.
            (Some("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5, application/json"), Read::List, Object),
            (Some("application/json;q=0.1, application/json;as=Table;v=v1;g=meta.k8s.io"), Read::List, Table(V1)),
            (Some("*/*;as=Table;v=v1;g=meta.k8s.io"), Read::List, Table(V1)),
            (Some("application/yaml;as=Table;v=v1;g=meta.k8s.io"), Read::Get, Table(V1)),
            (Some("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"), Read::List, PartialList(V1)),
            (Some("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io"), Read::Get, Partial(V1Beta1)),
            (Some("application/json;stream=watch"), Read::Watch, Object),
        ];
        for (accept, read, want) in cases {
            assert_eq!(negotiate(*accept, *read), Ok(*want), "{accept:?} {read:?}");
        }
    }

    #[test]
    fn what_cannot_be_served_is_406_with_kube_apiservers_message() {
        let only = "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf";
        let route = "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, application/vnd.kubernetes.protobuf";
        let cases: &[(&str, Read, String)] = &[
            ("text/html", Read::Get, route.to_string()),
            ("text/html", Read::List, format!("{route}, {STREAM_TYPES}")),
            (
                "application/*;as=Table;v=v1;g=meta.k8s.io",
                Read::List,
                format!("{route}, {STREAM_TYPES}"),
            ),
            (",,;;==", Read::Get, route.to_string()),
            (
                "application/json;as=Table;v=v2;g=meta.k8s.io",
                Read::List,
                only.to_string(),
            ),
            (
                "application/json;as=Table;g=meta.k8s.io",
                Read::List,
                only.to_string(),
            ),
            (
                "application/json;as=Foo;v=v1;g=meta.k8s.io",
                Read::Get,
                only.to_string(),
            ),
            (
                "application/json;g=meta.k8s.io;v=v1",
                Read::Get,
                only.to_string(),
            ),
            (
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
                Read::List,
                only.to_string(),
            ),
            (
                "application/json;stream=other",
                Read::Watch,
                only.to_string(),
            ),
            (
                "application/yaml",
                Read::Watch,
                format!("only the following media types are accepted: {STREAM_TYPES}"),
            ),
        ];
        for (accept, read, want) in cases {
            let e = negotiate(Some(accept), *read).unwrap_err();
            assert_eq!((e.code, e.reason), (406, "NotAcceptable"), "{accept}");
            assert_eq!(&e.message, want, "{accept}");
        }
    }

    #[test]
    fn hostile_headers_are_bounded() {
        let long = format!("{}{TABLE}", "text/html;q=1,".repeat(10_000));
        // Past the clauses looked at: not acceptable, and quickly.
        assert!(negotiate(Some(&long), Read::List).is_err());
        let odd = "application/json;as;v==;q=abc;=;g=meta.k8s.io, a/b/c, *, /";
        assert_eq!(negotiate(Some(odd), Read::Get), Ok(Output::Object));
    }
}
