//! Two shards of three replicas each behind `tmc proxy`, mutual TLS
//! everywhere: workspaces are scheduled onto both, every client works on
//! either through the proxy, a shard's trouble stays its own, and no
//! path, header or RBAC grant reaches another shard's workspace.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tmc::testcluster::members::kubectl_ok;
use tmc::testcluster::proxy::ProxyProcess;
use tmc::testcluster::{block_on, ApiClient, TestCluster};

const BOB: &str = "tok-bob-0123456789";

/// The root shard (`root`), a second shard (`two`) and the proxy, which
/// is given only the root shard's replicas: it finds `two` in the
/// registry.
struct Shards {
    one: TestCluster,
    two: TestCluster,
    proxy: ProxyProcess,
}

impl Shards {
    fn start() -> Shards {
        Self::start_with(&["--no-controllers"])
    }

    /// Both shards with `flags` (controllers run unless they say
    /// `--no-controllers`).
    fn start_with(flags: &[&str]) -> Shards {
        let mut one_args = vec!["--shard-labels", "region=us"];
        one_args.extend_from_slice(flags);
        let one = TestCluster::builder()
            .args(&one_args)
            .tokens(&format!("{BOB},bob,bob-uid\n"))
            .start()
            .unwrap_or_else(|e| panic!("shard root: {e}"));
        let two = TestCluster::builder()
            .shard("two")
            .share_tls_with(&one.tls_dir())
            .args(
                &[
                    flags,
                    &[
                        "--shard-labels",
                        "region=eu",
                        "--root-shard",
                        &one.servers(),
                    ],
                ]
                .concat(),
            )
            .start()
            .unwrap_or_else(|e| panic!("shard two: {e}"));
        let proxy = one
            .start_proxy_at(&one.servers(), &[])
            .unwrap_or_else(|e| panic!("proxy: {e}"));
        let s = Shards { one, two, proxy };
        // Both shards have registered.
        s.until(
            "both shards are in the registry",
            Duration::from_secs(60),
            || {
                let (code, v) = block_on(s.admin().call(
                    "GET",
                    "/clusters/root/apis/core.kcp.io/v1alpha1/shards",
                    Value::Null,
                ));
                code == 200 && v["items"].as_array().is_some_and(|i| i.len() == 2)
            },
        );
        s
    }

    fn ca(&self) -> std::path::PathBuf {
        self.one.tls_dir().join("ca.crt")
    }

    /// The admin, through the proxy.
    fn admin(&self) -> ApiClient {
        ApiClient::new(self.proxy.port, &self.ca())
            .unwrap()
            .bearer(&self.one.token())
    }

    /// bob, through the proxy.
    fn bob(&self) -> ApiClient {
        ApiClient::new(self.proxy.port, &self.ca())
            .unwrap()
            .bearer(BOB)
    }

    /// A shard by name.
    fn shard(&self, name: &str) -> &TestCluster {
        match name {
            "root" => &self.one,
            "two" => &self.two,
            other => panic!("no shard {other}"),
        }
    }

    fn until(&self, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates workspace `name` in root through the proxy; its shard.
    fn workspace(&self, name: &str) -> String {
        self.workspace_with(name, json!({}))
    }

    /// Creates workspace `name` with `spec` in root through the proxy;
    /// its shard.
    fn workspace_with(&self, name: &str, spec: Value) -> String {
        let v = block_on(self.admin().must(
            "POST",
            "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces",
            json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
                   "metadata": {"name": name}, "spec": spec}),
            201,
        ));
        assert_eq!(v["status"]["phase"], "Ready", "{v}");
        assert_eq!(v["spec"]["cluster"], format!("root:{name}"), "{v}");
        v["spec"]["shard"].as_str().unwrap().to_string()
    }

    /// Waits until the registry says `shard` holds at least `n` logical
    /// clusters (the scheduler reads those counts).
    fn counted(&self, shard: &str, n: u64) {
        self.until(
            &format!("shard {shard} reports {n} logical clusters"),
            Duration::from_secs(30),
            || {
                let (code, v) = block_on(self.admin().call(
                    "GET",
                    &format!("/clusters/root/apis/core.kcp.io/v1alpha1/shards/{shard}"),
                    Value::Null,
                ));
                code == 200 && v["status"]["logicalClusters"].as_u64() >= Some(n)
            },
        );
    }
}

