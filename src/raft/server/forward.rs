//! Forwarding: how a follower hands a write (or a membership change) to
//! the leader and gets its answer back.
//!
//! **Protocol.** Raft only lets the leader propose; a follower that is
//! asked to write learns the leader's id from [`Error::NotLeader`] and
//! sends the request once to that replica's internal HTTP interface (its
//! address from `--kv-peers`):
//! - a write: `POST /internal/txn`, body the [`Txn`](crate::store::Txn) as
//!   JSON; the leader answers 200 with `Result<Committed, WireError>` as
//!   JSON ([`ForwardedWrite`]), so the follower learns *why* a write
//!   failed ([`WireError`]) and answers that as its own (409, 500, 503,
//!   504); an answer that is no such JSON is a 500;
//! - a membership change: `POST|DELETE /members/{id}` (see the `members`
//!   module), whose status and body are passed back as they are.
//!
//! Every forwarded request carries [`NO_FORWARD`] (so a stale view of the
//! leader costs one 503, never a loop) and names the replica it comes from
//! in [`internal::FROM`], which the leader holds against the certificate
//! of the connection ([`internal::check_claims`]).
//!
//! **Connections.** One [`Forwarder`] per replica, made when the replica
//! starts and used for every forward: a hyper client with a pool of
//! kept-alive HTTP/1.1 connections per leader (one per request in flight;
//! idle ones close after 90 s). A new connection is TCP, then, with
//! `--peer-tls-dir`, a TLS handshake presenting this replica's peer
//! certificate and requiring the server's to be valid for `tmc-peer-<id>` of
//! the replica it dials ([`PeerTls::connect`]; the current material, so a
//! rotation reaches new connections); plain TCP with `--insecure-peers`. A
//! request is retried on a fresh connection only when a pooled one closed
//! before the request was written (nothing was sent, so nothing can be
//! applied twice).
//!
//! **Bounds.** Each exchange (connect, handshake, request and the whole
//! answer) is bounded by 15 s ([`FORWARD_TIMEOUT`]), the answer by
//! [`MAX_ANSWER`] bytes; a failure is an error the caller turns into a 502
//! (the outcome of the write is then unknown: the leader may have
//! committed it).
//!
//! Left out: HTTP/2 multiplexing (a burst of concurrent forwards opens one
//! connection per request in flight), and re-reading `--kv-peers`
//! (addresses are static, like the raft ones).

use super::super::tls::{self, PeerTls};
use super::super::Error;
use super::event_loop::CallError;
use super::{internal, NO_FORWARD};
use crate::shard::ShardError;
use crate::store::{Committed, Expectation};
use axum::http::{Method, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Each forwarded exchange, at most.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Answers to forwarded requests longer than this are refused.
pub const MAX_ANSWER: usize = 16 << 20;

/// Why a write failed, as it crosses from the leader back to the follower
/// that forwarded it (`POST /internal/txn`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum WireError {
    /// A precondition failed.
    Conflict {
        /// The key, printable.
        key: String,
        /// What was expected.
        expected: Expectation,
        /// What the store held.
        found: crate::store::Found,
    },
    /// An invalid name or request.
    Invalid(String),
    /// The raft layer refused (not leader, no leader).
    NotLeader(Option<u64>),
    /// Timed out or leadership lost: the outcome is unknown.
    Timeout(String),
    /// Forwarding to the leader failed (it may have died mid-request): the
    /// outcome is unknown.
    Forward(String),
    /// Too many requests in flight: nothing was queued; retry later.
    Busy(String),
    /// Anything else.
    Internal(String),
}

impl From<CallError> for WireError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Busy => WireError::Busy(e.to_string()),
            e => WireError::Internal(e.to_string()),
        }
    }
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader } => WireError::NotLeader(leader),
            Error::NoLeader => WireError::NotLeader(None),
            e @ (Error::Timeout { .. } | Error::LeadershipLost) => {
                WireError::Timeout(e.to_string())
            }
            Error::Store(crate::store::Error::Conflict {
                key,
                expected,
                found,
            }) => WireError::Conflict {
                key,
                expected,
                found,
            },
            Error::Store(e @ crate::store::Error::InvalidName(_)) => {
                WireError::Invalid(e.to_string())
            }
            e => WireError::Internal(e.to_string()),
        }
    }
}

