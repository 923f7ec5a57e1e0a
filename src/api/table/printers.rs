//! The printers: kube-apiserver's columns and cells for the built-in
//! kinds (k8s.io/kubernetes v1.34 `pkg/printers/internalversion`; the
//! column definitions, descriptions included, are the ones its
//! kube-apiserver sends, which `tests/table.rs` checks), tmc's own kinds,
//! and kcp's kinds with the printer columns of kcp's CRDs.
//!
//! tmc stores built-in kinds as sent, without kube's defaulting, so a
//! printer applies the defaults a cell depends on (a Deployment's
//! `replicas` 1, a Service's type `ClusterIP` and protocol `TCP`, a
//! Secret's type `Opaque`, a Job's completions, a PVC's phase `Pending`
//! and volume mode `Filesystem`, an HPA's `minReplicas` 1 and CPU target
//! 80%, a CronJob's `suspend` false).
//!
//! Adding a kind: its columns (a `const` slice), one function from the
//! object to its cells, and a line in [`for_kind`].

use super::cells::{
    age, at, condition, condition_true, containers, count, format_label_selector, format_labels,
    int, items, list_with_more, name, opt_int, selector_string, since, text, time,
};
use super::{Column, Convertor, PrinterColumn};
use crate::api::resources::{CORE_KCP_GROUP, TENANCY_GROUP, TMC_GROUP};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::LazyLock;

type Now = DateTime<Utc>;

/// `metav1.ObjectMeta`'s description of `name`.
pub const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
/// `metav1.ObjectMeta`'s description of `creationTimestamp`.
pub const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

const fn name_col() -> Column {
    Column::new("Name", "string", "name", 0, NAME_DESC)
}

const fn age_col() -> Column {
    Column::new("Age", "string", "", 0, AGE_DESC)
}

/// The printer of `group`/`kind`; kinds without one print as custom
/// resources without printer columns do (NAME, AGE).
pub fn for_kind(group: &str, kind: &str) -> &'static Convertor {
    static NAMESPACE: Convertor = Convertor::printer(NAMESPACE_COLUMNS, namespace);
    static CONFIG_MAP: Convertor = Convertor::printer(CONFIG_MAP_COLUMNS, config_map);
    static SECRET: Convertor = Convertor::printer(SECRET_COLUMNS, secret);
    static SERVICE: Convertor = Convertor::printer(SERVICE_COLUMNS, service);
    static SERVICE_ACCOUNT: Convertor =
        Convertor::printer(SERVICE_ACCOUNT_COLUMNS, service_account);
    static DEPLOYMENT: Convertor = Convertor::printer(DEPLOYMENT_COLUMNS, deployment);
    static STATEFUL_SET: Convertor = Convertor::printer(STATEFUL_SET_COLUMNS, stateful_set);
    static DAEMON_SET: Convertor = Convertor::printer(DAEMON_SET_COLUMNS, daemon_set);
    static REPLICA_SET: Convertor = Convertor::printer(REPLICA_SET_COLUMNS, replica_set);
    static JOB: Convertor = Convertor::printer(JOB_COLUMNS, job);
    static CRON_JOB: Convertor = Convertor::printer(CRON_JOB_COLUMNS, cron_job);
    static ROLE_BINDING: Convertor = Convertor::printer(ROLE_BINDING_COLUMNS, role_binding);
    static CLUSTER_ROLE_BINDING: Convertor =
        Convertor::printer(CLUSTER_ROLE_BINDING_COLUMNS, role_binding);
    static INGRESS: Convertor = Convertor::printer(INGRESS_COLUMNS, ingress);
    static NETWORK_POLICY: Convertor = Convertor::printer(NETWORK_POLICY_COLUMNS, network_policy);
    static PVC: Convertor = Convertor::printer(PVC_COLUMNS, pvc);
    static PDB: Convertor = Convertor::printer(PDB_COLUMNS, pdb);
    static HPA: Convertor = Convertor::printer(HPA_COLUMNS, hpa);
    static LEASE: Convertor = Convertor::printer(LEASE_COLUMNS, lease);
    static EVENT: Convertor = Convertor::printer(EVENT_COLUMNS, core_event);
    static EVENTS_EVENT: Convertor = Convertor::printer(EVENT_COLUMNS, events_event);
    static ENDPOINT_SLICE: Convertor = Convertor::printer(ENDPOINT_SLICE_COLUMNS, endpoint_slice);
    static RESOURCE_QUOTA: Convertor = Convertor::printer(RESOURCE_QUOTA_COLUMNS, resource_quota);
    static CLUSTER_REGISTRATION: Convertor =
        Convertor::printer(CLUSTER_REGISTRATION_COLUMNS, cluster_registration);
    static WORKLOAD_PLACEMENT: Convertor =
        Convertor::printer(WORKLOAD_PLACEMENT_COLUMNS, workload_placement);
    static CREATED_AT: Convertor = Convertor::CreatedAt;
    match (group, kind) {
        ("", "Namespace") => &NAMESPACE,
        ("", "ConfigMap") => &CONFIG_MAP,
        ("", "Secret") => &SECRET,
        ("", "Service") => &SERVICE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "PersistentVolumeClaim") => &PVC,
        ("", "Event") => &EVENT,
        ("", "ResourceQuota") => &RESOURCE_QUOTA,
        // kube-apiserver has no printer for these: its default convertor.
        ("", "LimitRange") => &CREATED_AT,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => &CREATED_AT,
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("policy", "PodDisruptionBudget") => &PDB,
        ("autoscaling", "HorizontalPodAutoscaler") => &HPA,
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("events.k8s.io", "Event") => &EVENTS_EVENT,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        (TMC_GROUP, "ClusterRegistration") => &CLUSTER_REGISTRATION,
        (TMC_GROUP, "WorkloadPlacement") => &WORKLOAD_PLACEMENT,
        (TENANCY_GROUP, "Workspace") => &WORKSPACE,
        (CORE_KCP_GROUP, "LogicalCluster") => &LOGICAL_CLUSTER,
        (CORE_KCP_GROUP, "Shard") => &SHARD,
        _ => &NAME_AGE,
    }
}

