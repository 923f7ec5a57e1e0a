//! The internal HTTP interface of a replica (axum, JSON): the KV interface,
//! raw transactions, forwarded writes, status and membership. [`router`]
//! builds it; [`internal::serve`](super::internal::serve) serves it
//! (mutual TLS between replicas and the operator, or plain TCP with
//! `--insecure-peers`) and tells each request who sent it.
//!
//! **Routes.**
//! - `PUT /kv/{workspace}/{namespace}/{name}` stores the body (the value,
//!   raw bytes, shown as UTF-8) as the object `{name}` of a namespaced
//!   resource; `GET` reads it (`?consistency=linearizable|local`,
//!   linearizable by default: a read point first, then the local store),
//!   `DELETE` deletes it. `GET /kv/{workspace}` lists the workspace's
//!   objects of the resource (`?limit=`). The resource is `?resource=`,
//!   `RESOURCE` for the core group or `RESOURCE.GROUP` (`secrets`,
//!   `deployments.apps`); `configmaps` when absent, which is what `tmc kv`
//!   uses. The key is the one the API stores that object under
//!   (`/registry/{group}/{resource}/{workspace}/{namespace}/{name}`): a
//!   write here bypasses the API's validation, as `POST /txn` does, which
//!   is why the interface takes the peer CA's certificates only;
//! - `POST /txn` takes a JSON [`Txn`] (any keys, preconditions);
//! - `GET /status`: id, role, leader, term, commit, applied, revision,
//!   voters, ready ([`StatusReport`]);
//! - `POST /members/{id}`, `DELETE /members/{id}`: add or remove a voter
//!   (forwarded to the leader like writes; see the `members` module),
//!   `GET /members`: the voters;
//! - `POST /internal/txn`: a write forwarded by a replica, which names
//!   itself in [`internal::FROM`](super::internal::FROM) (see
//!   [`internal::check_claims`](super::internal::check_claims) and the
//!   `forward` module).
//!
//! **Answers.** A write on a follower is forwarded once to the leader's
//! `POST /internal/txn` (its address from `--kv-peers`) and its answer
//! passed back; 502 if forwarding fails (the outcome is then unknown). With
//! the [`NO_FORWARD`] header (set on forwarded requests), or when the
//! leader's address is unknown, a follower answers 503 `not leader; leader
//! is N at ADDR` with `leader` and `leader_addr` in the JSON body instead.
//! No leader known: 503 `no leader`; a replica with [`CLIENT_INFLIGHT`]
//! requests in flight: 503 `the replica is busy` at once; a timeout or lost
//! leadership: 504 (a write's outcome is then unknown); a failed
//! precondition or an invalid name: 409; a malformed path or parameter:
//! 400. Errors are JSON `{"error": ...}`.
//!
//! Left out: watches, pagination (`limit` cuts a list short without a
//! continue token), cluster-scoped objects and content types (values are
//! stored with the raw encoding tag).
//!
//! [`CLIENT_INFLIGHT`]: super::CLIENT_INFLIGHT

use super::super::Error;
use super::event_loop::{CallError, Input, StatusReport};
use super::forward::WireError;
use super::members;
use super::shard::RaftShard;
use crate::shard::ShardError;
use crate::store::{
    Engine, Expectation, GroupResource, Key, ListOptions, ObjectKey, OpResult, Prefix, Record, Txn,
    TxnOp, Workspace,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};

/// Header that stops a write from being forwarded to the leader: set on
/// forwarded requests (one hop at most) and by clients that want the 503.
pub const NO_FORWARD: &str = "x-tmc-no-forward";

/// The resource of the KV interface when a request names none.
pub const DEFAULT_RESOURCE: &str = "configmaps";

/// A read of the KV interface.
#[derive(Debug)]
pub enum ReadOp {
    /// One key.
    Get(Key),
    /// A prefix, at most `limit` items (0: all).
    List(Prefix, usize),
}

/// What a read returns.
#[derive(Debug)]
pub enum ReadResult {
    /// The record, if any, and the store revision.
    Get(Option<Record>, u64),
    /// The records and the revision they are consistent at.
    List(Vec<Record>, u64),
}

