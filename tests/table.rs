//! Table output: `kubectl get` (the member clusters' kubectl, v1.34)
//! against `tmc dev` shows kube-apiserver's columns for the built-in kinds
//! and tmc's for its own, `-o wide` and `-w` included; and the same
//! objects in tmc and in the test environment's real kube-apiserver give
//! the same Tables (column definitions whole, cells but for ages and what
//! the servers assign), the same watch events, and the same 406 and 400
//! answers to bad `Accept` headers and `includeObject` values. tmc's
//! printers also run on the objects kube-apiserver returns, for the kinds
//! tmc does not serve yet as well, and must print them as it does.
//!
//! Needs `scripts/testenv.sh build` to have run; see docs/testing.md.

use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tmc::testcluster::dev::Dev;
use tmc::testcluster::members::{
    client_for, expect_lines, kubectl_binary, kubectl_lines, kubectl_with, TestEnv,
};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The same objects go to tmc and to kube-apiserver.
const BUILTIN: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: tables}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: tables, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.25"}
      - {name: side, image: busybox}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: tables}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: postgres}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: tables}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {nodeSelector: {disk: ssd}, containers: [{name: a, image: agent}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: tables}
spec:
  completions: 3
  parallelism: 2
  template:
    spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: tables}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: tables}
spec:
  type: ExternalName
  externalName: db.example.com
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: tables}
data: {a: "1", b: "2"}
binaryData: {c: AAEC}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: tables}
stringData: {user: admin}
data: {pass: c2VjcmV0}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: tables}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: tables}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: tables}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: tables}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: User, name: alice}
- {kind: User, name: bob}
- {kind: Group, name: devs}
- {kind: ServiceAccount, name: bot, namespace: tables}
"#;

/// tmc's own kinds.
const TMC_KINDS: &str = r#"
apiVersion: tmc.kcp.io/v1alpha1
kind: ClusterRegistration
metadata: {name: edge-1, labels: {region: eu-west, tier: prod}}
spec:
  apiEndpoint: https://127.0.0.1:1
  credentialsSecretRef: {namespace: tables, name: creds}
  location: eu-west
  taints: [{key: maintenance, value: "true", effect: NoSchedule}]
---
apiVersion: tmc.kcp.io/v1alpha1
kind: WorkloadPlacement
metadata: {name: web-eu}
spec:
  resources: [{group: apps, resource: deployments}]
  clusterSelector: {matchLabels: {region: eu-west}}
  strategy: {type: Spread, clusters: 2, topologyKey: region}
---
apiVersion: tenancy.kcp.io/v1alpha1
kind: Workspace
metadata: {name: team}
"#;

/// Kinds tmc does not serve yet (being added), printed by tmc's printers
/// from kube-apiserver's objects.
const KUBE_ONLY: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: tables}
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: b, image: "backup:1"}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: tables}
spec:
  ingressClassName: nginx
  tls: [{hosts: [a.example.com]}]
  rules:
  - host: a.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
  - host: b.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: tables}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: tables}
spec:
  minAvailable: 50%
  selector: {matchLabels: {app: web}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: tables}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 4
  metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}
  - {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}}
  - {type: Pods, pods: {metric: {name: qps}, target: {type: AverageValue, averageValue: "10"}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: tables}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}
  policyTypes: [Ingress]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: tables}
spec: {holderIdentity: me}
---
apiVersion: v1
kind: Event
metadata: {name: web.hello, namespace: tables}
involvedObject: {kind: Deployment, name: web, namespace: tables, fieldPath: "spec.template"}
reason: Hello
message: "  hello  "
type: Normal
source: {component: table-test}
count: 3
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-02T00:00:00Z"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-x, namespace: tables, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}, {name: other, protocol: TCP}]
endpoints:
- addresses: [10.1.0.1, 10.1.0.2]
- addresses: [10.1.0.3, 10.1.0.4]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: tables}
spec: {hard: {pods: "10", requests.cpu: "2", limits.memory: 1Gi}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: lr, namespace: tables}
spec: {limits: [{type: Container, default: {cpu: 500m}}]}
"#;

/// A server under test: its kubeconfig and a client.
struct Server {
    name: &'static str,
    kc: PathBuf,
    client: kube::Client,
}

