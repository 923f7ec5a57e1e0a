//! The harness's one raw HTTP client (hyper over rustls or plain TCP, one
//! connection per request): every status and body as the server sent it,
//! with no client library in between. The harness reaches the replicas'
//! KV listeners with it (mutual TLS with the operator's peer certificate,
//! or plain HTTP with `--insecure-peers`); tests reach the Kubernetes API
//! with [`ApiClient`] (bearer tokens, client certificates, watches read
//! line by line or not at all).

use super::BoxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A rustls client configuration (ring) trusting the certificates of the
/// PEM file `ca`, presenting `client_cert` (certificate and key, PEM) if
/// given.
pub fn tls_config(
    ca: &Path,
    client_cert: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(Arc::new(match client_cert {
        Some((cert, key)) => b.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => b.with_no_client_auth(),
    }))
}

/// Where a request goes: `127.0.0.1:PORT`, over TLS (with the name the
/// server's certificate must carry) or not.
#[derive(Clone)]
pub struct Target {
    /// `IP:PORT`.
    pub addr: String,
    /// TLS configuration and server name; `None` for plain HTTP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// Sends one request on a new connection and returns the response head
/// (the body streams). `recv_buffer` caps the socket's receive buffer (a
/// client that reads slowly).
pub async fn send(
    to: &Target,
    req: hyper::Request<Full<Bytes>>,
    recv_buffer: Option<u32>,
) -> Result<hyper::Response<Incoming>, String> {
    let addr: std::net::SocketAddr = to.addr.parse().map_err(|e| format!("{e}"))?;
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(b) = recv_buffer {
        sock.set_recv_buffer_size(b).map_err(|e| e.to_string())?;
    }
    let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match &to.tls {
        Some((cfg, name)) => {
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, req).await
        }
        None => exchange(tcp, req).await,
    }
}

async fn exchange<T>(
    io: T,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send.send_request(req).await.map_err(|e| e.to_string())
}

/// Reads a whole body: the status and the bytes.
pub async fn collect(resp: hyper::Response<Incoming>) -> Result<(u16, Bytes), String> {
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, bytes))
}

/// A body as JSON, or its text as a JSON string when it is not JSON.
pub fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// One request with `headers` and `body`, answered within `timeout`:
/// status and body.
pub async fn request(
    to: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &to.addr);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(timeout, async { collect(send(to, req, None).await?).await })
        .await
        .map_err(|_| format!("{method} {path}: no answer within {timeout:?}"))?
}

/// A client of one node's Kubernetes API (HTTPS, the cluster's CA), as
/// whoever its credentials say: one connection per request.
#[derive(Clone)]
pub struct ApiClient {
    to: Target,
    ca: std::path::PathBuf,
    authorization: Option<String>,
}

impl ApiClient {
    /// A client of `127.0.0.1:port` trusting `ca`, with no credentials.
    pub fn new(port: u16, ca: &Path) -> Result<ApiClient, BoxError> {
        Ok(ApiClient {
            to: Target {
                addr: format!("127.0.0.1:{port}"),
                tls: Some((tls_config(ca, None)?, ServerName::try_from("127.0.0.1")?)),
            },
            ca: ca.to_path_buf(),
            authorization: None,
        })
    }

    /// A client of `ip:port` (the serving certificate must name `ip`)
    /// trusting `ca`, with no credentials.
    pub fn at(ip: std::net::IpAddr, port: u16, ca: &Path) -> Result<ApiClient, BoxError> {
        Ok(ApiClient {
            to: Target {
                addr: std::net::SocketAddr::new(ip, port).to_string(),
                tls: Some((tls_config(ca, None)?, ServerName::IpAddress(ip.into()))),
            },
            ca: ca.to_path_buf(),
            authorization: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> ApiClient {
        self.authorization(&format!("Bearer {token}"))
    }

    /// Sends this whole `Authorization` header value.
    pub fn authorization(mut self, value: &str) -> ApiClient {
        self.authorization = Some(value.to_string());
        self
    }

    /// Presents this client certificate and key (PEM).
    pub fn client_cert(mut self, cert: &str, key: &str) -> Result<ApiClient, BoxError> {
        let name = ServerName::try_from("127.0.0.1")?;
        self.to.tls = Some((tls_config(&self.ca, Some((cert, key)))?, name));
        Ok(self)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.to.addr
    }

    /// Sends one request on a new connection; the response head (the body
    /// streams). `recv_buffer` caps the socket's receive buffer.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        recv_buffer: Option<u32>,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.to.addr)
            .header("content-type", content_type);
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        send(&self.to, req, recv_buffer).await
    }

    /// A request without a body but with these extra headers (repeated
    /// names are sent repeatedly): status and body.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.to.addr);
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (code, bytes) = collect(send(&self.to, req, None).await?).await?;
        Ok((code, json_or_text(&bytes)))
    }

    /// A request with a body of the caller's content type: status and body
    /// (JSON, or the text as a JSON string).
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        let (code, bytes) =
            collect(self.send(method, path, content_type, body, None).await?).await?;
        Ok((code, json_or_text(&bytes)))
    }

    /// A request with a JSON body (a merge patch for PATCH; no body for
    /// `Value::Null`): status and body.
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value), String> {
        let (ct, raw) = json_body(method, &body);
        self.call_raw(method, path, ct, raw).await
    }

    /// [`ApiClient::try_call`] that panics when the request fails.
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request that must answer `want` (panics otherwise).
    pub async fn must(&self, method: &str, path: &str, body: Value, want: u16) -> Value {
        let (code, v) = self.call(method, path, body).await;
        assert_eq!(code, want, "{method} {path}: {v}");
        v
    }

    /// Opens a watch (`path` with its query); the status must be 200.
    pub async fn watch(&self, path: &str) -> Watch {
        self.try_watch(path, None)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"))
    }

    /// Opens a watch, or says why not; `recv_buffer` as in
    /// [`ApiClient::send`].
    pub async fn try_watch(&self, path: &str, recv_buffer: Option<u32>) -> Result<Watch, String> {
        let (ct, raw) = json_body("GET", &Value::Null);
        let resp = self.send("GET", path, ct, raw, recv_buffer).await?;
        if resp.status().as_u16() != 200 {
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes());
            return Err(format!("{code}: {bytes:?}"));
        }
        Ok(Watch {
            body: resp.into_body(),
            buf: Vec::new(),
            path: path.to_string(),
        })
    }
}

/// The content type and bytes of a JSON body: a merge patch for PATCH,
/// nothing for `Value::Null`.
fn json_body(method: &str, body: &Value) -> (&'static str, Vec<u8>) {
    match body {
        Value::Null => ("application/json", Vec::new()),
        v => (
            if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            },
            serde_json::to_vec(v).expect("JSON"),
        ),
    }
}

/// An open watch stream, one JSON event per line.
pub struct Watch {
    body: Incoming,
    buf: Vec<u8>,
    path: String,
}

impl Watch {
    /// The next event; `None` when the server ended the stream. Panics
    /// if nothing comes `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        match tokio::time::timeout(within, self.next_event()).await {
            Ok(ev) => ev,
            Err(_) => panic!("watch {}: no event within {within:?}", self.path),
        }
    }

    /// The next event, or `None` at the end of the stream (or a broken
    /// connection). Panics on a line that is not JSON.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("watch {}: a line that is not JSON ({e})", self.path)
                }));
            }
            match self.body.frame().await {
                None | Some(Err(_)) => return None,
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }
}