impl From<WireError> for ShardError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Conflict {
                key,
                expected,
                found,
            } => ShardError::Store(crate::store::Error::Conflict {
                key,
                expected,
                found,
            }),
            WireError::Invalid(m) => ShardError::Internal(m),
            WireError::NotLeader(_) => ShardError::Unavailable(Error::NoLeader.to_string()),
            WireError::Busy(m) => ShardError::Unavailable(m),
            WireError::Timeout(m) | WireError::Forward(m) => ShardError::Timeout(m),
            WireError::Internal(m) => ShardError::Internal(m),
        }
    }
}

/// The answer of `POST /internal/txn`.
pub type ForwardedWrite = Result<Committed, WireError>;

/// A connection to a replica's internal HTTP interface: TCP, or TLS over it.
struct PeerConn(TokioIo<tls::PeerStream>);

impl Connection for PeerConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// The host of the URI a request to replica `id` is sent to: the name its
/// certificate must carry. Never resolved: [`Dialer`] maps it to the
/// replica's address.
fn host_of(id: u64) -> String {
    tls::node_name(id)
}

/// Opens connections for the client: finds the replica a URI names in
/// `--kv-peers`, dials it and, with peer TLS, shakes hands as this replica.
#[derive(Clone)]
struct Dialer {
    addrs: Arc<BTreeMap<u64, String>>,
    tls: Option<Arc<PeerTls>>,
}

impl Dialer {
    async fn dial(self, uri: Uri) -> std::io::Result<PeerConn> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let to = uri
            .host()
            .and_then(|h| h.strip_prefix(tls::PEER_NAME)?.strip_prefix('-'))
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| invalid(format!("{uri} names no replica")))?;
        let addr = self
            .addrs
            .get(&to)
            .ok_or_else(|| invalid(format!("no KV address of node {to}")))?;
        let sock = tokio::net::TcpStream::connect(addr.as_str()).await?;
        let _ = sock.set_nodelay(true);
        let s = tls::connect(self.tls.as_deref(), sock, Some(to))
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS: {e}")))?;
        Ok(PeerConn(TokioIo::new(s)))
    }
}

impl tower::Service<Uri> for Dialer {
    type Response = PeerConn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<PeerConn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().dial(uri))
    }
}

/// This replica's client for requests to the other replicas' internal
/// HTTP interface; clones share its connections.
#[derive(Clone)]
pub struct Forwarder {
    from: u64,
    addrs: Arc<BTreeMap<u64, String>>,
    client: Client<Dialer, Full<Bytes>>,
    timeout: Duration,
}

