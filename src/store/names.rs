//! Naming rules for what goes into a key.
//!
//! - Workspaces follow kcp's logical-cluster path rules: segments joined by
//!   `:` (`root:acme:web`), each segment a DNS-label-like word of 1 to 63
//!   characters, `[a-z0-9]([a-z0-9-]*[a-z0-9])?`. The first segment `system`
//!   is reserved for tmc itself (kcp reserves `system:` the same way).
//! - Namespaces are DNS labels (RFC 1123, at most 63 characters).
//! - Object names are DNS subdomains (RFC 1123, at most 253 characters) by
//!   default; a few kinds (RBAC roles) allow any path segment name, i.e.
//!   anything without `/`, `%`, NUL or control characters that is not `.`
//!   or `..`.
//!
//! Every check says which rule the value broke, so that the API can hand the
//! message to the user unchanged.

use super::error::NameError;
use std::fmt;

/// Longest workspace path accepted, in bytes.
pub const MAX_WORKSPACE_LEN: usize = 253;
/// Longest DNS label (RFC 1123).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS subdomain (RFC 1123).
pub const MAX_SUBDOMAIN_LEN: usize = 253;

fn err(kind: &'static str, value: &str, rule: impl Into<String>) -> NameError {
    NameError {
        kind,
        value: value.to_string(),
        rule: rule.into(),
    }
}

