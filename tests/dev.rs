//! `tmc dev` as a user runs it: a real process on loopback that runs a
//! one-node shard, serves the Kubernetes API over HTTPS, writes an admin
//! kubeconfig that kubectl uses as is; a second one on the same data
//! directory is refused with a clear error; `/readyz` says ok only when a
//! write goes through.

use std::process::Command;
use std::time::Duration;
use tmc::testcluster::dev::Dev;

fn start(data: &std::path::Path, extra: &[&str]) -> (Dev, String) {
    Dev::start(data, extra)
}

#[test]
fn dev_serves_the_api_and_guards_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tmc");
    let metrics_port = tmc::testcluster::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let (_dev, url) = start(&data, &["--metrics-listen", &metrics_addr]);
    let kc = data.join("admin.kubeconfig");
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(
        text.contains(&format!("server: {url}/clusters/root")),
        "{text}"
    );
    let kubectl = tmc::testcluster::members::kubectl_binary();
    let run = |args: &[&str]| tmc::testcluster::members::kubectl_with(&kubectl, &kc, args, None);
    let (ok, out, err) = run(&["get", "--raw", "/livez"]);
    assert!(ok, "/livez: {err}");
    assert_eq!(out.trim(), "ok");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = run(&["get", "--raw", "/readyz"]);
        if ok {
            assert_eq!(out.trim(), "ok");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The one-node shard elects itself and bootstraps `default`.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = run(&["get", "namespaces", "-o", "name"]);
        if ok && out.trim() == "namespace/default" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no default namespace: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its metrics: a leader, the requests above, its disk.
    let page = tmc::testcluster::block_on(async {
        reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await?
            .text()
            .await
    })
    .expect("/metrics");
    for line in ["tmc_raft_is_leader 1", "tmc_raft_voters 1"] {
        assert!(page.lines().any(|l| l == line), "no {line}:\n{page}");
    }
    assert!(
        page.contains(
            "apiserver_request_total{verb=\"list\",resource=\"namespaces\",code=\"200\"}"
        ),
        "{page}"
    );
    assert!(!page.contains("tmc_store_disk_bytes 0\n"), "{page}");
    // Without the token: 401.
    let (ok, _, err) = run(&["get", "namespaces", "--token", "wrong"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    assert!(
        data.join("shard").join("CURRENT").exists(),
        "RocksDB lives under the data dir"
    );

    // A second node on the same data directory must not open it.
    let out = Command::new(env!("CARGO_BIN_EXE_tmc"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lock"),
        "the error says the store is locked: {stderr}"
    );
}

/// A script that waits for `/readyz` and then writes must succeed: ready
/// means the one-node shard has a leader (it campaigns at once, without
/// waiting for an election timeout), has applied what is committed, and
/// root's `default` namespace exists.
#[test]
fn dev_is_ready_only_when_a_write_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tmc");
    let (_dev, _url) = start(&data, &[]);
    let kc = data.join("admin.kubeconfig");
    let kubectl = tmc::testcluster::members::kubectl_binary();
    let run = |args: &[&str]| tmc::testcluster::members::kubectl_with(&kubectl, &kc, args, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut polls = 0;
    loop {
        polls += 1;
        let (ok, _, err) = run(&["get", "--raw", "/readyz"]);
        if ok {
            break;
        }
        assert!(
            err.contains("not ready") || err.contains("ServiceUnavailable") || err.contains("503"),
            "not ready says why: {err}"
        );
        assert!(std::time::Instant::now() < deadline, "never ready: {err}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // At once, no retry.
    let (ok, out, err) = run(&["create", "configmap", "ready-now", "--from-literal=a=b"]);
    assert!(
        ok,
        "a write right after ready (after {polls} polls): {out}{err}"
    );
}

/// `tmc dev --no-controllers` still finishes a namespace delete (the
/// lifecycle controller always runs): `kubectl delete namespace` returns
/// once the namespace and its objects are gone, as against kube-apiserver.
#[test]
fn dev_without_controllers_finishes_a_namespace_delete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tmc");
    let (_dev, _url) = start(&data, &["--no-controllers"]);
    let kc = data.join("admin.kubeconfig");
    let kubectl = tmc::testcluster::members::kubectl_binary();
    let run = |args: &[&str]| tmc::testcluster::members::kubectl_with(&kubectl, &kc, args, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !run(&["get", "--raw", "/readyz"]).0 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, err) = run(&["create", "namespace", "scratch"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "create",
        "configmap",
        "c",
        "-n",
        "scratch",
        "--from-literal=k=v",
    ]);
    assert!(ok, "{err}");
    // kubectl waits for the namespace to be gone (bounded).
    let (ok, out, err) = run(&["delete", "namespace", "scratch", "--timeout=60s"]);
    assert!(ok, "delete: {out}{err}");
    let (ok, _, err) = run(&["get", "namespace", "scratch"]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    // A namespace of the same name starts empty.
    let (ok, _, err) = run(&["create", "namespace", "scratch"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["get", "configmaps", "-n", "scratch", "-o", "name"]);
    assert!(ok && out.trim().is_empty(), "{out}{err}");
}

/// `tmc dev --shards 2`: two shards and the front proxy in one process;
/// the admin kubeconfig points at the proxy, workspaces land on both
/// shards, each is usable and a nested one resolves across them.
#[test]
fn dev_with_two_shards_serves_both_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tmc");
    let (_dev, url) = start(&data, &["--shards", "2"]);
    let kc = data.join("admin.kubeconfig");
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(
        text.contains(&format!("server: {url}/clusters/root")),
        "{text}"
    );
    let kubectl = tmc::testcluster::members::kubectl_binary();
    let run = |args: &[&str], stdin: Option<&str>| {
        tmc::testcluster::members::kubectl_with(&kubectl, &kc, args, stdin)
    };
    // Both shards registered before the first workspace spreads.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = run(&["get", "shards.core.kcp.io", "-o", "name"], None);
        if ok && out.lines().count() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "registry: {out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut shards = Vec::new();
    for w in ["a", "b"] {
        let yaml = format!(
            "apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {w}}}\n"
        );
        let (ok, out, err) = run(
            &["create", "-f", "-", "-o", "jsonpath={.spec.shard}"],
            Some(&yaml),
        );
        assert!(ok, "create {w}: {out}{err}");
        shards.push(out);
        // The count the scheduler reads is reported every 2 s.
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(shards, ["root", "shard2"]);
    for w in ["root:a", "root:b"] {
        let server = format!("{url}/clusters/{w}");
        let (ok, out, err) = run(
            &[
                "--server",
                &server,
                "create",
                "configmap",
                "c",
                "--from-literal=k=v",
            ],
            None,
        );
        assert!(ok, "{w}: {out}{err}");
        let (ok, out, err) = run(
            &[
                "--server",
                &server,
                "get",
                "configmap",
                "c",
                "-o",
                "jsonpath={.data.k}",
            ],
            None,
        );
        assert!(ok && out == "v", "{w}: {out}{err}");
    }
}

/// SIGTERM (what the kubelet sends a pod) stops `tmc dev`, one shard or
/// several behind the front proxy, and it exits cleanly.
#[test]
fn sigterm_stops_dev_with_one_shard_or_two_behind_the_proxy() {
    for shards in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (mut dev, url) = start(&data, &["--shards", shards]);
        // Once it serves (as a kubelet signals a pod that ran).
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let api = tmc::testcluster::ApiClient::new(port, &data.join("ca.crt")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tmc::testcluster::block_on(api.call("GET", "/readyz", serde_json::Value::Null)).0
            != 200
        {
            assert!(std::time::Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = dev
            .terminate(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("--shards {shards}: still running 30 s after SIGTERM"));
        assert!(status.success(), "--shards {shards}: {status:?}");
    }
}
