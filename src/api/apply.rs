//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Kubernetes records, per object, which *field manager* (a client name such
//! as `kubectl` or a controller's) set which fields, in
//! `metadata.managedFields`. Each entry names a manager, an operation
//! (`Apply` for server-side apply, `Update` for any other write), the
//! `apiVersion`, a `time`, and the owned fields as `fieldsV1`: a tree whose
//! keys are path elements — `f:<field>`, `k:{"name":"x"}` for the item of a
//! keyed list, `v:<json>` for the item of a set list — and where `.` marks a
//! node that is owned itself as well as through its children:
//!
//! ```json
//! {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
//!     "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}
//! ```
//!
//! [`server_side_apply`] follows sigs.k8s.io/structured-merge-diff
//! (`Updater.Apply`):
//!
//! 1. The applied configuration is merged into the live object: maps key by
//!    key, keyed lists item by item (by the kind's [`MergeSchema`] keys),
//!    set lists value by value, everything else replaced.
//! 2. The manager now owns exactly the fields of its configuration (its
//!    leaves, list items, empty maps and atomic values).
//! 3. Fields the manager applied last time and omits now are removed from
//!    the object, unless another manager owns them (or something below).
//! 4. Fields that the result changes (added or modified) and that another
//!    manager owns are conflicts: the apply fails with 409 listing each
//!    manager and field, unless `force`, in which case they move to the
//!    applier. Managers that only share a field at the same value keep it.
//! 5. Fields the result removed are removed from every manager; managers
//!    left with nothing are dropped.
//!
//! [`track_update`] does steps 4–5 for an ordinary write (always forced): the
//! writer takes ownership of what it added or changed.
//!
//! As in kube-apiserver, `apiVersion`, `kind` and the server-owned metadata
//! (`name`, `namespace`, `uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `managedFields`...) are never recorded as owned. A
//! live object without `managedFields` is attributed to the manager
//! `before-first-apply` when first applied to. An entry's `time` changes only
//! when its fields do, so a no-op apply leaves the object as it was.
//!
//! # Implementation caveats
//! - No type information beyond [`MergeSchema`]: every JSON object is a
//!   struct (its keys are not owned themselves, only their leaves), there is
//!   no defaulting or validation, and kinds without a schema (custom
//!   resources, tmc's own kinds) treat all lists except `metadata`'s as
//!   atomic. `Apply` entries come out as kube-apiserver's (checked against
//!   one in `tests/patch_vs_kube.rs`); `Update` entries own the same leaves
//!   but lack the `.` kube-apiserver records on maps a write created
//!   (`f:labels: {".": {}, ...}`), which it knows from Go zero values.
//! - Empty maps: tmc stores `{}` where Go's `omitempty` drops the field.
//! - One version per kind: no conversion of other managers' field sets
//!   between API versions.
//! - A field is not removed while anyone owns something beneath it (SMD
//!   removes a list item whose children only are owned by others).
//! - Live objects with keyed-list items lacking their key, or duplicate
//!   keys, fall back to treating that list as atomic; in an applied
//!   configuration they are an error.
//! - `null` in an applied configuration removes the field and owns nothing.
//!   An empty keyed or set list owns nothing either (as in SMD): applying
//!   `[]` where the manager owned items removes the field.
//! - Client-sent `managedFields` are ignored (kube-apiserver honours a
//!   changed list on updates); `Update` entries are not capped at 10 with
//!   an `ancient-changes` entry; there are no subresource-specific writes
//!   (entries with a `subresource` are kept as they are).

use super::schema::{child_path, item_path, GroupKind, KeyField, MergeSchema, Rule};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The configuration is malformed (not an object, no `apiVersion` or
    /// `kind`, a keyed list item without its key...).
    #[error("{0}")]
    BadRequest(String),
    /// The configuration is well formed but not acceptable (no name).
    #[error("{0}")]
    Invalid(String),
    /// Fields the apply would change are owned by other managers.
    #[error("{}", conflict_message(.conflicts))]
    Conflict {
        /// Each conflict as (manager, field path like `.spec.replicas`),
        /// sorted.
        conflicts: Vec<(String, String)>,
    },
}

impl ApplyError {
    /// The HTTP status code kube-apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::BadRequest(_) => 400,
            ApplyError::Invalid(_) => 422,
            ApplyError::Conflict { .. } => 409,
        }
    }

    /// The `reason` of the Kubernetes `Status`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::BadRequest(_) => "BadRequest",
            ApplyError::Invalid(_) => "Invalid",
            ApplyError::Conflict { .. } => "Conflict",
        }
    }
}

