//! A shard run the way its StatefulSet runs it ([`tmc::testcluster::pods`]):
//! the dev overlay rendered with `kubectl kustomize`, each pod its
//! container's command line and environment with the downward API filled
//! in, chrooted into the image `scripts/image.sh` builds from this test's
//! `tmc`, on its own loopback address with the pods' DNS names in an
//! /etc/hosts of its own. On that, with a client writing all along through
//! whichever pod answers (as through the client Service):
//!
//! - the three replicas found the shard;
//! - a rolling update (highest ordinal first, the next only once the
//!   restarted one is ready) and a restart of the leader lose no
//!   acknowledged write, and the leader hands over before it stops;
//! - a replica whose volume was lost refuses to start until it is
//!   removed, then joins anew (a learner, then a voter);
//! - 3 → 5 replicas by starting two more ordinals (they join by
//!   themselves) and 5 → 3 by the documented procedure (hand over, remove,
//!   stop);
//! - `tmc status` and the metrics port report the shard.
//!
//! The longest write pause around the leader's restart is printed; `tmc
//! bench rollout` measures it against a SIGKILL (docs/benchmarks.md).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tmc::testcluster::pods::{image_rootfs, Pods, Template, Writer, WRITES_PATH};
use tmc::testcluster::{block_on, log_tail, tmc_binary};

