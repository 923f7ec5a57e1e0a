//! Member clusters for tests and benchmarks: real kube-apiserver + etcd +
//! kube-controller-manager processes on 127.0.0.1, started and stopped by
//! `scripts/testenv.sh` (see docs/testing.md, "Member-cluster test
//! environment"); and kubectl, to run against them or against tmc.
//!
//! ```text
//! use tmc::testcluster::members::TestEnv;
//!
//! #[tokio::test]
//! async fn my_test() {
//!     let env = TestEnv::start(2);            // stopped when `env` is dropped
//!     let client = env.client(0).await;       // kube::Client for member-1
//!     let kubeconfig = env.kubeconfig(1);     // path, e.g. for kubectl
//! }
//! ```
//!
//! `TestEnv::shared()` hands out one two-cluster environment per test binary,
//! for tests that can share clusters (use unique namespaces/names there).
//!
//! The binaries must have been built with `scripts/testenv.sh build`; if they
//! have not, starting fails the test and says so (it never skips).

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Number of clusters in [`TestEnv::shared`].
pub const SHARED_CLUSTERS: usize = 2;

/// Root of the repository (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/testenv.sh`.
pub fn script() -> PathBuf {
    repo_root().join("scripts").join("testenv.sh")
}

/// One member cluster of a [`TestEnv`].
#[derive(Debug, Clone)]
pub struct MemberCluster {
    /// `member-1`, `member-2`, ...
    pub name: String,
    /// Per-cluster state dir (certificates, logs, pid files, etcd data).
    pub dir: PathBuf,
    /// Admin kubeconfig (bearer token in group system:masters).
    pub kubeconfig: PathBuf,
    /// kube-apiserver's secure port on 127.0.0.1.
    pub apiserver_port: u16,
    /// etcd's client port on 127.0.0.1.
    pub etcd_client_port: u16,
    /// etcd's peer port on 127.0.0.1.
    pub etcd_peer_port: u16,
}

impl MemberCluster {
    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The cluster's log files (etcd, kube-apiserver, kube-controller-manager).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        ["etcd", "kube-apiserver", "kube-controller-manager"]
            .iter()
            .map(|p| self.dir.join(format!("{p}.log")))
            .collect()
    }
}

/// A set of running member clusters, stopped (processes and state dir) on drop.
#[derive(Debug)]
pub struct TestEnv {
    script: PathBuf,
    dir: PathBuf,
    clusters: Vec<MemberCluster>,
    pids: Vec<i32>,
    extra_env: Vec<(String, String)>,
    stopped: bool,
}

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "tmc-testenv-{}-{}-{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    ))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

fn read_port(ports_env: &str, key: &str) -> Result<u16, String> {
    ports_env
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .ok_or_else(|| format!("{key} missing in ports.env"))?
        .trim()
        .parse()
        .map_err(|e| format!("bad {key}: {e}"))
}

/// Pid recorded in a `NAME.pid` file written by the script ("PID STARTTIME").
fn read_pid(pid_file: &Path) -> Result<i32, String> {
    let s =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    s.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{}: no pid in {s:?}", pid_file.display()))
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // State is the first field after "(comm) ".
            let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
pub fn port_listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::ConnectionRefused,
    }
}

/// Runs `scripts/testenv.sh check`: Ok(bin dir) if the binaries are built,
/// Err(explanation with how to build them) otherwise.
pub fn check_built(extra_env: &[(&str, &str)]) -> Result<PathBuf, String> {
    check_built_by(&script(), extra_env)
}

/// [`check_built`] with another copy of the script.
pub fn check_built_by(script: &Path, extra_env: &[(&str, &str)]) -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(script)
        .arg("check")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
    }
}

impl TestEnv {
    /// Starts `n` member clusters in a fresh state dir; panics (failing the
    /// test) with the reason if that is impossible, e.g. binaries not built.
    pub fn start(n: usize) -> TestEnv {
        match Self::try_start_with(n, &[]) {
            Ok(env) => env,
            Err(e) => panic!("member-cluster test environment: {e}"),
        }
    }

    /// Like [`TestEnv::start`], with extra environment for the script
    /// (e.g. `TMC_CACHE_DIR`, `TESTENV_READY_TIMEOUT`); returns the error.
    pub fn try_start_with(n: usize, extra_env: &[(&str, &str)]) -> Result<TestEnv, String> {
        Self::try_start_by(&script(), n, extra_env)
    }

