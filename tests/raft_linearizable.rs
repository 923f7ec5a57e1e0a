//! Linearizability of a three-replica shard under random faults: real
//! `tmc serve` processes, every peer link through the fault-injecting proxy
//! (`tests/common/faultnet.rs`), concurrent clients doing random gets, puts
//! and compare-and-sets (a put conditioned on the mod revision the client
//! last read; values are unique, so that is a CAS on the value) over a few
//! keys, and a nemesis that SIGKILLs and restarts nodes (one, the leader, or
//! two at once), pauses the leader (SIGSTOP/SIGCONT), partitions the
//! network, isolates the leader, drops, delays and cuts frames, and heals.
//! The recorded history goes through the checker in
//! `tmc::raft::linearize`.
//!
//! Seeds: run `r` uses seed `TMC_LIN_SEED + r` (default base 1000), printed
//! at the start of the run; `TMC_LIN_RUNS` (default 10) sets the number of
//! runs, `TMC_LIN_SECS` (default 8) the load phase of each. To replay one
//! run: `TMC_LIN_SEED=<seed> TMC_LIN_RUNS=1`. The nemesis and the clients'
//! choices follow the seed; the timing of real processes does not, so a
//! seed replays the same fault schedule, not the same interleaving.

mod common {
    pub mod faultnet;
    pub mod replicas;
}

