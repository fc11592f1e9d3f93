//! Several nodes on one PostgreSQL database: real server processes (the built binary)
//! sharing the work, the LISTEN/NOTIFY wake-ups between nodes, and the database going
//! away and coming back.
//!
//! These always run against PostgreSQL (that is what they are about), on the server that
//! `CALLCENTER_TEST_PG` names (default `postgres://postgres@127.0.0.1:5432/test`), each on a
//! database of its own that is dropped after. "The database goes away" is played by a TCP
//! proxy in front of it that drops every connection and refuses new ones, so the shared
//! server is never stopped.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callcenter::domain::{DEFAULT_CAMPAIGN, NewTask, Phone};
use callcenter::store::{CampaignShare, ClaimRules, PgStore, Store, StoreOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::common::until;

// ---- a database of the test's own ----

struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn create() -> Db {
        let admin = std::env::var("CALLCENTER_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("cc_multinode_{}_{nanos}_{n}", std::process::id());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').expect("a database url").0;
        Db { url: format!("{base}/{name}"), admin, name }
    }

    /// The same database through `proxy`.
    fn url_via(&self, proxy: &Proxy) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, self.name)
    }

    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("the test connects to its database")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(url: &str, sql: &str) {
    let out =
        Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

// ---- server processes ----

/// One `callcenter serve` process, killed when dropped.
struct Node {
    id: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
}

impl Node {
    fn spawn(id: &'static str, db_url: &str, dir: &Path, extra: &[(&str, &str)]) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("node-{id}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callcenter"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLCENTER__")) {
            cmd.env_remove(key);
        }
        cmd.current_dir(dir)
            .env("RUST_LOG", "warn")
            .env("CALLCENTER__DATABASE__URL", db_url)
            .env("CALLCENTER__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("CALLCENTER__RECORDINGS__DIR", dir.join(format!("recordings-{id}")))
            .env("CALLCENTER__DIALER__NODE_ID", id)
            .env("CALLCENTER__DIALER__CALLS_PER_SECOND", "2000")
            .env("CALLCENTER__DIALER__MAX_CONCURRENT_CALLS", "200")
            .env("CALLCENTER__DIALER__RETRY_DELAY_SECS", "0")
            .env("CALLCENTER__DIALER__SHUTDOWN_GRACE_SECS", "1")
            .env("CALLCENTER__SIM__TIME_SCALE", "0.01");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).spawn().expect("spawn");
        Node { id, child, base: format!("http://127.0.0.1:{port}"), log }
    }

    /// Waits until the node answers HTTP.
    async fn ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("node {} exited with {status}:\n{}", self.id, self.log_tail());
            }
            let res = client
                .post(format!("{}/api/aicall/calltask/list", self.base))
                .json(&json!({"pageNum": 1, "pageSize": 1}))
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "node {} never answered:\n{}", self.id, self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, client: &reqwest::Client, path: &str, body: &Value) -> Value {
        let res = client.post(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        assert!(res.status().is_success(), "{path}: HTTP {}", res.status());
        res.json().await.expect("a JSON answer")
    }

    async fn create(&self, client: &reqwest::Client, tickets: &[Value]) -> Vec<i64> {
        let v = self.post(client, "/api/aicall/createTasks", &json!(tickets)).await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"].as_array().unwrap().iter().map(|d| d["batchId"].as_i64().unwrap()).collect()
    }

    /// Every row of a paged list.
    async fn all_rows(&self, client: &reqwest::Client, path: &str, filter: Value) -> Vec<Value> {
        let mut rows = Vec::new();
        for page in 1.. {
            let mut body = json!({"pageNum": page, "pageSize": 1000});
            body.as_object_mut().unwrap().extend(filter.as_object().unwrap().clone());
            let v = self.post(client, path, &body).await;
            assert_eq!(v["code"], 0, "{v}");
            let got = v["rows"].as_array().unwrap();
            rows.extend(got.iter().cloned());
            if got.len() < 1000 {
                assert_eq!(rows.len() as i64, v["total"].as_i64().unwrap());
                return rows;
            }
        }
        unreachable!()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The temporary directory goes with the test: keep the whole log.
            let kept =
                std::env::temp_dir().join(format!("multinode-{}-node-{}.log", std::process::id(), self.id));
            let _ = std::fs::copy(&self.log, &kept);
            eprintln!(
                "---- node {} log (tail; all of it in {}) ----\n{}",
                self.id,
                kept.display(),
                self.log_tail()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ticket `i`: a phone of its own whose last four digits pick the sim outcome.
fn ticket(i: usize) -> Value {
    let suffix = match i % 10 {
        0 => "4860", // busy
        1 => "4800", // rings out
        2 => "4040", // unallocated: never retried
        3 => "5030", // gateway failure
        _ => "1234", // answers at sim.answer_rate
    };
    ticket_for(format!("MN-{i:05}"), format!("139{i:04}{suffix}"))
}

/// A ticket with this number and phone.
fn ticket_for(ticket_no: String, phone: String) -> Value {
    json!({
        "ticketNo": ticket_no,
        "phone": phone,
        "username": "张三",
        "ticketType": "活动通知",
        "ticketContent": "尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。"
    })
}

async fn open_tasks(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'calling', 'retry_wait')")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_all_ended(pool: &PgPool, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let open = open_tasks(pool).await;
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} tasks still open after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What every run must leave behind, checked through the API and in the database:
/// every task ended, never more attempts than allowed, one record per attempt whose
/// task matches, and no two attempts of one task overlapping in time.
/// With `expect_sim_outcomes`, the test numbers must have had their forced outcome (not
/// so after an outage: a call whose claim was cut off is taken over as a crash).
/// Returns the records per node.
async fn check_outcome(
    node: &Node,
    client: &reqwest::Client,
    pool: &PgPool,
    tasks: usize,
    stopped_ids: &HashSet<i64>,
    expect_sim_outcomes: bool,
) -> HashMap<String, usize> {
    let task_rows = node.all_rows(client, "/api/aicall/calltask/list", json!({})).await;
    let records = node.all_rows(client, "/api/aicall/records/list", json!({"callType": "02"})).await;
    assert_eq!(task_rows.len(), tasks);

    let mut by_phone: HashMap<&str, Vec<&Value>> = HashMap::new();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for r in &records {
        by_phone.entry(r["telephone"].as_str().unwrap()).or_default().push(r);
        let uuid = r["uuid"].as_str().unwrap();
        assert_eq!(uuid.len(), 19, "{r}");
        *per_node.entry(uuid[12..14].to_string()).or_default() += 1;
    }
    for t in &task_rows {
        let id = t["batchId"].as_i64().unwrap();
        let status = t["status"].as_str().unwrap();
        let phone = t["phone"].as_str().unwrap();
        let calls = t["callCount"].as_i64().unwrap();
        let recs = by_phone.get(phone).map_or(&[][..], |v| v.as_slice());
        assert!(["已完成", "已停止"].contains(&status), "task did not end: {t}");
        assert!(calls <= 3, "more attempts than max_attempts: {t}");
        assert_eq!(recs.len() as i64, calls, "records of task {id} ≠ its callCount: {t} {recs:#?}");
        if status == "已停止" {
            assert!(stopped_ids.contains(&id), "stopped but never asked to: {t}");
            continue;
        }
        let expected = match &phone[phone.len() - 4..] {
            "4860" => Some((3, "USER_BUSY:sip:486")),
            "4800" => Some((3, "NO_ANSWER:sip:480")),
            "5030" => Some((3, "NORMAL_TEMPORARY_FAILURE:sip:503")),
            "4040" => Some((1, "UNALLOCATED_NUMBER:sip:404")),
            _ => None,
        };
        if let Some((n, cause)) = expected.filter(|_| expect_sim_outcomes) {
            assert_eq!((calls, t["lastHangupCause"].as_str().unwrap()), (n, cause), "{t}");
            assert!(recs.iter().all(|r| r["hangupCause"] == cause), "{t} {recs:#?}");
        }
        assert!(calls >= 1, "{t}");
    }

    // In the database, to the millisecond: each record's task is the one it called, and
    // one task's attempts follow each other.
    let rows: Vec<(String, i64, String, String, i64, i64)> = sqlx::query_as(
        "SELECT r.uuid, r.batch_id, r.telephone, t.phone, r.callout_ms, r.ended_ms
         FROM call_records r JOIN tasks t USING (batch_id)
         ORDER BY r.batch_id, r.callout_ms, r.uuid",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), records.len(), "every record belongs to a task");
    for (uuid, id, telephone, phone, _, _) in &rows {
        assert_eq!(telephone, phone, "record {uuid} of task {id}");
    }
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.1 == b.1 {
            assert!(
                b.4 >= a.5,
                "task {}: attempt {} ({}…{}) overlaps attempt {} ({}…{})",
                a.1,
                a.0,
                a.4,
                a.5,
                b.0,
                b.4,
                b.5
            );
        }
    }
    let counts: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT t.batch_id, t.call_count, COUNT(r.uuid) FROM tasks t LEFT JOIN call_records r USING (batch_id)
         GROUP BY t.batch_id, t.call_count HAVING t.call_count <> COUNT(r.uuid) OR t.call_count > 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(counts.is_empty(), "tasks whose call_count and records disagree: {counts:?}");
    per_node
}

// ---- the wake-ups between nodes ----

fn new_task(no: &str, phone: &str) -> NewTask {
    NewTask {
        ticket_no: no.into(),
        phone: Phone::parse(phone).unwrap(),
        username: "张三".into(),
        ticket_type: "活动通知".into(),
        ticket_content: "提醒".into(),
        batch_name: DEFAULT_CAMPAIGN.into(),
    }
}

/// The default campaign's share of a claim: up to `limit` tasks.
fn default_share(limit: u32) -> Vec<CampaignShare> {
    vec![CampaignShare { name: DEFAULT_CAMPAIGN.into(), priority: 0, limit }]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Watched {
    store: PgStore,
    created: Arc<Notify>,
    stopped: Arc<Notify>,
}

async fn watched(url: &str) -> Watched {
    let store = PgStore::connect(url, StoreOptions::default()).await.expect("store connects");
    let (created, stopped) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    store.watch_changes(created.clone(), stopped.clone());
    Watched { store, created, stopped }
}

/// Waits until `n` connections of the database `pool` is on listen for task changes
/// (`watch_changes` issues its LISTENs from a task of its own, a moment after it returns).
async fn listening(pool: &PgPool, n: i64) {
    until(Duration::from_secs(20), "the listeners to be in place", async || {
        let listening: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (listening >= n).then_some(())
    })
    .await;
}

async fn fires(n: &Notify, within: Duration) -> bool {
    tokio::time::timeout(within, n.notified()).await.is_ok()
}

/// Well under the dialer's idle poll (2 s): a wake-up, not a poll.
const AT_ONCE: Duration = Duration::from_millis(1000);

// ---- the database going away ----

/// A TCP proxy to PostgreSQL that can be taken down (every connection dropped, new ones
/// refused) and brought back on the same port, or frozen (connections kept open, but no
/// byte forwarded either way: a network partition) and thawed.
struct Proxy {
    port: u16,
    upstream: String,
    forwarding: watch::Sender<bool>,
    /// While up: the accept loop and the connections it forwards.
    state: Mutex<Option<(JoinHandle<()>, Connections)>>,
}

type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            upstream: upstream.into(),
            forwarding: watch::Sender::new(true),
            state: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let conns: Connections = Arc::default();
        let upstream = self.upstream.clone();
        let forwarding = self.forwarding.subscribe();
        let accept = tokio::spawn({
            let conns = conns.clone();
            async move {
                while let Ok((down, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let forwarding = forwarding.clone();
                    conns.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(up) = TcpStream::connect(&upstream).await {
                            let ((down_r, down_w), (up_r, up_w)) = (down.into_split(), up.into_split());
                            tokio::join!(
                                pipe(down_r, up_w, forwarding.clone()),
                                pipe(up_r, down_w, forwarding)
                            );
                        }
                    }));
                }
            }
        });
        *self.state.lock().unwrap() = Some((accept, conns));
    }

    fn down(&self) {
        if let Some((accept, conns)) = self.state.lock().unwrap().take() {
            accept.abort();
            conns.lock().unwrap().drain(..).for_each(|c| c.abort());
        }
    }

    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("the proxy port again");
        self.serve(listener);
    }

    /// Stops forwarding: what is sent waits, as on a network that drops every packet.
    fn freeze(&self) {
        self.forwarding.send_replace(false);
    }

    fn thaw(&self) {
        self.forwarding.send_replace(true);
    }
}

