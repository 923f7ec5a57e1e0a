//! Lists: one page of a key range at a time, every page of one list
//! consistent at one revision, as with etcd.
//!
//! The data range is scanned live, and every key changed after the list's
//! revision R is replaced by its value at R, taken from the first change
//! after R in the change log (its `prev`; see [`super::changes`]). A page
//! reads the live engine or a replacement, never both
//! ([`Store::begin_replace`](super::Store::begin_replace)). The continue
//! token carries R and the next key (JSON, base64); a token this store did
//! not write, one of another list, or one naming a revision not reached
//! yet is refused.
//!
//! Left out: listing at a revision older than the change log's window (410
//! Gone, [`Error::Compacted`]); a list's cost at an old revision grows with
//! the writes since.

use super::changes::change_key;
use super::engine::{Cf, Engine};
use super::error::{Error, Result};
use super::keys::Prefix;
use super::{Record, Store};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many items (0: no limit).
    pub limit: usize,
    /// Continue token of the previous page.
    pub continue_token: Option<String>,
    /// List at this revision instead of the latest (ignored with a token).
    pub revision: Option<u64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The items, in key order.
    pub items: Vec<Record>,
    /// The revision the page is consistent at.
    pub revision: u64,
    /// Token for the next page, when more items remain.
    pub continue_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    /// Revision of the list.
    rv: u64,
    /// First key of the next page (base64).
    start: String,
}

impl<E: Engine> Store<E> {
    /// Lists a key range, one page at a time, consistent at one revision.
    pub fn list(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage> {
        // One view for the whole call: the live engine, or a replacement
        // (see the module docs), never both.
        let reader = self.reader();
        let (revision, start) = match &opts.continue_token {
            Some(token) => {
                let t = decode_continue(token)?;
                if !prefix.contains(&t.1) {
                    return Err(Error::InvalidContinue(
                        "the token belongs to another list".into(),
                    ));
                }
                // Only this store's own tokens name a revision it has
                // reached: a forged one would list a moving state.
                let current = reader.revision();
                if t.0 > current {
                    return Err(Error::FutureRevision {
                        requested: t.0,
                        current,
                    });
                }
                (t.0, t.1)
            }
            None => {
                let current = reader.revision();
                let rev = match opts.revision {
                    Some(r) if r > current => {
                        return Err(Error::FutureRevision {
                            requested: r,
                            current,
                        })
                    }
                    Some(r) if r > 0 => r,
                    _ => current,
                };
                (rev, prefix.start().to_vec())
            }
        };
        let compacted = reader.compacted();
        if revision < compacted {
            return Err(Error::Compacted {
                requested: revision,
                oldest: compacted,
            });
        }
        let end = prefix.end();
        let want = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit + 1
        };

        // Live scan: keep values not changed after `revision`.
        let mut items: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        let mut kept = 0usize;
        let mut exhausted = true;
        let mut window_end: Vec<u8> = end.clone();
        for item in reader.engine().scan(Cf::Data, &start, &end)? {
            let (k, v) = item?;
            let rec = Record::decode(Cf::Data, k.clone(), &v)?;
            if rec.mod_revision <= revision {
                kept += 1;
            }
            items.insert(k.clone(), rec);
            if kept >= want {
                exhausted = false;
                window_end = k;
                break;
            }
        }
        // Overlay: keys changed after `revision` get their value at it. The
        // change log is read after the data, and both are written in one
        // batch, so every newer value the scan saw has its change record.
        // The log is ordered by revision, not key: every record since
        // `revision` is looked at, but only by its key; only the page's own
        // keys are decoded and kept, so memory is the page's, whatever
        // other workspaces wrote meanwhile.
        {
            let mut first_change: BTreeMap<Vec<u8>, Option<Record>> = BTreeMap::new();
            let from = change_key(revision.saturating_add(1), 0);
            for item in reader.engine().scan(Cf::Changes, &from, &[])? {
                let (k, v) = item?;
                let key = self.change_key_of(&k, &v)?;
                let in_window = key.as_slice() >= start.as_slice()
                    && if exhausted {
                        end.is_empty() || key.as_slice() < end.as_slice()
                    } else {
                        key <= window_end
                    };
                if in_window && !first_change.contains_key(&key) {
                    first_change.insert(key, self.decode_change(&k, &v)?.prev);
                }
            }
            // A compaction that raced with the scan may have removed
            // records the overlay needed: say so rather than list a mix.
            let compacted = reader.compacted();
            if revision < compacted {
                return Err(Error::Compacted {
                    requested: revision,
                    oldest: compacted,
                });
            }
            for (k, at_rev) in first_change {
                match at_rev {
                    Some(rec) => {
                        items.insert(k, rec);
                    }
                    None => {
                        items.remove(&k);
                    }
                }
            }
        }
        items.retain(|_, r| r.mod_revision <= revision);
        let mut page: Vec<Record> = items.into_values().collect();
        let mut continue_token = None;
        if opts.limit > 0 && page.len() > opts.limit {
            page.truncate(opts.limit);
            let mut next = page.last().expect("limit > 0").key.clone();
            next.push(0);
            continue_token = Some(encode_continue(revision, &next));
        }
        Ok(ListPage {
            items: page,
            revision,
            continue_token,
        })
    }
}