/// A ClusterRoleBinding making bob `cluster-admin` of its workspace.
fn bob_admin() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "bob-admin"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})
}

fn lc_path(ws: &str) -> String {
    format!("/clusters/{ws}/apis/core.kcp.io/v1alpha1/logicalclusters/cluster")
}

/// Workspaces land on both shards (each shard's own store holds exactly
/// its own), kubectl, kube-rs and the Python client work on either
/// through the proxy, nested workspaces resolve level by level across
/// shards, and deleting a workspace deletes its logical cluster on its
/// shard with everything nested in it.
#[test]
fn workspaces_are_scheduled_onto_both_shards_and_every_client_works_through_the_proxy() {
    let s = Shards::start();
    // Fewest logical clusters first, ties by name: root, then two.
    assert_eq!(s.workspace("w1"), "root");
    s.counted("root", 1);
    assert_eq!(s.workspace("w2"), "two");
    s.counted("two", 1);
    block_on(async {
        for (ws, on, off) in [("root:w1", "root", "two"), ("root:w2", "two", "root")] {
            // The marker is in its shard's store, read from a follower
            // replica straight; the other shard says it is not its own.
            let here = s.shard(on).api_client(2);
            here.must("GET", &lc_path(ws), Value::Null, 200).await;
            let there = s.shard(off).api_client(2);
            let (code, v) = there
                .call(
                    "GET",
                    &format!("/clusters/{ws}/api/v1/namespaces"),
                    Value::Null,
                )
                .await;
            assert_eq!(code, 421, "{ws} on {off}: {v}");
            assert_eq!(v["reason"], "WorkspaceNotOnShard", "{v}");
        }
    });

    // kubectl on a workspace of each shard.
    let server = s.proxy.server();
    for ws in ["root:w1", "root:w2"] {
        let kc = s.one.kubeconfig_at(&server, ws);
        kubectl_ok(&kc, &["create", "namespace", "app"], None);
        kubectl_ok(
            &kc,
            &[
                "-n",
                "app",
                "create",
                "configmap",
                "cfg",
                "--from-literal=k=v",
            ],
            None,
        );
        let got = kubectl_ok(
            &kc,
            &[
                "-n",
                "app",
                "get",
                "configmap",
                "cfg",
                "-o",
                "jsonpath={.data.k}",
            ],
            None,
        );
        assert_eq!(got, "v", "{ws}");
    }

    // A selector over the shards' labels picks the shard; the Python
    // client's whole script then creates `acme` in an empty workspace
    // (root:py, on two) and works in both: with fewer logical clusters
    // on root, acme goes to root.
    let eu = json!({"location": {"selector": {"matchLabels": {"region": "eu"}}}});
    assert_eq!(s.workspace_with("w3", eu.clone()), "two");
    s.counted("two", 2);
    assert_eq!(s.workspace_with("py", eu), "two");
    s.counted("two", 3);
    let py_kc = s.one.kubeconfig_at(&server, "root:py");
    let acme_kc = s.one.kubeconfig_at(&server, "root:py:acme");
    let out = tmc::testcluster::python::run_api_client(&py_kc, &acme_kc);
    eprintln!("{out}");
    let acme = block_on(s.admin().must(
        "GET",
        "/clusters/root:py/apis/tenancy.kcp.io/v1alpha1/workspaces/acme",
        Value::Null,
        200,
    ));
    assert_eq!(acme["spec"]["shard"], "root", "{acme}");

    // kube-rs in root:py:acme (on root, under root:py on two), through
    // the proxy.
    block_on(async {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, PostParams};
        let client = tmc::testcluster::members::kube_client(&acme_kc)
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "from-kube-rs"}, "data": {"k": "1"}
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        assert_eq!(
            cms.get("from-kube-rs").await.unwrap().data.unwrap()["k"],
            "1"
        );
        // Where the proxy put it: shard root's own store.
        s.one
            .api_client(3)
            .must(
                "GET",
                "/clusters/root:py:acme/api/v1/namespaces/default/configmaps/from-kube-rs",
                Value::Null,
                200,
            )
            .await;
    });

    // Nested: children of a workspace on two, scheduled by two (which
    // reads the registry from root), one to each shard by selector,
    // resolve level by level.
    let admin = s.admin();
    let mut shards_of_children = Vec::new();
    for (child, region) in [("x", "us"), ("y", "eu"), ("z", "us")] {
        let v = block_on(admin.must(
            "POST",
            "/clusters/root:w2/apis/tenancy.kcp.io/v1alpha1/workspaces",
            json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
                   "metadata": {"name": child},
                   "spec": {"location": {"selector": {"matchLabels": {"region": region}}}}}),
            201,
        ));
        shards_of_children.push(v["spec"]["shard"].as_str().unwrap().to_string());
        block_on(admin.must(
            "POST",
            &format!("/clusters/root:w2:{child}/api/v1/namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "inner"}}),
            201,
        ));
    }
    assert_eq!(
        shards_of_children,
        ["root", "two", "root"],
        "children of root:w2 landed on {shards_of_children:?}"
    );

    // A selector over the shards' labels: none matches, 422 naming it.
    let (code, v) = block_on(admin.call(
        "POST",
        "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces",
        json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
               "metadata": {"name": "nowhere"},
               "spec": {"location": {"selector": {"matchLabels": {"region": "mars"}}}}}),
    ));
    assert_eq!(code, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no shard matches"),
        "{v}"
    );

    // Deleting root:w2 (on two) deletes its logical cluster there and the
    // nested ones wherever they are.
    block_on(admin.must(
        "DELETE",
        "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/w2",
        Value::Null,
        200,
    ));
    s.until("root:w2 is gone", Duration::from_secs(60), || {
        block_on(admin.call(
            "GET",
            "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/w2",
            Value::Null,
        ))
        .0 == 404
    });
    block_on(async {
        for (child, on) in ["x", "y", "z"].iter().zip(&shards_of_children) {
            let ws = format!("root:w2:{child}");
            let (code, v) = s
                .shard(on)
                .api_client(1)
                .call("GET", &lc_path(&ws), Value::Null)
                .await;
            assert!(code == 404 || code == 421, "{ws} on {on}: {code} {v}");
            let (code, v) = admin
                .call(
                    "GET",
                    &format!("/clusters/{ws}/api/v1/namespaces"),
                    Value::Null,
                )
                .await;
            assert_eq!(code, 403, "{ws} through the proxy: {v}");
        }
        let (code, v) = s
            .two
            .api_client(1)
            .call("GET", &lc_path("root:w2"), Value::Null)
            .await;
        assert!(code == 404 || code == 421, "root:w2 on two: {code} {v}");
    });

    // `tmc status` through the proxy: both shards, each with its three
    // replicas, one leader; only system:masters may ask.
    let admin_kc = s.one.kubeconfig_at(&server, "root");
    let out = std::process::Command::new(tmc::testcluster::tmc_binary())
        .args(["status", "--json", "--kubeconfig"])
        .arg(&admin_kc)
        .output()
        .expect("tmc status");
    assert!(out.status.success(), "tmc status: {out:?}");
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut names: Vec<&str> = docs.iter().filter_map(|d| d["shard"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["root", "two"], "{docs:?}");
    for d in &docs {
        let replicas = d["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len(), 3, "{d}");
        let leaders = replicas.iter().filter(|r| r["role"] == "leader").count();
        assert_eq!(leaders, 1, "{d}");
        assert!(
            replicas.iter().all(|r| r["diskBytes"].as_u64() > Some(0)),
            "{d}"
        );
    }
    let table = std::process::Command::new(tmc::testcluster::tmc_binary())
        .args(["status", "--kubeconfig"])
        .arg(&admin_kc)
        .output()
        .expect("tmc status");
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        text.lines().count(),
        7,
        "a header and six replicas:\n{text}"
    );
    let (code, v) = block_on(s.bob().call("GET", "/tmc/shards/two/status", Value::Null));
    assert_eq!(code, 403, "{v}");
    let (code, v) = block_on(
        s.admin()
            .call("GET", "/tmc/shards/nine/status", Value::Null),
    );
    assert_eq!(code, 404, "an unknown shard: {v}");
}