impl Server {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = kubectl_with(&kubectl_binary(), &self.kc, args, stdin);
        assert!(ok, "{}: kubectl {args:?}: {err}{out}", self.name);
        out
    }

    /// GET `path` with `accept`: the status and the body as JSON.
    async fn get(&self, path: &str, accept: &str) -> (u16, Value) {
        let req = Request::get(path)
            .header("Accept", accept)
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (code, body)
    }

    /// A Table of `path` (200 expected).
    async fn table(&self, path: &str) -> Value {
        let (code, t) = self.get(path, TABLE).await;
        assert_eq!(code, 200, "{} {path}: {t}", self.name);
        assert_eq!(t["kind"], "Table", "{} {path}: {t}", self.name);
        t
    }

    /// Watches `path` (a collection) as Tables from `rv`, runs `act`,
    /// and returns the first `n` events.
    async fn watch_tables(&self, path: &str, rv: &str, n: usize, act: impl FnOnce()) -> Vec<Value> {
        let uri = format!("{path}?watch=true&resourceVersion={rv}&timeoutSeconds=30");
        let req = Request::get(uri)
            .header("Accept", TABLE)
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{} watch", self.name);
        let mut body = resp.into_body();
        act();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while events.len() < n {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .unwrap_or_else(|_| panic!("{}: only {events:?}", self.name));
            let Some(Ok(frame)) = frame else {
                panic!("{}: the watch ended after {events:?}", self.name)
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                events.push(serde_json::from_slice::<Value>(&line).unwrap());
            }
        }
        events
    }
}

async fn tmc_dev(data: &Path) -> (Dev, Server) {
    let (dev, _url) = Dev::start(data, &[]);
    let kc = data.join("admin.kubeconfig");
    // Ready once root's default namespace exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, _) = kubectl_with(
            &kubectl_binary(),
            &kc,
            &["get", "ns", "default", "-o", "name"],
            None,
        );
        if ok && out.trim() == "namespace/default" {
            break;
        }
        assert!(Instant::now() < deadline, "tmc dev never served root");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = client_for(&kc).await.unwrap();
    (
        dev,
        Server {
            name: "tmc",
            kc,
            client,
        },
    )
}

/// The words of the header and of the row starting with `name`.
fn header_and_row(out: &str, name: &str) -> (String, Vec<String>) {
    let mut lines = out.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let row = lines
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|w| w.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{out}"));
    (header, row)
}

