//! `tmc backup` and `tmc backup verify` against a running three-node shard
//! (mutual TLS, the API over HTTPS), with the real `tmc` binary:
//!
//! - under a continuous writer, every write acknowledged before the backup
//!   began is in it, and the backup's digest is the data's;
//! - verify prints the revision, keys per resource and the hash, and exits
//!   non-zero on a flipped byte anywhere, a truncated file, a foreign file;
//!   the failed download of a non-admin leaves no file behind;
//! - `tmc backup hash` of the live shard equals verify's hash of a backup
//!   at the same revision;
//! - `tmc restore` into three fresh replicas (a new cluster id) serves
//!   kubectl the same objects, and a watch from an old resourceVersion
//!   gets 410; into five, whose peers refuse a member restored with
//!   another cluster id; into `tmc dev`'s layout, with the encryption key
//!   the Secrets need (refused without it, and into a non-empty
//!   directory, leaving nothing behind).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tmc::testcluster::dev::Dev;
use tmc::testcluster::members::{kubectl_binary, kubectl_with};
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

/// `tmc backup --kubeconfig kc -o file` (plus `extra`).
fn backup_to(kc: &Path, file: &Path, extra: &[&str]) -> (bool, String, String) {
    let (kc, file) = (kc.to_str().unwrap(), file.to_str().unwrap());
    tmc(&[&["backup", "--kubeconfig", kc, "-o", file], extra].concat())
}

/// `tmc restore file --data-dir dir` (plus `extra`).
fn restore(file: &Path, dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let (file, dir) = (file.to_str().unwrap(), dir.to_str().unwrap());
    tmc(&[&["restore", file, "--data-dir", dir], extra].concat())
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
    let (ok, out, err) = backup_to(&admin_kc, &file, &["--json"]);
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
    let (ok, _, err) = backup_to(&bob_kc, &refused, &[]);
    assert!(!ok && err.contains("403"), "{err}");
    assert!(!refused.exists());
    assert!(!dir.path().join("bob.tmcbackup.partial").exists());

    // The live shard's hash now equals that of a backup taken now (nothing
    // writes any more).
    let (ok, out, err) = tmc(&[
        "backup",
        "hash",
        "--kubeconfig",
        admin_kc.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let live: Value = serde_json::from_str(&out).unwrap();
    let file2 = dir.path().join("now.tmcbackup");
    let (ok, out, err) = backup_to(&admin_kc, &file2, &["--json"]);
    assert!(ok, "{err}");
    let now: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(live["revision"], now["revision"], "{live} {now}");
    assert_eq!(live["store"], now["store"], "{live} {now}");
    let old_rv = manifest["revision"].as_u64().unwrap();
    drop(shard);

    // Restored into three fresh replicas: the same objects, a new cluster
    // id, and a watch from before the restore gets 410.
    let mut restored = TestCluster::builder()
        .args(&["--no-controllers"])
        .build()
        .unwrap();
    let cluster_id = "00c0ffee00c0ffee";
    for id in restored.ids() {
        let out = restore_member(&file, &restored.data_dir(id), id, "1,2,3", cluster_id);
        assert!(out.contains(cluster_id), "{out}");
    }
    restored.start_founders().unwrap();
    let kc = restored.kubeconfig(2, "root");
    let kubectl = kubectl_binary();
    let (ok, out, err) = kubectl_with(
        &kubectl,
        &kc,
        &["get", "configmaps", "-n", "default", "-o", "name"],
        None,
    );
    assert!(ok, "{err}");
    let served: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .filter(|n| n.starts_with("w-"))
        .map(str::to_string)
        .collect();
    let backed: BTreeSet<String> = inside
        .iter()
        .filter(|n| n.starts_with("w-"))
        .cloned()
        .collect();
    assert_eq!(served, backed);
    for id in restored.ids() {
        let st = block_on(restored.status(id)).expect("status");
        assert_eq!(st.cluster_id, cluster_id, "node {id}");
    }
    let api = restored.api_client(1);
    let (code, body) = block_on(api.call(
        "GET",
        &format!(
            "/clusters/root/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact"
        ),
        Value::Null,
    ));
    assert_eq!(code, 410, "{body}");
    let ev = block_on(async {
        let mut w = api
            .watch(&format!(
                "/clusters/root/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"
            ))
            .await;
        w.next(std::time::Duration::from_secs(10)).await
    })
    .expect("an event");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["code"], 410, "{ev}");
    // Writes go on, at revisions past everything the old shard handed out.
    let created = block_on(api.must(
        "POST",
        "/clusters/root/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}),
        201,
    ));
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > old_rv + 1_000_000_000, "{created}");
}

