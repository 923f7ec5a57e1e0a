//! `tmc member`: membership of a shard served by `tmc serve`, through
//! [`super::kv`]'s client of the internal interface.

use super::kv::{json_of, operator_client, print_answer};
use super::BoxError;
use hyper::http::Method;
use std::path::PathBuf;

/// Membership of a shard served by `tmc serve`: add or remove a voter
/// (through the leader; a follower forwards the request).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The peer TLS directory, when the replicas use mutual TLS.
    #[arg(long, global = true)]
    pub peer_tls_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub op: MemberOp,
}

/// What `tmc member` does.
#[derive(clap::Subcommand, Debug)]
pub enum MemberOp {
    /// Add node ID as a voter. Its raft address must be in the --peers of
    /// every replica; start it with `tmc serve --join`.
    Add {
        /// The node to add.
        #[arg(long)]
        id: u64,
        /// Add it as a learner (it gets the log but does not vote; add it
        /// again without --learner to promote it once it has caught up).
        #[arg(long)]
        learner: bool,
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
    /// Remove voter or learner ID (not the leader, not the last voter).
    Remove {
        /// The node to remove.
        #[arg(long)]
        id: u64,
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
    /// Make the leader hand leadership to its most caught-up voter (before
    /// removing it or stopping its machine).
    HandOver {
        /// KV address of the leader.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
    /// List the voters and learners.
    List {
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
}

impl Args {
    /// Prints the answer's JSON on stdout; an answer other than 2xx is an
    /// error (`HTTP <status>`).
    pub fn run(self) -> Result<(), BoxError> {
        let client = operator_client(self.peer_tls_dir.as_deref())?;
        let (method, path, server) = match self.op {
            MemberOp::Add {
                id,
                learner,
                server,
            } => {
                let query = if learner { "?learner=true" } else { "" };
                (Method::POST, format!("/members/{id}{query}"), server)
            }
            MemberOp::HandOver { server } => {
                (Method::POST, "/leader/hand-over".to_string(), server)
            }
            MemberOp::Remove { id, server } => (Method::DELETE, format!("/members/{id}"), server),
            MemberOp::List { server } => (Method::GET, "/members".to_string(), server),
        };
        super::runtime()?.block_on(async move {
            let answer = client
                .request(&server, method, &path, &[], bytes::Bytes::new())
                .await?;
            print_answer(answer.status.as_u16(), &json_of(&answer))
        })
    }
}
