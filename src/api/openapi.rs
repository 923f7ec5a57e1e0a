//! OpenAPI documents, built from [`RESOURCES`], for what kubectl does
//! with them:
//!
//! - **Field validation.** `kubectl apply/create/replace` (validation is
//!   on by default) first asks whether the server validates fields
//!   itself: it reads the OpenAPI v3 index `/openapi/v3`, follows the
//!   `serverRelativeURL` of the object's group-version (e.g.
//!   `/openapi/v3/apis/apps/v1?hash=...`), finds the PATCH operation whose
//!   `x-kubernetes-group-version-kind` names the object's kind, and looks
//!   for a `fieldValidation` query parameter on it. Found: the request is
//!   sent with `?fieldValidation=Strict` and the server decides. Every
//!   PATCH (and POST and PUT) here carries that parameter, so kubectl
//!   never falls back to validating on the client. (Older clients ask the
//!   same question of `/openapi/v2`, which carries the same operations.)
//! - **Client-side apply patches.** `kubectl apply` computes a strategic
//!   merge patch from the OpenAPI schema when the PATCH operation lists
//!   `application/strategic-merge-patch+json`. The schemas here are
//!   permissive (no merge keys), which would turn list merges into list
//!   replacements that the server then merges by key — so that content
//!   type is deliberately not listed: kubectl then computes strategic
//!   patches from its compiled-in types for built-in kinds, and a JSON
//!   merge patch for tmc's kinds, which is what kube-apiserver's own
//!   behaviour for custom resources leads to.
//! - **`kubectl explain`** reads the v3 group-version document and picks
//!   the component schema whose `x-kubernetes-group-version-kind` names
//!   the kind.
//!
//! Schemas: built-in kinds are stored schemaless, so their `spec` and
//! `status` are `type: object` with `x-kubernetes-preserve-unknown-fields`
//! (their other top-level fields, e.g. a ConfigMap's `data`, are listed).
//! `metadata` refers to a real `ObjectMeta`. tmc's own kinds get
//! hand-written schemas that follow [`crate::types`]; a test checks the
//! Rust types' JSON against them. Definition names follow
//! kube-apiserver's (`io.k8s.api.apps.v1.Deployment`) and, for groups
//! outside Kubernetes, the reversed group as for custom resources
//! (`io.kcp.tmc.v1alpha1.WorkloadPlacement`).
//!
//! The documents are the same in every workspace and built once. The
//! index's `serverRelativeURL`s start with `/openapi/v3`, which client-go
//! (since 1.27.2 / 1.28) resolves below the client's base path, i.e. under
//! `/clusters/{workspace}`; older clients resolve them against the host
//! root, so the router should serve these documents there too. The
//! `hash` parameter is a content hash (FNV-1a, hex), fit for an `ETag`;
//! the router may ignore it.
//!
//! `/openapi/v2` is the same content in Swagger 2.0, as JSON. client-go
//! asks for it only as protobuf, and only where the v3 answer did not
//! settle the question: kubectl's client-side validation of `kind: List`
//! files (a List has no PATCH operation to carry `fieldValidation`) and
//! apply's patch-type lookup. A `406` there fails the whole command
//! ("error validating data"), so [`openapi_v2_response`] answers protobuf
//! requests with a well-formed but empty document: those readers find no
//! schema and skip, as for any unknown kind — the List's items are then
//! sent one by one with `fieldValidation=Strict`, and apply computes
//! strategic merge patches from kubectl's compiled-in types.
//!
//! Left out: watch paths and `?watch` streaming content types, a full
//! protobuf encoding of the v2 document, scale subresources,
//! `x-kubernetes-patch-merge-key` and list-type markers, and `default`s.

use super::resources::{groups, ResourceInfo, RESOURCES, TMC_GROUP};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// The `/openapi/v3` index: `{"paths": {"apis/apps/v1": {"serverRelativeURL":
/// "/openapi/v3/apis/apps/v1?hash=..."}, "api/v1": ...}}`.
pub fn openapi_v3_index() -> &'static Value {
    &docs().v3_index
}

/// The OpenAPI 3.0 document of one group-version (`""` for core), served
/// at `/openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}`;
/// `None` for a group-version tmc does not serve.
pub fn openapi_v3_group_version(group: &str, version: &str) -> Option<&'static Value> {
    docs()
        .v3
        .get(&(group.to_string(), version.to_string()))
        .map(|(doc, _)| doc)
}

/// The content hash of a group-version's v3 document, as in the index's
/// `?hash=`; fit for an `ETag`.
pub fn openapi_v3_hash(group: &str, version: &str) -> Option<&'static str> {
    docs()
        .v3
        .get(&(group.to_string(), version.to_string()))
        .map(|(_, hash)| hash.as_str())
}

/// The Swagger 2.0 document served at `/openapi/v2` (as JSON).
pub fn openapi_v2() -> &'static Value {
    &docs().v2
}

