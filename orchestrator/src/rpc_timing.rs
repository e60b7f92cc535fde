//! Client-side RPC latency, per service and method, for the benchmark.
//!
//! [`Timed`] wraps a channel: when it is given an [`RpcTimings`], every call
//! records how long it took from being sent until its response body was
//! read to the end (message and trailers) or dropped, whichever comes
//! first: what the caller waits for. Without one (the default, see
//! [`crate::mesh::Mesh::connect`]) it only forwards: no clock is read,
//! nothing is locked or allocated.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http_body::{Body, Frame, SizeHint};
use tower::Service;

/// The latencies of one method, in the order the calls ended.
type Samples = Arc<Mutex<Vec<Duration>>>;

/// The samples of one service (one label), by method path.
#[derive(Debug, Default)]
struct ServiceSamples {
    methods: Mutex<HashMap<String, Samples>>,
}

impl ServiceSamples {
    /// The sample list of `path`, made on its first call.
    fn slot(&self, path: &str) -> Samples {
        let mut methods = self.methods.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = methods.get(path) {
            return slot.clone();
        }
        let slot = Samples::default();
        methods.insert(path.to_owned(), slot.clone());
        slot
    }
}

/// Where timed channels record their calls; clones share the samples.
#[derive(Debug, Clone, Default)]
pub struct RpcTimings {
    services: Arc<Mutex<BTreeMap<String, Arc<ServiceSamples>>>>,
}

/// One service's method, as recorded: `("audit", "/heist.v1.AuditService/StoreMessage")`.
pub type RpcKey = (String, String);

impl RpcTimings {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The samples of the service labelled `service` (shared by its channels).
    fn service(&self, service: &str) -> Arc<ServiceSamples> {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.entry(service.to_owned()).or_default().clone()
    }

    /// Takes every sample recorded so far (the recorder starts again empty),
    /// by (service, method path).
    pub fn take(&self) -> BTreeMap<RpcKey, Vec<Duration>> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = BTreeMap::new();
        for (service, samples) in services.iter() {
            let methods = samples
                .methods
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (path, slot) in methods.iter() {
                let values =
                    std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
                if !values.is_empty() {
                    taken.insert((service.clone(), path.clone()), values);
                }
            }
        }
        taken
    }

    /// Wraps `inner`, recording its calls under `service`.
    pub fn wrap<S>(&self, service: &str, inner: S) -> Timed<S> {
        Timed {
            inner,
            samples: Some(self.service(service)),
        }
    }
}

/// A channel whose calls may be timed (see [`RpcTimings::wrap`]).
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    samples: Option<Arc<ServiceSamples>>,
}

impl<S> Timed<S> {
    /// Wraps `inner` without timing it.
    pub fn untimed(inner: S) -> Self {
        Self {
            inner,
            samples: None,
        }
    }
}

impl<S, B, R> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Unpin,
{
    type Response = http::Response<TimedBody<R>>;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let probe = self.samples.as_ref().map(|samples| Probe {
            slot: samples.slot(request.uri().path()),
            started: Instant::now(),
        });
        TimedFuture {
            inner: self.inner.call(request),
            probe,
        }
    }
}

/// A call being timed: where its latency goes and when it started.
#[derive(Debug)]
struct Probe {
    slot: Samples,
    started: Instant,
}

impl Probe {
    /// Records the time since the call started.
    fn record(self) {
        let elapsed = self.started.elapsed();
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(elapsed);
    }
}

/// The future of a [`Timed`] call.
#[derive(Debug)]
pub struct TimedFuture<F> {
    inner: F,
    probe: Option<Probe>,
}

impl<F, R, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>> + Unpin,
{
    type Output = Result<http::Response<TimedBody<R>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let output = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        let probe = this.probe.take();
        Poll::Ready(match output {
            Ok(response) => Ok(response.map(|inner| TimedBody { inner, probe })),
            Err(error) => {
                if let Some(probe) = probe {
                    probe.record();
                }
                Err(error)
            }
        })
    }
}

/// A response body that stops its call's clock when it ends or is dropped.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    probe: Option<Probe>,
}

impl<B> TimedBody<B> {
    fn stop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.record();
        }
    }
}

