//! One client's watch: the state first if asked for, then the changes
//! from the change log up to where the hub of [`crate::api::watch`] took
//! over, then the hub's changes with bookmarks, each as a line of JSON.
//! (The hub, one reader of the change log per replica fanning out to
//! every watch, is `api/watch.rs`; this is one of its subscribers.)

use super::params::{ResourceVersion, WatchOptions};
use super::{storage_error, workspace_and_namespace_of, ObjectApi};
use crate::api::object::for_response;
use crate::api::request::{ResourceRequest, WorkspaceSel};
use crate::api::resources::ResourceInfo;
use crate::api::status::{ApiError, ApiResult};
use crate::api::watch;
use crate::store::{ListOptions, Prefix};
use serde_json::{json, Value};
use std::sync::Arc;

/// One event of a watch stream.
fn event(kind: &str, object: Value) -> Value {
    json!({ "type": kind, "object": object })
}

/// A watch: the events to send, produced until the stream should end.
pub struct WatchStream {
    /// Events, already encoded as lines of JSON.
    pub rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

/// A stream of one ERROR event (kube-apiserver's answer to a watch that
/// fails after its parameters were accepted).
fn error_stream(e: ApiError) -> WatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let _ = tx.try_send(line(event("ERROR", e.to_status())));
    WatchStream { rx }
}

/// What the watch loop does after handling one change.
enum Step {
    Go,
    /// The client went away, or an ERROR event ended the stream.
    Stop,
}

