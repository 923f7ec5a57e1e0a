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

use crate::object::selector::{self, LabelSelector};
use crate::types::{StrategyType, Taint, TaintEffect, Toleration, WorkloadPlacementSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The placement's cluster selector, parsed once per decision; `None`
/// when it is invalid: it matches no cluster (see
/// [`crate::object::selector`]).
fn cluster_selector(spec: &WorkloadPlacementSpec) -> Option<LabelSelector> {
    selector::from_optional(spec.cluster_selector.as_ref()).ok()
}

fn matches(sel: &Option<LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.as_ref().is_some_and(|s| s.matches(labels))
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

/// FNV-1a: a stable hash (unlike std's, fixed across builds), cheap
/// enough to run for every cluster of a location per decision.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Decides the clusters of placement `placement_id` (see the module docs).
/// The reference form; the controller keeps a [`Prepared`] per location
/// and calls [`Prepared::schedule`], the same code.
pub fn schedule(
    placement_id: &str,
    spec: &WorkloadPlacementSpec,
    clusters: &[ClusterInfo],
    previous: &[String],
    now: i64,
) -> Decision {
    Prepared::new(clusters.to_vec()).schedule(placement_id, spec, previous, now)
}

/// The clusters eligible for new placements under one set of scheduling
/// inputs (cluster selector, tolerations, topology key).
struct Eligible {
    /// Indices into [`Prepared::clusters`].
    idx: Vec<u32>,
    /// Topology value id of each (same order as `idx`).
    topo: Vec<u32>,
    /// Topology value ids (a missing label is a value too: `None`).
    values: HashMap<Option<String>, u32>,
}

/// The clusters of one location, indexed once for many decisions: names,
/// name hashes, and the eligible clusters per distinct scheduling inputs
/// (placements mostly share a few). A location of 10,000 clusters then
/// costs a decision one pass over its eligible clusters' weights, with no
/// label lookups.
pub struct Prepared {
    clusters: Vec<ClusterInfo>,
    by_name: HashMap<String, u32>,
    name_hash: Vec<u64>,
    eligible: Mutex<HashMap<String, Arc<Eligible>>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Prepared {
    /// Indexes `clusters`.
    pub fn new(clusters: Vec<ClusterInfo>) -> Self {
        let by_name = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i as u32))
            .collect();
        let name_hash = clusters
            .iter()
            .map(|c| fnv1a(c.name.as_bytes(), FNV_OFFSET))
            .collect();
        Prepared {
            clusters,
            by_name,
            name_hash,
            eligible: Mutex::new(HashMap::new()),
        }
    }

    /// The clusters.
    pub fn clusters(&self) -> &[ClusterInfo] {
        &self.clusters
    }

    /// The cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&ClusterInfo> {
        self.by_name.get(name).map(|&i| &self.clusters[i as usize])
    }

    fn topology(spec: &WorkloadPlacementSpec) -> Option<&str> {
        spec.strategy
            .topology_key
            .as_deref()
            .filter(|_| spec.strategy.type_ == StrategyType::Spread)
    }

    fn eligible(&self, spec: &WorkloadPlacementSpec) -> Arc<Eligible> {
        let topology = Self::topology(spec);
        let key = serde_json::to_string(&(&spec.cluster_selector, &spec.tolerations, topology))
            .expect("plain data serializes");
        if let Some(e) = self
            .eligible
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return e.clone();
        }
        let mut e = Eligible {
            idx: Vec::new(),
            topo: Vec::new(),
            values: HashMap::new(),
        };
        let sel = cluster_selector(spec);
        for (i, c) in self.clusters.iter().enumerate() {
            let ok = matches(&sel, &c.labels)
                && !c.unschedulable
                && c.ready
                && !untolerated(spec, c, TaintEffect::NoSchedule)
                && !untolerated(spec, c, TaintEffect::NoExecute);
            if ok {
                let v = topology.and_then(|k| c.labels.get(k).cloned());
                let n = e.values.len() as u32;
                let id = *e.values.entry(v).or_insert(n);
                e.idx.push(i as u32);
                e.topo.push(id);
            }
        }
        let e = Arc::new(e);
        self.eligible
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, e.clone());
        e
    }

    /// Decides the clusters of placement `placement_id` (see the module
    /// docs).
    pub fn schedule(
        &self,
        placement_id: &str,
        spec: &WorkloadPlacementSpec,
        previous: &[String],
        now: i64,
    ) -> Decision {
        let grace = grace_secs(spec);
        let ph = mix(fnv1a(placement_id.as_bytes(), FNV_OFFSET));
        let sel = cluster_selector(spec);
        // Previous clusters that stay (no churn).
        let mut chosen: Vec<u32> = previous
            .iter()
            .filter_map(|n| self.by_name.get(n.as_str()).copied())
            .filter(|&i| {
                let c = &self.clusters[i as usize];
                matches(&sel, &c.labels)
                    && !untolerated(spec, c, TaintEffect::NoExecute)
                    && (c.ready || c.unhealthy_since.is_none_or(|since| now - since < grace))
            })
            .collect();
        chosen.sort_unstable();
        chosen.dedup();
        let el = self.eligible(spec);
        let want = match spec.strategy.type_ {
            StrategyType::Single => 1,
            StrategyType::Spread => spec.strategy.clusters.unwrap_or(1) as usize,
            StrategyType::All => {
                chosen.len() + el.idx.iter().filter(|i| !chosen.contains(i)).count()
            }
        };
        let mut need = want.saturating_sub(chosen.len());
        let topology = Self::topology(spec);
        // (weight, cluster index, topology value id); lower weight wins.
        let order = |a: &(u64, u32, u32), b: &(u64, u32, u32)| {
            (a.0, &self.clusters[a.1 as usize].name).cmp(&(b.0, &self.clusters[b.1 as usize].name))
        };
        let mut used = vec![false; el.values.len()];
        if let Some(key) = topology {
            for &i in &chosen {
                let v = self.clusters[i as usize].labels.get(key).cloned();
                if let Some(&id) = el.values.get(&v) {
                    used[id as usize] = true;
                }
            }
        }
        // One pass: the best candidate of each unused topology value, and
        // the `keep` lightest overall (all of them for All): enough for
        // both rounds below, without sorting thousands.
        let keep = if topology.is_some() {
            need.saturating_mul(2)
        } else {
            need
        };
        let mut best: Vec<Option<(u64, u32, u32)>> = vec![None; el.values.len()];
        let mut candidates: Vec<(u64, u32, u32)> = Vec::with_capacity(keep.min(el.idx.len()));
        let bounded = keep < el.idx.len();
        if need > 0 {
            // (Most decisions keep nothing: skip the search then.)
            let keeps = !chosen.is_empty();
            for (&i, &v) in el.idx.iter().zip(&el.topo) {
                if keeps && chosen.contains(&i) {
                    continue;
                }
                let cand = (mix(ph ^ self.name_hash[i as usize]), i, v);
                if topology.is_some() && !used[v as usize] {
                    let b = &mut best[v as usize];
                    if b.is_none_or(|b| order(&cand, &b).is_lt()) {
                        *b = Some(cand);
                    }
                }
                if !bounded {
                    candidates.push(cand);
                } else if candidates.len() < keep {
                    let at = candidates.partition_point(|c| order(c, &cand).is_lt());
                    candidates.insert(at, cand);
                } else if candidates.last().is_some_and(|l| order(&cand, l).is_lt()) {
                    candidates.pop();
                    let at = candidates.partition_point(|c| order(c, &cand).is_lt());
                    candidates.insert(at, cand);
                }
            }
        }
        if !bounded {
            candidates.sort_by(order);
        }
        if need > 0 && topology.is_some() {
            // First the best cluster of each topology value not used yet,
            // by weight; then the rest by weight.
            let mut firsts: Vec<(u64, u32, u32)> = best.into_iter().flatten().collect();
            firsts.sort_by(order);
            firsts.truncate(need);
            need -= firsts.len();
            chosen.extend(firsts.iter().map(|f| f.1));
            candidates.retain(|c| !firsts.iter().any(|f| f.1 == c.1));
        }
        candidates.truncate(need);
        chosen.extend(candidates.iter().map(|c| c.1));
        let mut names: Vec<String> = chosen
            .iter()
            .map(|&i| self.clusters[i as usize].name.clone())
            .collect();
        names.sort();
        let reason = if names.is_empty() {
            Reason::NoMatchingCluster
        } else if names.len() < want {
            Reason::NotEnoughClusters
        } else {
            Reason::Scheduled
        };
        Decision {
            clusters: names,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConflictPolicy, Strategy};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeSet;

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

    /// The rules written the slow, obvious way: sort every eligible
    /// cluster by weight, take unused topology values first, then fill.
    fn naive(
        id: &str,
        spec: &WorkloadPlacementSpec,
        cs: &[ClusterInfo],
        prev: &[String],
        now: i64,
    ) -> Vec<String> {
        let grace = grace_secs(spec);
        let matches =
            |c: &ClusterInfo| selector::matches_metav1(spec.cluster_selector.as_ref(), &c.labels);
        let mut chosen: Vec<&ClusterInfo> = cs
            .iter()
            .filter(|c| prev.contains(&c.name))
            .filter(|c| matches(c) && !untolerated(spec, c, TaintEffect::NoExecute))
            .filter(|c| c.ready || c.unhealthy_since.is_none_or(|s| now - s < grace))
            .collect();
        let ph = mix(fnv1a(id.as_bytes(), FNV_OFFSET));
        let mut cands: Vec<&ClusterInfo> = cs
            .iter()
            .filter(|c| !chosen.iter().any(|x| x.name == c.name))
            .filter(|c| matches(c) && !c.unschedulable && c.ready)
            .filter(|c| {
                !untolerated(spec, c, TaintEffect::NoSchedule)
                    && !untolerated(spec, c, TaintEffect::NoExecute)
            })
            .collect();
        cands.sort_by_key(|c| {
            (
                mix(ph ^ fnv1a(c.name.as_bytes(), FNV_OFFSET)),
                c.name.clone(),
            )
        });
        let want = match spec.strategy.type_ {
            StrategyType::Single => 1,
            StrategyType::Spread => spec.strategy.clusters.unwrap_or(1) as usize,
            StrategyType::All => chosen.len() + cands.len(),
        };
        let topo = spec
            .strategy
            .topology_key
            .as_deref()
            .filter(|_| spec.strategy.type_ == StrategyType::Spread);
        let val = |c: &ClusterInfo| topo.and_then(|k| c.labels.get(k).cloned());
        let mut used: BTreeSet<Option<String>> = chosen.iter().map(|c| val(c)).collect();
        for pass in 0..2 {
            for c in &cands {
                if chosen.len() >= want || chosen.iter().any(|x| x.name == c.name) {
                    continue;
                }
                if pass == 0 && topo.is_some() && used.contains(&val(c)) {
                    continue;
                }
                used.insert(val(c));
                chosen.push(c);
            }
        }
        let mut n: Vec<String> = chosen.iter().map(|c| c.name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn the_indexed_decision_equals_the_obvious_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let cs: Vec<ClusterInfo> = (0..rng.random_range(0..40))
                .map(|i| {
                    let mut c =
                        cluster(&format!("c{i}"), ["eu", "us", "ap"][rng.random_range(0..3)]);
                    if rng.random_bool(0.3) {
                        c.labels
                            .insert("zone".into(), format!("z{}", rng.random_range(0..4)));
                    }
                    c.unschedulable = rng.random_bool(0.1);
                    c.ready = rng.random_bool(0.8);
                    c.unhealthy_since =
                        (!c.ready && rng.random_bool(0.7)).then(|| rng.random_range(0..600));
                    if rng.random_bool(0.15) {
                        c.taints.push(Taint {
                            key: "k".into(),
                            value: String::new(),
                            effect: if rng.random_bool(0.5) {
                                TaintEffect::NoSchedule
                            } else {
                                TaintEffect::NoExecute
                            },
                        });
                    }
                    c
                })
                .collect();
            let t = [
                StrategyType::Single,
                StrategyType::Spread,
                StrategyType::All,
            ][rng.random_range(0..3)];
            let topo = [None, Some("zone"), Some("region")][rng.random_range(0..3)];
            let mut sp = spec(t, Some(rng.random_range(1..6)), topo);
            if rng.random_bool(0.5) {
                sp.cluster_selector = Some(metav1::LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "region".into(),
                        operator: "NotIn".into(),
                        values: Some(vec!["ap".into()]),
                    }]),
                    match_labels: None,
                });
            }
            if rng.random_bool(0.3) {
                sp.tolerations.push(Toleration {
                    key: "k".into(),
                    operator: Some("Exists".into()),
                    value: None,
                    effect: None,
                    toleration_seconds: None,
                });
            }
            let prev: Vec<String> = cs
                .iter()
                .filter(|_| rng.random_bool(0.1))
                .map(|c| c.name.clone())
                .collect();
            let now = rng.random_range(0..900);
            let id = format!("ws|p{round}");
            assert_eq!(
                schedule(&id, &sp, &cs, &prev, now).clusters,
                naive(&id, &sp, &cs, &prev, now),
                "round {round}: {sp:?} prev {prev:?}"
            );
        }
    }

    /// The selector's semantics are [`crate::object::selector`]'s (its
    /// table tests); here: the scheduler applies it, and an invalid one
    /// places nowhere.
    #[test]
    fn the_cluster_selector_filters_and_an_invalid_one_matches_nothing() {
        let cs = vec![cluster("a", "eu"), cluster("b", "us")];
        let expr = |op: &str, vals: &[&str]| metav1::LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "region".into(),
                operator: op.into(),
                values: Some(vals.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        };
        let mut sp = spec(StrategyType::All, None, None);
        assert_eq!(schedule("ws|p", &sp, &cs, &[], 0).clusters, vec!["a", "b"]);
        sp.cluster_selector = Some(expr("In", &["us"]));
        assert_eq!(schedule("ws|p", &sp, &cs, &[], 0).clusters, vec!["b"]);
        for invalid in [expr("Bogus", &[]), expr("Exists", &["x"]), expr("In", &[])] {
            sp.cluster_selector = Some(invalid);
            let d = schedule("ws|p", &sp, &cs, &["a".to_string()], 0);
            assert_eq!(
                (d.clusters.len(), d.reason),
                (0, Reason::NoMatchingCluster),
                "{:?}",
                sp.cluster_selector
            );
        }
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
