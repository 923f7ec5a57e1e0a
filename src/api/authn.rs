//! Authentication: who is asking.
//!
//! Two ways in, with Kubernetes' user-info shape ([`User`]):
//! - bearer tokens from a token file in kube-apiserver's
//!   `--token-auth-file` format (`token,user,uid,"group1,group2"` per
//!   line), compared by their SHA-256 digest, so lookups do not leak
//!   through timing which prefix of a token matched;
//! - client certificates signed by the cluster CA (`ca.crt`): the subject's
//!   CommonName is the user, each Organization a group, as kube-apiserver's
//!   x509 authenticator. The TLS layer asks for a certificate but does not
//!   require one (token users connect too) and checks only that the client
//!   holds the certificate's key; the chain and validity are checked here,
//!   on every request, so a bad or expired certificate is a 401 like a bad
//!   token rather than a broken handshake.
//!
//! A third way is for the front proxy only (`tmc proxy`, kube-apiserver's
//! request-header authentication): the proxy authenticates the user
//! itself and names them in `X-Remote-User` (one) and `X-Remote-Group`
//! (any number). A replica believes those headers only on a connection
//! whose client certificate is signed by the front proxy's CA
//! (`front-proxy-ca.crt`, a CA of its own, not the users') and names an
//! allowed proxy ([`RequestHeaderAuth`]). The same headers from anyone
//! else are refused with 401, never ignored, so that a misrouted client
//! learns at once that it is not the proxy; the proxy's certificate
//! without a user header is refused too (the proxy is not a user).
//!
//! A request that carries an `Authorization` header is decided by it (a
//! bad token is 401 even with a good certificate); without one, by the
//! client certificate. Every failure is 401 with a Status saying only
//! "Unauthorized". Only `/livez` and `/readyz` are open.
//!
//! Left out: reloading the token file on change, revocation lists for
//! certificates, service account tokens (ServiceAccount subjects work for
//! users named `system:serviceaccount:{ns}:{name}`), OIDC, impersonation,
//! `X-Remote-Extra-*` (user extras; refused like the other headers from
//! anyone but the proxy, ignored from the proxy).

use super::status::ApiError;
pub use crate::authz::{User, MASTERS};
use rustls::pki_types::{CertificateDer, UnixTime};
use std::collections::HashMap;
use std::sync::Arc;

