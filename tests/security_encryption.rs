//! Secrets encrypted at rest, on a three-node shard of real `tmc serve`
//! processes: no Secret value in clear in any node's RocksDB files (a
//! ConfigMap holding a value of the same shape proves the scan would see
//! it), key rotation by kube-apiserver's procedure with live reloads of the
//! config file and `tmc encryption rewrite`, and a config without the key
//! giving clear errors while losing nothing.

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tmc::store::{self, GroupResource, ListOptions, Prefix, RocksOptions, StoreOptions};
use tmc::testcluster::members::kubectl_at;
use tmc::testcluster::TestCluster;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn config(keys: &[(&str, u8)]) -> String {
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

/// Every file under `dir`, read whole.
fn files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Which raw files of the nodes hold `needle`.
fn raw_hits(shard: &TestCluster, needle: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for id in 1..=3 {
        files(&shard.dir().join(format!("node{id}")), &mut all);
    }
    all.into_iter()
        .filter(|(_, b)| contains(b, needle))
        .map(|(p, _)| p)
        .collect()
}

/// Waits until every node logged `n` reloads of the encryption config.
fn wait_reloaded(shard: &TestCluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts: Vec<usize> = (1..=3)
            .map(|id| {
                std::fs::read_to_string(shard.log_path(id))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| {
                        l.contains("encryption config") && l.contains("reloaded from its files")
                    })
                    .count()
            })
            .collect();
        if counts.iter().all(|&c| c >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not reload the encryption config ({counts:?} of {n})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The key names the stored Secrets of node `id` are encrypted under
/// (`clear` for clear text), read from its RocksDB after stopping it.
fn stored_key_names(shard: &mut TestCluster, id: u64) -> Vec<(String, String)> {
    // A read through replica `id` waits for a linearizable read point: the
    // replica has then applied every write acknowledged before, which a
    // lagging follower would not have on disk yet.
    let kc = shard.kubeconfig(id, "root");
    let (ok, _, err) = kubectl_at(&kc, &["get", "secrets", "-n", "default"]);
    assert!(ok, "read through replica {id}: {err}");
    shard.kill(id);
    let engine = store::RocksEngine::open(
        &shard.dir().join(format!("node{id}")).join("data"),
        &RocksOptions::default(),
    )
    .unwrap();
    let st = store::Store::open(engine, StoreOptions::default()).unwrap();
    let gr = GroupResource::new("", "secrets").unwrap();
    let page = st
        .list(&Prefix::resource(&gr), &ListOptions::default())
        .unwrap();
    let names = page
        .items
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(&r.key).into_owned();
            let v = String::from_utf8_lossy(&r.value);
            let name = match v.strip_prefix("k8s:enc:aesgcm:v1:") {
                Some(rest) => rest.split(':').next().unwrap().to_string(),
                None => "clear".to_string(),
            };
            (key, name)
        })
        .collect();
    drop(st);
    shard.spawn(id).unwrap();
    shard.wait_ready(id);
    names
}

fn secret_value(kc: &Path, ns: &str, name: &str) -> Result<String, String> {
    let (ok, out, err) = kubectl_at(
        kc,
        &[
            "get",
            "secret",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.data.password}",
        ],
    );
    if ok {
        Ok(out)
    } else {
        Err(err)
    }
}

