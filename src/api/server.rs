//! The HTTPS server: TLS (HTTP/2 and HTTP/1.1 by ALPN), authentication,
//! routing ([`super::request`]) and dispatch to discovery, OpenAPI and
//! the object handlers ([`super::handlers`]).
//!
//! Before a request: a free connection slot (`--max-connections`; else
//! the connection is closed at once), a TLS handshake within 10 s, an
//! HTTP/1.1 request head within `--header-read-timeout`; connections with
//! nothing in flight for `--idle-timeout` are shut down ([`super::limits`]
//! has the rules). Every request runs under `--request-timeout` from its
//! head to its response (504 `Timeout`; a watch until its stream starts).
//!
//! Order of checks for every request: the path is routed (400/404 for
//! malformed or unknown paths, before anything else is looked at); `/livez`
//! and `/readyz` answer without credentials; everything else needs an
//! authenticated user (401: a bearer token, else a client certificate); then
//! a slot of the in-flight limits (429 with `Retry-After: 1` when none is
//! free, unless `system:masters`; watches take none), held until the response
//! is sent; `*` (all workspaces) needs `system:masters` and serves lists and
//! watches only (403/405); a resource request must be allowed by RBAC in its
//! workspace (403, decided before the workspace's existence is looked at, so
//! a stranger learns nothing from 404s); the workspace must exist (404; for
//! masters and requests RBAC let through: discovery and the self reviews
//! answer alike for every name); the tmc virtual workspace
//! (`/services/tmc/clusters/...`) serves only the `tmc.kcp.io` group; the
//! body is read with a 3 MiB bound (413); writes of RBAC objects pass the
//! escalation check ([`super::authz::rbac_admission`]). Discovery, OpenAPI,
//! version and the self reviews are open to every authenticated user
//! (Kubernetes' `system:discovery` and `system:basic-user`).
//!
//! Left out: API Priority and Fairness (the in-flight slots are
//! server-wide, first come first served), limits per user or workspace,
//! `--min-request-timeout` for watches, and a limit on the responses
//! HTTP/2 queues for a client beyond the in-flight slots.

use super::authn::{CertAuth, PeerCertificates, RequestHeaderAuth, TokenAuth, User};
use super::handlers::{
    Access, Caller, DeleteOptions, GetOptions, ListOptions, ObjectApi, Query, Reply, WatchOptions,
    WriteOptions,
};
use super::limits::{self, Admitted, Class, Limits};
use super::request::{self, OpenApi, ResourceRequest, Route, Target, WorkspaceSel};
use super::resources::{AUTHORIZATION_GROUP, CORE_KCP_GROUP, TMC_GROUP};
use super::status::{ApiError, ApiResult};
use super::{authz, discovery, object, table, ReadyCheck};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

/// Everything a request needs.
pub struct ApiServer {
    /// Objects over the shard.
    pub objects: Arc<ObjectApi>,
    /// Bearer tokens.
    pub auth: TokenAuth,
    /// Client certificates (`None`: tokens only).
    pub certs: Option<CertAuth>,
    /// The front proxy's request headers (`None`: refused from anyone).
    pub proxy: Option<RequestHeaderAuth>,
    /// Readiness.
    pub ready: ReadyCheck,
    /// The in-flight limits ([`limits::InFlight::new`]).
    pub inflight: limits::InFlight,
    /// Request counts and latencies ([`super::metrics`]).
    pub metrics: super::metrics::ApiMetrics,
    /// `/tmc/status`, where served.
    pub status: Option<super::ShardStatus>,
    /// `/tmc/backup`, where served.
    pub backup: Option<super::BackupSource>,
}

/// The router: one handler for every path (routing is [`request::route`]).
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new().fallback(dispatch).with_state(server)
}

