//! Object bodies: decoding requests, and the metadata the server owns.
//!
//! Objects are stored as the JSON the client sent plus server-set metadata
//! (`uid`, `creationTimestamp`, `generation`, `deletionTimestamp`,
//! `managedFields`), without `resourceVersion`: the store's mod revision
//! is the resourceVersion and is put into every object on the way out,
//! together with the `kcp.io/cluster` annotation naming its workspace (as
//! kcp does), which is stripped again on the way in.

use super::resources::ResourceInfo;
use super::status::{ApiError, ApiResult};
use serde_json::{Map, Value};

/// The annotation naming an object's workspace (kcp's logical cluster).
pub const CLUSTER_ANNOTATION: &str = "kcp.io/cluster";

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Largest object stored, in bytes of its JSON: etcd's request limit
/// (`--max-request-bytes`, 1.5 MiB), which kube-apiserver answers with 413.
/// A patch or an apply can grow an object past what its body carried;
/// this is the bound on what any write leaves in the store.
pub const MAX_OBJECT: usize = 3 * 512 * 1024;

/// The stored form of `obj`: its JSON, refused with 413 when it is larger
/// than [`MAX_OBJECT`].
pub fn encode_for_storage(obj: &Value) -> ApiResult<Vec<u8>> {
    let value = serde_json::to_vec(obj).map_err(|e| ApiError::internal(e.to_string()))?;
    if value.len() > MAX_OBJECT {
        return Err(ApiError::too_large(format!(
            "Request entity too large: the object would be {} bytes once stored; \
             the limit is {MAX_OBJECT} bytes (1.5 MiB)",
            value.len()
        )));
    }
    Ok(value)
}

/// Decodes a request body: JSON, or YAML or Kubernetes protobuf when the
/// content type says so.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let value: Value = match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+json"
        | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?,
        super::protobuf::MEDIA_TYPE => super::protobuf::decode(body)?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/yaml, \
                 application/vnd.kubernetes.protobuf (got {other})"
            )))
        }
    };
    Ok(value)
}

/// Checks that `obj` is an object of `info`'s kind and apiVersion.
pub fn check_kind(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    let Some(map) = obj.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'apiVersion' is missing in the request body",
        ));
    }
    if api_version != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API \
             version ({})",
            info.api_version()
        )));
    }
    if kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    check_shape(info, obj).map_err(|e| decode_error(info, &e))
}

// ----------------------------------------------------------------------
// The shape of objects, as kube-apiserver's decoder checks it.

/// Why an object does not decode: the message of Go's `encoding/json`
/// (e.g. `json: cannot unmarshal string into Go struct field
/// ObjectMeta.metadata.annotations of type map[string]string`) and the
/// field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// `metadata.annotations`, ...
    pub field: String,
    /// As Go's decoder words it.
    pub message: String,
}

/// kube-apiserver's answer to a body that does not decode: 400
/// BadRequest, `<Kind> in version "<v>" cannot be handled as a <Kind>:
/// <decoder message>`.
pub fn decode_error(info: &ResourceInfo, e: &ShapeError) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {msg}",
        kind = info.kind,
        version = info.version,
        msg = e.message
    ))
}

/// kube-apiserver's answer to a patch whose result does not decode: 422
/// Invalid, one cause on the field `patch` (kube-apiserver quotes the
/// whole patched object there; tmc names the decoder's error only).
pub fn patch_error(e: &ShapeError) -> ApiError {
    ApiError::invalid(
        "",
        "",
        "",
        vec![(
            "patch".into(),
            format!("Invalid value: the patched object: {}", e.message),
            "FieldValueInvalid",
        )],
    )
}

