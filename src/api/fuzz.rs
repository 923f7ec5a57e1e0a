//! A fuzzer for everything a client's bytes reach before the store,
//! in five targets taken in turn:
//!
//! - **request**: routing of mutated kcp/Kubernetes paths, body decoding
//!   (JSON, YAML) and kind checks, `Accept` negotiation, and the decoded
//!   body printed as a Table row of a random kind;
//! - **protobuf**: `application/vnd.kubernetes.protobuf` bodies as
//!   client-go sends them (magic prefix, `runtime.Unknown` envelope), built
//!   with hostile numbers in their times and counts, then mutated
//!   byte-wise;
//! - **patch**: JSON, merge, strategic merge (with every directive) and
//!   server-side apply bodies, mutated, applied to a live Deployment and
//!   ConfigMap; a result must be bounded as the limits say (a JSON patch's
//!   copies by [`patch::MAX_JSON_PATCH_COPY_BYTES`]);
//! - **selector**: label and field selectors from fragments and random
//!   bytes, parsed and matched against objects;
//! - **continue**: continue tokens, mutated from real ones, listed against
//!   an in-memory store.
//!
//! Run it with `tmc debug fuzz-api --seconds 600 [--seed N]`; it stops at
//! the first input that panics (or breaks an invariant), prints that input
//! and exits non-zero. A short run is part of the tests; the long run's
//! result is in docs/api.md. Invariants checked besides "no panic": a
//! routed resource request never carries a name or namespace with `/`,
//! `%` or a `.`/`..` segment, a routed workspace always parses again, a
//! patched object is never larger than the live one plus the patch's body
//! plus the copy budget, and a continue token is either refused or lists
//! only keys of its own list.

use super::request::{self, Target, WorkspaceSel};
use super::{object, patch, resources};
use rand::rngs::StdRng;
use rand::Rng;

const SEGMENTS: &[&str] = &[
    "clusters",
    "services",
    "tmc",
    "root",
    "root:acme",
    "root%3Aacme",
    "*",
    "..",
    ".",
    "",
    "%2F",
    "%2e%2e",
    "api",
    "apis",
    "v1",
    "v1alpha1",
    "apps",
    "tmc.kcp.io",
    "namespaces",
    "default",
    "configmaps",
    "deployments",
    "status",
    "watch",
    "openapi",
    "v3",
    "v2",
    "livez",
    "Root",
    "root:",
    ":root",
    "ROOT",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "x/y",
    "é",
    "\u{0}",
    "workspaces",
    "tenancy.kcp.io",
    "clusterregistrations",
    "finalize",
    "version",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "",
];

const SEEDS: &[&str] = &[
    r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"a":"b"}},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"i","env":[{"name":"A","value":"1"}]}]}}}}"#,
    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","finalizers":["f"]},"data":{"k":"v"}}"#,
    r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"test","path":"/metadata/name","value":"web"}]"#,
    r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}],"$setElementOrder/containers":[{"name":"c"}]}}}}"#,
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a: b\n",
    r#"{"apiVersion":"tmc.kcp.io/v1alpha1","kind":"WorkloadPlacement","metadata":{"name":"p"},"spec":{}}"#,
];

fn random_path(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..9);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        if rng.random_bool(0.85) {
            p.push_str(SEGMENTS[rng.random_range(0..SEGMENTS.len())]);
        } else {
            let len = rng.random_range(0..12);
            for _ in 0..len {
                p.push(rng.random_range(0x20u8..0x7f) as char);
            }
        }
    }
    if p.is_empty() || rng.random_bool(0.05) {
        p.push('/');
    }
    p
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(0..6) {
        if b.is_empty() {
            break;
        }
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..6) {
            0 => b[i] ^= 1 << rng.random_range(0..8),
            1 => b.truncate(i),
            2 => {
                b.remove(i);
            }
            3 => b.insert(i, b"{}[]\":,\\ntf0-"[rng.random_range(0..13)]),
            4 => {
                let j = rng.random_range(0..b.len());
                let chunk = b[j..(j + 8).min(b.len())].to_vec();
                b.splice(i..i, chunk);
            }
            _ => {
                // Deep nesting.
                let depth = rng.random_range(1..200);
                let nest = "[".repeat(depth) + &"]".repeat(depth);
                b.splice(i..i, nest.into_bytes());
            }
        }
    }
    b
}

