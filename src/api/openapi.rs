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
//!
//! This file builds the documents (index, v3 per group-version, v2) and
//! answers for them; `openapi/paths.rs` renders the paths and operations,
//! `openapi/schemas.rs` the definitions (mostly schema literals: data
//! written as code).

use super::resources::{groups, ResourceInfo, RESOURCES};
use paths::paths;
use schemas::definitions;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

mod paths;
mod schemas;

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

// ---- Names shared by paths and schemas ----

/// A kind's `x-kubernetes-group-version-kind` entry.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::lookup;
    use crate::api::resources::TMC_GROUP;

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
}
