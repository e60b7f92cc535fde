//! Requests and latency per RPC, on the server and the client side:
//! `rpc_server_requests_total{service,method,code}`,
//! `rpc_server_duration_seconds{service,method}`, and the same with
//! `rpc_client_`. Recorded by the trace layers ([`crate::propagation`]) only
//! while [`super::enabled`]. A method the server does not have
//! (`UNIMPLEMENTED`) is counted as service and method `unknown`, so a caller cannot grow
//! the label set.

use std::{sync::OnceLock, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

/// Latency buckets, in seconds: 0.25 ms to ~8 s.
fn buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_25, 2.0, 16,
    ))
}

/// Labels of a request count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Call {
    service: String,
    method: String,
    code: String,
}

/// Labels of a latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Method {
    service: String,
    method: String,
}

/// One side's families.
struct Side {
    requests: Family<Call, Counter>,
    duration: Family<Method, Histogram, fn() -> Histogram>,
}

impl Side {
    fn new(side: &str) -> Self {
        let this = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(buckets),
        };
        super::register(
            &format!("rpc_{side}_requests"),
            &format!("gRPC requests handled ({side} side), by service, method and status code"),
            this.requests.clone(),
        );
        super::register(
            &format!("rpc_{side}_duration_seconds"),
            &format!(
                "gRPC request latency ({side} side) until the response headers, by service and method"
            ),
            this.duration.clone(),
        );
        this
    }

    fn record(&self, service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
        let (service, method) = if code == tonic::Code::Unimplemented {
            ("unknown", "unknown")
        } else {
            (service, method)
        };
        self.requests
            .get_or_create(&Call {
                service: service.to_owned(),
                method: method.to_owned(),
                code: crate::status::code_name(code).to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&Method {
                service: service.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

fn server() -> &'static Side {
    static SERVER: OnceLock<Side> = OnceLock::new();
    SERVER.get_or_init(|| Side::new("server"))
}

fn client() -> &'static Side {
    static CLIENT: OnceLock<Side> = OnceLock::new();
    CLIENT.get_or_init(|| Side::new("client"))
}

/// Counts one call served (when metrics are on).
pub fn record_server(service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
    if super::enabled() {
        server().record(service, method, code, elapsed);
    }
}

/// Counts one call made (when metrics are on).
pub fn record_client(service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
    if super::enabled() {
        client().record(service, method, code, elapsed);
    }
}
