//! The OAuth service's own Prometheus metrics, in the process's registry
//! (`heist_plumbing::metrics`):
//!
//! - `heist_oauth_tokens_issued_total`: tokens signed and sent;
//! - `heist_oauth_tokens_refused_total{reason}`: `IssueToken` calls refused,
//!   by a closed set of reasons ([`Refusal`]);
//! - `heist_oauth_revocations_total`: tokens newly revoked through this
//!   replica (a repeated revocation is not counted again).
//!
//! Every update is an atomic add on a pre-built label set: nothing to guard.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family},
};

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Refusal {
    /// A grant type other than `client_credentials`.
    unsupported_grant,
    /// A field missing or malformed (no client ID).
    bad_request,
    /// An unknown client ID.
    bad_client,
    /// A known client with the wrong secret (the caller hears
    /// `invalid_client` for both, so IDs cannot be probed; only operators see this).
    bad_secret,
    /// No scope, or a malformed one.
    bad_scope,
    /// A scope the client may not have.
    scope_not_allowed,
    /// A resource (audience) that is empty, unknown or not allowed (RFC 8707 `invalid_target`).
    invalid_target,
    /// Our fault: signing, a task, the revocation store.
    internal,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Refusal::unsupported_grant,
        Refusal::bad_request,
        Refusal::bad_client,
        Refusal::bad_secret,
        Refusal::bad_scope,
        Refusal::scope_not_allowed,
        Refusal::invalid_target,
        Refusal::internal,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: Refusal,
}

struct OAuthMetrics {
    issued: Counter,
    refused: Family<ReasonLabel, Counter>,
    revocations: Counter,
}

static METRICS: LazyLock<OAuthMetrics> = LazyLock::new(|| {
    use heist_plumbing::metrics::register;
    let metrics = OAuthMetrics {
        issued: Counter::default(),
        refused: Family::default(),
        revocations: Counter::default(),
    };
    register(
        "heist_oauth_tokens_issued",
        "Access tokens issued",
        metrics.issued.clone(),
    );
    register(
        "heist_oauth_tokens_refused",
        "Token requests refused, by reason",
        metrics.refused.clone(),
    );
    register(
        "heist_oauth_revocations",
        "Tokens newly revoked through this replica",
        metrics.revocations.clone(),
    );
    for reason in Refusal::ALL {
        let _ = metrics.refused.get_or_create(&ReasonLabel { reason });
    }
    metrics
});

/// Registers the metrics (at zero) if they are not yet.
pub(crate) fn init() {
    LazyLock::force(&METRICS);
}

/// Counts one token issued.
pub(crate) fn issued() {
    METRICS.issued.inc();
}

/// Counts one token refused for `reason`.
pub(crate) fn refused(reason: Refusal) {
    METRICS.refused.get_or_create(&ReasonLabel { reason }).inc();
}

/// Counts one token newly revoked.
pub(crate) fn revoked() {
    METRICS.revocations.inc();
}
