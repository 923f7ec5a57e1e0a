//! Load generators behind `tmc bench`. Each prints one JSON object with its
//! figures so that `docs/benchmarks.md` can quote the exact command and the
//! exact output.
//!
//! Every benchmark has its flags as an `Args` struct (clap) beside it
//! ([`store::Args`], [`raft::Args`], [`failover::Args`], [`api::Args`],
//! [`placement::Args`], [`sync::Args`], [`shards::Args`], [`rollout::Args`], [`backup::Args`]); `src/cli/bench.rs` only shows
//! progress and prints the report. One style for all of them:
//! - `--json`: print only the JSON report, no progress on stderr;
//! - a duration's flag names its unit (`--duration-secs 0.5`,
//!   `--request-timeout-ms 1000`, parsed by [`secs`] and [`millis`] into a
//!   [`Duration`]);
//! - a count is the plural of what is counted (`--kills`, `--creates`,
//!   `--workspaces`), a rate says per what (`--watch-rate`, `--sync-qps`);
//! - `--dir` is the parent of the data directories (default: the system's
//!   temporary directory).

use std::time::Duration;

pub mod api;
pub mod backup;
pub mod failover;
pub mod placement;
pub mod procs;
pub mod raft;
pub mod rollout;
pub mod shards;
pub mod store;
pub mod sync;

/// A flag in seconds, fractions allowed (`0.5`).
pub fn secs(s: &str) -> Result<Duration, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(n).map_err(|e| format!("{s:?} seconds: {e}"))
}

/// A flag in whole milliseconds.
pub fn millis(s: &str) -> Result<Duration, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of milliseconds"))?;
    Ok(Duration::from_millis(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_unit_their_flag_names() {
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(millis("1000"), Ok(Duration::from_secs(1)));
        assert!(secs("-1").is_err());
        assert!(secs("NaN").is_err());
        assert!(secs("1s").is_err());
        assert!(millis("1.5").is_err());
    }
}
