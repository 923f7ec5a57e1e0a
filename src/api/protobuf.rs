//! Request bodies in Kubernetes' protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), as kubectl and client-go send
//! for built-in kinds (`kubectl create namespace|configmap|secret|
//! deployment`, `kubectl auth can-i`, ...).
//!
//! **Format.** Four magic bytes `k8s\0`, then a `runtime.Unknown` message:
//! the object's `apiVersion` and `kind` and, in `raw`, the object itself
//! encoded with the kind's message from `k8s.io/api` (`generated.proto`).
//! tmc decodes `raw` dynamically against the descriptors of those
//! `.proto` files (k8s.io/api and apimachinery v0.34.4, compiled by
//! `scripts/gen-k8s-proto.sh` into `src/api/proto/k8s-v1.34.desc`) and
//! turns it into the JSON the same object has, so everything after the
//! decoding is the JSON path.
//!
//! **JSON mapping.** Proto field names are the JSON names. Special
//! messages get their JSON form: `Time` (RFC 3339, seconds), `MicroTime`
//! (microseconds), `Duration` (Go's duration text), `IntOrString`,
//! `Quantity` (its text), `RawExtension` and `FieldsV1` (embedded JSON),
//! `ExtraValue` and `Verbs` (string lists). `bytes` become base64. Go's
//! generated marshallers write non-pointer fields even when empty; an
//! empty string or a zero `Time` is the same as absent in Go, so both are
//! left out (numbers and booleans are kept: for pointer fields such as
//! `replicas: 0` the zero matters).
//!
//! Left out: protobuf responses (tmc answers JSON, which every client also
//! accepts), protobuf watch frames, and kinds outside the descriptor set
//! (tmc's own kinds, which clients send as JSON anyway): such a body gets
//! 415 naming the kind.

use super::status::{ApiError, ApiResult};
use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage, Value as PValue};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// The magic prefix of a protobuf-encoded Kubernetes object.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!("proto/k8s-v1.34.desc")[..])
            .expect("the descriptor set compiled into tmc decodes")
    })
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg.into())
}

/// The proto package of an `apiVersion`: `v1` → `k8s.io.api.core.v1`,
/// `apps/v1` → `k8s.io.api.apps.v1`, `rbac.authorization.k8s.io/v1` →
/// `k8s.io.api.rbac.v1`; `meta.k8s.io`-ish kinds such as DeleteOptions
/// live in apimachinery's package.
fn message_names(api_version: &str, kind: &str) -> Vec<String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    vec![
        format!("k8s.io.api.{short}.{version}.{kind}"),
        format!("{META}.{kind}"),
    ]
}

/// Decodes a protobuf request body into the object's JSON.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("protobuf body without the k8s magic prefix"))?;
    let unknown_desc = pool()
        .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
        .expect("runtime.Unknown is in the descriptor set");
    let unknown = DynamicMessage::decode(unknown_desc, rest)
        .map_err(|e| bad(format!("malformed protobuf envelope: {e}")))?;
    let text = |m: &DynamicMessage, f: &str| -> String {
        m.get_field_by_name(f)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned())
        .ok_or_else(|| bad("protobuf envelope without typeMeta"))?;
    let api_version = text(&type_meta, "apiVersion");
    let kind = text(&type_meta, "kind");
    let encoding = text(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(bad(format!(
            "protobuf content encoding {encoding:?} is not supported"
        )));
    }
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let desc = message_names(&api_version, &kind)
        .iter()
        .find_map(|n| pool().get_message_by_name(n))
        .ok_or_else(|| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in protobuf, which tmc decodes only for \
                     built-in kinds; {kind} ({api_version}) must be sent as application/json"
                ),
            )
        })?;
    let mut budget = MAX_FIELDS;
    count_fields(&desc, &raw, &mut budget, 0)?;
    let msg = DynamicMessage::decode(desc, raw.as_ref())
        .map_err(|e| bad(format!("malformed protobuf {kind}: {e}")))?;
    let mut obj = match message(&msg) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

