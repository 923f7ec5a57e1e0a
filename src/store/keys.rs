//! Typed keys in kcp's etcd layout.
//!
//! All keys of the `data` column family are built and parsed here, never by
//! string formatting elsewhere:
//!
//! ```text
//! /registry/{group}/{resource}/{workspace}/{namespace}/{name}   namespaced object
//! /registry/{group}/{resource}/{workspace}/{name}               cluster-scoped object
//! /tmc/placements/{workspace}/{placement}                       placement decision
//! /tmc/placements-by-location/{location}/{workspace}/{placement}  placements of a location
//! /tmc/sync/{location}|{cluster}/{workspace}/{group}/{resource}/[{namespace}/]{name}
//! /tmc/dependants/{workspace}/{owner uid}/{group}/{resource}/[{namespace}/]{name}
//! /tmc/gc/{workspace}/{owner|dependant}/{uid}                   garbage collector work item
//! ```
//!
//! `core` stands for the legacy (empty) API group. Every segment is validated
//! and can contain neither `/` nor NUL, so each of these is one contiguous,
//! exact byte range (a [`Prefix`]): a resource across all workspaces; one
//! workspace of it; one namespace of that. The prefix of a workspace ends in
//! `/`, so `root:a` never matches `root:ab` or `root:a:b`. Within a range,
//! keys sort bytewise as in etcd, which is the order Kubernetes lists have.
//!
//! Decoding is the exact inverse of encoding (a property test checks it).
//!
//! ## Why the controllers' records are named here
//!
//! The `/tmc/...` keys hold the controllers' own records (placement
//! decisions, their index by location, sync records), and [`Key`] names
//! them (`Placement`, `PlacementAt`, `Sync`) instead of handing the
//! controllers an opaque internal prefix to lay out themselves. Decided so
//! (issue 14) because the key layout is the store's schema, as kcp's
//! `/registry/...` layout is etcd's: every byte layout of the `data`
//! column family lives in this one file, each segment is validated, and
//! decoding is the exact inverse of encoding, property-tested. The
//! controllers rely on that: they list a location's placements as one
//! exact prefix ([`Prefix::placements_at`]) and decode the workspace and
//! name back out of each key, which an opaque prefix would make them
//! re-implement (and re-validate) in the controller layer. The price is
//! that the store knows three controller nouns and a new kind of record
//! means a variant here; the store still knows nothing of what the
//! records hold (their values are the controllers' bincode).

use super::error::{NameError, Result};
use super::names::{self, NameRule, Workspace};
use std::fmt;

/// The prefix of every API object's key.
pub const REGISTRY: &str = "/registry/";
const PLACEMENTS: &str = "/tmc/placements/";
const PLACEMENTS_BY_LOCATION: &str = "/tmc/placements-by-location/";
const SYNC: &str = "/tmc/sync/";
const DEPENDANTS: &str = "/tmc/dependants/";
const GC_WORK: &str = "/tmc/gc/";

/// kcp's tenancy group, of Workspace objects.
pub const TENANCY_GROUP: &str = "tenancy.kcp.io";
/// The resource of Workspace objects.
pub const WORKSPACES: &str = "workspaces";
/// The name rule of Workspace objects (the API's table says the same; a
/// test there checks it).
pub const WORKSPACE_NAME_RULE: NameRule = NameRule::DnsLabel;

/// kcp's core group, of LogicalCluster and Shard objects.
pub const CORE_KCP_GROUP: &str = "core.kcp.io";
/// The resource of LogicalCluster objects: the marker that a shard holds
/// a workspace's logical cluster.
pub const LOGICAL_CLUSTERS: &str = "logicalclusters";
/// The name of a workspace's one LogicalCluster object (kcp's too).
pub const LOGICAL_CLUSTER_NAME: &str = "cluster";
/// The resource of Shard objects (the shard registry, in `root`).
pub const SHARDS: &str = "shards";

/// The key segment used for the legacy (empty) API group.
pub const CORE_GROUP: &str = "core";

/// An API group and resource, e.g. `apps`/`deployments`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    group: String,
    resource: String,
}

