//! The server of the internal HTTP interface (the KV interface, forwarded
//! writes, membership), which tells each request who sent it.
//!
//! With mutual TLS ([`PeerTls`]) only holders of a certificate of the peer
//! CA get past the handshake (a refusal is logged): replicas and the
//! operator. Each request carries the [`Caller`] its connection
//! authenticated, and [`check_claims`] holds what a request says about its
//! sender to it:
//! - a request that names the replica it comes from ([`FROM`], set on
//!   every forwarded request) must come from that replica's certificate;
//! - `POST /internal/txn` (a write forwarded to the leader) must come from
//!   a replica, naming itself; the operator writes through `/txn`.
//!
//! Refusals are 403 and logged; nothing is read or written. On plain TCP
//! (`--insecure-peers`) nobody is authenticated and every request passes.

use super::super::tls::{PeerId, PeerTls};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

/// The header a forwarded request names its replica in.
pub const FROM: &str = "x-tmc-from";

/// Who sent a request, as its connection proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Plain TCP (`--insecure-peers`): nobody is authenticated.
    Unauthenticated,
    /// A certificate of the peer CA.
    Peer(PeerId),
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Attached by `serve`; a request without it was not served by it,
        // and gets nothing.
        parts.extensions.get::<Caller>().copied().ok_or_else(|| {
            (StatusCode::FORBIDDEN, "the caller is unknown".to_string()).into_response()
        })
    }
}

fn forbidden(caller: Caller, path: &str, why: String) -> Response {
    tracing::warn!(?caller, path, reason = %why, "refused an internal request");
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Middleware: checks what a request claims about its sender against its
/// [`Caller`] (see the module documentation).
pub async fn check_claims(
    caller: Caller,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let claimed = req.headers().get(FROM).map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|id| *id > 0)
    });
    let node = match caller {
        Caller::Unauthenticated => return next.run(req).await,
        Caller::Peer(p) => p.node(),
    };
    match (claimed, node) {
        (Some(None), _) => {
            return forbidden(caller, &path, format!("a malformed {FROM} header"));
        }
        (Some(Some(c)), Some(n)) if c != n => {
            return forbidden(
                caller,
                &path,
                format!("a request claiming to come from node {c} over the connection of node {n}"),
            );
        }
        (Some(Some(c)), None) => {
            return forbidden(
                caller,
                &path,
                format!("a request claiming to come from node {c} with the operator's certificate"),
            );
        }
        _ => {}
    }
    if path == "/internal/txn" && (node.is_none() || claimed.is_none()) {
        return forbidden(
            caller,
            &path,
            format!("/internal/txn takes writes forwarded by a replica naming itself in {FROM}"),
        );
    }
    next.run(req).await
}

/// Serves `router` on `listener` (mutual TLS with `tls`, plain TCP
/// without), attaching each connection's [`Caller`] to its requests, until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<PeerTls>>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let router = router.layer(axum::middleware::from_fn(check_claims));
    tokio::pin!(shutdown);
    loop {
        let (sock, from) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let (io, caller) = match super::super::tls::accept(tls.as_deref(), sock).await {
                Ok((io, Some(who))) => (io, Caller::Peer(who)),
                Ok((io, None)) => (io, Caller::Unauthenticated),
                Err(e) => {
                    tracing::warn!(%from, error = %e, "refused an internal connection: TLS handshake failed");
                    return;
                }
            };
            let svc = TowerToHyperService::new(tower::ServiceExt::map_request(
                router,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(caller);
                    req
                },
            ));
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(io), svc)
                .await
            {
                tracing::debug!(%from, error = %e, "internal connection ended with an error");
            }
        });
    }
}
