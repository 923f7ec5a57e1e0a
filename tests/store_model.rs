//! Random operation sequences, reopens included, against the store on
//! RocksDB and on the in-memory engine, each compared with a BTreeMap model:
//! every answer must be the same.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tmc::store::{
    Engine, Error, Expectation, GroupResource, Key, ListOptions, MemoryEngine, ObjectKey, OpResult,
    Prefix, RocksEngine, RocksOptions, Store, StoreOptions, Txn, TxnOp, Workspace,
};

const WORKSPACES: [&str; 3] = ["root:a", "root:ab", "root:a:b"];

#[derive(Debug, Clone)]
enum Cond {
    Any,
    Absent,
    Present,
    /// The key's current revision (if any) plus this offset: 0 is right.
    Rev(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Txn(Vec<(bool, usize, usize, u16, Cond)>),
    Get(usize, usize),
    List { ws: usize, limit: usize },
    Changes(u8),
    Reopen,
}

fn key(ws: usize, name: usize) -> ObjectKey {
    ObjectKey::namespaced(
        GroupResource::new("apps", "deployments").unwrap(),
        Workspace::parse(WORKSPACES[ws]).unwrap(),
        "default",
        &format!("o{name}"),
    )
    .unwrap()
}

fn arb_cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        Just(Cond::Any),
        Just(Cond::Absent),
        Just(Cond::Present),
        (0u8..2).prop_map(Cond::Rev),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec((any::<bool>(), 0..3usize, 0..5usize, any::<u16>(), arb_cond()), 1..4).prop_map(Op::Txn),
        2 => (0..3usize, 0..5usize).prop_map(|(w, n)| Op::Get(w, n)),
        2 => (0..3usize, 0..4usize).prop_map(|(ws, limit)| Op::List { ws, limit }),
        1 => (0u8..6).prop_map(Op::Changes),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default, Clone)]
struct Model {
    data: BTreeMap<Vec<u8>, (u64, u64, Vec<u8>)>,
    revision: u64,
    history: Vec<(u64, Vec<u8>)>,
}

/// Runs the ops against a store opened by `open` and the model.
fn check<E: Engine>(mut open: impl FnMut() -> E, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let opts = || StoreOptions {
        sync: false,
        changes_retention: 1_000,
    };
    let mut st = Store::open(open(), opts()).unwrap();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Txn(items) => {
                let mut txn = vec![];
                for (is_put, w, n, v, cond) in &items {
                    let k = key(*w, *n);
                    let cur = m.data.get(&Key::Object(k.clone()).encode()).map(|e| e.1);
                    let expect = match cond {
                        Cond::Any => Expectation::Any,
                        Cond::Absent => Expectation::Absent,
                        Cond::Present => Expectation::Present,
                        Cond::Rev(off) => Expectation::ModRevision(cur.unwrap_or(1) + *off as u64),
                    };
                    txn.push(if *is_put {
                        TxnOp::put_json(k, format!("{v}").into_bytes(), expect)
                    } else {
                        TxnOp::delete(k, expect)
                    });
                }
                // The model: every precondition against the state before the
                // transaction, then every write in order.
                let rev = m.revision + 1;
                let parts = |op: &TxnOp| match op {
                    TxnOp::Put { key, expect, .. }
                    | TxnOp::Delete { key, expect }
                    | TxnOp::Check { key, expect } => (key.encode(), *expect),
                    // (The model makes no advances.)
                    TxnOp::Advance { .. } => (Vec::new(), Expectation::Any),
                };
                let ok = txn.iter().all(|op| {
                    let (k, expect) = parts(op);
                    match (expect, m.data.get(&k).map(|e| e.1)) {
                        (Expectation::Any, _) => true,
                        (Expectation::Absent, None) => true,
                        (Expectation::Present, Some(_)) => true,
                        (Expectation::ModRevision(w), Some(h)) => w == h,
                        _ => false,
                    }
                });
                let mut view = m.data.clone();
                let mut changed = vec![];
                if ok {
                    for op in &txn {
                        let (k, _) = parts(op);
                        match op {
                            TxnOp::Put { value, .. } => {
                                let create = view.get(&k).map_or(rev, |e| e.0);
                                view.insert(k.clone(), (create, rev, value.clone()));
                                changed.push((rev, k));
                            }
                            TxnOp::Delete { .. } => {
                                if view.remove(&k).is_some() {
                                    changed.push((rev, k));
                                }
                            }
                            TxnOp::Check { .. } | TxnOp::Advance { .. } => {}
                        }
                    }
                }
                let got = st.commit(Txn::new(txn));
                if ok {
                    let c = got.map_err(|e| TestCaseError::fail(format!("store refused: {e}")))?;
                    prop_assert_eq!(c.revision, rev);
                    m.history.extend(changed);
                    m.data = view;
                    m.revision = rev;
                    prop_assert!(c.results.iter().all(|r| !matches!(r, OpResult::Checked)));
                } else {
                    prop_assert!(
                        matches!(got, Err(Error::Conflict { .. })),
                        "model says conflict, store says {:?}",
                        got
                    );
                }
            }
            Op::Get(w, n) => {
                let k = Key::Object(key(w, n));
                let got = st
                    .get(&k)
                    .unwrap()
                    .map(|r| (r.create_revision, r.mod_revision, r.value));
                prop_assert_eq!(got, m.data.get(&k.encode()).cloned());
            }
            Op::List { ws, limit } => {
                let gr = GroupResource::new("apps", "deployments").unwrap();
                let prefix = Prefix::workspace(&gr, &Workspace::parse(WORKSPACES[ws]).unwrap());
                let mut got = vec![];
                let mut opts = ListOptions {
                    limit,
                    ..Default::default()
                };
                loop {
                    let page = st.list(&prefix, &opts).unwrap();
                    prop_assert_eq!(page.revision, m.revision);
                    if limit > 0 {
                        prop_assert!(page.items.len() <= limit);
                    }
                    got.extend(
                        page.items
                            .into_iter()
                            .map(|r| (r.key, (r.create_revision, r.mod_revision, r.value))),
                    );
                    match page.continue_token {
                        Some(t) => opts.continue_token = Some(t),
                        None => break,
                    }
                }
                let want: Vec<_> = m
                    .data
                    .iter()
                    .filter(|(k, _)| prefix.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Changes(back) => {
                let after = m.revision.saturating_sub(back as u64);
                let got: Vec<(u64, Vec<u8>)> = st
                    .changes_since(after, 0)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.revision, c.key))
                    .collect();
                let want: Vec<(u64, Vec<u8>)> = m
                    .history
                    .iter()
                    .filter(|(r, _)| *r > after)
                    .cloned()
                    .collect();
                prop_assert_eq!(&got, &want);
                prop_assert!(
                    got.windows(2).all(|w| w[0].0 <= w[1].0),
                    "changes in revision order"
                );
            }
            Op::Reopen => {
                drop(st);
                st = Store::open(open(), opts()).unwrap();
                prop_assert_eq!(st.revision(), m.revision);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rocksdb_matches_model(ops in prop::collection::vec(arb_op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        check(|| RocksEngine::open(&path, &RocksOptions { block_cache_bytes: 8 << 20, write_buffer_bytes: 8 << 20, memtable_bytes: 1 << 20 }).unwrap(), ops)?;
    }

    #[test]
    fn memory_matches_model(ops in prop::collection::vec(arb_op(), 1..60)) {
        let e = MemoryEngine::new();
        check(|| e.clone(), ops)?;
    }
}
