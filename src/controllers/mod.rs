//! tmc's controllers in kcp's patterns, running beside the data on a shard's
//! raft leader.
//!
//! Built so far: [`queue`], the typed work queue with client-go's default
//! controller rate limiter, and [`keys`], kcp's `workspace|namespace/name`
//! keys with distinct logical-cluster Name and Path types, and the
//! [`committer`]'s plan: one merge patch, spec or status, with preconditions,
//! and [`feed`]: keys from a start-up scan and the store's change log, and
//! [`schedule`]: the placement decision as a pure function (selector,
//! taints, unschedulable, health grace, strategies).
//!
//! Reconcilers are shaped as kube-runtime's: they return a
//! [`runtime::Action`] (requeue after a time, or await a change) or a typed
//! [`error::Error`] (the runtime re-queues it with backoff), and the
//! [`finalizer`] helper (kube-runtime's `finalizer.rs`) runs add, apply,
//! cleanup and removal of a controller's finalizer.
//!
//! The [`runtime`] runs controllers on the shard's leader only, fed from
//! the change log; [`objects`] reads objects from local state and writes
//! their status as a compare-and-swap of the committer's patch;
//! [`cluster`] is the ClusterRegistration controller (probes, heartbeat,
//! credentials) and [`placement`] the WorkloadPlacement controller
//! (decisions kept in the store, a shared cluster catalog).
//!
//! Words, as kcp's: a *workspace* (logical cluster) is the tenant unit,
//! the first part of every queue key; a *member cluster* (or "cluster"
//! alone) is a physical cluster registered by a ClusterRegistration.
//!
//! [`sync`] pushes placed workloads to member clusters and brings their
//! status back. Both reach member clusters only through [`member`]:
//! inline credentials from the tenant's Secret, connections only to
//! endpoints the operator allows.
//!
//! The cluster and placement controllers keep a finalizer on their objects
//! through [`finalizer`]: a placement's decision goes before the
//! placement, and a registration goes only when no decision names it.

pub mod cluster;
pub mod committer;
pub mod error;
pub mod feed;
pub mod finalizer;
pub mod gc;
pub mod keys;
pub mod lifecycle;
pub mod member;
pub mod objects;
pub mod placement;
pub mod quantity;
pub mod queue;
pub mod remote;
pub mod runtime;
pub mod schedule;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

/// Options of the controllers `tmc serve` and `tmc dev` run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The ClusterRegistration controller's timing.
    pub cluster: cluster::ClusterOptions,
    /// The WorkloadPlacement controller's options.
    pub placement: placement::PlacementOptions,
    /// The sync controller's options.
    pub sync: sync::SyncOptions,
}

/// Starts the runtime with every controller on `shard` (they run while it
/// leads); returns its metrics. Runs until the process ends.
pub fn start(
    shard: Arc<dyn crate::shard::Shard>,
    opts: Options,
    others: Option<Arc<dyn remote::OtherShards>>,
) -> Arc<runtime::Metrics> {
    let metrics = Arc::new(runtime::Metrics::new());
    let mut controllers: Vec<Arc<dyn runtime::Controller>> = vec![
        Arc::new(cluster::ClusterController::new(shard.clone(), opts.cluster)),
        Arc::new(
            placement::PlacementController::new(shard.clone(), opts.placement)
                .with_others(others.clone()),
        ),
    ];
    let sync = sync::SyncCore::new(shard.clone(), opts.sync);
    sync.set_metrics(metrics.clone());
    if let Some(o) = others {
        sync.set_others(o);
    }
    controllers.extend(sync.controllers());
    tokio::spawn(runtime::run(
        shard,
        controllers,
        metrics.clone(),
        std::future::pending(),
    ));
    metrics
}

/// Parses `500ms`, `10s`, `5m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 5m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}