/// The resource a KV request is about (`?resource=`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ResourceParam {
    /// `RESOURCE` or `RESOURCE.GROUP`; [`DEFAULT_RESOURCE`] when absent.
    pub resource: Option<String>,
}

/// The parameters of a KV read.
#[derive(Debug, serde::Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `local`.
    pub consistency: Option<String>,
    /// At most this many items in a list.
    pub limit: Option<usize>,
    /// `RESOURCE` or `RESOURCE.GROUP`; [`DEFAULT_RESOURCE`] when absent.
    pub resource: Option<String>,
}

/// A record as JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct KvRecord {
    /// The key, as text.
    pub key: String,
    /// The value, as UTF-8 text.
    pub value: String,
    /// Revision that created the key.
    pub create_revision: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
}

fn kv_record(r: Record) -> KvRecord {
    KvRecord {
        key: Key::decode(&r.key)
            .map(|k| k.to_string())
            .unwrap_or_else(|| String::from_utf8_lossy(&r.key).into_owned()),
        value: String::from_utf8_lossy(&r.value).into_owned(),
        create_revision: r.create_revision,
        mod_revision: r.mod_revision,
    }
}

/// A JSON error answer, naming the leader when it is known.
pub(super) fn http_error(
    status: StatusCode,
    msg: String,
    leader: Option<(u64, Option<String>)>,
) -> HttpResponse {
    let mut body = serde_json::json!({ "error": msg });
    if let Some((id, addr)) = leader {
        body["leader"] = serde_json::json!(id);
        body["leader_addr"] = serde_json::json!(addr);
    }
    (status, Json(body)).into_response()
}

/// The answer to a request raft refused or failed.
pub(super) fn raft_error<E: Engine>(h: &RaftShard<E>, e: Error) -> HttpResponse {
    match e {
        Error::NotLeader { leader: Some(l) } => {
            let addr = h.kv_peers.get(&l).cloned();
            let msg = format!(
                "not leader; leader is {l} at {}",
                addr.as_deref().unwrap_or("an unknown address")
            );
            http_error(StatusCode::SERVICE_UNAVAILABLE, msg, Some((l, addr)))
        }
        Error::NotLeader { leader: None } | Error::NoLeader => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::NoLeader.to_string(),
            None,
        ),
        e @ (Error::Timeout { .. } | Error::LeadershipLost) => {
            http_error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), None)
        }
        e @ Error::Store(
            crate::store::Error::Conflict { .. } | crate::store::Error::InvalidName(_),
        ) => http_error(StatusCode::CONFLICT, e.to_string(), None),
        e => http_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

