//! Serving one tonic service the way every heist mesh server does.
//!
//! The server answers `grpc.health.v1.Health` from the first moment, but says
//! NOT_SERVING until the service's `ready` future resolves; then SERVING; and
//! NOT_SERVING again as soon as shutdown starts, before connections drain; with a
//! [`DependencyProbe`], also NOT_SERVING while the dependency it checks is down.
//! Reflection (v1 and v1alpha, for grpcurl 1.8) lists exactly the service,
//! health and reflection: it serves the service's own descriptor set
//! ([`ServiceDescriptor`]), not every heist file.
//!
//! What one peer can make a server hold is bounded ([`TransportLimits`]):
//! streams per connection, the size of each request message per method
//! (refused from its header, before it is read), locally reset streams per
//! connection (then GOAWAY), keep-alive pings, and an idle timeout that
//! closes connections with no open call.
//!
//! With [`ServeOptions::health_port`], the server also answers health alone
//! on a second, plaintext port ([`crate::side_port`]), from the same reporter and
//! under the same limits, until the main port has drained.

mod idle;
mod message_size;
mod transport;

use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc, time::Duration};

use heist_proto::ServiceDescriptor;
use tokio::net::TcpListener;
use tonic::{body::Body, server::NamedService, service::Routes, transport::Server};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::Service;

use crate::propagation::ServerTraceLayer;

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A descriptor set for reflection does not decode.
    #[error("cannot build reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The health-only or the metrics port cannot be opened.
    #[error(transparent)]
    SidePort(#[from] crate::side_port::SidePortError),
}

/// How a server behaves around its service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight calls may run after shutdown starts.
    pub grace_period: Duration,
    /// What one peer may make the server hold.
    pub limits: TransportLimits,
    /// The service's methods (names, e.g. `StoreTurn`) whose requests may
    /// be up to [`TransportLimits::max_large_message_size`]; every other
    /// method, health and reflection included, takes at most
    /// [`TransportLimits::max_message_size`]. Set by each service's `run`.
    pub large_message_methods: &'static [&'static str],
    /// Where to also serve health alone, in plaintext (for Kubernetes'
    /// gRPC probe); `None` (the default): only on the main port.
    pub health_port: Option<crate::side_port::SideListen>,
    /// TLS on the main port (the health port stays plaintext); `None` (the
    /// default): plaintext.
    pub tls: Option<crate::tls::ServerTls>,
    /// Where to serve Prometheus metrics over HTTP; `None` (the default):
    /// nowhere, and the per-call metrics are not counted.
    pub metrics: Option<crate::side_port::SideListen>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(5),
            limits: TransportLimits::default(),
            large_message_methods: &[],
            health_port: None,
            tls: None,
            metrics: None,
        }
    }
}

/// Bounds on what one connection can make a server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Streams one connection may have open at once (advertised as
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; more are refused).
    pub max_concurrent_streams: u32,
    /// Streams the server may reset for the peer's protocol errors on one
    /// connection before it sends GOAWAY and closes it.
    pub max_local_error_reset_streams: usize,
    /// How often to ping a connection (HTTP/2 keep-alive).
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// How long a connection may stay without any open call before it is
    /// closed.
    pub idle_timeout: Duration,
    /// The largest request message of a method not declared large.
    pub max_message_size: usize,
    /// The largest request message of a method declared large (at most
    /// 4 MiB, the generated servers' own limit).
    pub max_large_message_size: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_local_error_reset_streams: 64,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_message_size: 16 * 1024,
            max_large_message_size: 4 * 1024 * 1024,
        }
    }
}

impl ServeOptions {
    /// These options, with `methods` taking large messages.
    pub fn with_large_messages(mut self, methods: &'static [&'static str]) -> Self {
        self.large_message_methods = methods;
        self
    }
}

/// A dependency a server checks while it serves (its database, say): health
/// says NOT_SERVING while the check answers false, SERVING again once it
/// answers true. A cheap handle.
#[derive(Clone)]
pub struct DependencyProbe {
    /// What the dependency is, for the log.
    name: &'static str,
    /// How often to check.
    every: Duration,
    /// The check.
    check: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>,
}