/// kube-apiserver's conflict message.
fn conflict_message(conflicts: &[(String, String)]) -> String {
    if let [(manager, field)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with \"{manager}\": {field}");
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, f) in conflicts {
        by_manager.entry(m).or_default().push(f);
    }
    let mut msg = format!("Apply failed with {} conflicts:", conflicts.len());
    for (m, fields) in by_manager {
        msg.push_str(&format!(" conflicts with \"{m}\":"));
        for f in fields {
            msg.push_str(&format!("\n- {f}"));
        }
        msg.push('\n');
    }
    msg.trim_end().to_string()
}

/// A field path: path elements encoded as in FieldsV1 (`f:spec`,
/// `k:{"name":"x"}`, `v:"x"`).
type Path = Vec<String>;
/// A set of field paths.
type FieldSet = BTreeSet<Path>;

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// Paths never recorded as owned (kube-apiserver's `stripMeta`).
fn is_stripped(path: &Path) -> bool {
    match path.as_slice() {
        [f] => f == "f:apiVersion" || f == "f:kind" || f == "f:metadata",
        [m, f] => {
            m == "f:metadata"
                && [
                    "f:name",
                    "f:namespace",
                    "f:creationTimestamp",
                    "f:selfLink",
                    "f:uid",
                    "f:clusterName",
                    "f:generation",
                    "f:managedFields",
                    "f:resourceVersion",
                ]
                .contains(&f.as_str())
        }
        _ => false,
    }
}

fn strip(set: FieldSet) -> FieldSet {
    set.into_iter().filter(|p| !is_stripped(p)).collect()
}

/// Field path in the form of kube-apiserver's messages:
/// `.spec.template.spec.containers[name="nginx"].image`.
fn display(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(k) {
                Ok(fields) => {
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    s.push_str(&format!("[{}]", parts.join(",")));
                }
                Err(_) => s.push_str(&format!("[{k}]")),
            }
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        } else {
            s.push_str(pe);
        }
    }
    s
}

// FieldsV1 encoding.

/// A node of the FieldsV1 tree.
#[derive(Default)]
struct Node {
    /// Whether the path to this node is in the set itself.
    member: bool,
    /// Children by path element.
    children: BTreeMap<String, Node>,
}

/// The FieldsV1 JSON of a field set.
fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }
    fn encode(node: &Node) -> Value {
        let mut m = Map::new();
        if node.member && !node.children.is_empty() {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &node.children {
            m.insert(pe.clone(), encode(child));
        }
        Value::Object(m)
    }
    encode(&root)
}

