//! A shard run the way its StatefulSet runs it: each replica a `tmc serve
//! --pod-name` process with only what a pod knows (its name, its IP, the
//! headless Service's domain), each on its own loopback address, the pod
//! DNS names resolving to those addresses through an /etc/hosts of its own
//! (a private mount namespace; the machine's /etc/hosts is not touched).
//! On that, with a client writing all along through whichever replica
//! answers (as a Service would send it): the three replicas found the
//! shard; a rolling update (highest ordinal first, the next only once the
//! restarted one is ready) and a restart of the leader lose no
//! acknowledged write; a replica whose volume was lost refuses to start
//! until it is removed, then joins anew; 3 → 5 replicas by starting two
//! more ordinals (they join as learners, then voters) and 5 → 3 by the
//! documented procedure (hand over, remove, stop). The longest pause of
//! the writer around the leader's restart is printed (docs/benchmarks.md).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tmc::testcluster::{block_on, log_tail, tmc_binary, ApiClient, ChildGuard};

const SET: &str = "tmc-root";
const DOMAIN: &str = "tmc-root-peers.tmc-system.svc";
const ORDINALS: u64 = 5;

fn ip(ordinal: u64) -> IpAddr {
    IpAddr::from([127, 77, 0, ordinal as u8 + 1])
}

/// The replicas of one StatefulSet as processes.
struct Pods {
    dir: tempfile::TempDir,
    hosts: PathBuf,
    pods: Vec<Option<ChildGuard>>,
    token: String,
    /// The admin kubeconfig `tmc certs` wrote (pod 0's API).
    kubeconfig: PathBuf,
}

