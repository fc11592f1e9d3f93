//! The fast totals and the day's statistics, kept with the writes, must always equal
//! what counting the rows gives.

use std::time::Duration;

use crate::common::{Plain, TestServer, ticket};
use chrono::TimeZone;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const DAY: &str = "2025-08-16";

fn record(uuid: &str, call_type: &str, start: &str, answered: bool, cause: &str) -> Value {
    json!({
        "uuid": uuid, "telephone": "18188888888", "callType": call_type,
        "calloutTime": start, "answeredTime": if answered { start } else { "" },
        "callEndTime": start, "hangupCause": cause, "extnum": "8001"
    })
}

/// `SELECT COUNT(*)` of the records of `call_type` from `from` to `until` (the API's local
/// times, both whole seconds included), counted row by row in the database.
fn plain_records(s: &TestServer, call_type: &str, from: Option<&str>, until: Option<&str>) -> String {
    let ms = |t: &str| {
        let local = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").unwrap();
        s.settings.timezone.0.from_local_datetime(&local).single().unwrap().timestamp_millis()
    };
    let mut sql = format!("SELECT COUNT(*) FROM call_records WHERE call_type = '{call_type}'");
    if let Some(f) = from {
        sql += &format!(" AND callout_ms >= {}", ms(f));
    }
    if let Some(u) = until {
        sql += &format!(" AND callout_ms < {}", ms(u) + 1000);
    }
    sql
}

fn at(day: &str, secs: u32) -> String {
    format!("{day} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[tokio::test]
async fn every_fast_total_equals_a_plain_count_after_random_imports_calls_and_stops() {
    let s = TestServer::start_with(|c| {
        c.sim.answer_rate = 0.5;
        c.dialer.retry_delay_secs = 0;
    })
    .await;
    let plain = Plain::connect(&s.db.url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Imports spread over three days and all hours, in several batches (some repeated).
    let days = ["2025-08-15", DAY, "2025-08-17"];
    for batch in 0..5 {
        let rows: Vec<Value> = (0..200)
            .map(|i| {
                let day = days[rng.random_range(0..3)];
                let t = at(day, rng.random_range(0..86_400));
                let call_type = if rng.random_bool(0.5) { "01" } else { "03" };
                let cause = ["NORMAL_CLEARING:sip:200", "USER_BUSY:sip:486", "NO_ANSWER:sip:480"]
                    [rng.random_range(0..3)];
                record(&format!("U{batch}-{i}"), call_type, &t, cause.starts_with("NORMAL"), cause)
            })
            .collect();
        assert_eq!(s.post("/api/aicall/records/import", &json!(rows)).await["code"], 0);
        assert_eq!(s.post("/api/aicall/records/import", &json!(rows[..50])).await["data"]["imported"], 0);
    }
    // AI calls today, some stopped before they are dialed.
    let tickets: Vec<Value> =
        (0..60).map(|i| ticket(&format!("T{i}"), &format!("1390000{:04}", i))).collect();
    let ids = s.create(&tickets).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids[..10]})).await;
    s.wait_all_ended(Duration::from_secs(30)).await;

    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%d").to_string();
    let mut ranges: Vec<(Option<String>, Option<String>)> = vec![
        (None, None),
        (Some(format!("{DAY} 00:00:00")), Some(format!("{DAY} 23:59:59"))),
        (Some(format!("{today} 00:00:00")), Some(format!("{today} 23:59:59"))),
        (Some(format!("{DAY} 10:00:00")), None),
        (None, Some(format!("{DAY} 09:59:59"))),
        (Some(format!("{DAY} 10:30:00")), Some(format!("{DAY} 10:45:00"))),
    ];
    for _ in 0..40 {
        let (a, b) = (rng.random_range(0..3 * 86_400), rng.random_range(0..3 * 86_400));
        let (a, b) = (a.min(b), a.max(b));
        let stamp = |x: u32| at(days[(x / 86_400) as usize], x % 86_400);
        ranges.push((Some(stamp(a)), Some(stamp(b))));
    }
    for call_type in ["01", "02", "03"] {
        for (from, until) in &ranges {
            let mut filter = json!({"callType": call_type, "pageSize": 1});
            if let Some(f) = from {
                filter["calloutTimeStart"] = json!(f);
            }
            if let Some(u) = until {
                filter["calloutTimeEnd"] = json!(u);
            }
            let fast = s.records(filter.clone()).await["total"].as_i64();
            let counted = plain.count(&plain_records(&s, call_type, from.as_deref(), until.as_deref())).await;
            assert_eq!(fast, Some(counted), "{filter}");
        }
    }
    let total = s.records(json!({"callType": "01"})).await["total"].clone();
    assert!(total.as_i64().unwrap() > 300);
    // A page past the end has no rows, and still the total.
    let far = s.records(json!({"callType": "01", "pageNum": 10_000, "pageSize": 10})).await;
    assert_eq!((far["rows"].as_array().map(Vec::len), &far["total"]), (Some(0), &total));
    let far = s.records(json!({"callType": "01", "extnum": "8001", "pageNum": 10_000})).await;
    assert_eq!((far["rows"].as_array().map(Vec::len), &far["total"]), (Some(0), &total));
}

