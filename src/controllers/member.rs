//! Access to member clusters: the credentials in a tenant's Secret, and
//! the connections made with them.
//!
//! A ClusterRegistration names a Secret in its workspace; whoever may
//! write that Secret (a workspace admin) chooses what the shard leader
//! does with it. So the Secret is data, never configuration of the
//! leader's process:
//!
//! - **Inline credentials only.** [`load`] reads the Secret's `kubeconfig`
//!   (or `token` and `ca.crt`) and [`parse_kubeconfig`] takes from the
//!   current context's cluster and user exactly: `server`,
//!   `certificate-authority-data`, `tls-server-name`,
//!   `insecure-skip-tls-verify: false`, and `token` or
//!   `client-certificate-data` with `client-key-data` (plus `extensions`
//!   and `disable-compression`, which change nothing). Everything else
//!   there — `exec`, `auth-provider`, `tokenFile` and every other file
//!   path, `proxy-url`, basic auth, impersonation, unknown fields — is
//!   refused with reason `UnsupportedCredential`, before anything is run,
//!   read or connected to. Other contexts and users of the file are never
//!   looked at. The kube-rs [`kube::Config`] is then built field by field
//!   ([`MemberCredentials::client`]) from these values alone, never with
//!   kube-rs's kubeconfig loader, so no code path of kube-rs can read a
//!   file or start a program for it. A token that is not a valid HTTP
//!   header value is refused too (tower-http would panic on it).
//! - **Endpoints.** Unless the shard runs with
//!   `--allow-private-member-endpoints` ([`EndpointPolicy::allow_private`]),
//!   a member endpoint may not be a loopback, unspecified or link-local
//!   address (169.254.0.0/16 and fe80::/10, where cloud metadata services
//!   answer; also AWS's `fd00:ec2::254`), nor an address of the shard's
//!   own host (its interfaces, read with `getifaddrs`). The check is made
//!   **at connect time** by [`GuardedConnector`], below TLS: the name is
//!   resolved, refused addresses are dropped, and the connection goes to
//!   an address that was checked (the resolved IP is what is dialled, so
//!   DNS cannot answer differently between check and connect). A name
//!   that resolves only to refused addresses fails with [`EndpointRefused`]
//!   (the probe reports it as `CredentialsValid` False,
//!   `EndpointNotAllowed`); an IP literal is refused before a client is
//!   built.
//!
//! Left out: a list of allowed or denied networks beyond these (RFC 1918
//! ranges are allowed: member clusters live there), the Service IPs of
//! the shard's own Kubernetes Service (not an interface address), and
//! other clouds' metadata addresses outside link-local (e.g. Alibaba's
//! 100.100.100.200).

use super::objects::{self, Stored};
use crate::shard::Shard;
use crate::store::{GroupResource, ObjectKey, Workspace};
use crate::types::ClusterRegistrationSpec;
use axum::http::Uri;
use serde_json::Value;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why the credentials (or the endpoint) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    /// A CamelCase reason for a condition.
    pub reason: &'static str,
    /// What a person can act on.
    pub message: String,
}

/// The reason for a kubeconfig that asks for more than inline credentials.
pub const UNSUPPORTED_CREDENTIAL: &str = "UnsupportedCredential";
/// The reason for an endpoint the shard may not connect to.
pub const ENDPOINT_NOT_ALLOWED: &str = "EndpointNotAllowed";

/// Which member endpoints the shard may connect to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Allow loopback, link-local and the shard's own addresses
    /// (`--allow-private-member-endpoints`: test environments whose
    /// member clusters run on 127.0.0.1).
    pub allow_private: bool,
}

/// Validated, inline credentials of one member cluster.
#[derive(Clone)]
pub struct MemberCredentials {
    /// The API server.
    pub server: Uri,
    ca: Option<Vec<u8>>,
    tls_server_name: Option<String>,
    token: Option<String>,
    client_cert: Option<(String, String)>,
}