impl GroupResource {
    /// Builds a group-resource; `""` or `core` is the legacy group.
    pub fn new(group: &str, resource: &str) -> Result<Self, NameError> {
        let group = if group.is_empty() { CORE_GROUP } else { group };
        names::validate_dns_subdomain("API group", group)?;
        if resource.contains('.') {
            return Err(NameError {
                kind: "resource",
                value: resource.to_string(),
                rule: "must not contain '.'".into(),
            });
        }
        names::validate_dns_subdomain("resource", resource)?;
        Ok(GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        })
    }

    /// `logicalclusters.core.kcp.io`, a workspace's marker.
    pub fn logical_clusters() -> Self {
        GroupResource {
            group: CORE_KCP_GROUP.to_string(),
            resource: LOGICAL_CLUSTERS.to_string(),
        }
    }

    /// The API group as Kubernetes spells it (`""` for the legacy group).
    pub fn api_group(&self) -> &str {
        if self.group == CORE_GROUP {
            ""
        } else {
            &self.group
        }
    }

    /// The group as it appears in keys (`core` for the legacy group).
    pub fn key_group(&self) -> &str {
        &self.group
    }

    /// The plural resource name.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.resource, self.group)
    }
}

/// The key of one API object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Group and resource.
    pub gr: GroupResource,
    /// Workspace holding the object.
    pub workspace: Workspace,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ObjectKey {
    /// A namespaced object key; the name must be a DNS subdomain.
    pub fn namespaced(
        gr: GroupResource,
        workspace: Workspace,
        namespace: &str,
        name: &str,
    ) -> Result<Self, NameError> {
        Self::with_rule(gr, workspace, Some(namespace), name, NameRule::DnsSubdomain)
    }

    /// A cluster-scoped object key; the name must be a DNS subdomain.
    pub fn cluster_scoped(
        gr: GroupResource,
        workspace: Workspace,
        name: &str,
    ) -> Result<Self, NameError> {
        Self::with_rule(gr, workspace, None, name, NameRule::DnsSubdomain)
    }

    /// An object key whose name is checked with `rule`.
    pub fn with_rule(
        gr: GroupResource,
        workspace: Workspace,
        namespace: Option<&str>,
        name: &str,
        rule: NameRule,
    ) -> Result<Self, NameError> {
        if let Some(ns) = namespace {
            names::validate_namespace(ns)?;
        }
        rule.validate(name)?;
        Ok(ObjectKey {
            gr,
            workspace,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })
    }

    /// The key of the Workspace object that makes `ws` exist: the
    /// `workspaces.tenancy.kcp.io` object named `ws.base()` in its parent
    /// workspace, as kcp keeps it (names are DNS labels). `None` for
    /// `root`, which has no parent and always exists, and for a base name
    /// no Workspace object can have.
    pub fn workspace_object(ws: &Workspace) -> Option<ObjectKey> {
        let parent = ws.parent()?;
        let gr = GroupResource::new(TENANCY_GROUP, WORKSPACES).ok()?;
        ObjectKey::with_rule(gr, parent, None, ws.base(), WORKSPACE_NAME_RULE).ok()
    }

    /// The key of `ws`'s LogicalCluster object, `cluster` in `ws` itself:
    /// the shard that holds it holds the workspace's logical cluster.
    pub fn logical_cluster(ws: &Workspace) -> ObjectKey {
        ObjectKey {
            gr: GroupResource::logical_clusters(),
            workspace: ws.clone(),
            namespace: None,
            name: LOGICAL_CLUSTER_NAME.to_string(),
        }
    }

    fn push_tail(&self, out: &mut String) {
        out.push_str(&self.gr.group);
        out.push('/');
        out.push_str(&self.gr.resource);
        out.push('/');
        out.push_str(self.workspace.as_str());
        out.push('/');
        if let Some(ns) = &self.namespace {
            out.push_str(ns);
            out.push('/');
        }
        out.push_str(&self.name);
    }

    fn parse_tail(segments: &[&str]) -> Option<ObjectKey> {
        let (group, resource, ws, ns, name) = match segments {
            [g, r, ws, name] => (*g, *r, *ws, None, *name),
            [g, r, ws, ns, name] => (*g, *r, *ws, Some(*ns), *name),
            _ => return None,
        };
        let gr = GroupResource::new(group, resource).ok()?;
        let workspace = Workspace::parse_any(ws).ok()?;
        ObjectKey::with_rule(gr, workspace, ns, name, NameRule::PathSegment).ok()
    }
}

/// Identity of a registered physical cluster: its location workspace and
/// its ClusterRegistration name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterRef {
    /// Workspace holding the ClusterRegistration.
    pub workspace: Workspace,
    /// Name of the ClusterRegistration.
    pub name: String,
}

