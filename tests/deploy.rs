//! The Kubernetes deployment, checked for real (docs/deploy.md):
//!
//! - every overlay of `deploy/` passes `scripts/deploy-check.sh` against a
//!   real kube-apiserver of the test environment (server dry run: schema,
//!   strict fields, defaulting, admission, Pod Security "restricted"); the
//!   objects as the apiserver returns them run exactly `tmc serve`'s pod
//!   mode, and the names its arguments expand to (peers, the shard's URL,
//!   the root shard) are Services of the same overlay; a broken overlay
//!   fails the check;
//! - the alert rules pass `promtool check rules` and their unit tests, and
//!   loosening any one alert turns its unit test red; every runbook link
//!   has its section in docs/deploy.md;
//! - the image `scripts/image.sh` builds from this test's own `tmc` binary
//!   runs it from its root filesystem (chroot, as uid 65532): `--version`
//!   and a one-node `tmc dev` answering `/readyz` on loopback.
//!
//! The scripts install what they need (mmdebstrap and umoci through
//! apt-get, promtool built from the Go module proxy), so this runs on a
//! fresh machine; the image test needs root, as CI has.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tmc::testcluster::members::{kubectl_at, kubectl_binary, repo_root, TestEnv};
use tmc::testcluster::pods::{expand, Template};

/// Runs a command; (success, stdout and stderr together).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo_root().join("scripts").join(name));
    c.env("KUBECTL", kubectl_binary());
    c
}

fn deploy_check(kubeconfig: &Path, overlays: &[&Path]) -> (bool, String) {
    let mut c = script("deploy-check.sh");
    c.arg("--no-promtool").arg("--kubeconfig").arg(kubeconfig);
    c.args(overlays);
    run(&mut c)
}

/// `path` relative to `from` (kustomize refuses absolute resource roots).
fn relative(from: &Path, path: &Path) -> PathBuf {
    let mut rel = PathBuf::new();
    for _ in from.components().skip(1) {
        rel.push("..");
    }
    rel.join(path.strip_prefix("/").unwrap())
}

/// An overlay in `dir/name` on top of deploy/overlays/dev with a JSON
/// patch of its StatefulSet.
fn broken_overlay(dir: &Path, name: &str, patch: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let base = relative(&d, &repo_root().join("deploy/overlays/dev"));
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\npatches:\n- target: {{kind: StatefulSet}}\n  patch: |-\n",
        base.display()
    );
    for line in patch.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(d.join("kustomization.yaml"), text).unwrap();
    d
}

/// The items of an overlay as the apiserver returns them from a server dry
/// run (defaults filled in), by "Kind/name".
fn dry_run_objects(kubeconfig: &Path, overlay: &str) -> BTreeMap<String, Value> {
    let dir = repo_root().join("deploy/overlays").join(overlay);
    let (ok, out, err) = kubectl_at(
        kubeconfig,
        &[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-k",
            dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "server dry run of {overlay}: {err}{out}");
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    list["items"]
        .as_array()
        .expect("a List")
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o.clone(),
            )
        })
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

const NODE_KEYS: [&str; 10] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "tokens.csv",
    "peer-ca.crt",
    "peer.crt",
    "peer.key",
    "front-proxy-ca.crt",
    "shard.crt",
    "shard.key",
];

