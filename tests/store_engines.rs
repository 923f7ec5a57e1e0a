//! One test suite run against both engines: RocksDB in a temporary
//! directory and the in-memory engine. Whatever the store promises must hold
//! on each.

use std::path::Path;
use tmc::store::{
    Cf, ChangeKind, Engine, Error, Expectation, GroupResource, Key, ListOptions, MemoryEngine,
    ObjectKey, OpResult, Prefix, RocksEngine, RocksOptions, Store, StoreOptions, Txn, TxnOp,
    Workspace, WriteBatch,
};

/// Opens (and reopens) one engine's data.
trait Harness {
    type E: Engine;
    fn open(&mut self) -> Self::E;
    fn open_checkpoint(&mut self, dir: &Path) -> Self::E;
}

struct Rocks(tempfile::TempDir);
impl Harness for Rocks {
    type E = RocksEngine;
    fn open(&mut self) -> RocksEngine {
        RocksEngine::open(&self.0.path().join("db"), &RocksOptions::default()).unwrap()
    }
    fn open_checkpoint(&mut self, dir: &Path) -> RocksEngine {
        RocksEngine::open(dir, &RocksOptions::default()).unwrap()
    }
}

struct Memory(MemoryEngine);
impl Harness for Memory {
    type E = MemoryEngine;
    fn open(&mut self) -> MemoryEngine {
        self.0.clone()
    }
    fn open_checkpoint(&mut self, dir: &Path) -> MemoryEngine {
        MemoryEngine::load_checkpoint(dir).unwrap()
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        sync: false,
        changes_retention: 1_000,
    }
}

fn ws(s: &str) -> Workspace {
    Workspace::parse(s).unwrap()
}

fn deployments() -> GroupResource {
    GroupResource::new("apps", "deployments").unwrap()
}

fn dkey(w: &str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey::namespaced(deployments(), ws(w), ns, name).unwrap()
}

fn body(n: u32) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

fn put(k: &ObjectKey, n: u32, expect: Expectation) -> TxnOp {
    TxnOp::put_json(k.clone(), body(n), expect)
}

fn names(page: &[tmc::store::Record]) -> Vec<String> {
    page.iter()
        .map(|r| String::from_utf8(r.key.clone()).unwrap())
        .collect()
}

fn engine_primitives(h: &mut impl Harness) {
    let e = h.open();
    let mut wb = WriteBatch::new();
    for k in ["a", "b", "c", "d"] {
        wb.put(Cf::Data, k, k.to_uppercase());
    }
    wb.put(Cf::Log, "a", "log");
    e.write(wb, true).unwrap();
    assert_eq!(e.get(Cf::Data, b"b").unwrap(), Some(b"B".to_vec()));
    assert_eq!(
        e.get(Cf::Meta, b"a").unwrap(),
        None,
        "column families are separate"
    );
    let keys = |it: tmc::store::engine::ScanIter<'_>| -> Vec<Vec<u8>> {
        it.map(|r| r.unwrap().0).collect()
    };
    assert_eq!(
        keys(e.scan(Cf::Data, b"b", b"d").unwrap()),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(keys(e.scan(Cf::Data, b"b", b"").unwrap()).len(), 3);
    assert_eq!(
        keys(e.scan_rev(Cf::Data, b"a", b"c").unwrap()),
        vec![b"b".to_vec(), b"a".to_vec()]
    );
    let mut wb = WriteBatch::new();
    wb.delete(Cf::Data, "a");
    wb.delete_range(Cf::Data, "b", "d");
    e.write(wb, false).unwrap();
    assert_eq!(
        keys(e.scan(Cf::Data, b"", b"").unwrap()),
        vec![b"d".to_vec()]
    );
    assert_eq!(e.get(Cf::Log, b"a").unwrap(), Some(b"log".to_vec()));
}

