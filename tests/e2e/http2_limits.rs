//! What one HTTP/2 peer can make a server hold (issue 11 item 4), against the
//! real Audit server: raw frames where a well-behaved client (h2, tonic)
//! would not send them, the `h2` client elsewhere.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use heist_audit::StoreConfig;
use heist_e2e::{TestAuth, TestServer, services};
use heist_plumbing::{ServeOptions, TransportLimits};
use heist_proto::v1::{
    CreateSessionRequest, GetSessionRequest, StoreMessageRequest,
    audit_service_client::AuditServiceClient,
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{Code, codegen::Bytes};

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Limits small enough to reach in a test.
fn test_limits() -> TransportLimits {
    TransportLimits {
        max_concurrent_streams: 4,
        max_local_error_reset_streams: 5,
        idle_timeout: Duration::from_secs(1),
        max_message_size: 16 * 1024,
        ..TransportLimits::default()
    }
}

struct Audit {
    server: TestServer,
    auth: TestAuth,
    _dir: TempDir,
}

async fn start_audit(limits: TransportLimits) -> Audit {
    let dir = TempDir::new().unwrap();
    let config = StoreConfig::new(dir.path().join("audit.db"));
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = services::audit(
        config,
        authenticator,
        ServeOptions {
            limits,
            ..ServeOptions::default()
        },
    )
    .await;
    Audit {
        server,
        auth,
        _dir: dir,
    }
}

// --- raw HTTP/2 -----------------------------------------------------------

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A hand-driven HTTP/2 client connection.
struct Raw {
    tcp: TcpStream,
}

impl Raw {
    /// Connects, sends the preface and empty SETTINGS, and returns the
    /// server's SETTINGS (already acknowledged).
    async fn connect(addr: std::net::SocketAddr) -> (Self, Vec<(u16, u32)>) {
        let mut raw = Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
        };
        raw.tcp
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        raw.send(SETTINGS, 0, 0, &[]).await;
        loop {
            let frame = raw.next().await.expect("the server's SETTINGS");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                raw.send(SETTINGS, ACK, 0, &[]).await;
                let settings = frame
                    .payload
                    .chunks(6)
                    .map(|entry| {
                        (
                            u16::from_be_bytes([entry[0], entry[1]]),
                            u32::from_be_bytes(entry[2..6].try_into().unwrap()),
                        )
                    })
                    .collect();
                return (raw, settings);
            }
        }
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// Sends a POST to `path` with `extra` headers (HPACK literals).
    async fn request(&mut self, stream: u32, path: &str, extra: &[(&str, &str)], end: bool) {
        let mut block = Vec::new();
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        for (name, value) in fields.iter().chain(extra) {
            // Literal header field without indexing, new name, no Huffman.
            block.push(0);
            block.push(u8::try_from(name.len()).unwrap());
            block.extend_from_slice(name.as_bytes());
            block.push(u8::try_from(value.len()).unwrap());
            block.extend_from_slice(value.as_bytes());
        }
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &block).await;
    }

    /// The next frame, or `None` once the server closed the connection (or
    /// said nothing for 10 s).
    async fn next(&mut self) -> Option<Frame> {
        let read = async {
            let mut head = [0u8; 9];
            self.tcp.read_exact(&mut head).await.ok()?;
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; length];
            self.tcp.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
                payload,
            })
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .ok()
            .flatten()
    }
}

#[tokio::test]
async fn the_server_advertises_max_concurrent_streams_and_refuses_streams_beyond_it() {
    let audit = start_audit(test_limits()).await;
    let (mut raw, settings) = Raw::connect(audit.server.addr).await;
    assert!(
        settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 4)),
        "{settings:?}"
    );
    // Six health checks whose bodies never end: the first four stay open,
    // the last two are refused.
    let streams: Vec<u32> = (0..6).map(|n| 2 * n + 1).collect();
    for stream in &streams {
        raw.request(*stream, HEALTH_CHECK, &[], false).await;
    }
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let Some(frame) = raw.next().await else {
            panic!("connection ended; refused so far: {refused:?}");
        };
        if frame.kind == RST_STREAM {
            assert_eq!(frame.code(0), REFUSED_STREAM, "{frame:?}");
            refused.push(frame.stream);
        }
    }
    assert_eq!(refused, [9, 11]);
}

