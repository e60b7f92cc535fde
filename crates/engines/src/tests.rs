//! The servers start, answer, stop, restart on their port and clean up.

use std::io::{Read, Write};
use std::process::Command;

use super::*;

fn psql_select_one(server: &PostgresServer, url: &str) -> Result<String, String> {
    let output = Command::new(server.program("psql"))
        .args(["-tA", "-c", "SELECT 1", url])
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn postgres_starts_takes_its_password_refuses_a_wrong_one_restarts_and_cleans_up() {
    let mut server = PostgresServer::start(Durability::Relaxed).expect("PostgreSQL starts");
    assert_eq!(psql_select_one(&server, &server.url()).as_deref(), Ok("1"));
    let wrong = server.url().replace(server.password(), "wrong");
    let refused = psql_select_one(&server, &wrong).expect_err("a wrong password is refused");
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );

    let fresh = server.fresh_database().expect("a fresh database");
    assert_ne!(fresh, server.url());
    assert_eq!(psql_select_one(&server, &fresh).as_deref(), Ok("1"));

    let port = server.port();
    server.kill();
    assert!(
        psql_select_one(&server, &server.url()).is_err(),
        "down after kill"
    );
    server.start_again().expect("starts again after a kill");
    assert_eq!(server.port(), port);
    assert_eq!(
        psql_select_one(&server, &fresh).as_deref(),
        Ok("1"),
        "data kept"
    );

    let dir = server.directory().to_owned();
    drop(server);
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(
        port::connect(port).is_none(),
        "nothing listens on {port} after drop"
    );
}

fn redis_command(port: u16, request: &str) -> String {
    let mut stream = port::connect(port).expect("connects");
    stream.write_all(request.as_bytes()).expect("writes");
    let mut answer = [0; 256];
    let read = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[test]
fn redis_starts_wants_its_password_restarts_empty_and_stops() {
    let mut server = RedisServer::start().expect("Redis starts");
    let port = server.port();
    assert!(redis_command(port, "PING\r\n").starts_with("-NOAUTH"));
    let set = format!("AUTH {}\r\nSET k v\r\nGET k\r\n", server.password());
    assert_eq!(redis_command(port, &set), "+OK\r\n+OK\r\n$1\r\nv\r\n");
    assert!(server.url().ends_with(&format!("@127.0.0.1:{port}/")));

    server.start_again().expect("starts again");
    let get = format!("AUTH {}\r\nGET k\r\n", server.password());
    assert_eq!(
        redis_command(port, &get),
        "+OK\r\n$-1\r\n",
        "nothing persisted"
    );
    server.kill();
    assert!(port::connect(port).is_none(), "down after kill");
}
