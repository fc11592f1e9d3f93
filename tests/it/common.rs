//! The test harness: a real server on port 0 with a fresh database each.
//!
//! The backend is chosen by `CALLCENTER_TEST_DB`: `sqlite` (the default; a new file in a
//! temporary directory) or `postgres` (a new database on the server that
//! `CALLCENTER_TEST_PG` names, default `postgres://postgres@127.0.0.1:5432/test`,
//! dropped after the test).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use callcenter::App;
use callcenter::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A fresh database, removed when dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    pg_admin: String,
}

impl TestDb {
    pub async fn new(dir: &Path) -> TestDb {
        let pg_admin = std::env::var("CALLCENTER_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match std::env::var("CALLCENTER_TEST_DB").as_deref() {
            Ok("postgres") => {
                let name = format!("cc_test_{}", uuid_like());
                psql(&pg_admin, &format!("CREATE DATABASE {name}"));
                let base = pg_admin.rsplit_once('/').expect("a database url").0;
                TestDb { url: format!("{base}/{name}"), pg_name: Some(name), pg_admin }
            }
            _ => TestDb {
                url: format!("sqlite://{}", dir.join("callcenter.db").display()),
                pg_name: None,
                pg_admin,
            },
        }
    }

    /// A database that someone else made and will remove.
    pub fn existing(url: String) -> TestDb {
        TestDb { url, pg_name: None, pg_admin: String::new() }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_name.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            psql(&self.pg_admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The database as the test reads it, beside the server.
pub enum Plain {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Plain {
    pub async fn connect(url: &str) -> Plain {
        if url.starts_with("sqlite:") {
            Plain::Sqlite(sqlx::SqlitePool::connect(url).await.expect("the test opens SQLite"))
        } else {
            Plain::Postgres(sqlx::PgPool::connect(url).await.expect("the test opens PostgreSQL"))
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Plain::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Plain::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn texts(&self, sql: &str) -> Vec<String> {
        match self {
            Plain::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Plain::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn execute(&self, sql: &str) {
        match self {
            Plain::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
            Plain::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn ints(&self, sql: &str) -> Vec<i64> {
        match self {
            Plain::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Plain::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The tests' Python environment, which scripts/setup makes: schemathesis, an OpenAPI
/// validator, pocketsphinx (fuzz/requirements.txt).
pub fn venv() -> PathBuf {
    std::env::var("CALLCENTER_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/callcenter-venv")
    })
}

/// Polls `check` until it gives a value, failing with `what` after `limit`.
pub async fn until<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every log line the servers of this test process write from the first call on: INFO
/// and up, and the SIP carrier's DEBUG (what it sent and got). The process is shared by
/// every suite, so a test picks its own lines: by its calls' uuids (a node id of its own),
/// its ports, its calling hours.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,sqlx=warn,callcenter::telephony::sip=debug",
            ))
            .with_writer(move || LogSink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

/// The log so far (see `logs`).
pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// Waits until the log (see `logs`) has a line for which `wanted` holds; returns it.
pub async fn until_logged(limit: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    logs();
    until(limit, what, async || log_text().lines().find(|l| wanted(l)).map(str::to_string)).await
}

/// Whether a log line is about a call of node `node`: its `uuid=` (time, node id, counter).
pub fn of_node(line: &str, node: &str) -> bool {
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix("uuid=").or_else(|| w.strip_prefix("call_id=")))
        .map(|uuid| uuid.trim_matches('"'))
        .any(|uuid| uuid.len() == 19 && &uuid[12..14] == node)
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Holds a write lock for `hold`, as another writer on a busy database would: writes to
/// the do-not-call list (dnc/add, dnc/remove) wait for it, reads go on. Returns once the
/// lock is held; the task ends when it is let go. On PostgreSQL keep `hold` under the
/// store's 3 s deadline, or the waiting writes fail instead.
pub async fn hold_writes(db: &TestDb, hold: Duration) -> JoinHandle<()> {
    let (taken_tx, taken) = oneshot::channel();
    let url = db.url.clone();
    let holder = if db.is_postgres() {
        tokio::spawn(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("the test connects");
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE dnc_numbers IN EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
            let _ = taken_tx.send(());
            tokio::time::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        })
    } else {
        tokio::task::spawn_blocking(move || {
            let conn =
                rusqlite::Connection::open(url.trim_start_matches("sqlite://")).expect("the test opens");
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            let _ = taken_tx.send(());
            std::thread::sleep(hold);
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    taken.await.expect("the write lock is taken");
    holder
}

/// The one value a query of the test's database answers (SQLite or PostgreSQL), as text:
/// for what the API does not show, such as a call answered but not yet ended.
pub fn db_value(db: &TestDb, sql: &str) -> String {
    db_value_at(&db.url, sql)
}

/// `db_value` on the database at `url` (`sqlite://…` or `postgres://…`).
pub fn db_value_at(url: &str, sql: &str) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("the test opens the database");
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            conn.query_row(sql, [], |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Null => String::new(),
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Real(x) => x.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => panic!("{sql}: a blob"),
                })
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
        None => psql_value(url, sql),
    }
}

/// Whether task `batch_id`'s call in progress has been answered (the dialer notes the
/// answer in the database as it happens; the API shows it once the call has ended).
pub fn answered(db: &TestDb, batch_id: i64) -> bool {
    db_value(
        db,
        &format!("SELECT COUNT(*) FROM tasks WHERE batch_id = {batch_id} AND call_answered_ms IS NOT NULL"),
    ) == "1"
}

fn psql(url: &str, sql: &str) {
    psql_value(url, sql);
}

/// The one value a query answers, as psql prints it.
pub fn psql_value(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{}_{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Settings for tests: the given database, instant sim calls, no pacing to speak of.
pub fn test_settings(db: &TestDb, dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.database.url = db.url.clone();
    s.recordings.dir = dir.join("recordings");
    s.sim.time_scale = 0.0;
    s.dialer.calls_per_second = 1000;
    s.dialer.max_concurrent_calls = 100;
    s.dialer.retry_delay_secs = 600;
    s.dialer.shutdown_grace_secs = 5;
    s
}

pub struct TestServer {
    pub base: String,
    pub settings: Settings,
    pub client: reqwest::Client,
    /// Dropping it (with the server) shuts the server down.
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
    pub dir: TempDir,
}

impl TestServer {
    /// API only: the dialer is off, so tasks stay as created.
    pub async fn start() -> TestServer {
        Self::start_with(|s| s.dialer.enabled = false).await
    }

    /// With the dialer on and the sim carrier at `time_scale` 0, changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::new(dir.path()).await;
        let mut settings = test_settings(&db, dir.path());
        tweak(&mut settings);
        Self::start_on(settings, db, dir).await
    }

    pub async fn start_on(settings: Settings, db: TestDb, dir: TempDir) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let app = App::build(settings.clone(), listener).await.expect("server builds");
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestServer {
            base,
            settings,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
            db,
            dir,
        }
    }

    /// Shuts down gracefully and waits for it; gives back the database and directory
    /// so that a test can start again on them.
    pub async fn stop(mut self) -> (Settings, TestDb, TempDir) {
        self.shutdown.take().map(|tx| tx.send(()));
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran");
        }
        let TestServer { settings, db, dir, .. } = self;
        (settings, db, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON and returns the HTTP status and the parsed body.
    pub async fn post_status(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.client.post(self.url(path)).json(body).send().await.expect("request");
        let status = res.status();
        (status, res.json().await.expect("a JSON answer"))
    }

    /// POSTs JSON, expects HTTP 200, returns the envelope.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self.post_status(path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    /// POSTs raw bytes; returns the status and the body parsed as JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let res = self.client.post(self.url(path)).body(body).send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn create(&self, tickets: &[Value]) -> Vec<i64> {
        let v = self.post("/api/aicall/createTasks", &json!(tickets)).await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"].as_array().unwrap().iter().map(|d| d["batchId"].as_i64().unwrap()).collect()
    }

    pub async fn tasks(&self, filter: Value) -> Value {
        let mut body = json!({"pageNum": 1, "pageSize": 1000});
        merge(&mut body, filter);
        let v = self.post("/api/aicall/calltask/list", &body).await;
        assert_eq!(v["code"], 0, "{v}");
        v
    }

    pub async fn task(&self, batch_id: i64) -> Value {
        self.tasks(json!({ "batchId": batch_id })).await["rows"][0].clone()
    }

    pub async fn records(&self, filter: Value) -> Value {
        let mut body = json!({"callType": "02", "pageNum": 1, "pageSize": 1000});
        merge(&mut body, filter);
        let v = self.post("/api/aicall/records/list", &body).await;
        assert_eq!(v["code"], 0, "{v}");
        v
    }

    /// Waits (up to `limit`) until `done` holds for the task list, polling as a client would.
    pub async fn wait_tasks(&self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let rows = self.tasks(json!({})).await["rows"].as_array().unwrap().clone();
            if done(&rows) {
                return rows;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting; tasks: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every task has ended.
    pub async fn wait_all_ended(&self, limit: Duration) -> Vec<Value> {
        self.wait_tasks(limit, |rows| rows.iter().all(|t| ENDED.contains(&t["status"].as_str().unwrap())))
            .await
    }

    pub fn recordings_dir(&self) -> PathBuf {
        self.settings.recordings.dir.clone()
    }
}

pub const ENDED: [&str; 3] = ["已完成", "已停止", "已拦截"];

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}

/// A valid ticket; `phone` picks the sim outcome by its last digits.
pub fn ticket(no: &str, phone: &str) -> Value {
    json!({
        "ticketNo": no,
        "phone": phone,
        "username": "张三",
        "ticketType": "活动通知",
        "ticketContent": "尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。"
    })
}

/// The server binary itself (what logging, signals and start-up do is set up in its
/// main, which a `TestServer` does not run), on a fresh SQLite file and recordings
/// directory, configured by `CALLCENTER__` variables alone; killed when dropped.
pub struct BinaryServer {
    child: std::process::Child,
    pub base: String,
    dir: TempDir,
}

impl BinaryServer {
    /// Starts it with these settings (`("SIM__TIME_SCALE", "0")` for
    /// `CALLCENTER__SIM__TIME_SCALE=0`) and waits until it answers HTTP.
    pub async fn start(settings: &[(&str, String)]) -> BinaryServer {
        Self::start_in(tempfile::tempdir().expect("temp dir"), settings).await
    }

    /// Starts it on `dir`'s SQLite file and recordings, as `start` does; on a directory
    /// a killed server gave back, that is a restart on the same database (its log goes
    /// on in the same file).
    pub async fn start_in(dir: TempDir, settings: &[(&str, String)]) -> BinaryServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_callcenter"));
        // Run where no config/default.toml lies, with none of the caller's settings or
        // log filter: the built-in defaults and these variables.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLCENTER__") || k == "RUST_LOG") {
            cmd.env_remove(key);
        }
        let own = [
            ("SERVER__BIND", format!("127.0.0.1:{port}")),
            ("DATABASE__URL", format!("sqlite://{}", dir.path().join("callcenter.db").display())),
            ("RECORDINGS__DIR", dir.path().join("recordings").display().to_string()),
        ];
        for (key, value) in own.iter().chain(settings) {
            cmd.env(format!("CALLCENTER__{key}"), value);
        }
        cmd.current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("the server binary starts");
        let server = BinaryServer { child, base: format!("http://127.0.0.1:{port}"), dir };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(server.url("/healthz")).send().await
                && res.status().is_success()
            {
                return server;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not answer; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it has written to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM, as an init system would; asserts a clean exit and returns
    /// the whole log.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let signalled = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(signalled.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "exit {exit}; log:\n{}", self.log());
        self.log()
    }
}

impl BinaryServer {
    /// SIGKILL: no shutdown, no last words. Gives back its directory (database,
    /// recordings and log) for `start_in`.
    pub fn kill_9(mut self) -> TempDir {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed server is reaped");
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
