//! A shard among shards: who it is, the registry of all shards, and its
//! calls to the other shards (see `docs/sharding.md`).
//!
//! - **Who it is**: `tmc serve --shard NAME` (default `root`), its labels
//!   and the URL other shards and the proxy reach its API at
//!   ([`Config`]). The root shard is the one without `--root-shard`: it
//!   hosts the `root` workspace and with it the registry.
//! - **The registry**: one `core.kcp.io/v1alpha1` `Shard` per shard in
//!   `root` (`spec.baseURL`, labels, `status.logicalClusters`), kept by
//!   each shard's leader ([`registrar`]) through the root shard's API and
//!   read by the scheduler ([`Directory::schedule`]) and the proxy. It is
//!   small (one object per shard) and held whole, re-read every
//!   [`REGISTRY_TTL`].
//! - **Calls to other shards** go over HTTPS to their API with the
//!   shard's identity: a client certificate of the users' CA, CN
//!   `system:tmc:shard:NAME`, O `system:tmc:shards`
//!   ([`crate::authz::shard_allowed`] is all it may do). Creating a
//!   workspace on another shard creates its LogicalCluster there
//!   ([`Directory::create_logical_cluster`]); deleting it deletes that
//!   ([`Directory::delete_logical_cluster`]).
//!
//! Left out: several URLs per registered shard (a shard's `baseURL` is
//! one address, a Service in a deployment; a shard's replicas register the
//! leader's own address when no `--shard-url` is given). Moving a logical
//! cluster between shards is `tmc workspace move` (docs/backup.md).

pub mod registrar;

use crate::controllers::remote::RemoteObject;
use crate::proxy::upstream::{Upstream, UpstreamError};
use crate::store::{GroupResource, Workspace};
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The annotation on a workspace's LogicalCluster while the workspace is
/// moved to another shard (`to=SHARD` on the shard it leaves, `from=SHARD`
/// on the one it comes to): its writes are held (503) and the sync
/// controller leaves its copies alone until the move is done
/// (`tmc workspace move`, [`crate::api::handlers::transfer`]).
pub const MOVE_ANNOTATION: &str = "tmc.kcp.io/move";

/// The move under way of the workspace whose LogicalCluster is `lc`.
pub fn moving(lc: &Value) -> Option<&str> {
    lc.pointer("/metadata/annotations")?
        .get(MOVE_ANNOTATION)?
        .as_str()
}

/// How long where a workspace lives is remembered.
pub const LOCATE_TTL: Duration = Duration::from_secs(30);
/// How long the registry is used before it is read again.
pub const REGISTRY_TTL: Duration = Duration::from_secs(2);
/// Bound on an answer of another shard read whole.
const MAX_ANSWER: usize = 4 << 20;
/// The name of the root shard when none is given.
pub const ROOT: &str = "root";

/// Who this shard is.
#[derive(Debug, Clone)]
pub struct Config {
    /// Its name (`--shard`).
    pub name: String,
    /// Its labels (`--shard-labels`), for `spec.location.selector`.
    pub labels: BTreeMap<String, String>,
    /// The URL of its API for the proxy and other shards.
    pub url: String,
    /// The root shard's API (tried in order); empty on the root shard.
    pub root: Vec<String>,
}

impl Config {
    /// A lone root shard at `url` (`tmc dev`, a one-shard deployment).
    pub fn root_at(url: &str) -> Config {
        Config {
            name: ROOT.into(),
            labels: BTreeMap::new(),
            url: url.into(),
            root: Vec::new(),
        }
    }
}

/// Parses `k=v,k2=v2` into labels.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("label {part:?} is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// A shard's identity: its certificate and key, PEM.
pub type IdentityPem = (Vec<u8>, Vec<u8>);

/// One entry of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntry {
    /// The shard's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its API.
    pub url: String,
    /// The logical clusters it last reported.
    pub logical_clusters: u64,
    /// When it counted them (`status.countedAt`).
    pub counted_at: String,
}

impl ShardEntry {
    fn from_object(v: &Value) -> Option<ShardEntry> {
        let name = v.pointer("/metadata/name")?.as_str()?.to_string();
        let url = v.pointer("/spec/baseURL")?.as_str()?.to_string();
        let labels = v
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let logical_clusters = v
            .pointer("/status/logicalClusters")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let counted_at = v
            .pointer("/status/countedAt")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Some(ShardEntry {
            name,
            labels,
            url,
            logical_clusters,
            counted_at,
        })
    }
}

