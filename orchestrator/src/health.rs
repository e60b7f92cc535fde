//! The start-up health report: every service asked over the standard gRPC
//! health protocol, printed as the seed did (✅ / ⚠️ / ❌ with the reason).

use std::{fmt, time::Duration};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::mesh::NamedEndpoint;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serving.
    Healthy(String),
    /// Reachable but not serving yet (or a soft problem).
    Degraded(String),
    /// Unreachable or refusing.
    Down(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct HealthLine {
    /// The service, e.g. `Audit Service`.
    pub name: String,
    /// Where it was asked.
    pub url: String,
    /// Whether a run needs it.
    pub required: bool,
    /// What the check found.
    pub verdict: Verdict,
}

impl fmt::Display for HealthLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need = if self.required {
            "required"
        } else {
            "optional"
        };
        match &self.verdict {
            Verdict::Healthy(detail) => {
                write!(f, "✅ {} is healthy ({}; {detail})", self.name, self.url)
            }
            Verdict::Degraded(reason) => write!(
                f,
                "⚠️  {} is degraded ({}; {need}): {reason}",
                self.name, self.url
            ),
            Verdict::Down(reason) => write!(
                f,
                "❌ {} is unreachable ({}; {need}): {reason}",
                self.name, self.url
            ),
        }
    }
}

/// Every line of a health check.
#[derive(Debug, Clone, Default)]
pub struct HealthReport {
    /// The lines, in the order checked.
    pub lines: Vec<HealthLine>,
}

impl HealthReport {
    /// The required services that are not healthy.
    pub fn required_down(&self) -> Vec<&HealthLine> {
        self.lines
            .iter()
            .filter(|line| line.required && !matches!(line.verdict, Verdict::Healthy(_)))
            .collect()
    }

    /// True when any service is not healthy.
    pub fn is_degraded(&self) -> bool {
        self.lines
            .iter()
            .any(|line| !matches!(line.verdict, Verdict::Healthy(_)))
    }
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Asks every endpoint's health service about the whole server (`""`), all
/// at once, each within `timeout`.
pub async fn check_services(endpoints: &[NamedEndpoint], timeout: Duration) -> Vec<HealthLine> {
    let checks: Vec<_> = endpoints
        .iter()
        .cloned()
        .map(|endpoint| {
            tokio::spawn(async move {
                let verdict = check(&endpoint, timeout).await;
                HealthLine {
                    name: endpoint.name,
                    url: endpoint.url,
                    required: endpoint.required,
                    verdict,
                }
            })
        })
        .collect();
    let mut lines = Vec::with_capacity(checks.len());
    for (check, endpoint) in checks.into_iter().zip(endpoints) {
        lines.push(check.await.unwrap_or_else(|error| HealthLine {
            name: endpoint.name.clone(),
            url: endpoint.url.clone(),
            required: endpoint.required,
            verdict: Verdict::Down(format!("health check failed: {error}")),
        }));
    }
    lines
}

async fn check(endpoint: &NamedEndpoint, timeout: Duration) -> Verdict {
    let mut client = HealthClient::new(endpoint.channel.clone());
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Verdict::Down(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => Verdict::Down(describe_status(&status)),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Verdict::Healthy("SERVING".into()),
            ServingStatus::NotServing => Verdict::Degraded(
                "NOT_SERVING: starting, draining, or waiting for OAuth's keys".into(),
            ),
            other => Verdict::Degraded(format!("health status {other:?}")),
        },
    }
}

/// A readable reason for a failed health call.
fn describe_status(status: &tonic::Status) -> String {
    let text = status.message();
    if text.contains("Connection refused") || text.contains("tcp connect error") {
        "connection refused (is it running?)".into()
    } else if text.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {text}", status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(required: bool, verdict: Verdict) -> HealthLine {
        HealthLine {
            name: "Audit Service".into(),
            url: "http://127.0.0.1:8006".into(),
            required,
            verdict,
        }
    }

    #[test]
    fn lines_read_like_the_seeds_report() {
        assert_eq!(
            line(true, Verdict::Healthy("SERVING".into())).to_string(),
            "✅ Audit Service is healthy (http://127.0.0.1:8006; SERVING)"
        );
        assert!(
            line(true, Verdict::Down("connection refused".into()))
                .to_string()
                .starts_with("❌ Audit Service is unreachable")
        );
        assert!(
            line(false, Verdict::Degraded("x".into()))
                .to_string()
                .starts_with("⚠️  Audit Service is degraded")
        );
    }

    #[test]
    fn only_required_services_that_are_not_healthy_block_a_run() {
        let report = HealthReport {
            lines: vec![
                line(true, Verdict::Healthy("SERVING".into())),
                line(false, Verdict::Down("refused".into())),
            ],
        };
        assert!(report.required_down().is_empty());
        assert!(report.is_degraded());
        let report = HealthReport {
            lines: vec![line(true, Verdict::Degraded("NOT_SERVING".into()))],
        };
        assert_eq!(report.required_down().len(), 1);
    }
}
