//! The controllers against a three-node tmc shard (real `tmc serve`
//! processes) and real member kube-apiservers (scripts/testenv.sh):
//! registration with `tmc cluster register`, probes and heartbeats,
//! credentials, placements across a leader failover and a cluster's death.
//!
//! Needs `scripts/testenv.sh build`; see docs/testing.md. Waits are polls
//! with generous deadlines, never timing assertions.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::time::Duration;
use tmc::testcluster::members::{eventually, TestEnv};
use tmc::testcluster::TestCluster;

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
    let mut shard = TestCluster::start_with(tmc::testcluster::FAST_CONTROLLERS, "");
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
    let bad = shard.dir().join("bad.kubeconfig");
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
    shard.spawn(leader).unwrap();

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

// --- security review (issue 13) ---

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn rbac(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

/// A TCP listener that records every byte sent to it and every
/// connection, answering nothing: where a tenant would point the shard to
/// see what it sends.
struct Recorder {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<(usize, Vec<u8>)>>,
}

async fn recorder() -> Recorder {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new((0usize, Vec::new())));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            s.lock().unwrap().0 += 1;
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    s.lock().unwrap().1.extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    Recorder { url, seen }
}

/// A kubeconfig for `server` whose user is `user` (YAML lines under
/// `user:`, indented four spaces).
fn kubeconfig_with_user(server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n    \
         cluster: c\n    user: u\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
         users:\n- name: u\n  user:\n{user}"
    )
}

/// The Secret `name` in root's tmc-system holding `kubeconfig`, and a
/// registration `name` pointing at `endpoint` with it.
async fn register_with(root: &kube::Client, name: &str, endpoint: &str, kubeconfig: &str) {
    use base64::Engine;
    let pp = PostParams::default();
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(root.clone(), "tmc-system", &core("Secret", "secrets"));
    secrets
        .create(
            &pp,
            &dynamic(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": "tmc-system"},
                "data": {"kubeconfig": base64::engine::general_purpose::STANDARD.encode(kubeconfig)}})),
        )
        .await
        .unwrap();
    registrations(root)
        .create(
            &pp,
            &dynamic(
                json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
                "metadata": {"name": name},
                "spec": {"apiEndpoint": endpoint,
                         "credentialsSecretRef": {"namespace": "tmc-system", "name": name}}}),
            ),
        )
        .await
        .unwrap();
}

