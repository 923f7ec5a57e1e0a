//! Which shard holds a workspace: the directory the Workspaces form,
//! walked level by level, with a bounded cache of answers.
//!
//! `root:a:b`: the root shard holds Workspace `a` (in `root`), whose
//! `spec.shard` names the shard of `root:a` (absent: the parent's own
//! shard, as every workspace of a one-shard deployment); that shard holds
//! Workspace `b`, whose `spec.shard` names the shard of `root:a:b`. A
//! resolution starts from the longest cached ancestor and asks one shard
//! per level below it (a GET of one Workspace, as the proxy's own user).
//! Nobody holds the whole directory.
//!
//! The cache maps a workspace path to its shard, holds at most
//! `capacity` entries and drops the least recently used. An entry is
//! dropped when the shard it names answers that the workspace is not its
//! own ([`Resolver::forget`]); a workspace that does not exist is never
//! cached (it may be created the next moment). Shard names map to URLs
//! through the shards given at start (`--root-shard`, `--shard
//! NAME=URL`) and the registry: a Shard object in `root` names the URL of
//! any other shard ([`Resolver::shard_named`]); a learned URL that does
//! not answer is read again ([`Resolver::forget_shard`]). A 421 while
//! walking (an ancestor's cached shard no longer holds it) drops the
//! chain and walks again from root.
//!
//! Left out: a TTL on entries (a workspace's shard changes only by
//! deletion and re-creation, which the shard's "not mine" answer
//! repairs), and collapsing concurrent resolutions of one path into one.

use super::upstream::{Upstream, UpstreamError};
use crate::store::Workspace;
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{Method, Request, StatusCode};
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// The user the proxy resolves as (with group `system:masters`: the proxy
/// can name any user to a shard anyway, so this adds no power).
pub const RESOLVER_USER: &str = "system:tmc:front-proxy";

/// Bound on a Workspace object read while resolving.
const MAX_WORKSPACE_BYTES: usize = 1 << 20;

/// A shard: its name and the base URL of its API (`https://host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRef {
    /// The shard's name (`tmc serve --shard`).
    pub name: String,
    /// Its API's base URL, without a trailing slash; several, comma
    /// separated, are tried in order (the replicas of a shard without a
    /// Service in front).
    pub url: String,
}

impl ShardRef {
    /// Its URLs, in the order to try them.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

/// Why a workspace has no shard to go to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// A level of the path does not exist.
    #[error("workspace {0:?} does not exist")]
    NotFound(String),
    /// A shard on the way did not answer.
    #[error("shard {shard:?} is unavailable: {why}")]
    Unavailable {
        /// The shard.
        shard: String,
        /// What happened.
        why: String,
    },
    /// A shard asked about a workspace's child does not hold the
    /// workspace (the route to it was stale).
    #[error("workspace {0:?} is not where the route said")]
    Misdirected(String),
    /// A Workspace names a shard the proxy does not know.
    #[error("workspace {workspace:?} is on shard {shard:?}, which is not in the proxy's registry")]
    UnknownShard {
        /// The workspace.
        workspace: String,
        /// The shard it names.
        shard: String,
    },
}

/// Resolves workspace paths to shards.
pub struct Resolver {
    root: ShardRef,
    /// Shards given at start: always known.
    shards: HashMap<String, ShardRef>,
    /// Shards learned from the registry (Shard objects in `root`),
    /// dropped when they do not answer.
    learned: Mutex<HashMap<String, ShardRef>>,
    cache: Mutex<LruCache<String, ShardRef>>,
    upstream: Arc<Upstream>,
}

impl Resolver {
    /// A resolver with the root shard, the other shards by name, and a
    /// cache of at most `capacity` workspaces.
    pub fn new(
        root: ShardRef,
        others: Vec<ShardRef>,
        capacity: NonZeroUsize,
        upstream: Arc<Upstream>,
    ) -> Self {
        let mut shards: HashMap<String, ShardRef> =
            others.into_iter().map(|s| (s.name.clone(), s)).collect();
        shards.insert(root.name.clone(), root.clone());
        Resolver {
            root,
            shards,
            learned: Mutex::new(HashMap::new()),
            cache: Mutex::new(LruCache::new(capacity)),
            upstream,
        }
    }

    /// The root shard.
    pub fn root(&self) -> &ShardRef {
        &self.root
    }

