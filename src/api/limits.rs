//! Limits of the Kubernetes API server against resource bombs: requests
//! in flight, a request deadline, the time to send a request's header,
//! idle connections and the number of connections, as kube-apiserver has
//! them (`--max-requests-inflight`, `--max-mutating-requests-inflight`,
//! `--request-timeout`, Go's `ReadHeaderTimeout` and `IdleTimeout`).
//!
//! **Connections.** At most [`Limits::max_connections`] are open at once,
//! counted from `accept` (the TLS handshake included) to the close. One
//! over the limit is accepted and closed at once, without a TLS
//! handshake; the refusals are logged at warn, at most every 10 s with
//! their count. Closing beats leaving the connection in the kernel's
//! backlog until a slot frees: the client learns at once that it was
//! refused and backs off or tries another replica, instead of hanging in
//! a queue it cannot see until its own timeout, and the backlog cannot
//! fill with connections nobody will serve. (kube-apiserver has no
//! connection limit; it relies on Go's runtime and the in-flight limits.)
//!
//! **The TLS handshake** must end within
//! [`Limits::tls_handshake_timeout`] (10 s).
//!
//! **The request header** of HTTP/1.1 must arrive within
//! [`Limits::header_read_timeout`] (hyper's `header_read_timeout`). In
//! hyper 1.x that timer runs whenever the connection waits for a
//! request head, so it also bounds the wait for the next request on an
//! idle keep-alive connection (Go starts it at the request's first
//! byte): an idle HTTP/1.1 connection is closed after the shorter of the
//! header and idle timeouts; with the defaults, 30 s. HTTP/2 has no such
//! timer (a stream is a request once its HEADERS are complete), the idle
//! timeout covers a connection that never completes one.
//!
//! **Idle connections.** A connection counts the requests in flight on
//! it, from the request head to the drop of the response body, so that
//! an open watch counts. One with none in flight for
//! [`Limits::idle_timeout`] is shut down gracefully (HTTP/1.1: closed;
//! HTTP/2: GOAWAY, streams already open end normally). A connection
//! that has not ended a request deadline after a graceful shutdown
//! (e.g. a client that stopped reading a response) is closed. HTTP/2
//! connections are pinged every 30 s; one whose ping is not answered
//! within 20 s is closed, so dead peers do not hold watches.
//!
//! **In flight.** After authentication (401 first, as in kube-apiserver)
//! every request but `/livez`, `/readyz` and watches (long-running,
//! not counted, as in kube) takes a slot: a mutating one (a verb other
//! than get, list and watch; for paths that are not resources, a method
//! other than GET and HEAD) of [`Limits::max_mutating_requests_inflight`],
//! a read of [`Limits::max_requests_inflight`]. The slot is held until
//! the response is sent (bodies go out in pieces of 16 KiB, so a client
//! that does not read holds its slot, as it holds kube-apiserver's
//! handler); none free: 429 at once with `Retry-After: 1` and a Status
//! of reason `TooManyRequests`, no queue. Like kube-apiserver, a member
//! of `system:masters` gets through when the slots are taken (the
//! operator must always get an answer). Zero turns a limit off.
//!
//! **Deadline.** A request must produce its response within
//! [`Limits::request_timeout`] of its head, body upload and handler
//! included; else 504 with a Status of reason `Timeout` (kube's wording).
//! A response still being sent at the deadline is abandoned: its body and
//! slot are dropped and its connection shut down gracefully (kube-apiserver
//! aborts the connection or stream too). A watch is under the deadline
//! only until its response starts; then `timeoutSeconds` rules.
//!
//! Left out: kube's API Priority and Fairness (queues and shares per
//! user and flow; tmc's limits are server-wide and first come, first
//! served), per-user or per-workspace limits, `--min-request-timeout`
//! for watches (a watch without `timeoutSeconds` lives until the client
//! or the connection ends), a write timeout on the socket beyond the
//! request deadline, and a limit on the memory of responses queued by
//! HTTP/2 (each is bounded by the in-flight limits while it is sent).

use super::authn::PeerCertificates;
use super::status::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits of the API server; [`Limits::default`] gives
/// kube-apiserver's where it has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Read-only requests in flight at once (0: no limit). kube: 400.
    pub max_requests_inflight: usize,
    /// Mutating requests in flight at once (0: no limit). kube: 200.
    pub max_mutating_requests_inflight: usize,
    /// The deadline of a request from its head to its response (for a
    /// watch, to the start of its response). kube: 60 s.
    pub request_timeout: Duration,
    /// The time an HTTP/1.1 request head may take to arrive. kube
    /// (Go's `ReadHeaderTimeout`): 32 s.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight this long is closed.
    /// kube (Go's `IdleTimeout`): 90 s.
    pub idle_timeout: Duration,
    /// Connections open at once (0: no limit). kube: none.
    pub max_connections: usize,
    /// The time a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Pings on HTTP/2 connections, and how long an answer may take.