use common::faultnet::LinkFaults;
use common::replicas::{Shard, ShardOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tmc::raft::linearize::{self, Event, Op};

const KEYS: usize = 3;
const CLIENTS: u64 = 5;
const ALL: [u64; 3] = [1, 2, 3];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(k: usize) -> String {
    format!("root:lin/default/k{k}")
}

/// What a client saw of one operation.
enum Seen {
    /// Completed with this result (and, for a read, the mod revision).
    Done(Op, Option<u64>),
    /// Refused before it could apply (503, 4xx) or never sent: not recorded.
    Refused,
    /// Unknown: a timeout, a lost connection or a 5xx after sending.
    Unknown,
}

struct History {
    t0: Instant,
    events: Mutex<Vec<Event>>,
}

impl History {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

async fn do_put(http: &reqwest::Client, addr: &str, k: &str, v: &str) -> Seen {
    let r = http
        .put(format!("http://{addr}/kv/{k}"))
        .body(v.to_string())
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    match r {
        Ok(resp) => match resp.status().as_u16() {
            200 => Seen::Done(Op::Put(Some(v.to_string())), None),
            // 503: not the leader or no leader; the write was never
            // proposed (the checker holds us to that: if it applied,
            // a read of its value is a violation).
            503 | 400..=499 => Seen::Refused,
            // 502 (forward failed), 504 (timeout, leadership lost), 500.
            _ => Seen::Unknown,
        },
        Err(e) if e.is_connect() => Seen::Refused,
        Err(_) => Seen::Unknown,
    }
}

/// `TMC_LIN_READS=local` makes the clients read without ReadIndex: the
/// checker must then find stale reads (a check of the checker).
fn read_consistency() -> String {
    std::env::var("TMC_LIN_READS").unwrap_or_else(|_| "linearizable".into())
}

async fn do_get(http: &reqwest::Client, addr: &str, k: &str) -> Seen {
    let r = http
        .get(format!(
            "http://{addr}/kv/{k}?consistency={}",
            read_consistency()
        ))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    match r {
        Ok(resp) => match resp.status().as_u16() {
            200 => match resp.json::<serde_json::Value>().await {
                Ok(v) => match v["record"]["value"].as_str() {
                    Some(s) => Seen::Done(
                        Op::Get(Some(s.to_string())),
                        v["record"]["mod_revision"].as_u64(),
                    ),
                    None => Seen::Unknown,
                },
                Err(_) => Seen::Unknown,
            },
            404 => Seen::Done(Op::Get(None), None),
            _ => Seen::Unknown,
        },
        Err(_) => Seen::Unknown,
    }
}

/// A put of `new` at `k` if its mod revision is still `rev` (which the
/// client read together with `old`), through `POST /txn`.
async fn do_cas(
    http: &reqwest::Client,
    addr: &str,
    k: &str,
    old: &str,
    rev: u64,
    new: &str,
) -> Seen {
    use tmc::store::{EncodingTag, Expectation, GroupResource, Key, ObjectKey, Txn, TxnOp};
    let (ws, rest) = k.split_once('/').unwrap();
    let (ns, name) = rest.split_once('/').unwrap();
    let key = Key::from(
        ObjectKey::namespaced(
            GroupResource::new("", "configmaps").unwrap(),
            tmc::store::Workspace::parse(ws).unwrap(),
            ns,
            name,
        )
        .unwrap(),
    );
    let txn = Txn::new(vec![TxnOp::Put {
        key,
        encoding: EncodingTag::Raw,
        value: new.as_bytes().to_vec(),
        expect: Expectation::ModRevision(rev),
    }]);
    let cas = |ok| Op::Cas {
        expect: Some(old.to_string()),
        new: Some(new.to_string()),
        ok,
    };
    let r = http
        .post(format!("http://{addr}/txn"))
        .json(&txn)
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    match r {
        Ok(resp) => match resp.status().as_u16() {
            200 => Seen::Done(cas(true), None),
            // The precondition failed where the transaction was applied.
            409 => Seen::Done(cas(false), None),
            503 | 400..=499 => Seen::Refused,
            _ => Seen::Unknown,
        },
        Err(e) if e.is_connect() => Seen::Refused,
        Err(_) => Seen::Unknown,
    }
}

/// One client: random gets, puts and compare-and-sets (unique values) on random keys through
/// random replicas until `until`.
async fn client(
    id: u64,
    seed: u64,
    addrs: Vec<String>,
    hist: Arc<History>,
    until: Instant,
) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 40));
    let http = reqwest::Client::new();
    let (mut n, mut unknown) = (0u64, 0u64);
    // What this client last read of each key: value and mod revision.
    let mut last: HashMap<String, (String, u64)> = HashMap::new();
    while Instant::now() < until {
        let k = key(rng.random_range(0..KEYS));
        let addr = &addrs[rng.random_range(0..addrs.len())];
        let value = format!("c{id}-{n}");
        let dice = rng.random_range(0..10);
        let call = hist.now();
        let (seen, pending) = match (dice, last.get(&k)) {
            (0..=1, Some((old, rev))) => (
                do_cas(&http, addr, &k, old, *rev, &value).await,
                Some(Op::Cas {
                    expect: Some(old.clone()),
                    new: Some(value.clone()),
                    ok: true,
                }),
            ),
            (0..=5, _) => (
                do_put(&http, addr, &k, &value).await,
                Some(Op::Put(Some(value.clone()))),
            ),
            _ => (do_get(&http, addr, &k).await, None),
        };
        let ret = hist.now();
        n += 1;
        let (op, ret) = match seen {
            Seen::Done(op, rev) => {
                if let (Op::Get(Some(v)), Some(rev)) = (&op, rev) {
                    last.insert(k.clone(), (v.clone(), rev));
                }
                (op, Some(ret))
            }
            Seen::Refused => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Seen::Unknown => {
                unknown += 1;
                // A read with an unknown outcome says nothing; a write may
                // have applied.
                match pending {
                    None => continue,
                    Some(op) => (op, None),
                }
            }
        };
        hist.events.lock().unwrap().push(Event {
            client: id,
            key: k,
            op,
            call,
            ret,
        });
    }
    (n, unknown)
}

/// Cuts every link between nodes of different groups (nodes in no group
/// are isolated).
fn partition(shard: &Shard, groups: &[&[u64]]) {
    let group_of = |n: u64| groups.iter().position(|g| g.contains(&n));
    shard.net().faults(|(a, b), f| {
        if group_of(a).is_none() || group_of(a) != group_of(b) {
            f.cut = true;
        }
    });
}

/// Cuts every link to and from `id`.
fn isolate(shard: &Shard, id: u64) {
    shard.net().faults(|(a, b), f| {
        if a == id || b == id {
            f.cut = true;
        }
    });
}

/// Removes every fault.
fn heal(shard: &Shard) {
    shard.net().faults(|_, f| *f = LinkFaults::default());
}

