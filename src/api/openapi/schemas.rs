//! The schemas of the OpenAPI documents: one definition per kind and
//! one per list kind (each with its `x-kubernetes-group-version-kind`),
//! the `meta/v1` definitions they refer to (`ObjectMeta`, `ListMeta`,
//! `Status`, `Patch`, `DeleteOptions`, ...), and tmc's own kinds'
//! hand-written schemas, which follow [`crate::types`] (a test holds
//! the Rust types' JSON to them). Built-in kinds are stored schemaless:
//! their `spec` and `status` are free objects, their other top-level
//! fields are listed.
//!
//! Most of this file is data written as code: `json!` literals of schemas
//! and kube-apiserver's descriptions.
//!
//! Left out: `x-kubernetes-patch-merge-key` and list-type markers,
//! `default`s, schemas of built-in kinds below their top level.

use super::{def_name, gvk, Dialect, META};
use crate::api::resources::{ResourceInfo, TMC_GROUP};
use serde_json::{json, Map, Value};

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn int64(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": description})
}

fn int32(description: &str) -> Value {
    json!({"type": "integer", "format": "int32", "description": description})
}

fn time(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}, "description": description})
}

fn string_enum(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

/// An object stored as sent.
fn free_object(description: &str) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": description,
    })
}

fn array_of(items: Value, description: &str) -> Value {
    json!({"type": "array", "items": items, "description": description})
}

