//! The Kubernetes API of a [`TestCluster`] (mutual TLS clusters): the
//! admin token, kubeconfigs written by `tmc kubeconfig`, kube-rs and raw
//! clients, readiness, member-cluster registration.

use super::{block_on, collect, ApiClient, TestCluster};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

impl TestCluster {
    /// The admin bearer token.
    pub fn token(&self) -> String {
        let t = std::fs::read_to_string(self.tls_dir().join("tokens.csv")).expect("tokens.csv");
        t.split(',').next().unwrap_or_default().to_string()
    }

    /// A raw client of node `id`'s API without credentials.
    pub fn anonymous_client(&self, id: u64) -> ApiClient {
        ApiClient::new(self.api[&id], &self.tls_dir().join("ca.crt")).expect("the cluster's CA")
    }

    /// A raw client of node `id`'s API as the admin.
    pub fn api_client(&self, id: u64) -> ApiClient {
        self.anonymous_client(id).bearer(&self.token())
    }

    /// `GET /readyz` on node `id`'s API (no credentials), blocking: status
    /// and body; `None` when it does not answer within 10 s.
    pub fn readyz(&self, id: u64) -> Option<(u16, String)> {
        let c = self.anonymous_client(id);
        block_on(async {
            let answer = async {
                collect(
                    c.send("GET", "/readyz", "application/json", Vec::new(), None)
                        .await?,
                )
                .await
            };
            let (code, body) = tokio::time::timeout(Duration::from_secs(10), answer)
                .await
                .ok()?
                .ok()?;
            Some((code, String::from_utf8_lossy(&body).into_owned()))
        })
    }

    /// Waits (blocking) until node `id` serves `default` in `root` (a
    /// leader exists and the bootstrap write went through); panics after
    /// 60 s.
    pub fn wait_ready(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let c = self.api_client(id);
        // A shard other than root has no `root`: its readiness says.
        let path = if self.is_root_shard() {
            "/clusters/root/api/v1/namespaces/default"
        } else {
            "/readyz"
        };
        loop {
            let r = block_on(c.try_call("GET", path, Value::Null));
            // Serving, and ready (its own bootstrap may retry a moment
            // after another replica's write is visible).
            let ready = matches!(r, Ok((200, _)))
                && (path == "/readyz" || matches!(self.readyz(id), Some((200, _))));
            if ready {
                return;
            }
            if Instant::now() > deadline {
                self.dump_logs(60);
                panic!("node {id} never served the API and got ready: {r:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `tmc kubeconfig` for `workspace` on node `id` with `extra`
    /// arguments and writes its output to `path`.
    fn write_kubeconfig(&self, path: &Path, id: u64, workspace: &str, extra: &[&str]) {
        self.write_kubeconfig_for(path, &self.server(id), workspace, extra)
    }

    /// Runs `tmc kubeconfig` for `workspace` at `server` with `extra`
    /// arguments and writes its output to `path`.
    pub(super) fn write_kubeconfig_for(
        &self,
        path: &Path,
        server: &str,
        workspace: &str,
        extra: &[&str],
    ) {
        let out = self
            .tmc()
            .args(["kubeconfig", "--workspace", workspace, "--server", server])
            .args(extra)
            .arg("--dir")
            .arg(self.tls_dir())
            .output()
            .expect("tmc kubeconfig");
        assert!(
            out.status.success(),
            "tmc kubeconfig {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path, out.stdout).expect("a kubeconfig");
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
        let admin = std::fs::read_to_string(self.kubeconfig(id, workspace)).expect("kubeconfig");
        let path = self.dir.path().join(format!(
            "{}-node{id}-{}.kubeconfig",
            workspace.replace(':', "_"),
            &token[..token.len().min(8)]
        ));
        std::fs::write(&path, admin.replace(&self.token(), token)).expect("a kubeconfig");
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

    /// A kube-rs client for `workspace` on node `id`.
    pub async fn client(&self, id: u64, workspace: &str) -> kube::Client {
        super::members::kube_client(&self.kubeconfig(id, workspace))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `tmc cluster register NAME --workspace root --label LABELS` with
    /// `kubeconfig`, through node `id`.
    pub fn register_cluster(&self, id: u64, name: &str, kubeconfig: &Path, labels: &str) {
        let out = self
            .tmc()
            .args(["cluster", "register", name, "--workspace", "root"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--admin-kubeconfig")
            .arg(self.kubeconfig(id, "root"))
            .args(["--label", labels])
            .output()
            .expect("tmc cluster register");
        assert!(
            out.status.success(),
            "tmc cluster register {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
