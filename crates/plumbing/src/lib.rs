//! What every heist mesh server shares, so that each service is only its own logic.
//!
//! - [`serve`]: serve one tonic service on a listener with the standard
//!   `grpc.health.v1` protocol (NOT_SERVING until ready, SERVING, NOT_SERVING
//!   again when draining), server reflection v1 and v1alpha, and graceful
//!   shutdown within a grace period; optionally health alone on a second,
//!   plaintext port for Kubernetes' gRPC probe.
//! - [`telemetry`]: tracing subscriber, OpenTelemetry provider with
//!   `service.name`, W3C trace-context and baggage propagators, OTLP export when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and a flush on exit.
//! - [`propagation`]: the client layer that opens a span per call and injects
//!   trace context and baggage into metadata, the server layer that extracts
//!   them and parents the request span, and the session ID in baggage.
//! - [`session_span`]: the span processor that copies baggage `session.id` onto every span.
//! - [`auth`]: the bearer-token layer every protected service sits behind.
//! - [`metrics`]: the Prometheus registry, the `/metrics` endpoint and the per-RPC metrics.
//! - [`peer`]: the identity a client proved with its TLS certificate.
//! - [`quote`]: the one way a caller's value is quoted back (escaped, capped).
//! - [`status`]: the one mapping from service errors to `tonic::Status`.
//! - [`tls`]: TLS and mutual TLS for servers and clients, reloaded when the files change.
//! - [`side_port`]: binding the health-only and the metrics ports beside the main one.
//! - [`cli`] and [`shutdown`]: the flags and signals every binary shares.

pub mod auth;
pub mod cli;
pub mod jwk;
pub mod metrics;
pub mod peer;
pub mod propagation;
pub mod quote;
pub mod serve;
pub mod session_span;
pub mod shutdown;
pub mod side_port;
pub mod status;
pub mod telemetry;
pub mod tls;

pub use quote::{quote, quote_list};
pub use serve::{
    DependencyProbe, HostedService, ServeOptions, TransportLimits, serve, serve_protected,
    serve_protected_probed,
};
