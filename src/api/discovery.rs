//! Discovery: the documents clients read to learn which resources a
//! workspace serves, built from [`RESOURCES`] so they cannot disagree
//! with routing. Every workspace serves the same set, so each document is
//! built once.
//!
//! Two protocols share the root paths:
//!
//! - Plain (every client): `/api` lists the core versions (`APIVersions`),
//!   `/apis` the groups (`APIGroupList`, each with its preferred version),
//!   `/apis/{group}` one group (`APIGroup`), and `/api/v1` and
//!   `/apis/{group}/{version}` the resources of one group-version
//!   (`APIResourceList`, with `{plural}/status` entries for status
//!   subresources). A client reads `/api`, `/apis`, then one list per
//!   group-version.
//! - Aggregated (client-go since 1.26, so kubectl): `/api` and `/apis`
//!   answer, when `Accept` asks for
//!   `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
//!   (or `v=v2beta1`, which kubectl 1.26–1.29 ask for), with an
//!   `APIGroupDiscoveryList`: every group, version and resource in one
//!   document — the core group at `/api`, the others at `/apis`. The
//!   response's `Content-Type` names the version chosen; client-go reads
//!   it to decide how to decode the body. Without such an `Accept` (or
//!   with only media types tmc does not serve, e.g. protobuf), the plain
//!   document is served, which every client understands.
//!
//! The handler should also send `Vary: Accept`, since one path has two
//! bodies.
//!
//! Left out: `serverAddressByClientCIDRs` is empty (it depends on the
//! request; clients ignore it); no `storageVersionHash` (only the storage
//! version migrator reads it); no protobuf; all documents are always
//! `freshness: Current` (tmc has no aggregated API servers that could be
//! stale).

use super::resources::{groups, ResourceInfo, RESOURCES, VERBS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Verbs of a status subresource.
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Which discovery protocol a response uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain JSON discovery (`APIVersions`, `APIGroupList`, ...).
    Plain,
    /// Aggregated discovery, `apidiscovery.k8s.io/v2`.
    AggregatedV2,
    /// Aggregated discovery, `apidiscovery.k8s.io/v2beta1`.
    AggregatedV2Beta1,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Plain => "application/json",
            Format::AggregatedV2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            Format::AggregatedV2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// The format to answer `/api` or `/apis` with, given the request's
/// `Accept` header: the most preferred acceptable entry wins (by `q`,
/// then specificity, then order, as kube-apiserver's negotiation does);
/// plain JSON when nothing better is acceptable.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Plain;
    };
    // (q, specificity, parameter count, format) per acceptable entry.
    let mut offers: Vec<(f32, u8, usize, Format)> = Vec::new();
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut params = BTreeMap::new();
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else if !k.is_empty() {
                params.insert(k, v.to_string());
            }
        }
        if q <= 0.0 {
            continue;
        }
        let specificity = match media.as_str() {
            "application/json" => 2,
            "application/*" => 1,
            "*/*" => 0,
            _ => continue,
        };
        let format = if params.is_empty() {
            Format::Plain
        } else if params.get("g").map(String::as_str) == Some("apidiscovery.k8s.io")
            && params.get("as").map(String::as_str) == Some("APIGroupDiscoveryList")
            && params.len() == 3
        {
            match params.get("v").map(String::as_str) {
                Some("v2") => Format::AggregatedV2,
                Some("v2beta1") => Format::AggregatedV2Beta1,
                _ => continue,
            }
        } else {
            continue;
        };
        offers.push((q, specificity, params.len(), format));
    }
    // Stable sort keeps the client's order among equals.
    offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    offers.first().map_or(Format::Plain, |o| o.3)
}

/// The discovery document at `path` (relative to the workspace:
/// `/api`, `/apis`, `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`;
/// a trailing slash is ignored), as (`Content-Type`, body). `accept`
/// matters only for `/api` and `/apis`. `None` when `path` is not a
/// discovery path or names a group or version tmc does not serve (404).
pub fn document(path: &str, accept: Option<&str>) -> Option<(&'static str, &'static Value)> {
    let docs = docs();
    let path = path.strip_suffix('/').unwrap_or(path);
    let root = match path {
        "/api" => Some(true),
        "/apis" => Some(false),
        _ => None,
    };
    if let Some(core) = root {
        let format = negotiate(accept);
        let body = match (format, core) {
            (Format::Plain, true) => &docs.api,
            (Format::Plain, false) => &docs.apis,
            (Format::AggregatedV2, true) => &docs.aggregated[0],
            (Format::AggregatedV2, false) => &docs.aggregated[1],
            (Format::AggregatedV2Beta1, true) => &docs.aggregated[2],
            (Format::AggregatedV2Beta1, false) => &docs.aggregated[3],
        };
        return Some((format.content_type(), body));
    }
    docs.by_path
        .get(path)
        .map(|body| (Format::Plain.content_type(), body))
}