impl std::fmt::Debug for MemberCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the key.
        f.debug_struct("MemberCredentials")
            .field("server", &self.server)
            .field("ca", &self.ca.is_some())
            .field("tls_server_name", &self.tls_server_name)
            .field("token", &self.token.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// The resource of Secrets.
pub fn secrets() -> GroupResource {
    GroupResource::new("", "secrets").expect("a valid constant")
}

fn unsupported(what: &str) -> CredentialsError {
    CredentialsError {
        reason: UNSUPPORTED_CREDENTIAL,
        message: format!(
            "{what}: tmc accepts only inline credentials (token, or client-certificate-data \
             with client-key-data, and certificate-authority-data); exec and auth-provider \
             plugins, file paths, proxies, basic auth and impersonation are refused"
        ),
    }
}

fn invalid(message: String) -> CredentialsError {
    CredentialsError {
        reason: "InvalidKubeconfig",
        message,
    }
}

/// The credentials of the cluster `spec` describes, from the Secret it
/// references in workspace `ws` (read from local state), validated; and
/// a fingerprint (the Secret's revision and the endpoint) that changes
/// when either does. Shared by the prober and the sync controller.
pub fn load(
    shard: &dyn Shard,
    ws: &Workspace,
    spec: &ClusterRegistrationSpec,
) -> Result<(String, MemberCredentials), CredentialsError> {
    let r = &spec.credentials_secret_ref;
    let missing = |what: String| CredentialsError {
        reason: "SecretInvalid",
        message: what,
    };
    let secret_key =
        ObjectKey::namespaced(secrets(), ws.clone(), &r.namespace, &r.name).map_err(|e| {
            missing(format!(
                "spec.credentialsSecretRef is not a valid Secret reference: {e}"
            ))
        })?;
    let secret: Option<Stored<Value>> =
        objects::read(shard, &secret_key).map_err(|e| missing(e.to_string()))?;
    from_secret(ws, spec, secret.map(|s| (s.raw, s.revision)).as_ref())
}

/// [`load`] from the Secret `secret` (its object and revision; `None`:
/// there is none), read wherever its workspace lives.
pub fn from_secret(
    ws: &Workspace,
    spec: &ClusterRegistrationSpec,
    secret: Option<&(Value, u64)>,
) -> Result<(String, MemberCredentials), CredentialsError> {
    let r = &spec.credentials_secret_ref;
    let missing = |what: String| CredentialsError {
        reason: "SecretInvalid",
        message: what,
    };
    let Some((secret, revision)) = secret else {
        return Err(CredentialsError {
            reason: "SecretNotFound",
            message: format!(
                "Secret {}/{} not found in workspace {ws}; create it with the cluster's \
                 kubeconfig under key \"kubeconfig\" (or \"token\" and \"ca.crt\"), \
                 e.g. with `tmc cluster register`",
                r.namespace, r.name
            ),
        });
    };
    let fingerprint = format!("{revision}|{}", spec.api_endpoint);
    let data = |k: &str| -> Option<Vec<u8>> {
        use base64::Engine;
        let s = secret.get("data")?.get(k)?.as_str()?;
        base64::engine::general_purpose::STANDARD.decode(s).ok()
    };
    let text = |k: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| {
            missing(format!(
                "key {k:?} of Secret {}/{} is not UTF-8 text",
                r.namespace, r.name
            ))
        })
    };
    let endpoint = (!spec.api_endpoint.is_empty()).then_some(spec.api_endpoint.as_str());
    let within = |e: CredentialsError| CredentialsError {
        message: format!("Secret {}/{}: {}", r.namespace, r.name, e.message),
        ..e
    };
    let creds = match (data("kubeconfig"), data("token"), data("ca.crt")) {
        (Some(kc), _, _) => parse_kubeconfig(&text("kubeconfig", kc)?, endpoint).map_err(within)?,
        (None, Some(token), Some(ca)) => {
            let token = text("token", token)?;
            let server = endpoint.ok_or_else(|| {
                invalid(
                    "spec.apiEndpoint is required with a \"token\" and \"ca.crt\" Secret".into(),
                )
            })?;
            MemberCredentials {
                server: parse_server(server)?,
                ca: Some(ca),
                tls_server_name: None,
                token: Some(check_token(token.trim())?),
                client_cert: None,
            }
        }
        _ => {
            return Err(missing(format!(
                "Secret {}/{} has neither a \"kubeconfig\" key nor \"token\" and \"ca.crt\" keys",
                r.namespace, r.name
            )))
        }
    };
    Ok((fingerprint, creds))
}

fn parse_server(s: &str) -> Result<Uri, CredentialsError> {
    let uri: Uri = s
        .parse()
        .map_err(|e| invalid(format!("server {s:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(invalid(format!("server {s:?} must be an https:// URL"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(format!("server {s:?} has no host")));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(unsupported(&format!(
            "server {s:?} carries user information"
        )));
    }
    Ok(uri)
}

fn check_token(token: &str) -> Result<String, CredentialsError> {
    if token.is_empty()
        || axum::http::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        || token.chars().any(char::is_control)
    {
        return Err(invalid(
            "the token is empty or not a valid HTTP header value".into(),
        ));
    }
    Ok(token.to_string())
}

