//! `tmc bench raft`: write throughput and latency of a three-replica `tmc
//! serve` shard against a three-member etcd cluster, both on loopback with
//! fsync on, driven in the same run by the same load generator.
//!
//! At each concurrency C, C client tasks write 1 KB values in a closed loop
//! (one write outstanding per client) for a fixed time, after a warm-up that
//! is not counted. Each client has its own connection:
//! - tmc: HTTP/1.1 with keep-alive, `PUT /kv/root:bench/default/k{client}-{n}`
//!   (reqwest's pool opens one connection per concurrent client);
//! - etcd: gRPC `etcdserverpb.KV/Put` over one HTTP/2 connection per client
//!   (see [`EtcdGrpc`] for why not the `etcd-client` crate).
//!
//! Both clusters run for the whole benchmark and the levels alternate
//! (tmc at C, then etcd at C), so that the background load of a shared
//! machine affects both alike.
//!
//! Each client cycles over 1,000 keys of its own. With
//! [`Endpoints::Leader`] every client talks to the leader; with
//! [`Endpoints::All`] client i talks to replica i mod 3, and followers pass
//! the write on (tmc: HTTP forward to the leader's `POST /txn`; etcd: raft
//! `MsgProp`).

use super::procs::{find_etcd, tmc_shard, BoxError, EtcdCluster};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which replicas the clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Endpoints {
    /// Every client talks to the leader.
    Leader,
    /// Client i talks to replica i mod 3; followers pass writes on.
    All,
}

/// Write throughput and latency of a 3-replica `tmc serve` shard and,
/// in the same run, of a 3-member etcd cluster (loopback, fsync on).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent clients, one level after the other.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 64, 256])]
    pub concurrency: Vec<usize>,
    /// Measured seconds per level.
    #[arg(long, default_value = "10", value_parser = super::secs)]
    pub duration_secs: Duration,
    /// Unmeasured seconds before each level.
    #[arg(long, default_value = "1", value_parser = super::secs)]
    pub warmup_secs: Duration,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Which replicas the clients talk to.
    #[arg(long, value_enum, default_value_t = Endpoints::Leader)]
    pub endpoints: Endpoints,
    /// The etcd binary (default: $TESTENV_ETCD, else the one
    /// `scripts/testenv.sh build` left under ~/.cache/tmc/testenv/*/bin,
    /// else `etcd` on PATH).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Skip etcd.
    #[arg(long)]
    pub no_etcd: bool,
    /// `--tick-ms` of the tmc replicas.
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,
    /// Parent directory for the data directories (default: the system's
    /// temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print only the JSON report (no progress).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The benchmark's parameters, running `tmc_bin` as `tmc serve`.
    pub fn config(&self, tmc_bin: PathBuf) -> RaftBenchConfig {
        RaftBenchConfig {
            tmc_bin,
            etcd_bin: self.etcd_bin.clone(),
            no_etcd: self.no_etcd,
            concurrency: self.concurrency.clone(),
            duration: self.duration_secs,
            warmup: self.warmup_secs,
            value_bytes: self.value_bytes,
            endpoints: self.endpoints,
            tick_ms: self.tick_ms,
            dir: self.dir.clone(),
        }
    }
}

/// Parameters of `tmc bench raft`.
#[derive(Debug, Clone)]
pub struct RaftBenchConfig {
    /// The `tmc` binary to run as `tmc serve`.
    pub tmc_bin: PathBuf,
    /// The etcd binary; `None`: look for it (see [`find_etcd`]).
    pub etcd_bin: Option<PathBuf>,
    /// Skip the etcd half.
    pub no_etcd: bool,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Measured time per level.
    pub duration: Duration,
    /// Unmeasured time before each level.
    pub warmup: Duration,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Where the clients connect.
    pub endpoints: Endpoints,
    /// `--tick-ms` of the replicas.
    pub tick_ms: u64,
    /// Parent directory of the data directories (default: the system's
    /// temporary directory).
    pub dir: Option<PathBuf>,
}