/// The most fields (every occurrence, every element of a packed list) a
/// protobuf body may hold. Each becomes a decoded value and a JSON value,
/// a hundred bytes or more, from as little as two bytes on the wire: 3 MiB
/// of empty messages would otherwise take hundreds of megabytes. A real
/// object (a ConfigMap with ten thousand keys is three fields per key) is
/// far below it.
pub const MAX_FIELDS: usize = 100_000;

/// Nesting deeper than this is refused (prost-reflect stops at 100 too).
const MAX_DEPTH: usize = 100;

/// Walks the wire form of a `desc` message without building it, taking
/// one from `budget` per field; 413 when the budget runs out, 400 for
/// what is not protobuf.
fn count_fields(
    desc: &prost_reflect::MessageDescriptor,
    mut buf: &[u8],
    budget: &mut usize,
    depth: usize,
) -> ApiResult<()> {
    use prost_reflect::prost::encoding::{decode_key, decode_varint, WireType};
    use prost_reflect::Kind;
    let malformed = |e: &dyn std::fmt::Display| bad(format!("malformed protobuf: {e}"));
    if depth > MAX_DEPTH {
        return Err(bad("protobuf nesting is deeper than 100"));
    }
    fn take(budget: &mut usize, n: usize) -> ApiResult<()> {
        if n > *budget {
            return Err(ApiError::too_large(format!(
                "the protobuf body holds more than {MAX_FIELDS} fields"
            )));
        }
        *budget -= n;
        Ok(())
    }
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(|e| malformed(&e))?;
        take(budget, 1)?;
        match wire {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|e| malformed(&e))?;
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                if buf.len() < n {
                    return Err(bad("malformed protobuf: truncated field"));
                }
                buf = &buf[n..];
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|e| malformed(&e))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len())
                    .ok_or_else(|| bad("malformed protobuf: a length past the end"))?;
                let (inner, rest) = buf.split_at(len);
                buf = rest;
                match desc.get_field(tag).map(|f| (f.kind(), f.is_list())) {
                    Some((Kind::Message(m), _)) => count_fields(&m, inner, budget, depth + 1)?,
                    // A packed list: at least one byte per element.
                    Some((Kind::String | Kind::Bytes, _)) | None => {}
                    Some((_, true)) => take(budget, len)?,
                    Some((_, false)) => {}
                }
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(bad("malformed protobuf: groups are not used by Kubernetes"));
            }
        }
    }
    Ok(())
}

/// The RFC 3339 form of `seconds` and `nanos` since the epoch, as Go's
/// `time.Unix(seconds, nanos)` reads them: nanoseconds outside
/// `[0, 1e9)`, negative ones too, carry into the seconds. `micro` keeps
/// microseconds (`MicroTime`); otherwise whole seconds (`Time`). A time
/// chrono cannot represent (the sender's values are arbitrary) is left out.
fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Value {
    const NANOS: i64 = 1_000_000_000;
    let Some(secs) = seconds.checked_add(nanos.div_euclid(NANOS)) else {
        return Value::Null;
    };
    // In [0, 1e9): fits a u32.
    let sub = nanos.rem_euclid(NANOS) as u32;
    let sub = if micro { sub / 1000 * 1000 } else { 0 };
    match chrono::DateTime::from_timestamp(secs, sub) {
        Some(t) => Value::String(if micro {
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        } else {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        }),
        None => Value::Null,
    }
}

/// Go's `time.Duration.String()`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (v, unit) = if n < 1_000 {
            (n as f64, "ns")
        } else if n < 1_000_000 {
            (n as f64 / 1e3, "µs")
        } else {
            (n as f64 / 1e6, "ms")
        };
        return format!("{sign}{v}{unit}");
    }
    let h = n / 3_600_000_000_000;
    let m = (n / 60_000_000_000) % 60;
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h{m}m"));
    } else if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

fn int(v: Option<std::borrow::Cow<'_, PValue>>) -> i64 {
    match v.as_deref() {
        Some(PValue::I64(i)) => *i,
        Some(PValue::I32(i)) => *i as i64,
        Some(PValue::U32(i)) => *i as i64,
        Some(PValue::U64(i)) => *i as i64,
        _ => 0,
    }
}

