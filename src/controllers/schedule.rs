//! The placement decision: which clusters a WorkloadPlacement gets.
//!
//! A pure function of the placement's spec, the clusters of its location
//! workspace, the previous decision and the time, so that it is tested
//! without clusters and benchmarked at scale.
//!
//! Rules:
//! - A cluster can take **new** placements when it matches the cluster
//!   selector, is not unschedulable, is Ready, and has no NoSchedule or
//!   NoExecute taint the placement does not tolerate.
//! - A **chosen** cluster stays chosen (no churn) while it matches the
//!   selector and has no untolerated NoExecute taint. Unschedulable or a
//!   NoSchedule taint does not move it. An unhealthy cluster stays for the
//!   grace period — 300 s, or the `tolerationSeconds` of a toleration of
//!   `tmc.kcp.io/unhealthy` with effect NoExecute — and is replaced after.
//! - The decision is then filled up to the wanted number (Single: 1,
//!   Spread: `clusters`, All: every eligible cluster) from the eligible
//!   clusters, preferring unused values of the topology key for Spread, in
//!   rendezvous-hash order of (placement, cluster): stable, and spread evenly
//!   over clusters across many placements.

use crate::api::types::{StrategyType, Taint, TaintEffect, Toleration, WorkloadPlacementSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// The taint key that stands for "cluster unhealthy".
pub const UNHEALTHY_TAINT: &str = "tmc.kcp.io/unhealthy";
/// Default grace period before an unhealthy cluster's placements move.
pub const DEFAULT_UNHEALTHY_GRACE_SECS: i64 = 300;

/// What the scheduler knows of one cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterInfo {
    /// ClusterRegistration name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// Ready condition is True.
    pub ready: bool,
    /// Seconds (unix) since when it is not Ready, if it is not.
    pub unhealthy_since: Option<i64>,
}

/// Why a placement is not (fully) bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every wanted cluster is chosen.
    Scheduled,
    /// Fewer clusters than wanted fit.
    NotEnoughClusters,
    /// No cluster fits.
    NoMatchingCluster,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Chosen cluster names, sorted.
    pub clusters: Vec<String>,
    /// How it went.
    pub reason: Reason,
}

/// Whether a label selector matches labels (matchLabels and
/// matchExpressions with In, NotIn, Exists, DoesNotExist). A missing
/// selector matches everything; an unknown operator matches nothing.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else { return true };
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let has = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let key_ok = match t.operator.as_deref() {
        Some("Exists") => t.key.is_empty() || t.key == taint.key,
        _ => t.key == taint.key && t.value.as_deref().unwrap_or("") == taint.value,
    };
    key_ok && t.effect.is_none_or(|e| e == taint.effect)
}

