//! A real server process killed with SIGKILL in the middle of calls, then started again
//! on the same database: nothing is lost, nothing is called twice at once. On SQLite and
//! on PostgreSQL, as the test pass chooses (`common::TestDb`).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{TestDb, db_value_at, until};
use crate::support::baresip::{self, Baresip};
use callcenter::recording::synth_speech;

const MAX_ATTEMPTS: i64 = 3;

/// The server binary, running until dropped (then killed).
struct Node {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Node {
    /// Starts the binary on the database at `db_url`, with `dir` for its recordings and
    /// log, and waits until it answers HTTP.
    async fn start(db_url: &str, dir: &Path, time_scale: f64, concurrency: usize, log_name: &str) -> Node {
        Node::start_with(db_url, dir, time_scale, concurrency, log_name, &[]).await
    }

    /// `start`, with more settings (`CALLCENTER__` variables without the prefix).
    async fn start_with(
        db_url: &str,
        dir: &Path,
        time_scale: f64,
        concurrency: usize,
        log_name: &str,
        more: &[(&str, String)],
    ) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join(log_name)).unwrap();
        let env = [
            ("DATABASE__URL", db_url.to_string()),
            ("SERVER__BIND", format!("127.0.0.1:{port}")),
            ("RECORDINGS__DIR", dir.join("recordings").display().to_string()),
            ("SIM__TIME_SCALE", time_scale.to_string()),
            ("SIM__ANSWER_RATE", "0.6".into()),
            ("DIALER__MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
            ("DIALER__RETRY_DELAY_SECS", "1".into()),
            ("DIALER__CALLS_PER_SECOND", "100".into()),
            ("DIALER__MAX_CONCURRENT_CALLS", concurrency.to_string()),
            ("DIALER__SHUTDOWN_GRACE_SECS", "1".into()),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callcenter"));
        // Run where no config/default.toml lies: the built-in defaults and these variables,
        // none of the caller's.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLCENTER__") || k == "RUST_LOG") {
            cmd.env_remove(key);
        }
        cmd.current_dir(dir).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        for (key, value) in env.iter().chain(more) {
            cmd.env(format!("CALLCENTER__{key}"), value);
        }
        let child = cmd.spawn().expect("the server binary starts");
        let node = Node { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = node
                .client
                .post(node.url("/api/aicall/calltask/list"))
                .json(&json!({"pageNum": 1, "pageSize": 1}))
                .send()
                .await
                && res.status().is_success()
            {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer; log:\n{}",
                read_log(dir, log_name)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let v: Value =
            self.client.post(self.url(path)).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["code"], 0, "{path}: {v}");
        v
    }

    async fn tasks(&self) -> Vec<Value> {
        self.post("/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 1000})).await["rows"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn records(&self) -> Vec<Value> {
        self.post("/api/aicall/records/list", json!({"callType": "02", "pageNum": 1, "pageSize": 1000})).await
            ["rows"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// SIGKILL: no shutdown, no last words.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn calling(tasks: &[Value]) -> usize {
    tasks.iter().filter(|t| t["status"] == "呼叫中").count()
}

/// Creates `n` tasks, kills the server with calls in progress, starts it again, and
/// checks every task and every attempt.
async fn crash_and_restart(n: usize, concurrency: usize, time_scale: f64) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    let node = Node::start(&db.url, dir.path(), time_scale, concurrency, "first.log").await;

    // Ordinary numbers (answer or not at 0.6) and busy ones, retried.
    let tickets: Vec<Value> = (0..n)
        .map(|n| {
            let ending = if n % 4 == 3 { "4860" } else { "1234" };
            json!({
                "ticketNo": format!("CRASH-{n}"),
                "phone": format!("139{n:04}{ending}"),
                "username": "张三",
                "ticketType": "活动通知",
                "ticketContent": "提醒您参加本周末的线下优惠活动。"
            })
        })
        .collect();
    let created = node.post("/api/aicall/createTasks", json!(tickets)).await;
    assert_eq!(created["data"].as_array().unwrap().len(), n);

    // Calls going on, some of them answered and talking (the dialer notes an answer in the
    // database as it happens), then pull the plug.
    until(Duration::from_secs(20), "calls to start", async || {
        (calling(&node.tasks().await) >= 4).then_some(())
    })
    .await;
    let talking = "SELECT COUNT(*) FROM tasks WHERE status = 'calling' AND call_answered_ms IS NOT NULL";
    until(Duration::from_secs(30), "calls answered and talking", async || {
        (db_value_at(&db.url, talking).parse::<usize>().unwrap() >= 1).then_some(())
    })
    .await;
    let before = node.tasks().await;
    let cut = calling(&before);
    assert!(cut >= 1, "no call in progress to cut: {before:#?}");
    node.kill_9();

    // The next start takes its own calls over at once, not after the lease runs out.
    let restarted_at = Instant::now();
    let node = Node::start(&db.url, dir.path(), 0.02, concurrency, "second.log").await;
    let deadline = restarted_at + Duration::from_secs(5);
    loop {
        let crashed = node.records().await.iter().filter(|r| r["hangupCause"] == "CRASH:null").count();
        if crashed >= cut.min(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the calls cut by the crash were not taken over at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Everything ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    let tasks = loop {
        let tasks = node.tasks().await;
        if tasks.iter().all(|t| t["status"] == "已完成") {
            break tasks;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not end: {tasks:#?}\nlog:\n{}",
            read_log(dir.path(), "second.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let records = node.records().await;
    let mut by_phone: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in &records {
        by_phone.entry(r["telephone"].as_str().unwrap()).or_default().push(r);
    }

    let crashed: Vec<&Value> = records.iter().filter(|r| r["hangupCause"] == "CRASH:null").collect();
    assert!(!crashed.is_empty(), "no attempt was recorded as cut by the crash");
    for r in &crashed {
        let (callout, answered, end) = (
            r["calloutTime"].as_str().unwrap(),
            r["answeredTime"].as_str().unwrap(),
            r["callEndTime"].as_str().unwrap(),
        );
        assert!(callout <= end, "{r:#}");
        if !answered.is_empty() {
            assert!(
                callout <= answered && answered <= end,
                "a crashed call ends after it was answered: {r:#}"
            );
        }
        // What the sim recorded until the crash plays, when it had begun a chunk.
        if let Some(relative) = r["wavFileUrl"].as_str().unwrap().split("filename=").nth(1) {
            let wav = hound::WavReader::open(dir.path().join("recordings").join(relative));
            assert!(wav.is_ok_and(|w| w.spec().sample_rate == 8000), "{r:#}");
        }
    }
    assert!(
        crashed.iter().any(|r| r["wavFileUrl"] != ""),
        "some call cut while talking keeps its recording: {crashed:#?}"
    );

    for t in &tasks {
        let phone = t["phone"].as_str().unwrap();
        let count = t["callCount"].as_i64().unwrap();
        let mut mine = by_phone.remove(phone).unwrap_or_default();
        assert!((1..=MAX_ATTEMPTS).contains(&count), "{t:#}");
        assert_eq!(mine.len() as i64, count, "every attempt has a record: {t:#}\n{mine:#?}");
        mine.sort_by_key(|r| (r["calloutTime"].as_str().unwrap(), r["uuid"].as_str().unwrap()));
        for pair in mine.windows(2) {
            assert!(
                pair[1]["calloutTime"].as_str() >= pair[0]["callEndTime"].as_str(),
                "two calls of one task at once: {:#} and {:#}",
                pair[0],
                pair[1]
            );
        }
        // A crash is not the callee's doing: the task went back for another try.
        let last = mine.last().unwrap();
        if last["hangupCause"] == "CRASH:null" {
            assert_eq!(
                count, MAX_ATTEMPTS,
                "a task cut by the crash with attempts left is called again: {t:#}"
            );
        }
        assert_eq!(t["lastHangupCause"], last["hangupCause"], "{t:#}");
        assert!(t["stopTime"].is_i64(), "{t:#}");
        assert_eq!(t["connected"], mine.iter().any(|r| r["answeredTime"] != ""), "{t:#}\n{mine:#?}");
    }
    assert!(by_phone.is_empty(), "records of no task: {by_phone:#?}");

    let uuids: std::collections::HashSet<&str> =
        records.iter().map(|r| r["uuid"].as_str().unwrap()).collect();
    assert_eq!(uuids.len(), records.len(), "uuids are unique across the restart");
}

#[tokio::test]
async fn a_server_killed_mid_call_loses_nothing_and_never_calls_one_task_twice_at_once() {
    crash_and_restart(16, 8, 0.3).await;
}

#[tokio::test]
async fn a_server_killed_with_hundreds_of_tasks_and_a_hundred_calls_in_progress_loses_nothing() {
    crash_and_restart(300, 100, 0.15).await;
}

#[tokio::test]
async fn a_sip_call_recorded_when_the_server_is_killed_keeps_a_playable_recording_as_long_as_its_record() {
    baresip::require();
    // A callee who talks for a minute, over a real SIP call.
    let callee = Baresip::start(&[("13900005555", true)], &synth_speech(240, 60 * 8000, 200.0));
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    let sip = [
        ("DIALER__CARRIER", "sip".to_string()),
        ("DIALER__MAX_ATTEMPTS", "1".into()),
        ("SIP__TRUNK", callee.addr.to_string()),
        ("SIP__BIND", "127.0.0.1:0".into()),
        ("SIP__RTP_PORT_MIN", "0".into()),
        ("TTS__ENGINE", "synthetic".into()),
    ];
    let node = Node::start_with(&db.url, dir.path(), 1.0, 1, "first.log", &sip).await;
    let ticket = json!([{
        "ticketNo": "CRASH-SIP", "phone": "13900005555", "username": "张三",
        "ticketType": "维修", "ticketContent": "明天上午九点上门维修。"
    }]);
    node.post("/api/aicall/createTasks", ticket).await;
    // The call is up and being recorded: its partial file grows.
    let recordings = dir.path().join("recordings");
    let part = until(Duration::from_secs(30), "the recording to be written", async || {
        find_part(&recordings).filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 44 + 3 * 32_000))
    })
    .await;
    node.kill_9();
    assert!(part.exists(), "the server left its recording in progress");

    let node = Node::start_with(&db.url, dir.path(), 1.0, 1, "second.log", &sip).await;
    let record = until(Duration::from_secs(30), "the CRASH record", async || {
        node.records().await.into_iter().find(|r| r["hangupCause"] == "CRASH:null")
    })
    .await;
    let url = record["wavFileUrl"].as_str().unwrap();
    let relative = url.split("filename=").nth(1).expect(url);
    let wav = recordings.join(relative);
    assert!(!part.exists(), "the partial file became the recording");
    let reader = hound::WavReader::open(&wav).expect("a playable WAV");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
    let secs = f64::from(reader.duration()) / 8000.0;
    let time_len = record["timeLen"].as_f64().unwrap();
    assert!(secs >= 3.0, "{secs} s recorded");
    assert!(
        (secs - time_len).abs() <= 1.0,
        "the WAV's {secs} s against the record's timeLen {time_len}: {record}"
    );
}

/// A recording in progress (`.<uuid>.wav.part`) somewhere under `dir`.
fn find_part(dir: &Path) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().find_map(|e| {
        let path = e.path();
        if path.is_dir() {
            find_part(&path)
        } else {
            path.file_name()?.to_str()?.ends_with(".wav.part").then_some(path)
        }
    })
}
