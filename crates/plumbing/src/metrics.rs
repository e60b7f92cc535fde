//! Prometheus metrics: one registry per process, served over HTTP.
//!
//! Every metric of a process registers in the one registry ([`register`]);
//! [`serve`] answers `GET /metrics` with it: in the OpenMetrics text format
//! to a scraper that asks for it (Prometheus does), else in the classic
//! Prometheus text format 0.0.4 (curl, `promtool check metrics`). Nothing is served unless a binary is given
//! `--metrics-listen`; until then [`enabled`] is false and the per-call RPC
//! metrics ([`rpc`]) are not even counted, so they cost nothing.
//!
//! Labels stay bounded: service, method, gRPC code, table, tool, agent,
//! model, endpoint; never a session ID or a caller's free text (a method a
//! server does not have is counted as `unknown`).

pub mod rpc;

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;

use crate::side_port::{SideListen, SidePort, SidePortError};

/// The content type of the OpenMetrics exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text exposition.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

static ENABLED: AtomicBool = AtomicBool::new(false);

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// Whether this process serves its metrics (a binary given
/// `--metrics-listen`): per-call metrics are counted only then.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns the per-call metrics on or off, as binding `--metrics-listen`
/// does (for benchmarks that compare both in one process).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Adds `metric` (a cheap handle: keep a clone to update it) to the
/// process's registry as `name` (without the `_total` a counter gets).
pub fn register(name: &str, help: &str, metric: impl Metric) {
    let mut registry = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    registry.register(name, help, metric);
}

/// The registry in the OpenMetrics text format.
pub fn encode() -> String {
    let registry = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// The value of one sample in an exposition `text` (either format):
/// `series` is the sample's name and labels exactly as written, e.g.
/// `heist_audit_rows_total{table="messages"}` or `heist_audit_watchers`;
/// `None` when there is no such sample. For tests and probes.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// `openmetrics` in the classic Prometheus text format: a counter's family
/// is named with its `_total` (as its samples are), and no `# EOF`.
pub fn classic_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut counters = std::collections::HashSet::new();
    for line in &lines {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    let mut text = String::with_capacity(openmetrics.len());
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        let header = ["# HELP ", "# TYPE ", "# UNIT "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match header {
            Some(("# UNIT ", _)) => continue,
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    text.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    text.push_str(line);
                }
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Binds the metrics port `listen` (beside `main`, when given; `service`
/// names the server in the log) and turns the per-call metrics on.
pub async fn bind(
    listen: &SideListen,
    main: Option<&TcpListener>,
    service: &str,
) -> Result<TcpListener, SidePortError> {
    let listener = listen.bind(SidePort::Metrics, main, service).await?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(listener)
}

/// Answers `GET /metrics` on `listener` (HTTP/1.1) until `shutdown`
/// resolves; any other path is 404, any other method 405.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "metrics: cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| async move {
                Ok::<_, Infallible>(answer(&request))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), connection).await;
        });
    }
}

fn answer(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: String, kind: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        if let Ok(value) = kind.parse() {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".to_owned(),
            "text/plain",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".to_owned(),
            "text/plain",
        );
    }
    let openmetrics = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        reply(StatusCode::OK, encode(), OPENMETRICS)
    } else {
        reply(StatusCode::OK, classic_text(&encode()), PROMETHEUS_TEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_found_by_its_name_and_labels() {
        let text = "calls_total{code=\"OK\"} 3\ncalls_total{code=\"OKAY\"} 4\nopen 2.5\n";
        assert_eq!(sample(text, "calls_total{code=\"OK\"}"), Some(3.0));
        assert_eq!(sample(text, "open"), Some(2.5));
        assert_eq!(
            sample(text, "calls_total"),
            None,
            "labels are part of the series"
        );
        assert_eq!(sample(text, "missing"), None);
    }

    #[test]
    fn the_classic_format_names_counter_families_with_their_total() {
        let openmetrics = "# HELP calls Calls made.\n# TYPE calls counter\ncalls_total{code=\"OK\"} 3\n\
                           # HELP open Open now.\n# TYPE open gauge\nopen 2\n# EOF\n";
        assert_eq!(
            classic_text(openmetrics),
            "# HELP calls_total Calls made.\n# TYPE calls_total counter\ncalls_total{code=\"OK\"} 3\n\
             # HELP open Open now.\n# TYPE open gauge\nopen 2\n"
        );
    }
}
