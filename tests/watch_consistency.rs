//! Watch consistency on a three-node shard of real `tmc serve` processes,
//! with raw HTTPS clients:
//! - a watcher that stops reading while many writes happen is closed by
//!   the server, never skipped past: no bookmark passes an event it was
//!   not sent, and resuming from the last resourceVersion it saw (as
//!   client-go does) gives every change exactly once;
//! - resourceVersions in the future behave as kube-apiserver's watch
//!   cache: a get or list waits, then 504 Timeout with cause
//!   ResourceVersionTooLarge; a watch with sendInitialEvents does the
//!   same in an ERROR event; a plain watch starts after it;
//! - any `timeoutSeconds` is safe;
//! - a Secret whose encryption key one replica lacks fails only the
//!   requests that read it there: other tenants' watches go on, a get
//!   of it answers 500 naming the key, a watch that would deliver it ends
//!   with an ERROR event naming the key.

mod common {
    pub mod watch;
}

use common::watch::{kind_rv, rv_of};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tmc::testcluster::noise;
use tmc::testcluster::TestCluster;
use tmc::testcluster::Watch;

const WAIT: Duration = Duration::from_secs(60);

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name}, "data": {"k": data}})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Reads a watch until the server ends it; the events.
async fn drain(w: &mut Watch) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(ev) = w.next(WAIT).await {
        out.push(ev);
    }
    out
}