impl fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.workspace, self.name)
    }
}

/// What a garbage-collector work item is about (see
/// [`crate::owners`]): an owner being deleted with a propagation policy,
/// or a dependant whose owners may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GcRole {
    /// An owner deleted (or being deleted) with a propagation policy.
    Owner,
    /// A dependant whose ownerReferences were added: are its owners there?
    Dependant,
}

impl GcRole {
    fn segment(self) -> &'static str {
        match self {
            GcRole::Owner => "owner",
            GcRole::Dependant => "dependant",
        }
    }

    fn parse(s: &str) -> Option<GcRole> {
        match s {
            "owner" => Some(GcRole::Owner),
            "dependant" => Some(GcRole::Dependant),
            _ => None,
        }
    }
}

/// Every key of the `data` column family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// An API object.
    Object(ObjectKey),
    /// The placement decision of a WorkloadPlacement.
    Placement {
        /// Workspace of the WorkloadPlacement.
        workspace: Workspace,
        /// Name of the WorkloadPlacement.
        name: String,
    },
    /// Index entry: the WorkloadPlacement `workspace`/`name` takes its
    /// clusters from `location` (empty value).
    PlacementAt {
        /// The location workspace.
        location: Workspace,
        /// Workspace of the WorkloadPlacement.
        workspace: Workspace,
        /// Name of the WorkloadPlacement.
        name: String,
    },
    /// Sync state of one object on one physical cluster.
    Sync {
        /// The physical cluster.
        cluster: ClusterRef,
        /// The object in its workspace.
        object: ObjectKey,
    },
    /// Index entry: `object` names the object of uid `owner_uid` in its
    /// own workspace (`object.workspace`) among its ownerReferences (the
    /// value is the reference's `blockOwnerDeletion`, JSON).
    Dependant {
        /// The owner's uid.
        owner_uid: String,
        /// The dependant.
        object: ObjectKey,
    },
    /// A garbage-collector work item about the object of uid `uid` in
    /// `workspace` (the value says which object and what to do).
    GcWork {
        /// The workspace of the object.
        workspace: Workspace,
        /// Owner or dependant.
        role: GcRole,
        /// The object's uid.
        uid: String,
    },
}

