//! Membership changes of a running shard from the CLI (`tmc member
//! add|remove`), and snapshot transfer, on real `tmc serve` processes: bad
//! requests change nothing,
//! a follower is removed, a fresh node with an empty disk joins
//! (`tmc serve --join`), catches up by snapshot (the log is compacted after
//! 20 entries) and then counts in the quorum. The snapshot (a few MiB)
//! travels in crc-checked chunks; while the proxy damages chunks on the
//! leader's link to the new node, nothing of it is installed.

mod common {
    pub mod faultnet;
    pub mod replicas;
}

use common::replicas::{Shard, ShardOptions};
use serde_json::Value;
use std::time::{Duration, Instant};
use tmc::testcluster::noise;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `tmc member ...`; exit status and stdout parsed as JSON.
async fn tmc_member(args: &[&str]) -> (bool, Value, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tmc"))
            .arg("member")
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), json, stderr)
    })
    .await
    .unwrap()
}

fn voters(v: &Value) -> Vec<u64> {
    v["voters"]
        .as_array()
        .unwrap_or_else(|| panic!("no voters in {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_a_voter_then_a_fresh_node_joins_by_snapshot_and_has_every_key() {
    let mut shard = Shard::start(ShardOptions {
        voters: 3,
        book: 4,
        seed: 4,
        extra: vec!["--log-compact-threshold".into(), "20".into()],
        ..Default::default()
    })
    .await;
    let leader = shard.wait_leader(&[1, 2, 3], WAIT).await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let mut keys = Vec::new();
    for i in 0..60 {
        let k = format!("root:m/default/k{i}");
        shard.put_acked(&[leader], &k, &format!("v{i}"), WAIT).await;
        keys.push((k, format!("v{i}")));
    }
    // A few large values: the snapshot is several chunks (1 MiB each).
    let big = |i: usize| format!("{i}{}", "x".repeat(400 << 10));
    for i in 0..6 {
        let k = format!("root:m/default/big{i}");
        shard.put_acked(&[leader], &k, &big(i), WAIT).await;
        keys.push((k, big(i)));
    }
    let (f1, f2) = (followers[0], followers[1]);
    let addrs: std::collections::BTreeMap<u64, String> =
        (1..=4).map(|id| (id, shard.kv_addr(id))).collect();
    let at = |id: u64| addrs[&id].clone();

    // Bad requests, sent to a follower (forwarded) and to the leader: each
    // refused with a clear error, nothing changed.
    let bad: [(&str, u64, &str); 5] = [
        ("add", 9, "no raft address"),
        ("add", f1, "already a voter"),
        ("remove", 7, "not a member"),
        ("remove", leader, "is the leader"),
        ("add", 0, "reserved"),
    ];
    for (op, id, why) in bad {
        for server in [at(f2), at(leader)] {
            let (ok, v, err) =
                tmc_member(&[op, "--id", &id.to_string(), "--server", &server]).await;
            assert!(!ok, "{op} {id} via {server} succeeded: {v}");
            assert!(
                v["error"].as_str().unwrap_or("").contains(why),
                "{op} {id}: {v} {err}"
            );
            assert!(err.contains("HTTP 400"), "{op} {id}: {err}");
        }
    }
    let (ok, v, _) = tmc_member(&["list", "--server", &at(f1)]).await;
    assert!(ok);
    assert_eq!(voters(&v), vec![1, 2, 3]);

    // Remove a follower (asking the other follower: forwarded).
    let (ok, v, err) = tmc_member(&["remove", "--id", &f1.to_string(), "--server", &at(f2)]).await;
    assert!(ok, "{v} {err}");
    let mut two = vec![leader, f2];
    two.sort();
    assert_eq!(voters(&v), two);
    shard.kill(f1);
    // Two voters: both needed, and they take writes.
    for i in 60..90 {
        let k = format!("root:m/default/k{i}");
        shard.put_acked(&[leader], &k, &format!("v{i}"), WAIT).await;
        keys.push((k, format!("v{i}")));
    }

    // A fresh node 4 (empty disk) starts with --join and is added.
    assert!(!shard.data_dir(4).exists());
    // First the leader's chunks to node 4 arrive damaged.
    shard.net().faults(|link, f| {
        if link == (leader, 4) {
            f.corrupt_chunks = true;
        }
    });
    shard.spawn_joining(4).unwrap();
    let (ok, v, err) = tmc_member(&["add", "--id", "4", "--server", &at(leader)]).await;
    assert!(ok, "{v} {err}");
    let mut three = vec![leader, f2, 4];
    three.sort();
    assert_eq!(voters(&v), three);
    let log4 = |s: &Shard| std::fs::read_to_string(s.log_path(4)).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    while !log4(&shard).contains("dropping a damaged chunk") {
        assert!(
            Instant::now() < deadline,
            "node 4 never saw a damaged chunk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shard.net().stats(leader, 4).corrupted > 0);
    assert!(
        !log4(&shard).contains("installed a raft snapshot"),
        "a snapshot was installed from damaged chunks"
    );
    let (code, _) = shard.get(4, &keys[0].0, "local").await.unwrap();
    assert_eq!(code, 404, "node 4 has data before any good snapshot");
    // Undamaged, it catches up by snapshot: the log it needs is long
    // compacted, and the snapshot comes in chunks.
    shard.net().faults(|link, f| {
        if link == (leader, 4) {
            f.corrupt_chunks = false;
        }
    });
    let deadline = Instant::now() + WAIT;
    while !log4(&shard).contains("installed a raft snapshot") {
        assert!(Instant::now() < deadline, "node 4 installed no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log4(&shard).contains("received a snapshot in chunks"));
    for (k, v) in &keys {
        assert_eq!(
            shard.read_lin(4, k, WAIT).await.as_deref(),
            Some(v.as_str()),
            "node 4 lacks {k}"
        );
    }
    let st = shard.status_json(4).await.unwrap();
    assert_eq!(voters(&st), three, "{st}");
    // Node 4 counts in the quorum: with the other follower gone, the leader
    // and node 4 commit alone.
    shard.kill(f2);
    shard
        .put_acked(&[leader, 4], "root:m/default/last", "x", WAIT)
        .await;
    assert_eq!(
        shard
            .read_lin(4, "root:m/default/last", WAIT)
            .await
            .as_deref(),
        Some("x")
    );
}

/// `line` without ANSI colour sequences (the log may be coloured).
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `chunks=N` of the last "received a snapshot in chunks" line.
fn chunks_received(log: &str) -> Option<u64> {
    let line = plain(
        log.lines()
            .rev()
            .find(|l| l.contains("received a snapshot in chunks"))?,
    );
    let at = line.find("chunks=")? + "chunks=".len();
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A follower that was down while the leader took more than 8 MiB of
/// incompressible writes (and compacted its log) catches up by a snapshot:
/// a RocksDB checkpoint streamed in many 1 MiB chunks. While the proxy
/// damages the chunks, every transfer is refused and nothing is installed;
/// once the link is clean the leader's next transfer installs. Afterwards
/// no checkpoint or staging directory is left on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_by_a_many_chunk_checkpoint_after_refusing_damaged_ones() {
    let mut shard = Shard::start(ShardOptions {
        voters: 3,
        book: 3,
        seed: 9,
        extra: vec!["--log-compact-threshold".into(), "20".into()],
        ..Default::default()
    })
    .await;
    let leader = shard.wait_leader(&[1, 2, 3], WAIT).await;
    let behind = if leader == 1 { 2 } else { 1 };
    let other = 6 - leader - behind;
    shard
        .put_acked(&[leader], "root:s/default/early", "before", WAIT)
        .await;
    shard.kill(behind);
    // 48 values of 256 KiB: 12 MiB of text that compresses little.
    let big = |i: u64| noise(i, 256 << 10);
    for i in 0..48 {
        let k = format!("root:s/default/big{i}");
        shard.put_acked(&[leader], &k, &big(i), WAIT).await;
    }

    // The follower comes back; the leader's log no longer reaches it.
    shard.net().faults(|link, f| {
        if link == (leader, behind) {
            f.corrupt_chunks = true;
        }
    });
    shard.spawn(behind).unwrap();
    let log = |s: &Shard| std::fs::read_to_string(s.log_path(behind)).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    while !log(&shard).contains("dropping a damaged chunk") {
        assert!(
            Instant::now() < deadline,
            "no damaged chunk reached node {behind}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shard.net().stats(leader, behind).corrupted > 0);
    assert!(
        !log(&shard).contains("installed a raft snapshot"),
        "a snapshot was installed from damaged chunks"
    );
    let (code, _) = shard
        .get(behind, "root:s/default/big0", "local")
        .await
        .unwrap();
    assert_eq!(code, 404, "node {behind} has data before any good snapshot");

    // A clean link: the next transfer installs.
    shard.net().faults(|link, f| {
        if link == (leader, behind) {
            f.corrupt_chunks = false;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log(&shard).contains("installed a raft snapshot") {
        assert!(
            Instant::now() < deadline,
            "node {behind} installed no snapshot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chunks = chunks_received(&log(&shard)).expect("the transfer's chunk count is logged");
    assert!(
        chunks >= 8,
        "a snapshot of more than 8 MiB came in {chunks} chunks"
    );
    for i in 0..48 {
        let k = format!("root:s/default/big{i}");
        let (code, v) = shard.get(behind, &k, "local").await.unwrap();
        assert_eq!(code, 200, "node {behind} lacks {k}");
        // Not assert_eq!: a 256 KiB value in a failure message helps no one.
        assert!(
            v["record"]["value"].as_str() == Some(big(i).as_str()),
            "{k} differs on node {behind}"
        );
    }
    assert_eq!(
        shard
            .read_lin(behind, "root:s/default/early", WAIT)
            .await
            .as_deref(),
        Some("before")
    );
    // It counts in the quorum: with the other follower gone, it commits.
    shard.kill(other);
    shard
        .put_acked(&[leader], "root:s/default/after", "x", WAIT)
        .await;
    // Checkpoints and staging directories are gone on both sides.
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<String> = [leader, behind]
            .iter()
            .flat_map(|&id| dir_entries(&shard.data_dir(id).join("snapshots")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "snapshot directories left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