/// What a custom resource without printer columns shows: NAME, AGE.
pub static NAME_AGE: LazyLock<Convertor> = LazyLock::new(|| Convertor::columns(&[]));

/// kcp's Workspace columns (its CRD's `additionalPrinterColumns`).
static WORKSPACE: LazyLock<Convertor> = LazyLock::new(|| {
    Convertor::columns(&[
        PrinterColumn::new("Type", "string", ".spec.type.name", "Type of the workspace"),
        PrinterColumn::new(
            "Region",
            "string",
            ".metadata.labels['region']",
            "The region this workspace is in",
        ),
        PrinterColumn::new(
            "Phase",
            "string",
            ".status.phase",
            "The current phase (e.g. Scheduling, Initializing, Ready, Deleting)",
        ),
        PrinterColumn::new("URL", "string", ".spec.URL", "URL to access the workspace"),
        PrinterColumn::new("Age", "date", ".metadata.creationTimestamp", ""),
    ])
});

/// kcp's LogicalCluster columns.
static LOGICAL_CLUSTER: LazyLock<Convertor> = LazyLock::new(|| {
    Convertor::columns(&[
        PrinterColumn::new(
            "Phase",
            "string",
            ".status.phase",
            "The current phase (e.g. Scheduling, Initializing, Ready, Deleting)",
        ),
        PrinterColumn::new(
            "URL",
            "string",
            ".status.URL",
            "URL to access the logical cluster",
        ),
        PrinterColumn::new("Age", "date", ".metadata.creationTimestamp", ""),
    ])
});

/// kcp's Shard columns.
static SHARD: LazyLock<Convertor> = LazyLock::new(|| {
    Convertor::columns(&[
        PrinterColumn::new(
            "Region",
            "string",
            ".metadata.labels['region']",
            "The region this workspace is in",
        ),
        PrinterColumn::new(
            "URL",
            "string",
            ".spec.baseURL",
            "Type URL to directly connect to the shard",
        ),
        PrinterColumn::new(
            "External URL",
            "string",
            ".spec.externalURL",
            "The URL exposed in logical clusters created on that shard",
        ),
        PrinterColumn::new("Age", "date", ".metadata.creationTimestamp", ""),
    ])
});

// ---------------------------------------------------------------- columns
// As kube-apiserver v1.34.4 sends them.

const NAMESPACE_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Status", "string", "", 0, "The status of the namespace"),
    age_col(),
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Data", "string", "", 0, "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."),
    age_col(),
];

