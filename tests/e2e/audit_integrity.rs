//! Tamper-evident audit, end to end with the real binaries: a run's
//! session verifies intact over gRPC (`orchestrator sessions verify`) and
//! offline (`heist-audit verify`, with the key ring or its published
//! keys), and its transcript carries the seal Audit gave; each kind of
//! tampering with the SQLite file (`sqlite3`) or the PostgreSQL database
//! is named, row by row, by both verifiers; a checkpoint signed by a key
//! not trusted is refused.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use heist_e2e::{
    binary,
    integrity::verify_session,
    output_text,
    processes::{MeshOptions, ProcessMesh},
    stores::fresh_postgres_url,
};
use heist_proto::v1::{Integrity, SessionVerification};

/// Turns of each test's session: enough for tool calls in several turns.
const TURNS: &str = "8";

/// A mesh of real processes and one finished session on it.
struct Ran {
    mesh: ProcessMesh,
    config: PathBuf,
    session_id: String,
}

impl Ran {
    /// Starts the mesh with `options` and runs one offline session on it,
    /// its transcript written to `transcript.json` and `.md`.
    async fn start(options: MeshOptions, seed: &str) -> Self {
        let mesh = ProcessMesh::start_with(options).await;
        let config = mesh.write_config("mesh.yaml");
        let transcript = mesh.dir.path().join("transcript");
        let run = orchestrator(
            &mesh,
            &config,
            &[
                OsStr::new("run"),
                OsStr::new("--turns"),
                OsStr::new(TURNS),
                OsStr::new("--seed"),
                OsStr::new(seed),
                OsStr::new("--quiet"),
                OsStr::new("--transcript"),
                transcript.as_os_str(),
            ],
        )
        .await;
        let shown = output_text(&run);
        assert_eq!(run.status.code(), Some(0), "{shown}");
        let session_id = heist_e2e::session_id_in(&shown);
        assert!(
            shown.contains("Audit seal: ") && shown.contains("; signed by key "),
            "the summary says the seal: {shown}"
        );
        Ran {
            mesh,
            config,
            session_id,
        }
    }

    /// The SQLite file Audit writes.
    fn db(&self) -> PathBuf {
        self.mesh.dir.path().join("audit.db")
    }

    /// Audit's key ring.
    fn key_file(&self) -> PathBuf {
        self.mesh.dir.path().join("audit.key")
    }

    /// The public keys of Audit's key ring as `heist-audit public-keys`
    /// prints them, written to `name` in the mesh's directory.
    async fn published_keys(&self, name: &str) -> PathBuf {
        let keys = heist_audit(&[
            OsStr::new("public-keys"),
            OsStr::new("--key-file"),
            self.key_file().as_os_str(),
        ])
        .await;
        assert_eq!(keys.status.code(), Some(0), "{}", output_text(&keys));
        let path = self.mesh.dir.path().join(name);
        std::fs::write(&path, &keys.stdout).unwrap();
        path
    }

    /// `orchestrator sessions verify` of the session: its exit code and output.
    async fn verify_over_grpc(&self) -> (Option<i32>, String) {
        let verify = orchestrator(
            &self.mesh,
            &self.config,
            &[
                OsStr::new("sessions"),
                OsStr::new("verify"),
                OsStr::new(&self.session_id),
            ],
        )
        .await;
        (verify.status.code(), output_text(&verify))
    }

    /// Audit's verdict, asked directly.
    async fn verdict(&self) -> SessionVerification {
        verify_session(
            self.mesh.addr("oauth"),
            self.mesh.addr("audit"),
            &self.session_id,
        )
        .await
        .unwrap()
    }

