//! Trace context and baggage across gRPC calls.
//!
//! - [`ClientTraceLayer`] wraps a client channel: every call gets a client span
//!   (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`) and
//!   carries the W3C `traceparent` and `baggage` headers of that span. When
//!   nothing is exported (no OpenTelemetry context), the session ID still
//!   travels as baggage, taken from the spans (see
//!   [`crate::session_span::SessionIdLayer`]).
//! - [`ServerTraceLayer`] wraps a server: it extracts those headers and parents
//!   the request's server span on them before the span is entered, and records
//!   the baggage `session.id` as a span field, so every log line written while
//!   serving a session names it. Health checks and reflection make no spans.
//! - Under mutual TLS the server span records the identity the client's
//!   certificate proved as `tls.client.identity`.
//! - The server logs `call served` with the gRPC code at DEBUG
//!   (target `heist_plumbing::server`), inside the server span.
//! - Both sides mark a call that ends with a non-OK status as an error (span
//!   status ERROR with the code's description) and record an `exception`
//!   event with the status code and message.
//! - [`with_session`] puts a session ID into baggage for everything run inside it.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
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

use crate::quote::quote;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    session_span::{SESSION_ID_KEY, session_id_in},
    telemetry::record_error,
};

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
    span.record(SESSION_ID_KEY, tracing::field::display(session_id));
}

/// Writes the context of `span` (trace context and baggage) into `headers`.
/// A context without a session in its baggage (e.g. nothing is exported, so
/// OpenTelemetry keeps no context) gets the session `span` or an ancestor
/// recorded.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    let mut cx = span.context();
    if session_id_of(&cx).is_none()
        && let Some(session_id) = session_id_in(span)
    {
        cx = cx.with_baggage([KeyValue::new(SESSION_ID_KEY, session_id)]);
    }
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

/// A call being timed for the RPC metrics (only while they are on).
struct Metered {
    service: String,
    method: String,
    started: std::time::Instant,
}

impl Metered {
    fn start(service: &str, method: &str) -> Option<Self> {
        crate::metrics::enabled().then(|| Self {
            service: service.to_owned(),
            method: method.to_owned(),
            started: std::time::Instant::now(),
        })
    }

    /// Records the call, ended with `status`, with `record` (the server's
    /// or the client's side).
    fn finish(
        self,
        status: Option<&tonic::Status>,
        record: fn(&str, &str, tonic::Code, std::time::Duration),
    ) {
        let code = status.map_or(tonic::Code::Ok, tonic::Status::code);
        record(&self.service, &self.method, code, self.started.elapsed());
    }
}

/// The gRPC status of a response, when it is in the headers (a
/// trailers-only error response); `None` means it comes in the trailers
/// (an OK unary response or a stream), taken as OK.
fn grpc_status<B>(response: &Response<B>) -> Option<tonic::Status> {
    tonic::Status::from_header_map(response.headers())
}

/// Records the call's outcome on its span: the status code, and for any
/// non-OK code the span status ERROR and an `exception` event carrying the
/// code and the status message (what the caller sees, no more).
fn record_outcome(span: &Span, status: Option<&tonic::Status>) {
    let code = status.map_or(tonic::Code::Ok, tonic::Status::code);
    span.record("rpc.grpc.status_code", code as i32);
    let Some(status) = status.filter(|_| code != tonic::Code::Ok) else {
        return;
    };
    let message = if status.message().is_empty() {
        code.description()
    } else {
        status.message()
    };
    record_error(span, &format!("grpc.{code:?}"), message);
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
            otel.name = %quote(path.trim_start_matches('/')),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %quote(service),
            rpc.method = %quote(method),
            rpc.grpc.status_code = Empty,
            session.id = Empty,
            client.id = Empty,
            tls.client.identity = Empty,
        );
        if let Some(peer) = request.extensions().get::<crate::peer::PeerIdentity>() {
            span.record(
                "tls.client.identity",
                tracing::field::display(quote(peer.as_str())),
            );
        }
        let parent = extract(request.headers());
        if let Some(session_id) = session_id_of(&parent) {
            // The caller's value: escaped and capped before it reaches a log line.
            span.record(SESSION_ID_KEY, tracing::field::display(quote(&session_id)));
        }
        if let Err(error) = span.set_parent(parent) {
            tracing::debug!(%error, "cannot parent the server span");
        }
        let metered = Metered::start(service, method);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let outcome = future.await;
                if let Ok(response) = &outcome {
                    let status = grpc_status(response);
                    record_outcome(&Span::current(), status.as_ref());
                    if let Some(metered) = metered {
                        metered.finish(status.as_ref(), crate::metrics::rpc::record_server);
                    }
                    // An access log line, inside the server span (so it names
                    // the session): `--log info,heist_plumbing::server=debug`.
                    tracing::debug!(
                        target: "heist_plumbing::server",
                        code = ?status.map_or(tonic::Code::Ok, |status| status.code()),
                        "call served"
                    );
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
        ClientTrace {
            inner,
            server: None,
        }
    }
}

