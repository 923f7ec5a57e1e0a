//! TLS material: the users' CA, a serving certificate, an admin token and
//! kubeconfigs, as `tmc dev` and `tmc certs` write them, the peer CA and
//! the certificates replicas authenticate each other with, and the rustls
//! configuration that serves HTTP/2 and HTTP/1.1 with them.
//!
//! **Two CAs.** `ca.crt`/`ca.key` sign the API's serving certificate and
//! users' client certificates (`tmc kubeconfig --user`);
//! `peer-ca.crt`/`peer-ca.key` sign only the replicas' certificates and the
//! operator's client certificate for the internal interface (see
//! [`crate::raft::tls`]). No certificate of one CA opens a port of the
//! other: a user's certificate fails the peer handshake, a replica's is a
//! 401 at the API.
//!
//! Files of a directory `D` written by `tmc certs --dir D --nodes 1,2,3`
//! (keys with mode 0600):
//! - `D` (the operator's, never copied to a replica as a whole): `ca.crt`,
//!   `ca.key`, `server.crt`, `server.key`, `tokens.csv` (kube-apiserver's
//!   token file format; the admin token is in `system:masters`),
//!   `admin.kubeconfig`, `peer-ca.crt`, `peer-ca.key`, and `peer.crt`,
//!   `peer.key`: the operator's client certificate (CN `tmc-operator`) for
//!   `tmc kv` and `tmc member --peer-tls-dir D`.
//! - `D/nodes/<id>` (copied to replica `<id>`, which runs with
//!   `--tls-dir D/nodes/<id> --peer-tls-dir D/nodes/<id>`): `ca.crt`,
//!   `server.crt`, `server.key`, `tokens.csv`, `peer-ca.crt`, and
//!   `peer.crt`, `peer.key`: the replica's certificate (CN and DNS name
//!   `tmc-peer-<id>`, DNS name `tmc-peer`). No key of either CA.
//!
//! Everything is kept if it exists; running `tmc certs` again with more
//! `--nodes` adds their directories and refreshes the copies of the shared
//! files (`ca.crt`, `server.*`, `tokens.csv`, `peer-ca.crt`) in each. A
//! directory of the old layout (one CA for all, no `peer-ca.crt`) gets a
//! peer CA and a new operator certificate; its replicas need their node
//! directories.

use crate::raft::tls::{node_name, PeerId, OPERATOR_NAME, PEER_NAME};
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
    /// `ca.crt`: the users' (and serving certificate's) CA.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
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
    /// `peer-ca.crt`: the CA of replicas and the operator's client.
    pub fn peer_ca_cert(&self) -> PathBuf {
        self.dir.join("peer-ca.crt")
    }
    /// `peer-ca.key`.
    pub fn peer_ca_key(&self) -> PathBuf {
        self.dir.join("peer-ca.key")
    }
    /// `peer.crt`: the operator's client certificate in `D`, a replica's
    /// certificate in `D/nodes/<id>`.
    pub fn peer_cert(&self) -> PathBuf {
        self.dir.join("peer.crt")
    }
    /// `peer.key`.
    pub fn peer_key(&self) -> PathBuf {
        self.dir.join("peer.key")
    }
    /// `front-proxy-ca.crt`: the CA of the front proxy's client
    /// certificate; a replica trusts request headers naming a user only
    /// on a connection with a certificate of this CA
    /// ([`super::authn::RequestHeaderAuth`]).
    pub fn front_proxy_ca_cert(&self) -> PathBuf {
        self.dir.join("front-proxy-ca.crt")
    }
    /// `front-proxy-ca.key`: only in the operator's directory.
    pub fn front_proxy_ca_key(&self) -> PathBuf {
        self.dir.join("front-proxy-ca.key")
    }
    /// `front-proxy-client.crt`: the proxy's client certificate (CN
    /// [`FRONT_PROXY_NAME`]), for its connections to the shards.
    pub fn front_proxy_cert(&self) -> PathBuf {
        self.dir.join("front-proxy-client.crt")
    }
    /// `front-proxy-client.key`.
    pub fn front_proxy_key(&self) -> PathBuf {
        self.dir.join("front-proxy-client.key")
    }
    /// `shard.crt`: the shard's identity for calls to other shards (CN
    /// `system:tmc:shard:NAME`, O `system:tmc:shards`, of the users' CA).
    pub fn shard_cert(&self) -> PathBuf {
        self.dir.join("shard.crt")
    }
    /// `shard.key`.
    pub fn shard_key(&self) -> PathBuf {
        self.dir.join("shard.key")
    }
    /// `nodes/<id>`: what replica `id` needs, and nothing more.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join("nodes").join(id.to_string())
    }
    /// True once the API's material exists.
    pub fn exist(&self) -> bool {
        [
            self.ca_cert(),
            self.server_cert(),
            self.server_key(),
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

/// A CA's parameters (the same every time, so that certificates can be
/// issued later from its key alone).
fn ca_params_named(name: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}

/// The users' CA.
fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    ca_params_named("tmc-ca")
}

/// The peer CA.
fn peer_ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    ca_params_named("tmc-peer-ca")
}

