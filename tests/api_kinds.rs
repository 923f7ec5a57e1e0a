//! The built-in kinds an application ships (tests/manifests/kinds.yaml:
//! ReplicaSets, CronJobs, PersistentVolumeClaims, Ingresses,
//! NetworkPolicies, PodDisruptionBudgets, HorizontalPodAutoscalers,
//! Leases, LimitRanges, ResourceQuotas, Events, EndpointSlices,
//! Endpoints, beside a Deployment) and the `scale` subresource, driven by
//! the newest kubectl against a tmc workspace and a real kube-apiserver
//! of the test environment side by side: the same commands must print the
//! same, and the objects must come back the same.
//!
//! Needs `scripts/testenv.sh build` to have run; see docs/testing.md.

use serde_json::Value;
use std::path::Path;
use tmc::testcluster::members::{kubectl_binary, kubectl_with, TestEnv};
use tmc::testcluster::TestCluster;

const NS: &str = "kinds";

fn manifest() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/kinds.yaml");
    std::fs::read_to_string(path).expect("tests/manifests/kinds.yaml")
}

/// One kubectl pointed at one server.
struct Side<'a> {
    name: &'static str,
    kc: &'a Path,
}

impl Side<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        kubectl_with(&kubectl_binary(), self.kc, args, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "{}: kubectl {args:?}: {err}{out}", self.name);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a, None))
            .unwrap_or_else(|e| panic!("{}: kubectl {args:?}: not JSON: {e}", self.name))
    }
}

/// Runs the same command on both sides and asserts both print the same
/// (stdout when it succeeds, stderr when it fails; success must agree).
fn same(tmc: &Side, kube: &Side, args: &[&str], stdin: Option<&str>) -> String {
    let (t_ok, t_out, t_err) = tmc.run(args, stdin);
    let (k_ok, k_out, k_err) = kube.run(args, stdin);
    assert_eq!(
        (t_ok, if t_ok { &t_out } else { &t_err }),
        (k_ok, if k_ok { &k_out } else { &k_err }),
        "kubectl {args:?}: tmc (left) and kube-apiserver (right) differ"
    );
    t_out
}

/// `obj` with what only one server adds removed: server-set metadata,
/// kube-apiserver's defaults that tmc (storing built-in kinds as sent)
/// does not fill in are compared through [`sent_fields_survive`] instead.
fn sent_fields_survive(sent: &Value, got: &Value, path: &str) {
    match (sent, got) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                let sub = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => sent_fields_survive(v, gv, &sub),
                    None => panic!("{sub} was sent and is gone: {got}"),
                }
            }
        }
        (Value::Array(s), Value::Array(g)) => {
            assert_eq!(s.len(), g.len(), "{path}: {sent} became {got}");
            for (i, (sv, gv)) in s.iter().zip(g).enumerate() {
                sent_fields_survive(sv, gv, &format!("{path}[{i}]"));
            }
        }
        // Quantities come back canonical on both sides.
        (s, g) => assert_eq!(s, g, "{path}"),
    }
}

