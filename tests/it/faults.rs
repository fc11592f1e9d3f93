//! Faults a deployment meets: a recordings disk that refuses writes, a database that
//! goes away under load, and hostile input of every kind.

use std::time::Duration;

use crate::common::{TestServer, log_text, logs, of_node, ticket, until};
use serde_json::json;

/// The node id of the test that counts its log lines.
const NODE: &str = "91";

#[tokio::test]
async fn with_an_unwritable_recordings_disk_calls_still_end_without_a_recording_and_one_log_line_each() {
    logs();
    let s = TestServer::start_with(|c| {
        // A node id of its own, so that its call uuids (node, second, counter) are no other
        // server's in this process: its log lines are counted by uuid.
        c.dialer.node_id.0 = NODE.into();
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
    let text = log_text();
    let text: String = text.lines().filter(|l| of_node(l, NODE)).map(|l| format!("{l}\n")).collect();
    for r in &records {
        assert_eq!(r["wavFileUrl"], "", "no recording is claimed: {r}");
        assert!(!r["dialogue"].as_array().unwrap().is_empty(), "the dialogue is kept: {r}");
        let uuid = r["uuid"].as_str().unwrap();
        let complaints = text.lines().filter(|l| l.contains(uuid) && l.contains("recording")).count();
        assert_eq!(complaints, 1, "one log line per call about its recording, not a flood:\n{text}");
    }
}

/// `/readyz`'s status and its `data.recordings`.
async fn readiness(s: &TestServer) -> (u16, String) {
    let res = s.get("/readyz").await;
    let status = res.status().as_u16();
    let v: serde_json::Value = res.json().await.unwrap();
    (status, v["data"]["recordings"].as_str().unwrap_or_default().to_string())
}

/// The counter of recordings that could not be written, from /metrics.
async fn recording_failures(s: &TestServer) -> u64 {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("callcenter_recording_failures_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Calls `n` answering numbers and waits until every task has ended.
async fn answered_calls(s: &TestServer, prefix: &str, n: usize) {
    let tickets: Vec<_> =
        (0..n).map(|i| ticket(&format!("{prefix}{i}"), &format!("1390001{i:04}"))).collect();
    s.create(&tickets).await;
    s.wait_all_ended(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn recordings_that_fail_in_a_row_show_in_readiness_and_a_metric_and_clear_when_one_is_written() {
    for unready_when_failing in [false, true] {
        let s = TestServer::start_with(|c| {
            // Its own node id: call uuids (node + second + counter) stay apart from those of
            // the test above, whose log lines are counted by uuid.
            c.dialer.node_id.0 = "92".into();
            c.sim.answer_rate = 1.0;
            c.recordings.failing_after = 3;
            c.recordings.unready_when_failing = unready_when_failing;
        })
        .await;
        // The dialer starts right after the server: wait for it, as a load balancer would.
        let ready = until(Duration::from_secs(10), "the server to say ready", async || {
            let ready = readiness(&s).await;
            (ready.0 == 200).then_some(ready)
        })
        .await;
        assert_eq!(ready, (200, "ok".to_string()));
        let failures_before = recording_failures(&s).await;

        // A file where the directory should be: nothing can be written under it (even as root).
        let recordings = s.recordings_dir();
        std::fs::create_dir_all(recordings.parent().unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&recordings);
        std::fs::write(&recordings, b"not a directory").unwrap();
        answered_calls(&s, &format!("F{unready_when_failing}-"), 2).await;
        assert_eq!(readiness(&s).await, (200, "ok".to_string()), "two failures are not yet a trend");
        answered_calls(&s, &format!("G{unready_when_failing}-"), 1).await;
        let failing_status = if unready_when_failing { 503 } else { 200 };
        assert_eq!(readiness(&s).await, (failing_status, "failing".to_string()));
        // Other tests in this process may count failures too: at least these three.
        assert!(recording_failures(&s).await >= failures_before + 3);

        // The disk is back: the next recording written clears it.
        std::fs::remove_file(&recordings).unwrap();
        answered_calls(&s, &format!("H{unready_when_failing}-"), 1).await;
        assert_eq!(readiness(&s).await, (200, "ok".to_string()));
    }
}
