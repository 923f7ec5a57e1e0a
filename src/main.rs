//! The `tmc` command.

use clap::{Parser, Subcommand};

// jemalloc: RocksDB's recommended allocator, and no arena lock contention
// between the apply loop and the request threads.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::path::PathBuf;
use std::sync::Arc;
use tmc::store::{self, Engine as _, RocksOptions, StoreOptions};

#[derive(Parser)]
#[command(
    name = "tmc",
    version,
    about = "Transparent Multi-Cluster for kcp-style control planes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an embedded single-node tmc for trying it out: store under
    /// --data-dir, health endpoints on --listen.
    Dev {
        /// Where the node keeps its data.
        #[arg(long, default_value = ".tmc")]
        data_dir: PathBuf,
        /// Address of the HTTP endpoint.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: String,
    },
    /// Benchmarks; each prints one JSON object.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Test helpers; not for production use.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        which: Debug,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Load N workspaces × 3 objects into one node's store and measure.
    Store {
        /// Number of workspaces.
        #[arg(long, default_value_t = 100_000)]
        workspaces: u64,
        /// Workspaces per transaction.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Random one-workspace lists to time.
        #[arg(long, default_value_t = 20_000)]
        list_samples: u64,
        /// Page size of the all-workspaces scan.
        #[arg(long, default_value_t = 500)]
        scan_page: usize,
        /// Revisions of change history to keep.
        #[arg(long, default_value_t = 1_000)]
        changes_retention: u64,
        /// Block cache in MiB.
        #[arg(long, default_value_t = 128)]
        block_cache_mib: usize,
        /// Directory for the data (default: a fresh temporary directory,
        /// removed afterwards).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print only the JSON report (no progress bar).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Debug {
    /// Writes numbered batches of `--batch-size` keys forever, printing
    /// `acked N` after batch N is durably committed. The crash test kills it.
    CrashWriter {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch_size: u32,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev { data_dir, listen } => dev(data_dir, listen),
        Command::Bench { which } => bench(which),
        Command::Debug { which } => debug(which),
    };
    if let Err(e) = result {
        eprintln!("tmc: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn dev(data_dir: PathBuf, listen: String) -> Result<(), BoxError> {
    std::fs::create_dir_all(&data_dir)?;
    let store_dir = data_dir.join("data");
    let st = Arc::new(store::open_rocks(
        &store_dir,
        &RocksOptions::default(),
        StoreOptions::default(),
    )?);
    tracing::info!(dir = %store_dir.display(), revision = st.revision(), "store open");
    let probe = st.clone();
    let ready: tmc::api::ReadyCheck = Arc::new(move || {
        probe
            .engine()
            .get(store::Cf::Meta, b"revision")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving /livez and /readyz");
        println!("tmc dev is running: curl http://{addr}/readyz   (Ctrl-C stops it)");
        tmc::api::serve(listener, tmc::api::health_router(ready), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        tracing::info!("stopped");
        Ok::<_, BoxError>(())
    })
}

fn bench(which: Bench) -> Result<(), BoxError> {
    match which {
        Bench::Store {
            workspaces,
            batch,
            list_samples,
            scan_page,
            changes_retention,
            block_cache_mib,
            data_dir,
            json,
        } => {
            let tmp;
            let dir = match data_dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::Builder::new()
                        .prefix("tmc-bench-store")
                        .tempdir()?;
                    tmp.path().join("db")
                }
            };
            let cfg = tmc::bench::store::StoreBenchConfig {
                workspaces,
                batch,
                list_samples,
                scan_page,
                changes_retention,
                rocks: RocksOptions {
                    block_cache_bytes: block_cache_mib << 20,
                    ..RocksOptions::default()
                },
            };
            let bar = if json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(workspaces)
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "loading {bar:40} {pos}/{len} workspaces {per_sec} eta {eta}",
                )
                .expect("template"),
            );
            let report = tmc::bench::store::run(&dir, &cfg, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

fn debug(which: Debug) -> Result<(), BoxError> {
    match which {
        Debug::CrashWriter {
            data_dir,
            batch_size,
        } => {
            use std::io::Write;
            use tmc::store::{Expectation, GroupResource, ObjectKey, Txn, TxnOp, Workspace};
            let st =
                store::open_rocks(&data_dir, &RocksOptions::default(), StoreOptions::default())?;
            let gr = GroupResource::new("", "configmaps")?;
            let ws = Workspace::parse("root:crash")?;
            // Resume after the last committed batch.
            let mut n = st.revision();
            let mut out = std::io::stdout().lock();
            loop {
                n += 1;
                let ops = (0..batch_size)
                    .map(|i| {
                        let key = ObjectKey::namespaced(
                            gr.clone(),
                            ws.clone(),
                            "default",
                            &format!("b{n}-{i}"),
                        )?;
                        Ok(TxnOp::put_json(
                            key,
                            format!("{{\"batch\":{n},\"i\":{i}}}").into_bytes(),
                            Expectation::Absent,
                        ))
                    })
                    .collect::<Result<Vec<_>, BoxError>>()?;
                let c = st.commit(Txn::new(ops))?;
                assert_eq!(c.revision, n, "one revision per batch");
                writeln!(out, "acked {n}")?;
                out.flush()?;
            }
        }
    }
}
