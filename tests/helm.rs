//! Helm v4 (built from the Go module proxy by `scripts/helm.sh`), a client
//! nobody here wrote, against a tmc workspace: `helm install` of
//! tests/charts/web (a Deployment, a Service, a ConfigMap and a
//! PodDisruptionBudget), `helm list`, `helm upgrade`, `helm rollback`,
//! `helm history` and `helm uninstall`, which leaves nothing behind. Helm
//! keeps its releases as Secrets, so the shard runs with Secrets encrypted
//! at rest.
//!
//! Left out until CustomResourceDefinitions are served: a chart that
//! ships a CRD and a custom resource.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tmc::testcluster::members::{kubectl_binary, kubectl_with};
use tmc::testcluster::TestCluster;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The helm binary, built (or found built) by scripts/helm.sh.
fn helm_binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/helm.sh"))
        .output()
        .expect("bash runs scripts/helm.sh");
    assert!(
        out.status.success(),
        "scripts/helm.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        dir.lines()
            .last()
            .expect("scripts/helm.sh prints its bin dir")
            .trim(),
    )
    .join("helm")
}

struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", "default"])
            // Helm's own caches and config, not the user's.
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("helm runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "helm {args:?}: {err}{out}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("helm prints JSON")
    }
}

fn kubectl(kc: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl_with(&kubectl_binary(), kc, args, None);
    assert!(ok, "kubectl {args:?}: {err}{out}");
    out
}

fn kubectl_json(kc: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kc, &a)).expect("kubectl prints JSON")
}

/// (replicas of the Deployment, greeting of the ConfigMap).
fn deployed(kc: &Path) -> (Value, Value) {
    (
        kubectl_json(kc, &["get", "deployment", "web"])["spec"]["replicas"].clone(),
        kubectl_json(kc, &["get", "configmap", "web-config"])["data"]["greeting"].clone(),
    )
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart_in_a_workspace() {
    let bin = helm_binary();
    let keys = tempfile::tempdir().unwrap();
    let enc = keys.path().join("encryption.yaml");
    std::fs::write(&enc, tmc::encryption::Keys::generate_config()).unwrap();
    let shard = TestCluster::builder()
        .nodes(1)
        .args(&[
            "--no-controllers",
            "--encryption-config",
            enc.to_str().unwrap(),
        ])
        .start()
        .expect("a one-node shard");
    let (ok, out, err) = kubectl_with(
        &kubectl_binary(),
        &shard.kubeconfig(1, "root"),
        &["apply", "-f", "-"],
        Some("apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: apps\n"),
    );
    assert!(ok, "{err}{out}");
    let kc = shard.kubeconfig(1, "root:apps");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !kubectl_with(&kubectl_binary(), &kc, &["get", "ns", "default"], None).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "workspace never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let helm = Helm {
        bin,
        kubeconfig: kc.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let chart = repo().join("tests/charts/web");
    let chart = chart.to_str().unwrap();

    // Install.
    let out = helm.ok(&["install", "web", chart]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let list = helm.json(&["list"]);
    assert_eq!(list[0]["name"], "web", "{list}");
    assert_eq!(list[0]["status"], "deployed");
    assert_eq!(list[0]["revision"], "1");
    assert_eq!(deployed(&kc), (2.into(), "hello".into()));
    assert_eq!(
        kubectl_json(&kc, &["get", "service", "web"])["spec"]["ports"][0]["targetPort"],
        "http"
    );
    kubectl(&kc, &["get", "pdb", "web"]);
    // The release is a Secret of helm's, readable back (decrypted).
    let releases = kubectl_json(&kc, &["get", "secrets", "-l", "owner=helm,name=web"]);
    let items = releases["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{releases}");
    assert_eq!(items[0]["type"], "helm.sh/release.v1");
    assert!(items[0]["data"]["release"]
        .as_str()
        .is_some_and(|r| r.len() > 100));

    // Upgrade with new values: revision 2.
    helm.ok(&[
        "upgrade",
        "web",
        chart,
        "--set",
        "replicas=3",
        "--set",
        "greeting=hi",
    ]);
    assert_eq!(deployed(&kc), (3.into(), "hi".into()));
    assert_eq!(helm.json(&["list"])[0]["revision"], "2");
    // A second install of the same name is refused, and changes nothing.
    let (ok, _, err) = helm.run(&["install", "web", chart]);
    assert!(
        !ok && err.contains("cannot reuse a name that is still in use"),
        "{err}"
    );
    assert_eq!(deployed(&kc), (3.into(), "hi".into()));

    // Roll back to 1: revision 3, the first values again.
    helm.ok(&["rollback", "web", "1"]);
    assert_eq!(deployed(&kc), (2.into(), "hello".into()));
    let history = helm.json(&["history", "web"]);
    let revisions: Vec<(i64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["revision"].as_i64().unwrap(),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        vec![
            (1, "superseded".to_string()),
            (2, "superseded".to_string()),
            (3, "deployed".to_string())
        ]
    );
    assert_eq!(
        kubectl_json(&kc, &["get", "secrets", "-l", "owner=helm"])["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Uninstall: nothing of the release is left.
    helm.ok(&["uninstall", "web"]);
    let left = kubectl(
        &kc,
        &[
            "get",
            "deployments,services,configmaps,pdb,secrets",
            "-o",
            "name",
        ],
    );
    let ours: Vec<&str> = left
        .lines()
        .filter(|l| l.contains("web") || l.contains("helm"))
        .collect();
    assert!(ours.is_empty(), "left behind: {ours:?}");
    assert_eq!(helm.json(&["list"]), serde_json::json!([]));
}
