//! `tmc proxy`: one front door for the shards.
//!
//! Clients use one URL. For each request the proxy:
//! 1. routes the path as a shard would ([`crate::api::request::route`]):
//!    malformed paths get the shard's 400/404 here, before anything else;
//!    `/livez` answers for the proxy itself, `/readyz` says ok only while
//!    the root shard's own `/readyz` does (without it no path resolves);
//! 2. authenticates the user as a shard would (bearer tokens of the token
//!    file, client certificates of the users' CA; 401 otherwise). Request
//!    headers naming a user (`X-Remote-User`, ...) from a client are
//!    refused with 401: only the proxy may send them;
//! 3. finds the shard: `/clusters/{path}/...` and
//!    `/services/tmc/clusters/{path}/...` by resolving the workspace
//!    ([`resolve`]); paths outside a workspace (`/version`, `/api`,
//!    `/apis`, `/openapi/...`) go to the root shard, `/tmc/shards/{name}/status`,
//!    `/tmc/shards/{name}/workspaces/{op}`
//!    and `/tmc/shards/{name}/backup` to shard `name` (as its `/tmc/status`,
//!    `/tmc/backup`). A workspace that does
//!    not exist answers 403 (as kcp's front proxy: a stranger learns
//!    nothing from the difference between "absent" and "not yours");
//!    a shard that cannot be reached, 503 with `Retry-After`. Wildcard
//!    requests (`/clusters/*/...`) are refused with 400: they span every
//!    shard; a privileged client sends them to each shard;
//! 4. forwards the request to the shard over mutual TLS with the proxy's
//!    certificate ([`upstream`]), the user in `X-Remote-User` and each
//!    group in `X-Remote-Group` (the shard believes those only from the
//!    proxy's certificate: [`crate::api::authn::RequestHeaderAuth`]), the
//!    client's `Authorization` and hop-by-hop headers removed. The request
//!    body (bounded as a shard bounds it: 413 past it) is read first, so
//!    that the request can be sent again; the answer streams back as it
//!    comes (watches, long lists);
//! 5. when the shard answers 421 (`Misdirected Request`: the workspace is
//!    not, or no longer, its own), forgets the cached route, resolves
//!    once more and, if that names another shard, sends the request there.
//!
//! The proxy keeps no state but the bounded cache of routes, so any
//! number of proxies can serve side by side.
//!
//! Left out: the shard registry read from the root workspace (shards are
//! given on the command line until the Shard objects exist), serving
//! wildcard requests across shards, a leader hint per shard (the proxy
//! sends to a shard's API URL; a follower forwards writes to its leader),
//! HTTP/2 towards the shards, `kubectl exec`/port-forward upgrades (tmc
//! serves no pods), and rate limits of its own (the shards' in-flight
//! limits apply; the proxy bounds connections with `--max-connections`).

pub mod resolve;
pub mod upstream;

use crate::api::authn::{self, CertAuth, PeerCertificates, TokenAuth};
use crate::api::request::{self, Target, WorkspaceSel};
use crate::api::status::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use resolve::{ResolveError, Resolver, ShardRef};
use std::sync::Arc;
use upstream::{Upstream, UpstreamError};

/// Bound on a request body the proxy reads (a shard's own bound is 3 MiB;
/// the proxy lets a little more through so that the shard's 413 is the
/// one clients see for bodies near it).
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 64 * 1024;

/// The front proxy.
pub struct Proxy {
    /// Bearer tokens of users.
    pub tokens: TokenAuth,
    /// Client certificates of users.
    pub certs: Option<CertAuth>,
    /// Routes to shards.
    pub resolver: Resolver,
    /// The client of the shards.
    pub upstream: Arc<Upstream>,
}

/// The proxy's router: one handler for every path.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new().fallback(handle).with_state(proxy)
}

async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let mut resp = match forward(&p, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Headers that belong to one connection (RFC 9110 7.6.1), never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn resolve_error(e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound(_) | ResolveError::Misdirected(_) => {
            ApiError::forbidden(format!("access denied: {e}"))
        }
        ResolveError::Unavailable { .. } | ResolveError::UnknownShard { .. } => {
            ApiError::unavailable(e.to_string())
        }
    }
}

