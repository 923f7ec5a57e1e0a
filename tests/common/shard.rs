//! A three-node shard of real `tmc serve` processes on loopback, each
//! serving the Kubernetes API over HTTPS, for tests with real clients.
//!
//! TLS material and the admin token come from `tmc certs --nodes 1,2,3`:
//! the operator's directory (`tls/`: both CAs, their keys, the operator's
//! peer certificate) stays with the test, and each replica runs on its own
//! `tls/nodes/<id>` (no CA key), as an operator deploys them. Kubeconfigs
//! come from `tmc kubeconfig`, so the tests use the same paths users do.
//! Children are killed when the shard is dropped; their logs are printed
//! if the test panicked. `TMC_NODE_LOG` sets the nodes' `RUST_LOG`
//! (default `info`).

#![allow(dead_code)]

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Replicas per shard.
pub const N: usize = 3;

/// A running three-node shard.
pub struct Shard {
    /// Holds data, logs, TLS material and kubeconfigs.
    pub dir: tempfile::TempDir,
    /// Raft ports, by node.
    pub raft: Vec<u16>,
    /// Internal KV (HTTP) ports, by node.
    pub kv: Vec<u16>,
    /// API ports, by node (index 0 is node 1).
    pub api: Vec<u16>,
    children: Vec<Option<Child>>,
    /// Extra `tmc serve` flags of every node (e.g. controller timings).
    extra_args: Vec<String>,
}

/// Controller timings that let tests see a dead member cluster in
/// seconds: probes every second, unhealthy after 4 s, a probe may take
/// 2 s, the placement catalog cached for 1 s; and member clusters on
/// 127.0.0.1 allowed (the test environment's).
pub const FAST_CONTROLLERS: &[&str] = &[
    "--allow-private-member-endpoints",
    "--probe-interval",
    "1s",
    "--heartbeat-threshold",
    "4s",
    "--probe-timeout",
    "2s",
    "--catalog-ttl",
    "1s",
];

fn tmc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tmc"))
}

impl Shard {
    /// Starts three replicas without controllers (the API tests write
    /// statuses themselves; a controller would race them) and waits until
    /// the API answers on each.
    pub fn start() -> Shard {
        Shard::start_with(&["--no-controllers"], "")
    }

    /// Starts three replicas (no controllers) whose token file also holds
    /// `extra_tokens` (lines of `token,user,uid,"groups"`; the admin stays
    /// first).
    pub fn start_with_tokens(extra_tokens: &str) -> Shard {
        Shard::start_with(&["--no-controllers"], extra_tokens)
    }

