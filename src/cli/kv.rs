//! `tmc kv`: a client of the KV interface of `tmc serve`, through
//! [`PeerClient`] (with the operator's certificate from `--peer-tls-dir`
//! when the replicas use mutual TLS). A 503 naming `leader_addr` is
//! followed there, twice at most.

use super::BoxError;
use crate::raft::client::{Answer, PeerClient};
use hyper::http::Method;
use std::path::PathBuf;

/// A client of the KV interface of `tmc serve`; follows "not leader"
/// answers to the leader.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// KV address of a replica.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub endpoint: String,
    /// The peer TLS directory, when the replicas use mutual TLS.
    #[arg(long)]
    pub peer_tls_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub op: KvOp,
}

/// What `tmc kv` does.
#[derive(clap::Subcommand, Debug)]
pub enum KvOp {
    /// Store VALUE (JSON text) at WORKSPACE/NAMESPACE/NAME.
    Put { path: String, value: String },
    /// Read WORKSPACE/NAMESPACE/NAME.
    Get {
        path: String,
        /// Read this replica's state without ReadIndex (may be stale).
        #[arg(long)]
        local: bool,
    },
    /// Delete WORKSPACE/NAMESPACE/NAME.
    Delete { path: String },
    /// List the values of WORKSPACE.
    List { workspace: String },
    /// The replica's raft status.
    Status,
}

impl Args {
    /// Prints the answer's JSON on stdout; an answer other than 2xx is an
    /// error (`HTTP <status>`).
    pub fn run(self) -> Result<(), BoxError> {
        let client = operator_client(self.peer_tls_dir.as_deref())?;
        let (method, path, body) = match self.op {
            KvOp::Put { path, value } => (Method::PUT, format!("/kv/{path}"), value.into_bytes()),
            KvOp::Get { path, local } => (
                Method::GET,
                format!(
                    "/kv/{path}?consistency={}",
                    if local { "local" } else { "linearizable" }
                ),
                Vec::new(),
            ),
            KvOp::Delete { path } => (Method::DELETE, format!("/kv/{path}"), Vec::new()),
            KvOp::List { workspace } => (Method::GET, format!("/kv/{workspace}"), Vec::new()),
            KvOp::Status => (Method::GET, "/status".to_string(), Vec::new()),
        };
        let body = bytes::Bytes::from(body);
        super::runtime()?.block_on(async move {
            let mut addr = self.endpoint;
            for _ in 0..3 {
                let answer = client
                    .request(&addr, method.clone(), &path, &[], body.clone())
                    .await?;
                let (status, json) = (answer.status.as_u16(), json_of(&answer));
                if status == 503 {
                    if let Some(leader) = json.get("leader_addr").and_then(|a| a.as_str()) {
                        eprintln!("tmc: {}; retrying there", json["error"]);
                        addr = leader.to_string();
                        continue;
                    }
                }
                return print_answer(status, &json);
            }
            Err::<(), BoxError>("too many redirects to the leader".into())
        })
    }
}

/// A client with the operator's peer certificate from `dir` (plain TCP
/// without one); the server may be any replica.
pub(super) fn operator_client(dir: Option<&std::path::Path>) -> Result<PeerClient, BoxError> {
    let tls = match dir {
        Some(d) => Some(crate::raft::tls::PeerTls::load(d)?),
        None => None,
    };
    Ok(PeerClient::builder(tls).build())
}

/// The answer's body as JSON; a body that is not JSON as a JSON string.
pub(super) fn json_of(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&answer.body).into_owned())
    })
}

/// Prints `json`; a status other than 2xx is the error `HTTP <status>`.
pub(super) fn print_answer(status: u16, json: &serde_json::Value) -> Result<(), BoxError> {
    println!("{json}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}").into())
    }
}