async fn forward(p: &Proxy, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let route = request::route(parts.uri.path())?;
    match route.target {
        Target::Livez => return Ok("ok".into_response()),
        Target::Readyz => return Ok(readyz(p).await),
        _ => {}
    }
    let user = authn::authenticate(
        &p.tokens,
        p.certs.as_ref(),
        None,
        &parts.headers,
        parts.extensions.get::<PeerCertificates>(),
    )?;
    let ws = match &route.workspace {
        None => None,
        Some(WorkspaceSel::All) => {
            return Err(ApiError::bad_request(
                "wildcard requests (/clusters/*) are not served through the front proxy: they \
                 span every shard; send them to each shard's API with a privileged identity",
            ))
        }
        Some(WorkspaceSel::One(ws)) => Some(ws.clone()),
    };
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::too_large(format!("the request body is over {MAX_BODY} bytes"))
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    let mut path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if hop_by_hop(name)
            || name == header::AUTHORIZATION
            || authn::is_request_header(name.as_str())
            || name.as_str().starts_with("impersonate-")
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let bad_user = |_| ApiError::bad_request("a user or group name that is not a header value");
    headers.insert(
        authn::REMOTE_USER,
        HeaderValue::from_str(&user.name).map_err(bad_user)?,
    );
    for g in &user.groups {
        if g != crate::authz::AUTHENTICATED {
            headers.append(
                authn::REMOTE_GROUP,
                HeaderValue::from_str(g).map_err(bad_user)?,
            );
        }
    }
    let shard_path;
    let mut shard = match (&ws, &route.target) {
        // `tmc status`, `tmc backup` and `tmc workspace` of one shard:
        // asked of that shard.
        (
            None,
            Target::ShardStatus(Some(name))
            | Target::Backup(Some(name))
            | Target::Workspaces(Some(name), _),
        ) => {
            let path = match &route.target {
                Target::Backup(_) => "/tmc/backup".to_string(),
                Target::Workspaces(_, op) => format!("/tmc/workspaces/{op}"),
                _ => "/tmc/status".to_string(),
            };
            shard_path = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            path_and_query = &shard_path;
            p.resolver.shard_named(name).await.map_err(|e| match e {
                ResolveError::UnknownShard { .. } => ApiError::new(
                    404,
                    "NotFound",
                    format!("no shard {name:?} in the shard registry"),
                ),
                e => resolve_error(e),
            })?
        }
        (None, _) => p.resolver.root().clone(),
        (Some(ws), _) => p.resolver.resolve(ws).await.map_err(resolve_error)?,
    };
    let mut retried = false;
    loop {
        let resp = match send(p, &shard, &parts.method, path_and_query, &headers, &body).await {
            Ok(r) => r,
            // A shard learned from the registry that does not answer:
            // its entry may be stale (a new leader registered its own
            // address). Read it again once.
            Err(e) if e.code == 503 && !retried && p.resolver.forget_shard(&shard.name) => {
                let again = p
                    .resolver
                    .shard_named(&shard.name)
                    .await
                    .map_err(resolve_error)?;
                if again == shard {
                    return Err(e);
                }
                shard = again;
                retried = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(ws) = ws.as_ref().filter(|_| !retried) else {
            return Ok(response(resp));
        };
        if resp.status() != StatusCode::MISDIRECTED_REQUEST {
            return Ok(response(resp));
        }
        // The route was stale: resolve once more.
        p.resolver.forget(ws);
        let again = p.resolver.resolve(ws).await.map_err(resolve_error)?;
        if again == shard {
            return Ok(response(resp));
        }
        tracing::debug!(workspace = ws.as_str(), from = %shard.name, to = %again.name, "route repaired");
        shard = again;
        retried = true;
    }
}

/// Ready while the root shard says it is ready.
async fn readyz(p: &Proxy) -> Response {
    let root = p.resolver.root();
    let mut why = Vec::new();
    for base in root.urls() {
        let uri = format!("{base}/readyz");
        let req = match hyper::http::Request::get(&uri).body(Full::new(Bytes::new())) {
            Ok(r) => r,
            Err(e) => {
                why.push(e.to_string());
                continue;
            }
        };
        match p.upstream.fetch(req, 4096).await {
            Ok((StatusCode::OK, _)) => return "ok".into_response(),
            Ok((code, body)) => {
                why.push(format!("{code}: {}", String::from_utf8_lossy(&body).trim()))
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: root shard {:?}: {}", root.name, why.join("; ")),
    )
        .into_response()
}

async fn send(
    p: &Proxy,
    shard: &ShardRef,
    method: &axum::http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<hyper::http::Response<hyper::body::Incoming>, ApiError> {
    // Each of the shard's URLs in turn while one cannot be connected to
    // (nothing of the request reached it).
    let mut last = None;
    for base in shard.urls() {
        let uri = format!("{base}{path_and_query}");
        let mut req = hyper::http::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .body(Full::new(body.clone()))
            .map_err(|e| ApiError::bad_request(format!("cannot forward to {uri:?}: {e}")))?;
        *req.headers_mut() = headers.clone();
        match p.upstream.send(req).await {
            Ok(resp) => return Ok(resp),
            Err(e @ UpstreamError::Connect(_)) => last = Some(e),
            Err(e @ UpstreamError::Timeout(_)) => {
                return Err(ApiError::timeout(format!("shard {:?}: {e}", shard.name)))
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ApiError::unavailable(format!(
        "shard {:?} is unavailable: {}",
        shard.name,
        last.map(|e| e.to_string())
            .unwrap_or_else(|| "it has no URL".into())
    )))
}

/// The shard's answer, streamed, without its hop-by-hop headers.
fn response(resp: hyper::http::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}
