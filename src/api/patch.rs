//! PATCH bodies: the three patch types of kube-apiserver, applied to a live
//! object.
//!
//! The `Content-Type` of a PATCH request picks the type ([`PatchType`]):
//!
//! - `application/json-patch+json`: a JSON patch (RFC 6902), a list of
//!   `add`/`remove`/`replace`/`move`/`copy`/`test` operations on JSON
//!   pointers. Applied with the `json-patch` crate; all operations or none.
//! - `application/merge-patch+json`: a JSON merge patch (RFC 7386): objects
//!   merge recursively, `null` deletes, anything else (lists too) replaces.
//! - `application/strategic-merge-patch+json`: a strategic merge patch, the
//!   merge patch of kubectl. Like a merge patch, except that lists marked in
//!   the kind's [`MergeSchema`] merge: lists of objects by a merge key
//!   (containers by `name`), lists of scalars as sets (`finalizers`). The
//!   patch may carry directives:
//!   - `$patch: replace` in a map replaces the map; in a list item,
//!     replaces the list with the patch's items; `$patch: delete` in a map
//!     empties it, in a list item deletes the item with that merge key;
//!   - `$retainKeys: [..]` clears the keys of the map not listed
//!     (kubectl sends it for `spec.strategy` and volumes);
//!   - `$setElementOrder/<field>: [..]` gives the order of the merged list:
//!     items named there first in that order, other live items kept in
//!     their relative order, as `normalizeElementOrder` does;
//!   - `$deleteFromPrimitiveList/<field>: [..]` removes scalars from a set
//!     list.
//!
//!   Kinds without a schema (custom resources, tmc's own kinds) refuse it
//!   with 415, as kube-apiserver does for CRDs.
//! - `application/apply-patch+yaml`: server-side apply, done by
//!   [`super::apply`], not here.
//!
//! The strategic merge follows `k8s.io/apimachinery/pkg/util/strategicpatch`
//! (`mergeMap`, `mergeSlice`, `mergePatchIntoOriginal`,
//! `normalizeElementOrder`) with its server options (parallel lists merged,
//! unmatched nulls ignored).
//!
//! Errors map to kube-apiserver's: a body that does not parse or a
//! malformed directive → 400 BadRequest; a JSON patch operation that fails
//! (`test` mismatch, missing path) → 422 Invalid; a JSON patch of more than
//! 10 000 operations → 413 RequestEntityTooLarge; strategic merge on a kind
//! without schema → 415 UnsupportedMediaType. See [`PatchError::code`].
//!
//! # Implementation caveats
//! - The result is not validated or defaulted; a JSON patch may even turn
//!   the object into a non-object. The caller checks the result.
//! - kube-apiserver decodes the strategic merge result into Go structs,
//!   which drops stray directives; here directives are stripped as the
//!   merge goes (new map values and list items are merged into an empty
//!   value), with the same effect for well-formed patches.
//! - `$patch: merge` in a map is accepted as the default merge (Go rejects
//!   it); in a list it is refused, as in Go.
//! - Structural errors Go reports as 500 (e.g. a list item without its
//!   merge key) are 400 here.
//! - Only the built-in kinds in [`MergeSchema::for_kind`] accept strategic
//!   merge patches; any other built-in kind gets 415 too.

pub use super::schema::GroupKind;
use super::schema::{child_path, item_path, MergeSchema, Rule};
use serde_json::{Map, Value};

/// The kind of a PATCH body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters such as
    /// `charset` ignored), or `None` for an unknown type (415).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is malformed: not JSON, not a patch, or a bad directive.
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well formed but cannot be applied to this object.
    #[error("the server rejected our request due to an error in our request: {0}")]
    Invalid(String),
    /// A JSON patch with more operations than kube-apiserver allows
    /// ([`MAX_JSON_PATCH_OPERATIONS`]).
    #[error("{0}")]
    RequestEntityTooLarge(String),
    /// Strategic merge patch on a kind without a strategic schema.
    #[error("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")]
    UnsupportedMediaType,
}

impl PatchError {
    /// The HTTP status code kube-apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
            PatchError::RequestEntityTooLarge(_) => 413,
            PatchError::UnsupportedMediaType => 415,
        }
    }

    /// The `reason` of the Kubernetes `Status`.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Invalid(_) => "Invalid",
            PatchError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            PatchError::UnsupportedMediaType => "UnsupportedMediaType",
        }
    }
}

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError::BadRequest(msg.into())
}