/// Checks the characters every key segment must avoid, whatever its rule.
fn check_segment_chars(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(kind, value, "must not be empty"));
    }
    if value.contains('/') {
        return Err(err(kind, value, "must not contain '/'"));
    }
    if value.contains('\0') {
        return Err(err(kind, value, "must not contain NUL"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(err(kind, value, "must not contain control characters"));
    }
    Ok(())
}

/// Checks an RFC 1123 label: lower-case alphanumerics and '-', starting and
/// ending with an alphanumeric, 1 to `max` characters.
fn check_label(kind: &'static str, whole: &str, label: &str, max: usize) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(err(kind, whole, "must not have an empty segment"));
    }
    if label.len() > max {
        return Err(err(
            kind,
            whole,
            format!("segment {label:?} is longer than {max} characters"),
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(err(
            kind,
            whole,
            format!(
                "character {c:?} is not allowed: use lower-case letters, digits and '-' \
                 (RFC 1123)"
            ),
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(err(
            kind,
            whole,
            "must start and end with a lower-case letter or digit (RFC 1123)",
        ));
    }
    Ok(())
}

/// Validates a namespace name: an RFC 1123 DNS label.
pub fn validate_namespace(name: &str) -> Result<(), NameError> {
    check_segment_chars("namespace", name)?;
    check_label("namespace", name, name, MAX_LABEL_LEN)
}

/// Validates an object name as an RFC 1123 DNS subdomain.
pub fn validate_dns_subdomain(kind: &'static str, name: &str) -> Result<(), NameError> {
    check_segment_chars(kind, name)?;
    if name.len() > MAX_SUBDOMAIN_LEN {
        return Err(err(
            kind,
            name,
            format!("must be at most {MAX_SUBDOMAIN_LEN} characters"),
        ));
    }
    for label in name.split('.') {
        check_label(kind, name, label, MAX_LABEL_LEN)?;
    }
    Ok(())
}

/// Validates a name as a Kubernetes path segment name (the rule for RBAC
/// roles and bindings): no '/', '%', NUL or control characters, not `.` or
/// `..`, at most 253 bytes.
pub fn validate_path_segment(kind: &'static str, name: &str) -> Result<(), NameError> {
    check_segment_chars(kind, name)?;
    if name == "." || name == ".." {
        return Err(err(kind, name, "may not be '.' or '..'"));
    }
    if name.contains('%') {
        return Err(err(kind, name, "must not contain '%'"));
    }
    if name.len() > MAX_SUBDOMAIN_LEN {
        return Err(err(
            kind,
            name,
            format!("must be at most {MAX_SUBDOMAIN_LEN} characters"),
        ));
    }
    Ok(())
}

/// How a kind's object names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 DNS subdomain (most kinds).
    DnsSubdomain,
    /// RFC 1123 DNS label (namespaces, services).
    DnsLabel,
    /// Any path segment name (RBAC kinds).
    PathSegment,
}

impl NameRule {
    /// Validates `name` under this rule.
    pub fn validate(self, name: &str) -> Result<(), NameError> {
        match self {
            NameRule::DnsSubdomain => validate_dns_subdomain("object name", name),
            NameRule::DnsLabel => {
                check_segment_chars("object name", name)?;
                check_label("object name", name, name, MAX_LABEL_LEN)
            }
            NameRule::PathSegment => validate_path_segment("object name", name),
        }
    }
}

/// A workspace: a kcp logical-cluster path such as `root:acme:web`.
///
/// Construction validates; a `Workspace` in hand is always a valid path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workspace(String);

impl Workspace {
    /// Parses a tenant-facing workspace path; refuses the reserved `system:`
    /// prefix.
    pub fn parse(path: &str) -> Result<Self, NameError> {
        let ws = Self::parse_any(path)?;
        if ws.0 == "system" || ws.0.starts_with("system:") {
            return Err(err(
                "workspace",
                path,
                "the 'system' prefix is reserved for tmc itself",
            ));
        }
        Ok(ws)
    }

    /// Parses a workspace path including the reserved `system:` ones.
    pub fn parse_any(path: &str) -> Result<Self, NameError> {
        check_segment_chars("workspace", path)?;
        if path.len() > MAX_WORKSPACE_LEN {
            return Err(err(
                "workspace",
                path,
                format!("must be at most {MAX_WORKSPACE_LEN} characters"),
            ));
        }
        for segment in path.split(':') {
            check_label("workspace", path, segment, MAX_LABEL_LEN)?;
        }
        Ok(Workspace(path.to_string()))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent workspace, `None` for a root segment.
    pub fn parent(&self) -> Option<Workspace> {
        self.0
            .rsplit_once(':')
            .map(|(parent, _)| Workspace(parent.to_string()))
    }

    /// The last segment of the path (the workspace's own name).
    pub fn base(&self) -> &str {
        self.0.rsplit(':').next().unwrap_or(&self.0)
    }

    /// A child workspace one level down.
    pub fn join(&self, child: &str) -> Result<Workspace, NameError> {
        Workspace::parse_any(&format!("{}:{child}", self.0))
    }
}

impl fmt::Display for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Workspace {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workspace::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_paths() {
        for ok in ["root", "root:acme", "root:a", "root:acme:web-1", "r00t:0"] {
            Workspace::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let cases = [
            ("", "must not be empty"),
            ("root:", "empty segment"),
            (":root", "empty segment"),
            ("root::a", "empty segment"),
            ("Root", "character 'R'"),
            ("root:-a", "must start and end"),
            ("root:a-", "must start and end"),
            ("root/a", "'/'"),
            ("root:a\0", "NUL"),
            ("root:a_b", "character '_'"),
            ("system:admin", "reserved"),
            ("system", "reserved"),
        ];
        for (bad, why) in cases {
            let e = Workspace::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        let long = format!("root:{}", "a".repeat(64));
        assert!(Workspace::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 63"));
        Workspace::parse_any("system:shard").unwrap();
    }

    #[test]
    fn workspace_navigation() {
        let ws = Workspace::parse("root:acme:web").unwrap();
        assert_eq!(ws.parent().unwrap().as_str(), "root:acme");
        assert_eq!(ws.base(), "web");
        assert_eq!(Workspace::parse("root").unwrap().parent(), None);
        assert_eq!(ws.join("x").unwrap().as_str(), "root:acme:web:x");
        assert!(ws.join("X").is_err());
    }

    #[test]
    fn object_names() {
        validate_dns_subdomain("object name", "web.example-1").unwrap();
        for (bad, why) in [
            ("a/b", "'/'"),
            ("a\0", "NUL"),
            ("A", "character 'A'"),
            ("a..b", "empty segment"),
            ("-a", "must start and end"),
        ] {
            let e = validate_dns_subdomain("object name", bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        assert!(validate_dns_subdomain("object name", &"a".repeat(254)).is_err());
        validate_namespace("kube-system").unwrap();
        assert!(validate_namespace("a.b").is_err());
        validate_path_segment("object name", "system:controller:x").unwrap();
        assert!(validate_path_segment("object name", "..").is_err());
        assert!(validate_path_segment("object name", "a%2Fb").is_err());
        assert!(NameRule::DnsLabel.validate("a.b").is_err());
        NameRule::PathSegment.validate("Admin:X").unwrap();
    }
}