/// Bearer tokens and their users.
#[derive(Default)]
pub struct TokenAuth {
    by_digest: HashMap<[u8; 32], User>,
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Splits one CSV line, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

impl TokenAuth {
    /// Parses a token file; errors name the line.
    pub fn parse(text: &str) -> Result<TokenAuth, String> {
        let mut auth = TokenAuth::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line);
            if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
                return Err(format!(
                    "token file line {}: want token,user,uid[,\"groups\"]",
                    i + 1
                ));
            }
            let mut groups: Vec<String> = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            groups.push(crate::authz::AUTHENTICATED.into());
            auth.by_digest.insert(
                digest(&f[0]),
                User {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                },
            );
        }
        Ok(auth)
    }

    /// Reads a token file.
    pub fn load(path: &std::path::Path) -> Result<TokenAuth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// The user of a request's `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<User, ApiError> {
        let h = authorization.ok_or_else(ApiError::unauthorized)?;
        // Bounded, so an oversized header costs nothing.
        if h.len() > 4096 {
            return Err(ApiError::unauthorized());
        }
        let h = std::str::from_utf8(h).map_err(|_| ApiError::unauthorized())?;
        let token = h
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The certificate chain a client presented in its TLS handshake (end
/// entity first), attached to each of the connection's requests.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Client certificates: verified against the cluster CA per request.
pub struct CertAuth {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl CertAuth {
    /// Verifies chains against `verifier` (a WebPKI verifier over the CA).
    pub fn new(verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>) -> CertAuth {
        CertAuth { verifier }
    }

    /// The user of a verified chain: CN the name, each O a group.
    pub fn authenticate(&self, chain: &[CertificateDer<'static>]) -> Result<User, ApiError> {
        let (end, intermediates) = chain.split_first().ok_or_else(ApiError::unauthorized)?;
        self.verifier
            .verify_client_cert(end, intermediates, UnixTime::now())
            .map_err(|_| ApiError::unauthorized())?;
        let (cn, orgs) = subject_of(end).ok_or_else(ApiError::unauthorized)?;
        if cn.is_empty() {
            return Err(ApiError::unauthorized());
        }
        let mut groups = orgs;
        groups.push(crate::authz::AUTHENTICATED.into());
        Ok(User {
            name: cn,
            uid: String::new(),
            groups,
        })
    }
}

/// The header naming the user the front proxy authenticated.
pub const REMOTE_USER: &str = "x-remote-user";
/// The header naming one group of that user (repeated per group).
pub const REMOTE_GROUP: &str = "x-remote-group";
/// The prefix of the headers of user extras.
pub const REMOTE_EXTRA_PREFIX: &str = "x-remote-extra-";

/// Whether `name` (lower case, as `http` keeps header names) is one of
/// the request headers only the front proxy may send.
pub fn is_request_header(name: &str) -> bool {
    name == REMOTE_USER || name == REMOTE_GROUP || name.starts_with(REMOTE_EXTRA_PREFIX)
}

/// Bounds on what the proxy may say about a user.
const MAX_REMOTE_NAME: usize = 1024;
const MAX_REMOTE_GROUPS: usize = 64;

/// Request-header authentication: the front proxy's certificate
/// (verified against its own CA, CommonName among the allowed names) and
/// the user it names in [`REMOTE_USER`] and [`REMOTE_GROUP`].
pub struct RequestHeaderAuth {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed_names: Vec<String>,
}

impl RequestHeaderAuth {
    /// Trusts proxies whose certificates `verifier` accepts and whose
    /// CommonName is in `allowed_names` (empty: none).
    pub fn new(
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
        allowed_names: Vec<String>,
    ) -> Self {
        RequestHeaderAuth {
            verifier,
            allowed_names,
        }
    }

    /// Whether `chain` is an allowed proxy's.
    fn is_proxy(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((end, intermediates)) = chain.split_first() else {
            return false;
        };
        if self
            .verifier
            .verify_client_cert(end, intermediates, UnixTime::now())
            .is_err()
        {
            return false;
        }
        subject_of(end).is_some_and(|(cn, _)| self.allowed_names.contains(&cn))
    }
}

/// The user the proxy names in `headers`: exactly one non-empty
/// [`REMOTE_USER`], each [`REMOTE_GROUP`] a group; names bounded in
/// length and count, UTF-8.
fn remote_user(headers: &hyper::http::HeaderMap) -> Result<User, ApiError> {
    let text = |v: &hyper::http::HeaderValue| {
        std::str::from_utf8(v.as_bytes())
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_REMOTE_NAME)
            .map(str::to_string)
            .ok_or_else(ApiError::unauthorized)
    };
    let mut users = headers.get_all(REMOTE_USER).iter();
    let name = text(users.next().ok_or_else(ApiError::unauthorized)?)?;
    if users.next().is_some() {
        return Err(ApiError::unauthorized());
    }
    let mut groups = Vec::new();
    for v in headers.get_all(REMOTE_GROUP) {
        if groups.len() == MAX_REMOTE_GROUPS {
            return Err(ApiError::unauthorized());
        }
        let g = text(v)?;
        if g != crate::authz::AUTHENTICATED && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups.push(crate::authz::AUTHENTICATED.into());
    Ok(User {
        name,
        uid: String::new(),
        groups,
    })
}

/// Authenticates a request. From the front proxy (its certificate,
/// verified by `proxy`): the user its headers name. Request headers from
/// anyone else: 401. Otherwise its bearer token when it sends an
/// `Authorization` header, else its client certificate (when `certs` is
/// configured and the client presented one).
pub fn authenticate(
    tokens: &TokenAuth,
    certs: Option<&CertAuth>,
    proxy: Option<&RequestHeaderAuth>,
    headers: &hyper::http::HeaderMap,
    peer: Option<&PeerCertificates>,
) -> Result<User, ApiError> {
    let chain = peer.map(|p| p.0.as_slice()).unwrap_or_default();
    if let Some(proxy) = proxy {
        if proxy.is_proxy(chain) {
            return remote_user(headers);
        }
    }
    if headers.keys().any(|k| is_request_header(k.as_str())) {
        tracing::warn!(
            "request headers naming a user from a client that is not the front proxy: refused"
        );
        return Err(ApiError::unauthorized());
    }
    let authorization = headers
        .get(hyper::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if authorization.is_some() {
        return tokens.authenticate(authorization);
    }
    match (certs, peer) {
        (Some(c), Some(p)) if !p.0.is_empty() => c.authenticate(&p.0),
        _ => Err(ApiError::unauthorized()),
    }
}

/// One DER TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut l = 0usize;
        for &b in &rest[..n] {
            l = (l << 8) | b as usize;
        }
        rest = &rest[n..];
        l
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject's CommonName and Organizations of a DER certificate.
pub fn subject_of(cert: &[u8]) -> Option<(String, Vec<String>)> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let (0x30, certificate, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (0x30, mut name, _) = tlv(rest)? else {
        return None;
    };
    let mut cn = String::new();
    let mut orgs = Vec::new();
    while !name.is_empty() {
        let (0x31, mut set, r) = tlv(name)? else {
            return None;
        };
        name = r;
        while !set.is_empty() {
            let (0x30, atv, r) = tlv(set)? else {
                return None;
            };
            set = r;
            let (0x06, oid, v) = tlv(atv)? else {
                return None;
            };
            let (vtag, value, _) = tlv(v)?;
            // UTF8String, PrintableString, IA5String.
            if ![0x0c, 0x13, 0x16].contains(&vtag) {
                continue;
            }
            let value = std::str::from_utf8(value).ok()?.to_string();
            if oid == CN {
                cn = value;
            } else if oid == O {
                orgs.push(value);
            }
        }
    }
    Some((cn, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_and_everything_else_is_unauthorized() {
        let a = TokenAuth::parse("# c\nsecret1,alice,u1,\"dev,ops\"\nsecret2,bob,u2\n").unwrap();
        let alice = a.authenticate(Some(b"Bearer secret1")).unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);
        assert!(!alice.is_master());
        for bad in [
            None,
            Some(&b"Bearer"[..]),
            Some(b"Bearer "),
            Some(b"Basic secret1"),
            Some(b"Bearer secret"),
            Some(b"Bearer secret1x"),
            Some(b"\xff\xfe"),
        ] {
            let e = a.authenticate(bad).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (401, "Unauthorized"));
        }
        let huge = format!("Bearer {}", "a".repeat(10_000));
        assert_eq!(a.authenticate(Some(huge.as_bytes())).unwrap_err().code, 401);
        assert!(TokenAuth::parse("onlytoken\n").is_err());
    }

    fn no_headers() -> hyper::http::HeaderMap {
        hyper::http::HeaderMap::new()
    }

    fn bearer(token: &str) -> hyper::http::HeaderMap {
        let mut h = hyper::http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    fn chain(c: &super::super::tls::ClientCert) -> PeerCertificates {
        use rustls::pki_types::pem::PemObject;
        PeerCertificates(Arc::new(vec![CertificateDer::from_pem_slice(
            c.cert_pem.as_bytes(),
        )
        .unwrap()]))
    }

    #[test]
    fn request_headers_are_believed_only_on_the_proxys_certificate() {
        use super::super::tls;
        let dir = tempfile::tempdir().unwrap();
        let files = tls::ensure_material(dir.path(), &[]).unwrap();
        let certs = tls::cert_auth(&files).unwrap();
        let proxy = tls::request_header_auth(&files)
            .unwrap()
            .expect("front proxy CA written");
        let tokens = TokenAuth::parse("t1,tina,u1\n").unwrap();
        let proxy_chain = {
            use rustls::pki_types::pem::PemObject;
            let pem = std::fs::read(files.front_proxy_cert()).unwrap();
            PeerCertificates(Arc::new(
                vec![CertificateDer::from_pem_slice(&pem).unwrap()],
            ))
        };
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = hyper::http::HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    hyper::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    hyper::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
            h
        };
        let auth = |h: &hyper::http::HeaderMap, chain: &PeerCertificates| {
            authenticate(&tokens, Some(&certs), Some(&proxy), h, Some(chain))
        };
        // The proxy names a user and groups.
        let u = auth(
            &headers(&[
                ("x-remote-user", "bob"),
                ("x-remote-group", "dev"),
                ("x-remote-group", "dev"),
                ("x-remote-group", "system:authenticated"),
            ]),
            &proxy_chain,
        )
        .unwrap();
        assert_eq!(u.name, "bob");
        assert_eq!(u.groups, vec!["dev", "system:authenticated"]);
        // What the proxy may not say.
        let long = "a".repeat(MAX_REMOTE_NAME + 1);
        let many: Vec<(&str, String)> = (0..=MAX_REMOTE_GROUPS)
            .map(|i| ("x-remote-group", format!("g{i}")))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut rows: Vec<(&str, hyper::http::HeaderMap)> = vec![
            ("no user", headers(&[("x-remote-group", "system:masters")])),
            (
                "two users",
                headers(&[("x-remote-user", "a"), ("x-remote-user", "b")]),
            ),
            ("empty user", headers(&[("x-remote-user", " ")])),
            ("long user", headers(&[("x-remote-user", &long)])),
            ("too many groups", {
                let mut h = headers(&many);
                h.insert("x-remote-user", "bob".parse().unwrap());
                h
            }),
        ];
        let mut latin1 = headers(&[]);
        latin1.insert(
            "x-remote-user",
            hyper::http::HeaderValue::from_bytes(&[0xe9, b'x']).unwrap(),
        );
        rows.push(("user not UTF-8", latin1));
        for (row, h) in &rows {
            assert_eq!(auth(h, &proxy_chain).unwrap_err().code, 401, "{row}");
        }
        // The same headers from anyone else: refused, token or certificate,
        // even a users'-CA certificate that calls itself the proxy.
        let named_like_proxy =
            tls::issue_client_cert(&files, tls::FRONT_PROXY_NAME, &[], None).unwrap();
        let user_cert = tls::issue_client_cert(&files, "carol", &[], None).unwrap();
        let forged = headers(&[
            ("x-remote-user", "admin"),
            ("x-remote-group", "system:masters"),
        ]);
        for (row, chain) in [
            (
                "users'-CA certificate named like the proxy",
                chain(&named_like_proxy),
            ),
            ("a user's certificate", chain(&user_cert)),
            ("no certificate", PeerCertificates::default()),
        ] {
            assert_eq!(auth(&forged, &chain).unwrap_err().code, 401, "{row}");
            let mut with_token = forged.clone();
            with_token.insert("authorization", "Bearer t1".parse().unwrap());
            assert_eq!(
                auth(&with_token, &chain).unwrap_err().code,
                401,
                "{row} + token"
            );
        }
        let extra = headers(&[
            ("x-remote-extra-scopes", "x"),
            ("authorization", "Bearer t1"),
        ]);
        assert_eq!(auth(&extra, &chain(&user_cert)).unwrap_err().code, 401);
        // Without the proxy configured, its certificate is nobody.
        assert_eq!(
            authenticate(
                &tokens,
                Some(&certs),
                None,
                &headers(&[("x-remote-user", "bob")]),
                Some(&proxy_chain)
            )
            .unwrap_err()
            .code,
            401
        );
    }

    #[test]
    fn client_certificates_of_the_ca_authenticate_and_others_do_not() {
        use super::super::tls;
        let dir = tempfile::tempdir().unwrap();
        let files = tls::ensure_material(&dir.path().join("a"), &[]).unwrap();
        let foreign = tls::ensure_material(&dir.path().join("b"), &[]).unwrap();
        let certs = tls::cert_auth(&files).unwrap();
        let tokens = TokenAuth::parse("t1,tina,u1\n").unwrap();
        let groups = vec!["dev".to_string(), "ops".to_string()];
        let good = tls::issue_client_cert(&files, "carol", &groups, None).unwrap();
        let user = authenticate(
            &tokens,
            Some(&certs),
            None,
            &no_headers(),
            Some(&chain(&good)),
        )
        .unwrap();
        assert_eq!(user.name, "carol");
        assert_eq!(user.groups, vec!["dev", "ops", "system:authenticated"]);
        // A token, when sent, decides: good or bad.
        let t = authenticate(
            &tokens,
            Some(&certs),
            None,
            &bearer("t1"),
            Some(&chain(&good)),
        );
        assert_eq!(t.unwrap().name, "tina");
        let bad = authenticate(
            &tokens,
            Some(&certs),
            None,
            &bearer("no"),
            Some(&chain(&good)),
        );
        assert_eq!(bad.unwrap_err().code, 401);
        let expired =
            tls::issue_client_cert(&files, "carol", &[], Some(((2020, 1, 1), (2021, 1, 1))))
                .unwrap();
        let not_yet =
            tls::issue_client_cert(&files, "carol", &[], Some(((2090, 1, 1), (2091, 1, 1))))
                .unwrap();
        let stranger = tls::issue_client_cert(&foreign, "carol", &[], None).unwrap();
        for c in [&expired, &not_yet, &stranger] {
            let e = authenticate(&tokens, Some(&certs), None, &no_headers(), Some(&chain(c)))
                .unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (401, "Unauthorized"));
        }
        let garbage = PeerCertificates(Arc::new(vec![CertificateDer::from(vec![
            0x30, 0x03, 1, 2, 3,
        ])]));
        assert_eq!(
            authenticate(&tokens, Some(&certs), None, &no_headers(), Some(&garbage))
                .unwrap_err()
                .code,
            401
        );
        assert_eq!(
            authenticate(&tokens, None, None, &no_headers(), Some(&chain(&good)))
                .unwrap_err()
                .code,
            401
        );
        assert_eq!(
            authenticate(&tokens, Some(&certs), None, &no_headers(), None)
                .unwrap_err()
                .code,
            401
        );
        // The subject parser survives truncation anywhere.
        let der = chain(&good).0[0].to_vec();
        for n in 0..der.len() {
            let _ = subject_of(&der[..n]);
        }
    }
}
