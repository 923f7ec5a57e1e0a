//! `tmc proxy`: the front proxy in front of the shards ([`crate::proxy`]).

use super::api_limits::ApiLimitArgs;
use super::BoxError;
use crate::api::tls;
use crate::proxy::resolve::{Resolver, ShardRef};
use crate::proxy::upstream::Upstream;
use crate::proxy::Proxy;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

/// Serves one front door for all shards: authenticates users, finds the
/// shard of each request's workspace and forwards the request to it
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The address to serve on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: String,
    /// The directory `tmc certs` wrote: the serving certificate
    /// (server.crt/key), the users' CA and token file, and the proxy's
    /// client certificate for the shards (front-proxy-client.crt/key).
    #[arg(long)]
    pub tls_dir: PathBuf,
    /// The root shard's API URL (https://host:port; several, comma
    /// separated, are tried in order): it holds the root workspace and
    /// the shard registry, where the other shards' URLs are read.
    #[arg(long)]
    pub root_shard: String,
    /// Another shard, as NAME=URL (repeat, or separate with commas).
    #[arg(long = "shard", value_delimiter = ',', value_parser = parse_shard)]
    pub shards: Vec<ShardRef>,
    /// Workspaces whose shard the proxy remembers (least recently used go
    /// first).
    #[arg(long, default_value_t = NonZeroUsize::new(100_000).expect("non-zero"))]
    pub route_cache_size: NonZeroUsize,
    #[command(flatten)]
    pub limits: ApiLimitArgs,
}

fn parse_url(url: &str) -> Result<String, String> {
    let u: hyper::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if u.scheme_str() != Some("https") || u.host().is_none() {
        return Err(format!("{url:?}: want https://host:port"));
    }
    if u.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("{url:?}: want https://host:port, without a path"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_shard(s: &str) -> Result<ShardRef, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: want NAME=https://host:port"))?;
    if name.is_empty() || name == "root" {
        return Err(format!(
            "{s:?}: a shard needs a name other than root (--root-shard gives root)"
        ));
    }
    Ok(ShardRef {
        name: name.to_string(),
        url: parse_url(url)?,
    })
}

impl Args {
    /// Serves until Ctrl-C.
    pub fn run(self) -> Result<(), BoxError> {
        super::runtime()?.block_on(self.serve())
    }

    /// Serves the proxy until Ctrl-C (within a tokio runtime).
    pub async fn serve(self) -> Result<(), BoxError> {
        self.start().await?.1.await
    }

    /// Loads the configuration and binds the listener: its address, and
    /// the future that serves until Ctrl-C.
    pub async fn start(self) -> Result<(std::net::SocketAddr, Serving), BoxError> {
        let files = tls::TlsFiles::new(&self.tls_dir);
        let upstream = Arc::new(Upstream::new(&files)?);
        let root = ShardRef {
            name: "root".into(),
            url: self
                .root_shard
                .split(',')
                .map(parse_url)
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
        };
        let proxy = Arc::new(Proxy {
            tokens: crate::api::authn::TokenAuth::load(&files.tokens())?,
            certs: Some(tls::cert_auth(&files)?),
            resolver: Resolver::new(root, self.shards, self.route_cache_size, upstream.clone()),
            upstream,
        });
        let tls_cfg = tls::reloading_server_config(&files)?;
        tls_cfg.watch(std::time::Duration::from_secs(5));
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", self.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving the front proxy");
        let limits = self.limits.limits();
        Ok((
            addr,
            Box::pin(async move {
                crate::api::server::serve_tls(
                    listener,
                    move || tls_cfg.get(),
                    crate::proxy::router(proxy),
                    limits,
                    async {
                        let signal = crate::replica::terminated().await;
                        tracing::info!(signal, "the front proxy stops");
                    },
                )
                .await?;
                Ok(())
            }),
        ))
    }
}

/// The proxy serving, until SIGTERM or Ctrl-C.
pub type Serving =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_flags_are_checked() {
        let s = parse_shard("two=https://10.0.0.2:6443/").unwrap();
        assert_eq!(
            (s.name.as_str(), s.url.as_str()),
            ("two", "https://10.0.0.2:6443")
        );
        for bad in [
            "two",
            "=https://h:1",
            "root=https://h:1",
            "two=http://h:1",
            "two=https://h:1/clusters/root",
            "two=not a url",
        ] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
