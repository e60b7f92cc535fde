//! Prometheus starts, scrapes a real HTTP target, answers queries, reports
//! unreachable targets as down, and leaves nothing behind.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::*;
use crate::{port, promtool_check_metrics};

/// Long enough for the first scrape (Prometheus applies targets every 5 s) on a busy machine.
const SCRAPED: Duration = Duration::from_secs(30);

/// A tiny HTTP server on 127.0.0.1 that answers every request with `body`,
/// as a `/metrics` endpoint does, and counts the requests for `/metrics`.
struct Exposition {
    address: String,
    body: Arc<Mutex<String>>,
    scrapes: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exposition {
    fn serve(body: &str) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binds");
        let address = listener.local_addr().expect("an address").to_string();
        let body = Arc::new(Mutex::new(body.to_owned()));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (body, scrapes, stopping) = (body.clone(), scrapes.clone(), stopping.clone());
            move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        answer(stream, &body, &scrapes);
                    }
                }
            }
        });
        Self {
            address,
            body,
            scrapes,
            stopping,
            thread: Some(thread),
        }
    }

    fn set(&self, body: &str) {
        *self.body.lock().expect("not poisoned") = body.to_owned();
    }
}

fn answer(mut stream: TcpStream, body: &Mutex<String>, scrapes: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut chunk = [0; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => request.extend_from_slice(&chunk[..read]),
        }
    }
    if request.starts_with(b"GET /metrics ") {
        scrapes.fetch_add(1, Ordering::SeqCst);
    }
    let body = body.lock().expect("not poisoned").clone();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn requests(count: u32) -> String {
    format!(
        "# HELP heist_test_requests_total Requests served.\n\
         # TYPE heist_test_requests_total counter\n\
         heist_test_requests_total{{service=\"audit\"}} {count}\n\
         # HELP heist_test_in_flight Requests being served.\n\
         # TYPE heist_test_in_flight gauge\n\
         heist_test_in_flight 0\n"
    )
}

#[tokio::test]
async fn prometheus_scrapes_a_target_reads_its_counter_back_and_stops() {
    let target = Exposition::serve(&requests(42));
    promtool_check_metrics(&requests(42)).expect("the served exposition is clean");
    let server = PrometheusServer::start(&[ScrapeTarget::new("fixed", [target.address.as_str()])])
        .expect("Prometheus starts");
    assert!(server.url().ends_with(&format!(":{}", server.port())));

    let up = server.wait_for_scrapes(SCRAPED).await.expect("scraped");
    let expected = TargetUp {
        job: "fixed".into(),
        instance: target.address.clone(),
        up: true,
    };
    assert_eq!(up, [expected], "{}", server.log_tail());
    assert!(target.scrapes.load(Ordering::SeqCst) >= 1);

    let samples = server
        .query("heist_test_requests_total")
        .await
        .expect("queried");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].value, 42.0);
    assert_eq!(samples[0].label("service"), Some("audit"));
    assert_eq!(samples[0].label("job"), Some("fixed"));
    assert_eq!(samples[0].name(), Some("heist_test_requests_total"));

    // A new value is scraped within a few intervals.
    target.set(&requests(43));
    let samples = server
        .wait_for(
            "sum(heist_test_requests_total)",
            |samples| samples.first().is_some_and(|s| s.value == 43.0),
            SCRAPED,
        )
        .await
        .expect("the new value is scraped");
    assert!(samples[0].labels.is_empty(), "sum drops the labels");

    let waited = server
        .wait_for(
            "heist_test_in_flight",
            |_| false,
            Duration::from_millis(300),
        )
        .await
        .expect_err("never accepted")
        .to_string();
    assert!(
        waited.contains("`heist_test_in_flight` did not give the expected samples within 0 s")
            && waited.contains("heist_test_in_flight{instance="),
        "{waited}"
    );
    let refused = server
        .query("up{")
        .await
        .expect_err("bad PromQL")
        .to_string();
    assert!(
        refused.starts_with("Prometheus refused `up{` (bad_data): "),
        "{refused}"
    );

    let (dir, port) = (server.directory().to_owned(), server.port());
    drop(server);
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(
        port::connect(port).is_none(),
        "nothing listens on {port} after drop"
    );
}

#[tokio::test]
async fn an_unreachable_target_still_starts_and_reads_up_0_beside_a_reachable_one() {
    let reachable = Exposition::serve(&requests(1));
    let nobody = format!("127.0.0.1:{}", port::free_port().expect("a free port"));
    let targets = [ScrapeTarget::new(
        "mesh",
        [reachable.address.as_str(), nobody.as_str()],
    )];
    let mut server = PrometheusServer::start(&targets).expect("Prometheus starts");
    let mut up = server.wait_for_scrapes(SCRAPED).await.expect("scraped");
    up.sort_by_key(|target| target.instance != reachable.address);
    let states: Vec<(&str, bool)> = up.iter().map(|t| (t.instance.as_str(), t.up)).collect();
    assert_eq!(
        states,
        [(reachable.address.as_str(), true), (nobody.as_str(), false)],
        "{}",
        server.log_tail()
    );
    assert!(server.is_running());
    server.stop();
    assert!(!server.is_running(), "stopped");
    assert!(port::connect(server.port()).is_none());
}

#[test]
fn a_target_that_is_not_host_port_is_refused_before_anything_starts() {
    let error =
        PrometheusServer::start(&[ScrapeTarget::new("mesh", ["http://127.0.0.1:9/metrics"])])
            .expect_err("refused")
            .to_string();
    assert_eq!(
        error,
        "scrape target `mesh`: address `http://127.0.0.1:9/metrics` is not host:port"
    );
}