impl Key {
    /// Encodes the key to bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(96);
        match self {
            Key::Object(o) => {
                s.push_str(REGISTRY);
                o.push_tail(&mut s);
            }
            Key::Placement { workspace, name } => {
                s.push_str(PLACEMENTS);
                s.push_str(workspace.as_str());
                s.push('/');
                s.push_str(name);
            }
            Key::PlacementAt {
                location,
                workspace,
                name,
            } => {
                s.push_str(PLACEMENTS_BY_LOCATION);
                s.push_str(location.as_str());
                s.push('/');
                s.push_str(workspace.as_str());
                s.push('/');
                s.push_str(name);
            }
            Key::Sync { cluster, object } => {
                s.push_str(SYNC);
                s.push_str(&cluster.to_string());
                s.push('/');
                object.push_tail(&mut s);
            }
            Key::Dependant { owner_uid, object } => {
                s.push_str(DEPENDANTS);
                s.push_str(object.workspace.as_str());
                s.push('/');
                s.push_str(owner_uid);
                s.push('/');
                s.push_str(&object.gr.group);
                s.push('/');
                s.push_str(&object.gr.resource);
                s.push('/');
                if let Some(ns) = &object.namespace {
                    s.push_str(ns);
                    s.push('/');
                }
                s.push_str(&object.name);
            }
            Key::GcWork {
                workspace,
                role,
                uid,
            } => {
                s.push_str(GC_WORK);
                s.push_str(workspace.as_str());
                s.push('/');
                s.push_str(role.segment());
                s.push('/');
                s.push_str(uid);
            }
        }
        s.into_bytes()
    }

    /// Decodes bytes produced by [`Key::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(bytes).ok()?;
        if let Some(rest) = s.strip_prefix(REGISTRY) {
            let segments: Vec<&str> = rest.split('/').collect();
            return ObjectKey::parse_tail(&segments).map(Key::Object);
        }
        if let Some(rest) = s.strip_prefix(PLACEMENTS) {
            let (ws, name) = rest.split_once('/')?;
            names::validate_path_segment("placement name", name).ok()?;
            return Some(Key::Placement {
                workspace: Workspace::parse_any(ws).ok()?,
                name: name.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix(PLACEMENTS_BY_LOCATION) {
            let (location, rest) = rest.split_once('/')?;
            let (ws, name) = rest.split_once('/')?;
            names::validate_path_segment("placement name", name).ok()?;
            return Some(Key::PlacementAt {
                location: Workspace::parse_any(location).ok()?,
                workspace: Workspace::parse_any(ws).ok()?,
                name: name.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix(SYNC) {
            let segments: Vec<&str> = rest.split('/').collect();
            let (cluster, tail) = segments.split_first()?;
            let (cws, cname) = cluster.split_once('|')?;
            names::validate_dns_subdomain("cluster name", cname).ok()?;
            return Some(Key::Sync {
                cluster: ClusterRef {
                    workspace: Workspace::parse_any(cws).ok()?,
                    name: cname.to_string(),
                },
                object: ObjectKey::parse_tail(tail)?,
            });
        }
        if let Some(rest) = s.strip_prefix(DEPENDANTS) {
            let segments: Vec<&str> = rest.split('/').collect();
            let object = match segments.as_slice() {
                [ws, _, g, r, name] => ObjectKey::parse_tail(&[g, r, ws, name])?,
                [ws, _, g, r, ns, name] => ObjectKey::parse_tail(&[g, r, ws, ns, name])?,
                _ => return None,
            };
            let owner_uid = segments[1];
            names::validate_path_segment("owner uid", owner_uid).ok()?;
            return Some(Key::Dependant {
                owner_uid: owner_uid.to_string(),
                object,
            });
        }
        if let Some(rest) = s.strip_prefix(GC_WORK) {
            let (ws, rest) = rest.split_once('/')?;
            let (role, uid) = rest.split_once('/')?;
            names::validate_path_segment("uid", uid).ok()?;
            return Some(Key::GcWork {
                workspace: Workspace::parse_any(ws).ok()?,
                role: GcRole::parse(role)?,
                uid: uid.to_string(),
            });
        }
        None
    }

    /// The workspace the key belongs to (of the object; of the placement;
    /// of the placement, not its location; of the synced object).
    pub fn workspace(&self) -> &Workspace {
        match self {
            Key::Object(o) => &o.workspace,
            Key::Placement { workspace, .. } | Key::PlacementAt { workspace, .. } => workspace,
            Key::Sync { object, .. } | Key::Dependant { object, .. } => &object.workspace,
            Key::GcWork { workspace, .. } => workspace,
        }
    }

    /// The same key in workspace `ws` (a workspace imported at another
    /// path).
    pub fn with_workspace(&self, ws: &Workspace) -> Key {
        let mut k = self.clone();
        match &mut k {
            Key::Object(o) => o.workspace = ws.clone(),
            Key::Placement { workspace, .. } | Key::PlacementAt { workspace, .. } => {
                *workspace = ws.clone()
            }
            Key::Sync { object, .. } | Key::Dependant { object, .. } => {
                object.workspace = ws.clone()
            }
            Key::GcWork { workspace, .. } => *workspace = ws.clone(),
        }
        k
    }

    /// The exact range of this key's family that holds its workspace's
    /// keys (one of those `Store::workspace_ranges` finds).
    pub fn workspace_range(&self) -> Prefix {
        match self {
            Key::Object(o) => Prefix::workspace(&o.gr, &o.workspace),
            Key::Placement { workspace, .. } => Prefix::placements(workspace),
            Key::PlacementAt {
                location,
                workspace,
                ..
            } => Prefix(format!("{PLACEMENTS_BY_LOCATION}{location}/{workspace}/").into_bytes()),
            Key::Sync { cluster, object } => Prefix(
                format!(
                    "{SYNC}{cluster}/{}/{}/{}/",
                    object.gr.group, object.gr.resource, object.workspace
                )
                .into_bytes(),
            ),
            Key::Dependant { object, .. } => Prefix::dependants(&object.workspace),
            Key::GcWork { workspace, .. } => Prefix(format!("{GC_WORK}{workspace}/").into_bytes()),
        }
    }

    /// The index entry saying that `object` has an ownerReference to the
    /// object of uid `owner_uid` (in `object`'s workspace).
    pub fn dependant(owner_uid: &str, object: ObjectKey) -> Result<Key, NameError> {
        names::validate_path_segment("owner uid", owner_uid)?;
        Ok(Key::Dependant {
            owner_uid: owner_uid.to_string(),
            object,
        })
    }

    /// The garbage-collector work item about the object of uid `uid`.
    pub fn gc_work(workspace: Workspace, role: GcRole, uid: &str) -> Result<Key, NameError> {
        names::validate_path_segment("uid", uid)?;
        Ok(Key::GcWork {
            workspace,
            role,
            uid: uid.to_string(),
        })
    }

    /// The key of a placement decision.
    pub fn placement(workspace: Workspace, name: &str) -> Result<Key, NameError> {
        names::validate_dns_subdomain("placement name", name)?;
        Ok(Key::Placement {
            workspace,
            name: name.to_string(),
        })
    }

    /// The index entry of a placement taking its clusters from `location`.
    pub fn placement_at(
        location: Workspace,
        workspace: Workspace,
        name: &str,
    ) -> Result<Key, NameError> {
        names::validate_dns_subdomain("placement name", name)?;
        Ok(Key::PlacementAt {
            location,
            workspace,
            name: name.to_string(),
        })
    }

    /// The key of a sync record.
    pub fn sync(cluster: ClusterRef, object: ObjectKey) -> Result<Key, NameError> {
        names::validate_dns_subdomain("cluster name", &cluster.name)?;
        Ok(Key::Sync { cluster, object })
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        Key::decode(&bytes).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid key {}",
                super::error::printable_key(&bytes)
            ))
        })
    }
}

