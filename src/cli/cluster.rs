//! `tmc cluster`: registers a member cluster through tmc's Kubernetes API
//! (kube-rs): a Secret with its kubeconfig and a ClusterRegistration, by
//! server-side apply.

use super::BoxError;
use std::path::PathBuf;

/// Physical clusters registered with tmc.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub op: ClusterOp,
}

/// What `tmc cluster` does.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterOp {
    /// Registers a cluster: a Secret with its kubeconfig and a
    /// ClusterRegistration, created (or updated) through tmc's API.
    Register {
        /// Name of the ClusterRegistration.
        name: String,
        /// The cluster's kubeconfig (its current context is used).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The location workspace to register it in.
        #[arg(long, default_value = "root")]
        workspace: String,
        /// tmc's API address (default: the admin kubeconfig's).
        #[arg(long)]
        server: Option<String>,
        /// The kubeconfig for tmc's API.
        #[arg(long, default_value = ".tmc/admin.kubeconfig")]
        admin_kubeconfig: PathBuf,
        /// The cluster's API endpoint (default: the kubeconfig's server).
        #[arg(long)]
        api_endpoint: Option<String>,
        /// Namespace of the credentials Secret (created if missing).
        #[arg(long, default_value = "tmc-system")]
        secret_namespace: String,
        /// Labels of the registration, `key=value` (repeatable).
        #[arg(long = "label", value_delimiter = ',')]
        labels: Vec<String>,
        /// Free-form location.
        #[arg(long, default_value = "")]
        location: String,
    },
}

impl Args {
    /// Runs the operation.
    pub fn run(self) -> Result<(), BoxError> {
        let ClusterOp::Register {
            name,
            kubeconfig,
            workspace,
            server,
            admin_kubeconfig,
            api_endpoint,
            secret_namespace,
            labels,
            location,
        } = self.op;
        crate::store::Workspace::parse(&workspace)?;
        let member_text = std::fs::read_to_string(&kubeconfig)
            .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
        let member = kube::config::Kubeconfig::from_yaml(&member_text)
            .map_err(|e| format!("{} is not a kubeconfig: {e}", kubeconfig.display()))?;
        let endpoint = match api_endpoint {
            Some(e) => e,
            None => {
                let ctx_name = member
                    .current_context
                    .clone()
                    .ok_or("the kubeconfig has no current-context; pass --api-endpoint")?;
                let ctx = member
                    .contexts
                    .iter()
                    .find(|c| c.name == ctx_name)
                    .and_then(|c| c.context.clone())
                    .ok_or(format!("context {ctx_name:?} not found in the kubeconfig"))?;
                member
                    .clusters
                    .iter()
                    .find(|c| c.name == ctx.cluster)
                    .and_then(|c| c.cluster.as_ref()?.server.clone())
                    .ok_or(format!(
                        "cluster {:?} of the current context has no server",
                        ctx.cluster
                    ))?
            }
        };
        let mut labels_map = serde_json::Map::new();
        for l in labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = l
                .split_once('=')
                .ok_or(format!("--label {l:?} is not key=value"))?;
            labels_map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
        let mut tmc_cfg = kube::config::Kubeconfig::read_from(&admin_kubeconfig)
            .map_err(|e| format!("reading {}: {e}", admin_kubeconfig.display()))?;
        for c in tmc_cfg.clusters.iter_mut() {
            if let Some(cl) = c.cluster.as_mut() {
                let base = match (&server, &cl.server) {
                    (Some(s), _) => s.trim_end_matches('/').to_string(),
                    (None, Some(s)) => match s.find("/clusters/") {
                        Some(i) => s[..i].to_string(),
                        None => s.trim_end_matches('/').to_string(),
                    },
                    (None, None) => continue,
                };
                cl.server = Some(format!("{base}/clusters/{workspace}"));
            }
        }
        super::runtime()?.block_on(async move {
            use kube::api::{Api, DynamicObject, Patch, PatchParams};
            use kube::discovery::ApiResource;
            let cfg = kube::Config::from_custom_kubeconfig(tmc_cfg, &Default::default()).await?;
            let client = kube::Client::try_from(cfg)?;
            let pp = PatchParams::apply("tmc-cluster-register").force();
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            namespaces
                .patch(
                    &secret_namespace,
                    &pp,
                    &Patch::Apply(serde_json::json!({
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": secret_namespace}
                    })),
                )
                .await
                .map_err(|e| format!("namespace {secret_namespace}: {e}"))?;
            let secret_name = format!("{name}-kubeconfig");
            let secrets: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(client.clone(), &secret_namespace);
            secrets
                .patch(
                    &secret_name,
                    &pp,
                    &Patch::Apply(serde_json::json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": secret_name, "namespace": secret_namespace},
                        "type": "Opaque",
                        "stringData": {"kubeconfig": member_text}
                    })),
                )
                .await
                .map_err(|e| format!("Secret {secret_namespace}/{secret_name}: {e}"))?;
            let ar = ApiResource {
                group: crate::types::GROUP.into(),
                version: crate::types::VERSION.into(),
                api_version: crate::types::API_VERSION.into(),
                kind: "ClusterRegistration".into(),
                plural: "clusterregistrations".into(),
            };
            let regs: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let mut spec = serde_json::json!({
                "apiEndpoint": endpoint,
                "credentialsSecretRef": {"namespace": secret_namespace, "name": secret_name},
            });
            if !location.is_empty() {
                spec["location"] = serde_json::Value::String(location.clone());
            }
            regs.patch(
                &name,
                &pp,
                &Patch::Apply(serde_json::json!({
                    "apiVersion": crate::types::API_VERSION, "kind": "ClusterRegistration",
                    "metadata": {"name": name, "labels": labels_map},
                    "spec": spec
                })),
            )
            .await
            .map_err(|e| format!("ClusterRegistration {name}: {e}"))?;
            println!(
                "clusterregistration.tmc.kcp.io/{name} registered in {workspace} ({endpoint})"
            );
            Ok::<_, BoxError>(())
        })
    }
}
