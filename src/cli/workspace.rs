//! `tmc workspace export|import|move`: one workspace out of a shard, into
//! a shard (the same or another, at the same or another path), and from
//! one shard to another while everything else keeps running. The file is
//! [`crate::backup::workspace`]'s; the shards' side is
//! [`crate::api::handlers::transfer`], reached with an admin kubeconfig
//! (system:masters) of the front proxy or of a lone shard (`tmc dev`).
//!
//! **Where a workspace is**: its Workspace object in its parent names the
//! shard (`spec.shard`). An operation on shard `S` goes to
//! `/tmc/shards/S/workspaces/{op}`, which the proxy routes to `S` and a
//! lone shard answers for itself; one on the shard of a workspace whose
//! parent is `root` goes to `/tmc/workspaces/{op}` (the root shard).
//!
//! **`move W --to B`** (W on shard A): hold W on A (writes 503), export
//! it, import it into B held (`from=A`), switch W's Workspace object to B
//! (the index switch: the proxy now resolves W to B), remove W from A
//! (its LogicalCluster first: A answers 421 and W's watches there end with
//! 410; the revision of that is R), release W on B with a revision past R
//! (lists and watches from any older resourceVersion get 410 there). A
//! failure before the switch aborts the import on B and releases A; after
//! it, running the same command again finishes the move.

use super::BoxError;
use crate::backup::workspace::{self as wsfile, Item};
use crate::store::{Key, Workspace};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Export, import or move one workspace.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub op: Op,
}

/// What `tmc workspace` does.
#[derive(clap::Subcommand, Debug)]
pub enum Op {
    /// Write every object of a workspace, with its placement and sync
    /// state, consistent at one revision (Secrets as stored: encrypted
    /// where the shard encrypts them), to a file or standard output.
    Export {
        /// The workspace (`root:acme`).
        workspace: String,
        /// An admin kubeconfig (system:masters) of the proxy or shard.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// The file (written whole or not at all); standard output if
        /// not given.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Import an export into a shard, at its own path or another one; the
    /// workspace must not exist there.
    Import {
        /// The export file.
        file: PathBuf,
        /// An admin kubeconfig (system:masters) of the proxy or shard.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// The path to import at (its parent must exist); the export's
        /// own if not given.
        #[arg(long)]
        to: Option<String>,
        /// The shard to import into; the parent's if not given.
        #[arg(long)]
        shard: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a workspace to another shard: its writes are held while it is
    /// copied, nothing else pauses; run it again to finish a move that
    /// stopped after the switch.
    Move {
        /// The workspace (`root:acme`).
        workspace: String,
        /// The shard to move it to.
        #[arg(long)]
        to: String,
        /// An admin kubeconfig (system:masters) of the proxy.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<(), BoxError> {
        let rt = super::runtime()?;
        match self.op {
            Op::Export {
                workspace,
                kubeconfig,
                output,
            } => rt.block_on(export(&kubeconfig, &workspace, output.as_deref())),
            Op::Import {
                file,
                kubeconfig,
                to,
                shard,
                json,
            } => {
                let out = rt.block_on(async {
                    let client = super::admin_client(&kubeconfig).await?;
                    import(&client, &file, to.as_deref(), shard.as_deref()).await
                })?;
                report(&out, json, |o| {
                    format!(
                        "imported {} records of {} into shard {} as {}",
                        o["records"], o["source"], o["shard"], o["workspace"]
                    )
                })
            }
            Op::Move {
                workspace,
                to,
                kubeconfig,
                json,
            } => {
                let out = rt.block_on(async {
                    let client = super::admin_client(&kubeconfig).await?;
                    move_to(&client, &workspace, &to).await
                })?;
                report(&out, json, |o| {
                    format!(
                        "moved {} from shard {} to {} ({} records, writes held {} ms)",
                        o["workspace"], o["from"], o["to"], o["records"], o["heldMs"]
                    )
                })
            }
        }
    }
}

fn report(out: &Value, json: bool, line: impl Fn(&Value) -> String) -> Result<(), BoxError> {
    if json {
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        eprintln!("{}", line(out));
    }
    Ok(())
}

fn parse(path: &str) -> Result<Workspace, BoxError> {
    let ws = Workspace::parse(path).map_err(|e| format!("{path}: {e}"))?;
    if ws.parent().is_none() {
        return Err(format!("{path}: root cannot be exported, imported or moved").into());
    }
    Ok(ws)
}

/// The path of operation `op` on shard `shard` (`None`: the root shard).
fn op_path(shard: Option<&str>, op: &str, query: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(k, v);
    }
    let q = q.finish();
    match shard {
        Some(s) => format!("/tmc/shards/{s}/workspaces/{op}?{q}"),
        None => format!("/tmc/workspaces/{op}?{q}"),
    }
}

/// `POST path` with `body`; the answer's JSON, or an error with the
/// server's message.
async fn post(client: &kube::Client, path: &str, body: Vec<u8>) -> Result<Value, BoxError> {
    let req = hyper::http::Request::post(path).body(body)?;
    let v: Value = client.request(req).await.map_err(|e| match e {
        kube::Error::Api(s) => format!("POST {path}: {} ({})", s.message, s.code),
        e => format!("POST {path}: {e}"),
    })?;
    Ok(v)
}

/// The Workspace object of `ws` (in its parent), if there is one.
async fn workspace_object(
    client: &kube::Client,
    ws: &Workspace,
) -> Result<Option<Value>, BoxError> {
    let parent = ws.parent().ok_or("root has no Workspace object")?;
    let path = format!(
        "/clusters/{}/apis/tenancy.kcp.io/v1alpha1/workspaces/{}",
        parent.as_str(),
        ws.base()
    );
    let req = hyper::http::Request::get(&path).body(Vec::new())?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(format!("GET {path}: {e}").into()),
    }
}

