//! GET of one object and LIST of a collection (with selectors,
//! pagination and kube-apiserver's resourceVersion semantics).

use super::params::{GetOptions, ListOptions, ResourceVersion, ResourceVersionMatch};
use super::{parse_value, storage_error, workspace_and_namespace_of, ObjectApi, Reply};
use crate::api::object::for_response;
use crate::api::request::{ResourceRequest, WorkspaceSel};
use crate::api::status::{ApiError, ApiResult};
use crate::shard::ShardError;
use crate::store::{self, Workspace};
use serde_json::{json, Value};

impl ObjectApi {
    /// GET of one object (or its status).
    pub async fn get(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &GetOptions,
    ) -> ApiResult<Reply> {
        self.read_point(&opts.resource_version).await?;
        let key = Self::path_key(req, ws)?;
        let name = req.name.as_deref().unwrap_or("");
        match self.shard.get(&key).map_err(storage_error)? {
            None => Err(ApiError::not_found(req.info.group, req.info.plural, name)),
            Some(rec) => Ok((
                200,
                for_response(parse_value(&rec)?, rec.mod_revision, ws.as_str()),
            )),
        }
    }

    /// LIST with selectors, pagination and resourceVersion semantics.
    pub async fn list(
        &self,
        req: &ResourceRequest,
        ws: &WorkspaceSel,
        opts: &ListOptions,
    ) -> ApiResult<Reply> {
        let limit = opts.limit;
        let token = opts.continue_token.clone();
        let rv = &opts.resource_version;
        let rv_match = &opts.resource_version_match;
        if token.is_some()
            && (!matches!(rv, ResourceVersion::Latest | ResourceVersion::Any)
                || *rv_match != ResourceVersionMatch::Unset)
        {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let mut at: Option<u64> = None;
        match (rv, rv_match) {
            (ResourceVersion::Latest, ResourceVersionMatch::Unset) => match &token {
                None => {
                    self.shard.barrier().await.map_err(storage_error)?;
                }
                // A page of a list another replica began: wait (briefly)
                // until this one has applied its revision.
                Some(t) => {
                    let rv = crate::store::continue_revision(t)
                        .map_err(|e| ApiError::from(ShardError::Store(e)))?;
                    self.wait_for(rv).await?;
                }
            },
            (ResourceVersion::Latest, _) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ))
            }
            (ResourceVersion::Any, ResourceVersionMatch::Exact) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                ))
            }
            (
                ResourceVersion::Any,
                ResourceVersionMatch::Unset | ResourceVersionMatch::NotOlderThan,
            ) => {}
            (_, ResourceVersionMatch::Other(m)) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch must be Exact or NotOlderThan, not {m:?}"
                )))
            }
            (n, ResourceVersionMatch::Exact) => {
                let n = n.revision()?.unwrap_or(0);
                self.wait_for(n).await?;
                at = Some(n);
            }
            (n, ResourceVersionMatch::NotOlderThan) => {
                self.wait_for(n.revision()?.unwrap_or(0)).await?;
            }
            (n, ResourceVersionMatch::Unset) => {
                let n = n.revision()?.unwrap_or(0);
                self.wait_for(n).await?;
                // Legacy: with a limit, an exact list at that revision.
                if limit > 0 {
                    at = Some(n);
                }
            }
        }
        let prefix = Self::list_prefix(req, ws)?;
        let want_ns = match ws {
            WorkspaceSel::All => req.namespace.clone(),
            WorkspaceSel::One(_) => None,
        };
        let mut items = Vec::new();
        let mut token = token;
        let mut revision;
        let mut next_token;
        loop {
            let page = self
                .shard
                .list(
                    &prefix,
                    &store::ListOptions {
                        limit: if limit == 0 { 0 } else { limit - items.len() },
                        continue_token: token.clone(),
                        revision: at,
                    },
                )
                .map_err(storage_error)?;
            revision = page.revision;
            for rec in &page.items {
                let Some((wsname, ns)) = workspace_and_namespace_of(rec) else {
                    continue;
                };
                if want_ns.is_some() && ns != want_ns {
                    continue;
                }
                let obj = for_response(parse_value(rec)?, rec.mod_revision, &wsname);
                if opts.labels.matches_object(&obj) && opts.fields.matches(&obj) {
                    items.push(obj);
                }
            }
            next_token = page.continue_token;
            if next_token.is_none() || limit == 0 || items.len() >= limit {
                break;
            }
            token = next_token.clone();
            at = None; // the token carries the revision
        }
        let mut meta = json!({ "resourceVersion": revision.to_string() });
        if let Some(t) = &next_token {
            meta["continue"] = Value::String(t.clone());
        }
        Ok((
            200,
            json!({
                "kind": req.info.list_kind(),
                "apiVersion": req.info.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }
}