/// Copies one direction of a proxied connection, holding bytes while forwarding is off.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut forwarding: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if forwarding.wait_for(|on| *on).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn pg_host_port(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split('/').next().unwrap();
    if host_port.contains(':') { host_port.into() } else { format!("{host_port}:5432") }
}

// ---- a node that is alive but loses its leases ----

/// How node 02 loses its leases for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseLoss {
    /// The process is stopped (SIGSTOP), as a long pause, a VM migration or swapping would.
    Stall,
    /// Only its connections to the database stop carrying anything.
    Partition,
}

/// Ticket `i` of the lease scenarios: a number that answers (with `sim.answer_rate = 1`).
fn answering_ticket(i: usize) -> Value {
    ticket_for(format!("LL-{i:05}"), format!("1380{i:05}23"))
}

/// One call as the simulated network saw it (`sim.call_log`).
#[derive(Debug, Clone, serde::Deserialize)]
struct NetworkCall {
    call_id: String,
    phone: String,
    answered_ms: i64,
    ended_ms: i64,
    ended_by: String,
}

fn network_calls(path: &Path) -> Vec<NetworkCall> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("call log line {l}: {e}")))
        .collect()
}

/// The values of `key=` in the lines of `log` holding `message`.
fn logged(log: &Path, message: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let prefix = format!("{key}=");
    text.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix))
                .map(|v| v.trim_matches('"').to_string())
        })
        .collect()
}

