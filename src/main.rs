//! The `tmc` command: parses the command line and runs one subcommand of
//! [`tmc::cli`], where each lives with its flags. An error is printed as
//! `tmc: <error>` on stderr and exits with status 1.

use clap::{Parser, Subcommand};
use tmc::cli;

// jemalloc: RocksDB's recommended allocator, and no arena lock contention
// between the apply loop and the request threads.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    Dev(cli::dev::Args),
    Serve(cli::serve::Args),
    Proxy(cli::proxy::Args),
    Certs(cli::certs::Args),
    Kubeconfig(cli::kubeconfig::Args),
    Encryption(cli::encryption::Args),
    Member(cli::member::Args),
    Status(cli::status::Args),
    Backup(cli::backup::Args),
    Restore(cli::restore::Args),
    Workspace(cli::workspace::Args),
    Kv(cli::kv::Args),
    Cluster(cli::cluster::Args),
    Bench(cli::bench::Args),
    #[command(hide = true)]
    Debug(cli::debug::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Dev(args) => args.run(),
        Command::Serve(args) => args.run(),
        Command::Proxy(args) => args.run(),
        Command::Certs(args) => args.run(),
        Command::Kubeconfig(args) => args.run(),
        Command::Encryption(args) => args.run(),
        Command::Member(args) => args.run(),
        Command::Status(args) => args.run(),
        Command::Backup(args) => args.run(),
        Command::Restore(args) => args.run(),
        Command::Workspace(args) => args.run(),
        Command::Kv(args) => args.run(),
        Command::Cluster(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Debug(args) => args.run(),
    };
    if let Err(e) = result {
        eprintln!("tmc: {e}");
        std::process::exit(1);
    }
}
