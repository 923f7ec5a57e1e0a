//! A StatefulSet's pods as processes on this machine, for `tests/pods.rs`
//! and `tmc bench rollout`: each replica runs exactly the container
//! command, arguments and environment of the StatefulSet that `kubectl
//! kustomize deploy/overlays/dev` renders ([`Template`]), with the
//! downward API's values filled in as the kubelet would (pod name,
//! namespace, pod IP, labels) and `$(VAR)` references expanded as the
//! kubelet expands them. Each pod:
//!
//! - has its own loopback address (`127.<net>.0.<ordinal + 1>`: all of
//!   127/8 reaches the loopback device);
//! - runs in a private mount namespace (`unshare --mount`) where its own
//!   /etc/hosts makes the pods' DNS names under the headless Service
//!   resolve to those addresses (the machine's /etc/hosts is untouched);
//! - has its volumes bind-mounted at the manifest's mount paths: its data
//!   directory (the claim), the Secrets laid out as the volumes' items and
//!   modes say (root-owned, of the pod's fsGroup, as the kubelet writes
//!   them: a wrong mode fails here as on a cluster), a fresh directory
//!   for an emptyDir;
//! - with a root filesystem (the image `scripts/image.sh` built, unpacked),
//!   runs chrooted into it as the pod's `runAsUser` and `fsGroup`, so that
//!   the image's libraries and user are what run; without one, runs the given
//!   binary on this machine's filesystem (the mounts then shadow the mount
//!   paths inside the namespace only).
//!
//! Root is needed (mount namespaces, chroot); the tests and CI run as
//! root. A [`Writer`] writes ConfigMaps one after another through
//! whichever pod answers, as through the client Service, and remembers
//! what was acknowledged and when.

use super::{block_on, log_tail, ApiClient, BoxError, ChildGuard};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The namespace the pods believe they run in.
pub const NAMESPACE: &str = "tmc-system";
/// The uid and gid of the image's user (a template without a
/// securityContext runs as it).
pub const IMAGE_USER: u32 = 65532;

/// One container of a StatefulSet's pod template, as rendered.
#[derive(Debug, Clone)]
pub struct Template {
    /// The StatefulSet's name (pods are `<name>-<ordinal>`).
    pub name: String,
    /// The headless Service (`serviceName`).
    pub service: String,
    /// The pod template's labels.
    pub labels: BTreeMap<String, String>,
    /// The container's command (empty: the image's entrypoint, `tmc`).
    pub command: Vec<String>,
    /// The container's arguments.
    pub args: Vec<String>,
    /// Environment: name and either a value or a downward-API field path.
    pub env: Vec<(String, EnvValue)>,
    /// Mount paths by volume name.
    pub mounts: BTreeMap<String, String>,
    /// The container's ports by name.
    pub ports: BTreeMap<String, u16>,
    /// The pod's volumes (`spec.volumes`), as written.
    pub volumes: Vec<Value>,
    /// The volume claim template's name (the data volume).
    pub claim: Option<String>,
    /// The pod's `runAsUser` and `fsGroup` (the image's user by default).
    pub user: (u32, u32),
}

/// An environment variable's source.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    /// A literal (with `$(VAR)` references).
    Value(String),
    /// `valueFrom.fieldRef.fieldPath`.
    Field(String),
}

impl Template {
    /// The first StatefulSet's first container in a rendered manifest
    /// (several YAML documents).
    pub fn from_manifest(yaml: &str) -> Result<Template, BoxError> {
        for doc in yaml.split("\n---\n") {
            if doc.trim().is_empty() {
                continue;
            }
            let v: Value = serde_saphyr::from_str(doc)?;
            if v["kind"] == "StatefulSet" {
                return Template::from_object(&v);
            }
        }
        Err("no StatefulSet in the manifest".into())
    }