/// The answer to a request the event loop did not take.
pub(super) fn call_error(e: CallError) -> HttpResponse {
    let code = match e {
        CallError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    http_error(code, e.to_string(), None)
}

fn wire_error_response<E: Engine>(h: &RaftShard<E>, e: WireError) -> HttpResponse {
    match e {
        WireError::NotLeader(leader) => raft_error(h, Error::NotLeader { leader }),
        WireError::Timeout(m) => http_error(StatusCode::GATEWAY_TIMEOUT, m, None),
        WireError::Forward(m) => http_error(StatusCode::BAD_GATEWAY, m, None),
        WireError::Busy(m) => http_error(StatusCode::SERVICE_UNAVAILABLE, m, None),
        e @ WireError::Conflict { .. } => {
            http_error(StatusCode::CONFLICT, ShardError::from(e).to_string(), None)
        }
        WireError::Invalid(m) => http_error(StatusCode::CONFLICT, m, None),
        WireError::Internal(m) => http_error(StatusCode::INTERNAL_SERVER_ERROR, m, None),
    }
}

/// A refused request: status and message.
type Bad = (StatusCode, String);

/// The resource `?resource=` names: `RESOURCE` (core group) or
/// `RESOURCE.GROUP`, [`DEFAULT_RESOURCE`] when absent.
fn resource(param: Option<&str>) -> Result<GroupResource, Bad> {
    let s = param.unwrap_or(DEFAULT_RESOURCE);
    let bad = |why: String| (StatusCode::BAD_REQUEST, format!("resource {s:?}: {why}"));
    let (resource, group) = match s.split_once('.') {
        Some((_, "")) => return Err(bad("the group after '.' is empty".into())),
        Some(split) => split,
        None => (s, ""),
    };
    GroupResource::new(group, resource).map_err(|e| bad(e.to_string()))
}

fn object_key(gr: GroupResource, ws: &str, ns: &str, name: &str) -> Result<Key, Bad> {
    let ws = Workspace::parse(ws).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    ObjectKey::namespaced(gr, ws, ns, name)
        .map(Key::from)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

fn linearizable(p: &ReadParams) -> Result<bool, Bad> {
    match p.consistency.as_deref() {
        None | Some("linearizable") => Ok(true),
        Some("local") => Ok(false),
        Some(other) => Err((
            StatusCode::BAD_REQUEST,
            format!("consistency must be linearizable or local, not {other}"),
        )),
    }
}

/// Whether a request may be forwarded to the leader (no [`NO_FORWARD`]).
pub(super) fn forward_allowed(headers: &axum::http::HeaderMap) -> bool {
    !headers.contains_key(NO_FORWARD)
}

async fn write<E: Engine>(h: &RaftShard<E>, txn: Txn, forward: bool) -> HttpResponse {
    match h.write_txn(txn, forward).await {
        Err(e) => wire_error_response(h, e),
        Ok(c) => {
            let deleted = c
                .results
                .iter()
                .any(|r| matches!(r, OpResult::Deleted(Some(_))));
            Json(serde_json::json!({ "revision": c.revision, "deleted": deleted })).into_response()
        }
    }
}

/// Reads the local store, after a linearizable read point when `lin`;
/// the store is read here, never on the event loop.
async fn read<E: Engine>(
    h: &RaftShard<E>,
    op: ReadOp,
    lin: bool,
) -> Result<ReadResult, HttpResponse> {
    if lin {
        match h.call(Input::Barrier).await {
            Err(e) => return Err(call_error(e)),
            Ok(Err(e)) => return Err(raft_error(h, e)),
            Ok(Ok(())) => {}
        }
    }
    let store = |e: crate::store::Error| raft_error(h, Error::Store(e));
    match op {
        ReadOp::Get(key) => {
            // The revision first: the record is at least as new.
            let revision = h.store().revision();
            Ok(ReadResult::Get(
                h.store().get(&key).map_err(store)?,
                revision,
            ))
        }
        ReadOp::List(prefix, limit) => {
            let page = h
                .store()
                .list(
                    &prefix,
                    &ListOptions {
                        limit,
                        ..Default::default()
                    },
                )
                .map_err(store)?;
            Ok(ReadResult::List(page.items, page.revision))
        }
    }
}

/// The key a KV request names, or the 400 that says why not.
fn request_key(param: Option<&str>, (ws, ns, name): &(String, String, String)) -> Result<Key, Bad> {
    resource(param).and_then(|gr| object_key(gr, ws, ns, name))
}

async fn put_key<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<ResourceParam>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpResponse {
    let key = match request_key(p.resource.as_deref(), &path) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let op = TxnOp::Put {
        key,
        encoding: crate::store::EncodingTag::Raw,
        value: body.to_vec(),
        expect: Expectation::Any,
    };
    write(&h, Txn::new(vec![op]), forward_allowed(&headers)).await
}

async fn delete_key<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<ResourceParam>,
    headers: axum::http::HeaderMap,
) -> HttpResponse {
    let key = match request_key(p.resource.as_deref(), &path) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    write(
        &h,
        Txn::new(vec![TxnOp::delete(key, Expectation::Any)]),
        forward_allowed(&headers),
    )
    .await
}

async fn get_key<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<ReadParams>,
) -> HttpResponse {
    let key = match request_key(p.resource.as_deref(), &path) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let lin = match linearizable(&p) {
        Ok(l) => l,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    match read(&h, ReadOp::Get(key), lin).await {
        Err(r) => r,
        Ok(ReadResult::Get(Some(rec), revision)) => {
            Json(serde_json::json!({ "record": kv_record(rec), "revision": revision }))
                .into_response()
        }
        Ok(ReadResult::Get(None, revision)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "not found", "revision": revision })),
        )
            .into_response(),
        Ok(ReadResult::List(..)) => {
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "bad read".into(), None)
        }
    }
}

