//! Merge schemas: how the fields of the built-in kinds tmc serves merge.
//!
//! kube-apiserver learns this from Go struct tags (`patchStrategy:"merge"
//! patchMergeKey:"name"`) for strategic merge patch, and from the OpenAPI
//! extensions (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`) for server-side apply. tmc has no Go types, so
//! the facts both patch flavours need are written down here, once, as a
//! static table per kind: [`MergeSchema`]. [`super::patch`] (strategic merge
//! patch) and [`super::apply`] (server-side apply) read the same table.
//!
//! A field is named by its path from the object root: field names joined by
//! `.`, with `[]` for "an item of this list", e.g.
//! `spec.template.spec.containers[].ports`. Fields not in the table are plain
//! maps (merged key by key) or atomic lists (replaced whole), which is what
//! a field without tags or extensions is in Kubernetes too.
//!
//! # Implementation caveats
//! - Only the kinds in [`MergeSchema::for_kind`] have a schema; the table
//!   covers the fields of those kinds that merge as lists or retain keys,
//!   checked against the `k8s.io/api` struct tags and k8s-openapi's merge
//!   strategies. Lists nested deeper than the pod template (e.g. inside
//!   `affinity`) are atomic here.
//! - Maps that server-side apply treats as atomic (`+structType=atomic`,
//!   `+mapType=atomic`) are listed for the selectors and `nodeSelector`
//!   only.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A kind with its API group: the key of the schema table. The core group
/// is the empty string, as in Kubernetes (`""`, `"apps"`, `"batch"`,
/// `"tmc.kcp.io"`). The version does not matter: the listed kinds merge the
/// same way in every version tmc serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKind {
    /// API group; `""` for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

impl GroupKind {
    /// A group and kind.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> GroupKind {
        GroupKind {
            group: group.into(),
            kind: kind.into(),
        }
    }

    /// The group kind of an object's `apiVersion` (`v1`, `apps/v1`) and `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> GroupKind {
        let group = match api_version.split_once('/') {
            Some((group, _version)) => group,
            None => "",
        };
        GroupKind::new(group, kind)
    }
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// One key field of an associative list, with the default the API server
/// fills in when it is missing (`protocol: TCP` on ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    /// Field name.
    pub name: &'static str,
    /// Value used when the item lacks the field.
    pub default: Option<&'static str>,
}

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A list of objects merged by key: `patchStrategy:"merge"` with
    /// `patchMergeKey` for strategic merge patch, `listType=map` with
    /// `listMapKeys` for server-side apply (usually the same field; ports
    /// add `protocol`).
    MapList {
        /// The strategic merge patch key.
        patch_key: &'static str,
        /// The server-side apply keys.
        keys: &'static [KeyField],
    },
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a
    /// key; `listType=set`).
    SetList,
    /// A map whose keys a strategic merge patch may clear with
    /// `$retainKeys` (`patchStrategy:"retainKeys"`). Merges as a map.
    RetainKeys,
    /// A map that server-side apply owns and replaces whole
    /// (`structType=atomic` or `mapType=atomic`). Strategic merge patch
    /// still merges it key by key, as Kubernetes does.
    AtomicMap,
}

impl Rule {
    /// Whether a strategic merge patch merges this list (else replaces it).
    pub fn merges_list(&self) -> bool {
        matches!(self, Rule::MapList { .. } | Rule::SetList)
    }
}

/// The merge rules of one kind, by field path (see the module docs).
#[derive(Debug, Default)]
pub struct MergeSchema {
    /// Rules by field path.
    rules: HashMap<String, Rule>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: None,
    }
}

const NAME: &[KeyField] = &[key("name")];
/// `protocol`, a key of port lists, defaulted to TCP.
const PROTOCOL: KeyField = KeyField {
    name: "protocol",
    default: Some("TCP"),
};
const CONTAINER_PORT: &[KeyField] = &[key("containerPort"), PROTOCOL];
const SERVICE_PORT: &[KeyField] = &[key("port"), PROTOCOL];
const TYPE: &[KeyField] = &[key("type")];

fn map_list(patch_key: &'static str, keys: &'static [KeyField]) -> Rule {
    Rule::MapList { patch_key, keys }
}

/// Rules of `ObjectMeta`, relative to the metadata field.
fn object_meta() -> Vec<(String, Rule)> {
    vec![
        ("finalizers".to_string(), Rule::SetList),
        (
            "ownerReferences".to_string(),
            map_list("uid", const { &[key("uid")] }),
        ),
    ]
}

