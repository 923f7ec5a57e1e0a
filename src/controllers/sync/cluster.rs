//! One member cluster's side of sync: its work queue, workers, token
//! bucket, client and watches (see the parent module's protocol).

use super::mapping;
use super::{
    kind_of, listed_clusters, syncable, Kind, SyncCore, SyncOptions, SyncRecord, ANN_NAME,
    ANN_NAMESPACE, ANN_WORKSPACE, LABEL_OWNER,
};
use crate::controllers::error::{Error, Result};
use crate::controllers::keys::QueueKey;
use crate::controllers::member::CredentialsError;
use crate::controllers::objects;
use crate::controllers::queue::{ExponentialBackoff, RateLimiter, TokenBucket, WorkQueue};
use crate::shard::BoxFuture;
use crate::store::{ClusterRef, Expectation, GroupResource, Key, ObjectKey, Txn, TxnOp, Workspace};
use crate::types::ClusterRegistration;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// One unit of a cluster's work: an object of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncItem {
    /// The resource.
    pub gr: GroupResource,
    /// The workspace object.
    pub key: QueueKey,
}

/// A client and what it was built from.
struct CachedClient {
    fingerprint: String,
    client: kube::Client,
    tls: bool,
    checked: std::time::Instant,
}

/// How long a client is used before its registration and Secret are
/// looked at again.
const CLIENT_RECHECK: Duration = Duration::from_secs(5);

/// What is downstream, by (resource, namespace, name).
type Observed = HashMap<(GroupResource, String, String), Arc<Value>>;

/// The syncer of one member cluster.
pub struct ClusterSyncer {
    core: Arc<SyncCore>,
    cluster: ClusterRef,
    opts: SyncOptions,
    /// The value of the owner label (the shard's identity).
    owner: String,
    queue: WorkQueue<SyncItem>,
    bucket: TokenBucket,
    /// The client: what it was built from, whether it speaks TLS, and
    /// when that was last checked.
    client: tokio::sync::Mutex<Option<CachedClient>>,
    observed: Mutex<Observed>,
    /// Resources whose watch has listed everything once.
    listed: Mutex<HashSet<GroupResource>>,
    /// Namespaces known to exist downstream.
    namespaces: Mutex<HashSet<String>>,
}

fn api_resource(k: &Kind) -> ApiResource {
    let version = k.api_version.rsplit('/').next().unwrap_or(k.api_version);
    ApiResource {
        group: k.gr.api_group().to_string(),
        version: version.to_string(),
        api_version: k.api_version.to_string(),
        kind: k.kind.to_string(),
        plural: k.gr.resource().to_string(),
    }
}

fn ns_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
    }
}

/// The workspace object a downstream copy of `owner` came from.
fn origin(v: &Value, owner: &str) -> Option<(Workspace, String, String)> {
    let a = &v["metadata"]["annotations"];
    if v["metadata"]["labels"][LABEL_OWNER] != owner {
        return None;
    }
    Some((
        Workspace::parse(a[ANN_WORKSPACE].as_str()?).ok()?,
        a[ANN_NAMESPACE].as_str()?.to_string(),
        a[ANN_NAME].as_str()?.to_string(),
    ))
}

