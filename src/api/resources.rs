//! The resources tmc serves: one static table that routing, storage keys,
//! discovery and OpenAPI all read, so they cannot disagree.
//!
//! Built-in Kubernetes kinds are stored schemaless (the JSON the client
//! sent, with server-set metadata); tmc's own kinds have Rust types in
//! [`crate::types`]. Deployments, StatefulSets and ReplicaSets have the
//! `scale` subresource ([`super::handlers::scale`]).
//!
//! Left out: Pods (and their ephemeral containers, logs, exec), Nodes,
//! ReplicationControllers, PodTemplates and ControllerRevisions: nothing
//! behind a workspace runs pods, so `kubectl get pods` answers that the
//! server has no resource type "pods"; the pods run on the member
//! clusters, and the workspace's Deployments carry their summed status.
//! `events.k8s.io/v1` Events (the core `v1` Events are served; the two
//! need a conversion between their shapes). One version per resource
//! (`autoscaling/v2` for HorizontalPodAutoscalers, not `v1`).

use crate::store::{GroupResource, NameRule};

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version served (one per resource today).
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural, the path segment.
    pub plural: &'static str,
    /// Singular.
    pub singular: &'static str,
    /// Namespaced or cluster-scoped (within a workspace).
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: &'static [&'static str],
    /// Has a `status` subresource.
    pub status: bool,
    /// Has a `scale` subresource (`autoscaling/v1` Scale over
    /// `spec.replicas`, `status.replicas` and `spec.selector`).
    pub scale: bool,
    /// Categories (`kubectl get all`).
    pub categories: &'static [&'static str],
    /// Name rule for objects of this resource.
    pub name_rule: NameRule,
}

/// Verbs every served resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of its list.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store's group-resource.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.group, self.plural).expect("the table holds valid names")
    }

    /// Group and kind, as the patch and apply code keys its schemas.
    pub fn group_kind(&self) -> (&'static str, &'static str) {
        (self.group, self.kind)
    }
}

// One positional argument per table column keeps the table readable.
#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        status,
        scale: false,
        categories: &[],
        name_rule: NameRule::DnsSubdomain,
    }
}

/// The tmc API group.
pub const TMC_GROUP: &str = "tmc.kcp.io";
/// kcp's tenancy group (workspaces).
pub const TENANCY_GROUP: &str = crate::store::keys::TENANCY_GROUP;
/// kcp's core group (LogicalClusters, Shards).
pub const CORE_KCP_GROUP: &str = crate::store::keys::CORE_KCP_GROUP;

/// Every served resource.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        name_rule: NameRule::DnsLabel,
        ..r(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            false,
            &["ns"],
            true,
        )
    },
    r(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        false,
    ),
    r("", "v1", "Secret", "secrets", "secret", true, &[], false),
    ResourceInfo {
        categories: &["all"],
        name_rule: NameRule::DnsLabel,
        ..r(
            "",
            "v1",
            "Service",
            "services",
            "service",
            true,
            &["svc"],
            true,
        )
    },
    r(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        false,
    ),
    ResourceInfo {
        categories: &["all"],
        scale: true,
        ..r(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            true,
            &["deploy"],
            true,
        )
    },
    ResourceInfo {
        categories: &["all"],
        scale: true,
        ..r(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            true,
            &["sts"],
            true,
        )
    },
    ResourceInfo {
        categories: &["all"],
        ..r(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            "daemonset",
            true,
            &["ds"],
            true,
        )
    },
    ResourceInfo {
        categories: &["all"],
        ..r("batch", "v1", "Job", "jobs", "job", true, &[], true)
    },
    r(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        true,
    ),
    r(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
        false,
    ),
    r(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
        true,
    ),
    r("", "v1", "Event", "events", "event", true, &["ev"], false),
    r(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
    ),
    ResourceInfo {
        categories: &["all"],
        scale: true,
        ..r(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            true,
            &["rs"],
            true,
        )
    },
    ResourceInfo {
        categories: &["all"],
        ..r(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            "cronjob",
            true,
            &["cj"],
            true,
        )
    },
    ResourceInfo {
        categories: &["all"],
        ..r(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
            &["hpa"],
            true,
        )
    },
    r(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        true,
    ),
    r(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        false,
    ),
    r(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        true,
    ),
    r(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        false,
    ),
    r(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        false,
    ),
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            "role",
            true,
            &[],
            false,
        )
    },
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            true,
            &[],
            false,
        )
    },
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
            &[],
            false,
        )
    },
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
            &[],
            false,
        )
    },
    ResourceInfo {
        categories: &["tmc"],
        ..r(
            TMC_GROUP,
            "v1alpha1",
            "ClusterRegistration",
            "clusterregistrations",
            "clusterregistration",
            false,
            &["creg"],
            true,
        )
    },
    ResourceInfo {
        categories: &["tmc"],
        ..r(
            TMC_GROUP,
            "v1alpha1",
            "WorkloadPlacement",
            "workloadplacements",
            "workloadplacement",
            false,
            &["wp"],
            true,
        )
    },
    ResourceInfo {
        name_rule: NameRule::DnsLabel,
        ..r(
            TENANCY_GROUP,
            "v1alpha1",
            "Workspace",
            "workspaces",
            "workspace",
            false,
            &["ws"],
            true,
        )
    },
    // The marker of a workspace's logical cluster on the shard that holds
    // it (written by tmc only; see `docs/sharding.md`).
    r(
        CORE_KCP_GROUP,
        "v1alpha1",
        "LogicalCluster",
        "logicalclusters",
        "logicalcluster",
        false,
        &[],
        true,
    ),
    // The shard registry, in `root` (written by the shards only).
    r(
        CORE_KCP_GROUP,
        "v1alpha1",
        "Shard",
        "shards",
        "shard",
        false,
        &[],
        false,
    ),
];

