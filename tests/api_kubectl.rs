//! kubectl against a three-node shard: the newest kubectl (the member
//! clusters', v1.34) and the oldest one on the machine (`/usr/bin/kubectl`,
//! v1.32), each through a full round of everyday commands in two
//! workspaces of its own, talking to different replicas (writes on a
//! follower are forwarded to the leader).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tmc::testcluster::members::{expect_lines, kubectl_lines, kubectl_with};
use tmc::testcluster::TestCluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: app
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        env: [{name: MODE, value: blue}]
      - name: sidecar
        image: busybox:1.36
"#;

struct K<'a> {
    bin: &'a str,
    kc: &'a Path,
}

impl K<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = kubectl_with(self.bin, self.kc, args, None);
        assert!(ok, "{} {args:?} failed: {err}{out}", self.bin);
        out
    }
    fn ok_in(&self, args: &[&str], stdin: &str) -> String {
        let (ok, out, err) = kubectl_with(self.bin, self.kc, args, Some(stdin));
        assert!(ok, "{} {args:?} failed: {err}{out}", self.bin);
        out
    }
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = kubectl_with(self.bin, self.kc, args, stdin);
        assert!(!ok, "{} {args:?} should fail but printed {out}", self.bin);
        err
    }
    fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let p = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &p]);
        self.ok(&args)
    }
}