fn decode_b64(field: &str, v: &str) -> Result<Vec<u8>, CredentialsError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|e| invalid(format!("{field} is not base64: {e}")))
}

/// Names of fields of `v` (a serde-flattened map of unknown fields).
fn unknown(map: &std::collections::BTreeMap<String, Value>) -> Option<String> {
    map.keys().next().cloned()
}

/// The inline credentials of `text`'s current context, with its server
/// replaced by `endpoint` when given; anything beyond the allow-list of
/// the module docs is refused.
pub fn parse_kubeconfig(
    text: &str,
    endpoint: Option<&str>,
) -> Result<MemberCredentials, CredentialsError> {
    let kc = kube::config::Kubeconfig::from_yaml(text)
        .map_err(|e| invalid(format!("the kubeconfig does not parse: {e}")))?;
    let ctx_name = kc
        .current_context
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("the kubeconfig has no current-context".into()))?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| invalid(format!("context {ctx_name:?} is not in the kubeconfig")))?;
    let named = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| {
            invalid(format!(
                "cluster {:?} is not in the kubeconfig",
                ctx.cluster
            ))
        })?;
    let cluster = named
        .cluster
        .as_ref()
        .ok_or_else(|| invalid(format!("cluster {:?} is empty", ctx.cluster)))?;
    let cname = &ctx.cluster;
    if cluster.certificate_authority.is_some() {
        return Err(unsupported(&format!(
            "cluster {cname:?} names a certificate-authority file"
        )));
    }
    if cluster.proxy_url.is_some() {
        return Err(unsupported(&format!("cluster {cname:?} sets proxy-url")));
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(unsupported(&format!(
            "cluster {cname:?} sets insecure-skip-tls-verify"
        )));
    }
    if let Some(f) = unknown(&cluster.other).or_else(|| unknown(&named.other)) {
        return Err(unsupported(&format!(
            "cluster {cname:?} has the unsupported field {f:?}"
        )));
    }
    let server = match endpoint {
        Some(e) => e,
        None => cluster
            .server
            .as_deref()
            .ok_or_else(|| invalid(format!("cluster {cname:?} has no server")))?,
    };
    let ca = match &cluster.certificate_authority_data {
        Some(d) => Some(decode_b64("certificate-authority-data", d)?),
        None => None,
    };
    let mut creds = MemberCredentials {
        server: parse_server(server)?,
        ca,
        tls_server_name: cluster.tls_server_name.clone(),
        token: None,
        client_cert: None,
    };
    let Some(uname) = ctx.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(creds); // anonymous
    };
    let named = kc
        .auth_infos
        .iter()
        .find(|u| u.name == uname)
        .ok_or_else(|| invalid(format!("user {uname:?} is not in the kubeconfig")))?;
    let Some(user) = named.auth_info.as_ref() else {
        return Ok(creds);
    };
    let refused = [
        (user.exec.is_some(), "an exec plugin"),
        (user.auth_provider.is_some(), "an auth-provider plugin"),
        (user.token_file.is_some(), "a tokenFile"),
        (
            user.client_certificate.is_some(),
            "a client-certificate file",
        ),
        (user.client_key.is_some(), "a client-key file"),
        (
            user.username.is_some() || user.password.is_some(),
            "basic auth",
        ),
        (
            user.impersonate.is_some()
                || user.impersonate_uid.is_some()
                || user.impersonate_groups.is_some()
                || user.impersonate_user_extra.is_some(),
            "impersonation",
        ),
    ];
    if let Some((_, what)) = refused.iter().find(|(on, _)| *on) {
        return Err(unsupported(&format!("user {uname:?} uses {what}")));
    }
    if let Some(f) = unknown(&user.other).or_else(|| unknown(&named.other)) {
        return Err(unsupported(&format!(
            "user {uname:?} has the unsupported field {f:?}"
        )));
    }
    if let Some(t) = &user.token {
        use secrecy::ExposeSecret;
        creds.token = Some(check_token(t.expose_secret())?);
    }
    match (&user.client_certificate_data, &user.client_key_data) {
        (None, None) => {}
        (Some(c), Some(k)) => {
            use secrecy::ExposeSecret;
            decode_b64("client-certificate-data", c)?;
            decode_b64("client-key-data", k.expose_secret())?;
            creds.client_cert = Some((c.trim().to_string(), k.expose_secret().trim().to_string()));
        }
        _ => {
            return Err(invalid(format!(
                "user {uname:?} needs both client-certificate-data and client-key-data"
            )))
        }
    }
    Ok(creds)
}

