//! `tmc bench shards`: what the front proxy costs, in one run.
//!
//! Starts a three-replica shard (`tmc serve`, mutual TLS, fsync on) and
//! `tmc proxy` in front of it, all on loopback from this binary. Then, for
//! each of `--rounds` rounds, the workload of `tmc bench api` (creates,
//! gets, lists, watch delivery; [`super::api`]) straight to the shard's
//! leader and through the proxy, in alternating order (so that drift of a
//! shared machine does not favour one side); and workspace creation
//! (`--workspaces` Workspaces from `--clients` clients) both ways. The
//! report gives each run's figures, the ratios through/direct per round,
//! and the proxy's resident memory at the end.
//!
//! Then a second three-replica shard joins (`--shard two`, registered in
//! the root shard's registry, found there by the proxy), and workspace
//! creation through the proxy runs again `--rounds` times with both shards
//! taking workspaces (the scheduler spreads them; a workspace placed on
//! the other shard costs the root shard a call to it); the report gives
//! those rates and where the workspaces went.

use super::api::{self, ApiReport, Op};
use super::procs::{loadavg, BoxError};
use crate::testcluster::TestCluster;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `tmc bench shards`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Rounds (each: direct and through the proxy, in alternating order).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Concurrent clients (creates, gets, lists, watch writers, workspace
    /// creation).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// ConfigMaps to create per run.
    #[arg(long, default_value_t = 5000)]
    pub creates: usize,
    /// Random gets per run.
    #[arg(long, default_value_t = 5000)]
    pub gets: usize,
    /// Lists per run.
    #[arg(long, default_value_t = 500)]
    pub lists: usize,
    /// Concurrent watches per run.
    #[arg(long, default_value_t = 1000)]
    pub watches: usize,
    /// Workspaces to create per run.
    #[arg(long, default_value_t = 500)]
    pub workspaces: usize,
    /// Parent of the data directories (default: the system's temporary
    /// directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print only the JSON report.
    #[arg(long)]
    pub json: bool,
}

/// One side of a round.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `tmc bench api`'s figures.
    pub api: ApiReport,
    /// Workspace creation.
    pub workspaces: Op,
}

/// One round: both sides and their ratios.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Straight to the leader's API.
    pub direct: Side,
    /// Through the proxy.
    pub proxy: Side,
    /// Which went first.
    pub first: &'static str,
    /// proxy/direct creates per second.
    pub creates_per_s_ratio: f64,
    /// proxy − direct, milliseconds: create p50 and p99.
    pub create_added_p50_ms: f64,
    /// See above.
    pub create_added_p99_ms: f64,
    /// proxy − direct, milliseconds: get p50 and p99.
    pub get_added_p50_ms: f64,
    /// See above.
    pub get_added_p99_ms: f64,
    /// proxy/direct gets per second.
    pub gets_per_s_ratio: f64,
    /// proxy − direct, milliseconds: list p50.
    pub list_added_p50_ms: f64,
    /// proxy − direct, milliseconds: watch delivery p50 and p99.
    pub watch_added_p50_ms: f64,
    /// See above.
    pub watch_added_p99_ms: f64,
    /// proxy/direct workspaces created per second.
    pub workspaces_per_s_ratio: f64,
}

/// What `tmc bench shards` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Shards behind the proxy at the end.
    pub shards: usize,
    /// The rounds.
    pub rounds: Vec<Round>,
    /// Workspace creation through the proxy with two shards, per round.
    pub two_shards_workspaces: Vec<Op>,
    /// Of the two-shard rounds' workspaces, how many each shard took.
    pub two_shards_spread: std::collections::BTreeMap<String, usize>,
    /// The proxy's resident memory at the end (KiB, from /proc).
    pub proxy_rss_kib: Option<u64>,
    /// Load averages at the start and the end.
    pub loadavg_start: String,
    /// See `loadavg_start`.
    pub loadavg_end: String,
}