/// Applies a PATCH body of type `ty` to `live` and returns the patched
/// object. `kind` selects the strategic merge schema. [`PatchType::Apply`]
/// is refused: server-side apply is [`super::apply::server_side_apply`].
pub fn apply_patch(
    kind: &GroupKind,
    live: &Value,
    ty: PatchType,
    body: &[u8],
) -> Result<Value, PatchError> {
    match ty {
        PatchType::Json => apply_json_patch(live, body),
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| bad(format!("invalid JSON merge patch: {e}")))?;
            if !patch.is_object() {
                return Err(bad("a JSON merge patch must be a JSON object"));
            }
            let mut doc = live.clone();
            apply_merge_patch(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            let schema = MergeSchema::for_kind(kind).ok_or(PatchError::UnsupportedMediaType)?;
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| bad(format!("invalid JSON document: {e}")))?;
            let Value::Object(patch) = patch else {
                return Err(bad(
                    "invalid JSON document: a strategic merge patch must be a JSON object",
                ));
            };
            let Value::Object(original) = live.clone() else {
                return Err(bad("the live object is not a JSON object"));
            };
            Ok(Value::Object(strategic_merge(schema, original, patch)?))
        }
        PatchType::Apply => Err(bad(
            "apply patches are server-side apply: use apply::server_side_apply",
        )),
    }
}

/// The most operations a JSON patch may have, as in kube-apiserver.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes a JSON patch's `copy` operations may copy, together, as
/// kube-apiserver's `JSONPatchMaxCopyBytes` (3 MiB). Without it, forty
/// copies of an object into itself ask for 2^40 times its size.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

fn apply_json_patch(live: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON patch: {e}")))?;
    if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::RequestEntityTooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            patch.0.len()
        )));
    }
    // Operation by operation on a copy (all or none: a failure drops the
    // copy), so that every `copy` is weighed before it is made. `add`,
    // `replace` and `test` carry their values in the body, already bounded;
    // `move` and `remove` do not grow the document.
    let mut doc = live.clone();
    let mut copied = 0usize;
    for (i, op) in patch.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            if let Some(v) = doc.pointer(c.from.as_str()) {
                copied += json_size(v, MAX_JSON_PATCH_COPY_BYTES - copied + 1);
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(PatchError::RequestEntityTooLarge(format!(
                        "JSON patch operation {i} (copy) would copy more than \
                         {MAX_JSON_PATCH_COPY_BYTES} bytes in all"
                    )));
                }
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            let (op, detail) = match op {
                json_patch::PatchOperation::Add(_) => ("add", String::new()),
                json_patch::PatchOperation::Remove(_) => ("remove", String::new()),
                json_patch::PatchOperation::Replace(_) => ("replace", String::new()),
                json_patch::PatchOperation::Move(_) => ("move", String::new()),
                json_patch::PatchOperation::Copy(_) => ("copy", String::new()),
                json_patch::PatchOperation::Test(t) => ("test", format!(" (expected {})", t.value)),
            };
            PatchError::Invalid(format!(
                "JSON patch operation {i} ({op}) failed at path \"{}\": {}{detail}",
                e.path, e.kind
            ))
        })?;
    }
    Ok(doc)
}

/// The length of `v` as compact JSON, counted only up to `limit` (the
/// count stops early past it), so weighing costs at most `limit` steps.
fn json_size(v: &Value, limit: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if total > limit {
            break;
        }
        total += match v {
            Value::Null => 4,
            Value::Bool(b) => 4 + usize::from(!b),
            // An upper bound of the text of a number is plenty here.
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                a.len() + 1
            }
            Value::Object(m) => {
                for (k, x) in m {
                    total += k.len() + 3;
                    if total > limit {
                        break;
                    }
                    stack.push(x);
                }
                m.len() + 1
            }
        };
    }
    total
}

use crate::object::merge::apply_merge_patch;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Equality of JSON values as Go's `==` on decoded JSON: numbers compare
/// as floats (`80` equals `80.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The merge key value of a list item (`None` when absent or not a map).
fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    bad(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

/// What the items of a list are; all items of a merged list must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    /// Objects: merged by key.
    Map,
    /// Strings. Lists of scalars merge as sets.
    String,
    /// Numbers.
    Number,
    /// Booleans.
    Bool,
    /// Nulls.
    Null,
}

