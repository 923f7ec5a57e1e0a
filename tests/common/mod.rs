//! Helpers shared by integration tests (`mod common;` in a test file).

pub mod faultnet;
pub mod replicas;
pub mod shard;
pub mod testenv;