/// Creates `n` Workspaces `{prefix}-{i}` in root through `kubeconfig`.
async fn create_workspaces(
    kubeconfig: &std::path::Path,
    prefix: &str,
    n: usize,
    clients: usize,
) -> Result<Op, BoxError> {
    let client = crate::testcluster::members::kube_client(kubeconfig).await?;
    let ar = ApiResource {
        group: "tenancy.kcp.io".into(),
        version: "v1alpha1".into(),
        api_version: "tenancy.kcp.io/v1alpha1".into(),
        kind: "Workspace".into(),
        plural: "workspaces".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let prefix = prefix.to_string();
    api::fan_out(&api, clients, n, move |api, i| {
        let obj = DynamicObject::new(&format!("{prefix}-{i}"), &ar);
        async move { api.create(&PostParams::default(), &obj).await }
    })
    .await
}

/// Runs the benchmark (blocking: it starts processes and its own runtime).
pub fn run(args: &Args, progress: &(dyn Fn(String) + Sync)) -> Result<Report, BoxError> {
    let loadavg_start = loadavg();
    progress("starting a three-replica shard".into());
    let cluster = TestCluster::builder()
        .bin(&std::env::current_exe()?)
        .dir_in(args.dir.as_deref(), "tmc-bench-shards")
        .die_with_parent()
        .start()?;
    let rt = tokio::runtime::Runtime::new()?;
    let leader = rt.block_on(cluster.wait_leader(&cluster.ids(), Duration::from_secs(30)));
    progress(format!("starting the proxy in front of leader {leader}"));
    let proxy = cluster.start_proxy(leader, &[])?;
    let direct_kc = cluster.kubeconfig(leader, "root");
    let proxy_kc = cluster.kubeconfig_at(&proxy.server(), "root");
    let api_args = |kc: &PathBuf| api::Args {
        server: None,
        kubeconfig: Some(kc.clone()),
        context: None,
        token: None,
        insecure_skip_tls_verify: false,
        clients: args.clients,
        creates: args.creates,
        gets: args.gets,
        lists: args.lists,
        list_limit: 100,
        watches: args.watches,
        watch_rounds: 2,
        watch_rate: 100.0,
        value_bytes: 1024,
        keep: false,
        json: true,
    };
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let order: [(&'static str, &PathBuf); 2] = if r % 2 == 0 {
            [("direct", &direct_kc), ("proxy", &proxy_kc)]
        } else {
            [("proxy", &proxy_kc), ("direct", &direct_kc)]
        };
        let mut sides = Vec::new();
        for (name, kc) in order {
            progress(format!("round {}: {name}: API workload", r + 1));
            let report = rt.block_on(api::run(&api_args(kc), &|m| {
                progress(format!("round {}: {name}: {m}", r + 1))
            }))?;
            progress(format!("round {}: {name}: workspaces", r + 1));
            let ws = rt.block_on(create_workspaces(
                kc,
                &format!("bench-r{r}-{name}"),
                args.workspaces,
                args.clients,
            ))?;
            sides.push((
                name,
                Side {
                    api: report,
                    workspaces: ws,
                },
            ));
        }
        let first = sides[0].0;
        let (mut direct, mut through) = (None, None);
        for (name, side) in sides {
            if name == "direct" {
                direct = Some(side);
            } else {
                through = Some(side);
            }
        }
        let (d, p) = (direct.expect("ran"), through.expect("ran"));
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        rounds.push(Round {
            first,
            creates_per_s_ratio: ratio(p.api.create.per_s, d.api.create.per_s),
            create_added_p50_ms: p.api.create.p50_ms - d.api.create.p50_ms,
            create_added_p99_ms: p.api.create.p99_ms - d.api.create.p99_ms,
            get_added_p50_ms: p.api.get.p50_ms - d.api.get.p50_ms,
            get_added_p99_ms: p.api.get.p99_ms - d.api.get.p99_ms,
            gets_per_s_ratio: ratio(p.api.get.per_s, d.api.get.per_s),
            list_added_p50_ms: p.api.list.p50_ms - d.api.list.p50_ms,
            watch_added_p50_ms: p.api.watch.p50_ms - d.api.watch.p50_ms,
            watch_added_p99_ms: p.api.watch.p99_ms - d.api.watch.p99_ms,
            workspaces_per_s_ratio: ratio(p.workspaces.per_s, d.workspaces.per_s),
            direct: d,
            proxy: p,
        });
    }
    // A second shard joins; workspace creation through the proxy again.
    progress("starting a second three-replica shard".into());
    let two = TestCluster::builder()
        .bin(&std::env::current_exe()?)
        .dir_in(args.dir.as_deref(), "tmc-bench-shards-two")
        .die_with_parent()
        .shard("two")
        .share_tls_with(&cluster.tls_dir())
        .args(&["--root-shard", &cluster.servers()])
        .start()?;
    let admin = crate::testcluster::ApiClient::new(proxy.port, &cluster.tls_dir().join("ca.crt"))?
        .bearer(&cluster.token());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = rt.block_on(admin.try_call(
            "GET",
            "/clusters/root/apis/core.kcp.io/v1alpha1/shards",
            serde_json::Value::Null,
        ))?;
        if code == 200 && v["items"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err("the second shard never registered".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut two_shards_workspaces = Vec::new();
    for r in 0..args.rounds {
        progress(format!("two shards, round {}: workspaces", r + 1));
        two_shards_workspaces.push(rt.block_on(create_workspaces(
            &proxy_kc,
            &format!("bench2-r{r}"),
            args.workspaces,
            args.clients,
        ))?);
    }
    let (_, list) = rt.block_on(admin.try_call(
        "GET",
        "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces",
        serde_json::Value::Null,
    ))?;
    let mut two_shards_spread = std::collections::BTreeMap::new();
    for w in list["items"].as_array().into_iter().flatten() {
        let name = w["metadata"]["name"].as_str().unwrap_or("");
        if name.starts_with("bench2-") {
            let shard = w["spec"]["shard"].as_str().unwrap_or("").to_string();
            *two_shards_spread.entry(shard).or_insert(0) += 1;
        }
    }
    drop(two);
    Ok(Report {
        shards: 2,
        two_shards_workspaces,
        two_shards_spread,
        rounds,
        proxy_rss_kib: proxy
            .pid()
            .and_then(crate::util::rss_bytes_of)
            .map(|b| b / 1024),
        loadavg_start,
        loadavg_end: loadavg(),
    })
}
