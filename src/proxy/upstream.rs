//! The proxy's client of the shards' APIs: HTTPS with the proxy's client
//! certificate (`front-proxy-client.crt`, of the front proxy's own CA),
//! verifying each shard's serving certificate against the users' CA
//! (`ca.crt`, which signs the serving certificates `tmc certs` writes).
//!
//! hyper's pooled client over hyper-rustls: connections are HTTP/1.1,
//! kept alive and reused per shard (one per request in flight, so a
//! thousand watches hold a thousand connections, as a thousand clients
//! straight to the shard would; HTTP/2 would multiplex them on one
//! connection but queue requests beyond the server's stream limit).
//! Connecting is bounded by `CONNECT_TIMEOUT`, a response head by the
//! caller; bodies stream.

use crate::api::tls::TlsFiles;
use crate::util::{root_cause, BoxError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::http::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// Bound on a TCP connect to a shard.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a shard's response head (its own request timeout is 60 s by
/// default; a watch answers its head at once).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(75);
/// Bound on a small answer read whole ([`Upstream::fetch`]).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a shard gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection, or it failed before the response head.
    #[error("{0}")]
    Connect(String),
    /// No response head in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body failed or was longer than allowed.
    #[error("{0}")]
    Body(String),
}

/// The pooled HTTPS client to the shards.
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    /// A client with the proxy's certificate from `files` and the users'
    /// CA as the roots of the shards' serving certificates.
    pub fn new(files: &TlsFiles) -> Result<Self, BoxError> {
        use rustls::pki_types::pem::PemObject;
        let chain = crate::api::tls::read_certs(&files.front_proxy_cert())?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(files.front_proxy_key())
            .map_err(|e| {
                format!(
                    "cannot read the front proxy's key {}: {e}",
                    files.front_proxy_key().display()
                )
            })?;
        Self::with_identity(&files.ca_cert(), chain, key)
    }

    /// A client that presents `chain` (with `key`) and trusts the serving
    /// certificates the CA in `ca` signed (a shard's client of the other
    /// shards uses its shard identity).
    pub fn with_identity(
        ca: &std::path::Path,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self, BoxError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::api::tls::read_certs(ca)? {
            roots.add(c)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Upstream { client })
    }

    /// Sends `req`; the response's body streams.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(HEAD_TIMEOUT, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(HEAD_TIMEOUT)),
            Ok(Err(e)) => Err(UpstreamError::Connect(root_cause(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Sends `req` and reads the whole answer, at most `max` bytes, all
    /// within a short bound.
    pub async fn fetch(
        &self,
        req: Request<Full<Bytes>>,
        max: usize,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| UpstreamError::Connect(root_cause(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| UpstreamError::Body(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(FETCH_TIMEOUT)))
    }
}