/// Rules of `PodSpec`, relative to the pod spec field.
fn pod_spec() -> Vec<(String, Rule)> {
    let mut rules: Vec<(String, Rule)> = [
        ("volumes", map_list("name", NAME)),
        ("imagePullSecrets", map_list("name", NAME)),
        ("hostAliases", map_list("ip", const { &[key("ip")] })),
        (
            "topologySpreadConstraints",
            map_list(
                "topologyKey",
                const { &[key("topologyKey"), key("whenUnsatisfiable")] },
            ),
        ),
        ("resourceClaims", map_list("name", NAME)),
        ("schedulingGates", map_list("name", NAME)),
        ("nodeSelector", Rule::AtomicMap),
    ]
    .into_iter()
    .map(|(path, rule)| (path.to_string(), rule))
    .collect();
    for containers in ["containers", "initContainers", "ephemeralContainers"] {
        rules.push((containers.to_string(), map_list("name", NAME)));
        for (field, rule) in [
            ("ports", map_list("containerPort", CONTAINER_PORT)),
            ("env", map_list("name", NAME)),
            (
                "volumeMounts",
                map_list("mountPath", const { &[key("mountPath")] }),
            ),
            (
                "volumeDevices",
                map_list("devicePath", const { &[key("devicePath")] }),
            ),
        ] {
            rules.push((format!("{containers}[].{field}"), rule));
        }
    }
    rules
}

/// Rules of a workload whose pod template is at `spec.template`.
fn workload(with_strategy_retain_keys: bool) -> Vec<(String, Rule)> {
    let mut rules = vec![
        ("spec.selector".to_string(), Rule::AtomicMap),
        ("status.conditions".to_string(), map_list("type", TYPE)),
    ];
    if with_strategy_retain_keys {
        rules.push(("spec.strategy".to_string(), Rule::RetainKeys));
    }
    rules.extend(prefixed("spec.template.metadata", object_meta()));
    rules.extend(prefixed("spec.template.spec", pod_spec()));
    rules
}

fn prefixed(prefix: &str, rules: Vec<(String, Rule)>) -> Vec<(String, Rule)> {
    rules
        .into_iter()
        .map(|(path, rule)| (format!("{prefix}.{path}"), rule))
        .collect()
}

impl MergeSchema {
    fn new(kind_rules: Vec<(String, Rule)>) -> MergeSchema {
        let mut rules: HashMap<String, Rule> =
            prefixed("metadata", object_meta()).into_iter().collect();
        rules.extend(kind_rules);
        MergeSchema { rules }
    }

