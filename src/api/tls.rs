//! TLS material: a CA, a serving certificate, an admin token and
//! kubeconfigs, as `tmc dev` and `tmc certs` write them, and the rustls
//! configuration that serves HTTP/2 and HTTP/1.1 with them.
//!
//! Files in a TLS directory: `ca.crt`, `ca.key` (to sign more later),
//! `server.crt`, `server.key`, `peer.crt`, `peer.key` (mutual TLS between
//! replicas, see [`crate::raft::tls`]), `tokens.csv` (kube-apiserver's token file
//! format; the admin token is in `system:masters`), `admin.kubeconfig`.
//! Keys are written with mode 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Paths of the TLS material in `dir`.
pub struct TlsFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl TlsFiles {
    /// The files in `dir`.
    pub fn new(dir: &Path) -> Self {
        TlsFiles {
            dir: dir.to_path_buf(),
        }
    }
    /// `ca.crt`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// `server.crt`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    /// `server.key`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// `tokens.csv`.
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.csv")
    }
    /// `admin.kubeconfig`.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }
    /// `peer.crt`: the replicas' certificate for mutual TLS between them.
    pub fn peer_cert(&self) -> PathBuf {
        self.dir.join("peer.crt")
    }
    /// `peer.key`.
    pub fn peer_key(&self) -> PathBuf {
        self.dir.join("peer.key")
    }
    /// True once the material exists.
    pub fn exist(&self) -> bool {
        [
            self.ca_cert(),
            self.server_cert(),
            self.server_key(),
            self.peer_cert(),
            self.peer_key(),
            self.tokens(),
        ]
        .iter()
        .all(|p| p.exists())
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Generates a CA, a serving certificate for `hosts` (IP addresses or DNS
/// names) and an admin token into `dir`, unless they already exist.
pub fn ensure_material(dir: &Path, hosts: &[String]) -> Result<TlsFiles, BoxError> {
    let files = TlsFiles::new(dir);
    if files.exist() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tmc-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let mut names: Vec<String> = hosts.to_vec();
    for default in ["127.0.0.1", "localhost"] {
        if !names.iter().any(|h| h == default) {
            names.push(default.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => Ok(rcgen::SanType::DnsName(h.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tmc-server");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    // The replicas' certificate: server and client auth, the DNS name
    // every replica verifies (see tmc::raft::tls).
    let mut peer = rcgen::CertificateParams::new(vec![crate::raft::tls::PEER_NAME.to_string()])?;
    peer.distinguished_name
        .push(rcgen::DnType::CommonName, crate::raft::tls::PEER_NAME);
    peer.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let peer_key = rcgen::KeyPair::generate()?;
    let peer_cert = peer.signed_by(&peer_key, &issuer)?;

    std::fs::write(files.ca_cert(), ca_cert.pem())?;
    std::fs::write(files.peer_cert(), peer_cert.pem())?;
    write_private(&files.peer_key(), peer_key.serialize_pem().as_bytes())?;
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    std::fs::write(files.server_cert(), cert.pem())?;
    write_private(&files.server_key(), key.serialize_pem().as_bytes())?;
    let token = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    write_private(
        &files.tokens(),
        format!("{token},admin,admin,\"{}\"\n", super::auth::MASTERS).as_bytes(),
    )?;
    Ok(files)
}

/// The admin token (the first line of `tokens.csv`).
pub fn admin_token(files: &TlsFiles) -> Result<String, BoxError> {
    let text = std::fs::read_to_string(files.tokens())?;
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split(',').next())
        .map(str::to_string)
        .ok_or_else(|| "the token file holds no token".into())
}

/// A kubeconfig for `workspace` at `server` (`https://host:port`).
pub fn kubeconfig(files: &TlsFiles, server: &str, workspace: &str) -> Result<String, BoxError> {
    use base64::Engine as _;
    let ca = std::fs::read(files.ca_cert())?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let token = admin_token(files)?;
    let ctx = workspace.replace(':', "-");
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {ctx}\n  cluster:\n    server: {server}/clusters/{workspace}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: {ctx}\n  context:\n    cluster: {ctx}\n    user: admin\ncurrent-context: {ctx}\n"
    ))
}

/// Writes `admin.kubeconfig` (for `root`).
pub fn write_admin_kubeconfig(files: &TlsFiles, server: &str) -> Result<PathBuf, BoxError> {
    let path = files.admin_kubeconfig();
    write_private(&path, kubeconfig(files, server, "root")?.as_bytes())?;
    Ok(path)
}

/// A rustls server configuration from the serving certificate, offering
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.server_cert())
        .map_err(|e| format!("cannot read {}: {e}", files.server_cert().display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", files.server_cert().display()))?;
    let key = PrivateKeyDer::from_pem_file(files.server_key())
        .map_err(|e| format!("cannot read the key {}: {e}", files.server_key().display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
