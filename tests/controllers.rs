//! The controllers against a three-node tmc shard (real `tmc serve`
//! processes) and real member kube-apiservers (scripts/testenv.sh):
//! registration with `tmc cluster register`, probes and heartbeats,
//! credentials, placements across a leader failover and a cluster's death.
//!
//! Needs `scripts/testenv.sh build`; see docs/testing.md. Waits are polls
//! with generous deadlines, never timing assertions.

mod common;

use common::shard::Shard;
use common::testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "tmc.kcp.io".into(),
        version: "v1alpha1".into(),
        api_version: "tmc.kcp.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn registrations(c: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        c.clone(),
        &ar("ClusterRegistration", "clusterregistrations"),
    )
}

fn placements(c: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(c.clone(), &ar("WorkloadPlacement", "workloadplacements"))
}

/// A Node with capacity in a member cluster (the test clusters have no
/// kubelets): nodes may be created with their status.
async fn add_node(client: kube::Client, name: &str) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3500m", "memory": "7Gi", "pods": "110"}
        }
    }))
    .unwrap();
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating node {name}: {e}"),
    }
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Result<Value, String> {
    let o = api
        .get(name)
        .await
        .map_err(|e| format!("get {name}: {e}"))?;
    Ok(serde_json::to_value(o).unwrap())
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until condition `type_` of registration/placement `name` has
/// `status` (and `reason`, if given); returns the object.
async fn wait_condition(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    eventually(
        &format!("{name}: {type_}={status} {reason:?}"),
        WAIT,
        || async {
            let o = get(api, name).await?;
            match condition(&o, type_) {
                Some(c) if c["status"] == status && reason.is_none_or(|r| c["reason"] == r) => {
                    Ok(o)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

fn selected(obj: &Value) -> Vec<String> {
    obj.pointer("/status/selectedClusters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_selected(api: &Api<DynamicObject>, name: &str, want: &[&str]) -> Value {
    eventually(&format!("{name} on {want:?}"), WAIT, || async {
        let o = get(api, name).await?;
        let s = selected(&o);
        if s == want {
            Ok(o)
        } else {
            Err(format!("selected {s:?}, status {}", o["status"]))
        }
    })
    .await
}

fn placement(name: &str, selector: Value, strategy: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
        "metadata": {"name": name},
        "spec": {
            "clusterSelector": selector,
            "strategy": strategy,
            "tolerations": [{"key": "tmc.kcp.io/unhealthy", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 5}]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_heartbeats_and_placements_across_failover_and_cluster_death() {
    let members = TestEnv::shared();
    // Its own cluster, to stop without disturbing the shared ones.
    let mut doomed_env = TestEnv::start(1);
    let mut shard = Shard::start_with(common::shard::FAST_CONTROLLERS, "");
    for (i, c) in members.clients().await.into_iter().enumerate() {
        add_node(c, &format!("node-{i}")).await;
    }
    add_node(doomed_env.client(0).await, "node-doomed").await;

    // Talk to a follower: it survives the leader's kill below.
    let (via, _) = shard.followers();
    let client = shard.client(via, "root").await;
    let regs = registrations(&client);
    let wps = placements(&client);

    shard.register_cluster(via, "east", members.kubeconfig(0), "pool=stable,zone=a");
    shard.register_cluster(via, "west", members.kubeconfig(1), "pool=stable,zone=b");
    shard.register_cluster(via, "doomed", doomed_env.kubeconfig(0), "pool=flaky,zone=c");
    // A kubeconfig with a token the cluster does not know.
    let bad = shard.dir.path().join("bad.kubeconfig");
    let text = std::fs::read_to_string(members.kubeconfig(0)).unwrap();
    let bad_text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("token:") {
                "    token: not-a-valid-token".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&bad, bad_text).unwrap();
    shard.register_cluster(via, "badcreds", &bad, "pool=none");

    for name in ["east", "west", "doomed"] {
        let o = wait_condition(&regs, name, "Ready", "True", Some("Ready")).await;
        assert!(
            o["status"]["kubernetesVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("v1.")),
            "{name}: {}",
            o["status"]
        );
        assert_eq!(
            o["status"]["capacity"]["cpu"], "4",
            "{name}: {}",
            o["status"]
        );
        assert_eq!(o["status"]["capacity"]["memory"], "8Gi");
        assert_eq!(o["status"]["allocatable"]["cpu"], "3500m");
        assert!(o["status"]["lastHeartbeatTime"].is_string());
        for c in ["HeartbeatHealthy", "CredentialsValid"] {
            assert_eq!(condition(&o, c).unwrap()["status"], "True", "{name} {c}");
        }
    }
    let o = wait_condition(
        &regs,
        "badcreds",
        "CredentialsValid",
        "False",
        Some("Unauthorized"),
    )
    .await;
    let msg = condition(&o, "CredentialsValid").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("tmc-system/badcreds-kubeconfig") && msg.contains("401"),
        "the message names the Secret and the answer: {msg}"
    );
    assert_eq!(condition(&o, "Ready").unwrap()["status"], "False");

    // Spread over two: both stable clusters.
    let pp = PostParams::default();
    wps.create(
        &pp,
        &placement(
            "spread",
            json!({"matchLabels": {"pool": "stable"}}),
            json!({"type": "Spread", "clusters": 2, "topologyKey": "zone"}),
        ),
    )
    .await
    .unwrap();
    let o = wait_selected(&wps, "spread", &["east", "west"]).await;
    assert_eq!(o["status"]["phase"], "Bound");
    wait_condition(&wps, "spread", "Scheduled", "True", Some("Scheduled")).await;
    wait_condition(&wps, "spread", "Ready", "True", Some("ClustersReady")).await;

    // No cluster matches; a location that does not exist.
    wps.create(
        &pp,
        &placement(
            "nowhere",
            json!({"matchLabels": {"pool": "gpu"}}),
            json!({"type": "Single"}),
        ),
    )
    .await
    .unwrap();
    let o = wait_condition(
        &wps,
        "nowhere",
        "Scheduled",
        "False",
        Some("NoMatchingCluster"),
    )
    .await;
    assert_eq!(o["status"]["phase"], "Unschedulable");
    let mut lost = placement("lost", json!({}), json!({"type": "Single"}));
    lost.data["spec"]["locationWorkspace"] = json!("root:nope");
    wps.create(&pp, &lost).await.unwrap();
    wait_condition(&wps, "lost", "Scheduled", "False", Some("LocationNotFound")).await;

    // Single, first only the doomed cluster matches; then east matches
    // too, and the decision stays where it is.
    wps.create(
        &pp,
        &placement(
            "pinned",
            json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]}),
            json!({"type": "Single"}),
        ),
    )
    .await
    .unwrap();
    wait_selected(&wps, "pinned", &["doomed"]).await;
    wait_condition(&wps, "pinned", "Ready", "True", None).await;
    wps.patch(
        "pinned",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"clusterSelector": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["c", "a"]}]}}})),
    )
    .await
    .unwrap();
    let o = eventually("pinned's new spec seen", WAIT, || async {
        let o = get(&wps, "pinned").await?;
        match condition(&o, "Scheduled") {
            Some(c) if c["observedGeneration"] == 2 => Ok(o),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(selected(&o), vec!["doomed"], "a valid decision stays");
    let rv_before = o["metadata"]["resourceVersion"].clone();

    // SIGKILL the leader; the new one resumes from the store.
    let leader = shard.leader();
    let old_hb = get(&regs, "east").await.unwrap()["status"]["lastHeartbeatTime"].clone();
    shard.kill(leader);
    let alive: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let new_leader = shard.leader_among(&alive);
    assert_ne!(new_leader, leader);
    // The new leader's controllers probe again: east's heartbeat moves on.
    eventually("heartbeats from the new leader", WAIT, || async {
        let hb = get(&regs, "east").await?["status"]["lastHeartbeatTime"].clone();
        let m = shard.metrics(new_leader).unwrap_or_default();
        // (Whole lines: the gauge's HELP text starts with "1 while".)
        if hb != old_hb && m.lines().any(|l| l == "tmc_controller_leader 1") {
            Ok(())
        } else {
            Err(format!("heartbeat {hb}, metrics leader line missing"))
        }
    })
    .await;
    // Once the new leader has reconciled every placement (its scan went
    // through the queue and east was probed again since), pinned is
    // unchanged: same cluster, not even a status write.
    eventually("the new leader's placement scan", WAIT, || async {
        let m = shard.metrics(new_leader).unwrap_or_default();
        let line = m
            .lines()
            .find(|l| {
                l.starts_with("tmc_controller_reconciles_total{controller=\"workloadplacement\"}")
            })
            .ok_or("no placement reconciles yet")?;
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if n >= 4 {
            Ok(())
        } else {
            Err(format!("{n} reconciles"))
        }
    })
    .await;
    let o = get(&wps, "pinned").await.unwrap();
    assert_eq!(selected(&o), vec!["doomed"], "no churn across failover");
    assert_eq!(
        o["metadata"]["resourceVersion"], rv_before,
        "no write at all"
    );
    assert!(
        shard
            .metrics(new_leader)
            .unwrap()
            .contains("tmc_controller_adds_total{controller=\"clusterregistration\"}"),
        "per-controller metrics"
    );
    shard.spawn(leader);

    // The doomed cluster dies: heartbeat and Ready go False, and after the
    // placement's 5 s grace it moves to east.
    doomed_env.stop().unwrap();
    let o = wait_condition(
        &regs,
        "doomed",
        "HeartbeatHealthy",
        "False",
        Some("HeartbeatTimeout"),
    )
    .await;
    let msg = condition(&o, "HeartbeatHealthy").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("reachable"),
        "a message a person can act on: {msg}"
    );
    assert_eq!(condition(&o, "Ready").unwrap()["status"], "False");
    let o = wait_selected(&wps, "pinned", &["east"]).await;
    assert_eq!(o["status"]["phase"], "Bound");
    wait_condition(&wps, "pinned", "Ready", "True", Some("ClustersReady")).await;
    // The others are untouched.
    assert_eq!(
        selected(&get(&wps, "spread").await.unwrap()),
        vec!["east", "west"]
    );

    // Finalizers: the controllers keep one on each of their objects.
    let o = get(&wps, "spread").await.unwrap();
    assert_eq!(o["metadata"]["finalizers"], json!(["tmc.kcp.io/placement"]));
    let o = get(&regs, "west").await.unwrap();
    assert_eq!(o["metadata"]["finalizers"], json!(["tmc.kcp.io/cluster"]));
    // Deleting a registration: the placements that chose it choose again
    // before it goes. Its decision and status are written together, so
    // once west is gone, spread must already have left it.
    regs.delete("west", &DeleteParams::default()).await.unwrap();
    eventually("west deleted", WAIT, || async {
        match regs.get_opt("west").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(o) => Err(format!(
                "still there, deletionTimestamp {:?}",
                o.metadata.deletion_timestamp
            )),
        }
    })
    .await;
    let o = get(&wps, "spread").await.unwrap();
    assert_eq!(selected(&o), vec!["east"], "spread left west first");
    assert_eq!(
        condition(&o, "Scheduled").unwrap()["reason"],
        "NotEnoughClusters"
    );
    // Deleting a placement: its decision goes, then its finalizer, then it.
    wps.delete("spread", &DeleteParams::default())
        .await
        .unwrap();
    eventually("spread deleted", WAIT, || async {
        match wps.get_opt("spread").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
}