fn is_age(s: &str) -> bool {
    let mut digits = false;
    for c in s.chars() {
        match c {
            '0'..='9' => digits = true,
            's' | 'm' | 'h' | 'd' | 'y' if digits => digits = false,
            _ => return false,
        }
    }
    !s.is_empty() && !digits
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_shows_the_columns_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, tmc) = tmc_dev(&dir.path().join("tmc")).await;
    tmc.kubectl(&["apply", "-f", "-"], Some(BUILTIN));
    tmc.kubectl(&["apply", "-f", "-"], Some(TMC_KINDS));

    // (kubectl get arguments, header, row name, the row's first cells
    // (AGE and what follows it are checked apart)).
    let cases: &[(&[&str], &str, &str, &[&str])] = &[
        (
            &["get", "deployments", "-n", "tables"],
            "NAME READY UP-TO-DATE AVAILABLE AGE",
            "web",
            &["web", "0/1", "0", "0"],
        ),
        (
            &["get", "deployment", "web", "-n", "tables", "-o", "wide"],
            "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
            "web",
            &["web", "0/1", "0", "0"],
        ),
        (
            &["get", "statefulsets", "-n", "tables"],
            "NAME READY AGE",
            "db",
            &["db", "0/2"],
        ),
        (
            &["get", "daemonsets", "-n", "tables"],
            "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE",
            "agent",
            &["agent", "0", "0", "0", "0", "0", "disk=ssd"],
        ),
        (
            &["get", "jobs", "-n", "tables"],
            "NAME STATUS COMPLETIONS DURATION AGE",
            "once",
            &["once", "Running", "0/3"],
        ),
        (
            &["get", "ns"],
            "NAME STATUS AGE",
            "tables",
            &["tables", "Active"],
        ),
        (
            &["get", "cm", "-n", "tables"],
            "NAME DATA AGE",
            "settings",
            &["settings", "3"],
        ),
        (
            &["get", "secrets", "-n", "tables"],
            "NAME TYPE DATA AGE",
            "creds",
            &["creds", "Opaque", "2"],
        ),
        (
            &["get", "secrets", "-n", "tables"],
            "NAME TYPE DATA AGE",
            "cert",
            &["cert", "kubernetes.io/tls", "2"],
        ),
        (
            &["get", "svc", "-n", "tables"],
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
            "web",
            &["web", "ClusterIP", "<none>", "<none>", "80/TCP,53/UDP"],
        ),
        (
            &["get", "svc", "-n", "tables", "-o", "wide"],
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR",
            "db",
            &["db", "ExternalName", "<none>", "db.example.com", "<none>"],
        ),
        (
            &["get", "serviceaccounts", "-n", "tables"],
            "NAME SECRETS AGE",
            "bot",
            &["bot", "0"],
        ),
        (
            &["get", "roles", "-n", "tables"],
            "NAME CREATED AT",
            "reader",
            &["reader"],
        ),
        (
            &["get", "rolebindings", "-n", "tables", "-o", "wide"],
            "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS",
            "reader",
            &["reader", "Role/reader"],
        ),
        (
            &["get", "clusterregistrations"],
            "NAME READY LOCATION VERSION AGE",
            "edge-1",
            &["edge-1"],
        ),
        (
            &["get", "creg", "-o", "wide"],
            "NAME READY LOCATION VERSION AGE ENDPOINT SCHEDULABLE TAINTS LABELS",
            "edge-1",
            &["edge-1"],
        ),
        (
            &["get", "workloadplacements"],
            "NAME PHASE READY CLUSTERS AGE",
            "web-eu",
            &["web-eu"],
        ),
        (
            &["get", "wp", "-o", "wide"],
            "NAME PHASE READY CLUSTERS AGE LOCATION STRATEGY RESOURCES CLUSTER SELECTOR",
            "web-eu",
            &["web-eu"],
        ),
        (
            &["get", "workspaces"],
            "NAME TYPE REGION PHASE URL AGE",
            "team",
            &["team"],
        ),
    ];
    for (args, header, name, first) in cases {
        let out = tmc.kubectl(args, None);
        let (h, row) = header_and_row(&out, name);
        assert_eq!(&h, header, "{args:?}:\n{out}");
        assert_eq!(&row[..first.len()], *first, "{args:?}:\n{out}");
    }
    // What follows AGE in the wide views.
    let (_, row) = header_and_row(
        &tmc.kubectl(&["get", "deploy", "-n", "tables", "-o", "wide"], None),
        "web",
    );
    assert!(is_age(&row[4]), "{row:?}");
    assert_eq!(row[5..], ["nginx,side", "nginx:1.25,busybox", "app=web"]);
    let (_, row) = header_and_row(
        &tmc.kubectl(&["get", "rolebindings", "-n", "tables", "-o", "wide"], None),
        "reader",
    );
    assert_eq!(row[3..], ["alice,", "bob", "devs", "tables/bot"]);
    let (_, row) = header_and_row(&tmc.kubectl(&["get", "creg", "-o", "wide"], None), "edge-1");
    assert!(matches!(row[1].as_str(), "Unknown" | "False"), "{row:?}");
    assert_eq!(row[2..4], ["eu-west", "<unknown>"]);
    assert_eq!(
        row[5..],
        [
            "https://127.0.0.1:1",
            "true",
            "maintenance=true:NoSchedule",
            "region=eu-west,tier=prod"
        ]
    );
    let (_, row) = header_and_row(&tmc.kubectl(&["get", "wp", "-o", "wide"], None), "web-eu");
    assert_eq!(
        row[5..],
        [
            "root",
            "Spread(2)/region",
            "deployments.apps",
            "region=eu-west"
        ]
    );
    // Roles show when they were made, as kube-apiserver's default printer.
    let (_, row) = header_and_row(
        &tmc.kubectl(&["get", "roles", "-n", "tables"], None),
        "reader",
    );
    assert!(row[1].ends_with('Z') && row[1].contains('T'), "{row:?}");

    // get -w prints event types, and rows as they change.
    let (mut child, lines) = kubectl_lines(
        &kubectl_binary(),
        &tmc.kc,
        &[
            "get",
            "configmaps",
            "-n",
            "tables",
            "-w",
            "--output-watch-events",
        ],
    );
    expect_lines(&lines, &["EVENT NAME DATA AGE", "ADDED settings 3"]);
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: tables}\ndata: {k: v}\n";
    tmc.kubectl(&["apply", "-f", "-"], Some(cm));
    tmc.kubectl(
        &[
            "patch",
            "cm",
            "w",
            "-n",
            "tables",
            "--type=merge",
            "-p",
            r#"{"data":{"k2":"v"}}"#,
        ],
        None,
    );
    tmc.kubectl(&["delete", "cm", "w", "-n", "tables"], None);
    expect_lines(&lines, &["ADDED w 1", "MODIFIED w 2", "DELETED w 2"]);
    child.kill().unwrap();
    let _ = child.wait();

    // Bad Accept headers and includeObject values: clear answers, and the
    // server goes on.
    let cms = "/api/v1/namespaces/tables/configmaps";
    for (accept, query, code) in [
        ("text/html", "", 406),
        ("application/json;as=Table;v=v2;g=meta.k8s.io", "", 406),
        (
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
            "",
            406,
        ),
        (TABLE, "?includeObject=Everything", 400),
        ("application/yaml", "?watch=1", 406),
        ("garbage;;;=,,", "", 406),
    ] {
        let (got, body) = tmc.get(&format!("{cms}{query}"), accept).await;
        assert_eq!(got, code, "{accept} {query}: {body}");
        assert_eq!(body["kind"], "Status", "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // Two Secrets: a page of one.
    let t = tmc
        .table("/api/v1/namespaces/tables/secrets?includeObject=None&limit=1")
        .await;
    assert_eq!(t["rows"][0]["object"], Value::Null, "{t}");
    assert!(
        t["metadata"]["continue"].is_string(),
        "a page keeps its continue token: {t}"
    );
}

/// Columns whose cells are times relative to now.
const TIME_COLUMNS: &[&str] = &[
    "Age",
    "Duration",
    "Last Schedule",
    "Last Seen",
    "First Seen",
];

/// Compares two rows' cells under `columns`, but for `skip` and for time
/// columns, which need only both be ages (or equal).
fn same_cells(what: &str, columns: &Value, a: &Value, b: &Value, skip: &[&str]) {
    let names: Vec<&str> = columns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), names.len(), "{what}: {a:?}");
    assert_eq!(b.len(), names.len(), "{what}: {b:?}");
    for (i, col) in names.iter().enumerate() {
        if skip.contains(col) {
            continue;
        }
        if TIME_COLUMNS.contains(col) && a[i] != b[i] {
            let age = |v: &Value| v.as_str().is_some_and(is_age);
            assert!(
                age(&a[i]) && age(&b[i]),
                "{what} {col}: {} vs {}",
                a[i],
                b[i]
            );
            continue;
        }
        assert_eq!(a[i], b[i], "{what} {col}");
    }
}

