//! One workspace out of a shard and into another (`tmc workspace export`,
//! `import`, `move`), against `tmc dev --shards 2` (two one-node shards
//! behind the front proxy, Secrets encrypted at rest), with the real
//! `tmc` binary and kubectl:
//!
//! - an export reads back whole; imported into the other shard at another
//!   path it serves the same objects, its Secret decrypted there;
//! - `move` under a writer on the moved workspace and one on a neighbour
//!   of the same shard: every acknowledged write of both is there
//!   afterwards; the moved workspace's writes were held (503) while the
//!   neighbour's went on, some of them during the hold; a watch of the
//!   moved workspace opened before ends with 410, and a list from a
//!   resourceVersion of before gets 410 on the new shard;
//! - a flipped byte, a truncated file, an import into a shard without the
//!   Secret's encryption key, an import over an existing workspace: each
//!   refused, naming what is wrong, leaving nothing behind.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tmc::testcluster::dev::Dev;
use tmc::testcluster::tmc_binary;
use tmc::testcluster::ApiClient;

fn tmc(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tmc_binary()).args(args).output().expect("tmc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An admin client of `tmc dev`'s API (the proxy with --shards).
fn admin(data: &Path, url: &str) -> ApiClient {
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let kc = std::fs::read_to_string(data.join("admin.kubeconfig")).unwrap();
    let token = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token in the admin kubeconfig")
        .to_string();
    ApiClient::new(port, &data.join("ca.crt"))
        .unwrap()
        .bearer(&token)
}

fn cms(ws: &str) -> String {
    format!("/clusters/{ws}/api/v1/namespaces/default/configmaps")
}

/// Creates workspace `name` in root; returns the shard it landed on.
async fn workspace(api: &ApiClient, name: &str) -> String {
    let ws = api
        .must(
            "POST",
            "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces",
            json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
                   "metadata": {"name": name}}),
            201,
        )
        .await;
    ws["spec"]["shard"].as_str().unwrap().to_string()
}

async fn shard_of(api: &ApiClient, name: &str) -> String {
    let ws = api
        .must(
            "GET",
            &format!("/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/{name}"),
            Value::Null,
            200,
        )
        .await;
    ws["spec"]["shard"].as_str().unwrap().to_string()
}

async fn names(api: &ApiClient, path: &str) -> BTreeSet<String> {
    let list = api.must("GET", path, Value::Null, 200).await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

async fn configmap(api: &ApiClient, ws: &str, name: &str) -> u16 {
    api.call(
        "POST",
        &cms(ws),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
               "data": {"v": "x".repeat(200)}}),
    )
    .await
    .0
}

/// What a writer saw: the names acknowledged, when, and when it was held.
#[derive(Default)]
struct Written {
    acked: Vec<(String, Instant)>,
    held: Vec<Instant>,
    other: Vec<u16>,
}

