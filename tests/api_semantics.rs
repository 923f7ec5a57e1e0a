//! kube-apiserver semantics, one row per rule: the request and the exact
//! status code, reason and body facts expected, against a three-node
//! shard (through a follower-or-leader node chosen at random by startup
//! order; writes are forwarded either way). Requests are raw HTTPS (the
//! harness's client: TLS, token), so nothing is hidden by a typed layer.
//! A failing row does not stop the table: the test fails once at the end
//! and names every failing row and check.

use serde_json::{json, Value};
use std::sync::Mutex;
use tmc::testcluster::ApiClient;
use tmc::testcluster::TestCluster;

/// What a row expects: the status code and the `reason` of the Status
/// (None for success bodies).
enum Want {
    Code(u16, Option<&'static str>),
}

/// The table's runner: the harness's raw client (one connection per
/// request, every status and body as sent) for one workspace on one node,
/// and every failure so far. A row that fails does not stop the table:
/// [`Api::finish`] fails once, with every failing row (its rule, the
/// request, what was expected and what came); should something panic
/// before that, the failures so far are printed first.
struct Api {
    client: ApiClient,
    prefix: String,
    /// The rule of the last row, for the checks that follow it.
    last: Mutex<String>,
    failures: Mutex<Vec<String>>,
}

impl Api {
    fn new(client: ApiClient, workspace: &str) -> Api {
        Api {
            client,
            prefix: format!("/clusters/{workspace}"),
            last: Mutex::new(String::new()),
            failures: Mutex::new(Vec::new()),
        }
    }