fn element_kind(lists: &[&[Value]]) -> Result<Option<ElementKind>, PatchError> {
    let mut seen = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = match v {
            Value::Object(_) => ElementKind::Map,
            Value::Array(_) => return Err(bad("lists of lists are not supported")),
            Value::String(_) => ElementKind::String,
            Value::Number(_) => ElementKind::Number,
            Value::Bool(_) => ElementKind::Bool,
            Value::Null => ElementKind::Null,
        };
        match seen {
            None => seen = Some(k),
            Some(s) if s != k => return Err(bad("list element types are not identical")),
            Some(_) => {}
        }
    }
    Ok(seen)
}

/// What identifies a list item for strategic merge: its merge key's value
/// (maps) or its own value (scalars), under [`json_eq`]: two items are the
/// same exactly when their identities are equal, so lists are matched
/// through hash maps in linear time (Go's `strategicpatch` searches the
/// list for every item: quadratic, which a 3 MiB patch turns into minutes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    /// A map item without the merge key (they all match each other).
    Absent,
    /// A number, by its `f64` value (as Go's decoded JSON compares).
    Number(u64),
    /// Any other value, in a canonical text: object keys sorted, nested
    /// numbers as written (nested values compare with `==`).
    Other(String),
}

fn identity(item: &Value, key: Option<&str>) -> Identity {
    let v = match key {
        Some(k) => match key_of(item, k) {
            Some(v) => v,
            None => return Identity::Absent,
        },
        None => item,
    };
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // -0.0 == 0.0 in Go too.
            Identity::Number(if f == 0.0 { 0 } else { f.to_bits() })
        }
        other => {
            let mut out = String::new();
            canonical(other, &mut out);
            Identity::Other(out)
        }
    }
}

/// `v` as JSON text with object keys sorted: equal for `==`-equal values.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        // Nested numbers compare with `==`: -0.0 equals 0.0.
        Value::Number(n) if n.is_f64() && n.as_f64() == Some(0.0) => out.push_str("0.0"),
        other => out.push_str(&other.to_string()),
    }
}

/// The first position of every identity in a list (`index` in
/// strategicpatch, answered by lookup).
struct Positions(std::collections::HashMap<Identity, usize>);

impl Positions {
    fn of(list: &[Value], key: Option<&str>) -> Positions {
        let mut map = std::collections::HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            map.entry(identity(v, key)).or_insert(i);
        }
        Positions(map)
    }

    fn get(&self, item: &Value, key: Option<&str>) -> Option<usize> {
        self.0.get(&identity(item, key)).copied()
    }
}

/// Splits `merged` into the items present in `by` and the others.
fn partition(merged: Vec<Value>, by: &[Value], key: Option<&str>) -> (Vec<Value>, Vec<Value>) {
    let by = Positions::of(by, key);
    merged.into_iter().partition(|v| by.get(v, key).is_some())
}

/// Sorts `items` by their position in `order`, items not in it last; stable
/// and linear (a bucket per position).
fn sort_by_order(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let positions = Positions::of(order, key);
    let mut buckets: Vec<Vec<Value>> = Vec::new();
    buckets.resize_with(order.len() + 1, Vec::new);
    for v in items {
        let at = positions.get(&v, key).unwrap_or(order.len());
        buckets[at].push(v);
    }
    buckets.into_iter().flatten().collect()
}