/// The front proxy's CA.
fn front_proxy_ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    ca_params_named("tmc-front-proxy-ca")
}

/// The CommonName of the front proxy's client certificate: the one name
/// a replica accepts request headers from (kube-apiserver's
/// `--requestheader-allowed-names`).
pub const FRONT_PROXY_NAME: &str = "tmc-front-proxy";

/// Writes a new CA's certificate and key.
fn new_ca(params: rcgen::CertificateParams, cert: &Path, key: &Path) -> Result<(), BoxError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = params.self_signed(&ca_key)?;
    write_private(key, ca_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, ca_cert.pem())?;
    Ok(())
}

/// Generates the users' CA, a serving certificate for `hosts` (IP
/// addresses or DNS names, besides 127.0.0.1 and localhost) and an admin
/// token into `dir`, each unless it exists: what `tmc dev` needs.
pub fn ensure_api_material(dir: &Path, hosts: &[String]) -> Result<TlsFiles, BoxError> {
    let files = TlsFiles::new(dir);
    std::fs::create_dir_all(dir)?;
    if !files.ca_cert().exists() {
        new_ca(ca_params()?, &files.ca_cert(), &files.ca_key())?;
    }
    if !files.server_cert().exists() || !files.server_key().exists() {
        let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(files.ca_key())?)?;
        let issuer = rcgen::Issuer::new(ca_params()?, &ca_key);
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
        write_private(&files.server_key(), key.serialize_pem().as_bytes())?;
        std::fs::write(files.server_cert(), cert.pem())?;
    }
    if !files.tokens().exists() {
        let token = {
            use rand::Rng;
            let bytes: [u8; 32] = rand::rng().random();
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        write_private(
            &files.tokens(),
            format!("{token},admin,admin,\"{}\"\n", super::authn::MASTERS).as_bytes(),
        )?;
    }
    Ok(files)
}

/// [`ensure_api_material`], then the peer CA and the operator's client
/// certificate (each unless it exists; a new peer CA gets a new operator
/// certificate): what `tmc certs` writes into the operator's directory.
pub fn ensure_material(dir: &Path, hosts: &[String]) -> Result<TlsFiles, BoxError> {
    let files = ensure_api_material(dir, hosts)?;
    let fresh = !files.peer_ca_cert().exists();
    if fresh {
        new_ca(
            peer_ca_params()?,
            &files.peer_ca_cert(),
            &files.peer_ca_key(),
        )?;
    }
    if fresh || !files.peer_cert().exists() || !files.peer_key().exists() {
        let c = issue_peer_cert(&files, PeerId::Operator)?;
        write_private(&files.peer_key(), c.key_pem.as_bytes())?;
        std::fs::write(files.peer_cert(), c.cert_pem)?;
    }
    ensure_front_proxy_material(&files)?;
    Ok(files)
}

/// The front proxy's CA and its client certificate (CN
/// [`FRONT_PROXY_NAME`], client auth only), each unless it exists (a new
/// CA gets a new client certificate). The proxy reads the certificate and
/// key from the operator's directory; replicas get only the CA's
/// certificate ([`ensure_node_dir`]).
pub fn ensure_front_proxy_material(files: &TlsFiles) -> Result<(), BoxError> {
    let fresh = !files.front_proxy_ca_cert().exists();
    if fresh {
        new_ca(
            front_proxy_ca_params()?,
            &files.front_proxy_ca_cert(),
            &files.front_proxy_ca_key(),
        )?;
    }
    if fresh || !files.front_proxy_cert().exists() || !files.front_proxy_key().exists() {
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(files.front_proxy_ca_key())?)?;
        let issuer = rcgen::Issuer::new(front_proxy_ca_params()?, &ca_key);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, FRONT_PROXY_NAME);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_private(&files.front_proxy_key(), key.serialize_pem().as_bytes())?;
        std::fs::write(files.front_proxy_cert(), cert.pem())?;
    }
    Ok(())
}