impl std::fmt::Debug for DependencyProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DependencyProbe")
            .field("name", &self.name)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl DependencyProbe {
    /// Checks dependency `name` with `check` every `every`.
    pub fn new<F, Fut>(name: &'static str, every: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Self {
            name,
            every,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// Keeps health in step with the dependency, from SERVING on, until aborted.
    async fn watch(self, reporter: HealthReporter, service: &'static str) {
        let mut up = true;
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now_up = (self.check)().await;
            if now_up == up {
                continue;
            }
            up = now_up;
            if up {
                set_status(&reporter, service, ServingStatus::Serving).await;
                tracing::info!(service, dependency = self.name, "dependency back; serving");
            } else {
                set_status(&reporter, service, ServingStatus::NotServing).await;
                tracing::warn!(
                    service,
                    dependency = self.name,
                    "dependency unreachable; not serving"
                );
            }
        }
    }
}

/// What a server here can host: a tonic-generated gRPC server (its name
/// for health, its descriptor for reflection), cheap to clone and `'static`.
pub trait HostedService:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + ServiceDescriptor
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HostedService for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + ServiceDescriptor
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains
/// within the grace period. Health turns SERVING when `ready` resolves.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    ready: impl Future<Output = ()> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    S: HostedService,
{
    serve_probed(listener, service, ready, None, shutdown, options).await
}

/// [`serve`], with health also following `probe` (when given) once ready.
async fn serve_probed<S>(
    listener: TcpListener,
    service: S,
    ready: impl Future<Output = ()> + Send + 'static,
    probe: Option<DependencyProbe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    S: HostedService,
{
    let health_listener = match &options.health_port {
        Some(health) => Some(
            health
                .bind(crate::side_port::SidePort::Health, Some(&listener), S::NAME)
                .await?,
        ),
        None => None,
    };

    let metrics_listener = match &options.metrics {
        Some(metrics) => Some(crate::metrics::bind(metrics, Some(&listener), S::NAME).await?),
        None => None,
    };

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_status(&reporter, S::NAME, ServingStatus::NotServing).await;

    let readiness = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            ready.await;
            set_status(&reporter, S::NAME, ServingStatus::Serving).await;
            tracing::info!(service = S::NAME, "serving");
            if let Some(probe) = probe {
                probe.watch(reporter, S::NAME).await;
            }
        })
    };

    let mut routes = Routes::new(health_service.clone());
    routes = routes
        .add_service(reflection_builder(S::FILE_DESCRIPTOR_SET).build_v1()?)
        .add_service(reflection_builder(S::FILE_DESCRIPTOR_SET).build_v1alpha()?)
        .add_service(service);

    let draining = {
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            readiness.abort();
            set_status(&reporter, S::NAME, ServingStatus::NotServing).await;
            tracing::info!(service = S::NAME, "draining");
        }
    };
    let message_size = message_size::MessageSizeLayer::new(
        S::NAME,
        options.large_message_methods,
        options.limits.max_message_size,
        options.limits.max_large_message_size,
    );

    // The health port stops only once the main port has drained, so that a
    // probe keeps hearing NOT_SERVING (not a refused connection) meanwhile.
    let (main_done_tx, main_done_rx) = tokio::sync::oneshot::channel::<()>();
    // Metrics are served until the main port has drained.
    let (metrics_done_tx, metrics_done_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(crate::metrics::serve(listener, async move {
            let _ = metrics_done_rx.await;
        }))
    });
    let health_server = health_listener.map(|listener| {
        tokio::spawn(run_routes(
            Routes::new(health_service),
            listener,
            None,
            options.limits,
            message_size.clone(),
            async move {
                let _ = main_done_rx.await;
            },
        ))
    });

    let (drain_started_tx, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
    let server = run_routes(
        routes,
        listener,
        options.tls.clone(),
        options.limits,
        message_size,
        async move {
            draining.await;
            let _ = drain_started_tx.send(());
        },
    );
    tokio::pin!(server);
    // Both ports are done by the end of one grace period from the drain's
    // start (at once if the main port stopped by itself).
    let (drained, grace_over) = tokio::select! {
        outcome = &mut server => (outcome.map_err(ServeError::from), tokio::time::Instant::now()),
        _ = drain_started_rx => {
            let grace_over = tokio::time::Instant::now() + options.grace_period;
            let outcome = match tokio::time::timeout_at(grace_over, server).await {
                Ok(outcome) => outcome.map_err(ServeError::from),
                Err(_) => {
                    tracing::warn!(
                        service = S::NAME,
                        grace_period = ?options.grace_period,
                        "grace period over; closing open calls"
                    );
                    Ok(())
                }
            };
            (outcome, grace_over)
        }
    };
    let _ = main_done_tx.send(());
    let _ = metrics_done_tx.send(());
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    let health = match health_server {
        Some(health_server) => stop_health_port(health_server, grace_over).await,
        None => Ok(()),
    };
    drained.and(health)
}

