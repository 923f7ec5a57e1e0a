//! `tmc backup`: take a backup of a running shard through its API, and
//! check one (`tmc backup verify`). The file format is
//! [`crate::backup`]'s.
//!
//! `tmc backup --kubeconfig K -o FILE` asks the server `K` names (a shard,
//! `tmc dev`) for `GET /tmc/backup` (system:masters), streams the answer
//! into `FILE.partial` while hashing it, checks the hash against the
//! server's trailer (the SHA-256 of every byte it sent) and the manifest,
//! and only then renames it to `FILE`: a file named `FILE` is always whole,
//! byte for byte what the server made; an interrupted or damaged transfer
//! leaves no `FILE` (and removes its partial file). The server's own
//! digest over every value is in the manifest; `tmc backup verify`
//! re-takes it from the file.

use super::BoxError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Back up a running shard, or verify a backup.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub op: Option<BackupOp>,
    /// An admin kubeconfig (system:masters) of the shard.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where to write the backup.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print only the manifest's JSON, no progress.
    #[arg(long)]
    pub json: bool,
}

/// What else `tmc backup` does.
#[derive(clap::Subcommand, Debug)]
pub enum BackupOp {
    /// Check a backup without restoring it: every part's digest, every
    /// value's checksum, the data's digest; prints revision, keys per
    /// resource, workspaces and the hash. Exits non-zero on any damage.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the revision and the hash over all keys and values of a
    /// running shard, at a read point taken now: the figures `verify`
    /// prints of a backup taken at the same revision.
    Hash {
        /// An admin kubeconfig (system:masters) of the shard.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Print the whole manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<(), BoxError> {
        match self.op {
            Some(BackupOp::Verify { file, json }) => verify(&file, json),
            Some(BackupOp::Hash { kubeconfig, json }) => {
                let m = super::runtime()?.block_on(live_manifest(&kubeconfig))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&m)?);
                } else {
                    println!(
                        "shard {} revision {}: {} keys, {} workspaces, sha256 {}",
                        m["shard"],
                        m["revision"],
                        m["store"]["keys"],
                        m["store"]["workspaces"],
                        m["store"]["sha256"].as_str().unwrap_or("")
                    );
                }
                Ok(())
            }
            None => {
                let kubeconfig = self
                    .kubeconfig
                    .ok_or("--kubeconfig (or KUBECONFIG) is required")?;
                let output = self.output.ok_or("-o FILE is required")?;
                take(&kubeconfig, &output, self.json)
            }
        }
    }
}

fn verify(file: &Path, json: bool) -> Result<(), BoxError> {
    let scratch = tempfile::Builder::new().prefix("tmc-verify").tempdir()?;
    let v = crate::backup::verify(file, scratch.path())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let m = &v.manifest;
    println!(
        "backup of shard {:?} (cluster id {}) taken {}",
        m.shard, m.cluster_id, m.created_at
    );
    println!("revision {}, applied index {}", m.revision, m.applied_index);
    println!(
        "{} keys, {} workspaces, {} controller records, sha256 {}",
        v.store.keys, v.store.workspaces, v.store.records, v.store.sha256
    );
    for (resource, n) in &v.store.per_resource {
        println!("  {resource}: {n}");
    }
    if v.store.encryption_keys.is_empty() {
        println!("no encrypted values");
    }
    for (key, n) in &v.store.encryption_keys {
        println!("{n} values encrypted with key {key:?}: a restore needs it");
    }
    println!("OK: {} parts, every digest matches", m.parts.len());
    Ok(())
}

fn take(kubeconfig: &Path, output: &Path, json: bool) -> Result<(), BoxError> {
    let mut partial = output.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = super::runtime()?.block_on(download(kubeconfig, &partial, json));
    let checked = result.and_then(|()| crate::backup::read_manifest(&partial));
    match checked {
        Ok(manifest) => {
            std::fs::rename(&partial, output)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                eprintln!(
                    "backed up shard {:?} at revision {} ({} keys, sha256 {}) to {}",
                    manifest.shard,
                    manifest.revision,
                    manifest.store.keys,
                    manifest.store.sha256,
                    output.display()
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// An admin client of the server `kubeconfig` names.
async fn admin_client(kubeconfig: &Path) -> Result<kube::Client, BoxError> {
    let (config, base) = super::admin_config(kubeconfig).await?;
    let mut c = config;
    c.cluster_url = base.parse()?;
    Ok(kube::Client::try_from(c)?)
}

/// `GET /tmc/backup?manifest=true`.
async fn live_manifest(kubeconfig: &Path) -> Result<serde_json::Value, BoxError> {
    let client = admin_client(kubeconfig).await?;
    let req = hyper::http::Request::get("/tmc/backup?manifest=true").body(Vec::new())?;
    let m: serde_json::Value = client
        .request(req)
        .await
        .map_err(|e| format!("GET /tmc/backup?manifest=true: {e}"))?;
    Ok(m)
}

/// `GET /tmc/backup` into `to`, fsynced.
async fn download(kubeconfig: &Path, to: &Path, quiet: bool) -> Result<(), BoxError> {
    use futures_util::TryStreamExt;
    let client = admin_client(kubeconfig).await?;
    let req = hyper::http::Request::get("/tmc/backup").body(Vec::new())?;
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .map_err(|e| format!("GET /tmc/backup: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!(
            "GET /tmc/backup: {status}: {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
            .expect("template"),
    );
    let mut file = std::fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut body = http_body_util::BodyDataStream::new(resp.into_body());
    let mut check = crate::backup::TrailerCheck::default();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| format!("the transfer broke: {e}"))?
    {
        check.update(&chunk);
        file.write_all(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all()?;
    bar.finish_and_clear();
    check
        .finish()
        .map_err(|e| format!("the transfer of GET /tmc/backup: {e}"))?;
    Ok(())
}
