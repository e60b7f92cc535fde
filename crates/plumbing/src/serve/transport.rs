//! What a server accepts connections as: plain TCP, or TLS over it.
//!
//! With TLS, handshakes run concurrently off the accept loop (one slow or
//! silent client holds up nobody) and are bounded in time; a failed one is
//! logged with the client's address and why, and the connection closed.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::transport::server::TcpIncoming;

use super::idle::IdleIo;
use crate::tls::ServerTls;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// One accepted connection's byte stream.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// The TCP stream underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

/// The connections `listener` accepts, each with `TCP_NODELAY` set, through
/// TLS when `tls` is given, and closed once idle for `idle_timeout`.
pub(crate) fn incoming(
    listener: TcpListener,
    idle_timeout: Duration,
    tls: Option<ServerTls>,
) -> Pin<Box<dyn Stream<Item = io::Result<IdleIo>> + Send>> {
    // TCP_NODELAY on every accepted connection: without it Nagle holds
    // a reply's last small segment (the trailers) until the client's
    // delayed ACK, ~40 ms, whenever the reply goes out in two writes.
    let Some(tls) = tls else {
        return Box::pin(TcpIncoming::from(listener).with_nodelay(Some(true)).map(
            move |accepted| {
                accepted.map(|io| IdleIo::new(Transport::Plain(io), None, idle_timeout))
            },
        ));
    };
    tls.watch();
    let (accepted, connections) = mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(accept_tls(listener, tls, idle_timeout, accepted));
    Box::pin(ReceiverStream::new(connections))
}

/// Accepts until the server stops taking connections, a handshake task each.
async fn accept_tls(
    listener: TcpListener,
    tls: ServerTls,
    idle_timeout: Duration,
    accepted: mpsc::Sender<io::Result<IdleIo>>,
) {
    loop {
        let (tcp, client) = tokio::select! {
            () = accepted.closed() => return,
            outcome = listener.accept() => match outcome {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tls = tls.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, %client, "cannot set TCP_NODELAY");
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(done)) => {
                    let io = IdleIo::new(
                        Transport::Tls(Box::new(done.stream)),
                        done.peer,
                        idle_timeout,
                    );
                    let _ = accepted.send(Ok(io)).await;
                }
                Ok(Err(error)) => log_refused(client, &error),
                Err(_) => tracing::warn!(
                    %client,
                    timeout = ?HANDSHAKE_TIMEOUT,
                    "TLS handshake refused: not finished in time"
                ),
            }
        });
    }
}

/// Says why a client's handshake failed, with a hint for the usual cause.
fn log_refused(client: SocketAddr, error: &io::Error) {
    let plaintext = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|error| {
            matches!(
                error,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        });
    if plaintext {
        tracing::warn!(
            %client,
            %error,
            "TLS handshake refused: the client is not speaking TLS (plaintext to a TLS port?)"
        );
    } else {
        tracing::warn!(%client, %error, "TLS handshake refused");
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(io) => io.is_write_vectored(),
        }
    }
}