    /// Starts three replicas with extra `tmc serve` flags (controllers
    /// run unless they include `--no-controllers`) and extra lines for the
    /// token file.
    pub fn start_with(extra_args: &[&str], extra_tokens: &str) -> Shard {
        let dir = tempfile::Builder::new()
            .prefix("tmc-shard")
            .tempdir()
            .unwrap();
        let out = tmc()
            .args(["certs", "--nodes", "1,2,3", "--dir"])
            .arg(dir.path().join("tls"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmc certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !extra_tokens.is_empty() {
            use std::io::Write;
            let tls = dir.path().join("tls");
            let mut files = vec![tls.join("tokens.csv")];
            files.extend(
                (1..=N).map(|id| tls.join("nodes").join(id.to_string()).join("tokens.csv")),
            );
            for path in files {
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                f.write_all(extra_tokens.as_bytes()).unwrap();
            }
        }
        let mut s = Shard {
            dir,
            raft: (0..N).map(|_| free_port()).collect(),
            kv: (0..N).map(|_| free_port()).collect(),
            api: (0..N).map(|_| free_port()).collect(),
            children: (0..N).map(|_| None).collect(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for id in 1..=N as u64 {
            s.spawn(id);
        }
        for id in 1..=N as u64 {
            s.wait_ready(id);
        }
        s
    }

    fn peers(ports: &[u16]) -> String {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The operator's TLS directory (`ca.crt`, `ca.key`, `tokens.csv`,
    /// `peer-ca.*`, the operator's `peer.crt`, ...).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Node `id`'s TLS directory, its `--tls-dir` and `--peer-tls-dir`.
    pub fn node_tls_dir(&self, id: u64) -> PathBuf {
        self.tls_dir().join("nodes").join(id.to_string())
    }

    /// The log file of node `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// Starts node `id`.
    pub fn spawn(&mut self, id: u64) {
        let extra = self.extra_args.clone();
        self.spawn_with_args(id, &extra);
    }

    /// Starts node `id` with these extra `tmc serve` flags instead of the
    /// shard's (e.g. another encryption config on one replica).
    pub fn spawn_with_args(&mut self, id: u64, extra_args: &[String]) {
        let i = (id - 1) as usize;
        assert!(self.children[i].is_none(), "node {id} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let child = tmc()
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--peers", &Self::peers(&self.raft)])
            .args(["--kv-peers", &Self::peers(&self.kv)])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args(["--listen", &format!("127.0.0.1:{}", self.kv[i])])
            .args(["--api-listen", &format!("127.0.0.1:{}", self.api[i])])
            .arg("--tls-dir")
            .arg(self.node_tls_dir(id))
            .arg("--peer-tls-dir")
            .arg(self.node_tls_dir(id))
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("TMC_NODE_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&mut self, id: u64) -> Option<u32> {
        let c = self.children[(id - 1) as usize].as_mut()?;
        match c.try_wait() {
            Ok(None) => Some(c.id()),
            _ => None,
        }
    }

    /// SIGSTOP: node `id` freezes, its sockets open.
    pub fn pause(&self, id: u64) {
        if let Some(c) = &self.children[(id - 1) as usize] {
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGSTOP) };
        }
    }

    /// SIGCONT after [`Shard::pause`].
    pub fn resume(&self, id: u64) {
        if let Some(c) = &self.children[(id - 1) as usize] {
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
        }
    }

    /// `GET /readyz` on node `id`'s API (no credentials): status and body;
    /// `None` when it does not answer.
    pub fn readyz(&self, id: u64) -> Option<(u16, String)> {
        https_get(
            self.api[(id - 1) as usize],
            "/readyz",
            &self.tls_dir().join("ca.crt"),
        )
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[(id - 1) as usize].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// `tmc cluster register NAME --workspace root --label LABELS` with
    /// `kubeconfig`, through node `id`.
    pub fn register_cluster(&self, id: u64, name: &str, kubeconfig: &Path, labels: &str) {
        let out = tmc()
            .args(["cluster", "register", name, "--workspace", "root"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--admin-kubeconfig")
            .arg(self.kubeconfig(id, "root"))
            .args(["--label", labels])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmc cluster register {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `https://127.0.0.1:PORT` of node `id`.
    pub fn server(&self, id: u64) -> String {
        format!("https://127.0.0.1:{}", self.api[(id - 1) as usize])
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        let t = std::fs::read_to_string(self.tls_dir().join("tokens.csv")).unwrap();
        t.split(',').next().unwrap().to_string()
    }

    /// Runs `tmc kubeconfig` for `workspace` on node `id` with `extra`
    /// arguments and writes its output to `path`.
    fn write_kubeconfig(&self, path: &Path, id: u64, workspace: &str, extra: &[&str]) {
        let out = tmc()
            .args([
                "kubeconfig",
                "--workspace",
                workspace,
                "--server",
                &self.server(id),
            ])
            .args(extra)
            .arg("--dir")
            .arg(self.tls_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmc kubeconfig {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path, out.stdout).unwrap();
    }

    /// Writes (once) and returns a kubeconfig for `workspace` on node `id`.
    pub fn kubeconfig(&self, id: u64, workspace: &str) -> PathBuf {
        let path = self.dir.path().join(format!(
            "{}-node{id}.kubeconfig",
            workspace.replace(':', "_")
        ));
        if !path.exists() {
            self.write_kubeconfig(&path, id, workspace, &[]);
        }
        path
    }

    /// A kubeconfig for `workspace` on node `id` that authenticates with
    /// `token` instead of the admin's.
    pub fn kubeconfig_with_token(&self, id: u64, workspace: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(self.kubeconfig(id, workspace)).unwrap();
        let path = self.dir.path().join(format!(
            "{}-node{id}-{}.kubeconfig",
            workspace.replace(':', "_"),
            &token[..token.len().min(8)]
        ));
        std::fs::write(&path, admin.replace(&self.token(), token)).unwrap();
        path
    }

    /// A kubeconfig for `workspace` on node `id` with a client certificate
    /// for `user` in `groups` (`tmc kubeconfig --user`).
    pub fn kubeconfig_with_cert(
        &self,
        id: u64,
        workspace: &str,
        user: &str,
        groups: &[&str],
    ) -> PathBuf {
        let path = self.dir.path().join(format!(
            "{}-node{id}-cert-{user}.kubeconfig",
            workspace.replace(':', "_")
        ));
        let groups = groups.join(",");
        let mut extra = vec!["--user", user];
        if !groups.is_empty() {
            extra.extend(["--group", groups.as_str()]);
        }
        self.write_kubeconfig(&path, id, workspace, &extra);
        path
    }

    /// Waits until node `id` serves `default` in `root` (a leader exists
    /// and the bootstrap write went through).
    pub fn wait_ready(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let kc = self.kubeconfig(id, "root");
        loop {
            let out = kubectl_at(&kc, &["get", "namespace", "default", "-o", "name"]);
            if out.0 {
                return;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("node {id} never served the API: {}", out.2);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Node `id`'s raft status (`tmc kv status`: `leader`, `role`, ...);
    /// `None` when it does not answer.
    pub fn raft_status(&self, id: u64) -> Option<serde_json::Value> {
        let out = tmc()
            .args([
                "kv",
                "--endpoint",
                &format!("127.0.0.1:{}", self.kv[(id - 1) as usize]),
                "--peer-tls-dir",
                self.tls_dir().to_str().unwrap(),
                "status",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The leader every node names, itself reporting role "leader" (waits
    /// up to 30 s).
    pub fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen: Vec<Option<serde_json::Value>> =
                (1..=N as u64).map(|id| self.raft_status(id)).collect();
            let leaders: Vec<Option<u64>> = seen
                .iter()
                .map(|s| s.as_ref().and_then(|s| s["leader"].as_u64()))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                let l = *l;
                if (1..=N as u64).contains(&l)
                    && leaders.iter().all(|x| *x == Some(l))
                    && seen[(l - 1) as usize]
                        .as_ref()
                        .is_some_and(|s| s["role"] == "leader")
                {
                    return l;
                }
            }
            if Instant::now() > deadline {
                panic!("no agreed leader: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader as seen by the running nodes `alive` (waits up to 30 s):
    /// one of them reports role "leader" and all of them name it.
    pub fn leader_among(&self, alive: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen: Vec<Option<serde_json::Value>> =
                alive.iter().map(|&id| self.raft_status(id)).collect();
            let leaders: Vec<Option<u64>> = seen
                .iter()
                .map(|s| s.as_ref().and_then(|s| s["leader"].as_u64()))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                let l = *l;
                if let Some(i) = alive.iter().position(|&a| a == l) {
                    if leaders.iter().all(|x| *x == Some(l))
                        && seen[i].as_ref().is_some_and(|s| s["role"] == "leader")
                    {
                        return l;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("no agreed leader among {alive:?}: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node `id`'s controller metrics (Prometheus text from `GET /metrics`
    /// on its KV listener); `None` when it does not answer.
    pub fn metrics(&self, id: u64) -> Option<String> {
        use std::io::{Read, Write};
        let addr = format!("127.0.0.1:{}", self.kv[(id - 1) as usize]);
        let tcp = std::net::TcpStream::connect(&addr).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        // The KV listener speaks mutual TLS: present the peer certificate.
        let tls = tmc::raft::tls::PeerTls::load(&self.tls_dir()).ok()?;
        let name = rustls::pki_types::ServerName::try_from(tmc::raft::tls::PEER_NAME).ok()?;
        let conn = rustls::ClientConnection::new(tls.client_config(), name).ok()?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// The two nodes that are not the leader (at the time of asking).
    pub fn followers(&self) -> (u64, u64) {
        let l = self.leader();
        let f: Vec<u64> = (1..=N as u64).filter(|&id| id != l).collect();
        (f[0], f[1])
    }

    /// Prints every node's log (for failing tests).
    pub fn dump_logs(&self) {
        for id in 1..=N as u64 {
            let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- node {id} log (last 60 lines) ----");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }

    /// A kube-rs client for `workspace` on node `id`.
    pub async fn client(&self, id: u64, workspace: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig(id, workspace)).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for id in 1..=N as u64 {
            self.kill(id);
        }
    }
}

/// One HTTPS GET to 127.0.0.1:`port` trusting the CA in `ca`, without
/// credentials: status and body; `None` when there is no answer.
pub fn https_get(port: u16, path: &str, ca: &Path) -> Option<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).ok()? {
        roots.add(c.ok()?).ok()?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).ok()?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    // An answer without close_notify still counts.
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The newest kubectl: the member clusters' (see
/// [`super::testenv::kubectl_binary`]).
pub fn kubectl_bin() -> String {
    super::testenv::kubectl_binary()
}

/// Runs kubectl with `kubeconfig`; (success, stdout, stderr).
pub fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_with(&kubectl_bin(), kubeconfig, args, None)
}

/// Runs a given kubectl binary, optionally with stdin.
pub fn kubectl_with(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