    /// How many workspaces the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn cached_shard(&self, ws: &str) -> Option<ShardRef> {
        self.cache.lock().ok()?.get(ws).cloned()
    }

    fn remember(&self, ws: &str, shard: &ShardRef) {
        if let Ok(mut c) = self.cache.lock() {
            c.put(ws.to_string(), shard.clone());
        }
    }

    /// Drops what the cache says about `ws` (its shard said it is not
    /// its own).
    pub fn forget(&self, ws: &Workspace) {
        if let Ok(mut c) = self.cache.lock() {
            c.pop(ws.as_str());
        }
    }

    /// The shard of `ws`.
    pub async fn resolve(&self, ws: &Workspace) -> Result<ShardRef, ResolveError> {
        match self.resolve_once(ws).await {
            // A cached ancestor's shard no longer holds it: forget the
            // chain and walk it again from root.
            Err(ResolveError::Misdirected(_)) => {
                let mut at = Some(ws.clone());
                while let Some(w) = at {
                    self.forget(&w);
                    at = w.parent();
                }
                self.resolve_once(ws).await.map_err(|e| match e {
                    ResolveError::Misdirected(path) => ResolveError::NotFound(path),
                    e => e,
                })
            }
            r => r,
        }
    }

    async fn resolve_once(&self, ws: &Workspace) -> Result<ShardRef, ResolveError> {
        // The chain from the workspace up to the longest cached ancestor
        // (or root, which is always on the root shard).
        let mut pending = Vec::new();
        let mut at = ws.clone();
        let mut shard = loop {
            let Some(parent) = at.parent() else {
                break self.root.clone();
            };
            if let Some(s) = self.cached_shard(at.as_str()) {
                break s;
            }
            pending.push((at, parent.clone()));
            at = parent;
        };
        // Down again, one level per shard asked.
        while let Some((child, parent)) = pending.pop() {
            shard = self.child_shard(&shard, &parent, &child).await?;
            self.remember(child.as_str(), &shard);
        }
        Ok(shard)
    }

    /// Forgets what the registry said of shard `name` (it did not
    /// answer: a new leader may have registered another address); `true`
    /// if it was learned from the registry.
    pub fn forget_shard(&self, name: &str) -> bool {
        self.learned
            .lock()
            .map(|mut l| l.remove(name).is_some())
            .unwrap_or(false)
    }

    /// The shard named `name`: given at start, learned, or read from the
    /// registry in `root` (its `spec.baseURL`).
    pub async fn shard_named(&self, name: &str) -> Result<ShardRef, ResolveError> {
        if name == self.root.name {
            return Ok(self.root.clone());
        }
        if let Some(s) = self.shards.get(name) {
            return Ok(s.clone());
        }
        if let Some(s) = self.learned.lock().ok().and_then(|l| l.get(name).cloned()) {
            return Ok(s);
        }
        let unavailable = |why: String| ResolveError::Unavailable {
            shard: self.root.name.clone(),
            why,
        };
        let (status, body) = self
            .get(
                &self.root,
                &format!("/clusters/root/apis/core.kcp.io/v1alpha1/shards/{name}"),
            )
            .await?;
        let unknown = || ResolveError::UnknownShard {
            workspace: String::new(),
            shard: name.into(),
        };
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(unknown()),
            s => {
                return Err(unavailable(format!(
                    "answered {s} to the lookup of shard {name:?}"
                )))
            }
        }
        let obj: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("a Shard that is not JSON: {e}")))?;
        let url = obj
            .pointer("/spec/baseURL")
            .and_then(|v| v.as_str())
            .filter(|u| u.starts_with("https://"))
            .ok_or_else(unknown)?;
        let shard = ShardRef {
            name: name.into(),
            url: url.trim_end_matches('/').to_string(),
        };
        if let Ok(mut l) = self.learned.lock() {
            // The registry is one object per shard: small, but bounded
            // anyway against a flood of names.
            if l.len() >= 10_000 {
                l.clear();
            }
            l.insert(name.into(), shard.clone());
        }
        Ok(shard)
    }

    /// A GET of `path` on `shard` as the proxy's own user (each of its
    /// URLs in turn until one answers).
    async fn get(&self, shard: &ShardRef, path: &str) -> Result<(StatusCode, Bytes), ResolveError> {
        let mut last = String::from("no URL");
        for base in shard.urls() {
            let uri = format!("{base}{path}");
            let req = Request::builder()
                .method(Method::GET)
                .uri(&uri)
                .header("accept", "application/json")
                .header(crate::api::authn::REMOTE_USER, RESOLVER_USER)
                .header(crate::api::authn::REMOTE_GROUP, crate::authz::MASTERS)
                .body(Full::new(Bytes::new()))
                .map_err(|e| ResolveError::Unavailable {
                    shard: shard.name.clone(),
                    why: format!("bad request {uri:?}: {e}"),
                })?;
            match self.upstream.fetch(req, MAX_WORKSPACE_BYTES).await {
                Ok(answer) => return Ok(answer),
                Err(e @ (UpstreamError::Connect(_) | UpstreamError::Timeout(_))) => {
                    last = e.to_string()
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(ResolveError::Unavailable {
            shard: shard.name.clone(),
            why: last,
        })
    }

    /// Asks `parent_shard` (which holds `parent`) where its child `child`
    /// lives.
    async fn child_shard(
        &self,
        parent_shard: &ShardRef,
        parent: &Workspace,
        child: &Workspace,
    ) -> Result<ShardRef, ResolveError> {
        let unavailable = |why: String| ResolveError::Unavailable {
            shard: parent_shard.name.clone(),
            why,
        };
        let (status, body) = self
            .get(
                parent_shard,
                &format!(
                    "/clusters/{}/apis/tenancy.kcp.io/v1alpha1/workspaces/{}",
                    parent.as_str(),
                    child.base()
                ),
            )
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(ResolveError::NotFound(child.as_str().into())),
            StatusCode::MISDIRECTED_REQUEST => {
                return Err(ResolveError::Misdirected(parent.as_str().into()))
            }
            s => {
                return Err(unavailable(format!(
                    "answered {s} to the lookup of workspace {:?}",
                    child.as_str()
                )))
            }
        }
        let obj: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("a Workspace that is not JSON: {e}")))?;
        match obj.pointer("/spec/shard").and_then(|v| v.as_str()) {
            None | Some("") => Ok(parent_shard.clone()),
            Some(name) if name == parent_shard.name => Ok(parent_shard.clone()),
            Some(name) => self.shard_named(name).await.map_err(|e| match e {
                ResolveError::UnknownShard { shard, .. } => ResolveError::UnknownShard {
                    workspace: child.as_str().into(),
                    shard,
                },
                e => e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str) -> ShardRef {
        ShardRef {
            name: name.into(),
            url: format!("https://{name}.invalid:6443"),
        }
    }

    fn resolver(capacity: usize) -> Resolver {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::api::tls::ensure_material(dir.path(), &[]).unwrap();
        let upstream = Arc::new(Upstream::new(&files).unwrap());
        Resolver::new(
            shard("root"),
            vec![shard("two")],
            NonZeroUsize::new(capacity).unwrap(),
            upstream,
        )
    }

    fn ws(p: &str) -> Workspace {
        Workspace::parse(p).unwrap()
    }

    #[tokio::test]
    async fn root_needs_no_lookup_and_cached_paths_need_none() {
        let r = resolver(2);
        assert_eq!(r.resolve(&ws("root")).await.unwrap(), shard("root"));
        r.remember("root:a", &shard("two"));
        // Cached: no shard is asked (the URLs do not resolve, so a lookup
        // would fail).
        assert_eq!(r.resolve(&ws("root:a")).await.unwrap(), shard("two"));
        // A child of a cached path asks the cached path's shard, which is
        // unreachable here: the error names that shard.
        match r.resolve(&ws("root:a:b")).await {
            Err(ResolveError::Unavailable { shard, .. }) => assert_eq!(shard, "two"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_forgets_on_request() {
        let r = resolver(2);
        r.remember("root:a", &shard("two"));
        r.remember("root:b", &shard("two"));
        r.remember("root:c", &shard("root"));
        assert_eq!(r.cached(), 2, "the least recently used entry goes");
        assert!(r.cached_shard("root:a").is_none());
        r.forget(&ws("root:c"));
        assert!(r.cached_shard("root:c").is_none());
        assert_eq!(r.cached(), 1);
        // Forgetting one path keeps its children's entries: each maps a
        // full path to its own shard.
        r.remember("root:b:x", &shard("root"));
        r.forget(&ws("root:b"));
        assert_eq!(r.cached_shard("root:b:x"), Some(shard("root")));
    }
}