/// `normalizeElementOrder`: patch items in the patch's order, server-only
/// items in the live order, then interleaved by the live order.
fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    if let Some(k) = key {
        for v in patch_items
            .iter()
            .chain(&server_only)
            .chain(patch_order)
            .chain(server_order)
        {
            if key_of(v, k).is_none() {
                return Err(no_merge_key(v, k));
            }
        }
    }
    let patch_items = sort_by_order(patch_items, patch_order, key);
    let server_only = sort_by_order(server_only, server_order, key);
    let live = Positions::of(server_order, key);
    // `mergeSortedSlice`: a server-only item goes before a patch item only
    // when both are in the live list and it comes first there.
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (live.get(l, key), live.get(r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Applies the strategic merge patch `patch` to `original` under `schema`.
fn strategic_merge(
    schema: &MergeSchema,
    original: Map<String, Value>,
    patch: Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    Strategic { schema }.merge_map(original, patch, "")
}

/// A strategic merge against one kind's schema.
struct Strategic<'a> {
    /// The kind's merge rules.
    schema: &'a MergeSchema,
}

impl Strategic<'_> {
    /// `mergeMap`: merges `patch` into `original`; `path` is the schema path.
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &str,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.remove(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => return self.merge_map(Map::new(), patch, path),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => return Err(bad(format!("Unknown patch type: {directive} in map"))),
            }
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_ordered_lists(&mut original, &mut patch, path)?;
        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let Value::Array(to_delete) = v else {
                    return Err(bad("invalid patch format of primitive list"));
                };
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    let to_delete: std::collections::HashSet<Identity> =
                        to_delete.iter().map(|d| identity(d, None)).collect();
                    items.retain(|x| !to_delete.contains(&identity(x, None)));
                }
                continue;
            }
            if v.is_null() {
                original.remove(&k);
                continue;
            }
            let child = child_path(path, &k);
            let merged = match (original.remove(&k), v) {
                (Some(Value::Object(o)), Value::Object(p)) => {
                    Some(Value::Object(self.merge_map(o, p, &child)?))
                }
                (Some(Value::Array(o)), Value::Array(p)) => {
                    Some(Value::Array(self.merge_list_field(o, p, &child)?))
                }
                (_, v) => self.fresh(v, &child)?,
            };
            if let Some(merged) = merged {
                original.insert(k, merged);
            }
        }
        Ok(original)
    }

    /// A patch value for a field the original lacks (or has with another
    /// type): directives and nulls resolved against nothing. `None` when it
    /// deletes itself.
    fn fresh(&self, v: Value, path: &str) -> Result<Option<Value>, PatchError> {
        Ok(match v {
            Value::Object(p) => {
                if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                    None
                } else {
                    Some(Value::Object(self.merge_map(Map::new(), p, path)?))
                }
            }
            Value::Array(p) => Some(Value::Array(self.merge_list_field(Vec::new(), p, path)?)),
            v => Some(v),
        })
    }

    /// A list field: merged if the schema says so, else replaced.
    fn merge_list_field(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &str,
    ) -> Result<Vec<Value>, PatchError> {
        match self.schema.rule(path) {
            Some(rule) if rule.merges_list() => self.merge_list(original, patch, path, rule),
            _ => Ok(patch),
        }
    }

    /// `mergeSlice`: merges a list with merge strategy.
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &str,
        rule: Rule,
    ) -> Result<Vec<Value>, PatchError> {
        let Some(kind) = element_kind(&[&original, &patch])? else {
            return Ok(original);
        };
        match kind {
            ElementKind::String | ElementKind::Number | ElementKind::Bool | ElementKind::Null => {
                let mut seen = std::collections::HashSet::new();
                let mut merged: Vec<Value> = Vec::new();
                for v in original.iter().chain(&patch) {
                    if seen.insert(identity(v, None)) {
                        merged.push(v.clone());
                    }
                }
                let (patch_items, server_only) = partition(merged, &patch, None);
                normalize_order(patch_items, server_only, &patch, &original, None)
            }
            ElementKind::Map => {
                let Rule::MapList { patch_key: key, .. } = rule else {
                    return Err(bad(format!(
                        "cannot merge lists without merge key for {path}"
                    )));
                };
                let (original, patch) = self.special_elements(original, patch, key, path)?;
                let merged = self.merge_items(original.clone(), &patch, key, path)?;
                let (patch_items, server_only) = partition(merged, &patch, Some(key));
                normalize_order(patch_items, server_only, &patch, &original, Some(key))
            }
        }
    }

    /// `mergeSliceWithSpecialElements`: applies the `$patch` items of a
    /// list; returns the live list and the patch items left to merge.
    fn special_elements(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        path: &str,
    ) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
        let mut rest = Vec::new();
        let mut replace = false;
        let mut deleted = std::collections::HashSet::new();
        for v in patch {
            match v.get(DIRECTIVE) {
                None => rest.push(v),
                Some(d) => match d.as_str() {
                    Some("delete") => {
                        if key_of(&v, key).is_none() {
                            return Err(no_merge_key(&v, key));
                        }
                        deleted.insert(identity(&v, Some(key)));
                    }
                    Some("replace") => replace = true,
                    Some("merge") => {
                        return Err(bad("merging lists cannot yet be specified in the patch"))
                    }
                    _ => return Err(bad(format!("Unknown patch type: {d} in map: {v}"))),
                },
            }
        }
        if !deleted.is_empty() {
            original
                .retain(|o| key_of(o, key).is_none() || !deleted.contains(&identity(o, Some(key))));
        }
        if replace {
            let item = item_path(path);
            let mut items = Vec::with_capacity(rest.len());
            for v in rest {
                items.extend(self.fresh(v, &item)?);
            }
            return Ok((items, Vec::new()));
        }
        Ok((original, rest))
    }

    /// `mergeSliceWithoutSpecialElements`: merges each patch item into the
    /// live item with the same key, or appends it.
    fn merge_items(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
        path: &str,
    ) -> Result<Vec<Value>, PatchError> {
        let item = item_path(path);
        // Live items without the key never match a patch item (which must
        // have it).
        let mut positions = Positions::of(&original, Some(key));
        positions.0.remove(&Identity::Absent);
        for v in patch {
            let Value::Object(p) = v else {
                return Err(bad(format!("list item is not a map: {v}")));
            };
            if !p.contains_key(key) {
                return Err(no_merge_key(v, key));
            }
            let found = positions.get(v, Some(key));
            match found {
                Some(i) => {
                    let Value::Object(o) = std::mem::take(&mut original[i]) else {
                        return Err(bad(format!("value for key {key} is not a map")));
                    };
                    original[i] = Value::Object(self.merge_map(o, p.clone(), &item)?);
                }
                None => {
                    positions.0.insert(identity(v, Some(key)), original.len());
                    original.push(Value::Object(self.merge_map(
                        Map::new(),
                        p.clone(),
                        &item,
                    )?));
                }
            }
        }
        Ok(original)
    }

    /// `mergePatchIntoOriginal`: merges each list named by a
    /// `$setElementOrder/<field>` directive and orders it by the directive.
    fn merge_ordered_lists(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), PatchError> {
        let directives: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive in directives {
            let Some(Value::Array(order)) = patch.remove(&directive) else {
                return Err(bad("invalid patch format of setElementOrder list"));
            };
            let field = &directive[SET_ELEMENT_ORDER.len()..];
            let child = child_path(path, field);
            let rule = self.schema.rule(&child);
            let key = match rule {
                Some(Rule::MapList { patch_key, .. }) => Some(patch_key),
                _ => None,
            };
            let as_list = |v: Option<&Value>| match v {
                None => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a.clone())),
                Some(other) => Err(bad(format!("{field} is not a list: {other}"))),
            };
            let original_list = as_list(original.get(field))?;
            let patch_list = as_list(patch.get(field))?;
            validate_set_order(patch_list.as_deref().unwrap_or(&[]), &order, key)?;
            let merged = match (original_list.clone(), patch_list.clone()) {
                (Some(o), None) => o,
                (None, Some(p)) => self.merge_list_field(Vec::new(), p, &child)?,
                (Some(o), Some(p)) => self.merge_list_field(o, p, &child)?,
                (None, None) => continue,
            };
            patch.remove(field);
            let original_list = original_list.unwrap_or_default();
            let ordered = match (
                rule,
                element_kind(&[&original_list, patch_list.as_deref().unwrap_or(&[])])?,
            ) {
                (Some(r), Some(kind)) if r.merges_list() => {
                    if kind == ElementKind::Map && key.is_none() {
                        return Err(bad(format!(
                            "cannot merge lists without merge key for {child}"
                        )));
                    }
                    let (patch_items, server_only) = partition(merged, &order, key);
                    normalize_order(patch_items, server_only, &order, &original_list, key)?
                }
                // An atomic list is the patch's list, in its own order.
                _ => merged,
            };
            original.insert(field.to_string(), Value::Array(ordered));
        }
        Ok(())
    }
}