async fn dispatch(State(s): State<Arc<ApiServer>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    // Routed once, for the metrics' labels and the handler.
    let route = request::route(req.uri().path());
    let measured = measured(&req, route.as_ref().ok());
    let mut admitted = Admitted::default();
    let mut resp = match handle(&s, req, route, &mut admitted).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(m) = measured {
        s.metrics
            .record(&m, resp.status().as_u16(), started.elapsed());
    }
    limits::retry_after(&mut resp);
    // The connection holds the slot until the body is sent.
    resp.extensions_mut().insert(admitted);
    resp
}

/// 403 for anyone but `system:masters`, saying they cannot `what`.
fn masters_only(user: &User, what: &str) -> ApiResult<()> {
    if user.is_master() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "user {:?} cannot {what}: only system:masters may",
        user.name
    )))
}

/// `GET /tmc/backup`: a backup of this shard, streamed
/// (`application/gzip`; `crate::backup` has the format), for
/// `system:masters`; `?manifest=true`: only the manifest (JSON) of a cut
/// taken now (`tmc backup hash`).
async fn backup(
    s: &ApiServer,
    user: &User,
    method: &Method,
    manifest_only: bool,
    name: Option<&str>,
) -> ApiResult<Response> {
    masters_only(user, "back up the shard")?;
    let Some(source) = &s.backup else {
        return Err(ApiError::path_not_found());
    };
    not_another_shard(s, name)?;
    if method != Method::GET {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "GET /tmc/backup only",
        ));
    }
    let made = source(manifest_only)
        .await
        .map_err(|e| ApiError::new(503, "ServiceUnavailable", format!("no backup: {e}")))?;
    let file = match made {
        super::Backup::File(f) => f,
        super::Backup::Manifest(m) => {
            return Ok(
                ([(header::CONTENT_TYPE, "application/json")], m.to_string()).into_response(),
            )
        }
    };
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/gzip")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `/tmc/status`: the replicas of this shard, for `system:masters`.
async fn shard_status(s: &ApiServer, user: &User, name: Option<&str>) -> ApiResult<Response> {
    masters_only(user, "read the shard's status")?;
    let Some(status) = &s.status else {
        return Err(ApiError::path_not_found());
    };
    not_another_shard(s, name)?;
    Ok(json_response(200, &(status.gather)().await))
}

/// `/tmc/shards/{name}/...` asked of a shard: only its own name is
/// answered here (the proxy routes the others).
fn not_another_shard(s: &ApiServer, name: Option<&str>) -> ApiResult<()> {
    let own = s.status.as_ref().map(|st| st.shard.as_str());
    match name {
        Some(name) if Some(name) != own => Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "shard {name:?} is not this shard ({}): ask the front proxy, or that shard",
                own.unwrap_or("?")
            ),
        )),
        _ => Ok(()),
    }
}

/// The metrics' labels of a request; `None` for the probes.
fn measured(req: &Request, route: Option<&Route>) -> Option<super::metrics::Request> {
    let method = req.method();
    let Some(route) = route else {
        return Some(super::metrics::Request {
            verb: method.as_str().to_ascii_lowercase(),
            resource: String::new(),
        });
    };
    match &route.target {
        Target::Livez | Target::Readyz => None,
        Target::Resource(r) => {
            let watch = Query::parse(req.uri().query()).watch();
            Some(super::metrics::Request {
                verb: request::verb(method, r, watch)
                    .map(str::to_string)
                    .unwrap_or_else(|_| method.as_str().to_ascii_lowercase()),
                resource: r.info.plural.to_string(),
            })
        }
        _ => Some(super::metrics::Request {
            verb: method.as_str().to_ascii_lowercase(),
            resource: String::new(),
        }),
    }
}

