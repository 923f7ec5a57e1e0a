//! `tmc status`: every shard's replicas at a glance (role, term, applied
//! index, lag, disk, readiness), from an admin kubeconfig of the front
//! proxy or of a shard.
//!
//! It lists the shard registry (`shards` in `root`), then asks each shard
//! for its `/tmc/status` (`system:masters` only): through the proxy as
//! `/tmc/shards/{name}/status`, and when the kubeconfig names a shard
//! itself, that shard's `/tmc/status` and the others' at the URL they
//! registered. A shard that does not answer is a row saying why; the
//! command then exits with status 1, so that a script can tell.

use super::BoxError;
use serde_json::Value;
use std::path::PathBuf;

/// Print the shards and their replicas: leader, term, applied index, lag,
/// disk, readiness.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An admin kubeconfig (system:masters) of the front proxy or of a
    /// shard (`tmc certs` writes one).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Print the shards' status documents as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Prints the table (or JSON); an error when a shard did not answer.
    pub fn run(self) -> Result<(), BoxError> {
        let shards = super::runtime()?.block_on(gather(&self.kubeconfig))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&shards)?);
        } else {
            print!("{}", table(&shards));
        }
        let failed: Vec<&str> = shards
            .iter()
            .filter(|s| s.get("error").is_some())
            .filter_map(|s| s["shard"].as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("no status from shard(s) {}", failed.join(", ")).into())
        }
    }
}

/// The shards of the registry (root's `core.kcp.io` Shards): name and
/// base URL (empty when not registered).
pub(crate) async fn registry_shards(
    client: &kube::Client,
) -> Result<Vec<(String, String)>, BoxError> {
    let registry = get(client, "/clusters/root/apis/core.kcp.io/v1alpha1/shards").await?;
    Ok(registry["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|s| {
                    let name = s["metadata"]["name"].as_str()?.to_string();
                    let url = s["spec"]["baseURL"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    Some((name, url))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The status document of every shard in the registry (or, without one,
/// of the shard the kubeconfig names).
async fn gather(kubeconfig: &std::path::Path) -> Result<Vec<Value>, BoxError> {
    let (config, base) = super::admin_config(kubeconfig).await?;
    let client_at = |server: &str| -> Result<kube::Client, BoxError> {
        let mut c = config.clone();
        c.cluster_url = server.parse()?;
        Ok(kube::Client::try_from(c)?)
    };
    let client = client_at(&base)?;
    let shards = registry_shards(&client).await?;
    if shards.is_empty() {
        return Ok(vec![get(&client, "/tmc/status").await?]);
    }
    let mut out = Vec::new();
    for (name, shard_url) in shards {
        // Through the proxy; a shard answers only for itself (404), the
        // others are asked at their registered URL.
        let doc = match get(&client, &format!("/tmc/shards/{name}/status")).await {
            Ok(doc) => Ok(doc),
            Err(e) if shard_url.is_empty() => Err(e),
            Err(_) => match client_at(&shard_url) {
                Ok(c) => get(&c, "/tmc/status").await,
                Err(e) => Err(e),
            },
        };
        out.push(match doc {
            Ok(doc) => doc,
            Err(e) => serde_json::json!({"shard": name, "error": e.to_string()}),
        });
    }
    Ok(out)
}

/// `GET path` as JSON.
async fn get(client: &kube::Client, path: &str) -> Result<Value, BoxError> {
    let req = hyper::http::Request::get(path).body(Vec::new())?;
    let text = client
        .request_text(req)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))?)
}

/// The table: one row per replica (or per shard that did not answer).
pub fn table(shards: &[Value]) -> String {
    let mut rows = vec![[
        "SHARD", "REPLICA", "ROLE", "VOTER", "TERM", "APPLIED", "LAG", "DISK", "READY",
    ]
    .map(String::from)
    .to_vec()];
    for s in shards {
        let shard = s["shard"].as_str().unwrap_or("?").to_string();
        if let Some(e) = s.get("error") {
            rows.push(vec![
                shard,
                "-".into(),
                format!("error: {}", e.as_str().unwrap_or("?")),
            ]);
            continue;
        }
        for r in s["replicas"].as_array().into_iter().flatten() {
            let id = r["id"].to_string();
            if let Some(e) = r.get("error") {
                rows.push(vec![
                    shard.clone(),
                    id,
                    format!("unreachable: {}", e.as_str().unwrap_or("?")),
                ]);
                continue;
            }
            let num = |k: &str| r[k].as_u64().map_or("-".to_string(), |v| v.to_string());
            rows.push(vec![
                shard.clone(),
                id,
                r["role"].as_str().unwrap_or("?").to_string(),
                r["voter"]
                    .as_bool()
                    .map_or("-", |v| if v { "yes" } else { "learner" })
                    .to_string(),
                num("term"),
                num("applied"),
                num("lag"),
                r["diskBytes"].as_u64().map_or("-".to_string(), human_bytes),
                r["ready"]
                    .as_bool()
                    .map_or("-", |v| if v { "yes" } else { "no" })
                    .to_string(),
            ]);
        }
    }
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// 1536 → "1.5Ki".
fn human_bytes(n: u64) -> String {
    let units = ["B", "Ki", "Mi", "Gi", "Ti"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_has_a_row_per_replica_and_says_what_did_not_answer() {
        let t = table(&[
            json!({"shard": "root", "replicas": [
                {"id": 1, "role": "leader", "voter": true, "term": 4, "applied": 120, "lag": 0, "diskBytes": 1536, "ready": true},
                {"id": 2, "error": "timed out"},
            ]}),
            json!({"shard": "two", "error": "GET /tmc/status: 503"}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("SHARD"), "{t}");
        assert!(
            lines[1].contains("leader") && lines[1].contains("1.5Ki") && lines[1].ends_with("yes"),
            "{t}"
        );
        assert!(lines[2].contains("unreachable: timed out"), "{t}");
        assert!(
            lines[3].starts_with("two") && lines[3].contains("error: GET /tmc/status: 503"),
            "{t}"
        );
    }
}
