//! A raw HTTPS/1.1 client for the watch tests (hyper over rustls, the
//! shard's CA, the admin token): plain requests, and watches whose body
//! the test reads line by line, or stops reading.
//!
//! Included by path (`#[path = "common/watch_client.rs"]`) by the tests
//! that use it.

#![allow(dead_code)]

use crate::common::shard::Shard;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// One node's API as the admin.
#[derive(Clone)]
pub struct Client {
    addr: String,
    token: String,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    /// The admin on node `id`.
    pub fn new(s: &Shard, id: u64) -> Client {
        use rustls::pki_types::pem::PemObject;
        let ca =
            rustls::pki_types::CertificateDer::from_pem_file(s.tls_dir().join("ca.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            addr: s.server(id).trim_start_matches("https://").to_string(),
            token: s.token(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        }
    }

    /// Sends one request on a new connection; `recv_buffer` caps the
    /// socket's receive buffer (a client that reads slowly).
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        recv_buffer: Option<u32>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let addr: std::net::SocketAddr = self.addr.parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(b) = recv_buffer {
            sock.set_recv_buffer_size(b).map_err(|e| e.to_string())?;
        }
        let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let (ct, raw) = match body {
            Value::Null => ("application/json", Vec::new()),
            v => (
                if method == "PATCH" {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                },
                serde_json::to_vec(v).unwrap(),
            ),
        };
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("content-type", ct)
            .header("authorization", format!("Bearer {}", self.token))
            .body(http_body_util::Full::new(bytes::Bytes::from(raw)))
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())
    }

    /// A request: status and body (JSON, or the text as a JSON string).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value), String> {
        let resp = self.send(method, path, &body, None).await?;
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((code, v))
    }

    /// [`Client::try_call`] that panics when the request fails.
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request that must answer `want`.
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

    /// Opens a watch, or says why not; `recv_buffer` as in `send`.
    pub async fn try_watch(&self, path: &str, recv_buffer: Option<u32>) -> Result<Watch, String> {
        let resp = self.send("GET", path, &Value::Null, recv_buffer).await?;
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

/// An open watch stream.
pub struct Watch {
    body: hyper::body::Incoming,
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
    /// connection).
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

/// An event's type and the resourceVersion of its object.
pub fn kind_rv(ev: &Value) -> (String, u64) {
    (
        ev["type"].as_str().unwrap_or("").to_string(),
        ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
    )
}

/// The resourceVersion of a list or object.
pub fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
        .parse()
        .unwrap()
}

/// Pseudo-random text of `len` characters that compresses little.
pub fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x & 63) as usize] as char
        })
        .collect()
}
