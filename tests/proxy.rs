//! `tmc proxy` in front of a three-node shard (mutual TLS everywhere):
//! kubectl and a raw client work through it, watches stream through it,
//! and the request-header identity it passes on cannot be forged, by a
//! client of the proxy or by anyone who talks to a shard directly.

use serde_json::{json, Value};
use std::time::Duration;
use tmc::testcluster::members::kubectl_ok;
use tmc::testcluster::proxy::ProxyProcess;
use tmc::testcluster::{block_on, ApiClient, TestCluster};

const BOB: &str = "tok-bob-0123456789";

/// Starts `tmc proxy` in front of `c` (root shard: node 1's API).
fn start_proxy(c: &TestCluster) -> ProxyProcess {
    c.start_proxy(1, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a user does, through the proxy: kubectl, raw requests, a
/// watch; and what the proxy refuses.
#[test]
fn kubectl_and_watches_work_through_the_proxy_and_unknown_or_wildcard_paths_are_refused() {
    let c = TestCluster::start_with_tokens(&format!("{BOB},bob,bob-uid\n"));
    c.wait_ready(1);
    let front = start_proxy(&c);
    let server = front.server();
    let kc = c.kubeconfig_at(&server, "root");

    // kubectl: a workspace, then objects in it, all through the proxy.
    kubectl_ok(
        &kc,
        &["apply", "-f", "-"],
        Some("apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata: {name: acme}\n"),
    );
    let kc_acme = c.kubeconfig_at(&server, "root:acme");
    // The workspace exists once its create was acknowledged.
    kubectl_ok(&kc_acme, &["create", "namespace", "app"], None);
    kubectl_ok(
        &kc_acme,
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
        &kc_acme,
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
    assert_eq!(got, "v");
    // The same object straight from a shard replica: the proxy wrote
    // where the shard keeps it.
    let direct = c.api_client(2);
    let v = block_on(direct.must(
        "GET",
        "/clusters/root:acme/api/v1/namespaces/app/configmaps/cfg",
        Value::Null,
        200,
    ));
    assert_eq!(v["data"]["k"], "v");

    block_on(async {
        let admin = ApiClient::new(front.port, &c.tls_dir().join("ca.crt"))
            .unwrap()
            .bearer(&c.token());
        // A watch streams through the proxy.
        let list = admin
            .must(
                "GET",
                "/clusters/root:acme/api/v1/namespaces/app/configmaps",
                Value::Null,
                200,
            )
            .await;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut w = admin
            .watch(&format!(
                "/clusters/root:acme/api/v1/namespaces/app/configmaps?watch=1&resourceVersion={rv}"
            ))
            .await;
        admin
            .must(
                "POST",
                "/clusters/root:acme/api/v1/namespaces/app/configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "watched"}, "data": {"a": "b"}}),
                201,
            )
            .await;
        let ev = w
            .next(Duration::from_secs(20))
            .await
            .expect("an event through the proxy");
        assert_eq!(ev["type"], "ADDED", "{ev}");
        assert_eq!(ev["object"]["metadata"]["name"], "watched", "{ev}");

        // Paths outside a workspace go to the root shard.
        let v = admin.must("GET", "/version", Value::Null, 200).await;
        assert!(v["gitVersion"].as_str().unwrap().contains("tmc"), "{v}");

        // A workspace that does not exist: 403, as kcp's front proxy.
        let (code, v) = admin
            .call("GET", "/clusters/root:nope/api/v1/namespaces", Value::Null)
            .await;
        assert_eq!(code, 403, "{v}");
        let (code, v) = admin
            .call(
                "GET",
                "/clusters/root:acme:deeper:still/api/v1/namespaces",
                Value::Null,
            )
            .await;
        assert_eq!(code, 403, "{v}");
        // Wildcards span shards: refused with a message saying so.
        let (code, v) = admin
            .call("GET", "/clusters/*/api/v1/configmaps", Value::Null)
            .await;
        assert_eq!(code, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains("wildcard"), "{v}");
        // Malformed paths are refused before anything is resolved.
        for bad in [
            "/clusters/root:acme/../root/api/v1/secrets",
            "/clusters/root:acme%2F..%2Froot/api/v1/namespaces",
            "/clusters/Root/api/v1/namespaces",
        ] {
            let (code, v) = admin.call("GET", bad, Value::Null).await;
            assert!(code == 400 || code == 404, "{bad}: {code} {v}");
        }
        // No credentials: 401 from the proxy itself.
        let anon = ApiClient::new(front.port, &c.tls_dir().join("ca.crt")).unwrap();
        let (code, _) = anon
            .call("GET", "/clusters/root/api/v1/namespaces", Value::Null)
            .await;
        assert_eq!(code, 401);
    });
}

/// The identity the proxy passes on: the shard decides as the user, a
/// client cannot name another user to the proxy, and nobody but the proxy
/// can name a user to a shard.
#[test]
fn request_headers_are_believed_only_from_the_proxy() {
    let c = TestCluster::start_with_tokens(&format!("{BOB},bob,bob-uid\n"));
    c.wait_ready(1);
    let front = start_proxy(&c);
    let ca = c.tls_dir().join("ca.crt");
    let mut failures = Vec::new();
    let mut check = |row: &str, got: (u16, Value), want: u16| {
        if got.0 != want {
            failures.push(format!("{row}: want {want}, got {} {}", got.0, got.1));
        }
    };
    block_on(async {
        let bob = ApiClient::new(front.port, &ca).unwrap().bearer(BOB);
        // bob may do nothing in root: the shard decides as bob, not as
        // the proxy.
        check(
            "bob lists root's secrets through the proxy",
            bob.call(
                "GET",
                "/clusters/root/api/v1/namespaces/default/secrets",
                Value::Null,
            )
            .await,
            403,
        );
        let v = bob
            .must(
                "POST",
                "/clusters/root/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                       "spec": {"resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}}),
                201,
            )
            .await;
        assert_eq!(v["status"]["allowed"], false, "{v}");

        // A client of the proxy naming a user or group: refused.
        for (h, val) in [
            ("X-Remote-User", "admin"),
            ("X-Remote-Group", "system:masters"),
            ("X-Remote-Extra-Scopes", "all"),
        ] {
            let c2 = bob.clone();
            let resp = send_with(
                &c2,
                "/clusters/root/api/v1/namespaces/default/secrets",
                &[(h, val)],
            )
            .await;
            check(&format!("bob sends {h} to the proxy"), resp, 401);
        }

        // Straight to a shard: the same headers from a user's token or a
        // user's certificate are refused; a user certificate that merely
        // calls itself the proxy is refused; the proxy's certificate with
        // no user header is refused.
        let shard_admin = c.api_client(1);
        check(
            "admin token with X-Remote-User straight to a shard",
            send_with(
                &shard_admin,
                "/clusters/root/api/v1/namespaces",
                &[("X-Remote-User", "someone")],
            )
            .await,
            401,
        );
        let tls = tmc::api::tls::TlsFiles::new(&c.tls_dir());
        let fake = tmc::api::tls::issue_client_cert(
            &tls,
            tmc::api::tls::FRONT_PROXY_NAME,
            &["system:masters".to_string()],
            None,
        )
        .unwrap();
        let fake_proxy = c
            .anonymous_client(1)
            .client_cert(&fake.cert_pem, &fake.key_pem)
            .unwrap();
        check(
            "a users'-CA certificate named like the proxy, with X-Remote-User",
            send_with(
                &fake_proxy,
                "/clusters/root/api/v1/namespaces/default/secrets",
                &[
                    ("X-Remote-User", "admin"),
                    ("X-Remote-Group", "system:masters"),
                ],
            )
            .await,
            401,
        );
        let cert = std::fs::read_to_string(tls.front_proxy_cert()).unwrap();
        let key = std::fs::read_to_string(tls.front_proxy_key()).unwrap();
        let real_proxy = c.anonymous_client(2).client_cert(&cert, &key).unwrap();
        check(
            "the proxy's certificate without X-Remote-User",
            real_proxy
                .call("GET", "/clusters/root/api/v1/namespaces", Value::Null)
                .await,
            401,
        );
        check(
            "the proxy's certificate with two X-Remote-User headers",
            send_with(
                &real_proxy,
                "/clusters/root/api/v1/namespaces",
                &[("X-Remote-User", "bob"), ("X-Remote-User", "admin")],
            )
            .await,
            401,
        );
        // And the positive row: the proxy's certificate naming bob is
        // bob (403 on root's secrets), naming a master is a master.
        check(
            "the proxy's certificate naming bob",
            send_with(
                &real_proxy,
                "/clusters/root/api/v1/namespaces/default/secrets",
                &[("X-Remote-User", "bob")],
            )
            .await,
            403,
        );
        check(
            "the proxy's certificate naming a master",
            send_with(
                &real_proxy,
                "/clusters/root/api/v1/namespaces/default/secrets",
                &[
                    ("X-Remote-User", "ops"),
                    ("X-Remote-Group", "system:masters"),
                ],
            )
            .await,
            200,
        );
    });
    assert!(
        failures.is_empty(),
        "failing rows:\n{}",
        failures.join("\n")
    );
}

