//! The API server's limits against resource bombs (`tmc::api::limits`),
//! attacked over raw TLS sockets and real HTTP/1.1 and HTTP/2 clients
//! (hyper over rustls) on a real `tmc dev` process with small limits:
//! half a request header, a trickled body, idle keep-alive connections of
//! both protocols (while watches on other connections stay), requests held
//! in flight (a body that does not come, a response nobody reads) and one
//! connection too many.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};

/// A user outside `system:masters` (only masters get through a full
/// in-flight limit).
const ALICE: &str = "alice-token-limits-0123456789";

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// A `tmc dev` process; killed when dropped (its log printed if the test
/// failed).
struct Dev {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    dir: tempfile::TempDir,
    addr: String,
    admin: String,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            eprintln!("--- tmc dev log ---\n{log}");
        }
    }
}

impl Dev {
    /// `tmc dev` with these extra flags and no controllers, ready.
    async fn start(flags: &[&str]) -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("tmc");
        // The material first, to add alice's token to it.
        let out = Command::new(env!("CARGO_BIN_EXE_tmc"))
            .args(["certs", "--nodes", "1", "--dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let tokens = data.join("tokens.csv");
        let mut text = std::fs::read_to_string(&tokens).unwrap();
        let admin = text.split(',').next().unwrap().to_string();
        text.push_str(&format!("{ALICE},alice,u-alice\n"));
        std::fs::write(&tokens, text).unwrap();
        let log = std::fs::File::create(dir.path().join("dev.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tmc"))
            .args(["dev", "--listen", "127.0.0.1:0", "--no-controllers"])
            .arg("--data-dir")
            .arg(&data)
            .args(flags)
            .env("RUST_LOG", "info,tmc::api=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let line = tokio::task::block_in_place(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line
        });
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("https://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        use rustls::pki_types::pem::PemObject;
        let ca = rustls::pki_types::CertificateDer::from_pem_file(data.join("ca.crt")).unwrap();
        let dev = Dev {
            child,
            _stdout: stdout,
            dir,
            addr,
            admin,
            ca,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = dev.call1("GET", "/readyz", None, Vec::new()).await {
                break;
            }
            assert!(Instant::now() < deadline, "tmc dev never got ready");
            sleep(Duration::from_millis(100)).await;
        }
        dev
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("dev.log")
    }

    /// A TLS connection offering `alpn`.
    async fn tls(&self, alpn: &[u8]) -> std::io::Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(&self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
    }

    /// An HTTP/1.1 connection; the task ends when the connection does.
    async fn h1(&self) -> std::io::Result<(H1, tokio::task::JoinHandle<()>)> {
        let tls = self.tls(b"http/1.1").await?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        Ok((
            send,
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        ))
    }

    /// An HTTP/2 connection whose streams' receive windows are `window`
    /// bytes (a response nobody reads stops there).
    async fn h2(&self, window: u32) -> (H2, tokio::task::JoinHandle<()>) {
        let tls = self.tls(b"h2").await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(window)
                .handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        (
            send,
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr))
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.body(Full::new(Bytes::from(body))).unwrap()
    }

    /// One request on a new HTTP/1.1 connection: status and body.
    async fn call1(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        let (mut send, _conn) = self.h1().await.map_err(|e| e.to_string())?;
        let mut req = self.request(method, path, token, body);
        req.headers_mut().insert("host", self.addr.parse().unwrap());
        *req.uri_mut() = path.parse().unwrap();
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        Ok(read(resp).await)
    }
}

/// Status and body (JSON, or the text as a JSON string) of a response.
async fn read(resp: hyper::Response<hyper::body::Incoming>) -> (u16, Value) {
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (code, v)
}

/// Reads from `s` until it ends (EOF or an error); panics if it is still
/// open after `within`. Returns what was read.
async fn closed_within(s: &mut Tls, within: Duration, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A raw HTTP/1.1 response: status, head, body (read to Content-Length).
async fn raw_response(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u16, String, Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= i + 4 + len {
                let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                let body = serde_json::from_slice(&got[i + 4..i + 4 + len]).unwrap_or(Value::Null);
                return (code, head, body);
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the connection ended: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

fn configmap(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"a": "b"},
    }))
    .unwrap()
}

const CONFIGMAPS: &str = "/clusters/root/api/v1/namespaces/default/configmaps";
const SSAR: &str = "/clusters/root/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