/// What reaches a workspace of the other shard: nothing but the proxy
/// with a user whom that workspace's RBAC allows.
#[test]
fn no_path_header_or_grant_reaches_another_shards_workspace() {
    let s = Shards::start();
    assert_eq!(s.workspace("mine"), "root");
    s.counted("root", 1);
    assert_eq!(s.workspace("theirs"), "two");
    let admin = s.admin();
    let bob = s.bob();
    let mut failures = Vec::new();
    let mut check = |row: &str, got: (u16, Value), want: u16| {
        if got.0 != want {
            failures.push(format!("{row}: want {want}, got {} {}", got.0, got.1));
        }
    };
    block_on(async {
        // bob is admin of root:mine (shard root) only.
        admin
            .must(
                "POST",
                "/clusters/root:mine/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                bob_admin(),
                201,
            )
            .await;
        admin
            .must(
                "POST",
                "/clusters/root:theirs/api/v1/namespaces/default/secrets",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                       "stringData": {"k": "v"}}),
                201,
            )
            .await;
        check(
            "bob reads his own workspace through the proxy",
            bob.call("GET", "/clusters/root:mine/api/v1/namespaces", Value::Null)
                .await,
            200,
        );
        check(
            "bob reads the other shard's workspace through the proxy",
            bob.call(
                "GET",
                "/clusters/root:theirs/api/v1/namespaces/default/secrets",
                Value::Null,
            )
            .await,
            403,
        );
        check(
            "bob reads the other shard's workspace through the proxy by a dotted path",
            bob.call(
                "GET",
                "/clusters/root:mine/../root:theirs/api/v1/namespaces/default/secrets",
                Value::Null,
            )
            .await,
            400,
        );
        // Straight to a shard: a workspace of the other shard is not
        // served there (421), whoever asks.
        let shard_root = s.one.api_client(1);
        check(
            "admin asks shard root for a workspace of two",
            shard_root
                .call(
                    "GET",
                    "/clusters/root:theirs/api/v1/namespaces/default/secrets",
                    Value::Null,
                )
                .await,
            421,
        );
        let bob_on_root = ApiClient::new(s.one.api_port(1), &s.ca())
            .unwrap()
            .bearer(BOB);
        check(
            "bob asks shard root for a workspace of two",
            bob_on_root
                .call(
                    "GET",
                    "/clusters/root:theirs/api/v1/namespaces/default/secrets",
                    Value::Null,
                )
                .await,
            403,
        );
        // Moving workspaces is the operator's: not even a workspace's own
        // admin exports, holds, imports or switches it.
        for (method, path) in [
            (
                "GET",
                "/tmc/shards/root/workspaces/export?workspace=root:mine",
            ),
            ("GET", "/tmc/workspaces/export?workspace=root:theirs"),
            (
                "POST",
                "/tmc/shards/two/workspaces/hold?workspace=root:theirs&move=to%3Droot",
            ),
            (
                "POST",
                "/tmc/shards/two/workspaces/import?workspace=root:x&phase=begin",
            ),
            (
                "POST",
                "/tmc/workspaces/switch?workspace=root:theirs&to=root",
            ),
            (
                "POST",
                "/tmc/shards/two/workspaces/remove?workspace=root:theirs",
            ),
        ] {
            check(
                &format!("bob: {method} {path}"),
                bob.call(method, path, Value::Null).await,
                403,
            );
        }
        // Request headers naming a user, straight to shard two: refused.
        let bob_on_two = ApiClient::new(s.two.api_port(1), &s.ca())
            .unwrap()
            .bearer(BOB);
        check(
            "bob names admin to shard two in request headers",
            bob_on_two
                .call_with_headers(
                    "GET",
                    "/clusters/root:theirs/api/v1/namespaces/default/secrets",
                    &[
                        ("X-Remote-User", "admin"),
                        ("X-Remote-Group", "system:masters"),
                    ],
                )
                .await
                .unwrap(),
            401,
        );
        // Another user's rights: only for those who may create reviews.
        let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                         "spec": {"user": "admin", "groups": ["system:masters"],
                                  "resourceAttributes": {"verb": "get", "resource": "secrets"}}});
        check(
            "bob asks about another user in the other shard's workspace",
            bob.call(
                "POST",
                "/clusters/root:theirs/apis/authorization.k8s.io/v1/subjectaccessreviews",
                sar,
            )
            .await,
            403,
        );
        let (code, v) = bob
            .call(
                "POST",
                "/clusters/root:mine/apis/authorization.k8s.io/v1/subjectaccessreviews",
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                       "spec": {"user": "carol",
                                "resourceAttributes": {"verb": "get", "resource": "secrets"}}}),
            )
            .await;
        assert_eq!((code, &v["status"]["allowed"]), (201, &json!(false)), "{v}");
        // A workspace's admin cannot remove its marker or forge a shard.
        check(
            "bob deletes the LogicalCluster of his workspace",
            bob.call("DELETE", &lc_path("root:mine"), Value::Null).await,
            403,
        );
        check(
            "bob creates a LogicalCluster in his workspace",
            bob.call(
                "POST",
                "/clusters/root:mine/apis/core.kcp.io/v1alpha1/logicalclusters",
                json!({"apiVersion": "core.kcp.io/v1alpha1", "kind": "LogicalCluster",
                       "metadata": {"name": "cluster"}}),
            )
            .await,
            403,
        );
        check(
            "bob registers a shard in his workspace",
            bob.call(
                "POST",
                "/clusters/root:mine/apis/core.kcp.io/v1alpha1/shards",
                json!({"apiVersion": "core.kcp.io/v1alpha1", "kind": "Shard",
                       "metadata": {"name": "evil"}, "spec": {"baseURL": "https://evil:1"}}),
            )
            .await,
            403,
        );
        // A Workspace's shard is the server's: an update cannot move it.
        let mut w = admin
            .must(
                "GET",
                "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/theirs",
                Value::Null,
                200,
            )
            .await;
        w["spec"]["shard"] = json!("root");
        let v = admin
            .must(
                "PUT",
                "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/theirs",
                w,
                200,
            )
            .await;
        assert_eq!(v["spec"]["shard"], "two", "{v}");
        // Shard two's identity may register shard two only.
        let files = tmc::api::tls::TlsFiles::new(&s.one.tls_dir());
        let id = tmc::api::tls::issue_shard_identity(&files, "two").unwrap();
        let as_two = ApiClient::new(s.one.api_port(1), &s.ca())
            .unwrap()
            .client_cert(&id.cert_pem, &id.key_pem)
            .unwrap();
        check(
            "shard two registers shard root",
            as_two
                .call(
                    "PUT",
                    "/clusters/root/apis/core.kcp.io/v1alpha1/shards/root",
                    json!({"apiVersion": "core.kcp.io/v1alpha1", "kind": "Shard",
                           "metadata": {"name": "root"}, "spec": {"baseURL": "https://evil:1"}}),
                )
                .await,
            403,
        );
        check(
            "shard two reads a tenant's configmaps",
            as_two
                .call(
                    "GET",
                    "/clusters/root:mine/api/v1/namespaces/default/configmaps",
                    Value::Null,
                )
                .await,
            403,
        );
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A shard's leader killed: the other shard's workspaces answer
/// throughout and its own answer again after the election, with nothing
/// acknowledged lost; a whole shard stopped: its workspaces answer 503,
/// the other's keep working; restarted, everything is back.
#[test]
fn a_shards_failure_touches_only_its_own_workspaces() {
    let mut s = Shards::start();
    assert_eq!(s.workspace("a"), "root");
    s.counted("root", 1);
    assert_eq!(s.workspace("b"), "two");
    let admin = s.admin();
    let cm = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
               "data": {"k": name}})
    };
    let path = |ws: &str| format!("/clusters/{ws}/api/v1/namespaces/default/configmaps");
    for ws in ["root:a", "root:b"] {
        for i in 0..5 {
            block_on(admin.must("POST", &path(ws), cm(&format!("before-{i}")), 201));
        }
    }

    // SIGKILL of shard root's leader.
    let ids = s.one.ids();
    let leader = block_on(s.one.wait_leader(&ids, Duration::from_secs(30)));
    s.one.kill(leader);
    let killed = Instant::now();
    let mut b_failures = 0;
    let mut b_reads = 0;
    let mut a_back = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let (code, _) =
            block_on(admin.call("GET", &format!("{}/before-0", path("root:b")), Value::Null));
        b_reads += 1;
        if code != 200 {
            b_failures += 1;
        }
        if a_back.is_none() {
            let (code, _) = block_on(admin.call("POST", &path("root:a"), cm("after-kill")));
            if code == 201 {
                a_back = Some(killed.elapsed());
            }
        }
        if a_back.is_some() && b_reads >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        b_failures, 0,
        "shard two's workspace failed {b_failures} of {b_reads} reads while root's leader was gone"
    );
    let back = a_back.expect("root:a took a write again after the election");
    eprintln!("root:a writable again {back:?} after its shard's leader was killed");
    for i in 0..5 {
        block_on(admin.must(
            "GET",
            &format!("{}/before-{i}", path("root:a")),
            Value::Null,
            200,
        ));
    }
    s.one.spawn(leader).unwrap();

    // All three replicas of shard two stopped.
    for id in s.two.ids() {
        s.two.kill(id);
    }
    block_on(async {
        let resp = admin
            .send("GET", &path("root:b"), "application/json", Vec::new(), None)
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            503,
            "shard two's workspace with shard two down"
        );
        assert!(
            resp.headers().get("retry-after").is_some(),
            "{:?}",
            resp.headers()
        );
        admin.must("GET", &path("root:a"), Value::Null, 200).await;
        admin
            .must("POST", &path("root:a"), cm("while-two-is-down"), 201)
            .await;
    });
    for id in s.two.ids() {
        s.two.spawn(id).unwrap();
    }
    s.until("root:b answers again", Duration::from_secs(60), || {
        block_on(admin.call("GET", &format!("{}/before-4", path("root:b")), Value::Null)).0 == 200
    });
    block_on(admin.must("POST", &path("root:b"), cm("after-restart"), 201));
    let list = block_on(admin.must("GET", &path("root:b"), Value::Null, 200));
    assert_eq!(list["items"].as_array().unwrap().len(), 6, "{list}");
}