    /// `heist-audit verify` of a consistent copy of Audit's file (taken
    /// with `sqlite3 .backup` while Audit runs), trusting `trust`
    /// (`--key-file RING` or `--public-keys JWKS`), for the session.
    async fn verify_offline(&self, trust: &[&OsStr]) -> (Option<i32>, String) {
        let copy = self.mesh.dir.path().join("copy.db");
        let _ = std::fs::remove_file(&copy);
        sqlite(&self.db(), &format!(".backup '{}'", copy.display()));
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("verify"),
            OsStr::new("--db"),
            copy.as_os_str(),
            OsStr::new("--session"),
            OsStr::new(&self.session_id),
        ];
        args.extend_from_slice(trust);
        let verify = heist_audit(&args).await;
        (verify.status.code(), output_text(&verify))
    }

    /// One SQL query on Audit's file, its rows as `sqlite3` prints them
    /// (`|` between columns).
    fn query(&self, sql: &str) -> String {
        sqlite(&self.db(), sql)
    }

    /// The one number `sql` answers.
    fn number(&self, sql: &str) -> i64 {
        let answer = self.query(sql);
        answer
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {answer:?}"))
    }
}

/// Runs the orchestrator with `config` on `args`, off the async runtime.
async fn orchestrator(mesh: &ProcessMesh, config: &Path, args: &[&OsStr]) -> Output {
    let mut command = Command::new(binary("orchestrator"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(mesh.dir.path())
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Runs `heist-audit` on `args`, off the async runtime.
async fn heist_audit(args: &[&OsStr]) -> Output {
    let mut command = Command::new(binary("heist-audit"));
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Runs `sql` on the SQLite file `db` with the `sqlite3` CLI (waiting for
/// Audit's writer if it holds the lock); its output.
fn sqlite(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .args(["-batch", "-cmd", ".timeout 5000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 CLI (scripts/install_engines.sh installs it)");
    assert!(output.status.success(), "{sql}: {}", output_text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `--flag PATH` pair of arguments.
fn flag<'a>(name: &'a str, path: &'a Path) -> [&'a OsStr; 2] {
    [OsStr::new(name), path.as_os_str()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_verifies_intact_over_grpc_and_offline_and_its_transcript_carries_the_seal() {
    let mut ran = Ran::start(MeshOptions::for_tests(), "18").await;
    let verdict = ran.verdict().await;
    assert_eq!(verdict.integrity(), Integrity::Intact, "{verdict}");

    let (code, shown) = ran.verify_over_grpc().await;
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(shown.trim(), verdict.to_string());
    assert!(shown.contains(": intact, "), "{shown}");

    let show = orchestrator(
        &ran.mesh,
        &ran.config,
        &[
            OsStr::new("sessions"),
            OsStr::new("show"),
            OsStr::new(&ran.session_id),
        ],
    )
    .await;
    let shown = output_text(&show);
    assert_eq!(show.status.code(), Some(0), "{shown}");
    assert_eq!(
        shown.lines().nth(1),
        Some(format!("Integrity: {verdict}").as_str()),
        "the verdict follows the header: {shown}"
    );

    let (code, shown) = ran
        .verify_offline(&flag("--key-file", &ran.key_file()))
        .await;
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(
        shown.trim(),
        verdict.to_string(),
        "both verifiers say the same"
    );

    let jwks = ran.published_keys("audit.jwks.json").await;
    let (code, shown) = ran.verify_offline(&flag("--public-keys", &jwks)).await;
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains(": intact, "), "{shown}");

    let transcript: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ran.mesh.dir.path().join("transcript.json")).unwrap(),
    )
    .unwrap();
    let seal = &transcript["chain_seal"];
    let signed = verdict.checkpoint.as_ref().unwrap();
    assert_eq!(seal["rows"], verdict.rows, "{seal}");
    assert_eq!(seal["signed_rows"], signed.rows, "{seal}");
    assert_eq!(seal["chain_head"], verdict.chain_head.as_str(), "{seal}");
    assert_eq!(seal["key_id"], signed.key_id.as_str(), "{seal}");
    assert_eq!(seal["signature"], signed.signature.as_str(), "{seal}");
    assert_eq!(seal["signed_at"], signed.signed_at.as_str(), "{seal}");
    assert_eq!(signed.head, verdict.chain_head, "signed to the end");
    let markdown = std::fs::read_to_string(ran.mesh.dir.path().join("transcript.md")).unwrap();
    let head = &verdict.chain_head;
    assert!(
        markdown.ends_with(&format!(
            "Audit seal: {} rows, head {head}; signed by key {} at {}, signature {}\n",
            verdict.rows, signed.key_id, signed.signed_at, signed.signature
        )),
        "{markdown}"
    );

    let (code, shown) = verify_other(&ran, "heist_nope").await;
    assert_eq!(code, Some(4), "an unknown session: {shown}");
    assert!(shown.contains("no session \"heist_nope\""), "{shown}");
    let (code, shown) = verify_other(&ran, "a b").await;
    assert_eq!(code, Some(4), "a malformed ID: {shown}");
    assert!(shown.contains("\"a b\" cannot be a session ID"), "{shown}");

    ran.mesh.kill("audit");
    let (code, shown) = ran.verify_over_grpc().await;
    assert_eq!(code, Some(3), "Audit unreachable: {shown}");
    assert!(
        shown.contains("cannot verify the session in Audit (UNAVAILABLE)"),
        "{shown}"
    );
}

/// `orchestrator sessions verify` of a session Audit does not have.
async fn verify_other(ran: &Ran, session_id: &str) -> (Option<i32>, String) {
    let verify = orchestrator(
        &ran.mesh,
        &ran.config,
        &[
            OsStr::new("sessions"),
            OsStr::new("verify"),
            OsStr::new(session_id),
        ],
    )
    .await;
    (verify.status.code(), output_text(&verify))
}

/// One way of tampering with the file: the SQL that does it, the row both
/// verifiers must name (as `ChainRow` says it) and what they say of it.
struct Tampering {
    what: &'static str,
    sql: String,
    row: String,
    problem: &'static str,
}

/// How a message or tool call is named: `the message (messages id 7, turn 3)`.
fn row_name(kind: &str, table: &str, id: i64, turn: i64) -> String {
    format!("the {kind} ({table} id {id}, turn {turn})")
}

/// The row at chain position `seq` of the session (a message, tool call
/// or event; else the end), named as the verifiers name it.
fn row_at(ran: &Ran, seq: i64) -> String {
    let id = &ran.session_id;
    let found = ran.query(&format!(
        "SELECT 'message', 'messages', id, turn_id FROM messages \
           WHERE session_id = '{id}' AND chain_seq = {seq} \
         UNION ALL SELECT 'tool call', 'tool_usage', id, turn_id FROM tool_usage \
           WHERE session_id = '{id}' AND chain_seq = {seq} \
         UNION ALL SELECT 'event', 'session_events', id, 0 FROM session_events \
           WHERE session_id = '{id}' AND chain_seq = {seq}"
    ));
    let fields: Vec<&str> = found.trim().split('|').collect();
    match fields.as_slice() {
        [kind, table, row, turn] if *turn != "0" => {
            row_name(kind, table, row.parse().unwrap(), turn.parse().unwrap())
        }
        [kind, table, row, _] => format!("the {kind} ({table} id {row})"),
        _ => "the end (sessions)".to_owned(),
    }
}

/// Every kind of tampering, on the session `ran` finished.
fn tamperings(ran: &Ran) -> Vec<Tampering> {
    let id = &ran.session_id;
    let message = |turn: i64| {
        ran.number(&format!(
            "SELECT id FROM messages WHERE session_id = '{id}' AND turn_id = {turn}"
        ))
    };
    let (third, second, fifth) = (message(3), message(2), message(5));
    let tool = ran.number(&format!(
        "SELECT min(id) FROM tool_usage WHERE session_id = '{id}'"
    ));
    let tool_turn = ran.number(&format!("SELECT turn_id FROM tool_usage WHERE id = {tool}"));
    let last_tool = ran.number(&format!(
        "SELECT max(id) FROM tool_usage WHERE session_id = '{id}'"
    ));
    let last_tool_turn = ran.number(&format!(
        "SELECT turn_id FROM tool_usage WHERE id = {last_tool}"
    ));
    let third_seq = ran.number(&format!(
        "SELECT chain_seq FROM messages WHERE id = {third}"
    ));
    let next_id = ran.number("SELECT max(id) + 1 FROM messages");
    assert_ne!(
        ran.query(&format!("SELECT message FROM messages WHERE id = {second}")),
        ran.query(&format!("SELECT message FROM messages WHERE id = {fifth}")),
        "two different messages to swap"
    );
    const CHANGED: &str = "its content does not give its stored hash";
    vec![
        Tampering {
            what: "a message's text changed",
            sql: format!(
                "UPDATE messages SET message = message || ' (and the mole gets nothing)' WHERE id = {third}"
            ),
            row: row_name("message", "messages", third, 3),
            problem: CHANGED,
        },
        Tampering {
            what: "a tool result changed",
            sql: format!("UPDATE tool_usage SET tool_result = '42' WHERE id = {tool}"),
            row: row_name("tool call", "tool_usage", tool, tool_turn),
            problem: CHANGED,
        },
        Tampering {
            what: "a row deleted",
            sql: format!("DELETE FROM messages WHERE id = {third}"),
            row: row_at(ran, third_seq + 1),
            problem: "where",
        },
        Tampering {
            what: "two messages' texts swapped",
            sql: format!(
                "CREATE TEMP TABLE texts AS SELECT id, message FROM messages WHERE id IN ({second}, {fifth}); \
                 UPDATE messages SET message = (SELECT message FROM texts WHERE texts.id = \
                   CASE messages.id WHEN {second} THEN {fifth} ELSE {second} END) \
                 WHERE id IN ({second}, {fifth});"
            ),
            row: row_name("message", "messages", second, 2),
            problem: CHANGED,
        },
        Tampering {
            what: "a row inserted without its chain",
            sql: format!(
                "INSERT INTO messages (id, session_id, turn_id, agent_name, agent_role, message, timestamp) \
                 VALUES ({next_id}, '{id}', 3, 'mole', 'Inside Man', 'the vault code is 0000', \
                 '2026-12-01T00:00:00.000Z')"
            ),
            row: row_name("message", "messages", next_id, 3),
            problem: "carries no chain",
        },
        Tampering {
            what: "a timestamp changed",
            sql: format!(
                "UPDATE tool_usage SET timestamp = '2020-01-01T00:00:00.000Z' WHERE id = {last_tool}"
            ),
            row: row_name("tool call", "tool_usage", last_tool, last_tool_turn),
            problem: CHANGED,
        },
        Tampering {
            what: "the session's end moved",
            sql: format!(
                "UPDATE sessions SET end_time = '2030-01-01T00:00:00.000Z' WHERE session_id = '{id}'"
            ),
            row: "the end (sessions)".to_owned(),
            problem: CHANGED,
        },
    ]
}

/// Puts the session's rows back as `pristine` (a copy of the file) has them.
fn restore_sql(id: &str, pristine: &Path) -> String {
    format!(
        "ATTACH '{}' AS pristine; \
         DELETE FROM messages WHERE session_id = '{id}'; \
         INSERT INTO messages SELECT * FROM pristine.messages WHERE session_id = '{id}'; \
         DELETE FROM tool_usage WHERE session_id = '{id}'; \
         INSERT INTO tool_usage SELECT * FROM pristine.tool_usage WHERE session_id = '{id}'; \
         UPDATE sessions SET end_time = (SELECT end_time FROM pristine.sessions \
           WHERE session_id = '{id}') WHERE session_id = '{id}'; \
         DETACH pristine;",
        pristine.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_with_the_file_is_named_by_both_verifiers() {
    let ran = Ran::start(MeshOptions::for_tests(), "19").await;
    let pristine = ran.mesh.dir.path().join("pristine.db");
    sqlite(&ran.db(), &format!(".backup '{}'", pristine.display()));
    let key_file = ran.key_file();
    let ring = flag("--key-file", &key_file);
    for tampering in tamperings(&ran) {
        let what = tampering.what;
        ran.query(&tampering.sql);
        let named = format!("TAMPERED at {}: ", tampering.row);

        let (code, shown) = ran.verify_offline(&ring).await;
        assert_eq!(code, Some(1), "{what}, offline: {shown}");
        assert!(
            shown.contains(&named) && shown.contains(tampering.problem),
            "{what}, offline, names {named:?} ({}): {shown}",
            tampering.problem
        );

        let (code, shown) = ran.verify_over_grpc().await;
        assert_eq!(code, Some(1), "{what}, over gRPC: {shown}");
        assert!(
            shown.contains(&named) && shown.contains(tampering.problem),
            "{what}, over gRPC, names {named:?} ({}): {shown}",
            tampering.problem
        );

        ran.query(&restore_sql(&ran.session_id, &pristine));
        let verdict = ran.verdict().await;
        assert_eq!(
            verdict.integrity(),
            Integrity::Intact,
            "restored after {what}: {verdict}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_by_a_key_not_trusted_is_refused_by_both_verifiers() {
    let mut ran = Ran::start(MeshOptions::for_tests(), "20").await;
    // Audit restarted with another key ring: the session's checkpoints are
    // signed by a key it does not hold.
    ran.mesh.kill("audit");
    std::fs::rename(ran.key_file(), ran.mesh.dir.path().join("first.key")).unwrap();
    ran.mesh.restart("audit");
    ran.mesh.wait_serving("audit").await;
    assert!(ran.key_file().exists(), "Audit made itself a new key ring");

    let (code, shown) = ran.verify_over_grpc().await;
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("TAMPERED at ") && shown.contains("signed by a key that is not trusted"),
        "{shown}"
    );

    let other = ran.published_keys("other.jwks.json").await;
    let (code, shown) = ran.verify_offline(&flag("--public-keys", &other)).await;
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("signed by a key that is not trusted"),
        "{shown}"
    );
    // The first ring still vouches for it.
    let first = ran.mesh.dir.path().join("first.key");
    let (code, shown) = ran.verify_offline(&flag("--key-file", &first)).await;
    assert_eq!(code, Some(0), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_changed_in_postgres_is_named_by_sessions_verify() {
    let url = fresh_postgres_url();
    let options = MeshOptions {
        audit_store: Some(url.clone()),
        ..MeshOptions::for_tests()
    };
    let ran = Ran::start(options, "21").await;
    let (code, shown) = ran.verify_over_grpc().await;
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains(": intact, "), "{shown}");

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let changed = client
        .query_one(
            "UPDATE messages SET message = message || ' (edited)' \
             WHERE session_id = $1 AND turn_id = 4 RETURNING id",
            &[&ran.session_id],
        )
        .await
        .unwrap();
    let id: i64 = changed.get(0);
    let (code, shown) = ran.verify_over_grpc().await;
    assert_eq!(code, Some(1), "{shown}");
    let named = format!(
        "TAMPERED at {}: its content does not give its stored hash",
        row_name("message", "messages", id, 4)
    );
    assert!(shown.contains(&named), "names {named:?}: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_with_writes_still_spooled_carries_no_seal() {
    use std::io::{BufRead, BufReader};
    let mut mesh = ProcessMesh::start().await;
    let config = mesh.write_config("mesh.yaml");
    let transcript = mesh.dir.path().join("spooled");
    let mut child = Command::new(binary("orchestrator"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--turns", "100000", "--transcript"])
        .arg(&transcript)
        .current_dir(mesh.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut shown = String::new();
    let mut read_until = |done: &dyn Fn(&str) -> bool, shown: &mut String| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            shown.push_str(&line);
            shown.push('\n');
            if done(&line) {
                return;
            }
        }
    };
    read_until(&|line| line.starts_with("[Turn 3]"), &mut shown);
    // Audit goes away for good: the next turns' writes wait in the spool.
    mesh.kill("audit");
    read_until(&|line| line.starts_with("[Turn 5]"), &mut shown);
    let interrupted = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(interrupted.success());
    read_until(&|_| false, &mut shown);
    assert_eq!(child.wait().unwrap().code(), Some(130), "{shown}");
    assert!(shown.contains("the next run replays them"), "{shown}");
    assert!(!shown.contains("Audit seal"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(transcript.with_extension("json")).unwrap())
            .unwrap();
    assert!(json["chain_seal"].is_null(), "{}", json["chain_seal"]);
    let markdown = std::fs::read_to_string(transcript.with_extension("md")).unwrap();
    assert!(
        markdown.ends_with(
            "Audit seal: none (Audit could not answer at the end, or the session is unchained)\n"
        ),
        "{markdown}"
    );
}