impl From<ObjectKey> for Key {
    fn from(o: ObjectKey) -> Self {
        Key::Object(o)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.encode()))
    }
}

/// The families of keys that hold a workspace's keys, each as the
/// prefix before the segments that precede the workspace and how many
/// such segments there are (`Store::workspace_ranges` skips over them).
pub(super) const WORKSPACE_FAMILIES: [(&str, usize); 6] = [
    // /registry/{group}/{resource}/{ws}/...
    (REGISTRY, 2),
    // /tmc/placements/{ws}/{name}
    (PLACEMENTS, 0),
    // /tmc/placements-by-location/{location}/{ws}/{name}
    (PLACEMENTS_BY_LOCATION, 1),
    // /tmc/sync/{location}|{cluster}/{group}/{resource}/{ws}/...
    (SYNC, 3),
    // /tmc/dependants/{ws}/{owner uid}/...
    (DEPENDANTS, 0),
    // /tmc/gc/{ws}/{role}/{uid}
    (GC_WORK, 0),
];

/// An exact key range: every key that starts with the prefix bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix(pub(super) Vec<u8>);

impl Prefix {
    /// One resource across all workspaces.
    pub fn resource(gr: &GroupResource) -> Prefix {
        Prefix(format!("{REGISTRY}{}/{}/", gr.group, gr.resource).into_bytes())
    }

    /// One resource in one workspace (all namespaces).
    pub fn workspace(gr: &GroupResource, ws: &Workspace) -> Prefix {
        Prefix(format!("{REGISTRY}{}/{}/{}/", gr.group, gr.resource, ws).into_bytes())
    }

    /// One resource in one namespace of one workspace.
    pub fn namespace(gr: &GroupResource, ws: &Workspace, ns: &str) -> Result<Prefix, NameError> {
        names::validate_namespace(ns)?;
        Ok(Prefix(
            format!("{REGISTRY}{}/{}/{}/{ns}/", gr.group, gr.resource, ws).into_bytes(),
        ))
    }

    /// All placement decisions of one workspace.
    pub fn placements(ws: &Workspace) -> Prefix {
        Prefix(format!("{PLACEMENTS}{ws}/").into_bytes())
    }

    /// The index entries of every placement located at `location`.
    pub fn placements_at(location: &Workspace) -> Prefix {
        Prefix(format!("{PLACEMENTS_BY_LOCATION}{location}/").into_bytes())
    }

    /// All sync records of one physical cluster.
    pub fn sync_cluster(cluster: &ClusterRef) -> Prefix {
        Prefix(format!("{SYNC}{cluster}/").into_bytes())
    }

    /// The dependants index of one workspace.
    pub fn dependants(ws: &Workspace) -> Prefix {
        Prefix(format!("{DEPENDANTS}{ws}/").into_bytes())
    }