    async fn call(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        self.try_call(method, path, ct, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        let path = format!("{}{path}", self.prefix);
        self.client.call_raw(method, &path, ct, body).await
    }

    /// Sends one row's request and checks the status code and, for a
    /// Status, its `kind`, `reason` and `code`; returns the body.
    async fn row(
        &self,
        rule: &str,
        method: &str,
        path: &str,
        ct: &str,
        body: Value,
        want: Want,
    ) -> Value {
        let raw = match &body {
            Value::Null => Vec::new(),
            Value::String(s) => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        };
        *self.last.lock().unwrap() = rule.to_string();
        let Want::Code(want_code, want_reason) = want;
        let (code, v) = match self.try_call(method, path, ct, raw).await {
            Ok(answer) => answer,
            Err(e) => {
                self.fail(format!(
                    "{rule}: {method} {path}: want {want_code} {}, got no answer: {e}",
                    want_reason.unwrap_or("")
                ));
                return Value::Null;
            }
        };
        let status_ok = match want_reason {
            Some(reason) => {
                v["kind"] == "Status" && v["reason"] == reason && v["code"] == want_code
            }
            None => true,
        };
        if code != want_code || !status_ok {
            self.fail(format!(
                "{rule}: {method} {path}: want {want_code} {}, got {code}: {v}",
                want_reason.unwrap_or("")
            ));
        }
        v
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// A check of what the last row answered (or of what followed it).
    fn check(&self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            let last = self.last.lock().unwrap().clone();
            self.fail(format!("after \"{last}\": {what}"));
        }
    }

    /// [`Api::check`] of an equality: `got == want`.
    fn check_eq<A, B>(&self, got: A, want: B, what: impl std::fmt::Display)
    where
        A: PartialEq<B> + std::fmt::Debug,
        B: std::fmt::Debug,
    {
        let ok = got == want;
        self.check(ok, format_args!("{what}: got {got:?}, want {want:?}"));
    }

    /// Fails the test with every failure, if there was one.
    fn finish(&self) {
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        assert!(
            failures.is_empty(),
            "{} failing rows:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let failures = self.failures.lock().unwrap();
        if std::thread::panicking() && !failures.is_empty() {
            eprintln!("{} failing rows before the panic:", failures.len());
            for f in failures.iter() {
                eprintln!("{f}");
            }
        }
    }
}

const J: &str = "application/json";
const NS: &str = "/api/v1/namespaces/sem/configmaps";

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_semantics_table() {
    let s = TestCluster::start();
    let api = Api::new(s.api_client(3), "root");
    let ok = |c| Want::Code(c, None);
    let st = |c, r| Want::Code(c, Some(r));

    api.row(
        "setup",
        "POST",
        "/api/v1/namespaces",
        J,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sem"}}),
        ok(201),
    )
    .await;

    // --- create
    let v = api
        .row(
            "generateName gets a suffix",
            "POST",
            NS,
            J,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
            ok(201),
        )
        .await;
    let name = v["metadata"]["name"].as_str().unwrap();
    api.check(
        name.starts_with("gen-") && name.len() == 9,
        format_args!("{name}"),
    );
    api.check(
        v["metadata"]["uid"].as_str().unwrap().len() == 36,
        "v[\"metadata\"][\"uid\"].as_str().unwrap().len() == 36",
    );
    api.check(
        v["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "v[\"metadata\"][\"creationTimestamp\"] .as_str() .unwrap() .ends_with('Z')",
    );
    api.check(
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0,
        "v[\"metadata\"][\"resourceVersion\"] .as_str() .unwrap() .parse::<u64>() .unwrap() > 0",
    );
    api.row(
        "create",
        "POST",
        NS,
        J,
        cm("a", json!({"tier": "web", "env": "prod"})),
        ok(201),
    )
    .await;
    api.row(
        "create",
        "POST",
        NS,
        J,
        cm("b", json!({"tier": "db"})),
        ok(201),
    )
    .await;
    api.row("create", "POST", NS, J, cm("c", json!({})), ok(201))
        .await;
    let v = api
        .row(
            "create of an existing name: AlreadyExists",
            "POST",
            NS,
            J,
            cm("a", json!({})),
            st(409, "AlreadyExists"),
        )
        .await;
    api.check_eq(
        &v["details"],
        &json!({"name": "a", "group": "", "kind": "configmaps"}),
        "v[\"details\"] == json!({{\"name\": \"a\", \"group\": \"\", \"kind\": \"configmaps\"}})",
    );
    api.row(
        "no name nor generateName: Invalid",
        "POST",
        NS,
        J,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        st(422, "Invalid"),
    )
    .await;
    api.row(
        "invalid name: Invalid",
        "POST",
        NS,
        J,
        cm("Not_Valid", json!({})),
        st(422, "Invalid"),
    )
    .await;
    api.row(
        "wrong kind: BadRequest",
        "POST",
        NS,
        J,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "wrong apiVersion: BadRequest",
        "POST",
        NS,
        J,
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        st(400, "BadRequest"),
    )
    .await;
    api.row("namespace in body differs from path: BadRequest", "POST", NS, J,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}), st(400, "BadRequest")).await;
    api.row(
        "malformed JSON: BadRequest",
        "POST",
        NS,
        J,
        json!("{\"apiVersion\":"),
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "namespace missing: NotFound",
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        J,
        cm("x", json!({})),
        st(404, "NotFound"),
    )
    .await;
    api.row(
        "protobuf body: UnsupportedMediaType",
        "POST",
        NS,
        "application/vnd.kubernetes.protobuf",
        json!("k8s\u{0}"),
        st(415, "UnsupportedMediaType"),
    )
    .await;
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x".repeat(3 * 1024 * 1024 + 10)}});
    api.row(
        "body over 3 MiB: RequestEntityTooLarge",
        "POST",
        NS,
        J,
        big,
        st(413, "RequestEntityTooLarge"),
    )
    .await;
    api.row(
        "nothing of the refused creates was stored",
        "GET",
        &format!("{NS}/x"),
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;

    // --- get
    let v = api
        .row(
            "get of a missing object: NotFound",
            "GET",
            &format!("{NS}/zzz"),
            J,
            Value::Null,
            st(404, "NotFound"),
        )
        .await;
    api.check_eq(
        &v["message"],
        "configmaps \"zzz\" not found",
        "v[\"message\"] == \"configmaps \\\"zzz\\\" not found\"",
    );
    let a = api
        .row("get", "GET", &format!("{NS}/a"), J, Value::Null, ok(200))
        .await;
    let a_rv: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    api.row(
        "get with resourceVersion=0 (local read)",
        "GET",
        &format!("{NS}/a?resourceVersion=0"),
        J,
        Value::Null,
        ok(200),
    )
    .await;

    // --- list with selectors
    for (sel, want) in [
        ("tier%3Dweb", vec!["a"]),
        ("tier%21%3Dweb", vec!["b", "c"]),
        ("tier%20in%20(web,db)", vec!["a", "b"]),
        ("tier%20notin%20(web)", vec!["b", "c"]),
        ("tier", vec!["a", "b"]),
        ("%21tier", vec!["c"]),
        ("tier%3Dweb,env%3Dprod", vec!["a"]),
    ] {
        let mut v = api
            .row(
                &format!("labelSelector {sel}"),
                "GET",
                &format!("{NS}?labelSelector={sel}"),
                J,
                Value::Null,
                ok(200),
            )
            .await;
        v["items"] = Value::Array(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| !i["metadata"]["name"].as_str().unwrap().starts_with("gen-"))
                .cloned()
                .collect(),
        );
        api.check_eq(&names(&v), &want, format_args!("labelSelector {sel}"));
        api.check_eq(
            &v["kind"],
            "ConfigMapList",
            "v[\"kind\"] == \"ConfigMapList\"",
        );
    }
    api.row(
        "invalid label selector: BadRequest",
        "GET",
        &format!("{NS}?labelSelector=a%20in%20b"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    let v = api
        .row(
            "fieldSelector metadata.name",
            "GET",
            &format!("{NS}?fieldSelector=metadata.name%3Db"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check_eq(&names(&v), &vec!["b"], "names(&v) == vec![\"b\"]");
    let v = api
        .row(
            "fieldSelector metadata.namespace across namespaces",
            "GET",
            "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dsem",
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check_eq(
        &v["items"].as_array().unwrap().len(),
        &4,
        "v[\"items\"].as_array().unwrap().len() == 4",
    );
    api.row(
        "unsupported field selector: BadRequest",
        "GET",
        &format!("{NS}?fieldSelector=spec.x%3D1"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;

    // --- pagination, consistent at one revision
    let p1 = api
        .row(
            "limit=2",
            "GET",
            &format!("{NS}?limit=2"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check_eq(
        &p1["items"].as_array().unwrap().len(),
        &2,
        "p1[\"items\"].as_array().unwrap().len() == 2",
    );
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    let rv1 = p1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.row(
        "a write between pages",
        "POST",
        NS,
        J,
        cm("d", json!({})),
        ok(201),
    )
    .await;
    let p2 = api
        .row(
            "continue",
            "GET",
            &format!("{NS}?limit=10&continue={token}"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check_eq(
        p2["metadata"]["resourceVersion"].as_str().unwrap(),
        &rv1,
        format_args!("pages share one revision"),
    );
    api.check_eq(
        &(p1["items"].as_array().unwrap().len() + p2["items"].as_array().unwrap().len()),
        &4,
        format_args!("d is not in the paged list"),
    );
    api.check(
        p2["metadata"].get("continue").is_none(),
        "p2[\"metadata\"].get(\"continue\").is_none()",
    );
    api.row(
        "continue with resourceVersion: BadRequest",
        "GET",
        &format!("{NS}?continue={token}&resourceVersion=5"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "garbage continue: BadRequest",
        "GET",
        &format!("{NS}?continue=garbage"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "continue of another list: BadRequest",
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?continue={token}"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;

    // --- resourceVersion / resourceVersionMatch
    api.row(
        "resourceVersionMatch without resourceVersion: BadRequest",
        "GET",
        &format!("{NS}?resourceVersionMatch=NotOlderThan"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "Exact with resourceVersion=0: BadRequest",
        "GET",
        &format!("{NS}?resourceVersion=0&resourceVersionMatch=Exact"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "bad resourceVersion: BadRequest",
        "GET",
        &format!("{NS}?resourceVersion=abc"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    let v = api
        .row(
            "Exact at an older revision lists the past",
            "GET",
            &format!("{NS}?resourceVersion={rv1}&resourceVersionMatch=Exact"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check(
        !names(&v).contains(&"d".to_string()),
        "!names(&v).contains(&\"d\".to_string())",
    );
    let v = api
        .row(
            "NotOlderThan",
            "GET",
            &format!("{NS}?resourceVersion={rv1}&resourceVersionMatch=NotOlderThan"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check(
        names(&v).contains(&"d".to_string()),
        "names(&v).contains(&\"d\".to_string())",
    );
    api.row(
        "a resourceVersion in the future: Timeout",
        "GET",
        &format!("{NS}?resourceVersion=999999999&resourceVersionMatch=NotOlderThan"),
        J,
        Value::Null,
        st(504, "Timeout"),
    )
    .await;

    // --- update with optimistic concurrency
    let mut upd = a.clone();
    upd["data"]["k"] = json!("v2");
    api.row(
        "update at the current resourceVersion",
        "PUT",
        &format!("{NS}/a"),
        J,
        upd.clone(),
        ok(200),
    )
    .await;
    let v = api
        .row(
            "update at a stale resourceVersion: Conflict",
            "PUT",
            &format!("{NS}/a"),
            J,
            upd.clone(),
            st(409, "Conflict"),
        )
        .await;
    api.check(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "v[\"message\"] .as_str() .unwrap() .contains(\"the object has been modified\")",
    );
    upd["metadata"]["name"] = json!("other");
    api.row(
        "name in body differs from URL: BadRequest",
        "PUT",
        &format!("{NS}/a"),
        J,
        upd,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "update of a missing object: NotFound",
        "PUT",
        &format!("{NS}/ghost"),
        J,
        cm("ghost", json!({})),
        st(404, "NotFound"),
    )
    .await;
    let same = api
        .row("get", "GET", &format!("{NS}/a"), J, Value::Null, ok(200))
        .await;
    let noop = api
        .row(
            "an update that changes nothing keeps the revision",
            "PUT",
            &format!("{NS}/a"),
            J,
            same.clone(),
            ok(200),
        )
        .await;
    api.check_eq(
        &noop["metadata"]["resourceVersion"],
        &same["metadata"]["resourceVersion"],
        "noop[\"metadata\"][\"resourceVersion\"] == same[\"metadata\"][\"resourceVersion\"]",
    );
    api.check(a_rv < same["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(), "a_rv < same[\"metadata\"][\"resourceVersion\"] .as_str() .unwrap() .parse::<u64>() .unwrap()");

    // --- patch
    let v = api
        .row(
            "merge patch",
            "PATCH",
            &format!("{NS}/b"),
            "application/merge-patch+json",
            json!({"data": {"n": "1"}}),
            ok(200),
        )
        .await;
    api.check_eq(
        &v["data"],
        &json!({"k": "v", "n": "1"}),
        "v[\"data\"] == json!({{\"k\": \"v\", \"n\": \"1\"}})",
    );
    let v = api
        .row(
            "json patch",
            "PATCH",
            &format!("{NS}/b"),
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/data/n"}]),
            ok(200),
        )
        .await;
    api.check_eq(
        &v["data"],
        &json!({"k": "v"}),
        "v[\"data\"] == json!({{\"k\": \"v\"}})",
    );
    api.row(
        "json patch test fails: Invalid",
        "PATCH",
        &format!("{NS}/b"),
        "application/json-patch+json",
        json!([{"op": "test", "path": "/data/k", "value": "no"}]),
        st(422, "Invalid"),
    )
    .await;
    api.row(
        "patch with a stale resourceVersion: Conflict",
        "PATCH",
        &format!("{NS}/b"),
        "application/merge-patch+json",
        json!({"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}}),
        st(409, "Conflict"),
    )
    .await;
    api.row(
        "unknown patch type: UnsupportedMediaType",
        "PATCH",
        &format!("{NS}/b"),
        "text/plain",
        json!("x"),
        st(415, "UnsupportedMediaType"),
    )
    .await;
    api.row(
        "patch of a missing object: NotFound",
        "PATCH",
        &format!("{NS}/ghost"),
        "application/merge-patch+json",
        json!({}),
        st(404, "NotFound"),
    )
    .await;
    api.row(
        "strategic merge on a built-in kind",
        "PATCH",
        &format!("{NS}/b"),
        "application/strategic-merge-patch+json",
        json!({"data": {"s": "1"}}),
        ok(200),
    )
    .await;
    let wp = json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement", "metadata": {"name": "p"}, "spec": {"a": 1}});
    let v = api
        .row(
            "a WorkloadPlacement without spec.strategy: Invalid",
            "POST",
            "/apis/tmc.kcp.io/v1alpha1/workloadplacements",
            J,
            wp.clone(),
            st(422, "Invalid"),
        )
        .await;
    api.check_eq(
        &v["details"]["causes"][0]["field"],
        "spec.strategy",
        format_args!("{v}"),
    );
    api.check_eq(
        &v["details"]["causes"][0]["reason"],
        "FieldValueRequired",
        format_args!("{v}"),
    );
    let mut wp = wp;
    wp["spec"]["strategy"] = json!({"type": "Single"});
    api.row(
        "create a WorkloadPlacement",
        "POST",
        "/apis/tmc.kcp.io/v1alpha1/workloadplacements",
        J,
        wp,
        ok(201),
    )
    .await;
    let v = api
        .row(
            "a merge patch giving the placement an invalid selector operator: Invalid",
            "PATCH",
            "/apis/tmc.kcp.io/v1alpha1/workloadplacements/p",
            "application/merge-patch+json",
            json!({"spec": {"clusterSelector": {"matchExpressions": [
                {"key": "zone", "operator": "Near", "values": ["a"]}]}}}),
            st(422, "Invalid"),
        )
        .await;
    api.check_eq(
        &v["details"]["causes"][0]["field"],
        "spec.clusterSelector",
        format_args!("{v}"),
    );
    api.row(
        "strategic merge on a tmc kind: UnsupportedMediaType",
        "PATCH",
        "/apis/tmc.kcp.io/v1alpha1/workloadplacements/p",
        "application/strategic-merge-patch+json",
        json!({"spec": {}}),
        st(415, "UnsupportedMediaType"),
    )
    .await;

    // --- server-side apply
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": "sem"}, "data": {"x": "1"}});
    api.row(
        "apply without fieldManager: BadRequest",
        "PATCH",
        &format!("{NS}/ssa"),
        "application/apply-patch+yaml",
        applied.clone(),
        st(400, "BadRequest"),
    )
    .await;
    let v = api
        .row(
            "apply creates",
            "PATCH",
            &format!("{NS}/ssa?fieldManager=alice"),
            "application/apply-patch+yaml",
            applied.clone(),
            ok(201),
        )
        .await;
    api.check_eq(
        &v["metadata"]["managedFields"][0]["manager"],
        "alice",
        "v[\"metadata\"][\"managedFields\"][0][\"manager\"] == \"alice\"",
    );
    api.check_eq(
        &v["metadata"]["managedFields"][0]["operation"],
        "Apply",
        "v[\"metadata\"][\"managedFields\"][0][\"operation\"] == \"Apply\"",
    );
    let mut bob = applied.clone();
    bob["data"]["x"] = json!("2");
    let v = api
        .row(
            "apply of a field another manager owns: Conflict",
            "PATCH",
            &format!("{NS}/ssa?fieldManager=bob"),
            "application/apply-patch+yaml",
            bob.clone(),
            st(409, "Conflict"),
        )
        .await;
    api.check(
        v["message"].as_str().unwrap().contains("alice"),
        format_args!("{v}"),
    );
    let v = api
        .row(
            "force takes it over",
            "PATCH",
            &format!("{NS}/ssa?fieldManager=bob&force=true"),
            "application/apply-patch+yaml",
            bob,
            ok(200),
        )
        .await;
    api.check_eq(&v["data"]["x"], "2", "v[\"data\"][\"x\"] == \"2\"");

    // --- status subresource and generation
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 99}});
    let dp = "/apis/apps/v1/namespaces/sem/deployments";
    let v = api
        .row(
            "create drops status, generation 1",
            "POST",
            dp,
            J,
            dep,
            ok(201),
        )
        .await;
    api.check_eq(&(
            v["metadata"]["generation"].clone(),
            v.get("status").cloned()
        ), &(json!(1), None), "( v[\"metadata\"][\"generation\"].clone(), v.get(\"status\").cloned() ) == (json!(1), None)");
    let v = api
        .row(
            "status write changes status only",
            "PATCH",
            &format!("{dp}/d/status"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 5}, "status": {"replicas": 1}}),
            ok(200),
        )
        .await;
    api.check_eq(&(
            v["spec"]["replicas"].clone(),
            v["status"]["replicas"].clone(),
            v["metadata"]["generation"].clone()
        ), &(json!(1), json!(1), json!(1)), "( v[\"spec\"][\"replicas\"].clone(), v[\"status\"][\"replicas\"].clone(), v[\"metadata\"][\"generation\"].clone() ) == (json!(1), json!(1), json!(1))");
    let v = api
        .row(
            "spec write ignores status, bumps generation",
            "PATCH",
            &format!("{dp}/d"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}, "status": {"replicas": 7}}),
            ok(200),
        )
        .await;
    api.check_eq(&(
            v["spec"]["replicas"].clone(),
            v["status"]["replicas"].clone(),
            v["metadata"]["generation"].clone()
        ), &(json!(3), json!(1), json!(2)), "( v[\"spec\"][\"replicas\"].clone(), v[\"status\"][\"replicas\"].clone(), v[\"metadata\"][\"generation\"].clone() ) == (json!(3), json!(1), json!(2))");
    let v = api
        .row(
            "a metadata-only change keeps generation",
            "PATCH",
            &format!("{dp}/d"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"x": "y"}}}),
            ok(200),
        )
        .await;
    api.check_eq(
        &v["metadata"]["generation"],
        2,
        "v[\"metadata\"][\"generation\"] == 2",
    );
    api.row(
        "no status subresource on configmaps",
        "GET",
        &format!("{NS}/a/status"),
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;

    // --- delete with finalizers
    let fin = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fin", "finalizers": ["example.com/hold"]}});
    api.row("create with a finalizer", "POST", NS, J, fin, ok(201))
        .await;
    let v = api
        .row(
            "delete marks it",
            "DELETE",
            &format!("{NS}/fin"),
            J,
            Value::Null,
            ok(200),
        )
        .await;
    api.check(
        v["metadata"]["deletionTimestamp"].is_string(),
        "v[\"metadata\"][\"deletionTimestamp\"].is_string()",
    );
    api.row(
        "it is still there",
        "GET",
        &format!("{NS}/fin"),
        J,
        Value::Null,
        ok(200),
    )
    .await;
    api.row(
        "no new finalizers while deleting: Invalid",
        "PATCH",
        &format!("{NS}/fin"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": ["example.com/hold", "b"]}}),
        st(422, "Invalid"),
    )
    .await;
    api.row(
        "removing the last finalizer deletes it",
        "PATCH",
        &format!("{NS}/fin"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
        ok(200),
    )
    .await;
    api.row(
        "gone",
        "GET",
        &format!("{NS}/fin"),
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;
    api.row(
        "delete with a wrong uid precondition: Conflict",
        "DELETE",
        &format!("{NS}/c"),
        J,
        json!({"preconditions": {"uid": "nope"}}),
        st(409, "Conflict"),
    )
    .await;
    api.row(
        "dry-run delete keeps it",
        "DELETE",
        &format!("{NS}/c?dryRun=All"),
        J,
        Value::Null,
        ok(200),
    )
    .await;
    api.row(
        "delete",
        "DELETE",
        &format!("{NS}/c"),
        J,
        Value::Null,
        ok(200),
    )
    .await;
    api.row(
        "delete of a missing object: NotFound",
        "DELETE",
        &format!("{NS}/c"),
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;

    // --- watch: resume from a resourceVersion, timeoutSeconds, errors
    let now = api
        .row("list for a revision", "GET", NS, J, Value::Null, ok(200))
        .await;
    let rv = now["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.row(
        "create after the revision",
        "POST",
        NS,
        J,
        cm("w1", json!({})),
        ok(201),
    )
    .await;
    api.row(
        "update after the revision",
        "PATCH",
        &format!("{NS}/w1"),
        "application/merge-patch+json",
        json!({"data": {"k": "w"}}),
        ok(200),
    )
    .await;
    api.row(
        "delete after the revision",
        "DELETE",
        &format!("{NS}/w1"),
        J,
        Value::Null,
        ok(200),
    )
    .await;
    let (code, body) = api
        .call(
            "GET",
            &format!("{NS}?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
            J,
            Vec::new(),
        )
        .await;
    api.check_eq(&code, &200, "code == 200");
    let events: Vec<Value> = body
        .as_str()
        .map(|s| {
            s.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_else(|| vec![body.clone()]);
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    api.check_eq(
        &seen,
        &vec![
            ("ADDED".into(), "w1".into()),
            ("MODIFIED".into(), "w1".into()),
            ("DELETED".into(), "w1".into()),
        ],
        format_args!("watch resumed from {rv}"),
    );
    let revs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    api.check(
        revs.windows(2).all(|w| w[0] < w[1]),
        format_args!("{revs:?}"),
    );
    api.row(
        "watch with a bad resourceVersion: BadRequest",
        "GET",
        &format!("{NS}?watch=true&resourceVersion=x"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;
    api.row(
        "sendInitialEvents without NotOlderThan: BadRequest",
        "GET",
        &format!("{NS}?watch=true&sendInitialEvents=true"),
        J,
        Value::Null,
        st(400, "BadRequest"),
    )
    .await;

    // --- paths, workspaces, authentication
    api.row(
        "unknown resource: NotFound",
        "GET",
        "/api/v1/pods",
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;
    api.row(
        "unknown workspace: NotFound",
        "GET",
        "/clusters/root:nope/api/v1/configmaps",
        J,
        Value::Null,
        st(404, "NotFound"),
    )
    .await;
    api.check_eq(
        &anonymous_status(&s).await,
        &401,
        format_args!("anonymous requests are refused"),
    );
    api.finish();
}

/// An anonymous request (no token) over TLS.
async fn anonymous_status(s: &TestCluster) -> u16 {
    Api::new(s.anonymous_client(3), "root")
        .call("GET", "/api/v1/namespaces", J, Vec::new())
        .await
        .0
}
