//! Why a reconcile failed: one typed error for every controller, in the
//! spirit of kube-runtime's per-controller error enums. The runtime counts
//! it (`tmc_controller_errors_total`), logs it and re-queues the key with
//! the rate limiter's backoff, whatever the variant; the variants say what
//! failed so a log line or a test can tell a conflict from a broken object.

use crate::shard::ShardError;
use crate::store::NameError;

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A compare-and-swap lost: the data changed between the read and the
    /// write. The next reconcile reads it fresh.
    #[error("changed while reconciling; retrying on fresh state")]
    Conflict,
    /// The shard could not read or write (no leader, timeout, store error).
    #[error(transparent)]
    Shard(ShardError),
    /// A key the reconcile needs cannot be built from the names it has.
    #[error(transparent)]
    InvalidKey(#[from] NameError),
    /// A stored object (or controller record) does not have a shape the
    /// controller can work with. Reads `{what} {reason}`, e.g. "stored
    /// object /registry/... is not JSON: ...".
    #[error("{what} {reason}")]
    InvalidObject {
        /// Which object or record.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A member cluster's API failed or refused a request, or its
    /// credentials are unusable (the message names the cluster).
    #[error("{message}")]
    MemberCluster {
        /// The member cluster (`location|name`).
        cluster: String,
        /// What it answered.
        message: String,
    },
    /// Another shard failed or refused a call (the message names it).
    #[error("{0}")]
    OtherShard(String),
    /// Something the reconcile needs is not there yet (it comes later by
    /// itself, e.g. the shard's identity).
    #[error("{0}")]
    NotReady(String),
    /// The write a reconcile planned is not one write (a bug of the
    /// reconciler, kcp's committer rule).
    #[error(transparent)]
    Commit(#[from] super::committer::CommitError),
    /// The reconcile panicked; the runtime caught it.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
}

impl Error {
    /// An [`Error::InvalidObject`].
    pub fn invalid(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> Error {
        Error::InvalidObject {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    /// True for [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict)
    }
}

/// A shard error; a lost compare-and-swap is [`Error::Conflict`].
impl From<ShardError> for Error {
    fn from(e: ShardError) -> Error {
        if e.is_conflict() {
            Error::Conflict
        } else {
            Error::Shard(e)
        }
    }
}

/// The result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