/// The fuzz targets, in the order they are taken.
pub const TARGETS: [&str; 5] = ["request", "protobuf", "patch", "selector", "continue"];

/// One iteration of target `n % 5`; `Err` names a broken invariant.
fn one(rng: &mut StdRng, n: u64, f: &Fixture) -> Result<(), String> {
    match n % 5 {
        0 => request_target(rng, f),
        1 => protobuf_target(rng),
        2 => patch_target(rng, f),
        3 => selector_target(rng, f),
        _ => continue_target(rng, f),
    }
}

fn request_target(rng: &mut StdRng, f: &Fixture) -> Result<(), String> {
    let path = random_path(rng);
    if let Ok(route) = request::route(&path) {
        if let Some(WorkspaceSel::One(ws)) = &route.workspace {
            crate::store::Workspace::parse(ws.as_str())
                .map_err(|e| format!("routed workspace does not parse again: {path}: {e}"))?;
        }
        if let Target::Resource(r) = &route.target {
            for part in [r.name.as_deref(), r.namespace.as_deref()]
                .into_iter()
                .flatten()
            {
                if part.contains('/') || part.contains('%') || part == "." || part == ".." {
                    return Err(format!(
                        "path {path:?} routed to the name or namespace {part:?}"
                    ));
                }
            }
        }
    }
    let seed = SEEDS[rng.random_range(0..SEEDS.len())].as_bytes();
    let body = mutate(rng, seed);
    let ct = CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())];
    let info = &resources::RESOURCES[rng.random_range(0..resources::RESOURCES.len())];
    if let Ok(v) = object::decode_body(Some(ct), &body) {
        let _ = object::check_kind(info, &v);
        let mut v2 = v.clone();
        if v2.is_object() {
            object::strip_for_storage(&mut v2);
        }
        table_of(rng, info, v)?;
    }
    let live = &f.seeds[0];
    if let Some(ty) = patch::PatchType::from_content_type(ct) {
        if ty != patch::PatchType::Apply {
            let gk = patch::GroupKind::new(info.group, info.kind);
            let _ = patch::apply_patch(&gk, live, ty, &body);
        }
    }
    Ok(())
}

/// Pieces of `Accept` headers.
const ACCEPT_FRAGMENTS: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "*/*",
    "application/*",
    "text/html",
    ";as=Table",
    ";as=PartialObjectMetadataList",
    ";g=meta.k8s.io",
    ";v=v1",
    ";v=v1beta1",
    ";q=0.5",
    ";q=x",
    ";stream=watch",
    ";sv=v2",
    ",",
    ";",
    "=",
    "/",
];

/// A decoded body printed as `info`'s Table row (whatever its shape: the
/// printers read hostile objects), under a mutated `Accept` header: one
/// cell per column, and no panic.
fn table_of(
    rng: &mut StdRng,
    info: &'static resources::ResourceInfo,
    obj: serde_json::Value,
) -> Result<(), String> {
    use super::table;
    let mut accept = String::new();
    for _ in 0..rng.random_range(0..8) {
        accept.push_str(ACCEPT_FRAGMENTS[rng.random_range(0..ACCEPT_FRAGMENTS.len())]);
    }
    let read = [table::Read::Get, table::Read::List, table::Read::Watch][rng.random_range(0..3)];
    let _ = table::negotiate(Some(&accept), read);
    let conv = table::for_kind(info.group, info.kind);
    let cells = conv.cells(&obj, chrono::Utc::now());
    if cells.len() != conv.column_definitions().len() {
        return Err(format!(
            "{} cells for {} columns of {}",
            cells.len(),
            conv.column_definitions().len(),
            info.kind
        ));
    }
    let output = table::Output::Table(table::MetaVersion::V1);
    let _ = table::render(
        output,
        info,
        table::Read::Get,
        obj,
        Some("Object"),
        chrono::Utc::now(),
    );
    Ok(())
}

