//! `tmc bench api`: a kube-rs load generator for any Kubernetes API server
//! (kube-apiserver, tmc): ConfigMap creates per second, get and list
//! latency, and watch delivery latency over many concurrent watches.
//!
//! In a namespace of its own (`tmc-bench-XXXXXX`, deleted at the end):
//! 1. creates: `--clients` tasks create `--creates` ConfigMaps (`--value-bytes`
//!    of data each) as fast as the server takes them;
//! 2. gets: the same tasks get `--gets` random ones of them;
//! 3. lists: the same tasks list the namespace's ConfigMaps, `--list-limit`
//!    per request (the first page), `--lists` times;
//! 4. watches: `--watches` ConfigMaps `w-{j}`, each labelled
//!    `tmc-bench-watch=w{j}`, and one watch per object on that label
//!    selector, every watch on its own connection (kube-rs speaks HTTP/1.1),
//!    started at the object's creation revision. Once every watch has been
//!    answered (response headers), `--clients` writers patch every object
//!    `--watch-rounds` times at `--watch-rate` patches per second in all.
//!    Delivery latency of an event = its arrival at the watch minus the
//!    arrival of the patch's response at the writer (both on this
//!    machine's monotonic clock; an event that arrives before the response
//!    counts as 0 and is counted in `watch_events_before_response`).
//!
//! Nothing is retried (kube-rs's default retry of 429/503/504 is turned
//! off): failures are counted.

use super::procs::BoxError;
use futures::StreamExt;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A load generator for any Kubernetes API: creates, gets, lists and
/// watch delivery, through kube-rs.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The API server's URL (overrides the kubeconfig's server).
    #[arg(long)]
    pub server: Option<String>,
    /// Kubeconfig to take the server, credentials and CA from (default:
    /// $KUBECONFIG or ~/.kube/config when --server is not given).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Bearer token (added to whatever the kubeconfig says).
    #[arg(long, env = "TMC_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Do not verify the server's certificate.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Concurrent clients for creates, gets, lists and watch writers.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// ConfigMaps to create.
    #[arg(long, default_value_t = 5000)]
    pub creates: usize,
    /// Random gets.
    #[arg(long, default_value_t = 5000)]
    pub gets: usize,
    /// Lists.
    #[arg(long, default_value_t = 500)]
    pub lists: usize,
    /// Items per list request.
    #[arg(long, default_value_t = 100)]
    pub list_limit: u32,
    /// Concurrent watches (one object and one label selector each).
    #[arg(long, default_value_t = 1000)]
    pub watches: usize,
    /// Patches per watched object.
    #[arg(long, default_value_t = 2)]
    pub watch_rounds: usize,
    /// Patches per second, all writers together (a rate the server keeps
    /// up with, so that delivery latency is not queueing behind writes).
    #[arg(long, default_value_t = 100.0)]
    pub watch_rate: f64,
    /// Bytes of data per created ConfigMap.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Leave the namespace and its objects in place.
    #[arg(long)]
    pub keep: bool,
    /// Print only the JSON report (no progress).
    #[arg(long)]
    pub json: bool,
}

/// Latency figures of one operation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Op {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second of wall time.
    pub per_s: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Watch delivery figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchFigures {
    /// Concurrent watches.
    pub watches: usize,
    /// Seconds until every watch had its response headers.
    pub established_s: f64,
    /// Watches that failed to start or ended early.
    pub watch_errors: u64,
    /// Patches acknowledged (each should reach exactly one watch).
    pub patches: u64,
    /// Patches that failed.
    pub patch_errors: u64,
    /// Events matched to an acknowledged patch.
    pub events: u64,
    /// Acknowledged patches whose event never arrived.
    pub events_missing: u64,
    /// Events that arrived before their patch's response (latency 0).
    pub events_before_response: u64,
    /// Median delivery latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// What `tmc bench api` prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiReport {
    /// The server's URL.
    pub server: String,
    /// Its `/version` gitVersion.
    pub server_version: String,
    /// The namespace used.
    pub namespace: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Bytes of data per ConfigMap.
    pub value_bytes: usize,
    /// Creates.
    pub create: Op,
    /// Gets.
    pub get: Op,
    /// Items per list.
    pub list_limit: u32,
    /// Lists.
    pub list: Op,
    /// Watch delivery.
    pub watch: WatchFigures,
    /// "deleted", "kept" or the error of the clean-up.
    pub cleanup: String,
    /// Load averages (1, 5, 15 min) when the run started and ended.
    pub loadavg_start: String,
    /// See `loadavg_start`.
    pub loadavg_end: String,
}

