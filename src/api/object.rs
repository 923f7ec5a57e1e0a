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
    match map.get("metadata") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request("metadata must be an object")),
    }
}

/// `metadata`, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("just made an object")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Now, as Kubernetes writes times (RFC 3339, seconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

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