/// The shard that holds `ws` (its Workspace object's `spec.shard`).
async fn shard_of(client: &kube::Client, ws: &Workspace) -> Result<String, BoxError> {
    let obj = workspace_object(client, ws)
        .await?
        .ok_or_else(|| format!("workspace {} does not exist", ws.as_str()))?;
    obj.pointer("/spec/shard")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("the Workspace object of {} names no shard", ws.as_str()).into())
}

/// The shard of `ws`'s parent, for [`op_path`] (`None`: root's).
async fn parent_shard(client: &kube::Client, ws: &Workspace) -> Result<Option<String>, BoxError> {
    match ws.parent() {
        Some(p) if p.parent().is_some() => Ok(Some(shard_of(client, &p).await?)),
        _ => Ok(None),
    }
}

/// Downloads the export of `ws` from `shard` into `to`, checked whole.
async fn download_export(
    client: &kube::Client,
    shard: &str,
    ws: &Workspace,
    to: &Path,
) -> Result<wsfile::Checked, BoxError> {
    let path = op_path(Some(shard), "export", &[("workspace", ws.as_str())]);
    super::backup::download(client, &path, to, true).await?;
    let to = to.to_path_buf();
    tokio::task::spawn_blocking(move || wsfile::read(&to, |_| Ok(()))).await?
}

async fn export(kubeconfig: &Path, path: &str, output: Option<&Path>) -> Result<(), BoxError> {
    let ws = parse(path)?;
    let client = super::admin_client(kubeconfig).await?;
    let shard = shard_of(&client, &ws).await?;
    let Some(out) = output else {
        let scratch = tempfile::Builder::new().prefix("tmc-export").tempdir()?;
        let tmp = scratch.path().join("export.tmcws");
        download_export(&client, &shard, &ws, &tmp).await?;
        let mut f = std::fs::File::open(&tmp)?;
        std::io::copy(&mut f, &mut std::io::stdout().lock())?;
        return Ok(());
    };
    // Into FILE.partial, checked, then renamed: FILE is whole or absent.
    let mut partial = out.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let checked = match download_export(&client, &shard, &ws, &partial).await {
        Ok(c) => std::fs::rename(&partial, out)
            .map(|()| c)
            .map_err(BoxError::from),
        Err(e) => Err(e),
    };
    let checked = checked.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    eprintln!(
        "exported {} ({} records at revision {} of shard {shard}) to {}",
        ws.as_str(),
        checked.summary.records,
        checked.header.revision,
        out.display()
    );
    Ok(())
}