fn ssar() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "configmaps", "namespace": "default"}},
    }))
    .unwrap()
}

/// Asserts a 429 of the in-flight limits, as kube-apiserver sends it.
fn assert_429(code: u16, v: &Value, what: &str) {
    assert_eq!(code, 429, "{what}: {v}");
    assert_eq!(v["kind"], "Status", "{what}: {v}");
    assert_eq!(v["reason"], "TooManyRequests", "{what}: {v}");
    assert_eq!(
        v["message"], "Too many requests, please try again later.",
        "{what}"
    );
}

/// Half a request header is cut off after --header-read-timeout while the
/// server serves others; a body that trickles past --request-timeout gets
/// 504 Timeout; a response its client does not read holds its in-flight
/// slot only until the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_slow_bodies_and_slow_readers_time_out() {
    let dev = Dev::start(&[
        "--header-read-timeout",
        "1s",
        "--request-timeout",
        "3s",
        "--max-requests-inflight",
        "1",
    ])
    .await;

    // (a) Slowloris: connections that send half a header and stop.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = dev.tls(b"http/1.1").await.unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        s.flush().await.unwrap();
        stalled.push(s);
    }
    let (code, v) = dev.call1("GET", "/livez", None, Vec::new()).await.unwrap();
    assert_eq!((code, v), (200, json!("ok")), "others are served meanwhile");
    for s in &mut stalled {
        let got = closed_within(s, Duration::from_secs(10), "half a header").await;
        assert!(
            !String::from_utf8_lossy(&got).contains(" 200 "),
            "no answer to half a header"
        );
    }
    let (code, _) = dev.call1("GET", "/livez", None, Vec::new()).await.unwrap();
    assert_eq!(code, 200);

    // (d) A create whose body trickles in, a byte every 200 ms: 504 at the
    // request timeout, before the body is complete.
    let mut s = dev.tls(b"http/1.1").await.unwrap();
    let body = configmap("trickled");
    let head = format!(
        "POST {CONFIGMAPS} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        dev.addr,
        dev.admin,
        body.len() + 10_000
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    s.flush().await.unwrap();
    let (mut r, mut w) = tokio::io::split(s);
    let trickle = tokio::spawn(async move {
        for b in body[10..].iter().chain(std::iter::repeat(&b' ')) {
            sleep(Duration::from_millis(200)).await;
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    let (code, _, v) = timeout(Duration::from_secs(15), raw_response(&mut r))
        .await
        .expect("an answer while the body still trickles");
    trickle.abort();
    assert_eq!(code, 504, "{v}");
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["reason"], "Timeout", "{v}");
    assert_eq!(
        v["message"],
        "Timeout: request did not complete within requested timeout - context deadline exceeded"
    );

    // (f) A slow reader: an HTTP/2 response (OpenAPI, hundreds of KiB)
    // nobody reads holds the one read slot; alice gets 429 with
    // Retry-After, until the request timeout drops the response.
    let (mut h2, _conn) = dev.h2(16 * 1024).await;
    let held = h2
        .send_request(dev.request("GET", "/openapi/v2", Some(&dev.admin), Vec::new()))
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let len: usize = held.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        len > 256 * 1024,
        "a response larger than the windows: {len}"
    );
    let started = Instant::now();
    let (mut h1, _c) = dev.h1().await.unwrap();
    let resp = h1
        .send_request(dev.request("GET", "/version", Some(ALICE), Vec::new()))
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    let (code, v) = read(resp).await;
    assert_429(code, &v, "a read while the read slot is held");
    // Free again once the request timeout abandons the unread response.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, v) = dev
            .call1("GET", "/version", Some(ALICE), Vec::new())
            .await
            .unwrap();
        if code == 200 {
            assert_eq!(v["major"], "1");
            break;
        }
        assert_429(code, &v, "while the slot is held");
        assert!(Instant::now() < deadline, "the slot was never freed");
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the slot was held until the request timeout"
    );
    drop(held);
}

/// A watch on `CONFIGMAPS` over `send` (HTTP/1.1 or HTTP/2).
async fn watch<B>(send: impl std::future::Future<Output = hyper::Result<hyper::Response<B>>>) -> B {
    let resp = send.await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

/// The next watch event whose object is named `name`.
async fn event_named(body: &mut hyper::body::Incoming, buf: &mut Vec<u8>, name: &str) -> Value {
    loop {
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            if ev["object"]["metadata"]["name"] == name {
                return ev;
            }
        }
        let frame = body
            .frame()
            .await
            .expect("the watch ended")
            .expect("the watch broke");
        if let Ok(d) = frame.into_data() {
            buf.extend_from_slice(&d);
        }
    }
}