/// The nemesis: a fault, held for a while, then healed; repeated.
async fn nemesis(shard: &mut Shard, rng: &mut StdRng, until: Instant) -> Vec<String> {
    let mut log = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
        let hold = Duration::from_millis(rng.random_range(500..2000));
        let a = ALL[rng.random_range(0..3)];
        let others: Vec<u64> = ALL.iter().copied().filter(|&x| x != a).collect();
        match rng.random_range(0..9) {
            7 => {
                let l = shard.some_leader(&ALL).await.unwrap_or(a);
                log.push(format!("pause the leader {l} for {hold:?}"));
                shard.pause(l);
                tokio::time::sleep(hold).await;
                shard.resume(l);
                continue;
            }
            8 => {
                log.push(format!("kill -9 nodes {others:?}, restart after {hold:?}"));
                for &o in &others {
                    shard.kill(o);
                }
                tokio::time::sleep(hold).await;
                for &o in &others {
                    shard.spawn(o).unwrap();
                }
                continue;
            }
            0 => {
                log.push(format!("kill -9 node {a}, restart after {hold:?}"));
                shard.kill(a);
                tokio::time::sleep(hold).await;
                shard.spawn(a).unwrap();
                continue;
            }
            1 => {
                log.push(format!("partition {{{a}}} | {others:?}"));
                partition(shard, &[&[a], &others]);
            }
            2 => {
                let l = shard.some_leader(&ALL).await.unwrap_or(a);
                log.push(format!("isolate the leader {l}"));
                isolate(shard, l);
            }
            3 => {
                let l = shard.some_leader(&ALL).await.unwrap_or(a);
                log.push(format!("kill -9 the leader {l}, restart after {hold:?}"));
                shard.kill(l);
                tokio::time::sleep(hold).await;
                shard.spawn(l).unwrap();
                continue;
            }
            4 => {
                let p = rng.random_range(0.1..0.5);
                log.push(format!("drop {:.0}% of frames on every link", p * 100.0));
                shard.net().faults(|_, f| f.drop = p);
            }
            5 => {
                let d = Duration::from_millis(rng.random_range(10..150));
                log.push(format!("delay every frame by {d:?}"));
                shard.net().faults(|_, f| f.delay = d);
            }
            _ => {
                let b = others[rng.random_range(0..2)];
                let c = if b == others[0] { others[1] } else { others[0] };
                log.push(format!("cut {a} -> {b} and {b} -> {c} (one way each)"));
                shard.net().faults(|link, f| {
                    if link == (a, b) || link == (b, c) {
                        f.cut = true;
                    }
                });
            }
        }
        tokio::time::sleep(hold).await;
        heal(shard);
    }
    heal(shard);
    log
}

