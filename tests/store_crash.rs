//! Crash safety: a child process commits numbered batches and reports each
//! one it has durably committed; it is SIGKILLed at random points, more than
//! fifty times. After every kill the store must reopen with every
//! acknowledged batch whole and no batch in part.

use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tmc::store::{self, GroupResource, ListOptions, Prefix, RocksOptions, StoreOptions, Workspace};

const BATCH: u32 = 8;
const KILLS: usize = 60;

/// Batch number -> how many of its keys are stored.
fn batches_in(dir: &std::path::Path) -> (BTreeMap<u64, u32>, u64) {
    let st = store::open_rocks(dir, &RocksOptions::default(), StoreOptions::default()).unwrap();
    let gr = GroupResource::new("", "configmaps").unwrap();
    let prefix = Prefix::workspace(&gr, &Workspace::parse("root:crash").unwrap());
    let mut counts = BTreeMap::new();
    for r in st.list(&prefix, &ListOptions::default()).unwrap().items {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let b = v["batch"].as_u64().unwrap();
        assert_eq!(r.mod_revision, b, "batch {b} committed at its own revision");
        *counts.entry(b).or_insert(0) += 1;
    }
    (counts, st.revision())
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let mut rng = rand::rng();
    let mut acked_total = 0u64;
    let mut kills_mid_write = 0;
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tmc"))
            .args([
                "debug",
                "crash-writer",
                "--batch-size",
                &BATCH.to_string(),
                "--data-dir",
            ])
            .arg(&data)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the crash writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("acked ") {
                    if tx.send(n.parse::<u64>().unwrap()).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for the first acknowledgement, so the kill lands while the
        // writer is busy committing, then kill after a random delay.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer acknowledges a batch");
        let delay = Duration::from_micros(rng.random_range(0..30_000));
        let until = Instant::now() + delay;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut acked = first;
        while let Ok(n) = rx.try_recv() {
            acked = acked.max(n);
        }
        let (batches, revision) = batches_in(&data);
        for (b, count) in &batches {
            assert_eq!(
                *count, BATCH,
                "round {round}: batch {b} is partial ({count} of {BATCH} keys)"
            );
        }
        for b in 1..=acked {
            assert!(
                batches.contains_key(&b),
                "round {round}: acknowledged batch {b} is lost"
            );
        }
        let newest = batches.keys().last().copied().unwrap_or(0);
        assert!(
            newest <= acked + 1,
            "round {round}: batch {newest} beyond the one in flight"
        );
        assert_eq!(
            revision, newest,
            "round {round}: the revision matches the data"
        );
        if newest > acked {
            kills_mid_write += 1;
        }
        assert!(acked >= acked_total, "acknowledgements only grow");
        acked_total = acked;
    }
    assert!(
        acked_total >= KILLS as u64,
        "every round acknowledged at least one batch"
    );
    eprintln!("{KILLS} kills, {acked_total} batches acknowledged, {kills_mid_write} kills after a commit and before its ack");
}
