//! The API server's limit flags of `tmc dev` and `tmc serve`
//! ([`crate::api::limits`]).

use crate::api::limits::Limits;
use std::time::Duration;

/// The limits of the Kubernetes API server of `tmc serve` and `tmc dev`
/// (see `tmc::api::limits`; the defaults are `Limits::default()`).
#[derive(clap::Args, Clone, Debug)]
pub struct ApiLimitArgs {
    /// Read-only requests in flight at once (watches are not counted); more
    /// get 429 with Retry-After (0: no limit). As kube-apiserver's.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests (create, update, patch, delete, deletecollection)
    /// in flight at once; more get 429 (0: no limit). As kube-apiserver's.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Time a request may take from its header to its response, body
    /// upload included (a watch: to the start of its stream); then 504.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub request_timeout: Duration,
    /// Time an HTTP/1.1 request header may take to arrive (also the wait
    /// for the next request on a keep-alive connection).
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// A connection without a request in flight (an open watch is one)
    /// for this long is closed.
    #[arg(long, default_value = "90s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once; more are closed at once (0: no limit).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = crate::controllers::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

impl ApiLimitArgs {
    /// The limits the flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    /// The flags' defaults are the library's.
    #[test]
    fn api_limit_flags_default_to_limits_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: super::ApiLimitArgs,
        }
        assert_eq!(
            T::parse_from(["t"]).a.limits(),
            crate::api::limits::Limits::default()
        );
        assert!(T::try_parse_from(["t", "--idle-timeout", "0s"]).is_err());
    }
}
