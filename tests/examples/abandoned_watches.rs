//! The "abandoned watches" load of issue 11 item 5, against running OAuth
//! and Audit binaries: on one active session, opens WatchSession streams in
//! batches and cancels them, then prints Audit's resident memory and the
//! median StoreMessage time before and after.
//!
//! `cargo run --example abandoned_watches -- OAUTH_ADDR AUDIT_ADDR AUDIT_PID [WATCHES] [BATCH]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a demo: fail loudly

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use heist_e2e::{channel_to, dev_token};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CreateSessionRequest, StoreMessageRequest, WatchSessionRequest,
    audit_service_client::AuditServiceClient,
};

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let oauth: SocketAddr = args[0].parse().unwrap();
    let audit: SocketAddr = args[1].parse().unwrap();
    let pid = args[2].clone();
    let watches: usize = args.get(3).map_or(4000, |n| n.parse().unwrap());
    let batch: usize = args.get(4).map_or(50, |n| n.parse().unwrap());
    let token = dev_token(oauth, "orchestrator", "audit:read audit:write")
        .await
        .unwrap();
    let mut client =
        AuditServiceClient::with_interceptor(channel_to(audit), BearerInterceptor::new(&token));
    client
        .create_session(CreateSessionRequest {
            session_id: "watched".into(),
            metadata: "{}".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let mut turn = 0;
    let mut store_median = async |client: &mut AuditServiceClient<_>| {
        let mut times = Vec::new();
        for _ in 0..50 {
            turn += 1;
            let started = Instant::now();
            client
                .store_message(StoreMessageRequest {
                    session_id: "watched".into(),
                    turn_id: turn,
                    agent_name: "planner".into(),
                    agent_role: "Strategic Planner".into(),
                    message: format!("turn {turn}"),
                    is_error: false,
                    idempotency_key: String::new(),
                    ..Default::default()
                })
                .await
                .unwrap();
            times.push(started.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    let before_rss = rss_kib(&pid);
    let before_store = store_median(&mut client).await;
    let mut opened = 0;
    while opened < watches {
        let mut open = Vec::new();
        for _ in 0..batch.min(watches - opened) {
            let stream = client
                .watch_session(WatchSessionRequest {
                    session_id: "watched".into(),
                    after_message_id: i64::MAX / 2,
                })
                .await
                .unwrap()
                .into_inner();
            open.push(stream);
        }
        opened += open.len();
        drop(open);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_rss = rss_kib(&pid);
    let after_store = store_median(&mut client).await;
    println!(
        "{watches} watches opened and cancelled (batches of {batch}): Audit RSS {before_rss} KiB -> \
         {after_rss} KiB; median StoreMessage {before_store:?} -> {after_store:?}"
    );
}
