//! Mutual TLS between the replicas of a shard.
//!
//! With `tmc serve --peer-tls-dir DIR`, every connection between replicas —
//! raft messages and the internal HTTP interface (forwarded writes,
//! membership, the KV interface) — is TLS 1.2/1.3 with a client
//! certificate on both sides, each checked against the cluster CA in
//! `DIR/ca.crt`. A peer without a certificate from that CA is refused
//! during the handshake, before it can send a single raft message.
//!
//! Files: `ca.crt` (the cluster CA), `peer.crt` and `peer.key` (this
//! replica's certificate, usable for server and client auth, with the DNS
//! name [`PEER_NAME`]; `tmc certs` writes them). Replicas dial each other
//! by address but verify the name [`PEER_NAME`]: what identifies a peer is
//! a certificate from the cluster CA, not its address (pods move).
//!
//! **Rotation.** The files are re-read every 5 s when they change
//! ([`PeerTls::reload_if_changed`]); new connections use the new
//! material, established ones keep theirs until they reconnect. Files that
//! no longer load leave the old material in force, with an error logged.
//!
//! Left out: per-node identities (any certificate from the cluster CA is
//! a peer; a node-id check against the certificate's name would bind them)
//! and certificate revocation.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The DNS name every peer certificate carries and every peer verifies.
pub const PEER_NAME: &str = "tmc-peer";

/// A byte stream to or from a peer: plain TCP or TLS over it.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A boxed [`PeerIo`].
pub type PeerStream = Box<dyn PeerIo>;

struct Material {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The peer TLS configuration of one replica.
pub struct PeerTls {
    dir: PathBuf,
    current: Arc<crate::util::Reloading<Material>>,
}

fn files(dir: &Path) -> [PathBuf; 3] {
    [
        dir.join("ca.crt"),
        dir.join("peer.crt"),
        dir.join("peer.key"),
    ]
}

fn build(dir: &Path) -> Result<Material, String> {
    let [ca, cert, key] = files(dir);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let c = c.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate in {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", ca.display()));
    }
    let roots = Arc::new(roots);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // Peers never resume sessions; no tickets to read on idle links.
    server.send_tls13_tickets = 0;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Material {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("dir", &self.dir).finish()
    }
}

impl PeerTls {
    /// Loads `ca.crt`, `peer.crt` and `peer.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Arc<PeerTls>, String> {
        let d = dir.to_path_buf();
        let current =
            crate::util::Reloading::new("peer TLS material", files(dir).to_vec(), move || {
                build(&d)
            })?;
        Ok(Arc::new(PeerTls {
            dir: dir.to_path_buf(),
            current,
        }))
    }

    /// The server side, for the internal HTTP listener (take it per
    /// connection to follow reloads).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current.get().server.clone()
    }

    /// The client side, for requests to other replicas.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.current.get().client.clone()
    }

    /// Re-reads the files if they changed; `Ok(true)` when new material
    /// is in force. On error the old material stays.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        self.current.reload_if_changed()
    }

    /// Re-reads the files every 5 s.
    pub fn watch(&self) {
        self.current.watch(Duration::from_secs(5));
    }

    /// The server side of a handshake on an accepted connection.
    pub async fn accept(&self, sock: TcpStream) -> std::io::Result<PeerStream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let s = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Box::new(s))
    }

    /// The client side of a handshake on a new connection.
    pub async fn connect(&self, sock: TcpStream) -> std::io::Result<PeerStream> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config());
        let name = ServerName::try_from(PEER_NAME).expect("a valid DNS name");
        let s = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, sock))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Box::new(s))
    }
}

/// Wraps an accepted connection: TLS when `tls` is set.
pub async fn accept(tls: Option<&PeerTls>, sock: TcpStream) -> std::io::Result<PeerStream> {
    match tls {
        Some(t) => t.accept(sock).await,
        None => Ok(Box::new(sock)),
    }
}

/// Wraps a dialled connection: TLS when `tls` is set.
pub async fn connect(tls: Option<&PeerTls>, sock: TcpStream) -> std::io::Result<PeerStream> {
    match tls {
        Some(t) => t.connect(sock).await,
        None => Ok(Box::new(sock)),
    }
}