/// The field set of FieldsV1 JSON.
fn from_fields_v1(v: &Value) -> FieldSet {
    fn decode(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Value::Object(m) = v else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (pe, child) in m {
            if pe == "." {
                out.insert(path.clone());
            } else {
                path.push(pe.clone());
                decode(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    decode(v, &mut Vec::new(), &mut out);
    out
}

// Field sets of objects.

/// A member of an object's field set, as compared between two objects.
#[derive(Debug, Clone, PartialEq)]
enum Member {
    /// A scalar, an atomic list or map, or a set item: compared by value.
    Value(Value),
    /// A keyed list item: compared through its children.
    Item,
    /// An empty map, which is a member only while it is empty: it changes
    /// only by appearing or disappearing, not by gaining keys.
    EmptyMap,
}

/// The members of an object's field set.
type Members = BTreeMap<Path, Member>;

/// Whether some member of `members` lies below `path`.
fn has_descendant(members: &Members, path: &Path) -> bool {
    members
        .range(path.clone()..)
        .find(|(p, _)| *p != path)
        .is_some_and(|(p, _)| p.len() > path.len() && p.starts_with(path))
}

/// The `k:` path element of a keyed list item, or why it has none.
fn key_element(item: &Value, keys: &[KeyField]) -> Result<String, String> {
    let Value::Object(m) = item else {
        return Err(format!("associative list item is not an object: {item}"));
    };
    let mut key = Map::new();
    for kf in keys {
        match (m.get(kf.name), kf.default) {
            (Some(v), _) if !v.is_null() => {
                key.insert(kf.name.to_string(), v.clone());
            }
            (_, Some(default)) => {
                key.insert(kf.name.to_string(), Value::String(default.to_string()));
            }
            (_, None) => {
                return Err(format!(
                    "associative list with keys has an element that omits key field {:?}",
                    kf.name
                ))
            }
        }
    }
    Ok(format!("k:{}", Value::Object(key)))
}

/// The `v:` path element of a set list item.
fn value_element(item: &Value) -> Result<String, String> {
    match item {
        Value::Object(_) | Value::Array(_) => Err(format!("set list item is not a scalar: {item}")),
        v => Ok(format!("v:{v}")),
    }
}

/// The path elements of a list's items, or why the list cannot be keyed.
fn item_elements(items: &[Value], rule: Rule) -> Result<Vec<String>, String> {
    let mut seen = HashSet::new();
    let mut pes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = match rule {
            Rule::MapList { keys, .. } => key_element(item, keys),
            _ => value_element(item),
        }
        .map_err(|e| format!("element {i}: {e}"))?;
        if !seen.insert(pe.clone()) {
            return Err(format!("duplicate entries for key {}", display(&[pe])));
        }
        pes.push(pe);
    }
    Ok(pes)
}

fn list_rule(schema: &MergeSchema, spath: &str) -> Option<Rule> {
    schema
        .rule(spath)
        .filter(|r| matches!(r, Rule::MapList { .. } | Rule::SetList))
}

/// Collects the members of an object's field set.
struct Walker<'a> {
    /// The kind's merge rules.
    schema: &'a MergeSchema,
    /// Whether a list that cannot be keyed is an error (applied
    /// configurations) or atomic (live objects).
    strict: bool,
    /// Members found so far.
    out: Members,
}

impl Walker<'_> {
    fn walk_map(
        &mut self,
        m: &Map<String, Value>,
        path: &mut Path,
        spath: &str,
    ) -> Result<(), ApplyError> {
        for (k, v) in m {
            path.push(format!("f:{k}"));
            self.walk(v, path, &child_path(spath, k))?;
            path.pop();
        }
        Ok(())
    }

    fn walk(&mut self, v: &Value, path: &mut Path, spath: &str) -> Result<(), ApplyError> {
        match v {
            Value::Object(m)
                if !m.is_empty() && self.schema.rule(spath) != Some(Rule::AtomicMap) =>
            {
                self.walk_map(m, path, spath)
            }
            Value::Object(m)
                if m.is_empty() && self.schema.rule(spath) != Some(Rule::AtomicMap) =>
            {
                self.out.insert(path.clone(), Member::EmptyMap);
                Ok(())
            }
            Value::Array(items) => {
                let Some(rule) = list_rule(self.schema, spath) else {
                    self.out.insert(path.clone(), Member::Value(v.clone()));
                    return Ok(());
                };
                let pes = match item_elements(items, rule) {
                    Ok(pes) => pes,
                    Err(e) if self.strict => {
                        return Err(ApplyError::BadRequest(format!("{}: {e}", display(path))))
                    }
                    Err(_) => {
                        self.out.insert(path.clone(), Member::Value(v.clone()));
                        return Ok(());
                    }
                };
                let ipath = item_path(spath);
                for (pe, item) in pes.into_iter().zip(items) {
                    path.push(pe);
                    match item {
                        Value::Object(m) => {
                            self.out.insert(path.clone(), Member::Item);
                            self.walk_map(m, path, &ipath)?;
                        }
                        scalar => {
                            self.out.insert(path.clone(), Member::Value(scalar.clone()));
                        }
                    }
                    path.pop();
                }
                Ok(())
            }
            _ => {
                self.out.insert(path.clone(), Member::Value(v.clone()));
                Ok(())
            }
        }
    }
}

/// The members of `obj`'s field set (the root itself is never a member).
fn members(obj: &Value, schema: &MergeSchema, strict: bool) -> Result<Members, ApplyError> {
    let mut w = Walker {
        schema,
        strict,
        out: Members::new(),
    };
    if let Value::Object(m) = obj {
        w.walk_map(m, &mut Vec::new(), "")?;
    }
    Ok(w.out)
}

/// Members of a live object: lists that cannot be keyed are atomic, so
/// this never fails.
fn live_members(obj: &Value, schema: &MergeSchema) -> Members {
    members(obj, schema, false).unwrap_or_default()
}

/// What changed between two objects, as field sets.
struct Comparison {
    /// Members added or with a new value.
    changed: FieldSet,
    /// Members gone.
    removed: FieldSet,
}

/// SMD's `Compare` on field sets. A map that becomes empty, or an empty
/// map that gains keys, is neither changed nor removed: only leaves are.
fn compare(old: &Members, new: &Members) -> Comparison {
    let mut changed = FieldSet::new();
    for (path, v) in new {
        let is_changed = match (old.get(path), v) {
            (None, Member::EmptyMap) => !has_descendant(old, path),
            (None, _) => true,
            (Some(a), b) => a != b,
        };
        if is_changed {
            changed.insert(path.clone());
        }
    }
    let removed = old
        .iter()
        .filter(|(p, m)| {
            let filled_empty_map = **m == Member::EmptyMap && has_descendant(new, p);
            !new.contains_key(*p) && !filled_empty_map
        })
        .map(|(p, _)| p.clone())
        .collect();
    Comparison { changed, removed }
}

// Merging an applied configuration into the live object.

fn merge(live: Option<&Value>, config: &Value, spath: &str, schema: &MergeSchema) -> Value {
    match config {
        Value::Object(c) if schema.rule(spath) != Some(Rule::AtomicMap) => {
            let mut out = match live {
                Some(Value::Object(l)) => l.clone(),
                _ => Map::new(),
            };
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = merge(out.get(k), cv, &child_path(spath, k), schema);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        Value::Array(c) => match (list_rule(schema, spath), live) {
            (Some(rule), Some(Value::Array(l))) => {
                Value::Array(merge_list(l, c, rule, &item_path(spath), schema))
            }
            _ => config.clone(),
        },
        _ => config.clone(),
    }
}

/// Merges the items of a keyed or set list, in SMD's order: live items
/// keep their places, configured items come in the configuration's order.
fn merge_list(
    lhs: &[Value],
    rhs: &[Value],
    rule: Rule,
    ipath: &str,
    schema: &MergeSchema,
) -> Vec<Value> {
    let pe = |i: usize, item: &Value| -> String {
        let pe = match rule {
            Rule::MapList { keys, .. } => key_element(item, keys),
            _ => value_element(item),
        };
        // An item that cannot be keyed matches nothing.
        pe.unwrap_or_else(|_| format!("#{i}"))
    };
    let lhs_pes: Vec<String> = lhs.iter().enumerate().map(|(i, v)| pe(i, v)).collect();
    let rhs_pes: Vec<String> = rhs.iter().enumerate().map(|(i, v)| pe(i, v)).collect();
    let mut observed_lhs: HashMap<&str, &Value> = HashMap::new();
    for (p, v) in lhs_pes.iter().zip(lhs) {
        observed_lhs.entry(p).or_insert(v);
    }
    let observed_rhs: HashSet<&str> = rhs_pes.iter().map(String::as_str).collect();
    let mut shared: VecDeque<&str> = rhs_pes
        .iter()
        .map(String::as_str)
        .filter(|p| observed_lhs.contains_key(p))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len() + rhs.len());
    let (mut li, mut ri) = (0, 0);
    let merge_item = |l: Option<&Value>, r: &Value| merge(l, r, ipath, schema);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let p = lhs_pes[li].as_str();
            if p == rhs_pes[ri] {
                merged_rhs.insert(p);
                out.push(merge_item(observed_lhs.get(p).copied(), &rhs[ri]));
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if observed_rhs.contains(p) && next_shared.is_some_and(|n| n != p) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let p = lhs_pes[li].as_str();
            if !observed_rhs.contains(p) {
                out.push(lhs[li].clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(p) {
                li += 1;
                continue;
            }
        }
        if ri < rhs.len() {
            let p = rhs_pes[ri].as_str();
            merged_rhs.insert(p);
            out.push(merge_item(observed_lhs.get(p).copied(), &rhs[ri]));
            ri += 1;
            if next_shared == Some(p) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// Removes the field at `path` from `obj`, if there.
fn remove_path(obj: &mut Value, path: &[String], schema: &MergeSchema) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    let mut spath = String::new();
    for pe in parents {
        let Some((next, next_spath)) = child_mut(cur, pe, &spath, schema) else {
            return;
        };
        cur = next;
        spath = next_spath;
    }
    match cur {
        Value::Object(m) => {
            if let Some(f) = last.strip_prefix("f:") {
                m.remove(f);
            }
        }
        Value::Array(items) => {
            if let Some(rule) = list_rule(schema, &spath) {
                items.retain(|item| element_of(item, rule).as_deref() != Some(last.as_str()));
            }
        }
        _ => {}
    }
}

fn element_of(item: &Value, rule: Rule) -> Option<String> {
    match rule {
        Rule::MapList { keys, .. } => key_element(item, keys).ok(),
        _ => value_element(item).ok(),
    }
}

/// The child of `v` at path element `pe`, with its schema path.
fn child_mut<'v>(
    v: &'v mut Value,
    pe: &str,
    spath: &str,
    schema: &MergeSchema,
) -> Option<(&'v mut Value, String)> {
    match v {
        Value::Object(m) => {
            let f = pe.strip_prefix("f:")?;
            Some((m.get_mut(f)?, child_path(spath, f)))
        }
        Value::Array(items) => {
            let rule = list_rule(schema, spath)?;
            let item = items
                .iter_mut()
                .find(|item| element_of(item, rule).as_deref() == Some(pe))?;
            Some((item, item_path(spath)))
        }
        _ => None,
    }
}

/// `set` plus every path above its members.
fn with_ancestors(set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    for p in set {
        for n in 1..p.len() {
            out.insert(p[..n].to_vec());
        }
    }
    out
}

/// `set` plus the named fields (`f:`) above its members: SMD's
/// `EnsureNamedFieldsAreMembers`.
fn with_named_ancestors(set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    for p in set {
        for n in 1..p.len() {
            if p[n - 1].starts_with("f:") {
                out.insert(p[..n].to_vec());
            }
        }
    }
    out
}

// managedFields entries.

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    /// Field manager.
    manager: String,
    /// `Apply` or `Update`.
    operation: String,
    /// `apiVersion` of the write.
    api_version: String,
    /// When the entry's fields last changed.
    time: Option<String>,
    /// The subresource written, if any.
    subresource: Option<String>,
    /// Owned fields.
    fields: FieldSet,
}

impl Entry {
    /// kube-apiserver's manager identity: appliers are one manager across
    /// versions, updaters one per version.
    fn same_manager(&self, manager: &str, operation: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == APPLY || self.api_version == api_version)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }
}

/// The entries of an object's `managedFields`; malformed entries are
/// dropped, as kube-apiserver does.
fn entries_of(obj: &Value) -> Option<Vec<Entry>> {
    let list = obj.pointer("/metadata/managedFields")?.as_array()?;
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    Some(
        list.iter()
            .filter_map(|e| {
                if e.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1") {
                    return None;
                }
                Some(Entry {
                    manager: s(e, "manager")?,
                    operation: s(e, "operation")?,
                    api_version: s(e, "apiVersion").unwrap_or_default(),
                    time: s(e, "time"),
                    subresource: s(e, "subresource"),
                    fields: from_fields_v1(e.get("fieldsV1")?),
                })
            })
            .collect(),
    )
}