    /// A StatefulSet object's first container (as rendered, or as an
    /// apiserver returns it).
    pub fn from_object(v: &Value) -> Result<Template, BoxError> {
        let spec = &v["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let env = list(&c["env"])
            .iter()
            .filter_map(|e| {
                let name = e["name"].as_str()?.to_string();
                let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some(f) => EnvValue::Field(f.to_string()),
                    None => EnvValue::Value(e["value"].as_str().unwrap_or_default().to_string()),
                };
                Some((name, value))
            })
            .collect();
        let mounts = list(&c["volumeMounts"])
            .iter()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?.to_string(),
                    m["mountPath"].as_str()?.to_string(),
                ))
            })
            .collect();
        let ports = list(&c["ports"])
            .iter()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    u16::try_from(p["containerPort"].as_u64()?).ok()?,
                ))
            })
            .collect();
        let labels = v["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let id = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(IMAGE_USER)
        };
        Ok(Template {
            name: v["metadata"]["name"]
                .as_str()
                .ok_or("a StatefulSet without a name")?
                .to_string(),
            service: v["spec"]["serviceName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            labels,
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            env,
            mounts,
            ports,
            volumes: list(&spec["volumes"]),
            claim: v["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
                .as_str()
                .map(String::from),
            user: (
                id(&spec["securityContext"]["runAsUser"]),
                id(&spec["securityContext"]["fsGroup"]),
            ),
        })
    }

    /// Renders `overlay` (a kustomize directory) with `kubectl kustomize`
    /// (the test environment's kubectl, else the one on the PATH).
    pub fn from_overlay(overlay: &Path) -> Result<Template, BoxError> {
        let out = Command::new(super::members::kubectl_binary())
            .arg("kustomize")
            .arg(overlay)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "kubectl kustomize {}: {}",
                overlay.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Template::from_manifest(&String::from_utf8_lossy(&out.stdout))
    }

    /// The environment of pod `ordinal` at `ip`, as the kubelet computes
    /// it: downward-API fields, then `$(VAR)` in values from the variables
    /// defined before them.
    pub fn environment(&self, ordinal: u64, ip: IpAddr) -> Result<Vec<(String, String)>, BoxError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.env {
            let v = match value {
                EnvValue::Value(v) => expand(v, &out),
                EnvValue::Field(f) => self.field(f, ordinal, ip)?,
            };
            out.push((name.clone(), v));
        }
        Ok(out)
    }

    fn field(&self, path: &str, ordinal: u64, ip: IpAddr) -> Result<String, BoxError> {
        Ok(match path {
            "metadata.name" => format!("{}-{ordinal}", self.name),
            "metadata.namespace" => NAMESPACE.to_string(),
            "status.podIP" => ip.to_string(),
            p => {
                let label = p
                    .strip_prefix("metadata.labels['")
                    .and_then(|l| l.strip_suffix("']"))
                    .ok_or_else(|| {
                        format!("a downward-API field this harness does not fill: {p}")
                    })?;
                self.labels
                    .get(label)
                    .cloned()
                    .ok_or_else(|| format!("no label {label} on the pod template"))?
            }
        })
    }

    /// The command line of pod `ordinal`: command and arguments with
    /// `$(VAR)` expanded from its environment.
    pub fn command_line(&self, env: &[(String, String)]) -> Vec<String> {
        self.command
            .iter()
            .chain(&self.args)
            .map(|a| expand(a, env))
            .collect()
    }

    /// The DNS name of pod `ordinal`, as its peers ask for it.
    pub fn host(&self, ordinal: u64) -> String {
        format!("{}-{ordinal}.{}.{NAMESPACE}.svc", self.name, self.service)
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$`
/// is a literal `$`, anything else stays as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(") {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The replicas of one StatefulSet as processes.
pub struct Pods {
    /// Everything of the run: TLS material, data, logs.
    pub dir: tempfile::TempDir,
    template: Template,
    /// The image's root filesystem, or `None`: `bin` on this machine.
    rootfs: Option<PathBuf>,
    bin: PathBuf,
    net: u8,
    hosts: PathBuf,
    pods: Vec<Option<ChildGuard>>,
    /// The admin token.
    pub token: String,
    /// The admin kubeconfig `tmc certs` wrote (pod 0's API).
    pub kubeconfig: PathBuf,
}

impl Pods {
    /// Up to `ordinals` pods of `template` on `127.<net>.0.x`: writes the
    /// shard's TLS material (`tmc certs` with `bin`), an encryption
    /// configuration, and the pods' /etc/hosts.
    pub fn new(
        template: Template,
        bin: &Path,
        rootfs: Option<PathBuf>,
        net: u8,
        ordinals: u64,
    ) -> Result<Pods, BoxError> {
        let dir = tempfile::tempdir()?;
        let tls = dir.path().join("tls");
        let ip = |o: u64| IpAddr::from([127, net, 0, o as u8 + 1]);
        let hosts_list: Vec<String> = (0..ordinals).map(|o| ip(o).to_string()).collect();
        let nodes: Vec<String> = (1..=ordinals).map(|n| n.to_string()).collect();
        let shard = template
            .labels
            .get("tmc.kcp.io/shard")
            .cloned()
            .unwrap_or_else(|| "root".into());
        let out = Command::new(bin)
            .args(["certs", "--dir"])
            .arg(&tls)
            .args([
                "--nodes",
                &nodes.join(","),
                "--hosts",
                &hosts_list.join(","),
            ])
            .args([
                "--shard",
                &shard,
                "--server",
                &format!("https://{}:6443", ip(0)),
            ])
            .output()?;
        if !out.status.success() {
            return Err(format!("tmc certs: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for o in 0..ordinals {
            hosts.push_str(&format!("{} {}\n", ip(o), template.host(o)));
        }
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, &hosts)?;
        if let Some(root) = &rootfs {
            let etc_hosts = root.join("etc/hosts");
            // A symbolic link would lead outside the image.
            let _ = std::fs::remove_file(&etc_hosts);
            std::fs::write(etc_hosts, &hosts)?;
        }
        let enc = dir.path().join("encryption");
        std::fs::create_dir_all(&enc)?;
        std::fs::write(
            enc.join("config.yaml"),
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
                 - resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: k1\n        secret: {}\n  - identity: {{}}\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
            ),
        )?;
        let token = crate::api::tls::admin_token(&crate::api::tls::TlsFiles::new(&tls))?;
        Ok(Pods {
            dir,
            template,
            rootfs,
            bin: bin.to_path_buf(),
            net,
            hosts: hosts_file,
            pods: (0..ordinals).map(|_| None).collect(),
            token,
            kubeconfig,
        })
    }

    /// Pod `ordinal`'s address.
    pub fn ip(&self, ordinal: u64) -> IpAddr {
        IpAddr::from([127, self.net, 0, ordinal as u8 + 1])
    }

    /// Pod `ordinal`'s log.
    pub fn log(&self, ordinal: u64) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}-{ordinal}.log", self.template.name))
    }

    /// Pod `ordinal`'s claim.
    pub fn data(&self, ordinal: u64) -> PathBuf {
        self.dir
            .path()
            .join(format!("data-{}-{ordinal}", self.template.name))
    }

    fn port(&self, name: &str, default: u16) -> u16 {
        self.template.ports.get(name).copied().unwrap_or(default)
    }

    /// The content of key `key` of Secret `name`, as the operator makes
    /// them from `tmc certs` (docs/deploy.md): `tmc-<shard>-node-<id>`
    /// from the node's directory, `tmc-encryption` the configuration.
    fn secret_file(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        if name == "tmc-encryption" {
            return std::fs::read(self.dir.path().join("encryption").join(key)).ok();
        }
        let id = name.rsplit_once("-node-")?.1;
        std::fs::read(self.dir.path().join("tls/nodes").join(id).join(key)).ok()
    }

    /// Lays Secret (or projected Secrets) volume `v` out under `to`, each
    /// file root-owned, of the pod's fsGroup, with the volume's mode, as
    /// the kubelet does; a missing key of a Secret that is not optional
    /// is an error.
    fn lay_out_secrets(&self, v: &Value, to: &Path) -> Result<(), BoxError> {
        let mode = |v: &Value| {
            v.as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0o644)
        };
        let sources: Vec<(Value, u32)> = if v["secret"].is_object() {
            let mut s = v["secret"].clone();
            s["name"] = v["secret"]["secretName"].clone();
            vec![(s, mode(&v["secret"]["defaultMode"]))]
        } else {
            let m = mode(&v["projected"]["defaultMode"]);
            v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["secret"].clone(), m))
                .collect()
        };
        for (secret, default_mode) in sources {
            let name = secret["name"].as_str().unwrap_or_default();
            let optional = secret["optional"].as_bool().unwrap_or(false);
            for item in secret["items"].as_array().into_iter().flatten() {
                let key = item["key"].as_str().unwrap_or_default();
                let Some(bytes) = self.secret_file(name, key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("Secret {name} (not optional) has no {key}").into());
                };
                let file = to.join(item["path"].as_str().unwrap_or(key));
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&file, bytes)?;
                std::os::unix::fs::chown(&file, Some(0), Some(self.template.user.1))?;
                let m = item["mode"]
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode);
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(m))?;
            }
        }
        Ok(())
    }

    /// Where each volume mount of pod `ordinal` comes from on this
    /// machine: its claim, Secrets laid out as their volumes say, a fresh
    /// directory for anything else (emptyDir).
    fn volumes(&self, ordinal: u64) -> Result<Vec<(PathBuf, String)>, BoxError> {
        let (uid, gid) = self.template.user;
        let mut out = Vec::new();
        for (volume, path) in &self.template.mounts {
            let spec = self
                .template
                .volumes
                .iter()
                .find(|v| v["name"] == volume.as_str());
            let source = match spec {
                Some(v) if v["secret"].is_object() || v["projected"].is_object() => {
                    let d = self.dir.path().join("volumes").join(volume);
                    if !d.exists() {
                        self.lay_out_secrets(v, &d)?;
                    }
                    d
                }
                None if self.template.claim.as_deref() == Some(volume.as_str()) => {
                    let d = self.data(ordinal);
                    std::fs::create_dir_all(&d)?;
                    std::os::unix::fs::chown(&d, Some(uid), Some(gid))?;
                    d
                }
                _ => {
                    let d = self.dir.path().join(format!("{volume}-{ordinal}"));
                    std::fs::create_dir_all(&d)?;
                    std::os::unix::fs::chown(&d, Some(uid), Some(gid))?;
                    d
                }
            };
            out.push((source, path.clone()));
        }
        Ok(out)
    }

    /// Starts pod `ordinal` with `extra` arguments after the template's
    /// (tests use `--no-controllers`).
    pub fn start(&mut self, ordinal: u64, extra: &[&str]) -> Result<(), BoxError> {
        let env = self.template.environment(ordinal, self.ip(ordinal))?;
        let mut argv = self.template.command_line(&env);
        argv.extend(extra.iter().map(|s| s.to_string()));
        // The shell run inside the new mount namespace: mounts, then exec.
        let mut script = String::from("set -e\n");
        match &self.rootfs {
            Some(root) => {
                // The image's /etc/hosts holds the pods' names (written
                // by `new`, as the kubelet writes a pod's).
                let r = root.display();
                for (source, target) in self.volumes(ordinal)? {
                    script.push_str(&format!(
                        "mkdir -p '{r}{target}'\nmount --bind '{}' '{r}{target}'\n",
                        source.display()
                    ));
                }
            }
            None => {
                script.push_str(&format!(
                    "mount --bind '{}' /etc/hosts\n",
                    self.hosts.display()
                ));
                // No image: the volumes' paths in the arguments become
                // their directories here (nothing is created on this
                // machine's filesystem).
                // Each argument once, by the longest mount path it is under.
                let volumes = self.volumes(ordinal)?;
                for a in argv.iter_mut() {
                    let under = volumes
                        .iter()
                        .filter_map(|(source, target)| {
                            let rest = a.strip_prefix(target.as_str())?;
                            (rest.is_empty() || rest.starts_with('/')).then_some((
                                target.len(),
                                source,
                                rest,
                            ))
                        })
                        .max_by_key(|(len, _, _)| *len)
                        .map(|(_, source, rest)| format!("{}{rest}", source.display()));
                    if let Some(mapped) = under {
                        *a = mapped;
                    }
                }
            }
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
        let mut program: Vec<String> = Vec::new();
        match &self.rootfs {
            Some(rootfs) => {
                let (uid, gid) = self.template.user;
                script.push_str(&format!("exec chroot --userspec={uid}:{gid} \"$@\"\n"));
                program.push(rootfs.display().to_string());
                // The image's entrypoint.
                if self.template.command.is_empty() {
                    program.push("/usr/local/bin/tmc".into());
                }
            }
            None => {
                script.push_str("exec \"$@\"\n");
                if self.template.command.is_empty() {
                    program.push(self.bin.display().to_string());
                }
            }
        }
        cmd.arg(script).arg("pod").args(&program).args(&argv);
        cmd.env_clear();
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        cmd.env(
            "RUST_LOG",
            std::env::var("TMC_NODE_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let pod = ChildGuard::spawn(&format!("pod {ordinal}"), &mut cmd, &self.log(ordinal))?;
        self.pods[ordinal as usize] = Some(pod);
        Ok(())
    }

    /// An admin client of pod `ordinal`'s API.
    pub fn api(&self, ordinal: u64) -> ApiClient {
        ApiClient::at(
            self.ip(ordinal),
            self.port("https", 6443),
            &self.dir.path().join("tls/ca.crt"),
        )
        .expect("the CA tmc certs wrote")
        .bearer(&self.token)
    }

    /// Whether pod `ordinal`'s `/readyz` says 200.
    pub fn ready(&self, ordinal: u64) -> bool {
        block_on(self.api(ordinal).try_call("GET", "/readyz", Value::Null))
            .is_ok_and(|(code, _)| code == 200)
    }

    /// Waits (90 s at most) for pod `ordinal` to be ready; an error at
    /// once when it exited.
    pub fn wait_ready(&mut self, ordinal: u64) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.ready(ordinal) {
            let exited = self.pods[ordinal as usize]
                .as_mut()
                .is_none_or(|p| !p.running());
            if exited {
                return Err(format!(
                    "pod {ordinal} is not running:\n{}",
                    log_tail(&self.log(ordinal), 40)
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pod {ordinal} not ready in 90 s:\n{}",
                    log_tail(&self.log(ordinal), 40)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGTERM, as the kubelet stops a pod (SIGKILL with `kill`); how long
    /// it took to exit. An error when it outlives the grace period (60 s).
    pub fn stop(&mut self, ordinal: u64, kill: bool) -> Result<Duration, BoxError> {
        let mut pod = self.pods[ordinal as usize]
            .take()
            .ok_or("the pod is not running")?;
        let t = Instant::now();
        if kill {
            pod.kill();
            return Ok(t.elapsed());
        }
        pod.signal(libc::SIGTERM);
        while pod.running() {
            if t.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "pod {ordinal} did not exit within the grace period:\n{}",
                    log_tail(&self.log(ordinal), 30)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(t.elapsed())
    }

    /// Waits for pod `ordinal` to exit by itself; its log.
    pub fn wait_exit(&mut self, ordinal: u64, within: Duration) -> Result<String, BoxError> {
        let mut pod = self.pods[ordinal as usize]
            .take()
            .ok_or("the pod is not running")?;
        let t = Instant::now();
        while pod.running() {
            if t.elapsed() > within {
                return Err(format!(
                    "pod {ordinal} still runs:\n{}",
                    log_tail(&self.log(ordinal), 30)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(std::fs::read_to_string(self.log(ordinal)).unwrap_or_default())
    }

    /// `tmc member ...` with the operator's peer certificate through pod
    /// `ordinal`'s internal port: the answer's JSON.
    pub fn member(&self, ordinal: u64, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(&self.bin)
            .arg("member")
            .arg("--peer-tls-dir")
            .arg(self.dir.path().join("tls"))
            .args(args)
            .args([
                "--server",
                &format!("{}:{}", self.ip(ordinal), self.port("internal", 7002)),
            ])
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

    /// Waits (90 s at most) until pod `ordinal` lists exactly `want` as
    /// voters.
    pub fn wait_voters(&self, ordinal: u64, want: &[u64]) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = self.member(ordinal, &["list"]);
            if let Ok(v) = &got {
                let voters: Vec<u64> =
                    serde_json::from_value(v["voters"].clone()).unwrap_or_default();
                if voters == want {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("voters never became {want:?}: last {got:?}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Pod `ordinal`'s `/metrics`.
    pub fn metrics(&self, ordinal: u64) -> Option<String> {
        let url = format!(
            "http://{}:{}/metrics",
            self.ip(ordinal),
            self.port("metrics", 9090)
        );
        block_on(async move { reqwest::get(url).await.ok()?.text().await.ok() })
    }

    /// The ordinal of the leader among `running`, from their metrics.
    pub fn leader(&self, running: &[u64]) -> Option<u64> {
        running.iter().copied().find(|&o| {
            self.metrics(o)
                .is_some_and(|m| m.lines().any(|l| l == "tmc_raft_is_leader 1"))
        })
    }
}

/// The image of `bin` (`scripts/image.sh build`, its Debian base cached
/// between runs), unpacked under `dir`: the root filesystem.
pub fn image_rootfs(repo: &Path, bin: &Path, dir: &Path) -> Result<PathBuf, BoxError> {
    let archive = dir.join("image.tar");
    let run = |args: &[&std::ffi::OsStr]| -> Result<(), BoxError> {
        let out = Command::new("bash")
            .arg(repo.join("scripts/image.sh"))
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "scripts/image.sh {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    };
    run(&["build".as_ref(), archive.as_os_str(), bin.as_os_str()])?;
    let unpacked = dir.join("image");
    run(&["unpack".as_ref(), archive.as_os_str(), unpacked.as_os_str()])?;
    Ok(unpacked.join("rootfs"))
}

/// What a [`Writer`] saw acknowledged, and when.
#[derive(Default)]
pub struct Writes {
    /// Acknowledged names with the time of their acknowledgement.
    pub acked: Vec<(String, Instant)>,
    /// The last error, for a test's message.
    pub last_error: String,
    stop: bool,
}

/// A client writing ConfigMaps into root's `default` one after another
/// through whichever of `clients` answers (the next one after a failure),
/// as through the client Service.
pub struct Writer {
    /// The clients it tries in turn (change them as pods come and go).
    pub clients: Arc<Mutex<Vec<ApiClient>>>,
    /// What it saw.
    pub writes: Arc<Mutex<Writes>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The path the writer creates ConfigMaps under.
pub const WRITES_PATH: &str = "/clusters/root/api/v1/namespaces/default/configmaps";

impl Writer {
    /// Starts writing.
    pub fn start(clients: Vec<ApiClient>) -> Writer {
        let clients = Arc::new(Mutex::new(clients));
        let writes: Arc<Mutex<Writes>> = Arc::default();
        let (c, w) = (clients.clone(), writes.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut next = 0usize;
            let lock = |w: &Mutex<Writes>| {
                // A panicked holder leaves the data intact.
                w.lock().unwrap_or_else(|p| p.into_inner()).stop
            };
            while !lock(&w) {
                let name = format!("w-{n:07}");
                let client = {
                    let all = c.lock().unwrap_or_else(|p| p.into_inner());
                    if all.is_empty() {
                        None
                    } else {
                        Some(all[next % all.len()].clone())
                    }
                };
                let Some(client) = client else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"n": n.to_string()}});
                match block_on(client.try_call("POST", WRITES_PATH, body)) {
                    // 409: an earlier try of the same name was committed.
                    Ok((201 | 409, _)) => {
                        w.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .acked
                            .push((name, Instant::now()));
                        n += 1;
                    }
                    other => {
                        w.lock().unwrap_or_else(|p| p.into_inner()).last_error =
                            format!("{other:?}");
                        next += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Writer {
            clients,
            writes,
            thread: Some(thread),
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked
            .len()
    }

    /// Waits (30 s at most) for `more` acknowledged writes.
    pub fn progress(&self, more: usize) -> Result<(), BoxError> {
        let base = self.acked();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked() < base + more {
            if Instant::now() > deadline {
                let last = self
                    .writes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_error
                    .clone();
                return Err(format!("the writer made no progress: {last}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The longest gap between acknowledgements from `from` on, until the
    /// first acknowledgement after `to`.
    pub fn longest_pause(&self, from: Instant, to: Instant) -> Duration {
        let w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = from;
        let mut longest = Duration::ZERO;
        for (_, t) in w.acked.iter().filter(|(_, t)| *t >= from) {
            longest = longest.max(t.duration_since(last));
            last = *t;
            if *t > to {
                break;
            }
        }
        longest
    }

    /// Stops writing; the acknowledged names.
    pub fn stop(mut self) -> Vec<String> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        w.acked.iter().map(|(n, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_as_the_kubelet_expands_them() {
        let env = vec![
            ("POD_IP".to_string(), "10.0.0.7".to_string()),
            ("NS".to_string(), "tmc-system".to_string()),
        ];
        assert_eq!(expand("$(POD_IP):9090", &env), "10.0.0.7:9090");
        assert_eq!(expand("a.$(NS).svc", &env), "a.tmc-system.svc");
        assert_eq!(expand("$(UNKNOWN)/x", &env), "$(UNKNOWN)/x");
        assert_eq!(expand("$$(POD_IP)", &env), "$(POD_IP)");
        assert_eq!(expand("cost $5 $(", &env), "cost $5 $(");
        assert_eq!(expand("/etc/tmc/nodes/{id}", &env), "/etc/tmc/nodes/{id}");
    }
}