    /// [`TestEnv::try_start_with`] with another copy of the script (`tmc
    /// bench sync --testenv`).
    pub fn try_start_by(
        script: &Path,
        n: usize,
        extra_env: &[(&str, &str)],
    ) -> Result<TestEnv, String> {
        check_built_by(script, extra_env).map_err(|e| {
            format!("cannot start member clusters because the binaries are missing.\n{e}")
        })?;
        let dir = unique_dir();
        let extra_env: Vec<(String, String)> = extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .args(["start", &n.to_string()])
            .env("TESTENV_DIR", &dir)
            // Stop the clusters if this test process dies without dropping us.
            .env("TESTENV_OWNER_PID", std::process::id().to_string())
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("`testenv.sh start {n}` failed: {}", describe(&out)));
        }
        eprintln!(
            "testenv: {n} member cluster(s) up in {:.1?} ({})",
            t0.elapsed(),
            dir.display()
        );
        let mut env = TestEnv {
            script: script.to_path_buf(),
            dir,
            clusters: Vec::new(),
            pids: Vec::new(),
            extra_env,
            stopped: false,
        };
        if let Err(e) = env.load(n) {
            let _ = env.stop();
            return Err(e);
        }
        Ok(env)
    }

    fn load(&mut self, n: usize) -> Result<(), String> {
        for i in 1..=n {
            let name = format!("member-{i}");
            let dir = self.dir.join(&name);
            let ports = std::fs::read_to_string(dir.join("ports.env"))
                .map_err(|e| format!("{}: {e}", dir.join("ports.env").display()))?;
            let kubeconfig = dir.join("kubeconfig");
            if !kubeconfig.is_file() {
                return Err(format!("missing {}", kubeconfig.display()));
            }
            self.clusters.push(MemberCluster {
                apiserver_port: read_port(&ports, "APISERVER_PORT")?,
                etcd_client_port: read_port(&ports, "ETCD_CLIENT_PORT")?,
                etcd_peer_port: read_port(&ports, "ETCD_PEER_PORT")?,
                name,
                dir,
                kubeconfig,
            });
        }
        let list =
            std::fs::read_to_string(self.dir.join("pids")).map_err(|e| format!("pids: {e}"))?;
        for pid_file in list.lines().filter(|l| !l.trim().is_empty()) {
            self.pids.push(read_pid(Path::new(pid_file.trim()))?);
        }
        Ok(())
    }

    /// One two-cluster environment shared by all tests of this test binary.
    /// It is stopped when the test binary exits (and, should the process die
    /// abnormally, by the script's watchdog).
    pub fn shared() -> &'static TestEnv {
        static SHARED: OnceLock<TestEnv> = OnceLock::new();
        SHARED.get_or_init(|| {
            let env = TestEnv::start(SHARED_CLUSTERS);
            extern "C" fn stop_shared() {
                if let Some(env) = SHARED.get() {
                    let _ = env.run_stop();
                }
            }
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(stop_shared);
            }
            env
        })
    }

    /// The state dir (`TESTENV_DIR`) of this environment.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn clusters(&self) -> &[MemberCluster] {
        &self.clusters
    }

    pub fn cluster(&self, i: usize) -> &MemberCluster {
        &self.clusters[i]
    }

    /// Admin kubeconfig of cluster `i` (0-based: 0 is member-1).
    pub fn kubeconfig(&self, i: usize) -> &Path {
        &self.clusters[i].kubeconfig
    }

    pub fn kubeconfigs(&self) -> Vec<PathBuf> {
        self.clusters.iter().map(|c| c.kubeconfig.clone()).collect()
    }

    /// Pids of every process the script started (etcd, kube-apiserver,
    /// kube-controller-manager per cluster, and the watchdog).
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// A kube::Client for cluster `i` that has answered a /version request.
    /// A new client per call: a client belongs to the tokio runtime it was
    /// created on, and each #[tokio::test] has its own runtime.
    pub async fn client(&self, i: usize) -> kube::Client {
        let c = &self.clusters[i];
        match client_for(&c.kubeconfig).await {
            Ok(client) => client,
            Err(e) => panic!("no working client for {} ({}): {e}", c.name, c.server_url()),
        }
    }

    /// A ready client for every cluster, in order.
    pub async fn clients(&self) -> Vec<kube::Client> {
        let mut v = Vec::new();
        for i in 0..self.clusters.len() {
            v.push(self.client(i).await);
        }
        v
    }

    fn run_stop(&self) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .env("TESTENV_DIR", &self.dir)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("`testenv.sh stop` failed: {}", describe(&out)))
        }
    }

    /// Stops every process and removes the state dir. Idempotent.
    pub fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.run_stop()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("testenv: {e}");
            if !std::thread::panicking() {
                panic!("stopping the member-cluster test environment failed: {e}");
            }
        }
    }
}