/// Figures of one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Writes acknowledged in the measured window.
    pub writes: u64,
    /// Failed writes in the measured window.
    pub errors: u64,
    /// Acknowledged writes per second.
    pub writes_per_s: f64,
    /// Median latency of an acknowledged write.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Slowest acknowledged write.
    pub max_ms: f64,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// tmc / etcd at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Concurrent clients.
    pub concurrency: usize,
    /// tmc writes/s over etcd writes/s (≥ 1: tmc is faster).
    pub writes_per_s: f64,
    /// tmc p50 over etcd p50 (≤ 1: tmc is faster).
    pub p50: f64,
    /// tmc p99 over etcd p99.
    pub p99: f64,
}

/// What `tmc bench raft` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RaftBenchReport {
    /// Measured seconds per level.
    pub duration_s: f64,
    /// Unmeasured seconds before each level.
    pub warmup_s: f64,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Where the clients connected.
    pub endpoints: Endpoints,
    /// `--tick-ms` of the tmc replicas.
    pub tmc_tick_ms: u64,
    /// tmc's figures per level.
    pub tmc: Vec<Level>,
    /// etcd's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_version: Option<String>,
    /// etcd's figures per level.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<Level>,
    /// tmc / etcd per level.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratio: Vec<Ratio>,
    /// Load averages (1, 5, 15 min) when the run started and ended.
    pub loadavg_start: String,
    /// See `loadavg_start`.
    pub loadavg_end: String,
}

/// A minimal gRPC client for etcd's `KV/Put`, over one HTTP/2 connection.
///
/// Why not the `etcd-client` crate: it generates its code at build time with
/// prost-build/tonic-build, whose proc-macros turn on features of
/// `itertools` and `either` on the host side. Those crates are also build
/// dependencies of RocksDB's bindings (through bindgen), so adding
/// `etcd-client` changes bindgen's fingerprint and recompiles RocksDB's C++
/// (about 30 minutes on two cores) in every target directory. The wire
/// protocol is the same as `etcd-client`'s: gRPC over HTTP/2, a
/// length-prefixed protobuf `PutRequest{key = 1, value = 2}`, success when
/// `grpc-status` is 0.
#[derive(Clone)]
pub struct EtcdGrpc {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    base: String,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// `etcdserverpb.PutRequest{key = 1, value = 2}`, encoded.
fn put_request(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 16);
    msg.push(0x0a); // field 1, length-delimited
    put_varint(&mut msg, key.len() as u64);
    msg.extend_from_slice(key);
    msg.push(0x12); // field 2, length-delimited
    put_varint(&mut msg, value.len() as u64);
    msg.extend_from_slice(value);
    msg
}

/// A gRPC frame around the message `msg`.
fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + msg.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(msg);
    frame
}

/// A gRPC frame carrying `etcdserverpb.PutRequest{key, value}`.
pub fn put_request_frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    grpc_frame(&put_request(key, value))
}

/// A gRPC frame carrying `etcdserverpb.TxnRequest{success = [RequestOp{
/// request_put = PutRequest{key, value}}, ...]}` (both field 2).
pub fn txn_put_frame(kvs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut txn = Vec::new();
    for (k, v) in kvs {
        let put = put_request(k, v);
        let mut op = Vec::with_capacity(put.len() + 8);
        op.push(0x12);
        put_varint(&mut op, put.len() as u64);
        op.extend_from_slice(&put);
        txn.push(0x12);
        put_varint(&mut txn, op.len() as u64);
        txn.extend_from_slice(&op);
    }
    grpc_frame(&txn)
}