struct Docs {
    api: Value,
    apis: Value,
    /// v2 core, v2 groups, v2beta1 core, v2beta1 groups.
    aggregated: [Value; 4],
    /// `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`.
    by_path: BTreeMap<String, Value>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut by_path = BTreeMap::new();
        for (group, versions) in groups() {
            if !group.is_empty() {
                by_path.insert(format!("/apis/{group}"), api_group(group, &versions));
            }
            for version in versions {
                let path = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                by_path.insert(path, api_resource_list(group, version));
            }
        }
        Docs {
            api: api_versions(),
            apis: api_group_list(),
            aggregated: [
                aggregated("v2", true),
                aggregated("v2", false),
                aggregated("v2beta1", true),
                aggregated("v2beta1", false),
            ],
            by_path,
        }
    })
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api`: the core group's versions.
fn api_versions() -> Value {
    let versions: Vec<&str> = groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty())
        .flat_map(|(_, v)| v)
        .collect();
    json!({"kind": "APIVersions", "versions": versions, "serverAddressByClientCIDRs": []})
}

/// One `APIGroup`; the first version is preferred.
fn api_group(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    })
}

/// `/apis`: every named group.
fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let mut group = api_group(g, &versions);
            let obj = group.as_object_mut().expect("api_group builds an object");
            obj.remove("kind");
            obj.remove("apiVersion");
            group
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `/api/v1` or `/apis/{group}/{version}`.
fn api_resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in resources_of(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": STATUS_VERBS,
            }));
        }
        if r.scale {
            resources.push(json!({
                "name": format!("{}/scale", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": STATUS_VERBS,
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    })
}

/// An `APIGroupDiscoveryList` in `apidiscovery.k8s.io/{version}`: the
/// core group (`core`) or all others.
fn aggregated(version: &str, core: bool) -> Value {
    let items: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> =
                        resources_of(group, v).map(aggregated_resource).collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if group.is_empty() {
                json!({})
            } else {
                json!({"name": group})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    let mut subresources = Vec::new();
    if r.status {
        subresources.push(json!({
            "subresource": "status",
            "responseKind": kind,
            "verbs": STATUS_VERBS,
        }));
    }
    if r.scale {
        subresources.push(json!({
            "subresource": "scale",
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": STATUS_VERBS,
        }));
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Array(subresources);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::lookup;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn accept_header_picks_the_format() {
        let cases: &[(Option<&str>, Format)] = &[
            (None, Format::Plain),
            (Some(""), Format::Plain),
            (Some("application/json"), Format::Plain),
            (Some("*/*"), Format::Plain),
            (Some(KUBECTL_ACCEPT), Format::AggregatedV2),
            // kubectl 1.26-1.29 ask for v2beta1 only.
            (
                Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"),
                Format::AggregatedV2Beta1,
            ),
            // Parameters in another order, spaces, and q values.
            (
                Some("application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"),
                Format::AggregatedV2,
            ),
            (
                Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
                Format::AggregatedV2Beta1,
            ),
            // More specific wins at equal q, as in kube-apiserver.
            (
                Some("application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
                Format::AggregatedV2,
            ),
            (
                Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0"),
                Format::Plain,
            ),
            // Protobuf and unknown versions are not served: plain JSON.
            (
                Some("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
                Format::Plain,
            ),
            (
                Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
                Format::Plain,
            ),
            (Some(";;,=,garbage;q=x"), Format::Plain),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "{accept:?}");
        }
    }

    #[test]
    fn plain_documents_list_every_resource_with_verbs() {
        let (ct, api) = document("/api", None).unwrap();
        assert_eq!(ct, "application/json");
        assert_eq!(api["kind"], "APIVersions");
        assert_eq!(api["versions"], json!(["v1"]));
        assert!(api["serverAddressByClientCIDRs"].is_array());

        let (_, apis) = document("/apis/", Some("application/json")).unwrap();
        assert_eq!(apis["kind"], "APIGroupList");
        let listed: Vec<&str> = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(listed.contains(&"apps") && listed.contains(&"tmc.kcp.io"));
        assert!(!listed.contains(&""));
        let apps = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .unwrap();
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert_eq!(
            document("/apis/apps", None).unwrap().1["preferredVersion"],
            apps["preferredVersion"]
        );

        let mut seen = 0;
        for (group, versions) in groups() {
            for version in versions {
                let path = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                let (ct, list) = document(&path, Some(KUBECTL_ACCEPT)).unwrap();
                assert_eq!(ct, "application/json", "{path}");
                assert_eq!(list["kind"], "APIResourceList");
                assert_eq!(list["groupVersion"], group_version(group, version));
                for entry in list["resources"].as_array().unwrap() {
                    let name = entry["name"].as_str().unwrap();
                    let verbs = entry["verbs"].as_array().unwrap();
                    assert!(!verbs.is_empty(), "{path} {name} has verbs");
                    assert!(entry["kind"].is_string() && entry["namespaced"].is_boolean());
                    let (plural, sub) = name.split_once('/').unwrap_or((name, ""));
                    let r = lookup(group, version, plural).expect("listed resources are served");
                    if sub == "scale" {
                        assert!(r.scale, "{plural}");
                        assert_eq!(
                            (&entry["group"], &entry["version"], &entry["kind"]),
                            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
                        );
                        assert_eq!(entry["verbs"], json!(["get", "patch", "update"]));
                        continue;
                    }
                    assert_eq!(entry["kind"], r.kind);
                    if sub.is_empty() {
                        seen += 1;
                        assert_eq!(entry["singularName"], r.singular);
                        assert!(verbs.contains(&json!("watch")) && verbs.contains(&json!("patch")));
                    } else {
                        assert_eq!(sub, "status");
                        assert!(r.status);
                        assert_eq!(entry["verbs"], json!(["get", "patch", "update"]));
                    }
                }
            }
        }
        assert_eq!(seen, RESOURCES.len());

        let (_, apps_v1) = document("/apis/apps/v1", None).unwrap();
        let names: Vec<&str> = apps_v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/status"), "{names:?}");
        let deploy = &apps_v1["resources"][names.iter().position(|n| *n == "deployments").unwrap()];
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
    }

    #[test]
    fn aggregated_documents_hold_what_kubectl_needs() {
        for (accept, format, version) in [
            (KUBECTL_ACCEPT, Format::AggregatedV2, "v2"),
            (
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
                Format::AggregatedV2Beta1,
                "v2beta1",
            ),
        ] {
            let mut seen = 0;
            for path in ["/api", "/apis"] {
                let (ct, doc) = document(path, Some(accept)).unwrap();
                assert_eq!(ct, format.content_type());
                assert!(ct.contains(&format!("v={version};")));
                assert_eq!(doc["kind"], "APIGroupDiscoveryList");
                assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
                let items = doc["items"].as_array().unwrap();
                for item in items {
                    let group = item["metadata"]["name"].as_str().unwrap_or("");
                    assert_eq!(group.is_empty(), path == "/api", "{path}: {group}");
                    for v in item["versions"].as_array().unwrap() {
                        assert_eq!(v["freshness"], "Current");
                        let version = v["version"].as_str().unwrap();
                        for res in v["resources"].as_array().unwrap() {
                            seen += 1;
                            let r = lookup(group, version, res["resource"].as_str().unwrap())
                                .expect("served");
                            assert_eq!(
                                res["responseKind"],
                                json!({"group": group, "version": version, "kind": r.kind})
                            );
                            let scope = if r.namespaced {
                                "Namespaced"
                            } else {
                                "Cluster"
                            };
                            assert_eq!(res["scope"], scope);
                            assert_eq!(res["singularResource"], r.singular);
                            assert!(!res["verbs"].as_array().unwrap().is_empty());
                            let subs = res["subresources"].as_array().map_or(0, Vec::len);
                            assert_eq!(
                                subs,
                                usize::from(r.status) + usize::from(r.scale),
                                "{}",
                                r.plural
                            );
                            if r.scale {
                                let sub = &res["subresources"][subs - 1];
                                assert_eq!(sub["subresource"], "scale");
                                assert_eq!(
                                    sub["responseKind"],
                                    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                                );
                            }
                            if r.status {
                                let sub = &res["subresources"][0];
                                assert_eq!(sub["subresource"], "status");
                                assert_eq!(sub["responseKind"], res["responseKind"]);
                                assert!(sub["verbs"].as_array().unwrap().contains(&json!("patch")));
                            }
                        }
                    }
                }
            }
            assert_eq!(seen, RESOURCES.len());
        }
        let (_, core) = document("/api", Some(KUBECTL_ACCEPT)).unwrap();
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn unknown_paths_are_not_discovery() {
        for path in [
            "/",
            "",
            "/api/v2",
            "/apis/apps/v2",
            "/apis/nope",
            "/apis/nope/v1",
            "/api/v1/pods",
            "/apis/apps/v1/deployments",
        ] {
            assert!(document(path, None).is_none(), "{path}");
        }
    }
}