pub const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// See [`HTTP2_PING_INTERVAL`].
pub const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Response bodies are handed to hyper in pieces of at most this much, so
/// that a body (and its in-flight slot) lives until the client has taken
/// most of it; 16 KiB is HTTP/2's default frame size.
const CHUNK: usize = 16 * 1024;

/// What a request is, for the in-flight limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A watch: not counted.
    LongRunning,
    /// get, list, and GET or HEAD of other paths.
    ReadOnly,
    /// Everything else.
    Mutating,
}

/// The server-wide in-flight slots.
pub struct InFlight {
    reads: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

fn slots(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))))
}

impl InFlight {
    /// Slots as `limits` say.
    pub fn new(limits: &Limits) -> InFlight {
        InFlight {
            reads: slots(limits.max_requests_inflight),
            mutating: slots(limits.max_mutating_requests_inflight),
        }
    }

    /// A slot for a request of `class`; when none is free, 429
    /// ([`too_many_requests`]) unless `exempt` (`system:masters`).
    pub fn admit(&self, class: Class, exempt: bool) -> Result<Admitted, ApiError> {
        let sem = match class {
            Class::LongRunning => {
                return Ok(Admitted {
                    permit: None,
                    long_running: true,
                })
            }
            Class::ReadOnly => &self.reads,
            Class::Mutating => &self.mutating,
        };
        let permit = match sem {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(Arc::new(p)),
                Err(_) if exempt => None,
                Err(_) => return Err(too_many_requests()),
            },
        };
        Ok(Admitted {
            permit,
            long_running: false,
        })
    }
}

/// A request's admission, carried by its response (an extension) to the
/// connection, which holds the slot until the body is sent.
#[derive(Clone, Debug, Default)]
pub struct Admitted {
    permit: Option<Arc<OwnedSemaphorePermit>>,
    long_running: bool,
}

/// 429 of the in-flight limits, with kube's message; the response also
/// needs `Retry-After` ([`retry_after`]).
pub fn too_many_requests() -> ApiError {
    ApiError {
        code: 429,
        reason: "TooManyRequests",
        message: "Too many requests, please try again later.".into(),
        details: Some(serde_json::json!({ "retryAfterSeconds": 1 })),
    }
}

/// Adds `Retry-After: 1` to a 429 of [`too_many_requests`].
pub fn retry_after(resp: &mut Response<Body>) {
    if matches!(resp.status().as_u16(), 429 | 503)
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

/// 504 of a request past its deadline, as kube-apiserver words it.
pub fn timed_out() -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
    )
}

/// One connection's requests in flight and responses under a deadline.
#[derive(Default)]
pub struct Conn {
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    active: usize,
    /// Since when none is active (`None`: never was, i.e. since creation).
    idle_since: Option<Instant>,
    /// Response bodies being sent, with their deadlines.
    sending: Vec<(Instant, Weak<Mutex<Option<Live>>>)>,
}

/// A request in flight on a [`Conn`]; ends when dropped.
pub struct Active(Arc<Conn>);

impl Drop for Active {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.active -= 1;
        if s.active == 0 {
            s.idle_since = Some(Instant::now());
        }
    }
}

impl Conn {
    /// A connection opened now.
    pub fn new() -> Arc<Conn> {
        Arc::new(Conn {
            state: Mutex::new(ConnState {
                active: 0,
                idle_since: Some(Instant::now()),
                sending: Vec::new(),
            }),
        })
    }

    /// A request starts.
    pub fn begin(self: &Arc<Conn>) -> Active {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).active += 1;
        Active(self.clone())
    }

    /// How long no request has been in flight (`None`: one is).
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.active > 0 {
            return None;
        }
        s.idle_since.map(|t| now.saturating_duration_since(t))
    }

    /// Drops the response bodies past their deadline (and their slots);
    /// whether there was one.
    pub fn abort_expired(&self, now: Instant) -> bool {
        let mut expired = Vec::new();
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.sending.retain(|(deadline, live)| match live.upgrade() {
                None => false,
                Some(l) if *deadline <= now => {
                    expired.push(l);
                    false
                }
                Some(_) => true,
            });
        }
        for l in &expired {
            l.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        !expired.is_empty()
    }

    fn register(&self, deadline: Instant, live: &Arc<Mutex<Option<Live>>>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.sending.len() >= 64 {
            s.sending.retain(|(_, l)| l.strong_count() > 0);
        }
        s.sending.push((deadline, Arc::downgrade(live)));
    }
}

