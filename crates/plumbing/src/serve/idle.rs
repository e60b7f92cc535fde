//! Closing connections that hold no call for the idle timeout.
//!
//! Each accepted connection is wrapped in an [`IdleIo`] that shares a call
//! count with the requests served on it (through the connection info tonic
//! puts in each request). When the connection has had no open call for the
//! timeout, its next read reports end of stream and hyper closes it: idle,
//! half-open and never-started connections do not stay forever. Keep-alive
//! pings do not count as calls; long streams (`WatchSession`, health
//! `Watch`) do.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tonic::{
    Status,
    body::Body,
    codegen::Bytes,
    transport::server::{Connected, TcpConnectInfo},
};
use tower::{Layer, Service};

use super::transport::Transport;
use crate::peer::PeerIdentity;

/// The calls open on one connection, and since when it has had none.
#[derive(Debug)]
struct Calls {
    open: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Calls {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn idle_since(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the connection is due to close, or `None` while calls are open.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let since = self.idle_since();
        (self.open.load(Ordering::SeqCst) == 0).then(|| *since + timeout)
    }
}

/// One open call; dropping it (when its response body ends or is dropped)
/// closes it.
struct CallGuard(Arc<Calls>);

impl CallGuard {
    fn open(calls: Arc<Calls>) -> Self {
        let _since = calls.idle_since();
        calls.open.fetch_add(1, Ordering::SeqCst);
        Self(calls.clone())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut since = self.0.idle_since();
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// What tonic hands each request about its connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The addresses, as tonic gives them for plain TCP.
    tcp: TcpConnectInfo,
    /// Who the client's certificate says it is (mutual TLS only).
    peer: Option<PeerIdentity>,
    calls: Arc<Calls>,
}

/// An accepted connection that ends once idle for `timeout`.
#[derive(Debug)]
pub(crate) struct IdleIo {
    io: Transport,
    peer: Option<PeerIdentity>,
    calls: Arc<Calls>,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleIo {
    /// Watches `io`, whose client proved to be `peer`, for `timeout`
    /// without calls.
    pub(crate) fn new(io: Transport, peer: Option<PeerIdentity>, timeout: Duration) -> Self {
        Self {
            io,
            peer,
            calls: Arc::new(Calls::new()),
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// The TCP stream.
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &tokio::net::TcpStream {
        self.io.tcp()
    }

    /// Whether the connection has been idle for the timeout; re-arms the
    /// timer otherwise.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = match self.calls.idle_deadline(self.timeout) {
                Some(deadline) if deadline <= Instant::now() => return Poll::Ready(()),
                Some(deadline) => deadline,
                None => Instant::now() + self.timeout,
            };
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl Connected for IdleIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            tcp: self.io.tcp().connect_info(),
            peer: self.peer.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(outcome) = Pin::new(&mut this.io).poll_read(cx, buf) {
            return Poll::Ready(outcome);
        }
        ready!(this.poll_idle(cx));
        tracing::debug!(timeout = ?this.timeout, "closing an idle connection");
        // End of stream: hyper closes the connection.
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Counts each call as open on its connection until its response ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallTrackingLayer;

impl<S> Layer<S> for CallTrackingLayer {
    type Service = CallTracking<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallTracking { inner }
    }
}

/// A service behind [`CallTrackingLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CallTracking<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S> Service<Request<Body>> for CallTracking<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let info = request.extensions().get::<ConnectionInfo>().cloned();
        let guard = info.map(|info| {
            // Where tonic's `Request::remote_addr` looks for the addresses.
            request.extensions_mut().insert(info.tcp);
            if let Some(peer) = info.peer {
                request.extensions_mut().insert(peer);
            }
            CallGuard::open(info.calls)
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                Some(guard) => response.map(|body| {
                    Body::new(GuardedBody {
                        inner: body,
                        _guard: guard,
                    })
                }),
                None => response,
            })
        })
    }
}

/// A response body that keeps its call open until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: CallGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
