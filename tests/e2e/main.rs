//! The end-to-end tests: one binary, one module per area (each links the
//! whole workspace, so one binary links it once). Run one area with a
//! filter, e.g. `cargo test -p heist-e2e --test e2e -- quoting::`.
//!
//! Tests run in parallel threads of this one process: none may change
//! process-wide state (environment, current directory, global telemetry).
//! The one test that installs global telemetry is its own binary
//! (`alone/audit_tracing.rs`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod audiences;
mod audit_binary;
mod audit_integrity;
mod audit_replicas;
mod audit_service;
mod audit_watch_limits;
mod auth_matrix;
mod database_query;
mod deploy_manifests;
mod fault_injection;
mod genai_spans;
mod grpcurl_demo;
mod harness;
mod health_port;
mod http2_limits;
mod key_rotation;
mod llm_openai;
mod memory_replicas;
mod memory_service;
mod metrics_exposition;
mod metrics_prometheus;
mod oauth_replicas;
mod oauth_service;
mod orchestrator_cli;
mod orchestrator_e2e;
mod orchestrator_llm;
mod orchestrator_pipe;
mod orchestrator_resume;
mod otlp_collector;
mod quoting;
mod reflection_per_server;
mod replicas;
mod scale_out;
mod scripts_e2e;
mod seed_vocabulary;
mod service_logs;
mod slow_service;
mod tls;
mod token_accounting;
mod token_binding;
mod tool_service;
mod tracing_e2e;
