//! Transparent sync end to end: a three-node tmc shard (real `tmc serve`
//! processes), two real member kube-apiservers with kube-controller-manager
//! (scripts/testenv.sh), kube-rs as the tenant's and the operator's client.
//!
//! Needs `scripts/testenv.sh build`; see docs/testing.md. Waits are polls
//! with generous deadlines, never timing assertions.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::time::Duration;
use tmc::controllers::sync::mapping::downstream_namespace;
use tmc::store::Workspace;
use tmc::testcluster::members::{eventually, TestEnv};
use tmc::testcluster::TestCluster;

const WAIT: Duration = Duration::from_secs(120);

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version,
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn deployments(c: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        c.clone(),
        ns,
        &ar("apps", "v1", "Deployment", "deployments"),
    )
}

fn configmaps(c: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(c.clone(), ns, &ar("", "v1", "ConfigMap", "configmaps"))
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Result<Value, String> {
    match api.get_opt(name).await {
        Ok(Some(o)) => Ok(serde_json::to_value(o).unwrap()),
        Ok(None) => Err(format!("{name} not found")),
        Err(e) => Err(format!("get {name}: {e}")),
    }
}

async fn gone(api: &Api<DynamicObject>, name: &str) -> Result<(), String> {
    match api.get_opt(name).await {
        Ok(None) => Ok(()),
        Ok(Some(o)) => Err(format!(
            "{name} still there: {}",
            serde_json::to_value(o).unwrap()["metadata"]
        )),
        Err(e) => Err(format!("get {name}: {e}")),
    }
}

fn deployment(name: &str, replicas: i64, config: &str) -> DynamicObject {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "envFrom": [{"configMapRef": {"name": config}}],
                    "env": [{"name": "PASSWORD", "valueFrom":
                        {"secretKeyRef": {"name": "web-secret", "key": "password"}}}]}]}
            }
        }
    }))
}

fn configmap(name: &str, value: &str, labels: Value) -> DynamicObject {
    obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"greeting": value}}))
}

/// A Spread-2 placement of `app=web` workloads onto the `pool=stable`
/// clusters registered in `root`.
fn placement() -> DynamicObject {
    obj(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
        "metadata": {"name": "web"},
        "spec": {
            "workloadSelector": {"matchLabels": {"app": "web"}},
            "locationWorkspace": "root",
            "clusterSelector": {"matchLabels": {"pool": "stable"}},
            "strategy": {"type": "Spread", "clusters": 2}
        }
    }))
}

/// Creates the Workspace `name` in the workspace of `root`.
async fn create_workspace(root: &kube::Client, name: &str) -> DynamicObject {
    Api::<DynamicObject>::all_with(
        root.clone(),
        &ar("tenancy.kcp.io", "v1alpha1", "Workspace", "workspaces"),
    )
    .create(
        &PostParams::default(),
        &obj(
            json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
            "metadata": {"name": name}, "spec": {}}),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("create workspace {name}: {e}"))
}

fn ws(s: &str) -> Workspace {
    Workspace::parse(s).unwrap()
}

/// The Deployment `name` of `workspace`/default on a member cluster.
async fn downstream(member: &kube::Client, workspace: &str, name: &str) -> Result<Value, String> {
    get(
        &deployments(member, &downstream_namespace(&ws(workspace), "default")),
        name,
    )
    .await
}

async fn wait_downstream_replicas(members: &[kube::Client], workspace: &str, name: &str, n: i64) {
    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("{workspace} {name} with {n} replicas on member {i}"),
            WAIT,
            || async {
                let d = downstream(m, workspace, name).await?;
                if d["spec"]["replicas"] == n {
                    Ok(())
                } else {
                    Err(format!("spec {}", d["spec"]))
                }
            },
        )
        .await;
    }
}

async fn wait_status_replicas(api: &Api<DynamicObject>, name: &str, n: i64) -> Value {
    eventually(&format!("{name}: status.replicas={n}"), WAIT, || async {
        let o = get(api, name).await?;
        if o["status"]["replicas"] == n && o["status"]["updatedReplicas"] == n {
            Ok(o)
        } else {
            Err(format!(
                "status {} annotations {}",
                o["status"], o["metadata"]["annotations"]
            ))
        }
    })
    .await
}

/// An encryption configuration with a new key (in a temporary directory,
/// kept while the first value lives).
fn new_encryption_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let enc = keys.path().join("encryption.yaml");
    std::fs::write(&enc, tmc::encryption::Keys::generate_config()).unwrap();
    (keys, enc)
}