#[test]
fn secrets_are_encrypted_at_rest_and_keys_rotate_without_loss() {
    let keys_dir = tempfile::tempdir().unwrap();
    let cfg = keys_dir.path().join("encryption.yaml");
    std::fs::write(&cfg, config(&[("key1", 1)])).unwrap();
    let mut shard = TestCluster::start_with(
        &[
            "--no-controllers",
            "--encryption-config",
            cfg.to_str().unwrap(),
        ],
        "",
    );
    let kc1 = shard.kubeconfig(1, "root");
    let kc2 = shard.kubeconfig(2, "root");

    // A Secret through stringData and one through data, and a ConfigMap
    // holding a base64 value of the same shape: the control.
    let secret_clear = "tiger-lily-7781-secret-value";
    let secret2_clear = "second-secret-9913-value";
    let control_clear = "control-value-4417-in-configmap";
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s1, namespace: default}}\nstringData: {{password: {secret_clear}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: s2, namespace: default}}\ndata: {{password: {}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: control, namespace: default}}\ndata: {{password: {}}}\n",
        b64(secret2_clear),
        b64(control_clear)
    );
    let path = keys_dir.path().join("objects.yaml");
    std::fs::write(&path, manifest).unwrap();
    let (ok, _, err) = kubectl_at(&kc2, &["apply", "-f", path.to_str().unwrap()]);
    assert!(ok, "apply: {err}");

    // Clients see plain values, on every node.
    for kc in [&kc1, &kc2] {
        assert_eq!(
            secret_value(kc, "default", "s1").unwrap(),
            b64(secret_clear)
        );
        assert_eq!(
            secret_value(kc, "default", "s2").unwrap(),
            b64(secret2_clear)
        );
    }
    let (ok, out, _) = kubectl_at(&kc1, &["get", "secrets", "-n", "default", "-o", "json"]);
    assert!(
        ok && out.contains(&b64(secret_clear)),
        "list shows the value: {out}"
    );

    // The raw files: the control is there in clear (the scan can see a
    // value of this shape), no Secret value is, in any form.
    let control_hits = raw_hits(&shard, &b64(control_clear));
    assert!(
        !control_hits.is_empty(),
        "the control value should be visible in the raw files"
    );
    for needle in [
        secret_clear.to_string(),
        b64(secret_clear),
        secret2_clear.to_string(),
        b64(secret2_clear),
    ] {
        assert_eq!(
            raw_hits(&shard, &needle),
            Vec::<PathBuf>::new(),
            "{needle} in clear"
        );
    }
    // Nor do the logs hold a Secret value or the admin token.
    let token = shard.token();
    for id in 1..=3 {
        let log = std::fs::read_to_string(shard.log_path(id)).unwrap();
        for needle in [secret_clear, &b64(secret_clear), &token] {
            assert!(!log.contains(needle), "node {id}'s log holds {needle}");
        }
    }
    let names = stored_key_names(&mut shard, 3);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|(_, n)| n == "key1"), "{names:?}");

    // Rotation, kube-apiserver's way. 1: the new key everywhere, second.
    std::fs::write(&cfg, config(&[("key1", 1), ("key2", 2)])).unwrap();
    wait_reloaded(&shard, 1);
    // 2: the new key first everywhere; new writes use it, old values read.
    std::fs::write(&cfg, config(&[("key2", 2), ("key1", 1)])).unwrap();
    wait_reloaded(&shard, 2);
    // (`kubectl create secret` would send protobuf, which tmc does not
    // take yet: apply sends JSON.)
    let s3 = keys_dir.path().join("s3.yaml");
    std::fs::write(
        &s3,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s3, namespace: default}\nstringData: {password: third}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl_at(&kc1, &["apply", "-f", s3.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        secret_value(&kc2, "default", "s1").unwrap(),
        b64(secret_clear)
    );
    // 3: rewrite everything under the new key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tmc"))
        .args(["encryption", "rewrite", "--kubeconfig"])
        .arg(&kc1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rewrite: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rewrote 3 Secrets in 1 workspaces"),
        "{stdout}"
    );
    let names = stored_key_names(&mut shard, 3);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|(_, n)| n == "key2"), "{names:?}");
    // 4: the old key removed; everything still reads.
    std::fs::write(&cfg, config(&[("key2", 2)])).unwrap();
    wait_reloaded(&shard, 3);
    for kc in [&kc1, &kc2] {
        assert_eq!(
            secret_value(kc, "default", "s1").unwrap(),
            b64(secret_clear)
        );
        assert_eq!(secret_value(kc, "default", "s3").unwrap(), b64("third"));
    }

    // A config that does not parse: the old keys stay in force.
    std::fs::write(&cfg, "apiVersion: nope\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(shard.log_path(1))
        .unwrap()
        .lines()
        .any(|l| l.contains("encryption config") && l.contains("not reloaded"))
    {
        assert!(Instant::now() < deadline, "the bad config was not noticed");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        secret_value(&kc1, "default", "s2").unwrap(),
        b64(secret2_clear)
    );

    // A config without the key: reads fail with an error naming the key,
    // writes of other Secrets go on, and nothing is lost once the key is
    // back.
    std::fs::write(&cfg, config(&[("key9", 9)])).unwrap();
    wait_reloaded(&shard, 4);
    let err = secret_value(&kc1, "default", "s1").unwrap_err();
    assert!(
        err.contains("key2") && err.contains("does not hold"),
        "the error names the missing key: {err}"
    );
    std::fs::write(&cfg, config(&[("key2", 2)])).unwrap();
    wait_reloaded(&shard, 5);
    for (name, value) in [("s1", secret_clear), ("s2", secret2_clear), ("s3", "third")] {
        assert_eq!(secret_value(&kc2, "default", name).unwrap(), b64(value));
    }
}