/// A shard that cannot answer: 503 with Retry-After through the proxy, and
/// the proxy's `/readyz` follows its root shard's.
#[test]
fn a_shard_that_is_down_answers_503_with_retry_after_through_the_proxy() {
    let mut c = TestCluster::start();
    c.wait_ready(1);
    let front = start_proxy(&c);
    let admin = ApiClient::new(front.port, &c.tls_dir().join("ca.crt"))
        .unwrap()
        .bearer(&c.token());
    block_on(admin.must("GET", "/clusters/root/api/v1/namespaces", Value::Null, 200));
    let anon = ApiClient::new(front.port, &c.tls_dir().join("ca.crt")).unwrap();
    let (code, body) = block_on(anon.call("GET", "/readyz", Value::Null));
    assert_eq!(code, 200, "{body}");
    for id in c.ids() {
        c.kill(id);
    }
    // Not ready without its root shard, and it says why.
    let (code, body) = block_on(anon.call("GET", "/readyz", Value::Null));
    assert_eq!(code, 503, "{body}");
    assert!(body.to_string().contains("root shard"), "{body}");
    block_on(async {
        let resp = admin
            .send(
                "GET",
                "/clusters/root/api/v1/namespaces",
                "application/json",
                Vec::new(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let (_, body) = tmc::testcluster::collect(resp).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["reason"], "ServiceUnavailable", "{v}");
        assert!(v["message"].as_str().unwrap().contains("root"), "{v}");
    });
}

/// A GET with extra headers; status and JSON body.
async fn send_with(c: &ApiClient, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    c.call_with_headers("GET", path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The official Python client's whole script and kube-rs, through the
/// proxy.
#[test]
fn the_python_client_and_kube_rs_work_through_the_proxy() {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
    let c = TestCluster::start();
    c.wait_ready(1);
    let front = start_proxy(&c);
    let server = front.server();
    let root = c.kubeconfig_at(&server, "root");
    let acme = c.kubeconfig_at(&server, "root:acme");
    let out = tmc::testcluster::python::run_api_client(&root, &acme);
    eprintln!("{out}");

    block_on(async {
        let client = tmc::testcluster::members::kube_client(&acme).await.unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "from-kube-rs"}, "data": {"k": "1"}
        }))
        .unwrap();
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        let rv = created.metadata.resource_version.clone().unwrap();
        let got = cms.get("from-kube-rs").await.unwrap();
        assert_eq!(got.data.unwrap()["k"], "1");
        let names: Vec<String> = cms
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert!(names.contains(&"from-kube-rs".to_string()), "{names:?}");
        let mut events = cms
            .watch(&WatchParams::default().timeout(30), &rv)
            .await
            .unwrap()
            .boxed();
        cms.patch(
            "from-kube-rs",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream is open")
            .unwrap();
        match ev {
            WatchEvent::Modified(cm) => assert_eq!(cm.data.unwrap()["k"], "2"),
            other => panic!("{other:?}"),
        }
    });
}