    /// The schema of a built-in kind, or `None` for kinds without one
    /// (custom resources such as tmc's own `tmc.kcp.io` kinds).
    pub fn for_kind(kind: &GroupKind) -> Option<&'static MergeSchema> {
        static TABLE: OnceLock<HashMap<(&'static str, &'static str), MergeSchema>> =
            OnceLock::new();
        let table = TABLE.get_or_init(|| {
            let mut t = HashMap::new();
            let conditions = || vec![("status.conditions".to_string(), map_list("type", TYPE))];
            t.insert(("", "Namespace"), MergeSchema::new(conditions()));
            t.insert(("", "ConfigMap"), MergeSchema::new(vec![]));
            t.insert(("", "Secret"), MergeSchema::new(vec![]));
            t.insert(
                ("", "Service"),
                MergeSchema::new(vec![
                    ("spec.ports".to_string(), map_list("port", SERVICE_PORT)),
                    ("spec.selector".to_string(), Rule::AtomicMap),
                    ("status.conditions".to_string(), map_list("type", TYPE)),
                ]),
            );
            t.insert(
                ("", "ServiceAccount"),
                // imagePullSecrets has no patch strategy on ServiceAccount
                // (unlike on PodSpec): it is atomic.
                MergeSchema::new(vec![("secrets".to_string(), map_list("name", NAME))]),
            );
            let mut pod = prefixed("spec", pod_spec());
            pod.push(("status.conditions".to_string(), map_list("type", TYPE)));
            t.insert(("", "Pod"), MergeSchema::new(pod));
            t.insert(("apps", "Deployment"), MergeSchema::new(workload(true)));
            t.insert(("apps", "StatefulSet"), MergeSchema::new(workload(false)));
            t.insert(("apps", "DaemonSet"), MergeSchema::new(workload(false)));
            t.insert(("batch", "Job"), MergeSchema::new(workload(false)));
            t.insert(("apps", "ReplicaSet"), MergeSchema::new(workload(false)));
            // A CronJob's job template holds a Job's metadata and spec.
            let mut cron = prefixed("spec.jobTemplate.metadata", object_meta());
            cron.extend(
                prefixed("spec.jobTemplate", workload(false))
                    .into_iter()
                    .filter(|(path, _)| path.starts_with("spec.jobTemplate.spec.")),
            );
            t.insert(("batch", "CronJob"), MergeSchema::new(cron));
            let mut pvc = conditions();
            pvc.push(("spec.selector".to_string(), Rule::AtomicMap));
            t.insert(("", "PersistentVolumeClaim"), MergeSchema::new(pvc));
            // Kinds whose lists are all atomic: only `metadata` merges by key.
            for (group, kind) in [
                ("", "LimitRange"),
                ("", "ResourceQuota"),
                ("", "Event"),
                ("", "Endpoints"),
                ("networking.k8s.io", "Ingress"),
                ("coordination.k8s.io", "Lease"),
                ("discovery.k8s.io", "EndpointSlice"),
            ] {
                t.insert((group, kind), MergeSchema::new(vec![]));
            }
            t.insert(
                ("networking.k8s.io", "NetworkPolicy"),
                MergeSchema::new(vec![("spec.podSelector".to_string(), Rule::AtomicMap)]),
            );
            let mut pdb = conditions();
            pdb.push(("spec.selector".to_string(), Rule::AtomicMap));
            t.insert(("policy", "PodDisruptionBudget"), MergeSchema::new(pdb));
            t.insert(
                ("autoscaling", "HorizontalPodAutoscaler"),
                MergeSchema::new(conditions()),
            );
            t
        });
        table
            .iter()
            .find(|((group, k), _)| *group == kind.group && *k == kind.kind)
            .map(|(_, schema)| schema)
    }

    /// The schema used by server-side apply for kinds without one: only
    /// `metadata` is known (custom resources share `ObjectMeta`).
    pub fn metadata_only() -> &'static MergeSchema {
        static GENERIC: OnceLock<MergeSchema> = OnceLock::new();
        GENERIC.get_or_init(|| MergeSchema::new(vec![]))
    }

    /// A schema of exactly `rules`, for tests of the merge code.
    #[cfg(test)]
    pub(crate) fn from_rules(rules: Vec<(String, Rule)>) -> MergeSchema {
        MergeSchema {
            rules: rules.into_iter().collect(),
        }
    }

    /// The rule of the field at `path` (see the module docs), if any.
    pub fn rule(&self, path: &str) -> Option<Rule> {
        self.rules.get(path).copied()
    }
}

/// The schema path of field `key` under `parent`.
pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The schema path of the items of the list at `list`.
pub fn item_path(list: &str) -> String {
    format!("{list}[]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_rules() {
        let s = MergeSchema::for_kind(&GroupKind::new("apps", "Deployment")).unwrap();
        assert_eq!(
            s.rule("spec.template.spec.containers"),
            Some(map_list("name", NAME))
        );
        assert!(matches!(
            s.rule("spec.template.spec.initContainers[].ports"),
            Some(Rule::MapList {
                patch_key: "containerPort",
                ..
            })
        ));
        assert_eq!(s.rule("spec.strategy"), Some(Rule::RetainKeys));
        assert_eq!(s.rule("metadata.finalizers"), Some(Rule::SetList));
        assert_eq!(s.rule("spec.template.spec.tolerations"), None);
    }

    #[test]
    fn custom_resources_have_no_schema() {
        assert!(
            MergeSchema::for_kind(&GroupKind::new("tmc.kcp.io", "ClusterRegistration")).is_none()
        );
        assert!(MergeSchema::for_kind(&GroupKind::new("", "Deployment")).is_none());
    }

    #[test]
    fn group_kind_from_api_version() {
        assert_eq!(
            GroupKind::from_api_version("v1", "Service"),
            GroupKind::new("", "Service")
        );
        assert_eq!(
            GroupKind::from_api_version("apps/v1", "Deployment"),
            GroupKind::new("apps", "Deployment")
        );
    }
}