/// calltask/list's total by status alone, or with no filter, comes from counters; a
/// creation time from before any task forces the plain COUNT. Compares every status.
async fn assert_task_totals_are_counts(s: &TestServer, expected_tasks: i64) {
    let mut by_status = 0;
    for status in [
        None,
        Some("待呼叫"),
        Some("呼叫中"),
        Some("等待重呼"),
        Some("已完成"),
        Some("已停止"),
        Some("已拦截"),
    ] {
        let mut filter = json!({"pageSize": 1});
        if let Some(st) = status {
            filter["status"] = json!(st);
        }
        let fast = s.tasks(filter.clone()).await["total"].as_i64().unwrap();
        filter["createTimeStart"] = json!("2000-01-01 00:00:00");
        let counted = s.tasks(filter.clone()).await["total"].as_i64().unwrap();
        assert_eq!(fast, counted, "{filter}");
        match status {
            None => assert_eq!(fast, expected_tasks),
            Some(_) => by_status += fast,
        }
    }
    assert_eq!(by_status, expected_tasks, "the statuses add up to every task");
}

#[tokio::test]
async fn every_task_total_equals_a_plain_count_through_creates_stops_blocks_calls_and_restarts() {
    let s = TestServer::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // Busy, unallocated and ordinary numbers; the first ten on the do-not-call list.
    let suffixes = ["4860", "4040", "1234", "5678"];
    let tickets: Vec<Value> = (0..100)
        .map(|i| ticket(&format!("K{i}"), &format!("139{i:04}{}", suffixes[rng.random_range(0..4)])))
        .collect();
    let ids = s.create(&tickets).await;
    // A retried request makes no task; a ticket already ended gets a new one.
    assert_eq!(s.create(&tickets[..20]).await, ids[..20]);
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids[20..30]})).await;
    s.post("/api/aicall/stopTasks", &json!({"ticketNos": ["K30", "K31", "K32"]})).await;
    let again = s.create(&tickets[25..27]).await;
    assert!(again.iter().all(|id| !ids.contains(id)), "{again:?}");
    let phones: Vec<&Value> = tickets[..10].iter().map(|t| &t["phone"]).collect();
    s.post("/api/aicall/dnc/add", &json!({"phones": phones})).await;
    assert_task_totals_are_counts(&s, 102).await;

    // Calls that take a while, stopped half-way by a restart, then all called to the end.
    let (mut settings, db, dir) = s.stop().await;
    settings.dialer.enabled = true;
    settings.sim.time_scale = 0.02;
    settings.sim.answer_rate = 0.5;
    let s = TestServer::start_on(settings, db, dir).await;
    s.wait_tasks(Duration::from_secs(30), |rows| rows.iter().any(|t| t["status"] == "呼叫中")).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids[40..50]})).await;
    let (mut settings, db, dir) = s.stop().await;
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    assert_task_totals_are_counts(&s, 102).await;
    let (mut settings, db, dir) = s.stop().await;
    settings.dialer.enabled = true;
    settings.sim.time_scale = 0.0;
    let s = TestServer::start_on(settings, db, dir).await;
    // Failed attempts wait 600 s for their retry.
    s.wait_tasks(Duration::from_secs(60), |rows| {
        rows.iter().all(|t| !["待呼叫", "呼叫中"].contains(&t["status"].as_str().unwrap()))
    })
    .await;
    assert_task_totals_are_counts(&s, 102).await;
    if s.db.is_postgres() {
        // Each node folds the changes into the counters every second.
        crate::common::until(Duration::from_secs(10), "the task count changes to be folded", async || {
            (crate::common::psql_value(&s.db.url, "SELECT COUNT(*) FROM task_count_changes") == "0")
                .then_some(())
        })
        .await;
        assert_task_totals_are_counts(&s, 102).await;
    }
}