/// TMC across shards: clusters registered in a location workspace on
/// shard root, a tenant on shard two whose placement uses them. Its
/// Deployment reaches both member clusters (the syncer on two read the
/// clusters' credentials from root), its status comes back, and deleting
/// it cleans up; a user who may not use the location gets no decision
/// until granted there.
#[test]
fn a_tenant_on_one_shard_places_onto_clusters_registered_on_another() {
    use tmc::controllers::sync::mapping::downstream_namespace;
    use tmc::testcluster::members::{eventually, TestEnv};
    let env = TestEnv::shared();
    let s = Shards::start_with(tmc::testcluster::FAST_CONTROLLERS);
    let us = json!({"location": {"selector": {"matchLabels": {"region": "us"}}}});
    let eu = json!({"location": {"selector": {"matchLabels": {"region": "eu"}}}});
    assert_eq!(s.workspace_with("loc", us), "root");
    assert_eq!(s.workspace_with("tenant", eu), "two");
    let server = s.proxy.server();
    let admin_root = s.one.kubeconfig_at(&server, "root");
    for (i, name) in ["east", "west"].iter().enumerate() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tmc"))
            .args(["cluster", "register", name, "--workspace", "root:loc"])
            .arg("--kubeconfig")
            .arg(env.kubeconfig(i))
            .arg("--admin-kubeconfig")
            .arg(&admin_root)
            .args(["--label", "pool=stable"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmc cluster register {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let admin = s.admin();
    let bob = s.bob();
    let placement = |name: &str| {
        json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
               "metadata": {"name": name},
               "spec": {"workloadSelector": {"matchLabels": {"app": name}},
                        "locationWorkspace": "root:loc",
                        "clusterSelector": {"matchLabels": {"pool": "stable"}},
                        "strategy": {"type": "Spread", "clusters": 2}}})
    };
    let deployment = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "labels": {"app": name}},
               "spec": {"replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    };
    let t = "/clusters/root:tenant";
    let wps = format!("{t}/apis/tmc.kcp.io/v1alpha1/workloadplacements");
    let deps = format!("{t}/apis/apps/v1/namespaces/default/deployments");
    block_on(async {
        let members = env.clients().await;
        // bob is admin of the tenant workspace, and may not use root:loc.
        admin
            .must(
                "POST",
                &format!("{t}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
                bob_admin(),
                201,
            )
            .await;
        admin.must("POST", &wps, placement("web"), 201).await;
        admin.must("POST", &deps, deployment("web"), 201).await;
        let ns = downstream_namespace(
            &tmc::store::Workspace::parse("root:tenant").unwrap(),
            "default",
        );
        for (i, m) in members.iter().enumerate() {
            let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                m.clone(),
                &ns,
                &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                    "apps",
                    "v1",
                    "Deployment",
                )),
            );
            eventually(
                &format!("web on member {i}"),
                Duration::from_secs(90),
                || async { api.get("web").await.map(|_| ()).map_err(|e| e.to_string()) },
            )
            .await;
        }
        // Status comes back: both clusters' replicas, summed.
        eventually(
            "web's status from both clusters",
            Duration::from_secs(120),
            || async {
                let (code, v) = admin.call("GET", &format!("{deps}/web"), Value::Null).await;
                if code == 200 && v["status"]["replicas"] == 2 {
                    Ok(())
                } else {
                    Err(format!("{code} status {}", v["status"]))
                }
            },
        )
        .await;
        let wp = admin
            .must("GET", &format!("{wps}/web"), Value::Null, 200)
            .await;
        let picked: Vec<&str> = wp["status"]["selectedClusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(picked.len(), 2, "{wp}");

        // bob's own placement: he may not use root:loc (its RBAC, read
        // from shard root, says so), so it gets no clusters.
        bob.must("POST", &wps, placement("bobs"), 201).await;
        eventually(
            "bob's placement is refused its location",
            Duration::from_secs(60),
            || async {
                let (_, v) = bob.call("GET", &format!("{wps}/bobs"), Value::Null).await;
                let refused = v["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "LocationNotFound"));
                if refused {
                    Ok(())
                } else {
                    Err(format!("{}", v["status"]))
                }
            },
        )
        .await;
        // Granted `use` there, it is scheduled.
        admin
            .must(
                "POST",
                "/clusters/root:loc/apis/rbac.authorization.k8s.io/v1/clusterroles",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                       "metadata": {"name": "use-clusters"},
                       "rules": [{"verbs": ["use"], "apiGroups": ["tmc.kcp.io"], "resources": ["clusterregistrations"]}]}),
                201,
            )
            .await;
        admin
            .must(
                "POST",
                "/clusters/root:loc/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": "bob-uses"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-clusters"},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
                201,
            )
            .await;
        eventually(
            "bob's placement is scheduled once he may use the location",
            Duration::from_secs(60),
            || async {
                let (_, v) = bob.call("GET", &format!("{wps}/bobs"), Value::Null).await;
                let n = v["status"]["selectedClusters"]
                    .as_array()
                    .map_or(0, |a| a.len());
                if n == 2 {
                    Ok(())
                } else {
                    Err(format!("{}", v["status"]))
                }
            },
        )
        .await;

        // Delete: the copies go.
        admin
            .must("DELETE", &format!("{deps}/web"), Value::Null, 200)
            .await;
        for (i, m) in members.iter().enumerate() {
            let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                m.clone(),
                &ns,
                &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                    "apps",
                    "v1",
                    "Deployment",
                )),
            );
            eventually(
                &format!("web gone from member {i}"),
                Duration::from_secs(90),
                || async {
                    match api.get("web").await {
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Ok(_) => Err("still there".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                },
            )
            .await;
        }
    });
}