/// Creates ConfigMaps `{prefix}-{i}` in `ws` until `stop`, retrying a 503
/// (a held workspace) after a pause.
async fn writer(
    api: ApiClient,
    ws: String,
    prefix: &'static str,
    stop: Arc<Mutex<bool>>,
) -> Written {
    let mut w = Written::default();
    let mut i = 0;
    while !*stop.lock().unwrap() {
        let name = format!("{prefix}-{i}");
        match configmap(&api, &ws, &name).await {
            201 => {
                w.acked.push((name, Instant::now()));
                i += 1;
            }
            503 => {
                w.held.push(Instant::now());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            code => {
                w.other.push(code);
                i += 1;
            }
        }
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_import_and_move_under_writers_lose_nothing_and_pause_no_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (_dev, url) = Dev::start(&data, &["--shards", "2", "--no-controllers"]);
    let kc = data.join("admin.kubeconfig");
    let kcs = kc.to_str().unwrap();
    let api = admin(&data, &url);
    // Through the proxy once it serves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .call("GET", "/clusters/root/api/v1/namespaces", Value::Null)
        .await
        .0
        != 200
    {
        assert!(Instant::now() < deadline, "the proxy does not serve");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Three workspaces; the mover and a neighbour on one shard.
    let mut placed = Vec::new();
    for n in ["w1", "w2", "w3"] {
        placed.push((n, workspace(&api, n).await));
    }
    let (mover, from) = placed[0].clone();
    let neighbour = placed
        .iter()
        .skip(1)
        .find(|(_, s)| *s == from)
        .map(|(n, _)| *n)
        .unwrap_or_else(|| panic!("no two workspaces on one shard: {placed:?}"));
    let to = if from == "root" { "shard2" } else { "root" };
    let (mover, neighbour) = (format!("root:{mover}"), format!("root:{neighbour}"));

    // Content: ConfigMaps and a Secret (encrypted at rest).
    for i in 0..300 {
        assert_eq!(configmap(&api, &mover, &format!("seed-{i}")).await, 201);
    }
    // A dependant of seed-0: the dependants index travels with the
    // workspace (its entries are workspace keys like the objects).
    let seed0 = api
        .must("GET", &format!("{}/seed-0", cms(&mover)), Value::Null, 200)
        .await;
    api.must(
        "POST",
        &cms(&mover),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "dep", "ownerReferences": [{"apiVersion": "v1",
                   "kind": "ConfigMap", "name": "seed-0", "uid": seed0["metadata"]["uid"]}]}}),
        201,
    )
    .await;
    api.must(
        "POST",
        &format!("/clusters/{mover}/api/v1/namespaces/default/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "stringData": {"password": "hunter2"}}),
        201,
    )
    .await;

    // Export: a file that reads back whole, of the mover's keys only.
    let file = dir.path().join("mover.tmcws");
    let (ok, _, err) = tmc(&[
        "workspace",
        "export",
        &mover,
        "--kubeconfig",
        kcs,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut exported = BTreeSet::new();
    let checked = tmc::backup::workspace::read(&file, |item| {
        exported.insert(item.key.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(checked.header.workspace, mover);
    assert_eq!(checked.header.shard, from);
    assert_eq!(checked.summary.per_resource["configmaps.core"], 301);
    assert_eq!(checked.summary.per_resource["tmc:dependants"], 1);
    assert_eq!(checked.summary.per_resource["secrets.core"], 1);
    assert_eq!(checked.summary.encryption_keys.values().sum::<u64>(), 1);
    assert!(exported.iter().all(|k| k.contains(&format!("/{mover}/"))));

    // Import into the other shard at another path: the same objects, the
    // Secret readable there.
    let (ok, out, err) = tmc(&[
        "workspace",
        "import",
        file.to_str().unwrap(),
        "--kubeconfig",
        kcs,
        "--to",
        "root:copy",
        "--shard",
        to,
        "--json",
    ]);
    assert!(ok, "{err}");
    let imported: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(imported["shard"], to);
    assert_eq!(shard_of(&api, "copy").await, to);
    assert_eq!(
        names(&api, &cms("root:copy")).await,
        names(&api, &cms(&mover)).await
    );
    let secret = api
        .must(
            "GET",
            "/clusters/root:copy/api/v1/namespaces/default/secrets/creds",
            Value::Null,
            200,
        )
        .await;
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(
        secret["metadata"]["annotations"]["kcp.io/cluster"],
        "root:copy"
    );
    // The copy takes writes of its own.
    assert_eq!(configmap(&api, "root:copy", "mine").await, 201);
    // Its index came along: deleting the copy's seed-0 collects the
    // copy's dep (and nothing of the original).
    api.must(
        "DELETE",
        &format!("{}/seed-0", cms("root:copy")),
        Value::Null,
        200,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while names(&api, &cms("root:copy")).await.contains("dep") {
        assert!(
            Instant::now() < deadline,
            "the copy's dep was never collected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(names(&api, &cms(&mover)).await.contains("dep"));

    // Bad input: each refused by name, nothing left behind.
    let bytes = std::fs::read(&file).unwrap();
    let flipped = dir.path().join("flipped.tmcws");
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x20;
    std::fs::write(&flipped, &bad).unwrap();
    let cut = dir.path().join("cut.tmcws");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    for (f, why) in [(&flipped, "damaged"), (&cut, "cut short")] {
        let (ok, _, err) = tmc(&[
            "workspace",
            "import",
            f.to_str().unwrap(),
            "--kubeconfig",
            kcs,
            "--to",
            "root:bad",
        ]);
        assert!(
            !ok && err.contains(why) && err.contains(f.to_str().unwrap()),
            "{err}"
        );
    }
    let (ok, _, err) = tmc(&[
        "workspace",
        "import",
        file.to_str().unwrap(),
        "--kubeconfig",
        kcs,
    ]);
    assert!(!ok && err.contains("exists"), "{err}");
    assert_eq!(
        api.call(
            "GET",
            "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/bad",
            Value::Null
        )
        .await
        .0,
        404
    );

    // A watch of the mover, and a resourceVersion, from before the move.
    let before = api.must("GET", &cms(&mover), Value::Null, 200).await;
    let old_rv = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={old_rv}",
            cms(&mover)
        ))
        .await;

    // The move, under a writer on the mover and one on the neighbour.
    let stop = Arc::new(Mutex::new(false));
    let wm = tokio::spawn(writer(api.clone(), mover.clone(), "m", stop.clone()));
    let wn = tokio::spawn(writer(api.clone(), neighbour.clone(), "n", stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, out, err) = {
        let (m, t, k) = (mover.clone(), to.to_string(), kcs.to_string());
        tokio::task::spawn_blocking(move || {
            tmc(&[
                "workspace",
                "move",
                &m,
                "--to",
                &t,
                "--kubeconfig",
                &k,
                "--json",
            ])
        })
        .await
        .unwrap()
    };
    assert!(ok, "{err}");
    let moved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(moved["from"], from.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    *stop.lock().unwrap() = true;
    let (wm, wn) = (wm.await.unwrap(), wn.await.unwrap());

    // The index names the new shard; everything acknowledged is there.
    assert_eq!(
        shard_of(&api, mover.strip_prefix("root:").unwrap()).await,
        to
    );
    assert!(
        wm.other.is_empty() && wn.other.is_empty(),
        "{:?} {:?}",
        wm.other,
        wn.other
    );
    let have = names(&api, &cms(&mover)).await;
    for (n, _) in &wm.acked {
        assert!(have.contains(n), "{n} was acknowledged and is gone");
    }
    assert!(have.contains("seed-0") && have.contains("seed-299"));
    let have_n = names(&api, &cms(&neighbour)).await;
    for (n, _) in &wn.acked {
        assert!(have_n.contains(n), "{n} was acknowledged and is gone");
    }
    // The mover was held; the neighbour wrote on meanwhile, never held.
    assert!(!wm.held.is_empty(), "no write of the mover was held");
    assert!(wn.held.is_empty(), "the neighbour was held");
    let (first, last) = (wm.held[0], *wm.held.last().unwrap());
    let during = wn
        .acked
        .iter()
        .filter(|(_, t)| *t >= first && *t <= last)
        .count();
    assert!(
        during > 0,
        "no write of the neighbour during the mover's hold"
    );
    // Writes resumed on the new shard.
    assert!(
        wm.acked.iter().any(|(_, t)| *t > last),
        "no write after the move"
    );
    let secret = api
        .must(
            "GET",
            &format!("/clusters/{mover}/api/v1/namespaces/default/secrets/creds"),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");

    // The watch from before ended with 410; an old resourceVersion is
    // refused with 410 on the new shard.
    let mut gone = None;
    while let Some(ev) = watch.next(Duration::from_secs(20)).await {
        if ev["type"] == "ERROR" {
            gone = Some(ev);
            break;
        }
    }
    let gone = gone.expect("the watch ended without an ERROR event");
    assert_eq!(gone["object"]["code"], 410, "{gone}");
    let (code, body) = api
        .call(
            "GET",
            &format!("{}?resourceVersion={old_rv}&limit=10", cms(&mover)),
            Value::Null,
        )
        .await;
    assert_eq!(code, 410, "{body}");
    let (code, body) = api
        .call(
            "GET",
            &format!("{}?watch=true&resourceVersion={old_rv}", cms(&mover)),
            Value::Null,
        )
        .await;
    assert_eq!(code, 410, "{body}");

    // The copy imported earlier is untouched by the move.
    assert!(names(&api, &cms("root:copy")).await.contains("mine"));

    // Into a shard without the Secret's key: refused naming the Secret
    // and the key, nothing left.
    let other = dir.path().join("other");
    let (_dev2, url2) = Dev::start(&other, &["--no-controllers"]);
    let api2 = admin(&other, &url2);
    let (ok, _, err) = tmc(&[
        "workspace",
        "import",
        file.to_str().unwrap(),
        "--kubeconfig",
        other.join("admin.kubeconfig").to_str().unwrap(),
    ]);
    // (Its key has the same name, other bytes: the Secret does not open.)
    assert!(
        !ok && err.contains("key1") && err.contains("decrypt") && err.contains("secrets/root:"),
        "{err}"
    );
    let name = mover.strip_prefix("root:").unwrap();
    assert_eq!(
        api2.call(
            "GET",
            &format!("/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/{name}"),
            Value::Null
        )
        .await
        .0,
        404
    );
}
