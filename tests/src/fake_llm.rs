//! A fake OpenAI-compatible server for tests: just enough HTTP/1.1 on
//! `127.0.0.1:0`. It records every request and answers each path from a
//! script (the last reply repeats), or holds the connection open (`Hang`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heist_orchestrator::llm::{Backoff, OpenAiBackend, OpenAiSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The chat completions path of the fake.
pub const CHAT: &str = "/v1/chat/completions";
/// The model list path of the fake.
pub const MODELS: &str = "/v1/models";
/// The model the fake serves.
pub const MODEL: &str = "llama-3.1-8b-instruct";

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with this status, extra headers and JSON body.
    Answer {
        /// The HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(&'static str, &'static str)>,
        /// The JSON body.
        body: String,
    },
    /// Reads the request and never answers.
    Hang,
}

/// A 200 with `body`.
pub fn ok(body: Value) -> Reply {
    status(200, body)
}

/// `status` with `body`.
pub fn status(status: u16, body: Value) -> Reply {
    Reply::Answer {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// A chat completion whose first choice is `message` (reporting 42 prompt
/// and 7 completion tokens).
pub fn chat_answer(message: Value) -> Value {
    chat_answer_using(message, 42, 7)
}

/// A chat completion whose first choice is `message`, whose `usage` reports
/// `prompt` prompt tokens and `completion` completion tokens.
pub fn chat_answer_using(message: Value, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion
        }
    })
}

/// A completion that says `content`.
pub fn said(content: &str) -> Reply {
    said_using(content, 42, 7)
}

/// A completion that says `content` and reports `prompt` prompt and
/// `completion` completion tokens used.
pub fn said_using(content: &str, prompt: u64, completion: u64) -> Reply {
    ok(chat_answer_using(
        json!({"role": "assistant", "content": content}),
        prompt,
        completion,
    ))
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Script {
    routes: HashMap<&'static str, Vec<Reply>>,
    seen: Vec<Recorded>,
}

impl Script {
    /// The next reply for `path`: the route's first, the last one repeating; 404 if none.
    fn next(&mut self, path: &str) -> Reply {
        match self.routes.get_mut(path) {
            Some(replies) if replies.len() > 1 => replies.remove(0),
            Some(replies) if !replies.is_empty() => replies[0].clone(),
            _ => status(404, json!({"error": "no such route"})),
        }
    }
}

/// A fake OpenAI-compatible server on `127.0.0.1:0`.
pub struct FakeServer {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeServer {
    /// Starts the fake with a script of replies per path.
    pub async fn start(routes: Vec<(&'static str, Vec<Reply>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base_url = format!(
            "http://{}/v1",
            listener.local_addr().expect("local address")
        );
        let script = Arc::new(Mutex::new(Script {
            routes: routes.into_iter().collect(),
            seen: Vec::new(),
        }));
        let shared = Arc::clone(&script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { base_url, script }
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seen
            .clone()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Backend settings pointing at the fake.
    pub fn settings(&self) -> OpenAiSettings {
        OpenAiSettings {
            base_url: self.base_url.clone(),
            model: MODEL.to_owned(),
            api_key: None,
            temperature: 0.7,
            max_tokens: 500,
            timeout: Duration::from_secs(5),
            retries: 2,
        }
    }

    /// A backend pointing at the fake, with fast retries.
    pub fn backend(&self) -> OpenAiBackend {
        fast(OpenAiBackend::new(self.settings()))
    }
}

/// Retries after 1 ms, 2 ms, ... so the tests stay fast.
pub fn fast(backend: OpenAiBackend) -> OpenAiBackend {
    backend.with_backoff(Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
    })
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let reply = {
        let mut script = script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        script.seen.push(request.clone());
        script.next(&request.path)
    };
    match reply {
        Reply::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split_whitespace();
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