/// Why a workspace could not be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// No registered shard matches the selector.
    #[error("no shard matches spec.location.selector {0}")]
    NoMatch(String),
    /// The selector is not a label selector.
    #[error("spec.location.selector: {0}")]
    BadSelector(String),
    /// The registry could not be read.
    #[error("the shard registry is unavailable: {0}")]
    Unavailable(String),
}

/// This shard's view of the others (see the module docs).
pub struct Directory {
    cfg: Config,
    client: Option<Upstream>,
    /// This shard's own data: its registry entry and directory are read
    /// and written here, never through its own API.
    local: Arc<dyn crate::shard::Shard>,
    registry: Mutex<Option<(Instant, Arc<Vec<ShardEntry>>)>>,
    /// Logical clusters this shard put on each shard since that shard's
    /// last report (so that a burst of creates spreads).
    assigned: Mutex<HashMap<String, u64>>,
    /// Workspaces located on other shards, with when.
    located: Mutex<HashMap<String, (String, Instant)>>,
}

impl Directory {
    /// The directory of the shard `cfg` that calls others with `client`
    /// (its shard identity); without one it can neither register nor
    /// place workspaces elsewhere.
    pub fn new(
        cfg: Config,
        client: Option<Upstream>,
        local: Arc<dyn crate::shard::Shard>,
    ) -> Directory {
        Directory {
            cfg,
            client,
            local,
            registry: Mutex::new(None),
            assigned: Mutex::new(HashMap::new()),
            located: Mutex::new(HashMap::new()),
        }
    }