impl Forwarder {
    /// The client of replica `from`, which reaches replica `n` at
    /// `kv_peers[n]`, over mutual TLS with `tls` (plain TCP without).
    pub fn new(from: u64, kv_peers: BTreeMap<u64, String>, tls: Option<Arc<PeerTls>>) -> Forwarder {
        let addrs = Arc::new(kv_peers);
        let dialer = Dialer {
            addrs: addrs.clone(),
            tls,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(dialer);
        Forwarder {
            from,
            addrs,
            client,
            timeout: FORWARD_TIMEOUT,
        }
    }

    /// One request to replica `to` (JSON `body`), marked [`NO_FORWARD`] and
    /// naming this replica in [`internal::FROM`], bounded by
    /// [`FORWARD_TIMEOUT`] and [`MAX_ANSWER`]. Returns the status and the
    /// body; an error says why no whole answer came.
    pub async fn request(
        &self,
        to: u64,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let addr = self
            .addrs
            .get(&to)
            .ok_or_else(|| format!("no KV address of node {to}"))?;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", host_of(to)))
            .header(axum::http::header::HOST, addr.as_str())
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .header(NO_FORWARD, "1")
            .header(internal::FROM, self.from.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let answer = self.client.request(req).await.map_err(|e| chain(&e))?;
            let code = answer.status();
            let body = Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!("an answer over {MAX_ANSWER} bytes")
                    } else {
                        chain(&*e)
                    }
                })?
                .to_bytes();
            Ok::<_, String>((code, body.to_vec()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

/// An error and its sources, `outer: inner: ...`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::tls::PeerId;
    use std::sync::Mutex;

    /// What a test server saw of each request: the number of the
    /// connection it came on, who the connection proved to be, and the
    /// marking headers.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        conn: usize,
        who: Option<PeerId>,
        from: Option<String>,
        no_forward: bool,
    }

    /// Serves an echo of each request body on a loopback port (mutual TLS
    /// with `tls`); returns its address and what it saw.
    async fn echo_server(tls: Option<Arc<PeerTls>>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = seen.clone();
        tokio::spawn(async move {
            for conn in 0.. {
                let (sock, _) = listener.accept().await.unwrap();
                let (tls, log) = (tls.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok((io, who)) = tls::accept(tls.as_deref(), sock).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: axum::http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let h = req.headers();
                                log.lock().unwrap().push(Seen {
                                    conn,
                                    who,
                                    from: h
                                        .get(internal::FROM)
                                        .map(|v| v.to_str().unwrap().to_string()),
                                    no_forward: h.contains_key(NO_FORWARD),
                                });
                                let body = req.into_body().collect().await?.to_bytes();
                                Ok::<_, hyper::Error>(axum::http::Response::new(Full::new(body)))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn forwards_share_one_kept_alive_connection_and_name_their_sender() {
        let (addr, seen) = echo_server(None).await;
        let f = Forwarder::new(1, BTreeMap::from([(2, addr)]), None);
        for n in 0..5 {
            let body = format!("write {n}").into_bytes();
            let (code, answer) = f
                .request(2, Method::POST, "/echo", body.clone())
                .await
                .unwrap();
            assert_eq!(code, StatusCode::OK);
            assert_eq!(answer, body);
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        for s in &seen {
            assert_eq!(s.conn, 0, "a new connection: {seen:?}");
            assert_eq!(s.who, None);
            assert_eq!(s.from.as_deref(), Some("1"));
            assert!(s.no_forward);
        }
    }

    /// Peer TLS material for replicas `ids` in a fresh directory.
    fn peer_material(ids: &[u64]) -> (tempfile::TempDir, Vec<Arc<PeerTls>>) {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::api::tls::ensure_material(dir.path(), &[]).unwrap();
        let tls = ids
            .iter()
            .map(|&id| {
                let node = crate::api::tls::ensure_node_dir(&files, id).unwrap();
                PeerTls::load(&node).unwrap()
            })
            .collect();
        (dir, tls)
    }

    #[tokio::test]
    async fn over_mutual_tls_the_connection_is_kept_and_proves_the_sender() {
        let (_dir, tls) = peer_material(&[1, 2]);
        let (addr, seen) = echo_server(Some(tls[1].clone())).await;
        let f = Forwarder::new(1, BTreeMap::from([(2, addr)]), Some(tls[0].clone()));
        for _ in 0..3 {
            let (code, answer) = f
                .request(2, Method::POST, "/echo", b"{}".to_vec())
                .await
                .unwrap();
            assert_eq!((code, answer.as_slice()), (StatusCode::OK, &b"{}"[..]));
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for s in &seen {
            assert_eq!(s.conn, 0, "a new connection: {seen:?}");
            assert_eq!(s.who, Some(PeerId::Node(1)));
        }
    }

    #[tokio::test]
    async fn a_server_whose_certificate_names_another_replica_is_refused() {
        // Node 3's server at the address this replica knows as node 2's.
        let (_dir, tls) = peer_material(&[1, 3]);
        let (addr, seen) = echo_server(Some(tls[1].clone())).await;
        let f = Forwarder::new(1, BTreeMap::from([(2, addr)]), Some(tls[0].clone()));
        let err = f
            .request(2, Method::POST, "/echo", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.contains("TLS"), "{err}");
        assert!(seen.lock().unwrap().is_empty());
    }

    /// A server that accepts and reads, then answers `answer` (or nothing).
    async fn raw_server(answer: Option<Vec<u8>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let _ = s.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = s.write_all(&a).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_leader_times_out_and_a_huge_answer_is_refused() {
        let silent = raw_server(None).await;
        let mut f = Forwarder::new(1, BTreeMap::from([(2, silent)]), None);
        f.timeout = Duration::from_millis(300);
        let err = f.request(2, Method::POST, "/", vec![]).await.unwrap_err();
        assert_eq!(err, "timed out");

        let mut huge = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_ANSWER + 1
        )
        .into_bytes();
        huge.resize(huge.len() + MAX_ANSWER + 1, b'x');
        let addr = raw_server(Some(huge)).await;
        let f = Forwarder::new(1, BTreeMap::from([(2, addr)]), None);
        let err = f.request(2, Method::POST, "/", vec![]).await.unwrap_err();
        assert!(err.contains("an answer over"), "{err}");

        let err = f.request(9, Method::POST, "/", vec![]).await.unwrap_err();
        assert_eq!(err, "no KV address of node 9");
    }
}