/// A kube::Client from a kubeconfig file (not checked: see
/// [`client_for`]).
pub async fn kube_client(kubeconfig: &Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| format!("loading {}: {e}", kubeconfig.display()))?;
    kube::Client::try_from(config).map_err(|e| format!("building client: {e}"))
}

/// A kube::Client from a kubeconfig file, checked with a /version request.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client, String> {
    let client = kube_client(kubeconfig).await?;
    client
        .apiserver_version()
        .await
        .map_err(|e| format!("GET /version: {e}"))?;
    Ok(client)
}

/// The kubectl to run: `$KUBECTL` if set, else the one `scripts/testenv.sh
/// build` built (same version as the member clusters), else `kubectl` on PATH.
pub fn kubectl_binary() -> String {
    static KUBECTL: OnceLock<String> = OnceLock::new();
    KUBECTL
        .get_or_init(|| {
            if let Ok(k) = std::env::var("KUBECTL") {
                return k;
            }
            match check_built(&[]) {
                Ok(bin) if bin.join("kubectl").is_file() => {
                    bin.join("kubectl").to_string_lossy().into_owned()
                }
                _ => "kubectl".to_string(),
            }
        })
        .clone()
}

/// Whether `kill(pid, 0)` reports that no such process exists (not even a zombie).
pub fn pid_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS...`; Ok(stdout) on success,
/// Err(status, stdout and stderr) otherwise. See [`kubectl_binary`].
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let kubectl = kubectl_binary();
    let out = run_kubectl(&kubectl, kubeconfig, args, None)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("kubectl {}: {}", args.join(" "), describe(&out)))
    }
}

/// Runs [`kubectl_binary`] with `kubeconfig`; (success, stdout, stderr).
pub fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_with(&kubectl_binary(), kubeconfig, args, None)
}

/// Runs `kubectl` (from PATH) with `kubeconfig` and `args`, optionally
/// with stdin; its stdout. Panics, with what it printed, unless it
/// succeeds.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl_with("kubectl", kubeconfig, args, stdin);
    assert!(ok, "kubectl {args:?}: {err}{out}");
    out
}

/// Runs a given kubectl binary, optionally with stdin; (success, stdout,
/// stderr). Panics if it cannot run.
pub fn kubectl_with(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let out = run_kubectl(bin, kubeconfig, args, stdin).unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_kubectl(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, String> {
    use std::io::Write;
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        // Everything runs on 127.0.0.1: never go through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(input.as_bytes())
            .map_err(|e| format!("{bin} stdin: {e}"))?;
    }
    child.wait_with_output().map_err(|e| format!("{bin}: {e}"))
}

/// `kubectl apply --dry-run=server -f MANIFEST` against a member cluster:
/// the apiserver runs defaulting, validation and admission without storing
/// anything. Ok(kubectl's output) if every object would be accepted.
pub fn kubectl_dry_run_server(kubeconfig: &Path, manifest: &Path) -> Result<String, String> {
    let manifest = manifest
        .to_str()
        .ok_or_else(|| format!("non-UTF-8 path {manifest:?}"))?;
    kubectl(kubeconfig, &["apply", "--dry-run=server", "-f", manifest])
}

/// Polls `f` every 250 ms until it returns Ok, or panics after `timeout`
/// with `what` and the last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Spawns `bin --kubeconfig kc args...` (a `kubectl get ... -w`) and hands
/// its output lines over as they come; the caller kills the child.
pub fn kubectl_lines(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits (30 s in all) for lines starting with each of `want`, in order,
/// whitespace collapsed (`ADDED settings` matches `ADDED   settings 1 0s`);
/// panics naming what was printed instead.
pub fn expect_lines(rx: &std::sync::mpsc::Receiver<String>, want: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    for w in want {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                    seen.push(line.clone());
                    if line.starts_with(w) {
                        break;
                    }
                }
                Err(_) => panic!("kubectl never printed {w:?}; it printed {seen:?}"),
            }
        }
    }
}