/// Issues a certificate of the peer CA (from `peer-ca.key`) for `who`: a
/// replica's (CN and DNS name `tmc-peer-<id>`, DNS name `tmc-peer`, server
/// and client auth) or the operator's (CN `tmc-operator`, client auth).
pub fn issue_peer_cert(files: &TlsFiles, who: PeerId) -> Result<ClientCert, BoxError> {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(files.peer_ca_key())?)?;
    let issuer = rcgen::Issuer::new(peer_ca_params()?, &ca_key);
    let mut params = match who {
        PeerId::Node(id) => {
            let mut p = rcgen::CertificateParams::new(vec![PEER_NAME.to_string(), node_name(id)])?;
            p.distinguished_name
                .push(rcgen::DnType::CommonName, node_name(id));
            p.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
            p
        }
        PeerId::Operator => {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name
                .push(rcgen::DnType::CommonName, OPERATOR_NAME);
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            p
        }
    };
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `D/nodes/<id>` from the material in `files` (`D`): copies of the
/// shared files (refreshed every time) and replica `id`'s own certificate
/// and key (kept if they exist). It holds no CA key. Returns the directory.
pub fn ensure_node_dir(files: &TlsFiles, id: u64) -> Result<PathBuf, BoxError> {
    use std::os::unix::fs::PermissionsExt;
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    let dir = files.node_dir(id);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let node = TlsFiles::new(&dir);
    for (from, to, private) in [
        (files.ca_cert(), node.ca_cert(), false),
        (files.server_cert(), node.server_cert(), false),
        (files.server_key(), node.server_key(), true),
        (files.tokens(), node.tokens(), true),
        (files.peer_ca_cert(), node.peer_ca_cert(), false),
    ]
    .into_iter()
    .chain(
        // Directories written before the front proxy existed have no CA
        // of it: their replicas take no request headers.
        files.front_proxy_ca_cert().exists().then(|| {
            (
                files.front_proxy_ca_cert(),
                node.front_proxy_ca_cert(),
                false,
            )
        }),
    ) {
        let data = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        // Written whole to a temporary name, then renamed: a replica that
        // reloads the file never reads half of it.
        let tmp = dir.join(format!(".{}.tmp", id_suffix(&to)));
        let _ = std::fs::remove_file(&tmp);
        if private {
            write_private(&tmp, &data)?;
        } else {
            std::fs::write(&tmp, &data)?;
        }
        std::fs::rename(&tmp, &to)?;
    }
    if !node.peer_cert().exists() || !node.peer_key().exists() {
        let c = issue_peer_cert(files, PeerId::Node(id))?;
        write_private(&node.peer_key(), c.key_pem.as_bytes())?;
        std::fs::write(node.peer_cert(), c.cert_pem)?;
    }
    Ok(dir)
}

/// Issues the identity of shard `name` (see [`TlsFiles::shard_cert`]).
pub fn issue_shard_identity(files: &TlsFiles, name: &str) -> Result<ClientCert, BoxError> {
    issue_client_cert(
        files,
        &format!("{}{name}", crate::authz::SHARD_USER_PREFIX),
        &[crate::authz::SHARDS_GROUP.to_string()],
        None,
    )
}

/// Writes shard `name`'s identity into `dir` (`shard.crt`, `shard.key`)
/// unless one of that name is there.
pub fn ensure_shard_identity(files: &TlsFiles, dir: &Path, name: &str) -> Result<(), BoxError> {
    let at = TlsFiles::new(dir);
    let user = format!("{}{name}", crate::authz::SHARD_USER_PREFIX);
    let current = read_certs(&at.shard_cert())
        .ok()
        .and_then(|c| c.first().and_then(|c| super::authn::subject_of(c)))
        .map(|(cn, _)| cn);
    if current.as_deref() == Some(user.as_str()) && at.shard_key().exists() {
        return Ok(());
    }
    let c = issue_shard_identity(files, name)?;
    write_private(&at.shard_key(), c.key_pem.as_bytes())?;
    std::fs::write(at.shard_cert(), c.cert_pem)?;
    Ok(())
}

