//! Sending one HTTP request with retries: exponential backoff on connection errors, 5xx and 429.
//!
//! Timeouts are not retried (a server too slow once will likely be too slow again, and the turn
//! must not stall), and neither is any other 4xx.

use std::time::Duration;

use heist_resilience::exponential_backoff;
use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::error::LlmError;

/// The longest `Retry-After` honoured; a server asking for more gets its error reported instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Exponential backoff between attempts: `initial`, `2 * initial`, ... capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms, doubling up to 5 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        exponential_backoff(self.initial, 2.0, self.max, retry)
    }

    /// The wait before retry `retry` of a 429/5xx answer, or `None` if the server's `Retry-After`
    /// asks for longer than [`MAX_RETRY_AFTER`].
    fn delay_after(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(wait) if wait > MAX_RETRY_AFTER => None,
            Some(wait) => Some(wait.max(self.delay(retry))),
            None => Some(self.delay(retry)),
        }
    }
}

/// An HTTP answer read in full: its status and body.
#[derive(Debug)]
pub(super) struct HttpAnswer {
    /// The final status.
    pub(super) status: StatusCode,
    /// The body as text.
    pub(super) body: String,
}

/// Sends the request `build` makes, up to `1 + retries` times, and reads the final answer.
///
/// Connection errors, 5xx and 429 are retried after `backoff`; the last answer is returned
/// whatever its status, so the caller decides what an error status means.
pub(super) async fn send_with_retries(
    build: impl Fn() -> RequestBuilder,
    url: &str,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
) -> Result<HttpAnswer, LlmError> {
    let mut retry = 0;
    loop {
        let attempts = retry + 1;
        let wait = match build().send().await {
            Ok(response) => {
                let status = response.status();
                let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                let wait = backoff.delay_after(retry, retry_after(&response));
                match wait {
                    Some(wait) if retryable && retry < retries => {
                        tracing::warn!(
                            url,
                            attempts,
                            status = status.as_u16(),
                            ?wait,
                            "llm request retrying"
                        );
                        wait
                    }
                    _ => return read_answer(response, url, timeout).await,
                }
            }
            Err(error) if error.is_timeout() => return Err(timeout_error(url, timeout)),
            Err(error) if error.is_connect() => {
                if retry >= retries {
                    return Err(LlmError::Connect {
                        url: url.to_owned(),
                        attempts,
                        reason: error_chain(&error),
                    });
                }
                let wait = backoff.delay(retry);
                tracing::warn!(url, attempts, ?wait, "llm connection failed, retrying");
                wait
            }
            Err(error) => return Err(request_error(url, &error)),
        };
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

async fn read_answer(
    response: Response,
    url: &str,
    timeout: Duration,
) -> Result<HttpAnswer, LlmError> {
    let status = response.status();
    match response.text().await {
        Ok(body) => Ok(HttpAnswer { status, body }),
        Err(error) if error.is_timeout() => Err(timeout_error(url, timeout)),
        Err(error) => Err(request_error(url, &error)),
    }
}

/// `Retry-After` in whole seconds (an HTTP date is ignored: the backoff applies).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value)
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn timeout_error(url: &str, after: Duration) -> LlmError {
    LlmError::Timeout {
        url: url.to_owned(),
        after,
    }
}

fn request_error(url: &str, error: &reqwest::Error) -> LlmError {
    LlmError::Request {
        url: url.to_owned(),
        reason: error_chain(error),
    }
}

/// The error and its causes, joined: reqwest's own message rarely names the root cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(1000),
        }
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let delays: Vec<_> = (0..5)
            .map(|retry| backoff().delay(retry).as_millis())
            .collect();
        assert_eq!(delays, [200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn backoff_doubles_exactly_from_any_start() {
        // The shared formula works in floating point: doubling must still land on the
        // nanosecond that integer doubling gives (whole milliseconds and odd nanoseconds).
        let max = Duration::from_secs(24 * 3600);
        let starts = (1..=10_000).step_by(7).map(Duration::from_millis).chain(
            (1..=1_000_000_007)
                .step_by(9_999_991)
                .map(Duration::from_nanos),
        );
        for initial in starts {
            let backoff = Backoff { initial, max };
            for retry in 0..=24 {
                let doubled = initial.saturating_mul(1 << retry).min(max);
                assert_eq!(backoff.delay(retry), doubled, "{initial:?} retry {retry}");
            }
        }
    }

    #[test]
    fn backoff_never_overflows_on_huge_retry_counts() {
        assert_eq!(backoff().delay(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn a_small_retry_after_is_honoured_when_longer_than_the_backoff() {
        let wait = backoff().delay_after(0, Some(Duration::from_secs(2)));
        assert_eq!(wait, Some(Duration::from_secs(2)));
        let wait = backoff().delay_after(0, Some(Duration::ZERO));
        assert_eq!(wait, Some(Duration::from_millis(200)));
    }

    #[test]
    fn a_long_retry_after_stops_the_retries() {
        assert_eq!(
            backoff().delay_after(0, Some(Duration::from_secs(60))),
            None
        );
    }

    #[test]
    fn retry_after_reads_whole_seconds_only() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_names_every_distinct_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            error_chain(&Outer(inner)),
            "error sending request: connection refused"
        );
    }
}