/// Keep-alive connections of HTTP/1.1 and HTTP/2 with no request in
/// flight, and a TLS connection that never sends one, are closed after
/// --idle-timeout; connections carrying a watch are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_watches_stay() {
    let dev = Dev::start(&["--idle-timeout", "1s"]).await;
    let path = format!("{CONFIGMAPS}?watch=1");
    // Watches first, over both protocols.
    let (mut w1, w1_conn) = dev.h1().await.unwrap();
    let mut req = dev.request("GET", &path, Some(&dev.admin), Vec::new());
    *req.uri_mut() = path.parse().unwrap();
    req.headers_mut().insert("host", dev.addr.parse().unwrap());
    let mut watch1 = watch(w1.send_request(req)).await;
    let (mut w2, w2_conn) = dev.h2(1 << 20).await;
    let mut watch2 =
        watch(w2.send_request(dev.request("GET", &path, Some(&dev.admin), Vec::new()))).await;

    // Idle ones: after a request each, and one with none at all.
    let (mut h1, h1_conn) = dev.h1().await.unwrap();
    let mut req = dev.request("GET", "/livez", None, Vec::new());
    *req.uri_mut() = "/livez".parse().unwrap();
    req.headers_mut().insert("host", dev.addr.parse().unwrap());
    assert_eq!(read(h1.send_request(req).await.unwrap()).await.0, 200);
    let (mut h2, h2_conn) = dev.h2(1 << 20).await;
    let resp = h2
        .send_request(dev.request("GET", "/livez", None, Vec::new()))
        .await
        .unwrap();
    assert_eq!(read(resp).await.0, 200);
    let mut silent = dev.tls(b"http/1.1").await.unwrap();
    let within = Duration::from_secs(10);
    timeout(within, h1_conn)
        .await
        .expect("an idle HTTP/1.1 connection is closed")
        .unwrap();
    timeout(within, h2_conn)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap();
    closed_within(&mut silent, within, "a connection without a request").await;
    // Several idle periods later the watches' connections are open and
    // deliver events.
    sleep(Duration::from_secs(3)).await;
    assert!(!w1_conn.is_finished() && !w2_conn.is_finished());
    let (code, v) = dev
        .call1(
            "POST",
            CONFIGMAPS,
            Some(&dev.admin),
            configmap("after-idle"),
        )
        .await
        .unwrap();
    assert_eq!(code, 201, "{v}");
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    for (body, buf) in [(&mut watch1, &mut b1), (&mut watch2, &mut b2)] {
        let ev = timeout(within, event_named(body, buf, "after-idle"))
            .await
            .expect("the event");
        assert_eq!(ev["type"], "ADDED");
    }
}