#[test]
fn the_kinds_an_application_ships_and_scale_behave_as_on_kube_apiserver() {
    let env = TestEnv::shared();
    // The shared member may hold this namespace from an earlier run.
    let kube = Side {
        name: "kube-apiserver",
        kc: env.kubeconfig(0),
    };
    let _ = kube.run(&["delete", "namespace", NS, "--wait=true"], None);

    let shard = TestCluster::builder()
        .nodes(1)
        .args(&["--no-controllers"])
        .start()
        .expect("a one-node shard");
    let root = shard.kubeconfig(1, "root");
    Side {
        name: "tmc root",
        kc: &root,
    }
    .ok(
        &["apply", "-f", "-"],
        Some("apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: kinds\n"),
    );
    let ws = shard.kubeconfig(1, "root:kinds");
    let tmc = Side {
        name: "tmc",
        kc: &ws,
    };
    // The workspace is ready once it answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !tmc.run(&["get", "namespaces"], None).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "workspace never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Every kind is created, then applied again unchanged, with the same
    // words on both sides.
    let m = manifest();
    let created = same(&tmc, &kube, &["apply", "-f", "-"], Some(&m));
    assert_eq!(created.lines().count(), 15, "{created}");
    // Applied again: unchanged, but for the PodDisruptionBudget, whose
    // selector kubectl always patches (`patchStrategy: replace`), on both
    // sides. kube-apiserver's defaults (which tmc, storing built-in kinds
    // as sent, does not add) make kubectl patch three more kinds there:
    // their atomic lists come back with defaulted fields.
    let again = |s: &Side| -> Vec<String> {
        s.ok(&["apply", "-f", "-"], Some(&m))
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (ours, theirs) = (again(&tmc), again(&kube));
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(&theirs) {
        let want_configured = o.starts_with("poddisruptionbudget.policy/");
        assert_eq!(o.ends_with(" configured"), want_configured, "{o}");
        let defaulted = ["limitrange/", "endpointslice.", "endpoints/"];
        if o != t {
            assert!(
                defaulted.iter().any(|k| t.starts_with(k)) && t.ends_with(" configured"),
                "tmc: {o}, kube-apiserver: {t}"
            );
        }
    }

    // Each comes back by its short name, with every field that was sent.
    // The manifest as JSON, from kubectl itself.
    let printed = tmc.ok(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(&m),
    );
    let sent: Vec<Value> = serde_json::Deserializer::from_str(&printed)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("kubectl prints JSON objects");
    assert_eq!(sent.len(), 15);
    for obj in sent.iter().skip(1) {
        let kind = obj["kind"].as_str().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        let resource = match obj["apiVersion"].as_str().unwrap().split_once('/') {
            Some((group, _)) => format!("{}.{group}", kind.to_lowercase()),
            None => kind.to_lowercase(),
        };
        let got = tmc.json(&["get", &resource, name, "-n", NS]);
        for field in obj.as_object().unwrap().keys() {
            if field != "metadata" {
                sent_fields_survive(&obj[field], &got[field], field);
            }
        }
        let theirs = kube.json(&["get", &resource, name, "-n", NS]);
        assert_eq!(got["kind"], theirs["kind"]);
        assert_eq!(got["apiVersion"], theirs["apiVersion"]);
    }
    // kube-controller-manager adds objects of its own on the member
    // (a Deployment's ReplicaSet, events): tmc's are among kube's.
    for short in [
        "rs", "cj", "pvc", "ing", "netpol", "pdb", "hpa", "limits", "quota", "ev", "ep",
    ] {
        let names = |s: &Side| -> Vec<String> {
            let out = s.ok(&["get", short, "-n", NS, "-o", "name"], None);
            out.lines().map(str::to_string).collect()
        };
        let (ours, theirs) = (names(&tmc), names(&kube));
        assert!(!ours.is_empty(), "kubectl get {short}: nothing");
        for n in &ours {
            assert!(
                theirs.contains(n),
                "kubectl get {short}: {n} only in tmc ({theirs:?})"
            );
        }
    }

    // A strategic merge patch of a CronJob's container merges by name.
    let patch = r#"{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"job","image":"busybox:1.37"}]}}}}}}"#;
    same(
        &tmc,
        &kube,
        &["patch", "cronjob", "nightly", "-n", NS, "-p", patch],
        None,
    );
    let containers = |s: &Side| {
        s.json(&["get", "cronjob", "nightly", "-n", NS])["spec"]["jobTemplate"]["spec"]["template"]
            ["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].clone(), c["image"].clone(), c["args"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(containers(&tmc), containers(&kube));

    // kubectl's generators send protobuf bodies: they decode.
    for args in [
        &[
            "create",
            "ingress",
            "simple",
            "-n",
            NS,
            "--rule=foo.com/bar=svc1:8080",
        ][..],
        &[
            "create",
            "pdb",
            "half",
            "-n",
            NS,
            "--selector=app=x",
            "--min-available=50%",
        ],
        &[
            "create",
            "cronjob",
            "minutely",
            "-n",
            NS,
            "--image=busybox",
            "--schedule=*/1 * * * *",
        ],
        &[
            "autoscale",
            "deployment",
            "web",
            "-n",
            NS,
            "--min=2",
            "--max=4",
            "--name=web2",
        ],
    ] {
        same(&tmc, &kube, args, None);
    }
    let spec = |s: &Side, what: &[&str]| s.json(what)["spec"].clone();
    for what in [
        &["get", "ingress", "simple", "-n", NS][..],
        &["get", "pdb", "half", "-n", NS],
        &["get", "hpa", "web2", "-n", NS],
    ] {
        let ours = spec(&tmc, what);
        sent_fields_survive(&ours, &spec(&kube, what), what[1]);
    }

    // The scale subresource.
    same(
        &tmc,
        &kube,
        &["scale", "deployment", "web", "-n", NS, "--replicas=5"],
        None,
    );
    same(
        &tmc,
        &kube,
        &["scale", "replicaset", "rs", "-n", NS, "--replicas=3"],
        None,
    );
    assert_eq!(
        tmc.json(&["get", "deployment", "web", "-n", NS])["spec"]["replicas"],
        5
    );
    // A precondition that does not hold.
    same(
        &tmc,
        &kube,
        &[
            "scale",
            "rs",
            "rs",
            "-n",
            NS,
            "--replicas=4",
            "--current-replicas=1",
        ],
        None,
    );
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/web/scale");
    let scale = |s: &Side| -> Value {
        serde_json::from_str(&s.ok(&["get", "--raw", &path], None)).expect("a Scale")
    };
    let (ours, theirs) = (scale(&tmc), scale(&kube));
    assert_eq!(ours["kind"], "Scale");
    assert_eq!(ours["apiVersion"], theirs["apiVersion"]);
    assert_eq!(ours["spec"], theirs["spec"]);
    assert_eq!(ours["status"]["selector"], theirs["status"]["selector"]);
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        assert!(ours["metadata"][f].is_string(), "metadata.{f}: {ours}");
    }
    // A Scale written back: a stale resourceVersion conflicts, a negative
    // count is refused with kube's message, a good one lands.
    let put = |s: &Side, replicas: i64, rv: &str| {
        let mut body = scale(s);
        body["spec"]["replicas"] = replicas.into();
        body["metadata"]["resourceVersion"] = rv.into();
        s.run(
            &["replace", "--raw", &path, "-f", "-"],
            Some(&body.to_string()),
        )
    };
    let err_of = |r: (bool, String, String)| {
        assert!(!r.0, "accepted: {}", r.1);
        r.2
    };
    assert!(err_of(put(&tmc, 2, "1")).contains("Conflict"));
    assert!(err_of(put(&kube, 2, "1")).contains("Conflict"));
    let neg = |s: &Side| {
        let rv = scale(s)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        err_of(put(s, -1, &rv))
    };
    assert_eq!(neg(&tmc), neg(&kube));
    let rv = scale(&tmc)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = put(&tmc, 6, &rv);
    assert!(ok, "{err}");
    let answered: Value = serde_json::from_str(&out).expect("a Scale");
    assert_eq!(answered["spec"]["replicas"], 6);
    assert_eq!(
        tmc.json(&["get", "deployment", "web", "-n", NS])["spec"]["replicas"],
        6
    );
    // Kinds without the subresource: the same refusal.
    let ds = format!("/apis/apps/v1/namespaces/{NS}/daemonsets/x/scale");
    same(&tmc, &kube, &["get", "--raw", &ds], None);
    same(
        &tmc,
        &kube,
        &["scale", "cronjob", "nightly", "-n", NS, "--replicas=2"],
        None,
    );

    // Field selectors of a kind's own fields, as `kubectl describe` asks
    // for an object's events; another kind's field is refused alike.
    let events = &[
        "get",
        "events",
        "-n",
        NS,
        "-o",
        "name",
        "--field-selector",
        "involvedObject.kind=Deployment,involvedObject.name=web,reason=Tested,source=test",
    ][..];
    assert_eq!(same(&tmc, &kube, events, None).trim(), "event/web.1");
    same(
        &tmc,
        &kube,
        &[
            "get",
            "configmaps",
            "-n",
            NS,
            "--field-selector",
            "involvedObject.name=web",
        ],
        None,
    );
    // `kubectl describe` selects the events of the object's uid.
    let uid = tmc.json(&["get", "deployment", "web", "-n", NS])["metadata"]["uid"].clone();
    let patch = serde_json::json!({"involvedObject": {"uid": uid}}).to_string();
    tmc.ok(
        &[
            "patch",
            "event",
            "web.1",
            "-n",
            NS,
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
    let described = tmc.ok(&["describe", "deployment", "web", "-n", NS], None);
    assert!(
        described.contains("Tested") && described.contains("a test event"),
        "kubectl describe shows no events: {described}"
    );

    // Deleting the namespace leaves none of them behind (tmc's lifecycle
    // controller runs even with --no-controllers).
    tmc.ok(&["delete", "namespace", NS, "--wait=true"], None);
    let (_, left, _) = tmc.run(
        &[
            "get",
            "all,pvc,ing,netpol,pdb,lease,limits,quota,ev,ep,endpointslices",
            "-n",
            NS,
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(left.trim(), "", "left behind: {left}");
    let _ = kube.run(&["delete", "namespace", NS, "--wait=false"], None);
}