impl EtcdGrpc {
    /// Connects to `http://127.0.0.1:PORT` (an etcd client URL).
    pub async fn connect(url: &str) -> Result<EtcdGrpc, BoxError> {
        let uri: hyper::Uri = url.parse()?;
        let addr = uri.authority().ok_or("etcd URL without host")?.as_str();
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "etcd connection closed");
            }
        });
        Ok(EtcdGrpc {
            send,
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// One `KV/Put`.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.unary("etcdserverpb.KV/Put", put_request_frame(key, value))
            .await
    }

    /// One `KV/Txn` that puts every pair.
    pub async fn txn_put(&mut self, kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        self.unary("etcdserverpb.KV/Txn", txn_put_frame(kvs)).await
    }

    /// One unary call of `method` with the gRPC frame `frame`.
    async fn unary(&mut self, method: &str, frame: Vec<u8>) -> Result<(), String> {
        let req = hyper::Request::post(format!("{}/{method}", self.base))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(frame)))
            .map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP {}", resp.status()));
        }
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("missing");
        if status == "0" {
            Ok(())
        } else {
            let msg = trailers
                .get("grpc-message")
                .or_else(|| parts.headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Err(format!("grpc-status {status}: {msg}"))
        }
    }
}

/// One client's connection.
enum Conn {
    Tmc { http: reqwest::Client, base: String },
    Etcd(EtcdGrpc),
}

impl Conn {
    async fn put(&mut self, client: usize, n: u64, value: &Bytes) -> Result<(), String> {
        match self {
            Conn::Tmc { http, base } => {
                let r = http
                    .put(format!("{base}/kv/root:bench/default/k{client}-{n}"))
                    .body(value.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                // Read the body so that the connection goes back to the pool.
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
                }
            }
            Conn::Etcd(c) => {
                c.put(format!("/bench/k{client}-{n}").as_bytes(), value)
                    .await
            }
        }
    }
}

/// Keys per client (values are overwritten in a cycle).
const KEYS_PER_CLIENT: u64 = 1000;

/// A 1 KB-ish value: a JSON string of `len` bytes in all.
pub fn value_of(len: usize) -> Bytes {
    let inner = len.saturating_sub(2);
    let mut v = Vec::with_capacity(len);
    v.push(b'"');
    v.extend((0..inner).map(|i| b'a' + (i % 26) as u8));
    v.push(b'"');
    Bytes::from(v)
}

