//! Queue keys and logical-cluster names in kcp's formats.
//!
//! - [`LogicalClusterName`] is kcp's `logicalcluster.Name`: the stable
//!   identifier of one logical cluster, one segment matching
//!   `^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$`.
//! - [`LogicalClusterPath`] is kcp's `logicalcluster.Path`: a human path such
//!   as `root:acme:web` (the store's [`Workspace`]). The two are distinct
//!   types so that one cannot be passed where the other is meant.
//! - A [`QueueKey`] is `workspace|namespace/name`, or `workspace|name`
//!   for cluster-scoped objects: kcp's `MetaClusterNamespaceKeyFunc`
//!   format (where kcp says "cluster" it means the logical cluster, the
//!   workspace), with [`QueueKey::split`] as `SplitMetaClusterNamespaceKey`.
//!
//! Words, as kcp uses them: a *workspace* (logical cluster) is the tenant
//! unit and is what a queue key's first part names; a *member cluster* is
//! a physical Kubernetes cluster registered with a ClusterRegistration
//! ([`crate::store::ClusterRef`]). In the controllers "cluster" alone
//! means a member cluster.

use crate::store::names::{self, Workspace};
use crate::store::NameError;
use std::fmt;

/// A logical-cluster path, e.g. `root:acme:web`.
pub type LogicalClusterPath = Workspace;

/// kcp's `logicalcluster.Name`: one segment, 2 to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalClusterName(String);

impl LogicalClusterName {
    /// Validates a logical-cluster name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bad = |rule: &str| NameError {
            kind: "logical cluster name",
            value: s.to_string(),
            rule: rule.to_string(),
        };
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if s.len() < 2 || s.len() > 63 {
            return Err(bad("must be 2 to 63 characters"));
        }
        if !s.chars().all(|c| ok_char(c) || c == '-') {
            return Err(bad("must match ^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"));
        }
        if !s.starts_with(ok_char) || !s.ends_with(ok_char) {
            return Err(bad("must start and end with a lower-case letter or digit"));
        }
        Ok(LogicalClusterName(s.to_string()))
    }

    /// The name as a one-segment path (kcp's `Name.Path()`).
    pub fn path(&self) -> LogicalClusterPath {
        Workspace::parse_any(&self.0).expect("a valid name is a valid one-segment path")
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogicalClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A work-queue key: `workspace|namespace/name` or `workspace|name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// The workspace (logical-cluster path) of the object.
    pub workspace: LogicalClusterPath,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

/// Why a queue key could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `|` separates workspace and object.
    #[error("queue key {0:?} has no '|' between workspace and object")]
    NoWorkspace(String),
    /// Too many `/`.
    #[error("queue key {0:?} has more than one '/'")]
    TooManySlashes(String),
    /// A part broke a naming rule.
    #[error("queue key {key:?}: {source}")]
    Name {
        /// The key.
        key: String,
        /// The broken rule.
        #[source]
        source: NameError,
    },
}

impl QueueKey {
    /// Joins the parts (kcp's `ToClusterAwareKey`).
    pub fn new(workspace: LogicalClusterPath, namespace: Option<&str>, name: &str) -> Self {
        QueueKey {
            workspace,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// Splits `workspace|namespace/name` or `workspace|name`, validating
    /// each part.
    pub fn split(key: &str) -> Result<Self, KeyError> {
        let (workspace, rest) = key
            .split_once('|')
            .ok_or_else(|| KeyError::NoWorkspace(key.to_string()))?;
        let named = |source| KeyError::Name {
            key: key.to_string(),
            source,
        };
        let workspace = Workspace::parse_any(workspace).map_err(named)?;
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => {
                if name.contains('/') {
                    return Err(KeyError::TooManySlashes(key.to_string()));
                }
                names::validate_namespace(ns).map_err(named)?;
                (Some(ns.to_string()), name)
            }
            None => (None, rest),
        };
        names::validate_path_segment("object name", name).map_err(named)?;
        Ok(QueueKey {
            workspace,
            namespace,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for QueueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}|{ns}/{}", self.workspace, self.name),
            None => write!(f, "{}|{}", self.workspace, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_and_split_as_kcp_does() {
        let ws = Workspace::parse("root:acme:web").unwrap();
        let k = QueueKey::new(ws.clone(), Some("default"), "api");
        assert_eq!(k.to_string(), "root:acme:web|default/api");
        assert_eq!(QueueKey::split("root:acme:web|default/api").unwrap(), k);
        let c = QueueKey::new(ws, None, "eu-west-1a");
        assert_eq!(c.to_string(), "root:acme:web|eu-west-1a");
        assert_eq!(QueueKey::split(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn bad_keys_say_why() {
        assert!(matches!(
            QueueKey::split("default/api"),
            Err(KeyError::NoWorkspace(_))
        ));
        assert!(matches!(
            QueueKey::split("root|a/b/c"),
            Err(KeyError::TooManySlashes(_))
        ));
        let e = QueueKey::split("Root|a").unwrap_err();
        assert!(e.to_string().contains("character 'R'"), "{e}");
        assert!(QueueKey::split("root|Bad_NS/x").is_err());
        assert!(QueueKey::split("root|").is_err());
    }

    #[test]
    fn names_and_paths_are_distinct() {
        let n = LogicalClusterName::parse("2x9abc").unwrap();
        assert_eq!(n.path().as_str(), "2x9abc");
        for bad in ["a", "-ab", "ab-", "a:b", "AB", &"a".repeat(64)] {
            assert!(LogicalClusterName::parse(bad).is_err(), "{bad}");
        }
    }
}