/// What the pods of shard `shard` run and how, from the objects the
/// apiserver accepted.
fn check_shard(objects: &BTreeMap<String, Value>, shard: &str) {
    let ns = "tmc-system";
    let name = format!("tmc-{shard}");
    let sts = objects
        .get(&format!("StatefulSet/{name}"))
        .unwrap_or_else(|| panic!("no StatefulSet {name} in {:?}", objects.keys()));
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3, "{name}");
    assert_eq!(spec["podManagementPolicy"], "Parallel", "{name}");
    let peers = format!("{name}-peers");
    assert_eq!(spec["serviceName"], peers.as_str(), "{name}");
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(labels["tmc.kcp.io/shard"], shard, "{name}");
    assert_eq!(labels["app.kubernetes.io/name"], "tmc");
    assert_eq!(labels["app.kubernetes.io/component"], "shard");
    assert_eq!(
        &spec["selector"]["matchLabels"], labels,
        "{name}: the selector is the pod labels"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 60);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        &anti["labelSelector"]["matchLabels"], labels,
        "{name}: anti-affinity among this shard's replicas"
    );
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(&spread["labelSelector"]["matchLabels"], labels);
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9090");

    let c = &pod["containers"][0];
    // Exactly the pod-mode command line.
    let mut want: Vec<String> = [
        "serve",
        "--pod-name",
        "$(POD_NAME)",
        "--peer-domain",
        "$(PEER_DOMAIN)",
        "--bind-address",
        "$(POD_IP)",
        "--data-dir",
        "/var/lib/tmc",
        "--tls-dir",
        "/etc/tmc/nodes/{id}",
        "--peer-tls-dir",
        "/etc/tmc/nodes/{id}",
        "--shard",
        "$(TMC_SHARD)",
        "--shard-url",
        "https://tmc-$(TMC_SHARD).$(POD_NAMESPACE).svc:6443",
        "--metrics-listen",
        "$(POD_IP):9090",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if shard != "root" {
        want.push("--root-shard".into());
        want.push("https://tmc-root.$(POD_NAMESPACE).svc:6443".into());
    }
    want.push("--encryption-config".into());
    want.push("/etc/tmc/encryption/config.yaml".into());
    let args = strs(&c["args"]);
    assert_eq!(args, want, "{name}: the args");
    assert!(
        c["command"].is_null(),
        "the image's entrypoint runs tmc: {c}"
    );

    // What a pod's arguments become: pod tmc-<shard>-1 is node 2.
    let pod_name = format!("{name}-1");
    let template = Template::from_object(sts).expect("the StatefulSet");
    let env = template
        .environment(1, "10.1.2.3".parse().expect("an IP"))
        .expect("the pod's environment");
    let expanded: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
    let flag = |f: &str| -> String {
        let i = expanded
            .iter()
            .position(|a| a == f)
            .unwrap_or_else(|| panic!("{name}: no {f}"));
        expanded[i + 1].clone()
    };
    assert_eq!(flag("--pod-name"), pod_name);
    assert_eq!(flag("--bind-address"), "10.1.2.3");
    assert_eq!(flag("--metrics-listen"), "10.1.2.3:9090");
    assert_eq!(flag("--shard"), shard);
    // The peer domain is the headless Service's, in this namespace.
    assert_eq!(flag("--peer-domain"), format!("{peers}.{ns}.svc"));
    let headless = objects
        .get(&format!("Service/{peers}"))
        .unwrap_or_else(|| panic!("no Service {peers}"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let ports: BTreeMap<String, i64> = headless["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("internal".to_string(), 7002), ("raft".to_string(), 7001)])
    );
    assert_eq!(&headless["spec"]["selector"], labels);
    // --shard-url and --root-shard name client Services of this overlay
    // on port 6443.
    let mut urls = vec![flag("--shard-url")];
    if shard != "root" {
        urls.push(flag("--root-shard"));
        assert_eq!(
            flag("--root-shard"),
            format!("https://tmc-root.{ns}.svc:6443")
        );
    }
    assert_eq!(flag("--shard-url"), format!("https://{name}.{ns}.svc:6443"));
    for url in urls {
        let host = url
            .strip_prefix("https://")
            .and_then(|h| h.strip_suffix(&format!(".{ns}.svc:6443")))
            .unwrap_or_else(|| panic!("{url}"));
        let svc = objects
            .get(&format!("Service/{host}"))
            .unwrap_or_else(|| panic!("{url}: no Service {host}"));
        assert_eq!(svc["spec"]["ports"][0]["port"], 6443, "{host}");
        assert_ne!(svc["spec"]["clusterIP"], "None", "{host}");
        let target = host.strip_prefix("tmc-").unwrap();
        assert_eq!(
            svc["spec"]["selector"]["tmc.kcp.io/shard"], target,
            "{host}"
        );
    }
    let pdb = &objects[&format!("PodDisruptionBudget/{name}")];
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    // Raft and the internal port from this shard's replicas only.
    let np = objects
        .get(&format!("NetworkPolicy/{name}"))
        .unwrap_or_else(|| panic!("no NetworkPolicy {name}"));
    assert_eq!(&np["spec"]["podSelector"]["matchLabels"], labels);
    let rules = np["spec"]["ingress"].as_array().unwrap();
    for port in ["raft", "internal"] {
        let allowed: Vec<&Value> = rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .collect();
        assert_eq!(allowed.len(), 1, "{name}: one rule for {port}");
        assert_eq!(
            allowed[0]["from"],
            serde_json::json!([{"podSelector": {"matchLabels": labels}}]),
            "{name}: {port} from this shard's replicas only"
        );
    }

    // Guaranteed QoS, locked-down container, probes over HTTPS.
    assert_eq!(
        c["resources"]["requests"], c["resources"]["limits"],
        "{name}: requests == limits"
    );
    assert!(c["resources"]["limits"]["cpu"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let port_of = |n: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("no port {n}"))["containerPort"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(port_of("https"), 6443);
    assert_eq!(port_of("raft"), 7001);
    assert_eq!(port_of("internal"), 7002);
    assert_eq!(port_of("metrics"), 9090);
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ] {
        let g = &c[probe]["httpGet"];
        assert_eq!(g["path"], path, "{probe}");
        assert_eq!(g["scheme"], "HTTPS", "{probe}");
        assert_eq!(port_of(g["port"].as_str().unwrap()), 6443, "{probe}");
    }

    // Volumes: the data claim, every node's material in one projected
    // volume (ids 4-7 optional), the optional encryption Secret.
    let mounts: BTreeMap<String, (String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["readOnly"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect();
    assert_eq!(mounts["data"], ("/var/lib/tmc".to_string(), false));
    assert_eq!(mounts["nodes"], ("/etc/tmc/nodes".to_string(), true));
    assert_eq!(
        mounts["encryption"],
        ("/etc/tmc/encryption".to_string(), true)
    );
    let claim = &spec["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |n: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no volume {n}"))
    };
    let enc = &volume("encryption")["secret"];
    assert_eq!(enc["secretName"], "tmc-encryption");
    assert_eq!(enc["optional"], true);
    assert_eq!(enc["items"][0]["path"], "config.yaml");
    let sources = volume("nodes")["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 7, "{name}: Secrets of ids 1..7");
    for (i, s) in sources.iter().enumerate() {
        let id = i + 1;
        let secret = &s["secret"];
        assert_eq!(secret["name"], format!("{name}-node-{id}"));
        assert_eq!(
            secret["optional"].as_bool().unwrap_or(false),
            id >= 4,
            "{name}: Secret of node {id}"
        );
        let items: Vec<(String, String)> = secret["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| {
                (
                    it["key"].as_str().unwrap().to_string(),
                    it["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = NODE_KEYS
            .iter()
            .map(|k| (k.to_string(), format!("{id}/{k}")))
            .collect();
        assert_eq!(items, want, "{name}: node {id}'s files");
    }
    // --tls-dir /etc/tmc/nodes/{id} of pod 1 (node 2) is a directory the
    // projected volume fills.
    let tls = flag("--tls-dir").replace("{id}", "2");
    assert_eq!(tls, "/etc/tmc/nodes/2");
}

fn check_proxy(objects: &BTreeMap<String, Value>) {
    let d = &objects["Deployment/tmc-proxy"];
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        strs(&c["args"]),
        [
            "proxy",
            "--listen",
            "0.0.0.0:6443",
            "--tls-dir",
            "/etc/tmc/proxy",
            "--root-shard",
            "https://tmc-root.$(POD_NAMESPACE).svc:6443"
        ]
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let tls = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(tls["secret"]["secretName"], "tmc-proxy-tls");
    let keys: Vec<String> = tls["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "server.crt",
        "server.key",
        "ca.crt",
        "tokens.csv",
        "front-proxy-client.crt",
        "front-proxy-client.key",
    ] {
        assert!(keys.contains(&k.to_string()), "tmc-proxy-tls lacks {k}");
    }
    assert_eq!(
        objects["Service/tmc-proxy"]["spec"]["ports"][0]["port"],
        6443
    );
    assert_eq!(
        objects["PodDisruptionBudget/tmc-proxy"]["spec"]["maxUnavailable"],
        1
    );
}

fn wait_namespace_gone(kubeconfig: &Path, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, _, err) = kubectl_at(kubeconfig, &["get", "namespace", ns]);
        if !ok && err.contains("NotFound") {
            return;
        }
        assert!(Instant::now() < deadline, "namespace {ns} never went away");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn overlays_pass_a_real_apiservers_dry_run_and_run_the_pod_mode_cli() {
    // Cluster 0 of the shared pair (the pods test uses cluster 1: each
    // creates and deletes namespace tmc-system on its own).
    let env = TestEnv::shared();
    let kc = env.kubeconfig(0);

    // The check as an operator runs it, on every overlay.
    let (ok, out) = deploy_check(kc, &[]);
    assert!(ok, "deploy-check.sh failed:\n{out}");
    for line in [
        "ok dev: every object accepted",
        "ok three-shards: every object accepted",
        "statefulset.apps/tmc-root created (server dry run)",
        "statefulset.apps/tmc-s1 created (server dry run)",
        "statefulset.apps/tmc-s2 created (server dry run)",
        "deploy-check: all checks passed",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // Broken overlays fail it, with the apiserver's reason.
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "invalid-value",
            "- op: replace\n  path: /spec/podManagementPolicy\n  value: Sometimes",
            "spec.podManagementPolicy: Invalid value: \"Sometimes\"",
        ),
        (
            "unknown-field",
            "- op: add\n  path: /spec/template/spec/containers/0/livenessProbe/httpGet/scheme2\n  value: HTTPS",
            "unknown field \"spec.template.spec.containers[0].livenessProbe.httpGet.scheme2\"",
        ),
        (
            "pod-security",
            "- op: remove\n  path: /spec/template/spec/containers/0/securityContext/capabilities",
            "would violate PodSecurity \"restricted:latest\"",
        ),
    ];
    for (name, patch, reason) in cases {
        let overlay = broken_overlay(tmp.path(), name, patch);
        let (ok, out) = deploy_check(kc, &[&overlay]);
        assert!(!ok, "{name}: the check passed a broken overlay:\n{out}");
        assert!(
            out.contains(reason) && out.contains(&format!("FAIL {name}")),
            "{name}: expected {reason:?} in:\n{out}"
        );
    }

    // The objects as the apiserver accepted them.
    wait_namespace_gone(kc, "tmc-system");
    let ns = repo_root().join("deploy/overlays/three-shards/namespace.yaml");
    let (ok, out, err) = kubectl_at(kc, &["create", "-f", ns.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let three = dry_run_objects(kc, "three-shards");
    for shard in ["root", "s1", "s2"] {
        check_shard(&three, shard);
    }
    check_proxy(&three);
    assert_eq!(
        three
            .keys()
            .filter(|k| k.starts_with("StatefulSet/"))
            .count(),
        3
    );
    let dev = dry_run_objects(kc, "dev");
    check_shard(&dev, "root");
    check_proxy(&dev);
    assert_eq!(
        dev.keys().cloned().collect::<Vec<_>>(),
        [
            "Deployment/tmc-proxy",
            "Namespace/tmc-system",
            "NetworkPolicy/tmc-root",
            "PodDisruptionBudget/tmc-proxy",
            "PodDisruptionBudget/tmc-root",
            "Service/tmc-proxy",
            "Service/tmc-root",
            "Service/tmc-root-peers",
            "StatefulSet/tmc-root"
        ]
    );
}

/// Each alert loosened so that its unit test's sick series no longer fires
/// it (or its healthy one does): (alert, text in tmc-alerts.yaml, loosened).
const LOOSENED: [(&str, &str, &str); 7] = [
    ("TmcShardQuorumAtRisk", "/ 2) + 1)", "/ 2) + 2)"),
    ("TmcLeaderFlapping", "[15m])) > 3", "[15m])) > 30"),
    ("TmcFollowerLagging", "> 10000", "> 100000"),
    ("TmcVolumeFillingUp", "[6h], 24 * 3600)", "[6h], 2 * 3600)"),
    ("TmcVolumeAlmostFull", "< 0.10,", "< 0.01,"),
    ("TmcApiErrorRatioHigh", "> 0.05", "> 0.5"),
    ("TmcControllerErrors", "[10m])) > 0.1", "[10m])) > 10"),
];

#[test]
fn alert_rules_pass_promtool_and_each_loosened_alert_fails_its_test() {
    // deploy-check.sh without a kubeconfig: render the overlays, then
    // promtool (built on first use).
    let (ok, out) = run(&mut script("deploy-check.sh"));
    assert!(ok, "deploy-check.sh (render + promtool) failed:\n{out}");
    for line in [
        "rendered dev:",
        "rendered three-shards:",
        "SUCCESS: 7 rules found",
        "Processing test file: tmc-alerts.test.yaml\n  SUCCESS",
        "valid prometheus config file syntax",
        "the dashboard's",
        "ok monitoring: promtool checks pass",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    let mon = repo_root().join("deploy/monitoring");
    let rules = std::fs::read_to_string(mon.join("tmc-alerts.yaml")).unwrap();
    // Every alert has a runbook section in docs/deploy.md.
    let guide = std::fs::read_to_string(repo_root().join("docs/deploy.md")).unwrap();
    let mut alerts = 0;
    for line in rules.lines() {
        if line.trim_start().starts_with("- alert:") {
            alerts += 1;
        }
        if let Some(url) = line.trim().strip_prefix("runbook_url: ") {
            let anchor = url
                .strip_prefix("docs/deploy.md#")
                .unwrap_or_else(|| panic!("runbook_url {url} is not a docs/deploy.md section"));
            assert!(
                guide.contains(&format!("<a id=\"{anchor}\"></a>")),
                "docs/deploy.md has no anchor {anchor}"
            );
        }
    }
    assert_eq!(alerts, LOOSENED.len(), "one loosening per alert");

    for (alert, from, to) in LOOSENED {
        assert_eq!(
            rules.matches(from).count(),
            1,
            "{alert}: {from:?} must occur once in tmc-alerts.yaml"
        );
        let tmp = tempfile::tempdir().unwrap();
        for f in [
            "tmc-alerts.test.yaml",
            "prometheus-scrape.yaml",
            "tmc-dashboard.json",
        ] {
            std::fs::copy(mon.join(f), tmp.path().join(f)).unwrap();
        }
        std::fs::write(tmp.path().join("tmc-alerts.yaml"), rules.replace(from, to)).unwrap();
        let (ok, out) = run(script("promtool.sh")
            .arg("check")
            .env("TMC_MONITORING_DIR", tmp.path()));
        assert!(
            !ok,
            "{alert} loosened ({from} -> {to}) still passes:\n{out}"
        );
        assert!(
            out.contains("FAILED") && out.contains(&format!("alertname: {alert}")),
            "{alert}: its unit test should fail:\n{out}"
        );
    }
}

/// The image of this test binary's `tmc`, built by `scripts/image.sh`
/// (its Debian base cached between runs), unpacked into `dir/image`
/// (`dir/image/rootfs`, `dir/image/config.json`).
fn unpacked_image(dir: &Path) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "building and chrooting into the image needs root (mmdebstrap, files of uid 65532); CI runs as root"
    );
    let bin = tmc::testcluster::tmc_binary();
    assert!(bin.is_file(), "no tmc binary at {}", bin.display());
    let rootfs = tmc::testcluster::pods::image_rootfs(&repo_root(), &bin, dir)
        .unwrap_or_else(|e| panic!("the image: {e}"));
    rootfs.parent().expect("DIR/image/rootfs").to_path_buf()
}

/// A child that is killed when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_image_runs_tmc_from_its_own_root_filesystem() {
    // scripts/image.sh builds the Dockerfile's runtime stage: the same
    // packages, user and entrypoint.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").expect("a FROM")..];
    let docker_packages: Vec<&str> = runtime
        .split("--no-install-recommends")
        .nth(1)
        .expect("apt-get install in the runtime stage")
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|w| *w != "\\")
        .collect();
    let image_sh = std::fs::read_to_string(repo_root().join("scripts/image.sh")).unwrap();
    let script_packages: Vec<&str> = image_sh
        .lines()
        .find_map(|l| l.strip_prefix("PACKAGES=("))
        .expect("PACKAGES= in image.sh")
        .trim_end_matches(')')
        .split_whitespace()
        .collect();
    assert_eq!(
        docker_packages, script_packages,
        "the Dockerfile's runtime packages and image.sh's differ"
    );
    for line in ["USER 65532:65532", "ENTRYPOINT [\"/usr/local/bin/tmc\"]"] {
        assert!(
            runtime.contains(line),
            "the Dockerfile's runtime stage lacks {line}"
        );
    }

    let bin = tmc::testcluster::tmc_binary();
    let tmp = tempfile::tempdir().unwrap();
    let unpacked = unpacked_image(tmp.path());
    let rootfs = unpacked.join("rootfs");

    // The runtime configuration of the image.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("config.json")).unwrap())
            .unwrap();
    let process = &config["process"];
    assert_eq!(process["user"]["uid"], 65532);
    assert_eq!(process["user"]["gid"], 65532);
    assert_eq!(process["args"], serde_json::json!(["/usr/local/bin/tmc"]));
    assert_eq!(process["cwd"], "/var/lib/tmc");
    // Its filesystem: this test's binary, the user, the data directory.
    let inside = rootfs.join("usr/local/bin/tmc");
    assert!(
        std::fs::read(&inside).unwrap() == std::fs::read(&bin).unwrap(),
        "the image's /usr/local/bin/tmc is not {}",
        bin.display()
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("tmc:x:65532:65532:")),
        "{passwd}"
    );
    let data = std::fs::metadata(rootfs.join("var/lib/tmc")).unwrap();
    assert_eq!((data.uid(), data.gid()), (65532, 65532));

    // tmc runs with the image's libraries only.
    let (ok, out) = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/local/bin/tmc", "--version"]));
    assert!(ok, "tmc --version in the image failed:\n{out}");
    assert_eq!(out.trim(), format!("tmc {}", env!("CARGO_PKG_VERSION")));

    // A one-node tmc dev as the image's user, answering on loopback (the
    // chroot shares this network namespace).
    let mut child = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args([
            "/usr/local/bin/tmc",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/var/lib/tmc/dev",
            "--no-controllers",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chroot");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let dev = Killed(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.contains("https://127.0.0.1:"),
        "tmc dev in the image printed {line:?}"
    );
    let kubeconfig = rootfs.join("var/lib/tmc/dev/admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = kubectl_at(&kubeconfig, &["get", "--raw", "/readyz"]);
        if ok && out.trim() == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tmc dev in the image never became ready: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = kubectl_at(&kubeconfig, &["get", "namespace", "default", "-o", "name"]);
    assert!(ok && out.trim() == "namespace/default", "{out}{err}");
    // It wrote its store as the image's user.
    let current = std::fs::metadata(rootfs.join("var/lib/tmc/dev/shard/CURRENT")).unwrap();
    assert_eq!(
        current.uid(),
        65532,
        "the store belongs to the image's user"
    );
    drop(dev);

    // The chroot really is the image's userland: without its libstdc++,
    // tmc does not start.
    let mut removed = 0;
    for dir in std::fs::read_dir(rootfs.join("usr/lib")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.to_string_lossy().ends_with("-linux-gnu") {
            continue;
        }
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("libstdc++.so") {
                std::fs::remove_file(e.path()).unwrap();
                removed += 1;
            }
        }
    }
    assert!(removed > 0, "no libstdc++ in the image");
    let (ok, out) = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/local/bin/tmc", "--version"]));
    assert!(
        !ok && out.contains("libstdc++"),
        "tmc started without libstdc++:\n{out}"
    );
}