    /// The index entries of the dependants of the object of uid
    /// `owner_uid` in `ws`.
    pub fn dependants_of(ws: &Workspace, owner_uid: &str) -> Result<Prefix, NameError> {
        names::validate_path_segment("owner uid", owner_uid)?;
        Ok(Prefix(
            format!("{DEPENDANTS}{ws}/{owner_uid}/").into_bytes(),
        ))
    }

    /// Every garbage-collector work item of the shard.
    pub fn gc_work() -> Prefix {
        Prefix(GC_WORK.as_bytes().to_vec())
    }

    /// Everything (the whole `data` keyspace).
    pub fn all() -> Prefix {
        Prefix(b"/".to_vec())
    }

    /// The prefix bytes (inclusive start of the range).
    pub fn start(&self) -> &[u8] {
        &self.0
    }

    /// The exclusive end of the range.
    pub fn end(&self) -> Vec<u8> {
        prefix_end(&self.0)
    }

    /// True when `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key.starts_with(&self.0)
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: no upper bound exists; callers treat an empty end as "none".
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ws(s: &str) -> Workspace {
        Workspace::parse(s).unwrap()
    }

    #[test]
    fn layout_matches_kcp_etcd_layout() {
        let deploy = GroupResource::new("apps", "deployments").unwrap();
        let k = ObjectKey::namespaced(deploy.clone(), ws("root:acme"), "default", "web").unwrap();
        assert_eq!(
            Key::Object(k.clone()).encode(),
            b"/registry/apps/deployments/root:acme/default/web"
        );
        let ns = GroupResource::new("", "namespaces").unwrap();
        assert_eq!(ns.api_group(), "");
        let k2 = ObjectKey::cluster_scoped(ns, ws("root"), "default").unwrap();
        assert_eq!(
            Key::Object(k2).encode(),
            b"/registry/core/namespaces/root/default"
        );
        let p = Key::placement(ws("root:acme"), "web-eu").unwrap();
        assert_eq!(p.encode(), b"/tmc/placements/root:acme/web-eu");
        let at = Key::placement_at(ws("root:compute"), ws("root:acme"), "web-eu").unwrap();
        assert_eq!(
            at.encode(),
            b"/tmc/placements-by-location/root:compute/root:acme/web-eu"
        );
        assert!(Prefix::placements_at(&ws("root:compute")).contains(&at.encode()));
        assert!(!Prefix::placements_at(&ws("root:comp")).contains(&at.encode()));
        assert!(!Prefix::placements(&ws("root:acme")).contains(&at.encode()));
        let s = Key::sync(
            ClusterRef {
                workspace: ws("root:compute"),
                name: "eu-1".into(),
            },
            k,
        )
        .unwrap();
        assert_eq!(
            s.encode(),
            b"/tmc/sync/root:compute|eu-1/apps/deployments/root:acme/default/web"
        );
    }

    #[test]
    fn workspace_prefix_is_exact() {
        let gr = GroupResource::new("apps", "deployments").unwrap();
        let p = Prefix::workspace(&gr, &ws("root:a"));
        let key = |w: &str| {
            Key::Object(ObjectKey::namespaced(gr.clone(), ws(w), "default", "x").unwrap()).encode()
        };
        assert!(p.contains(&key("root:a")));
        assert!(!p.contains(&key("root:ab")));
        assert!(!p.contains(&key("root:a:b")));
        assert!(
            key("root:ab").as_slice() >= p.end().as_slice() || key("root:ab") < p.start().to_vec()
        );
        assert!(Prefix::resource(&gr).contains(&key("root:ab")));
    }

    #[test]
    fn dependants_and_work_items_are_per_workspace() {
        let cms = GroupResource::new("", "configmaps").unwrap();
        let o = ObjectKey::namespaced(cms, ws("root:a"), "default", "d").unwrap();
        let d = Key::dependant("u-1", o).unwrap();
        assert_eq!(
            d.encode(),
            b"/tmc/dependants/root:a/u-1/core/configmaps/default/d"
        );
        assert!(Prefix::dependants_of(&ws("root:a"), "u-1")
            .unwrap()
            .contains(&d.encode()));
        assert!(!Prefix::dependants_of(&ws("root:a"), "u-")
            .unwrap()
            .contains(&d.encode()));
        assert!(!Prefix::dependants(&ws("root:ab")).contains(&d.encode()));
        let moved = d.with_workspace(&ws("root:b"));
        assert_eq!(
            moved.encode(),
            b"/tmc/dependants/root:b/u-1/core/configmaps/default/d"
        );
        let w = Key::gc_work(ws("root:a"), GcRole::Owner, "u-1").unwrap();
        assert_eq!(w.encode(), b"/tmc/gc/root:a/owner/u-1");
        assert!(Prefix::gc_work().contains(&w.encode()));
        assert!(w.workspace_range().contains(&w.encode()));
        assert!(Key::dependant("a/b", d_obj()).is_err());
        assert!(Key::gc_work(ws("root"), GcRole::Dependant, "").is_err());
        assert_eq!(Key::decode(b"/tmc/gc/root:a/other/u"), None);
    }