impl MemberCredentials {
    /// Whether the server is reached over TLS.
    pub fn tls(&self) -> bool {
        self.server.scheme_str() == Some("https")
    }

    /// A kube-rs client for these credentials: `timeout` on connect,
    /// read and write; connections only where `policy` allows (checked
    /// at connect time, see the module docs).
    pub fn client(
        &self,
        timeout: Duration,
        policy: EndpointPolicy,
    ) -> Result<kube::Client, CredentialsError> {
        use kube::client::ConfigExt;
        let host = self.server.host().unwrap_or_default();
        if let Ok(ip) = strip_brackets(host).parse::<IpAddr>() {
            if let Some(why) = policy.refusal(ip, &interface_addresses()) {
                return Err(CredentialsError {
                    reason: ENDPOINT_NOT_ALLOWED,
                    message: EndpointRefused::new(host, ip, why).to_string(),
                });
            }
        }
        let mut cfg = kube::Config::new(self.server.clone());
        cfg.root_cert = match &self.ca {
            None => None,
            Some(pem) => Some(ca_certificates(pem)?),
        };
        cfg.tls_server_name = self.tls_server_name.clone();
        cfg.accept_invalid_certs = false;
        cfg.auth_info = kube::config::AuthInfo {
            token: self.token.clone().map(Into::into),
            client_certificate_data: self.client_cert.as_ref().map(|(c, _)| c.clone()),
            client_key_data: self.client_cert.as_ref().map(|(_, k)| k.clone().into()),
            ..Default::default()
        };
        cfg.connect_timeout = Some(timeout);
        cfg.read_timeout = Some(timeout);
        cfg.write_timeout = Some(timeout);
        let build_err = |e: kube::Error| invalid(format!("the credentials cannot be used: {e}"));
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let guarded = GuardedConnector {
            inner: http,
            policy,
        };
        let https = cfg
            .rustls_https_connector_with_connector(guarded)
            .map_err(build_err)?;
        let mut connector = hyper_timeout::TimeoutConnector::new(https);
        connector.set_connect_timeout(cfg.connect_timeout);
        connector.set_read_timeout(cfg.read_timeout);
        connector.set_write_timeout(cfg.write_timeout);
        connector.set_reset_reader_on_write(true);
        let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
            hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let service = tower::ServiceBuilder::new()
            .layer(cfg.base_uri_layer())
            .option_layer(cfg.auth_layer().map_err(build_err)?)
            .map_err(tower::BoxError::from)
            .service(http_client);
        Ok(kube::Client::new(service, "default"))
    }
}

/// DER certificates of a PEM bundle.
fn ca_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, CredentialsError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect();
    if certs.is_empty() {
        return Err(invalid(
            "certificate-authority-data holds no PEM certificate".into(),
        ));
    }
    Ok(certs)
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// AWS's instance metadata service over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

impl EndpointPolicy {
    /// Why `ip` may not be connected to (`own`: the host's addresses), or
    /// `None` if it may.
    pub fn refusal(&self, ip: IpAddr, own: &[IpAddr]) -> Option<&'static str> {
        if self.allow_private {
            return None;
        }
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Some("a loopback address");
        }
        if ip.is_unspecified() {
            return Some("the unspecified address (this host)");
        }
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
        };
        if link_local {
            return Some("a link-local address (where cloud metadata services answer)");
        }
        if own.iter().any(|o| o.to_canonical() == ip) {
            return Some("an address of the tmc shard's own host");
        }
        None
    }
}

/// A connection refused by the [`EndpointPolicy`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "refusing to connect to member endpoint {host}: {addr} is {why}; only a shard started with \
     --allow-private-member-endpoints connects there"
)]
pub struct EndpointRefused {
    host: String,
    addr: IpAddr,
    why: &'static str,
}

impl EndpointRefused {
    fn new(host: &str, addr: IpAddr, why: &'static str) -> Self {
        EndpointRefused {
            host: host.to_string(),
            addr,
            why,
        }
    }

    /// The refusal somewhere in the source chain of `e`, if any.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EndpointRefused> {
        let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(r) = err.downcast_ref::<EndpointRefused>() {
                return Some(r);
            }
            cur = err.source();
        }
        None
    }
}

/// The addresses of this host's interfaces (`getifaddrs`); empty if they
/// cannot be read.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a linked list and stores its head in
    // `head` (left untouched on failure); every node is read only while
    // the list lives, each `ifa_addr` is checked for null and its family
    // before it is read as the matching sockaddr type, and the list is
    // freed exactly once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        // s_addr holds the address in network order.
                        out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The TCP connector under TLS that applies the [`EndpointPolicy`]: it
