//! The one client of the internal HTTP interface of the replicas (the KV
//! interface, membership, forwarded writes), over the peer transport's
//! mutual TLS ([`super::tls`]) or plain TCP (`--insecure-peers`): `tmc kv`
//! and `tmc member` use it, and so does each replica to forward a
//! follower's writes to the leader
//! ([`Forwarder`](super::server::Forwarder)).
//!
//! It is hyper's client ([`hyper_util::client::legacy`]) with a connector
//! of its own: a TCP connection, then the client side of
//! [`PeerTls::connect`] with this side's certificate (the operator's for
//! `tmc kv` and `tmc member`, a replica's for a replica), verifying the
//! server against the peer CA (`peer-ca.crt`). Which name the server's
//! certificate must carry depends on the address dialled: an address
//! given to [`PeerClientBuilder::node`] must be replica `id`'s
//! (`tmc-peer-<id>`), any other address any replica's (`tmc-peer`).
//! Connections are HTTP/1.1, kept alive and reused per address (a pooled
//! connection idle for 90 s is closed); a request that never started on
//! a reused connection the server had closed is retried once on a new one,
//! never a request the server may have seen.
//!
//! Every request is bounded in time (connect, TLS handshake, request and
//! answer together) and its answer in size; the body is read whole.
//!
//! Left out: HTTP/2, and a limit on connections per address (one per
//! request in flight, as hyper's pool does).

use super::tls::PeerTls;
use crate::util::root_cause;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address and path do not make a URI.
    #[error("bad address or path {0:?}: {1}")]
    BadUri(String, String),
    /// No connection: refused, unreachable, or the TLS handshake failed.
    #[error("{0}")]
    Connect(String),
    /// The connection failed during the exchange.
    #[error("{0}")]
    Exchange(String),
    /// No whole answer within the client's timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The address dialled.
        addr: String,
        /// The client's bound.
        timeout: Duration,
    },
    /// The answer's body is longer than the client accepts.
    #[error("an answer over {0} bytes")]
    TooLarge(usize),
}

/// An answer: status and whole body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

/// Builds a [`PeerClient`].
pub struct PeerClientBuilder {
    tls: Option<Arc<PeerTls>>,
    nodes: HashMap<String, u64>,
    timeout: Duration,
    max_answer: usize,
}

impl PeerClientBuilder {
    /// The server at `addr` is replica `id`: over TLS its certificate must
    /// name it.
    pub fn node(mut self, id: u64, addr: impl Into<String>) -> Self {
        self.nodes.insert(addr.into(), id);
        self
    }

    /// The bound on one request: connection, handshake, request and whole
    /// answer (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest answer body accepted (default: no limit).
    pub fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// The client.
    pub fn build(self) -> PeerClient {
        let connector = PeerConnector {
            tls: self.tls.clone(),
            nodes: Arc::new(self.nodes),
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        PeerClient {
            http,
            secure: self.tls.is_some(),
            timeout: self.timeout,
            max_answer: self.max_answer,
        }
    }
}

/// A client of the replicas' internal HTTP interface; cheap to clone (the
/// clones share the connection pool).
#[derive(Clone)]
pub struct PeerClient {
    http: hyper_util::client::legacy::Client<PeerConnector, Full<Bytes>>,
    secure: bool,
    timeout: Duration,
    max_answer: usize,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("tls", &self.secure)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PeerClient {
    /// A client presenting `tls`'s certificate (plain TCP without).
    pub fn builder(tls: Option<Arc<PeerTls>>) -> PeerClientBuilder {
        PeerClientBuilder {
            tls,
            nodes: HashMap::new(),
            timeout: Duration::from_secs(30),
            max_answer: usize::MAX,
        }
    }

    /// `method path` at `addr` (`host:port`) with a JSON `body` and extra
    /// `headers`; the status and the whole body of the answer.
    pub async fn request(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let scheme = if self.secure { "https" } else { "http" };
        let text = format!("{scheme}://{addr}{path}");
        let uri: Uri = text.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            ClientError::BadUri(text.clone(), e.to_string())
        })?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::BadUri(text.clone(), e.to_string()))?;
        let exchange = async {
            let res = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect(root_cause(&e))
                } else {
                    ClientError::Exchange(root_cause(&e))
                }
            })?;
            let status = res.status();
            let body = Limited::new(res.into_body(), self.max_answer)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        ClientError::TooLarge(self.max_answer)
                    } else {
                        ClientError::Exchange(root_cause(e.as_ref()))
                    }
                })?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// Dials an address of the URI and wraps the connection in peer TLS.
