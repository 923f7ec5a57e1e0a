//! Reconcilers built from small sub-reconcilers, in kcp's pattern.
//!
//! Each sub-reconciler looks at one concern of the object and returns
//! [`ReconcileStatus::Continue`] or [`ReconcileStatus::StopAndRequeue`]. They
//! run in order on one working copy: an error is collected and the next one
//! still runs (as kcp's reconcilers do), while `StopAndRequeue` ends the
//! round and asks the queue to come back after the given delay. The working
//! copy then goes to the [`super::committer`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a sub-reconciler asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileStatus {
    /// Go on with the next sub-reconciler.
    Continue,
    /// Stop this round and requeue the key after the delay.
    StopAndRequeue(Duration),
}

/// A boxed future, so sub-reconcilers can be kept in a list.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One concern of a reconciler.
pub trait SubReconciler<O, E>: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    /// Looks at (and may change) the working copy.
    fn reconcile<'a>(&'a self, obj: &'a mut O) -> BoxFuture<'a, Result<ReconcileStatus, E>>;
}

/// The outcome of one round.
#[derive(Debug)]
pub struct Round<E> {
    /// Requeue after this delay, if a sub-reconciler asked.
    pub requeue_after: Option<Duration>,
    /// Errors, with the name of the sub-reconciler that returned each.
    pub errors: Vec<(&'static str, E)>,
}

/// Runs the sub-reconcilers in order on `obj` (see the module docs).
pub async fn reconcile<O, E>(subs: &[Box<dyn SubReconciler<O, E>>], obj: &mut O) -> Round<E> {
    let mut round = Round {
        requeue_after: None,
        errors: Vec::new(),
    };
    for sub in subs {
        match sub.reconcile(obj).await {
            Ok(ReconcileStatus::Continue) => {}
            Ok(ReconcileStatus::StopAndRequeue(after)) => {
                round.requeue_after = Some(after);
                break;
            }
            Err(e) => round.errors.push((sub.name(), e)),
        }
    }
    round
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Step {
        name: &'static str,
        result: Result<ReconcileStatus, String>,
    }

    impl SubReconciler<Vec<&'static str>, String> for Step {
        fn name(&self) -> &'static str {
            self.name
        }
        fn reconcile<'a>(
            &'a self,
            obj: &'a mut Vec<&'static str>,
        ) -> BoxFuture<'a, Result<ReconcileStatus, String>> {
            Box::pin(async move {
                obj.push(self.name);
                self.result.clone()
            })
        }
    }

    fn step(
        name: &'static str,
        result: Result<ReconcileStatus, String>,
    ) -> Box<dyn SubReconciler<Vec<&'static str>, String>> {
        Box::new(Step { name, result })
    }

    #[tokio::test]
    async fn errors_are_collected_and_stop_and_requeue_ends_the_round() {
        let subs = vec![
            step("finalizer", Ok(ReconcileStatus::Continue)),
            step("schedule", Err("no cluster".into())),
            step(
                "wait",
                Ok(ReconcileStatus::StopAndRequeue(Duration::from_secs(5))),
            ),
            step("status", Ok(ReconcileStatus::Continue)),
        ];
        let mut seen = vec![];
        let round = reconcile(&subs, &mut seen).await;
        assert_eq!(
            seen,
            vec!["finalizer", "schedule", "wait"],
            "status did not run"
        );
        assert_eq!(round.requeue_after, Some(Duration::from_secs(5)));
        assert_eq!(round.errors, vec![("schedule", "no cluster".to_string())]);

        let mut seen = vec![];
        let round = reconcile(&subs[..2], &mut seen).await;
        assert_eq!(round.requeue_after, None);
        assert_eq!(seen.len(), 2);
    }
}
