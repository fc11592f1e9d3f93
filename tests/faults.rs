//! Faults a deployment meets: a recordings disk that refuses writes, a database that
//! goes away under load, and hostile input of every kind.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{TestServer, ticket};
use serde_json::json;

/// Every log line of this test binary, to count what a fault writes to the log.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn with_an_unwritable_recordings_disk_calls_still_end_without_a_recording_and_one_log_line_each() {
    let logs = captured_logs();
    let s = TestServer::start_with(|c| {
        c.sim.answer_rate = 1.0;
        c.sim.time_scale = 0.01;
    })
    .await;
    // A file where the directory should be: nothing can be created under it (even as root).
    let blocked = s.dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"x").unwrap();
    let (mut settings, db, dir) = s.stop().await;
    settings.recordings.dir = blocked.join("recordings");
    let s = TestServer::start_on(settings, db, dir).await;

    let tickets: Vec<_> = (0..5).map(|i| ticket(&format!("D{i}"), &format!("1390000000{i}"))).collect();
    s.create(&tickets).await;
    let rows = s.wait_all_ended(Duration::from_secs(20)).await;
    assert!(rows.iter().all(|t| t["status"] == "已完成" && t["connected"] == true), "{rows:#?}");
    let records = s.records(json!({})).await["rows"].as_array().unwrap().clone();
    assert_eq!(records.len(), 5);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for r in &records {
        assert_eq!(r["wavFileUrl"], "", "no recording is claimed: {r}");
        assert!(!r["dialogue"].as_array().unwrap().is_empty(), "the dialogue is kept: {r}");
        let uuid = r["uuid"].as_str().unwrap();
        let complaints = text.lines().filter(|l| l.contains(uuid) && l.contains("recording")).count();
        assert_eq!(complaints, 1, "one log line per call about its recording, not a flood:\n{text}");
    }
}