    /// The client of a shard's identity: the users' CA `ca` and the
    /// identity's certificate and key (PEM).
    pub fn identity_client(
        ca: &std::path::Path,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Upstream, crate::util::BoxError> {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad shard identity certificate: {e}"))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("bad shard identity key: {e}"))?;
        Upstream::with_identity(ca, chain, key)
    }

    /// This shard's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// This shard's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Does this shard host `root`?
    pub fn is_root(&self) -> bool {
        self.cfg.root.is_empty()
    }

    /// The root shard's API URLs (this shard's own on the root shard).
    fn root_urls(&self) -> Vec<String> {
        if self.is_root() {
            vec![self.cfg.url.clone()]
        } else {
            self.cfg.root.clone()
        }
    }

    /// One call to the first of `urls` that answers: status and JSON body
    /// (`Null` when empty or not JSON).
    async fn call(
        &self,
        urls: &[String],
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let client = self.client.as_ref().ok_or_else(|| {
            format!(
                "shard {:?} has no shard identity (shard.crt and shard.key in its TLS \
                 directory, see `tmc certs --shard`) to call other shards with",
                self.cfg.name
            )
        })?;
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| e.to_string())?),
            None => Bytes::new(),
        };
        let mut last = String::from("no URL to call");
        for base in urls {
            let uri = format!("{}{path}", base.trim_end_matches('/'));
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("accept", "application/json");
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(Full::new(bytes.clone()))
                .map_err(|e| format!("bad request {uri:?}: {e}"))?;
            match client.fetch(req, MAX_ANSWER).await {
                Ok((status, body)) => {
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    return Ok((status, v));
                }
                Err(e @ (UpstreamError::Connect(_) | UpstreamError::Timeout(_))) => {
                    last = format!("{uri}: {e}");
                }
                Err(e) => return Err(format!("{uri}: {e}")),
            }
        }
        Err(last)
    }

    /// The registry, read at most every [`REGISTRY_TTL`].
    pub async fn registry(&self) -> Result<Arc<Vec<ShardEntry>>, String> {
        if let Some((at, r)) = &*self.registry.lock().unwrap_or_else(PoisonError::into_inner) {
            if at.elapsed() < REGISTRY_TTL {
                return Ok(r.clone());
            }
        }
        self.refresh().await
    }

    /// Reads the registry now (from this shard's own data on the root
    /// shard).
    pub async fn refresh(&self) -> Result<Arc<Vec<ShardEntry>>, String> {
        let items = if self.is_root() {
            self.local_registry()?
        } else {
            let (status, v) = self
                .call(
                    &self.root_urls(),
                    Method::GET,
                    "/clusters/root/apis/core.kcp.io/v1alpha1/shards",
                    None,
                )
                .await?;
            if status != StatusCode::OK {
                return Err(format!("the root shard answered {status}: {}", message(&v)));
            }
            v.get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut entries: Vec<ShardEntry> =
            items.iter().filter_map(ShardEntry::from_object).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let entries = Arc::new(entries);
        let previous = self
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace((Instant::now(), entries.clone()));
        // What this shard put on a shard counts until that shard reports
        // a newer count (which includes it).
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries.iter() {
            let before = previous
                .as_ref()
                .and_then(|(_, p)| p.iter().find(|o| o.name == e.name))
                .map(|o| o.counted_at.as_str());
            if before != Some(e.counted_at.as_str()) {
                assigned.remove(&e.name);
            }
        }
        drop(assigned);
        Ok(entries)
    }

    /// The URL of shard `name`, from the registry (read again once if it
    /// does not know the name).
    pub async fn url_of(&self, name: &str) -> Result<String, String> {
        if name == self.cfg.name {
            return Ok(self.cfg.url.clone());
        }
        for fresh in [false, true] {
            let reg = if fresh {
                self.refresh().await?
            } else {
                self.registry().await?
            };
            if let Some(e) = reg.iter().find(|e| e.name == name) {
                return Ok(e.url.clone());
            }
        }
        Err(format!("shard {name:?} is not in the registry"))
    }

    /// The shard a new logical cluster goes to: of the registered shards
    /// whose labels match `selector` (a label selector; none: every
    /// shard), the one with the fewest logical clusters (reported, plus
    /// what this shard put there since that report), ties broken by name. With no
    /// selector and no registry to read (a lone shard before its first
    /// registration), this shard.
    pub async fn schedule(&self, selector: Option<&Value>) -> Result<String, ScheduleError> {
        let registry = match self.registry().await {
            Ok(r) => r,
            Err(e) if selector.is_none() && self.is_root() => {
                tracing::debug!(error = %e, "no registry yet: the new workspace stays here");
                return Ok(self.cfg.name.clone());
            }
            Err(e) => return Err(ScheduleError::Unavailable(e)),
        };
        let selector_typed = match selector {
            None => crate::object::selector::LabelSelector::everything(),
            Some(v) => {
                let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                    serde_json::from_value(v.clone())
                        .map_err(|e| ScheduleError::BadSelector(e.to_string()))?;
                crate::object::selector::from_optional(Some(&typed))
                    .map_err(|e| ScheduleError::BadSelector(e.to_string()))?
            }
        };
        let candidates: Vec<&ShardEntry> = registry
            .iter()
            .filter(|e| selector_typed.matches(&e.labels))
            .collect();
        if candidates.is_empty() {
            if selector.is_none() {
                return Ok(self.cfg.name.clone());
            }
            return Err(ScheduleError::NoMatch(
                selector.map(|s| s.to_string()).unwrap_or_default(),
            ));
        }
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        let load =
            |e: &ShardEntry| e.logical_clusters + assigned.get(&e.name).copied().unwrap_or(0);
        let best = candidates
            .iter()
            .min_by(|a, b| load(a).cmp(&load(b)).then_with(|| a.name.cmp(&b.name)))
            .map(|e| e.name.clone())
            .unwrap_or_else(|| self.cfg.name.clone());
        *assigned.entry(best.clone()).or_insert(0) += 1;
        Ok(best)
    }

    /// Takes back a placement [`Directory::schedule`] counted on `shard`
    /// (the create failed).
    pub fn unschedule(&self, shard: &str) {
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = assigned.get_mut(shard) {
            *n = n.saturating_sub(1);
        }
    }

    /// Creates the logical cluster of `ws` on shard `shard` from the
    /// LogicalCluster object `lc`; an existing one with the same owner
    /// (`spec.owner.uid`) is success.
    pub async fn create_logical_cluster(
        &self,
        shard: &str,
        ws: &Workspace,
        lc: &Value,
    ) -> Result<(), String> {
        let url = self.url_of(shard).await?;
        let path = lc_path(ws, "");
        let (status, v) = self
            .call(std::slice::from_ref(&url), Method::POST, &path, Some(lc))
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => {
                let (s, got) = self
                    .call(&[url], Method::GET, &lc_path(ws, "/cluster"), None)
                    .await?;
                let want = lc.pointer("/spec/owner/uid");
                if s == StatusCode::OK && got.pointer("/spec/owner/uid") == want {
                    Ok(())
                } else {
                    Err(format!(
                        "shard {shard:?} already holds a logical cluster {:?} of another owner",
                        ws.as_str()
                    ))
                }
            }
            s => Err(format!(
                "shard {shard:?} answered {s} to the creation of logical cluster {:?}: {}",
                ws.as_str(),
                message(&v)
            )),
        }
    }

    /// Deletes the logical cluster of `ws` on shard `shard` (its shard
    /// empties it, then removes it): `true` once it is gone.
    pub async fn delete_logical_cluster(
        &self,
        shard: &str,
        ws: &Workspace,
    ) -> Result<bool, String> {
        let url = self.url_of(shard).await?;
        let (status, v) = self
            .call(&[url], Method::DELETE, &lc_path(ws, "/cluster"), None)
            .await?;
        match status {
            StatusCode::NOT_FOUND | StatusCode::MISDIRECTED_REQUEST => Ok(true),
            StatusCode::OK | StatusCode::ACCEPTED => Ok(false),
            s => Err(format!(
                "shard {shard:?} answered {s} to the deletion of logical cluster {:?}: {}",
                ws.as_str(),
                message(&v)
            )),
        }
    }

    /// The shard holding workspace `ws` (`None`: it does not exist),
    /// walking the directory from root level by level; answers are
    /// cached for [`LOCATE_TTL`].
    pub async fn locate(&self, ws: &Workspace) -> Result<Option<String>, String> {
        let root_name = if self.is_root() {
            self.cfg.name.clone()
        } else {
            ROOT.to_string()
        };
        let Some(parent) = ws.parent() else {
            return Ok(Some(root_name));
        };
        if let Some((shard, at)) = self
            .located
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ws.as_str())
        {
            if at.elapsed() < LOCATE_TTL {
                return Ok(Some(shard.clone()));
            }
        }
        let Some(parent_shard) = Box::pin(self.locate(&parent)).await? else {
            return Ok(None);
        };
        let wobj = if parent_shard == self.cfg.name {
            self.local_workspace(&parent, ws.base())?
        } else {
            let url = if parent_shard == root_name {
                self.cfg.root.join(",")
            } else {
                self.url_of(&parent_shard).await?
            };
            let urls: Vec<String> = url.split(',').map(str::to_string).collect();
            let path = format!(
                "/clusters/{}/apis/tenancy.kcp.io/v1alpha1/workspaces/{}",
                parent.as_str(),
                ws.base()
            );
            let (status, v) = self.call(&urls, Method::GET, &path, None).await?;
            match status {
                StatusCode::OK => Some(v),
                StatusCode::NOT_FOUND => None,
                s => {
                    return Err(format!(
                        "shard {parent_shard:?} answered {s} to the lookup of workspace {:?}: {}",
                        ws.as_str(),
                        message(&v)
                    ))
                }
            }
        };
        let Some(wobj) = wobj else {
            return Ok(None);
        };
        let shard = match wobj.pointer("/spec/shard").and_then(Value::as_str) {
            None | Some("") => parent_shard,
            Some(s) => s.to_string(),
        };
        let mut located = self.located.lock().unwrap_or_else(PoisonError::into_inner);
        if located.len() >= 10_000 {
            located.clear();
        }
        located.insert(ws.as_str().to_string(), (shard.clone(), Instant::now()));
        Ok(Some(shard))
    }

    /// Writes this shard's entry of the registry: its URL and labels, and
    /// `logical_clusters`.
    pub async fn register(&self, logical_clusters: u64) -> Result<(), String> {
        if self.is_root() {
            return self.register_locally(logical_clusters).await;
        }
        let urls = self.root_urls();
        let name = &self.cfg.name;
        let path = format!("/clusters/root/apis/core.kcp.io/v1alpha1/shards/{name}");
        let mut obj = json!({
            "apiVersion": "core.kcp.io/v1alpha1",
            "kind": "Shard",
            "metadata": {"name": name, "labels": self.cfg.labels},
            "spec": {"baseURL": self.cfg.url},
            "status": {
                "logicalClusters": logical_clusters,
                "countedAt": crate::object::now(),
            },
        });
        let (status, current) = self.call(&urls, Method::GET, &path, None).await?;
        let (status, v) = match status {
            StatusCode::NOT_FOUND => {
                self.call(
                    &urls,
                    Method::POST,
                    "/clusters/root/apis/core.kcp.io/v1alpha1/shards",
                    Some(&obj),
                )
                .await?
            }
            StatusCode::OK => {
                obj["metadata"]["resourceVersion"] = current
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                self.call(&urls, Method::PUT, &path, Some(&obj)).await?
            }
            s => {
                return Err(format!(
                    "the root shard answered {s}: {}",
                    message(&current)
                ))
            }
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the root shard answered {status}: {}", message(&v)))
        }
    }
}

