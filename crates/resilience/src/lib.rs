//! Retries and circuit breakers for the orchestrator's calls to the mesh.
//!
//! - [`policy`]: [`RetryPolicy`], exponential backoff with jitter ([`exponential_backoff`], the
//!   formula without it, also serves the LLM client); [`rng`]: SplitMix64, the jitter's source
//!   and the turn order's draw.
//! - [`classify`]: which failures are retried and which mean a service is unwell.
//! - [`breaker`]: [`CircuitBreaker`] for one service (or one replica of it); [`registry`]:
//!   [`Breakers`], one per service or replica.
//! - [`events`]: the breakers' state changes ([`BreakerEvent`]), kept and broadcast.
//! - [`call`]: [`call_with_resilience`], a call through a breaker with retries;
//!   [`call_across`], the same across a service's replicas, each with its own breaker.
//! - [`clock`]: time, injected so tests never sleep.
//! - [`settings_error`]: config values that cannot work.

pub mod breaker;
pub mod call;
pub mod classify;
pub mod clock;
pub mod events;
pub mod policy;
pub mod registry;
pub mod rng;
pub mod settings_error;

pub use breaker::{BreakerOpen, BreakerSettings, CircuitBreaker, Outcome, Permit};
pub use call::{ResilienceError, Try, call_across, call_with_resilience};
pub use classify::{is_health_failure, is_replica_gone, is_retryable};
pub use clock::{Clock, ManualClock, TokioClock};
pub use events::{BreakerEvent, BreakerState, TransitionReason};
pub use policy::{Jitter, RetryPolicy, exponential_backoff};
pub use registry::{AUDIT, Breakers, MEMORY, OAUTH, replica, service_of, tool_service};
pub use settings_error::SettingsError;