/// Numbers a hostile sender likes.
fn hostile_i64(rng: &mut StdRng) -> i64 {
    const EDGES: [i64; 10] = [
        0,
        -1,
        1,
        i64::MIN,
        i64::MAX,
        i32::MIN as i64,
        i32::MAX as i64,
        -1_000_000_000,
        999_999_999,
        253_402_300_800, // year 10000
    ];
    if rng.random_bool(0.6) {
        EDGES[rng.random_range(0..EDGES.len())]
    } else {
        rng.random()
    }
}

fn protobuf_target(rng: &mut StdRng) -> Result<(), String> {
    let seconds = hostile_i64(rng);
    let nanos = hostile_i64(rng) as i32;
    let bodies = super::protobuf::sample_bodies(seconds, nanos);
    let mut body = bodies[rng.random_range(0..bodies.len())].clone();
    if rng.random_bool(0.5) {
        // Keep the magic prefix most of the time: past it is the decoder.
        let keep = if rng.random_bool(0.9) { 4 } else { 0 };
        let tail = mutate(rng, body.get(keep..).unwrap_or_default());
        body.truncate(keep);
        body.extend(tail);
    }
    if let Ok(v) = object::decode_body(Some(super::protobuf::MEDIA_TYPE), &body) {
        if v.get("kind").and_then(|k| k.as_str()) == Some("DeleteOptions") {
            return Ok(());
        }
        let info = &resources::RESOURCES[rng.random_range(0..resources::RESOURCES.len())];
        let _ = object::check_kind(info, &v);
        let _ = object::check_shape(info, &v);
    }
    Ok(())
}

const PATCH_SEEDS: &[(&str, &str)] = &[
    ("application/json-patch+json", r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"test","path":"/metadata/name","value":"web"}]"#),
    ("application/json-patch+json", r#"[{"op":"copy","from":"/spec","path":"/spec/a"},{"op":"copy","from":"/spec","path":"/spec/b"},{"op":"move","from":"/spec/a","path":"/metadata/labels/x"},{"op":"remove","path":"/spec/b"},{"op":"add","path":"/metadata/finalizers/-","value":"f"}]"#),
    ("application/merge-patch+json", r#"{"metadata":{"labels":{"a":null,"b":"c"}},"spec":{"replicas":null,"template":{"spec":{"containers":[{"name":"d"}]}}}}"#),
    ("application/strategic-merge-patch+json", r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"},{"name":"n","image":"i"}],"$setElementOrder/containers":[{"name":"n"},{"name":"c"}]}}}}"#),
    ("application/strategic-merge-patch+json", r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["f"],"finalizers":["g","h"],"$setElementOrder/finalizers":["h","g"]},"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#),
    ("application/strategic-merge-patch+json", r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"replace"},{"name":"x","env":[{"name":"A","$patch":"delete"},{"name":"B","value":"2"}]}],"volumes":[{"name":"v","$retainKeys":["name","emptyDir"],"emptyDir":{}}]}}},"$patch":"merge"}"#),
    ("application/apply-patch+yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  labels: {a: b}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: c\n        image: j\n        ports: [{containerPort: 80}]\n"),
];

