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
    /// Where to write the backup (with --all-shards: a new directory).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Back up every shard of the shard registry through the front proxy
    /// the kubeconfig names: one file per shard in the directory -o, and
    /// `index.json` listing them (written last).
    #[arg(long)]
    pub all_shards: bool,
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
                if self.all_shards {
                    return take_all(&kubeconfig, &output, self.json);
                }
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
    let manifest = super::runtime()?.block_on(async {
        let client = super::admin_client(kubeconfig).await?;
        take_one(&client, "/tmc/backup", output, json).await
    })?;
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

/// `GET path` into `output` by way of `output.partial`: checked, then
/// renamed; on any error no file is left.
async fn take_one(
    client: &kube::Client,
    path: &str,
    output: &Path,
    quiet: bool,
) -> Result<crate::backup::Manifest, BoxError> {
    let mut partial = output.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let checked = match download(client, path, &partial, quiet).await {
        Ok(()) => crate::backup::read_manifest(&partial),
        Err(e) => Err(e),
    };
    match checked.and_then(|m| {
        std::fs::rename(&partial, output)
            .map(|()| m)
            .map_err(Into::into)
    }) {
        Ok(m) => Ok(m),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `tmc backup --all-shards -o DIR`: each shard of the registry through
/// the proxy into `DIR/{shard}.tmcbackup`, then `DIR/index.json`. DIR must
/// be new or empty; on any error what was written goes.
fn take_all(kubeconfig: &Path, dir: &Path, json: bool) -> Result<(), BoxError> {
    let claimed =
        crate::util::EmptyDir::claim(dir, "a backup set goes into a new or empty directory")?;
    let result = super::runtime()?.block_on(take_all_into(kubeconfig, dir, json));
    match result {
        Ok(index) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&index)?);
            } else {
                for s in index["shards"].as_array().into_iter().flatten() {
                    eprintln!(
                        "backed up shard {} at revision {} to {}",
                        s["shard"], s["revision"], s["file"]
                    );
                }
                eprintln!("index: {}", dir.join("index.json").display());
            }
            Ok(())
        }
        Err(e) => {
            claimed.discard();
            Err(e)
        }
    }
}

async fn take_all_into(
    kubeconfig: &Path,
    dir: &Path,
    quiet: bool,
) -> Result<serde_json::Value, BoxError> {
    let client = super::admin_client(kubeconfig).await?;
    let shards = super::status::registry_shards(&client).await?;
    if shards.is_empty() {
        return Err("the shard registry lists no shard".into());
    }
    let mut listed = Vec::new();
    for (name, _) in &shards {
        let file = dir.join(format!("{name}.tmcbackup"));
        let m = take_one(&client, &format!("/tmc/shards/{name}/backup"), &file, quiet)
            .await
            .map_err(|e| format!("shard {name:?}: {e}"))?;
        listed.push(serde_json::json!({
            "shard": m.shard,
            "file": format!("{name}.tmcbackup"),
            "clusterId": m.cluster_id,
            "revision": m.revision,
            "appliedIndex": m.applied_index,
            "createdAt": m.created_at,
            "keys": m.store.keys,
            "workspaces": m.store.workspaces,
            "sha256": m.store.sha256,
        }));
    }
    let index = serde_json::json!({
        "format": "tmc-backup-set/1",
        "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "shards": listed,
    });
    let tmp = dir.join("index.json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&index)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("index.json"))?;
    Ok(index)
}

/// `GET /tmc/backup?manifest=true`.
async fn live_manifest(kubeconfig: &Path) -> Result<serde_json::Value, BoxError> {
    let client = super::admin_client(kubeconfig).await?;
    let req = hyper::http::Request::get("/tmc/backup?manifest=true").body(Vec::new())?;
    let m: serde_json::Value = client
        .request(req)
        .await
        .map_err(|e| format!("GET /tmc/backup?manifest=true: {e}"))?;
    Ok(m)
}

/// `GET path` (a backup, a workspace export) into `to`, fsynced, its
/// trailer checked.
pub(crate) async fn download(
    client: &kube::Client,
    path: &str,
    to: &Path,
    quiet: bool,
) -> Result<(), BoxError> {
    use futures_util::TryStreamExt;
    let req = hyper::http::Request::get(path).body(Vec::new())?;
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
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
        .map_err(|e| format!("the transfer of GET {path}: {e}"))?;
    Ok(())
}
