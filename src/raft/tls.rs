//! Mutual TLS between the replicas of a shard, with a peer identity per
//! connection.
//!
//! With `tmc serve --peer-tls-dir DIR`, every connection between replicas —
//! raft messages and the internal HTTP interface (forwarded writes,
//! membership, the KV interface) — is TLS 1.2/1.3 with a client
//! certificate on both sides, each checked against the **peer CA** in
//! `DIR/peer-ca.crt`. The peer CA is a CA of its own, apart from the CA of
//! the API's users and serving certificate (`ca.crt`): a user's
//! certificate (`tmc kubeconfig --user`) is not signed by it and fails the
//! handshake, before a byte of a frame or a request is read.
//!
//! **Identities.** A certificate of the peer CA names who holds it in its
//! CommonName ([`PeerId`]): `tmc-peer-<id>` is replica `<id>` (with the DNS
//! names `tmc-peer` and `tmc-peer-<id>`, for server and client auth),
//! `tmc-operator` is the operator's client (`tmc kv`, `tmc member`; client
//! auth only). Whatever a connection carries is checked against it: a raft
//! frame must come from the node the certificate names (the operator may
//! not send frames at all), a forwarded request must name the node it
//! came from (see [`super::server`]). A replica dialling node `n` checks
//! that the server's certificate is valid for `tmc-peer-<n>`; the
//! operator's client, which dials an address, checks `tmc-peer`.
//!
//! **Files** (`tmc certs --dir D --nodes 1,2,3` writes them): `peer-ca.crt`,
//! `peer.crt` and `peer.key` — in `D/nodes/<id>/` the replica's own (the
//! directory to copy to replica `<id>`; it holds no CA key), in `D` the
//! operator's. `peer-ca.key` stays in `D`, with the operator.
//!
//! **Rotation.** The files are re-read every 5 s when they change
//! ([`PeerTls::reload_if_changed`]); new connections use the new
//! material, established ones keep theirs until they reconnect. Files that
//! no longer load leave the old material in force, with an error logged.
//!
//! Left out: certificate revocation (a replica that is removed keeps a
//! valid certificate until it expires or the peer CA is replaced).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The DNS name every replica's certificate carries and the operator's
/// client verifies.
pub const PEER_NAME: &str = "tmc-peer";

/// The CommonName of the operator's client certificate.
pub const OPERATOR_NAME: &str = "tmc-operator";

/// The CommonName (and DNS name) of replica `id`'s certificate.
pub fn node_name(id: u64) -> String {
    format!("{PEER_NAME}-{id}")
}

/// Who holds a certificate of the peer CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerId {
    /// Replica `id` of the shard.
    Node(u64),
    /// The operator's client: the KV interface and membership, never raft.
    Operator,
}

impl PeerId {
    /// The identity a CommonName names, if any.
    pub fn from_common_name(cn: &str) -> Option<PeerId> {
        if cn == OPERATOR_NAME {
            return Some(PeerId::Operator);
        }
        let digits = cn.strip_prefix(PEER_NAME)?.strip_prefix('-')?;
        // Canonical decimal only: one name per node.
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        match digits.parse::<u64>() {
            Ok(id) if id > 0 => Some(PeerId::Node(id)),
            _ => None,
        }
    }

    /// The identity of a verified chain (end entity first).
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<PeerId> {
        let (cn, _) = crate::api::authn::subject_of(chain.first()?)?;
        PeerId::from_common_name(&cn)
    }

    /// The node, for a replica.
    pub fn node(self) -> Option<u64> {
        match self {
            PeerId::Node(id) => Some(id),
            PeerId::Operator => None,
        }
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerId::Node(id) => write!(f, "node {id}"),
            PeerId::Operator => f.write_str("the operator"),
        }
    }
}

/// A byte stream to or from a peer: plain TCP or TLS over it.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A boxed [`PeerIo`].
pub type PeerStream = Box<dyn PeerIo>;

struct Material {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    identity: PeerId,
}

/// The peer TLS configuration of one replica (or of the operator's
/// client).
pub struct PeerTls {
    dir: PathBuf,
    current: Arc<crate::util::Reloading<Material>>,
}