/// A kube client from the arguments: kubeconfig (explicit, else inferred
/// unless only --server is given), --server, --token, no retries; and the
/// server's URL.
pub async fn client(args: &Args) -> Result<(kube::Client, String), BoxError> {
    let mut config = match (&args.kubeconfig, &args.server) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("loading {}: {e}", path.display()))?
        }
        (None, Some(url)) => kube::Config::new(
            url.parse()
                .map_err(|e| format!("bad --server {url:?}: {e}"))?,
        ),
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| format!("no --server or --kubeconfig, and no kubeconfig to infer: {e}"))?,
    };
    if let Some(url) = &args.server {
        config.cluster_url = url
            .parse()
            .map_err(|e| format!("bad --server {url:?}: {e}"))?;
    }
    if let Some(token) = &args.token {
        config.headers.push((
            hyper::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        ));
    }
    config.accept_invalid_certs |= args.insecure_skip_tls_verify;
    config.default_retry = false;
    let url = config.cluster_url.to_string();
    Ok((kube::Client::try_from(config)?, url))
}

/// An error with its causes: kube-rs says "client error (Connect)" and
/// keeps the reason (refused, certificate, ...) in the sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram")
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record<T, E: std::fmt::Display>(&mut self, t0: Instant, r: &Result<T, E>) {
        match r {
            Ok(_) => {
                self.ok += 1;
                let us = t0.elapsed().as_micros() as u64;
                self.hist
                    .get_or_insert_with(hist)
                    .saturating_record(us.max(1));
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }

    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.errors += o.errors;
        if let Some(h) = o.hist {
            self.hist
                .get_or_insert_with(hist)
                .add(&h)
                .expect("same bounds");
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn op(self, wall: Duration) -> Op {
        let h = self.hist.unwrap_or_else(hist);
        let ms = |v: u64| v as f64 / 1000.0;
        Op {
            ok: self.ok,
            errors: self.errors,
            per_s: self.ok as f64 / wall.as_secs_f64().max(1e-9),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            first_error: self.first_error,
        }
    }
}

/// Runs `clients` tasks; task k gets the items i ≡ k (mod clients) of
/// `0..n` and calls `f(api, i)` on each, timing it.
pub(super) async fn fan_out<K, F, Fut, T>(
    api: &Api<K>,
    clients: usize,
    n: usize,
    f: F,
) -> Result<Op, BoxError>
where
    K: Clone + Send + Sync + 'static,
    F: Fn(Api<K>, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<T, kube::Error>> + Send,
    T: Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients.max(1) {
        let (api, f) = (api.clone(), f.clone());
        let step = clients.max(1);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            for i in (k..n).step_by(step) {
                let t0 = Instant::now();
                let r = f(api.clone(), i).await;
                t.record(t0, &r);
            }
            t
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await?);
    }
    Ok(all.op(start.elapsed()))
}

fn config_map(name: &str, labels: BTreeMap<String, String>, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some(labels);
    cm.data = Some(BTreeMap::from([("v".to_string(), value.to_string())]));
    cm
}

/// Runs the benchmark against the server `args` name; `progress` gets a line
/// per phase. The namespace is deleted at the end, whether the phases
/// succeeded or not (unless `--keep`); Ctrl-C stops the phases and still
/// cleans up.
pub async fn run(args: &Args, progress: &(dyn Fn(String) + Sync)) -> Result<ApiReport, BoxError> {
    let (client, url) = client(args).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| format!("GET /version: {}", error_chain(&e)))?;
    let suffix: u32 = rand::rng().random_range(0..0xff_ffff);
    let ns = format!("tmc-bench-{suffix:06x}");
    let mut report = ApiReport {
        server: url,
        server_version: version.git_version.clone(),
        namespace: ns.clone(),
        clients: args.clients,
        value_bytes: args.value_bytes,
        list_limit: args.list_limit,
        loadavg_start: super::procs::loadavg(),
        ..Default::default()
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut nso = Namespace::default();
    nso.metadata.name = Some(ns.clone());
    nso.metadata.labels = Some(BTreeMap::from([(
        "tmc-bench".to_string(),
        "true".to_string(),
    )]));
    namespaces
        .create(&PostParams::default(), &nso)
        .await
        .map_err(|e| format!("creating namespace {ns}: {e}"))?;
    progress(format!("namespace {ns} created"));

    let phases = tokio::select! {
        r = phases(&client, &ns, args, &mut report, progress) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };

    report.cleanup = if args.keep {
        "kept".into()
    } else {
        progress(format!("deleting namespace {ns}"));
        cleanup(&client, &ns).await
    };
    report.loadavg_end = super::procs::loadavg();
    phases.map(|()| report)
}

async fn cleanup(client: &kube::Client, ns: &str) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Servers without a namespace controller (or slow ones) still lose the
    // objects at once.
    let a = cms
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let b = namespaces.delete(ns, &DeleteParams::default()).await;
    match (a, b) {
        (Ok(_), Ok(_)) => "deleted".into(),
        (Err(e), _) => format!("deleting the ConfigMaps of {ns}: {e}"),
        (_, Err(e)) => format!("deleting namespace {ns}: {e}"),
    }
}