impl Pods {
    fn new() -> Pods {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        let hosts_list: Vec<String> = (0..ORDINALS).map(|o| ip(o).to_string()).collect();
        let nodes: Vec<String> = (1..=ORDINALS).map(|n| n.to_string()).collect();
        let out = Command::new(tmc_binary())
            .args(["certs", "--dir"])
            .arg(&tls)
            .args([
                "--nodes",
                &nodes.join(","),
                "--hosts",
                &hosts_list.join(","),
                "--server",
                &format!("https://{}:6443", ip(0)),
            ])
            .output()
            .expect("tmc certs");
        assert!(out.status.success(), "tmc certs: {out:?}");
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for o in 0..ORDINALS {
            hosts.push_str(&format!("{} {SET}-{o}.{DOMAIN}\n", ip(o)));
        }
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts).expect("hosts");
        let tokens = std::fs::read_to_string(tls.join("tokens.csv")).expect("tokens.csv");
        let token = tokens
            .lines()
            .next()
            .and_then(|l| l.split(',').next())
            .expect("an admin token")
            .to_string();
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Pods {
            kubeconfig,
            dir,
            hosts: hosts_file,
            pods: (0..ORDINALS).map(|_| None).collect(),
            token,
        }
    }

    fn log(&self, ordinal: u64) -> PathBuf {
        self.dir.path().join(format!("{SET}-{ordinal}.log"))
    }

    fn data(&self, ordinal: u64) -> PathBuf {
        self.dir.path().join(format!("data-{SET}-{ordinal}"))
    }

    /// Starts pod `ordinal` as the StatefulSet's template says: only the
    /// downward API's values differ between pods.
    fn start(&mut self, ordinal: u64) {
        let tls = self.dir.path().join("tls/nodes/{id}");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
            .arg(&self.hosts)
            .arg(tmc_binary())
            .args(["serve", "--pod-name", &format!("{SET}-{ordinal}")])
            .args(["--peer-domain", DOMAIN])
            .args(["--bind-address", &ip(ordinal).to_string()])
            .arg("--data-dir")
            .arg(self.data(ordinal))
            .arg("--tls-dir")
            .arg(&tls)
            .arg("--peer-tls-dir")
            .arg(&tls)
            .args(["--metrics-listen", &format!("{}:9090", ip(ordinal))])
            .arg("--no-controllers")
            .env(
                "RUST_LOG",
                std::env::var("TMC_NODE_LOG").unwrap_or("info".into()),
            );
        let pod = ChildGuard::spawn(&format!("pod {ordinal}"), &mut cmd, &self.log(ordinal))
            .unwrap_or_else(|e| panic!("pod {ordinal}: {e}"));
        self.pods[ordinal as usize] = Some(pod);
    }

    fn api(&self, ordinal: u64) -> ApiClient {
        ApiClient::at(ip(ordinal), 6443, &self.dir.path().join("tls/ca.crt"))
            .expect("client")
            .bearer(&self.token)
    }

    fn ready(&self, ordinal: u64) -> bool {
        block_on(self.api(ordinal).try_call("GET", "/readyz", Value::Null))
            .is_ok_and(|(code, _)| code == 200)
    }

    fn wait_ready(&self, ordinal: u64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.ready(ordinal) {
            assert!(
                Instant::now() < deadline,
                "pod {ordinal} not ready in 90 s:\n{}",
                log_tail(&self.log(ordinal), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, as the kubelet stops a pod; returns how long it took to
    /// exit (it must within the grace period).
    fn stop(&mut self, ordinal: u64) -> Duration {
        let mut pod = self.pods[ordinal as usize].take().expect("pod running");
        let t = Instant::now();
        pod.signal(libc::SIGTERM);
        while pod.running() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "pod {ordinal} did not exit within the grace period:\n{}",
                log_tail(&self.log(ordinal), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t.elapsed()
    }

    /// Waits for pod `ordinal` to exit by itself; its log.
    fn wait_exit(&mut self, ordinal: u64, within: Duration) -> String {
        let mut pod = self.pods[ordinal as usize].take().expect("pod running");
        let t = Instant::now();
        while pod.running() {
            assert!(
                t.elapsed() < within,
                "pod {ordinal} still runs:\n{}",
                log_tail(&self.log(ordinal), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read_to_string(self.log(ordinal)).unwrap_or_default()
    }

    /// `tmc member ...` with the operator's peer certificate, through pod
    /// `ordinal`'s internal port: the answer's JSON.
    fn member(&self, ordinal: u64, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(tmc_binary())
            .arg("member")
            .arg("--peer-tls-dir")
            .arg(self.dir.path().join("tls"))
            .args(args)
            .args(["--server", &format!("{}:7002", ip(ordinal))])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "tmc member {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// The voters, once pod `ordinal` lists exactly `want` (60 s at most).
    fn wait_voters(&self, ordinal: u64, want: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = self.member(ordinal, &["list"]);
            if let Ok(v) = &got {
                let voters: Vec<u64> =
                    serde_json::from_value(v["voters"].clone()).unwrap_or_default();
                if voters == want {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "voters never became {want:?}: last {got:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The ordinal of the leader, from the pods' metrics.
    fn leader(&self, running: &[u64]) -> Option<u64> {
        running
            .iter()
            .copied()
            .find(|&o| metrics(o).is_some_and(|m| m.lines().any(|l| l == "tmc_raft_is_leader 1")))
    }
}

/// Pod `ordinal`'s `/metrics`.
fn metrics(ordinal: u64) -> Option<String> {
    let url = format!("http://{}:9090/metrics", ip(ordinal));
    block_on(async move {
        let r = reqwest::get(url).await.ok()?;
        r.text().await.ok()
    })
}

/// A client writing ConfigMaps one after another through whichever pod
/// answers, as through a Service; what it saw acknowledged, and when.
#[derive(Default)]
struct Writes {
    acked: Vec<(String, Instant)>,
    stop: bool,
    last_error: String,
}

fn writer(
    pods: Arc<Mutex<Vec<ApiClient>>>,
    writes: Arc<Mutex<Writes>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let path = "/clusters/root/api/v1/namespaces/default/configmaps";
        let mut n = 0u64;
        let mut next = 0usize;
        while !writes.lock().expect("lock").stop {
            let name = format!("w-{n:06}");
            let clients = pods.lock().expect("lock").clone();
            let client = &clients[next % clients.len()];
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name}, "data": {"n": n.to_string()}});
            match block_on(client.try_call("POST", path, body)) {
                // 409: an earlier try of the same name was committed.
                Ok((201 | 409, _)) => {
                    writes
                        .lock()
                        .expect("lock")
                        .acked
                        .push((name, Instant::now()));
                    n += 1;
                }
                other => {
                    writes.lock().expect("lock").last_error = format!("{other:?}");
                    next += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    })
}

/// The longest gap between acknowledgements from `from` on, until the
/// first acknowledgement after `to`.
fn longest_pause(acked: &[(String, Instant)], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for (_, t) in acked.iter().filter(|(_, t)| *t >= from) {
        longest = longest.max(t.duration_since(last));
        last = *t;
        if *t > to {
            break;
        }
    }
    longest
}

#[test]
fn a_statefulsets_pods_found_roll_rejoin_and_scale_without_losing_a_write() {
    if !Command::new("unshare")
        .args(["--mount", "--", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        panic!("this test needs `unshare --mount` (root, or user namespaces)");
    }
    let mut pods = Pods::new();
    // Founding: the three start at once (podManagementPolicy: Parallel).
    for o in 0..3 {
        pods.start(o);
    }
    for o in 0..3 {
        pods.wait_ready(o);
    }
    pods.wait_voters(0, &[1, 2, 3]);
    let clients = Arc::new(Mutex::new((0..3).map(|o| pods.api(o)).collect::<Vec<_>>()));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let writing = writer(clients.clone(), writes.clone());
    let acked = |w: &Arc<Mutex<Writes>>| w.lock().expect("lock").acked.len();
    let wait_progress = |w: &Arc<Mutex<Writes>>, more: usize| {
        let base = acked(w);
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked(w) < base + more {
            assert!(
                Instant::now() < deadline,
                "the writer made no progress: {}",
                w.lock().expect("lock").last_error
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_progress(&writes, 20);

    // A rolling update: highest ordinal first, the next once it is ready.
    for o in (0..3).rev() {
        let took = pods.stop(o);
        eprintln!("pod {o} exited {took:?} after SIGTERM");
        pods.start(o);
        pods.wait_ready(o);
        wait_progress(&writes, 5);
    }

    // The leader restarted: it hands over first.
    let leader = pods.leader(&[0, 1, 2]).expect("a leader");
    let from = Instant::now();
    pods.stop(leader);
    pods.start(leader);
    pods.wait_ready(leader);
    let to = Instant::now();
    wait_progress(&writes, 5);
    let pause = longest_pause(&writes.lock().expect("lock").acked, from, to);
    eprintln!("longest write pause while the leader (pod {leader}) restarted: {pause:?}");
    let log = std::fs::read_to_string(pods.log(leader)).unwrap_or_default();
    assert!(
        log.contains("handed leadership over"),
        "the leader did not hand over:\n{}",
        log_tail(&pods.log(leader), 30)
    );
    if std::env::var_os("TMC_DUMP_LOGS").is_some() {
        for o in 0..3 {
            eprintln!("--- pod {o}\n{}", log_tail(&pods.log(o), 400));
        }
    }

    // A lost volume: the replica refuses to start as a voter without data.
    let lost = if leader == 2 { 1 } else { 2 };
    pods.stop(lost);
    std::fs::remove_dir_all(pods.data(lost)).expect("remove the data");
    pods.start(lost);
    let log = pods.wait_exit(lost, Duration::from_secs(30));
    assert!(log.contains("its volume was lost"), "no refusal:\n{log}");
    // Removed, it joins anew: a learner, then a voter.
    let other = if lost == 0 { 1 } else { 0 };
    pods.member(other, &["remove", "--id", &(lost + 1).to_string()])
        .expect("remove the lost replica");
    pods.start(lost);
    pods.wait_ready(lost);
    pods.wait_voters(other, &[1, 2, 3]);
    wait_progress(&writes, 5);

    // 3 → 5: two more ordinals join by themselves.
    pods.start(3);
    pods.start(4);
    pods.wait_voters(0, &[1, 2, 3, 4, 5]);
    pods.wait_ready(3);
    pods.wait_ready(4);
    clients
        .lock()
        .expect("lock")
        .extend([pods.api(3), pods.api(4)]);
    wait_progress(&writes, 10);
    // `tmc status` sees the five, all voters, all ready.
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
    clients.lock().expect("lock").truncate(3);
    if let Some(l) = pods.leader(&[3, 4]) {
        pods.member(l, &["hand-over"]).expect("hand over");
    }
    for id in [5, 4] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match pods.member(0, &["remove", "--id", &id.to_string()]) {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "remove {id}: {e}");
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
    }
    pods.stop(4);
    pods.stop(3);
    pods.wait_voters(0, &[1, 2, 3]);
    wait_progress(&writes, 10);

    // Nothing acknowledged is lost.
    writes.lock().expect("lock").stop = true;
    writing.join().expect("writer");
    let acked: BTreeSet<String> = writes
        .lock()
        .expect("lock")
        .acked
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        acked.len() >= 70,
        "only {} writes acknowledged",
        acked.len()
    );
    let (code, list) = block_on(pods.api(0).try_call(
        "GET",
        "/clusters/root/api/v1/namespaces/default/configmaps",
        Value::Null,
    ))
    .expect("list");
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
    // The metrics an operator watches are served.
    let m = metrics(0).expect("metrics of pod 0");
    for name in [
        "tmc_raft_has_leader 1",
        "tmc_raft_voters 3",
        "apiserver_request_total{verb=\"create\",resource=\"configmaps\",code=\"201\"}",
    ] {
        assert!(m.contains(name), "no {name} in pod 0's metrics");
    }
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value("tmc_raft_fsync_duration_seconds_count") > 0.0, "{m}");
    assert!(
        value("tmc_raft_term") >= 2.0,
        "leadership changed hands: {m}"
    );
    assert!(value("tmc_store_disk_bytes") > 0.0, "{m}");
    let all: f64 = (0..3)
        .filter_map(metrics)
        .map(|m| {
            m.lines()
                .find_map(|l| {
                    l.strip_prefix("tmc_raft_proposal_duration_seconds_count")?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        })
        .sum();
    assert!(all > 0.0, "no replica timed a proposal");
}

#[test]
fn a_pod_name_that_is_no_statefulset_pod_is_refused_with_the_reason() {
    for bad in ["tmc", "tmc-", "-3", "tmc-x1"] {
        let out = Command::new(tmc_binary())
            .args([
                "serve",
                &format!("--pod-name={bad}"),
                "--peer-domain",
                DOMAIN,
            ])
            .args([
                "--data-dir",
                "/nonexistent/never-created",
                "--insecure-peers",
            ])
            .output()
            .expect("tmc serve");
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not <statefulset>-<ordinal>"),
            "{bad:?}: {err}"
        );
    }
    let out = Command::new(tmc_binary())
        .args(["serve", "--pod-name", "tmc-root-7", "--peer-domain", DOMAIN])
        .args([
            "--data-dir",
            "/nonexistent/never-created",
            "--insecure-peers",
        ])
        .output()
        .expect("tmc serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("beyond --max-replicas 7"), "{err}");
}
