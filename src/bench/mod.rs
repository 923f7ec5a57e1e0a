//! Load generators behind `tmc bench`. Each prints one JSON object with its
//! figures so that `docs/benchmarks.md` can quote the exact command and the
//! exact output.

pub mod api;
pub mod failover;
pub mod placement;
pub mod procs;
pub mod raft;
pub mod store;
pub mod sync;
