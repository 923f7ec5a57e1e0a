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
//! starts and used for every forward. It is the peer client of
//! [`crate::raft::client`] (the one `tmc kv` and `tmc member` use), told
//! which replica listens at each `--kv-peers` address: a pool of
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

use super::super::client::{ClientError, PeerClient};
use super::super::tls::PeerTls;
use super::super::Error;
use super::event_loop::CallError;
use super::{internal, NO_FORWARD};
use crate::shard::ShardError;
use crate::store::{Committed, Expectation};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// This replica's client for requests to the other replicas' internal
/// HTTP interface: the one peer client ([`PeerClient`]) told which replica
/// listens at which `--kv-peers` address; clones share its connections.
#[derive(Clone)]
pub struct Forwarder {
    from: HeaderValue,
    addrs: Arc<BTreeMap<u64, String>>,
    client: PeerClient,
}

impl Forwarder {
    /// The client of replica `from`, which reaches replica `n` at
    /// `kv_peers[n]`, over mutual TLS with `tls` (plain TCP without).
    pub fn new(from: u64, kv_peers: BTreeMap<u64, String>, tls: Option<Arc<PeerTls>>) -> Forwarder {
        Forwarder::bounded(from, kv_peers, tls, FORWARD_TIMEOUT)
    }

    /// [`Forwarder::new`] with each exchange bounded by `timeout`.
    fn bounded(
        from: u64,
        kv_peers: BTreeMap<u64, String>,
        tls: Option<Arc<PeerTls>>,
        timeout: Duration,
    ) -> Forwarder {
        let mut client = PeerClient::builder(tls)
            .timeout(timeout)
            .max_answer(MAX_ANSWER);
        for (&id, addr) in &kv_peers {
            client = client.node(id, addr.clone());
        }
        Forwarder {
            from: HeaderValue::from(from),
            addrs: Arc::new(kv_peers),
            client: client.build(),
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
        let headers = [
            (
                HeaderName::from_static(NO_FORWARD),
                HeaderValue::from_static("1"),
            ),
            (HeaderName::from_static(internal::FROM), self.from.clone()),
        ];
        match self
            .client
            .request(addr, method, path, &headers, Bytes::from(body))
            .await
        {
            Ok(answer) => Ok((answer.status, answer.body.into())),
            Err(ClientError::Timeout { .. }) => Err("timed out".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::tls::{self, PeerId};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
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
        let f = Forwarder::bounded(
            1,
            BTreeMap::from([(2, silent)]),
            None,
            Duration::from_millis(300),
        );
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