const NO_CONTROLLERS: &[&str] = &["--no-controllers"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The dev overlay's pods from the image, five ordinals' worth of TLS.
fn pods() -> (Pods, tempfile::TempDir) {
    assert!(
        Command::new("unshare")
            .args(["--mount", "--", "true"])
            .status()
            .is_ok_and(|s| s.success()),
        "this test needs `unshare --mount` and chroot (root); CI runs as root"
    );
    let template = Template::from_overlay(&repo().join("deploy/overlays/dev"))
        .expect("render the dev overlay");
    assert_eq!(template.name, "tmc-root", "{template:?}");
    let image = tempfile::tempdir().expect("tempdir");
    let rootfs = image_rootfs(repo(), &tmc_binary(), image.path()).expect("the image");
    let pods = Pods::new(template, &tmc_binary(), Some(rootfs), 77, 5).expect("pods");
    (pods, image)
}

#[test]
fn a_statefulsets_pods_found_roll_rejoin_and_scale_without_losing_a_write() {
    let (mut pods, _image) = pods();
    // Founding: the three start at once (podManagementPolicy: Parallel).
    for o in 0..3 {
        pods.start(o, NO_CONTROLLERS).unwrap();
    }
    for o in 0..3 {
        pods.wait_ready(o).unwrap();
    }
    pods.wait_voters(0, &[1, 2, 3]).unwrap();
    let writer = Writer::start((0..3).map(|o| pods.api(o)).collect());
    writer.progress(20).unwrap();

    // A rolling update: highest ordinal first, the next once it is ready.
    for o in (0..3).rev() {
        let took = pods.stop(o, false).unwrap();
        eprintln!("pod {o} exited {took:?} after SIGTERM");
        pods.start(o, NO_CONTROLLERS).unwrap();
        pods.wait_ready(o).unwrap();
        writer.progress(5).unwrap();
    }

    // The leader restarted: it hands over first.
    let leader = pods.leader(&[0, 1, 2]).expect("a leader");
    let from = Instant::now();
    pods.stop(leader, false).unwrap();
    pods.start(leader, NO_CONTROLLERS).unwrap();
    pods.wait_ready(leader).unwrap();
    let to = Instant::now();
    writer.progress(5).unwrap();
    eprintln!(
        "longest write pause while the leader (pod {leader}) restarted: {:?}",
        writer.longest_pause(from, to)
    );
    let log = std::fs::read_to_string(pods.log(leader)).unwrap_or_default();
    assert!(
        log.contains("handed leadership over"),
        "the leader did not hand over:\n{}",
        log_tail(&pods.log(leader), 30)
    );

    // A lost volume: the replica refuses to start as a voter without data.
    let lost = if leader == 2 { 1 } else { 2 };
    pods.stop(lost, false).unwrap();
    std::fs::remove_dir_all(pods.data(lost)).expect("remove the data");
    pods.start(lost, NO_CONTROLLERS).unwrap();
    let log = pods.wait_exit(lost, Duration::from_secs(30)).unwrap();
    assert!(log.contains("its volume was lost"), "no refusal:\n{log}");
    // Removed, it joins anew: a learner, then a voter.
    let other = if lost == 0 { 1 } else { 0 };
    pods.member(other, &["remove", "--id", &(lost + 1).to_string()])
        .expect("remove the lost replica");
    pods.start(lost, NO_CONTROLLERS).unwrap();
    pods.wait_ready(lost).unwrap();
    pods.wait_voters(other, &[1, 2, 3]).unwrap();
    writer.progress(5).unwrap();

    // 3 → 5: two more ordinals join by themselves.
    pods.start(3, NO_CONTROLLERS).unwrap();
    pods.start(4, NO_CONTROLLERS).unwrap();
    pods.wait_voters(0, &[1, 2, 3, 4, 5]).unwrap();
    pods.wait_ready(3).unwrap();
    pods.wait_ready(4).unwrap();
    writer
        .clients
        .lock()
        .unwrap()
        .extend([pods.api(3), pods.api(4)]);
    writer.progress(10).unwrap();
    // `tmc status` sees the five, all voters.
    let out = Command::new(tmc_binary())
        .args(["status", "--json", "--kubeconfig"])
        .arg(&pods.kubeconfig)
        .output()
        .expect("tmc status");
    assert!(out.status.success(), "tmc status: {out:?}");
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let replicas = docs[0]["replicas"].as_array().expect("replicas").clone();
    let ids: Vec<u64> = replicas.iter().filter_map(|r| r["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "{docs:?}");
    assert!(replicas.iter().all(|r| r["voter"] == true), "{docs:?}");

    // 5 → 3, as docs/deploy.md says: hand over if a leaving one leads,
    // remove them, then stop them.
    writer.clients.lock().unwrap().truncate(3);
    if let Some(l) = pods.leader(&[3, 4]) {
        pods.member(l, &["hand-over"]).expect("hand over");
    }
    for id in [5, 4] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = pods.member(0, &["remove", "--id", &id.to_string()]) {
            assert!(Instant::now() < deadline, "remove {id}: {e}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    pods.stop(4, false).unwrap();
    pods.stop(3, false).unwrap();
    pods.wait_voters(0, &[1, 2, 3]).unwrap();
    writer.progress(10).unwrap();

    // Nothing acknowledged is lost.
    let acked: BTreeSet<String> = writer.stop().into_iter().collect();
    assert!(
        acked.len() >= 70,
        "only {} writes acknowledged",
        acked.len()
    );
    let (code, list) =
        block_on(pods.api(0).try_call("GET", WRITES_PATH, Value::Null)).expect("list");
    assert_eq!(code, 200, "{list}");
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost_writes: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost_writes.is_empty(),
        "acknowledged but lost: {lost_writes:?}"
    );

    // The metrics an operator watches are served: every family the alert
    // rules and the dashboard use (but two that exist only once a
    // controller has reconciled something; the pods run without).
    let pages: Vec<String> = (0..3).filter_map(|o| pods.metrics(o)).collect();
    assert_eq!(pages.len(), 3, "every pod serves /metrics");
    let served: BTreeSet<String> = pages.iter().flat_map(|p| families(p)).collect();
    let monitoring = repo().join("deploy/monitoring");
    let mut used = BTreeSet::new();
    for f in ["tmc-alerts.yaml", "tmc-dashboard.json"] {
        used.extend(names_used(
            &std::fs::read_to_string(monitoring.join(f)).expect(f),
        ));
    }
    let after_reconciles = [
        "tmc_controller_errors",
        "tmc_controller_reconcile_duration_seconds",
    ];
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !served.contains(*n) && !after_reconciles.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not on /metrics: {missing:?}; served: {served:?}"
    );
    let m = pods.metrics(0).expect("metrics of pod 0");
    for name in [
        "tmc_raft_has_leader 1",
        "tmc_raft_voters 3",
        "apiserver_request_total{verb=\"create\",resource=\"configmaps\",code=\"201\"}",
    ] {
        assert!(m.contains(name), "no {name} in pod 0's metrics");
    }
    let value = |m: &str, name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value(&m, "tmc_raft_fsync_duration_seconds_count") > 0.0,
        "{m}"
    );
    assert!(
        value(&m, "tmc_raft_term") >= 2.0,
        "leadership changed hands: {m}"
    );
    assert!(value(&m, "tmc_store_disk_bytes") > 0.0, "{m}");
    let proposals: f64 = (0..3)
        .filter_map(|o| pods.metrics(o))
        .map(|m| value(&m, "tmc_raft_proposal_duration_seconds_count"))
        .sum();
    assert!(proposals > 0.0, "no replica timed a proposal");
}

/// The families a metrics page declares (`# TYPE name ...`).
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The metric families `text` (alert rules, dashboard) names.
fn names_used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !(word.starts_with("tmc_") || word.starts_with("apiserver_")) {
            continue;
        }
        let mut name = word;
        for suffix in ["_bucket", "_count", "_sum", "_total"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        out.insert(name.to_string());
    }
    out
}

#[test]
fn a_pod_name_that_is_no_statefulset_pod_is_refused_with_the_reason() {
    let refusal = |pod_name: &str| -> String {
        let out = Command::new(tmc_binary())
            .args(["serve", &format!("--pod-name={pod_name}")])
            .args(["--peer-domain", "tmc-root-peers.tmc-system.svc"])
            .args([
                "--data-dir",
                "/nonexistent/never-created",
                "--insecure-peers",
            ])
            .output()
            .expect("tmc serve");
        assert!(!out.status.success(), "{pod_name:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for bad in ["tmc", "tmc-", "-3", "tmc-x1"] {
        let err = refusal(bad);
        assert!(
            err.contains("is not <statefulset>-<ordinal>"),
            "{bad:?}: {err}"
        );
    }
    let err = refusal("tmc-root-7");
    assert!(err.contains("beyond --max-replicas 7"), "{err}");
}