#[tokio::test]
async fn a_client_learns_the_stream_limit_from_the_settings() {
    let audit = start_audit(test_limits()).await;
    let tcp = TcpStream::connect(audit.server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let client = client.ready().await.unwrap();
    // Settings arrive with the server's first frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.current_max_send_streams() != 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.current_max_send_streams(), 4);
}

#[tokio::test]
async fn many_malformed_streams_lead_to_goaway() {
    let audit = start_audit(test_limits()).await;
    let (mut raw, _) = Raw::connect(audit.server.addr).await;
    // A connection-specific header makes each request malformed: the server
    // resets each stream, and after five closes the connection.
    for n in 0..20 {
        raw.request(2 * n + 1, HEALTH_CHECK, &[("connection", "close")], true)
            .await;
    }
    let mut resets = 0;
    let goaway = loop {
        let Some(frame) = raw.next().await else {
            panic!("connection ended without GOAWAY after {resets} resets");
        };
        match frame.kind {
            RST_STREAM => resets += 1,
            GOAWAY => break frame,
            _ => {}
        }
    };
    assert_eq!(goaway.code(4), ENHANCE_YOUR_CALM, "{goaway:?}");
    assert!(resets <= 5, "{resets} streams reset before GOAWAY");
}

/// Opens a stream to `path` announcing a `size`-byte message and sending
/// only its first `sent` bytes; the answer's headers, if any within 10 s.
async fn partial_message(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    size: u32,
    sent: usize,
) -> Option<http::HeaderMap> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (response, mut body) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let mut frame = vec![0u8; 5 + sent];
    frame[1..5].copy_from_slice(&size.to_be_bytes());
    body.send_data(Bytes::from(frame), false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .ok()?
        .unwrap();
    Some(response.headers().clone())
}

fn grpc_status(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("grpc-status")
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn an_over_size_message_is_refused_from_its_header_before_it_is_read() {
    let audit = start_audit(test_limits()).await;
    let addr = audit.server.addr;
    // 4 MiB announced, 64 KiB sent, the stream left open: the answer comes
    // without the rest, open method (health) or behind a valid token.
    let health = partial_message(addr, HEALTH_CHECK, None, 4 << 20, 64 << 10)
        .await
        .expect("an answer before the whole message");
    assert_eq!(grpc_status(&health), Some("8"), "{health:?}"); // RESOURCE_EXHAUSTED
    let message = health["grpc-message"].to_str().unwrap();
    assert!(message.contains("limit%20of%2016384%20bytes"), "{message}");

    let token = audit.auth.token("tester", &["audit:read"]);
    let read = partial_message(
        addr,
        "/heist.v1.AuditService/GetSession",
        Some(&token),
        4 << 20,
        64 << 10,
    )
    .await
    .expect("an answer before the whole message");
    assert_eq!(grpc_status(&read), Some("8"), "{read:?}");
}

#[tokio::test]
async fn methods_declared_large_take_messages_past_the_small_limit() {
    let audit = start_audit(test_limits()).await;
    let mut client = AuditServiceClient::with_interceptor(
        audit.server.channel(),
        audit
            .auth
            .bearer(&["audit:read", "audit:write", "agents:act_for_any"]),
    );
    client
        .create_session(CreateSessionRequest {
            session_id: "s1".into(),
            metadata: "{}".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    // 40 KiB of text: over the 16 KiB of most methods, within StoreMessage's.
    client
        .store_message(StoreMessageRequest {
            session_id: "s1".into(),
            turn_id: 1,
            agent_name: "planner".into(),
            agent_role: "Strategic Planner".into(),
            message: "x".repeat(40 << 10),
            is_error: false,
            idempotency_key: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = client
        .get_session(GetSessionRequest {
            session_id: "s".repeat(40 << 10),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("exceeds this method's limit of 16384 bytes"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let audit = start_audit(test_limits()).await;
    let (mut raw, _) = Raw::connect(audit.server.addr).await;
    // No call: the server closes the connection (1 s timeout; 10 s bound).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = Vec::new();
        let _ = raw.tcp.read_to_end(&mut rest).await;
    })
    .await;
    assert!(
        closed.is_ok(),
        "the idle connection is still open after 10 s"
    );
}

#[tokio::test]
async fn a_connection_with_an_open_call_is_not_idle() {
    let audit = start_audit(test_limits()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(audit.server.channel());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    // Three idle timeouts pass with the watch open and nothing to say: the
    // stream neither ends nor fails.
    let quiet = tokio::time::timeout(Duration::from_secs(3), watch.message()).await;
    assert!(quiet.is_err(), "the watch ended: {quiet:?}");
}