/// `validatePatchWithSetOrderList`: the patch list's items appear in the
/// `$setElementOrder` list, in the same relative order.
fn validate_set_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let is_delete = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
    let items: Vec<&Value> = match key {
        Some(_) => patch.iter().filter(|v| !is_delete(v)).collect(),
        None => patch.iter().collect(),
    };
    let (mut pi, mut si) = (0, 0);
    while pi < items.len() && si < order.len() {
        if items[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        let equal = match key {
            None => json_eq(items[pi], &order[si]),
            Some(k) => {
                let a = key_of(items[pi], k).ok_or_else(|| no_merge_key(items[pi], k))?;
                let b = key_of(&order[si], k).ok_or_else(|| no_merge_key(&order[si], k))?;
                json_eq(a, b)
            }
        };
        if equal {
            pi += 1;
        }
        si += 1;
    }
    if pi < items.len() {
        return Err(bad(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// `applyRetainKeysDirective`: clears the keys of `original` that the
/// `$retainKeys` list of `patch` does not name.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad("invalid patch format of retainKeys"));
    };
    let retain: std::collections::HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let retained = |k: &str| retain.contains(k);
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(k) {
            return Err(bad(format!(
                "invalid patch format of retainKeys: field {k} is in the patch but not in $retainKeys"
            )));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

#[cfg(test)]
mod tests;