    fn d_obj() -> ObjectKey {
        let cms = GroupResource::new("", "configmaps").unwrap();
        ObjectKey::cluster_scoped(cms, ws("root"), "x").unwrap()
    }

    #[test]
    fn bad_names_are_refused() {
        let gr = GroupResource::new("apps", "deployments").unwrap();
        assert!(ObjectKey::namespaced(gr.clone(), ws("root"), "a/b", "x").is_err());
        assert!(ObjectKey::namespaced(gr.clone(), ws("root"), "ns", "x\0").is_err());
        assert!(ObjectKey::namespaced(gr.clone(), ws("root"), "ns", "x/y").is_err());
        assert!(GroupResource::new("apps", "deploy/ments").is_err());
        assert!(GroupResource::new("apps", "deployments.x").is_err());
        assert_eq!(prefix_end(b"ab/"), b"ab0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }

    fn seg() -> impl Strategy<Value = String> + Clone {
        "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?"
    }

    fn arb_key() -> impl Strategy<Value = Key> {
        let obj = (
            prop::sample::select(vec!["", "apps", "tmc.kcp.io"]),
            seg(),
            prop::collection::vec(seg(), 1..4),
            prop::option::of(seg()),
            seg(),
        )
            .prop_map(|(g, r, wss, ns, name)| {
                let gr = GroupResource::new(g, &r).unwrap();
                let w = Workspace::parse_any(&wss.join(":")).unwrap();
                ObjectKey::with_rule(gr, w, ns.as_deref(), &name, NameRule::DnsSubdomain).unwrap()
            });
        prop_oneof![
            obj.clone().prop_map(Key::Object),
            (prop::collection::vec(seg(), 1..3), seg()).prop_map(|(w, n)| Key::Placement {
                workspace: Workspace::parse_any(&w.join(":")).unwrap(),
                name: n,
            }),
            (
                prop::collection::vec(seg(), 1..3),
                prop::collection::vec(seg(), 1..3),
                seg()
            )
                .prop_map(|(l, w, n)| Key::PlacementAt {
                    location: Workspace::parse_any(&l.join(":")).unwrap(),
                    workspace: Workspace::parse_any(&w.join(":")).unwrap(),
                    name: n,
                }),
            (seg(), seg(), obj.clone()).prop_map(|(cw, cn, o)| Key::Sync {
                cluster: ClusterRef {
                    workspace: Workspace::parse_any(&cw).unwrap(),
                    name: cn,
                },
                object: o,
            }),
            (seg(), obj).prop_map(|(u, o)| Key::dependant(&u, o).unwrap()),
            (prop::collection::vec(seg(), 1..3), any::<bool>(), seg()).prop_map(|(w, o, u)| {
                let role = if o { GcRole::Owner } else { GcRole::Dependant };
                Key::gc_work(Workspace::parse_any(&w.join(":")).unwrap(), role, &u).unwrap()
            }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(k in arb_key()) {
            prop_assert_eq!(Key::decode(&k.encode()), Some(k));
        }

        #[test]
        fn prefixes_are_exact(a in arb_key(), b in arb_key()) {
            if let (Key::Object(a), Key::Object(b)) = (&a, &b) {
                let pa = Prefix::workspace(&a.gr, &a.workspace);
                let eb = Key::Object(b.clone()).encode();
                prop_assert_eq!(pa.contains(&eb), a.gr == b.gr && a.workspace == b.workspace);
                let in_range = eb.as_slice() >= pa.start() && eb < pa.end();
                prop_assert_eq!(in_range, pa.contains(&eb));
                let pr = Prefix::resource(&a.gr);
                prop_assert_eq!(pr.contains(&eb), a.gr == b.gr);
            }
        }
    }
}