/// What a response body holds while it is sent.
struct Live {
    body: Body,
    /// The rest of a data frame larger than [`CHUNK`].
    pending: Bytes,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

/// A response body: sent in pieces of [`CHUNK`], holding its request's
/// slot and its place among the connection's requests in flight until it
/// ends or is dropped, and failing once [`Conn::abort_expired`] took it.
struct Tracked {
    live: Arc<Mutex<Option<Live>>>,
    done: bool,
    _active: Active,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let live = self.live.clone();
        let mut slot = live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = slot.as_mut() else {
            self.done = true;
            return Poll::Ready(Some(Err(
                "the response was not sent within the request timeout".into(),
            )));
        };
        if !l.pending.is_empty() {
            let n = l.pending.len().min(CHUNK);
            return Poll::Ready(Some(Ok(Frame::data(l.pending.split_to(n)))));
        }
        match Pin::new(&mut l.body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                // The slot is free as soon as the body ends.
                slot.take();
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > CHUNK {
                        l.pending = data.split_off(CHUNK);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        match self.live.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(l) => l.pending.is_empty() && l.body.is_end_stream(),
            // Polled next, to fail.
            None => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = slot.as_ref() else {
            return SizeHint::default();
        };
        let p = l.pending.len() as u64;
        let inner = l.body.size_hint();
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + p),
            None => {
                let mut h = SizeHint::new();
                h.set_lower(inner.lower() + p);
                if let Some(u) = inner.upper() {
                    h.set_upper(u + p);
                }
                h
            }
        }
    }
}

/// The service of one connection: the request deadline, the in-flight
/// count of the connection, the client's certificates as an extension.
#[derive(Clone)]
pub struct ConnService {
    /// The API's router.
    pub router: axum::Router,
    /// This connection.
    pub conn: Arc<Conn>,
    /// The client's certificate chain.
    pub chain: PeerCertificates,
    /// [`Limits::request_timeout`].
    pub request_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        use axum::response::IntoResponse;
        req.extensions_mut().insert(self.chain.clone());
        let active = self.conn.begin();
        let deadline = Instant::now() + self.request_timeout;
        let router = self.router.clone();
        let conn = self.conn.clone();
        Box::pin(async move {
            let call = tower::ServiceExt::oneshot(router, req);
            let resp = match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out().into_response(),
            };
            let (mut parts, body) = resp.into_parts();
            let admitted = parts.extensions.remove::<Admitted>().unwrap_or_default();
            let live = Arc::new(Mutex::new(Some(Live {
                body,
                pending: Bytes::new(),
                _permit: admitted.permit,
            })));
            if !admitted.long_running {
                conn.register(deadline, &live);
            }
            let body = Tracked {
                live,
                done: false,
                _active: active,
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_full_class_answers_429_unless_exempt_and_frees_on_drop() {
        let f = InFlight::new(&Limits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        });
        let held = f.admit(Class::ReadOnly, false).unwrap();
        let e = f.admit(Class::ReadOnly, false).unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        // Another class, watches, and masters get through.
        let w = f.admit(Class::Mutating, false).unwrap();
        assert!(f.admit(Class::LongRunning, false).unwrap().long_running);
        assert!(f.admit(Class::ReadOnly, true).unwrap().permit.is_none());
        drop(held);
        assert!(f.admit(Class::ReadOnly, false).unwrap().permit.is_some());
        drop(w);
        let off = InFlight::new(&Limits {
            max_requests_inflight: 0,
            ..Limits::default()
        });
        let _a = off.admit(Class::ReadOnly, false).unwrap();
        let _b = off.admit(Class::ReadOnly, false).unwrap();
    }

    #[tokio::test]
    async fn bodies_go_in_pieces_keep_their_length_and_abort_at_the_deadline() {
        let conn = Conn::new();
        let data = vec![7u8; CHUNK * 2 + 5];
        let sem = Arc::new(Semaphore::new(1));
        let mk = |permit| {
            let live = Arc::new(Mutex::new(Some(Live {
                body: Body::from(data.clone()),
                pending: Bytes::new(),
                _permit: Some(Arc::new(permit)),
            })));
            (
                live.clone(),
                Tracked {
                    live,
                    done: false,
                    _active: conn.begin(),
                },
            )
        };
        let (_, mut t) = mk(sem.clone().try_acquire_owned().unwrap());
        assert_eq!(conn.idle_for(Instant::now()), None);
        assert_eq!(HttpBody::size_hint(&t).exact(), Some(data.len() as u64));
        let mut sizes = Vec::new();
        while let Some(f) = t.frame().await {
            sizes.push(f.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, vec![CHUNK, CHUNK, 5]);
        assert_eq!(sem.available_permits(), 1, "the slot is free at the end");
        drop(t);
        assert!(conn.idle_for(Instant::now()).is_some());

        let (live, mut t) = mk(sem.clone().try_acquire_owned().unwrap());
        conn.register(Instant::now(), &live);
        drop(live);
        assert!(conn.abort_expired(Instant::now()));
        assert_eq!(sem.available_permits(), 1, "an aborted body frees its slot");
        assert!(t.frame().await.unwrap().is_err());
        assert!(!conn.abort_expired(Instant::now()));
    }
}
