//! The start-up health report: every service asked over the standard gRPC
//! health protocol, printed as the seed did (✅ / ⚠️ / ❌ with the reason).
//! A service with several replicas is asked on each: it is healthy when one
//! of them is SERVING, and its line names every replica that is not (a
//! warning, while a twin serves).

use std::{fmt, time::Duration};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::mesh::{NamedEndpoint, ReplicaEndpoint};

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
    /// What the check found (for a service with several replicas, the best of theirs).
    pub verdict: Verdict,
    /// The replicas that are not healthy, when the service has several.
    pub unhealthy_replicas: Vec<ReplicaHealth>,
}

/// One replica that is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// `http://host:port` as asked.
    pub url: String,
    /// What its check found.
    pub verdict: Verdict,
}

impl fmt::Display for ReplicaHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Healthy(detail) => write!(f, "replica {} is healthy ({detail})", self.url),
            Verdict::Degraded(reason) => write!(f, "replica {} is degraded: {reason}", self.url),
            Verdict::Down(reason) => write!(f, "replica {} is unreachable: {reason}", self.url),
        }
    }
}

impl HealthLine {
    /// The line of a service whose replicas' checks found `verdicts` (in replica order): the
    /// best verdict, and the replicas that are not healthy.
    fn of_replicas(endpoint: &NamedEndpoint, verdicts: Vec<(String, Verdict)>) -> Self {
        let rank = |verdict: &Verdict| match verdict {
            Verdict::Healthy(_) => 0,
            Verdict::Degraded(_) => 1,
            Verdict::Down(_) => 2,
        };
        let best = verdicts
            .iter()
            .min_by_key(|(_, verdict)| rank(verdict))
            .map(|(_, verdict)| verdict.clone())
            .unwrap_or_else(|| Verdict::Down("no address".into()));
        let several = verdicts.len() > 1;
        let unhealthy_replicas: Vec<ReplicaHealth> = verdicts
            .into_iter()
            .filter(|(_, verdict)| several && rank(verdict) > 0)
            .map(|(url, verdict)| ReplicaHealth { url, verdict })
            .collect();
        Self {
            name: endpoint.name.clone(),
            url: endpoint.url.clone(),
            required: endpoint.required,
            verdict: best,
            unhealthy_replicas,
        }
    }
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
        }?;
        let serving = matches!(self.verdict, Verdict::Healthy(_));
        for replica in &self.unhealthy_replicas {
            let twins = if serving { "; a twin serves" } else { "" };
            write!(f, "\n   ⚠️  {replica}{twins}")?;
        }
        Ok(())
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

    /// Every replica that is not healthy, with its service's name (a warning while the
    /// service is healthy).
    pub fn unhealthy_replicas(&self) -> Vec<(&str, &ReplicaHealth)> {
        self.lines
            .iter()
            .flat_map(|line| {
                line.unhealthy_replicas
                    .iter()
                    .map(|replica| (line.name.as_str(), replica))
            })
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

/// Asks every replica of every endpoint's health service about the whole
/// server (`""`), all at once, each within `timeout`.
pub async fn check_services(endpoints: &[NamedEndpoint], timeout: Duration) -> Vec<HealthLine> {
    let checks: Vec<Vec<_>> = endpoints
        .iter()
        .map(|endpoint| {
            endpoint
                .replicas
                .iter()
                .cloned()
                .map(|replica| tokio::spawn(async move { check(&replica, timeout).await }))
                .collect()
        })
        .collect();
    let mut lines = Vec::with_capacity(checks.len());
    for (replica_checks, endpoint) in checks.into_iter().zip(endpoints) {
        let mut verdicts = Vec::with_capacity(replica_checks.len());
        for (check, replica) in replica_checks.into_iter().zip(&endpoint.replicas) {
            let verdict = check
                .await
                .unwrap_or_else(|error| Verdict::Down(format!("health check failed: {error}")));
            verdicts.push((replica.url.clone(), verdict));
        }
        lines.push(HealthLine::of_replicas(endpoint, verdicts));
    }
    lines
}

async fn check(replica: &ReplicaEndpoint, timeout: Duration) -> Verdict {
    let mut client = HealthClient::new(replica.channel.clone());
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
    let chain = heist_plumbing::status::error_chain(status);
    if text.contains("Connection refused") || text.contains("tcp connect error") {
        "connection refused (is it running?)".into()
    } else if chain.contains("frame with invalid size") {
        // A TLS alert read as an HTTP/2 frame.
        "the server does not speak plaintext HTTP/2 (is it serving TLS? call it over https with \
         a tls section in the config)"
            .into()
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
            unhealthy_replicas: Vec::new(),
        }
    }

    fn audit_of(urls: &[&str]) -> NamedEndpoint {
        NamedEndpoint {
            name: "Audit Service".into(),
            url: urls.join(", "),
            required: true,
            service: "audit".into(),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn a_service_is_healthy_while_one_replica_serves_and_names_the_others() {
        let endpoint = audit_of(&["http://a:1", "http://b:2"]);
        let line = HealthLine::of_replicas(
            &endpoint,
            vec![
                (
                    "http://a:1".into(),
                    Verdict::Down("connection refused".into()),
                ),
                ("http://b:2".into(), Verdict::Healthy("SERVING".into())),
            ],
        );
        assert_eq!(line.verdict, Verdict::Healthy("SERVING".into()));
        assert_eq!(
            line.to_string(),
            "✅ Audit Service is healthy (http://a:1, http://b:2; SERVING)\n   \
             ⚠️  replica http://a:1 is unreachable: connection refused; a twin serves"
        );
        let report = HealthReport { lines: vec![line] };
        assert!(report.required_down().is_empty());
        assert_eq!(report.unhealthy_replicas().len(), 1);
    }

    #[test]
    fn a_service_is_down_only_when_every_replica_is() {
        let endpoint = audit_of(&["http://a:1", "http://b:2"]);
        let line = HealthLine::of_replicas(
            &endpoint,
            vec![
                (
                    "http://a:1".into(),
                    Verdict::Down("connection refused".into()),
                ),
                ("http://b:2".into(), Verdict::Degraded("NOT_SERVING".into())),
            ],
        );
        assert_eq!(line.verdict, Verdict::Degraded("NOT_SERVING".into()));
        assert_eq!(line.unhealthy_replicas.len(), 2);
        assert!(!line.to_string().contains("a twin serves"), "{line}");
        let one = audit_of(&["http://a:1"]);
        let line =
            HealthLine::of_replicas(&one, vec![("http://a:1".into(), Verdict::Down("x".into()))]);
        assert!(
            line.unhealthy_replicas.is_empty(),
            "one replica: no replica lines"
        );
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
