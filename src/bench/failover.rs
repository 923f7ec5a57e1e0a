//! `tmc bench failover`: how long a three-replica shard takes to accept a
//! write again after its leader is SIGKILLed.
//!
//! One writer writes continuously (one write outstanding, 1 KB values)
//! through any replica: it keeps the replica that last acknowledged, and on
//! an error or timeout moves to the next replica after `retry`. Then, `kills`
//! times: find the leader, SIGKILL it, and measure
//! - `failover`: from the kill to the acknowledgement of the first write
//!   *sent after* the kill (acknowledged through any surviving replica);
//! - `elected`: from the kill to the first `/status` (polled every 10 ms)
//!   of a survivor that reports itself leader;
//!
//! then restart the killed replica and wait until all three agree on a
//! leader and have applied its commit index, and let the writer run for
//! `settle` before the next kill.

use super::procs::{kv_client, tmc_shard, BoxError};
use super::raft::value_of;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SIGKILL the leader of a 3-replica shard under a continuous writer,
/// again and again: time from the kill to the next acknowledged write.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// `--tick-ms` of the replicas.
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,
    /// The writer's timeout per write, in milliseconds.
    #[arg(long, default_value = "1000", value_parser = super::millis)]
    pub request_timeout_ms: Duration,
    /// The writer's pause after a failed write, in milliseconds.
    #[arg(long, default_value = "10", value_parser = super::millis)]
    pub retry_ms: Duration,
    /// Seconds of writes on the healthy shard between two kills.
    #[arg(long, default_value = "1", value_parser = super::secs)]
    pub settle_secs: Duration,
    /// Parent directory for the data directories.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the shard's data directory and the replicas' logs.
    #[arg(long)]
    pub keep_dir: bool,
    /// Print only the JSON report (no progress).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The benchmark's parameters, running `tmc_bin` as `tmc serve`.
    pub fn config(&self, tmc_bin: PathBuf) -> FailoverConfig {
        FailoverConfig {
            tmc_bin,
            kills: self.kills,
            tick_ms: self.tick_ms,
            request_timeout: self.request_timeout_ms,
            retry: self.retry_ms,
            settle: self.settle_secs,
            dir: self.dir.clone(),
            keep_dir: self.keep_dir,
        }
    }
}

/// Parameters of `tmc bench failover`.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// The `tmc` binary to run as `tmc serve`.
    pub tmc_bin: PathBuf,
    /// Leader kills.
    pub kills: usize,
    /// `--tick-ms` of the replicas.
    pub tick_ms: u64,
    /// Timeout of one write.
    pub request_timeout: Duration,
    /// Pause after a failed write before the next try (on the next replica).
    pub retry: Duration,
    /// Time the healthy shard takes writes between two kills.
    pub settle: Duration,
    /// Parent directory of the data directories.
    pub dir: Option<PathBuf>,
    /// Keep the shard's data directory and logs.
    pub keep_dir: bool,
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The replica killed (the leader).
    pub killed: u64,
    /// The replica that acknowledged the first write after the kill.
    pub acked_by: u64,
    /// Kill to first acknowledged write.
    pub failover_ms: f64,
    /// Kill to a survivor reporting itself leader.
    pub elected_ms: Option<f64>,
    /// Failed writes during this failover.
    pub failed_writes: u64,
    /// Raft term after the failover minus the term before: 1 when the first
    /// election succeeded, more when votes were split or lost.
    pub term_increase: Option<u64>,
}

/// Percentiles of a set of samples (nearest rank).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Nearest-rank percentiles of `v`.
pub fn summarize(v: &[f64]) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Some(Summary {
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: s[s.len() - 1],
        mean_ms: s.iter().sum::<f64>() / s.len() as f64,
    })
}

/// What `tmc bench failover` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Leader kills.
    pub kills: usize,
    /// `--tick-ms` of the replicas (election timeout: 10-20 ticks;
    /// heartbeat: 2 ticks).
    pub tick_ms: u64,
    /// Writer's timeout per write.
    pub request_timeout_ms: u64,
    /// Writer's pause after a failed write.
    pub retry_ms: u64,
    /// Kill to first acknowledged write.
    pub failover: Option<Summary>,
    /// Kill to a survivor reporting itself leader.
    pub elected: Option<Summary>,
    /// Acknowledged writes in the whole run.
    pub writes: u64,
    /// Failed writes in the whole run.
    pub failed_writes: u64,
    /// Every kill.
    pub samples: Vec<Sample>,
    /// Load averages (1, 5, 15 min) when the run started and ended.
    pub loadavg_start: String,
    /// See `loadavg_start`.
    pub loadavg_end: String,
    /// The shard's directory, when kept (`--keep-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_dir: Option<PathBuf>,
}

#[derive(Default)]
struct Shared {
    /// When the last kill happened.
    kill_at: Option<Instant>,
    /// First acknowledgement of a write sent after `kill_at`: when, by whom.
    first_ack: Option<(Instant, u64)>,
}