fn is_404(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl ClusterSyncer {
    pub(super) fn new(
        core: Arc<SyncCore>,
        cluster: ClusterRef,
        opts: SyncOptions,
        owner: String,
    ) -> Arc<Self> {
        Arc::new(ClusterSyncer {
            core,
            cluster,
            opts,
            owner,
            // Retries back off per item from 50 ms to 30 s: a dead
            // cluster's items wait, and resume soon after it returns.
            queue: WorkQueue::with_rate_limiter(Box::new(ExponentialBackoff::new(
                Duration::from_millis(50),
                Duration::from_secs(30),
            ))),
            bucket: TokenBucket::new(opts.qps, opts.burst),
            client: tokio::sync::Mutex::new(None),
            observed: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashSet::new()),
            namespaces: Mutex::new(HashSet::new()),
        })
    }

    /// Its work queue.
    pub fn queue(&self) -> &WorkQueue<SyncItem> {
        &self.queue
    }

    /// Copies seen downstream (for tests and metrics).
    pub fn observed_len(&self) -> usize {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Its workers and watches, run by the term's supervisor.
    pub(super) fn tasks(self: Arc<Self>) -> Vec<BoxFuture<'static, ()>> {
        let mut out: Vec<BoxFuture<'static, ()>> = Vec::new();
        for _ in 0..self.opts.workers_per_cluster.max(1) {
            out.push(Box::pin(self.clone().worker()));
        }
        out.push(Box::pin(self.watch_all()));
        out
    }

    /// Waits for a token of the cluster's bucket (downstream writes).
    async fn take_token(&self) {
        let d = RateLimiter::<()>::when(&self.bucket, &());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// The client, rebuilt when the registration or its Secret changed
    /// (looked at every few seconds, not on every item).
    /// A [`Error::MemberCluster`] of this syncer's cluster.
    fn member_error(&self, message: String) -> Error {
        Error::MemberCluster {
            cluster: self.cluster.to_string(),
            message,
        }
    }

    async fn client(&self) -> Result<(kube::Client, bool)> {
        if let Some(c) = self.client.lock().await.as_ref() {
            if c.checked.elapsed() < CLIENT_RECHECK {
                return Ok((c.client.clone(), c.tls));
            }
        }
        let shard = self.core.shard();
        let credentials = |e: CredentialsError| {
            self.member_error(format!(
                "credentials of cluster {}: {}",
                self.cluster, e.message
            ))
        };
        let not_found = || {
            self.member_error(format!(
                "ClusterRegistration {} not found in workspace {}",
                self.cluster.name, self.cluster.workspace
            ))
        };
        let loc = &self.cluster.workspace;
        let others = self.core.others();
        let (fingerprint, creds) =
            match crate::controllers::remote::whereabouts(&**shard, others, loc).await? {
                // A location on another shard: its registration and Secret
                // are read from there, into memory only.
                crate::controllers::remote::Whereabouts::There(on) => {
                    let others = others.ok_or_else(not_found)?;
                    let gr = crate::controllers::cluster::resource();
                    let (raw, _) = others
                        .get_object(&on, loc, &gr, None, &self.cluster.name)
                        .await
                        .map_err(Error::OtherShard)?
                        .ok_or_else(not_found)?;
                    let reg: ClusterRegistration = serde_json::from_value(raw).map_err(|e| {
                        self.member_error(format!("a ClusterRegistration that does not parse: {e}"))
                    })?;
                    let r = &reg.spec.credentials_secret_ref;
                    let secrets = crate::controllers::member::secrets();
                    let secret = others
                        .get_object(&on, loc, &secrets, Some(&r.namespace), &r.name)
                        .await
                        .map_err(Error::OtherShard)?;
                    crate::controllers::member::from_secret(loc, &reg.spec, secret.as_ref())
                        .map_err(credentials)?
                }
                _ => {
                    let key = ObjectKey::cluster_scoped(
                        crate::controllers::cluster::resource(),
                        loc.clone(),
                        &self.cluster.name,
                    )?;
                    let reg = objects::read::<ClusterRegistration>(&**shard, &key)?
                        .ok_or_else(not_found)?;
                    crate::controllers::member::load(&**shard, loc, &reg.obj.spec)
                        .map_err(credentials)?
                }
            };
        let mut c = self.client.lock().await;
        if let Some(cached) = c.as_mut().filter(|c| c.fingerprint == fingerprint) {
            cached.checked = std::time::Instant::now();
            return Ok((cached.client.clone(), cached.tls));
        }
        let tls = creds.tls();
        let client = creds
            .client(self.opts.request_timeout, self.opts.endpoints)
            .map_err(credentials)?;
        *c = Some(CachedClient {
            fingerprint,
            client: client.clone(),
            tls,
            checked: std::time::Instant::now(),
        });
        Ok((client, tls))
    }

    async fn worker(self: Arc<Self>) {
        while let Some(item) = self.queue.get().await {
            // A panic is caught here: the item is retried like an error
            // and counted (see the runtime's docs), the worker goes on.
            let started = std::time::Instant::now();
            let result = match crate::controllers::runtime::guard(self.process(&item)).await {
                Ok(r) => r,
                Err(panic) => {
                    self.core.record_panic();
                    tracing::error!(cluster = %self.cluster, resource = %item.gr, key = %item.key,
                        panic = %panic, "sync panicked; the item is re-queued");
                    Err(Error::Panicked(panic))
                }
            };
            self.core
                .record_sync(&self.cluster.to_string(), result.is_ok(), started.elapsed());
            match result {
                Ok(()) => self.queue.forget(&item),
                Err(e) => {
                    tracing::debug!(cluster = %self.cluster, resource = %item.gr, key = %item.key, error = %e, "sync failed; retrying");
                    if let Err(e2) = self.note_error(&item, &e.to_string()).await {
                        tracing::debug!(error = %e2, "recording a sync error failed");
                    }
                    self.queue.add_rate_limited(item.clone());
                }
            }
            self.queue.done(&item);
        }
    }

    fn object_key(item: &SyncItem) -> Result<ObjectKey> {
        ObjectKey::with_rule(
            item.gr.clone(),
            item.key.workspace.clone(),
            item.key.namespace.as_deref(),
            &item.key.name,
            crate::store::NameRule::DnsSubdomain,
        )
        .map_err(Error::from)
    }

    /// Keeps the last error in the record (once; not on every retry).
    async fn note_error(&self, item: &SyncItem, error: &str) -> Result<()> {
        let okey = Self::object_key(item)?;
        let Some((rev, mut rec)) = self.core.record(&self.cluster, &okey)? else {
            return Ok(());
        };
        if rec.error == error {
            return Ok(());
        }
        rec.error = error.to_string();
        self.put_record(&okey, Some(rev), &rec).await?;
        self.core.enqueue_object(&item.gr, item.key.clone());
        Ok(())
    }

    async fn put_record(&self, okey: &ObjectKey, rev: Option<u64>, rec: &SyncRecord) -> Result<()> {
        let key = Key::sync(self.cluster.clone(), okey.clone())?;
        let expect = match rev {
            Some(r) => Expectation::ModRevision(r),
            None => Expectation::Absent,
        };
        self.core
            .write(Txn::new(vec![TxnOp::put_bincode(
                key,
                rec.encode(),
                expect,
            )]))
            .await
    }

    /// What is downstream: from the watch once it has listed, else a GET.
    async fn have(
        &self,
        api: &Api<DynamicObject>,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Option<Value>> {
        if !fresh
            && self
                .listed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(gr)
        {
            let k = (gr.clone(), ns.to_string(), name.to_string());
            return Ok(self
                .observed
                .lock()
                .expect("lock")
                .get(&k)
                .map(|v| (**v).clone()));
        }
        match api.get_opt(name).await {
            Ok(o) => o.map(serde_json::to_value).transpose().map_err(|e| {
                Error::invalid(
                    format!("{gr} {ns}/{name} on {}", self.cluster),
                    format!("does not serialize: {e}"),
                )
            }),
            Err(e) => {
                Err(self.member_error(format!("reading {gr} {ns}/{name} on {}: {e}", self.cluster)))
            }
        }
    }

    /// One work item (see the parent module's protocol).
    async fn process(&self, item: &SyncItem) -> Result<()> {
        let core = &self.core;
        if !core.active(&item.key.workspace)? {
            return Ok(()); // moved away, or being moved: not this shard's to touch
        }
        let okey = Self::object_key(item)?;
        let kind = kind_of(&item.gr).ok_or_else(|| Error::invalid(&item.gr, "is not synced"))?;
        let obj = objects::read::<Value>(&**core.shard(), &okey)?;
        let rec = core.record(&self.cluster, &okey)?;
        let desired = match &obj {
            Some(o) => core.desired(&okey, &o.raw)?,
            None => super::Desired::default(),
        };
        let here = desired.clusters.contains(&self.cluster);
        let ns = item.key.namespace.clone().unwrap_or_default();
        let dns = mapping::downstream_namespace(&item.key.workspace, &ns);
        let name = item.key.name.as_str();
        if !here && rec.is_none() && !self.maybe_downstream(&item.gr, &dns, name) {
            return Ok(()); // nothing here, nothing to do
        }
        let (client, tls) = self.client().await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &dns, &api_resource(&kind));
        if !here {
            return self.remove(item, &okey, &api, &client, &dns, rec).await;
        }
        let Some(obj) = obj else {
            return Ok(()); // (desired implies present)
        };
        if !listed_clusters(&obj.raw).contains(&self.cluster) {
            return Ok(()); // the object reconcile lists the cluster first
        }
        let uid = obj.raw["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let prev = rec.as_ref().map(|(_, r)| r.clone());
        let deps: Vec<String> = mapping::dependencies(&obj.raw)
            .into_iter()
            .map(|(r, n)| format!("{r}/{n}"))
            .collect();
        let mut next = SyncRecord {
            uid: uid.clone(),
            generation: obj.raw["metadata"]["generation"].as_i64().unwrap_or(0),
            deps: deps.clone(),
            ..Default::default()
        };
        if kind.gr.resource() == "secrets" && !tls {
            next.error = format!(
                "refusing to send a Secret to cluster {} over plain HTTP; register it with an https endpoint",
                self.cluster
            );
            return self.finish(item, &okey, rec, next).await;
        }
        let want =
            match mapping::downstream_object(&kind.gr, &okey.workspace, &obj.raw, &self.owner) {
                Ok(w) => w,
                Err(e) => {
                    next.error = format!("{e}; fix the object in the workspace");
                    return self.finish(item, &okey, rec, next).await;
                }
            };
        next.hash = mapping::content_hash(&want);
        let fresh = prev.as_ref().is_none_or(|r| r.conflict);
        let have = self.have(&api, &kind.gr, &dns, name, fresh).await?;
        let current = prev
            .as_ref()
            .is_some_and(|r| r.hash == next.hash && r.uid == uid && !r.conflict)
            && have.as_ref().is_some_and(|h| mapping::contains(h, &want));
        let downstream = if let (true, Some(h)) = (current, &have) {
            h.clone()
        } else {
            // Ours: labelled by this shard for this very object, or the
            // copy our record says we applied (a workspace moved here
            // brings the records of the copies its old shard applied,
            // labelled by that shard: the apply below takes them over).
            let recorded = |h: &Value| {
                prev.as_ref().is_some_and(|r| {
                    !r.downstream_uid.is_empty()
                        && h["metadata"]["uid"].as_str() == Some(r.downstream_uid.as_str())
                })
            };
            let ours = |h: &Value| {
                recorded(h)
                    || origin(h, &self.owner)
                        .is_some_and(|(w, n, m)| w == okey.workspace && n == ns && m == name)
            };
            if let Some(h) = have.as_ref().filter(|h| !ours(h)) {
                if !desired.adopt {
                    let _ = h;
                    next.conflict = true;
                    next.error = format!(
                        "{} {dns}/{name} already exists on cluster {} and was not created by tmc; \
                         set conflictPolicy: Adopt on the placement to take it over",
                        kind.kind, self.cluster
                    );
                    return self.finish(item, &okey, rec, next).await;
                }
            }
            self.ensure_namespace(&client, &okey.workspace, &ns).await?;
            self.take_token().await;
            let applied = api
                .patch(
                    name,
                    &PatchParams::apply("tmc").force(),
                    &Patch::Apply(&want),
                )
                .await
                .map_err(|e| {
                    self.member_error(format!(
                        "applying {} {dns}/{name} to {}: {e}",
                        kind.kind, self.cluster
                    ))
                })?;
            let v = serde_json::to_value(applied).map_err(|e| {
                Error::invalid(
                    format!("{} {dns}/{name}", kind.kind),
                    format!("does not serialize: {e}"),
                )
            })?;
            self.observe(&kind.gr, v.clone());
            v
        };
        next.downstream_uid = downstream["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .into();
        next.downstream_rv = downstream["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .into();
        let st = &downstream["status"];
        if st.as_object().is_some_and(|m| !m.is_empty()) {
            next.status = st.to_string();
        }
        next.observed = match downstream["metadata"]["generation"].as_i64() {
            Some(g) if kind.has_status && st.get("observedGeneration").is_some() => {
                st["observedGeneration"].as_i64().unwrap_or(0) >= g
            }
            _ => true,
        };
        self.finish(item, &okey, rec, next).await
    }

    /// Writes the record if it changed, and requeues the workspace object
    /// (and its dependencies, old and new, when they changed).
    async fn finish(
        &self,
        item: &SyncItem,
        okey: &ObjectKey,
        rec: Option<(u64, SyncRecord)>,
        next: SyncRecord,
    ) -> Result<()> {
        let (rev, prev) = match rec {
            Some((r, p)) => (Some(r), Some(p)),
            None => (None, None),
        };
        if prev.as_ref() == Some(&next) {
            return Ok(());
        }
        self.put_record(okey, rev, &next).await?;
        self.core.enqueue_object(&item.gr, item.key.clone());
        let old_deps = prev.map(|p| p.deps).unwrap_or_default();
        if old_deps != next.deps {
            self.requeue_deps(item, old_deps.iter().chain(&next.deps));
        }
        Ok(())
    }

    /// Queues the object reconcile of dependencies (`resource/name`) of
    /// `item`: whether they are still wanted here may have changed.
    fn requeue_deps<'a>(&self, item: &SyncItem, deps: impl Iterator<Item = &'a String>) {
        for d in deps {
            let Some((resource, name)) = d.split_once('/') else {
                continue;
            };
            let Ok(gr) = GroupResource::new("", resource) else {
                continue;
            };
            let key = QueueKey::new(
                item.key.workspace.clone(),
                item.key.namespace.as_deref(),
                name,
            );
            self.core.enqueue_object(&gr, key);
        }
    }

    /// Whether a copy may exist downstream without a record (a copy the
    /// watch saw, or a resource the watch has not listed yet).
    fn maybe_downstream(&self, gr: &GroupResource, ns: &str, name: &str) -> bool {
        if !self
            .listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(gr)
        {
            return true;
        }
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&(gr.clone(), ns.to_string(), name.to_string()))
    }

    /// Removes the copy of an object that is no longer wanted here, its
    /// record, and the namespace if tmc made it and it is now empty.
    async fn remove(
        &self,
        item: &SyncItem,
        okey: &ObjectKey,
        api: &Api<DynamicObject>,
        client: &kube::Client,
        dns: &str,
        rec: Option<(u64, SyncRecord)>,
    ) -> Result<()> {
        let name = item.key.name.as_str();
        let conflict = rec.as_ref().is_some_and(|(_, r)| r.conflict);
        if !conflict {
            let have = self.have(api, &item.gr, dns, name, false).await?;
            let ours = have
                .as_ref()
                .and_then(|h| origin(h, &self.owner))
                .is_some_and(|(w, n, m)| {
                    w == okey.workspace
                        && Some(n.as_str()) == okey.namespace.as_deref()
                        && m == name
                });
            if ours {
                self.take_token().await;
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(e) if is_404(&e) => {}
                    Err(e) => {
                        return Err(self.member_error(format!(
                            "deleting {} {dns}/{name} on {}: {e}",
                            item.gr, self.cluster
                        )))
                    }
                }
                self.observed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(item.gr.clone(), dns.to_string(), name.to_string()));
            }
        }
        if let Some((rev, r)) = rec {
            let key = Key::sync(self.cluster.clone(), okey.clone())?;
            self.core
                .write(Txn::new(vec![TxnOp::delete(
                    key,
                    Expectation::ModRevision(rev),
                )]))
                .await?;
            self.requeue_deps(item, r.deps.iter());
        }
        self.core.enqueue_object(&item.gr, item.key.clone());
        self.cleanup_namespace(client, dns).await;
        Ok(())
    }

    /// Deletes `dns` downstream if tmc made it and no copy is left in it
    /// (known once every watch has listed).
    async fn cleanup_namespace(&self, client: &kube::Client, dns: &str) {
        if self
            .listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            < syncable().len()
        {
            return;
        }
        let empty = !self
            .observed
            .lock()
            .expect("lock")
            .keys()
            .any(|(_, ns, _)| ns == dns);
        if !empty {
            return;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ns_resource());
        match api.get_opt(dns).await {
            Ok(Some(n)) if n.labels().get(LABEL_OWNER) == Some(&self.owner) => {
                self.namespaces
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(dns);
                self.take_token().await;
                if let Err(e) = api.delete(dns, &DeleteParams::background()).await {
                    if !is_404(&e) {
                        tracing::debug!(cluster = %self.cluster, namespace = dns, error = %e, "removing an empty namespace failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(cluster = %self.cluster, namespace = dns, error = %e, "reading a namespace failed")
            }
        }
    }

    async fn ensure_namespace(
        &self,
        client: &kube::Client,
        ws: &Workspace,
        ns: &str,
    ) -> Result<()> {
        let dns = mapping::downstream_namespace(ws, ns);
        if self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&dns)
        {
            return Ok(());
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ns_resource());
        self.take_token().await;
        let obj = mapping::namespace_object(ws, ns, &self.owner);
        api.patch(
            &dns,
            &PatchParams::apply("tmc").force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| {
            self.member_error(format!("creating namespace {dns} on {}: {e}", self.cluster))
        })?;
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dns);
        Ok(())
    }

    /// Records a downstream object; returns the work item of its origin
    /// if it changed.
    fn observe(&self, gr: &GroupResource, v: Value) -> Option<SyncItem> {
        let (ws, ns, name) = origin(&v, &self.owner)?;
        let dns = v["metadata"]["namespace"].as_str()?.to_string();
        let dname = v["metadata"]["name"].as_str()?.to_string();
        let rv = v["metadata"]["resourceVersion"].clone();
        let mut obs = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        let k = (gr.clone(), dns, dname);
        // An answer to our own write can arrive after the watch delivered a
        // newer version (the member's controller updated the status
        // meanwhile): never replace a newer version with an older one, or
        // the status stays stale until the object changes again.
        if obs
            .get(&k)
            .is_some_and(|old| older(&rv, &old["metadata"]["resourceVersion"]))
        {
            return None;
        }
        let same = obs
            .get(&k)
            .is_some_and(|o| o["metadata"]["resourceVersion"] == rv);
        obs.insert(k, Arc::new(v));
        (!same).then(|| SyncItem {
            gr: gr.clone(),
            key: QueueKey::new(ws, Some(&ns), &name),
        })
    }

    fn forget_downstream(&self, gr: &GroupResource, v: &Value) -> Option<SyncItem> {
        let (ws, ns, name) = origin(v, &self.owner)?;
        let k = (
            gr.clone(),
            v["metadata"]["namespace"].as_str()?.to_string(),
            v["metadata"]["name"].as_str()?.to_string(),
        );
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&k);
        Some(SyncItem {
            gr: gr.clone(),
            key: QueueKey::new(ws, Some(&ns), &name),
        })
    }

    /// One watch per syncable resource on the cluster, selected by the
    /// owner label; started once a client can be built.
    async fn watch_all(self: Arc<Self>) {
        let client = loop {
            match self.client().await {
                Ok((c, _)) => break c,
                Err(e) => {
                    tracing::debug!(cluster = %self.cluster, error = %e, "no client for the cluster yet");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let watches = syncable()
            .into_iter()
            .map(|k| Box::pin(self.clone().watch(client.clone(), k)) as BoxFuture<'static, ()>);
        futures::future::join_all(watches).await;
    }

    async fn watch(self: Arc<Self>, client: kube::Client, kind: Kind) {
        use kube::runtime::WatchStreamExt;
        let api: Api<DynamicObject> = Api::all_with(client, &api_resource(&kind));
        let cfg = watcher::Config::default().labels(&format!("{LABEL_OWNER}={}", self.owner));
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(cluster = %self.cluster, resource = %kind.gr, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            let to_value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(o) => {
                    let v = to_value(o);
                    seen.insert((
                        v["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                        v["metadata"]["name"].as_str().unwrap_or_default().into(),
                    ));
                    if let Some(item) = self.observe(&kind.gr, v) {
                        self.queue.add(item);
                    }
                }
                watcher::Event::InitDone => {
                    let gone: Vec<Arc<Value>> = {
                        let obs = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
                        obs.iter()
                            .filter(|((g, ns, n), _)| {
                                *g == kind.gr && !seen.contains(&(ns.clone(), n.clone()))
                            })
                            .map(|(_, v)| v.clone())
                            .collect()
                    };
                    for v in gone {
                        if let Some(item) = self.forget_downstream(&kind.gr, &v) {
                            self.queue.add(item);
                        }
                    }
                    self.listed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(kind.gr.clone());
                }
                watcher::Event::Apply(o) => {
                    if let Some(item) = self.observe(&kind.gr, to_value(o)) {
                        self.queue.add(item);
                    }
                }
                watcher::Event::Delete(o) => {
                    if let Some(item) = self.forget_downstream(&kind.gr, &to_value(o)) {
                        self.queue.add(item);
                    }
                }
            }
        }
    }
}

/// Whether resourceVersion `rv` is older than `have`. resourceVersions are
/// opaque, but a kube-apiserver's are etcd revisions: compared only when
/// both are numbers (anything else is not older).
fn older(rv: &Value, have: &Value) -> bool {
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    matches!((number(rv), number(have)), (Some(new), Some(old)) if new < old)
}

#[cfg(test)]
mod tests {
    use super::older;
    use serde_json::json;

    #[test]
    fn an_older_resource_version_never_replaces_a_newer_one() {
        assert!(older(&json!("100"), &json!("105")));
        assert!(!older(&json!("105"), &json!("100")));
        assert!(!older(&json!("105"), &json!("105")));
        // Not numbers: no order is assumed.
        assert!(!older(&json!("abc"), &json!("105")));
        assert!(!older(&json!(null), &json!("105")));
    }
}
