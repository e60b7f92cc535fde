//! `database_query` through the real Tool service on 127.0.0.1:0: queries
//! run concurrently on a pool of read-only connections, each stops at its
//! time limit, at its caller's deadline or when its caller goes away, one
//! client cannot hold more than its share; the seed's vocabulary answers,
//! SQL errors name the schema, and writes are still refused.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use heist_e2e::{TestAuth, TestServer, services};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    CallToolRequest, CallToolResponse, ListToolsRequest, tool_service_client::ToolServiceClient,
};
use heist_tools::{ToolSet, ToolsConfig};
use serde_json::Value;
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

type Client = ToolServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// A query that never ends by itself.
const FOREVER: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT MAX(i) FROM n";

/// The longest any quick answer may take here: generous, for a loaded machine.
const QUICK: Duration = Duration::from_secs(3);

struct Tools {
    server: TestServer,
    auth: TestAuth,
}

impl Tools {
    /// A client whose token was issued to `client` (its `sub`).
    fn client(&self, client: &str) -> Client {
        let token = self.auth.token(client, &["database_query:use"]);
        ToolServiceClient::with_interceptor(self.server.channel(), BearerInterceptor::new(&token))
    }
}

/// The Tool service hosting database_query with `config`, calls limited to 60 s.
async fn start(config: ToolsConfig) -> Tools {
    let tools = ToolSet::from_names("database_query", &config).unwrap();
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = services::tools(
        tools,
        Duration::from_secs(60),
        authenticator,
        ServeOptions::default(),
    )
    .await;
    Tools { server, auth }
}

fn request(query: &str) -> CallToolRequest {
    CallToolRequest {
        tool_name: "database_query".into(),
        arguments: [("query".to_owned(), query.to_owned())].into(),
        session_id: "heist_test".into(),
        agent_name: String::new(), // anonymous: the clients are not agents
        turn_id: 1,
    }
}

async fn query(client: &mut Client, sql: &str) -> Result<CallToolResponse, Status> {
    client
        .call_tool(request(sql))
        .await
        .map(tonic::Response::into_inner)
}

/// `sql` sent by a fresh client `name`, with how long the answer took.
async fn timed(
    tools: &Tools,
    name: &str,
    sql: &str,
) -> (Result<CallToolResponse, Status>, Duration) {
    let mut client = tools.client(name);
    let started = Instant::now();
    let outcome = query(&mut client, sql).await;
    (outcome, started.elapsed())
}

fn data(answer: &CallToolResponse) -> Value {
    serde_json::from_str(&answer.data_json).unwrap()
}

/// `SELECT 1` from `name` succeeds within `within`; a RESOURCE_EXHAUSTED
/// (connections not yet given back) is retried until then.
async fn select_1_answers_within(tools: &Tools, name: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let mut client = tools.client(name);
    loop {
        match query(&mut client, "SELECT 1").await {
            Ok(answer) => {
                assert_eq!(data(&answer)["rows"], serde_json::json!([[1]]));
                return started.elapsed();
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < within,
                    "the pool was still busy after {within:?}: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("SELECT 1 failed: {status:?}"),
        }
    }
}

#[tokio::test]
async fn four_endless_queries_at_once_leave_select_1_from_another_client_quick() {
    let time_limit = Duration::from_secs(6);
    let tools = start(ToolsConfig {
        query_time_limit: time_limit,
        ..ToolsConfig::default()
    })
    .await;
    let started = Instant::now();
    let endless: Vec<_> = (1..=4)
        .map(|n| {
            let mut client = tools.client(&format!("crew-{n}"));
            tokio::spawn(async move { query(&mut client, FOREVER).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answer, took) = timed(&tools, "planner", "SELECT 1").await;
    assert_eq!(data(&answer.unwrap())["rows"], serde_json::json!([[1]]));
    eprintln!("SELECT 1 beside four endless queries answered in {took:?}");
    assert!(
        took < QUICK,
        "SELECT 1 took {took:?} beside four endless queries"
    );
    for task in endless {
        let status = task.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("time limit"), "{status:?}");
    }
    // They ran side by side: one after the other would take 4 time limits.
    let all = started.elapsed();
    assert!(all < time_limit * 3, "four endless queries took {all:?}");
}

#[tokio::test]
async fn a_query_past_its_time_limit_is_deadline_exceeded_and_its_connection_serves_again() {
    let tools = start(ToolsConfig {
        query_time_limit: Duration::from_millis(300),
        query_connections: 1,
        query_per_client: 1,
        ..ToolsConfig::default()
    })
    .await;
    let mut client = tools.client("planner");
    for _ in 0..2 {
        let status = query(&mut client, FOREVER).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(
            status.message(),
            "query stopped at the time limit of 300 ms"
        );
        let answer = query(&mut client, "SELECT COUNT(*) FROM guards")
            .await
            .unwrap();
        assert_eq!(data(&answer)["rows"], serde_json::json!([[8]]));
    }
}

#[tokio::test]
async fn a_caller_whose_deadline_passes_or_who_leaves_stops_its_query_and_frees_the_pool() {
    // Without interruption these queries would hold both connections for a minute.
    let tools = start(ToolsConfig {
        query_time_limit: Duration::from_secs(60),
        query_connections: 2,
        query_per_client: 2,
        ..ToolsConfig::default()
    })
    .await;
    // Two callers with a 500 ms deadline (grpc-timeout).
    let impatient: Vec<_> = (0..2)
        .map(|_| {
            let mut client = tools.client("impatient");
            tokio::spawn(async move {
                let mut call = tonic::Request::new(request(FOREVER));
                call.set_timeout(Duration::from_millis(500));
                let started = Instant::now();
                (client.call_tool(call).await.map(drop), started.elapsed())
            })
        })
        .collect();
    for task in impatient {
        let (outcome, took) = task.await.unwrap();
        let status = outcome.unwrap_err();
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        assert!(
            took < QUICK,
            "the caller's deadline of 500 ms answered after {took:?}"
        );
    }
    let took = select_1_answers_within(&tools, "planner", Duration::from_secs(10)).await;
    assert!(took < QUICK * 2, "the pool was freed only after {took:?}");

    // Two callers who give up after 500 ms without saying so (the request is dropped).
    let leaving: Vec<_> = (0..2)
        .map(|_| {
            let mut client = tools.client("leaving");
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(500), query(&mut client, FOREVER))
                    .await
                    .is_err()
            })
        })
        .collect();
    for task in leaving {
        assert!(task.await.unwrap(), "an endless query answered");
    }
    let took = select_1_answers_within(&tools, "planner", Duration::from_secs(10)).await;
    assert!(took < QUICK * 2, "the pool was freed only after {took:?}");
}

