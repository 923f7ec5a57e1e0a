//! The garbage collector (`src/controllers/gc.rs`) against
//! kube-apiserver + kube-controller-manager of the test environment: the
//! same objects (ConfigMaps and Secrets owning each other: kinds no
//! controller of kube-controller-manager manages), deleted with
//! `kubectl delete --cascade=background|foreground|orphan`, a
//! deletecollection, a dependant with two owners, a dangling reference,
//! reach the same end states on both sides. Then tmc alone: references
//! never cross workspaces, and a Foreground deletion interrupted by the
//! leader's SIGKILL is finished by the next leader.
//!
//! Needs `scripts/testenv.sh build` to have run; see docs/testing.md.

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tmc::testcluster::members::{kubectl_binary, kubectl_with, TestEnv};
use tmc::testcluster::TestCluster;

const NS: &str = "gc";
/// Generous: kube-controller-manager's collector works from informers.
const DEADLINE: Duration = Duration::from_secs(90);

/// One kubectl pointed at one server.
struct Side<'a> {
    name: &'static str,
    kc: &'a Path,
}

impl Side<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut a: Vec<&str> = args.to_vec();
        if !args
            .iter()
            .any(|a| ["namespace", "namespaces", "--raw"].contains(a))
        {
            a.extend(["-n", NS]);
        }
        kubectl_with(&kubectl_binary(), self.kc, &a, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "{}: kubectl {args:?}: {err}{out}", self.name);
        out
    }

    /// Creates `obj`; its uid.
    fn create(&self, obj: Value) -> String {
        let out = self.ok(&["create", "-f", "-", "-o", "json"], Some(&obj.to_string()));
        let v: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        v["metadata"]["uid"].as_str().expect("a uid").to_string()
    }

    /// The object `kind/name`, if it exists.
    fn get(&self, what: &str) -> Option<Value> {
        let (ok, out, err) = self.run(&["get", what, "-o", "json"], None);
        if !ok {
            assert!(err.contains("NotFound"), "{}: get {what}: {err}", self.name);
            return None;
        }
        Some(serde_json::from_str(&out).expect("kubectl prints JSON"))
    }

    /// Waits until `f` holds of `kind/name` (`None`: absent).
    fn until(&self, what: &str, desc: &str, f: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = self.get(what);
            if f(v.as_ref()) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} never {desc}: {v:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn gone(&self, what: &str) {
        self.until(what, "gone", |v| v.is_none());
    }
}

fn owner(kind: &str, name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid,
           "blockOwnerDeletion": block})
}

fn cm(name: &str, owners: Vec<Value>, finalizers: &[&str], labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers,
                        "labels": labels},
           "data": {"k": "v"}})
}

fn secret(name: &str, owners: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "ownerReferences": owners},
           "stringData": {"k": "v"}})
}

/// The owners' names of `v`, sorted.
fn owner_names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

