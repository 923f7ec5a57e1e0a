//! Bad data and bad names: a flipped byte is an error naming the key and the
//! failed checksum, never a panic or wrong data; invalid names are refused
//! with the rule they broke, and nothing is written.

use tmc::store::{
    self, Cf, Engine, Error, Expectation, GroupResource, Key, ListOptions, ObjectKey, Prefix,
    RocksEngine, RocksOptions, StoreOptions, Txn, TxnOp, Workspace, WriteBatch,
};

fn key(name: &str) -> ObjectKey {
    ObjectKey::namespaced(
        GroupResource::new("", "secrets").unwrap(),
        Workspace::parse("root:acme").unwrap(),
        "default",
        name,
    )
    .unwrap()
}

#[test]
fn flipped_byte_in_a_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let st = store::open_rocks(
        &dir.path().join("db"),
        &RocksOptions::default(),
        StoreOptions::default(),
    )
    .unwrap();
    let k = key("db-password");
    st.commit(Txn::new(vec![TxnOp::put_json(
        k.clone(),
        br#"{"data":"x"}"#.to_vec(),
        Expectation::Absent,
    )]))
    .unwrap();
    let raw_key = Key::Object(k.clone()).encode();
    let mut raw = st.engine().get(Cf::Data, &raw_key).unwrap().unwrap();
    let last = raw.len() - 3;
    raw[last] ^= 0x20;
    let mut wb = WriteBatch::new();
    wb.put(Cf::Data, raw_key.clone(), raw);
    st.engine().write(wb, true).unwrap();

    let err = st.get(&Key::Object(k.clone())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }));
    assert!(
        msg.contains("/registry/core/secrets/root:acme/default/db-password"),
        "{msg}"
    );
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(
        !err.is_deterministic(),
        "corruption is local to one replica"
    );
    let prefix = Prefix::workspace(&GroupResource::new("", "secrets").unwrap(), &k.workspace);
    let err = st.list(&prefix, &ListOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("db-password") && err.to_string().contains("checksum"),
        "{err}"
    );
    // An update that expects the old revision cannot read through the damage either.
    let err = st
        .commit(Txn::new(vec![TxnOp::put_json(
            k,
            b"{}".to_vec(),
            Expectation::Any,
        )]))
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn flipped_byte_on_disk_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // An incompressible body, so that RocksDB stores it as it is and we can
    // find it in the table files (of `data`, and of `changes`).
    let mut body = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::rng(), &mut body[..]);
    {
        let st =
            store::open_rocks(&path, &RocksOptions::default(), StoreOptions::default()).unwrap();
        st.commit(Txn::new(vec![TxnOp::put_json(
            key("big"),
            body.clone(),
            Expectation::Absent,
        )]))
        .unwrap();
        st.engine().flush().unwrap();
    }
    let mut flipped = 0;
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&p).unwrap();
            if let Some(at) = bytes.windows(64).position(|w| w == &body[100..164]) {
                bytes[at + 10] ^= 0x01;
                std::fs::write(&p, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(
        (1..=2).contains(&flipped),
        "the value was found in the data (and changes) table files: {flipped}"
    );
    let engine = RocksEngine::open(&path, &RocksOptions::default()).unwrap();
    let st = store::Store::open(engine, StoreOptions::default()).unwrap();
    let err = st.get(&Key::Object(key("big"))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/registry/core/secrets/root:acme/default/big"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("checksum"), "{msg}");
}

#[test]
fn bad_names_are_refused_with_the_rule() {
    let gr = GroupResource::new("", "configmaps").unwrap();
    let ws = Workspace::parse("root:acme").unwrap();
    let cases: Vec<(Result<ObjectKey, store::NameError>, &str)> = vec![
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "default", "a/b"),
            "must not contain '/'",
        ),
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "default", "a\0b"),
            "must not contain NUL",
        ),
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "de/fault", "a"),
            "must not contain '/'",
        ),
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "Default", "a"),
            "character 'D'",
        ),
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "default", ""),
            "must not be empty",
        ),
        (
            ObjectKey::namespaced(gr.clone(), ws.clone(), "default", &"x".repeat(300)),
            "at most 253",
        ),
        (
            ObjectKey::cluster_scoped(gr.clone(), ws.clone(), "UPPER"),
            "character 'U'",
        ),
    ];
    for (result, rule) in cases {
        let err = result.expect_err(rule);
        assert!(
            err.to_string().contains(rule),
            "{err} should mention {rule}"
        );
    }
    for (bad, rule) in [
        ("root:a/b", "'/'"),
        ("root:a\0", "NUL"),
        ("root:", "empty segment"),
        ("system:x", "reserved"),
        ("root:Acme", "character 'A'"),
    ] {
        let err = Workspace::parse(bad).unwrap_err();
        assert!(err.to_string().contains(rule), "{bad:?}: {err}");
        assert_eq!(err.kind, "workspace");
    }
    // A transaction arriving encoded (as from the raft log) with a forged key
    // cannot even be decoded, so nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let st = store::open_rocks(
        &dir.path().join("db"),
        &RocksOptions::default(),
        StoreOptions::default(),
    )
    .unwrap();
    let good = Txn::new(vec![TxnOp::put_json(
        ObjectKey::namespaced(gr, ws, "default", "ok").unwrap(),
        b"{}".to_vec(),
        Expectation::Absent,
    )]);
    let mut bytes = serde_json::to_vec(&good).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // Keys serialize as byte arrays; replace the name's last byte 'k' (107) with '/' (47).
    let forged = text.replacen("111,107]", "111,47]", 1);
    assert_ne!(forged, text, "the key bytes were found");
    bytes = forged.into_bytes();
    let err = serde_json::from_slice::<Txn>(&bytes).unwrap_err();
    assert!(err.to_string().contains("invalid key"), "{err}");
    assert_eq!(st.revision(), 0);
}