/// The `tmc serve` flags of these tests' shards: loopback members
/// allowed, probes and the catalog every second, Secrets encrypted with
/// `enc`.
fn shard_flags(enc: &std::path::Path) -> Vec<&str> {
    vec![
        "--allow-private-member-endpoints",
        "--probe-interval",
        "1s",
        "--catalog-ttl",
        "1s",
        "--encryption-config",
        enc.to_str().unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_sync_down_status_comes_up_drift_is_repaired_and_deletes_clean_up() {
    let env = TestEnv::shared();
    let members = env.clients().await;
    // Secrets encrypted at rest: they must arrive downstream in clear.
    let (_keys, enc) = new_encryption_config();
    let mut shard = TestCluster::start_with(&shard_flags(&enc), "");
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    shard.register_cluster(via, "east", env.kubeconfig(0), "pool=stable");
    shard.register_cluster(via, "west", env.kubeconfig(1), "pool=stable");
    for w in ["a", "b"] {
        create_workspace(&root, w).await;
    }
    let a = shard.client(via, "root:a").await;
    let b = shard.client(via, "root:b").await;
    let wps = |c: &kube::Client| -> Api<DynamicObject> {
        Api::all_with(
            c.clone(),
            &ar(
                "tmc.kcp.io",
                "v1alpha1",
                "WorkloadPlacement",
                "workloadplacements",
            ),
        )
    };
    let pp = PostParams::default();
    for c in [&a, &b] {
        wps(c).create(&pp, &placement()).await.unwrap();
    }
    let (deps_a, deps_b) = (deployments(&a, "default"), deployments(&b, "default"));
    let (cms_a, cms_b) = (configmaps(&a, "default"), configmaps(&b, "default"));
    // The ConfigMap is not labelled app=web: it follows the Deployment
    // that references it (a dependency), not the placement's selector.
    cms_a
        .create(&pp, &configmap("web-config", "hello from a", json!({})))
        .await
        .unwrap();
    let secret = |v: &str| {
        obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret"},
                   "stringData": {"password": v}}),
        )
    };
    let secrets = |c: &kube::Client, ns: &str| -> Api<DynamicObject> {
        Api::namespaced_with(c.clone(), ns, &ar("", "v1", "Secret", "secrets"))
    };
    secrets(&a, "default")
        .create(&pp, &secret("s3cret-a"))
        .await
        .unwrap();
    deps_a
        .create(&pp, &deployment("web", 2, "web-config"))
        .await
        .unwrap();
    // Workspace b: the same namespace and names, other content.
    cms_b
        .create(&pp, &configmap("web-config", "hello from b", json!({})))
        .await
        .unwrap();
    deps_b
        .create(&pp, &deployment("web", 1, "web-config"))
        .await
        .unwrap();

    // Down: both clusters get both objects of both workspaces, each
    // workspace in its own namespace.
    wait_downstream_replicas(&members, "root:a", "web", 2).await;
    wait_downstream_replicas(&members, "root:b", "web", 1).await;
    let (ns_a, ns_b) = (
        downstream_namespace(&ws("root:a"), "default"),
        downstream_namespace(&ws("root:b"), "default"),
    );
    assert_ne!(ns_a, ns_b);
    for (i, m) in members.iter().enumerate() {
        for (ns, want) in [(&ns_a, "hello from a"), (&ns_b, "hello from b")] {
            let cm = eventually(
                &format!("web-config in {ns} on member {i}"),
                WAIT,
                || async { get(&configmaps(m, ns), "web-config").await },
            )
            .await;
            assert_eq!(cm["data"]["greeting"], want);
            assert!(
                cm["metadata"]["labels"]["tmc.kcp.io/owner"]
                    .as_str()
                    .is_some_and(|o| o.len() == 36),
                "{}",
                cm["metadata"]
            );
        }
        let s = eventually(&format!("web-secret on member {i}"), WAIT, || async {
            get(&secrets(m, &ns_a), "web-secret").await
        })
        .await;
        assert_eq!(
            s["data"]["password"], "czNjcmV0LWE=",
            "decrypted: {}",
            s["data"]
        );
        assert!(
            gone(&secrets(m, &ns_b), "web-secret").await.is_ok(),
            "b has no such Secret"
        );
        let d = downstream(m, "root:a", "web").await.unwrap();
        let meta = &d["metadata"];
        assert_eq!(meta["annotations"]["tmc.kcp.io/workspace"], "root:a");
        assert_eq!(meta["annotations"]["tmc.kcp.io/namespace"], "default");
        assert!(meta["annotations"].get("tmc.kcp.io/clusters").is_none());
        assert!(meta.get("ownerReferences").is_none());
        let ns: Api<DynamicObject> =
            Api::all_with(m.clone(), &ar("", "v1", "Namespace", "namespaces"));
        let n = get(&ns, &ns_a).await.unwrap();
        assert_eq!(
            n["metadata"]["annotations"]["tmc.kcp.io/workspace"],
            "root:a"
        );
    }

    // Up: kube-controller-manager's replica counts, summed over clusters.
    let web = wait_status_replicas(&deps_a, "web", 4).await;
    assert!(
        web["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .contains(&json!("tmc.kcp.io/sync")),
        "{}",
        web["metadata"]
    );
    let breakdown: Value = serde_json::from_str(
        web["metadata"]["annotations"]["tmc.kcp.io/cluster-status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for c in ["root|east", "root|west"] {
        assert_eq!(breakdown[c]["state"], "Synced", "{breakdown}");
        assert_eq!(breakdown[c]["replicas"], 2, "{breakdown}");
    }
    wait_status_replicas(&deps_b, "web", 2).await;

    // Edit and scale in the workspace: downstream follows, status follows.
    let ssa = PatchParams::apply("tenant").force();
    deps_a
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    wait_downstream_replicas(&members, "root:a", "web", 3).await;
    wait_status_replicas(&deps_a, "web", 6).await;
    // b was not touched.
    assert_eq!(
        downstream(&members[0], "root:b", "web").await.unwrap()["spec"]["replicas"],
        1
    );
    cms_a
        .patch(
            "web-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"greeting": "edited"}})),
        )
        .await
        .unwrap();
    eventually("the edited ConfigMap downstream", WAIT, || async {
        let cm = get(&configmaps(&members[1], &ns_a), "web-config").await?;
        (cm["data"]["greeting"] == "edited")
            .then_some(())
            .ok_or(format!("{}", cm["data"]))
    })
    .await;

    // Drift: deleted by hand comes back; changed by hand is put back.
    let before = downstream(&members[0], "root:a", "web").await.unwrap();
    deployments(&members[0], &ns_a)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("web recreated on member 0", WAIT, || async {
        let d = downstream(&members[0], "root:a", "web").await?;
        (d["metadata"]["uid"] != before["metadata"]["uid"])
            .then_some(())
            .ok_or("still the old one".to_string())
    })
    .await;
    deployments(&members[1], &ns_a)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    wait_downstream_replicas(&members, "root:a", "web", 3).await;

    // Conflict: an object tmc did not create is left alone and reported.
    let foreign = obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "taken", "namespace": ns_a},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "taken"}},
                 "template": {"metadata": {"labels": {"app": "taken"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
    }));
    deployments(&members[0], &ns_a)
        .create(&pp, &foreign)
        .await
        .unwrap();
    deps_a
        .create(&pp, &deployment("taken", 5, "web-config"))
        .await
        .unwrap();
    let taken = eventually("a Conflict condition on taken", WAIT, || async {
        let o = get(&deps_a, "taken").await?;
        let c = o["status"]["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "tmc.kcp.io/Synced")
                .cloned()
        });
        match c {
            Some(c) if c["reason"] == "Conflict" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        taken["message"].as_str().unwrap().contains("root|east")
            && taken["message"]
                .as_str()
                .unwrap()
                .contains("conflictPolicy"),
        "{taken}"
    );
    assert_eq!(
        downstream(&members[0], "root:a", "taken").await.unwrap()["spec"]["replicas"],
        1,
        "the foreign object was not touched"
    );
    wait_downstream_replicas(&members[1..], "root:a", "taken", 5).await;
    // Adopt: the placement may take the foreign object over.
    wps(&a)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"conflictPolicy": "Adopt"}})),
        )
        .await
        .unwrap();
    wait_downstream_replicas(&members, "root:a", "taken", 5).await;
    eventually("the Conflict condition cleared", WAIT, || async {
        let o = get(&deps_a, "taken").await?;
        let has = o["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "tmc.kcp.io/Synced"));
        (!has).then_some(()).ok_or(format!("{}", o["status"]))
    })
    .await;

    // Failover mid-sync: SIGKILL the leader right after a write; the new
    // leader finishes the work without recreating what was there.
    let uids: Vec<Value> = {
        let mut v = Vec::new();
        for m in &members {
            v.push(downstream(m, "root:a", "web").await.unwrap()["metadata"]["uid"].clone());
        }
        v
    };
    let leader = shard.leader();
    deps_b
        .patch(
            "web",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    shard.kill(leader);
    let alive: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    shard.leader_among(&alive);
    wait_downstream_replicas(&members, "root:b", "web", 2).await;
    wait_status_replicas(&deps_b, "web", 4).await;
    for (i, m) in members.iter().enumerate() {
        let d = downstream(m, "root:a", "web").await.unwrap();
        assert_eq!(
            d["metadata"]["uid"], uids[i],
            "web on member {i} was recreated"
        );
    }

    // Delete in the workspace: gone downstream, then the finalizer and the
    // object; the namespace tmc made goes once empty.
    deps_a
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    for (i, m) in members.iter().enumerate() {
        eventually(&format!("web gone from member {i}"), WAIT, || async {
            gone(&deployments(m, &ns_a), "web").await
        })
        .await;
    }
    eventually("web gone from the workspace", WAIT, || async {
        gone(&deps_a, "web").await
    })
    .await;
    // web-config is still used by `taken`; once that goes too, so does
    // the ConfigMap downstream. b's ConfigMap is untouched.
    deps_a
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    eventually("taken gone from the workspace", WAIT, || async {
        gone(&deps_a, "taken").await
    })
    .await;
    eventually("web-config gone from member 1", WAIT, || async {
        gone(&configmaps(&members[1], &ns_a), "web-config").await
    })
    .await;
    secrets(&a, "default")
        .delete("web-secret", &DeleteParams::default())
        .await
        .unwrap();
    for (i, m) in members.iter().enumerate() {
        // The adopted Deployment went with its workspace object.
        eventually(
            &format!("taken and web-secret gone from member {i}"),
            WAIT,
            || async {
                gone(&deployments(m, &ns_a), "taken").await?;
                gone(&secrets(m, &ns_a), "web-secret").await
            },
        )
        .await;
        let ns: Api<DynamicObject> =
            Api::all_with(m.clone(), &ar("", "v1", "Namespace", "namespaces"));
        eventually(
            &format!("root:a's namespace removed from member {i}"),
            WAIT,
            || async {
                match ns.get_opt(&ns_a).await {
                    Ok(None) => Ok(()),
                    Ok(Some(n)) if n.metadata.deletion_timestamp.is_some() => Ok(()),
                    Ok(Some(_)) => Err("still active".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
    }
    assert_eq!(
        downstream(&members[0], "root:b", "web").await.unwrap()["spec"]["replicas"],
        2
    );
    assert_eq!(
        get(&configmaps(&members[0], &ns_b), "web-config")
            .await
            .unwrap()["data"]["greeting"],
        "hello from b"
    );
    // Clean up b, so the shared clusters hold nothing of this test.
    deps_b
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    cms_b
        .delete("web-config", &DeleteParams::default())
        .await
        .unwrap();
    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("b's copies gone from member {i}"),
            WAIT,
            || async {
                gone(&deployments(m, &ns_b), "web").await?;
                gone(&configmaps(m, &ns_b), "web-config").await
            },
        )
        .await;
    }
}

/// SIGSTOPs (or SIGCONTs) the kube-apiserver of `env`'s cluster 0: a hung
/// cluster, as a dead machine looks from the network.
fn signal_apiserver(env: &TestEnv, sig: libc::c_int) {
    let pid_file = env.cluster(0).dir.join("kube-apiserver.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let pid: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_clusters_workloads_move_and_its_stale_copies_go_when_it_returns() {
    let env = TestEnv::shared();
    let mut doomed = TestEnv::start(1);
    let shard = TestCluster::start_with(tmc::testcluster::FAST_CONTROLLERS, "");
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    // Only the doomed cluster at first, so the Single placement picks it.
    shard.register_cluster(via, "doomed", doomed.kubeconfig(0), "pool=stable");
    let wps: Api<DynamicObject> = Api::all_with(
        root.clone(),
        &ar(
            "tmc.kcp.io",
            "v1alpha1",
            "WorkloadPlacement",
            "workloadplacements",
        ),
    );
    let mut wp = placement();
    wp.data["spec"]["strategy"] = json!({"type": "Single"});
    wp.data["spec"]["locationWorkspace"] = json!("root");
    wp.data["spec"]["tolerations"] = json!([{"key": "tmc.kcp.io/unhealthy", "operator": "Exists",
        "effect": "NoExecute", "tolerationSeconds": 5}]);
    let pp = PostParams::default();
    wps.create(&pp, &wp).await.unwrap();
    let deps = deployments(&root, "default");
    configmaps(&root, "default")
        .create(&pp, &configmap("cfg", "x", json!({})))
        .await
        .unwrap();
    deps.create(&pp, &deployment("mover", 1, "cfg"))
        .await
        .unwrap();
    let dead = doomed.client(0).await;
    wait_downstream_replicas(std::slice::from_ref(&dead), "root", "mover", 1).await;
    shard.register_cluster(via, "healthy", env.kubeconfig(0), "pool=stable");
    let healthy = env.client(0).await;

    signal_apiserver(&doomed, libc::SIGSTOP);
    // After the heartbeat threshold and the 5 s toleration, the placement
    // moves, and the workload with its ConfigMap follows.
    wait_downstream_replicas(std::slice::from_ref(&healthy), "root", "mover", 1).await;
    let ns = downstream_namespace(&ws("root"), "default");
    eventually("cfg on the healthy cluster", WAIT, || async {
        get(&configmaps(&healthy, &ns), "cfg").await
    })
    .await;
    let o = get(&deps, "mover").await.unwrap();
    let listed = o["metadata"]["annotations"]["tmc.kcp.io/clusters"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        listed.contains("root|doomed") && listed.contains("root|healthy"),
        "the dead cluster stays listed until its copy is removed: {listed}"
    );

    signal_apiserver(&doomed, libc::SIGCONT);
    for (what, api) in [
        ("mover", deployments(&dead, &ns)),
        ("cfg", configmaps(&dead, &ns)),
    ] {
        eventually(
            &format!("stale {what} removed from the returned cluster"),
            WAIT,
            || async { gone(&api, what).await },
        )
        .await;
    }
    eventually("only the healthy cluster listed", WAIT, || async {
        let o = get(&deps, "mover").await?;
        let l = o["metadata"]["annotations"]["tmc.kcp.io/clusters"].clone();
        (l == "root|healthy").then_some(()).ok_or(format!("{l}"))
    })
    .await;
    deps.delete("mover", &DeleteParams::default())
        .await
        .unwrap();
    configmaps(&root, "default")
        .delete("cfg", &DeleteParams::default())
        .await
        .unwrap();
    eventually("mover gone from the healthy cluster", WAIT, || async {
        gone(&deployments(&healthy, &ns), "mover").await?;
        gone(&configmaps(&healthy, &ns), "cfg").await
    })
    .await;
    doomed.stop().unwrap();
}

// --- hostile object shapes (issue 13) ---

/// A raw request through `client`; `(code, reason, message)` of the answer
/// (`(201|200, "", "")` on success).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, String, String) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(serde_json::to_vec(body).unwrap())
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(_) => (200, String::new(), String::new()),
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Issue 13, medium: ObjectMeta and the top level of built-in objects are
/// checked as kube-apiserver's decoder checks them (the same status code
/// and reason as a real kube-apiserver for each shape, and the field
/// named); and objects stored before the check (planted through the
/// operator's KV interface) no longer stop sync for everyone: nine
/// ConfigMaps with string annotations (more than the eight object
/// workers) sit beside another tenant's ConfigMap that still syncs, and
/// nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_object_shapes_are_refused_like_kube_and_stored_ones_stop_nothing() {
    let env = TestEnv::shared();
    let member = env.client(0).await;
    let shard = TestCluster::start_with(tmc::testcluster::FAST_CONTROLLERS, "");
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    let pp = PostParams::default();

    // The same hostile bodies to tmc and to a real kube-apiserver.
    let cm = |meta: Value, rest: Value| {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});
        if let (Some(o), Value::Object(r)) = (v.as_object_mut(), rest) {
            o.extend(r);
        }
        v
    };
    let shapes = [
        (
            "metadata.annotations",
            cm(json!({"name": "h1", "annotations": "x"}), json!({})),
        ),
        (
            "metadata.annotations",
            cm(json!({"name": "h2", "annotations": ["x"]}), json!({})),
        ),
        (
            "metadata.labels",
            cm(json!({"name": "h3", "labels": {"a": 1}}), json!({})),
        ),
        (
            "metadata.finalizers",
            cm(json!({"name": "h4", "finalizers": "f"}), json!({})),
        ),
        (
            "metadata.generation",
            cm(json!({"name": "h5", "generation": "1"}), json!({})),
        ),
        (
            "metadata.ownerReferences",
            cm(
                json!({"name": "h6", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": 5}]}),
                json!({}),
            ),
        ),
        ("metadata", cm(json!("x"), json!({}))),
        ("data", cm(json!({"name": "h8"}), json!({"data": {"k": 1}}))),
        ("data", cm(json!({"name": "h9"}), json!({"data": "x"}))),
    ];
    // (The tmc client's server URL ends in /clusters/root.)
    let (ours, theirs) = (
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps",
    );
    for (field, body) in &shapes {
        let t = raw(&root, "POST", ours, "application/json", body).await;
        let k = raw(&member, "POST", theirs, "application/json", body).await;
        assert_eq!(
            (t.0, &t.1),
            (k.0, &k.1),
            "{body}: tmc {t:?}, kube-apiserver {k:?}"
        );
        assert_eq!(t.0, 400, "{body}: {t:?}");
        assert_eq!(t.2, k.2, "{body}: the same message as kube-apiserver's");
        assert!(
            t.2.contains(field),
            "{body}: the field {field} is named: {}",
            t.2
        );
        assert!(
            t.2.starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: "),
            "{}",
            t.2
        );
    }
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "h"}, "spec": "x"});
    let t = raw(
        &root,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        &deploy,
    )
    .await;
    let k = raw(
        &member,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        &deploy,
    )
    .await;
    assert_eq!((t.0, &t.1), (k.0, &k.1), "tmc {t:?}, kube-apiserver {k:?}");
    // A merge patch that makes annotations a string: refused too.
    let good = cm(json!({"name": "shape-ok"}), json!({"data": {"k": "v"}}));
    for (c, path) in [(&root, ours), (&member, theirs)] {
        let _ = raw(
            c,
            "DELETE",
            &format!("{path}/shape-ok"),
            "application/json",
            &json!({}),
        )
        .await;
        assert_eq!(raw(c, "POST", path, "application/json", &good).await.0, 200);
    }
    let patch = json!({"metadata": {"annotations": "x"}});
    let t = raw(
        &root,
        "PATCH",
        &format!("{ours}/shape-ok"),
        "application/merge-patch+json",
        &patch,
    )
    .await;
    let k = raw(
        &member,
        "PATCH",
        &format!("{theirs}/shape-ok"),
        "application/merge-patch+json",
        &patch,
    )
    .await;
    assert_eq!((t.0, &t.1), (k.0, &k.1), "tmc {t:?}, kube-apiserver {k:?}");
    assert!(t.2.contains("metadata.annotations"), "{}", t.2);
    // kube-apiserver quotes the whole patched object before the decoder's
    // message; tmc names the decoder's message only.
    let decoder = t.2.rsplit("the patched object: ").next().unwrap();
    assert!(k.2.ends_with(decoder), "tmc {t:?}, kube-apiserver {k:?}");

    // Stored hostile objects do not stop sync.
    shard.register_cluster(via, "east", env.kubeconfig(0), "pool=stable");
    for w in ["t1", "t2"] {
        create_workspace(&root, w).await;
    }
    let wp_ar = ar(
        "tmc.kcp.io",
        "v1alpha1",
        "WorkloadPlacement",
        "workloadplacements",
    );
    let mut single = placement();
    single.data["spec"]["strategy"] = json!({"type": "Single"});
    let (t1, t2) = (
        shard.client(via, "root:t1").await,
        shard.client(via, "root:t2").await,
    );
    for c in [&t1, &t2] {
        let wps: Api<DynamicObject> = Api::all_with(c.clone(), &wp_ar);
        wps.create(&pp, &single).await.unwrap();
        eventually("the placement is bound", WAIT, || async {
            let o = get(&wps, "web").await?;
            (o["status"]["phase"] == "Bound")
                .then_some(())
                .ok_or(format!("{}", o["status"]))
        })
        .await;
    }
    for (i, anns) in [
        json!("x"),
        json!(5),
        json!(["a"]),
        json!(true),
        json!("y"),
        json!(6),
        json!([]),
        json!(false),
        json!("z"),
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("bad-{i}"), "namespace": "default", "uid": format!("u-bad-{i}"),
                         "labels": {"app": "web"}, "annotations": anns},
            "data": {"k": "v"}});
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tmc"))
            .args([
                "kv",
                "--endpoint",
                &format!("127.0.0.1:{}", shard.kv_port(1)),
                "--peer-tls-dir",
            ])
            .arg(shard.tls_dir())
            .args([
                "put",
                &format!("root:t1/default/bad-{i}"),
                &body.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmc kv put: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    configmaps(&t1, "default")
        .create(&pp, &configmap("fine-1", "t1", json!({"app": "web"})))
        .await
        .unwrap();
    configmaps(&t2, "default")
        .create(&pp, &configmap("fine-2", "t2", json!({"app": "web"})))
        .await
        .unwrap();
    for (w, name) in [("root:t1", "fine-1"), ("root:t2", "fine-2")] {
        let ns = downstream_namespace(&ws(w), "default");
        eventually(&format!("{w} {name} downstream"), WAIT, || async {
            get(&configmaps(&member, &ns), name).await
        })
        .await;
    }
    // The hostile ones were tried (errors, retried with backoff) and
    // nothing panicked.
    let leader = shard.leader();
    eventually(
        "the stored hostile objects were reconciled as errors",
        WAIT,
        || async {
            let m = shard.metrics(leader).ok_or("no metrics")?;
            let errors: f64 = m
                .lines()
                .find(|l| {
                    l.starts_with("tmc_controller_errors_total{controller=\"sync-configmaps\"}")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0);
            (errors >= 9.0)
                .then_some(m)
                .ok_or(format!("{errors} errors"))
        },
    )
    .await;
    let m = shard.metrics(leader).unwrap();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("tmc_controller_panics_total{") && !l.ends_with(" 0")),
        "{m}"
    );
    // The member cluster's sync work is counted per cluster.
    assert!(
        m.lines()
            .any(|l| l.starts_with("tmc_sync_items_total{cluster=")
                && l.contains("result=\"ok\"")
                && !l.ends_with(" 0")),
        "no synced items counted per member cluster: {m}"
    );
    let bad = get(
        &configmaps(&member, &downstream_namespace(&ws("root:t1"), "default")),
        "bad-0",
    )
    .await;
    assert!(bad.is_err(), "a hostile object is not sent down: {bad:?}");
}