/// `obj` without `metadata.managedFields`.
fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
    obj
}

/// Sets the acting manager's entry (keeping its time if its fields did not
/// change), drops empty entries, sorts them as kube-apiserver does and
/// writes them into `obj`.
fn write_entries(obj: &mut Value, mut entries: Vec<Entry>, mut mine: Entry, now: &str) {
    let previous = entries
        .iter()
        .position(|e| e.same_manager(&mine.manager, &mine.operation, &mine.api_version));
    if let Some(i) = previous {
        let old = entries.remove(i);
        mine.time = if old.fields == mine.fields {
            old.time
        } else {
            Some(now.to_string())
        };
    } else {
        mine.time = Some(now.to_string());
    }
    entries.push(mine);
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::to_json).collect()),
            );
        }
    }
}

fn schema_for(kind: &GroupKind) -> &'static MergeSchema {
    MergeSchema::for_kind(kind).unwrap_or_else(MergeSchema::metadata_only)
}

fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Checks the applied configuration: an object of this kind with a name.
fn validate(kind: &GroupKind, live: Option<&Value>, applied: &Value) -> Result<(), ApplyError> {
    let bad = |m: String| Err(ApplyError::BadRequest(m));
    if !applied.is_object() {
        return bad("the apply configuration must be a JSON object".into());
    }
    let s = |p: &str| {
        applied
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let Some(api_version) = s("/apiVersion") else {
        return bad("Object 'apiVersion' is missing in the apply configuration".into());
    };
    let Some(applied_kind) = s("/kind") else {
        return bad("Object 'Kind' is missing in the apply configuration".into());
    };
    let got = GroupKind::from_api_version(api_version, applied_kind);
    if &got != kind {
        return bad(format!(
            "the apply configuration is a {got} (apiVersion {api_version}), not a {kind}"
        ));
    }
    let Some(name) = s("/metadata/name") else {
        return Err(ApplyError::Invalid(
            "metadata.name: Required value: name is required in an apply configuration".into(),
        ));
    };
    if let Some(live_name) = live
        .and_then(|l| l.pointer("/metadata/name"))
        .and_then(Value::as_str)
    {
        if live_name != name {
            return bad(format!(
                "the name of the object ({name}) does not match the name of the live object ({live_name})"
            ));
        }
    }
    Ok(())
}

/// Server-side apply of `applied` by `manager` onto `live` (`None`: the
/// object is created). Returns the new object with its `managedFields`;
/// `now` is the RFC 3339 time recorded for the manager. See the module
/// docs for the steps.
pub fn server_side_apply(
    kind: &GroupKind,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    validate(kind, live, applied)?;
    if manager.is_empty() {
        return Err(ApplyError::BadRequest(
            "fieldManager is required for apply requests".into(),
        ));
    }
    let schema = schema_for(kind);
    let applied = without_managed_fields(applied);
    let api_version = api_version_of(&applied);
    let live_obj = live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let live_set = live_members(&live_obj, schema);
    let mut entries = live.and_then(entries_of).unwrap_or_default();
    if live.is_some() && entries.is_empty() {
        let fields = strip(live_set.keys().cloned().collect());
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: UPDATE.into(),
            api_version: api_version_of(&live_obj),
            time: Some(now.to_string()),
            subresource: None,
            fields,
        });
    }
    let new_set: FieldSet = members(&applied, schema, true)?.into_keys().collect();

    let mut merged = merge(Some(&live_obj), &applied, "", schema);
    let mine = |e: &Entry| e.same_manager(manager, APPLY, &api_version);
    if let Some(last) = entries.iter().find(|e| mine(e)) {
        let mut owned = new_set.clone();
        for e in entries.iter().filter(|e| !mine(e)) {
            owned.extend(e.fields.iter().cloned());
        }
        let keep = with_ancestors(&owned);
        for path in with_named_ancestors(&last.fields).difference(&keep) {
            remove_path(&mut merged, path, schema);
        }
    }

    let cmp = compare(&live_set, &live_members(&merged, schema));
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for path in e.fields.intersection(&cmp.changed) {
            conflicts.push((e.manager.clone(), display(path)));
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        conflicts.dedup();
        return Err(ApplyError::Conflict { conflicts });
    }
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.fields
            .retain(|p| !cmp.changed.contains(p) && !cmp.removed.contains(p));
    }
    let me = Entry {
        manager: manager.to_string(),
        operation: APPLY.into(),
        api_version,
        time: None,
        subresource: None,
        fields: strip(new_set),
    };
    write_entries(&mut merged, entries, me, now);
    Ok(merged)
}