impl Directory {
    /// The Shard objects of `root`, from this (the root) shard's data.
    fn local_registry(&self) -> Result<Vec<Value>, String> {
        let root = Workspace::parse(ROOT).map_err(|e| e.to_string())?;
        let prefix = crate::store::Prefix::workspace(&shards_resource(), &root);
        let mut opts = crate::store::ListOptions {
            limit: 1000,
            ..Default::default()
        };
        let mut out = Vec::new();
        loop {
            let page = self.local.list(&prefix, &opts).map_err(|e| e.to_string())?;
            out.extend(
                page.items
                    .iter()
                    .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok()),
            );
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// [`Directory::register`] on the root shard: its own entry written in
    /// its own data (compare-and-swap on what was read).
    async fn register_locally(&self, logical_clusters: u64) -> Result<(), String> {
        use crate::store::{Expectation, Key, ObjectKey, Txn, TxnOp};
        let root = Workspace::parse(ROOT).map_err(|e| e.to_string())?;
        let key = Key::from(
            ObjectKey::cluster_scoped(shards_resource(), root, &self.cfg.name)
                .map_err(|e| e.to_string())?,
        );
        let current = self.local.get(&key).map_err(|e| e.to_string())?;
        let (mut obj, expect) = match &current {
            Some(rec) => (
                serde_json::from_slice::<Value>(&rec.value).map_err(|e| e.to_string())?,
                Expectation::ModRevision(rec.mod_revision),
            ),
            None => (
                json!({
                    "apiVersion": "core.kcp.io/v1alpha1",
                    "kind": "Shard",
                    "metadata": {
                        "name": self.cfg.name,
                        "uid": uuid::Uuid::new_v4().to_string(),
                        "creationTimestamp": crate::object::now(),
                    },
                }),
                Expectation::Absent,
            ),
        };
        if !obj.is_object() {
            return Err("the stored Shard is not an object".into());
        }
        crate::object::meta_mut(&mut obj).insert("labels".into(), json!(self.cfg.labels));
        obj["spec"] = json!({"baseURL": self.cfg.url});
        obj["status"] = json!({
            "logicalClusters": logical_clusters,
            "countedAt": crate::object::now(),
        });
        let v = serde_json::to_vec(&obj).map_err(|e| e.to_string())?;
        self.local
            .write(Txn::new(vec![TxnOp::put_json(key, v, expect)]))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Workspace `name` of `parent` from this shard's own data.
    fn local_workspace(&self, parent: &Workspace, name: &str) -> Result<Option<Value>, String> {
        let Ok(child) = parent.join(name) else {
            return Ok(None);
        };
        let Some(k) = crate::store::ObjectKey::workspace_object(&child) else {
            return Ok(None);
        };
        Ok(self
            .local
            .get(&crate::store::Key::from(k))
            .map_err(|e| e.to_string())?
            .and_then(|r| serde_json::from_slice(&r.value).ok()))
    }
}

fn shards_resource() -> GroupResource {
    GroupResource::new(
        crate::store::keys::CORE_KCP_GROUP,
        crate::store::keys::SHARDS,
    )
    .expect("a valid group resource")
}

/// The LogicalCluster object of `ws`, from its Workspace object `wobj`
/// (in `ws`'s parent): owned by that Workspace (`spec.owner`, with its
/// uid), and naming its creator, who becomes its admin.
pub fn logical_cluster_object(ws: &Workspace, wobj: &Value) -> Value {
    let creator = wobj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(crate::object::CREATOR_ANNOTATION))
        .cloned()
        .unwrap_or(Value::String(String::new()));
    json!({
        "apiVersion": "core.kcp.io/v1alpha1",
        "kind": "LogicalCluster",
        "metadata": {
            "name": crate::store::keys::LOGICAL_CLUSTER_NAME,
            "annotations": {crate::object::CREATOR_ANNOTATION: creator},
        },
        "spec": {
            "owner": {
                "apiVersion": "tenancy.kcp.io/v1alpha1",
                "resource": "workspaces",
                "cluster": ws.parent().map(|p| p.as_str().to_string()).unwrap_or_default(),
                "name": ws.base(),
                "uid": wobj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            },
        },
    })
}

impl crate::controllers::remote::OtherShards for Directory {
    fn own_shard(&self) -> &str {
        self.name()
    }