/// The Go types of the fields tmc checks.
#[derive(Clone, Copy)]
enum Ty {
    /// A string (its Go type name).
    Str(&'static str),
    /// An integer (`int64`, `int32`).
    Int(&'static str),
    /// A `*bool`.
    Bool,
    /// `metav1.Time`.
    Time,
    /// `map[string]string`.
    StrMap,
    /// `map[string][]byte`: base64 strings.
    BytesMap,
    /// `[]string`.
    StrList,
    /// A struct (Go type), its fields checked.
    Struct(&'static str, &'static str, &'static [(&'static str, Ty)]),
    /// A struct whose fields are not checked here (Go type).
    Object(&'static str),
    /// A list of structs (element Go type, struct name, fields).
    StructList(&'static str, &'static str, &'static [(&'static str, Ty)]),
    /// A list of structs whose fields are not checked (element Go type).
    ObjectList(&'static str),
}

const OWNER_REFERENCE: &[(&str, Ty)] = &[
    ("apiVersion", Ty::Str("string")),
    ("kind", Ty::Str("string")),
    ("name", Ty::Str("string")),
    ("uid", Ty::Str("types.UID")),
    ("controller", Ty::Bool),
    ("blockOwnerDeletion", Ty::Bool),
];

const MANAGED_FIELDS_ENTRY: &[(&str, Ty)] = &[
    ("manager", Ty::Str("string")),
    ("operation", Ty::Str("v1.ManagedFieldsOperationType")),
    ("apiVersion", Ty::Str("string")),
    ("time", Ty::Time),
    ("fieldsType", Ty::Str("string")),
    ("fieldsV1", Ty::Object("v1.FieldsV1")),
    ("subresource", Ty::Str("string")),
];

/// `metav1.ObjectMeta`, field by field.
const OBJECT_META: &[(&str, Ty)] = &[
    ("name", Ty::Str("string")),
    ("generateName", Ty::Str("string")),
    ("namespace", Ty::Str("string")),
    ("selfLink", Ty::Str("string")),
    ("uid", Ty::Str("types.UID")),
    ("resourceVersion", Ty::Str("string")),
    ("generation", Ty::Int("int64")),
    ("creationTimestamp", Ty::Time),
    ("deletionTimestamp", Ty::Time),
    ("deletionGracePeriodSeconds", Ty::Int("int64")),
    ("labels", Ty::StrMap),
    ("annotations", Ty::StrMap),
    (
        "ownerReferences",
        Ty::StructList("v1.OwnerReference", "OwnerReference", OWNER_REFERENCE),
    ),
    ("finalizers", Ty::StrList),
    (
        "managedFields",
        Ty::StructList(
            "v1.ManagedFieldsEntry",
            "ManagedFieldsEntry",
            MANAGED_FIELDS_ENTRY,
        ),
    ),
];