/// What `route` is for the in-flight limits: watches are long-running;
/// get and list, and GET or HEAD of a path that is not a resource, read.
fn class(route: &Route, method: &Method, q: &Query) -> Class {
    let read_method = matches!(*method, Method::GET | Method::HEAD);
    match &route.target {
        Target::Resource(r) => match request::verb(method, r, q.watch()) {
            Ok("watch") => Class::LongRunning,
            Ok("get" | "list") => Class::ReadOnly,
            Ok(_) => Class::Mutating,
            Err(_) if read_method => Class::ReadOnly,
            Err(_) => Class::Mutating,
        },
        _ if read_method => Class::ReadOnly,
        _ => Class::Mutating,
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The version tmc reports (`kubectl version`): the Kubernetes API level it
/// follows.
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": concat!("v1.34.0+tmc-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

async fn handle(
    s: &ApiServer,
    req: Request,
    route: ApiResult<Route>,
    admitted: &mut Admitted,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let route = route?;
    match route.target {
        Target::Livez => return Ok("ok".into_response()),
        Target::Readyz => {
            return Ok(match (s.ready)() {
                Ok(()) => "ok".into_response(),
                Err(why) => {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response()
                }
            })
        }
        _ => {}
    }
    let user = super::authn::authenticate(
        &s.auth,
        s.certs.as_ref(),
        s.proxy.as_ref(),
        &parts.headers,
        parts.extensions.get::<PeerCertificates>(),
    )?;
    let q = Query::parse(parts.uri.query());
    *admitted = s
        .inflight
        .admit(class(&route, &parts.method, &q), user.is_master())?;
    match &route.target {
        Target::Version => return Ok(json_response(200, &version())),
        Target::ShardStatus(name) => return shard_status(s, &user, name.as_deref()).await,
        Target::Backup(name) => {
            let manifest_only = q.get("manifest") == Some("true");
            return backup(s, &user, &parts.method, manifest_only, name.as_deref()).await;
        }
        Target::Workspaces(name, op) => {
            masters_only(&user, "move workspaces between shards")?;
            not_another_shard(s, name.as_deref())?;
            let host = header_str(&parts.headers, header::HOST)
                .unwrap_or_default()
                .to_string();
            let body = read_body(body).await?;
            return super::handlers::transfer::serve(
                &s.objects,
                op,
                &parts.method,
                &q,
                body,
                &host,
            )
            .await;
        }
        Target::OpenApi(which) => {
            return openapi(&route, which, header_str(&parts.headers, header::ACCEPT))
        }
        _ => {}
    }
    // Everything below is in a workspace.
    let Some(sel) = route.workspace.clone() else {
        return Err(ApiError::path_not_found());
    };
    if sel == WorkspaceSel::All {
        masters_only(&user, "access all workspaces (\"*\")")?;
    }
    if let (WorkspaceSel::One(ws), Target::Resource(r)) = (&sel, &route.target) {
        if route.virtual_tmc && r.info.group != TMC_GROUP {
            return Err(ApiError::path_not_found());
        }
        let verb = request::verb(&parts.method, r, q.watch())?;
        authz::authorize(
            s.objects.shard.as_ref(),
            &user,
            ws,
            &authz::attributes(r, verb),
        )
        .await?;
    }
    // Whether a workspace exists is no secret to whoever RBAC let through
    // (nobody is bound in a workspace that does not exist) nor to masters.
    // Discovery and the self reviews, open to everyone, answer the same
    // for every name, so they tell a stranger nothing either.
    let open_to_all = match &route.target {
        Target::Resource(r) => r.info.group == AUTHORIZATION_GROUP,
        _ => true,
    };
    // A shard creating a logical cluster here: it does not exist yet.
    let creates_logical_cluster = matches!(&route.target, Target::Resource(r)
        if r.info.group == CORE_KCP_GROUP && r.info.plural == "logicalclusters")
        && parts.method == Method::POST;
    if let (WorkspaceSel::One(ws), false) = (
        &sel,
        (open_to_all && !user.is_master()) || creates_logical_cluster,
    ) {
        // Only new content is refused in a terminating workspace (as
        // kube's NamespaceLifecycle): deletes and updates go on; a held
        // one takes no write at all.
        let access = match (&route.target, &parts.method) {
            (Target::Resource(_), &Method::GET) | (Target::Resource(_), &Method::HEAD) => {
                Access::Read
            }
            (Target::Resource(_), &Method::POST) => Access::Create,
            (Target::Resource(_), _) => Access::Write,
            _ => Access::Read,
        };
        // Watches, exact lists and continued lists resume from a
        // resourceVersion: one of before the workspace came here is
        // refused (a "not older than" list is served at a newer one).
        let from_revision = match &route.target {
            Target::Resource(r) if r.name.is_none() || q.watch() => {
                let rv = || q.get("resourceVersion").and_then(|v| v.parse().ok());
                let exact = q.get("resourceVersionMatch") == Some("Exact")
                    || (q.get("resourceVersionMatch").is_none()
                        && q.get("limit").is_some_and(|l| l != "0"));
                match q.get("continue") {
                    // A token of this workspace's list (one of another
                    // list is refused as such by the list itself).
                    Some(t) => crate::store::decode_continue(t)
                        .ok()
                        .filter(|(_, start)| {
                            crate::store::Key::decode(start).is_some_and(|k| k.workspace() == ws)
                        })
                        .map(|(rv, _)| rv),
                    None if q.watch() || exact => rv(),
                    None => None,
                }
            }
            _ => None,
        };
        s.objects
            .ensure_workspace(ws, access, from_revision)
            .await?;
    }
    match &route.target {
        Target::Discovery(d) => {
            let path = match d {
                request::Discovery::Api => "/api".to_string(),
                request::Discovery::Apis => "/apis".to_string(),
                request::Discovery::Group(g) => format!("/apis/{g}"),
                request::Discovery::GroupVersion(g, v) if g.is_empty() => format!("/api/{v}"),
                request::Discovery::GroupVersion(g, v) => format!("/apis/{g}/{v}"),
            };
            let accept = header_str(&parts.headers, header::ACCEPT);
            let (ct, doc) =
                discovery::document(&path, accept).ok_or_else(ApiError::path_not_found)?;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, ct), (header::VARY, "Accept")],
                serde_json::to_vec(doc).unwrap_or_default(),
            )
                .into_response())
        }
        Target::Resource(r) => {
            if route.virtual_tmc && r.info.group != TMC_GROUP {
                return Err(ApiError::path_not_found());
            }
            resource(s, &parts, body, r, &sel, &q, &user).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn openapi(route: &Route, which: &OpenApi, accept: Option<&str>) -> ApiResult<Response> {
    let doc = match which {
        OpenApi::V2 => {
            // client-go asks for v2 as protobuf only; never 406.
            let (ct, body) = super::openapi::openapi_v2_response(accept);
            return Ok(([(header::CONTENT_TYPE, ct)], body).into_response());
        }
        OpenApi::V3Index => {
            // URLs are server-relative: keep the workspace prefix in them.
            let mut index = super::openapi::openapi_v3_index().clone();
            if let Some(paths) = index.get_mut("paths").and_then(Value::as_object_mut) {
                for item in paths.values_mut() {
                    if let Some(url) = item.get("serverRelativeURL").and_then(Value::as_str) {
                        item["serverRelativeURL"] = Value::String(format!("{}{url}", route.prefix));
                    }
                }
            }
            index
        }
        OpenApi::V3(g, v) => super::openapi::openapi_v3_group_version(g, v)
            .ok_or_else(ApiError::path_not_found)?
            .clone(),
    };
    Ok(json_response(200, &doc))
}

/// The DeleteOptions of a delete, if its body holds any.
async fn delete_options(headers: &HeaderMap, body: Body) -> ApiResult<Option<Value>> {
    let raw = read_body(body).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    object::decode_body(header_str(headers, header::CONTENT_TYPE), &raw).map(Some)
}

async fn read_body(body: Body) -> ApiResult<Vec<u8>> {
    use http_body_util::BodyExt;
    /// Past the limit the rest is read and dropped up to this much, so that
    /// the client gets its 413 instead of a broken pipe mid-upload.
    const DRAIN: usize = 64 * 1024 * 1024;
    let mut body = body;
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= object::MAX_BODY {
                out.extend_from_slice(&data);
            } else if seen > DRAIN {
                break;
            }
        }
    }
    if seen > object::MAX_BODY {
        return Err(ApiError::too_large("the request body is larger than 3 MiB"));
    }
    Ok(out)
}