fn finalizers(v: &Value) -> Vec<String> {
    v["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// Every scenario on one side; the end state (name → owners' names, for
/// the objects that remain).
fn scenarios(s: &Side) -> Vec<(String, Option<Vec<String>>)> {
    let none = json!({});
    // Background: the owner goes at once, then its dependants, a
    // dependant's own dependant, a Secret; one with another live owner
    // only loses the reference.
    let o = s.create(cm("bg-o", vec![], &[], none.clone()));
    let keep = s.create(cm("keep", vec![], &[], none.clone()));
    let a = s.create(cm(
        "bg-a",
        vec![owner("ConfigMap", "bg-o", &o, false)],
        &[],
        none.clone(),
    ));
    s.create(cm(
        "bg-a-a",
        vec![owner("ConfigMap", "bg-a", &a, false)],
        &[],
        none.clone(),
    ));
    s.create(cm(
        "bg-two",
        vec![
            owner("ConfigMap", "bg-o", &o, false),
            owner("ConfigMap", "keep", &keep, false),
        ],
        &[],
        none.clone(),
    ));
    s.create(secret("bg-s", vec![owner("ConfigMap", "bg-o", &o, true)]));
    s.ok(
        &["delete", "configmap", "bg-o", "--cascade=background"],
        None,
    );
    s.gone("configmap/bg-o");
    s.gone("configmap/bg-a");
    s.gone("configmap/bg-a-a");
    s.gone("secret/bg-s");
    s.until("configmap/bg-two", "without bg-o", |v| {
        v.is_some_and(|v| owner_names(v) == ["keep"])
    });

    // Foreground: the owner stays, marked, with foregroundDeletion, while
    // a blocking dependant (held by its own finalizer) exists.
    let o = s.create(cm("fg-o", vec![], &[], none.clone()));
    s.create(cm(
        "fg-block",
        vec![owner("ConfigMap", "fg-o", &o, true)],
        &["example.com/hold"],
        none.clone(),
    ));
    s.create(cm(
        "fg-free",
        vec![owner("ConfigMap", "fg-o", &o, false)],
        &[],
        none.clone(),
    ));
    s.create(secret("fg-s", vec![owner("ConfigMap", "fg-o", &o, true)]));
    s.ok(
        &[
            "delete",
            "configmap",
            "fg-o",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    );
    s.gone("configmap/fg-free");
    s.gone("secret/fg-s");
    s.until("configmap/fg-block", "marked", |v| {
        v.is_some_and(|v| v["metadata"]["deletionTimestamp"].is_string())
    });
    let held = s
        .get("configmap/fg-o")
        .expect("the owner waits for fg-block");
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "{}: {held}",
        s.name
    );
    assert_eq!(finalizers(&held), ["foregroundDeletion"], "{}", s.name);
    s.ok(
        &[
            "patch",
            "configmap",
            "fg-block",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    s.gone("configmap/fg-block");
    s.gone("configmap/fg-o");

    // Orphan: the owner goes, the dependants stay without the reference.
    let o = s.create(cm("or-o", vec![], &[], none.clone()));
    s.create(cm(
        "or-a",
        vec![
            owner("ConfigMap", "or-o", &o, true),
            owner("ConfigMap", "keep", &keep, false),
        ],
        &[],
        none.clone(),
    ));
    s.create(secret("or-s", vec![owner("ConfigMap", "or-o", &o, false)]));
    s.ok(&["delete", "configmap", "or-o", "--cascade=orphan"], None);
    s.gone("configmap/or-o");
    s.until("configmap/or-a", "orphaned", |v| {
        v.is_some_and(|v| owner_names(v) == ["keep"])
    });
    s.until("secret/or-s", "orphaned", |v| {
        v.is_some_and(|v| owner_names(v).is_empty())
    });

    // An owner created with the `orphan` finalizer, deleted without a
    // policy (a DELETE with no body): the finalizer decides, Orphan.
    let o = s.create(cm("pre-o", vec![], &["orphan"], none.clone()));
    s.create(cm(
        "pre-a",
        vec![owner("ConfigMap", "pre-o", &o, true)],
        &[],
        none.clone(),
    ));
    s.ok(
        &["delete", "--raw", "/api/v1/namespaces/gc/configmaps/pre-o"],
        None,
    );
    s.gone("configmap/pre-o");
    s.until("configmap/pre-a", "orphaned", |v| {
        v.is_some_and(|v| owner_names(v).is_empty())
    });

    // A dangling reference: no such owner here, so it goes; with a live
    // second owner it only loses the dangling reference.
    let ghost = "4f7c6b7e-0000-4000-8000-00000000dead";
    s.create(cm(
        "dangling",
        vec![owner("ConfigMap", "ghost", ghost, false)],
        &[],
        none.clone(),
    ));
    s.create(cm(
        "half-dangling",
        vec![
            owner("ConfigMap", "ghost", ghost, false),
            owner("ConfigMap", "keep", &keep, false),
        ],
        &[],
        none.clone(),
    ));
    // A uid of another object by the owner's name: absent too.
    s.create(cm(
        "wrong-uid",
        vec![owner("ConfigMap", "keep", ghost, false)],
        &[],
        none.clone(),
    ));
    s.gone("configmap/dangling");
    s.gone("configmap/wrong-uid");
    s.until("configmap/half-dangling", "without ghost", |v| {
        v.is_some_and(|v| owner_names(v) == ["keep"])
    });

    // deletecollection (by label), Foreground.
    let set = json!({"set": "dc"});
    let o1 = s.create(cm("dc-o1", vec![], &[], set.clone()));
    let o2 = s.create(cm("dc-o2", vec![], &[], set.clone()));
    s.create(cm(
        "dc-a",
        vec![owner("ConfigMap", "dc-o1", &o1, false)],
        &[],
        none.clone(),
    ));
    s.create(cm(
        "dc-b",
        vec![owner("ConfigMap", "dc-o2", &o2, false)],
        &[],
        none.clone(),
    ));
    s.ok(
        &[
            "delete",
            "--raw",
            "/api/v1/namespaces/gc/configmaps?labelSelector=set%3Ddc&propagationPolicy=Foreground",
        ],
        None,
    );
    s.gone("configmap/dc-a");
    s.gone("configmap/dc-b");
    s.gone("configmap/dc-o1");
    s.gone("configmap/dc-o2");
    // kubectl's own selection (one DELETE each), Background.
    let set = json!({"set": "dl"});
    let o1 = s.create(cm("dl-o", vec![], &[], set.clone()));
    s.create(cm(
        "dl-a",
        vec![owner("ConfigMap", "dl-o", &o1, false)],
        &[],
        none.clone(),
    ));
    s.ok(
        &[
            "delete",
            "configmaps",
            "-l",
            "set=dl",
            "--cascade=background",
        ],
        None,
    );
    s.gone("configmap/dl-a");

    let names = [
        "configmap/keep",
        "configmap/bg-two",
        "configmap/or-a",
        "secret/or-s",
        "configmap/pre-a",
        "configmap/half-dangling",
        "configmap/bg-a",
        "configmap/fg-o",
        "configmap/dangling",
    ];
    names
        .iter()
        .map(|n| (n.to_string(), s.get(n).map(|v| owner_names(&v))))
        .collect()
}

#[test]
fn propagation_policies_reach_the_end_states_of_kube_controller_manager() {
    let env = TestEnv::shared();
    let kube = Side {
        name: "kube-apiserver",
        kc: env.kubeconfig(0),
    };
    let _ = kube.run(&["delete", "namespace", NS, "--wait=true"], None);
    kube.ok(&["create", "namespace", NS], None);

    let shard = TestCluster::builder()
        .nodes(1)
        .args(&["--no-controllers"])
        .start()
        .expect("a one-node shard");
    let ws = workspace(&shard, "gc");
    let tmc = Side {
        name: "tmc",
        kc: &ws,
    };
    tmc.ok(&["create", "namespace", NS], None);

    let theirs = scenarios(&kube);
    let ours = scenarios(&tmc);
    assert_eq!(
        ours, theirs,
        "tmc (left) and kube (right) end states differ"
    );
    let _ = kube.run(&["delete", "namespace", NS, "--wait=false"], None);
}

/// Creates workspace `name` under root; its kubeconfig once it answers.
fn workspace(shard: &TestCluster, name: &str) -> std::path::PathBuf {
    let root = shard.kubeconfig(1, "root");
    let (ok, _, err) = kubectl_with(
        &kubectl_binary(),
        &root,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\n"
        )),
    );
    assert!(ok, "workspace {name}: {err}");
    let kc = shard.kubeconfig(1, &format!("root:{name}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubectl_with(&kubectl_binary(), &kc, &["get", "namespaces"], None).0 {
        assert!(Instant::now() < deadline, "workspace {name} never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    kc
}

#[test]
fn references_never_cross_workspaces() {
    let shard = TestCluster::builder()
        .nodes(1)
        .args(&["--no-controllers"])
        .start()
        .expect("a one-node shard");
    let (kca, kcb) = (workspace(&shard, "ia"), workspace(&shard, "ib"));
    let a = Side {
        name: "root:ia",
        kc: &kca,
    };
    let b = Side {
        name: "root:ib",
        kc: &kcb,
    };
    a.ok(&["create", "namespace", NS], None);
    b.ok(&["create", "namespace", NS], None);
    let none = json!({});
    let o = a.create(cm("o", vec![], &[], none.clone()));
    a.create(cm(
        "da",
        vec![owner("ConfigMap", "o", &o, false)],
        &[],
        none.clone(),
    ));
    // In B, A's owner uid names nothing: B's dependant whose only owner
    // it is goes as dangling although A's owner exists (a reference is
    // resolved in its own workspace only), even next to an object of
    // B with the owner's name.
    b.create(cm("o", vec![], &[], none.clone()));
    b.create(cm(
        "dangling",
        vec![owner("ConfigMap", "o", &o, false)],
        &[],
        none.clone(),
    ));
    b.gone("configmap/dangling");
    // A dependant in B naming A's owner uid under a kind B cannot resolve
    // is never collected; orphaning A's owner (which strips its uid from
    // every dependant of A's index) leaves B's reference alone.
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "o", "uid": o});
    b.create(cm("db", vec![widget], &[], none.clone()));
    a.ok(&["delete", "configmap", "o", "--cascade=orphan"], None);
    a.gone("configmap/o");
    a.until("configmap/da", "orphaned", |v| {
        v.is_some_and(|v| owner_names(v).is_empty())
    });
    let db = b.get("configmap/db").expect("B's dependant stays");
    assert_eq!(
        db["metadata"]["ownerReferences"][0]["uid"],
        o.as_str(),
        "{db}"
    );
    // Deleting A's dependant's owner in the background, with B's
    // same-named owner alive, leaves B's objects.
    let o2 = a.create(cm("o2", vec![], &[], none.clone()));
    a.create(cm(
        "da2",
        vec![owner("ConfigMap", "o2", &o2, false)],
        &[],
        none.clone(),
    ));
    let bo2 = b.create(cm("o2", vec![], &[], none.clone()));
    b.create(cm(
        "db2",
        vec![owner("ConfigMap", "o2", &bo2, false)],
        &[],
        none.clone(),
    ));
    a.ok(&["delete", "configmap", "o2"], None);
    a.gone("configmap/da2");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        b.get("configmap/db2").is_some(),
        "B's dependant of B's o2 stays"
    );
    assert!(b.get("configmap/o").is_some());
}

#[test]
fn a_foreground_deletion_survives_the_leaders_sigkill() {
    let mut shard = TestCluster::start_with(&["--no-controllers"], "");
    let leader = shard.leader();
    let kc = shard.kubeconfig(leader, "root");
    let s = Side {
        name: "tmc",
        kc: &kc,
    };
    s.ok(&["create", "namespace", NS], None);
    let none = json!({});
    let o = s.create(cm("o", vec![], &[], none.clone()));
    for i in 0..20 {
        s.create(cm(
            &format!("d{i}"),
            vec![owner("ConfigMap", "o", &o, true)],
            &[],
            none.clone(),
        ));
    }
    s.create(cm(
        "held",
        vec![owner("ConfigMap", "o", &o, true)],
        &["example.com/hold"],
        none.clone(),
    ));
    s.ok(
        &[
            "delete",
            "configmap",
            "o",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    );
    shard.kill(leader);
    let alive: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let next = shard.leader_among(&alive);
    let kc2 = shard.kubeconfig(next, "root");
    let s = Side {
        name: "tmc after failover",
        kc: &kc2,
    };
    for i in 0..20 {
        s.gone(&format!("configmap/d{i}"));
    }
    s.until("configmap/held", "marked", |v| {
        v.is_some_and(|v| v["metadata"]["deletionTimestamp"].is_string())
    });
    let waiting = s.get("configmap/o").expect("the owner waits for held");
    assert_eq!(finalizers(&waiting), ["foregroundDeletion"]);
    s.ok(
        &[
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    s.gone("configmap/held");
    s.gone("configmap/o");
}
