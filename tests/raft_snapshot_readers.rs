//! A follower that catches up by a raft snapshot while clients read it, on
//! a three-node shard of real `tmc serve` processes: every list (at
//! `resourceVersion=0`, served from the follower's own state) shows the
//! state before the install or the state after it, never a half-copied
//! one; every watch open on the follower across the install either goes
//! on without a gap or ends with 410 Expired, never silently. Two rounds:
//! one where the leader's change log no longer covers the follower's
//! revision (every watch gets 410), one where it does (every watch goes
//! on, and its events turn the old state into the new one).

mod common {
    pub mod watch;
}

use common::watch::{kind_rv, rv_of};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tmc::testcluster::noise;
use tmc::testcluster::TestCluster;

const WAIT: Duration = Duration::from_secs(60);
const PROBES: &str = "/clusters/root/api/v1/namespaces/z-probe/configmaps";
const BULK: &str = "/clusters/root/api/v1/namespaces/a-bulk/configmaps";

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name}, "data": {"k": data}})
}

/// A list's state: its resourceVersion and each item's name and data.
type State = (u64, BTreeMap<String, String>);

fn state_of(list: &Value) -> State {
    let items = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["data"]["k"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (rv_of(list), items)
}

/// What one watcher on the follower saw.
#[derive(Debug, Default)]
struct Watched {
    /// The probes' state it built from the events, from the old state on.
    state: BTreeMap<String, String>,
    /// The 410 it ended with, if it did.
    expired: Option<Value>,
    /// It saw the final marker (so it went on after the install).
    reached_end: bool,
    /// How it ended otherwise (a silent end of the stream).
    silent_end: bool,
}

/// The follower's state is `old`; while it is down the probes move to
/// `tag`, `bulk` values of 256 KiB land in a namespace whose keys sort
/// before the probes' (a long install, copied first), then `small` small
/// writes. It comes back and catches up by snapshot while clients list it
/// at resourceVersion=0 and watch it from its old revision. Returns what
/// the watchers saw and the state after.
async fn round(
    s: &mut TestCluster,
    leader: u64,
    behind: u64,
    tag: &str,
    bulk: u64,
    small: u64,
) -> (Vec<Watched>, State) {
    let l = s.api_client(leader);
    let f = s.api_client(behind);
    // The follower has everything (a linearizable list there), then stops.
    f.must("GET", PROBES, Value::Null, 200).await;
    let old = state_of(
        &f.must(
            "GET",
            &format!("{PROBES}?resourceVersion=0"),
            Value::Null,
            200,
        )
        .await,
    );
    s.kill(behind);

    let names: Vec<String> = old.1.keys().cloned().collect();
    for n in &names[1..] {
        l.must(
            "PATCH",
            &format!("{PROBES}/{n}"),
            json!({"data": {"k": tag}}),
            200,
        )
        .await;
    }
    l.must(
        "DELETE",
        &format!("{PROBES}/{}", names[0]),
        Value::Null,
        200,
    )
    .await;
    l.must("POST", PROBES, cm(&format!("p-{tag}"), tag), 201)
        .await;
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (l, tag) = (l.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (t..bulk).step_by(4) {
                l.must(
                    "POST",
                    BULK,
                    cm(&format!("{tag}-b{i:03}"), &noise(i, 256 << 10)),
                    201,
                )
                .await;
            }
            for i in (t..small).step_by(4) {
                l.must("POST", BULK, cm(&format!("{tag}-s{i}"), "x"), 201)
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let new = state_of(&l.must("GET", PROBES, Value::Null, 200).await);
    assert_ne!(old.1, new.1);

    // Readers on the follower from the moment it starts: lists at
    // resourceVersion=0 in a loop, and watches from the old revision.
    let installs = std::fs::read_to_string(s.log_path(behind))
        .unwrap_or_default()
        .matches("installed a raft snapshot")
        .count();
    s.spawn(behind).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut listers = Vec::new();
    for _ in 0..3 {
        let (f, stop, old, new) = (f.clone(), stop.clone(), old.clone(), new.clone());
        listers.push(tokio::spawn(async move {
            let (mut saw_old, mut saw_new) = (0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let Ok((code, v)) = f
                    .try_call("GET", &format!("{PROBES}?resourceVersion=0"), Value::Null)
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue; // not listening yet
                };
                assert_eq!(code, 200, "{v}");
                let got = state_of(&v);
                if got == old {
                    saw_old += 1;
                } else if got == new {
                    saw_new += 1;
                } else {
                    panic!(
                        "a list on the follower showed neither state: {got:?}\nold: {old:?}\nnew: {new:?}"
                    );
                }
            }
            (saw_old, saw_new)
        }));
    }
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let (f, old, tag) = (f.clone(), old.clone(), tag.to_string());
        watchers.push(tokio::spawn(async move {
            let deadline = Instant::now() + WAIT;
            let mut w = loop {
                match f
                    .try_watch(
                        &format!("{PROBES}?watch=true&resourceVersion={}", old.0),
                        None,
                    )
                    .await
                {
                    Ok(w) => break w,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "no watch on the follower: {e}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            let mut seen = Watched {
                state: old.1.clone(),
                ..Default::default()
            };
            let end = format!("end-{tag}");
            loop {
                let Some(ev) = w.next(WAIT).await else {
                    seen.silent_end = true;
                    return seen;
                };
                let (kind, _) = kind_rv(&ev);
                let name = ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let data = ev["object"]["data"]["k"].as_str().unwrap_or("").to_string();
                match kind.as_str() {
                    "ADDED" | "MODIFIED" if name == end => {
                        seen.reached_end = true;
                        return seen;
                    }
                    "ADDED" | "MODIFIED" => {
                        seen.state.insert(name, data);
                    }
                    "DELETED" => {
                        seen.state.remove(&name);
                    }
                    "ERROR" => {
                        seen.expired = Some(ev["object"].clone());
                        return seen;
                    }
                    other => panic!("unexpected {other} event: {ev}"),
                }
            }
        }));
    }

    // The follower installs the leader's snapshot and catches up.
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(s.log_path(behind))
        .unwrap_or_default()
        .matches("installed a raft snapshot")
        .count()
        == installs
    {
        assert!(
            Instant::now() < deadline,
            "node {behind} installed no snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.wait_ready(behind);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut saw_old, mut saw_new) = (0, 0);
    for t in listers {
        let (o, n) = t.await.unwrap();
        saw_old += o;
        saw_new += n;
    }
    eprintln!("lists on node {behind}: {saw_old} showed the old state, {saw_new} the new one");
    assert!(
        saw_old > 0 && saw_new > 0,
        "the lists did not span the install ({saw_old} old, {saw_new} new)"
    );
    // A last probe change: a watcher that went on sees it.
    l.must("POST", PROBES, cm(&format!("end-{tag}"), "x"), 201)
        .await;
    let mut seen = Vec::new();
    for t in watchers {
        let w = t.await.unwrap();
        eprintln!(
            "a watch across the install: expired {:?}, reached the end {}",
            w.expired.as_ref().map(|s| s["message"].clone()),
            w.reached_end
        );
        assert!(
            !w.silent_end,
            "a watch across the install ended silently: {w:?}"
        );
        match &w.expired {
            Some(status) => {
                assert_eq!(status["code"], 410, "{status}");
                assert_eq!(status["reason"], "Expired", "{status}");
            }
            None => {
                assert!(w.reached_end, "{w:?}");
                assert_eq!(
                    w.state, new.1,
                    "a watch across the install missed changes (a gap)"
                );
            }
        }
        seen.push(w);
    }
    let after = state_of(&l.must("GET", PROBES, Value::Null, 200).await);
    (seen, after)
}

/// Round 1: the leader's change log no longer reaches back to the
/// follower's revision, so every watch across the install ends with 410.
/// Round 2: it still does, so every watch goes on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_installing_a_snapshot_is_never_torn_for_readers() {
    // A short raft log and a short change log: a follower that misses
    // more than 20 entries catches up by snapshot; one that misses more
    // than about 100 revisions is also behind the change log.
    let mut s = TestCluster::start_with(
        &[
            "--no-controllers",
            "--log-compact-threshold",
            "20",
            "--changes-retention",
            "100",
        ],
        "",
    );
    let (behind, _) = s.followers();
    let leader = s.leader();
    let l = s.api_client(leader);
    for ns in ["a-bulk", "z-probe"] {
        l.must(
            "POST",
            "/clusters/root/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            201,
        )
        .await;
    }
    for i in 0..5 {
        l.must("POST", PROBES, cm(&format!("p{i}"), "old"), 201)
            .await;
    }
    // 32 MiB and 160 more revisions: past the change log's window.
    let (watched, _) = round(&mut s, leader, behind, "one", 128, 160).await;
    assert!(
        watched.iter().all(|w| w.expired.is_some()),
        "a watch from a compacted revision went on: {watched:?}"
    );
    // 8 MiB and 40 more revisions: more than the raft log keeps, inside
    // the change log's window.
    let (watched, _) = round(&mut s, leader, behind, "two", 32, 40).await;
    assert!(
        watched.iter().all(|w| w.reached_end),
        "a watch inside the change log's window did not go on: {watched:?}"
    );
}