impl<B> Drop for TimedBody<B> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let last = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(frame)) => frame.is_trailers(),
        };
        if last {
            this.stop();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, future::Ready, task::Waker};

    use super::*;

    /// A body of one trailers frame.
    #[derive(Debug, Default)]
    struct Trailers {
        sent: bool,
    }

    impl Body for Trailers {
        type Data = std::io::Cursor<Vec<u8>>;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Infallible>>> {
            if std::mem::replace(&mut self.sent, true) {
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new()))))
        }
    }

    /// A service answering every request at once.
    #[derive(Clone)]
    struct Echo;

    impl Service<http::Request<()>> for Echo {
        type Response = http::Response<Trailers>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<Trailers>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(Trailers::default())))
        }
    }

    /// Calls `service` and returns its response body, unread.
    fn call<S>(service: &mut S, path: &str) -> TimedBody<Trailers>
    where
        S: Service<
                http::Request<()>,
                Response = http::Response<TimedBody<Trailers>>,
                Error = Infallible,
            >,
    {
        let request = http::Request::builder()
            .uri(format!("http://127.0.0.1{path}"))
            .body(())
            .unwrap();
        let mut future = std::pin::pin!(service.call(request));
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => response.into_body(),
            _ => panic!("the echo answers at once"),
        }
    }

    fn recorded(timings: &RpcTimings) -> usize {
        timings.take().values().map(Vec::len).sum()
    }

    #[test]
    fn each_call_is_recorded_under_its_service_and_method() {
        let timings = RpcTimings::new();
        let mut audit = timings.wrap("audit", Echo);
        let mut memory = timings.wrap("memory", Echo);
        drop(call(&mut audit, "/heist.v1.AuditService/StoreMessage"));
        drop(call(&mut audit, "/heist.v1.AuditService/StoreMessage"));
        drop(call(&mut memory, "/heist.v1.MemoryService/StoreMemory"));
        let taken = timings.take();
        let counts: Vec<(&str, &str, usize)> = taken
            .iter()
            .map(|((service, method), samples)| (service.as_str(), method.as_str(), samples.len()))
            .collect();
        assert_eq!(
            counts,
            [
                ("audit", "/heist.v1.AuditService/StoreMessage", 2),
                ("memory", "/heist.v1.MemoryService/StoreMemory", 1),
            ]
        );
    }

    #[test]
    fn channels_with_one_label_share_their_samples() {
        let timings = RpcTimings::new();
        let mut first = timings.wrap("tools", Echo);
        let mut second = timings.wrap("tools", Echo);
        drop(call(&mut first, "/heist.v1.ToolService/CallTool"));
        drop(call(&mut second, "/heist.v1.ToolService/CallTool"));
        let taken = timings.take();
        assert_eq!(
            taken[&(
                "tools".to_owned(),
                "/heist.v1.ToolService/CallTool".to_owned()
            )]
                .len(),
            2
        );
    }

    #[test]
    fn taking_the_samples_empties_the_recorder() {
        let timings = RpcTimings::new();
        let mut audit = timings.wrap("audit", Echo);
        drop(call(&mut audit, "/heist.v1.AuditService/StoreMessage"));
        assert_eq!(timings.take().len(), 1);
        assert!(timings.take().is_empty());
    }

    #[test]
    fn a_call_is_timed_until_its_trailers_are_read_not_when_its_headers_arrive() {
        let timings = RpcTimings::new();
        let mut audit = timings.wrap("audit", Echo);
        let mut body = call(&mut audit, "/heist.v1.AuditService/StoreMessage");
        assert_eq!(recorded(&timings), 0, "headers only: still running");
        let mut cx = Context::from_waker(Waker::noop());
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(frame, Poll::Ready(Some(Ok(ref frame))) if frame.is_trailers()));
        assert_eq!(recorded(&timings), 1, "the trailers end the call");
        drop(body);
        assert_eq!(recorded(&timings), 0, "recorded once, not again on drop");
    }

    #[test]
    fn a_call_whose_body_is_dropped_unread_is_recorded_once() {
        let timings = RpcTimings::new();
        let mut audit = timings.wrap("audit", Echo);
        drop(call(&mut audit, "/heist.v1.AuditService/StoreMessage"));
        assert_eq!(recorded(&timings), 1);
    }

    #[test]
    fn an_untimed_channel_records_nothing_and_still_answers() {
        let mut untimed = Timed::untimed(Echo);
        let body = call(&mut untimed, "/heist.v1.AuditService/StoreMessage");
        assert!(untimed.samples.is_none() && body.probe.is_none());
    }
}