/// Records of one import batch: at most this many, or about this many bytes.
const BATCH_ITEMS: usize = 500;
const BATCH_BYTES: usize = 2 << 20;

/// Imports `file` at `to` (default: its own path) into `shard` (default:
/// the parent's); `hold`: the hold to commit it with (a move).
async fn import_as(
    client: &kube::Client,
    file: &Path,
    to: Option<&str>,
    shard: Option<&str>,
    hold: Option<&str>,
) -> Result<Value, BoxError> {
    let f = file.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || wsfile::read(&f, |_| Ok(()))).await??;
    let source = parse(&checked.header.workspace)?;
    let dst = parse(to.unwrap_or(source.as_str()))?;
    let moved = dst != source;
    let lc_key = Key::from(crate::store::ObjectKey::logical_cluster(&source));
    let mut sent = checked.summary.records;
    if moved {
        sent -= checked
            .summary
            .per_resource
            .get("tmc:sync")
            .copied()
            .unwrap_or(0);
    }
    if hold.is_none() {
        if let Some(obj) = workspace_object(client, &dst).await? {
            return Err(format!(
                "workspace {} exists (shard {}): import at another path (--to), or delete it \
                 first",
                dst.as_str(),
                obj.pointer("/spec/shard")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            )
            .into());
        }
    }
    let parent = parent_shard(client, &dst).await?;
    let target = match shard {
        Some(s) => Some(s.to_string()),
        None => parent.clone(),
    };
    let keys: Vec<&str> = checked
        .summary
        .encryption_keys
        .keys()
        .map(String::as_str)
        .collect();
    let keys = keys.join(",");
    let at = |op: &str, extra: &[(&str, &str)]| {
        let mut q = vec![("workspace", dst.as_str()), ("source", source.as_str())];
        q.extend_from_slice(extra);
        op_path(target.as_deref(), op, &q)
    };
    let begun = post(
        client,
        &at("import", &[("phase", "begin"), ("keys", &keys)]),
        Vec::new(),
    )
    .await?;
    let shard_name = begun["shard"]
        .as_str()
        .ok_or("the shard did not say its name")?
        .to_string();
    let started = Instant::now();
    let result: Result<Value, BoxError> = async {
        // The records, read again from the file in batches; the
        // LogicalCluster is held back for the commit.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Item>>(2);
        let f = file.to_path_buf();
        let key = lc_key.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch: Vec<Item> = Vec::new();
            let mut bytes = 0;
            let mut marker = None;
            wsfile::read(&f, |item| {
                if item.key == key {
                    marker = Some(item);
                    return Ok(());
                }
                bytes += item.value.len() + 64;
                batch.push(item);
                if batch.len() >= BATCH_ITEMS || bytes >= BATCH_BYTES {
                    bytes = 0;
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| "the import stopped")?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch).map_err(|_| "the import stopped")?;
            }
            marker.ok_or_else(|| BoxError::from("the export holds no LogicalCluster"))
        });
        while let Some(batch) = rx.recv().await {
            post(
                client,
                &at("import", &[("phase", "records")]),
                wsfile::encode_batch(&batch),
            )
            .await?;
        }
        let marker = reader.await??;
        let uid = if moved {
            uuid::Uuid::new_v4().to_string()
        } else {
            let lc: Value = serde_json::from_slice(&marker.value)?;
            lc.pointer("/spec/owner/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let records = sent.saturating_sub(1).to_string();
        let mut extra = vec![("phase", "commit"), ("records", records.as_str())];
        if let Some(h) = hold {
            extra.push(("move", h));
        }
        if moved {
            extra.push(("ownerUID", uid.as_str()));
        }
        let committed = post(
            client,
            &at("import", &extra),
            wsfile::encode_batch(&[marker]),
        )
        .await?;
        if hold.is_none() {
            // The index: the parent's Workspace object names the shard.
            let uid_q = if uid.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                uid
            };
            post(
                client,
                &op_path(
                    parent.as_deref(),
                    "switch",
                    &[
                        ("workspace", dst.as_str()),
                        ("to", &shard_name),
                        ("uid", &uid_q),
                    ],
                ),
                Vec::new(),
            )
            .await?;
        }
        Ok(committed)
    }
    .await;
    match result {
        Ok(committed) => Ok(json!({
            "source": source.as_str(),
            "workspace": dst.as_str(),
            "shard": shard_name,
            "records": sent,
            "revision": committed["revision"],
            "ms": started.elapsed().as_millis() as u64,
        })),
        Err(e) => {
            let abort = at("import", &[("phase", "abort")]);
            if let Err(a) = post(client, &abort, Vec::new()).await {
                return Err(format!("{e}; and removing what was imported failed: {a}").into());
            }
            Err(e)
        }
    }
}

