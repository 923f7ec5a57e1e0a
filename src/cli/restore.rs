//! `tmc restore FILE --data-dir DIR`: a new shard from a backup (see
//! [`crate::backup::restore`]).
//!
//! One member, for `tmc dev --data-dir DIR` (the store in `DIR/shard`):
//! `tmc restore FILE --data-dir DIR [--encryption-config F]`. A member of
//! an N-replica shard served by `tmc serve` (the store in `DIR/data`):
//! `tmc restore FILE --data-dir DIR --member 2 --initial-cluster 1,2,3
//! --cluster-id ID`, run once per member with the same list and id (like
//! `etcdutl snapshot restore --initial-cluster`). A one-member restore
//! mints a random cluster id; a restore of several members needs one
//! `--cluster-id` for all (print one with `tmc restore --new-cluster-id`).

use super::BoxError;
use crate::backup::{Layout, RestoreOptions};
use std::path::PathBuf;

/// Make a new shard from a backup, in an empty data directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The backup file.
    #[arg(required_unless_present = "new_cluster_id")]
    pub file: Option<PathBuf>,
    /// The data directory to create (absent or empty).
    #[arg(long, required_unless_present = "new_cluster_id")]
    pub data_dir: Option<PathBuf>,
    /// This member's node id, with --initial-cluster: the store goes where
    /// `tmc serve --data-dir` reads it. Without both: one member for
    /// `tmc dev --data-dir`.
    #[arg(long, requires = "initial_cluster")]
    pub member: Option<u64>,
    /// The new shard's members (node ids, e.g. `1,2,3`); every member is
    /// restored with the same list.
    #[arg(long, requires = "member", value_delimiter = ',')]
    pub initial_cluster: Vec<u64>,
    /// The new shard's cluster id (16 hex digits), the same for every
    /// member; default: a random one (one member only).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// How far the revision moves ahead of the backup's (so that no
    /// resourceVersion the old shard handed out is handed out again).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub bump_revision: u64,
    /// Keep the change log instead of marking everything before the
    /// restore compacted (clients resuming from an old resourceVersion
    /// then do not get 410).
    #[arg(long)]
    pub no_mark_compacted: bool,
    /// The EncryptionConfiguration the shard will run with: it must hold
    /// every key the backup's Secrets are encrypted with (for `tmc dev`
    /// it is copied to DIR/encryption.yaml).
    #[arg(long)]
    pub encryption_config: Option<PathBuf>,
    /// Print a new random cluster id and exit.
    #[arg(long, exclusive = true)]
    pub new_cluster_id: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A random non-zero cluster id.
pub fn random_cluster_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// Parses 16 hex digits (not all zero).
fn parse_cluster_id(s: &str) -> Result<u64, String> {
    let id = u64::from_str_radix(s.trim(), 16)
        .ok()
        .filter(|_| s.trim().len() <= 16)
        .ok_or_else(|| format!("--cluster-id {s:?}: expected up to 16 hex digits"))?;
    if id == 0 {
        return Err("--cluster-id must not be 0".into());
    }
    Ok(id)
}

impl Args {
    /// Runs the restore.
    pub fn run(self) -> Result<(), BoxError> {
        if self.new_cluster_id {
            println!("{:016x}", random_cluster_id());
            return Ok(());
        }
        let file = self.file.ok_or("FILE is required")?;
        let data_dir = self.data_dir.ok_or("--data-dir is required")?;
        let (layout, voters) = match self.member {
            None => (Layout::Dev, vec![1]),
            Some(member) => {
                let mut voters = self.initial_cluster.clone();
                voters.sort_unstable();
                voters.dedup();
                if voters.len() != self.initial_cluster.len() || voters.contains(&0) {
                    return Err(format!(
                        "--initial-cluster {:?}: ids must be distinct and non-zero",
                        self.initial_cluster
                    )
                    .into());
                }
                if !voters.contains(&member) {
                    return Err(format!(
                        "--member {member} is not in --initial-cluster {voters:?}"
                    )
                    .into());
                }
                (Layout::Serve, voters)
            }
        };
        let cluster_id = match &self.cluster_id {
            Some(s) => parse_cluster_id(s)?,
            None if voters.len() > 1 => {
                return Err(format!(
                    "a restore of {} members needs one --cluster-id for all of them (for example {:016x}, from `tmc restore --new-cluster-id`)",
                    voters.len(),
                    random_cluster_id()
                )
                .into())
            }
            None => random_cluster_id(),
        };
        let opts = RestoreOptions {
            layout,
            voters,
            cluster_id,
            bump_revision: self.bump_revision,
            mark_compacted: !self.no_mark_compacted,
            encryption_config: self.encryption_config,
        };
        let r = crate::backup::restore(&file, &data_dir, &opts)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "restored shard {:?} (revision {} of {}) into {}: cluster id {}, members {:?}, revision {} (older ones answer 410)",
                r.manifest.shard,
                r.manifest.revision,
                r.manifest.created_at,
                r.store_dir.display(),
                r.cluster_id,
                r.voters,
                r.revision
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_hex_and_never_zero() {
        assert_eq!(parse_cluster_id("00000000000000ff").unwrap(), 255);
        assert!(parse_cluster_id("0").is_err());
        assert!(parse_cluster_id("xyz").is_err());
        assert!(parse_cluster_id("1234567890abcdef0").is_err());
        assert_ne!(random_cluster_id(), 0);
    }
}