fn patch_target(rng: &mut StdRng, f: &Fixture) -> Result<(), String> {
    let (ct, seed) = PATCH_SEEDS[rng.random_range(0..PATCH_SEEDS.len())];
    let body = if rng.random_bool(0.8) {
        mutate(rng, seed.as_bytes())
    } else {
        seed.as_bytes().to_vec()
    };
    let live = &f.seeds[usize::from(!rng.random_bool(0.8))];
    let gk = match live["kind"].as_str() {
        Some("Deployment") => patch::GroupKind::new("apps", "Deployment"),
        _ => patch::GroupKind::new("", "ConfigMap"),
    };
    let Some(ty) = patch::PatchType::from_content_type(ct) else {
        return Err(format!("seed content type {ct} unknown"));
    };
    let result = if ty == patch::PatchType::Apply {
        let Ok(applied) = object::decode_body(Some(ct), &body) else {
            return Ok(());
        };
        super::apply::server_side_apply(
            &gk,
            Some(live),
            &applied,
            "fuzz",
            rng.random_bool(0.5),
            "2026-12-07T00:00:00Z",
        )
        .ok()
    } else {
        patch::apply_patch(&gk, live, ty, &body).ok()
    };
    if let Some(out) = result {
        let grown = serde_json::to_vec(&out).map(|v| v.len()).unwrap_or(0);
        let live_len = serde_json::to_vec(live).map(|v| v.len()).unwrap_or(0);
        // Managed fields of an apply take a few hundred bytes per field.
        let bound = live_len + 64 * body.len() + patch::MAX_JSON_PATCH_COPY_BYTES + 4096;
        if grown > bound {
            return Err(format!(
                "a {ct} patch of {} bytes grew a {live_len}-byte object to {grown} bytes: {:?}",
                body.len(),
                String::from_utf8_lossy(&body)
            ));
        }
    }
    Ok(())
}

const SELECTOR_FRAGMENTS: &[&str] = &[
    "a",
    "b=c",
    "a!=b",
    "a==b",
    "!a",
    "a in (b,c)",
    "a notin (b)",
    "x.io/y=z",
    "a=",
    ",",
    "(",
    ")",
    "in",
    "notin",
    " ",
    "=",
    "!",
    "metadata.name=x",
    "metadata.namespace!=y",
    "spec.nodeName=",
    "status.phase=Running",
    "a>1",
    "a<2",
    "\\",
    "é",
    "\u{0}",
];

fn selector_target(rng: &mut StdRng, f: &Fixture) -> Result<(), String> {
    let mut s = String::new();
    for _ in 0..rng.random_range(0..6) {
        if rng.random_bool(0.8) {
            s.push_str(SELECTOR_FRAGMENTS[rng.random_range(0..SELECTOR_FRAGMENTS.len())]);
        } else {
            for _ in 0..rng.random_range(0..8) {
                s.push(rng.random_range(0x20u8..0x7f) as char);
            }
        }
        if rng.random_bool(0.5) {
            s.push(',');
        }
    }
    let objects = [
        &f.seeds[0],
        &f.seeds[1],
        &serde_json::json!({"metadata": {"labels": "not a map", "name": 1}}),
        &serde_json::json!([]),
    ];
    if let Ok(sel) = crate::object::selector::LabelSelector::parse(&s) {
        // What it prints parses again to the same selector.
        let again = crate::object::selector::LabelSelector::parse(&sel.to_string())
            .map_err(|e| format!("label selector {s:?} printed as {sel} does not parse: {e}"))?;
        if again.to_string() != sel.to_string() {
            return Err(format!("label selector {s:?} does not print stably"));
        }
        for o in &objects {
            let _ = sel.matches_object(o);
        }
    }
    if let Ok(sel) = crate::object::selector::FieldSelector::parse(&s) {
        for o in &objects {
            let _ = sel.matches(o);
        }
    }
    Ok(())
}

/// What every iteration reads and none changes, built once per run: the
/// seed objects, parsed, and a small store with two lists (for the
/// continue target).
pub struct Fixture {
    seeds: [serde_json::Value; 2],
    store: crate::store::Store<crate::store::MemoryEngine>,
    mine: crate::store::Prefix,
    tokens: Vec<String>,
}