fn id_suffix(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// A date: (year, month, day).
pub type Ymd = (i32, u8, u8);

/// A client certificate and its key (PEM).
pub struct ClientCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

/// Issues a client certificate signed by the CA in `files` (its `ca.key`):
/// CommonName `user`, one Organization per group (at most two), as
/// kube-apiserver reads them. `validity` is (not before, not after) as (year, month, day);
/// default: from today for one year.
pub fn issue_client_cert(
    files: &TlsFiles,
    user: &str,
    groups: &[String],
    validity: Option<(Ymd, Ymd)>,
) -> Result<ClientCert, BoxError> {
    use chrono::Datelike;
    if user.is_empty() {
        return Err("a client certificate needs a user name".into());
    }
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(files.ca_key())?)?;
    let issuer = rcgen::Issuer::new(ca_params()?, &ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    // rcgen keeps one value per attribute type: the second group goes in
    // as the same OID (2.5.4.10) under a custom type; more cannot be had.
    if groups.len() > 2 {
        return Err("a client certificate holds at most two groups".into());
    }
    let types = [
        rcgen::DnType::OrganizationName,
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (ty, g) in types.into_iter().zip(groups) {
        params.distinguished_name.push(ty, g.as_str());
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let today = chrono::Utc::now().date_naive();
    let ((y0, m0, d0), (y1, m1, d1)) = validity.unwrap_or((
        (today.year(), today.month() as u8, today.day() as u8),
        (
            today.year() + 1,
            today.month() as u8,
            (today.day() as u8).min(28),
        ),
    ));
    params.not_before = rcgen::date_time_ymd(y0, m0, d0);
    params.not_after = rcgen::date_time_ymd(y1, m1, d1);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A kubeconfig for `workspace` at `server` that authenticates with a
/// client certificate (see [`issue_client_cert`]).
pub fn cert_kubeconfig(
    files: &TlsFiles,
    server: &str,
    workspace: &str,
    cert: &ClientCert,
    user: &str,
) -> Result<String, BoxError> {
    use base64::Engine as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let ca = b64(&std::fs::read(files.ca_cert())?);
    let crt = b64(cert.cert_pem.as_bytes());
    let key = b64(cert.key_pem.as_bytes());
    let ctx = workspace.replace(':', "-");
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {ctx}\n  cluster:\n    server: {server}/clusters/{workspace}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\ncontexts:\n- name: {ctx}\n  context:\n    cluster: {ctx}\n    user: {user}\ncurrent-context: {ctx}\n"
    ))
}

/// Asks every client for a certificate without requiring one, and checks
/// at the handshake only that the client holds the key of the certificate
/// it sent; the chain is verified per request by
/// [`super::authn::CertAuth`], so that a bad certificate is a 401 (as in
/// kube-apiserver, which asks with Go's `RequestClientCert`).
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verifier of client certificates: WebPKI against `ca.crt`.
fn client_verifier(
    files: &TlsFiles,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, BoxError> {
    verifier_of(&files.ca_cert())
}

/// A WebPKI verifier of client certificates against the CA in `ca`.
fn verifier_of(ca: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, BoxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read {}: {e}", ca.display()))?
    {
        roots.add(c.map_err(|e| format!("bad CA certificate: {e}"))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()?,
    )
}

/// Client certificate authentication against the CA in `files`.
pub fn cert_auth(files: &TlsFiles) -> Result<super::authn::CertAuth, BoxError> {
    Ok(super::authn::CertAuth::new(client_verifier(files)?))
}

/// Request-header authentication (the front proxy's word about the user)
/// when `files` holds `front-proxy-ca.crt`; `None` otherwise.
pub fn request_header_auth(
    files: &TlsFiles,
) -> Result<Option<super::authn::RequestHeaderAuth>, BoxError> {
    let ca = files.front_proxy_ca_cert();
    if !ca.exists() {
        return Ok(None);
    }
    Ok(Some(super::authn::RequestHeaderAuth::new(
        verifier_of(&ca)?,
        vec![FRONT_PROXY_NAME.to_string()],
    )))
}

/// Writes `admin.kubeconfig` (for `root`).
pub fn write_admin_kubeconfig(files: &TlsFiles, server: &str) -> Result<PathBuf, BoxError> {
    let path = files.admin_kubeconfig();
    write_private(&path, kubeconfig(files, server, "root")?.as_bytes())?;
    Ok(path)
}

/// [`server_config`], rebuilt whenever `server.crt`, `server.key` or
/// `ca.crt` change (certificate rotation without a restart).
pub fn reloading_server_config(
    files: &TlsFiles,
) -> Result<Arc<crate::util::Reloading<rustls::ServerConfig>>, BoxError> {
    let f = TlsFiles::new(&files.dir);
    let paths = vec![files.server_cert(), files.server_key(), files.ca_cert()];
    Ok(crate::util::Reloading::new(
        "API serving certificate",
        paths,
        move || {
            server_config(&f)
                .map(Arc::unwrap_or_clone)
                .map_err(|e| e.to_string())
        },
    )?)
}

/// The certificates of a PEM file, with errors naming the file.
pub fn read_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BoxError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()).into())
}

/// A rustls server configuration from the serving certificate, offering
/// HTTP/2 and HTTP/1.1 by ALPN and asking for (not requiring) a client
/// certificate.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let certs = read_certs(&files.server_cert())?;
    let key = PrivateKeyDer::from_pem_file(files.server_key())
        .map_err(|e| format!("cannot read the key {}: {e}", files.server_key().display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(RequestClientCert {
            inner: client_verifier(files)?,
        }))
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
