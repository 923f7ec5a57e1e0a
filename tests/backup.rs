//! `tmc backup` and `tmc backup verify` against a running three-node shard
//! (mutual TLS, the API over HTTPS), with the real `tmc` binary:
//!
//! - under a continuous writer, every write acknowledged before the backup
//!   began is in it, and the backup's digest is the data's;
//! - verify prints the revision, keys per resource and the hash, and exits
//!   non-zero on a flipped byte anywhere, a truncated file, a foreign file;
//!   the failed download of a non-admin leaves no file behind.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tmc::testcluster::{block_on, tmc_binary, TestCluster};

const BOB: &str = "tok-bob-0123456789";

fn tmc(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tmc_binary()).args(args).output().expect("tmc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The ConfigMap names in `root`'s `default` namespace of an extracted
/// backup.
fn configmaps_in(file: &Path) -> BTreeSet<String> {
    use tmc::store::{
        GroupResource, ListOptions, Prefix, RocksEngine, RocksOptions, Store, StoreOptions,
        Workspace,
    };
    let scratch = tempfile::tempdir().unwrap();
    tmc::backup::verify(file, scratch.path()).expect("a good backup");
    let engine = RocksEngine::open(&scratch.path().join("data"), &RocksOptions::default()).unwrap();
    let store = Store::open(engine, StoreOptions::default()).unwrap();
    let gr = GroupResource::new("", "configmaps").unwrap();
    let prefix = Prefix::namespace(&gr, &Workspace::parse("root").unwrap(), "default").unwrap();
    let page = store.list(&prefix, &ListOptions::default()).unwrap();
    page.items
        .iter()
        .filter_map(|r| match tmc::store::Key::decode(&r.key) {
            Some(tmc::store::Key::Object(o)) => Some(o.name),
            _ => None,
        })
        .collect()
}

#[test]
fn a_backup_under_a_writer_holds_every_acknowledged_write_and_verify_catches_damage() {
    let shard = TestCluster::start_with_tokens(&format!("{BOB},bob,bob-uid\n"));
    let admin_kc = shard.kubeconfig(1, "root");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shard.tmcbackup");

    // A writer through replica 2 all along.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, api) = (acked.clone(), stop.clone(), shard.api_client(2));
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w-{n:05}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"n": n.to_string()}});
                let (code, _) = block_on(api.call(
                    "POST",
                    "/clusters/root/api/v1/namespaces/default/configmaps",
                    body,
                ));
                if code == 201 || code == 409 {
                    acked.lock().unwrap().push(name);
                    n += 1;
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let (ok, out, err) = tmc(&[
        "backup",
        "--kubeconfig",
        admin_kc.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
        "--json",
    ]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok, "tmc backup: {out}{err}");
    let manifest: Value = serde_json::from_str(&out).expect("the manifest as JSON");
    assert_eq!(manifest["format"], "tmc-backup/1", "{manifest}");
    assert_eq!(manifest["shard"], "root", "{manifest}");
    assert!(!dir.path().join("shard.tmcbackup.partial").exists());

    // Everything acknowledged before the backup began is in it.
    let inside = configmaps_in(&file);
    let missing: Vec<&String> = before.iter().filter(|n| !inside.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );

    // verify: the figures, as JSON and as text.
    let (ok, out, err) = tmc(&["backup", "verify", file.to_str().unwrap(), "--json"]);
    assert!(ok, "verify: {out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["store"], manifest["store"], "{v}");
    assert_eq!(
        v["store"]["perResource"]["core/configmaps"].as_u64(),
        Some(inside.len() as u64),
        "{v}"
    );
    assert!(v["manifest"]["revision"].as_u64() > Some(30), "{v}");
    let (ok, out, _) = tmc(&["backup", "verify", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("every digest matches") && out.contains("core/configmaps"),
        "{out}"
    );

    // Damage: a flipped byte at several places, a cut, a foreign file.
    let good = std::fs::read(&file).unwrap();
    let bad = dir.path().join("bad");
    for at in [
        10,
        good.len() / 3,
        good.len() / 2,
        good.len() - 100,
        good.len() - 12,
    ] {
        let mut b = good.clone();
        b[at] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        let (ok, out, err) = tmc(&["backup", "verify", bad.to_str().unwrap()]);
        assert!(!ok, "a flipped byte at {at} passed: {out}");
        assert!(
            err.contains(bad.to_str().unwrap()),
            "the error names the file: {err}"
        );
    }
    for cut in [good.len() / 2, good.len() - 1] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        let (ok, out, err) = tmc(&["backup", "verify", bad.to_str().unwrap()]);
        assert!(!ok, "a file cut at {cut} passed: {out}");
        assert!(err.contains(bad.to_str().unwrap()), "{err}");
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing");
    std::fs::write(&bad, &longer).unwrap();
    let (ok, _, err) = tmc(&["backup", "verify", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("no tmc backup trailer"), "{err}");
    // Another backup appended is refused too.
    let mut appended = good.clone();
    appended.extend_from_slice(&good);
    std::fs::write(&bad, &appended).unwrap();
    let (ok, _, err) = tmc(&["backup", "verify", bad.to_str().unwrap()]);
    assert!(!ok && err.contains(bad.to_str().unwrap()), "{err}");
    std::fs::write(&bad, b"not a backup at all").unwrap();
    let (ok, _, err) = tmc(&["backup", "verify", bad.to_str().unwrap()]);
    assert!(!ok && err.contains(bad.to_str().unwrap()), "{err}");

    // Only system:masters may take one; a refused download leaves nothing.
    let bob_kc = shard.kubeconfig_with_token(1, "root", BOB);
    let refused = dir.path().join("bob.tmcbackup");
    let (ok, _, err) = tmc(&[
        "backup",
        "--kubeconfig",
        bob_kc.to_str().unwrap(),
        "-o",
        refused.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("403"), "{err}");
    assert!(!refused.exists());
    assert!(!dir.path().join("bob.tmcbackup.partial").exists());
}
