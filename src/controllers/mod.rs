//! tmc's controllers in kcp's patterns, running beside the data on a shard's
//! raft leader.
//!
//! Not built yet (issue "Controllers in kcp's patterns"): the work queue,
//! reconciler and committer, and the cluster, placement and sync
//! controllers. They will read local state through the shard interface and
//! take events from the store's change log ([`crate::store::Store::subscribe`]
//! and [`crate::store::Store::changes_since`]), not from per-workspace
//! watches.