/// Runs `tmc args...`, which must succeed.
fn tmc_ok(args: &[&str]) {
    let out = std::process::Command::new(tmc::testcluster::tmc_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tmc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The resourceVersion and generation of `workspace`'s Deployment `name`
/// on each member, once it has stopped changing for 3 s.
async fn settled_downstream(members: &[kube::Client], workspace: &str, name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let mut last = Value::Null;
        let mut since = std::time::Instant::now();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let d = downstream(m, workspace, name).await.unwrap_or_default();
            let now = json!([
                d["metadata"]["resourceVersion"],
                d["metadata"]["generation"]
            ]);
            if now != last {
                last = now;
                since = std::time::Instant::now();
            } else if since.elapsed() > Duration::from_secs(3) && !last[0].is_null() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{workspace} {name} on member {i} never settled: {last}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        out.push(last);
    }
    out
}

/// In the workspace of `t`: the placement `web` (both members), the
/// ConfigMap `web-config` and the Deployment `web` (one replica) using it.
async fn place_web(t: &kube::Client) {
    let pp = PostParams::default();
    Api::<DynamicObject>::all_with(
        t.clone(),
        &ar(
            "tmc.kcp.io",
            "v1alpha1",
            "WorkloadPlacement",
            "workloadplacements",
        ),
    )
    .create(&pp, &placement())
    .await
    .unwrap();
    configmaps(t, "default")
        .create(&pp, &configmap("web-config", "v1", json!({})))
        .await
        .unwrap();
    deployments(t, "default")
        .create(&pp, &deployment("web", 1, "web-config"))
        .await
        .unwrap();
}

/// A shard restored from a backup picks up from its stored placement and
/// sync records: what is already in place downstream is not applied again
/// (the members' resourceVersions stay), and new workloads sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_shard_does_not_reapply_what_is_already_downstream() {
    let env = TestEnv::shared();
    let members = env.clients().await;
    let (_keys, enc) = new_encryption_config();
    let flags = shard_flags(&enc);
    let shard = TestCluster::start_with(&flags, "");
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    shard.register_cluster(via, "east", env.kubeconfig(0), "pool=stable");
    shard.register_cluster(via, "west", env.kubeconfig(1), "pool=stable");
    create_workspace(&root, "restored").await;
    let t = shard.client(via, "root:restored").await;
    let pp = PostParams::default();
    place_web(&t).await;
    wait_downstream_replicas(&members, "root:restored", "web", 1).await;
    let before = settled_downstream(&members, "root:restored", "web").await;

    // Back up, stop the shard, restore into three new replicas.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tmcbackup");
    let kc = shard.kubeconfig(1, "root");
    tmc_ok(&[
        "backup",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    drop(shard);
    let mut restored = TestCluster::builder().args(&flags).build().unwrap();
    for id in restored.ids() {
        tmc_ok(&[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.data_dir(id).to_str().unwrap(),
            "--member",
            &id.to_string(),
            "--initial-cluster",
            "1,2,3",
            "--cluster-id",
            "000000000000abcd",
            "--encryption-config",
            enc.to_str().unwrap(),
        ]);
    }
    restored.start_founders().unwrap();
    let (via, _) = restored.followers();
    let t = restored.client(via, "root:restored").await;
    // The restored controllers sync: a new Deployment reaches both members
    // (the controllers went through every stored record at leader start
    // before it).
    deployments(&t, "default")
        .create(&pp, &deployment("web2", 1, "web-config"))
        .await
        .unwrap();
    wait_downstream_replicas(&members, "root:restored", "web2", 1).await;
    let after = settled_downstream(&members, "root:restored", "web").await;
    assert_eq!(
        before, after,
        "web was applied again downstream (resourceVersion, generation per member)"
    );
    // Clean the members up for the other tests: delete the workloads.
    for name in ["web", "web2"] {
        deployments(&t, "default")
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for (i, m) in members.iter().enumerate() {
        for name in ["web", "web2"] {
            eventually(&format!("{name} gone from member {i}"), WAIT, || async {
                match downstream(m, "root:restored", name).await {
                    Err(e) if e.contains("not found") => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Err(format!("{name} still there")),
                }
            })
            .await;
        }
    }
}

/// A kube client of workspace `ws` through `tmc dev`'s API at `url`, with
/// its admin kubeconfig `kc`.
async fn dev_client(kc: &std::path::Path, url: &str, ws: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kc).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.cluster_url = format!("{url}/clusters/{ws}").parse().unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A workspace moved to another shard (`tmc workspace move`) takes its
/// placed Deployment along: the copies on both member clusters stay (the
/// same downstream objects, never deleted), the new shard takes them over
/// (its owner label), syncs a change made after the move and folds the
/// status back, and a delete there removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_workspaces_copies_are_taken_over_by_its_new_shard() {
    let env = TestEnv::shared();
    let members = env.clients().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (_dev, url) = tmc::testcluster::dev::Dev::start(
        &data,
        &[
            "--shards",
            "2",
            "--allow-private-member-endpoints",
            "--probe-interval",
            "1s",
            "--catalog-ttl",
            "1s",
        ],
    );
    let kc = data.join("admin.kubeconfig");
    for (i, name) in ["east", "west"].iter().enumerate() {
        tmc_ok(&[
            "cluster",
            "register",
            name,
            "--workspace",
            "root",
            "--kubeconfig",
            env.kubeconfig(i).to_str().unwrap(),
            "--admin-kubeconfig",
            kc.to_str().unwrap(),
            "--label",
            "pool=stable",
        ]);
    }
    let root = dev_client(&kc, &url, "root").await;
    let created = create_workspace(&root, "moving").await;
    let from = created.data["spec"]["shard"].as_str().unwrap().to_string();
    let to = if from == "root" { "shard2" } else { "root" };
    let t = dev_client(&kc, &url, "root:moving").await;
    place_web(&t).await;
    wait_downstream_replicas(&members, "root:moving", "web", 1).await;
    let mut before = Vec::new();
    for m in &members {
        before.push(downstream(m, "root:moving", "web").await.unwrap());
    }

    tmc_ok(&[
        "workspace",
        "move",
        "root:moving",
        "--to",
        to,
        "--kubeconfig",
        kc.to_str().unwrap(),
    ]);
    let moved = Api::<DynamicObject>::all_with(
        root.clone(),
        &ar("tenancy.kcp.io", "v1alpha1", "Workspace", "workspaces"),
    )
    .get("moving")
    .await
    .unwrap();
    assert_eq!(moved.data["spec"]["shard"], to);

    // A change after the move reaches both members from the new shard,
    // onto the same downstream objects, now labelled as its.
    let d = deployments(&t, "default");
    d.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    wait_downstream_replicas(&members, "root:moving", "web", 2).await;
    for (i, m) in members.iter().enumerate() {
        let now = downstream(m, "root:moving", "web").await.unwrap();
        assert_eq!(
            now["metadata"]["uid"], before[i]["metadata"]["uid"],
            "member {i}: the copy was replaced"
        );
        let (old, new) = (
            &before[i]["metadata"]["labels"]["tmc.kcp.io/owner"],
            &now["metadata"]["labels"]["tmc.kcp.io/owner"],
        );
        assert!(
            old.is_string() && new.is_string() && old != new,
            "owner {old} -> {new}"
        );
    }
    // Two replicas on each of the two members, folded back.
    wait_status_replicas(&d, "web", 4).await;
    // The new shard owns the copies: deleting the Deployment removes them.
    d.delete("web", &DeleteParams::default()).await.unwrap();
    for (i, m) in members.iter().enumerate() {
        let api = deployments(m, &downstream_namespace(&ws("root:moving"), "default"));
        eventually(&format!("web gone from member {i}"), WAIT, || {
            gone(&api, "web")
        })
        .await;
    }
}

/// The workload kinds an application ships beside its Deployment reach
/// the placed clusters (with the namespace mapped), PersistentVolumeClaims
/// and HorizontalPodAutoscalers bring their status back, and deleting one
/// in the workspace deletes its copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_syncable_kind_reaches_the_clusters_and_comes_back() {
    let env = TestEnv::shared();
    let members = env.clients().await;
    let (_keys, enc) = new_encryption_config();
    let shard = TestCluster::builder()
        .nodes(1)
        .args(&shard_flags(&enc))
        .start()
        .expect("a one-node shard");
    let root = shard.client(1, "root").await;
    shard.register_cluster(1, "east", env.kubeconfig(0), "pool=stable");
    shard.register_cluster(1, "west", env.kubeconfig(1), "pool=stable");
    create_workspace(&root, "kinds").await;
    let t = shard.client(1, "root:kinds").await;
    place_web(&t).await;
    let labels = json!({"app": "web"});
    let pod_template = json!({"metadata": {"labels": {"app": "batch"}}, "spec": {
        "restartPolicy": "OnFailure",
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}});
    let kinds: Vec<(ApiResource, Value)> = vec![
        (
            ar("batch", "v1", "CronJob", "cronjobs"),
            json!({"spec": {"schedule": "0 3 * * *", "suspend": true,
                "jobTemplate": {"spec": {"template": pod_template}}}}),
        ),
        (
            ar("apps", "v1", "ReplicaSet", "replicasets"),
            json!({"spec": {"replicas": 0, "selector": {"matchLabels": {"app": "rs"}},
                "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}),
        ),
        (
            ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
            json!({"spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            ar("networking.k8s.io", "v1", "Ingress", "ingresses"),
            json!({"spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        ),
        (
            ar(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
            json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"]}}),
        ),
        (
            ar(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        ),
        (
            ar(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            json!({"spec": {"minReplicas": 1, "maxReplicas": 3,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}),
        ),
    ];
    for (r, body) in &kinds {
        let mut o = body.clone();
        o["apiVersion"] = json!(r.api_version);
        o["kind"] = json!(r.kind);
        o["metadata"] = json!({"name": "web", "labels": labels});
        Api::<DynamicObject>::namespaced_with(t.clone(), "default", r)
            .create(&PostParams::default(), &obj(o))
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", r.kind));
    }
    let down_ns = downstream_namespace(&ws("root:kinds"), "default");
    for (i, m) in members.iter().enumerate() {
        for (r, body) in &kinds {
            let api = Api::<DynamicObject>::namespaced_with(m.clone(), &down_ns, r);
            eventually(&format!("{} web on member {i}", r.kind), WAIT, || async {
                let d = get(&api, "web").await?;
                if d["spec"] == body["spec"]
                    || tmc::controllers::sync::mapping::contains(&d["spec"], &body["spec"])
                {
                    Ok(())
                } else {
                    Err(format!("spec {}", d["spec"]))
                }
            })
            .await;
        }
    }
    // Status comes back: the claim waits for a volume on both members
    // (they have no storage class), the autoscaler names its target.
    let pvc = Api::<DynamicObject>::namespaced_with(t.clone(), "default", &kinds[2].0);
    eventually("the claim's status from the members", WAIT, || async {
        let o = get(&pvc, "web").await?;
        match o["status"]["phase"].as_str() {
            Some("Pending") => Ok(()),
            _ => Err(format!("status {}", o["status"])),
        }
    })
    .await;
    let hpa = Api::<DynamicObject>::namespaced_with(t.clone(), "default", &kinds[6].0);
    eventually("the autoscaler's status from the members", WAIT, || async {
        let o = get(&hpa, "web").await?;
        let conditions = o["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "AbleToScale") {
            Ok(())
        } else {
            Err(format!("status {}", o["status"]))
        }
    })
    .await;
    // Deleting the Ingress in the workspace deletes its copies.
    Api::<DynamicObject>::namespaced_with(t.clone(), "default", &kinds[3].0)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    for (i, m) in members.iter().enumerate() {
        let api = Api::<DynamicObject>::namespaced_with(m.clone(), &down_ns, &kinds[3].0);
        eventually(
            &format!("the Ingress gone from member {i}"),
            WAIT,
            || async { gone(&api, "web").await },
        )
        .await;
    }
}