#[derive(Clone)]
struct PeerConnector {
    tls: Option<Arc<PeerTls>>,
    nodes: Arc<HashMap<String, u64>>,
}

impl tower::Service<Uri> for PeerConnector {
    type Response = PeerConn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<PeerConn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (tls, nodes) = (self.tls.clone(), self.nodes.clone());
        Box::pin(async move {
            let addr = uri
                .authority()
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address in the URI")
                })?
                .as_str()
                .to_string();
            let sock = tokio::net::TcpStream::connect(&addr).await?;
            let _ = sock.set_nodelay(true);
            let node = nodes.get(&addr).copied();
            let io = super::tls::connect(tls.as_deref(), sock, node)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("TLS: {e}")))?;
            Ok(PeerConn(TokioIo::new(io)))
        })
    }
}

/// A connection of [`PeerConnector`]: hyper's I/O traits over a peer
/// stream.
struct PeerConn(TokioIo<super::tls::PeerStream>);

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
        hyper::rt::Read::poll_read(Pin::new(&mut self.0), cx, buf)
    }
}

impl hyper::rt::Write for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.0), cx)
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write_vectored(Pin::new(&mut self.0), cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server on loopback answering every request with `body`, over
    /// `tls` (plain without); counts the connections it accepted.
    async fn server(tls: Option<Arc<PeerTls>>, body: Bytes) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (tls, body) = (tls.clone(), body.clone());
                tokio::spawn(async move {
                    let Ok((io, _)) = super::super::tls::accept(tls.as_deref(), sock).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    /// `tmc certs` material: the operator's in the directory, replica
    /// `id`'s in `nodes/<id>`.
    fn material() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::api::tls::ensure_material(dir.path(), &[]).unwrap();
        for id in [1, 2] {
            crate::api::tls::ensure_node_dir(&files, id).unwrap();
        }
        dir
    }

    async fn get(client: &PeerClient, addr: &str) -> Result<Answer, ClientError> {
        client
            .request(addr, Method::GET, "/status", &[], Bytes::new())
            .await
    }

    #[tokio::test]
    async fn the_server_must_hold_the_certificate_its_address_calls_for() {
        let d = material();
        let node2 = PeerTls::load(&d.path().join("nodes/2")).unwrap();
        let (addr, _) = server(Some(node2), Bytes::from_static(b"{}")).await;
        let operator = || Some(PeerTls::load(d.path()).unwrap());
        // Any replica will do, or node 2 named as such.
        let any = PeerClient::builder(operator()).build();
        assert_eq!(get(&any, &addr).await.unwrap().status, StatusCode::OK);
        let as_2 = PeerClient::builder(operator()).node(2, &addr).build();
        assert_eq!(get(&as_2, &addr).await.unwrap().status, StatusCode::OK);
        // Node 2's certificate where node 1 is expected: no connection.
        let as_1 = PeerClient::builder(operator()).node(1, &addr).build();
        match get(&as_1, &addr).await {
            Err(ClientError::Connect(e)) => assert!(e.contains("certificate"), "{e}"),
            other => panic!("node 2 passed for node 1: {other:?}"),
        }
        // A client of another peer CA is refused by the server.
        let other = material();
        let stranger = PeerClient::builder(Some(PeerTls::load(other.path()).unwrap())).build();
        assert!(get(&stranger, &addr).await.is_err());
        // Plain TCP against mutual TLS gets no answer.
        assert!(get(&PeerClient::builder(None).build(), &addr)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn connections_are_kept_alive_and_answers_bounded() {
        let (addr, accepted) = server(None, Bytes::from(vec![b'x'; 2048])).await;
        let client = PeerClient::builder(None).build();
        for _ in 0..3 {
            let a = get(&client, &addr).await.unwrap();
            assert_eq!((a.status, a.body.len()), (StatusCode::OK, 2048));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
        let small = PeerClient::builder(None).max_answer(1024).build();
        assert!(matches!(
            get(&small, &addr).await,
            Err(ClientError::TooLarge(1024))
        ));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_costs_the_timeout_only() {
        // Accepts and then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.unwrap());
            }
        });
        let client = PeerClient::builder(None)
            .timeout(Duration::from_millis(200))
            .build();
        assert!(matches!(
            get(&client, &addr).await,
            Err(ClientError::Timeout { .. })
        ));
    }
}