    fn is_root(&self) -> bool {
        Directory::is_root(self)
    }

    fn locate<'a>(
        &'a self,
        ws: &'a Workspace,
    ) -> crate::shard::BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(Directory::locate(self, ws))
    }

    fn get_object<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        gr: &'a GroupResource,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> crate::shard::BoxFuture<'a, Result<Option<RemoteObject>, String>> {
        Box::pin(async move {
            let path = format!("{}/{name}", object_path(ws, gr, namespace)?);
            let url = self.url_of(shard).await?;
            let (status, v) = self.call(&[url], Method::GET, &path, None).await?;
            match status {
                StatusCode::OK => {
                    let rv = v
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    Ok(Some((v, rv)))
                }
                StatusCode::NOT_FOUND => Ok(None),
                s => Err(format!(
                    "shard {shard:?} answered {s} to GET {path}: {}",
                    message(&v)
                )),
            }
        })
    }

    fn list_objects<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        gr: &'a GroupResource,
    ) -> crate::shard::BoxFuture<'a, Result<Vec<Value>, String>> {
        Box::pin(async move {
            let path = object_path(ws, gr, None)?;
            let url = self.url_of(shard).await?;
            let (status, v) = self.call(&[url], Method::GET, &path, None).await?;
            if status != StatusCode::OK {
                return Err(format!(
                    "shard {shard:?} answered {status} to GET {path}: {}",
                    message(&v)
                ));
            }
            Ok(v.get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default())
        })
    }

    fn create_logical_cluster<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
        lc: &'a Value,
    ) -> crate::shard::BoxFuture<'a, Result<(), String>> {
        Box::pin(Directory::create_logical_cluster(self, shard, ws, lc))
    }

    fn delete_logical_cluster<'a>(
        &'a self,
        shard: &'a str,
        ws: &'a Workspace,
    ) -> crate::shard::BoxFuture<'a, Result<bool, String>> {
        Box::pin(Directory::delete_logical_cluster(self, shard, ws))
    }
}