#[tokio::test]
async fn the_day_statistics_count_calls_per_hour_by_outcome() {
    let s = TestServer::start().await;
    let rows = vec![
        record("S1", "01", &format!("{DAY} 09:05:00"), true, "NORMAL_CLEARING:sip:200"),
        record("S2", "01", &format!("{DAY} 09:59:59"), false, "USER_BUSY:sip:486"),
        record("S3", "01", &format!("{DAY} 10:00:00"), false, "NO_ANSWER:sip:480"),
        record("S4", "01", "2025-08-17 00:00:00", true, "NORMAL_CLEARING:sip:200"),
        record("S5", "03", &format!("{DAY} 09:10:00"), true, "NORMAL_CLEARING:sip:200"),
    ];
    let mut rows = rows;
    // A talk of 60 seconds.
    rows[0]["callEndTime"] = json!(format!("{DAY} 09:06:00"));
    s.post("/api/aicall/records/import", &json!(rows)).await;
    let v = s.post("/api/aicall/stats", &json!({"date": DAY, "callType": "01"})).await;
    assert_eq!(v["code"], 0, "{v}");
    let d = &v["data"];
    assert_eq!(d["date"], DAY);
    assert_eq!(d["callsStarted"], 3);
    assert_eq!(d["answered"], 1);
    assert!((d["answerRate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(d["avgTalkSecs"], 60.0);
    let hours = d["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 2, "{hours:#?}");
    assert_eq!(hours[0]["hour"], "09:00");
    assert_eq!(hours[0]["calls"], 2);
    assert_eq!(hours[0]["outcomes"]["answered"], 1);
    assert_eq!(hours[0]["outcomes"]["busy"], 1);
    assert_eq!(hours[1]["hour"], "10:00");
    assert_eq!(hours[1]["outcomes"]["no_answer"], 1);

    let empty = s.post("/api/aicall/stats", &json!({"date": "2020-01-01"})).await;
    assert_eq!(empty["data"]["callsStarted"], 0);
    assert_eq!(empty["data"]["answerRate"], 0.0);
    for (body, needle) in [(json!({"date": "2025-13-01"}), "date"), (json!({"callType": "9"}), "callType")] {
        let v = s.post("/api/aicall/stats", &body).await;
        assert_eq!(v["code"], 405);
        assert!(v["msg"].as_str().unwrap().contains(needle));
    }
}

#[tokio::test]
async fn today_statistics_include_ai_calls_and_the_live_numbers() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    s.create(&[ticket("A1", "13900000001"), ticket("A2", "13900004860")]).await;
    s.wait_tasks(Duration::from_secs(10), |rows| rows.iter().all(|t| !t["lastHangupCause"].is_null())).await;
    let d = s.post("/api/aicall/stats", &json!({})).await["data"].clone();
    assert_eq!(d["callType"], "02");
    assert_eq!(d["callsStarted"], 2);
    assert_eq!(d["answered"], 1);
    assert_eq!(d["tasksWaiting"], 1, "the busy one waits for its retry");
    assert_eq!(d["callsInProgress"], 0);
}

#[tokio::test]
async fn a_seeded_database_has_a_spread_of_calls_and_exact_counters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = crate::common::TestDb::new(dir.path()).await;
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_callcenter"))
        .args(["seed", "--records", "20000", "--tasks", "2000"])
        .env("CALLCENTER__DATABASE__URL", &db.url)
        .output()
        .expect("callcenter seed runs");
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let mut settings = crate::common::test_settings(&db, dir.path());
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    let plain = Plain::connect(&s.db.url).await;

    let mut totals = Vec::new();
    for call_type in ["01", "02", "03"] {
        totals
            .push(s.records(json!({"callType": call_type, "pageSize": 1})).await["total"].as_i64().unwrap());
    }
    assert_eq!(totals.iter().sum::<i64>(), 20_000, "{totals:?}");
    assert!(totals.iter().all(|&n| n > 1_000), "every call type: {totals:?}");
    assert_task_totals_are_counts(&s, 2_000).await;
    // Over 90 days, answered and not, with dialogues on the answered AI calls.
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let day = |d: i64| (today - chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
    for (from, until) in [(day(89), day(80)), (day(45), day(45)), (day(10), day(1))] {
        let filter = json!({"callType": "02", "pageSize": 50,
            "calloutTimeStart": format!("{from} 00:00:00"), "calloutTimeEnd": format!("{until} 23:59:59")});
        let page = s.records(filter.clone()).await;
        let rows = page["rows"].as_array().unwrap();
        assert!(rows.iter().any(|r| r["dialogue"].as_array().is_some_and(|d| !d.is_empty())), "{page}");
        assert!(rows.iter().any(|r| r["answeredTime"] == ""), "{page}");
        let (from, until) = (format!("{from} 00:00:00"), format!("{until} 23:59:59"));
        let counted = plain.count(&plain_records(&s, "02", Some(&from), Some(&until))).await;
        assert_eq!(page["total"].as_i64(), Some(counted), "{filter}");
    }
    // Deep pages skip whole hours by their counters: the same rows as skipping row by row,
    // at edges inside hours, open ends and past the end.
    let ranges = [
        (None, None),
        (Some(format!("{} 10:30:00", day(60))), Some(format!("{} 15:45:10", day(5)))),
        (Some(format!("{} 00:00:00", day(30))), None),
        (None, Some(format!("{} 12:00:00", day(20)))),
    ];
    for (from, until) in ranges {
        for (page, size) in [(101, 10), (150, 10), (37, 50), (1_000, 10), (2_000, 10)] {
            let mut filter = json!({"callType": "02", "pageNum": page, "pageSize": size});
            if let Some(f) = &from {
                filter["calloutTimeStart"] = json!(f);
            }
            if let Some(u) = &until {
                filter["calloutTimeEnd"] = json!(u);
            }
            let sought = s.records(filter.clone()).await;
            let uuids: Vec<String> = sought["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["uuid"].as_str().unwrap().to_string())
                .collect();
            let wheres = plain_records(&s, "02", from.as_deref(), until.as_deref());
            let (select, offset) = (wheres.replace("COUNT(*)", "uuid"), (page - 1) * size);
            let row_by_row = plain
                .texts(&format!("{select} ORDER BY callout_ms DESC, uuid DESC LIMIT {size} OFFSET {offset}"))
                .await;
            assert_eq!(uuids, row_by_row, "{filter}");
            assert_eq!(sought["total"].as_i64(), Some(plain.count(&wheres).await), "{filter}");
        }
    }
}
