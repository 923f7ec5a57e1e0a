//! Multi-process raft tests on loopback: three `tmc serve` replicas as real
//! processes, their KV interface over HTTP, faults by SIGKILL.
//!
//! The replicas come from the one harness, [`tmc::testcluster`]. Every
//! wait is a bounded loop; children are killed when a test ends, whether
//! it passes or not (their logs are printed when it fails).

use std::time::{Duration, Instant};
use tmc::testcluster::{TestCluster, NO_FORWARD};

/// Three replicas (ids 1..=3), plain HTTP between them.
fn start() -> TestCluster {
    TestCluster::builder()
        .insecure_peers()
        .dir_in(None, "tmc-raft-process")
        .start()
        .expect("three replicas")
}

const ALL: [u64; 3] = [1, 2, 3];
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_a_write_is_read_linearizably_everywhere() {
    let c = start();
    let leader = c.wait_leader(&ALL, WAIT).await;
    let (code, v) = c
        .put(leader, "root:t/default/a", r#"{"x":1}"#)
        .await
        .expect("leader answers");
    assert_eq!(code, 200, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    assert!(rev >= 1);
    for id in ALL {
        // No retry: a linearizable read right after the acknowledgement
        // must see the write on every replica.
        let (code, v) = c
            .get(id, "root:t/default/a", "linearizable")
            .await
            .expect("node answers");
        assert_eq!(code, 200, "node {id}: {v}");
        assert_eq!(v["record"]["value"], r#"{"x":1}"#, "node {id}");
        assert_eq!(v["record"]["mod_revision"].as_u64(), Some(rev));
    }
    // A write on a follower is forwarded to the leader.
    let follower = ALL.into_iter().find(|&i| i != leader).unwrap();
    let (code, v) = c.put(follower, "root:t/default/f", "3").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert!(v["revision"].as_u64().unwrap() > rev, "{v}");
    for id in ALL {
        assert_eq!(
            c.read_lin(id, "root:t/default/f", WAIT).await.as_deref(),
            Some("3")
        );
    }
    // Without forwarding, it is refused with the leader's id and address.
    let (code, v) = c
        .req(
            "PUT",
            follower,
            "/kv/root:t/default/b",
            &[(NO_FORWARD, "1")],
            Some("2".into()),
        )
        .await
        .unwrap();
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["leader"].as_u64(), Some(leader), "{v}");
    let addr = c.kv_addr(leader);
    assert_eq!(v["leader_addr"].as_str(), Some(addr.as_str()), "{v}");
    assert!(v["error"].as_str().unwrap().contains("not leader"), "{v}");
    // A frame that fails its checksum, sent to a follower's raft port, is
    // logged and dropped; the shard goes on.
    {
        use std::io::Write;
        let body = b"not a raft message at all";
        let mut frame = Vec::new();
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&(crc32fast::hash(body) ^ 1).to_be_bytes());
        frame.extend_from_slice(body);
        let raft_port = c.raft_port(follower);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", raft_port)).unwrap();
        s.write_all(&c.peer_hello(follower)).unwrap();
        s.write_all(&frame).unwrap();
        s.flush().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(c.log_path(follower)).unwrap_or_default();
            if log.contains("checksum mismatch") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no log line for the damaged frame"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        c.read_lin(follower, "root:t/default/a", WAIT).await,
        Some(r#"{"x":1}"#.to_string())
    );
    // Delete, then the key is gone everywhere.
    let (code, _) = c
        .req("DELETE", leader, "/kv/root:t/default/a", &[], None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    for id in ALL {
        assert_eq!(c.read_lin(id, "root:t/default/a", WAIT).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_elects_a_new_one_that_takes_writes() {
    let mut c = start();
    let old = c.wait_leader(&ALL, WAIT).await;
    for i in 0..5 {
        c.put_acked(&ALL, &format!("root:t/default/k{i}"), &i.to_string(), WAIT)
            .await;
    }
    c.kill(old);
    let killed_at = Instant::now();
    let rest: Vec<u64> = ALL.into_iter().filter(|&i| i != old).collect();
    c.put_acked(&rest, "root:t/default/after", "1", WAIT).await;
    let failover = killed_at.elapsed();
    eprintln!("first write acknowledged {failover:?} after SIGKILL of the leader");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let new = c.wait_leader(&rest, WAIT).await;
    assert_ne!(new, old);
    for &id in &rest {
        for i in 0..5 {
            assert_eq!(
                c.read_lin(id, &format!("root:t/default/k{i}"), WAIT).await,
                Some(i.to_string()),
                "node {id} key k{i}"
            );
        }
        assert_eq!(
            c.read_lin(id, "root:t/default/after", WAIT).await,
            Some("1".into())
        );
    }
    // The old leader comes back as a follower and catches up.
    c.spawn(old).unwrap();
    c.wait_leader(&ALL, WAIT).await;
    assert_eq!(
        c.read_lin(old, "root:t/default/after", WAIT).await,
        Some("1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_all_three_and_restart_keeps_every_acknowledged_write() {
    let mut c = start();
    c.wait_leader(&ALL, WAIT).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let key = format!("root:t/default/w{i}");
        c.put_acked(&ALL, &key, &format!("v{i}"), WAIT).await;
        acked.push((key, format!("v{i}")));
    }
    for id in ALL {
        c.kill(id);
    }
    for id in ALL {
        c.spawn(id).unwrap();
    }
    c.wait_leader(&ALL, WAIT).await;
    for id in ALL {
        for (key, value) in &acked {
            assert_eq!(
                c.read_lin(id, key, WAIT).await.as_deref(),
                Some(value.as_str()),
                "node {id} lost {key}"
            );
        }
    }
    // And the shard still takes writes.
    c.put_acked(&ALL, "root:t/default/after-restart", "1", WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_accepts_no_write_and_serves_no_linearizable_read() {
    let mut c = start();
    c.wait_leader(&ALL, WAIT).await;
    c.put_acked(&ALL, "root:t/default/x", "before", WAIT).await;
    // Make sure node 3 has applied the write before it is cut off.
    assert_eq!(
        c.read_lin(3, "root:t/default/x", WAIT).await,
        Some("before".into())
    );
    c.kill(1);
    c.kill(2);
    // For longer than an election timeout (plus check-quorum step-down),
    // node 3 alone must refuse every write and every linearizable read.
    let until = Instant::now() + Duration::from_secs(5);
    let mut attempts = 0;
    let mut ambiguous = false;
    while Instant::now() < until {
        let w = c.put(3, "root:t/default/x", "minority").await;
        assert!(
            !matches!(w, Some((200, _))),
            "the minority acknowledged a write: {w:?}"
        );
        // 504 (timeout, leadership lost): the outcome is unknown, as with
        // etcd: a leader cut off may have appended it to its log, and it
        // may commit once a majority is back. 502: forwarding to a dead
        // leader failed (counted as unknown too). 503: refused outright.
        match &w {
            Some((503, _)) => {}
            Some((502 | 504, _)) => ambiguous = true,
            other => panic!("unexpected answer to a minority write: {other:?}"),
        }
        let r = c.get(3, "root:t/default/x", "linearizable").await;
        assert!(
            !matches!(r, Some((200, _))),
            "the minority served a linearizable read: {r:?}"
        );
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(attempts >= 5);
    // The errors are explicit once it knows no leader.
    let (code, v) = c.get(3, "root:t/default/x", "linearizable").await.unwrap();
    assert_eq!(code, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no leader"), "{v}");
    // A local read may be stale and is served.
    let (code, v) = c.get(3, "root:t/default/x", "local").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["record"]["value"], "before");
    // Bring one peer back: a majority again. A refused write was never
    // applied; one with an unknown outcome may have been.
    c.spawn(1).unwrap();
    c.wait_leader(&[1, 3], WAIT).await;
    let after = c.read_lin(3, "root:t/default/x", WAIT).await;
    if ambiguous {
        assert!(
            after.as_deref() == Some("before") || after.as_deref() == Some("minority"),
            "{after:?}"
        );
    } else {
        assert_eq!(after.as_deref(), Some("before"));
    }
}