/// Two nodes on one database call 100 people who all answer, in real time; node 02 loses
/// its leases for 50 s while it has calls up. What the people called and the records
/// must show: nobody on two calls of one task at once, no task past max_attempts, no
/// record the taking-over node wrote overwritten by node 02 coming back, every task ended.
async fn a_node_losing_its_leases_never_doubles_a_call(loss: LeaseLoss) {
    const TASKS: usize = 100;
    let db = Db::create();
    let proxy = Proxy::start(&pg_host_port(&db.admin)).await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let call_log = |id: &str| dir.path().join(format!("calls-{id}.jsonl"));
    let settings = |id: &str| {
        vec![
            ("CALLCENTER__SIM__TIME_SCALE", "1".to_string()),
            ("CALLCENTER__SIM__ANSWER_RATE", "1".to_string()),
            ("CALLCENTER__SIM__CALL_LOG", call_log(id).display().to_string()),
            ("CALLCENTER__DIALER__MAX_CONCURRENT_CALLS", (TASKS / 2).to_string()),
        ]
    };
    let spawn = |id: &'static str, url: &str| {
        let extra = settings(id);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Node::spawn(id, url, dir.path(), &extra)
    };
    let b_url = match loss {
        LeaseLoss::Stall => db.url.clone(),
        LeaseLoss::Partition => db.url_via(&proxy),
    };
    let mut a = spawn("01", &db.url);
    let mut b = spawn("02", &b_url);
    a.ready(&client).await;
    b.ready(&client).await;
    let pool = db.pool().await;
    let tickets: Vec<Value> = (0..TASKS).map(answering_ticket).collect();
    a.create(&client, &tickets).await;

    // Node 02 with calls answered and talking.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let talking: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE locked_by = '02' AND status = 'calling' AND call_answered_ms IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if talking >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "node 02 never had 20 calls answered at once ({talking})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &b.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    };
    match loss {
        LeaseLoss::Stall => signal("-STOP"),
        LeaseLoss::Partition => proxy.freeze(),
    }
    // The scenario: lost until node 01 has taken over every call node 02 was making,
    // so past the lease of each.
    let lost = Instant::now();
    until(Duration::from_secs(180), "node 01 to take over node 02's calls", async || {
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE locked_by = '02' AND status = 'calling'")
                .fetch_one(&pool)
                .await
                .unwrap();
        (held == 0).then_some(())
    })
    .await;
    let lost_for = lost.elapsed();
    match loss {
        LeaseLoss::Stall => signal("-CONT"),
        LeaseLoss::Partition => proxy.thaw(),
    }

    wait_all_ended(&pool, Duration::from_secs(300)).await;
    check_outcome(&a, &client, &pool, TASKS, &HashSet::new(), false).await;

    // As the people called saw it: one task's answered calls never overlap.
    let mut calls = network_calls(&call_log("01"));
    calls.extend(network_calls(&call_log("02")));
    assert!(!calls.is_empty(), "the sim carrier logged its calls");
    let mut by_phone: HashMap<&str, Vec<&NetworkCall>> = HashMap::new();
    for c in &calls {
        by_phone.entry(c.phone.as_str()).or_default().push(c);
    }
    let mut answered_twice = 0;
    for (phone, mut calls) in by_phone {
        calls.sort_by_key(|c| c.answered_ms);
        answered_twice += usize::from(calls.len() > 1);
        for pair in calls.windows(2) {
            assert!(
                pair[1].answered_ms >= pair[0].ended_ms,
                "{phone} was on two calls at once: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    // The calls node 01 took over keep the record node 01 wrote, whatever node 02 did after.
    let taken_over = logged(&a.log, "taking over a call whose node stopped", "uuid");
    assert!(!taken_over.is_empty(), "node 01 took no call over: the scenario did not happen");
    let mut since_renewal = Vec::new();
    for uuid in &taken_over {
        let (cause, ended_ms): (String, i64) =
            sqlx::query_as("SELECT hangup_cause, ended_ms FROM call_records WHERE uuid = $1")
                .bind(uuid)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("record {uuid}: {e}"));
        assert_eq!(
            cause, "CRASH:null",
            "the record of {uuid} written by the node that took it over was overwritten"
        );
        // The record ends at the last renewal; the network's log says when the call ended.
        if let Some(c) = calls.iter().find(|c| c.call_id == *uuid) {
            since_renewal.push((c.ended_ms - ended_ms, c.ended_by.clone()));
        }
    }
    let refused = logged(&b.log, "record not written", "uuid").len();
    let fenced: Vec<i64> = logged(&b.log, "lease not renewed in time", "since_renewal_ms")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    since_renewal.sort();
    println!(
        "{loss:?} for {lost_for:.1?}: {} calls answered in all, {answered_twice} people answered twice (never at once); \
         {} calls taken over by node 01, their records kept; node 02 hung up {} calls itself (lease age at \
         hang-up, ms: {:?}) and had {refused} writes refused; last renewal → end of the call as the network \
         saw it (ms, who ended it): {:?}",
        calls.len(),
        taken_over.len(),
        fenced.len(),
        (fenced.iter().min(), fenced.iter().max()),
        since_renewal,
    );
}

/// They bring their own PostgreSQL database, so they run in the SQLite pass of
/// scripts/test only.
mod own_database {
    use super::*;

    /// Nodes starting together on a database whose counters have no days yet (as at the
    /// first start after migration 0014) choose them once, under `counter_days`' lock: one
    /// row, one node's zone, which the other keeps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_choose_the_counters_days_once() {
        let db = Db::create();
        drop(PgStore::connect(&db.url, StoreOptions::default()).await.unwrap());
        let pool = db.pool().await;
        let offsets = async || -> Vec<i64> {
            sqlx::query_scalar("SELECT offset_ms FROM counter_days").fetch_all(&pool).await.unwrap()
        };
        for _ in 0..5 {
            sqlx::query("DELETE FROM counter_days").execute(&pool).await.unwrap();
            let (beijing, new_york) = tokio::join!(
                PgStore::connect(&db.url, StoreOptions::in_zone(chrono_tz::Asia::Shanghai)),
                PgStore::connect(&db.url, StoreOptions::in_zone(chrono_tz::America::New_York)),
            );
            drop((beijing.unwrap(), new_york.unwrap()));
            let chosen = offsets().await;
            assert_eq!(chosen.len(), 1, "{chosen:?}");
            assert!([8 * 3_600_000, -5 * 3_600_000].contains(&chosen[0]), "{chosen:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_share_2000_tasks_and_never_dial_one_task_twice_at_once() {
        const TASKS: usize = 2000;
        let db = Db::create();
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();

        // Both start at once on the fresh database: the migrator's advisory lock lets one
        // apply the schema while the other waits.
        let mut nodes =
            [Node::spawn("01", &db.url, dir.path(), &[]), Node::spawn("02", &db.url, dir.path(), &[])];
        for n in &mut nodes {
            n.ready(&client).await;
        }
        let pool = db.pool().await;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        let embedded = sqlx::migrate!("migrations/postgres").iter().count() as i64;
        assert_eq!(applied, embedded, "each migration applied exactly once");

        // Created through both nodes, in turns: each creation wakes the dialers of both.
        let started = Instant::now();
        let tickets: Vec<Value> = (0..TASKS).map(ticket).collect();
        let mut ids = Vec::with_capacity(TASKS);
        for (i, chunk) in tickets.chunks(250).enumerate() {
            ids.extend(nodes[i % 2].create(&client, chunk).await);
        }
        assert_eq!(ids, (10001..10001 + TASKS as i64).collect::<Vec<_>>(), "batchIds from 10001, in order");

        // A stop made on the other node than the one dialing reaches it: every 40th task,
        // stopped through node 02 while calls are going on.
        until(Duration::from_secs(20), "calls to start", async || {
            let called: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE call_count > 0")
                .fetch_one(&pool)
                .await
                .unwrap();
            (called > 0).then_some(())
        })
        .await;
        let stop_ids: Vec<i64> = ids.iter().copied().step_by(40).collect();
        let v = nodes[1].post(&client, "/api/aicall/stopTasks", &json!({ "batchIds": stop_ids })).await;
        assert_eq!(v["code"], 0, "{v}");
        let stop_ids: HashSet<i64> = stop_ids.into_iter().collect();

        wait_all_ended(&pool, Duration::from_secs(45)).await;
        let took = started.elapsed();

        let per_node = check_outcome(&nodes[0], &client, &pool, TASKS, &stop_ids, true).await;
        let attempts: usize = per_node.values().sum();
        assert_eq!(
            per_node.keys().collect::<HashSet<_>>(),
            HashSet::from([&"01".to_string(), &"02".to_string()])
        );
        assert!(per_node.values().all(|&n| n >= attempts / 10), "both nodes worked: {per_node:?}");
        let stopped: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 'stopped'")
            .fetch_one(&pool)
            .await
            .unwrap();
        println!(
            "multinode: {TASKS} tasks ended in {took:.1?}; {attempts} attempts: node 01 {}, node 02 {}; {stopped} stopped",
            per_node["01"], per_node["02"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_created_on_one_node_wakes_every_node_and_a_stop_reaches_the_node_making_the_call() {
        let db = Db::create();
        let a = watched(&db.url).await;
        let b = watched(&db.url).await;
        listening(&db.pool().await, 2).await;

        let ids = a.store.create_tasks(&[new_task("T1", "13800001234")], now_ms()).await.unwrap();
        assert!(fires(&a.created, AT_ONCE).await, "the creating node is woken");
        assert!(fires(&b.created, AT_ONCE).await, "the other node is woken");

        // Node 01 (store a) is calling the task; the stop is made on node 02 (store b).
        let now = now_ms();
        let rules = ClaimRules { per_number_daily_cap: 0, today_from_ms: 0, today_until_ms: i64::MAX };
        let claimed = a
            .store
            .claim_due("01", 10, &default_share(10), now, now + 30_000, &rules, &|| {
                "2501010000000110001".into()
            })
            .await
            .unwrap();
        assert_eq!(claimed.iter().map(|c| c.batch_id).collect::<Vec<_>>(), ids);
        let outcome = b.store.stop_tasks(&ids, &[], now_ms()).await.unwrap();
        assert_eq!((outcome.stopped, outcome.hanging_up), (0, 1));
        assert!(fires(&a.stopped, AT_ONCE).await, "the node making the call hears of the stop at once");
        assert_eq!(a.store.stop_requested("01").await.unwrap(), ids);

        // Stopping waiting tasks needs no hang-up, so no one is disturbed.
        let waiting = a.store.create_tasks(&[new_task("T2", "13800001235")], now_ms()).await.unwrap();
        b.store.stop_tasks(&waiting, &[], now_ms()).await.unwrap();
        assert!(!fires(&a.stopped, Duration::from_millis(300)).await);

        // A campaign paused on one node: every node is woken to read the campaigns again,
        // and no node's claim takes its tasks, while another campaign's are taken.
        let held = a.store.create_tasks(&[new_task("T3", "13800001236")], now_ms()).await.unwrap();
        assert!(fires(&a.created, AT_ONCE).await && fires(&b.created, AT_ONCE).await);
        assert!(b.store.pause_campaign(DEFAULT_CAMPAIGN, true, now_ms()).await.unwrap());
        assert!(fires(&a.created, AT_ONCE).await, "the other node hears of the pause at once");
        let mut other = new_task("T4", "13800001237");
        other.batch_name = "其他".into();
        let open = a.store.create_tasks(&[other], now_ms()).await.unwrap();
        let mut shares = default_share(10);
        shares.push(CampaignShare { name: "其他".into(), priority: 0, limit: 10 });
        let now = now_ms();
        let claimed = a
            .store
            .claim_due("01", 10, &shares, now, now + 30_000, &rules, &|| "2501010000000110002".into())
            .await;
        assert_eq!(claimed.unwrap().iter().map(|c| c.batch_id).collect::<Vec<_>>(), open);
        assert!(b.store.pause_campaign(DEFAULT_CAMPAIGN, false, now_ms()).await.unwrap());
        assert!(fires(&a.created, AT_ONCE).await, "and of the resume");
        let claimed = a
            .store
            .claim_due("01", 10, &shares, now, now + 30_000, &rules, &|| "2501010000000110003".into())
            .await;
        assert_eq!(claimed.unwrap().iter().map(|c| c.batch_id).collect::<Vec<_>>(), held);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_database_goes_away_the_api_fails_fast_and_the_dialer_resumes_losing_nothing() {
        const TASKS: usize = 300;
        let db = Db::create();
        let proxy = Proxy::start(&pg_host_port(&db.admin)).await;
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();
        let mut node =
            Node::spawn("01", &db.url_via(&proxy), dir.path(), &[("CALLCENTER__SIM__TIME_SCALE", "0.03")]);
        node.ready(&client).await;
        let pool = db.pool().await;

        let tickets: Vec<Value> = (0..TASKS).map(ticket).collect();
        node.create(&client, &tickets).await;
        // Down in the middle of the work: calls in progress, tasks waiting.
        until(Duration::from_secs(20), "some tasks to end", async || {
            (open_tasks(&pool).await < TASKS as i64).then_some(())
        })
        .await;
        proxy.down();
        let open_when_down = open_tasks(&pool).await;
        assert!(open_when_down > 0, "the outage should come while there is work left");

        let t = Instant::now();
        let v = node.post(&client, "/api/aicall/calltask/list", &json!({"pageNum": 1, "pageSize": 10})).await;
        let failed_after = t.elapsed();
        assert_eq!(v["code"], 500, "{v}");
        assert!(failed_after < Duration::from_secs(6), "the API answered after {failed_after:?}");
        let records_before: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records").fetch_one(&pool).await.unwrap();
        // A call ends and its record cannot be written: the node's log says so.
        until(Duration::from_secs(20), "a record write to fail", async || {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            log.contains("writing the call record failed").then_some(())
        })
        .await;
        let records_during: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records").fetch_one(&pool).await.unwrap();
        assert_eq!(records_before, records_during, "nothing reaches the database while it is away");

        proxy.up().await;
        let t = Instant::now();
        wait_all_ended(&pool, Duration::from_secs(50)).await;
        let back_for = t.elapsed();
        let per_node = check_outcome(&node, &client, &pool, TASKS, &HashSet::new(), false).await;
        // A claim whose COMMIT went through but whose answer was lost would be found again
        // only when its lease expires, and recorded as a crash: late, though not lost.
        let taken_over: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records WHERE hangup_cause LIKE 'CRASH%'")
                .fetch_one(&pool)
                .await
                .unwrap();
        // Such a claim is taken back at once by the node that made it, when the database is back.
        let taken_back = std::fs::read_to_string(&node.log).unwrap().matches("took back claims").count();
        println!(
            "outage: API answered 500 after {failed_after:.1?}; {open_when_down} tasks open at the outage, \
             all ended {back_for:.1?} after the database came back; {} attempts; claims with an unanswered \
             commit: {taken_back} taken back at once, {taken_over} taken over after their lease",
            per_node.values().sum::<usize>()
        );
    }

    /// The link to the database drops every packet (the proxy frozen): nothing is refused
    /// and nothing is closed, the node just hears nothing back. The API must still answer
    /// within the store's 3 s deadline and a little more, readiness must flip, and all
    /// must resume by itself when the link is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_link_to_the_database_drops_every_packet_the_api_fails_within_the_bound_and_all_resumes()
    {
        const TASKS: usize = 300;
        const ANSWER_WITHIN: Duration = Duration::from_millis(3500);
        let db = Db::create();
        let proxy = Proxy::start(&pg_host_port(&db.admin)).await;
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut node =
            Node::spawn("01", &db.url_via(&proxy), dir.path(), &[("CALLCENTER__SIM__TIME_SCALE", "0.03")]);
        node.ready(&client).await;
        let pool = db.pool().await;
        let tickets: Vec<Value> = (0..TASKS).map(ticket).collect();
        node.create(&client, &tickets).await;
        // In the middle of the work: calls in progress, tasks waiting.
        let deadline = Instant::now() + Duration::from_secs(20);
        while open_tasks(&pool).await == TASKS as i64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        proxy.freeze();
        assert!(open_tasks(&pool).await > 0, "the partition should come while there is work left");
        let records_before: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records").fetch_one(&pool).await.unwrap();
        for (path, body) in [
            ("/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 10})),
            ("/api/aicall/records/list", json!({"callType": "02"})),
            ("/api/aicall/createTasks", json!([ticket(TASKS + 1)])),
            ("/api/aicall/stopTasks", json!({"batchIds": [1]})),
        ] {
            let t = Instant::now();
            let v = node.post(&client, path, &body).await;
            let took = t.elapsed();
            assert_eq!(v["code"], 500, "{path}: {v}");
            assert!(took <= ANSWER_WITHIN, "{path} answered after {took:?}");
        }
        let t = Instant::now();
        let ready = client.get(format!("{}/readyz", node.base)).send().await.unwrap();
        let took = t.elapsed();
        assert_eq!(ready.status(), 503);
        assert_eq!(ready.json::<Value>().await.unwrap()["data"]["database"], "unreachable");
        assert!(took <= ANSWER_WITHIN, "/readyz answered after {took:?}");
        let records_during: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records").fetch_one(&pool).await.unwrap();
        assert_eq!(records_before, records_during, "nothing reaches the database while the link is down");

        proxy.thaw();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{}/readyz", node.base)).send().await.unwrap().status() != 200 {
            assert!(Instant::now() < deadline, "readyz never said ready again:\n{}", node.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_all_ended(&pool, Duration::from_secs(90)).await;
        check_outcome(&node, &client, &pool, TASKS, &HashSet::new(), false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_reconnects_by_itself_after_the_database_was_away() {
        let db = Db::create();
        let proxy = Proxy::start(&pg_host_port(&db.admin)).await;
        crate::common::logs();
        let a = PgStore::connect(&db.url, StoreOptions::default()).await.unwrap();
        let b = watched(&db.url_via(&proxy)).await;
        listening(&db.pool().await, 1).await;
        a.create_tasks(&[new_task("L1", "13800001234")], now_ms()).await.unwrap();
        assert!(fires(&b.created, AT_ONCE).await);

        // Down until the listener has noticed (a warning, logged once per loss).
        let lost = || crate::common::log_text().matches("lost the database listener").count();
        let before = lost();
        proxy.down();
        until(Duration::from_secs(20), "the listener to notice", async || (lost() > before).then_some(()))
            .await;
        proxy.up().await;
        // Back: both fire, as notifications sent meanwhile are lost and the dialer should look.
        assert!(fires(&b.created, Duration::from_secs(15)).await, "the listener came back");
        assert!(fires(&b.stopped, AT_ONCE).await);
        a.create_tasks(&[new_task("L2", "13800001235")], now_ms()).await.unwrap();
        assert!(fires(&b.created, AT_ONCE).await, "and hears new tasks again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_stalled_past_its_leases_hangs_up_at_once_and_never_overwrites_the_takeover() {
        a_node_losing_its_leases_never_doubles_a_call(LeaseLoss::Stall).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_cut_off_from_the_database_hangs_up_its_calls_before_another_takes_them() {
        a_node_losing_its_leases_never_doubles_a_call(LeaseLoss::Partition).await;
    }
}