async fn one_run(seed: u64, secs: u64) {
    let started = Instant::now();
    let mut shard = Shard::start(ShardOptions {
        seed,
        tick_ms: 50,
        ..Default::default()
    })
    .await;
    shard.wait_leader(&ALL, Duration::from_secs(20)).await;
    let hist = Arc::new(History {
        t0: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    let until = Instant::now() + Duration::from_secs(secs);
    let addrs: Vec<String> = ALL.iter().map(|&id| shard.kv_addr(id)).collect();
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|c| tokio::spawn(client(c, seed, addrs.clone(), hist.clone(), until)))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let faults = nemesis(&mut shard, &mut rng, until).await;
    for id in ALL {
        if !shard.is_running(id) {
            shard.spawn(id).unwrap();
        }
    }
    let (mut ops, mut unknown) = (0, 0);
    for c in clients {
        let (n, u) = c.await.unwrap();
        ops += n;
        unknown += u;
    }
    // Healed: the shard must take writes again, and final linearizable
    // reads of every key join the history.
    shard
        .put_acked(&ALL, "root:lin/default/after", "1", Duration::from_secs(30))
        .await;
    let http = reqwest::Client::new();
    for k in 0..KEYS {
        for id in ALL {
            let call = hist.now();
            if let Seen::Done(op, _) = do_get(&http, &shard.kv_addr(id), &key(k)).await {
                let ret = hist.now();
                hist.events.lock().unwrap().push(Event {
                    client: 0,
                    key: key(k),
                    op,
                    call,
                    ret: Some(ret),
                });
            }
        }
    }
    let events = hist.events.lock().unwrap().clone();
    let completed_puts = events
        .iter()
        .filter(|e| matches!(e.op, Op::Put(_)) && e.ret.is_some())
        .count();
    let cas_ok = events
        .iter()
        .filter(|e| matches!(e.op, Op::Cas { ok: true, .. }) && e.ret.is_some())
        .count();
    let cas_failed = events
        .iter()
        .filter(|e| matches!(e.op, Op::Cas { ok: false, .. }))
        .count();
    let reads = events.iter().filter(|e| matches!(e.op, Op::Get(_))).count();
    let check_started = Instant::now();
    let report = linearize::check(&events);
    eprintln!(
        "seed {seed}: {ops} ops sent, {} in the history ({completed_puts} acknowledged puts, \
         {cas_ok}+{cas_failed} CAS succeeded+failed, {reads} reads, {unknown} unknown outcomes), \
         {} faults, checked in {:?}, run took {:?}",
        events.len(),
        faults.len(),
        check_started.elapsed(),
        started.elapsed()
    );
    eprintln!("  faults: {}", faults.join("; "));
    if !report.ok() {
        eprintln!("{}", report.explain());
        panic!(
            "seed {seed}: history not linearizable on keys {:?}",
            report.failures()
        );
    }
    assert!(
        completed_puts > 10 && reads > 10,
        "seed {seed}: too little progress to mean anything ({completed_puts} puts, {reads} reads)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_never_break_linearizability() {
    let base = env_u64("TMC_LIN_SEED", 1000);
    let runs = env_u64("TMC_LIN_RUNS", 10);
    let secs = env_u64("TMC_LIN_SECS", 8);
    for r in 0..runs {
        let seed = base + r;
        eprintln!("run {}/{runs}: seed {seed}", r + 1);
        one_run(seed, secs).await;
    }
}

/// A leader cut off by a partition (its process still running) must not
/// acknowledge a write nor answer a linearizable read with the value the
/// majority has since overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_accepts_no_write_and_serves_no_stale_read() {
    let shard = Shard::start(ShardOptions {
        seed: 7,
        ..Default::default()
    })
    .await;
    let wait = Duration::from_secs(20);
    let old = shard.wait_leader(&ALL, wait).await;
    let k = "root:lin/default/p";
    shard.put_acked(&[old], k, "before", wait).await;
    for id in ALL {
        assert_eq!(shard.read_lin(id, k, wait).await.as_deref(), Some("before"));
    }
    let rest: Vec<u64> = ALL.iter().copied().filter(|&x| x != old).collect();
    isolate(&shard, old);
    // The majority elects a new leader and overwrites the key.
    let new = shard.wait_leader(&rest, wait).await;
    assert_ne!(new, old);
    shard.put_acked(&rest, k, "after", wait).await;
    // For longer than an election timeout the old leader refuses (or times
    // out) every write and never serves the stale value.
    let until = Instant::now() + Duration::from_secs(4);
    let mut ambiguous = false;
    let mut attempts = 0;
    while Instant::now() < until {
        let w = shard
            .req(
                "PUT",
                old,
                &format!("/kv/{k}"),
                &[],
                Some("minority".into()),
            )
            .await;
        match &w {
            Some((200, _)) => panic!("the isolated old leader acknowledged a write: {w:?}"),
            Some((503, _)) => {}
            Some((502 | 504, _)) | None => ambiguous = true,
            other => panic!("unexpected answer: {other:?}"),
        }
        let r = shard.get(old, k, "linearizable").await;
        assert!(
            !matches!(r, Some((200, _))),
            "the isolated old leader served a linearizable read: {r:?}"
        );
        attempts += 1;
    }
    assert!(attempts >= 1);
    // Its local read is stale: the partition is real.
    let (code, v) = shard.get(old, k, "local").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["record"]["value"], "before");
    assert!(shard.net().stats(old, new).dropped > 0);
    // Healed, it follows the new leader and reads the new value; a write
    // with an unknown outcome from the minority can never have committed
    // (its term is over), so "after" stays.
    heal(&shard);
    shard.wait_leader(&ALL, wait).await;
    let seen = shard.read_lin(old, k, wait).await;
    assert_eq!(
        seen.as_deref(),
        Some("after"),
        "ambiguous writes: {ambiguous}"
    );
}