/// Runs the benchmark; `progress` gets the number of kills done.
pub async fn run(
    cfg: &FailoverConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FailoverReport, BoxError> {
    let loadavg_start = super::procs::loadavg();
    let mut shard = tmc_shard(&cfg.tmc_bin, cfg.dir.as_deref(), cfg.tick_ms)?;
    let kept_dir = cfg.keep_dir.then(|| shard.keep_dir());
    let ids = shard.ids();
    shard.wait_healthy(&ids, Duration::from_secs(30)).await?;
    let urls: Vec<(u64, String)> = ids.iter().map(|&id| (id, shard.kv_url(id))).collect();

    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let writer = {
        let (shared, stop, writes, failures) = (
            shared.clone(),
            stop.clone(),
            writes.clone(),
            failures.clone(),
        );
        let http = kv_client(cfg.request_timeout)?;
        let retry = cfg.retry;
        let value = value_of(1024);
        tokio::spawn(async move {
            let mut target = 0usize;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (id, base) = &urls[target];
                let t0 = Instant::now();
                let r = http
                    .put(format!("{base}/kv/root:bench/default/f{}", n % 1000))
                    .body(value.clone())
                    .send()
                    .await;
                n += 1;
                let ok = match r {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        let _ = resp.bytes().await;
                        good
                    }
                    Err(_) => false,
                };
                if ok {
                    let now = Instant::now();
                    writes.fetch_add(1, Ordering::Relaxed);
                    let mut s = shared.lock().expect("lock");
                    if s.first_ack.is_none() && s.kill_at.is_some_and(|k| t0 >= k) {
                        s.first_ack = Some((now, *id));
                    }
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(retry).await;
                }
            }
        })
    };

    let result = async {
        let mut samples = Vec::new();
        let mut last_ack_check = writes.load(Ordering::Relaxed);
        for k in 0..cfg.kills {
            // Healthy: agreed leader, all caught up, the writer making progress.
            let leader = shard.wait_healthy(&ids, Duration::from_secs(60)).await?;
            tokio::time::sleep(cfg.settle).await;
            let now_writes = writes.load(Ordering::Relaxed);
            if now_writes == last_ack_check {
                return Err::<_, BoxError>(
                    "the writer acknowledged nothing while the shard was healthy".into(),
                );
            }
            let leader = shard.current_leader(&ids).await.unwrap_or(leader);
            let term_before = shard.status(leader).await.map(|s| s.term);
            let failed_before = failures.load(Ordering::Relaxed);
            {
                let mut s = shared.lock().expect("lock");
                s.first_ack = None;
                s.kill_at = None;
            }
            shard.kill(leader);
            let killed_at = Instant::now();
            shared.lock().expect("lock").kill_at = Some(killed_at);
            let survivors: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            let mut elected = None;
            let deadline = killed_at + Duration::from_secs(60);
            let (ack_at, acked_by) = loop {
                if elected.is_none() {
                    for &id in &survivors {
                        if let Some(s) = shard.status(id).await {
                            if s.role == "leader" {
                                elected = Some(killed_at.elapsed());
                                break;
                            }
                        }
                    }
                }
                if let Some(a) = shared.lock().expect("lock").first_ack {
                    break a;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "no write acknowledged within 60 s of killing leader {leader}"
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let mut term_after = None;
            for &id in &survivors {
                if let Some(s) = shard.status(id).await {
                    term_after = term_after.max(Some(s.term));
                }
            }
            let sample = Sample {
                term_increase: term_before
                    .zip(term_after)
                    .map(|(b, a)| a.saturating_sub(b)),
                killed: leader,
                acked_by,
                failover_ms: (ack_at - killed_at).as_secs_f64() * 1000.0,
                elected_ms: elected.map(|d| d.as_secs_f64() * 1000.0),
                failed_writes: failures.load(Ordering::Relaxed) - failed_before,
            };
            tracing::info!(?sample, "failover");
            samples.push(sample);
            shard.spawn(leader)?;
            last_ack_check = writes.load(Ordering::Relaxed);
            progress(k as u64 + 1);
        }
        Ok(samples)
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    let samples = result?;
    let failover: Vec<f64> = samples.iter().map(|s| s.failover_ms).collect();
    let elected: Vec<f64> = samples.iter().filter_map(|s| s.elected_ms).collect();
    Ok(FailoverReport {
        kills: cfg.kills,
        tick_ms: cfg.tick_ms,
        request_timeout_ms: cfg.request_timeout.as_millis() as u64,
        retry_ms: cfg.retry.as_millis() as u64,
        failover: summarize(&failover),
        elected: summarize(&elected),
        writes: writes.load(Ordering::Relaxed),
        failed_writes: failures.load(Ordering::Relaxed),
        samples,
        loadavg_start,
        loadavg_end: super::procs::loadavg(),
        kept_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(|i| i as f64).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(s.p50_ms, 10.0);
        assert_eq!(s.p99_ms, 20.0);
        assert_eq!(s.max_ms, 20.0);
        assert!(summarize(&[]).is_none());
    }
}
