//! Printers and Tables on objects as kube-apiserver stores them.

use super::*;
use crate::api::resources;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Created five minutes before [`now`].
const CREATED: &str = "2026-03-01T11:55:00Z";

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": CREATED, "resourceVersion": "7",
           "annotations": {"kcp.io/cluster": "root:team"}})
}

fn cells(group: &str, kind: &str, obj: Value) -> Vec<Value> {
    for_kind(group, kind).cells(&obj, now())
}

fn names(group: &str, kind: &str) -> Vec<(String, i64)> {
    for_kind(group, kind)
        .column_definitions()
        .iter()
        .map(|c| (c.name.to_string(), c.priority))
        .collect()
}

#[test]
fn deployments_show_ready_up_to_date_available() {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
    assert_eq!(
        cells("apps", "Deployment", d.clone()),
        vec![
            json!("web"),
            json!("1/1"),
            json!(2),
            json!(1),
            json!("5m"),
            json!("nginx,side"),
            json!("nginx:1.25,busybox"),
            json!("app=web")
        ]
    );
    let mut three = d;
    three["spec"]["replicas"] = json!(3);
    assert_eq!(cells("apps", "Deployment", three)[1], json!("1/3"));
    assert_eq!(
        names("apps", "Deployment"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
}

#[test]
fn services_show_type_ips_and_ports() {
    let svc = json!({"metadata": meta("web"), "spec": {"selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}, {"port": 443, "nodePort": 30443}]}});
    assert_eq!(
        cells("", "Service", svc),
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("<none>"),
            json!("<none>"),
            json!("80/TCP,53/UDP,443:30443/TCP"),
            json!("5m"),
            json!("app=web")
        ]
    );
    let lb = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.7"], "ports": []},
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}, {"ip": "1.2.3.4"}]}}});
    let c = cells("", "Service", lb);
    assert_eq!(
        c[2..5],
        [
            json!("10.0.0.7"),
            json!("1.2.3.4,5.6.7.8,lb.example"),
            json!("<none>")
        ]
    );
    assert_eq!(c[6], json!("<none>"));
    let pending = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer"}});
    assert_eq!(cells("", "Service", pending)[3], json!("<pending>"));
    let ext = json!({"metadata": meta("x"), "spec": {"type": "ExternalName", "externalName": "db.example", "clusterIP": "None"}});
    assert_eq!(
        cells("", "Service", ext)[2..4],
        [json!("None"), json!("db.example")]
    );
}