async fn phases(
    client: &kube::Client,
    ns: &str,
    args: &Args,
    report: &mut ApiReport,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), BoxError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let value: Arc<str> = "x".repeat(args.value_bytes).into();

    progress(format!(
        "creating {} ConfigMaps with {} clients",
        args.creates, args.clients
    ));
    let v = value.clone();
    report.create = fan_out(&api, args.clients, args.creates, move |api, i| {
        let v = v.clone();
        async move {
            let labels = BTreeMap::from([
                ("tmc-bench".to_string(), "load".to_string()),
                ("shard".to_string(), (i % 10).to_string()),
            ]);
            api.create(
                &PostParams::default(),
                &config_map(&format!("cm-{i}"), labels, &v),
            )
            .await
        }
    })
    .await?;
    if report.create.ok == 0 {
        return Err(format!(
            "no ConfigMap could be created: {}",
            report.create.first_error.as_deref().unwrap_or("?")
        )
        .into());
    }

    progress(format!("{} random gets", args.gets));
    let created = args.creates;
    report.get = fan_out(&api, args.clients, args.gets, move |api, _| async move {
        let i = rand::rng().random_range(0..created);
        api.get(&format!("cm-{i}")).await
    })
    .await?;

    progress(format!("{} lists of {} items", args.lists, args.list_limit));
    let limit = args.list_limit;
    report.list = fan_out(&api, args.clients, args.lists, move |api, _| async move {
        api.list(&ListParams::default().limit(limit)).await
    })
    .await?;

    report.watch = watches(client, &api, args, &value, progress).await?;
    Ok(())
}

