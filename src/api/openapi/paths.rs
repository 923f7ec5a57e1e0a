//! The paths and operations of the OpenAPI documents: for each resource
//! its collection (list, create, delete collection), its items (read,
//! replace, patch, delete), its status subresource when it has one, and,
//! for a namespaced resource, the list across all namespaces. Operation
//! ids, tags and the query parameters of each operation follow
//! kube-apiserver's; every write carries `fieldValidation` (what kubectl
//! looks for, see the parent module), and the patch content types leave
//! strategic merge patch out on purpose.
//!
//! The query parameter table ([`QUERY_PARAMS`] and the lists below it) is
//! data: names, types and kube-apiserver's descriptions.
//!
//! Left out: watch paths (`/watch/...`), `?watch` streaming content types,
//! scale subresources.

use super::{def_name, gvk, Dialect, META};
use crate::api::resources::ResourceInfo;
use serde_json::{json, Map, Value};

/// Query parameters: name, type, description.
const QUERY_PARAMS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server."),
    ("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: All."),
    ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields (metadata.name, metadata.namespace). Defaults to everything."),
    ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default), Strict."),
    ("force", "boolean", "Force is going to \"force\" Apply requests: it re-acquires conflicting fields owned by other people. Must be unset for non-apply patch requests."),
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    ("pretty", "string", "If 'true', then the output is pretty printed."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`: the stream begins with synthetic events for the current state."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];

const LIST_QUERY: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_QUERY: &[&str] = &["dryRun", "gracePeriodSeconds", "propagationPolicy"];
const DELETE_COLLECTION_QUERY: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

/// Patch content types advertised; strategic merge patch is left out on
/// purpose (see the module docs).
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

fn param(d: Dialect, name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": location, "description": description});
    if location == "path" {
        p["required"] = json!(true);
    }
    match d {
        Dialect::V2 => {
            p["type"] = json!(ty);
            p["uniqueItems"] = json!(true);
        }
        Dialect::V3 => p["schema"] = json!({"type": ty, "uniqueItems": true}),
    }
    p
}

fn query(d: Dialect, name: &str) -> Value {
    let (name, ty, description) = QUERY_PARAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .copied()
        .unwrap_or((name, "string", ""));
    param(d, name, "query", ty, description)
}

/// What an operation takes as its body.
#[derive(Clone, Copy)]
enum Body {
    None,
    /// The object itself (create, replace).
    Object,
    /// A patch.
    Patch,
    /// DeleteOptions.
    Delete,
}

/// One operation on a path.
struct Op {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    query: &'static [&'static str],
    body: Body,
    /// (status code, description, response definition).
    responses: Vec<(&'static str, &'static str, String)>,
}

fn render(op: &Op, r: &ResourceInfo, d: Dialect) -> Value {
    let mut params: Vec<Value> = Vec::new();
    let body = match op.body {
        Body::None => None,
        Body::Object => Some((def_name(r), vec!["*/*"])),
        Body::Patch => Some((format!("{META}.Patch"), PATCH_TYPES.to_vec())),
        Body::Delete => Some((format!("{META}.DeleteOptions"), vec!["*/*"])),
    };
    let mut out = json!({
        "description": op.description,
        "operationId": op.id,
        "tags": [tag(r)],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": gvk(r.group, r.version, r.kind),
    });
    let mut responses = Map::new();
    for (code, description, schema) in &op.responses {
        let response = match d {
            Dialect::V2 => json!({"description": description, "schema": d.reference(schema)}),
            Dialect::V3 => json!({
                "description": description,
                "content": {"application/json": {"schema": d.reference(schema)}},
            }),
        };
        responses.insert(code.to_string(), response);
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out["responses"] = Value::Object(responses);
    match d {
        Dialect::V2 => {
            let consumes = body.as_ref().map_or(vec!["*/*"], |(_, c)| c.clone());
            if let Some((schema, _)) = &body {
                params.push(json!({
                    "name": "body", "in": "body", "required": true,
                    "schema": d.reference(schema),
                }));
            }
            out["consumes"] = json!(consumes);
            out["produces"] = json!(["application/json"]);
            out["schemes"] = json!(["https"]);
        }
        Dialect::V3 => {
            if let Some((schema, types)) = &body {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": d.reference(schema)})))
                    .collect();
                out["requestBody"] = json!({"content": content, "required": true});
            }
        }
    }
    params.extend(op.query.iter().map(|q| query(d, q)));
    out["parameters"] = json!(params);
    out
}

/// `AppsV1`, `CoreV1`, `RbacAuthorizationV1`, `TmcKcpIoV1alpha1`: the
/// middle of an operation id, as kube-apiserver forms it.
fn id_infix(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.strip_suffix(".k8s.io").unwrap_or(r.group)
    };
    let mut out: String = group.split('.').map(capitalize).collect();
    out.push_str(&capitalize(r.version));
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn tag(r: &ResourceInfo) -> String {
    let mut t = id_infix(r);
    if let Some(first) = t.get(..1) {
        t = first.to_lowercase() + &t[1..];
    }
    t
}

/// The `paths` object of a document of `resources`.
pub(super) fn paths(resources: &[&ResourceInfo], d: Dialect) -> Value {
    let mut out = Map::new();
    for r in resources {
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let (scope, ns_word) = if r.namespaced {
            (format!("{base}/namespaces/{{namespace}}"), "Namespaced")
        } else {
            (base.clone(), "")
        };
        let infix = id_infix(r);
        let kind = r.kind;
        let object = def_name(r);
        let list = format!("{}List", def_name(r));
        let status = format!("{META}.Status");
        let ok = |s: &String| vec![("200", "OK", s.clone())];
        let created = |s: &String| {
            vec![
                ("200", "OK", s.clone()),
                ("201", "Created", s.clone()),
                ("202", "Accepted", s.clone()),
            ]
        };
        let ns_param = || {
            param(
                d,
                "namespace",
                "path",
                "string",
                "object name and auth scope, such as for teams and projects",
            )
        };
        let name_param =
            |what: &str| param(d, "name", "path", "string", &format!("name of the {what}"));
        let path_params = |name: Option<&str>| {
            let mut p = Vec::new();
            if let Some(what) = name {
                p.push(name_param(what));
            }
            if r.namespaced {
                p.push(ns_param());
            }
            p.push(query(d, "pretty"));
            Value::Array(p)
        };

        // Collection: list, create, delete collection.
        let collection = [
            Op {
                method: "get",
                action: "list",
                id: format!("list{infix}{ns_word}{kind}"),
                description: format!("list or watch objects of kind {kind}"),
                query: LIST_QUERY,
                body: Body::None,
                responses: ok(&list),
            },
            Op {
                method: "post",
                action: "post",
                id: format!("create{infix}{ns_word}{kind}"),
                description: format!("create a {kind}"),
                query: WRITE_QUERY,
                body: Body::Object,
                responses: created(&object),
            },
            Op {
                method: "delete",
                action: "deletecollection",
                id: format!("delete{infix}Collection{ns_word}{kind}"),
                description: format!("delete collection of {kind}"),
                query: DELETE_COLLECTION_QUERY,
                body: Body::Delete,
                responses: ok(&status),
            },
        ];
        // Read, replace and patch of an item or of its status
        // (`suffix` "Status", `of` "status of ").
        let read_replace_patch = |suffix: &str, of: &str| {
            let written = || {
                vec![
                    ("200", "OK", object.clone()),
                    ("201", "Created", object.clone()),
                ]
            };
            [
                Op {
                    method: "get",
                    action: "get",
                    id: format!("read{infix}{ns_word}{kind}{suffix}"),
                    description: format!("read {of}the specified {kind}"),
                    query: &[],
                    body: Body::None,
                    responses: ok(&object),
                },
                Op {
                    method: "put",
                    action: "put",
                    id: format!("replace{infix}{ns_word}{kind}{suffix}"),
                    description: format!("replace {of}the specified {kind}"),
                    query: WRITE_QUERY,
                    body: Body::Object,
                    responses: written(),
                },
                Op {
                    method: "patch",
                    action: "patch",
                    id: format!("patch{infix}{ns_word}{kind}{suffix}"),
                    description: format!("partially update {of}the specified {kind}"),
                    query: PATCH_QUERY,
                    body: Body::Patch,
                    responses: written(),
                },
            ]
        };
        let [read, replace, patch] = read_replace_patch("", "");
        let item = [
            read,
            replace,
            patch,
            Op {
                method: "delete",
                action: "delete",
                id: format!("delete{infix}{ns_word}{kind}"),
                description: format!("delete a {kind}"),
                query: DELETE_QUERY,
                body: Body::Delete,
                responses: vec![
                    ("200", "OK", status.clone()),
                    ("202", "Accepted", status.clone()),
                ],
            },
        ];
        let status_ops = read_replace_patch("Status", "status of ");

        let mut add = |path: String, params: Value, ops: &[Op]| {
            let mut item = json!({ "parameters": params });
            for op in ops {
                item[op.method] = render(op, r, d);
            }
            out.insert(path, item);
        };
        let plural = r.plural;
        add(format!("{scope}/{plural}"), path_params(None), &collection);
        add(
            format!("{scope}/{plural}/{{name}}"),
            path_params(Some(kind)),
            &item,
        );
        if r.status {
            add(
                format!("{scope}/{plural}/{{name}}/status"),
                path_params(Some(kind)),
                &status_ops,
            );
        }
        if r.namespaced {
            let all = Op {
                method: "get",
                action: "list",
                id: format!("list{infix}{kind}ForAllNamespaces"),
                description: format!("list or watch objects of kind {kind} in all namespaces"),
                query: LIST_QUERY,
                body: Body::None,
                responses: ok(&list),
            };
            add(
                format!("{base}/{plural}"),
                json!([query(d, "pretty")]),
                &[all],
            );
        }
    }
    Value::Object(out)
}