#[test]
fn jobs_show_status_completions_and_duration() {
    let job = |spec: Value, status: Value| {
        cells(
            "batch",
            "Job",
            json!({"metadata": meta("j"), "spec": spec, "status": status}),
        )
    };
    let running = job(
        json!({}),
        json!({"startTime": "2026-03-01T11:58:00Z", "succeeded": 0}),
    );
    assert_eq!(running[1..4], [json!("Running"), json!("0/1"), json!("2m")]);
    let done = job(
        json!({"completions": 3}),
        json!({"startTime": "2026-03-01T11:56:00Z", "completionTime": "2026-03-01T11:56:45Z", "succeeded": 3,
               "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
    );
    assert_eq!(done[1..4], [json!("Complete"), json!("3/3"), json!("45s")]);
    let parallel = job(json!({"parallelism": 4}), json!({}));
    assert_eq!(
        parallel[1..4],
        [json!("Running"), json!("0/1 of 4"), json!("")]
    );
    let failed = job(
        json!({}),
        json!({"conditions": [{"type": "Failed", "status": "True"}]}),
    );
    assert_eq!(failed[1], json!("Failed"));
    let suspended = job(
        json!({}),
        json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
    );
    assert_eq!(suspended[1], json!("Suspended"));
    let mut m = meta("j");
    m["deletionTimestamp"] = json!(CREATED);
    let terminating = cells("batch", "Job", json!({"metadata": m}));
    assert_eq!(terminating[1], json!("Terminating"));
    assert_eq!(terminating[7], json!("<none>"));
}

#[test]
fn core_kinds_show_their_counts() {
    let ns = json!({"metadata": meta("app"), "status": {"phase": "Active"}});
    assert_eq!(
        cells("", "Namespace", ns),
        vec![json!("app"), json!("Active"), json!("5m")]
    );
    let cm =
        json!({"metadata": meta("c"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(
        cells("", "ConfigMap", cm),
        vec![json!("c"), json!(3), json!("5m")]
    );
    let secret = json!({"metadata": meta("s"), "data": {"u": "eA=="}});
    assert_eq!(
        cells("", "Secret", secret),
        vec![json!("s"), json!("Opaque"), json!(1), json!("5m")]
    );
    let tls = json!({"metadata": meta("t"), "type": "kubernetes.io/tls"});
    assert_eq!(
        cells("", "Secret", tls)[1..3],
        [json!("kubernetes.io/tls"), json!(0)]
    );
    let sa = json!({"metadata": meta("bot"), "secrets": [{"name": "x"}]});
    assert_eq!(
        cells("", "ServiceAccount", sa),
        vec![json!("bot"), json!(1), json!("5m")]
    );
}

#[test]
fn rbac_kinds_print_as_kube_apiserver_does() {
    let rb = json!({"metadata": meta("r"), "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}]});
    let want = vec![
        json!("r"),
        json!("ClusterRole/view"),
        json!("5m"),
        json!("alice, bob"),
        json!("devs"),
        json!("ci/bot"),
    ];
    assert_eq!(
        cells("rbac.authorization.k8s.io", "RoleBinding", rb.clone()),
        want
    );
    assert_eq!(
        cells("rbac.authorization.k8s.io", "ClusterRoleBinding", rb),
        want
    );
    // Roles have no printer in kube-apiserver: its default convertor.
    let role = json!({"metadata": meta("reader")});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "Role", role),
        vec![json!("reader"), json!("2026-03-01T11:55:00Z")]
    );
    assert_eq!(
        names("rbac.authorization.k8s.io", "ClusterRole"),
        vec![("Name".to_string(), 0), ("Created At".to_string(), 0)]
    );
}

#[test]
fn workloads_and_the_kinds_being_added() {
    let sts = json!({"metadata": meta("db"), "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres"}]}}},
                     "status": {"readyReplicas": 2}});
    assert_eq!(
        cells("apps", "StatefulSet", sts),
        vec![
            json!("db"),
            json!("2/3"),
            json!("5m"),
            json!("pg"),
            json!("postgres")
        ]
    );
    let ds = json!({"metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "image": "agent"}]}}},
        "status": {"desiredNumberScheduled": 3, "numberReady": 2}});
    assert_eq!(
        cells("apps", "DaemonSet", ds),
        vec![
            json!("agent"),
            json!(3),
            json!(0),
            json!(2),
            json!(0),
            json!(0),
            json!("disk=ssd"),
            json!("5m"),
            json!("a"),
            json!("agent"),
            json!("app=agent")
        ]
    );
    let rs = json!({"metadata": meta("web-1"), "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        cells("apps", "ReplicaSet", rs)[1..4],
        [json!(2), json!(2), json!(1)]
    );
    let cj = json!({"metadata": meta("nightly"), "spec": {"schedule": "0 3 * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "backup"}]}}}}},
        "status": {"active": [{"name": "x"}], "lastScheduleTime": "2026-03-01T11:00:00Z"}});
    assert_eq!(
        cells("batch", "CronJob", cj),
        vec![
            json!("nightly"),
            json!("0 3 * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("60m"),
            json!("5m"),
            json!("b"),
            json!("backup"),
            json!("<none>")
        ]
    );
    let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx", "tls": [{}],
        "rules": [{"host": "a.example"}, {"host": "b.example"}, {}, {"host": "d.example"}, {"host": "e.example"}]}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", ing)[1..5],
        [
            json!("nginx"),
            json!("a.example,b.example,d.example + 2 more..."),
            json!(""),
            json!("80, 443")
        ]
    );
    let pvc = json!({"metadata": meta("data"), "spec": {"storageClassName": "fast", "volumeName": "pv-1"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", pvc),
        vec![
            json!("data"),
            json!("Bound"),
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO,RWX"),
            json!("fast"),
            json!("<unset>"),
            json!("5m"),
            json!("Filesystem")
        ]
    );
    let pdb = json!({"metadata": meta("p"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells("policy", "PodDisruptionBudget", pdb)[1..4],
        [json!("50%"), json!("N/A"), json!(1)]
    );
    let hpa = json!({"metadata": meta("h"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "Pods", "pods": {"target": {"averageValue": "100"}}},
                    {"type": "External", "external": {"target": {"value": "3"}}}]},
        "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35}}}]}});
    assert_eq!(
        cells("autoscaling", "HorizontalPodAutoscaler", hpa),
        vec![
            json!("h"),
            json!("Deployment/web"),
            json!("cpu: 35%/70%, <unknown>/100 + 1 more..."),
            json!("1"),
            json!(5),
            json!(2),
            json!("5m")
        ]
    );
    let v1 = json!({"metadata": meta("h1"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 4}});
    assert_eq!(
        cells("autoscaling", "HorizontalPodAutoscaler", v1)[2..4],
        [json!("cpu: <unknown>/80%"), json!("2")]
    );
    let np = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
    assert_eq!(
        cells("networking.k8s.io", "NetworkPolicy", np)[1],
        json!("<none>")
    );
    let lease = json!({"metadata": meta("l"), "spec": {"holderIdentity": "me"}});
    assert_eq!(cells("coordination.k8s.io", "Lease", lease)[1], json!("me"));
    let slice = json!({"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 80}, {"name": "https"}],
        "endpoints": [{"addresses": ["10.1.0.1", "10.1.0.2"]}, {"addresses": ["10.1.0.3", "10.1.0.4"]}]});
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", slice)[1..4],
        [
            json!("IPv4"),
            json!("80,https"),
            json!("10.1.0.1,10.1.0.2,10.1.0.3 + 1 more...")
        ]
    );
    let quota = json!({"metadata": meta("q"), "status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2"},
        "used": {"pods": "3", "requests.cpu": "500m"}}});
    assert_eq!(
        cells("", "ResourceQuota", quota)[1..3],
        [
            json!("pods: 3/10, requests.cpu: 500m/2"),
            json!("limits.cpu: 0/4")
        ]
    );
    let ev = json!({"metadata": meta("web.1"), "type": "Warning", "reason": "BackOff", "message": " restarting \n",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
        "source": {"component": "kubelet", "host": "node-1"}, "count": 4,
        "firstTimestamp": "2026-03-01T11:00:00Z", "lastTimestamp": "2026-03-01T11:59:00Z"});
    assert_eq!(
        cells("", "Event", ev),
        vec![
            json!("60s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{nginx}"),
            json!("kubelet, node-1"),
            json!("restarting"),
            json!("60m"),
            json!(4),
            json!("web.1")
        ]
    );
    let new_ev = json!({"metadata": meta("e"), "type": "Normal", "reason": "Synced", "note": "ok",
        "regarding": {"kind": "Deployment", "name": "web"}, "reportingController": "tmc",
        "eventTime": "2026-03-01T11:59:30.000000Z"});
    assert_eq!(
        cells("events.k8s.io", "Event", new_ev),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Synced"),
            json!("deployment/web"),
            json!(""),
            json!("tmc"),
            json!("ok"),
            json!("30s"),
            json!(1),
            json!("e")
        ]
    );
}

#[test]
fn tmc_kinds_show_readiness_location_and_choices() {
    let cr = json!({"metadata": {"name": "eu-1", "creationTimestamp": CREATED, "labels": {"region": "eu-west", "tier": "prod"}},
        "spec": {"apiEndpoint": "https://10.0.0.1:6443", "location": "eu-west", "unschedulable": true,
                 "taints": [{"key": "maintenance", "value": "true", "effect": "NoSchedule"}, {"key": "gpu", "effect": "NoExecute"}]},
        "status": {"conditions": [{"type": "HeartbeatHealthy", "status": "False"}, {"type": "Ready", "status": "True"}],
                   "kubernetesVersion": "v1.34.4"}});
    assert_eq!(
        cells(resources::TMC_GROUP, "ClusterRegistration", cr),
        vec![
            json!("eu-1"),
            json!("True"),
            json!("eu-west"),
            json!("v1.34.4"),
            json!("5m"),
            json!("https://10.0.0.1:6443"),
            json!("false"),
            json!("maintenance=true:NoSchedule,gpu:NoExecute"),
            json!("region=eu-west,tier=prod")
        ]
    );
    let new = json!({"metadata": {"name": "new"}, "spec": {"apiEndpoint": "https://x"}});
    assert_eq!(
        cells(resources::TMC_GROUP, "ClusterRegistration", new)[1..4],
        [json!("Unknown"), json!("<none>"), json!("<unknown>")]
    );
    let wp = json!({"metadata": meta("web-eu"), "spec": crate::types::example_placement_spec(),
        "status": {"phase": "Bound", "selectedClusters": [{"workspace": "root:compute", "name": "eu-1"}, {"workspace": "root:compute", "name": "eu-2"}],
                   "conditions": [{"type": "Ready", "status": "True"}]}});
    assert_eq!(
        cells(resources::TMC_GROUP, "WorkloadPlacement", wp),
        vec![
            json!("web-eu"),
            json!("Bound"),
            json!("True"),
            json!("eu-1,eu-2"),
            json!("5m"),
            json!("root:compute"),
            json!("Spread(2)/region"),
            json!("deployments.apps"),
            json!("region=eu-west")
        ]
    );
    let pending = json!({"metadata": meta("p"), "spec": {"strategy": {"type": "All"}}});
    assert_eq!(
        cells(resources::TMC_GROUP, "WorkloadPlacement", pending)[1..9],
        [
            json!("Pending"),
            json!("Unknown"),
            json!("<none>"),
            json!("5m"),
            json!("root:team"),
            json!("All"),
            json!("<all syncable>"),
            json!("<none>")
        ]
    );
}

#[test]
fn kcp_kinds_use_their_crds_printer_columns() {
    let ws = json!({"metadata": {"name": "team", "creationTimestamp": CREATED, "labels": {"region": "eu"}},
        "spec": {"type": {"name": "universal", "path": "root"}, "URL": "https://h/clusters/root:team"},
        "status": {"phase": "Ready"}});
    assert_eq!(
        cells(resources::TENANCY_GROUP, "Workspace", ws),
        vec![
            json!("team"),
            json!("universal"),
            json!("eu"),
            json!("Ready"),
            json!("https://h/clusters/root:team"),
            json!("5m")
        ]
    );
    let cols = for_kind(resources::TENANCY_GROUP, "Workspace").column_definitions();
    assert_eq!(cols[5].type_, "date");
    assert_eq!(
        cols[5].description,
        "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"
    );
    // A missing value is a null cell (kubectl prints <none>).
    let bare = json!({"metadata": {"name": "b"}});
    assert_eq!(
        cells(resources::TENANCY_GROUP, "Workspace", bare),
        vec![
            json!("b"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null
        ]
    );
}

/// Every served kind, and every kind with a printer, has one cell per
/// column, for a full object and for an empty one (a watch bookmark).
#[test]
fn every_printer_has_a_cell_per_column() {
    let extra = [
        ("apps", "ReplicaSet"),
        ("batch", "CronJob"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("", "PersistentVolumeClaim"),
        ("policy", "PodDisruptionBudget"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("coordination.k8s.io", "Lease"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("example.com", "Widget"),
    ];
    let kinds = resources::RESOURCES
        .iter()
        .map(|r| (r.group, r.kind))
        .chain(extra);
    for (group, kind) in kinds {
        let conv = for_kind(group, kind);
        let n = conv.column_definitions().len();
        assert!(
            matches!(conv.column_definitions()[0].format.as_ref(), "name" | ""),
            "{kind}"
        );
        for obj in [
            json!({}),
            json!({"metadata": meta("x"), "spec": {}, "status": {}}),
            json!(null),
        ] {
            assert_eq!(conv.cells(&obj, now()).len(), n, "{group}/{kind} {obj}");
        }
    }
    // The kcp kinds' paths all parse (a bad one would silently drop columns).
    for kind in ["Workspace", "LogicalCluster", "Shard"] {
        let group = if kind == "Workspace" {
            resources::TENANCY_GROUP
        } else {
            resources::CORE_KCP_GROUP
        };
        assert!(
            for_kind(group, kind).column_definitions().len() >= 3,
            "{kind}"
        );
    }
    assert_eq!(
        names("example.com", "Widget"),
        vec![("Name".to_string(), 0), ("Age".to_string(), 0)]
    );
}

#[test]
fn crd_printer_columns_type_their_cells() {
    let conv = Convertor::from_crd(&json!([
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
        {"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "ready?"},
        {"name": "Spec", "type": "string", "jsonPath": ".spec.nested"},
        {"name": "Seen", "type": "date", "jsonPath": ".status.seen"},
        {"name": "Wrong", "type": "integer", "jsonPath": ".spec.enabled"}
    ]))
    .unwrap();
    let obj = json!({"metadata": {"name": "w"}, "spec": {"replicas": 3, "ratio": 0.5, "enabled": true, "nested": {"a": 1}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "seen": "2026-03-01T11:00:00Z"}});
    assert_eq!(
        conv.cells(&obj, now()),
        vec![
            json!("w"),
            json!(3),
            json!(0.5),
            json!(true),
            json!("True"),
            json!("map[a:1]"),
            json!("60m"),
            Value::Null
        ]
    );
    let cols = conv.column_definitions();
    assert_eq!((cols[2].name.as_ref(), cols[2].priority), ("Ratio", 1));
    assert_eq!(cols[4].description, "ready?");
    let bad = json!({"metadata": {"name": "w"}, "status": {"seen": "last tuesday"}});
    assert_eq!(conv.cells(&bad, now())[6], json!("<invalid>"));
    assert!(
        Convertor::from_crd(&json!([{"name": "X", "type": "string", "jsonPath": ".a[1:2]"}]))
            .is_err()
    );
    assert!(Convertor::from_crd(&json!({"not": "a list"})).is_err());
}

fn configmaps() -> &'static ResourceInfo {
    resources::lookup("", "v1", "configmaps").unwrap()
}

fn list() -> Value {
    json!({"kind": "ConfigMapList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3},
        "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("a"), "data": {"k": "v"}},
                  {"metadata": meta("b")}]})
}

#[test]
fn lists_become_tables_with_their_metadata() {
    let t = render(
        Output::Table(MetaVersion::V1),
        configmaps(),
        Read::List,
        list(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3})
    );
    assert_eq!(
        t["columnDefinitions"][1],
        json!({"name": "Data", "type": "string", "format": "",
        "description": "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
        "priority": 0})
    );
    assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "5m"]));
    assert_eq!(t["rows"][1]["cells"], json!(["b", 0, "5m"]));
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("a")})
    );

    let full = render(
        Output::Table(MetaVersion::V1Beta1),
        configmaps(),
        Read::List,
        list(),
        Some("Object"),
        now(),
    )
    .unwrap();
    assert_eq!(full["apiVersion"], "meta.k8s.io/v1beta1");
    // The object gets its kind and apiVersion.
    assert_eq!(
        full["rows"][1]["object"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("b")})
    );
    let none = render(
        Output::Table(MetaVersion::V1),
        configmaps(),
        Read::List,
        list(),
        Some("None"),
        now(),
    )
    .unwrap();
    assert_eq!(none["rows"][0]["object"], Value::Null);
    let e = render(
        Output::Table(MetaVersion::V1),
        configmaps(),
        Read::List,
        list(),
        Some("All"),
        now(),
    )
    .unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(e.message, "Unable to convert to Table as requested: includeObject: Invalid value: \"All\": must be 'Metadata', 'Object', 'None', or empty");

    let empty = json!({"metadata": {"resourceVersion": "5"}, "items": []});
    let t = render(
        Output::Table(MetaVersion::V1),
        configmaps(),
        Read::List,
        empty.clone(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(t["rows"], json!([]));
    let roles = resources::lookup("rbac.authorization.k8s.io", "v1", "roles").unwrap();
    let t = render(
        Output::Table(MetaVersion::V1),
        roles,
        Read::List,
        empty,
        None,
        now(),
    )
    .unwrap();
    assert_eq!(t["rows"], Value::Null);
}

#[test]
fn one_object_and_partial_metadata() {
    let obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("a"), "data": {"k": "v"}});
    let t = render(
        Output::Table(MetaVersion::V1),
        configmaps(),
        Read::Get,
        obj.clone(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(t["metadata"], json!({"resourceVersion": "7"}));
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    let p = render(
        Output::Partial(MetaVersion::V1),
        configmaps(),
        Read::Get,
        obj.clone(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(
        p,
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("a")})
    );
    let e = render(
        Output::Partial(MetaVersion::V1),
        configmaps(),
        Read::List,
        list(),
        None,
        now(),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (406, "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)"));
    let e = render(
        Output::PartialList(MetaVersion::V1),
        configmaps(),
        Read::Get,
        obj.clone(),
        None,
        now(),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (406, "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)"));
    let l = render(
        Output::PartialList(MetaVersion::V1Beta1),
        configmaps(),
        Read::List,
        list(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert_eq!(l["metadata"]["continue"], "tok");
    assert_eq!(l["items"][1]["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(
        render(
            Output::Object,
            configmaps(),
            Read::Get,
            obj.clone(),
            Some("junk"),
            now()
        )
        .unwrap(),
        obj
    );
}

fn line(v: Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(&v).unwrap();
    l.push(b'\n');
    l
}

fn decode(l: &[u8]) -> Value {
    assert_eq!(l.last(), Some(&b'\n'));
    serde_json::from_slice(l).unwrap()
}

#[test]
fn watches_send_column_definitions_once() {
    let mut enc = WatchEncoder::new(Output::Table(MetaVersion::V1), configmaps(), None).unwrap();
    assert!(!enc.is_identity());
    let added = line(
        json!({"type": "ADDED", "object": {"kind": "ConfigMap", "metadata": meta("a"), "data": {"x": "1"}}}),
    );
    let first = decode(&enc.encode(added.clone(), now()));
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["metadata"], json!({"resourceVersion": "7"}));
    assert_eq!(
        first["object"]["columnDefinitions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(first["object"]["rows"][0]["cells"], json!(["a", 1, "5m"]));
    let second = decode(&enc.encode(added, now()));
    assert_eq!(second["object"]["columnDefinitions"], Value::Null);
    assert_eq!(second["object"]["rows"][0]["cells"], json!(["a", 1, "5m"]));
    // A bookmark is a row of an empty object; one ending the initial
    // events keeps PartialObjectMetadata even when objects are asked for.
    let mut full =
        WatchEncoder::new(Output::Table(MetaVersion::V1), configmaps(), Some("Object")).unwrap();
    let end = line(
        json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}}}),
    );
    let b = decode(&full.encode(end, now()));
    assert_eq!(b["object"]["rows"][0]["cells"], json!(["", 0, "<unknown>"]));
    assert_eq!(
        b["object"]["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
    // ERROR events keep their Status.
    let status = json!({"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired"});
    let err = decode(&full.encode(
        line(json!({"type": "ERROR", "object": status.clone()})),
        now(),
    ));
    assert_eq!(err["object"], status);
    let e = WatchEncoder::new(Output::Table(MetaVersion::V1), configmaps(), Some("x"))
        .err()
        .unwrap();
    assert_eq!(e.code, 400);
    // Metadata-only watches; plain ones pass through untouched.
    let mut meta_only =
        WatchEncoder::new(Output::Partial(MetaVersion::V1), configmaps(), None).unwrap();
    let m = decode(&meta_only.encode(
        line(json!({"type": "DELETED", "object": {"kind": "ConfigMap", "metadata": meta("a")}})),
        now(),
    ));
    assert_eq!(
        m["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("a")})
    );
    let mut plain = WatchEncoder::new(Output::Object, configmaps(), Some("x")).unwrap();
    assert!(plain.is_identity());
    assert_eq!(plain.encode(b"not json\n".to_vec(), now()), b"not json\n");
}
