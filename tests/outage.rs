//! PostgreSQL going away under load and coming back. The test runs its own PostgreSQL
//! server (initdb into a temporary directory, on a free port), so that stopping it
//! disturbs no other test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestServer, test_settings, ticket};
use serde_json::json;

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

/// It brings its own PostgreSQL, so it runs in the SQLite pass of scripts/test only.
mod own_database {
    use super::*;

    #[tokio::test]
    async fn when_postgres_goes_away_the_api_answers_500_quickly_and_everything_resumes_when_it_is_back() {
        let cluster = Cluster::new();
        let dir = tempfile::tempdir().unwrap();
        let db = common::TestDb::existing(cluster.url());
        let mut settings = test_settings(&db, dir.path());
        settings.sim.answer_rate = 1.0;
        settings.sim.time_scale = 0.05;
        settings.dialer.calls_per_second = 20;
        settings.dialer.max_concurrent_calls = 10;
        let s = TestServer::start_on(settings, db, dir).await;

        let tickets: Vec<_> = (0..60).map(|i| ticket(&format!("O{i}"), &format!("139000{i:05}"))).collect();
        s.create(&tickets).await;
        s.wait_tasks(Duration::from_secs(20), |rows| rows.iter().any(|t| t["status"] == "已完成")).await;

        cluster.pg_ctl(&["stop", "-m", "immediate"]);
        // While it is down: a clear 500 in the envelope, well within the request timeout.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        for path in ["/api/aicall/calltask/list", "/api/aicall/records/list"] {
            let res = client
                .post(s.url(path))
                .json(&json!({"pageNum": 1, "pageSize": 10, "callType": "02"}))
                .send()
                .await
                .expect("an answer, not a hang");
            let v: serde_json::Value = res.json().await.unwrap();
            assert_eq!(v["code"], 500, "{path}: {v}");
            assert!(!v["msg"].as_str().unwrap().contains("postgres"), "no detail leaks: {v}");
        }
        let ready = client.get(s.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "not ready while the database is away");

        // Let the dialer meet the outage for a while, then bring the database back.
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.pg_ctl(&["start", "-w"]);
        let rows = s.wait_all_ended(Duration::from_secs(90)).await;
        assert_eq!(rows.len(), 60, "no task lost");
        let records = s.records(json!({})).await;
        let attempts: i64 = rows.iter().map(|t| t["callCount"].as_i64().unwrap()).sum();
        assert_eq!(records["total"].as_i64().unwrap(), attempts, "every attempt has its record");
        for t in &rows {
            assert!(t["callCount"].as_i64().unwrap() <= 3, "{t}");
        }
        assert_eq!(client.get(s.url("/readyz")).send().await.unwrap().status(), 200);
    }
}
