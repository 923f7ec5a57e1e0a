//! A fault-injecting TCP proxy between real `tmc serve` processes.
//!
//! Every directed peer link `from → to` gets its own proxy listener; node
//! `from` is started with `--peers` naming, for each other node `to`, the
//! proxy of `from → to` instead of `to`'s real raft address. (The raft
//! transport sends on the connection it dials and only reads on the ones it
//! accepts, so a link carries frames one way: the proxy forwards `from`'s
//! bytes to `to` and discards whatever comes back.)
//!
//! The proxy reads the wire frame header (4-byte length, crc32; see
//! `tmc::raft::wire`) and handles whole frames, so it can:
//! - **drop** each frame with a probability (the stream stays in step);
//! - **delay** each frame (order kept: one writer per connection);
//! - **cut** the link: frames are swallowed, the TCP connections stay up (a
//!   black hole, like a partition, not a refused connection);
//! - **isolate** a node (cut every link to and from it), **partition** the
//!   nodes into groups, **heal** everything.
//!
//! Faults apply to frames as they are read, so a change takes effect at
//! once on live connections. Real sockets only: no part of the node is
//! replaced.
#![allow(dead_code)]

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
    /// Frames passed on.
    pub forwarded: u64,
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
    ids: Vec<u64>,
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
            ids,
            proxies,
            links,
            tasks,
        }
    }

    /// The `--peers` value for node `id`: its own real address, the proxy
    /// of `id → peer` for every other node.
    pub fn peers_arg(&self, id: u64, real: &BTreeMap<u64, SocketAddr>) -> String {
        self.ids
            .iter()
            .map(|&p| {
                let addr = if p == id {
                    real[&p]
                } else {
                    self.proxies[&(id, p)]
                };
                format!("{p}={addr}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn with_link(&self, from: u64, to: u64, f: impl FnOnce(&mut LinkFaults)) {
        let mut links = self.links.lock().unwrap();
        if let Some(l) = links.get_mut(&(from, to)) {
            f(&mut l.faults);
        }
    }

    /// Sets the faults of the link `from → to`.
    pub fn set(&self, from: u64, to: u64, faults: LinkFaults) {
        self.with_link(from, to, |f| *f = faults);
    }

    /// Cuts `from → to` (one direction).
    pub fn cut(&self, from: u64, to: u64) {
        self.with_link(from, to, |f| f.cut = true);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: u64, b: u64) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Drops frames on `from → to` with probability `p`.
    pub fn drop_frames(&self, from: u64, to: u64, p: f64) {
        self.with_link(from, to, |f| f.drop = p);
    }

    /// Delays every frame on `from → to` by `d`.
    pub fn delay(&self, from: u64, to: u64, d: Duration) {
        self.with_link(from, to, |f| f.delay = d);
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64) {
        for &p in &self.ids {
            if p != id {
                self.cut_both(id, p);
            }
        }
    }

    /// Cuts every link between nodes of different groups (nodes in no
    /// group are isolated).
    pub fn partition(&self, groups: &[&[u64]]) {
        let group_of = |n: u64| groups.iter().position(|g| g.contains(&n));
        for &a in &self.ids {
            for &b in &self.ids {
                if a != b {
                    let (ga, gb) = (group_of(a), group_of(b));
                    if ga.is_none() || ga != gb {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        for l in self.links.lock().unwrap().values_mut() {
            l.faults = LinkFaults::default();
        }
    }

    /// Damages every chunk frame on `from → to` (or stops doing so).
    pub fn corrupt_chunks(&self, from: u64, to: u64, on: bool) {
        self.with_link(from, to, |f| f.corrupt_chunks = on);
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
    let (mut rd, _wr_in) = inbound.into_split();
    let (mut back, mut wr) = outbound.into_split();
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
                l.stats.forwarded += 1;
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
