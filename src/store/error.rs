//! Errors of the storage layer.
//!
//! One enum for the module. Each variant says whether it is deterministic:
//! a [`Error::Conflict`] or a [`Error::InvalidName`] is the same on every
//! replica, while an [`Error::Engine`] (I/O, disk full) is not, and a replica
//! that meets one while applying a committed write must stop rather than
//! diverge.

use std::fmt;

/// Result alias of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name that broke one of the naming rules, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct NameError {
    /// What the name names: "workspace", "namespace", "object name" ...
    pub kind: &'static str,
    /// The offending value, as given.
    pub value: String,
    /// The rule it broke, in words a person can act on.
    pub rule: String,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name broke a naming rule; nothing was written.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A stored value failed its integrity check.
    #[error("corrupt value in column family {cf} at key {key}: {reason}")]
    Corrupt {
        /// Column family holding the value.
        cf: &'static str,
        /// The key, printable (non-UTF-8 bytes hex-escaped).
        key: String,
        /// What failed, e.g. "checksum mismatch".
        reason: String,
    },
    /// A precondition of a transaction did not hold; nothing was written.
    #[error("conflict on {key}: expected {expected}, found {found}")]
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// What the transaction expected.
        expected: Expectation,
        /// What the store holds, as a revision (0 = absent).
        found: Found,
    },
    /// The requested revision has been compacted out of the change log.
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision that can still be served.
        oldest: u64,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: u64,
        /// The store's current revision.
        current: u64,
    },
    /// A continue token that this store did not issue or cannot read.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// A raft entry whose index is not after the applied index.
    #[error("raft index {given} is not after the applied index {current}")]
    StaleRevision {
        /// The index of the rejected entry.
        given: u64,
        /// The store's applied index.
        current: u64,
    },
    /// The underlying engine failed (I/O, RocksDB). Not deterministic.
    #[error("storage engine error{}: {message}", key.as_ref().map(|k| format!(" at key {k}")).unwrap_or_default())]
    Engine {
        /// The key being read or written, when known.
        key: Option<String>,
        /// The engine's message.
        message: String,
    },
}

impl Error {
    /// True when every replica applying the same input gets the same error.
    /// Engine failures and corruption are local to one replica's disk.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, Error::Engine { .. } | Error::Corrupt { .. })
    }

    /// An engine error about one key.
    pub fn engine_at(key: &[u8], err: impl fmt::Display) -> Self {
        Error::Engine {
            key: Some(printable_key(key)),
            message: err.to_string(),
        }
    }

    /// An engine error not tied to a key.
    pub fn engine(err: impl fmt::Display) -> Self {
        Error::Engine {
            key: None,
            message: err.to_string(),
        }
    }
}

/// What a transaction expected of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expectation {
    /// Nothing was expected.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist.
    Present,
    /// The key must exist with this mod revision.
    ModRevision(u64),
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Any => write!(f, "anything"),
            Expectation::Absent => write!(f, "no object"),
            Expectation::Present => write!(f, "an object"),
            Expectation::ModRevision(r) => write!(f, "revision {r}"),
        }
    }
}

/// What the store held when a precondition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Found {
    /// No object.
    Absent,
    /// An object at this mod revision.
    ModRevision(u64),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Absent => write!(f, "no object"),
            Found::ModRevision(r) => write!(f, "revision {r}"),
        }
    }
}

/// Renders a key for messages: UTF-8 as is, other bytes as `\xNN`.
pub fn printable_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