fn embedded_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The JSON of one message, with the special forms of the module docs.
/// `Null` means "leave the field out".
fn message(m: &DynamicMessage) -> Value {
    let name = m.descriptor().full_name().to_string();
    let field = |f: &str| m.get_field_by_name(f);
    match name.strip_prefix(META).map(|n| n.trim_start_matches('.')) {
        Some("Time") => {
            let (s, n) = (int(field("seconds")), int(field("nanos")));
            return if s == 0 && n == 0 {
                Value::Null
            } else {
                rfc3339(s, n, false)
            };
        }
        Some("MicroTime") => {
            let (s, n) = (int(field("seconds")), int(field("nanos")));
            return if s == 0 && n == 0 {
                Value::Null
            } else {
                rfc3339(s, n, true)
            };
        }
        Some("Duration") => return Value::String(go_duration(int(field("duration")))),
        Some("FieldsV1") => {
            return match field("Raw").as_deref() {
                Some(PValue::Bytes(b)) => embedded_json(b),
                _ => Value::Null,
            }
        }
        Some("Verbs") => return list_items(m),
        _ => {}
    }
    match name.as_str() {
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            return if int(field("type")) == 1 {
                Value::String(
                    field("strVal")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                )
            } else {
                Value::from(int(field("intVal")))
            };
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            return Value::String(
                field("string")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            );
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
            return match field("raw").as_deref() {
                Some(PValue::Bytes(b)) => embedded_json(b),
                _ => Value::Null,
            };
        }
        n if n.ends_with(".ExtraValue") => return list_items(m),
        _ => {}
    }
    let mut out = Map::new();
    for (f, v) in m.fields() {
        let j = value(v);
        let empty = match &j {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if empty {
            continue;
        }
        match j {
            // An embedded Go struct (`json:",inline"`): its fields are the
            // parent's in JSON.
            Value::Object(inner) if INLINE.contains(&(name.as_str(), f.name())) => {
                for (k, v) in inner {
                    out.entry(k).or_insert(v);
                }
            }
            j => {
                out.insert(f.name().to_string(), j);
            }
        }
    }
    Value::Object(out)
}

/// Embedded Go structs (`json:",inline"`) among the kinds tmc decodes: a
/// field of their own in protobuf, their fields the parent's in JSON.
/// (From `k8s.io/api` v0.34.4's `types.go`; `TypeMeta`, `ObjectMeta` and
/// `ListMeta` are not embedded in the protobuf messages.)
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
];

fn list_items(m: &DynamicMessage) -> Value {
    match m.get_field_by_name("items").as_deref() {
        Some(PValue::List(items)) => Value::Array(items.iter().map(value).collect()),
        _ => Value::Array(Vec::new()),
    }
}

fn value(v: &PValue) -> Value {
    match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(i) => Value::from(*i),
        PValue::I64(i) => Value::from(*i),
        PValue::U32(i) => Value::from(*i),
        PValue::U64(i) => Value::from(*i),
        PValue::F32(f) => Value::from(*f as f64),
        PValue::F64(f) => Value::from(*f),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => Value::from(*n),
        PValue::Message(m) => message(m),
        PValue::List(items) => Value::Array(items.iter().map(value).collect()),
        PValue::Map(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(i) => i.to_string(),
                    MapKey::I64(i) => i.to_string(),
                    MapKey::U32(i) => i.to_string(),
                    MapKey::U64(i) => i.to_string(),
                };
                let v = value(v);
                out.insert(key, if v.is_null() { Value::Null } else { v });
            }
            Value::Object(out)
        }
    }
}

/// `raw`, a `kind` message's bytes, wrapped in the envelope client-go
/// sends (magic prefix, `runtime.Unknown`).
pub(crate) fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use prost_reflect::prost::Message as _;
    let message = |name: &str| {
        DynamicMessage::new(
            pool()
                .get_message_by_name(name)
                .expect("the message is in the descriptor set"),
        )
    };
    let mut tm = message("k8s.io.apimachinery.pkg.runtime.TypeMeta");
    tm.set_field_by_name("apiVersion", PValue::String(api_version.into()));
    tm.set_field_by_name("kind", PValue::String(kind.into()));
    let mut u = message("k8s.io.apimachinery.pkg.runtime.Unknown");
    u.set_field_by_name("typeMeta", PValue::Message(tm));
    u.set_field_by_name("raw", PValue::Bytes(raw.into()));
    let mut out = MAGIC.to_vec();
    out.extend(u.encode_to_vec());
    out
}

