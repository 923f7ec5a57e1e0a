//! Tests of the member-cluster test environment (scripts/testenv.sh and
//! `tmc::testcluster::members`) against real kube-apiservers.
//!
//! Needs `scripts/testenv.sh build` to have run; see docs/testing.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tmc::testcluster::members::{
    eventually, kubectl, kubectl_dry_run_server, pid_gone, pid_running, port_listening, TestEnv,
};

const WAIT: Duration = Duration::from_secs(90);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[test]
fn two_member_clusters_serve_namespaces_to_kubectl() {
    let env = TestEnv::shared();
    assert_eq!(env.clusters().len(), 2);
    let mut uids = Vec::new();
    for c in env.clusters() {
        let out = kubectl(&c.kubeconfig, &["get", "namespaces", "-o", "name"])
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let names: Vec<&str> = out.lines().map(str::trim).collect();
        for ns in ["namespace/default", "namespace/kube-system"] {
            assert!(names.contains(&ns), "{}: {ns} not in {names:?}", c.name);
        }
        let uid = kubectl(
            &c.kubeconfig,
            &[
                "get",
                "namespace",
                "kube-system",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        )
        .unwrap();
        assert_eq!(uid.trim().len(), 36, "{}: odd uid {uid:?}", c.name);
        uids.push(uid.trim().to_string());
    }
    // Two independent clusters (own etcd each), not two views of one.
    assert_ne!(uids[0], uids[1], "both kubeconfigs reach the same cluster");
    assert_ne!(env.cluster(0).apiserver_port, env.cluster(1).apiserver_port);
}

#[tokio::test]
async fn deployment_lifecycle_with_kube_rs_and_controller_manager() {
    let env = TestEnv::shared();
    let client = env.client(0).await;
    let ns = unique("testenv-deploy");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create namespace");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }))
    .unwrap();
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let uid = created.uid().expect("deployment uid");
    assert_eq!(created.metadata.generation, Some(1));

    // kube-controller-manager: the deployment controller creates a ReplicaSet
    // owned by the Deployment and reports status. (No nodes, so pods stay Pending.)
    let rs = eventually("a ReplicaSet owned by the deployment", WAIT, || async {
        let list = replicasets
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|rs| {
                rs.owner_references().iter().any(|o| {
                    o.kind == "Deployment"
                        && o.name == "web"
                        && o.uid == uid
                        && o.controller == Some(true)
                })
            })
            .ok_or_else(|| "no owned ReplicaSet yet".to_string())
    })
    .await;
    assert_eq!(rs.spec.as_ref().and_then(|s| s.replicas), Some(1));

    eventually("deployment status from the controller manager", WAIT, || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let st = d.status.clone().unwrap_or_default();
        let progressing = st
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Progressing")
            .map(|c| (c.status, c.reason));
        if st.observed_generation == Some(1)
            && st.replicas == Some(1)
            && st.updated_replicas == Some(1)
            && matches!(&progressing, Some((s, _)) if s == "True")
        {
            Ok(())
        } else {
            Err(format!(
                "observedGeneration={:?} replicas={:?} updatedReplicas={:?} Progressing={progressing:?}",
                st.observed_generation, st.replicas, st.updated_replicas
            ))
        }
    })
    .await;

    // Server-side apply from our own field manager: scale to 2, add a label.
    let manager = "tmc-testenv-test";
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"tmc.dev/applied": "yes"}},
        "spec": {"replicas": 2}
    });
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("server-side apply");
    assert_eq!(applied.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        applied.labels().get("tmc.dev/applied").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        applied.labels().get("app").map(String::as_str),
        Some("web"),
        "apply dropped a field it does not own"
    );
    assert_eq!(applied.metadata.generation, Some(2));
    let managers: BTreeMap<String, String> = applied
        .managed_fields()
        .iter()
        .filter_map(|m| Some((m.manager.clone()?, m.operation.clone()?)))
        .collect();
    assert_eq!(
        managers.get(manager).map(String::as_str),
        Some("Apply"),
        "managedFields: {managers:?}"
    );

    eventually(
        "the controller manager to act on the applied change",
        WAIT,
        || async {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let rs = replicasets
                .get(&rs.name_any())
                .await
                .map_err(|e| e.to_string())?;
            let observed = d.status.and_then(|s| s.observed_generation);
            let rs_replicas = rs.spec.and_then(|s| s.replicas);
            if observed == Some(2) && rs_replicas == Some(2) {
                Ok(())
            } else {
                Err(format!(
                    "observedGeneration={observed:?} replicaset replicas={rs_replicas:?}"
                ))
            }
        },
    )
    .await;

    // Delete; the garbage collector (controller manager) removes the ReplicaSet.
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete deployment");
    eventually("the deployment to be gone", WAIT, || async {
        match deployments
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(d) => Err(format!(
                "still there, deletionTimestamp={:?}",
                d.metadata.deletion_timestamp
            )),
        }
    })
    .await;
    eventually(
        "the garbage collector to delete the ReplicaSet",
        WAIT,
        || async {
            match replicasets
                .get_opt(&rs.name_any())
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(_) => Err("ReplicaSet still there".to_string()),
            }
        },
    )
    .await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[test]
