//! An OTLP/gRPC trace receiver inside the test process, standing in for a
//! collector (Jaeger's OTLP port): it keeps every span the processes under
//! test export, with the `service.name` of each.

use std::sync::{Arc, Mutex};

use heist_e2e::TestServer;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// An OTLP/gRPC trace receiver keeping every export request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Receiver {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A receiver serving on a listener of its own.
pub(crate) struct Collector {
    _server: TestServer,
    receiver: Receiver,
    addr: std::net::SocketAddr,
}

impl Collector {
    /// Serves on `listener`.
    pub(crate) async fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        // The harness binds a free port; this collector serves on `listener`.
        let server = TestServer::start(move |_free_port, shutdown| {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        })
        .await;
        Self {
            _server: server,
            receiver,
            addr,
        }
    }

    /// Serves on a free port.
    pub(crate) async fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    /// The address it serves on.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, with the `service.name` that sent it.
    pub(crate) fn spans(&self) -> Vec<Collected> {
        let requests = self.receiver.requests.lock().unwrap();
        let mut spans = Vec::new();
        for request in requests.iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push(Collected {
                            service: service.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// How many export requests arrived.
    pub(crate) fn request_count(&self) -> usize {
        self.receiver.requests.lock().unwrap().len()
    }
}

/// One exported span and the service that sent it.
#[derive(Debug, Clone)]
pub(crate) struct Collected {
    /// The `service.name` of the process that sent it.
    pub(crate) service: String,
    /// The span.
    pub(crate) span: Span,
}

/// An attribute value as text (strings, numbers, booleans).
pub(crate) fn value_text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(number) => Some(number.to_string()),
        Value::BoolValue(flag) => Some(flag.to_string()),
        Value::DoubleValue(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The value of attribute `key`, as text.
pub(crate) fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(value_text)
}

impl Collected {
    /// The span's attribute `key`, as text.
    pub(crate) fn attr(&self, key: &str) -> Option<String> {
        string_attribute(&self.span.attributes, key)
    }

    /// The span's kind.
    pub(crate) fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    /// Whether its status is ERROR.
    pub(crate) fn is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|status| status.code == StatusCode::Error as i32)
    }

    /// Whether it recorded an `exception` event.
    pub(crate) fn has_exception(&self) -> bool {
        self.span
            .events
            .iter()
            .any(|event| event.name == "exception")
    }

    /// `heist-tools ToolService/CallTool (server)`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} {} ({:?})", self.service, self.span.name, self.kind())
    }
}