async fn watches(
    client: &kube::Client,
    api: &Api<ConfigMap>,
    args: &Args,
    value: &Arc<str>,
    progress: &(dyn Fn(String) + Sync),
) -> Result<WatchFigures, BoxError> {
    let w = args.watches;
    let mut fig = WatchFigures {
        watches: w,
        ..Default::default()
    };
    if w == 0 {
        return Ok(fig);
    }
    progress(format!("creating {w} watched ConfigMaps"));
    let revisions: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let r2 = revisions.clone();
    let v = value.clone();
    let made = fan_out(api, args.clients, w, move |api, j| {
        let (v, revisions) = (v.clone(), r2.clone());
        async move {
            let labels = BTreeMap::from([("tmc-bench-watch".to_string(), format!("w{j}"))]);
            let cm = api
                .create(
                    &PostParams::default(),
                    &config_map(&format!("w-{j}"), labels, &v),
                )
                .await?;
            let rv = cm.metadata.resource_version.unwrap_or_default();
            revisions.lock().expect("lock").insert(j, rv);
            Ok::<_, kube::Error>(())
        }
    })
    .await?;
    if made.errors > 0 {
        return Err(format!(
            "creating the watched ConfigMaps failed: {}",
            made.first_error.unwrap_or_default()
        )
        .into());
    }

    progress(format!("starting {w} watches"));
    // (object, resourceVersion) -> arrival of the event.
    let arrivals: Arc<Mutex<HashMap<(usize, String), Instant>>> = Arc::default();
    let established = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let ns = api.namespace().unwrap_or_default().to_string();
    let mut watchers = Vec::new();
    for j in 0..w {
        // One Api per watch on a shared client: kube-rs opens one HTTP/1.1
        // connection per concurrent request.
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let rv = revisions.lock().expect("lock")[&j].clone();
        let (arrivals, established, failed, first_error) = (
            arrivals.clone(),
            established.clone(),
            failed.clone(),
            first_error.clone(),
        );
        watchers.push(tokio::spawn(async move {
            let wp = WatchParams::default()
                .labels(&format!("tmc-bench-watch=w{j}"))
                .timeout(290);
            let note = |e: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                first_error.lock().expect("lock").get_or_insert(e);
            };
            let mut stream = match api.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(e) => return note(format!("watch w-{j}: {e}")),
            };
            established.fetch_add(1, Ordering::Relaxed);
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                match ev {
                    Ok(WatchEvent::Modified(cm)) | Ok(WatchEvent::Added(cm)) => {
                        let rv = cm.metadata.resource_version.unwrap_or_default();
                        arrivals.lock().expect("lock").insert((j, rv), now);
                    }
                    Ok(WatchEvent::Bookmark(_)) => {}
                    Ok(WatchEvent::Deleted(_)) => {}
                    Ok(WatchEvent::Error(e)) => return note(format!("watch w-{j}: {e:?}")),
                    Err(e) => return note(format!("watch w-{j}: {e}")),
                }
            }
            note(format!("watch w-{j} ended early"));
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while established.load(Ordering::Relaxed) + (failed.load(Ordering::Relaxed) as usize) < w {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fig.established_s = start.elapsed().as_secs_f64();
    let up = established.load(Ordering::Relaxed);
    if up < w {
        for t in &watchers {
            t.abort();
        }
        return Err(format!(
            "only {up} of {w} watches started within 120 s; first error: {}",
            first_error
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default()
        )
        .into());
    }

    progress(format!(
        "{} patches at {}/s to {w} watched objects",
        w * args.watch_rounds,
        args.watch_rate
    ));
    // (object, resourceVersion) -> arrival of the patch's response.
    let acks: Arc<Mutex<HashMap<(usize, String), Instant>>> = Arc::default();
    let writers = args.clients.max(1);
    let total = w * args.watch_rounds;
    let per_writer_interval = Duration::from_secs_f64(writers as f64 / args.watch_rate.max(0.001));
    let mut tasks = Vec::new();
    for k in 0..writers {
        let (api, acks) = (api.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut tick = tokio::time::interval(per_writer_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in (k..total).step_by(writers) {
                tick.tick().await;
                let (j, round) = (i % w, i / w);
                let patch = serde_json::json!({"data": {"round": round.to_string()}});
                let t0 = Instant::now();
                let r = api
                    .patch(
                        &format!("w-{j}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                let now = Instant::now();
                if let Ok(cm) = &r {
                    let rv = cm.metadata.resource_version.clone().unwrap_or_default();
                    acks.lock().expect("lock").insert((j, rv), now);
                }
                t.record(t0, &r);
            }
            t
        }));
    }
    let mut writes = Tally::default();
    for t in tasks {
        writes.merge(t.await?);
    }
    fig.patches = writes.ok;
    fig.patch_errors = writes.errors;
    // Wait for the events still in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = {
            let a = arrivals.lock().expect("lock");
            let k = acks.lock().expect("lock");
            k.keys().filter(|key| a.contains_key(*key)).count()
        };
        if seen as u64 >= fig.patches || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &watchers {
        t.abort();
    }
    let mut h = hist();
    let a = arrivals.lock().expect("lock");
    for (key, &acked) in acks.lock().expect("lock").iter() {
        match a.get(key) {
            Some(&arrived) => {
                fig.events += 1;
                let us = match arrived.checked_duration_since(acked) {
                    Some(d) => d.as_micros() as u64,
                    None => {
                        fig.events_before_response += 1;
                        0
                    }
                };
                h.saturating_record(us.max(1));
            }
            None => fig.events_missing += 1,
        }
    }
    fig.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
    fig.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
    fig.max_ms = h.max() as f64 / 1000.0;
    fig.watch_errors = failed.load(Ordering::Relaxed);
    fig.first_error = first_error
        .lock()
        .expect("lock")
        .clone()
        .or(writes.first_error);
    Ok(fig)
}