fn object(properties: Value, required: &[&str], description: &str) -> Value {
    let mut o = json!({"type": "object", "properties": properties, "description": description});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

const API_VERSION_DOC: &str =
    "APIVersion defines the versioned schema of this representation of an object.";
const KIND_DOC: &str =
    "Kind is a string value representing the REST resource this object represents.";

/// The definitions of a document of `resources`: each kind, its list
/// and the `meta/v1` ones they refer to.
pub(super) fn definitions(resources: &[&ResourceInfo], d: Dialect) -> Value {
    let mut defs = meta_definitions(d);
    for r in resources {
        let mut properties = json!({
            "apiVersion": string(API_VERSION_DOC),
            "kind": string(KIND_DOC),
            "metadata": d.ref_property(&format!("{META}.ObjectMeta"), "Standard object's metadata."),
        });
        for (name, schema) in body_fields(r) {
            properties[name] = schema;
        }
        let mut def = object(properties, &[], &kind_description(r));
        def["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, r.kind)]);
        defs.insert(def_name(r), def);

        let items = match d {
            Dialect::V2 => d.reference(&def_name(r)),
            Dialect::V3 => json!({"allOf": [d.reference(&def_name(r))], "default": {}}),
        };
        let mut list = object(
            json!({
                "apiVersion": string(API_VERSION_DOC),
                "kind": string(KIND_DOC),
                "metadata": d.ref_property(&format!("{META}.ListMeta"), "Standard list metadata."),
                "items": array_of(items, &format!("List of {}.", r.plural)),
            }),
            &["items"],
            &format!("{} is a list of {}.", r.list_kind(), r.kind),
        );
        list["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, &r.list_kind())]);
        defs.insert(format!("{}List", def_name(r)), list);
    }
    Value::Object(defs)
}

fn kind_description(r: &ResourceInfo) -> String {
    let what = match r.kind {
        "Namespace" => "Namespace provides a scope for Names.",
        "ConfigMap" => "ConfigMap holds configuration data for pods to consume.",
        "Secret" => "Secret holds secret data of a certain type.",
        "Service" => "Service is a named abstraction of software service, exposed on a member cluster.",
        "ServiceAccount" => "ServiceAccount binds together a name, a principal and secrets.",
        "Deployment" => "Deployment enables declarative updates for Pods and ReplicaSets.",
        "StatefulSet" => "StatefulSet represents a set of pods with consistent identities.",
        "DaemonSet" => "DaemonSet represents the configuration of a daemon set.",
        "Job" => "Job represents the configuration of a single job.",
        "ReplicaSet" => "ReplicaSet ensures that a specified number of pod replicas are running at any given time.",
        "CronJob" => "CronJob represents the configuration of a single cron job.",
        "PersistentVolumeClaim" => "PersistentVolumeClaim is a user's request for and claim to a persistent volume.",
        "LimitRange" => "LimitRange sets resource usage limits for each kind of resource in a Namespace.",
        "ResourceQuota" => "ResourceQuota sets aggregate quota restrictions enforced per namespace.",
        "Event" => "Event is a report of an event somewhere in the cluster.",
        "Endpoints" => "Endpoints is a collection of endpoints that implement the actual service.",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler is the configuration for a horizontal pod autoscaler.",
        "Ingress" => "Ingress is a collection of rules that allow inbound connections to reach the endpoints defined by a backend.",
        "NetworkPolicy" => "NetworkPolicy describes what network traffic is allowed for a set of Pods.",
        "PodDisruptionBudget" => "PodDisruptionBudget is an object to define the max disruption that can be caused to a collection of pods.",
        "Lease" => "Lease defines a lease concept.",
        "EndpointSlice" => "EndpointSlice represents a subset of the endpoints that implement a service.",
        "Role" => "Role is a namespaced, logical grouping of PolicyRules.",
        "RoleBinding" => "RoleBinding references a role and binds it to subjects in a namespace.",
        "ClusterRole" => "ClusterRole is a workspace-level, logical grouping of PolicyRules.",
        "ClusterRoleBinding" => "ClusterRoleBinding references a ClusterRole and binds it to subjects.",
        "ClusterRegistration" => "ClusterRegistration is a physical cluster registered with tmc, in a location workspace.",
        "WorkloadPlacement" => "WorkloadPlacement says which workloads of a tenant workspace run on which clusters.",
        "Workspace" => "Workspace is a logical cluster: a child of the workspace it is created in.",
        _ => "",
    };
    if r.group == TMC_GROUP {
        what.to_string()
    } else {
        format!("{what} tmc stores it as sent: fields below the top level are not checked against a schema.")
    }
}

/// Top-level fields besides apiVersion, kind and metadata.
fn body_fields(r: &ResourceInfo) -> Vec<(&'static str, Value)> {
    let any_list = |d: &str| array_of(free_object(""), d);
    match (r.group, r.kind) {
        ("", "ConfigMap") => vec![
            ("data", string_map("Data contains the configuration data.")),
            ("binaryData", string_map("BinaryData contains binary data, base64 encoded.")),
            ("immutable", boolean("If true, the data cannot be updated.")),
        ],
        ("", "Secret") => vec![
            ("data", string_map("Data contains the secret data, base64 encoded.")),
            ("stringData", string_map("stringData allows specifying non-binary secret data in string form; write-only.")),
            ("type", string("Used to facilitate programmatic handling of secret data.")),
            ("immutable", boolean("If true, the data cannot be updated.")),
        ],
        ("", "ServiceAccount") => vec![
            ("secrets", any_list("Secrets the service account may use.")),
            ("imagePullSecrets", any_list("References to secrets for pulling images.")),
            ("automountServiceAccountToken", boolean("Whether pods running as this service account get a token mounted.")),
        ],
        ("", "Event") => vec![
            ("involvedObject", free_object("The object that this event is about.")),
            ("reason", string("A short, machine understandable string that gives the reason for the transition into the object's current status.")),
            ("message", string("A human-readable description of the status of this operation.")),
            ("source", free_object("The component reporting this event.")),
            ("firstTimestamp", time("The time at which the event was first recorded.")),
            ("lastTimestamp", time("The time at which the most recent occurrence of this event was recorded.")),
            ("count", int32("The number of times this event has occurred.")),
            ("type", string("Type of this event (Normal, Warning).")),
            ("eventTime", time("Time when this Event was first observed.")),
            ("series", free_object("Data about the Event series this event represents.")),
            ("action", string("What action was taken/failed regarding to the Regarding object.")),
            ("related", free_object("Optional secondary object for more complex actions.")),
            ("reportingComponent", string("Name of the controller that emitted this Event.")),
            ("reportingInstance", string("ID of the controller instance.")),
        ],
        ("", "Endpoints") => vec![("subsets", any_list("The set of all endpoints is the union of all subsets."))],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            ("addressType", string("The type of address carried by this EndpointSlice.")),
            ("endpoints", any_list("A list of unique endpoints in this slice.")),
            ("ports", any_list("The network ports exposed by each endpoint in this slice.")),
        ],
        (_, "Role") => vec![("rules", any_list("Rules holds all the PolicyRules for this Role."))],
        (_, "ClusterRole") => vec![
            ("rules", any_list("Rules holds all the PolicyRules for this ClusterRole.")),
            ("aggregationRule", free_object("AggregationRule describes how to build the Rules for this ClusterRole.")),
        ],
        (_, "RoleBinding") | (_, "ClusterRoleBinding") => vec![
            ("subjects", any_list("Subjects holds references to the objects the role applies to.")),
            ("roleRef", free_object("RoleRef references the role being bound.")),
        ],
        (TMC_GROUP, "ClusterRegistration") => vec![
            ("spec", cluster_registration_spec()),
            ("status", cluster_registration_status()),
        ],
        (TMC_GROUP, "WorkloadPlacement") => vec![
            ("spec", workload_placement_spec()),
            ("status", workload_placement_status()),
        ],
        _ => {
            let mut fields = vec![("spec", free_object("Desired state, stored as sent."))];
            if r.status {
                fields.push(("status", free_object("Observed state, stored as sent.")));
            }
            fields
        }
    }
}

fn meta_definitions(d: Dialect) -> Map<String, Value> {
    let mut defs = Map::new();
    defs.insert(
        format!("{META}.ObjectMeta"),
        object(
            json!({
                "name": string("Name must be unique within a namespace."),
                "generateName": string("Prefix for a server-generated name."),
                "namespace": string("Namespace defines the space within which each name must be unique."),
                "selfLink": string("Deprecated."),
                "uid": string("UID is the unique in time and space value for this object."),
                "resourceVersion": string("An opaque value that represents the internal version of this object."),
                "generation": int64("A sequence number representing a specific generation of the desired state."),
                "creationTimestamp": time("The time this object was created."),
                "deletionTimestamp": time("The time at which this resource will be deleted."),
                "deletionGracePeriodSeconds": int64("Seconds allowed for graceful termination."),
                "labels": string_map("Map of string keys and values that can be used to organize and categorize objects."),
                "annotations": string_map("Annotations is an unstructured key value map stored with a resource."),
                "ownerReferences": array_of(free_object(""), "List of objects depended by this object."),
                "finalizers": array_of(json!({"type": "string"}), "Must be empty before the object is deleted from the registry."),
                "managedFields": array_of(free_object(""), "Maps workflow-id and version to the set of fields that are managed by that workflow."),
            }),
            &[],
            "ObjectMeta is metadata that all persisted resources must have.",
        ),
    );
    defs.insert(
        format!("{META}.ListMeta"),
        object(
            json!({
                "continue": string("continue may be set if the user set a limit on the number of items returned."),
                "remainingItemCount": int64("The number of subsequent items in the list which are not included in this list response."),
                "resourceVersion": string("String that identifies the server's internal version of this object."),
                "selfLink": string("Deprecated."),
            }),
            &[],
            "ListMeta describes metadata that synthetic resources must have.",
        ),
    );
    let mut status = object(
        json!({
            "apiVersion": string(API_VERSION_DOC),
            "kind": string(KIND_DOC),
            "metadata": d.ref_property(&format!("{META}.ListMeta"), "Standard list metadata."),
            "status": string("Status of the operation: Success or Failure."),
            "message": string("A human-readable description of the status of this operation."),
            "reason": string("A machine-readable description of why this operation is in the Failure status."),
            "details": free_object("Extended data associated with the reason."),
            "code": json!({"type": "integer", "format": "int32", "description": "Suggested HTTP return code for this status."}),
        }),
        &[],
        "Status is a return value for calls that don't return other objects.",
    );
    status["x-kubernetes-group-version-kind"] = json!([gvk("", "v1", "Status")]);
    defs.insert(format!("{META}.Status"), status);
    defs.insert(
        format!("{META}.DeleteOptions"),
        object(
            json!({
                "apiVersion": string(API_VERSION_DOC),
                "kind": string(KIND_DOC),
                "dryRun": array_of(json!({"type": "string"}), "When present, indicates that modifications should not be persisted."),
                "gracePeriodSeconds": int64("The duration in seconds before the object should be deleted."),
                "orphanDependents": boolean("Deprecated: use propagationPolicy."),
                "preconditions": free_object("Must be fulfilled before a deletion is carried out (uid, resourceVersion)."),
                "propagationPolicy": string("Whether and how garbage collection will be performed."),
            }),
            &[],
            "DeleteOptions may be provided when deleting an API object.",
        ),
    );
    defs.insert(
        format!("{META}.Patch"),
        json!({
            "type": "object",
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        }),
    );
    defs
}

// ---- tmc's own kinds (keep in step with crate::types) ----

fn label_selector(description: &str) -> Value {
    let mut s = object(
        json!({
            "matchLabels": string_map("A map of {key,value} pairs; each is a requirement key In (value)."),
            "matchExpressions": array_of(
                object(
                    json!({
                        "key": string("The label key that the selector applies to."),
                        "operator": string_enum(&["In", "NotIn", "Exists", "DoesNotExist"], "The key's relationship to a set of values."),
                        "values": array_of(json!({"type": "string"}), "Values for In and NotIn; empty for Exists and DoesNotExist."),
                    }),
                    &["key", "operator"],
                    "A selector requirement.",
                ),
                "A list of label selector requirements, ANDed.",
            ),
        }),
        &[],
        description,
    );
    s["x-kubernetes-map-type"] = json!("atomic");
    s
}

fn conditions(description: &str) -> Value {
    array_of(
        object(
            json!({
                "type": string("Type of condition in CamelCase."),
                "status": string_enum(&["True", "False", "Unknown"], "Status of the condition."),
                "observedGeneration": int64("The .metadata.generation the condition was set upon."),
                "lastTransitionTime": time("The last time the condition changed status."),
                "reason": string("A programmatic identifier for the last transition, in CamelCase."),
                "message": string("A human-readable message about the transition."),
            }),
            &["type", "status", "lastTransitionTime", "reason", "message"],
            "Condition contains details for one aspect of the current state.",
        ),
        description,
    )
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];

fn cluster_registration_spec() -> Value {
    object(
        json!({
            "apiEndpoint": string("URL of the cluster's API server."),
            "credentialsSecretRef": object(
                json!({
                    "namespace": string("Namespace of the Secret, in the registration's workspace."),
                    "name": string("Name of the Secret."),
                }),
                &["namespace", "name"],
                "The Secret holding credentials: key `kubeconfig`, or `token` and `ca.crt`.",
            ),
            "location": string("Free-form location, matched by placements."),
            "unschedulable": boolean("No new placements when true."),
            "taints": array_of(
                object(
                    json!({
                        "key": string("Taint key."),
                        "value": string("Taint value."),
                        "effect": string_enum(TAINT_EFFECTS, "NoSchedule: no new placements; NoExecute: existing placements move away."),
                    }),
                    &["key", "effect"],
                    "A taint on a cluster.",
                ),
                "Taints.",
            ),
        }),
        &["apiEndpoint", "credentialsSecretRef"],
        "Desired state of a ClusterRegistration.",
    )
}

fn cluster_registration_status() -> Value {
    object(
        json!({
            "conditions": conditions("Ready, HeartbeatHealthy, CredentialsValid."),
            "lastHeartbeatTime": time("Last successful probe."),
            "kubernetesVersion": string("The cluster's Kubernetes version."),
            "capacity": string_map("Summed node capacity."),
            "allocatable": string_map("Summed node allocatable."),
        }),
        &[],
        "Observed state of a ClusterRegistration.",
    )
}

fn workload_placement_spec() -> Value {
    object(
        json!({
            "namespaceSelector": label_selector("Which namespaces' workloads."),
            "workloadSelector": label_selector("Which workloads (empty: all)."),
            "resources": array_of(
                object(
                    json!({
                        "group": string("API group (empty for core)."),
                        "resource": string("Plural resource."),
                    }),
                    &["resource"],
                    "A group and resource a placement covers.",
                ),
                "Which resources (empty: the syncable set).",
            ),
            "locationWorkspace": string("Workspace of the ClusterRegistrations (default: own)."),
            "clusterSelector": label_selector("Which clusters."),
            "tolerations": array_of(
                object(
                    json!({
                        "key": string("Taint key (empty with Exists: every key)."),
                        "operator": string("Equal (default) or Exists."),
                        "value": string("Value for Equal."),
                        "effect": string_enum(TAINT_EFFECTS, "Effect tolerated (all when absent)."),
                        "tolerationSeconds": int64("For NoExecute: how long the placement stays."),
                    }),
                    &[],
                    "A toleration of a cluster taint.",
                ),
                "Tolerated taints.",
            ),
            "strategy": object(
                json!({
                    "type": string_enum(&["Single", "Spread", "All"], "Single, Spread or All."),
                    "clusters": json!({"type": "integer", "format": "int32", "minimum": 0, "description": "Number of clusters for Spread."}),
                    "topologyKey": string("Cluster label to spread across, for Spread."),
                }),
                &["type"],
                "How many clusters a placement picks.",
            ),
            "conflictPolicy": string_enum(&["Abort", "Adopt"], "What to do with a downstream object tmc did not create."),
        }),
        &["strategy"],
        "Desired state of a WorkloadPlacement.",
    )
}

fn workload_placement_status() -> Value {
    object(
        json!({
            "phase": string_enum(&["Pending", "Bound", "Unschedulable"], "Placement phase."),
            "selectedClusters": array_of(
                object(
                    json!({
                        "workspace": string("Location workspace."),
                        "name": string("ClusterRegistration name."),
                    }),
                    &["workspace", "name"],
                    "A cluster chosen by a placement.",
                ),
                "The decision.",
            ),
            "conditions": conditions("Scheduled, Ready."),
        }),
        &[],
        "Observed state of a WorkloadPlacement.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openapi::openapi_v3_group_version;
    use crate::api::resources::RESOURCES;
    use crate::types;

    // A small validator, enough to hold tmc's schemas to its Rust types:
    // types, enums, required fields and unknown fields.
    fn validate(doc: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        let resolve = |s: &Value| -> Value {
            let r = s.get("$ref").or_else(|| s.pointer("/allOf/0/$ref"));
            match r.and_then(Value::as_str) {
                Some(r) => doc["components"]["schemas"]
                    [r.trim_start_matches("#/components/schemas/")]
                .clone(),
                None => s.clone(),
            }
        };
        let schema = resolve(schema);
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                errs.push(format!("{path}: {v} not in {allowed:?}"));
            }
        }
        let ok = match schema["type"].as_str() {
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("boolean") => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{path}: {v} is not {}", schema["type"]));
            return;
        }
        if let (Some(obj), Some(props)) = (
            v.as_object(),
            schema.get("properties").and_then(Value::as_object),
        ) {
            for (k, x) in obj {
                match props.get(k) {
                    Some(s) => validate(doc, s, x, &format!("{path}.{k}"), errs),
                    None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    None => errs.push(format!("{path}.{k}: unknown field")),
                }
            }
            for req in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(req.as_str().unwrap()) {
                    errs.push(format!("{path}: missing {req}"));
                }
            }
        }
        if let (Some(obj), Some(s)) = (v.as_object(), schema.get("additionalProperties")) {
            for (k, x) in obj {
                validate(doc, s, x, &format!("{path}.{k}"), errs);
            }
        }
        if let (Some(items), Some(s)) = (v.as_array(), schema.get("items")) {
            for (i, x) in items.iter().enumerate() {
                validate(doc, s, x, &format!("{path}[{i}]"), errs);
            }
        }
    }

    fn errors(kind: &str, object: &Value) -> Vec<String> {
        let r = RESOURCES.iter().find(|r| r.kind == kind).unwrap();
        let doc = openapi_v3_group_version(r.group, r.version).unwrap();
        let mut errs = Vec::new();
        validate(
            doc,
            &doc["components"]["schemas"][def_name(r)],
            object,
            kind,
            &mut errs,
        );
        errs
    }

    fn condition() -> Value {
        json!({"type": "Ready", "status": "True", "observedGeneration": 3, "reason": "Healthy",
               "message": "ok", "lastTransitionTime": "2026-11-26T00:00:00Z"})
    }

    #[test]
    fn tmc_schemas_accept_the_rust_types_json_and_refuse_drift() {
        // Every field populated, parsed into the Rust types and written back.
        let cr: types::ClusterRegistration = serde_json::from_value(json!({
            "apiVersion": types::API_VERSION, "kind": "ClusterRegistration",
            "metadata": {"name": "eu-west-1a", "labels": {"region": "eu-west"}, "generation": 3,
                         "creationTimestamp": "2026-11-26T00:00:00Z", "finalizers": ["x"]},
            "spec": {"apiEndpoint": "https://10.0.0.1:6443",
                     "credentialsSecretRef": {"namespace": "tmc-system", "name": "kc"},
                     "location": "eu-west", "unschedulable": true,
                     "taints": [{"key": "maintenance", "value": "true", "effect": "NoExecute"}]},
            "status": {"conditions": [condition()], "lastHeartbeatTime": "2026-11-26T00:00:00Z",
                       "kubernetesVersion": "v1.34.2", "capacity": {"cpu": "64"}, "allocatable": {"cpu": "60"}}
        }))
        .unwrap();
        let cr = serde_json::to_value(&cr).unwrap();
        assert_eq!(errors("ClusterRegistration", &cr), Vec::<String>::new());

        let wp: types::WorkloadPlacement = serde_json::from_value(json!({
            "apiVersion": types::API_VERSION, "kind": "WorkloadPlacement", "metadata": {"name": "web-eu"},
            "spec": types::example_placement_spec(),
            "status": {"phase": "Bound", "selectedClusters": [{"workspace": "root:compute", "name": "eu-west-1a"}],
                       "conditions": [condition()]}
        }))
        .unwrap();
        let mut wp = serde_json::to_value(&wp).unwrap();
        wp["spec"]["clusterSelector"]["matchExpressions"] =
            json!([{"key": "tier", "operator": "In", "values": ["prod"]}]);
        assert_eq!(errors("WorkloadPlacement", &wp), Vec::<String>::new());

        let mut bad = wp.clone();
        bad["spec"]["bogus"] = json!(1);
        bad["spec"]["strategy"]["type"] = json!("Sometimes");
        bad["spec"]["tolerations"][0]["tolerationSeconds"] = json!("soon");
        let errs = errors("WorkloadPlacement", &bad);
        assert_eq!(errs.len(), 3, "{errs:?}");
        let mut bad = cr.clone();
        bad["spec"].as_object_mut().unwrap().remove("apiEndpoint");
        assert_eq!(
            errors("ClusterRegistration", &bad),
            vec!["ClusterRegistration.spec: missing \"apiEndpoint\""]
        );
    }

    #[test]
    fn built_in_schemas_are_permissive_below_the_top_level() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"anything": ["goes"]}});
        assert_eq!(errors("Deployment", &deploy), Vec::<String>::new());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "data": {"k": "v"}, "immutable": true});
        assert_eq!(errors("ConfigMap", &cm), Vec::<String>::new());
        let errs = errors(
            "ConfigMap",
            &json!({"metadata": {"name": "c", "labelz": {}}, "spec": {}}),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