/// The media type of the protobuf `/openapi/v2`, as kube-apiserver
/// answers it. Clients ask with `@v1.0` in place of `.v1.0`, but `@` is not
/// a token character and Go's `mime.ParseMediaType` refuses it in a
/// response.
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The `/openapi/v2` response for an `Accept` header, as (`Content-Type`,
/// body): JSON ([`openapi_v2`]) unless the first acceptable entry is
/// protobuf, which client-go always asks for. The protobuf form is a
/// well-formed document without definitions or paths (see the module
/// docs for why), so its readers skip, as for an unknown kind.
pub fn openapi_v2_response(accept: Option<&str>) -> (&'static str, &'static [u8]) {
    let docs = docs();
    let json = ("application/json", docs.v2_json.as_slice());
    for entry in accept.unwrap_or("").split(',') {
        let media = entry.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(OPENAPI_V2_PROTOBUF)
            || media
                .eq_ignore_ascii_case("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        {
            return (OPENAPI_V2_PROTOBUF, V2_PROTOBUF);
        }
        if matches!(media, "application/json" | "application/*" | "*/*") {
            return json;
        }
    }
    json
}

/// gnostic's `openapi_v2.Document` with only `swagger: "2.0"` (field 1).
const V2_PROTOBUF: &[u8] = &[0x0a, 0x03, b'2', b'.', b'0'];

struct Docs {
    v3_index: Value,
    /// (group, version) -> (document, hash).
    v3: BTreeMap<(String, String), (Value, String)>,
    v2: Value,
    v2_json: Vec<u8>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        for (group, versions) in groups() {
            for version in versions {
                let doc = v3_group_version(group, version);
                let hash = fnv1a_hex(&serde_json::to_vec(&doc).unwrap_or_default());
                let path = gv_path(group, version);
                index.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                );
                v3.insert((group.to_string(), version.to_string()), (doc, hash));
            }
        }
        let v2 = v2_document();
        Docs {
            v3_index: json!({ "paths": index }),
            v3,
            v2_json: serde_json::to_vec(&v2).unwrap_or_default(),
            v2,
        }
    })
}

/// `api/v1` or `apis/{group}/{version}`: the index key and URL tail.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

// ---- Documents ----

/// Which OpenAPI dialect a piece is rendered in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V2,
    V3,
}

impl Dialect {
    fn reference(self, name: &str) -> Value {
        match self {
            Dialect::V2 => json!({ "$ref": format!("#/definitions/{name}") }),
            Dialect::V3 => json!({ "$ref": format!("#/components/schemas/{name}") }),
        }
    }

    /// A property that refers to a definition, with its own description.
    fn ref_property(self, name: &str, description: &str) -> Value {
        match self {
            Dialect::V2 => {
                let mut v = self.reference(name);
                v["description"] = json!(description);
                v
            }
            Dialect::V3 => json!({
                "allOf": [self.reference(name)],
                "default": {},
                "description": description,
            }),
        }
    }
}

fn v3_group_version(group: &str, version: &str) -> Value {
    let resources: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "tmc", "version": "unversioned"},
        "paths": paths(&resources, Dialect::V3),
        "components": {
            "schemas": definitions(&resources, Dialect::V3),
            "securitySchemes": {"BearerToken": bearer_token()},
        },
        "security": [{"BearerToken": []}],
    })
}

fn v2_document() -> Value {
    let resources: Vec<&ResourceInfo> = RESOURCES.iter().collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "tmc", "version": "unversioned"},
        "paths": paths(&resources, Dialect::V2),
        "definitions": definitions(&resources, Dialect::V2),
        "securityDefinitions": {"BearerToken": bearer_token()},
        "security": [{"BearerToken": []}],
    })
}

fn bearer_token() -> Value {
    json!({
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
        "description": "Bearer Token authentication",
    })
}

// ---- Paths and operations ----

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