async fn list_workspace<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(ws): Path<String>,
    Query(p): Query<ReadParams>,
) -> HttpResponse {
    let ws = match Workspace::parse(&ws) {
        Ok(w) => w,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, e.to_string(), None),
    };
    let gr = match resource(p.resource.as_deref()) {
        Ok(gr) => gr,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let lin = match linearizable(&p) {
        Ok(l) => l,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let prefix = Prefix::workspace(&gr, &ws);
    match read(&h, ReadOp::List(prefix, p.limit.unwrap_or(0)), lin).await {
        Err(r) => r,
        Ok(ReadResult::List(items, revision)) => Json(serde_json::json!({
            "items": items.into_iter().map(kv_record).collect::<Vec<_>>(),
            "revision": revision,
        }))
        .into_response(),
        Ok(ReadResult::Get(..)) => {
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "bad read".into(), None)
        }
    }
}

/// The leader's side of forwarding: commits and answers
/// `Result<Committed, WireError>` as JSON.
async fn internal_txn<E: Engine>(
    State(h): State<RaftShard<E>>,
    Json(t): Json<Txn>,
) -> HttpResponse {
    let res = h.write_txn(t, false).await;
    Json(res).into_response()
}

async fn txn<E: Engine>(
    State(h): State<RaftShard<E>>,
    headers: axum::http::HeaderMap,
    Json(t): Json<Txn>,
) -> HttpResponse {
    write(&h, t, forward_allowed(&headers)).await
}

/// The query of `GET /status`.
#[derive(serde::Deserialize)]
struct StatusParams {
    /// Also report the data directory's size.
    #[serde(default)]
    disk: bool,
}

async fn status<E: Engine>(
    State(h): State<RaftShard<E>>,
    axum::extract::Query(q): axum::extract::Query<StatusParams>,
) -> HttpResponse {
    match h.call(Input::Status).await {
        Ok(mut s) => {
            if q.disk {
                s.disk_bytes = h.disk_bytes().await;
            }
            Json::<StatusReport>(s).into_response()
        }
        Err(e) => call_error(e),
    }
}

