//! Query parameters of object requests, parsed once per request into the
//! typed options of its verb (metav1's `GetOptions`, `ListOptions`,
//! `CreateOptions`/`UpdateOptions`/`PatchOptions`, `DeleteOptions`, and a
//! watch's `ListOptions`), before the handler runs.
//!
//! A value that is not valid is refused with 400 BadRequest and the same
//! message as kube-apiserver's (or as tmc always gave). Two values are
//! kept as sent and refused only where they matter, because that is when
//! today's answers refuse them: a `resourceVersion` that is not a number
//! ([`ResourceVersion::Invalid`]; a list with `continue`, or with an
//! unknown `resourceVersionMatch`, says what is wrong with those first),
//! and `force` ([`WriteOptions::force`]: only a server-side apply reads it).
//!
//! `propagationPolicy` (and the deprecated `orphanDependents`), of the
//! body or the query, is the garbage collector's ([`DeleteOptions::policy`]).
//!
//! Left out: `gracePeriodSeconds` is accepted and not acted on (no
//! graceful deletion);
//! `fieldValidation` is checked and has no effect (no schemas of built-in
//! kinds).

use super::Caller;
use crate::api::status::{ApiError, ApiResult};
use crate::object::selector::{FieldSelector, LabelSelector};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The query of a request as sent (a parameter given twice: its last
/// value), and the group and kind it addresses (which fields a field
/// selector may name depends on the kind).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>, (&'static str, &'static str));

impl Query {
    /// Parses `a=1&b=2` (none: an empty query).
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
            ("", ""),
        )
    }

    /// The query of a request for objects of `group`/`kind`.
    pub fn for_kind(mut self, group: &'static str, kind: &'static str) -> Query {
        self.1 = (group, kind);
        self
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `watch=true` (or `1`): a GET of a collection is a watch.
    pub fn watch(&self) -> bool {
        matches!(self.get("watch"), Some("true" | "1"))
    }

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|s| !s.is_empty())
    }

    fn bool(&self, name: &str) -> ApiResult<bool> {
        match self.get(name) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid value for {name}: {v:?} (want true or false)"
            ))),
        }
    }

    fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid dry run value {v:?}: only \"All\" is supported"
            ))),
        }
    }

    fn selectors(&self) -> ApiResult<(LabelSelector, FieldSelector)> {
        let labels = match self.get("labelSelector") {
            Some(s) => LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => LabelSelector::everything(),
        };
        let (group, kind) = self.1;
        let fields = FieldSelector::parse_for(self.get("fieldSelector").unwrap_or(""), group, kind)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((labels, fields))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Query {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Query(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ("", ""),
        )
    }
}

/// A `resourceVersion` (of the query, a body's metadata or preconditions)
/// as a revision; 400 if it is not a number.
pub fn parse_rv(s: &str) -> ApiResult<u64> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

/// `resourceVersion` of a read or watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceVersion {
    /// None (or empty): the latest state, at a linearizable read point.
    Latest,
    /// `0`: any state (this replica's).
    Any,
    /// `N`.
    At(u64),
    /// Not a number: refused (400) where it is used.
    Invalid(String),
}

impl ResourceVersion {
    fn parse(s: Option<&str>) -> Self {
        match s {
            None | Some("") => ResourceVersion::Latest,
            Some("0") => ResourceVersion::Any,
            Some(n) => match n.parse::<u64>() {
                Ok(v) => ResourceVersion::At(v),
                Err(_) => ResourceVersion::Invalid(n.to_string()),
            },
        }
    }

    /// The revision N of `resourceVersion=N`; 400 for one that is not a
    /// number.
    pub fn revision(&self) -> ApiResult<Option<u64>> {
        match self {
            ResourceVersion::At(n) => Ok(Some(*n)),
            ResourceVersion::Invalid(s) => parse_rv(s).map(Some),
            ResourceVersion::Latest | ResourceVersion::Any => Ok(None),
        }
    }
}

/// `resourceVersionMatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// None (or empty).
    Unset,
    /// `Exact`.
    Exact,
    /// `NotOlderThan`.
    NotOlderThan,
    /// Anything else: refused (400) by a list that reads it.
    Other(String),
}