fn paths(resources: &[&ResourceInfo], d: Dialect) -> Value {
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
        let item = [
            Op {
                method: "get",
                action: "get",
                id: format!("read{infix}{ns_word}{kind}"),
                description: format!("read the specified {kind}"),
                query: &[],
                body: Body::None,
                responses: ok(&object),
            },
            Op {
                method: "put",
                action: "put",
                id: format!("replace{infix}{ns_word}{kind}"),
                description: format!("replace the specified {kind}"),
                query: WRITE_QUERY,
                body: Body::Object,
                responses: vec![
                    ("200", "OK", object.clone()),
                    ("201", "Created", object.clone()),
                ],
            },
            Op {
                method: "patch",
                action: "patch",
                id: format!("patch{infix}{ns_word}{kind}"),
                description: format!("partially update the specified {kind}"),
                query: PATCH_QUERY,
                body: Body::Patch,
                responses: vec![
                    ("200", "OK", object.clone()),
                    ("201", "Created", object.clone()),
                ],
            },
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
        let status_ops = [
            Op {
                method: "get",
                action: "get",
                id: format!("read{infix}{ns_word}{kind}Status"),
                description: format!("read status of the specified {kind}"),
                query: &[],
                body: Body::None,
                responses: ok(&object),
            },
            Op {
                method: "put",
                action: "put",
                id: format!("replace{infix}{ns_word}{kind}Status"),
                description: format!("replace status of the specified {kind}"),
                query: WRITE_QUERY,
                body: Body::Object,
                responses: vec![
                    ("200", "OK", object.clone()),
                    ("201", "Created", object.clone()),
                ],
            },
            Op {
                method: "patch",
                action: "patch",
                id: format!("patch{infix}{ns_word}{kind}Status"),
                description: format!("partially update status of the specified {kind}"),
                query: PATCH_QUERY,
                body: Body::Patch,
                responses: vec![
                    ("200", "OK", object.clone()),
                    ("201", "Created", object.clone()),
                ],
            },
        ];

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

// ---- Schemas ----

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The definition name of a resource's kind, as kube-apiserver names it.
fn def_name(r: &ResourceInfo) -> String {
    let package = match r.group {
        "" => "io.k8s.api.core".to_string(),
        g if !g.contains('.') => format!("io.k8s.api.{g}"),
        g if g.ends_with(".k8s.io") => {
            format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g))
        }
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{package}.{}.{}", r.version, r.kind)
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn int64(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": description})
}

fn time(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}, "description": description})
}

fn string_enum(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

/// An object stored as sent.
fn free_object(description: &str) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": description,
    })
}

fn array_of(items: Value, description: &str) -> Value {
    json!({"type": "array", "items": items, "description": description})
}

