//! `tmc bench`: runs one of [`crate::bench`]'s load generators with a
//! progress bar or spinner on stderr (none with `--json`) and prints its
//! JSON report on stdout. The flags live beside each benchmark.

use super::BoxError;
use crate::bench;
use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;

/// Benchmarks; each prints one JSON object.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub which: Bench,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    Store(bench::store::Args),
    Raft(bench::raft::Args),
    Failover(bench::failover::Args),
    Api(bench::api::Args),
    Placement(bench::placement::Args),
    Sync(bench::sync::Args),
    Shards(bench::shards::Args),
    Rollout(bench::rollout::Args),
    Backup(bench::backup::Args),
}

impl Args {
    /// Runs the benchmark and prints its report.
    pub fn run(self) -> Result<(), BoxError> {
        match self.which {
            Bench::Store(args) => store(args),
            Bench::Raft(args) => {
                let cfg = args.config(std::env::current_exe()?);
                let bar = spinner(args.json);
                let report = run_bench(bench::raft::run(&cfg, &|m| bar.set_message(m)))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Failover(args) => {
                let cfg = args.config(std::env::current_exe()?);
                let bar = if args.json {
                    ProgressBar::hidden()
                } else {
                    ProgressBar::new(args.kills as u64)
                };
                bar.set_style(
                    ProgressStyle::with_template("leader kills {bar:40} {pos}/{len}")
                        .expect("template"),
                );
                let report = run_bench(bench::failover::run(&cfg, &|n| bar.set_position(n)))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Sync(args) => {
                let bar = spinner(args.json);
                bar.set_message("syncing workloads to member clusters");
                let report = multi_thread()?.block_on(bench::sync::run(&args))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Placement(args) => {
                let bar = spinner(args.json);
                let report = multi_thread()?.block_on(bench::placement::run(&args, &|m| {
                    bar.set_message(m.to_string())
                }))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Rollout(args) => {
                let bar = spinner(args.json);
                let report = bench::rollout::run(&args, &|m| bar.set_message(m))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Backup(args) => {
                let bar = spinner(args.json);
                let report =
                    multi_thread()?.block_on(bench::backup::run(&args, &|m| bar.set_message(m)))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Shards(args) => {
                let bar = spinner(args.json);
                let report = bench::shards::run(&args, &|m| bar.set_message(m))?;
                bar.finish_and_clear();
                print(&report)
            }
            Bench::Api(args) => {
                let bar = spinner(args.json);
                // It handles Ctrl-C itself, to clean up remotely.
                let report =
                    super::runtime()?.block_on(bench::api::run(&args, &|m| bar.set_message(m)))?;
                bar.finish_and_clear();
                print(&report)
            }
        }
    }
}

fn print(report: &impl serde::Serialize) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}

/// `tmc bench store`, in a fresh temporary directory unless `--data-dir`.
fn store(args: bench::store::Args) -> Result<(), BoxError> {
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("tmc-bench-store")
                .tempdir()?;
            tmp.path().join("db")
        }
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.workspaces)
    };
    bar.set_style(
        ProgressStyle::with_template("loading {bar:40} {pos}/{len} workspaces {per_sec} eta {eta}")
            .expect("template"),
    );
    let report = bench::store::run(&dir, &args.config(), &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    print(&report)
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// A spinner with a message on stderr, hidden under `--json`.
fn spinner(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Runs a benchmark on a fresh runtime; Ctrl-C or SIGTERM drops it, and with
/// it the guards that kill its child processes and clean up.
fn run_bench<T>(fut: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    super::runtime()?.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = fut => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = term.recv() => Err("terminated".into()),
        }
    })
}