/// Protobuf bodies as client-go sends them, with the times in them set to
/// `seconds` and `nanos`: seeds for the fuzzer ([`super::fuzz`]).
pub(crate) fn sample_bodies(seconds: i64, nanos: i32) -> Vec<Vec<u8>> {
    use prost_reflect::prost::Message as _;
    let message = |name: &str| {
        DynamicMessage::new(
            pool()
                .get_message_by_name(name)
                .expect("the message is in the descriptor set"),
        )
    };
    let time = |name: &str| {
        let mut t = message(&format!("{META}.{name}"));
        t.set_field_by_name("seconds", PValue::I64(seconds));
        t.set_field_by_name("nanos", PValue::I32(nanos));
        PValue::Message(t)
    };
    let mut meta = message(&format!("{META}.ObjectMeta"));
    meta.set_field_by_name("name", PValue::String("x".into()));
    meta.set_field_by_name("creationTimestamp", time("Time"));
    meta.set_field_by_name(
        "labels",
        PValue::Map([(MapKey::String("a".into()), PValue::String("b".into()))].into()),
    );
    let mut cm = message("k8s.io.api.core.v1.ConfigMap");
    cm.set_field_by_name("metadata", PValue::Message(meta.clone()));
    cm.set_field_by_name(
        "binaryData",
        PValue::Map(
            [(
                MapKey::String("k".into()),
                PValue::Bytes(vec![0, 1, 2].into()),
            )]
            .into(),
        ),
    );
    let mut event = message("k8s.io.api.core.v1.Event");
    event.set_field_by_name("metadata", PValue::Message(meta.clone()));
    event.set_field_by_name("eventTime", time("MicroTime"));
    event.set_field_by_name("count", PValue::I32(nanos));
    let mut ru = message("k8s.io.api.apps.v1.RollingUpdateDeployment");
    let mut pct = message("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
    pct.set_field_by_name("type", PValue::I64(seconds));
    pct.set_field_by_name("strVal", PValue::String("25%".into()));
    ru.set_field_by_name("maxSurge", PValue::Message(pct));
    let mut strategy = message("k8s.io.api.apps.v1.DeploymentStrategy");
    strategy.set_field_by_name("rollingUpdate", PValue::Message(ru));
    let mut spec = message("k8s.io.api.apps.v1.DeploymentSpec");
    spec.set_field_by_name("replicas", PValue::I32(nanos));
    spec.set_field_by_name("strategy", PValue::Message(strategy));
    spec.set_field_by_name("minReadySeconds", PValue::I32(nanos));
    let mut d = message("k8s.io.api.apps.v1.Deployment");
    d.set_field_by_name("metadata", PValue::Message(meta));
    d.set_field_by_name("spec", PValue::Message(spec));
    let mut opts = message(&format!("{META}.DeleteOptions"));
    opts.set_field_by_name("gracePeriodSeconds", PValue::I64(seconds));
    vec![
        envelope("v1", "ConfigMap", cm.encode_to_vec()),
        envelope("v1", "Event", event.encode_to_vec()),
        envelope("apps/v1", "Deployment", d.encode_to_vec()),
        envelope("v1", "DeleteOptions", opts.encode_to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::prost::Message as _;
    use serde_json::json;

    fn msg(name: &str) -> DynamicMessage {
        DynamicMessage::new(pool().get_message_by_name(name).unwrap())
    }

    #[test]
    fn a_secret_with_bytes_and_empty_go_fields() {
        let mut meta = msg("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        meta.set_field_by_name("name", PValue::String("s".into()));
        meta.set_field_by_name("namespace", PValue::String("default".into()));
        // Go writes these although they are empty.
        meta.set_field_by_name("generateName", PValue::String(String::new()));
        meta.set_field_by_name(
            "creationTimestamp",
            PValue::Message(msg("k8s.io.apimachinery.pkg.apis.meta.v1.Time")),
        );
        let mut s = msg("k8s.io.api.core.v1.Secret");
        s.set_field_by_name("metadata", PValue::Message(meta));
        let mut data = std::collections::HashMap::new();
        data.insert(
            MapKey::String("password".into()),
            PValue::Bytes(b"hunter2".to_vec().into()),
        );
        s.set_field_by_name("data", PValue::Map(data));
        s.set_field_by_name("type", PValue::String("Opaque".into()));
        let body = envelope("v1", "Secret", s.encode_to_vec());
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s", "namespace": "default"},
                   "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn a_deployment_keeps_zero_replicas_and_int_or_string() {
        let mut spec = msg("k8s.io.api.apps.v1.DeploymentSpec");
        spec.set_field_by_name("replicas", PValue::I32(0));
        let mut strategy = msg("k8s.io.api.apps.v1.DeploymentStrategy");
        let mut ru = msg("k8s.io.api.apps.v1.RollingUpdateDeployment");
        let mut pct = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        pct.set_field_by_name("type", PValue::I64(1));
        pct.set_field_by_name("strVal", PValue::String("25%".into()));
        let mut one = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        one.set_field_by_name("intVal", PValue::I32(1));
        ru.set_field_by_name("maxSurge", PValue::Message(pct));
        ru.set_field_by_name("maxUnavailable", PValue::Message(one));
        strategy.set_field_by_name("rollingUpdate", PValue::Message(ru));
        spec.set_field_by_name("strategy", PValue::Message(strategy));
        let mut d = msg("k8s.io.api.apps.v1.Deployment");
        d.set_field_by_name("spec", PValue::Message(spec));
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
    }

    #[test]
    fn embedded_structs_are_inlined_as_in_json() {
        for (message, field) in INLINE {
            let d = pool()
                .get_message_by_name(message)
                .unwrap_or_else(|| panic!("{message} is in the descriptor set"));
            assert!(d.get_field_by_name(field).is_some(), "{message}.{field}");
        }
        // An Ingress rule's host and paths, a volume's ConfigMap by name.
        let mut path = msg("k8s.io.api.networking.v1.HTTPIngressPath");
        path.set_field_by_name("path", PValue::String("/".into()));
        let mut http = msg("k8s.io.api.networking.v1.HTTPIngressRuleValue");
        http.set_field_by_name("paths", PValue::List(vec![PValue::Message(path)]));
        let mut value = msg("k8s.io.api.networking.v1.IngressRuleValue");
        value.set_field_by_name("http", PValue::Message(http));
        let mut rule = msg("k8s.io.api.networking.v1.IngressRule");
        rule.set_field_by_name("host", PValue::String("a.example".into()));
        rule.set_field_by_name("ingressRuleValue", PValue::Message(value));
        let mut spec = msg("k8s.io.api.networking.v1.IngressSpec");
        spec.set_field_by_name("rules", PValue::List(vec![PValue::Message(rule)]));
        let mut ing = msg("k8s.io.api.networking.v1.Ingress");
        ing.set_field_by_name("spec", PValue::Message(spec));
        let v = decode(&envelope(
            "networking.k8s.io/v1",
            "Ingress",
            ing.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["spec"]["rules"],
            serde_json::json!([{"host": "a.example", "http": {"paths": [{"path": "/"}]}}])
        );
        let mut lor = msg("k8s.io.api.core.v1.LocalObjectReference");
        lor.set_field_by_name("name", PValue::String("cfg".into()));
        let mut cm = msg("k8s.io.api.core.v1.ConfigMapVolumeSource");
        cm.set_field_by_name("localObjectReference", PValue::Message(lor));
        let mut src = msg("k8s.io.api.core.v1.VolumeSource");
        src.set_field_by_name("configMap", PValue::Message(cm));
        let mut vol = msg("k8s.io.api.core.v1.Volume");
        vol.set_field_by_name("name", PValue::String("v".into()));
        vol.set_field_by_name("volumeSource", PValue::Message(src));
        assert_eq!(
            message(&vol),
            serde_json::json!({"name": "v", "configMap": {"name": "cfg"}})
        );
    }

    #[test]
    fn times_quantities_and_durations() {
        let mut t = msg("k8s.io.apimachinery.pkg.apis.meta.v1.Time");
        t.set_field_by_name("seconds", PValue::I64(1_700_000_000));
        assert_eq!(message(&t), json!("2023-11-14T22:13:20Z"));
        let mut q = msg("k8s.io.apimachinery.pkg.api.resource.Quantity");
        q.set_field_by_name("string", PValue::String("500m".into()));
        assert_eq!(message(&q), json!("500m"));
        assert_eq!(go_duration(90 * 60 * 1_000_000_000), "1h30m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(2_000_000), "2ms");
    }

    /// 3 MiB of empty messages would decode into hundreds of megabytes:
    /// the fields are counted on the wire first. A big real object passes.
    #[test]
    fn a_body_of_countless_fields_is_refused_before_decoding() {
        // ConfigMap.metadata (field 1) holding many empty `finalizers`
        // strings (field 14): two bytes each.
        let mut meta = Vec::new();
        for _ in 0..(MAX_FIELDS + 1) {
            meta.extend_from_slice(&[14 << 3 | 2, 0]);
        }
        let mut cm = vec![1 << 3 | 2];
        prost_reflect::prost::encoding::encode_varint(meta.len() as u64, &mut cm);
        cm.extend(meta);
        let e = decode(&envelope("v1", "ConfigMap", cm))
            .unwrap_err()
            .to_status();
        assert_eq!(e["code"], 413, "{e}");
        let mut data = std::collections::HashMap::new();
        for i in 0..10_000 {
            data.insert(
                MapKey::String(format!("key-{i}")),
                PValue::String("value".into()),
            );
        }
        let mut cm = msg("k8s.io.api.core.v1.ConfigMap");
        cm.set_field_by_name("data", PValue::Map(data));
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(v["data"].as_object().unwrap().len(), 10_000);
    }

    /// A sender's seconds and nanos are arbitrary: negative or oversized
    /// nanos carry into the seconds as Go's `time.Unix` does, and times
    /// past what can be represented are left out. None panics (a negative
    /// `MicroTime.nanos` once overflowed a `u32`).
    #[test]
    fn hostile_times_carry_or_are_left_out() {
        let micro = |s: i64, n: i32| {
            let mut t = msg("k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime");
            t.set_field_by_name("seconds", PValue::I64(s));
            t.set_field_by_name("nanos", PValue::I32(n));
            message(&t)
        };
        assert_eq!(
            micro(1_700_000_000, -1),
            json!("2023-11-14T22:13:19.999999Z")
        );
        assert_eq!(
            micro(1_700_000_000, -1_500_000_000),
            json!("2023-11-14T22:13:18.500000Z")
        );
        assert_eq!(
            micro(1_700_000_000, 2_000_000_123),
            json!("2023-11-14T22:13:22.000000Z")
        );
        assert_eq!(
            micro(1_700_000_000, 1_000),
            json!("2023-11-14T22:13:20.000001Z")
        );
        assert_eq!(micro(i64::MAX, i32::MAX), Value::Null);
        assert_eq!(micro(i64::MIN, i32::MIN), Value::Null);
        let mut t = msg("k8s.io.apimachinery.pkg.apis.meta.v1.Time");
        t.set_field_by_name("seconds", PValue::I64(1_700_000_000));
        t.set_field_by_name("nanos", PValue::I32(-5));
        assert_eq!(message(&t), json!("2023-11-14T22:13:19Z"));
        t.set_field_by_name("seconds", PValue::I64(i64::MIN));
        assert_eq!(message(&t), Value::Null);
    }

    #[test]
    fn bad_bodies_are_refused_clearly() {
        let e = decode(b"nope").unwrap_err().to_status();
        assert_eq!(e["code"], 400);
        assert!(e["message"].as_str().unwrap().contains("magic"));
        let e = decode(b"k8s\0\xff\xff\xff").unwrap_err().to_status();
        assert_eq!(e["code"], 400, "{e}");
        let e = decode(&envelope(
            "tmc.kcp.io/v1alpha1",
            "WorkloadPlacement",
            vec![],
        ))
        .unwrap_err()
        .to_status();
        assert_eq!(e["code"], 415, "{e}");
        assert!(e["message"].as_str().unwrap().contains("WorkloadPlacement"));
        let e = decode(&envelope("v1", "ConfigMap", vec![0xff, 0xff]))
            .unwrap_err()
            .to_status();
        assert_eq!(e["code"], 400, "{e}");
    }
}