impl Fixture {
    fn new() -> Result<Fixture, String> {
        use crate::store::{
            Expectation, GroupResource, ListOptions, ObjectKey, Prefix, Store, StoreOptions, Txn,
            TxnOp, Workspace,
        };
        let store = Store::open(
            crate::store::MemoryEngine::new(),
            StoreOptions {
                sync: false,
                changes_retention: 1_000,
            },
        )
        .map_err(|e| e.to_string())?;
        let gr = GroupResource::new("", "configmaps").map_err(|e| e.to_string())?;
        for ws in ["root:a", "root:b"] {
            let ws = Workspace::parse(ws).map_err(|e| e.to_string())?;
            for i in 0..6 {
                let key = ObjectKey::namespaced(gr.clone(), ws.clone(), "ns", &format!("o{i}"))
                    .map_err(|e| e.to_string())?;
                store
                    .commit(Txn::new(vec![TxnOp::put_json(
                        crate::store::Key::from(key),
                        b"{}".to_vec(),
                        Expectation::Any,
                    )]))
                    .map_err(|e| e.to_string())?;
            }
        }
        let mine = Prefix::namespace(
            &gr,
            &Workspace::parse("root:a").map_err(|e| e.to_string())?,
            "ns",
        )
        .map_err(|e| e.to_string())?;
        let mut tokens = Vec::new();
        let mut opts = ListOptions {
            limit: 1,
            ..Default::default()
        };
        while let Some(t) = store
            .list(&mine, &opts)
            .map_err(|e| e.to_string())?
            .continue_token
        {
            tokens.push(t.clone());
            opts.continue_token = Some(t);
        }
        if tokens.is_empty() {
            return Err("the fixture's list has no second page".into());
        }
        let seed = |s: &str| serde_json::from_str(s).map_err(|e| format!("seed JSON: {e}"));
        Ok(Fixture {
            seeds: [seed(SEEDS[0])?, seed(SEEDS[1])?],
            store,
            mine,
            tokens,
        })
    }
}

fn continue_target(rng: &mut StdRng, f: &Fixture) -> Result<(), String> {
    let real = &f.tokens[rng.random_range(0..f.tokens.len())];
    let token = match rng.random_range(0..3) {
        0 => String::from_utf8_lossy(&mutate(rng, real.as_bytes())).into_owned(),
        1 => {
            // Mutate the decoded JSON, then encode it again.
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let json = b64.decode(real).unwrap_or_default();
            b64.encode(mutate(rng, &json))
        }
        _ => real.clone(),
    };
    let _ = crate::store::continue_revision(&token);
    let opts = crate::store::ListOptions {
        limit: rng.random_range(0..4),
        continue_token: Some(token.clone()),
        revision: None,
    };
    if let Ok(page) = f.store.list(&f.mine, &opts) {
        for r in &page.items {
            if !f.mine.contains(&r.key) {
                return Err(format!(
                    "continue token {token:?} listed a key of another list"
                ));
            }
        }
    }
    Ok(())
}

/// Runs for `seconds` (or `iterations`, whichever ends first); returns
/// the number of inputs tried, or the failing input's description.
pub fn run(seed: u64, seconds: u64, iterations: u64) -> Result<u64, String> {
    let fixture = Fixture::new()?;
    let target = |n: u64| TARGETS[(n % 5) as usize];
    crate::fuzz::run(
        seed,
        seconds,
        iterations,
        |rng, n| {
            one(rng, n, &fixture).map_err(|e| format!("iteration {n} ({} target): {e}", target(n)))
        },
        |p| {
            let mut replay = p.rng;
            let path = random_path(&mut replay);
            format!(
                "iteration {} ({} target) panicked (seed {seed}); replay with this seed; first path {path:?}",
                p.iteration,
                target(p.iteration)
            )
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_short_fuzz_run_is_clean() {
        let n = super::run(7, 60, 20_000).unwrap();
        assert_eq!(n, 20_000);
    }
}
