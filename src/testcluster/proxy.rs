//! `tmc proxy` in front of a [`TestCluster`], for tests and benchmarks.

use super::{free_port, BoxError, ChildGuard, TestCluster};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A running `tmc proxy`; killed when dropped.
pub struct ProxyProcess {
    /// Its HTTPS port on 127.0.0.1.
    pub port: u16,
    child: ChildGuard,
}

impl ProxyProcess {
    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }
}

impl TestCluster {
    /// Starts `tmc proxy` (this cluster's binary, its TLS directory) with
    /// node `root_node`'s API as the root shard and `others` as
    /// `--shard NAME=URL`; returns once it accepts connections (it binds
    /// only after its configuration loaded).
    pub fn start_proxy(
        &self,
        root_node: u64,
        others: &[(String, String)],
    ) -> Result<ProxyProcess, BoxError> {
        self.start_proxy_at(&self.server(root_node), others)
    }

    /// Every replica's API URL, comma separated (a shard's `--root-shard`
    /// or the proxy's, tried in order).
    pub fn servers(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| self.server(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts `tmc proxy` with `root` (URLs, comma separated) as the root
    /// shard's API; other shards come from `others` or the registry.
    pub fn start_proxy_at(
        &self,
        root: &str,
        others: &[(String, String)],
    ) -> Result<ProxyProcess, BoxError> {
        let port = free_port();
        let mut cmd = self.tmc();
        cmd.arg("proxy")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-dir")
            .arg(self.tls_dir())
            .args(["--root-shard", root]);
        for (name, url) in others {
            cmd.args(["--shard", &format!("{name}={url}")]);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("TMC_NODE_LOG").unwrap_or("info".into()),
        );
        let mut child = ChildGuard::spawn_with(
            "tmc proxy",
            &mut cmd,
            &self.dir().join("proxy.log"),
            self.opts.die_with_parent,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if !child.running() {
                return Err(format!(
                    "tmc proxy exited: {}",
                    super::log_tail(&self.dir().join("proxy.log"), 20)
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err("tmc proxy did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(ProxyProcess { port, child })
    }

    /// Writes (once) and returns a kubeconfig for `workspace` at `server`
    /// (a proxy's, say) with the admin token.
    pub fn kubeconfig_at(&self, server: &str, workspace: &str) -> PathBuf {
        let tag: String = server
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self
            .dir()
            .join(format!("{}-{tag}.kubeconfig", workspace.replace(':', "_")));
        if !path.exists() {
            self.write_kubeconfig_for(&path, server, workspace, &[]);
        }
        path
    }
}