fn round(s: &TestCluster, bin: &str, tag: &str) {
    let root = s.kubeconfig(2, "root");
    let admin = K { bin, kc: &root };
    let (wa, wb) = (format!("{tag}-a"), format!("{tag}-b"));
    for w in [&wa, &wb] {
        let out = admin.ok_in(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: {w}\n"
            ),
        );
        assert_eq!(out.trim(), format!("workspace.tenancy.kcp.io/{w} created"));
    }
    assert_eq!(
        admin.jsonpath(&["workspace", &wa], "{.status.phase}"),
        "Ready"
    );
    let kca = s.kubeconfig(1, &format!("root:{wa}"));
    let kcb = s.kubeconfig(3, &format!("root:{wb}"));
    let a = K { bin, kc: &kca };
    let b = K { bin, kc: &kcb };

    // apply, get in three formats.
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n";
    assert_eq!(
        a.ok_in(&["apply", "-f", "-"], ns).trim(),
        "namespace/app created"
    );
    assert_eq!(
        b.ok_in(&["apply", "-f", "-"], ns).trim(),
        "namespace/app created"
    );
    assert_eq!(
        a.ok_in(&["apply", "-f", "-"], DEPLOYMENT).trim(),
        "deployment.apps/web created"
    );
    let json: serde_json::Value =
        serde_json::from_str(&a.ok(&["get", "deployment", "web", "-n", "app", "-o", "json"]))
            .unwrap();
    assert_eq!(json["spec"]["replicas"], 2);
    assert_eq!(json["metadata"]["generation"], 1);
    assert_eq!(
        json["metadata"]["annotations"]["kcp.io/cluster"],
        format!("root:{wa}")
    );
    let yaml = a.ok(&["get", "deployment", "web", "-n", "app", "-o", "yaml"]);
    assert!(
        yaml.contains("name: web") && yaml.contains("image: nginx:1.25"),
        "{yaml}"
    );
    // Server-side printing: the Deployment's columns, wide ones too.
    let wide = a.ok(&["get", "deployments", "-n", "app", "-o", "wide"]);
    let words: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        words[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    assert_eq!(words[1][..4], ["web", "0/2", "0", "0"], "{wide}");
    assert_eq!(
        words[1][5..],
        ["nginx,sidecar", "nginx:1.25,busybox:1.36", "app=web"],
        "{wide}"
    );

    // The other workspace sees nothing of it.
    let (ok, out, err) = kubectl_with(bin, &kcb, &["get", "deployments", "-A", "-o", "name"], None);
    assert!(ok && out.trim().is_empty(), "workspace b sees {out}{err}");
    assert!(b
        .fails(&["get", "deployment", "web", "-n", "app"], None)
        .contains("NotFound"));

    // get -w sees a create, an update and a delete, in order (with
    // jsonpath output kubectl watches objects, not Tables: tests/table.rs
    // has the Table watch).
    let (mut w, lines) = kubectl_lines(
        bin,
        &kca,
        &[
            "get",
            "configmaps",
            "-n",
            "app",
            "-w",
            "-o",
            "jsonpath={.metadata.name}={.data.k}{\"\\n\"}",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: app\ndata:\n  k: v\n";
    a.ok_in(&["apply", "-f", "-"], cm);
    a.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "app",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"w"}}"#,
    ]);
    a.ok(&["delete", "configmap", "settings", "-n", "app"]);
    expect_lines(
        &lines,
        &[
            // added, modified, deleted (its last state)
            "settings=v",
            "settings=w",
            "settings=w",
        ],
    );
    w.kill().unwrap();
    let _ = w.wait();

    // label, annotate.
    a.ok(&["label", "deployment", "web", "-n", "app", "tier=front"]);
    a.ok(&["annotate", "deployment", "web", "-n", "app", "owner=team-a"]);
    assert_eq!(
        a.jsonpath(
            &["deployment", "web", "-n", "app"],
            "{.metadata.labels.tier} {.metadata.annotations.owner}"
        ),
        "front team-a"
    );
    assert_eq!(
        a.ok(&[
            "get",
            "deployments",
            "-n",
            "app",
            "-l",
            "tier=front",
            "-o",
            "name"
        ])
        .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        a.ok(&[
            "get",
            "deployments",
            "-n",
            "app",
            "-l",
            "tier!=front",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );

    // patch: merge, json, strategic (containers merge by name).
    a.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "app",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    a.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "app",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    a.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "app",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}"#,
    ]);
    assert_eq!(
        a.jsonpath(
            &["deployment", "web", "-n", "app"],
            "{.spec.replicas} {.spec.template.spec.containers[*].image} {.metadata.generation}"
        ),
        "4 nginx:1.26 busybox:1.36 4"
    );
    // A failing json patch test changes nothing.
    let err = a.fails(
        &["patch", "deployment", "web", "-n", "app", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]"#],
        None,
    );
    assert!(err.contains("test"), "{err}");
    assert_eq!(
        a.jsonpath(&["deployment", "web", "-n", "app"], "{.spec.replicas}"),
        "4"
    );

    // Re-apply with the sidecar removed: apply's three-way patch drops it.
    let one = DEPLOYMENT.replace("      - name: sidecar\n        image: busybox:1.36\n", "");
    assert_eq!(
        a.ok_in(&["apply", "-f", "-"], &one).trim(),
        "deployment.apps/web configured"
    );
    assert_eq!(
        a.jsonpath(
            &["deployment", "web", "-n", "app"],
            "{.spec.template.spec.containers[*].name} {.spec.replicas}"
        ),
        "nginx 2"
    );

    // replace (no editor): with the current resourceVersion it works; with
    // a stale one it is a Conflict.
    let current = a.ok(&["get", "deployment", "web", "-n", "app", "-o", "yaml"]);
    let changed = current.replace("replicas: 2", "replicas: 7");
    assert_eq!(
        a.ok_in(&["replace", "-f", "-"], &changed).trim(),
        "deployment.apps/web replaced"
    );
    assert_eq!(
        a.jsonpath(&["deployment", "web", "-n", "app"], "{.spec.replicas}"),
        "7"
    );
    let err = a.fails(&["replace", "-f", "-"], Some(&changed));
    assert!(
        err.contains("Conflict") || err.contains("modified"),
        "{err}"
    );

    // delete, with kubectl wait --for=delete watching.
    let waiter = Command::new(bin)
        .arg("--kubeconfig")
        .arg(&kca)
        .args([
            "wait",
            "--for=delete",
            "deployment/web",
            "-n",
            "app",
            "--timeout=30s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["delete", "deployment", "web", "-n", "app"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(a
        .fails(&["get", "deployment", "web", "-n", "app"], None)
        .contains("NotFound"));

    // The generators send protobuf bodies.
    assert_eq!(
        a.ok(&["create", "namespace", "gen"]).trim(),
        "namespace/gen created"
    );
    a.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "gen",
        "--from-literal=k=v",
    ]);
    a.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "gen",
        "--from-literal=password=hunter2",
    ]);
    a.ok(&[
        "create",
        "deployment",
        "d",
        "-n",
        "gen",
        "--image=nginx:1.25",
        "--replicas=0",
        "--port=8080",
    ]);
    assert_eq!(
        a.jsonpath(&["configmap", "c", "-n", "gen"], "{.data.k}"),
        "v"
    );
    assert_eq!(
        a.jsonpath(&["secret", "s", "-n", "gen"], "{.data.password}"),
        "aHVudGVyMg=="
    );
    assert_eq!(
        a.jsonpath(
            &["deployment", "d", "-n", "gen"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image} \
             {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}"
        ),
        "0 nginx:1.25 8080 d"
    );
    // Empty Go fields did not become empty strings.
    let meta = a.ok(&["get", "configmap", "c", "-n", "gen", "-o", "json"]);
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert!(meta["metadata"].get("generateName").is_none(), "{meta}");
    a.ok(&["delete", "namespace", "gen", "--wait=true"]);

    // Deleting the namespace takes its contents with it.
    a.ok_in(&["apply", "-f", "-"], cm);
    a.ok(&["delete", "namespace", "app", "--wait=true"]);
    assert!(a
        .fails(&["get", "namespace", "app"], None)
        .contains("NotFound"));
    let (_, out, _) = kubectl_with(bin, &kca, &["get", "configmaps", "-A", "-o", "name"], None);
    assert_eq!(out.trim(), "");
    // Workspace b is untouched.
    assert_eq!(
        b.ok(&["get", "namespace", "app", "-o", "name"]).trim(),
        "namespace/app"
    );
}

#[test]
fn kubectl_newest_and_oldest_against_a_three_node_shard() {
    let s = TestCluster::start();
    let newest = tmc::testcluster::members::kubectl_binary();
    round(&s, &newest, "new");
    let oldest = "/usr/bin/kubectl";
    assert!(
        Path::new(oldest).exists(),
        "the machine's kubectl is missing"
    );
    round(&s, oldest, "old");
}