async fn resource(
    s: &ApiServer,
    parts: &axum::http::request::Parts,
    body: Body,
    r: &ResourceRequest,
    sel: &WorkspaceSel,
    q: &Query,
    user: &User,
) -> ApiResult<Response> {
    let verb = request::verb(&parts.method, r, q.watch())?;
    // A field selector may name the fields of this kind.
    let q = &q.clone().for_kind(r.info.group, r.info.kind);
    let accept = header_str(&parts.headers, header::ACCEPT);
    let ws = match sel {
        WorkspaceSel::One(ws) => Some(ws),
        WorkspaceSel::All => None,
    };
    let caller = Caller {
        user_agent: header_str(&parts.headers, header::USER_AGENT)
            .unwrap_or("")
            .to_string(),
        host: header_str(&parts.headers, header::HOST)
            .unwrap_or("127.0.0.1:6443")
            .to_string(),
        user: user.name.clone(),
        admit: ws
            .map(|ws| super::admission::admit(s.objects.shard.clone(), user.clone(), ws.clone())),
    };
    system_written(r, verb, ws, user)?;
    if r.info.group == AUTHORIZATION_GROUP {
        let ws = match (verb, ws) {
            ("create", Some(ws)) => ws,
            _ => {
                return Err(ApiError::method_not_allowed(format!(
                    "{} support create in one workspace only",
                    r.info.plural
                )))
            }
        };
        let raw = read_body(body).await?;
        let review =
            super::object::decode_body(header_str(&parts.headers, header::CONTENT_TYPE), &raw)?;
        let (code, v) =
            authz::review(s.objects.shard.as_ref(), user, ws, r.info.kind, review).await?;
        return Ok(json_response(code, &v));
    }
    if r.info.group == crate::authz::rbac::RBAC_GROUP
        && !user.is_master()
        && matches!(verb, "create" | "update" | "patch")
    {
        // The escalation check reads roles from local state: make it
        // current first.
        s.objects.shard.barrier().await?;
    }
    super::admission::prepare(s.objects.shard.as_ref(), r.info, verb, user).await?;
    if r.status && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed(format!(
            "the status subresource does not support {verb}"
        )));
    }
    let one = |what: &str| {
        ws.ok_or_else(|| {
            ApiError::method_not_allowed(format!(
                "{what} is not allowed across all workspaces (\"*\"); name one workspace"
            ))
        })
    };
    if r.scale {
        let ws = one("the scale subresource")?;
        let reply = match verb {
            "get" => s.objects.get_scale(r, ws, &GetOptions::parse(q)).await?,
            "update" => {
                let raw = read_body(body).await?;
                let ct = header_str(&parts.headers, header::CONTENT_TYPE);
                let scale = object::decode_body(ct, &raw)?;
                let opts = WriteOptions::parse(q)?;
                s.objects.update_scale(r, ws, &opts, &caller, scale).await?
            }
            "patch" => {
                let raw = read_body(body).await?;
                let opts = WriteOptions::parse(q)?;
                let ct = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or("");
                s.objects
                    .patch_scale(r, ws, &opts, &caller, ct, &raw)
                    .await?
            }
            _ => {
                return Err(ApiError::method_not_allowed(format!(
                    "the scale subresource does not support {verb}"
                )))
            }
        };
        return Ok(json_response(reply.0, &reply.1));
    }
    // A read answers as its Accept header asks: the object, or a Table
    // (kubectl get), or metadata only; 406 for what cannot be served.
    let output = match verb {
        "get" => table::negotiate(accept, table::Read::Get)?,
        "list" => table::negotiate(accept, table::Read::List)?,
        "watch" => table::negotiate(accept, table::Read::Watch)?,
        _ => table::Output::Object,
    };
    let include = q.get("includeObject");
    let reply: Reply = match verb {
        "watch" => {
            let opts = WatchOptions::parse(q)?;
            let encoder = table::WatchEncoder::new(output, r.info, include)?;
            let stream = s.objects.watch(r, sel, &opts).await?;
            let body = Body::from_stream(futures_util::stream::unfold(
                (stream.rx, encoder),
                |(mut rx, mut encoder)| async move {
                    let line = rx.recv().await?;
                    let line = encoder.encode(line, chrono::Utc::now());
                    Some((Ok::<_, std::io::Error>(line), (rx, encoder)))
                },
            ));
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-cache, private")
                .body(body)
                .map_err(|e| ApiError::internal(e.to_string()));
        }
        "list" => {
            let (code, list) = s.objects.list(r, sel, &ListOptions::parse(q)?).await?;
            let now = chrono::Utc::now();
            let body = table::render(output, r.info, table::Read::List, list, include, now)?;
            (code, body)
        }
        "get" => {
            let (code, obj) = s.objects.get(r, one("get")?, &GetOptions::parse(q)).await?;
            let now = chrono::Utc::now();
            let body = table::render(output, r.info, table::Read::Get, obj, include, now)?;
            (code, body)
        }
        "create" => {
            let ws = one("create")?;
            let raw = read_body(body).await?;
            let obj = object::decode_body(header_str(&parts.headers, header::CONTENT_TYPE), &raw)?;
            let opts = WriteOptions::parse(q)?;
            s.objects.create(r, ws, &opts, &caller, obj).await?
        }
        "update" => {
            let ws = one("update")?;
            let raw = read_body(body).await?;
            let obj = object::decode_body(header_str(&parts.headers, header::CONTENT_TYPE), &raw)?;
            let opts = WriteOptions::parse(q)?;
            s.objects.update(r, ws, &opts, &caller, obj).await?
        }
        "patch" => {
            let ws = one("patch")?;
            let raw = read_body(body).await?;
            let opts = WriteOptions::parse(q)?;
            let ct = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or("");
            s.objects.patch(r, ws, &opts, &caller, ct, &raw).await?
        }
        "delete" => {
            let ws = one("delete")?;
            let body = delete_options(&parts.headers, body).await?;
            let opts = DeleteOptions::parse(q, body.as_ref())?;
            s.objects.delete(r, ws, &opts).await?
        }
        "deletecollection" => {
            let ws = one("deletecollection")?;
            let body = delete_options(&parts.headers, body).await?;
            let selection = ListOptions::parse(q)?;
            let opts = DeleteOptions::parse(q, body.as_ref())?;
            s.objects
                .delete_collection(r, ws, &selection, &opts)
                .await?
        }
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "unsupported verb {other}"
            )))
        }
    };
    Ok(json_response(reply.0, &reply.1))
}