fn untolerated(spec: &WorkloadPlacementSpec, c: &ClusterInfo, effect: TaintEffect) -> bool {
    c.taints
        .iter()
        .filter(|t| t.effect == effect)
        .any(|taint| !spec.tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Seconds an unhealthy chosen cluster is kept (see the module docs).
pub fn grace_secs(spec: &WorkloadPlacementSpec) -> i64 {
    let unhealthy = Taint {
        key: UNHEALTHY_TAINT.into(),
        value: String::new(),
        effect: TaintEffect::NoExecute,
    };
    spec.tolerations
        .iter()
        .filter(|t| tolerates(t, &unhealthy))
        .filter_map(|t| t.toleration_seconds)
        .max()
        .unwrap_or(DEFAULT_UNHEALTHY_GRACE_SECS)
}

fn rendezvous(placement: &str, cluster: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (placement, cluster).hash(&mut h);
    h.finish()
}

/// Decides the clusters of placement `placement_id` (see the module docs).
pub fn schedule(
    placement_id: &str,
    spec: &WorkloadPlacementSpec,
    clusters: &[ClusterInfo],
    previous: &[String],
    now: i64,
) -> Decision {
    let matches = |c: &ClusterInfo| selector_matches(spec.cluster_selector.as_ref(), &c.labels);
    let eligible = |c: &ClusterInfo| {
        matches(c)
            && !c.unschedulable
            && c.ready
            && !untolerated(spec, c, TaintEffect::NoSchedule)
            && !untolerated(spec, c, TaintEffect::NoExecute)
    };
    let grace = grace_secs(spec);
    let keep = |c: &ClusterInfo| {
        matches(c)
            && !untolerated(spec, c, TaintEffect::NoExecute)
            && (c.ready || c.unhealthy_since.is_none_or(|since| now - since < grace))
    };
    let by_name: BTreeMap<&str, &ClusterInfo> =
        clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut chosen: BTreeSet<&str> = previous
        .iter()
        .filter_map(|n| by_name.get(n.as_str()).copied())
        .filter(|c| keep(c))
        .map(|c| c.name.as_str())
        .collect();
    let mut candidates: Vec<(u64, &ClusterInfo)> = clusters
        .iter()
        .filter(|c| eligible(c) && !chosen.contains(c.name.as_str()))
        .map(|c| (rendezvous(placement_id, &c.name), c))
        .collect();
    let want = match spec.strategy.type_ {
        StrategyType::Single => 1,
        StrategyType::Spread => spec.strategy.clusters.unwrap_or(1) as usize,
        StrategyType::All => chosen.len() + candidates.len(),
    };
    let topology = spec
        .strategy
        .topology_key
        .as_deref()
        .filter(|_| spec.strategy.type_ == StrategyType::Spread);
    let order = |a: &(u64, &ClusterInfo), b: &(u64, &ClusterInfo)| {
        (a.0, a.1.name.as_str()).cmp(&(b.0, b.1.name.as_str()))
    };
    // Without a topology only the first `need` in rendezvous order can be
    // taken: select them in linear time instead of sorting thousands.
    let need = want.saturating_sub(chosen.len());
    if topology.is_none() && need < candidates.len() {
        if need == 0 {
            candidates.clear();
        } else {
            candidates.select_nth_unstable_by(need - 1, order);
            candidates.truncate(need);
        }
    }
    candidates.sort_by(order);
    let candidates: Vec<&ClusterInfo> = candidates.into_iter().map(|(_, c)| c).collect();
    let mut used: BTreeSet<Option<&str>> = chosen
        .iter()
        .map(|n| topology.and_then(|k| by_name[n].labels.get(k).map(String::as_str)))
        .collect();
    // First pass prefers unused topology values; the second fills up.
    for pass in 0..2 {
        for c in &candidates {
            if chosen.len() >= want {
                break;
            }
            let value = topology.and_then(|k| c.labels.get(k).map(String::as_str));
            if pass == 0 && topology.is_some() && used.contains(&value) {
                continue;
            }
            if chosen.insert(c.name.as_str()) {
                used.insert(value);
            }
        }
    }
    let reason = if chosen.is_empty() {
        Reason::NoMatchingCluster
    } else if chosen.len() < want {
        Reason::NotEnoughClusters
    } else {
        Reason::Scheduled
    };
    Decision {
        clusters: chosen.into_iter().map(str::to_string).collect(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{ConflictPolicy, Strategy};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn cluster(name: &str, region: &str) -> ClusterInfo {
        ClusterInfo {
            name: name.into(),
            labels: [("region".to_string(), region.to_string())].into(),
            ready: true,
            ..Default::default()
        }
    }

    fn spec(t: StrategyType, n: Option<u32>, topology: Option<&str>) -> WorkloadPlacementSpec {
        WorkloadPlacementSpec {
            namespace_selector: None,
            workload_selector: None,
            resources: vec![],
            location_workspace: None,
            cluster_selector: None,
            tolerations: vec![],
            strategy: Strategy {
                type_: t,
                clusters: n,
                topology_key: topology.map(str::to_string),
            },
            conflict_policy: ConflictPolicy::Abort,
        }
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [
            ("region".into(), "eu".into()),
            ("tier".into(), "prod".into()),
        ]
        .into();
        let expr = |op: &str, vals: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "region".into(),
                operator: op.into(),
                values: Some(vals.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        };
        assert!(selector_matches(None, &labels));
        assert!(selector_matches(Some(&expr("In", &["eu", "us"])), &labels));
        assert!(!selector_matches(Some(&expr("NotIn", &["eu"])), &labels));
        assert!(selector_matches(Some(&expr("Exists", &[])), &labels));
        assert!(!selector_matches(Some(&expr("DoesNotExist", &[])), &labels));
        assert!(!selector_matches(Some(&expr("Bogus", &[])), &labels));
        let ml = LabelSelector {
            match_labels: Some([("tier".to_string(), "dev".to_string())].into()),
            match_expressions: None,
        };
        assert!(!selector_matches(Some(&ml), &labels));
    }

    #[test]
    fn strategies_pick_the_wanted_number_and_spread_over_topology() {
        let cs = vec![
            cluster("a1", "eu"),
            cluster("a2", "eu"),
            cluster("b1", "us"),
            cluster("c1", "ap"),
        ];
        let single = schedule("ws|p", &spec(StrategyType::Single, None, None), &cs, &[], 0);
        assert_eq!(single.clusters.len(), 1);
        let all = schedule("ws|p", &spec(StrategyType::All, None, None), &cs, &[], 0);
        assert_eq!(all.clusters.len(), 4);
        let spread = schedule(
            "ws|p",
            &spec(StrategyType::Spread, Some(3), Some("region")),
            &cs,
            &[],
            0,
        );
        let regions: BTreeSet<&str> = spread
            .clusters
            .iter()
            .map(|n| cs.iter().find(|c| &c.name == n).unwrap().labels["region"].as_str())
            .collect();
        assert_eq!(
            regions.len(),
            3,
            "three regions for three clusters: {spread:?}"
        );
        let five = schedule(
            "ws|p",
            &spec(StrategyType::Spread, Some(5), Some("region")),
            &cs,
            &[],
            0,
        );
        assert_eq!(
            (five.clusters.len(), five.reason),
            (4, Reason::NotEnoughClusters)
        );
        let none = schedule("ws|p", &spec(StrategyType::Single, None, None), &[], &[], 0);
        assert_eq!(none.reason, Reason::NoMatchingCluster);
    }

    #[test]
    fn decisions_are_stable_and_spread_across_placements() {
        let cs: Vec<_> = (0..10).map(|i| cluster(&format!("c{i}"), "eu")).collect();
        let s = spec(StrategyType::Single, None, None);
        let first = schedule("ws|p", &s, &cs, &[], 0);
        // A new cluster appears: the decision stays.
        let mut more = cs.clone();
        more.push(cluster("c99", "eu"));
        assert_eq!(
            schedule("ws|p", &s, &more, &first.clusters, 0).clusters,
            first.clusters
        );
        // Across many placements, every cluster gets some.
        let mut counts = BTreeMap::new();
        for i in 0..1000 {
            let d = schedule(&format!("ws|p{i}"), &s, &cs, &[], 0);
            *counts.entry(d.clusters[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 10);
        assert!(counts.values().all(|&n| n > 50), "{counts:?}");
    }

    #[test]
    fn taints_unschedulable_and_unhealth() {
        let s = spec(StrategyType::Single, None, None);
        let mut a = cluster("a", "eu");
        let b = cluster("b", "eu");
        // Unschedulable or NoSchedule: no new placement, but an existing one stays.
        a.unschedulable = true;
        assert_eq!(
            schedule("p", &s, &[a.clone(), b.clone()], &[], 0).clusters,
            vec!["b"]
        );
        assert_eq!(
            schedule("p", &s, &[a.clone(), b.clone()], &["a".into()], 0).clusters,
            vec!["a"]
        );
        a.unschedulable = false;
        a.taints = vec![Taint {
            key: "maintenance".into(),
            value: "true".into(),
            effect: TaintEffect::NoSchedule,
        }];
        assert_eq!(
            schedule("p", &s, &[a.clone(), b.clone()], &["a".into()], 0).clusters,
            vec!["a"]
        );
        // NoExecute evicts unless tolerated.
        a.taints[0].effect = TaintEffect::NoExecute;
        assert_eq!(
            schedule("p", &s, &[a.clone(), b.clone()], &["a".into()], 0).clusters,
            vec!["b"]
        );
        let mut tolerant = s.clone();
        tolerant.tolerations = vec![Toleration {
            key: "maintenance".into(),
            operator: Some("Exists".into()),
            value: None,
            effect: None,
            toleration_seconds: None,
        }];
        assert_eq!(
            schedule("p", &tolerant, &[a.clone(), b.clone()], &["a".into()], 0).clusters,
            vec!["a"]
        );
        // Unhealthy: kept for the grace period, then replaced.
        let mut sick = cluster("a", "eu");
        sick.ready = false;
        sick.unhealthy_since = Some(1000);
        let cs = [sick, b];
        assert_eq!(
            schedule("p", &s, &cs, &["a".into()], 1000 + 299).clusters,
            vec!["a"]
        );
        assert_eq!(
            schedule("p", &s, &cs, &["a".into()], 1000 + 300).clusters,
            vec!["b"]
        );
        let mut quick = s.clone();
        quick.tolerations = vec![Toleration {
            key: UNHEALTHY_TAINT.into(),
            operator: Some("Exists".into()),
            value: None,
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: Some(30),
        }];
        assert_eq!(
            schedule("p", &quick, &cs, &["a".into()], 1000 + 31).clusters,
            vec!["b"]
        );
    }
}
