//! Who may do what, independent of HTTP and of the store's layout.
//!
//! - [`User`]: an authenticated user, Kubernetes' `user.Info` shape.
//! - [`rbac`]: Kubernetes RBAC over the Role, ClusterRole, RoleBinding and
//!   ClusterRoleBinding objects of one workspace: request attributes in,
//!   allowed or not out; the escalation check for writes of roles and
//!   bindings. It reads objects its caller already fetched, so it knows
//!   nothing of where they live.
//!
//! - [`policy`]: the RBAC objects of one workspace read through the shard
//!   ([`load_policy`]) and the decision over them ([`allowed`]), a denial
//!   checked again after a barrier;
//! - [`author`]: who wrote a placement's spec (the annotation the API
//!   records) and the `use` right on a location workspace.
//!
//! The API edge ([`crate::api::server`]) authenticates (tokens, client
//! certificates) and asks [`allowed`] for the request's workspace (see
//! `docs/security.md`); the placement controller asks it for a placement's
//! recorded author. Nothing here knows HTTP; [`policy`] reads the store
//! only through the shard interface.

pub mod author;
pub mod policy;
pub mod rbac;

pub use policy::{allowed, load_policy};

/// The group that may do anything, in every workspace.
pub const MASTERS: &str = "system:masters";
/// The group of the shards' identities (client certificates of CN
/// `system:tmc:shard:NAME`, see `docs/sharding.md`): what one shard may do
/// on another is [`shard_allowed`], nothing else.
pub const SHARDS_GROUP: &str = "system:tmc:shards";

/// What a shard may do on another shard, in any workspace: read the
/// directory (Workspaces, the registry), create, read and delete
/// LogicalClusters, keep its own entry of the registry, and read a
/// location's clusters, their credentials and its cluster-scope RBAC. (The API's admission
/// holds a created Shard to the caller's own name.)
pub fn shard_allowed(user: &User, a: &rbac::Attributes) -> bool {
    if !a.resource_request {
        return false;
    }
    if (a.api_group.as_str(), a.resource.as_str(), a.verb.as_str())
        == ("core.kcp.io", "shards", "update")
        && shard_name(user) != Some(a.name.as_str())
    {
        return false;
    }
    let read = ["get", "list", "watch"];
    let verbs: &[&str] = match (a.api_group.as_str(), a.resource.as_str()) {
        ("tenancy.kcp.io", "workspaces") => &read,
        ("core.kcp.io", "logicalclusters") => &["get", "list", "watch", "create", "delete"],
        ("core.kcp.io", "shards") => &["get", "list", "watch", "create", "update"],
        ("tmc.kcp.io", "clusterregistrations") => &read,
        ("", "secrets") => &["get"],
        // A location's cluster-scope RBAC: who may `use` its clusters.
        ("rbac.authorization.k8s.io", "clusterroles" | "clusterrolebindings") => &["list"],
        _ => &[],
    };
    a.subresource.is_empty() && verbs.contains(&a.verb.as_str())
}

/// The prefix of a shard identity's user name.
pub const SHARD_USER_PREFIX: &str = "system:tmc:shard:";

/// The shard `user` is, if it is one (in [`SHARDS_GROUP`], named
/// `system:tmc:shard:NAME`).
pub fn shard_name(user: &User) -> Option<&str> {
    if !user.in_group(SHARDS_GROUP) {
        return None;
    }
    user.name.strip_prefix(SHARD_USER_PREFIX)
}

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

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
    /// A user with `groups` plus `system:authenticated`.
    pub fn new(name: &str, uid: &str, groups: &[&str]) -> User {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if !g.iter().any(|x| x == AUTHENTICATED) {
            g.push(AUTHENTICATED.to_string());
        }
        User {
            name: name.to_string(),
            uid: uid.to_string(),
            groups: g,
        }
    }

    /// Member of `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// Member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