/// The top-level fields of a kind beyond `apiVersion`, `kind` and
/// `metadata`, with their Go types (unknown fields are dropped by the
/// decoder, as tmc keeps them).
fn top_level(info: &ResourceInfo) -> &'static [(&'static str, Ty)] {
    match (info.group, info.kind) {
        ("", "ConfigMap") => &[
            ("data", Ty::StrMap),
            ("binaryData", Ty::BytesMap),
            ("immutable", Ty::Bool),
        ],
        ("", "Secret") => &[
            ("data", Ty::BytesMap),
            ("stringData", Ty::StrMap),
            ("type", Ty::Str("v1.SecretType")),
            ("immutable", Ty::Bool),
        ],
        ("", "ServiceAccount") => &[
            ("secrets", Ty::ObjectList("v1.ObjectReference")),
            (
                "imagePullSecrets",
                Ty::ObjectList("v1.LocalObjectReference"),
            ),
            ("automountServiceAccountToken", Ty::Bool),
        ],
        ("", "Namespace") => &[
            ("spec", Ty::Object("v1.NamespaceSpec")),
            ("status", Ty::Object("v1.NamespaceStatus")),
        ],
        ("", "Service") => &[
            ("spec", Ty::Object("v1.ServiceSpec")),
            ("status", Ty::Object("v1.ServiceStatus")),
        ],
        ("apps", "Deployment") => &[
            ("spec", Ty::Object("v1.DeploymentSpec")),
            ("status", Ty::Object("v1.DeploymentStatus")),
        ],
        ("apps", "StatefulSet") => &[
            ("spec", Ty::Object("v1.StatefulSetSpec")),
            ("status", Ty::Object("v1.StatefulSetStatus")),
        ],
        ("apps", "DaemonSet") => &[
            ("spec", Ty::Object("v1.DaemonSetSpec")),
            ("status", Ty::Object("v1.DaemonSetStatus")),
        ],
        ("batch", "Job") => &[
            ("spec", Ty::Object("v1.JobSpec")),
            ("status", Ty::Object("v1.JobStatus")),
        ],
        ("apps", "ReplicaSet") => &[
            ("spec", Ty::Object("v1.ReplicaSetSpec")),
            ("status", Ty::Object("v1.ReplicaSetStatus")),
        ],
        ("batch", "CronJob") => &[
            ("spec", Ty::Object("v1.CronJobSpec")),
            ("status", Ty::Object("v1.CronJobStatus")),
        ],
        ("", "PersistentVolumeClaim") => &[
            ("spec", Ty::Object("v1.PersistentVolumeClaimSpec")),
            ("status", Ty::Object("v1.PersistentVolumeClaimStatus")),
        ],
        ("", "LimitRange") => &[("spec", Ty::Object("v1.LimitRangeSpec"))],
        ("", "ResourceQuota") => &[
            ("spec", Ty::Object("v1.ResourceQuotaSpec")),
            ("status", Ty::Object("v1.ResourceQuotaStatus")),
        ],
        ("", "Event") => &[
            ("involvedObject", Ty::Object("v1.ObjectReference")),
            ("reason", Ty::Str("string")),
            ("message", Ty::Str("string")),
            ("source", Ty::Object("v1.EventSource")),
            ("firstTimestamp", Ty::Time),
            ("lastTimestamp", Ty::Time),
            ("count", Ty::Int("int32")),
            ("type", Ty::Str("string")),
            ("series", Ty::Object("v1.EventSeries")),
            ("action", Ty::Str("string")),
            ("related", Ty::Object("v1.ObjectReference")),
            ("reportingComponent", Ty::Str("string")),
            ("reportingInstance", Ty::Str("string")),
        ],
        ("", "Endpoints") => &[("subsets", Ty::ObjectList("v1.EndpointSubset"))],
        ("autoscaling", "HorizontalPodAutoscaler") => &[
            ("spec", Ty::Object("v2.HorizontalPodAutoscalerSpec")),
            ("status", Ty::Object("v2.HorizontalPodAutoscalerStatus")),
        ],
        ("networking.k8s.io", "Ingress") => &[
            ("spec", Ty::Object("v1.IngressSpec")),
            ("status", Ty::Object("v1.IngressStatus")),
        ],
        ("networking.k8s.io", "NetworkPolicy") => &[("spec", Ty::Object("v1.NetworkPolicySpec"))],
        ("policy", "PodDisruptionBudget") => &[
            ("spec", Ty::Object("v1.PodDisruptionBudgetSpec")),
            ("status", Ty::Object("v1.PodDisruptionBudgetStatus")),
        ],
        ("coordination.k8s.io", "Lease") => &[("spec", Ty::Object("v1.LeaseSpec"))],
        ("discovery.k8s.io", "EndpointSlice") => &[
            ("addressType", Ty::Str("v1.AddressType")),
            ("endpoints", Ty::ObjectList("v1.Endpoint")),
            ("ports", Ty::ObjectList("v1.EndpointPort")),
        ],
        ("rbac.authorization.k8s.io", "Role") => &[("rules", Ty::ObjectList("v1.PolicyRule"))],
        ("rbac.authorization.k8s.io", "ClusterRole") => &[
            ("rules", Ty::ObjectList("v1.PolicyRule")),
            ("aggregationRule", Ty::Object("v1.AggregationRule")),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => &[
            ("subjects", Ty::ObjectList("v1.Subject")),
            ("roleRef", Ty::Object("v1.RoleRef")),
        ],
        // tmc's own kinds and kcp's Workspace are custom resources: their
        // spec and status are checked against tmc's types in `validation`
        // (422, as a CRD's schema would).
        _ => &[],
    }
}

fn json_type(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Go's message for a value of the wrong JSON type (numbers name their
/// value only when they are numbers in the wrong range, as Go does).
fn mismatch(v: &Value, strct: &str, path: &str, go_type: &str) -> ShapeError {
    let what = match v {
        Value::Number(_) if go_type.starts_with("int") => json_type(v),
        Value::Number(_) => "number".into(),
        _ => json_type(v),
    };
    ShapeError {
        field: path.to_string(),
        message: format!(
            "json: cannot unmarshal {what} into Go struct field {strct}.{path} of type {go_type}"
        ),
    }
}

fn check_value(v: &Value, ty: Ty, strct: &str, path: &str) -> Result<(), ShapeError> {
    if v.is_null() {
        return Ok(()); // Go leaves the zero value
    }
    match ty {
        Ty::Str(go) => match v {
            Value::String(_) => Ok(()),
            _ => Err(mismatch(v, strct, path, go)),
        },
        Ty::Int(go) => {
            let fits = match go {
                "int32" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                _ => v.as_i64().is_some(),
            };
            if fits {
                Ok(())
            } else {
                Err(mismatch(v, strct, path, go))
            }
        }
        Ty::Bool => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(mismatch(v, strct, path, "bool")),
        },
        Ty::Time => match v {
            Value::String(t) => {
                if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
                    Ok(())
                } else {
                    Err(ShapeError {
                        field: path.to_string(),
                        message: format!(
                            "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse \
                             {t:?} as RFC 3339 (field {path})"
                        ),
                    })
                }
            }
            _ => Err(ShapeError {
                field: path.to_string(),
                message: format!(
                    "json: cannot unmarshal {} into Go value of type string (field {path})",
                    json_type(v)
                ),
            }),
        },
        Ty::StrMap | Ty::BytesMap => {
            let go = if matches!(ty, Ty::StrMap) {
                "map[string]string"
            } else {
                "map[string][]uint8"
            };
            let Value::Object(m) = v else {
                return Err(mismatch(v, strct, path, go));
            };
            for (k, item) in m {
                match item {
                    Value::Null => {}
                    Value::String(s) if matches!(ty, Ty::BytesMap) => {
                        use base64::Engine;
                        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
                            let at = match e {
                                base64::DecodeError::InvalidByte(i, _)
                                | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                                _ => s.len(),
                            };
                            return Err(ShapeError {
                                field: format!("{path}[{k}]"),
                                message: format!("illegal base64 data at input byte {at}"),
                            });
                        }
                    }
                    Value::String(_) => {}
                    other => {
                        let elem = if matches!(ty, Ty::StrMap) {
                            "string"
                        } else {
                            "[]uint8"
                        };
                        return Err(ShapeError {
                            field: format!("{path}[{k}]"),
                            ..mismatch(other, strct, path, elem)
                        });
                    }
                }
            }
            Ok(())
        }
        Ty::StrList => {
            let Value::Array(a) = v else {
                return Err(mismatch(v, strct, path, "[]string"));
            };
            for (i, item) in a.iter().enumerate() {
                if !(item.is_string() || item.is_null()) {
                    return Err(ShapeError {
                        field: format!("{path}[{i}]"),
                        ..mismatch(item, strct, path, "string")
                    });
                }
            }
            Ok(())
        }
        Ty::Object(go) => match v {
            Value::Object(_) => Ok(()),
            _ => Err(mismatch(v, strct, path, go)),
        },
        Ty::Struct(go, name, fields) => match v {
            Value::Object(m) => check_fields(m, name, path, fields),
            _ => Err(mismatch(v, strct, path, go)),
        },
        Ty::ObjectList(go) | Ty::StructList(go, _, _) => {
            let Value::Array(a) = v else {
                return Err(mismatch(v, strct, path, &format!("[]{go}")));
            };
            for (i, item) in a.iter().enumerate() {
                match (item, ty) {
                    (Value::Null, _) => {}
                    (Value::Object(m), Ty::StructList(_, name, fields)) => {
                        check_fields(m, name, path, fields).map_err(|e| ShapeError {
                            field: format!(
                                "{path}[{i}]{}",
                                e.field.strip_prefix(path).unwrap_or_default()
                            ),
                            ..e
                        })?
                    }
                    (Value::Object(_), _) => {}
                    (other, _) => {
                        return Err(ShapeError {
                            field: format!("{path}[{i}]"),
                            ..mismatch(other, strct, path, go)
                        })
                    }
                }
            }
            Ok(())
        }
    }
}