/// kcp's core kinds are written by tmc only: a LogicalCluster is created
/// and deleted by a shard (the one scheduling its workspace), a Shard by
/// the shard it describes, in `root`; masters may do anything. Whatever
/// RBAC a workspace's admins hold, they cannot remove their workspace's
/// marker or forge a registry entry.
fn system_written(
    r: &ResourceRequest,
    verb: &str,
    ws: Option<&crate::store::Workspace>,
    user: &User,
) -> ApiResult<()> {
    if r.info.group != CORE_KCP_GROUP
        || matches!(verb, "get" | "list" | "watch")
        || user.is_master()
    {
        return Ok(());
    }
    let shard = crate::authz::shard_name(user).is_some();
    let in_root = ws.is_some_and(|w| w.parent().is_none());
    let ok = match (r.info.plural, verb) {
        ("logicalclusters", "create" | "delete") => shard,
        ("shards", "create" | "update") => shard && in_root,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "user {:?} cannot {verb} {}: they are written by tmc's shards only",
            user.name,
            crate::api::status::qualified(r.info.group, r.info.plural)
        )))
    }
}

/// Serves `router` over TLS on `listener` (HTTP/2 or HTTP/1.1, by ALPN)
/// until `shutdown` resolves, under the connection limits of `limits`
/// (the in-flight limits are the router's: [`ApiServer::inflight`]);
/// `tls` gives the configuration for each new connection. On shutdown it
/// stops accepting, asks every open connection to close once its requests
/// are answered (HTTP/2 GOAWAY, `Connection: close`), and returns when
/// they have, or after [`DRAIN`] (watches are cut then; their clients
/// watch again elsewhere).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tokio::time::{Duration, Instant};
    tokio::pin!(shutdown);
    let slots = (limits.max_connections > 0).then(|| {
        Arc::new(tokio::sync::Semaphore::new(
            limits
                .max_connections
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ))
    });
    // Refused connections since the last warning (at most one per 10 s).
    let mut refused = 0u64;
    let mut warned: Option<Instant> = None;
    // Told to every connection on shutdown; each holds a clone of `open`.
    let (closing, _) = tokio::sync::watch::channel(false);
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => {
                let _ = closing.send(true);
                drop(open);
                let _ = tokio::time::timeout(DRAIN, all_closed.recv()).await;
                return Ok(());
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    drop(sock);
                    refused += 1;
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(
                            refused,
                            limit = limits.max_connections,
                            "connection limit reached: new connections are closed at once (--max-connections)"
                        );
                        warned = Some(Instant::now());
                        refused = 0;
                    }
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        // The configuration in force now: certificates reloaded from their
        // files apply to the next connection.
        let acceptor = tokio_rustls::TlsAcceptor::from(tls());
        let router = router.clone();
        let limits = limits.clone();
        let (closing, open) = (closing.subscribe(), open.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            serve_connection(acceptor, sock, peer, router, &limits, closing).await;
        });
    }
}