/// Serves `routes` on `listener` (through `tls` when given) with `limits`
/// until `shutdown` resolves, then lets open calls finish (the caller bounds
/// how long).
fn run_routes(
    routes: Routes,
    listener: TcpListener,
    tls: Option<crate::tls::ServerTls>,
    limits: TransportLimits,
    message_size: message_size::MessageSizeLayer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    Server::builder()
        // tonic would otherwise pass `None` to hyper, removing its defaults.
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_local_error_reset_streams(Some(limits.max_local_error_reset_streams))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // Call tracking first: it hands the connection's addresses and peer
        // identity to the request, which the server span records.
        .layer(idle::CallTrackingLayer)
        .layer(ServerTraceLayer)
        .layer(message_size)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            transport::incoming(listener, limits.idle_timeout, tls),
            shutdown,
        )
}

/// Waits for the health port, told to stop, to close: until `grace_over`
/// at most (an open Watch never ends by itself), then it is aborted.
async fn stop_health_port(
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    grace_over: tokio::time::Instant,
) -> Result<(), ServeError> {
    let abort = server.abort_handle();
    match tokio::time::timeout_at(grace_over, server).await {
        Ok(Ok(outcome)) => outcome.map_err(ServeError::from),
        // Aborted or panicked: the main port's outcome is what counts.
        Ok(Err(_)) => Ok(()),
        Err(_) => {
            abort.abort();
            Ok(())
        }
    }
}

/// Sets the status of the service and of the whole server (`""`), which is
/// what `grpc_health_probe` and Kubernetes ask for.
async fn set_status(reporter: &HealthReporter, service: &str, status: ServingStatus) {
    reporter.set_service_status(service, status).await;
    reporter.set_service_status("", status).await;
}

/// Reflection over the served service's file and health (the reflection
/// services add their own).
fn reflection_builder(service: &'static [u8]) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(service)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Serves `service` behind the bearer-token layer `auth` (a
/// [`crate::auth::AuthLayer`] naming the service's audience and method
/// scopes); SERVING once its authenticator has OAuth's keys.
pub async fn serve_protected<S>(
    listener: TcpListener,
    service: S,
    auth: crate::auth::AuthLayer,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    S: HostedService,
{
    serve_protected_probed(listener, service, auth, None, shutdown, options).await
}

/// [`serve_protected`], with health also following `probe` (when given):
/// NOT_SERVING while the dependency it checks is unreachable.
pub async fn serve_protected_probed<S>(
    listener: TcpListener,
    service: S,
    auth: crate::auth::AuthLayer,
    probe: Option<DependencyProbe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    S: HostedService,
{
    use tower::Layer as _;
    let keys = auth.authenticator().clone().load_keys();
    let protected = auth.layer(service);
    serve_probed(listener, protected, keys, probe, shutdown, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    #[tokio::test]
    async fn accepted_connections_have_nagle_switched_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = transport::incoming(listener, Duration::from_secs(60), None);
        tokio::pin!(accepted);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = accepted.next().await.unwrap().unwrap();
        assert!(stream.get_ref().nodelay().unwrap());
    }
}