fn files(dir: &Path) -> [PathBuf; 3] {
    [
        dir.join("peer-ca.crt"),
        dir.join("peer.crt"),
        dir.join("peer.key"),
    ]
}

/// A directory of the old layout: one CA for users and replicas alike.
fn check_layout(dir: &Path) -> Result<(), String> {
    let [ca, cert, _] = files(dir);
    if !ca.exists() && dir.join("ca.crt").exists() && cert.exists() {
        return Err(format!(
            "{} is missing: {} holds the old layout, where one CA signed users and replicas \
             alike; run `tmc certs --dir D --nodes ...` and use D/nodes/<id> (see \
             docs/replication.md)",
            ca.display(),
            dir.display()
        ));
    }
    Ok(())
}

fn build(dir: &Path) -> Result<Material, String> {
    let [ca, cert, key] = files(dir);
    check_layout(dir)?;
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
    let identity = PeerId::from_chain(&chain).ok_or_else(|| {
        format!(
            "{} names no peer identity (CN {OPERATOR_NAME} or {PEER_NAME}-<id>)",
            cert.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Only the peer CA: a certificate of any other CA (the users' included)
    // fails the handshake.
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
        identity,
    })
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("dir", &self.dir).finish()
    }
}

/// The identity a TLS server connection's client proved.
fn client_identity(conn: &rustls::ServerConnection) -> Option<PeerId> {
    PeerId::from_chain(conn.peer_certificates()?)
}

impl PeerTls {
    /// Loads `peer-ca.crt`, `peer.crt` and `peer.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Arc<PeerTls>, String> {
        check_layout(dir)?;
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

    /// Who this material's certificate names.
    pub fn identity(&self) -> PeerId {
        self.current.get().identity
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

    /// The server side of a handshake on an accepted connection, and the
    /// identity the client's certificate names; a certificate of the peer
    /// CA that names nobody is refused.
    pub async fn accept(&self, sock: TcpStream) -> std::io::Result<(PeerStream, PeerId)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let s = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let who = client_identity(s.get_ref().1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the client certificate names no peer identity",
            )
        })?;
        Ok((Box::new(s), who))
    }

    /// The client side of a handshake on a new connection to replica
    /// `node` (its certificate must be valid for `tmc-peer-<node>`), or to
    /// any replica with `None` (`tmc-peer`).
    pub async fn connect(&self, sock: TcpStream, node: Option<u64>) -> std::io::Result<PeerStream> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config());
        let name = match node {
            Some(id) => node_name(id),
            None => PEER_NAME.to_string(),
        };
        let name = ServerName::try_from(name)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let s = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, sock))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Box::new(s))
    }
}

/// Wraps an accepted connection: TLS when `tls` is set, with the client's
/// identity (`None` on plain TCP, `--insecure-peers`).
pub async fn accept(
    tls: Option<&PeerTls>,
    sock: TcpStream,
) -> std::io::Result<(PeerStream, Option<PeerId>)> {
    match tls {
        Some(t) => t.accept(sock).await.map(|(s, who)| (s, Some(who))),
        None => Ok((Box::new(sock), None)),
    }
}

/// Wraps a dialled connection to replica `node` (or any replica): TLS when
/// `tls` is set.
pub async fn connect(
    tls: Option<&PeerTls>,
    sock: TcpStream,
    node: Option<u64>,
) -> std::io::Result<PeerStream> {
    match tls {
        Some(t) => t.connect(sock, node).await,
        None => Ok(Box::new(sock)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_map_to_one_identity_each() {
        assert_eq!(
            PeerId::from_common_name("tmc-peer-3"),
            Some(PeerId::Node(3))
        );
        assert_eq!(
            PeerId::from_common_name("tmc-operator"),
            Some(PeerId::Operator)
        );
        for bad in [
            "tmc-peer",
            "tmc-peer-",
            "tmc-peer-0",
            "tmc-peer-03",
            "tmc-peer-+3",
            "tmc-peer-3 ",
            "tmc-peer-18446744073709551616",
            "admin",
            "tmc-peer3",
            "",
        ] {
            assert_eq!(PeerId::from_common_name(bad), None, "{bad:?}");
        }
    }
}
