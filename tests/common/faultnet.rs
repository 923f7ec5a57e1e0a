//! A fault-injecting TCP proxy between real `tmc serve` processes.
//!
//! Every directed peer link `from → to` gets its own proxy listener; the
//! harness ([`tmc::testcluster::TestCluster::route_peer`]) starts node
//! `from` with `--peers` naming, for each other node `to`, the proxy of
//! `from → to` instead of `to`'s real raft address. (The raft
//! transport sends on the connection it dials and only reads on the ones it
//! accepts, so a link carries frames one way: the proxy forwards `from`'s
//! bytes to `to` and discards whatever comes back.)
//!
//! The proxy passes the hello of each connection (both ways) untouched,
//! then reads the wire frame header (4-byte length, crc32; see
//! `tmc::raft::wire`) and handles whole frames, so it can:
//! - **drop** each frame with a probability (the stream stays in step);
//! - **delay** each frame (order kept: one writer per connection);
//! - **cut** the link: frames are swallowed, the TCP connections stay up (a
//!   black hole, like a partition, not a refused connection);
//! - **corrupt** the chunk frames (a snapshot in transit).
//!
//! [`FaultNet::faults`] sets them on any set of links at once (isolating a
//! node, partitioning the nodes into groups, healing everything).
//!
//! Faults apply to frames as they are read, so a change takes effect at
//! once on live connections. Real sockets only: no part of the node is
//! replaced.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tmc::raft::wire::{self, HEADER_LEN};

/// The faults of one directed link.
#[derive(Debug, Clone, Default)]
pub struct LinkFaults {
    /// Frames are swallowed.
    pub cut: bool,
    /// Probability of dropping a frame, 0.0..=1.0.
    pub drop: f64,
    /// Added to every frame's delivery.
    pub delay: Duration,
    /// Flip a byte in the body of every chunk frame (a large message, in
    /// practice a snapshot, travelling in chunks).
    pub corrupt_chunks: bool,
}

/// Counters of one link, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames dropped (cut or random drop).
    pub dropped: u64,
    /// Chunk frames damaged on purpose.
    pub corrupted: u64,
}

struct Link {
    faults: LinkFaults,
    stats: LinkStats,
    rng: rand::rngs::StdRng,
}

type Links = Arc<Mutex<BTreeMap<(u64, u64), Link>>>;

/// The proxies of every directed link between `ids`.
pub struct FaultNet {
    /// Proxy address of each directed link.
    proxies: BTreeMap<(u64, u64), SocketAddr>,
    links: Links,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FaultNet {
    /// Starts one proxy per directed link between the nodes of `real`
    /// (node id → its real raft address). Must run inside a tokio runtime.
    /// `seed` drives the random frame drops.
    pub async fn start(real: &BTreeMap<u64, SocketAddr>, seed: u64) -> FaultNet {
        let ids: Vec<u64> = real.keys().copied().collect();
        let links: Links = Arc::new(Mutex::new(BTreeMap::new()));
        let mut proxies = BTreeMap::new();
        let mut tasks = Vec::new();
        for &from in &ids {
            for &to in &ids {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                proxies.insert((from, to), listener.local_addr().unwrap());
                links.lock().unwrap().insert(
                    (from, to),
                    Link {
                        faults: LinkFaults::default(),
                        stats: LinkStats::default(),
                        rng: rand::rngs::StdRng::seed_from_u64(
                            seed ^ (from << 32) ^ to.wrapping_mul(0x9e37_79b9),
                        ),
                    },
                );
                tasks.push(tokio::spawn(accept(
                    listener,
                    real[&to],
                    (from, to),
                    links.clone(),
                )));
            }
        }
        FaultNet {
            proxies,
            links,
            tasks,
        }
    }

    /// The proxy of every directed link `(from, to)`: where node `from`
    /// must reach node `to`.
    pub fn routes(&self) -> &BTreeMap<(u64, u64), SocketAddr> {
        &self.proxies
    }

    /// Calls `f` with every directed link `(from, to)` and its faults, to
    /// change them (`*faults = LinkFaults::default()` heals a link).
    pub fn faults(&self, mut f: impl FnMut((u64, u64), &mut LinkFaults)) {
        for (&link, l) in self.links.lock().unwrap().iter_mut() {
            f(link, &mut l.faults);
        }
    }

    /// Counters of `from → to`.
    pub fn stats(&self, from: u64, to: u64) -> LinkStats {
        self.links.lock().unwrap()[&(from, to)].stats
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept(listener: TcpListener, to: SocketAddr, link: (u64, u64), links: Links) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let links = links.clone();
        tokio::spawn(async move {
            // The target may be down (killed): then close the inbound
            // connection and let the sender redial.
            let Ok(outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            pump(inbound, outbound, link, links).await;
        });
    }
}

/// Forwards frames from `inbound` to `outbound`, applying the link's
/// faults; returns when either side closes.
async fn pump(inbound: TcpStream, outbound: TcpStream, link: (u64, u64), links: Links) {
    let (mut rd, mut wr_in) = inbound.into_split();
    let (mut back, mut wr) = outbound.into_split();
    // The hello each way (the cluster ids) passes untouched.
    let mut hello = [0u8; tmc::raft::server::transport::HELLO_LEN];
    if rd.read_exact(&mut hello).await.is_err() || wr.write_all(&hello).await.is_err() {
        return;
    }
    if back.read_exact(&mut hello).await.is_err() || wr_in.write_all(&hello).await.is_err() {
        return;
    }
    // Frames to deliver, with their due time; one writer keeps the order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, frame)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    // Nothing should come back; drain it so the socket does not stall.
    let drain = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while matches!(back.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    loop {
        let mut header = [0u8; HEADER_LEN];
        if rd.read_exact(&mut header).await.is_err() {
            break;
        }
        let Ok(len) = wire::body_len(&header) else {
            break;
        };
        let mut frame = vec![0u8; HEADER_LEN + len];
        frame[..HEADER_LEN].copy_from_slice(&header);
        if rd.read_exact(&mut frame[HEADER_LEN..]).await.is_err() {
            break;
        }
        let verdict = {
            let mut links = links.lock().unwrap();
            let l = links.get_mut(&link).expect("link exists");
            if l.faults.corrupt_chunks && wire::is_chunk(&frame) && frame.len() > HEADER_LEN {
                let at = HEADER_LEN + (frame.len() - HEADER_LEN) / 2;
                frame[at] ^= 0x5a;
                l.stats.corrupted += 1;
            }
            let dropped = l.faults.cut || (l.faults.drop > 0.0 && l.rng.random_bool(l.faults.drop));
            if dropped {
                l.stats.dropped += 1;
                None
            } else {
                Some(l.faults.delay)
            }
        };
        if let Some(delay) = verdict {
            if tx
                .send((tokio::time::Instant::now() + delay, frame))
                .is_err()
            {
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    drain.abort();
}
