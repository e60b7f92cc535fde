//! The heist orchestrator: loads the config, checks the mesh, runs the agents' conversation.
//!
//! - [`config`]: the YAML config (the seed's layout), validated with precise errors.
//! - [`mesh`]: one channel per service, traced, with deadlines; [`replicas`]: a service's
//!   addresses and the channel that balances calls over them; [`tokens`]: the token cache;
//!   [`rpc_timing`]: per-call latency on those channels, for the benchmark.
//! - [`health`]: the start-up health report; [`discovery`]: what the tool services offer.
//! - [`llm`] (crate `heist-llm`): the LLM backends (OpenAI-compatible HTTP, offline) and
//!   tool-call parsing.
//! - [`audit_writer`]: audit writes that are spooled, never dropped, while Audit is down.
//! - [`memory_sync`]: the memory outbox and the reconcile after Memory lost entries.
//! - [`metrics`]: the orchestrator's Prometheus metrics (turns, breakers, spool, outbox, LLM).
//! - [`engine`]: a session turn by turn; [`turn_order`]: who speaks; [`session_id`].
//! - [`console`] and [`transcript`]: what the user sees and keeps; [`stdout`]: every line
//!   printed, quiet when the reader goes away (`| head`); [`usage`]: token accounting
//!   (per agent and per session) as the run summary and `sessions show` print it.
//! - [`breaker_health`]: open breakers closed as soon as their service's health says SERVING.
//! - [`spool`] (crate `heist-spool`): Audit writes kept on disk while Audit is unreachable;
//!   [`resilience`] (crate `heist-resilience`): retries, deadlines and circuit breakers.
//! - [`genai`]: the OpenTelemetry GenAI conventions of the session, turn, LLM and tool spans,
//!   and the opt-in message content.
//! - [`liveness`]: telling a crashed session from a running one.
//! - [`seal`]: a session's chain seal (Audit's `VerifySession` verdict) for outcomes and transcripts.
//! - [`app`]: the commands behind the `orchestrator` binary.

// Standard output goes through `stdout` only (quiet when its reader goes away).
#![deny(clippy::print_stdout)]

pub mod app;
pub mod audit_writer;
pub mod breaker_health;
pub mod clients;
pub mod config;
pub mod console;
pub mod discovery;
pub mod engine;
pub mod genai;
pub mod health;
pub mod liveness;
pub mod memory_sync;
pub mod mesh;
pub mod metrics;
pub mod replicas;
pub mod rpc_timing;
pub mod seal;
pub mod session_id;
pub mod stdout;
pub mod tokens;
pub mod trail;
pub mod transcript;
pub mod turn_order;
pub mod usage;

// The orchestrator's separable parts, crates of their own (they import
// nothing from the rest of it), under the module names they always had.
pub use heist_llm as llm;
pub use heist_resilience as resilience;
pub use heist_spool as spool;

/// The memory allocator of the orchestrator and of the benchmarks' clients
/// (`#[global_allocator] static ALLOCATOR: Allocator = Allocator;`):
/// mimalloc, whose per-thread free lists suit the many small, short-lived
/// allocations of its sessions better than glibc's malloc (64 sessions:
/// +16% turns/s). The services keep the system allocator: under mimalloc
/// every blocking thread of the Tool service kept a heap of its own (peak
/// RSS 17 -> 129 MiB at 64 sessions). See BENCHMARKS.md.
pub use mimalloc::MiMalloc as Allocator;