fn check_fields(
    m: &Map<String, Value>,
    strct: &str,
    path: &str,
    fields: &[(&str, Ty)],
) -> Result<(), ShapeError> {
    for (name, ty) in fields {
        if let Some(v) = m.get(*name) {
            check_value(v, *ty, strct, &format!("{path}.{name}"))?;
        }
    }
    Ok(())
}

/// Checks `obj`'s `metadata` (every field of `ObjectMeta`) and its
/// top-level fields against their Go types, as kube-apiserver's decoder
/// would; unknown fields are allowed (the decoder drops them).
pub fn check_shape(info: &ResourceInfo, obj: &Value) -> Result<(), ShapeError> {
    let Some(map) = obj.as_object() else {
        return Err(ShapeError {
            field: String::new(),
            message: format!(
                "json: cannot unmarshal {} into Go value of type {}",
                json_type(obj),
                info.kind
            ),
        });
    };
    if let Some(meta) = map.get("metadata") {
        let meta_ty = Ty::Struct("v1.ObjectMeta", "ObjectMeta", OBJECT_META);
        check_value(meta, meta_ty, info.kind, "metadata")?;
    }
    for (name, ty) in top_level(info) {
        if let Some(v) = map.get(*name) {
            check_value(v, *ty, info.kind, name)?;
        }
    }
    Ok(())
}