fn revisions_and_cas(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    let k = dkey("root:a", "default", "web");
    let c = st
        .commit(Txn::new(vec![put(&k, 1, Expectation::Absent)]))
        .unwrap();
    assert_eq!(c.revision, 1);
    let r = st.get(&Key::Object(k.clone())).unwrap().unwrap();
    assert_eq!(
        (r.create_revision, r.mod_revision, r.value.clone()),
        (1, 1, body(1))
    );

    // Creating again fails: the key exists.
    let err = st
        .commit(Txn::new(vec![put(&k, 9, Expectation::Absent)]))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    // Update with the right revision succeeds and keeps the create revision.
    let c = st
        .commit(Txn::new(vec![put(&k, 2, Expectation::ModRevision(1))]))
        .unwrap();
    assert!(c.revision > 1);
    let r2 = st.get(&Key::Object(k.clone())).unwrap().unwrap();
    assert_eq!((r2.create_revision, r2.mod_revision), (1, c.revision));
    match &c.results[0] {
        OpResult::Put { prev: Some(p), .. } => assert_eq!(p.value, body(1)),
        other => panic!("unexpected {other:?}"),
    }
    // A stale revision is a conflict that names the key; nothing changes.
    let err = st
        .commit(Txn::new(vec![put(&k, 3, Expectation::ModRevision(1))]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/registry/apps/deployments/root:a/default/web"),
        "{msg}"
    );
    assert!(msg.contains("expected revision 1"), "{msg}");
    assert_eq!(
        st.get(&Key::Object(k.clone())).unwrap().unwrap().value,
        body(2)
    );
    assert_eq!(
        st.revision(),
        c.revision,
        "a failed transaction makes no revision"
    );
    // Delete with a precondition.
    let err = st.commit(Txn::new(vec![TxnOp::delete(
        k.clone(),
        Expectation::ModRevision(1),
    )]));
    assert!(matches!(err, Err(Error::Conflict { .. })));
    let d = st
        .commit(Txn::new(vec![TxnOp::delete(
            k.clone(),
            Expectation::ModRevision(c.revision),
        )]))
        .unwrap();
    assert!(matches!(&d.results[0], OpResult::Deleted(Some(p)) if p.value == body(2)));
    assert_eq!(st.get(&Key::Object(k.clone())).unwrap(), None);
    // Present/absent preconditions on a missing key.
    assert!(st
        .commit(Txn::new(vec![TxnOp::delete(
            k.clone(),
            Expectation::Present
        )]))
        .is_err());
    let c = st
        .commit(Txn::new(vec![TxnOp::delete(k, Expectation::Any)]))
        .unwrap();
    assert!(matches!(&c.results[0], OpResult::Deleted(None)));
}

fn atomic_batches(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    let (a, b) = (dkey("root:a", "ns", "a"), dkey("root:a", "ns", "b"));
    st.commit(Txn::new(vec![put(&b, 1, Expectation::Absent)]))
        .unwrap();
    let before = st.revision();
    // The second precondition fails: the first put must not land either.
    let err = st.commit(Txn::new(vec![
        put(&a, 1, Expectation::Absent),
        put(&b, 2, Expectation::Absent),
    ]));
    assert!(err.is_err());
    assert_eq!(st.get(&Key::Object(a.clone())).unwrap(), None);
    assert_eq!(st.revision(), before);
    assert!(
        st.changes_since(before, 0).unwrap().is_empty(),
        "no change recorded"
    );
    // Both succeed together at one revision.
    let c = st
        .commit(Txn::new(vec![
            put(&a, 1, Expectation::Absent),
            put(&b, 2, Expectation::ModRevision(before)),
        ]))
        .unwrap();
    for k in [&a, &b] {
        assert_eq!(
            st.get(&Key::Object(k.clone()))
                .unwrap()
                .unwrap()
                .mod_revision,
            c.revision
        );
    }
    let changes = st.changes_since(before, 0).unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|ch| ch.revision == c.revision));
}

