//! Trace context and baggage across gRPC calls.
//!
//! - [`ClientTraceLayer`] wraps a client channel: every call gets a client span
//!   (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`) and
//!   carries the W3C `traceparent` and `baggage` headers of that span.
//! - [`ServerTraceLayer`] wraps a server: it extracts those headers and parents
//!   the request's server span on them before the span is entered, and records
//!   the baggage `session.id` as a span field, so every log line written while
//!   serving a session names it. Health checks and reflection make no spans.
//! - [`with_session`] puts a session ID into baggage for everything run inside it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context as TaskContext, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::{
    Context, KeyValue,
    baggage::BaggageExt,
    global,
    propagation::{Extractor, Injector},
};
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::session_span::SESSION_ID_KEY;

/// Paths that never make spans: health and reflection.
const UNTRACED_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.",
    "/grpc.reflection.v1.",
    "/grpc.reflection.v1alpha.",
];

/// Returns a context whose baggage carries `session.id = session_id`; every
/// call made inside a span parented on it carries the session to the servers.
pub fn session_context(session_id: &str) -> Context {
    Context::current().with_baggage([KeyValue::new(SESSION_ID_KEY, session_id.to_owned())])
}

/// Makes `span` carry `session_id` in its baggage (and as `session.id`
/// attribute on it and all its children). Call before the span is entered.
pub fn with_session(span: &Span, session_id: &str) {
    if let Err(error) = span.set_parent(session_context(session_id)) {
        tracing::debug!(%error, "span parent already set");
    }
    span.record(SESSION_ID_KEY, session_id);
}

/// Writes the context of `span` (trace context and baggage) into `headers`.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    let cx = span.context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// Reads the trace context and baggage a caller sent in `headers`.
pub fn extract(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// The session ID in a context's baggage, if any.
pub fn session_id_of(cx: &Context) -> Option<String> {
    cx.baggage()
        .get(SESSION_ID_KEY)
        .map(|value| value.to_string())
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// `/heist.v1.AuditService/StoreMessage` -> (`heist.v1.AuditService`, `StoreMessage`).
fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

fn is_traced(path: &str) -> bool {
    !UNTRACED_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// The gRPC status code of a response, when it is in the headers (a
/// trailers-only error response); `None` means it comes in the trailers
/// (an OK unary response or a stream).
fn grpc_status<B>(response: &Response<B>) -> Option<i32> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Records the call's outcome on its span; any non-OK code is an error.
fn record_outcome(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
        span.record(
            "otel.status_description",
            tonic::Code::from_i32(code).description(),
        );
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Server side: parents each request's span on the caller's context.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service made by [`ServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for ServerTrace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if !is_traced(&path) {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            target: "heist_plumbing::server",
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
            session.id = Empty,
            client.id = Empty,
        );
        let parent = extract(request.headers());
        if let Some(session_id) = session_id_of(&parent) {
            span.record(SESSION_ID_KEY, session_id);
        }
        if let Err(error) = span.set_parent(parent) {
            tracing::debug!(%error, "cannot parent the server span");
        }
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let outcome = future.await;
                if let Ok(response) = &outcome {
                    record_outcome(&Span::current(), grpc_status(response).unwrap_or(0));
                }
                outcome
            }
            .instrument(span),
        )
    }
}

/// Client side: a span per call, its context injected into the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

/// The service made by [`ClientTraceLayer`]; wrap a `tonic::transport::Channel`
/// in it (see [`traced`]) and build generated clients on top.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

/// A channel whose calls are traced and carry the trace context.
pub type TracedChannel = ClientTrace<tonic::transport::Channel>;

/// Wraps a channel so that its calls are traced and propagate context.
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    ClientTrace { inner: channel }
}

impl<S, B, R> Service<Request<B>> for ClientTrace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if !is_traced(&path) {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            target: "heist_plumbing::client",
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        inject(&span, request.headers_mut());
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let outcome = future.await;
                let span = Span::current();
                match &outcome {
                    Ok(response) => record_outcome(&span, grpc_status(response).unwrap_or(0)),
                    Err(_) => record_outcome(&span, tonic::Code::Unavailable as i32),
                }
                outcome
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/heist.v1.AuditService/StoreMessage"),
            ("heist.v1.AuditService", "StoreMessage")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
    }

    #[test]
    fn health_and_reflection_are_not_traced() {
        assert!(!is_traced("/grpc.health.v1.Health/Check"));
        assert!(!is_traced(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(is_traced("/heist.v1.AuditService/StoreMessage"));
    }
}
