//! `tmc encryption`: encryption of Secrets at rest, from the API's side.

use super::BoxError;
use std::path::{Path, PathBuf};

/// Encryption of Secrets at rest.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub op: EncryptionOp,
}

/// What `tmc encryption` does.
#[derive(clap::Subcommand, Debug)]
pub enum EncryptionOp {
    /// Writes every Secret of every workspace back unchanged, so each is
    /// stored under the current write key (run after putting a new key
    /// first in every node's encryption config; then the old key can go).
    Rewrite {
        /// An admin (system:masters) kubeconfig for the API.
        #[arg(long, default_value = ".tmc/admin.kubeconfig")]
        kubeconfig: PathBuf,
    },
}

impl Args {
    /// Runs the operation.
    pub fn run(self) -> Result<(), BoxError> {
        match self.op {
            EncryptionOp::Rewrite { kubeconfig } => rewrite_secrets(&kubeconfig),
        }
    }
}

/// `tmc encryption rewrite`: lists every Secret through the `*` workspace
/// and replaces each with itself. The server rewrites a Secret whose stored
/// form is under an old key even though nothing changed (kube-apiserver's
/// `kubectl get secrets -A -o json | kubectl replace -f -`, for all
/// workspaces at once). A Secret changed or deleted meanwhile needs no
/// rewrite: whoever changed it wrote it under the current key.
fn rewrite_secrets(kubeconfig: &Path) -> Result<(), BoxError> {
    use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
    super::runtime()?.block_on(async move {
        let (config, base) = super::admin_config(kubeconfig).await?;
        let client_for = |ws: &str| -> Result<kube::Client, BoxError> {
            let mut c = config.clone();
            c.cluster_url = format!("{base}/clusters/{ws}").parse()?;
            Ok(kube::Client::try_from(c)?)
        };
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
        let all: Api<DynamicObject> = Api::all_with(client_for("*")?, &ar);
        let mut clients: std::collections::HashMap<String, kube::Client> = Default::default();
        let (mut rewritten, mut raced) = (0u64, 0u64);
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = all.list(&lp).await?;
            for obj in page.items {
                let ws = obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kcp.io/cluster"))
                    .cloned()
                    .ok_or("a Secret in the * list has no kcp.io/cluster annotation")?;
                let client = match clients.get(&ws) {
                    Some(c) => c.clone(),
                    None => {
                        let c = client_for(&ws)?;
                        clients.insert(ws.clone(), c.clone());
                        c
                    }
                };
                let ns = obj.metadata.namespace.clone().unwrap_or_default();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
                match api.replace(&name, &PostParams::default(), &obj).await {
                    Ok(_) => rewritten += 1,
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => raced += 1,
                    Err(e) => return Err(format!("{ws}/{ns}/{name}: {e}").into()),
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        println!(
            "rewrote {rewritten} Secrets in {} workspaces ({raced} changed or deleted meanwhile, already current)",
            clients.len()
        );
        Ok::<_, BoxError>(())
    })
}
