//! tmc's own API types, `tmc.kcp.io/v1alpha1`: ClusterRegistration (a
//! physical cluster, in a location workspace) and WorkloadPlacement (which
//! workloads go where, in a tenant workspace). Both are cluster-scoped in
//! their workspace. Field names follow the Kubernetes API conventions
//! (camelCase, `spec`/`status`, conditions as `metav1.Condition`).
//!
//! A neutral module: the API serves and validates these types
//! ([`crate::api::validation`], [`crate::api::openapi`]) and the
//! controllers reconcile them, and neither imports the other for them.
//! Nothing here knows HTTP or the store.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of tmc's types.
pub const GROUP: &str = "tmc.kcp.io";
/// The version of tmc's types.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of tmc's types.
pub const API_VERSION: &str = "tmc.kcp.io/v1alpha1";

/// A reference to a Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Namespace of the Secret, in the registration's workspace.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// What a taint does to placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    /// No new placements on the cluster.
    NoSchedule,
    /// Existing placements are moved away (after a toleration's seconds).
    NoExecute,
}

/// A taint on a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

/// Desired state of a ClusterRegistration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationSpec {
    /// URL of the cluster's API server.
    pub api_endpoint: String,
    /// The Secret holding credentials: key `kubeconfig`, or `token` and `ca.crt`.
    pub credentials_secret_ref: SecretRef,
    /// Free-form location, matched by placements.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// No new placements when true.
    #[serde(default)]
    pub unschedulable: bool,
    /// Taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

/// Observed state of a ClusterRegistration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationStatus {
    /// `Ready`, `HeartbeatHealthy`, `CredentialsValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last successful probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// The cluster's Kubernetes version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// Summed node capacity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    /// Summed node allocatable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
}

/// A physical cluster registered with tmc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistration {
    /// `tmc.kcp.io/v1alpha1`.
    pub api_version: String,
    /// `ClusterRegistration`.
    pub kind: String,
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: ClusterRegistrationSpec,
    /// Observed state.
    #[serde(default)]
    pub status: ClusterRegistrationStatus,
}

/// A group and resource a placement covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResourceRef {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Plural resource.
    pub resource: String,
}

/// A toleration of a cluster taint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key (empty with `Exists`: every key).
    #[serde(default)]
    pub key: String,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Value for `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Effect tolerated (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// For NoExecute: how long the placement stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// How many clusters a placement picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyType {
    /// One cluster.
    Single,
    /// `clusters` clusters, spread over `topologyKey` if given.
    Spread,
    /// Every matching cluster.
    All,
}

/// The placement strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Single, Spread or All.
    #[serde(rename = "type")]
    pub type_: StrategyType,
    /// Number of clusters for Spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<u32>,
    /// Cluster label to spread across, for Spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_key: Option<String>,
}

/// What to do with a downstream object tmc did not create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictPolicy {
    /// Leave it and report a condition.
    #[default]
    Abort,
    /// Take it over.
    Adopt,
}

/// Desired state of a WorkloadPlacement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPlacementSpec {
    /// Which namespaces' workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Which workloads (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelSelector>,
    /// Which resources (empty: the syncable set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<GroupResourceRef>,
    /// Workspace of the ClusterRegistrations (default: own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_workspace: Option<String>,
    /// Which clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Tolerated taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How many clusters.
    pub strategy: Strategy,
    /// Downstream conflicts.
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
}

/// A cluster chosen by a placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedCluster {
    /// Location workspace.
    pub workspace: String,
    /// ClusterRegistration name.
    pub name: String,
}

/// Placement phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementPhase {
    /// Not decided yet.
    #[default]
    Pending,
    /// Clusters chosen.
    Bound,
    /// No cluster fits.
    Unschedulable,
}

/// Observed state of a WorkloadPlacement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPlacementStatus {
    /// Phase.
    #[serde(default)]
    pub phase: PlacementPhase,
    /// The decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected_clusters: Vec<SelectedCluster>,
    /// `Scheduled`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Which workloads go where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPlacement {
    /// `tmc.kcp.io/v1alpha1`.
    pub api_version: String,
    /// `WorkloadPlacement`.
    pub kind: String,
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: WorkloadPlacementSpec,
    /// Observed state.
    #[serde(default)]
    pub status: WorkloadPlacementStatus,
}

/// The WorkloadPlacement spec of the design's example (`web-eu`: web
/// Deployments spread over two eu-west clusters), as JSON. Shared by tests
/// and `tmc bench` so that both use one realistic object.
pub fn example_placement_spec() -> serde_json::Value {
    serde_json::json!({
        "namespaceSelector": {"matchLabels": {"team": "web"}},
        "workloadSelector": {"matchLabels": {"app": "web"}},
        "resources": [{"group": "apps", "resource": "deployments"}],
        "locationWorkspace": "root:compute",
        "clusterSelector": {"matchLabels": {"region": "eu-west"}},
        "tolerations": [{"key": "tmc.kcp.io/unhealthy", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        "strategy": {"type": "Spread", "clusters": 2, "topologyKey": "region"},
        "conflictPolicy": "Abort"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_design_examples_parse_and_round_trip() {
        let cr = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRegistration",
            "metadata": {"name": "eu-west-1a", "labels": {"region": "eu-west", "tier": "prod"}},
            "spec": {"apiEndpoint": "https://10.0.0.1:6443",
                     "credentialsSecretRef": {"namespace": "tmc-system", "name": "eu-west-1a-kubeconfig"},
                     "location": "eu-west", "unschedulable": false,
                     "taints": [{"key": "maintenance", "value": "true", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Healthy", "message": "",
                                       "lastTransitionTime": "2026-11-26T00:00:00Z"}],
                       "kubernetesVersion": "v1.34.2",
                       "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1100"}}
        });
        let parsed: ClusterRegistration = serde_json::from_value(cr.clone()).unwrap();
        assert_eq!(parsed.spec.taints[0].effect, TaintEffect::NoSchedule);
        assert_eq!(parsed.status.conditions[0].type_, "Ready");
        assert_eq!(serde_json::to_value(&parsed).unwrap(), cr);

        let wp = json!({
            "apiVersion": API_VERSION, "kind": "WorkloadPlacement", "metadata": {"name": "web-eu"},
            "spec": example_placement_spec(),
            "status": {"phase": "Bound", "selectedClusters": [{"workspace": "root:compute", "name": "eu-west-1a"}]}
        });
        let parsed: WorkloadPlacement = serde_json::from_value(wp.clone()).unwrap();
        assert_eq!(parsed.spec.strategy.type_, StrategyType::Spread);
        assert_eq!(parsed.status.phase, PlacementPhase::Bound);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), wp);
    }

    #[test]
    fn bad_enums_are_refused_with_the_field() {
        let bad = json!({"type": "Sometimes"});
        let e = serde_json::from_value::<Strategy>(bad).unwrap_err();
        assert!(e.to_string().contains("Sometimes"), "{e}");
        let e = serde_json::from_value::<Taint>(json!({"key": "k", "effect": "PreferNoSchedule"}))
            .unwrap_err();
        assert!(e.to_string().contains("PreferNoSchedule"), "{e}");
    }
}
