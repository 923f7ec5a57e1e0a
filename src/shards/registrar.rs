//! The registrar: on the shard's leader, keeps the shard's entry of the
//! registry (its URL, labels and how many logical clusters it holds).
//!
//! The count comes from the change log, as the lifecycle controller's
//! queue does: one scan of LogicalCluster keys at the start of a term,
//! then +1 for each one created and −1 for each one deleted, so nothing
//! is listed again (a rescan after compaction starts the count over).
//! The entry is written once the term's scan is over (the new leader's
//! URL when the shard's URL is its leader's own; a partial count would
//! draw every new workspace here) and then every [`INTERVAL`] while the
//! count changes, and every minute anyway (so `status.countedAt` says
//! the shard is alive).

use super::Directory;
use crate::controllers::error::Error;
use crate::controllers::feed::{self, Event};
use crate::controllers::keys::QueueKey;
use crate::controllers::queue::WorkQueue;
use crate::controllers::runtime::{Action, Controller};
use crate::shard::{BoxFuture, Shard};
use crate::store::{ChangeKind, GroupResource};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a changed count is written.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// How often an unchanged entry is written again.
const REFRESH: Duration = Duration::from_secs(60);

/// The registrar (see the module docs).
pub struct Registrar {
    directory: Arc<Directory>,
    count: Arc<AtomicI64>,
    /// The count is whole (the term's scan is over).
    counted: Arc<std::sync::atomic::AtomicBool>,
}

impl Registrar {
    /// The registrar of the shard `directory` describes.
    pub fn new(directory: Arc<Directory>) -> Self {
        Registrar {
            directory,
            count: Arc::new(AtomicI64::new(0)),
            counted: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }
}

fn logical_clusters() -> GroupResource {
    GroupResource::new(
        crate::store::keys::CORE_KCP_GROUP,
        crate::store::keys::LOGICAL_CLUSTERS,
    )
    .expect("a valid group resource")
}

impl Controller for Registrar {
    fn name(&self) -> &'static str {
        "registrar"
    }

    fn resource(&self) -> Option<GroupResource> {
        None
    }

    fn start_term(
        self: Arc<Self>,
        shard: Arc<dyn Shard>,
        queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        self.count.store(0, Ordering::SeqCst);
        self.counted.store(false, Ordering::SeqCst);
        let (count, counted, q) = (self.count.clone(), self.counted.clone(), queue.clone());
        let counting: BoxFuture<'static, ()> = Box::pin(async move {
            let stop = q.clone();
            let r = feed::follow(
                shard,
                logical_clusters(),
                move || stop.shutting_down(),
                |ev| match ev {
                    Event::Scanned(_) => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Event::ScanDone => counted.store(true, Ordering::SeqCst),
                    Event::Rescan => {
                        counted.store(false, Ordering::SeqCst);
                        count.store(0, Ordering::SeqCst);
                    }
                    Event::Changed(_, ch) => match (&ch.kind, &ch.prev) {
                        (ChangeKind::Put, None) => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        (ChangeKind::Delete, Some(_)) => {
                            count.fetch_sub(1, Ordering::SeqCst);
                        }
                        _ => {}
                    },
                },
            )
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the registrar's count of logical clusters stopped");
            }
        });
        let (dir, count, counted, q) = (
            self.directory.clone(),
            self.count.clone(),
            self.counted.clone(),
            queue,
        );
        let writing: BoxFuture<'static, ()> = Box::pin(async move {
            let mut written: Option<(i64, Instant)> = None;
            while !q.shutting_down() {
                let n = count.load(Ordering::SeqCst).max(0);
                // A partial count would draw every new workspace here.
                let due = counted.load(Ordering::SeqCst)
                    && match written {
                        None => true,
                        Some((w, at)) => w != n || at.elapsed() >= REFRESH,
                    };
                if due {
                    match dir.register(n as u64).await {
                        Ok(()) => written = Some((n, Instant::now())),
                        Err(e) => {
                            tracing::warn!(shard = dir.name(), error = %e, "cannot register the shard; retrying")
                        }
                    }
                }
                tokio::time::sleep(INTERVAL).await;
            }
        });
        vec![counting, writing]
    }

    fn reconcile<'a>(&'a self, _key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>> {
        Box::pin(async { Ok(Action::await_change()) })
    }
}
