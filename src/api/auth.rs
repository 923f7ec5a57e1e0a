//! Authentication: who is asking.
//!
//! Today: bearer tokens from a token file in kube-apiserver's
//! `--token-auth-file` format (`token,user,uid,"group1,group2"` per line),
//! with the same user-info shape as Kubernetes. A request without a valid
//! token is refused with 401 and no detail beyond "Unauthorized"; only
//! `/livez` and `/readyz` are open. Tokens are compared by their SHA-256
//! digest, so lookups do not leak through timing which prefix of a token
//! matched.
//!
//! Left out (the security issue builds them): client certificates,
//! reloading the file on change, RBAC (today every authenticated user may
//! do everything in every workspace it names, and only `system:masters`
//! may use the `*` wildcard).

use super::status::ApiError;
use std::collections::HashMap;

/// The group that may do anything.
pub const MASTERS: &str = "system:masters";

/// An authenticated user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Groups, with `system:authenticated` added.
    pub groups: Vec<String>,
}

impl User {
    /// Member of `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

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
            groups.push("system:authenticated".into());
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
}