fn kubectl_dry_run_server_validates_without_storing() {
    let env = TestEnv::shared();
    let kubeconfig = env.kubeconfig(1);
    let dir = tempfile::tempdir().unwrap();
    let name = unique("dry-run");

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  k: v\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
             selector:\n    matchLabels: {{app: x}}\n  template:\n    metadata:\n      labels: {{app: x}}\n    \
             spec:\n      containers:\n      - name: x\n        image: registry.invalid/x:1\n"
        ),
    )
    .unwrap();
    let out = kubectl_dry_run_server(kubeconfig, &good).expect("valid manifest rejected");
    assert!(
        out.contains(&format!("configmap/{name} created (server dry run)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("deployment.apps/{name} created (server dry run)")),
        "{out}"
    );
    // Nothing was stored.
    let err = kubectl(kubeconfig, &["get", "configmap", &name, "-n", "default"]).unwrap_err();
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // The server (not kubectl) rejects an invalid object: selector does not
    // match the template labels.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
             selector:\n    matchLabels: {{app: x}}\n  template:\n    metadata:\n      labels: {{app: other}}\n    \
             spec:\n      containers:\n      - name: x\n        image: registry.invalid/x:1\n"
        ),
    )
    .unwrap();
    let err = kubectl_dry_run_server(kubeconfig, &bad).expect_err("invalid deployment accepted");
    assert!(err.contains("selector") && err.contains("Invalid"), "{err}");
}

#[test]
fn stop_leaves_no_process_port_or_state_dir() {
    let mut env = TestEnv::start(1);
    let dir = env.dir().to_path_buf();
    let pids = env.pids().to_vec();
    let c = env.cluster(0).clone();
    let ports = [c.apiserver_port, c.etcd_client_port, c.etcd_peer_port];
    // etcd, kube-apiserver, kube-controller-manager and the watchdog.
    assert_eq!(pids.len(), 4, "recorded pids: {pids:?}");
    for &pid in &pids {
        assert!(pid_running(pid), "pid {pid} not running before stop");
    }
    for port in ports {
        assert!(
            port_listening(port),
            "port {port} not listening before stop"
        );
    }
    assert!(kubectl(&c.kubeconfig, &["get", "--raw", "/readyz"])
        .unwrap()
        .contains("ok"));

    env.stop().expect("stop");
    for &pid in &pids {
        assert!(!pid_running(pid), "pid {pid} still running after stop");
        // `stop` also waits until the exited processes are reaped.
        assert!(
            pid_gone(pid),
            "pid {pid} still in the process table after stop"
        );
    }
    for port in ports {
        assert!(
            !port_listening(port),
            "port {port} still listening after stop"
        );
    }
    assert!(!dir.exists(), "state dir {} left behind", dir.display());
    // No process anywhere still refers to the state dir (e.g. an unrecorded child).
    let strays = processes_mentioning(&dir);
    assert!(strays.is_empty(), "stray processes: {strays:?}");
    // Stopping twice is fine.
    env.stop().expect("second stop");
}

#[test]
fn missing_binaries_fail_with_build_instructions() {
    let cache = tempfile::tempdir().unwrap();
    let err = TestEnv::try_start_with(1, &[("TMC_CACHE_DIR", cache.path().to_str().unwrap())])
        .expect_err("started without binaries");
    assert!(err.contains("not built"), "{err}");
    assert!(err.contains("scripts/testenv.sh build"), "{err}");
    // The script itself refuses too, with a distinct exit code.
    let out = std::process::Command::new("bash")
        .arg(tmc::testcluster::members::script())
        .args(["start", "1"])
        .env("TMC_CACHE_DIR", cache.path())
        .env("TESTENV_DIR", cache.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(!cache.path().join("state").exists());
}

fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && pid_running(pid) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}