use crate::object::meta_mut;

/// Everything but `metadata` and `status`: what `generation` tracks.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Removes what clients may not set or must not store: the
/// resourceVersion (the store's revision is the truth), selfLink, and the
/// workspace annotation (put back on the way out). A Secret's write-only
/// `stringData` is merged into `data`.
pub fn strip_for_storage(obj: &mut Value) {
    fold_string_data(obj);
    let meta = meta_mut(obj);
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    let empty = match meta.get_mut("annotations") {
        Some(Value::Object(a)) => {
            a.remove(CLUSTER_ANNOTATION);
            a.is_empty()
        }
        Some(Value::Null) => true,
        _ => false,
    };
    if empty {
        meta.remove("annotations");
    }
}

/// Merges a v1 Secret's `stringData` into `data` (base64), overwriting
/// keys, and drops it: kube-apiserver does so on every write, and never
/// returns `stringData`.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let is_secret = obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && obj.get("kind").and_then(Value::as_str) == Some("Secret");
    let Some(m) = obj.as_object_mut().filter(|_| is_secret) else {
        return;
    };
    let Some(Value::Object(string_data)) = m.remove("stringData") else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Value::String(v) = v {
                let enc = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
                data.insert(k, Value::String(enc));
            }
        }
    }
}

/// Prepares a stored object for a response: its resourceVersion and the
/// workspace annotation.
pub fn for_response(mut obj: Value, revision: u64, workspace: &str) -> Value {
    let meta = meta_mut(&mut obj);
    meta.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    ann.as_object_mut()
        .expect("object")
        .insert(CLUSTER_ANNOTATION.into(), Value::String(workspace.into()));
    obj
}