/// A watcher that stops reading while thousands of changes happen: the
/// server closes its stream (it would otherwise buffer without bound).
/// What it did send is gapless, in order, and no BOOKMARK passes an event
/// sent after it; re-watching from the last resourceVersion seen (event
/// or bookmark) gives the rest, so every change arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_watcher_is_closed_never_skipped_past() {
    let s = TestCluster::start();
    let api = s.api_client(1);
    api.must(
        "POST",
        "/clusters/root/api/v1/namespaces",
        namespace("slow"),
        201,
    )
    .await;
    let path = "/clusters/root/api/v1/namespaces/slow/configmaps";
    let rv0 = rv_of(&api.must("GET", path, Value::Null, 200).await);
    // A small receive buffer: the client's socket fills quickly once it
    // stops reading.
    let mut w1 = api
        .try_watch(
            &format!("{path}?watch=true&resourceVersion={rv0}&allowWatchBookmarks=true"),
            Some(4096),
        )
        .await
        .unwrap();

    // Many changes of 8 KiB each, 16 writers at once, while w1 is not read.
    const N: usize = 3000;
    let writers = 16;
    let mut tasks = Vec::new();
    for t in 0..writers {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(writers) {
                let name = format!("c{i:05}");
                api.must("POST", path, cm(&name, &noise(i as u64, 8 << 10)), 201)
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Long enough for a bookmark to be due (every 10 s) when the client
    // reads again.
    tokio::time::sleep(Duration::from_secs(12)).await;

    // The client reads again: what the server kept for it, then the end.
    let first = drain(&mut w1).await;
    let mut seen: Vec<String> = Vec::new();
    let mut last_rv = rv0;
    let mut last_event_rv = rv0;
    let mut bookmark_at = 0u64;
    for ev in &first {
        let (kind, rv) = kind_rv(ev);
        match kind.as_str() {
            "ADDED" => {
                assert!(
                    rv > last_event_rv,
                    "events out of order: {rv} after {last_event_rv}"
                );
                assert!(
                    rv > bookmark_at,
                    "an event at {rv} came after a bookmark at {bookmark_at}: the bookmark passed it"
                );
                last_event_rv = rv;
                seen.push(
                    ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            "BOOKMARK" => {
                assert!(
                    rv >= last_event_rv,
                    "a bookmark at {rv} behind an event at {last_event_rv}"
                );
                bookmark_at = rv;
            }
            other => panic!("unexpected {other} event in the slow watch: {ev}"),
        }
        last_rv = last_rv.max(rv);
    }
    eprintln!(
        "the slow watch sent {} of {N} events and {} bookmarks before it was closed",
        seen.len(),
        first.iter().filter(|e| e["type"] == "BOOKMARK").count()
    );
    assert!(
        seen.len() < N,
        "the slow watcher was never closed (it got all {N} events): the test did not exercise the slow path"
    );
    // Resume from the last resourceVersion seen, as client-go does.
    let mut w2 = api
        .watch(&format!(
            "{path}?watch=true&resourceVersion={last_rv}&allowWatchBookmarks=true"
        ))
        .await;
    while seen.len() < N {
        let ev = w2
            .next(WAIT)
            .await
            .expect("the resumed watch ended before every change arrived");
        let (kind, _) = kind_rv(&ev);
        match kind.as_str() {
            "ADDED" => seen.push(
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            "BOOKMARK" => {}
            other => panic!(
                "the resumed watch got {other} after {} of {N} events: {ev}",
                seen.len()
            ),
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        N,
        "{} events, {} distinct: some came twice",
        seen.len(),
        unique.len()
    );
    let want: BTreeSet<String> = (0..N).map(|i| format!("c{i:05}")).collect();
    assert_eq!(unique.into_iter().cloned().collect::<BTreeSet<_>>(), want);
}

/// The 504 kube-apiserver answers for a resourceVersion the cache does not
/// reach within 3 s.
fn assert_too_large(status: &Value, what: &str) {
    assert_eq!(status["kind"], "Status", "{what}: {status}");
    assert_eq!(status["code"], 504, "{what}: {status}");
    assert_eq!(status["reason"], "Timeout", "{what}: {status}");
    assert_eq!(
        status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge",
        "{what}: {status}"
    );
    assert_eq!(
        status["details"]["causes"][0]["message"], "Too large resource version",
        "{what}: {status}"
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Too large resource version: "),
        "{what}: {status}"
    );
}

/// resourceVersions in the future, as kube-apiserver's cacher: get and
/// list wait up to 3 s and answer 504 Timeout with cause
/// ResourceVersionTooLarge; a watch with sendInitialEvents waits the same
/// and ends with that Status in an ERROR event; a plain watch is accepted
/// and sends the changes after it only. And any `timeoutSeconds` is safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_resource_versions_and_timeouts_as_kube_apiserver() {
    let s = TestCluster::start();
    let api = s.api_client(2);
    api.must(
        "POST",
        "/clusters/root/api/v1/namespaces",
        namespace("rv"),
        201,
    )
    .await;
    let path = "/clusters/root/api/v1/namespaces/rv/configmaps";
    api.must("POST", path, cm("x", "1"), 201).await;
    let now = rv_of(&api.must("GET", path, Value::Null, 200).await);
    let far = now + 1_000_000;

    let (code, v) = api
        .call("GET", &format!("{path}?resourceVersion={far}"), Value::Null)
        .await;
    assert_eq!(code, 504, "{v}");
    assert_too_large(&v, "list at a future resourceVersion");
    let (code, v) = api
        .call(
            "GET",
            &format!("{path}/x?resourceVersion={far}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 504, "{v}");
    assert_too_large(&v, "get at a future resourceVersion");
    let (code, v) = api
        .call(
            "GET",
            &format!("{path}?resourceVersion={far}&resourceVersionMatch=Exact&limit=1"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 504, "{v}");
    assert_too_large(&v, "exact list at a future resourceVersion");

    // A watch-list from a future resourceVersion: accepted, then one
    // ERROR event, as the cacher's error watcher sends.
    let mut w = api
        .watch(&format!(
            "{path}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={far}"
        ))
        .await;
    let ev = w.next(WAIT).await.expect("an ERROR event");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_too_large(&ev["object"], "watch-list at a future resourceVersion");
    assert!(
        w.next(WAIT).await.is_none(),
        "the stream goes on after ERROR"
    );

    // A plain watch from a future resourceVersion: the changes after it.
    let start = now + 3;
    let mut w = api
        .watch(&format!("{path}?watch=true&resourceVersion={start}"))
        .await;
    let mut revs = Vec::new();
    for i in 0..5 {
        let v = api.must("POST", path, cm(&format!("f{i}"), "1"), 201).await;
        revs.push(rv_of(&v));
    }
    let want: Vec<u64> = revs.iter().copied().filter(|r| *r > start).collect();
    assert!(!want.is_empty() && want.len() < revs.len(), "{revs:?}");
    let mut got = Vec::new();
    while got.len() < want.len() {
        let ev = w.next(WAIT).await.expect("the watch ended");
        let (kind, rv) = kind_rv(&ev);
        assert_eq!(kind, "ADDED", "{ev}");
        got.push(rv);
    }
    assert_eq!(got, want, "a watch from {start} of writes at {revs:?}");

    // timeoutSeconds: huge values are clamped (the watch works), negative
    // and non-numeric ones refused, 0 is the default.
    for t in ["18446744073709551615", "9223372036854775807", "0"] {
        let mut w = api
            .watch(&format!(
                "{path}?watch=true&resourceVersion={}&timeoutSeconds={t}",
                rv_of(&api.must("GET", path, Value::Null, 200).await)
            ))
            .await;
        let v = api.must("POST", path, cm(&format!("t{t}"), "1"), 201).await;
        let ev = w
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("timeoutSeconds={t}: the watch ended at once"));
        assert_eq!(kind_rv(&ev), ("ADDED".to_string(), rv_of(&v)), "{ev}");
    }
    for t in ["-1", "1e9", "99999999999999999999999"] {
        let (code, v) = api
            .call(
                "GET",
                &format!("{path}?watch=true&timeoutSeconds={t}"),
                Value::Null,
            )
            .await;
        assert_eq!(
            (code, v["reason"].as_str()),
            (400, Some("BadRequest")),
            "{t}: {v}"
        );
    }
    // Every node still serves.
    for id in 1..=3 {
        s.api_client(id).must("GET", path, Value::Null, 200).await;
    }
}

fn encryption_config(keys: &[(&str, u8)]) -> String {
    use base64::Engine as _;
    let mut s = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n",
    );
    for (name, byte) in keys {
        s.push_str(&format!(
            "      - name: {name}\n        secret: {}\n",
            base64::engine::general_purpose::STANDARD.encode([*byte; 32])
        ));
    }
    s.push_str("  - identity: {}\n");
    s
}

fn workspace(name: &str) -> Value {
    json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
           "metadata": {"name": name}, "spec": {}})
}

fn secret(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "stringData": {"password": value}})
}

/// A replica restarted with an encryption config that lacks the key a
/// Secret of tenant t1 is stored under: a get of that Secret there answers
/// 500 naming the key; a watch of t1's Secrets ends with an ERROR event
/// naming it when the Secret changes; tenant t2's watches there (live, and
/// one replaying the change log across that Secret's change) go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecryptable_secret_fails_only_the_requests_that_read_it() {
    let keys = tempfile::tempdir().unwrap();
    let with_a = keys.path().join("with-a.yaml");
    let without_a = keys.path().join("without-a.yaml");
    std::fs::write(&with_a, encryption_config(&[("keyA", 1)])).unwrap();
    std::fs::write(&without_a, encryption_config(&[("keyB", 2)])).unwrap();
    let mut s = TestCluster::start_with(
        &[
            "--no-controllers",
            "--encryption-config",
            with_a.to_str().unwrap(),
        ],
        "",
    );
    let (writer, lacking) = s.followers();
    let w = s.api_client(writer);
    let wss = "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces";
    w.must("POST", wss, workspace("t1"), 201).await;
    w.must("POST", wss, workspace("t2"), 201).await;
    let t1_secrets = "/clusters/root:t1/api/v1/namespaces/default/secrets";
    let t2_cms = "/clusters/root:t2/api/v1/namespaces/default/configmaps";
    let before = rv_of(&w.must("GET", t2_cms, Value::Null, 200).await);
    w.must("POST", t1_secrets, secret("s", "hunter2"), 201)
        .await;
    w.must("POST", t2_cms, cm("c1", "1"), 201).await;

    // The replica comes back with a config that lacks keyA.
    s.kill(lacking);
    s.spawn_with_args(
        lacking,
        &[
            "--no-controllers".to_string(),
            "--encryption-config".to_string(),
            without_a.to_str().unwrap().to_string(),
        ],
    )
    .unwrap();
    s.wait_ready(lacking);
    let r = s.api_client(lacking);
    let (code, v) = r.call("GET", &format!("{t1_secrets}/s"), Value::Null).await;
    assert_eq!(code, 500, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("\"keyA\"") && msg.contains("does not hold"),
        "the error names the missing key: {v}"
    );

    let now = rv_of(&r.must("GET", t2_cms, Value::Null, 200).await);
    let mut t2_live = r
        .watch(&format!("{t2_cms}?watch=true&resourceVersion={now}"))
        .await;
    // Replays the change log across the undecryptable change.
    let mut t2_replay = r
        .watch(&format!("{t2_cms}?watch=true&resourceVersion={before}"))
        .await;
    let now_s = rv_of(&r.must("GET", t2_cms, Value::Null, 200).await);
    let mut t1_watch = r
        .watch(&format!("{t1_secrets}?watch=true&resourceVersion={now_s}"))
        .await;
    let ev = t2_replay.next(WAIT).await.expect("the replay ended");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("c1")),
        "{ev}"
    );

    // The Secret changes through a replica that holds keyA, and so does
    // t2's data.
    w.must(
        "PATCH",
        &format!("{t1_secrets}/s"),
        json!({"stringData": {"password": "changed"}}),
        200,
    )
    .await;
    let c2 = w.must("POST", t2_cms, cm("c2", "2"), 201).await;

    // t1's watch of Secrets ends with an ERROR naming the key.
    let ev = t1_watch
        .next(WAIT)
        .await
        .expect("the watch of t1's Secrets ended silently");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["code"], 500, "{ev}");
    let msg = ev["object"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("\"keyA\""), "the ERROR names the key: {ev}");
    assert!(t1_watch.next(WAIT).await.is_none());
    // t2's watches go on.
    for (name, watch) in [("live", &mut t2_live), ("replay", &mut t2_replay)] {
        let ev = watch
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("t2's {name} watch ended"));
        assert_eq!(
            kind_rv(&ev),
            ("ADDED".to_string(), rv_of(&c2)),
            "t2's {name} watch: {ev}"
        );
    }
}