fn lists_are_exact_per_workspace(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    let mut ops = vec![];
    for w in ["root:a", "root:ab", "root:a:b"] {
        for ns in ["default", "prod"] {
            for n in ["x", "y"] {
                ops.push(put(&dkey(w, ns, n), 1, Expectation::Absent));
            }
        }
    }
    st.commit(Txn::new(ops)).unwrap();
    let gr = deployments();
    let page = st
        .list(
            &Prefix::workspace(&gr, &ws("root:a")),
            &ListOptions::default(),
        )
        .unwrap();
    assert_eq!(
        names(&page.items),
        [
            "/registry/apps/deployments/root:a/default/x",
            "/registry/apps/deployments/root:a/default/y",
            "/registry/apps/deployments/root:a/prod/x",
            "/registry/apps/deployments/root:a/prod/y",
        ]
    );
    let page = st
        .list(
            &Prefix::namespace(&gr, &ws("root:ab"), "prod").unwrap(),
            &ListOptions::default(),
        )
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(names(&page.items)
        .iter()
        .all(|n| n.contains("/root:ab/prod/")));
    let all = st
        .list(&Prefix::resource(&gr), &ListOptions::default())
        .unwrap();
    assert_eq!(all.items.len(), 12);
    let other = GroupResource::new("", "configmaps").unwrap();
    assert!(st
        .list(&Prefix::resource(&other), &ListOptions::default())
        .unwrap()
        .items
        .is_empty());
}

