//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! Names: `http_requests_total{method,route,status}`, `http_request_duration_seconds{method,route}`,
//! `token_refreshes_total{provider,outcome}`, `refresh_singleflight_waits_total{kind}`,
//! `access_token_cache_total{result}` (hit = served from the store, miss = refreshed first),
//! `token_cache_total{result}` (the in-memory token cache: hit, miss = read on the request path,
//! recheck = confirmed unchanged in the background, reload = changed and re-read in the
//! background), `tokens{status}` (computed when scraped).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The counters every access-token request bumps, registered once (`counter!` looks its key up
/// in the registry on every call).
pub struct HotPath {
    pub token_cache_hit: metrics::Counter,
    pub token_cache_miss: metrics::Counter,
    pub access_token_valid: metrics::Counter,
    pub access_token_refreshed: metrics::Counter,
}

/// The hot-path counters (installing the recorder first, so they are never no-ops).
pub fn hot_path() -> &'static HotPath {
    static HOT: OnceLock<HotPath> = OnceLock::new();
    HOT.get_or_init(|| {
        handle();
        HotPath {
            token_cache_hit: metrics::counter!("token_cache_total", "result" => "hit"),
            token_cache_miss: metrics::counter!("token_cache_total", "result" => "miss"),
            access_token_valid: metrics::counter!("access_token_cache_total", "result" => "hit"),
            access_token_refreshed: metrics::counter!("access_token_cache_total", "result" => "miss"),
        }
    })
}

/// The `method` label: the standard methods by name, anything else a client invents as `OTHER`,
/// so no request can add a label value of its own.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The `status` label: the status codes the broker sends, anything else folded by class.
fn status_label(status: u16) -> u16 {
    match status {
        200..=599 => status,
        _ => 0,
    }
}

/// The handles of one route: a request counter per method and status, a latency histogram per
/// method.
#[derive(Default)]
struct RouteHandles {
    requests: Vec<(&'static str, u16, metrics::Counter)>,
    durations: Vec<(&'static str, metrics::Histogram)>,
}

impl RouteHandles {
    fn get(&self, method: &str, status: u16) -> Option<(metrics::Counter, metrics::Histogram)> {
        let (_, _, requests) = self
            .requests
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)?;
        let (_, duration) = self.durations.iter().find(|(m, _)| *m == method)?;
        Some((requests.clone(), duration.clone()))
    }
}

/// `http_requests_total` and `http_request_duration_seconds` of every route, registered on a
/// route's first request: after that, a request costs two lookups under a read lock, not two
/// label sets allocated and looked up in the registry. `route` is a registered route's template
/// or `unmatched`; methods and statuses are folded (see [`method_label`]), so the series are
/// bounded whatever clients send.
pub fn record_request(
    method: &axum::http::Method,
    route: &str,
    status: u16,
    elapsed: std::time::Duration,
) {
    let method = method_label(method);
    let status = status_label(status);
    static ROUTES: OnceLock<RwLock<HashMap<String, RouteHandles>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        handle();
        RwLock::default()
    });
    let found = (routes.read().expect("route metrics poisoned"))
        .get(route)
        .and_then(|r| r.get(method, status));
    let (requests, duration) = found.unwrap_or_else(|| {
        let mut routes = routes.write().expect("route metrics poisoned");
        let r = routes.entry(route.to_owned()).or_default();
        if let Some(handles) = r.get(method, status) {
            return handles;
        }
        // The registry hands back the existing metric when one of these was registered before.
        let requests = metrics::counter!(
            "http_requests_total",
            "method" => method,
            "route" => route.to_owned(),
            "status" => status.to_string()
        );
        let duration = metrics::histogram!(
            "http_request_duration_seconds",
            "method" => method,
            "route" => route.to_owned()
        );
        r.requests.push((method, status, requests.clone()));
        if !r.durations.iter().any(|(m, _)| *m == method) {
            r.durations.push((method, duration.clone()));
        }
        (requests, duration)
    });
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
}

/// The process's recorder handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}
