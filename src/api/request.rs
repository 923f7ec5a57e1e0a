//! Routing: from a request path to what it addresses.
//!
//! Paths follow kcp: `/clusters/{workspace}` (or the tmc virtual workspace
//! `/services/tmc/clusters/{workspace}`) followed by a kube-apiserver path:
//! `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`,
//! `.../namespaces/{ns}/{resource}[/{name}[/{subresource}]]`,
//! `.../{resource}[/{name}[/{subresource}]]`, the legacy `/watch/` prefix,
//! `/version` and `/openapi/...`. `*` as the workspace addresses every
//! workspace (lists and watches only). Outside a workspace only `/livez`,
//! `/readyz`, `/healthz`, `/version` and `/openapi/...` exist; the health
//! endpoints also answer under a workspace prefix, for clients whose
//! server URL carries one (`kubectl get --raw /livez`).
//!
//! The raw path is parsed before any decoding, and strictly: empty
//! segments (`//`), `.` and `..`, and percent-escapes (except `%3A` for the
//! `:` of a workspace path) are refused with 400, so a path can never name
//! one thing to this parser and another to a later layer. Paths are case
//! sensitive (`/Clusters/...` is 404), as in kube-apiserver.

use super::resources::{self, ResourceInfo};
use super::status::{ApiError, ApiResult};
use crate::store::Workspace;

/// Which workspaces a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceSel {
    /// One workspace.
    One(Workspace),
    /// Every workspace (`*`): lists and watches, privileged.
    All,
}

/// A discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
}

/// An OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenApi {
    /// `/openapi/v2`.
    V2,
    /// `/openapi/v3`.
    V3Index,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    V3(String, String),
}