/// How long a stopping server waits for its connections to finish.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// One connection: the TLS handshake, then HTTP until the client closes,
/// the connection is idle ([`limits`] explains the rules) or the server
/// stops (`shutdown`).
async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    sock: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: &Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tokio::time::{Duration, Instant};
    let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(sock)).await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // The client's certificate chain, for authentication per request.
    let chain = PeerCertificates(Arc::new(
        tls.get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    ));
    let conn = limits::Conn::new();
    let svc = limits::ConnService {
        router,
        conn: conn.clone(),
        chain,
        request_timeout: limits.request_timeout,
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1000)
        .keep_alive_interval(Some(limits::HTTP2_PING_INTERVAL))
        .keep_alive_timeout(limits::HTTP2_PING_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    tokio::pin!(connection);
    // Checks for idleness and deadlines, a few per shortest period.
    let every = (limits.idle_timeout.min(limits.request_timeout) / 8)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when the connection is shutting down gracefully.
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let aborted = conn.abort_expired(now);
                if aborted {
                    tracing::debug!(%peer, "a response was not sent within the request timeout");
                }
                match closing {
                    Some(since) => {
                        if now.duration_since(since) >= limits.request_timeout {
                            tracing::debug!(%peer, "closing a connection that did not end after a graceful shutdown");
                            return;
                        }
                    }
                    None => {
                        let idle = conn
                            .idle_for(now)
                            .is_some_and(|d| d >= limits.idle_timeout);
                        if idle || aborted {
                            tracing::debug!(%peer, idle, "shutting a connection down");
                            connection.as_mut().graceful_shutdown();
                            closing = Some(now);
                        }
                    }
                }
            }
        }
    }
}