impl ResourceVersionMatch {
    fn parse(s: Option<&str>) -> Self {
        match s {
            None | Some("") => ResourceVersionMatch::Unset,
            Some("Exact") => ResourceVersionMatch::Exact,
            Some("NotOlderThan") => ResourceVersionMatch::NotOlderThan,
            Some(m) => ResourceVersionMatch::Other(m.to_string()),
        }
    }
}

/// Options of a GET of one object.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// The read point.
    pub resource_version: ResourceVersion,
}

impl GetOptions {
    /// Parses the query.
    pub fn parse(q: &Query) -> GetOptions {
        GetOptions {
            resource_version: ResourceVersion::parse(q.get("resourceVersion")),
        }
    }
}

/// Options of a LIST (and the selection of a deletecollection).
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0: none; a negative one is none too).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: ResourceVersion,
    /// `resourceVersionMatch`.
    pub resource_version_match: ResourceVersionMatch,
}

impl ListOptions {
    /// Parses the query: the selectors, then `limit`.
    pub fn parse(q: &Query) -> ApiResult<ListOptions> {
        let (labels, fields) = q.selectors()?;
        let limit = match q.get("limit") {
            None | Some("") => 0,
            Some(l) => {
                let n: i64 = l
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?;
                n.max(0) as usize
            }
        };
        Ok(ListOptions {
            labels,
            fields,
            limit,
            continue_token: q.non_empty("continue").map(str::to_string),
            resource_version: ResourceVersion::parse(q.get("resourceVersion")),
            resource_version_match: ResourceVersionMatch::parse(q.get("resourceVersionMatch")),
        })
    }
}

/// `fieldValidation` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// `Ignore`.
    Ignore,
    /// `Warn`.
    Warn,
    /// `Strict`.
    Strict,
}

/// Options of a create, update or patch.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `fieldValidation` (none: not given); accepted, no effect.
    pub field_validation: Option<FieldValidation>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`, checked (1 to 128 printable characters).
    pub field_manager: Option<String>,
    /// `force`: `Err` holds why the value is not a boolean.
    force: Result<bool, String>,
}

impl WriteOptions {
    /// Parses the query: `fieldValidation`, `dryRun`, `fieldManager`.
    pub fn parse(q: &Query) -> ApiResult<WriteOptions> {
        let field_validation = match q.get("fieldValidation") {
            None | Some("") => None,
            Some("Ignore") => Some(FieldValidation::Ignore),
            Some("Warn") => Some(FieldValidation::Warn),
            Some("Strict") => Some(FieldValidation::Strict),
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be Ignore, Warn or Strict, not {v:?}"
                )))
            }
        };
        let dry_run = q.dry_run()?;
        let field_manager = match q.get("fieldManager") {
            Some(m) if m.is_empty() || m.len() > 128 || m.chars().any(|c| c.is_control()) => {
                return Err(ApiError::bad_request(
                    "fieldManager must be 1 to 128 printable characters",
                ))
            }
            m => m.map(str::to_string),
        };
        Ok(WriteOptions {
            field_validation,
            dry_run,
            field_manager,
            force: q.bool("force").map_err(|e| e.message),
        })
    }

    /// The field manager of the write: `fieldManager`, else the client's
    /// User-Agent up to its first `/` (kube-apiserver's default); an apply
    /// (`required`) must name one.
    pub fn manager(&self, caller: &Caller, required: bool) -> ApiResult<String> {
        if let Some(m) = &self.field_manager {
            return Ok(m.clone());
        }
        if required {
            return Err(ApiError::bad_request(
                "PATCH with apply requires the fieldManager parameter",
            ));
        }
        let ua = caller.user_agent.split('/').next().unwrap_or("").trim();
        Ok(if ua.is_empty() {
            "unknown".into()
        } else {
            ua.chars().take(128).collect()
        })
    }

    /// `force` of a server-side apply (other writes do not read it).
    pub fn force(&self) -> ApiResult<bool> {
        self.force.clone().map_err(ApiError::bad_request)
    }
}

/// Preconditions of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's uid must be this.
    pub uid: Option<String>,
    /// The object's resourceVersion must be this.
    pub resource_version: Option<u64>,
}

/// Options of a delete or deletecollection: the query and the
/// DeleteOptions body, where client-go (kubectl, the Python client) puts
/// them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun=All` in the query, or `dryRun: ["All"]` in the body.
    pub dry_run: bool,
    /// `preconditions`.
    pub preconditions: Preconditions,
    /// `propagationPolicy` of the body, else of the query (checked).
    pub propagation_policy: Option<String>,
    /// The deprecated `orphanDependents` of the body, else of the query.
    pub orphan_dependents: Option<bool>,
    /// `gracePeriodSeconds` of the body, else of the query, if a number
    /// (deletion is immediate once finalizers are gone).
    pub grace_period_seconds: Option<i64>,
}