#[tokio::test]
async fn one_client_past_its_share_is_limited_while_another_is_served() {
    let time_limit = Duration::from_secs(6);
    let tools = start(ToolsConfig {
        query_time_limit: time_limit,
        query_connections: 4,
        query_per_client: 2,
        query_queue_wait: Duration::from_millis(300),
        ..ToolsConfig::default()
    })
    .await;
    let greedy: Vec<_> = (0..4)
        .map(|_| {
            let mut client = tools.client("greedy");
            tokio::spawn(async move { query(&mut client, FOREVER).await.unwrap_err() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (answer, took) = timed(&tools, "planner", "SELECT 1").await;
    answer.unwrap();
    assert!(took < QUICK, "the other client waited {took:?}");
    let mut codes = Vec::new();
    for task in greedy {
        let status = task.await.unwrap();
        if status.code() == Code::ResourceExhausted {
            assert!(
                status
                    .message()
                    .contains("\"greedy\" already runs 2 queries"),
                "{status:?}"
            );
        }
        codes.push(status.code());
    }
    codes.sort_by_key(|code| *code as i32);
    assert_eq!(
        codes,
        [
            Code::DeadlineExceeded,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::ResourceExhausted
        ],
        "two ran to the time limit, two were refused"
    );
}

/// The topics of the seed's keyword questions, by the words that ask them.
const TOPIC_QUESTIONS: &[(&str, &str)] = &[
    ("guard schedule", "guard schedule"),
    ("security employees", "security employees"),
    ("access levels", "access levels"),
    ("cameras", "cameras"),
    ("vault", "vault"),
    ("shifts", "shifts"),
    ("alarm zones", "alarm zones"),
    ("doors", "doors"),
    ("guards", "guards"),
    ("employees", "employees"),
];

#[tokio::test]
async fn the_seeds_example_query_and_every_topic_question_answer_with_and_without_select() {
    let tools = start(ToolsConfig::default()).await;
    let mut client = tools.client("planner");
    let night = query(&mut client, "SELECT * FROM guards WHERE shift='night'")
        .await
        .unwrap();
    let rows = data(&night)["rows"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert!(night.text.contains("Victor Stahl") && night.text.contains("Ruth Ngata"));
    assert!(night.text.contains("shift"), "{}", night.text);

    for (question, topic) in TOPIC_QUESTIONS {
        let plain = query(&mut client, question).await.unwrap();
        assert_eq!(data(&plain)["topic"], *topic, "{question}");
        assert!(
            !data(&plain)["rows"].as_array().unwrap().is_empty(),
            "{question}"
        );
        for select in [format!("SELECT {question}"), format!("select {question};")] {
            let answer = query(&mut client, &select)
                .await
                .unwrap_or_else(|status| panic!("{select}: {status:?}"));
            let answer_data = data(&answer);
            assert_eq!(answer_data["topic"], *topic, "{select}");
            assert_eq!(answer_data["rows"], data(&plain)["rows"], "{select}");
            let note = format!("answered as the topic question '{topic}'");
            assert!(answer.text.contains(&note), "{select}: {}", answer.text);
            assert!(
                answer_data["note"].as_str().unwrap().starts_with(&note),
                "{select}: {answer_data}"
            );
        }
    }
}

#[tokio::test]
async fn an_sql_error_names_the_tables_and_their_columns_and_stays_short() {
    let tools = start(ToolsConfig::default()).await;
    let mut client = tools.client("planner");
    let guards_columns = "guards(id, employee_id, badge_number, armed, radio_channel, years_of_service, name, shift)";
    for (sql, reason) in [
        ("SELECT guard FROM guards", "no such column: guard"),
        (
            "SELECT * FROM guard WHERE shift = 'night'",
            "no such table: guard",
        ),
        ("SELECT nope FROM guards", "no such column: nope"),
    ] {
        let status = query(&mut client, sql).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{sql}: {status:?}");
        let message = status.message();
        assert!(message.contains(reason), "{sql}: {message}");
        assert!(message.contains(guards_columns), "{sql}: {message}");
        assert!(message.contains("guard schedule"), "{sql}: {message}");
        assert!(
            message.len() < 800,
            "{sql}: {} chars: {message}",
            message.len()
        );
    }
    // A table the query does not name is still listed with its columns.
    let status = query(&mut client, "SELECT * FROM loot").await.unwrap_err();
    assert!(
        status
            .message()
            .contains("access_levels(level, name, description)"),
        "{status:?}"
    );
    // A huge unknown name is not echoed whole.
    let huge = format!("SELECT {} FROM guards", "x".repeat(5_000));
    let status = query(&mut client, &huge).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() < 1_000,
        "{} chars",
        status.message().len()
    );
}

#[tokio::test]
async fn writes_are_still_refused_and_change_nothing() {
    let tools = start(ToolsConfig::default()).await;
    let mut client = tools.client("planner");
    let night = "SELECT COUNT(*) FROM guards WHERE shift = 'night'";
    let before = query(&mut client, night).await.unwrap();
    for (bad, code) in [
        (
            "UPDATE guards SET shift = 'day' WHERE shift = 'night'",
            Code::PermissionDenied,
        ),
        (
            "INSERT INTO guards SELECT * FROM guards",
            Code::PermissionDenied,
        ),
        (
            "DELETE FROM guards WHERE shift = 'night'",
            Code::PermissionDenied,
        ),
        ("DELETE FROM guard_schedule", Code::PermissionDenied),
        (
            "WITH x AS (SELECT 1) DELETE FROM guards",
            Code::PermissionDenied,
        ),
        (
            "REPLACE INTO shifts VALUES (1, 'x', 'a', 'b', 1)",
            Code::PermissionDenied,
        ),
        ("DROP TABLE guards", Code::PermissionDenied),
        ("ATTACH DATABASE '/tmp/x.db' AS x", Code::PermissionDenied),
        ("PRAGMA query_only = 0", Code::PermissionDenied),
        ("PRAGMA writable_schema = 1", Code::PermissionDenied),
        (
            "SELECT guard schedule; DELETE FROM guards",
            Code::InvalidArgument,
        ),
        ("SELECT 1; DELETE FROM guards", Code::InvalidArgument),
    ] {
        let status = query(&mut client, bad).await.expect_err(bad);
        assert_eq!(status.code(), code, "{bad:?}: {status:?}");
    }
    let after = query(&mut client, night).await.unwrap();
    assert_eq!(
        before.data_json, after.data_json,
        "the database is unchanged"
    );
    assert_eq!(data(&after)["rows"], serde_json::json!([[2]]));
}

#[tokio::test]
async fn the_tool_list_names_the_tables_their_columns_the_topics_and_the_seed_example() {
    let tools = start(ToolsConfig::default()).await;
    let listed = tools
        .client("planner")
        .list_tools(ListToolsRequest {})
        .await
        .unwrap()
        .into_inner();
    let tool = &listed.tools[0];
    let schema: Value = serde_json::from_str(&tool.parameters_schema).unwrap();
    let query_help = schema["properties"]["query"]["description"]
        .as_str()
        .unwrap();
    for text in [tool.description.as_str(), query_help] {
        for expected in [
            "guards(id, employee_id, badge_number, armed, radio_channel, years_of_service, name, shift)",
            "guard_schedule(id, guard_id, shift_id",
            "SELECT * FROM guards WHERE shift='night'",
            "guard schedule, security employees, access levels",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
    }
}