/// A request for objects of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The namespace from the path (namespaced resources only).
    pub namespace: Option<String>,
    /// The object name from the path.
    pub name: Option<String>,
    /// The `status` subresource.
    pub status: bool,
    /// The `scale` subresource.
    pub scale: bool,
    /// Came through the legacy `/watch/` prefix.
    pub watch_path: bool,
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/livez`.
    Livez,
    /// `/readyz` or `/healthz`.
    Readyz,
    /// `/version`.
    Version,
    /// `/tmc/status` (this shard's replicas) or
    /// `/tmc/shards/{name}/status` (shard `name`'s, through the proxy):
    /// for `tmc status`, `system:masters` only.
    ShardStatus(Option<String>),
    /// `/tmc/backup` (this shard) or `/tmc/shards/{name}/backup` (shard
    /// `name`, through the proxy): a backup (`tmc backup`),
    /// `system:masters` only.
    Backup(Option<String>),
    /// `/tmc/workspaces/{op}` (this shard) or
    /// `/tmc/shards/{name}/workspaces/{op}` (shard `name`, through the
    /// proxy): moving a workspace between shards
    /// (`crate::api::handlers::transfer`), `system:masters` only.
    Workspaces(Option<String>, String),
    /// An OpenAPI document.
    OpenApi(OpenApi),
    /// Discovery in a workspace.
    Discovery(Discovery),
    /// Objects.
    Resource(ResourceRequest),
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The workspace, when the path names one.
    pub workspace: Option<WorkspaceSel>,
    /// Came through the tmc virtual workspace (`/services/tmc/...`).
    pub virtual_tmc: bool,
    /// The prefix that addressed the workspace (`/clusters/root`), for
    /// URLs the server hands back (OpenAPI's `serverRelativeURL`).
    pub prefix: String,
    /// What the rest of the path addresses.
    pub target: Target,
}

fn segment(raw: &str, what: &str) -> ApiResult<String> {
    if raw.is_empty() {
        return Err(ApiError::bad_request(format!(
            "empty path segment (\"//\") where a {what} was expected"
        )));
    }
    if raw == "." || raw == ".." {
        return Err(ApiError::bad_request(format!(
            "path segment {raw:?} is not allowed"
        )));
    }
    if raw.contains('%') {
        return Err(ApiError::bad_request(format!(
            "percent-encoded characters are not allowed in a {what}: {raw:?}"
        )));
    }
    Ok(raw.to_string())
}

fn workspace_segment(raw: &str) -> ApiResult<WorkspaceSel> {
    let decoded = raw.replace("%3A", ":").replace("%3a", ":");
    let s = segment(&decoded, "workspace")?;
    if s == "*" {
        return Ok(WorkspaceSel::All);
    }
    Workspace::parse(&s)
        .map(WorkspaceSel::One)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Routes a raw request path (without the query).
pub fn route(path: &str) -> ApiResult<Route> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ApiError::bad_request("the path must start with /"));
    };
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    // Tolerate one trailing slash, as Go's mux does for directories.
    let parts: &[&str] = match parts.split_last() {
        Some((last, init)) if last.is_empty() && !init.is_empty() => init,
        _ => &parts,
    };
    let (workspace, virtual_tmc, consumed) = match parts {
        ["clusters", ws, ..] => (Some(workspace_segment(ws)?), false, 2),
        ["services", "tmc", "clusters", ws, ..] => (Some(workspace_segment(ws)?), true, 4),
        _ => (None, false, 0),
    };
    let prefix = if consumed == 0 {
        String::new()
    } else {
        format!("/{}", parts[..consumed].join("/"))
    };
    let rest = &parts[consumed..];
    for (i, p) in rest.iter().enumerate() {
        segment(p, if i == 0 { "path" } else { "name" })?;
    }
    let target = match (workspace.is_some(), rest) {
        (_, ["livez"]) => Target::Livez,
        (_, ["readyz"] | ["healthz"]) => Target::Readyz,
        (_, ["version"]) => Target::Version,
        (false, ["tmc", "status"]) => Target::ShardStatus(None),
        (false, ["tmc", "backup"]) => Target::Backup(None),
        (false, ["tmc", "shards", name, "backup"]) => Target::Backup(Some(name.to_string())),
        (false, ["tmc", "shards", name, "status"]) => Target::ShardStatus(Some(name.to_string())),
        (false, ["tmc", "workspaces", op]) => Target::Workspaces(None, op.to_string()),
        (false, ["tmc", "shards", name, "workspaces", op]) => {
            Target::Workspaces(Some(name.to_string()), op.to_string())
        }
        (_, ["openapi", "v2"]) => Target::OpenApi(OpenApi::V2),
        (_, ["openapi", "v3"]) => Target::OpenApi(OpenApi::V3Index),
        (_, ["openapi", "v3", "api", v]) => {
            Target::OpenApi(OpenApi::V3(String::new(), v.to_string()))
        }
        (_, ["openapi", "v3", "apis", g, v]) => {
            Target::OpenApi(OpenApi::V3(g.to_string(), v.to_string()))
        }
        (true, ["api"]) => Target::Discovery(Discovery::Api),
        (true, ["apis"]) => Target::Discovery(Discovery::Apis),
        (true, ["apis", g]) => Target::Discovery(Discovery::Group(g.to_string())),
        (true, ["api", v]) => {
            Target::Discovery(Discovery::GroupVersion(String::new(), v.to_string()))
        }
        (true, ["apis", g, v]) => {
            Target::Discovery(Discovery::GroupVersion(g.to_string(), v.to_string()))
        }
        (true, ["api", v, tail @ ..]) => Target::Resource(resource_path("", v, tail)?),
        (true, ["apis", g, v, tail @ ..]) => Target::Resource(resource_path(g, v, tail)?),
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(Route {
        workspace,
        virtual_tmc,
        prefix,
        target,
    })
}

/// Subresources of a namespace that are not resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn resource_path(group: &str, version: &str, tail: &[&str]) -> ApiResult<ResourceRequest> {
    let (watch_path, tail) = match tail {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, tail),
    };
    // `namespaces/{ns}/{resource}...` unless it is a namespace's own
    // subresource (`namespaces/{name}/status`).
    let (namespace, tail) = match tail {
        ["namespaces", ns, next, rest @ ..] if !NAMESPACE_SUBRESOURCES.contains(next) => {
            let mut t = vec![*next];
            t.extend_from_slice(rest);
            (Some(ns.to_string()), t)
        }
        _ => (None, tail.to_vec()),
    };
    let (plural, name, sub) = match t3(&tail) {
        Some(x) => x,
        None => return Err(ApiError::path_not_found()),
    };
    let info = resources::lookup(group, version, plural)
        .or_else(|| resources::lookup_review(group, version, plural))
        .ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::path_not_found());
    }
    let (status, scale) = match sub {
        None => (false, false),
        Some("status") if info.status => (true, false),
        Some("scale") if info.scale => (false, true),
        Some(_) => return Err(ApiError::path_not_found()),
    };
    if watch_path && (status || scale) {
        return Err(ApiError::path_not_found());
    }
    Ok(ResourceRequest {
        info,
        namespace,
        name: name.map(str::to_string),
        status,
        scale,
        watch_path,
    })
}

fn t3<'a>(tail: &[&'a str]) -> Option<(&'a str, Option<&'a str>, Option<&'a str>)> {
    match tail {
        [p] => Some((p, None, None)),
        [p, n] => Some((p, Some(n), None)),
        [p, n, s] => Some((p, Some(n), Some(s))),
        _ => None,
    }
}

/// The request's verb, as RBAC and audit name it.
pub fn verb(
    method: &axum::http::Method,
    req: &ResourceRequest,
    watch_param: bool,
) -> ApiResult<&'static str> {
    use axum::http::Method;
    let named = req.name.is_some();
    Ok(match *method {
        Method::GET | Method::HEAD => {
            if req.watch_path || watch_param {
                "watch"
            } else if named {
                "get"
            } else {
                "list"
            }
        }
        Method::POST if !named => "create",
        Method::PUT if named => "update",
        Method::PATCH if named => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {method}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match route(path).unwrap().target {
            Target::Resource(r) => r,
            t => panic!("{path}: {t:?}"),
        }
    }

    #[test]
    fn kcp_paths_route() {
        let r =
            route("/clusters/root:acme/apis/apps/v1/namespaces/default/deployments/web").unwrap();
        assert_eq!(
            r.workspace,
            Some(WorkspaceSel::One(Workspace::parse("root:acme").unwrap()))
        );
        assert_eq!(r.prefix, "/clusters/root:acme");
        let Target::Resource(d) = r.target else {
            panic!()
        };
        assert_eq!(d.info.kind, "Deployment");
        assert_eq!(d.namespace.as_deref(), Some("default"));
        assert_eq!(d.name.as_deref(), Some("web"));

        let n = res("/clusters/root/api/v1/namespaces/foo");
        assert_eq!(
            (n.info.kind, n.namespace, n.name.as_deref()),
            ("Namespace", None, Some("foo"))
        );
        let s = res("/clusters/root/api/v1/namespaces/foo/status");
        assert!(s.status);
        assert_eq!(s.info.kind, "Namespace");
        let all = res("/clusters/root/api/v1/configmaps");
        assert_eq!((all.namespace, all.name), (None, None));
        let w = res("/clusters/*/apis/apps/v1/watch/namespaces/x/deployments");
        assert!(w.watch_path);
        assert_eq!(
            route("/clusters/*/api/v1/configmaps").unwrap().workspace,
            Some(WorkspaceSel::All)
        );
        let st = res("/clusters/root/apis/apps/v1/namespaces/d/deployments/web/status");
        assert!(st.status);
        let v =
            route("/services/tmc/clusters/root%3Aacme/apis/tmc.kcp.io/v1alpha1/workloadplacements")
                .unwrap();
        assert!(v.virtual_tmc);
        assert_eq!(v.prefix, "/services/tmc/clusters/root%3Aacme");
        assert_eq!(
            route("/clusters/root/api").unwrap().target,
            Target::Discovery(Discovery::Api)
        );
        assert_eq!(
            route("/clusters/root/apis/").unwrap().target,
            Target::Discovery(Discovery::Apis)
        );
        assert_eq!(route("/livez").unwrap().target, Target::Livez);
        assert_eq!(
            route("/openapi/v3/apis/apps/v1").unwrap().target,
            Target::OpenApi(OpenApi::V3("apps".into(), "v1".into()))
        );
    }

    #[test]
    fn tricks_and_unknowns_are_refused() {
        let code = |p: &str| route(p).err().map(|e| e.code);
        for (path, want) in [
            ("/clusters/root/../other/api/v1/configmaps", 400),
            ("/clusters/root/api/v1/namespaces/a/configmaps/..", 400),
            ("/clusters/root/api/v1/namespaces/a%2Fb/configmaps", 400),
            ("/clusters/root//api/v1/configmaps", 400),
            ("/clusters/Root/api/v1/configmaps", 400),
            ("/clusters/root:/api/v1/configmaps", 400),
            ("/clusters/root:a%2F..:b/api/v1/configmaps", 400),
            ("/Clusters/root/api/v1/configmaps", 404),
            ("/clusters/root/api/v1/pods", 404),
            ("/clusters/root/api/v1/ConfigMaps", 404),
            ("/clusters/root/apis/apps/v2/deployments", 404),
            (
                "/clusters/root/api/v1/namespaces/a/configmaps/b/status",
                404,
            ),
            ("/clusters/root/api/v1/namespaces/a/namespaces", 404),
            ("/clusters/root/api/v1/namespaces/a/configmaps/b/c/d", 404),
            ("/api/v1/configmaps", 404),
            ("relative", 400),
        ] {
            assert_eq!(code(path), Some(want), "{path}");
        }
    }
}
