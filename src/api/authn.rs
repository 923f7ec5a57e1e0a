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
//! A request that carries an `Authorization` header is decided by it (a
//! bad token is 401 even with a good certificate); without one, by the
//! client certificate. Every failure is 401 with a Status saying only
//! "Unauthorized". Only `/livez` and `/readyz` are open.
//!
//! Left out: reloading the token file on change, revocation lists for
//! certificates, service account tokens (ServiceAccount subjects work for
//! users named `system:serviceaccount:{ns}:{name}`), OIDC, impersonation.

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

/// Authenticates a request: its bearer token when it sends an
/// `Authorization` header, else its client certificate (when `certs` is
/// configured and the client presented one).
pub fn authenticate(
    tokens: &TokenAuth,
    certs: Option<&CertAuth>,
    authorization: Option<&[u8]>,
    peer: Option<&PeerCertificates>,
) -> Result<User, ApiError> {
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

    fn chain(c: &super::super::tls::ClientCert) -> PeerCertificates {
        use rustls::pki_types::pem::PemObject;
        PeerCertificates(Arc::new(vec![CertificateDer::from_pem_slice(
            c.cert_pem.as_bytes(),
        )
        .unwrap()]))
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
        let user = authenticate(&tokens, Some(&certs), None, Some(&chain(&good))).unwrap();
        assert_eq!(user.name, "carol");
        assert_eq!(user.groups, vec!["dev", "ops", "system:authenticated"]);
        // A token, when sent, decides: good or bad.
        let t = authenticate(
            &tokens,
            Some(&certs),
            Some(b"Bearer t1"),
            Some(&chain(&good)),
        );
        assert_eq!(t.unwrap().name, "tina");
        let bad = authenticate(
            &tokens,
            Some(&certs),
            Some(b"Bearer no"),
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
            let e = authenticate(&tokens, Some(&certs), None, Some(&chain(c))).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (401, "Unauthorized"));
        }
        let garbage = PeerCertificates(Arc::new(vec![CertificateDer::from(vec![
            0x30, 0x03, 1, 2, 3,
        ])]));
        assert_eq!(
            authenticate(&tokens, Some(&certs), None, Some(&garbage))
                .unwrap_err()
                .code,
            401
        );
        assert_eq!(
            authenticate(&tokens, None, None, Some(&chain(&good)))
                .unwrap_err()
                .code,
            401
        );
        assert_eq!(
            authenticate(&tokens, Some(&certs), None, None)
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