fn object(properties: Value, required: &[&str], description: &str) -> Value {
    let mut o = json!({"type": "object", "properties": properties, "description": description});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

const API_VERSION_DOC: &str =
    "APIVersion defines the versioned schema of this representation of an object.";
const KIND_DOC: &str =
    "Kind is a string value representing the REST resource this object represents.";

fn definitions(resources: &[&ResourceInfo], d: Dialect) -> Value {
    let mut defs = meta_definitions(d);
    for r in resources {
        let mut properties = json!({
            "apiVersion": string(API_VERSION_DOC),
            "kind": string(KIND_DOC),
            "metadata": d.ref_property(&format!("{META}.ObjectMeta"), "Standard object's metadata."),
        });
        for (name, schema) in body_fields(r) {
            properties[name] = schema;
        }
        let mut def = object(properties, &[], &kind_description(r));
        def["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, r.kind)]);
        defs.insert(def_name(r), def);

        let items = match d {
            Dialect::V2 => d.reference(&def_name(r)),
            Dialect::V3 => json!({"allOf": [d.reference(&def_name(r))], "default": {}}),
        };
        let mut list = object(
            json!({
                "apiVersion": string(API_VERSION_DOC),
                "kind": string(KIND_DOC),
                "metadata": d.ref_property(&format!("{META}.ListMeta"), "Standard list metadata."),
                "items": array_of(items, &format!("List of {}.", r.plural)),
            }),
            &["items"],
            &format!("{} is a list of {}.", r.list_kind(), r.kind),
        );
        list["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, &r.list_kind())]);
        defs.insert(format!("{}List", def_name(r)), list);
    }
    Value::Object(defs)
}

fn kind_description(r: &ResourceInfo) -> String {
    let what = match r.kind {
        "Namespace" => "Namespace provides a scope for Names.",
        "ConfigMap" => "ConfigMap holds configuration data for pods to consume.",
        "Secret" => "Secret holds secret data of a certain type.",
        "Service" => "Service is a named abstraction of software service, exposed on a member cluster.",
        "ServiceAccount" => "ServiceAccount binds together a name, a principal and secrets.",
        "Deployment" => "Deployment enables declarative updates for Pods and ReplicaSets.",
        "StatefulSet" => "StatefulSet represents a set of pods with consistent identities.",
        "DaemonSet" => "DaemonSet represents the configuration of a daemon set.",
        "Job" => "Job represents the configuration of a single job.",
        "Role" => "Role is a namespaced, logical grouping of PolicyRules.",
        "RoleBinding" => "RoleBinding references a role and binds it to subjects in a namespace.",
        "ClusterRole" => "ClusterRole is a workspace-level, logical grouping of PolicyRules.",
        "ClusterRoleBinding" => "ClusterRoleBinding references a ClusterRole and binds it to subjects.",
        "ClusterRegistration" => "ClusterRegistration is a physical cluster registered with tmc, in a location workspace.",
        "WorkloadPlacement" => "WorkloadPlacement says which workloads of a tenant workspace run on which clusters.",
        "Workspace" => "Workspace is a logical cluster: a child of the workspace it is created in.",
        _ => "",
    };
    if r.group == TMC_GROUP {
        what.to_string()
    } else {
        format!("{what} tmc stores it as sent: fields below the top level are not checked against a schema.")
    }
}

/// Top-level fields besides apiVersion, kind and metadata.
fn body_fields(r: &ResourceInfo) -> Vec<(&'static str, Value)> {
    let any_list = |d: &str| array_of(free_object(""), d);
    match (r.group, r.kind) {
        ("", "ConfigMap") => vec![
            ("data", string_map("Data contains the configuration data.")),
            ("binaryData", string_map("BinaryData contains binary data, base64 encoded.")),
            ("immutable", boolean("If true, the data cannot be updated.")),
        ],
        ("", "Secret") => vec![
            ("data", string_map("Data contains the secret data, base64 encoded.")),
            ("stringData", string_map("stringData allows specifying non-binary secret data in string form; write-only.")),
            ("type", string("Used to facilitate programmatic handling of secret data.")),
            ("immutable", boolean("If true, the data cannot be updated.")),
        ],
        ("", "ServiceAccount") => vec![
            ("secrets", any_list("Secrets the service account may use.")),
            ("imagePullSecrets", any_list("References to secrets for pulling images.")),
            ("automountServiceAccountToken", boolean("Whether pods running as this service account get a token mounted.")),
        ],
        (_, "Role") => vec![("rules", any_list("Rules holds all the PolicyRules for this Role."))],
        (_, "ClusterRole") => vec![
            ("rules", any_list("Rules holds all the PolicyRules for this ClusterRole.")),
            ("aggregationRule", free_object("AggregationRule describes how to build the Rules for this ClusterRole.")),
        ],
        (_, "RoleBinding") | (_, "ClusterRoleBinding") => vec![
            ("subjects", any_list("Subjects holds references to the objects the role applies to.")),
            ("roleRef", free_object("RoleRef references the role being bound.")),
        ],
        (TMC_GROUP, "ClusterRegistration") => vec![
            ("spec", cluster_registration_spec()),
            ("status", cluster_registration_status()),
        ],
        (TMC_GROUP, "WorkloadPlacement") => vec![
            ("spec", workload_placement_spec()),
            ("status", workload_placement_status()),
        ],
        _ => {
            let mut fields = vec![("spec", free_object("Desired state, stored as sent."))];
            if r.status {
                fields.push(("status", free_object("Observed state, stored as sent.")));
            }
            fields
        }
    }
}

fn meta_definitions(d: Dialect) -> Map<String, Value> {
    let mut defs = Map::new();
    defs.insert(
        format!("{META}.ObjectMeta"),
        object(
            json!({
                "name": string("Name must be unique within a namespace."),
                "generateName": string("Prefix for a server-generated name."),
                "namespace": string("Namespace defines the space within which each name must be unique."),
                "selfLink": string("Deprecated."),
                "uid": string("UID is the unique in time and space value for this object."),
                "resourceVersion": string("An opaque value that represents the internal version of this object."),
                "generation": int64("A sequence number representing a specific generation of the desired state."),
                "creationTimestamp": time("The time this object was created."),
                "deletionTimestamp": time("The time at which this resource will be deleted."),
                "deletionGracePeriodSeconds": int64("Seconds allowed for graceful termination."),
                "labels": string_map("Map of string keys and values that can be used to organize and categorize objects."),
                "annotations": string_map("Annotations is an unstructured key value map stored with a resource."),
                "ownerReferences": array_of(free_object(""), "List of objects depended by this object."),
                "finalizers": array_of(json!({"type": "string"}), "Must be empty before the object is deleted from the registry."),
                "managedFields": array_of(free_object(""), "Maps workflow-id and version to the set of fields that are managed by that workflow."),
            }),
            &[],
            "ObjectMeta is metadata that all persisted resources must have.",
        ),
    );
    defs.insert(
        format!("{META}.ListMeta"),
        object(
            json!({
                "continue": string("continue may be set if the user set a limit on the number of items returned."),
                "remainingItemCount": int64("The number of subsequent items in the list which are not included in this list response."),
                "resourceVersion": string("String that identifies the server's internal version of this object."),
                "selfLink": string("Deprecated."),
            }),
            &[],
            "ListMeta describes metadata that synthetic resources must have.",
        ),
    );
    let mut status = object(
        json!({
            "apiVersion": string(API_VERSION_DOC),
            "kind": string(KIND_DOC),
            "metadata": d.ref_property(&format!("{META}.ListMeta"), "Standard list metadata."),
            "status": string("Status of the operation: Success or Failure."),
            "message": string("A human-readable description of the status of this operation."),
            "reason": string("A machine-readable description of why this operation is in the Failure status."),
            "details": free_object("Extended data associated with the reason."),
            "code": json!({"type": "integer", "format": "int32", "description": "Suggested HTTP return code for this status."}),
        }),
        &[],
        "Status is a return value for calls that don't return other objects.",
    );
    status["x-kubernetes-group-version-kind"] = json!([gvk("", "v1", "Status")]);
    defs.insert(format!("{META}.Status"), status);
    defs.insert(
        format!("{META}.DeleteOptions"),
        object(
            json!({
                "apiVersion": string(API_VERSION_DOC),
                "kind": string(KIND_DOC),
                "dryRun": array_of(json!({"type": "string"}), "When present, indicates that modifications should not be persisted."),
                "gracePeriodSeconds": int64("The duration in seconds before the object should be deleted."),
                "orphanDependents": boolean("Deprecated: use propagationPolicy."),
                "preconditions": free_object("Must be fulfilled before a deletion is carried out (uid, resourceVersion)."),
                "propagationPolicy": string("Whether and how garbage collection will be performed."),
            }),
            &[],
            "DeleteOptions may be provided when deleting an API object.",
        ),
    );
    defs.insert(
        format!("{META}.Patch"),
        json!({
            "type": "object",
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        }),
    );
    defs
}

// ---- tmc's own kinds (keep in step with crate::types) ----

fn label_selector(description: &str) -> Value {
    let mut s = object(
        json!({
            "matchLabels": string_map("A map of {key,value} pairs; each is a requirement key In (value)."),
            "matchExpressions": array_of(
                object(
                    json!({
                        "key": string("The label key that the selector applies to."),
                        "operator": string_enum(&["In", "NotIn", "Exists", "DoesNotExist"], "The key's relationship to a set of values."),
                        "values": array_of(json!({"type": "string"}), "Values for In and NotIn; empty for Exists and DoesNotExist."),
                    }),
                    &["key", "operator"],
                    "A selector requirement.",
                ),
                "A list of label selector requirements, ANDed.",
            ),
        }),
        &[],
        description,
    );
    s["x-kubernetes-map-type"] = json!("atomic");
    s
}

fn conditions(description: &str) -> Value {
    array_of(
        object(
            json!({
                "type": string("Type of condition in CamelCase."),
                "status": string_enum(&["True", "False", "Unknown"], "Status of the condition."),
                "observedGeneration": int64("The .metadata.generation the condition was set upon."),
                "lastTransitionTime": time("The last time the condition changed status."),
                "reason": string("A programmatic identifier for the last transition, in CamelCase."),
                "message": string("A human-readable message about the transition."),
            }),
            &["type", "status", "lastTransitionTime", "reason", "message"],
            "Condition contains details for one aspect of the current state.",
        ),
        description,
    )
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];

fn cluster_registration_spec() -> Value {
    object(
        json!({
            "apiEndpoint": string("URL of the cluster's API server."),
            "credentialsSecretRef": object(
                json!({
                    "namespace": string("Namespace of the Secret, in the registration's workspace."),
                    "name": string("Name of the Secret."),
                }),
                &["namespace", "name"],
                "The Secret holding credentials: key `kubeconfig`, or `token` and `ca.crt`.",
            ),
            "location": string("Free-form location, matched by placements."),
            "unschedulable": boolean("No new placements when true."),
            "taints": array_of(
                object(
                    json!({
                        "key": string("Taint key."),
                        "value": string("Taint value."),
                        "effect": string_enum(TAINT_EFFECTS, "NoSchedule: no new placements; NoExecute: existing placements move away."),
                    }),
                    &["key", "effect"],
                    "A taint on a cluster.",
                ),
                "Taints.",
            ),
        }),
        &["apiEndpoint", "credentialsSecretRef"],
        "Desired state of a ClusterRegistration.",
    )
}

fn cluster_registration_status() -> Value {
    object(
        json!({
            "conditions": conditions("Ready, HeartbeatHealthy, CredentialsValid."),
            "lastHeartbeatTime": time("Last successful probe."),
            "kubernetesVersion": string("The cluster's Kubernetes version."),
            "capacity": string_map("Summed node capacity."),
            "allocatable": string_map("Summed node allocatable."),
        }),
        &[],
        "Observed state of a ClusterRegistration.",
    )
}

fn workload_placement_spec() -> Value {
    object(
        json!({
            "namespaceSelector": label_selector("Which namespaces' workloads."),
            "workloadSelector": label_selector("Which workloads (empty: all)."),
            "resources": array_of(
                object(
                    json!({
                        "group": string("API group (empty for core)."),
                        "resource": string("Plural resource."),
                    }),
                    &["resource"],
                    "A group and resource a placement covers.",
                ),
                "Which resources (empty: the syncable set).",
            ),
            "locationWorkspace": string("Workspace of the ClusterRegistrations (default: own)."),
            "clusterSelector": label_selector("Which clusters."),
            "tolerations": array_of(
                object(
                    json!({
                        "key": string("Taint key (empty with Exists: every key)."),
                        "operator": string("Equal (default) or Exists."),
                        "value": string("Value for Equal."),
                        "effect": string_enum(TAINT_EFFECTS, "Effect tolerated (all when absent)."),
                        "tolerationSeconds": int64("For NoExecute: how long the placement stays."),
                    }),
                    &[],
                    "A toleration of a cluster taint.",
                ),
                "Tolerated taints.",
            ),
            "strategy": object(
                json!({
                    "type": string_enum(&["Single", "Spread", "All"], "Single, Spread or All."),
                    "clusters": json!({"type": "integer", "format": "int32", "minimum": 0, "description": "Number of clusters for Spread."}),
                    "topologyKey": string("Cluster label to spread across, for Spread."),
                }),
                &["type"],
                "How many clusters a placement picks.",
            ),
            "conflictPolicy": string_enum(&["Abort", "Adopt"], "What to do with a downstream object tmc did not create."),
        }),
        &["strategy"],
        "Desired state of a WorkloadPlacement.",
    )
}

fn workload_placement_status() -> Value {
    object(
        json!({
            "phase": string_enum(&["Pending", "Bound", "Unschedulable"], "Placement phase."),
            "selectedClusters": array_of(
                object(
                    json!({
                        "workspace": string("Location workspace."),
                        "name": string("ClusterRegistration name."),
                    }),
                    &["workspace", "name"],
                    "A cluster chosen by a placement.",
                ),
                "The decision.",
            ),
            "conditions": conditions("Scheduled, Ready."),
        }),
        &[],
        "Observed state of a WorkloadPlacement.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::lookup;
    use crate::types;

    /// Every `$ref` in `v` resolves within `doc`.
    fn check_refs(doc: &Value, v: &Value, prefix: &str) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r}"));
                    let defs = if prefix.starts_with("#/components") {
                        &doc["components"]["schemas"]
                    } else {
                        &doc["definitions"]
                    };
                    assert!(defs.get(name).is_some(), "unresolved {r}");
                }
                m.values().for_each(|x| check_refs(doc, x, prefix));
            }
            Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x, prefix)),
            _ => {}
        }
    }

    fn schemas_with_gvk<'a>(defs: &'a Value, g: &str, v: &str, k: &str) -> Vec<&'a str> {
        defs.as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(&gvk(g, v, k)))
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// PATCH operations for a kind, as kubectl's field-validation check finds them.
    fn patch_ops<'a>(paths: &'a Value, r: &ResourceInfo) -> Vec<&'a Value> {
        paths
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op["x-kubernetes-group-version-kind"] == gvk(r.group, r.version, r.kind))
            .collect()
    }

    #[test]
    fn the_v3_index_resolves_to_every_group_version() {
        let index = openapi_v3_index()["paths"].as_object().unwrap();
        assert_eq!(
            index.len(),
            groups().iter().map(|(_, v)| v.len()).sum::<usize>()
        );
        for (key, entry) in index {
            let url = entry["serverRelativeURL"].as_str().unwrap();
            let tail = url
                .strip_prefix("/openapi/v3/")
                .expect("client-go keeps its prefix only for /openapi/v3 URLs");
            let (path, hash) = tail.split_once("?hash=").unwrap();
            assert_eq!(path, key);
            let (group, version) = match path.split('/').collect::<Vec<_>>()[..] {
                ["api", v] => ("", v),
                ["apis", g, v] => (g, v),
                _ => panic!("{path}"),
            };
            let doc = openapi_v3_group_version(group, version)
                .expect("the index only lists served documents");
            assert_eq!(openapi_v3_hash(group, version), Some(hash));
            assert_eq!(hash, fnv1a_hex(&serde_json::to_vec(doc).unwrap()));
            assert_eq!(doc["openapi"], "3.0.0");
            check_refs(doc, doc, "#/components/schemas/");
        }
        assert!(index.contains_key("api/v1") && index.contains_key("apis/apps/v1"));
        assert!(openapi_v3_group_version("apps", "v2").is_none());
        assert!(openapi_v3_group_version("", "apps").is_none());
    }

    #[test]
    fn every_kind_has_one_schema_and_a_patch_with_field_validation() {
        for r in RESOURCES {
            let doc = openapi_v3_group_version(r.group, r.version).unwrap();
            let schemas = &doc["components"]["schemas"];
            assert_eq!(
                schemas_with_gvk(schemas, r.group, r.version, r.kind),
                vec![def_name(r)]
            );
            assert_eq!(
                schemas_with_gvk(schemas, r.group, r.version, &r.list_kind()).len(),
                1
            );
            let schema = &schemas[def_name(r)];
            assert_eq!(
                schema["properties"]["metadata"]["allOf"][0]["$ref"],
                format!("#/components/schemas/{META}.ObjectMeta")
            );

            let paths = &doc["paths"];
            let patches = patch_ops(paths, r);
            assert_eq!(patches.len(), if r.status { 2 } else { 1 }, "{}", r.kind);
            for op in patches {
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                    "{}: PATCH lacks fieldValidation",
                    r.kind
                );
                let types = op["requestBody"]["content"].as_object().unwrap();
                assert!(types.contains_key("application/apply-patch+yaml"));
                assert!(types.contains_key("application/merge-patch+json"));
                assert!(!types.contains_key("application/strategic-merge-patch+json"));
            }
            for item in paths.as_object().unwrap().values() {
                for method in ["post", "put"] {
                    if let Some(op) = item.get(method) {
                        assert!(op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == "fieldValidation"));
                    }
                }
            }
            let scope = if r.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            let base = if r.group.is_empty() {
                format!("/api/{}", r.version)
            } else {
                format!("/apis/{}/{}", r.group, r.version)
            };
            let item = &paths[format!("{base}{scope}/{}/{{name}}", r.plural)];
            for method in ["get", "put", "patch", "delete"] {
                assert_eq!(
                    item[method]["x-kubernetes-group-version-kind"]["kind"], r.kind,
                    "{method}"
                );
            }
            let collection = &paths[format!("{base}{scope}/{}", r.plural)];
            assert_eq!(collection["get"]["x-kubernetes-action"], "list");
            assert_eq!(collection["post"]["x-kubernetes-action"], "post");
            assert!(collection["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "labelSelector"));
        }
        assert_eq!(
            def_name(lookup("apps", "v1", "deployments").unwrap()),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            def_name(lookup("", "v1", "configmaps").unwrap()),
            "io.k8s.api.core.v1.ConfigMap"
        );
        assert_eq!(
            def_name(lookup("rbac.authorization.k8s.io", "v1", "roles").unwrap()),
            "io.k8s.api.rbac.v1.Role"
        );
        assert_eq!(
            def_name(lookup(TMC_GROUP, "v1alpha1", "workloadplacements").unwrap()),
            "io.kcp.tmc.v1alpha1.WorkloadPlacement"
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let v2 = openapi_v2();
        let mut ids = std::collections::BTreeSet::new();
        for item in v2["paths"].as_object().unwrap().values() {
            for (method, op) in item.as_object().unwrap() {
                if method != "parameters" {
                    let id = op["operationId"].as_str().unwrap();
                    assert!(ids.insert(id.to_string()), "duplicate {id}");
                }
            }
        }
        assert!(ids.contains("patchAppsV1NamespacedDeploymentStatus"));
        assert!(ids.contains("listCoreV1ConfigMapForAllNamespaces"));
        assert!(ids.contains("createRbacAuthorizationV1ClusterRole"));
    }

    #[test]
    fn v2_holds_every_kind_and_the_same_operations() {
        let v2 = openapi_v2();
        assert_eq!(v2["swagger"], "2.0");
        check_refs(v2, v2, "#/definitions/");
        let defs = &v2["definitions"];
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([gvk("apps", "v1", "Deployment")])
        );
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]
                ["x-kubernetes-preserve-unknown-fields"],
            true
        );
        for r in RESOURCES {
            assert_eq!(
                schemas_with_gvk(defs, r.group, r.version, r.kind),
                vec![def_name(r)]
            );
            for op in patch_ops(&v2["paths"], r) {
                let params = op["parameters"].as_array().unwrap();
                assert!(params
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
                assert!(params.iter().any(|p| p["in"] == "body"));
                assert!(!op["consumes"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("application/strategic-merge-patch+json")));
            }
            assert_eq!(
                patch_ops(&v2["paths"], r).len(),
                if r.status { 2 } else { 1 }
            );
        }
    }

    #[test]
    fn v2_is_json_unless_protobuf_comes_first() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "application/json"),
            (Some("application/json"), "application/json"),
            (Some("*/*"), "application/json"),
            (Some(OPENAPI_V2_PROTOBUF), OPENAPI_V2_PROTOBUF),
            // What client-go sends.
            (
                Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
                OPENAPI_V2_PROTOBUF,
            ),
            (
                Some(
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json",
                ),
                OPENAPI_V2_PROTOBUF,
            ),
            (
                Some(
                    "application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                ),
                "application/json",
            ),
            (Some("text/html"), "application/json"),
        ];
        for (accept, want) in cases {
            assert_eq!(openapi_v2_response(*accept).0, *want, "{accept:?}");
        }
        let (_, body) = openapi_v2_response(Some("application/json"));
        assert_eq!(
            &serde_json::from_slice::<Value>(body).unwrap(),
            openapi_v2()
        );
        // Field 1 (swagger), wire type 2 (length-delimited), "2.0".
        assert_eq!(
            openapi_v2_response(Some(OPENAPI_V2_PROTOBUF)).1,
            b"\x0a\x032.0"
        );
    }

    // A small validator, enough to hold tmc's schemas to its Rust types:
    // types, enums, required fields and unknown fields.
    fn validate(doc: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        let resolve = |s: &Value| -> Value {
            let r = s.get("$ref").or_else(|| s.pointer("/allOf/0/$ref"));
            match r.and_then(Value::as_str) {
                Some(r) => doc["components"]["schemas"]
                    [r.trim_start_matches("#/components/schemas/")]
                .clone(),
                None => s.clone(),
            }
        };
        let schema = resolve(schema);
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                errs.push(format!("{path}: {v} not in {allowed:?}"));
            }
        }
        let ok = match schema["type"].as_str() {
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("boolean") => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{path}: {v} is not {}", schema["type"]));
            return;
        }
        if let (Some(obj), Some(props)) = (
            v.as_object(),
            schema.get("properties").and_then(Value::as_object),
        ) {
            for (k, x) in obj {
                match props.get(k) {
                    Some(s) => validate(doc, s, x, &format!("{path}.{k}"), errs),
                    None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    None => errs.push(format!("{path}.{k}: unknown field")),
                }
            }
            for req in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(req.as_str().unwrap()) {
                    errs.push(format!("{path}: missing {req}"));
                }
            }
        }
        if let (Some(obj), Some(s)) = (v.as_object(), schema.get("additionalProperties")) {
            for (k, x) in obj {
                validate(doc, s, x, &format!("{path}.{k}"), errs);
            }
        }
        if let (Some(items), Some(s)) = (v.as_array(), schema.get("items")) {
            for (i, x) in items.iter().enumerate() {
                validate(doc, s, x, &format!("{path}[{i}]"), errs);
            }
        }
    }

    fn errors(kind: &str, object: &Value) -> Vec<String> {
        let r = RESOURCES.iter().find(|r| r.kind == kind).unwrap();
        let doc = openapi_v3_group_version(r.group, r.version).unwrap();
        let mut errs = Vec::new();
        validate(
            doc,
            &doc["components"]["schemas"][def_name(r)],
            object,
            kind,
            &mut errs,
        );
        errs
    }

    fn condition() -> Value {
        json!({"type": "Ready", "status": "True", "observedGeneration": 3, "reason": "Healthy",
               "message": "ok", "lastTransitionTime": "2026-11-26T00:00:00Z"})
    }

    #[test]
    fn tmc_schemas_accept_the_rust_types_json_and_refuse_drift() {
        // Every field populated, parsed into the Rust types and written back.
        let cr: types::ClusterRegistration = serde_json::from_value(json!({
            "apiVersion": types::API_VERSION, "kind": "ClusterRegistration",
            "metadata": {"name": "eu-west-1a", "labels": {"region": "eu-west"}, "generation": 3,
                         "creationTimestamp": "2026-11-26T00:00:00Z", "finalizers": ["x"]},
            "spec": {"apiEndpoint": "https://10.0.0.1:6443",
                     "credentialsSecretRef": {"namespace": "tmc-system", "name": "kc"},
                     "location": "eu-west", "unschedulable": true,
                     "taints": [{"key": "maintenance", "value": "true", "effect": "NoExecute"}]},
            "status": {"conditions": [condition()], "lastHeartbeatTime": "2026-11-26T00:00:00Z",
                       "kubernetesVersion": "v1.34.2", "capacity": {"cpu": "64"}, "allocatable": {"cpu": "60"}}
        }))
        .unwrap();
        let cr = serde_json::to_value(&cr).unwrap();
        assert_eq!(errors("ClusterRegistration", &cr), Vec::<String>::new());

        let wp: types::WorkloadPlacement = serde_json::from_value(json!({
            "apiVersion": types::API_VERSION, "kind": "WorkloadPlacement", "metadata": {"name": "web-eu"},
            "spec": types::example_placement_spec(),
            "status": {"phase": "Bound", "selectedClusters": [{"workspace": "root:compute", "name": "eu-west-1a"}],
                       "conditions": [condition()]}
        }))
        .unwrap();
        let mut wp = serde_json::to_value(&wp).unwrap();
        wp["spec"]["clusterSelector"]["matchExpressions"] =
            json!([{"key": "tier", "operator": "In", "values": ["prod"]}]);
        assert_eq!(errors("WorkloadPlacement", &wp), Vec::<String>::new());

        let mut bad = wp.clone();
        bad["spec"]["bogus"] = json!(1);
        bad["spec"]["strategy"]["type"] = json!("Sometimes");
        bad["spec"]["tolerations"][0]["tolerationSeconds"] = json!("soon");
        let errs = errors("WorkloadPlacement", &bad);
        assert_eq!(errs.len(), 3, "{errs:?}");
        let mut bad = cr.clone();
        bad["spec"].as_object_mut().unwrap().remove("apiEndpoint");
        assert_eq!(
            errors("ClusterRegistration", &bad),
            vec!["ClusterRegistration.spec: missing \"apiEndpoint\""]
        );
    }

    #[test]
    fn built_in_schemas_are_permissive_below_the_top_level() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"anything": ["goes"]}});
        assert_eq!(errors("Deployment", &deploy), Vec::<String>::new());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "data": {"k": "v"}, "immutable": true});
        assert_eq!(errors("ConfigMap", &cm), Vec::<String>::new());
        let errs = errors(
            "ConfigMap",
            &json!({"metadata": {"name": "c", "labelz": {}}, "spec": {}}),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
