//! heist-probe: the container health check of every heist service. One
//! standard `grpc.health.v1.Health/Check` over plaintext (the servers'
//! `--health-listen` port, as Kubernetes' native gRPC probe does), exit code
//! 0 when the answer is SERVING, 1 otherwise with one line saying why. The
//! images carry it because Docker's `healthcheck` runs a command, and no
//! other gRPC health client is in them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use heist_plumbing::cli::parse_duration;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Asks a gRPC health endpoint whether a service is SERVING.
#[derive(Debug, Parser)]
#[command(
    name = "heist-probe",
    version,
    about = "Asks a gRPC health endpoint (plaintext) whether a service is SERVING; exit 0 if it is, 1 if not.",
    after_help = "Example (a compose healthcheck):\n  heist-probe 127.0.0.1:8090\n  heist-probe 127.0.0.1:8090 --service heist.v1.AuditService"
)]
struct Args {
    /// The health address, HOST:PORT (a server's --health-listen).
    addr: String,
    /// The service to ask about; empty means the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// How long the connection and the call may take together.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match tokio::time::timeout(args.timeout, check(&args)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "error: {} did not answer within {:?}",
                args.addr, args.timeout
            );
            ExitCode::FAILURE
        }
    }
}

/// One Check; Ok only for SERVING.
async fn check(args: &Args) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))
        .with_context(|| format!("{:?} is not HOST:PORT", args.addr))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .with_context(|| format!("health check at {} failed", args.addr))?
        .into_inner();
    match answer.status() {
        ServingStatus::Serving => Ok(()),
        status => bail!("{} answers {}", args.addr, status.as_str_name()),
    }
}
