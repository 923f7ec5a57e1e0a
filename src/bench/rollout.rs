//! `tmc bench rollout`: what a rolling update of a shard's StatefulSet
//! costs a client that writes all along, against what losing the leader
//! costs it (the anchor, measured in the same run).
//!
//! The shard runs as `tests/pods.rs` runs it ([`crate::testcluster::pods`]):
//! the pods of `--overlay`'s StatefulSet as processes on their own
//! loopback addresses, from the image with `--image` (built by
//! `scripts/image.sh`), else from this binary. One writer creates
//! ConfigMaps one after another through whichever pod answers. Each round:
//!
//! 1. **rolling update**: SIGTERM to ordinal 2, 1, 0 in turn, each started
//!    again and the next only once it is ready (what the StatefulSet
//!    controller does); the leader among them hands over before it stops;
//! 2. **anchor**: SIGKILL to the leader, started again.
//!
//! Reported per round and over all rounds: the longest pause between two
//! acknowledged writes during each, and at the end how many acknowledged
//! writes are missing from the shard (must be 0). Needs root (mount
//! namespaces, chroot).

use crate::testcluster::pods::{image_rootfs, Pods, Template, Writer, WRITES_PATH};
use crate::testcluster::{block_on, BoxError};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Flags of `tmc bench rollout`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Rounds (each: a rolling update, then a SIGKILL of the leader).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The kustomize overlay whose StatefulSet runs.
    #[arg(long, default_value = "deploy/overlays/dev")]
    pub overlay: PathBuf,
    /// Run the pods from the image (`scripts/image.sh`, run from the
    /// repository) instead of this binary on this machine's filesystem.
    #[arg(long)]
    pub image: bool,
    /// Print only the JSON report.
    #[arg(long)]
    pub json: bool,
}

/// One round's pauses, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The longest pause of the writer during the rolling update.
    pub rolling_update_pause_ms: f64,
    /// Which pod led when the update reached it (it handed over).
    pub leader: u64,
    /// The longest pause of the writer around a SIGKILL of the leader.
    pub leader_killed_pause_ms: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Each round.
    pub rounds: Vec<Round>,
    /// Median and worst of the rolling updates' pauses.
    pub rolling_update_pause_ms: (f64, f64),
    /// Median and worst of the SIGKILL pauses.
    pub leader_killed_pause_ms: (f64, f64),
    /// Median of the rolling-update pause over the median of the SIGKILL
    /// pause (below 1: the hand-over beats an election).
    pub ratio: f64,
    /// Writes acknowledged over the run.
    pub acknowledged: usize,
    /// Acknowledged writes the shard does not have (must be 0).
    pub lost: usize,
    /// Where the pods ran from.
    pub from_image: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let median = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (median, v.last().copied().unwrap_or(0.0))
}

/// Runs the benchmark; `progress` hears what it is doing.
pub fn run(args: &Args, progress: &dyn Fn(String)) -> Result<Report, BoxError> {
    let bin = std::env::current_exe()?;
    let template = Template::from_overlay(&args.overlay)?;
    let scratch = tempfile::tempdir()?;
    let rootfs = if args.image {
        progress("building the image".into());
        Some(image_rootfs(
            &std::env::current_dir()?,
            &bin,
            scratch.path(),
        )?)
    } else {
        None
    };
    let mut pods = Pods::new(template, &bin, rootfs, 79, 3)?;
    let flags = ["--no-controllers"];
    for o in 0..3 {
        pods.start(o, &flags)?;
    }
    for o in 0..3 {
        pods.wait_ready(o)?;
    }
    pods.wait_voters(0, &[1, 2, 3])?;
    let writer = Writer::start((0..3).map(|o| pods.api(o)).collect());
    writer.progress(20)?;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        progress(format!(
            "round {}/{}: rolling update",
            round + 1,
            args.rounds
        ));
        let leader = pods.leader(&[0, 1, 2]).ok_or("no leader")?;
        let from = Instant::now();
        for o in (0..3).rev() {
            pods.stop(o, false)?;
            pods.start(o, &flags)?;
            pods.wait_ready(o)?;
        }
        let to = Instant::now();
        writer.progress(10)?;
        let rolling = writer.longest_pause(from, to);
        progress(format!(
            "round {}/{}: leader killed",
            round + 1,
            args.rounds
        ));
        let killed = pods.leader(&[0, 1, 2]).ok_or("no leader")?;
        let from = Instant::now();
        pods.stop(killed, true)?;
        pods.start(killed, &flags)?;
        pods.wait_ready(killed)?;
        let to = Instant::now();
        writer.progress(10)?;
        rounds.push(Round {
            rolling_update_pause_ms: ms(rolling),
            leader,
            leader_killed_pause_ms: ms(writer.longest_pause(from, to)),
        });
    }
    let acked = writer.stop();
    let (code, list) = block_on(
        pods.api(0)
            .try_call("GET", WRITES_PATH, serde_json::Value::Null),
    )?;
    if code != 200 {
        return Err(format!("listing the writes: {code} {list}").into());
    }
    let stored: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    let lost = acked
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .count();
    let rolling = median_max(rounds.iter().map(|r| r.rolling_update_pause_ms).collect());
    let killed = median_max(rounds.iter().map(|r| r.leader_killed_pause_ms).collect());
    Ok(Report {
        rounds,
        rolling_update_pause_ms: rolling,
        leader_killed_pause_ms: killed,
        ratio: if killed.0 > 0.0 {
            rolling.0 / killed.0
        } else {
            0.0
        },
        acknowledged: acked.len(),
        lost,
        from_image: args.image,
    })
}
