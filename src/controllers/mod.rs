//! tmc's controllers in kcp's patterns, running beside the data on a shard's
//! raft leader.
//!
//! Built so far: [`queue`], the typed work queue with client-go's default
//! controller rate limiter, and [`keys`], kcp's `cluster|namespace/name`
//! keys with distinct logical-cluster Name and Path types, and the
//! [`committer`]'s plan: one merge patch, spec or status, with preconditions,
//! and [`reconciler`]: sub-reconcilers returning `Continue` or
//! `StopAndRequeue(after)`, and [`feed`]: keys from a start-up scan and the
//! store's change log, and [`schedule`]: the placement decision as a pure
//! function (selector, taints, unschedulable, health grace, strategies).
//!
//! Not built yet (issue "Controllers in kcp's patterns"): the controller
//! runtime (leader-only start, change-feed events, metrics), sending
//! committed patches, and the cluster,
//! placement and sync controllers. They will read local state through the
//! shard interface and take events from the store's change log
//! ([`crate::store::Store::subscribe`] and
//! [`crate::store::Store::changes_since`]), not from per-workspace watches.

pub mod committer;
pub mod feed;
pub mod keys;
pub mod queue;
pub mod reconciler;
pub mod schedule;