/// With one read and one mutating slot: a read held in flight (a response
/// its client does not read yet) and a create held in flight (a body that
/// has not all come) make alice's reads and writes get 429 with
/// Retry-After while masters and /readyz get through; once each finishes,
/// alice's requests work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_limits_answer_429_until_a_slot_frees() {
    let dev = Dev::start(&[
        "--max-requests-inflight",
        "1",
        "--max-mutating-requests-inflight",
        "1",
    ])
    .await;
    let alice = |method: &'static str, path: &'static str, body: Vec<u8>| {
        let dev = &dev;
        async move {
            let (mut send, _c) = dev.h1().await.unwrap();
            let mut req = dev.request(method, path, Some(ALICE), body);
            *req.uri_mut() = path.parse().unwrap();
            req.headers_mut().insert("host", dev.addr.parse().unwrap());
            let resp = send.send_request(req).await.unwrap();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let (code, v) = read(resp).await;
            (code, v, retry)
        }
    };

    // Reads: the admin's OpenAPI response, not read yet, holds the slot.
    let (mut h2, _conn) = dev.h2(16 * 1024).await;
    let held = h2
        .send_request(dev.request("GET", "/openapi/v2", Some(&dev.admin), Vec::new()))
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let (code, v, retry) = alice("GET", "/version", Vec::new()).await;
    assert_429(code, &v, "alice's read");
    assert_eq!(retry.as_deref(), Some("1"));
    let (code, v, _) = alice("GET", CONFIGMAPS, Vec::new()).await;
    assert_429(code, &v, "alice's list");
    let (code, _) = dev
        .call1("GET", "/version", Some(&dev.admin), Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 200, "system:masters get through");
    let (code, _) = dev.call1("GET", "/readyz", None, Vec::new()).await.unwrap();
    assert_eq!(code, 200, "/readyz is never limited");
    let (code, v, _) = alice("POST", SSAR, ssar()).await;
    assert_eq!(code, 201, "writes have their own slots: {v}");
    // The admin reads the response: the slot frees.
    let all = held.into_body().collect().await.unwrap().to_bytes();
    assert!(all.len() > 256 * 1024, "{}", all.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v, _) = alice("GET", "/version", Vec::new()).await;
        if code == 200 {
            break;
        }
        assert_429(code, &v, "alice's read");
        assert!(Instant::now() < deadline, "the read slot never freed");
        sleep(Duration::from_millis(50)).await;
    }

    // Writes: a create whose body has not all come holds the slot (the
    // server's 100 Continue says it is reading the body, i.e. admitted).
    let mut s = dev.tls(b"http/1.1").await.unwrap();
    let body = configmap("held");
    let head = format!(
        "POST {CONFIGMAPS} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        dev.addr,
        dev.admin,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("100 Continue")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(&body[..10]).await.unwrap();
    s.flush().await.unwrap();
    let (code, v, retry) = alice("POST", SSAR, ssar()).await;
    assert_429(code, &v, "alice's write");
    assert_eq!(retry.as_deref(), Some("1"));
    let (code, v) = dev
        .call1("POST", CONFIGMAPS, Some(&dev.admin), configmap("by-master"))
        .await
        .unwrap();
    assert_eq!(code, 201, "system:masters get through: {v}");
    let (code, _) = dev.call1("GET", "/readyz", None, Vec::new()).await.unwrap();
    assert_eq!(code, 200, "/readyz is never limited");
    let (code, _, _) = alice("GET", "/version", Vec::new()).await;
    assert_eq!(code, 200, "reads have their own slots");
    // The rest of the body: the create succeeds and the slot frees.
    s.write_all(&body[10..]).await.unwrap();
    s.flush().await.unwrap();
    let (code, _, v) = timeout(Duration::from_secs(10), raw_response(&mut s))
        .await
        .expect("the held create's answer");
    assert_eq!(code, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v, _) = alice("POST", SSAR, ssar()).await;
        if code == 201 {
            assert_eq!(v["status"]["allowed"], false, "{v}");
            break;
        }
        assert_429(code, &v, "alice's write");
        assert!(Instant::now() < deadline, "the write slot never freed");
        sleep(Duration::from_millis(50)).await;
    }
}

/// With --max-connections 3, a fourth connection is closed before its
/// TLS handshake; once one of the three closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() {
    let dev = Dev::start(&["--max-connections", "3"]).await;
    // Three connections that each served a request (retried: the ready
    // check's connections may still hold slots for a moment).
    let mut open = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.len() < 3 {
        if let Ok((mut send, conn)) = dev.h1().await {
            let mut req = dev.request("GET", "/livez", None, Vec::new());
            *req.uri_mut() = "/livez".parse().unwrap();
            req.headers_mut().insert("host", dev.addr.parse().unwrap());
            if let Ok(resp) = send.send_request(req).await {
                assert_eq!(read(resp).await.0, 200);
                open.push((send, conn));
                continue;
            }
        }
        assert!(Instant::now() < deadline, "three connections never opened");
        sleep(Duration::from_millis(50)).await;
    }
    // The fourth: TCP connects (the kernel accepts), TLS does not.
    for _ in 0..3 {
        let r = dev.tls(b"http/1.1").await;
        assert!(r.is_err(), "a connection over the limit was served");
    }
    assert!(
        open.iter().all(|(_, c)| !c.is_finished()),
        "the three stay open"
    );
    // One closes: a new connection is served.
    let (send, conn) = open.pop().unwrap();
    drop(send);
    conn.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, _)) = dev.call1("GET", "/livez", None, Vec::new()).await {
            break;
        }
        assert!(Instant::now() < deadline, "no slot after a close");
        sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dev.log()).unwrap();
    assert!(log.contains("connection limit reached"), "a warning: {log}");
}
