//! The API's request metrics, in kube-apiserver's names so that its
//! dashboards and alerts read them: `apiserver_request_total{verb,
//! resource, code}` and `apiserver_request_duration_seconds{verb,
//! resource}` (time to the response's head; watches are counted but not
//! timed, as kube-apiserver leaves long-running requests out of its
//! latency). The resource label is the plural (`deployments`), or empty
//! for paths that are no resource (discovery, OpenAPI, `/version`);
//! `/livez` and `/readyz` are not counted (probes would drown the rest).
//!
//! Left out: kube-apiserver's `group`, `version`, `scope`, `component` and
//! `subresource` labels, and its in-flight gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// One request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    /// get, list, watch, create, update, patch, delete, deletecollection,
    /// or the method in lower case where no verb applies.
    pub verb: String,
    /// The resource's plural, or empty.
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    verb: String,
    resource: String,
    code: String,
}

type Durations = Family<Request, Histogram, fn() -> Histogram>;

/// The request counters and latency histograms of one API server.
#[derive(Clone)]
pub struct ApiMetrics {
    total: Family<Answered, Counter>,
    duration: Durations,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            total: Family::default(),
            // 1 ms .. ~65 s, as kube-apiserver's buckets span.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 17))
            }),
        }
    }
}

impl ApiMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiserver_request",
            "API requests by verb, resource and HTTP code",
            self.total.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Time to the response's head of API requests (watches not included)",
            self.duration.clone(),
        );
    }

    /// Counts one answered request (and times it unless it is a watch).
    pub fn record(&self, request: &Request, code: u16, took: Duration) {
        self.total
            .get_or_create(&Answered {
                verb: request.verb.clone(),
                resource: request.resource.clone(),
                code: code.to_string(),
            })
            .inc();
        if request.verb != "watch" {
            self.duration
                .get_or_create(request)
                .observe(took.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_code_and_timed_except_watches() {
        let m = ApiMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let get = Request {
            verb: "get".into(),
            resource: "deployments".into(),
        };
        let watch = Request {
            verb: "watch".into(),
            resource: "pods".into(),
        };
        m.record(&get, 200, Duration::from_millis(3));
        m.record(&get, 404, Duration::from_millis(1));
        m.record(&watch, 200, Duration::from_secs(30));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"apiserver_request_total{verb="get",resource="deployments",code="200"} 1"#,
            r#"apiserver_request_total{verb="get",resource="deployments",code="404"} 1"#,
            r#"apiserver_request_total{verb="watch",resource="pods",code="200"} 1"#,
            r#"apiserver_request_duration_seconds_count{verb="get",resource="deployments"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(
            !text.contains(r#"apiserver_request_duration_seconds_count{verb="watch""#),
            "{text}"
        );
    }
}