/// Issue 13, critical: a workspace admin's kubeconfig can neither run a
/// program on the shard leader (`exec`) nor make it read and send its
/// files (`tokenFile`, `client-key`, ...): such registrations get
/// `CredentialsValid` False, `UnsupportedCredential`, nothing runs and no
/// request leaves the shard. The shard allows loopback endpoints (the
/// recorder listens on 127.0.0.1), so only the credential check stands in
/// the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_kubeconfigs_run_no_program_and_send_no_file() {
    let shard = TestCluster::start_with(tmc::testcluster::FAST_CONTROLLERS, "");
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    let rec = recorder().await;
    let marker = shard.dir().join("exec-ran");
    // A secret of the leader's host, on one line (a header could carry it).
    let secret_file = shard.dir().join("host-secret");
    std::fs::write(&secret_file, "host-secret-0123456789").unwrap();
    let ca_key = shard.tls_dir().join("ca.key");
    let namespaces: Api<DynamicObject> =
        Api::all_with(root.clone(), &core("Namespace", "namespaces"));
    namespaces
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmc-system"}})),
        )
        .await
        .unwrap();
    let exec = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      \
         args: [\"-c\", \"touch {}; echo '{{\\\"apiVersion\\\":\\\"client.authentication.k8s.io/v1\\\",\
         \\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{{\\\"token\\\":\\\"t\\\"}}}}'\"]\n      \
         interactiveMode: Never\n",
        marker.display()
    );
    let cases = [
        ("exec", exec),
        (
            "token-file-ca-key",
            format!("    tokenFile: {}\n", ca_key.display()),
        ),
        (
            "token-file-secret",
            format!("    tokenFile: {}\n", secret_file.display()),
        ),
        (
            "client-key-file",
            format!(
                "    client-certificate: {}\n    client-key: {}\n",
                shard.tls_dir().join("ca.crt").display(),
                ca_key.display()
            ),
        ),
    ];
    for (name, user) in &cases {
        let kc = kubeconfig_with_user(&rec.url, user);
        register_with(&root, name, &rec.url, &kc).await;
    }
    let regs = registrations(&root);
    // Nothing may run or leave at any time while the conditions settle.
    let harmless = || {
        assert!(
            !marker.exists(),
            "the exec plugin ran on the shard: {}",
            marker.display()
        );
        let (connections, bytes) = rec.seen.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("host-secret-0123456789") && !text.contains("PRIVATE KEY"),
            "a file of the shard's host was sent out: {text}"
        );
        assert_eq!(
            connections, 0,
            "no request leaves the shard with such credentials: {text}"
        );
    };
    for (name, _) in &cases {
        let o = eventually(&format!("{name}: UnsupportedCredential"), WAIT, || async {
            harmless();
            let o = get(&regs, name).await?;
            match condition(&o, "CredentialsValid") {
                Some(c) if c["status"] == "False" && c["reason"] == "UnsupportedCredential" => {
                    Ok(o)
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let msg = condition(&o, "CredentialsValid").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("inline credentials"), "{name}: {msg}");
        let ready = condition(&o, "Ready").unwrap();
        assert_eq!(ready["status"], "False", "{name}: {o}");
    }
    harmless();
}

/// Issue 13, high: a placement uses another workspace's clusters only if
/// its author may `use` ClusterRegistrations there. The API refuses the
/// write (a location that does not exist gets the same answer), the
/// server records the author (a client cannot forge it), and the
/// controller drops the decision when the grant is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_use_another_workspaces_clusters_only_with_the_use_verb() {
    const ALICE: &str = "alice-token-controllers-0123";
    let members = TestEnv::shared();
    let shard = TestCluster::start_with(
        tmc::testcluster::FAST_CONTROLLERS,
        &format!("{ALICE},alice,u-alice\n"),
    );
    let (via, _) = shard.followers();
    let root = shard.client(via, "root").await;
    let pp = PostParams::default();
    let workspaces: Api<DynamicObject> = Api::all_with(
        root.clone(),
        &ApiResource {
            group: "tenancy.kcp.io".into(),
            version: "v1alpha1".into(),
            api_version: "tenancy.kcp.io/v1alpha1".into(),
            kind: "Workspace".into(),
            plural: "workspaces".into(),
        },
    );
    for w in ["loc", "a"] {
        workspaces
            .create(
                &pp,
                &dynamic(
                    json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
                    "metadata": {"name": w}, "spec": {}}),
                ),
            )
            .await
            .unwrap();
    }
    let admin_loc = shard.client(via, "root:loc").await;
    let admin_a = shard.client(via, "root:a").await;
    // alice administers root:a.
    Api::<DynamicObject>::all_with(admin_a.clone(), &rbac("ClusterRoleBinding", "clusterrolebindings"))
        .create(
            &pp,
            &dynamic(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "alice-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})),
        )
        .await
        .unwrap();
    // A cluster in root:loc.
    Api::<DynamicObject>::all_with(admin_loc.clone(), &core("Namespace", "namespaces"))
        .create(
            &pp,
            &dynamic(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmc-system"}})),
        )
        .await
        .unwrap();
    let kc = std::fs::read_to_string(members.kubeconfig(0)).unwrap();
    let endpoint = kube::config::Kubeconfig::from_yaml(&kc).unwrap().clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    register_with(&admin_loc, "east", &endpoint, &kc).await;
    wait_condition(&registrations(&admin_loc), "east", "Ready", "True", None).await;

    let alice = {
        let kc =
            kube::config::Kubeconfig::read_from(shard.kubeconfig_with_token(via, "root:a", ALICE))
                .unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    };
    let wps = placements(&alice);
    let at = |name: &str, location: &str| {
        let mut p = placement(name, json!({}), json!({"type": "Single"}));
        p.data["spec"]["locationWorkspace"] = json!(location);
        p
    };
    let refused = |r: Result<DynamicObject, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Not granted, and absent: the same answer.
    let (code, reason, forbidden) = refused(wps.create(&pp, &at("web", "root:loc")).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{forbidden}");
    let (code, reason, absent) = refused(wps.create(&pp, &at("web", "root:nope")).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{absent}");
    assert_eq!(
        forbidden.replace("root:loc", "W"),
        absent.replace("root:nope", "W")
    );
    assert!(
        forbidden.contains("cannot use resource \"clusterregistrations\""),
        "{forbidden}"
    );

    // Granted: `use` on clusterregistrations in root:loc.
    let crs =
        Api::<DynamicObject>::all_with(admin_loc.clone(), &rbac("ClusterRole", "clusterroles"));
    crs.create(
        &pp,
        &dynamic(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "use-clusters"},
            "rules": [{"verbs": ["use"], "apiGroups": ["tmc.kcp.io"], "resources": ["clusterregistrations"]}]})),
    )
    .await
    .unwrap();
    let crbs = Api::<DynamicObject>::all_with(
        admin_loc.clone(),
        &rbac("ClusterRoleBinding", "clusterrolebindings"),
    );
    crbs.create(
        &pp,
        &dynamic(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-uses"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-clusters"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})),
    )
    .await
    .unwrap();
    // A forged author is not kept: the server records alice.
    let mut forged = at("web", "root:loc");
    forged.metadata.annotations = Some(
        [(
            "tmc.kcp.io/author".to_string(),
            json!({"username": "admin", "groups": ["system:masters"]}).to_string(),
        )]
        .into(),
    );
    wps.create(&pp, &forged).await.unwrap();
    let o = wait_selected(&wps, "web", &["east"]).await;
    let author: Value = serde_json::from_str(
        o["metadata"]["annotations"]["tmc.kcp.io/author"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(author["username"], "alice", "{author}");
    assert!(!author.to_string().contains("system:masters"), "{author}");
    // A metadata-only patch keeps the author and cannot set it.
    let patch = json!({"metadata": {"labels": {"x": "y"}, "annotations": {"tmc.kcp.io/author":
        json!({"username": "admin", "groups": ["system:masters"]}).to_string()}}});
    let o = wps
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let author = o.metadata.annotations.unwrap_or_default()["tmc.kcp.io/author"].clone();
    assert!(
        author.contains("\"alice\"") && !author.contains("masters"),
        "{author}"
    );

    // Revoked: the controller sees the location's RBAC change and drops
    // the decision; its status says the same as for a missing location.
    crbs.delete("alice-uses", &DeleteParams::default())
        .await
        .unwrap();
    let o = wait_condition(&wps, "web", "Scheduled", "False", Some("LocationNotFound")).await;
    assert!(selected(&o).is_empty(), "{o}");
    let msg = condition(&o, "Scheduled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("does not exist, or the author"), "{msg}");
}
