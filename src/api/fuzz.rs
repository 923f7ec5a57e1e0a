//! A fuzzer for the request edge: routing, body decoding, kind checks and
//! patching, fed with mutated kcp/Kubernetes paths and object bodies.
//!
//! Run it with `tmc debug fuzz-api --seconds 600 [--seed N]`; it stops at
//! the first input that panics (or breaks an invariant), prints that input
//! and exits non-zero. A short run is part of the tests; the 10-minute
//! run's result is in docs/api.md. Invariants checked besides "no panic":
//! a routed resource request never carries a name or namespace with `/`,
//! `%` or a `.`/`..` segment, and a routed workspace always parses again.

use super::request::{self, Target, WorkspaceSel};
use super::{object, patch, resources};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// One iteration; `Err` names a broken invariant.
fn one(rng: &mut StdRng) -> Result<(), String> {
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
    }
    let live: serde_json::Value = serde_json::from_slice(SEEDS[0].as_bytes()).expect("seed JSON");
    if let Some(ty) = patch::PatchType::from_content_type(ct) {
        if ty != patch::PatchType::Apply {
            let gk = patch::GroupKind::new(info.group, info.kind);
            let _ = patch::apply_patch(&gk, &live, ty, &body);
        }
    }
    Ok(())
}

/// Runs for `seconds` (or `iterations`, whichever ends first); returns
/// the number of inputs tried, or the failing input's description.
pub fn run(seed: u64, seconds: u64, iterations: u64) -> Result<u64, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut n = 0;
    while n < iterations && std::time::Instant::now() < until {
        let state = rng.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("iteration {n}: {e}")),
            Err(_) => {
                let mut replay = state;
                let path = random_path(&mut replay);
                return Err(format!(
                    "iteration {n} panicked (seed {seed}); path {path:?}"
                ));
            }
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_short_fuzz_run_is_clean() {
        let n = super::run(7, 60, 20_000).unwrap();
        assert_eq!(n, 20_000);
    }
}