fn row<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"]["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {t}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_agree_with_kube_apiserver() {
    let env = TestEnv::start(1);
    let kube = Server {
        name: "kube-apiserver",
        kc: env.kubeconfig(0).to_path_buf(),
        client: env.client(0).await,
    };
    let dir = tempfile::tempdir().unwrap();
    let (_dev, tmc) = tmc_dev(&dir.path().join("tmc")).await;
    for s in [&kube, &tmc] {
        s.kubectl(&["apply", "-f", "-"], Some(BUILTIN));
    }
    kube.kubectl(&["apply", "-f", "-"], Some(KUBE_ONLY));

    // 1. The same objects, as Tables from both servers: the column
    // definitions whole, the cells but for what only a server assigns
    // (cluster IPs, a Job's selector and start) and what kube-apiserver's
    // controllers change (a Deployment's rollout).
    let ns = "/api/v1/namespaces/tables";
    let apps = "/apis/apps/v1/namespaces/tables";
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/tables";
    let cases: &[(String, &str, &[&str])] = &[
        ("/api/v1/namespaces".into(), "tables", &[]),
        (format!("{ns}/configmaps"), "settings", &[]),
        (format!("{ns}/secrets"), "creds", &[]),
        (format!("{ns}/secrets"), "cert", &[]),
        (format!("{ns}/services"), "web", &["Cluster-IP"]),
        (format!("{ns}/services"), "db", &[]),
        (format!("{ns}/serviceaccounts"), "bot", &[]),
        (
            format!("{apps}/deployments"),
            "web",
            &["Up-to-date", "Available"],
        ),
        (format!("{apps}/statefulsets"), "db", &[]),
        (format!("{apps}/daemonsets"), "agent", &[]),
        (
            "/apis/batch/v1/namespaces/tables/jobs".into(),
            "once",
            &["Duration", "Selector"],
        ),
        (format!("{rbac}/roles"), "reader", &["Created At"]),
        (format!("{rbac}/rolebindings"), "reader", &[]),
    ];
    for (path, name, skip) in cases {
        let (k, t) = (kube.table(path).await, tmc.table(path).await);
        assert_eq!(t["columnDefinitions"], k["columnDefinitions"], "{path}");
        let (kr, tr) = (row(&k, name), row(&t, name));
        same_cells(
            &format!("{path} {name}"),
            &k["columnDefinitions"],
            &tr["cells"],
            &kr["cells"],
            skip,
        );
        assert_eq!(tr["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(kr["object"]["kind"], "PartialObjectMetadata");
        // One object is a Table of one row.
        let (one, t1) = (
            format!("{path}/{name}"),
            tmc.table(&format!("{path}/{name}")).await,
        );
        assert_eq!(t1["rows"].as_array().map(Vec::len), Some(1), "{one}: {t1}");
        assert_eq!(t1["rows"][0]["cells"][0], *name);
    }

    // 2. tmc's printers on kube-apiserver's own objects (every row of
    // every table, with includeObject=Object), for the kinds tmc serves
    // and for those being added: same columns, same cells.
    let kinds: &[(&str, &str, &str)] = &[
        ("/api/v1/namespaces", "", "Namespace"),
        ("/api/v1/namespaces/tables/configmaps", "", "ConfigMap"),
        ("/api/v1/namespaces/tables/secrets", "", "Secret"),
        ("/api/v1/namespaces/tables/services", "", "Service"),
        ("/api/v1/namespaces/default/services", "", "Service"),
        (
            "/api/v1/namespaces/tables/serviceaccounts",
            "",
            "ServiceAccount",
        ),
        (
            "/apis/apps/v1/namespaces/tables/deployments",
            "apps",
            "Deployment",
        ),
        (
            "/apis/apps/v1/namespaces/tables/statefulsets",
            "apps",
            "StatefulSet",
        ),
        (
            "/apis/apps/v1/namespaces/tables/daemonsets",
            "apps",
            "DaemonSet",
        ),
        (
            "/apis/apps/v1/namespaces/tables/replicasets",
            "apps",
            "ReplicaSet",
        ),
        ("/apis/batch/v1/namespaces/tables/jobs", "batch", "Job"),
        (
            "/apis/batch/v1/namespaces/tables/cronjobs",
            "batch",
            "CronJob",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/tables/roles",
            "rbac.authorization.k8s.io",
            "Role",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/tables/rolebindings",
            "rbac.authorization.k8s.io",
            "RoleBinding",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "rbac.authorization.k8s.io",
            "ClusterRole",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/tables/ingresses",
            "networking.k8s.io",
            "Ingress",
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/tables/networkpolicies",
            "networking.k8s.io",
            "NetworkPolicy",
        ),
        (
            "/api/v1/namespaces/tables/persistentvolumeclaims",
            "",
            "PersistentVolumeClaim",
        ),
        (
            "/apis/policy/v1/namespaces/tables/poddisruptionbudgets",
            "policy",
            "PodDisruptionBudget",
        ),
        (
            "/apis/autoscaling/v2/namespaces/tables/horizontalpodautoscalers",
            "autoscaling",
            "HorizontalPodAutoscaler",
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/tables/leases",
            "coordination.k8s.io",
            "Lease",
        ),
        ("/api/v1/namespaces/tables/events", "", "Event"),
        (
            "/apis/events.k8s.io/v1/namespaces/tables/events",
            "events.k8s.io",
            "Event",
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/tables/endpointslices",
            "discovery.k8s.io",
            "EndpointSlice",
        ),
        (
            "/api/v1/namespaces/tables/resourcequotas",
            "",
            "ResourceQuota",
        ),
        ("/api/v1/namespaces/tables/limitranges", "", "LimitRange"),
    ];
    // Give kube-controller-manager a moment to fill in statuses (quota
    // usage, the ReplicaSet, events) so that the printers see them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rows_checked = 0;
    for (path, group, kind) in kinds {
        let k = kube.table(&format!("{path}?includeObject=Object")).await;
        let conv = tmc::api::table::for_kind(group, kind);
        let ours = serde_json::to_value(conv.column_definitions()).unwrap();
        assert_eq!(ours, k["columnDefinitions"], "{group}/{kind}");
        let rows = k["rows"].as_array().cloned().unwrap_or_default();
        assert!(!rows.is_empty(), "{path}: no rows to compare");
        for r in rows {
            let cells = Value::Array(conv.cells(&r["object"], chrono::Utc::now()));
            let what = format!("{kind} {}", r["object"]["metadata"]["name"]);
            same_cells(&what, &k["columnDefinitions"], &cells, &r["cells"], &[]);
            rows_checked += 1;
        }
    }
    assert!(rows_checked > 50, "{rows_checked}");

    // 3. Watches as Tables: column definitions in the first event only,
    // the same rows.
    let cms = format!("{ns}/configmaps");
    let mut streams = Vec::new();
    for s in [&kube, &tmc] {
        let (_, list) = s.get(&cms, "application/json").await;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let kc = s.kc.clone();
        let events = s
            .watch_tables(&cms, &rv, 3, move || {
                let k = |args: &[&str], stdin: Option<&str>| {
                    let (ok, out, err) = kubectl_with(&kubectl_binary(), &kc, args, stdin);
                    assert!(ok, "{args:?}: {err}{out}");
                };
                let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: tables}\ndata: {k: v}\n";
                k(&["apply", "-f", "-"], Some(cm));
                k(&["patch", "cm", "w", "-n", "tables", "--type=merge", "-p", r#"{"data":{"k2":"v"}}"#], None);
                k(&["delete", "cm", "w", "-n", "tables"], None);
            })
            .await;
        streams.push(events);
    }
    let (k, t) = (&streams[0], &streams[1]);
    for i in 0..3 {
        assert_eq!(t[i]["type"], k[i]["type"], "event {i}");
        assert_eq!(t[i]["object"]["kind"], "Table");
        assert_eq!(
            t[i]["object"]["columnDefinitions"], k[i]["object"]["columnDefinitions"],
            "event {i}"
        );
        let (tr, kr) = (&t[i]["object"]["rows"], &k[i]["object"]["rows"]);
        assert_eq!(tr.as_array().map(Vec::len), Some(1));
        same_cells(
            "watch",
            &k[0]["object"]["columnDefinitions"],
            &tr[0]["cells"],
            &kr[0]["cells"],
            &[],
        );
        assert_eq!(tr[0]["object"]["kind"], kr[0]["object"]["kind"]);
    }
    assert!(k[0]["object"]["columnDefinitions"].is_array());
    assert_eq!(k[1]["object"]["columnDefinitions"], Value::Null);
    let types: Vec<&str> = t.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);

    // 4. What cannot be served: the same status, reason and message.
    let one = format!("{ns}/configmaps/settings");
    let watch = format!("{ns}/configmaps?watch=1&timeoutSeconds=1");
    let cases: &[(&str, &str)] = &[
        (&one, "text/html"),
        (&cms, "text/html"),
        (&cms, "application/*;as=Table;v=v1;g=meta.k8s.io"),
        (&cms, "application/json;as=Table;v=v2;g=meta.k8s.io"),
        (&cms, "application/json;as=Table;g=meta.k8s.io"),
        (
            &cms,
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
        ),
        (&cms, "application/json;as=Foo;v=v1;g=meta.k8s.io"),
        (
            &cms,
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        ),
        (
            &one,
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        ),
        (&watch, "text/html"),
        (&watch, "application/yaml"),
        (&watch, "application/yaml;as=Table;v=v1;g=meta.k8s.io"),
        (&format!("{cms}?includeObject=Bogus"), TABLE),
        (&format!("{one}?includeObject=Bogus"), TABLE),
        (
            &format!("{ns}/configmaps/missing?includeObject=Bogus"),
            TABLE,
        ),
    ];
    for (path, accept) in cases {
        let ((kc, kb), (tc, tb)) = (kube.get(path, accept).await, tmc.get(path, accept).await);
        assert!(kc >= 400, "{path} {accept}: kube-apiserver answered {kc}");
        assert_eq!(tc, kc, "{path} {accept}: {tb} vs {kb}");
        if let Value::String(yaml) = &kb {
            // kube-apiserver answered the YAML it was asked for (tmc
            // answers JSON): compare the words.
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let (reason, message) = (
                tb["reason"].as_str().unwrap(),
                tb["message"].as_str().unwrap(),
            );
            assert!(words(yaml).contains(&format!("reason: {reason}")), "{yaml}");
            assert!(words(yaml).contains(&words(message)), "{yaml} vs {message}");
            continue;
        }
        assert_eq!(tb["reason"], kb["reason"], "{path} {accept}");
        assert_eq!(tb["message"], kb["message"], "{path} {accept}");
    }
    // Metadata only, as the metadata clients (garbage collectors) ask.
    let accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
    let ((_, kl), (_, tl)) = (kube.get(&cms, accept).await, tmc.get(&cms, accept).await);
    assert_eq!(tl["kind"], kl["kind"]);
    assert_eq!(tl["apiVersion"], kl["apiVersion"]);
    assert!(
        tl["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == "settings"),
        "{tl}"
    );
}