/// The API path of the objects of `gr` in `ws` (in `namespace`).
fn object_path(
    ws: &Workspace,
    gr: &GroupResource,
    namespace: Option<&str>,
) -> Result<String, String> {
    let info = crate::api::resources::RESOURCES
        .iter()
        .find(|r| r.group_resource() == *gr)
        .ok_or_else(|| format!("{gr} is not served"))?;
    let prefix = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let ns = namespace
        .map(|n| format!("/namespaces/{n}"))
        .unwrap_or_default();
    Ok(format!(
        "/clusters/{}{prefix}{ns}/{}",
        ws.as_str(),
        info.plural
    ))
}

/// The path of `ws`'s LogicalClusters, then `tail`.
fn lc_path(ws: &Workspace, tail: &str) -> String {
    format!(
        "/clusters/{}/apis/core.kcp.io/v1alpha1/logicalclusters{tail}",
        ws.as_str()
    )
}

/// The `message` of a Status, or the body.
fn message(v: &Value) -> String {
    v.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_bad_ones_say_why() {
        let l = parse_labels("region=eu, tier=gold").unwrap();
        assert_eq!(l.get("region").map(String::as_str), Some("eu"));
        assert_eq!(l.len(), 2);
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("region").unwrap_err().contains("key=value"));
    }

    #[test]
    fn registry_entries_read_from_shard_objects() {
        let v = json!({"metadata": {"name": "two", "labels": {"region": "eu"}},
                       "spec": {"baseURL": "https://b:6443"},
                       "status": {"logicalClusters": 7}});
        let e = ShardEntry::from_object(&v).unwrap();
        assert_eq!(e.name, "two");
        assert_eq!(e.url, "https://b:6443");
        assert_eq!(e.logical_clusters, 7);
        assert_eq!(e.labels.get("region").map(String::as_str), Some("eu"));
        // No URL: not a usable entry.
        assert!(ShardEntry::from_object(&json!({"metadata": {"name": "x"}})).is_none());
    }

    fn dir_with(entries: Vec<ShardEntry>) -> Directory {
        let store = crate::store::Store::open(
            crate::store::MemoryEngine::new(),
            crate::store::StoreOptions::default(),
        )
        .unwrap();
        let d = Directory::new(
            Config::root_at("https://a:1"),
            None,
            Arc::new(crate::shard::LocalShard::new(Arc::new(store))),
        );
        *d.registry.lock().unwrap() = Some((Instant::now(), Arc::new(entries)));
        d
    }

    fn entry(name: &str, n: u64, labels: &str) -> ShardEntry {
        ShardEntry {
            name: name.into(),
            labels: parse_labels(labels).unwrap(),
            url: format!("https://{name}:6443"),
            logical_clusters: n,
            counted_at: String::new(),
        }
    }

    /// What this shard placed on a shard counts until that shard's next
    /// report, however often the registry is read in between.
    #[tokio::test]
    async fn placements_count_until_the_shard_reports_again() {
        use crate::store::{Expectation, Key, ObjectKey, Txn, TxnOp};
        let d = dir_with(Vec::new());
        let put = |name: &str, n: u64, at: &str| {
            let root = Workspace::parse(ROOT).unwrap();
            TxnOp::put_json(
                Key::from(ObjectKey::cluster_scoped(shards_resource(), root, name).unwrap()),
                serde_json::to_vec(&json!({"kind": "Shard", "metadata": {"name": name},
                    "spec": {"baseURL": format!("https://{name}:1")},
                    "status": {"logicalClusters": n, "countedAt": at}}))
                .unwrap(),
                Expectation::Any,
            )
        };
        d.local
            .write(Txn::new(vec![put("root", 5, "t0"), put("two", 0, "t0")]))
            .await
            .unwrap();
        d.refresh().await.unwrap();
        for _ in 0..5 {
            assert_eq!(d.schedule(None).await.unwrap(), "two");
        }
        // Read again, no new report: two still counts 5 placed.
        d.refresh().await.unwrap();
        assert_eq!(d.schedule(None).await.unwrap(), "root");
        // two reports its 5 (and root its 6): the count starts over.
        d.local
            .write(Txn::new(vec![put("root", 6, "t1"), put("two", 5, "t1")]))
            .await
            .unwrap();
        d.refresh().await.unwrap();
        assert_eq!(d.schedule(None).await.unwrap(), "two");
        // That create failed: taken back, two is the emptier again (6 to
        // 5, not a tie that root would win).
        d.unschedule("two");
        assert_eq!(d.schedule(None).await.unwrap(), "two");
    }

    #[tokio::test]
    async fn scheduling_picks_the_emptiest_matching_shard_and_spreads_a_burst() {
        let d = dir_with(vec![
            entry("root", 10, "region=us"),
            entry("two", 8, "region=eu"),
            entry("three", 8, "region=eu"),
        ]);
        // Fewest first, ties by name; each pick counts until the next report.
        let picks: Vec<String> = futures::future::join_all((0..5).map(|_| d.schedule(None)))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(picks, ["three", "two", "three", "two", "root"]);
        let eu = json!({"matchLabels": {"region": "us"}});
        assert_eq!(d.schedule(Some(&eu)).await.unwrap(), "root");
        let none = json!({"matchLabels": {"region": "mars"}});
        let e = d.schedule(Some(&none)).await.unwrap_err();
        assert!(e.to_string().contains("no shard matches"), "{e}");
        let bad = json!({"matchExpressions": [{"key": "region", "operator": "Near"}]});
        assert!(matches!(
            d.schedule(Some(&bad)).await,
            Err(ScheduleError::BadSelector(_))
        ));
    }
}