/// The authorization group (access reviews).
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// Create-only resources that are answered, never stored:
/// `SelfSubjectAccessReview` (`kubectl auth can-i`) and
/// `SelfSubjectRulesReview` (`kubectl auth can-i --list`). Routed like the
/// others, absent from discovery and OpenAPI (clients post them by path).
pub static REVIEWS: &[ResourceInfo] = &[
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            AUTHORIZATION_GROUP,
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            false,
            &[],
            false,
        )
    },
    // Another user's rights (needs `create` on it: workspace admins, and
    // the shards asking whether a placement's author may use a location).
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            AUTHORIZATION_GROUP,
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            "subjectaccessreview",
            false,
            &[],
            false,
        )
    },
    ResourceInfo {
        name_rule: NameRule::PathSegment,
        ..r(
            AUTHORIZATION_GROUP,
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            false,
            &[],
            false,
        )
    },
];

/// The review resource at `group/version/plural`.
pub fn lookup_review(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    REVIEWS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource served at `group/version/plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `apiVersion` + `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Served groups in discovery order (core first), each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store builds Workspace object keys without the API's table
    /// ([`crate::store::ObjectKey::workspace_object`]): it must agree.
    #[test]
    fn the_store_names_workspace_objects_as_the_table_does() {
        let info = lookup(TENANCY_GROUP, "v1alpha1", "workspaces").expect("served");
        assert_eq!(info.name_rule, crate::store::keys::WORKSPACE_NAME_RULE);
        let ws = crate::store::Workspace::parse("root:acme:web").unwrap();
        let k = crate::store::ObjectKey::workspace_object(&ws).unwrap();
        assert_eq!(k.gr, info.group_resource());
        assert_eq!(k.workspace.as_str(), "root:acme");
        assert_eq!(k.name, "web");
        let root = crate::store::Workspace::parse("root").unwrap();
        assert!(crate::store::ObjectKey::workspace_object(&root).is_none());
    }

    #[test]
    fn table_is_consistent() {
        for r in RESOURCES {
            let _ = r.group_resource();
            assert_eq!(lookup(r.group, r.version, r.plural), Some(r));
            assert_eq!(by_kind(&r.api_version(), r.kind), Some(r));
            assert_eq!(r.plural, r.plural.to_ascii_lowercase());
        }
        let g = groups();
        assert_eq!(g[0], ("", vec!["v1"]));
        assert!(g.iter().any(|(g, _)| *g == TMC_GROUP));
        assert_eq!(lookup("apps", "v1", "pods"), None);
        assert_eq!(lookup("", "v1", "deployments"), None);
    }
}
