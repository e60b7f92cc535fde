//! A client call and the Audit handler that serves it share one trace, and
//! both spans carry the session ID from baggage (in-test span exporter).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_audit::StoreConfig;
use heist_e2e::{TestAuth, services};
use heist_plumbing::{
    ServeOptions,
    propagation::{traced, with_session},
    telemetry,
};
use heist_proto::v1::{CreateSessionRequest, audit_service_client::AuditServiceClient};
use opentelemetry::{Value, trace::SpanKind};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tempfile::TempDir;
use tracing::Instrument;

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_spans_share_the_trace_and_the_session_id() {
    let exporter = InMemorySpanExporter::default();
    let telemetry = telemetry::init_with_exporter(
        "heist-test",
        "warn",
        telemetry::LogFormat::Text,
        Some(exporter.clone()),
    )
    .unwrap();
    let dir = TempDir::new().unwrap();
    let config = StoreConfig::new(dir.path().join("audit.db"));
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = services::audit(config, authenticator, ServeOptions::default()).await;

    let session_id = "heist_20261124_101500_beef";
    let mut client = AuditServiceClient::with_interceptor(
        traced(server.channel()),
        auth.bearer(&["audit:write"]),
    );
    let root = tracing::info_span!(target: "heist_test", "session");
    with_session(&root, session_id);
    client
        .create_session(CreateSessionRequest {
            session_id: session_id.into(),
            ..Default::default()
        })
        .instrument(root.clone())
        .await
        .unwrap();
    drop(root);
    server.stop().await.unwrap();
    telemetry.provider().force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let client_span = spans
        .iter()
        .find(|s| {
            s.span_kind == SpanKind::Client && s.name == "heist.v1.AuditService/CreateSession"
        })
        .unwrap_or_else(|| panic!("no client span in {spans:#?}"));
    let server_span = spans
        .iter()
        .find(|s| {
            s.span_kind == SpanKind::Server && s.name == "heist.v1.AuditService/CreateSession"
        })
        .unwrap_or_else(|| panic!("no server span in {spans:#?}"));
    assert_eq!(
        client_span.span_context.trace_id(),
        server_span.span_context.trace_id()
    );
    assert_eq!(
        server_span.parent_span_id,
        client_span.span_context.span_id()
    );
    for span in spans
        .iter()
        .filter(|s| s.span_context.trace_id() == client_span.span_context.trace_id())
    {
        assert_eq!(
            attribute(span, "session.id"),
            Some(&Value::from(session_id)),
            "span {} lacks session.id",
            span.name
        );
    }
    assert_eq!(
        attribute(server_span, "rpc.system"),
        Some(&Value::from("grpc"))
    );
    assert_eq!(
        attribute(server_span, "rpc.method"),
        Some(&Value::from("CreateSession"))
    );
    telemetry.shutdown().await;
}