fn pagination_is_consistent_at_one_revision(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    let gr = deployments();
    let keys: Vec<ObjectKey> = (0..10)
        .map(|i| dkey("root:a", "default", &format!("d{i}")))
        .collect();
    for k in &keys {
        st.commit(Txn::new(vec![put(k, 1, Expectation::Absent)]))
            .unwrap();
    }
    let prefix = Prefix::workspace(&gr, &ws("root:a"));
    let first = st
        .list(
            &prefix,
            &ListOptions {
                limit: 4,
                ..Default::default()
            },
        )
        .unwrap();
    let r = first.revision;
    assert_eq!(first.items.len(), 4);
    let token = first.continue_token.clone().expect("more pages");
    // Change the world between pages: update d5, delete d6, create d55.
    let d5 = st.get(&Key::Object(keys[5].clone())).unwrap().unwrap();
    st.commit(Txn::new(vec![put(
        &keys[5],
        2,
        Expectation::ModRevision(d5.mod_revision),
    )]))
    .unwrap();
    st.commit(Txn::new(vec![TxnOp::delete(
        keys[6].clone(),
        Expectation::Present,
    )]))
    .unwrap();
    st.commit(Txn::new(vec![put(
        &dkey("root:a", "default", "d55"),
        1,
        Expectation::Absent,
    )]))
    .unwrap();
    let mut items = first.items.clone();
    let mut next = Some(token);
    while let Some(t) = next {
        let p = st
            .list(
                &prefix,
                &ListOptions {
                    limit: 4,
                    continue_token: Some(t),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(p.revision, r, "every page is at the first page's revision");
        items.extend(p.items);
        next = p.continue_token;
    }
    assert_eq!(items.len(), 10, "the list shows the state at revision {r}");
    let d5_listed = items.iter().find(|i| i.key.ends_with(b"/d5")).unwrap();
    assert_eq!(d5_listed.value, body(1), "d5 as it was at {r}");
    assert!(
        items.iter().any(|i| i.key.ends_with(b"/d6")),
        "d6 still there at {r}"
    );
    assert!(
        !items.iter().any(|i| i.key.ends_with(b"/d55")),
        "d55 did not exist at {r}"
    );
    // A fresh list sees the new world.
    let now = st.list(&prefix, &ListOptions::default()).unwrap();
    assert_eq!(now.items.len(), 10);
    assert!(now.items.iter().any(|i| i.key.ends_with(b"/d55")));
    assert!(now.revision > r);
    // And an explicit older revision gives the old world again.
    let old = st
        .list(
            &prefix,
            &ListOptions {
                revision: Some(r),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(names(&old.items), names(&items));
    // A future revision is refused.
    let err = st.list(
        &prefix,
        &ListOptions {
            revision: Some(now.revision + 10),
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(Error::FutureRevision { .. })));
}

fn continue_tokens_stay_in_their_list(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    let mut ops = vec![];
    for w in ["root:a", "root:b"] {
        for i in 0..3 {
            ops.push(put(
                &dkey(w, "default", &format!("o{i}")),
                1,
                Expectation::Absent,
            ));
        }
    }
    st.commit(Txn::new(ops)).unwrap();
    let gr = deployments();
    let pa = Prefix::workspace(&gr, &ws("root:a"));
    let pb = Prefix::workspace(&gr, &ws("root:b"));
    let page = st
        .list(
            &pb,
            &ListOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let token = page.continue_token.unwrap();
    let err = st
        .list(
            &pa,
            &ListOptions {
                limit: 1,
                continue_token: Some(token),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidContinue(_)), "{err}");
    for garbage in ["", "!!!", "eyJydiI6MH0", "bm90IGpzb24"] {
        let err = st.list(
            &pa,
            &ListOptions {
                continue_token: Some(garbage.into()),
                ..Default::default()
            },
        );
        assert!(matches!(err, Err(Error::InvalidContinue(_))), "{garbage:?}");
    }
}

fn change_log_and_compaction(h: &mut impl Harness) {
    let st = Store::open(
        h.open(),
        StoreOptions {
            sync: false,
            changes_retention: 10,
        },
    )
    .unwrap();
    let k = dkey("root:a", "default", "web");
    let mut rx = st.subscribe();
    st.commit(Txn::new(vec![put(&k, 0, Expectation::Absent)]))
        .unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 1);
    for i in 1..5 {
        st.commit(Txn::new(vec![put(&k, i, Expectation::Any)]))
            .unwrap();
    }
    st.commit(Txn::new(vec![TxnOp::delete(
        k.clone(),
        Expectation::Present,
    )]))
    .unwrap();
    let ch = st.changes_since(0, 0).unwrap();
    assert_eq!(ch.len(), 6);
    assert_eq!(
        ch.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(ch[0].kind, ChangeKind::Put);
    assert!(ch[0].prev.is_none());
    assert_eq!(ch[2].prev.as_ref().unwrap().value, body(1));
    assert_eq!(ch[2].value.as_ref().unwrap().value, body(2));
    assert_eq!(ch[5].kind, ChangeKind::Delete);
    assert_eq!(ch[5].prev.as_ref().unwrap().value, body(4));
    assert_eq!(st.changes_since(4, 1).unwrap().len(), 1);
    // Push history past the retention window.
    for i in 0..30 {
        st.commit(Txn::new(vec![put(&k, i, Expectation::Any)]))
            .unwrap();
    }
    let compacted = st.compacted_revision();
    assert!(
        compacted > 0 && compacted >= st.revision() - 12,
        "compacted {compacted}"
    );
    let err = st.changes_since(1, 0).unwrap_err();
    assert!(
        matches!(err, Error::Compacted { requested: 1, .. }),
        "{err}"
    );
    let prefix = Prefix::workspace(&deployments(), &ws("root:a"));
    let err = st.list(
        &prefix,
        &ListOptions {
            revision: Some(2),
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(Error::Compacted { .. })));
    let tail = st.changes_since(compacted, 0).unwrap();
    assert_eq!(tail.first().unwrap().revision, compacted + 1);
    assert_eq!(tail.last().unwrap().revision, st.revision());
}

fn reopen_keeps_everything(h: &mut impl Harness) {
    let rev;
    {
        let st = Store::open(h.open(), opts()).unwrap();
        for i in 0..5 {
            st.commit(Txn::new(vec![put(
                &dkey("root:a", "default", &format!("o{i}")),
                i,
                Expectation::Absent,
            )]))
            .unwrap();
        }
        rev = st.revision();
    }
    let st = Store::open(h.open(), opts()).unwrap();
    assert_eq!(st.revision(), rev);
    assert_eq!(st.applied_index(), rev);
    assert_eq!(st.changes_since(0, 0).unwrap().len(), 5);
    let c = st
        .commit(Txn::new(vec![put(
            &dkey("root:a", "default", "o9"),
            9,
            Expectation::Absent,
        )]))
        .unwrap();
    assert_eq!(c.revision, rev + 1, "revisions continue after a reopen");
    // Raft-style apply: the applied index follows the log, revisions count
    // transactions; stale indexes are refused.
    let c = st
        .apply(
            rev + 10,
            Txn::new(vec![put(
                &dkey("root:a", "default", "o10"),
                1,
                Expectation::Absent,
            )]),
        )
        .unwrap();
    assert_eq!(c.revision, rev + 2);
    assert_eq!(st.applied_index(), rev + 10);
    assert!(matches!(
        st.apply(rev + 5, Txn::default()),
        Err(Error::StaleRevision { .. })
    ));
    st.apply_noop(rev + 11).unwrap();
    assert_eq!((st.revision(), st.applied_index()), (rev + 2, rev + 11));
    // One entry, several transactions: consecutive revisions, one failing
    // alone, later ones seeing earlier ones' writes.
    let k = dkey("root:a", "default", "grouped");
    let out = st
        .apply_entry(
            rev + 12,
            vec![
                Txn::new(vec![put(&k, 1, Expectation::Absent)]),
                Txn::new(vec![put(&k, 2, Expectation::Absent)]),
                Txn::new(vec![put(&k, 3, Expectation::ModRevision(rev + 3))]),
            ],
        )
        .unwrap();
    assert_eq!(out[0].as_ref().unwrap().revision, rev + 3);
    assert!(matches!(out[1], Err(Error::Conflict { .. })));
    assert_eq!(out[2].as_ref().unwrap().revision, rev + 4);
    let r = st.get(&Key::Object(k)).unwrap().unwrap();
    assert_eq!(
        (r.create_revision, r.mod_revision, r.value),
        (rev + 3, rev + 4, body(3))
    );
    assert_eq!(st.applied_index(), rev + 12);
}

fn checkpoints_restore(h: &mut impl Harness) {
    let st = Store::open(h.open(), opts()).unwrap();
    for i in 0..20 {
        st.commit(Txn::new(vec![put(
            &dkey("root:a", "default", &format!("o{i}")),
            i,
            Expectation::Absent,
        )]))
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    st.checkpoint(&cp).unwrap();
    // Writes after the checkpoint are not in it.
    st.commit(Txn::new(vec![put(
        &dkey("root:a", "default", "late"),
        1,
        Expectation::Absent,
    )]))
    .unwrap();
    let restored = Store::open(h.open_checkpoint(&cp), opts()).unwrap();
    assert_eq!(restored.revision(), 20);
    let prefix = Prefix::workspace(&deployments(), &ws("root:a"));
    let page = restored.list(&prefix, &ListOptions::default()).unwrap();
    assert_eq!(page.items.len(), 20);
    assert!(restored
        .get(&Key::Object(dkey("root:a", "default", "late")))
        .unwrap()
        .is_none());
}

macro_rules! suite {
    ($($t:ident),* $(,)?) => {
        mod rocks {
            $( #[test] fn $t() { super::$t(&mut super::Rocks(tempfile::tempdir().unwrap())); } )*
        }
        mod memory {
            $( #[test] fn $t() { super::$t(&mut super::Memory(tmc::store::MemoryEngine::new())); } )*
        }
    };
}

suite!(
    engine_primitives,
    revisions_and_cas,
    atomic_batches,
    lists_are_exact_per_workspace,
    pagination_is_consistent_at_one_revision,
    continue_tokens_stay_in_their_list,
    change_log_and_compaction,
    reopen_keeps_everything,
    checkpoints_restore,
);

#[test]
fn rocksdb_reports_its_table_files_and_compactions() {
    use tmc::store::{Cf, Engine, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let e = RocksEngine::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
    assert_eq!(
        e.stats().live_table_bytes,
        0,
        "a new database has no table file"
    );
    let mut wb = WriteBatch::new();
    for i in 0..1000u32 {
        wb.put(Cf::Data, format!("k{i:05}").into_bytes(), vec![7u8; 1024]);
    }
    e.write(wb, true).unwrap();
    e.flush().unwrap();
    let s = e.stats();
    assert!(
        s.live_table_bytes > 0,
        "after a flush the table file counts: {s:?}"
    );
    // The memory engine has no background work.
    assert_eq!(tmc::store::MemoryEngine::new().stats(), Default::default());
}
