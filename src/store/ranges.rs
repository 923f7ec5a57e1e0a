//! The key ranges of one workspace, for moving a workspace as a whole
//! (`tmc workspace export`, `import`, `move`).
//!
//! A workspace's keys are not one range: each family puts segments before
//! the workspace ([`super::keys`]): `/registry/{group}/{resource}/{ws}/`,
//! `/tmc/placements/{ws}/`, `/tmc/placements-by-location/{location}/{ws}/`,
//! `/tmc/sync/{cluster}/{group}/{resource}/{ws}/`. [`Store::workspace_ranges`]
//! finds every range that holds a key of the workspace by skipping over
//! those segments: one seek per distinct value of them (resources,
//! locations, clusters and the resources synced to each), never a scan
//! through other workspaces' keys. The prefix of a workspace ends in `/`,
//! so `root:a` never takes `root:ab`'s or `root:a:b`'s keys.
//!
//! The ranges are found in the live state. A reader that wants them at an
//! older revision R (an export consistent at R) adds the range of every
//! key of the workspace changed after R ([`super::Key::workspace_range`]):
//! a range with keys at R but none now is one whose keys were all deleted
//! since.

use super::engine::{Cf, Engine};
use super::error::Result;
use super::keys::{prefix_end, Prefix, WORKSPACE_FAMILIES};
use super::names::Workspace;
use super::Store;

impl<E: Engine> Store<E> {
    /// Every range of the live state that holds a key of `ws`, in key
    /// order.
    pub fn workspace_ranges(&self, ws: &Workspace) -> Result<Vec<Prefix>> {
        let reader = self.reader();
        let engine = reader.engine();
        let mut out = Vec::new();
        for (base, depth) in WORKSPACE_FAMILIES {
            walk(engine, base.as_bytes().to_vec(), depth, ws, &mut out)?;
        }
        out.sort();
        Ok(out)
    }
}

/// The first key in `[from, end)`.
fn first_key<E: Engine>(engine: &E, from: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(engine
        .scan(Cf::Data, from, end)?
        .next()
        .transpose()?
        .map(|(k, _)| k))
}

/// Under `base`, skips `depth` segments (each distinct value once) and
/// adds `{base}{segments}{ws}/` where it holds a key.
fn walk<E: Engine>(
    engine: &E,
    base: Vec<u8>,
    depth: usize,
    ws: &Workspace,
    out: &mut Vec<Prefix>,
) -> Result<()> {
    if depth == 0 {
        let mut p = base;
        p.extend_from_slice(ws.as_str().as_bytes());
        p.push(b'/');
        if first_key(engine, &p, &prefix_end(&p))?.is_some() {
            out.push(Prefix(p));
        }
        return Ok(());
    }
    let end = prefix_end(&base);
    let mut from = base.clone();
    while let Some(key) = first_key(engine, &from, &end)? {
        let rest = &key[base.len()..];
        let Some(slash) = rest.iter().position(|b| *b == b'/') else {
            // A key with no further segment (no key of this layout has
            // one): step over it.
            from = key;
            from.push(0);
            continue;
        };
        let child = key[..base.len() + slash + 1].to_vec();
        walk(engine, child.clone(), depth - 1, ws, out)?;
        from = prefix_end(&child);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::engine::MemoryEngine;
    use crate::store::keys::{ClusterRef, GroupResource, Key, ObjectKey};
    use crate::store::{Expectation, Store, StoreOptions, Txn, TxnOp, Workspace};

    fn ws(s: &str) -> Workspace {
        Workspace::parse(s).unwrap()
    }

    fn object(gr: &GroupResource, w: &str, name: &str) -> Key {
        ObjectKey::namespaced(gr.clone(), ws(w), "default", name)
            .unwrap()
            .into()
    }

    #[test]
    fn every_family_of_a_workspace_is_found_and_no_neighbours_range() {
        let store = Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap();
        let cms = GroupResource::new("", "configmaps").unwrap();
        let deps = GroupResource::new("apps", "deployments").unwrap();
        let east = ClusterRef {
            workspace: ws("root:loc"),
            name: "east".into(),
        };
        let mut keys = Vec::new();
        for w in ["root:a", "root:ab", "root:a:b", "root:b"] {
            keys.push(object(&cms, w, "x"));
            keys.push(Key::placement(ws(w), "p").unwrap());
            keys.push(Key::placement_at(ws("root:loc"), ws(w), "p").unwrap());
            let o = ObjectKey::namespaced(deps.clone(), ws(w), "default", "web").unwrap();
            keys.push(Key::sync(east.clone(), o.clone()).unwrap());
            keys.push(Key::dependant("owner-uid", o).unwrap());
            keys.push(Key::gc_work(ws(w), crate::store::GcRole::Owner, "owner-uid").unwrap());
        }
        // Only b has deployments in its own range.
        keys.push(object(&deps, "root:b", "web"));
        let ops = keys
            .iter()
            .map(|k| TxnOp::put_json(k.clone(), b"{}".to_vec(), Expectation::Absent))
            .collect();
        store.commit(Txn::new(ops)).unwrap();
        let found = store.workspace_ranges(&ws("root:a")).unwrap();
        let a_keys: Vec<&Key> = keys
            .iter()
            .filter(|k| k.workspace().as_str() == "root:a")
            .collect();
        let mut want: Vec<_> = a_keys.iter().map(|k| k.workspace_range()).collect();
        want.sort();
        assert_eq!(found, want);
        assert_eq!(found.len(), 6);
        for k in &keys {
            let inside = found.iter().any(|p| p.contains(&k.encode()));
            assert_eq!(inside, k.workspace().as_str() == "root:a", "{k}");
        }
        assert!(store.workspace_ranges(&ws("root:none")).unwrap().is_empty());
    }
}
