//! PostgreSQL going away under load and coming back. The test runs its own PostgreSQL
//! server (initdb into a temporary directory, on a free port), so that stopping it
//! disturbs no other test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{TestServer, logs, of_node, test_settings, ticket, until, until_logged};
use serde_json::json;
use tokio::time::Instant;

/// A throwaway PostgreSQL cluster, stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries are installed")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
        as_postgres(&["chown", "-R", "postgres", &dir.path().display().to_string()], true);
        as_postgres(
            &[
                &bin.join("initdb").display().to_string(),
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            false,
        );
        let cluster = Cluster { bin, data, port, _dir: dir };
        cluster.pg_ctl(&["start", "-w"]);
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.parent().unwrap().display()
        );
        let mut all =
            vec![self.bin.join("pg_ctl").display().to_string(), "-D".into(), self.data.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend([
            "-o".to_string(),
            options,
            "-l".into(),
            self.data.parent().unwrap().join("pg.log").display().to_string(),
        ]);
        as_postgres(&all.iter().map(String::as_str).collect::<Vec<_>>(), false);
    }
}

impl Cluster {
    /// The server's processes: the postmaster and its children.
    fn pids(&self) -> Vec<String> {
        let pidfile = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("PostgreSQL runs");
        let postmaster = pidfile.lines().next().unwrap().trim().to_string();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // "pid (comm) state ppid …"; comm may hold spaces, so read after its ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        pids
    }