const EVENT_COLUMNS: &[Column] = &[
    Column::new("Last Seen", "string", "", 0, "The time at which the most recent occurrence of this event was recorded."),
    Column::new("Type", "string", "", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
    Column::new("Reason", "string", "", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    Column::new("Object", "string", "", 0, "The object that this event is about."),
    Column::new("Subobject", "string", "", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."),
    Column::new("Source", "string", "", 1, "The component reporting this event. Should be a short machine understandable string."),
    Column::new("Message", "string", "", 0, "A human-readable description of the status of this operation."),
    Column::new("First Seen", "string", "", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    Column::new("Count", "string", "", 1, "The number of times this event has occurred."),
    Column::new("Name", "string", "name", 1, NAME_DESC),
];

const PVC_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Status", "string", "", 0, "phase represents the current phase of PersistentVolumeClaim."),
    Column::new("Volume", "string", "", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
    Column::new("Capacity", "string", "", 0, "capacity represents the actual resources of the underlying volume."),
    Column::new("Access Modes", "string", "", 0, "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
    Column::new("StorageClass", "string", "", 0, "StorageClass of the pvc"),
    Column::new("VolumeAttributesClass", "string", "", 0, "VolumeAttributesClass of the pvc"),
    age_col(),
    Column::new("VolumeMode", "string", "", 1, "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
];

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Request", "string", "", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
    Column::new("Limit", "string", "", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    age_col(),
];

const SECRET_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Type", "string", "", 0, "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
    Column::new("Data", "string", "", 0, "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
    age_col(),
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Secrets", "string", "", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret"),
    age_col(),
];

const SERVICE_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Type", "string", "", 0, "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"),
    Column::new("Cluster-IP", "string", "", 0, "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
    Column::new("External-IP", "string", "", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system."),
    Column::new("Port(s)", "string", "", 0, "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
    age_col(),
    Column::new("Selector", "string", "", 1, "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"),
];

const DAEMON_SET_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Desired", "integer", "", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    Column::new("Current", "integer", "", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    Column::new("Ready", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    Column::new("Up-to-date", "integer", "", 0, "The total number of nodes that are running updated daemon pod"),
    Column::new("Available", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    Column::new("Node Selector", "string", "", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
    Column::new("Selector", "string", "", 1, "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Ready", "string", "", 0, "Number of the pod with ready state"),
    Column::new("Up-to-date", "string", "", 0, "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
    Column::new("Available", "string", "", 0, "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
    Column::new("Selector", "string", "", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Desired", "integer", "", 0, "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    Column::new("Current", "integer", "", 0, "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    Column::new("Ready", "integer", "", 0, "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
    Column::new("Selector", "string", "", 1, "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

const STATEFUL_SET_COLUMNS: &[Column] = &[
    name_col(),
    Column::new(
        "Ready",
        "string",
        "",
        0,
        "Number of the pod with ready state",
    ),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
];

const HPA_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Reference", "string", "", 0, "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
    Column::new("Targets", "string", "", 0, "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond."),
    Column::new("MinPods", "string", "", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available."),
    Column::new("MaxPods", "string", "", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."),
    Column::new("Replicas", "string", "", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
    age_col(),
];

const CRON_JOB_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Schedule", "string", "", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    Column::new("Timezone", "string", "", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
    Column::new("Suspend", "boolean", "", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
    Column::new("Active", "integer", "", 0, "A list of pointers to currently running jobs."),
    Column::new("Last Schedule", "string", "", 0, "Information when was the last time the job was successfully scheduled."),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
    Column::new("Selector", "string", "", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

const JOB_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Status", "string", "", 0, "Status of the job."),
    Column::new("Completions", "string", "", 0, "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
    Column::new("Duration", "string", "", 0, "Time required to complete the job."),
    age_col(),
    Column::new("Containers", "string", "", 1, CONTAINERS_DESC),
    Column::new("Images", "string", "", 1, IMAGES_DESC),
    Column::new("Selector", "string", "", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

const LEASE_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Holder", "string", "", 0, "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
    age_col(),
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("AddressType", "string", "", 0, "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name."),
    Column::new("Ports", "string", "", 0, "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports."),
    Column::new("Endpoints", "string", "", 0, "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."),
    age_col(),
];

const INGRESS_COLUMNS: &[Column] = &[
    name_col(),
    Column::new(
        "Class",
        "string",
        "",
        0,
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    Column::new(
        "Hosts",
        "string",
        "",
        0,
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    Column::new(
        "Address",
        "string",
        "",
        0,
        "Address is a list containing ingress points for the load-balancer",
    ),
    Column::new(
        "Ports",
        "string",
        "",
        0,
        "Ports of TLS configurations that open",
    ),
    age_col(),
];

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Pod-Selector", "string", "", 0, "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."),
    age_col(),
];

const PDB_COLUMNS: &[Column] = &[
    name_col(),
    Column::new(
        "Min Available",
        "string",
        "",
        0,
        "The minimum number of pods that must be available.",
    ),
    Column::new(
        "Max Unavailable",
        "string",
        "",
        0,
        "The maximum number of pods that may be unavailable.",
    ),
    Column::new(
        "Allowed Disruptions",
        "integer",
        "",
        0,
        "Calculated number of pods that may be disrupted at this time.",
    ),
    age_col(),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Role", "string", "", 0, "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
    age_col(),
    Column::new("Users", "string", "", 1, "Users in the clusterRoleBinding"),
    Column::new("Groups", "string", "", 1, "Groups in the clusterRoleBinding"),
    Column::new("ServiceAccounts", "string", "", 1, "ServiceAccounts in the clusterRoleBinding"),
];

const ROLE_BINDING_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Role", "string", "", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
    age_col(),
    Column::new("Users", "string", "", 1, "Users in the roleBinding"),
    Column::new("Groups", "string", "", 1, "Groups in the roleBinding"),
    Column::new("ServiceAccounts", "string", "", 1, "ServiceAccounts in the roleBinding"),
];

const CLUSTER_REGISTRATION_COLUMNS: &[Column] = &[
    name_col(),
    Column::new("Ready", "string", "", 0, "The status of the Ready condition: True while the cluster answers probes with valid credentials."),
    Column::new("Location", "string", "", 0, "The free-form location placements select clusters by."),
    Column::new("Version", "string", "", 0, "The Kubernetes version the cluster reports."),
    age_col(),
    Column::new("Endpoint", "string", "", 1, "URL of the cluster's API server."),
    Column::new("Schedulable", "string", "", 1, "Whether new placements may choose the cluster (false when spec.unschedulable)."),
    Column::new("Taints", "string", "", 1, "The cluster's taints, key=value:Effect."),
    Column::new("Labels", "string", "", 1, "The cluster's labels, which placements' cluster selectors and topology keys match."),
];

const WORKLOAD_PLACEMENT_COLUMNS: &[Column] = &[
    name_col(),
    Column::new(
        "Phase",
        "string",
        "",
        0,
        "Pending until clusters are chosen, then Bound; Unschedulable when no cluster fits.",
    ),
    Column::new(
        "Ready",
        "string",
        "",
        0,
        "The status of the Ready condition.",
    ),
    Column::new(
        "Clusters",
        "string",
        "",
        0,
        "The ClusterRegistrations chosen.",
    ),
    age_col(),
    Column::new(
        "Location",
        "string",
        "",
        1,
        "The workspace of the ClusterRegistrations (this one when not set).",
    ),
    Column::new(
        "Strategy",
        "string",
        "",
        1,
        "How many clusters: Single, All, or Spread(N), over /topologyKey when given.",
    ),
    Column::new(
        "Resources",
        "string",
        "",
        1,
        "The resources placed (all syncable ones when not set).",
    ),
    Column::new(
        "Cluster Selector",
        "string",
        "",
        1,
        "Which clusters may be chosen.",
    ),
];

// ------------------------------------------------------------------ cells

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() {
        default
    } else {
        v
    }
}

fn namespace(o: &Value, now: Now) -> Vec<Value> {
    vec![name(o), s(text(o, &["status", "phase"])), age(o, now)]
}

fn config_map(o: &Value, now: Now) -> Vec<Value> {
    let n = count(o, &["data"]) + count(o, &["binaryData"]);
    vec![name(o), json!(n), age(o, now)]
}

fn secret(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        s(or(text(o, &["type"]), "Opaque")),
        json!(count(o, &["data"])),
        age(o, now),
    ]
}

fn service_account(o: &Value, now: Now) -> Vec<Value> {
    vec![name(o), json!(count(o, &["secrets"])), age(o, now)]
}

/// `getServiceExternalIP`, wide (not clipped).
fn service_external_ip(o: &Value, type_: &str) -> String {
    let external: Vec<&str> = items(o, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match type_ {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer(at(o, &["status", "loadBalancer", "ingress"]));
            match (lb.is_empty(), external.is_empty()) {
                (_, false) => {
                    let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
                    all.extend(external);
                    all.join(",")
                }
                (false, true) => lb,
                (true, true) => "<pending>".into(),
            }
        }
        "ExternalName" => text(o, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

/// `loadBalancerStatusStringer`: the ingress points' IPs (or host names),
/// sorted and distinct.
fn load_balancer(ingress: &Value) -> String {
    let mut set: Vec<&str> = ingress
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
            ("", "") => None,
            ("", h) => Some(h),
            (ip, _) => Some(ip),
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    set.join(",")
}

/// `makePortString`: `80/TCP`, `80:30080/TCP` with a node port.
fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = items(o, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let proto = or(text(p, &["protocol"]), "TCP");
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn service(o: &Value, now: Now) -> Vec<Value> {
    let type_ = or(text(o, &["spec", "type"]), "ClusterIP");
    // tmc allocates no cluster IPs: one given in the spec is shown.
    let cluster_ip = items(o, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or(or(text(o, &["spec", "clusterIP"]), "<none>"));
    vec![
        name(o),
        s(type_),
        s(cluster_ip),
        s(service_external_ip(o, type_)),
        s(service_ports(o)),
        age(o, now),
        s(format_labels(at(o, &["spec", "selector"]))),
    ]
}

fn pod_template_containers(o: &Value, spec: &[&str]) -> (Value, Value) {
    let mut path = spec.to_vec();
    path.extend(["template", "spec", "containers"]);
    containers(items(o, &path))
}

fn deployment(o: &Value, now: Now) -> Vec<Value> {
    let desired = opt_int(o, &["spec", "replicas"]).unwrap_or(1);
    let (names, images) = pod_template_containers(o, &["spec"]);
    let selector =
        selector_string(at(o, &["spec", "selector"])).unwrap_or_else(|| "<invalid>".into());
    vec![
        name(o),
        s(format!(
            "{}/{desired}",
            int(o, &["status", "readyReplicas"])
        )),
        json!(int(o, &["status", "updatedReplicas"])),
        json!(int(o, &["status", "availableReplicas"])),
        age(o, now),
        names,
        images,
        s(selector),
    ]
}

fn stateful_set(o: &Value, now: Now) -> Vec<Value> {
    let desired = opt_int(o, &["spec", "replicas"]).unwrap_or(1);
    let (names, images) = pod_template_containers(o, &["spec"]);
    vec![
        name(o),
        s(format!(
            "{}/{desired}",
            int(o, &["status", "readyReplicas"])
        )),
        age(o, now),
        names,
        images,
    ]
}

fn daemon_set(o: &Value, now: Now) -> Vec<Value> {
    let st = |f: &str| json!(int(o, &["status", f]));
    let (names, images) = pod_template_containers(o, &["spec"]);
    vec![
        name(o),
        st("desiredNumberScheduled"),
        st("currentNumberScheduled"),
        st("numberReady"),
        st("updatedNumberScheduled"),
        st("numberAvailable"),
        s(format_labels(at(
            o,
            &["spec", "template", "spec", "nodeSelector"],
        ))),
        age(o, now),
        names,
        images,
        s(format_label_selector(at(o, &["spec", "selector"]))),
    ]
}

fn replica_set(o: &Value, now: Now) -> Vec<Value> {
    let (names, images) = pod_template_containers(o, &["spec"]);
    vec![
        name(o),
        json!(opt_int(o, &["spec", "replicas"]).unwrap_or(1)),
        json!(int(o, &["status", "replicas"])),
        json!(int(o, &["status", "readyReplicas"])),
        age(o, now),
        names,
        images,
        s(format_label_selector(at(o, &["spec", "selector"]))),
    ]
}

fn job(o: &Value, now: Now) -> Vec<Value> {
    let succeeded = int(o, &["status", "succeeded"]);
    // Without both, kube defaults completions and parallelism to 1.
    let completions = match (
        opt_int(o, &["spec", "completions"]),
        opt_int(o, &["spec", "parallelism"]),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match (
        time(at(o, &["status", "startTime"])),
        time(at(o, &["status", "completionTime"])),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => super::cells::human_duration(now - start),
        (Some(start), Some(end)) => super::cells::human_duration(end - start),
    };
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if !at(o, &["metadata", "deletionTimestamp"]).is_null() {
        "Terminating"
    } else if condition_true(o, "Suspended") {
        "Suspended"
    } else if condition_true(o, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = pod_template_containers(o, &["spec"]);
    vec![
        name(o),
        s(status),
        s(completions),
        s(duration),
        age(o, now),
        names,
        images,
        s(format_label_selector(at(o, &["spec", "selector"]))),
    ]
}

fn cron_job(o: &Value, now: Now) -> Vec<Value> {
    let last = match at(o, &["status", "lastScheduleTime"]) {
        Value::Null => "<none>".to_string(),
        t => since(t, now),
    };
    let suspend = match at(o, &["spec", "suspend"]).as_bool() {
        Some(true) => "True",
        // kube defaults suspend to false.
        _ => "False",
    };
    let (names, images) = pod_template_containers(o, &["spec", "jobTemplate", "spec"]);
    vec![
        name(o),
        s(text(o, &["spec", "schedule"])),
        s(at(o, &["spec", "timeZone"]).as_str().unwrap_or("<none>")),
        s(suspend),
        json!(count(o, &["status", "active"])),
        s(last),
        age(o, now),
        names,
        images,
        s(format_label_selector(at(
            o,
            &["spec", "jobTemplate", "spec", "selector"],
        ))),
    ]
}

/// `rbac.SubjectsStrings`: users, groups and service accounts.
fn role_binding(o: &Value, now: Now) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subj in items(o, &["subjects"]) {
        let n = text(subj, &["name"]);
        match text(subj, &["kind"]) {
            "User" => users.push(n.to_string()),
            "Group" => groups.push(n.to_string()),
            "ServiceAccount" => sas.push(format!("{}/{n}", text(subj, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(o),
        s(format!(
            "{}/{}",
            text(o, &["roleRef", "kind"]),
            text(o, &["roleRef", "name"])
        )),
        age(o, now),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(sas.join(", ")),
    ]
}

/// `formatHosts`: up to three hosts, `*` for none.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for r in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = text(r, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let shown = list.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - MAX)
    } else {
        shown
    }
}

fn ingress(o: &Value, now: Now) -> Vec<Value> {
    let ports = if items(o, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(o),
        s(at(o, &["spec", "ingressClassName"])
            .as_str()
            .unwrap_or("<none>")),
        s(ingress_hosts(items(o, &["spec", "rules"]))),
        s(load_balancer(at(o, &["status", "loadBalancer", "ingress"]))),
        s(ports),
        age(o, now),
    ]
}

fn network_policy(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        s(format_label_selector(at(o, &["spec", "podSelector"]))),
        age(o, now),
    ]
}

/// A Quantity as written (kube prints its canonical form: `1Gi` stays,
/// `1024Mi` would print as `1Gi` there).
fn quantity(v: &Value) -> String {
    match v {
        Value::String(q) => q.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".into(),
    }
}

/// `GetAccessModesAsString`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn pvc(o: &Value, now: Now) -> Vec<Value> {
    let phase = if !at(o, &["metadata", "deletionTimestamp"]).is_null() {
        "Terminating"
    } else {
        // Set to Pending by kube-apiserver on create.
        or(text(o, &["status", "phase"]), "Pending")
    };
    let volume = text(o, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(o, &["status", "capacity", "storage"])),
            access_modes(items(o, &["status", "accessModes"])),
        )
    };
    let class = at(
        o,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .as_str()
    .unwrap_or(text(o, &["spec", "storageClassName"]));
    vec![
        name(o),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        s(at(o, &["spec", "volumeAttributesClassName"])
            .as_str()
            .unwrap_or("<unset>")),
        age(o, now),
        s(or(text(o, &["spec", "volumeMode"]), "Filesystem")),
    ]
}

/// An IntOrString as `String()` writes it.
fn int_or_string(v: &Value) -> Option<String> {
    match v {
        Value::String(x) => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn pdb(o: &Value, now: Now) -> Vec<Value> {
    let field = |f: &str| int_or_string(at(o, &["spec", f])).unwrap_or_else(|| "N/A".into());
    vec![
        name(o),
        s(field("minAvailable")),
        s(field("maxUnavailable")),
        json!(int(o, &["status", "disruptionsAllowed"])),
        age(o, now),
    ]
}

/// One metric of `formatHPAMetrics` (autoscaling/v2 shape).
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let q = |v: &Value| match v {
        Value::Null => "<nil>".to_string(),
        v => quantity(v),
    };
    let unknown = || "<unknown>".to_string();
    // A status entry of the metric's kind gives its current value (Go's
    // `String()` of a nil Quantity is `<nil>`); none: `<unknown>`.
    let cur = |kind: &str, field: &str| {
        status
            .filter(|st| at(st, &[kind]).is_object())
            .map(|st| q(at(st, &[kind, "current", field])))
    };
    match text(spec, &["type"]) {
        kind @ ("External" | "Object") => {
            let key = if kind == "External" {
                "external"
            } else {
                "object"
            };
            let target = at(spec, &[key, "target"]);
            match at(target, &["averageValue"]) {
                Value::Null => format!(
                    "{}/{}",
                    cur(key, "value").unwrap_or_else(unknown),
                    q(at(target, &["value"]))
                ),
                avg => format!(
                    "{}/{} (avg)",
                    cur(key, "averageValue").unwrap_or_else(unknown),
                    q(avg)
                ),
            }
        }
        "Pods" => format!(
            "{}/{}",
            cur("pods", "averageValue").unwrap_or_else(unknown),
            q(at(spec, &["pods", "target", "averageValue"]))
        ),
        kind @ ("Resource" | "ContainerResource") => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let res = text(spec, &[key, "name"]);
            let target = at(spec, &[key, "target"]);
            match at(target, &["averageValue"]) {
                Value::Null => {
                    let current = status
                        .and_then(|st| opt_int(st, &[key, "current", "averageUtilization"]))
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = opt_int(target, &["averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{res}: {current}/{target}")
                }
                avg => format!(
                    "{res}: {}/{}",
                    cur(key, "averageValue").unwrap_or_else(unknown),
                    q(avg)
                ),
            }
        }
        _ => "<unknown type>".into(),
    }
}

fn hpa(o: &Value, now: Now) -> Vec<Value> {
    // autoscaling/v1's CPU target reads as v2's Resource metric; both
    // default to 80% CPU.
    let cpu = |pct: Option<i64>| json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct.unwrap_or(80)}}});
    let v1_current = opt_int(o, &["status", "currentCPUUtilizationPercentage"])
        .map(|u| vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}})]);
    let specs: Vec<Value> = match at(o, &["spec", "metrics"]) {
        Value::Array(m) => m.clone(),
        _ => vec![cpu(opt_int(o, &["spec", "targetCPUUtilizationPercentage"]))],
    };
    let statuses: Vec<Value> = match (at(o, &["status", "currentMetrics"]), v1_current) {
        (Value::Array(m), _) => m.clone(),
        (_, Some(v1)) => v1,
        _ => Vec::new(),
    };
    const MAX: usize = 2;
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| hpa_metric(spec, statuses.get(i)))
        .collect();
    let metrics = if list.is_empty() {
        "<none>".to_string()
    } else if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    };
    vec![
        name(o),
        s(format!(
            "{}/{}",
            text(o, &["spec", "scaleTargetRef", "kind"]),
            text(o, &["spec", "scaleTargetRef", "name"])
        )),
        s(metrics),
        // kube defaults minReplicas to 1.
        s(opt_int(o, &["spec", "minReplicas"])
            .unwrap_or(1)
            .to_string()),
        json!(int(o, &["spec", "maxReplicas"])),
        json!(int(o, &["status", "currentReplicas"])),
        age(o, now),
    ]
}

fn lease(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        s(text(o, &["spec", "holderIdentity"])),
        age(o, now),
    ]
}

/// Where an Event keeps what the printer shows: core/v1 names, or
/// events.k8s.io/v1's (converted as kube-apiserver does).
struct EventFields {
    involved: &'static str,
    message: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
}

fn core_event(o: &Value, now: Now) -> Vec<Value> {
    event(
        o,
        now,
        &EventFields {
            involved: "involvedObject",
            message: "message",
            first: "firstTimestamp",
            last: "lastTimestamp",
            count: "count",
            source: "source",
        },
    )
}

fn events_event(o: &Value, now: Now) -> Vec<Value> {
    event(
        o,
        now,
        &EventFields {
            involved: "regarding",
            message: "note",
            first: "deprecatedFirstTimestamp",
            last: "deprecatedLastTimestamp",
            count: "deprecatedCount",
            source: "deprecatedSource",
        },
    )
}

fn event(o: &Value, now: Now, f: &EventFields) -> Vec<Value> {
    let first = match time(at(o, &[f.first])) {
        Some(_) => since(at(o, &[f.first]), now),
        None => since(at(o, &["eventTime"]), now),
    };
    let mut last = match time(at(o, &[f.last])) {
        Some(_) => since(at(o, &[f.last]), now),
        None => first.clone(),
    };
    let mut n = int(o, &[f.count]);
    if at(o, &["series"]).is_object() {
        last = since(at(o, &["series", "lastObservedTime"]), now);
        n = int(o, &["series", "count"]);
    } else if n == 0 {
        // Singleton events of the new API have no count.
        n = 1;
    }
    let kind = text(o, &[f.involved, "kind"]).to_lowercase();
    let target = match text(o, &[f.involved, "name"]) {
        "" => kind,
        obj => format!("{kind}/{obj}"),
    };
    let component = or(
        text(o, &[f.source, "component"]),
        text(o, &["reportingController"]),
    );
    let host = or(
        text(o, &[f.source, "host"]),
        text(o, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        s(last),
        s(text(o, &["type"])),
        s(text(o, &["reason"])),
        s(target),
        s(text(o, &[f.involved, "fieldPath"])),
        s(source),
        s(text(o, &[f.message]).trim()),
        s(first),
        json!(n),
        name(o),
    ]
}

fn endpoint_slice(o: &Value, now: Now) -> Vec<Value> {
    const MAX: usize = 3;
    let ports_all = items(o, &["ports"]);
    let ports: Vec<String> = ports_all
        .iter()
        .take(MAX)
        .map(
            |p| match (opt_int(p, &["port"]), at(p, &["name"]).as_str()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            },
        )
        .collect();
    let addresses: Vec<String> = items(o, &["endpoints"])
        .iter()
        .flat_map(|e| items(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(o),
        s(text(o, &["addressType"])),
        s(list_with_more(&ports, ports_all.len(), MAX)),
        s(list_with_more(&addresses, addresses.len(), MAX)),
        age(o, now),
    ]
}

fn resource_quota(o: &Value, now: Now) -> Vec<Value> {
    let mut resources: Vec<&String> = at(o, &["status", "hard"])
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let line = format!(
            "{r}: {}/{}",
            quantity(at(o, &["status", "used", r])),
            quantity(at(o, &["status", "hard", r]))
        );
        match r.split_once('.') {
            Some(("limits", _)) => limits.push(line),
            _ => requests.push(line),
        }
    }
    vec![
        name(o),
        s(requests.join(", ")),
        s(limits.join(", ")),
        age(o, now),
    ]
}

fn cluster_registration(o: &Value, now: Now) -> Vec<Value> {
    let taints: Vec<String> = items(o, &["spec", "taints"])
        .iter()
        .map(|t| match text(t, &["value"]) {
            "" => format!("{}:{}", text(t, &["key"]), text(t, &["effect"])),
            v => format!("{}={v}:{}", text(t, &["key"]), text(t, &["effect"])),
        })
        .collect();
    let schedulable = at(o, &["spec", "unschedulable"]).as_bool() != Some(true);
    vec![
        name(o),
        s(condition(o, "Ready")
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown")),
        s(or(text(o, &["spec", "location"]), "<none>")),
        s(or(text(o, &["status", "kubernetesVersion"]), "<unknown>")),
        age(o, now),
        s(text(o, &["spec", "apiEndpoint"])),
        s(schedulable.to_string()),
        s(if taints.is_empty() {
            "<none>".to_string()
        } else {
            taints.join(",")
        }),
        s(format_labels(at(o, &["metadata", "labels"]))),
    ]
}

fn workload_placement(o: &Value, now: Now) -> Vec<Value> {
    const MAX: usize = 3;
    let chosen: Vec<String> = items(o, &["status", "selectedClusters"])
        .iter()
        .map(|c| text(c, &["name"]).to_string())
        .collect();
    let clusters = if chosen.is_empty() {
        "<none>".to_string()
    } else {
        list_with_more(&chosen, chosen.len(), MAX)
    };
    let strategy = match text(o, &["spec", "strategy", "type"]) {
        "Spread" => {
            let n = opt_int(o, &["spec", "strategy", "clusters"]).unwrap_or(1);
            match text(o, &["spec", "strategy", "topologyKey"]) {
                "" => format!("Spread({n})"),
                key => format!("Spread({n})/{key}"),
            }
        }
        other => other.to_string(),
    };
    let resources: Vec<String> = items(o, &["spec", "resources"])
        .iter()
        .map(|r| match text(r, &["group"]) {
            "" => text(r, &["resource"]).to_string(),
            g => format!("{}.{g}", text(r, &["resource"])),
        })
        .collect();
    vec![
        name(o),
        s(or(text(o, &["status", "phase"]), "Pending")),
        s(condition(o, "Ready")
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown")),
        s(clusters),
        age(o, now),
        // Not set: the placement's own workspace.
        s(or(
            text(o, &["spec", "locationWorkspace"]),
            text(
                o,
                &[
                    "metadata",
                    "annotations",
                    crate::api::object::CLUSTER_ANNOTATION,
                ],
            ),
        )),
        s(strategy),
        s(if resources.is_empty() {
            "<all syncable>".to_string()
        } else {
            resources.join(",")
        }),
        s(format_label_selector(at(o, &["spec", "clusterSelector"]))),
    ]
}