impl DeleteOptions {
    /// Parses the query and the body (none, or a JSON object).
    pub fn parse(q: &Query, body: Option<&Value>) -> ApiResult<DeleteOptions> {
        let opts = body.unwrap_or(&Value::Null);
        if !opts.is_null() && !opts.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        let mut dry_run = q.dry_run()?;
        match opts.get("dryRun") {
            None | Some(Value::Null) => {}
            Some(Value::Array(vs)) => {
                for v in vs {
                    match v.as_str() {
                        Some("All") => dry_run = true,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid dry run value {v}: only \"All\" is supported"
                            )))
                        }
                    }
                }
            }
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "DeleteOptions.dryRun must be a list, not {v}"
                )))
            }
        }
        let uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let resource_version = match opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(s) => Some(parse_rv(s)?),
            None => None,
        };
        let propagation_policy = opts
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| q.get("propagationPolicy").map(str::to_string));
        let orphan_dependents = opts
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| q.get("orphanDependents")?.parse().ok());
        if let Some(pol) = &propagation_policy {
            if !["Orphan", "Background", "Foreground"].contains(&pol.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown propagationPolicy {pol:?}"
                )));
            }
        }
        let grace_period_seconds = opts
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| q.get("gracePeriodSeconds")?.parse().ok());
        Ok(DeleteOptions {
            dry_run,
            preconditions: Preconditions {
                uid,
                resource_version,
            },
            propagation_policy,
            orphan_dependents,
            grace_period_seconds,
        })
    }

    /// The garbage collector's policy the client asked for:
    /// `propagationPolicy`, else `orphanDependents`; `None` when it gave
    /// neither (Background then, kube's default for the kinds served,
    /// unless the object carries an `orphan` or `foregroundDeletion`
    /// finalizer).
    pub fn policy(&self) -> Option<crate::owners::Policy> {
        use crate::owners::Policy;
        match (self.propagation_policy.as_deref(), self.orphan_dependents) {
            (Some(p), _) => Policy::parse(p),
            (None, Some(true)) => Some(Policy::Orphan),
            (None, Some(false)) => Some(Policy::Background),
            (None, None) => None,
        }
    }
}

/// The watch timeout when the client gives none, or 0 (kube-apiserver
/// picks 30-60 minutes).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// The longest watch: a larger `timeoutSeconds` is clamped to it (the
/// client re-watches, as after any timeout).
pub const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Options of a watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (none: not given).
    pub send_initial_events: Option<bool>,
    /// From `timeoutSeconds`: any integer is safe (clamped to
    /// [`MAX_WATCH_TIMEOUT`]); 0 or none is [`WATCH_TIMEOUT`].
    pub timeout: Duration,
    /// `resourceVersion`.
    pub resource_version: ResourceVersion,
}