/// Restores `file` as member `id` of `members` with `cluster_id` into
/// `dir`; what it printed.
fn restore_member(file: &Path, dir: &Path, id: u64, members: &str, cluster_id: &str) -> String {
    let (ok, out, err) = restore(
        file,
        dir,
        &[
            "--member",
            &id.to_string(),
            "--initial-cluster",
            members,
            "--cluster-id",
            cluster_id,
        ],
    );
    assert!(ok, "restore member {id}: {out}{err}");
    out
}

#[test]
fn a_restore_into_five_refuses_a_member_restored_with_another_cluster_id() {
    let shard = TestCluster::start();
    let api = shard.api_client(1);
    for i in 0..5 {
        block_on(api.must(
            "POST",
            "/clusters/root/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}}),
            201,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tmcbackup");
    let kc = shard.kubeconfig(1, "root");
    let (ok, _, err) = backup_to(&kc, &file, &[]);
    assert!(ok, "{err}");
    drop(shard);

    // Several members need one cluster id given.
    let (ok, _, err) = restore(
        &file,
        &dir.path().join("x"),
        &["--member", "1", "--initial-cluster", "1,2,3"],
    );
    assert!(!ok && err.contains("--cluster-id"), "{err}");
    assert!(!dir.path().join("x").exists());

    let mut five = TestCluster::builder()
        .nodes(5)
        .args(&["--no-controllers"])
        .build()
        .unwrap();
    for id in five.ids() {
        restore_member(
            &file,
            &five.data_dir(id),
            id,
            "1,2,3,4,5",
            "0000000000000005",
        );
    }
    five.start_founders().unwrap();
    let names = |c: &TestCluster, id: u64| {
        let (code, list) = block_on(c.api_client(id).call(
            "GET",
            "/clusters/root/api/v1/namespaces/default/configmaps",
            Value::Null,
        ));
        assert_eq!(code, 200, "{list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    let want: BTreeSet<String> = (0..5).map(|i| format!("c{i}")).collect();
    assert!(want.is_subset(&names(&five, 4)));
    let st = block_on(five.status(1)).unwrap();
    assert_eq!(st.voters, vec![1, 2, 3, 4, 5]);

    // Member 5 again, restored from the same backup with another cluster
    // id: the others refuse it, it refuses them, nothing crosses.
    five.kill(5);
    std::fs::remove_dir_all(five.data_dir(5)).unwrap();
    restore_member(&file, &five.data_dir(5), 5, "1,2,3,4,5", "0000000000000006");
    five.spawn(5).unwrap();
    let api1 = five.api_client(1);
    // (Member 5 may have led: a write is retried until the others elect
    // another leader.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, v) = block_on(api1.call(
            "POST",
            "/clusters/root/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "while-5-is-foreign"}}),
        ));
        if code == 201 || code == 409 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write without member 5: {code} {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(five.log_path(5)).unwrap_or_default();
        if log.contains("refused a peer") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 5 never refused a peer:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(log.contains("0000000000000005"), "{log}");
    let st5 = block_on(five.status(5)).expect("node 5 answers");
    assert_eq!(st5.cluster_id, "0000000000000006");
    assert_eq!(st5.leader, None, "{st5:?}");
    assert!(
        st5.term <= 1,
        "no message of the other cluster reached it: {st5:?}"
    );
    let leader = block_on(five.current_leader(&[1, 2, 3, 4])).expect("a leader");
    let st = block_on(five.status(leader)).unwrap();
    assert!(
        st.matched.get(&5).copied().unwrap_or(0) < st.commit,
        "node 5 took entries of another cluster: {st:?}"
    );
}

#[test]
fn dev_restores_with_its_encryption_key_and_refuses_bad_targets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("old");
    let kubectl = kubectl_binary();
    let file = dir.path().join("dev.tmcbackup");
    let old_rv;
    {
        let (_dev, _url) = Dev::start(&data, &["--no-controllers"]);
        let kc = data.join("admin.kubeconfig");
        let run = |args: &[&str]| kubectl_with(&kubectl, &kc, args, None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !run(&[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=p=hunter2",
        ])
        .0
        {
            assert!(std::time::Instant::now() < deadline, "no secret written");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let (ok, out, err) = run(&[
            "create",
            "configmap",
            "c1",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        assert!(ok, "{err}");
        old_rv = out.trim().to_string();
        let (ok, _, err) = backup_to(&kc, &file, &[]);
        assert!(ok, "{err}");
    }
    let (ok, out, _) = tmc(&["backup", "verify", file.to_str().unwrap()]);
    assert!(ok && out.contains("encrypted with key"), "{out}");

    // Without the key the Secrets need: refused, naming it; nothing left.
    let new = dir.path().join("new");
    let (ok, _, err) = restore(&file, &new, &[]);
    assert!(
        !ok && err.contains("key1") && err.contains("--encryption-config"),
        "{err}"
    );
    assert!(!new.exists(), "a failed restore left {}", new.display());
    // A configuration without that key: refused too.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        tmc::encryption::Keys::generate_config().replace("key1", "key9"),
    )
    .unwrap();
    let (ok, _, err) = restore(
        &file,
        &new,
        &["--encryption-config", other.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("\"key1\"") && err.contains("other.yaml"),
        "{err}"
    );
    assert!(!new.exists());
    // A non-empty directory: refused, untouched.
    let (ok, _, err) = restore(&file, &data, &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
    assert!(data.join("admin.kubeconfig").exists() && data.join("shard").exists());
    // A damaged file: refused, naming it; nothing left.
    let bad = dir.path().join("bad.tmcbackup");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, _, err) = restore(&bad, &new, &[]);
    assert!(!ok && err.contains("bad.tmcbackup"), "{err}");
    assert!(!new.exists());

    let (ok, out, err) = restore(
        &file,
        &new,
        &[
            "--encryption-config",
            data.join("encryption.yaml").to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    let (_dev, _url) = Dev::start(&new, &["--no-controllers"]);
    let kc = new.join("admin.kubeconfig");
    let run = |args: &[&str]| kubectl_with(&kubectl, &kc, args, None);
    let (ok, out, err) = run(&["get", "secret", "s1", "-o", "jsonpath={.data.p}"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "aHVudGVyMg==");
    let (ok, out, err) = run(&["get", "configmap", "c1", "-o", "name"]);
    assert!(ok && out.trim() == "configmap/c1", "{out}{err}");
    let (ok, out, err) = run(&[
        "get",
        "--raw",
        // kubectl puts the kubeconfig's path (/clusters/root) in front.
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"),
        "--request-timeout=5s",
    ]);
    assert!(out.contains("\"code\":410"), "{ok} {out} {err}");
}

#[test]
fn all_shards_through_the_proxy_one_verified_file_each_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (_dev, _url) = Dev::start(&data, &["--shards", "2", "--no-controllers"]);
    let kc = data.join("admin.kubeconfig");
    let kubectl = kubectl_binary();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !kubectl_with(&kubectl, &kc, &["create", "configmap", "c1"], None).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no write through the proxy"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A set holds the shards of the registry: wait until both have
    // registered (each shard's registrar writes its entry once its first
    // term has counted its logical clusters).
    while kubectl_with(&kubectl, &kc, &["get", "shards", "-o", "name"], None)
        .1
        .lines()
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry never listed both shards"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out_dir = dir.path().join("set");
    let (ok, out, err) = tmc(&[
        "backup",
        "--all-shards",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let index: Value = serde_json::from_str(&out).unwrap();
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index, on_disk);
    let shards: BTreeSet<String> = index["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shard"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shards, ["root", "shard2"].map(String::from).into());
    for s in index["shards"].as_array().unwrap() {
        let file = out_dir.join(s["file"].as_str().unwrap());
        let v = tmc::backup::verify(&file, &dir.path().join(format!("x-{}", s["shard"]))).unwrap();
        assert_eq!(v.manifest.shard, s["shard"].as_str().unwrap());
        assert_eq!(v.store.sha256, s["sha256"].as_str().unwrap());
    }
    // The ConfigMap is in root's file.
    assert!(configmaps_in(&out_dir.join("root.tmcbackup")).contains("c1"));
    // A second set into the same directory is refused, the first untouched.
    let (ok, _, err) = tmc(&[
        "backup",
        "--all-shards",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not empty"), "{err}");
    assert!(out_dir.join("index.json").exists());
    // Without --all-shards, the proxy's /tmc/backup is the root shard's.
    let (ok, _, err) = tmc(&[
        "backup",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "-o",
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let m = tmc::backup::read_manifest(&dir.path().join("none")).unwrap();
    assert_eq!(m.shard, "root");
}

/// Waits until `path` holds at least `bytes`, or panics.
fn wait_for_bytes(path: &Path, bytes: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never reached {bytes} bytes",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `tmc backup` killed midway leaves no backup (what it had written is
/// refused by verify and restore, naming the file); a backup whose shard
/// replica is killed midway fails, naming the broken transfer, and leaves
/// nothing. Both are stopped (SIGSTOP) once data flows, so "midway" is not
/// a race: the answering replica blocks on the stopped reader.
#[test]
fn a_backup_killed_midway_or_losing_its_replica_midway_leaves_no_backup() {
    use tmc::testcluster::noise;
    let mut shard = TestCluster::start();
    // About 20 MB that does not compress (twice over in the checkpoint,
    // with the raft log): far more than the socket buffers hold.
    block_on(async {
        let api = shard.api_client(1);
        for batch in 0..50 {
            let mut calls = Vec::new();
            for i in 0..20 {
                let n = batch * 20 + i;
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("big-{n:04}")},
                    "data": {"v": noise(n, 20_000)}});
                calls.push(api.call(
                    "POST",
                    "/clusters/root/api/v1/namespaces/default/configmaps",
                    body,
                ));
            }
            for (code, v) in futures_util::future::join_all(calls).await {
                assert_eq!(code, 201, "{v}");
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let start = |kc: &Path, file: &Path| {
        Command::new(tmc_binary())
            .args(["backup", "--json", "--kubeconfig"])
            .arg(kc)
            .arg("-o")
            .arg(file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let signal = |child: &std::process::Child, sig: libc::c_int| {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
    };

    // 1. The client killed midway.
    let file = dir.path().join("killed.tmcbackup");
    let partial = dir.path().join("killed.tmcbackup.partial");
    let mut child = start(&shard.kubeconfig(1, "root"), &file);
    wait_for_bytes(&partial, 64 << 10);
    signal(&child, libc::SIGSTOP);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(!file.exists(), "a killed backup left {}", file.display());
    let (ok, _, err) = tmc(&["backup", "verify", partial.to_str().unwrap()]);
    assert!(
        !ok && err.contains(partial.to_str().unwrap()) && err.contains("cut short"),
        "{err}"
    );
    let target = dir.path().join("restored");
    let (ok, _, err) = restore(&partial, &target, &[]);
    assert!(!ok && err.contains("cut short"), "{err}");
    assert!(
        !target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(),
        "a refused restore left files in {}",
        target.display()
    );

    // 2. The replica that answers (the leader) killed midway.
    let leader = shard.leader();
    let file = dir.path().join("lost.tmcbackup");
    let partial = dir.path().join("lost.tmcbackup.partial");
    let child = start(&shard.kubeconfig(leader, "root"), &file);
    wait_for_bytes(&partial, 64 << 10);
    signal(&child, libc::SIGSTOP);
    shard.kill(leader);
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a backup from a killed replica succeeded"
    );
    assert!(
        err.contains("transfer") || err.contains("cut short"),
        "no clear error: {err}"
    );
    assert!(
        !file.exists() && !partial.exists(),
        "a failed backup left files"
    );
}