    /// Stops or resumes every process of the server: frozen, it keeps its connections
    /// and accepts new ones but answers nothing, as a host gone from the network.
    fn signal(&self, signal: &str) {
        for pid in self.pids() {
            let out = Command::new("kill").args([signal, &pid]).output().expect("kill runs");
            assert!(out.status.success(), "kill {signal} {pid}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Sends a request to every endpoint that needs the database; gives each one's path,
/// time to answer, HTTP status and envelope.
async fn every_endpoint(
    client: &reqwest::Client,
    s: &TestServer,
) -> Vec<(String, Duration, u16, serde_json::Value)> {
    let page = json!({"pageNum": 1, "pageSize": 10, "callType": "02"});
    let import = json!([{
        "uuid": "OUT-1", "telephone": "18188888888", "callType": "01",
        "calloutTime": "2025-08-16 21:11:30", "answeredTime": "", "callEndTime": "2025-08-16 21:11:54",
        "hangupCause": "NO_ANSWER:sip:480", "wavFileUrl": "", "dialogue": [], "extnum": "8001"
    }]);
    let requests = [
        ("/api/aicall/calltask/list", Some(page.clone())),
        ("/api/aicall/records/list", Some(page)),
        ("/api/aicall/createTasks", Some(json!([ticket("DURING", "13900099999")]))),
        ("/api/aicall/stopTasks", Some(json!({"batchIds": [99999]}))),
        ("/api/aicall/stats", Some(json!({}))),
        ("/api/aicall/dnc/list", Some(json!({"pageNum": 1, "pageSize": 10}))),
        ("/api/aicall/records/import", Some(import)),
        ("/api/aicall/calltype/uuid?uuid=1", None),
    ];
    let mut answers = Vec::new();
    for (path, body) in requests {
        let started = Instant::now();
        let req = match body {
            Some(body) => client.post(s.url(path)).json(&body),
            None => client.get(s.url(path)),
        };
        let res = req.send().await.expect("an answer, not a hang");
        let status = res.status().as_u16();
        let v: serde_json::Value = res.json().await.unwrap();
        answers.push((path.to_string(), started.elapsed(), status, v));
    }
    answers
}

/// Every request answered the 500 envelope within the bound, with no detail of the cause.
fn assert_500s_within_bound(answers: &[(String, Duration, u16, serde_json::Value)]) {
    for (path, took, status, v) in answers {
        assert_eq!((*status, &v["code"]), (200, &json!(500)), "{path}: {v}");
        assert!(*took <= ANSWER_WITHIN, "{path} answered after {took:?}");
        assert!(!v["msg"].as_str().unwrap().contains("postgres"), "no detail leaks: {v}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data.display().to_string(), "stop", "-m", "immediate"])
            .output();
    }
}

fn as_postgres(args: &[&str], as_root: bool) {
    let mut cmd = if as_root { Command::new(args[0]) } else { Command::new("runuser") };
    if as_root {
        cmd.args(&args[1..]);
    } else {
        cmd.args(["-u", "postgres", "--"]).args(args);
    }
    let out = cmd.current_dir(Path::new("/")).output().expect("command runs");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How long the PostgreSQL store waits for a connection before a query fails (its pool's
/// acquire timeout, not a setting): while the database is away, every request must be
/// answered within it and a little more.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_WITHIN: Duration = ACQUIRE_TIMEOUT.saturating_add(Duration::from_millis(500));

/// The server's clock as its records show it (`calloutTime`), to the second: a record
/// with a later `calloutTime` is of a call started after this moment.
fn server_time(s: &TestServer) -> String {
    chrono::Utc::now().with_timezone(&s.settings.timezone.0).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Waits until a call of node `node` ends while its record cannot be written (the log
/// says so for each try).
async fn a_call_ends_unrecorded(node: &str) {
    until_logged(Duration::from_secs(20), "a call to end during the outage", |l| {
        (l.contains("writing the call record failed") || l.contains("could not write the call record"))
            && of_node(l, node)
    })
    .await;
}

/// A server on `cluster` dialing 60 answering tasks at a pace that leaves calls in
/// progress and tasks waiting for a while; returns once some have ended.
/// `node` is its node id, its own in this process: its log lines are told apart by it.
async fn dialing(cluster: &Cluster, client: &reqwest::Client, node: &str) -> TestServer {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::TestDb::existing(cluster.url());
    let mut settings = test_settings(&db, dir.path());
    settings.sim.answer_rate = 1.0;
    settings.sim.time_scale = 0.05;
    settings.dialer.calls_per_second = 20;
    settings.dialer.max_concurrent_calls = 10;
    settings.dialer.node_id.0 = node.into();
    let s = TestServer::start_on(settings, db, dir).await;
    until(Duration::from_secs(20), "ready", async || {
        (client.get(s.url("/readyz")).send().await.unwrap().status() == 200).then_some(())
    })
    .await;
    let tickets: Vec<_> = (0..60).map(|i| ticket(&format!("O{i}"), &format!("139000{i:05}"))).collect();
    s.create(&tickets).await;
    s.wait_tasks(Duration::from_secs(20), |rows| rows.iter().any(|t| t["status"] == "已完成")).await;
    s
}

/// After the database is back: ready again, every task ended with a record per attempt and
/// none past max_attempts, nothing stored by a refused request, and calls started after
/// `during` (a `server_time` taken while the database was away).
async fn all_resumed(s: &TestServer, client: &reqwest::Client, during: &str) {
    until(Duration::from_secs(30), "readyz to say ready again", async || {
        (client.get(s.url("/readyz")).send().await.unwrap().status() == 200).then_some(())
    })
    .await;
    let rows = s.wait_all_ended(Duration::from_secs(120)).await;
    assert_eq!(rows.len(), 60, "no task lost, none created by the refused request");
    let records = s.records(json!({})).await;
    let started_after = records["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["calloutTime"].as_str() > Some(during))
        .count();
    assert!(started_after > 0, "the dialer started calls again: {records:#}");
    let attempts: i64 = rows.iter().map(|t| t["callCount"].as_i64().unwrap()).sum();
    assert_eq!(records["total"].as_i64().unwrap(), attempts, "every attempt has its record");
    for t in &rows {
        assert!(t["callCount"].as_i64().unwrap() <= 3, "{t}");
    }
    assert_eq!(s.records(json!({"callType": "01"})).await["total"], 0, "the refused import stored nothing");
}

/// It brings its own PostgreSQL, so it runs in the SQLite pass of scripts/test only.
mod own_database {
    use super::*;

    #[tokio::test]
    async fn when_postgres_goes_away_every_request_answers_500_within_the_acquire_timeout_and_everything_resumes_when_it_is_back()
     {
        let cluster = Cluster::new();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let s = dialing(&cluster, &client, "93").await;

        cluster.pg_ctl(&["stop", "-m", "immediate"]);
        // While it is down: every endpoint that needs the database answers a clear 500 in
        // the envelope, each within the acquire timeout and a little more.
        assert_500s_within_bound(&every_endpoint(&client, &s).await);

        let not_ready = until(Duration::from_secs(20), "readyz to say not ready", async || {
            let res = client.get(s.url("/readyz")).send().await.unwrap();
            let status = res.status();
            let v: serde_json::Value = res.json().await.unwrap();
            (status == 503).then_some(v)
        })
        .await;
        assert_eq!(not_ready["data"]["database"], "unreachable", "{not_ready}");
        // The dialer meets the outage: a call ends while its record cannot be written.
        a_call_ends_unrecorded("93").await;
        // No call can start while claims fail; any started after this, started after the outage.
        let during = server_time(&s);

        cluster.pg_ctl(&["start", "-w"]);
        all_resumed(&s, &client, &during).await;
    }

    /// A server that stops answering (a host gone from the network, a hung machine)
    /// rather than refusing: connections stay open, new ones are accepted, nothing comes
    /// back. The bound must hold here too, and everything must resume by itself.
    #[tokio::test]
    async fn when_postgres_stops_answering_requests_fail_within_the_bound_and_all_resumes_when_it_answers_again()
     {
        let cluster = Cluster::new();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(40)).build().unwrap();
        let s = dialing(&cluster, &client, "94").await;
        // A dashboard polling: the readers' connections were used a moment ago.
        s.tasks(json!({})).await;

        cluster.signal("-STOP");
        let answers = every_endpoint(&client, &s).await;
        let started = Instant::now();
        let ready = client.get(s.url("/readyz")).send().await.unwrap().status();
        let readyz_took = started.elapsed();
        // No call can start while claims fail; any started after this, started after the thaw.
        let during = server_time(&s);
        cluster.signal("-CONT");
        assert_500s_within_bound(&answers);
        assert_eq!(ready, 503);
        assert!(readyz_took <= ANSWER_WITHIN, "readyz answered after {readyz_took:?}");
        all_resumed(&s, &client, &during).await;
    }
}
