//! A shard of real `tmc serve` processes on loopback (the harness of
//! [`tmc::testcluster`], plain HTTP between the replicas) with every peer
//! link behind the fault-injecting proxy ([`super::faultnet`]).
//!
//! Every node of the address book gets a raft port and a KV port up front;
//! the first `voters` nodes found the shard, the others can be started
//! later with `--join`. Children are SIGKILLed when the shard is dropped;
//! if the test is failing (or `TMC_DUMP_LOGS` is set), the tail of each
//! node's log is printed.

use super::faultnet::FaultNet;
use tmc::testcluster::TestCluster;

/// How to start the shard.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Nodes 1..=voters found the shard.
    pub voters: u64,
    /// Nodes 1..=book are in every node's address book.
    pub book: u64,
    /// Seed of the proxy's random drops.
    pub seed: u64,
    /// `--tick-ms`.
    pub tick_ms: u64,
    /// More `tmc serve` arguments for every node.
    pub extra: Vec<String>,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            voters: 3,
            book: 3,
            seed: 0,
            tick_ms: 100,
            extra: Vec::new(),
        }
    }
}

/// The replicas and the proxy between them.
pub struct Shard {
    cluster: TestCluster,
    net: FaultNet,
}

impl std::ops::Deref for Shard {
    type Target = TestCluster;
    fn deref(&self) -> &TestCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for Shard {
    fn deref_mut(&mut self) -> &mut TestCluster {
        &mut self.cluster
    }
}

impl Shard {
    /// Starts the proxies and the founding voters. Must run inside a tokio
    /// runtime.
    pub async fn start(opts: ShardOptions) -> Shard {
        let mut cluster = TestCluster::builder()
            .insecure_peers()
            .nodes(opts.book)
            .voters(opts.voters)
            .tick_ms(opts.tick_ms)
            .args(opts.extra.as_slice())
            .build()
            .expect("a test cluster");
        let net = FaultNet::start(&cluster.raft_addrs(), opts.seed).await;
        for (&(from, to), &addr) in net.routes() {
            cluster.route_peer(from, to, addr);
        }
        cluster.start_founders().expect("the founding voters");
        Shard { cluster, net }
    }

    /// The fault-injecting proxy.
    pub fn net(&self) -> &FaultNet {
        &self.net
    }
}