/// The internal HTTP interface of replica `h` (the routes and answers are
/// in the module documentation). Serve it with
/// [`internal::serve`](super::internal::serve).
pub fn router<E: Engine>(h: RaftShard<E>) -> Router {
    Router::new()
        .route(
            "/kv/{ws}/{ns}/{name}",
            get(get_key::<E>).put(put_key::<E>).delete(delete_key::<E>),
        )
        .route("/kv/{ws}", get(list_workspace::<E>))
        .route("/txn", post(txn::<E>))
        .route("/internal/txn", post(internal_txn::<E>))
        .route("/status", get(status::<E>))
        .route("/members", get(members::list::<E>))
        .route(
            "/members/{id}",
            post(members::add::<E>).delete(members::remove::<E>),
        )
        .route("/leader/hand-over", post(members::hand_over::<E>))
        .with_state(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_a_503_here_and_unavailable_at_the_api() {
        assert_eq!(
            call_error(CallError::Busy).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(matches!(
            ShardError::from(WireError::from(CallError::Busy)),
            ShardError::Unavailable(_)
        ));
    }

    /// A one-voter replica on a memory engine, its internal HTTP interface
    /// served on a loopback port (plain TCP); returns its base URL once it
    /// leads.
    async fn one_replica() -> String {
        use crate::raft::server::{internal, start, ServerConfig};
        let cfg = ServerConfig {
            id: 1,
            peers: Default::default(),
            listen: None,
            kv_peers: Default::default(),
            tick: std::time::Duration::from_millis(10),
            tls: None,
            data_dir: None,
        };
        let node = crate::raft::NodeConfig::new(1, vec![1]);
        let shard = start(crate::store::MemoryEngine::new(), cfg, node)
            .await
            .unwrap();
        let mut health = shard.health();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            health.wait_for(|h| h.ready().is_ok()),
        )
        .await
        .unwrap()
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(internal::serve(
            listener,
            None,
            router(shard),
            std::future::pending(),
        ));
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_resource_of_a_kv_request_is_a_parameter_configmaps_by_default() {
        let base = one_replica().await;
        let c = reqwest::Client::new();
        let get = |q: &'static str| {
            let c = c.clone();
            let url = format!("{base}/kv/root:t/default/a{q}");
            async move {
                let r = c.get(url).send().await.unwrap();
                let code = r.status().as_u16();
                (code, r.json::<serde_json::Value>().await.unwrap())
            }
        };
        let put = |q: &'static str, v: &'static str| {
            let c = c.clone();
            let url = format!("{base}/kv/root:t/default/a{q}");
            async move { c.put(url).body(v).send().await.unwrap().status().as_u16() }
        };
        // Without the parameter: configmaps, as before.
        assert_eq!(put("", "\"cm\"").await, 200);
        let (code, body) = get("").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["record"]["value"], "\"cm\"");
        let key = body["record"]["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("/registry/core/configmaps/"), "{key}");
        // The same name in two other resources: three objects.
        assert_eq!(put("?resource=secrets", "\"s\"").await, 200);
        assert_eq!(put("?resource=deployments.apps", "\"d\"").await, 200);
        let (_, body) = get("?resource=secrets").await;
        assert_eq!(body["record"]["value"], "\"s\"");
        assert!(
            body["record"]["key"]
                .as_str()
                .unwrap()
                .starts_with("/registry/core/secrets/"),
            "{body}"
        );
        let (_, body) = get("?resource=deployments.apps&consistency=local").await;
        assert!(
            body["record"]["key"]
                .as_str()
                .unwrap()
                .starts_with("/registry/apps/deployments/"),
            "{body}"
        );
        let (_, body) = get("?resource=configmaps").await;
        assert_eq!(body["record"]["value"], "\"cm\"");
        // Lists are per resource too.
        for (q, value) in [("", "\"cm\""), ("?resource=secrets", "\"s\"")] {
            let list: serde_json::Value = c
                .get(format!("{base}/kv/root:t{q}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = list["items"].as_array().unwrap();
            assert_eq!(items.len(), 1, "{list}");
            assert_eq!(items[0]["value"], value);
        }
        // A delete touches its resource only.
        let r = c
            .delete(format!("{base}/kv/root:t/default/a?resource=secrets"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(get("?resource=secrets").await.0, 404);
        assert_eq!(get("").await.0, 200);
        // A resource that is no resource: 400, nothing written.
        assert_eq!(put("?resource=Not%20One", "\"x\"").await, 400);
        assert_eq!(get("?resource=a.").await.0, 400);
    }

    #[test]
    fn the_resource_defaults_to_configmaps_and_may_name_a_group() {
        let gr = |p| resource(p).map(|gr| (gr.key_group().to_string(), gr.resource().to_string()));
        let core = |r: &str| Ok(("core".to_string(), r.to_string()));
        assert_eq!(gr(None), core("configmaps"));
        assert_eq!(gr(Some("secrets")), core("secrets"));
        assert_eq!(gr(Some("configmaps.core")), core("configmaps"));
        assert_eq!(
            gr(Some("deployments.apps")),
            Ok(("apps".to_string(), "deployments".to_string()))
        );
        assert_eq!(
            gr(Some("widgets.example.com")),
            Ok(("example.com".to_string(), "widgets".to_string()))
        );
        for bad in ["", "Secrets", "a/b", ".apps", "secrets.", "x y"] {
            assert_eq!(
                resource(Some(bad)).map_err(|(c, _)| c),
                Err(StatusCode::BAD_REQUEST),
                "{bad:?}"
            );
        }
    }
}
