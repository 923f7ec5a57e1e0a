//! kube-apiserver semantics, one row per rule: the request and the exact
//! status code, reason and body facts expected, against a three-node
//! shard (through a follower-or-leader node chosen at random by startup
//! order; writes are forwarded either way). Requests go through kube-rs's
//! client (TLS, token), raw, so nothing is hidden by a typed layer.

mod common;

use common::shard::Shard;
use http_body_util::BodyExt;
use serde_json::{json, Value};

/// What a row expects: the status code and the `reason` of the Status
/// (None for success bodies).
enum Want {
    Code(u16, Option<&'static str>),
}

/// A raw HTTPS/1.1 client (hyper over rustls, the server's CA, the admin
/// token): one connection per request, every status and body as sent.
struct Api {
    addr: String,
    prefix: String,
    token: Option<String>,
    tls: tokio_rustls::TlsConnector,
}

impl Api {
    fn new(s: &Shard, node: u64, workspace: &str, with_token: bool) -> Api {
        use rustls::pki_types::pem::PemObject;
        let ca =
            rustls::pki_types::CertificateDer::from_pem_file(s.tls_dir().join("ca.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Api {
            addr: s.server(node).trim_start_matches("https://").to_string(),
            prefix: format!("/clusters/{workspace}"),
            token: with_token.then(|| s.token()),
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)),
        }
    }

    async fn call(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = self.tls.connect(name, tcp).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("host", &self.addr)
            .header("content-type", ct);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (code, v)
    }

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
        let (code, v) = self.call(method, path, ct, raw).await;
        let Want::Code(want_code, want_reason) = want;
        assert_eq!(code, want_code, "{rule}: {method} {path} answered {v}");
        if let Some(reason) = want_reason {
            assert_eq!(v["kind"], "Status", "{rule}: {v}");
            assert_eq!(v["reason"], reason, "{rule}: {v}");
            assert_eq!(v["code"], want_code, "{rule}: {v}");
        }
        v
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
    let s = Shard::start();
    let api = Api::new(&s, 3, "root", true);
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
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(v["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(v["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
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
    assert_eq!(
        v["details"],
        json!({"name": "a", "group": "", "kind": "configmaps"})
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
    assert_eq!(v["message"], "configmaps \"zzz\" not found");
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
        assert_eq!(names(&v), want, "labelSelector {sel}");
        assert_eq!(v["kind"], "ConfigMapList");
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
    assert_eq!(names(&v), vec!["b"]);
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
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
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
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
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
    assert_eq!(
        p2["metadata"]["resourceVersion"].as_str().unwrap(),
        rv1,
        "pages share one revision"
    );
    assert_eq!(
        p1["items"].as_array().unwrap().len() + p2["items"].as_array().unwrap().len(),
        4,
        "d is not in the paged list"
    );
    assert!(p2["metadata"].get("continue").is_none());
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
    assert!(!names(&v).contains(&"d".to_string()));
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
    assert!(names(&v).contains(&"d".to_string()));
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
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));
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
    assert_eq!(
        noop["metadata"]["resourceVersion"],
        same["metadata"]["resourceVersion"]
    );
    assert!(
        a_rv < same["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    );

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
    assert_eq!(v["data"], json!({"k": "v", "n": "1"}));
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
    assert_eq!(v["data"], json!({"k": "v"}));
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
    assert_eq!(v["details"]["causes"][0]["field"], "spec.strategy", "{v}");
    assert_eq!(
        v["details"]["causes"][0]["reason"], "FieldValueRequired",
        "{v}"
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
    assert_eq!(v["metadata"]["managedFields"][0]["manager"], "alice");
    assert_eq!(v["metadata"]["managedFields"][0]["operation"], "Apply");
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
    assert!(v["message"].as_str().unwrap().contains("alice"), "{v}");
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
    assert_eq!(v["data"]["x"], "2");

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
    assert_eq!(
        (
            v["metadata"]["generation"].clone(),
            v.get("status").cloned()
        ),
        (json!(1), None)
    );
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
    assert_eq!(
        (
            v["spec"]["replicas"].clone(),
            v["status"]["replicas"].clone(),
            v["metadata"]["generation"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
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
    assert_eq!(
        (
            v["spec"]["replicas"].clone(),
            v["status"]["replicas"].clone(),
            v["metadata"]["generation"].clone()
        ),
        (json!(3), json!(1), json!(2))
    );
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
    assert_eq!(v["metadata"]["generation"], 2);
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
    assert!(v["metadata"]["deletionTimestamp"].is_string());
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
    assert_eq!(code, 200);
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
    assert_eq!(
        seen,
        vec![
            ("ADDED".into(), "w1".into()),
            ("MODIFIED".into(), "w1".into()),
            ("DELETED".into(), "w1".into())
        ],
        "watch resumed from {rv}"
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
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
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
    assert_eq!(
        anonymous_status(&s).await,
        401,
        "anonymous requests are refused"
    );
}

/// An anonymous request (no token) over TLS.
async fn anonymous_status(s: &Shard) -> u16 {
    Api::new(s, 3, "root", false)
        .call("GET", "/api/v1/namespaces", J, Vec::new())
        .await
        .0
}