/// resolves the host itself, drops refused addresses, and dials the
/// first allowed address that answers (by IP, so what was checked is
/// what is reached).
#[derive(Clone)]
pub struct GuardedConnector {
    inner: hyper_util::client::legacy::connect::HttpConnector,
    policy: EndpointPolicy,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = Result<hyper_util::rt::TokioIo<tokio::net::TcpStream>, tower::BoxError>>
            + Send,
    >,
>;

impl tower::Service<Uri> for GuardedConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = tower::BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy;
        Box::pin(async move {
            let host = strip_brackets(dst.host().unwrap_or_default()).to_string();
            let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
                Some("http") => 80,
                _ => 443,
            });
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .collect();
            let own = if policy.allow_private {
                Vec::new()
            } else {
                interface_addresses()
            };
            let mut refused = None;
            let mut last_err: Option<tower::BoxError> = None;
            for a in &addrs {
                if let Some(why) = policy.refusal(a.ip(), &own) {
                    refused.get_or_insert_with(|| EndpointRefused::new(&host, a.ip(), why));
                    continue;
                }
                let authority = match a {
                    SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
                    SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
                };
                let uri: Uri = format!("http://{authority}/")
                    .parse()
                    .map_err(|e| format!("dialling {authority}: {e}"))?;
                match tower::ServiceExt::oneshot(inner.clone(), uri).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => last_err = Some(e.into()),
                }
            }
            Err(match (last_err, refused) {
                (Some(e), _) => e,
                (None, Some(r)) => r.into(),
                (None, None) => format!("{host} resolves to no address").into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kc(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n    \
             cluster: c\n    user: u\nclusters:\n- name: c\n  cluster:\n{cluster}users:\n- name: u\n  \
             user:\n{user}"
        )
    }

    #[test]
    fn only_inline_credentials_are_accepted() {
        let server = "    server: https://10.0.0.1:6443\n";
        let ok = parse_kubeconfig(&kc(server, "    token: abc\n"), None).unwrap();
        assert_eq!(ok.token.as_deref(), Some("abc"));
        assert!(ok.tls());
        let refused = [
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: touch\n      args: [/tmp/x]\n",
            "    auth-provider:\n      name: gcp\n",
            "    tokenFile: /etc/tmc/ca.key\n",
            "    client-certificate: /etc/tmc/ca.crt\n    client-key: /etc/tmc/ca.key\n",
            "    username: a\n    password: b\n",
            "    as: system:admin\n",
            "    token: abc\n    something-new: x\n",
        ];
        for user in refused {
            let e = parse_kubeconfig(&kc(server, user), None).unwrap_err();
            assert_eq!(e.reason, UNSUPPORTED_CREDENTIAL, "{user}: {e:?}");
        }
        for cluster in [
            "    server: https://10.0.0.1:6443\n    certificate-authority: /etc/tmc/ca.key\n",
            "    server: https://10.0.0.1:6443\n    proxy-url: http://evil:3128\n",
            "    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true\n",
        ] {
            let e = parse_kubeconfig(&kc(cluster, "    token: abc\n"), None).unwrap_err();
            assert_eq!(e.reason, UNSUPPORTED_CREDENTIAL, "{cluster}: {e:?}");
        }
        // A token that would break a header (tower-http panics on it).
        let e = parse_kubeconfig(&kc(server, "    token: \"a\\nb\"\n"), None).unwrap_err();
        assert_eq!(e.reason, "InvalidKubeconfig");
        // The endpoint override wins; a bad URL is named.
        let o = parse_kubeconfig(&kc(server, "    token: t\n"), Some("https://10.0.0.9")).unwrap();
        assert_eq!(o.server.host(), Some("10.0.0.9"));
        let e = parse_kubeconfig(&kc(server, "    token: t\n"), Some("ftp://x")).unwrap_err();
        assert_eq!(e.reason, "InvalidKubeconfig");
    }

    #[test]
    fn loopback_link_local_and_own_addresses_are_refused_unless_allowed() {
        let strict = EndpointPolicy::default();
        let own: Vec<IpAddr> = vec!["10.1.2.3".parse().unwrap()];
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.refusal(ip, &own).is_some(), "{ip} allowed");
            let open = EndpointPolicy {
                allow_private: true,
            };
            assert!(open.refusal(ip, &own).is_none());
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "fd00::1"] {
            assert!(strict.refusal(ip.parse().unwrap(), &own).is_none(), "{ip}");
        }
        assert!(
            interface_addresses().iter().any(IpAddr::is_loopback),
            "getifaddrs sees lo"
        );
    }
}
