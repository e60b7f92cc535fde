//! A per-method limit on the size of each request message, checked on the
//! gRPC frame header as the body arrives, so an over-size message is refused
//! with RESOURCE_EXHAUSTED before it is read (or buffered) whole.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Code, Status, body::Body, codegen::Bytes};
use tower::{Layer, Service};

use crate::status::{ServiceError, to_status};

/// A gRPC frame header: compressed flag and a 4-byte big-endian length.
const HEADER: usize = 5;

/// A request message over its method's limit.
#[derive(Debug, thiserror::Error)]
#[error("a request message of {size} bytes exceeds this method's limit of {limit} bytes")]
struct TooLarge {
    size: usize,
    limit: usize,
}

impl ServiceError for TooLarge {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
}

/// Which limit each method's request messages have.
#[derive(Debug, Clone)]
pub(crate) struct MessageSizeLayer {
    default: usize,
    large: usize,
    /// Full paths (`/package.Service/Method`) that take `large` messages.
    large_paths: Arc<HashSet<String>>,
}

impl MessageSizeLayer {
    /// `large` for each of `large_methods` of `service`, `default` for
    /// every other method (health and reflection included).
    pub(crate) fn new(service: &str, large_methods: &[&str], default: usize, large: usize) -> Self {
        Self {
            default,
            large,
            large_paths: Arc::new(
                large_methods
                    .iter()
                    .map(|method| format!("/{service}/{method}"))
                    .collect(),
            ),
        }
    }

    fn limit(&self, path: &str) -> usize {
        if self.large_paths.contains(path) {
            self.large
        } else {
            self.default
        }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`MessageSizeLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MessageSize<S> {
    inner: S,
    layer: MessageSizeLayer,
}

impl<S> Service<Request<Body>> for MessageSize<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let limit = self.layer.limit(request.uri().path());
        self.inner
            .call(request.map(|body| Body::new(LimitedBody::new(body, limit))))
    }
}

/// A request body that fails as soon as a message header announces more
/// than `limit` bytes.
struct LimitedBody {
    inner: Body,
    limit: usize,
    header: [u8; HEADER],
    /// How many bytes of the current header have arrived.
    header_filled: usize,
    /// How many bytes of the current message are still to come.
    remaining: usize,
}

impl LimitedBody {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            header: [0; HEADER],
            header_filled: 0,
            remaining: 0,
        }
    }

    /// Follows the message framing through `data`.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), TooLarge> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skipped = self.remaining.min(data.len());
                self.remaining -= skipped;
                data = &data[skipped..];
                continue;
            }
            let taken = (HEADER - self.header_filled).min(data.len());
            self.header[self.header_filled..self.header_filled + taken]
                .copy_from_slice(&data[..taken]);
            self.header_filled += taken;
            data = &data[taken..];
            if self.header_filled == HEADER {
                self.header_filled = 0;
                let [_, a, b, c, d] = self.header;
                let size = u32::from_be_bytes([a, b, c, d]) as usize;
                if size > self.limit {
                    return Err(TooLarge {
                        size,
                        limit: self.limit,
                    });
                }
                self.remaining = size;
            }
        }
        Ok(())
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        if let Some(data) = frame.data_ref()
            && let Err(too_large) = this.scan(data)
        {
            tracing::debug!(error = %too_large, "request refused");
            return Poll::Ready(Some(Err(to_status(&too_large))));
        }
        Poll::Ready(Some(Ok(frame)))
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
    use super::*;

    fn framed(size: u32) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend(std::iter::repeat_n(7, size as usize));
        frame
    }

    #[test]
    fn messages_within_the_limit_pass_whatever_the_chunking() {
        let mut stream = framed(10);
        stream.extend(framed(0));
        stream.extend(framed(16));
        for chunk in [1, 2, 3, 5, 7, stream.len()] {
            let mut body = LimitedBody::new(Body::empty(), 16);
            for piece in stream.chunks(chunk) {
                body.scan(piece).unwrap();
            }
            assert_eq!((body.header_filled, body.remaining), (0, 0));
        }
    }

    #[test]
    fn a_header_over_the_limit_fails_before_its_payload() {
        let mut body = LimitedBody::new(Body::empty(), 16);
        body.scan(&framed(3)).unwrap();
        let stream = framed(17);
        body.scan(&stream[..2]).unwrap();
        let error = body.scan(&stream[2..HEADER]).unwrap_err();
        assert_eq!((error.size, error.limit), (17, 16));
        let status = to_status(&error);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("limit of 16 bytes"), "{status:?}");
    }

    #[test]
    fn listed_methods_get_the_large_limit() {
        let layer = MessageSizeLayer::new("heist.v1.AuditService", &["StoreTurn"], 10, 1000);
        assert_eq!(layer.limit("/heist.v1.AuditService/StoreTurn"), 1000);
        assert_eq!(layer.limit("/heist.v1.AuditService/GetSession"), 10);
        assert_eq!(layer.limit("/grpc.health.v1.Health/Check"), 10);
        assert_eq!(layer.limit("/other.Service/StoreTurn"), 10);
    }
}