impl WatchOptions {
    /// Parses the query: the selectors, `allowWatchBookmarks`,
    /// `sendInitialEvents`, `timeoutSeconds` (a negative or non-numeric
    /// one is refused), then `sendInitialEvents=true` needs
    /// `resourceVersionMatch=NotOlderThan`.
    pub fn parse(q: &Query) -> ApiResult<WatchOptions> {
        let (labels, fields) = q.selectors()?;
        let bookmarks = q.bool("allowWatchBookmarks")?;
        let send_initial_events = match q.get("sendInitialEvents") {
            None | Some("") => None,
            Some(_) => Some(q.bool("sendInitialEvents")?),
        };
        let timeout = match q.get("timeoutSeconds") {
            None | Some("") => WATCH_TIMEOUT,
            Some(t) => {
                let n: u64 = t.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid timeoutSeconds {t:?}: a non-negative number of seconds"
                    ))
                })?;
                match n {
                    0 => WATCH_TIMEOUT,
                    n => Duration::from_secs(n).min(MAX_WATCH_TIMEOUT),
                }
            }
        };
        if send_initial_events == Some(true)
            && ResourceVersionMatch::parse(q.get("resourceVersionMatch"))
                != ResourceVersionMatch::NotOlderThan
        {
            return Err(ApiError::bad_request(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
            ));
        }
        Ok(WatchOptions {
            labels,
            fields,
            bookmarks,
            send_initial_events,
            timeout,
            resource_version: ResourceVersion::parse(q.get("resourceVersion")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs.iter().copied().collect()
    }

    fn bad<T: std::fmt::Debug>(r: ApiResult<T>) -> String {
        let e = r.expect_err("a 400");
        assert_eq!((e.code, e.reason), (400, "BadRequest"), "{e:?}");
        e.message
    }

    #[test]
    fn the_query_keeps_the_last_value_and_knows_a_watch() {
        let query = Query::parse(Some("limit=1&limit=2&watch=1&x=a%20b"));
        assert_eq!(query.get("limit"), Some("2"));
        assert_eq!(query.get("x"), Some("a b"));
        assert!(query.watch());
        assert!(!Query::parse(Some("watch=yes")).watch());
        assert!(!Query::parse(None).watch());
    }

    #[test]
    fn resource_versions_are_typed_and_a_bad_one_is_refused_where_used() {
        let rv = |s| ResourceVersion::parse(Some(s));
        assert_eq!(ResourceVersion::parse(None), ResourceVersion::Latest);
        assert_eq!(rv(""), ResourceVersion::Latest);
        assert_eq!(rv("0"), ResourceVersion::Any);
        assert_eq!(rv("00"), ResourceVersion::At(0));
        assert_eq!(rv("12"), ResourceVersion::At(12));
        assert_eq!(rv("12").revision().unwrap(), Some(12));
        assert_eq!(bad(rv("x1").revision()), "invalid resource version: \"x1\"");
    }

    #[test]
    fn list_options_refuse_what_kube_apiserver_refuses() {
        let l = ListOptions::parse(&q(&[
            ("limit", "-3"),
            ("continue", ""),
            ("resourceVersionMatch", "Exact"),
        ]))
        .unwrap();
        assert_eq!(l.limit, 0);
        assert_eq!(l.continue_token, None);
        assert_eq!(l.resource_version_match, ResourceVersionMatch::Exact);
        assert_eq!(
            bad(ListOptions::parse(&q(&[("limit", "ten")]))),
            "invalid limit: \"ten\""
        );
        assert!(bad(ListOptions::parse(&q(&[("labelSelector", "a in (")])))
            .starts_with("unable to parse requirement: "));
        // The label selector is looked at before the limit.
        assert!(bad(ListOptions::parse(&q(&[
            ("labelSelector", "a in ("),
            ("limit", "x")
        ])))
        .starts_with("unable to parse requirement"));
    }

    #[test]
    fn write_options_check_each_parameter() {
        let caller = Caller {
            user_agent: "kubectl/v1.34.0 (linux/amd64)".into(),
            ..Caller::default()
        };
        let w = WriteOptions::parse(&q(&[("dryRun", "All"), ("force", "maybe")])).unwrap();
        assert!(w.dry_run);
        assert_eq!(w.manager(&caller, false).unwrap(), "kubectl");
        assert_eq!(
            bad(w.manager(&caller, true)),
            "PATCH with apply requires the fieldManager parameter"
        );
        assert_eq!(
            bad(w.force()),
            "invalid value for force: \"maybe\" (want true or false)"
        );
        assert_eq!(
            bad(WriteOptions::parse(&q(&[("dryRun", "true")]))),
            "invalid dry run value \"true\": only \"All\" is supported"
        );
        assert_eq!(
            bad(WriteOptions::parse(&q(&[("fieldValidation", "strict")]))),
            "fieldValidation must be Ignore, Warn or Strict, not \"strict\""
        );
        assert_eq!(
            bad(WriteOptions::parse(&q(&[("fieldManager", "")]))),
            "fieldManager must be 1 to 128 printable characters"
        );
        let w = WriteOptions::parse(&q(&[("fieldManager", "me"), ("force", "1")])).unwrap();
        assert_eq!(w.manager(&caller, true).unwrap(), "me");
        assert!(w.force().unwrap());
        let anonymous = Caller::default();
        assert_eq!(
            WriteOptions::parse(&Query::default())
                .unwrap()
                .manager(&anonymous, false)
                .unwrap(),
            "unknown"
        );
    }

    #[test]
    fn the_propagation_policy_comes_from_the_body_then_the_query() {
        use crate::owners::Policy;
        let none = Query::default();
        let p = |q: &Query, b: Option<serde_json::Value>| {
            DeleteOptions::parse(q, b.as_ref()).unwrap().policy()
        };
        assert_eq!(p(&none, None), None);
        assert_eq!(
            p(&q(&[("propagationPolicy", "Foreground")]), None),
            Some(Policy::Foreground)
        );
        assert_eq!(
            p(
                &q(&[("propagationPolicy", "Foreground")]),
                Some(serde_json::json!({"propagationPolicy": "Orphan"}))
            ),
            Some(Policy::Orphan)
        );
        assert_eq!(
            p(&q(&[("orphanDependents", "true")]), None),
            Some(Policy::Orphan)
        );
        assert_eq!(
            p(&none, Some(serde_json::json!({"orphanDependents": false}))),
            Some(Policy::Background)
        );
        assert_eq!(
            bad(DeleteOptions::parse(
                &q(&[("propagationPolicy", "Now")]),
                None
            )),
            "unknown propagationPolicy \"Now\""
        );
    }

    #[test]
    fn delete_options_come_from_the_query_and_the_body() {
        let none = Query::default();
        let d = DeleteOptions::parse(
            &none,
            Some(
                &serde_json::json!({"dryRun": ["All"], "propagationPolicy": "Background",
                "preconditions": {"uid": "u1", "resourceVersion": "7"}, "gracePeriodSeconds": 0}),
            ),
        )
        .unwrap();
        assert!(d.dry_run);
        assert_eq!(
            d.preconditions,
            Preconditions {
                uid: Some("u1".into()),
                resource_version: Some(7)
            }
        );
        assert_eq!(d.grace_period_seconds, Some(0));
        assert!(
            DeleteOptions::parse(&q(&[("dryRun", "All")]), None)
                .unwrap()
                .dry_run
        );
        assert_eq!(
            bad(DeleteOptions::parse(&none, Some(&serde_json::json!([])))),
            "DeleteOptions must be a JSON object"
        );
        assert_eq!(
            bad(DeleteOptions::parse(
                &none,
                Some(&serde_json::json!({"dryRun": "All"}))
            )),
            "DeleteOptions.dryRun must be a list, not \"All\""
        );
        assert_eq!(
            bad(DeleteOptions::parse(
                &none,
                Some(&serde_json::json!({"dryRun": ["Some"]}))
            )),
            "invalid dry run value \"Some\": only \"All\" is supported"
        );
        assert_eq!(
            bad(DeleteOptions::parse(
                &none,
                Some(&serde_json::json!({"propagationPolicy": "Now"}))
            )),
            "unknown propagationPolicy \"Now\""
        );
        assert_eq!(
            bad(DeleteOptions::parse(
                &none,
                Some(&serde_json::json!({"preconditions": {"resourceVersion": "x"}}))
            )),
            "invalid resource version: \"x\""
        );
    }

    #[test]
    fn watch_options_clamp_the_timeout_and_check_initial_events() {
        let w = WatchOptions::parse(&q(&[
            ("timeoutSeconds", "999999999"),
            ("allowWatchBookmarks", "true"),
        ]))
        .unwrap();
        assert_eq!(w.timeout, MAX_WATCH_TIMEOUT);
        assert!(w.bookmarks);
        assert_eq!(w.send_initial_events, None);
        let w = WatchOptions::parse(&q(&[("timeoutSeconds", "0")])).unwrap();
        assert_eq!(w.timeout, WATCH_TIMEOUT);
        assert_eq!(
            bad(WatchOptions::parse(&q(&[("timeoutSeconds", "-1")]))),
            "invalid timeoutSeconds \"-1\": a non-negative number of seconds"
        );
        assert_eq!(
            bad(WatchOptions::parse(&q(&[("sendInitialEvents", "true")]))),
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan"
        );
        assert_eq!(
            bad(WatchOptions::parse(&q(&[("sendInitialEvents", "yes")]))),
            "invalid value for sendInitialEvents: \"yes\" (want true or false)"
        );
        let w = WatchOptions::parse(&q(&[
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("resourceVersion", "5"),
        ]))
        .unwrap();
        assert_eq!(w.send_initial_events, Some(true));
        assert_eq!(w.resource_version, ResourceVersion::At(5));
    }
}