async fn import(
    client: &kube::Client,
    file: &Path,
    to: Option<&str>,
    shard: Option<&str>,
) -> Result<Value, BoxError> {
    import_as(client, file, to, shard, None).await
}

/// `tmc workspace move` (see the module docs).
async fn move_to(client: &kube::Client, path: &str, to: &str) -> Result<Value, BoxError> {
    let ws = parse(path)?;
    let from = shard_of(client, &ws).await?;
    let parent = parent_shard(client, &ws).await?;
    let on = |shard: &str, op: &str, extra: &[(&str, &str)]| {
        let mut q = vec![("workspace", ws.as_str())];
        q.extend_from_slice(extra);
        op_path(Some(shard), op, &q)
    };
    if from == to {
        // Already switched: a move that stopped after the switch is
        // finished; otherwise there is nothing to do.
        let lc_path = format!(
            "/clusters/{}/apis/core.kcp.io/v1alpha1/logicalclusters/cluster",
            ws.as_str()
        );
        let req = hyper::http::Request::get(&lc_path).body(Vec::new())?;
        let lc: Value = client
            .request(req)
            .await
            .map_err(|e| format!("GET {lc_path}: {e}"))?;
        let how = crate::shards::moving(&lc).unwrap_or_default().to_string();
        let Some(source) = how.strip_prefix("from=") else {
            return Err(format!("workspace {} is on shard {to} already", ws.as_str()).into());
        };
        let removed = post(client, &on(source, "remove", &[]), Vec::new()).await?;
        let after = removed["revision"].to_string();
        post(client, &on(to, "release", &[("after", &after)]), Vec::new()).await?;
        return Ok(json!({
            "workspace": ws.as_str(), "from": source, "to": to, "records": removed["removed"],
            "heldMs": 0, "finished": true,
        }));
    }
    let started = Instant::now();
    let hold_to = format!("to={to}");
    post(
        client,
        &on(&from, "hold", &[("move", &hold_to)]),
        Vec::new(),
    )
    .await?;
    let scratch = tempfile::Builder::new().prefix("tmc-move").tempdir()?;
    let file = scratch.path().join("move.tmcws");
    let hold_from = format!("from={from}");
    let copied: Result<Value, BoxError> = async {
        download_export(client, &from, &ws, &file).await?;
        let imported = import_as(client, &file, None, Some(to), Some(&hold_from)).await?;
        post(
            client,
            &op_path(
                parent.as_deref(),
                "switch",
                &[("workspace", ws.as_str()), ("from", &from), ("to", to)],
            ),
            Vec::new(),
        )
        .await?;
        Ok(imported)
    }
    .await;
    let imported = match copied {
        Ok(v) => v,
        Err(e) => {
            // Nothing switched: the workspace stays where it was.
            let _ = post(client, &on(to, "import", &[("phase", "abort")]), Vec::new()).await;
            let _ = post(client, &on(&from, "release", &[]), Vec::new()).await;
            return Err(format!("{e}; the workspace stays on shard {from}").into());
        }
    };
    let finish = async {
        let removed = post(client, &on(&from, "remove", &[]), Vec::new()).await?;
        let after = removed["revision"].to_string();
        post(client, &on(to, "release", &[("after", &after)]), Vec::new()).await?;
        Ok::<_, BoxError>(removed)
    };
    let removed = finish.await.map_err(|e| {
        format!(
            "{e}; the workspace is switched to shard {to} but not finished: run `tmc workspace \
             move {} --to {to}` again",
            ws.as_str()
        )
    })?;
    Ok(json!({
        "workspace": ws.as_str(),
        "from": from,
        "to": to,
        "records": imported["records"],
        "removed": removed["removed"],
        "heldMs": started.elapsed().as_millis() as u64,
    }))
}