/// The service made by [`ClientTraceLayer`]; wrap a `tonic::transport::Channel`
/// in it (see [`traced`]) and build generated clients on top.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
    /// The server's host and port, recorded on every span as `server.address` and
    /// `server.port` (see [`traced_at`]).
    server: Option<Arc<(String, u16)>>,
}

/// A channel whose calls are traced and carry the trace context.
pub type TracedChannel = ClientTrace<tonic::transport::Channel>;

/// Wraps a channel so that its calls are traced and propagate context.
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    ClientTrace {
        inner: channel,
        server: None,
    }
}

/// Like [`traced`], each call's span also naming the server it goes to (`server.address`,
/// `server.port`): the replica that served it, when a service has several.
pub fn traced_at(channel: tonic::transport::Channel, host: &str, port: u16) -> TracedChannel {
    ClientTrace {
        inner: channel,
        server: Some(Arc::new((host.to_owned(), port))),
    }
}

impl<S, B, R> Service<Request<B>> for ClientTrace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
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
            server.address = Empty,
            server.port = Empty,
        );
        if let Some(server) = &self.server {
            span.record("server.address", server.0.as_str());
            span.record("server.port", i64::from(server.1));
        }
        inject(&span, request.headers_mut());
        let metered = Metered::start(service, method);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let outcome = future.await;
                let span = Span::current();
                let status = match &outcome {
                    Ok(response) => grpc_status(response),
                    Err(error) => Some(tonic::Status::unavailable(error.to_string())),
                };
                record_outcome(&span, status.as_ref());
                if let Some(metered) = metered {
                    metered.finish(status.as_ref(), crate::metrics::rpc::record_client);
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

    use std::{convert::Infallible, sync::Mutex};

    use opentelemetry::{
        Value,
        trace::{Status as OtelStatus, TracerProvider as _},
    };
    use opentelemetry_sdk::{
        propagation::{BaggagePropagator, TraceContextPropagator},
        trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
    };
    use tracing_subscriber::layer::SubscriberExt;

    use crate::session_span::{SessionIdLayer, current_session_id};

    /// What the wrapped service saw: the request headers, and the session ID
    /// and span name current while its future ran.
    #[derive(Debug, Default)]
    struct Seen {
        headers: HeaderMap,
        session_id: Option<String>,
        in_span: bool,
    }

    /// A service that answers with `status` (a trailers-only gRPC answer
    /// when non-zero) and keeps what it saw.
    #[derive(Clone)]
    struct Recorder {
        status: Option<(i32, &'static str)>,
        seen: Arc<Mutex<Seen>>,
    }

    impl Recorder {
        fn answering(status: Option<(i32, &'static str)>) -> Self {
            Self {
                status,
                seen: Arc::default(),
            }
        }

        fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
            self.seen.lock().unwrap()
        }
    }

    impl Service<Request<()>> for Recorder {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            let seen = self.seen.clone();
            let status = self.status;
            Box::pin(async move {
                let mut guard = seen.lock().unwrap();
                guard.headers = request.headers().clone();
                guard.session_id = current_session_id();
                guard.in_span = !Span::current().is_none();
                let mut response = Response::new(());
                if let Some((code, message)) = status {
                    let headers = response.headers_mut();
                    headers.insert("grpc-status", HeaderValue::from(code));
                    headers.insert("grpc-message", HeaderValue::from_static(message));
                }
                Ok(response)
            })
        }
    }

    /// A subscriber like the services' (session layer, OTel layer with the
    /// session processor) exporting to memory; `None` leaves OTel out, as
    /// when nothing is exported.
    fn subscriber(
        exporter: Option<&InMemorySpanExporter>,
    ) -> (tracing::subscriber::DefaultGuard, Option<SdkTracerProvider>) {
        global::set_text_map_propagator(
            opentelemetry::propagation::TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ]),
        );
        let provider = exporter.map(|exporter| {
            SdkTracerProvider::builder()
                .with_span_processor(crate::session_span::SessionIdProcessor)
                .with_simple_exporter(exporter.clone())
                .build()
        });
        let otel = provider
            .as_ref()
            .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let subscriber = tracing_subscriber::registry()
            .with(SessionIdLayer)
            .with(otel);
        (tracing::subscriber::set_default(subscriber), provider)
    }

    fn request(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[tokio::test]
    async fn without_export_a_client_call_still_sends_the_session_as_baggage() {
        let (_guard, _) = subscriber(None);
        let recorder = Recorder::answering(None);
        let mut client = ClientTrace {
            inner: recorder.clone(),
            server: None,
        };
        let session = tracing::info_span!("session", session.id = Empty);
        with_session(&session, "heist_20261124_101500_beef");
        async {
            client
                .call(request("/heist.v1.AuditService/StoreMessage"))
                .await
        }
        .instrument(session)
        .await
        .unwrap();
        let baggage = recorder.seen().headers.get("baggage").cloned();
        assert_eq!(
            baggage.as_ref().and_then(|value| value.to_str().ok()),
            Some("session.id=heist_20261124_101500_beef")
        );
    }

    #[tokio::test]
    async fn the_server_span_takes_the_callers_session_for_its_log_lines() {
        let (_guard, _) = subscriber(None);
        let recorder = Recorder::answering(None);
        let mut server = ServerTrace {
            inner: recorder.clone(),
        };
        let mut call = request("/heist.v1.MemoryService/StoreMemory");
        call.headers_mut().insert(
            "baggage",
            HeaderValue::from_static("session.id=heist_20261124_101500_cafe"),
        );
        server.call(call).await.unwrap();
        assert_eq!(
            recorder.seen().session_id.as_deref(),
            Some("heist_20261124_101500_cafe")
        );
    }

    #[tokio::test]
    async fn health_checks_and_reflection_run_outside_any_span() {
        let exporter = InMemorySpanExporter::default();
        let (_guard, provider) = subscriber(Some(&exporter));
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            let recorder = Recorder::answering(None);
            let mut server = ServerTrace {
                inner: recorder.clone(),
            };
            server.call(request(path)).await.unwrap();
            assert!(!recorder.seen().in_span, "{path} ran in a span");
            let mut client = ClientTrace {
                inner: recorder.clone(),
                server: None,
            };
            client.call(request(path)).await.unwrap();
            assert!(
                recorder.seen().headers.get("traceparent").is_none(),
                "{path} carried a trace"
            );
        }
        provider.unwrap().force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_call_marks_client_and_server_spans_as_errors_with_the_exception() {
        let exporter = InMemorySpanExporter::default();
        let (_guard, provider) = subscriber(Some(&exporter));
        let denied = Some((7, "token lacks scope `database_query:use`"));
        let mut server = ServerTrace {
            inner: Recorder::answering(denied),
        };
        let mut client = ClientTrace {
            inner: Recorder::answering(denied),
            server: None,
        };
        let session = tracing::info_span!("session", session.id = Empty);
        with_session(&session, "heist_20261124_101500_f00d");
        async {
            client
                .call(request("/heist.v1.ToolService/CallTool"))
                .await
                .unwrap();
            server
                .call(request("/heist.v1.ToolService/CallTool"))
                .await
                .unwrap();
        }
        .instrument(session)
        .await;
        provider.unwrap().force_flush().unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        for kind in ["client", "server"] {
            let span = spans
                .iter()
                .find(|span| format!("{:?}", span.span_kind).eq_ignore_ascii_case(kind))
                .unwrap_or_else(|| panic!("no {kind} span in {spans:#?}"));
            assert_eq!(
                span.status,
                OtelStatus::error("token lacks scope `database_query:use`"),
                "{kind}"
            );
            assert_eq!(
                attribute(span, "rpc.grpc.status_code"),
                Some(&Value::I64(7))
            );
            let exception = span
                .events
                .iter()
                .find(|event| event.name == "exception")
                .unwrap_or_else(|| panic!("{kind} span has no exception event"));
            assert!(exception.attributes.iter().any(|kv| {
                kv.key.as_str() == "exception.message"
                    && kv.value.as_str().contains("database_query:use")
            }));
        }
    }

    #[tokio::test]
    async fn a_client_span_names_the_server_it_went_to() {
        let exporter = InMemorySpanExporter::default();
        let (_guard, provider) = subscriber(Some(&exporter));
        let mut client = ClientTrace {
            inner: Recorder::answering(None),
            server: Some(Arc::new(("127.0.0.1".to_owned(), 8006))),
        };
        client
            .call(request("/heist.v1.AuditService/StoreTurn"))
            .await
            .unwrap();
        provider.unwrap().force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans.first().expect("the client span");
        assert_eq!(
            attribute(span, "server.address"),
            Some(&Value::from("127.0.0.1"))
        );
        assert_eq!(attribute(span, "server.port"), Some(&Value::I64(8006)));
    }
}