/// Records an ordinary write (create, update, patch) by `manager`: returns
/// `new` with `metadata.managedFields` updated from `old`'s. The manager
/// takes ownership of the fields it added or changed, other managers lose
/// them, and every manager loses the fields the write removed. `old` is
/// `None` on create.
pub fn track_update(
    kind: &GroupKind,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now: &str,
) -> Value {
    let schema = schema_for(kind);
    let api_version = api_version_of(new);
    let old_obj = old
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut out = without_managed_fields(new);
    let cmp = compare(&live_members(&old_obj, schema), &live_members(&out, schema));
    let mut entries = old.and_then(entries_of).unwrap_or_default();
    let is_mine = |e: &Entry| e.same_manager(manager, UPDATE, &api_version);
    let mut fields: FieldSet = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    fields.retain(|p| !cmp.removed.contains(p));
    fields.extend(cmp.changed.iter().cloned());
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        e.fields
            .retain(|p| !cmp.changed.contains(p) && !cmp.removed.contains(p));
    }
    let me = Entry {
        manager: manager.to_string(),
        operation: UPDATE.into(),
        api_version,
        time: None,
        subresource: None,
        fields: strip(fields),
    };
    write_entries(&mut out, entries, me, now);
    out
}

#[cfg(test)]
mod tests;
