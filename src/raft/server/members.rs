//! Membership changes through the KV interface: `POST /members/{id}` adds
//! voter `id` (or promotes a learner), `POST /members/{id}?learner=true`
//! adds a learner, `DELETE /members/{id}` removes a member, `GET /members`
//! lists voters and learners (`tmc member add|remove|list`), and `POST
//! /leader/hand-over` makes the leader hand leadership to its most
//! caught-up voter (`tmc member hand-over`; a stopping replica does it
//! itself).
//!
//! A change goes to the leader like a write: a follower forwards it once
//! (marked [`NO_FORWARD`](super::NO_FORWARD)) and passes the leader's answer back. The leader
//! proposes one `ConfChangeV2` ([`Node::change_membership`]) and answers
//! once it is applied, with the voters after it. Refused, with nothing
//! changed:
//! - 400: node id 0, adding a voter already there, a node without a raft
//!   address in this replica's `--peers` (the transport could not reach
//!   it), adding a learner already there, removing a node that is not a
//!   member, the last voter, or the leader
//!   itself (transfer leadership first);
//! - 409: another change is not applied yet;
//! - 503: no leader, or not the leader with forwarding turned off.
//!
//! The joining replica is started with `tmc serve --join`: it has no
//! configuration and asks the leader for a snapshot on first contact.

use super::event_loop::Input;
use super::kv::{call_error, forward_allowed, http_error, raft_error};
use super::shard::RaftShard;
use super::transport::OutQueue;
use crate::raft::{Error, MembershipChange, Node, RequestId};
use crate::store::Engine;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use std::collections::HashMap;

/// Checks what only the transport knows (a raft address for a new voter),
/// then proposes the change on `node`. Runs on the event loop.
pub(super) fn propose<E: Engine>(
    node: &mut Node<E>,
    outbound: &HashMap<u64, OutQueue>,
    change: MembershipChange,
) -> Result<RequestId, Error> {
    if let MembershipChange::AddVoter(id) | MembershipChange::AddLearner(id) = change {
        if id != node.id() && id != 0 && !outbound.contains_key(&id) && node.is_leader() {
            return Err(Error::InvalidConfChange(format!(
                "node {id} has no raft address: add it to --peers of every replica first"
            )));
        }
    }
    node.change_membership(change)
}

fn member_error<E: Engine>(h: &RaftShard<E>, e: Error) -> HttpResponse {
    match e {
        e @ Error::InvalidConfChange(_) => http_error(StatusCode::BAD_REQUEST, e.to_string(), None),
        e @ Error::ConfChangeInProgress => http_error(StatusCode::CONFLICT, e.to_string(), None),
        e => raft_error(h, e),
    }
}

async fn change_of<E: Engine>(
    h: RaftShard<E>,
    method: Method,
    id: u64,
    change: MembershipChange,
    forward: bool,
) -> HttpResponse {
    match h.call(|tx| Input::Member(change, tx)).await {
        Err(e) => call_error(e),
        Ok(Ok(voters)) => Json(serde_json::json!({ "voters": voters })).into_response(),
        Ok(Err(Error::NotLeader { leader: Some(l) })) if forward => {
            let Some(addr) = h.kv_peers.get(&l).cloned() else {
                return raft_error(&h, Error::NotLeader { leader: Some(l) });
            };
            match h
                .forwarder()
                .request(l, method, &member_path(id, change), Vec::new())
                .await
            {
                Ok((code, body)) => (
                    code,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response(),
                Err(e) => http_error(
                    StatusCode::BAD_GATEWAY,
                    format!("forwarding to the leader {l} at {addr} failed: {e}"),
                    Some((l, Some(addr))),
                ),
            }
        }
        Ok(Err(e)) => member_error(&h, e),
    }
}

/// The path of a membership change (how it is forwarded).
fn member_path(id: u64, change: MembershipChange) -> String {
    match change {
        MembershipChange::AddLearner(_) => format!("/members/{id}?learner=true"),
        _ => format!("/members/{id}"),
    }
}

/// The query of `POST /members/{id}`.
#[derive(serde::Deserialize)]
pub(super) struct AddParams {
    /// Add a learner instead of a voter.
    #[serde(default)]
    learner: bool,
}

/// `POST /members/{id}`: adds voter `id` (or promotes learner `id`);
/// with `?learner=true` adds learner `id`.
pub(super) async fn add<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(id): Path<u64>,
    Query(q): Query<AddParams>,
    headers: axum::http::HeaderMap,
) -> HttpResponse {
    let fwd = forward_allowed(&headers);
    let change = if q.learner {
        MembershipChange::AddLearner(id)
    } else {
        MembershipChange::AddVoter(id)
    };
    change_of(h, Method::POST, id, change, fwd).await
}

/// `POST /leader/hand-over`: the leader hands leadership to its most
/// caught-up voter and names it (409 on a replica that is not the leader,
/// with the leader it knows; 400 without another voter).
pub(super) async fn hand_over<E: Engine>(State(h): State<RaftShard<E>>) -> HttpResponse {
    match h.call(Input::HandOver).await {
        Err(e) => call_error(e),
        Ok(Ok(to)) => Json(serde_json::json!({ "to": to })).into_response(),
        Ok(Err(e)) => member_error(&h, e),
    }
}

/// `DELETE /members/{id}`: removes voter `id`.
pub(super) async fn remove<E: Engine>(
    State(h): State<RaftShard<E>>,
    Path(id): Path<u64>,
    headers: axum::http::HeaderMap,
) -> HttpResponse {
    let fwd = forward_allowed(&headers);
    change_of(
        h,
        Method::DELETE,
        id,
        MembershipChange::RemoveVoter(id),
        fwd,
    )
    .await
}

/// `GET /members`: the voters as of this replica's applied index, and the
/// leader it knows.
pub(super) async fn list<E: Engine>(State(h): State<RaftShard<E>>) -> HttpResponse {
    match h.call(Input::Status).await {
        Ok(s) => Json(
            serde_json::json!({ "voters": s.voters, "learners": s.learners, "leader": s.leader }),
        )
        .into_response(),
        Err(e) => call_error(e),
    }
}
