//! `tmc debug`: test helpers, hidden from help; not for production use.

use super::BoxError;
use crate::store::{RocksOptions, StoreOptions};
use std::path::PathBuf;

/// Test helpers; not for production use.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub which: DebugOp,
}

/// The helpers.
#[derive(clap::Subcommand, Debug)]
pub enum DebugOp {
    /// Writes numbered batches of `--batch-size` keys forever, printing
    /// `acked N` after batch N is durably committed. The crash test kills it.
    CrashWriter {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch_size: u32,
    },
    /// Fuzzes the API's routing and body decoding (see src/api/fuzz.rs).
    FuzzApi {
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Fuzzes raft frames into a replica: decoding, validation and raft
    /// (see src/raft/fuzz.rs).
    FuzzRaft {
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

impl Args {
    /// Runs the helper (the crash writer until it is killed).
    pub fn run(self) -> Result<(), BoxError> {
        match self.which {
            DebugOp::FuzzRaft { seconds, seed } => {
                std::panic::set_hook(Box::new(|_| {}));
                let n = crate::raft::fuzz::run(seed, seconds, u64::MAX)?;
                println!(
                    "fuzz-raft: {n} frames in {seconds} s (seed {seed}), no panic, nothing refused changed the node"
                );
                Ok(())
            }
            DebugOp::FuzzApi { seconds, seed } => {
                // Panics are the findings: keep their messages off the terminal.
                std::panic::set_hook(Box::new(|_| {}));
                let n = crate::api::fuzz::run(seed, seconds, u64::MAX)?;
                println!(
                    "fuzz-api: {n} inputs in {seconds} s (seed {seed}), no panic, no broken invariant"
                );
                Ok(())
            }
            DebugOp::CrashWriter {
                data_dir,
                batch_size,
            } => {
                use crate::store::{Expectation, GroupResource, ObjectKey, Txn, TxnOp, Workspace};
                use std::io::Write;
                let st = crate::store::open_rocks(
                    &data_dir,
                    &RocksOptions::default(),
                    StoreOptions::default(),
                )?;
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
}