struct ClientResult {
    hist: Histogram<u64>,
    writes: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `conns.len()` clients in a closed loop: `warmup` unmeasured, then
/// `duration` measured.
async fn run_level(
    conns: Vec<Conn>,
    value: Bytes,
    warmup: Duration,
    duration: Duration,
) -> Result<Level, BoxError> {
    let concurrency = conns.len();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = ClientResult {
                hist: Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
                writes: 0,
                errors: 0,
                first_error: None,
            };
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let res = conn.put(client, n % KEYS_PER_CLIENT, &value).await;
                n += 1;
                let measured = t0 >= measure_from;
                match res {
                    Ok(()) if measured => {
                        r.writes += 1;
                        let us = t0.elapsed().as_micros() as u64;
                        r.hist.saturating_record(us.max(1));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if measured {
                            r.errors += 1;
                        }
                        if r.first_error.is_none() {
                            r.first_error = Some(e);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            r
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    let (mut writes, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let r = t.await?;
        hist.add(&r.hist).expect("same bounds");
        writes += r.writes;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Level {
        concurrency,
        writes,
        errors,
        writes_per_s: writes as f64 / duration.as_secs_f64(),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        max_ms: hist.max() as f64 / 1000.0,
        first_error,
    })
}

/// Runs the benchmark; `progress` gets a line per step.
///
/// Both clusters run side by side for the whole run and the levels are
/// interleaved (tmc at C, etcd at C, tmc at the next C, ...), so that the
/// background load of a shared machine drifts the same way for both; the
/// cluster not under load is idle (heartbeats only).
pub async fn run(
    cfg: &RaftBenchConfig,
    progress: &(dyn Fn(String) + Sync),
) -> Result<RaftBenchReport, BoxError> {
    let value = value_of(cfg.value_bytes);
    let loadavg_start = super::procs::loadavg();
    // Find etcd before spending time on tmc.
    let etcd_bin = if cfg.no_etcd {
        None
    } else {
        Some(find_etcd(cfg.etcd_bin.as_deref())?)
    };

    progress("starting a 3-replica tmc shard".into());
    let mut shard = tmc_shard(&cfg.tmc_bin, cfg.dir.as_deref(), cfg.tick_ms)?;
    let ids = shard.ids();
    let leader = shard.wait_healthy(&ids, Duration::from_secs(30)).await?;
    let cluster = match &etcd_bin {
        Some(bin) => {
            progress(format!(
                "starting a 3-member etcd cluster ({})",
                bin.display()
            ));
            Some(EtcdCluster::start(bin, cfg.dir.as_deref()).await?)
        }
        None => None,
    };
    let etcd_leader = match &cluster {
        Some(c) => Some(c.leader_index().await?),
        None => None,
    };
    // One pool for all tmc clients: it holds one connection per concurrent
    // client.
    let http = super::procs::kv_client(Duration::from_secs(30))?;
    let (mut tmc, mut etcd) = (Vec::new(), Vec::new());
    for &c in &cfg.concurrency {
        progress(format!("tmc: {c} clients"));
        let conns = (0..c)
            .map(|i| Conn::Tmc {
                http: http.clone(),
                base: match cfg.endpoints {
                    Endpoints::Leader => shard.kv_url(leader),
                    Endpoints::All => shard.kv_url(ids[i % ids.len()]),
                },
            })
            .collect();
        let level = run_level(conns, value.clone(), cfg.warmup, cfg.duration).await?;
        tracing::info!(?level, "tmc");
        tmc.push(level);
        if shard.current_leader(&ids).await != Some(leader) {
            tracing::warn!("the tmc leader changed during the run");
        }
        if let (Some(cluster), Some(leader)) = (&cluster, etcd_leader) {
            progress(format!("etcd: {c} clients"));
            let mut conns = Vec::new();
            for i in 0..c {
                let member = match cfg.endpoints {
                    Endpoints::Leader => leader,
                    Endpoints::All => i % cluster.len(),
                };
                conns.push(Conn::Etcd(
                    EtcdGrpc::connect(&cluster.client_url(member)).await?,
                ));
            }
            let level = run_level(conns, value.clone(), cfg.warmup, cfg.duration).await?;
            tracing::info!(?level, "etcd");
            etcd.push(level);
        }
    }
    let etcd_version = cluster.as_ref().map(|c| c.version.clone());
    drop(http);
    drop(shard);
    drop(cluster);

    let ratio = tmc
        .iter()
        .zip(&etcd)
        .map(|(t, e)| Ratio {
            concurrency: t.concurrency,
            writes_per_s: t.writes_per_s / e.writes_per_s.max(f64::MIN_POSITIVE),
            p50: t.p50_ms / e.p50_ms.max(f64::MIN_POSITIVE),
            p99: t.p99_ms / e.p99_ms.max(f64::MIN_POSITIVE),
        })
        .collect();
    Ok(RaftBenchReport {
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        value_bytes: cfg.value_bytes,
        endpoints: cfg.endpoints,
        tmc_tick_ms: cfg.tick_ms,
        tmc,
        etcd_version,
        etcd,
        ratio,
        loadavg_start,
        loadavg_end: super::procs::loadavg(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_request_frame_is_length_prefixed_protobuf() {
        let f = put_request_frame(b"k", &[7u8; 200]);
        assert_eq!(f[0], 0);
        let len = u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize;
        assert_eq!(len, f.len() - 5);
        // key: tag 0x0a, len 1, "k"; value: tag 0x12, varint 200 = c8 01.
        assert_eq!(&f[5..11], &[0x0a, 1, b'k', 0x12, 0xc8, 0x01]);
        assert_eq!(value_of(1024).len(), 1024);
    }
}