/// kube-apiserver's generateName suffix: five characters from an alphabet
/// without vowels or confusable digits.
pub fn generate_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The object's labels, for selectors.
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_round_trip_keeps_the_workspace_out_of_the_store() {
        let mut o = json!({"metadata": {"name": "a", "resourceVersion": "9",
            "annotations": {CLUSTER_ANNOTATION: "root:evil"}}});
        strip_for_storage(&mut o);
        assert_eq!(o, json!({"metadata": {"name": "a"}}));
        let out = for_response(o, 12, "root:acme");
        assert_eq!(out["metadata"]["resourceVersion"], "12");
        assert_eq!(
            out["metadata"]["annotations"][CLUSTER_ANNOTATION],
            "root:acme"
        );
    }

    fn info(kind: &str) -> &'static ResourceInfo {
        super::super::resources::RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .unwrap()
    }

    #[test]
    fn shapes_are_checked_as_kube_apiservers_decoder_does() {
        let cm = info("ConfigMap");
        let body = |meta: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});
        let e = check_kind(cm, &body(json!({"name": "a", "annotations": "x"}))).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal \
             string into Go struct field ObjectMeta.metadata.annotations of type map[string]string"
        );
        let field = |v: Value| check_shape(cm, &body(v)).unwrap_err();
        let e = field(json!({"labels": {"a": 1}}));
        assert_eq!(e.field, "metadata.labels[a]");
        assert!(
            e.message
                .ends_with("ObjectMeta.metadata.labels of type string"),
            "{}",
            e.message
        );
        let e = field(json!({"generation": 1.5}));
        assert!(
            e.message.contains("cannot unmarshal number 1.5 into"),
            "{}",
            e.message
        );
        let e = field(json!({"ownerReferences": [{"uid": "u"}, {"uid": 5}]}));
        assert_eq!(e.field, "metadata.ownerReferences[1].uid");
        assert!(
            e.message
                .ends_with("OwnerReference.metadata.ownerReferences.uid of type types.UID"),
            "{}",
            e.message
        );
        assert_eq!(
            field(json!({"finalizers": "f"})).field,
            "metadata.finalizers"
        );
        assert_eq!(
            field(json!({"creationTimestamp": "yesterday"})).field,
            "metadata.creationTimestamp"
        );
        assert_eq!(field(json!("x")).field, "metadata");
        // What Go leaves at the zero value, and well-formed objects, pass.
        check_shape(
            cm,
            &json!({"metadata": {"name": "a", "creationTimestamp": null, "labels": {"a": null},
                                 "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z",
                                                    "fieldsV1": {"f:data": {}}}]},
                    "data": {"k": "v"}, "unknown": 5}),
        )
        .unwrap();
        let e = check_shape(cm, &json!({"data": {"k": 1}})).unwrap_err();
        assert_eq!(e.field, "data[k]");
        let secret = info("Secret");
        let e = check_shape(secret, &json!({"data": {"k": "not base64!"}})).unwrap_err();
        assert!(
            e.message.starts_with("illegal base64 data at input byte"),
            "{}",
            e.message
        );
        let deploy = info("Deployment");
        let e = check_shape(deploy, &json!({"spec": "x"})).unwrap_err();
        assert!(
            e.message
                .ends_with("Deployment.spec of type v1.DeploymentSpec"),
            "{}",
            e.message
        );
        // Custom resources' spec is left to their schema (422 elsewhere).
        check_shape(info("WorkloadPlacement"), &json!({"spec": "x"})).unwrap();
    }

    #[test]
    fn bodies_decode_or_say_why_not() {
        assert!(decode_body(Some("application/json"), b"{\"a\":1}").is_ok());
        assert_eq!(
            decode_body(Some("application/yaml"), b"a: 1\nb: [x]\n").unwrap(),
            json!({"a": 1, "b": ["x"]})
        );
        assert_eq!(decode_body(None, b"{").unwrap_err().code, 400);
        // Protobuf without the envelope: a bad request, not an unknown type.
        assert_eq!(
            decode_body(Some("application/vnd.kubernetes.protobuf"), b"x")
                .unwrap_err()
                .code,
            400
        );
        let s = generate_suffix();
        assert_eq!(s.len(), 5);
    }
}
