//! The other shards, as the controllers see them: where a workspace
//! lives, objects of a workspace on another shard, access reviews there,
//! and the logical clusters this shard creates and deletes elsewhere.
//! [`crate::shards::Directory`] implements it over the other shards'
//! APIs with the shard's identity; the controllers know no HTTP.
//!
//! A location workspace on another shard (see `docs/sharding.md`, "TMC
//! across shards"): its ClusterRegistrations are listed from there
//! with its cluster-scope RBAC (cached per location,
//! [`super::placement::Catalog`]; the author of a placement is decided
//! with the same RBAC code as on one shard), and a syncer reads its
//! cluster's registration and credentials Secret from there, into memory
//! only. Nothing read is per tenant: one list of each kind per location
//! per catalog TTL.

use crate::shard::{BoxFuture, LocalView};
use crate::store::{GroupResource, Workspace};
use serde_json::Value;

/// An object read from another shard: its JSON and resourceVersion.
pub type RemoteObject = (Value, u64);

/// The other shards (see the module docs).
pub trait OtherShards: Send + Sync {
    /// This shard's name.
    fn own_shard(&self) -> &str;
    /// Does this shard host `root`?
    fn is_root(&self) -> bool;
    /// The shard holding workspace `ws`; `None` if it does not exist.
    fn locate<'a>(&'a self, ws: &'a Workspace) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Object `name` (in `namespace`, if namespaced) of resource `gr` in
    /// workspace `ws` on `shard`; `None` if absent.
    fn get_object<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        gr: &'a GroupResource,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RemoteObject>, String>>;
    /// Every object of cluster-scoped resource `gr` in `ws` on `shard`.
    fn list_objects<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        gr: &'a GroupResource,
    ) -> BoxFuture<'a, Result<Vec<Value>, String>>;
    /// Creates `ws`'s logical cluster on `shard` from the LogicalCluster
    /// object `lc` (idempotent for one owner).
    fn create_logical_cluster<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        lc: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Deletes `ws`'s logical cluster on `shard`: `true` once it is gone.
    fn delete_logical_cluster<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// Where a workspace lives, seen from this shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whereabouts {
    /// On this shard.
    Here,
    /// On the named shard.
    There(String),
    /// Nowhere: it does not exist.
    Nowhere,
}

/// Where `ws` lives: here when this shard holds its logical cluster (one
/// local read), else wherever the directory says.
pub async fn whereabouts(
    shard: &dyn crate::shard::Shard,
    others: Option<&dyn OtherShards>,
    ws: &Workspace,
) -> Result<Whereabouts, super::error::Error> {
    if ws.parent().is_none() {
        return Ok(match others {
            Some(o) if !o.is_root() => Whereabouts::There(crate::shards::ROOT.to_string()),
            _ => Whereabouts::Here,
        });
    }
    let root_held = others.is_none_or(|o| o.is_root());
    match crate::shard::local_view(shard, ws, root_held)? {
        LocalView::Held => return Ok(Whereabouts::Here),
        // Its Workspace object here says where it went.
        LocalView::Named(s) => {
            return Ok(match others {
                Some(o) if !s.is_empty() && s != o.own_shard() => Whereabouts::There(s),
                _ => Whereabouts::Here,
            })
        }
        LocalView::ParentHeld => return Ok(Whereabouts::Nowhere),
        LocalView::Unknown => {}
    }
    let Some(others) = others else {
        return Ok(Whereabouts::Nowhere);
    };
    Ok(
        match others
            .locate(ws)
            .await
            .map_err(super::error::Error::OtherShard)?
        {
            Some(s) if s == others.own_shard() => Whereabouts::Here,
            Some(s) => Whereabouts::There(s),
            None => Whereabouts::Nowhere,
        },
    )
}