impl ObjectApi {
    /// Starts a watch; events flow on the returned stream until the
    /// timeout, an error event, or the client going away.
    ///
    /// resourceVersion semantics, as kube-apiserver's watch cache: none is
    /// "from now" (after a linearizable read point), `0` is "from any
    /// state" (this replica's), `N` is "every change after N". N in this
    /// replica's future is accepted without waiting and changes up to N
    /// are not sent (they are the ones the client saw where it got N), as
    /// the cacher does; with `sendInitialEvents=true` the state must be at
    /// least N: the watch waits up to 3 s for it, then ends with an ERROR
    /// event, 504 Timeout with cause ResourceVersionTooLarge.
    pub async fn watch(
        self: &Arc<Self>,
        req: &ResourceRequest,
        ws: &WorkspaceSel,
        opts: &WatchOptions,
    ) -> ApiResult<WatchStream> {
        let initial = opts.send_initial_events;
        let prefix = Self::list_prefix(req, ws)?;
        let want_ns = match ws {
            WorkspaceSel::All => req.namespace.clone(),
            WorkspaceSel::One(_) => None,
        };
        // Where the stream starts, and whether it starts with the state.
        let (start, send_state) = match (&opts.resource_version, initial) {
            (ResourceVersion::Latest, _) => (
                self.shard.barrier().await.map_err(storage_error)?,
                initial != Some(false),
            ),
            (ResourceVersion::Any, _) => (self.shard.revision(), initial != Some(false)),
            (rv, Some(true)) => match self.wait_for(rv.revision()?.unwrap_or(0)).await {
                Ok(at) => (at, true),
                Err(e) => return Ok(error_stream(e)),
            },
            (rv, _) => (rv.revision()?.unwrap_or(0), false),
        };
        let one = match ws {
            WorkspaceSel::One(w) => Some(w.clone()),
            WorkspaceSel::All => None,
        };
        let sub = self.hub.subscribe_in(prefix.clone(), one.clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
        let api = self.clone();
        let info = req.info;
        // Selectors see the stored object (labels, name, namespace are
        // as stored); only matching objects are copied for the client.
        let (labels, fields) = (opts.labels.clone(), opts.fields.clone());
        let matches = move |obj: &Value, ns: &Option<String>| -> bool {
            (want_ns.is_none() || *ns == want_ns)
                && labels.matches_object(obj)
                && fields.matches(obj)
        };
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let bookmarks = opts.bookmarks;
        tokio::spawn(async move {
            let run = api.run_watch(
                WatchRun {
                    info,
                    prefix,
                    workspace: one,
                    start,
                    send_state,
                    initial,
                    bookmarks,
                    tx,
                },
                sub,
                &matches,
            );
            // The deadline ends the stream wherever it is waiting (a
            // client that does not read blocks sends too).
            let _ = tokio::time::timeout_at(deadline, run).await;
        });
        Ok(WatchStream { rx })
    }

    /// The body of one watch: the state if asked for, the changes from the
    /// log up to the hub's position, then the hub's changes and bookmarks
    /// (see [`crate::api::watch`] for why bookmarks never pass a change).
    async fn run_watch(
        &self,
        w: WatchRun,
        mut sub: watch::Subscription,
        matches: &(impl Fn(&Value, &Option<String>) -> bool + Sync),
    ) {
        let tx = &w.tx;
        // The watch's position: changes up to the start are not sent.
        let mut pos = Position::at(w.start);
        // 1. The state, when asked for.
        if w.send_state {
            let mut token = None;
            loop {
                let page = match self.shard.list(
                    &w.prefix,
                    &ListOptions {
                        limit: 500,
                        continue_token: token.clone(),
                        revision: Some(w.start),
                    },
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx
                            .send(line(event("ERROR", ApiError::from(e).to_status())))
                            .await;
                        return;
                    }
                };
                for rec in &page.items {
                    if let Some((ws, ns)) = workspace_and_namespace_of(rec) {
                        let Ok(obj) = serde_json::from_slice::<Value>(&rec.value) else {
                            continue;
                        };
                        if matches(&obj, &ns) {
                            let obj = for_response(obj, rec.mod_revision, &ws);
                            if tx.send(line(event("ADDED", obj))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                token = page.continue_token;
                if token.is_none() {
                    break;
                }
            }
            if w.initial == Some(true) {
                let b = bookmark(w.info, w.start, true);
                if tx.send(line(event("BOOKMARK", b))).await.is_err() {
                    return;
                }
            }
        }
        let mut tick = tokio::time::interval(self.bookmark_interval);
        tick.tick().await;
        loop {
            // 2. Changes up to the hub's position, from the log.
            if pos.done < sub.from {
                let mut after = pos.done;
                while after < sub.from {
                    let chs = match crate::shard::read_whole_revisions(self.shard.as_ref(), after) {
                        Ok(chs) if chs.is_empty() => break,
                        Ok(chs) => chs,
                        Err(e) => {
                            let _ = tx
                                .send(line(event("ERROR", ApiError::from(e).to_status())))
                                .await;
                            return;
                        }
                    };
                    // Sent as read, so a long replay does not pile up.
                    for c in chs {
                        after = c.revision;
                        if c.revision > sub.from || !w.prefix.contains(&c.key) {
                            continue;
                        }
                        if let Some(d) = watch::Decoded::new(c) {
                            if let Step::Stop = send_change(tx, &d, &mut pos, matches).await {
                                return;
                            }
                        }
                    }
                }
                pos.complete(sub.from);
            } else if self.shard.compacted_revision() > pos.done {
                let e = ApiError::expired(format!(
                    "too old resource version: {} ({})",
                    pos.done,
                    self.shard.compacted_revision()
                ));
                let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                return;
            }
            // 3. Live changes from the hub, with bookmarks.
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    c = sub.rx.recv() => {
                        let Some(c) = c else { break };
                        if let Step::Stop = send_change(tx, &c, &mut pos, matches).await {
                            return;
                        }
                    }
                    _ = tick.tick(), if w.bookmarks => {
                        // A bookmark never passes a change not yet sent;
                        // a watch the hub dropped gets none.
                        let Some((through, queued)) = sub.progress() else { continue };
                        for c in queued {
                            if let Step::Stop = send_change(tx, &c, &mut pos, matches).await {
                                return;
                            }
                        }
                        pos.complete(through);
                        let b = bookmark(w.info, pos.done, false);
                        if tx.send(line(event("BOOKMARK", b))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The hub stopped feeding this watch, and its channel is
            // drained: it handed over whole revisions, so the last one sent
            // is complete.
            pos.complete(pos.sent);
            match sub.ended() {
                Some(watch::Ended::Expired { oldest, .. })
                    if oldest <= pos.done && self.shard.compacted_revision() <= pos.done =>
                {
                    // The hub fell out of the change log, but this watch
                    // is still inside it: subscribe again and replay.
                    sub = self.hub.subscribe_in(w.prefix.clone(), w.workspace.clone());
                    continue;
                }
                Some(watch::Ended::Expired { oldest, .. }) => {
                    let e = ApiError::expired(format!(
                        "too old resource version: {} ({})",
                        pos.done,
                        oldest.max(self.shard.compacted_revision())
                    ));
                    let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                    return;
                }
                Some(watch::Ended::Gone(msg)) => {
                    let _ = tx
                        .send(line(event("ERROR", ApiError::expired(msg).to_status())))
                        .await;
                    return;
                }
                Some(watch::Ended::Failed(msg)) => {
                    let e = ApiError::internal(msg);
                    let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                    return;
                }
                // Too slow (or the hub stopped): the stream ends; the
                // client re-watches from the last resourceVersion it saw.
                Some(watch::Ended::TooSlow) | None => return,
            }
        }
    }
}

/// What [`ObjectApi::run_watch`] needs besides the subscription.
struct WatchRun {
    info: &'static ResourceInfo,
    prefix: Prefix,
    workspace: Option<crate::store::Workspace>,
    start: u64,
    send_state: bool,
    initial: Option<bool>,
    bookmarks: bool,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// One event as a line of JSON.
fn line(v: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Where a watch is: every change under its prefix up to `done` was sent
/// (or did not match); changes of `sent`, the latest revision sent, may
/// still follow (one revision's changes come one by one, always whole).
struct Position {
    done: u64,
    sent: u64,
}

impl Position {
    fn at(rev: u64) -> Position {
        Position {
            done: rev,
            sent: rev,
        }
    }

    /// Every change up to `rev` was handled.
    fn complete(&mut self, rev: u64) {
        self.done = self.done.max(rev);
        self.sent = self.sent.max(self.done);
    }
}

/// Sends the event of one change after the position (if it matches) and
/// moves the position; a change that cannot be read ends the stream with
/// an ERROR event naming why.
async fn send_change(
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
    d: &watch::Decoded,
    pos: &mut Position,
    matches: &impl Fn(&Value, &Option<String>) -> bool,
) -> Step {
    let rev = d.change.revision;
    if rev <= pos.done {
        return Step::Go;
    }
    // Changes arrive in revision order: the revisions before this one are
    // complete.
    pos.complete(rev - 1);
    if let Some(why) = &d.error {
        let e = ApiError::internal(why.clone());
        let _ = tx.send(line(event("ERROR", e.to_status()))).await;
        return Step::Stop;
    }
    if let Some(ev) = change_event(d, matches) {
        if tx.send(line(ev)).await.is_err() {
            return Step::Stop;
        }
    }
    pos.sent = rev;
    Step::Go
}

fn bookmark(info: &ResourceInfo, revision: u64, initial_end: bool) -> Value {
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": meta })
}

/// The event a change makes for a watch with `filter`: a change that
/// makes an object match is ADDED, one that makes it stop matching is
/// DELETED, as with kube-apiserver's watch cache.
fn change_event(
    d: &watch::Decoded,
    matches: &impl Fn(&Value, &Option<String>) -> bool,
) -> Option<Value> {
    let rev = d.change.revision;
    let old = d.old.as_ref().filter(|o| matches(o, &d.namespace));
    match &d.new {
        Some(new) => {
            let out = || for_response(new.clone(), rev, &d.workspace);
            match (old.is_some(), matches(new, &d.namespace)) {
                (true, true) => Some(event("MODIFIED", out())),
                (false, true) => Some(event("ADDED", out())),
                // Stopped matching: deleted from this watch's view.
                (true, false) => Some(event("DELETED", out())),
                (false, false) => None,
            }
        }
        None => old.map(|o| event("DELETED", for_response(o.clone(), rev, &d.workspace))),
    }
}