fn encode_continue(rv: u64, start: &[u8]) -> String {
    let t = ContinueToken {
        rv,
        start: base64::engine::general_purpose::STANDARD.encode(start),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).expect("token encodes"))
}

/// The revision a continue token lists at, so that a replica behind it can
/// wait until it has applied that much; [`Error::InvalidContinue`] for
/// anything this store did not write.
pub fn continue_revision(token: &str) -> Result<u64> {
    decode_continue(token).map(|(rv, _)| rv)
}

/// The revision and the first key of the next page of a continue token
/// this store wrote ([`Error::InvalidContinue`] for anything else).
pub fn decode_continue(token: &str) -> Result<(u64, Vec<u8>)> {
    let bad = |why: &str| Error::InvalidContinue(why.to_string());
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad("not base64"))?;
    let t: ContinueToken =
        serde_json::from_slice(&json).map_err(|_| bad("not a tmc continue token"))?;
    let start = base64::engine::general_purpose::STANDARD
        .decode(&t.start)
        .map_err(|_| bad("bad start key"))?;
    if t.rv == 0 {
        return Err(bad("revision 0"));
    }
    Ok((t.rv, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::MemoryEngine;
    use crate::store::keys::{GroupResource, Key, ObjectKey};
    use crate::store::names::Workspace;
    use crate::store::store::tests::{key, opts, prefix, put};
    use crate::store::{Expectation, Txn, TxnOp};

    /// A continue token is this store's own: one naming a revision the
    /// store has not reached (forged, it would page through a moving
    /// state) or another list is refused; a page at an old revision is
    /// consistent however much other keys changed since.
    #[test]
    fn continue_tokens_are_checked_and_pages_read_only_their_keys() {
        let store = Store::open(MemoryEngine::new(), opts(100_000)).unwrap();
        for i in 0..4 {
            put(&store, &format!("k{i}"), "v0");
        }
        let page = store
            .list(
                &prefix(),
                &ListOptions {
                    limit: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        let token = page.continue_token.clone().unwrap();
        assert_eq!(continue_revision(&token).unwrap(), page.revision);
        // Other lists' keys change a lot meanwhile; this list's too.
        let other = |i: usize| -> Key {
            let gr = GroupResource::new("", "secrets").unwrap();
            ObjectKey::namespaced(
                gr,
                Workspace::parse("root:other").unwrap(),
                "ns",
                &format!("s{i}"),
            )
            .unwrap()
            .into()
        };
        for i in 0..500 {
            store
                .commit(Txn::new(vec![TxnOp::put_json(
                    other(i % 7),
                    vec![b'x'; 1000],
                    Expectation::Any,
                )]))
                .unwrap();
        }
        put(&store, "k3", "v1");
        store
            .commit(Txn::new(vec![TxnOp::delete(key("k2"), Expectation::Any)]))
            .unwrap();
        let next = store
            .list(
                &prefix(),
                &ListOptions {
                    limit: 2,
                    continue_token: Some(token),
                    ..Default::default()
                },
            )
            .unwrap();
        let values: Vec<_> = next
            .items
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        assert_eq!(values, vec!["{\"v\":\"v0\"}", "{\"v\":\"v0\"}"]);
        assert_eq!(next.revision, page.revision);
        assert!(next.continue_token.is_none());

        // A token for a revision not reached yet.
        let future = encode_continue(store.revision() + 1, prefix().start());
        assert!(matches!(
            store.list(
                &prefix(),
                &ListOptions {
                    continue_token: Some(future),
                    ..Default::default()
                }
            ),
            Err(Error::FutureRevision { .. })
        ));
        // Not base64, not a token, revision 0, another list's key.
        let other_start = encode_continue(store.revision(), &other(0).encode());
        for bad in [
            "!!".to_string(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"{}"),
            encode_continue(0, prefix().start()),
            other_start,
        ] {
            let r = store.list(
                &prefix(),
                &ListOptions {
                    continue_token: Some(bad.clone()),
                    ..Default::default()
                },
            );
            assert!(matches!(r, Err(Error::InvalidContinue(_))), "{bad}: {r:?}");
        }
    }
}
