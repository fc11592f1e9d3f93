//! Campaigns (the spec's batchName): tickets grouped by name, each campaign with settings
//! of its own, paused, resumed and stopped by itself, and sharing the lines with the
//! others by priority and in turn.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::{ENDED, Plain, TestDb, TestServer, test_settings, ticket};
use callcenter::config::Settings;
use chrono::Timelike;
use serde_json::{Value, json};

const SEPTEMBER: &str = "九月份营销活动";

fn in_campaign(no: &str, phone: &str, campaign: &str) -> Value {
    let mut t = ticket(no, phone);
    t["batchName"] = json!(campaign);
    t
}

/// An ordinary number of its own: answers with probability `sim.answer_rate`.
fn ordinary(n: u32) -> String {
    format!("139{n:05}123")
}

fn busy(n: u32) -> String {
    format!("138{n:04}4860")
}

fn answering(s: &mut Settings) {
    s.sim.answer_rate = 1.0;
}

async fn save(s: &TestServer, name: &str, settings: Value) -> Value {
    let v = s.post("/api/aicall/campaign/save", &json!({"batchName": name, "settings": settings})).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"].clone()
}

async fn campaign(s: &TestServer, name: &str) -> Value {
    let v = s.post("/api/aicall/campaign/list", &json!({"batchName": name})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    v["rows"][0].clone()
}

async fn act(s: &TestServer, action: &str, name: &str) -> Value {
    let v = s.post(&format!("/api/aicall/campaign/{action}"), &json!({"batchName": name})).await;
    assert_eq!(v["code"], 0, "{action} {name}: {v}");
    v
}

fn status(t: &Value) -> &str {
    t["status"].as_str().unwrap()
}

/// The tasks of one campaign.
async fn tasks_of(s: &TestServer, name: &str) -> Vec<Value> {
    s.tasks(json!({"batchName": name})).await["rows"].as_array().unwrap().clone()
}

/// A window open now on a clock `offset_hours` from UTC (two hours before to three
/// after); the configured zone is Asia/Shanghai (UTC+8), where offset 2 is closed now.
fn window_open_at_utc_offset(offset_hours: i64) -> String {
    let hour = (chrono::Utc::now().hour() as i64 + offset_hours).rem_euclid(24);
    format!("{:02}:00-{:02}:00", (hour - 2).rem_euclid(24), (hour + 3).rem_euclid(24))
}

// ---- the API ----

#[tokio::test]
async fn tickets_without_a_batch_name_go_to_the_default_campaign_and_the_list_filters_by_it() {
    let s = TestServer::start().await;
    let plain = s.create(&[ticket("C-1", "13900000001"), ticket("C-2", "13900000002")]).await;
    let named = s
        .create(&[
            in_campaign("C-3", "13900000003", SEPTEMBER),
            in_campaign("C-4", "13900000004", SEPTEMBER),
            in_campaign("C-5", "13900000005", SEPTEMBER),
        ])
        .await;
    // Every row carries its campaign.
    for id in &plain {
        assert_eq!(s.task(*id).await["batchName"], "default");
    }
    for id in &named {
        assert_eq!(s.task(*id).await["batchName"], SEPTEMBER);
    }
    // The spec's own request example, with its batchName.
    let spec = s
        .post(
            "/api/aicall/calltask/list",
            &json!({"pageNum": 1, "pageSize": 10, "batchName": SEPTEMBER,
                    "createTimeStart": "2023-09-01 00:00:00", "createTimeEnd": "2099-09-30 23:59:59"}),
        )
        .await;
    assert_eq!(spec["code"], 0, "{spec}");
    assert_eq!(spec["total"], 3, "{spec}");
    let ids: Vec<i64> =
        spec["rows"].as_array().unwrap().iter().map(|r| r["batchId"].as_i64().unwrap()).collect();
    assert_eq!(ids, named.iter().rev().copied().collect::<Vec<_>>(), "newest batchId first");
    // Alone, with a status, with paging, and the default campaign's.
    let by_name = s.tasks(json!({"batchName": SEPTEMBER, "pageSize": 2})).await;
    assert_eq!((by_name["total"].as_i64(), by_name["rows"].as_array().unwrap().len()), (Some(3), 2));
    assert_eq!(s.tasks(json!({"batchName": SEPTEMBER, "status": "待呼叫"})).await["total"], 3);
    assert_eq!(s.tasks(json!({"batchName": SEPTEMBER, "status": "已完成"})).await["total"], 0);
    assert_eq!(s.tasks(json!({"batchName": "default"})).await["total"], 2);
    assert_eq!(s.tasks(json!({"batchName": "没有这个活动"})).await["total"], 0);
    // Blank is no filter, as for the other filters.
    assert_eq!(s.tasks(json!({"batchName": " "})).await["total"], 5);
    // The campaigns, with their counts.
    let september = campaign(&s, SEPTEMBER).await;
    assert_eq!(september["status"], "运行中");
    assert_eq!(september["tasks"]["待呼叫"], 3, "{september}");
    assert_eq!(september["tasks"]["已完成"], 0, "{september}");
    assert_eq!(september["settings"], json!({}), "created with the global settings");
    assert_eq!(campaign(&s, "default").await["tasks"]["待呼叫"], 2);
    let all = s.post("/api/aicall/campaign/list", &json!({})).await;
    assert_eq!(all["total"], 2, "{all}");
    // A retried ticket keeps its task, whatever campaign the retry names.
    let again = s.create(&[in_campaign("C-1", "13900000001", SEPTEMBER)]).await;
    assert_eq!(again, [plain[0]]);
    assert_eq!(s.task(plain[0]).await["batchName"], "default");
}

#[tokio::test]
async fn with_auto_create_off_an_unknown_batch_name_is_refused_naming_the_ticket_and_nothing_is_created() {
    let s = TestServer::start_with(|s| {
        s.dialer.enabled = false;
        s.api.auto_create_campaigns = false;
    })
    .await;
    let v = s
        .post(
            "/api/aicall/createTasks",
            &json!([ticket("A-1", "13900000001"), in_campaign("A-2", "13900000002", "新活动")]),
        )
        .await;
    assert_eq!(v["code"], 405, "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("第 2 条工单") && msg.contains("batchName") && msg.contains("新活动"), "{msg}");
    assert_eq!(s.tasks(json!({})).await["total"], 0, "all or nothing");
    // Once made with campaign/save, the name is taken.
    save(&s, "新活动", json!({})).await;
    s.create(&[in_campaign("A-2", "13900000002", "新活动")]).await;
    assert_eq!(s.tasks(json!({"batchName": "新活动"})).await["total"], 1);
}

#[tokio::test]
async fn bad_campaign_requests_get_405_naming_the_field_and_change_nothing() {
    let s = TestServer::start().await;
    save(&s, SEPTEMBER, json!({"max_attempts": 2})).await;
    let long = "长".repeat(101);
    for (path, body, named) in [
        ("save", json!({"settings": {}}), "batchName"),
        ("save", json!({"batchName": "  "}), "batchName"),
        ("save", json!({"batchName": long}), "batchName"),
        (
            "save",
            json!({"batchName": SEPTEMBER, "settings": {"calling_hours": "9-5"}}),
            "settings.calling_hours",
        ),
        ("save", json!({"batchName": SEPTEMBER, "settings": {"max_attempts": 0}}), "settings.max_attempts"),
        ("save", json!({"batchName": SEPTEMBER, "settings": {"max_attempts": "x"}}), "settings.max_attempts"),
        ("save", json!({"batchName": SEPTEMBER, "settings": {"timezone": "Mars/Base"}}), "settings.timezone"),
        ("save", json!({"batchName": SEPTEMBER, "settings": {"colour": "red"}}), "colour"),
        (
            "save",
            json!({"batchName": SEPTEMBER, "settings": {"script": {"greeting": ""}}}),
            "settings.script.greeting",
        ),
        (
            "save",
            json!({"batchName": SEPTEMBER, "settings": {"calls_per_second": 0}}),
            "settings.calls_per_second",
        ),
        ("save", json!({"batchName": SEPTEMBER, "settings": "fast"}), "settings"),
        ("pause", json!({}), "batchName"),
        ("pause", json!({"batchName": "没有这个活动"}), "batchName"),
        ("resume", json!({"batchName": "没有这个活动"}), "batchName"),
        ("stop", json!({"batchName": "没有这个活动"}), "batchName"),
        ("list", json!([]), "JSON 对象"),
    ] {
        let v = s.post(&format!("/api/aicall/campaign/{path}"), &body).await;
        assert_eq!(v["code"], 405, "{path} {body}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(named), "{path} {body}: {v}");
    }
    // A too long batchName on a ticket, too.
    let v = s.post("/api/aicall/createTasks", &json!([in_campaign("B-1", "13900000001", &long)])).await;
    assert_eq!(v["code"], 405, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("batchName"), "{v}");
    // Nothing changed.
    assert_eq!(campaign(&s, SEPTEMBER).await["settings"], json!({"max_attempts": 2}));
    assert_eq!(s.post("/api/aicall/campaign/list", &json!({})).await["total"], 2);
}

#[tokio::test]
async fn saving_changes_the_settings_given_keeps_the_rest_and_null_removes_one() {
    let s = TestServer::start().await;
    let first = save(
        &s,
        "回访",
        json!({"calling_hours": "09:00-20:00", "timezone": "Asia/Shanghai", "max_attempts": 3, "priority": 5,
               "transfer_to": "8001", "script": {"greeting": "您好，{username}"}}),
    )
    .await;
    assert_eq!(first["batchName"], "回访");
    assert_eq!(first["settings"]["transfer_to"], "8001");
    let second = save(&s, "回访", json!({"priority": null, "retry_delay_secs": 60})).await;
    assert_eq!(
        second["settings"],
        json!({"calling_hours": "09:00-20:00", "timezone": "Asia/Shanghai", "max_attempts": 3,
               "retry_delay_secs": 60, "transfer_to": "8001", "script": {"greeting": "您好，{username}"}})
    );
    assert_eq!(campaign(&s, "回访").await["settings"], second["settings"]);
    assert!(second["updatedTime"].as_i64() >= first["updatedTime"].as_i64());
    assert_eq!(second["createdTime"], first["createdTime"]);
}

// ---- the dialer ----

#[tokio::test]
async fn a_paused_campaign_is_not_dialled_while_others_are_and_is_dialled_again_once_resumed() {
    let s = TestServer::start_with(answering).await;
    save(&s, SEPTEMBER, json!({})).await;
    act(&s, "pause", SEPTEMBER).await;
    assert_eq!(campaign(&s, SEPTEMBER).await["status"], "已暂停");
    assert_eq!(campaign(&s, SEPTEMBER).await["paused"], true);
    let held: Vec<Value> = (0..5).map(|n| in_campaign(&format!("P-{n}"), &ordinary(n), SEPTEMBER)).collect();
    s.create(&held).await;
    let others: Vec<Value> = (10..15).map(|n| ticket(&format!("O-{n}"), &ordinary(n))).collect();
    s.create(&others).await;
    // The other campaign's tasks are all called...
    s.wait_tasks(Duration::from_secs(20), |rows| {
        rows.iter().filter(|t| t["batchName"] == "default").all(|t| status(t) == "已完成")
    })
    .await;
    // ...and the paused one's wait, never dialled.
    for t in tasks_of(&s, SEPTEMBER).await {
        assert_eq!((status(&t), t["callCount"].as_i64()), ("待呼叫", Some(0)), "{t:#}");
    }
    assert_eq!(s.records(json!({"batchName": SEPTEMBER})).await["total"], 0);
    act(&s, "resume", SEPTEMBER).await;
    assert_eq!(campaign(&s, SEPTEMBER).await["status"], "运行中");
    s.wait_all_ended(Duration::from_secs(20)).await;
    let listed = campaign(&s, SEPTEMBER).await;
    assert_eq!(listed["tasks"]["已完成"], 5, "{listed}");
    assert_eq!(listed["today"]["calls"], 5, "{listed}");
    assert_eq!(listed["today"]["answered"], 5, "{listed}");
    assert_eq!(listed["today"]["outcomes"]["answered"], 5, "{listed}");
    // records/list by campaign, and the day's stats by campaign.
    let records = s.records(json!({"batchName": SEPTEMBER})).await;
    assert_eq!(records["total"], 5, "{records}");
    assert_eq!(s.records(json!({"batchName": "default"})).await["total"], 5);
    assert_eq!(s.records(json!({"batchName": SEPTEMBER, "callType": "01"})).await["total"], 0);
    let stats = s.post("/api/aicall/stats", &json!({})).await;
    let days: HashMap<&str, &Value> = stats["data"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["batchName"].as_str().unwrap(), c))
        .collect();
    assert_eq!(days[SEPTEMBER]["calls"], 5, "{stats}");
    assert_eq!(days["default"]["answered"], 5, "{stats}");
    assert_eq!(days[SEPTEMBER]["tasksWaiting"], 0, "{stats}");
}

#[tokio::test]
async fn a_pause_lets_calls_in_progress_finish_and_starts_no_new_ones() {
    let s = TestServer::start_with(|s| {
        answering(s);
        s.sim.time_scale = 0.1; // a call lasts a few seconds
        s.dialer.max_concurrent_calls = 2;
    })
    .await;
    let tickets: Vec<Value> =
        (0..8).map(|n| in_campaign(&format!("PP-{n}"), &ordinary(n), SEPTEMBER)).collect();
    s.create(&tickets).await;
    s.wait_tasks(Duration::from_secs(20), |rows| rows.iter().any(|t| status(t) == "呼叫中")).await;
    act(&s, "pause", SEPTEMBER).await;
    // The calls in progress end as they would have (answered, completed)...
    let rows = s.wait_tasks(Duration::from_secs(60), |rows| rows.iter().all(|t| status(t) != "呼叫中")).await;
    let done: Vec<&Value> = rows.iter().filter(|t| status(t) == "已完成").collect();
    assert!(!done.is_empty() && done.len() < 8, "{rows:#?}");
    for t in &done {
        assert_eq!(t["lastHangupCause"], "NORMAL_CLEARING:sip:200", "{t:#}");
    }
    // ...and the rest wait. Another campaign's tasks are called meanwhile: by the time
    // they are done, a claim that ignored the pause would have taken these.
    let waiting = rows.len() - done.len();
    s.create(&[ticket("OTHER-1", &ordinary(20)), ticket("OTHER-2", &ordinary(21))]).await;
    s.wait_tasks(Duration::from_secs(60), |rows| {
        rows.iter().filter(|t| t["batchName"] == "default").all(|t| status(t) == "已完成")
    })
    .await;
    let still: Vec<Value> =
        tasks_of(&s, SEPTEMBER).await.into_iter().filter(|t| status(t) == "待呼叫").collect();
    assert_eq!(still.len(), waiting, "{still:#?}");
    assert!(still.iter().all(|t| t["callCount"] == 0), "{still:#?}");
}

#[tokio::test]
async fn stopping_a_campaign_stops_every_unfinished_task_of_it_and_no_other() {
    let s = TestServer::start_with(|s| s.dialer.enabled = false).await;
    s.create(&(0..4).map(|n| in_campaign(&format!("S-{n}"), &ordinary(n), SEPTEMBER)).collect::<Vec<_>>())
        .await;
    s.create(&[ticket("S-OTHER", &ordinary(9))]).await;
    let v = act(&s, "stop", SEPTEMBER).await;
    assert_eq!(v["msg"], "已停止 4 个任务", "{v}");
    for t in tasks_of(&s, SEPTEMBER).await {
        assert_eq!(status(&t), "已停止", "{t:#}");
        assert!(t["stopTime"].is_i64(), "{t:#}");
    }
    assert_eq!(status(&tasks_of(&s, "default").await[0]), "待呼叫");
    assert_eq!(campaign(&s, SEPTEMBER).await["tasks"]["已停止"], 4);
    // Again: nothing left to stop.
    assert_eq!(act(&s, "stop", SEPTEMBER).await["msg"], "已停止 0 个任务");
}

#[tokio::test]
async fn a_campaigns_calling_hours_hold_its_tasks_while_other_campaigns_are_dialled() {
    let s = TestServer::start_with(answering).await;
    // The global window is always open; this campaign's is closed now.
    save(&s, "夜间", json!({"calling_hours": window_open_at_utc_offset(2)})).await;
    save(&s, "白天", json!({"calling_hours": window_open_at_utc_offset(8)})).await;
    s.create(&[in_campaign("H-1", &ordinary(1), "夜间"), in_campaign("H-2", &ordinary(2), "夜间")]).await;
    s.create(&[in_campaign("H-3", &ordinary(3), "白天"), ticket("H-4", &ordinary(4))]).await;
    s.wait_tasks(Duration::from_secs(20), |rows| {
        rows.iter().filter(|t| t["batchName"] != "夜间").all(|t| status(t) == "已完成")
    })
    .await;
    for t in tasks_of(&s, "夜间").await {
        assert_eq!((status(&t), t["callCount"].as_i64()), ("待呼叫", Some(0)), "{t:#}");
    }
    // Read in the campaign's own zone: the same window in UTC+2's zone is open now.
    save(&s, "夜间", json!({"timezone": "Etc/GMT-2"})).await;
    s.wait_all_ended(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_campaigns_retry_policy_and_script_lines_are_what_its_calls_follow() {
    let s = TestServer::start_with(answering).await;
    save(&s, "一次", json!({"max_attempts": 1})).await;
    save(&s, "问候", json!({"script": {"greeting": "您好{username}，这里是九月活动专线。"}})).await;
    let once = s.create(&[in_campaign("R-1", &busy(1), "一次")]).await[0];
    let global = s.create(&[ticket("R-2", &busy(2))]).await[0];
    let greeted = s.create(&[in_campaign("R-3", &ordinary(3), "问候")]).await[0];
    let plain = s.create(&[ticket("R-4", &ordinary(4))]).await[0];
    s.wait_tasks(Duration::from_secs(20), |rows| {
        rows.iter().all(|t| t["callCount"] == 1 && status(t) != "呼叫中")
    })
    .await;
    // Busy once: the campaign allows one attempt, the global policy three.
    assert_eq!(status(&s.task(once).await), "已完成");
    assert_eq!(status(&s.task(global).await), "等待重呼");
    let first_line = |phone: String| {
        let s = &s;
        async move {
            let r = s.records(json!({"telephone": phone})).await["rows"][0].clone();
            r["dialogue"][0]["content"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(first_line(ordinary(3)).await, "您好张三，这里是九月活动专线。");
    assert_ne!(first_line(ordinary(4)).await, "您好张三，这里是九月活动专线。");
    assert_eq!(status(&s.task(greeted).await), "已完成");
    assert_eq!(status(&s.task(plain).await), "已完成");
}

#[tokio::test]
async fn a_campaigns_own_cap_of_calls_holds_beside_the_global_one() {
    let s = TestServer::start_with(|s| {
        answering(s);
        s.sim.time_scale = 0.05;
    })
    .await;
    save(&s, "一条线", json!({"max_concurrent_calls": 1})).await;
    let tickets: Vec<Value> =
        (0..6).map(|n| in_campaign(&format!("L-{n}"), &ordinary(n), "一条线")).collect();
    s.create(&tickets).await;
    let mut most = 0;
    loop {
        let rows = tasks_of(&s, "一条线").await;
        most = most.max(rows.iter().filter(|t| status(t) == "呼叫中").count());
        if rows.iter().all(|t| ENDED.contains(&status(t))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, 1, "one call at a time");
}

#[tokio::test]
async fn a_campaigns_own_pace_holds_beside_the_global_one() {
    let s = TestServer::start_with(answering).await;
    save(&s, "慢", json!({"calls_per_second": 2})).await;
    let slow: Vec<Value> = (0..6).map(|n| in_campaign(&format!("V-{n}"), &ordinary(n), "慢")).collect();
    s.create(&slow).await;
    let fast: Vec<Value> = (10..30).map(|n| ticket(&format!("F-{n}"), &ordinary(n))).collect();
    s.create(&fast).await;
    wait_completed(&s, &[("慢", 6), ("default", 20)]).await;
    // No calendar second holds more than 2 of its calls (a uuid starts with its second).
    let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
    for (uuid, _) in claims_in_order(&s, &["慢"]).await {
        *per_second.entry(uuid[..12].to_string()).or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= 2), "{per_second:?}");
    assert!(per_second.len() >= 3, "six calls at two a second span three seconds: {per_second:?}");
}

/// Waits until each campaign has this many tasks 已完成.
async fn wait_completed(s: &TestServer, campaigns: &[(&str, i64)]) {
    crate::common::until(Duration::from_secs(300), "every task to complete", async || {
        for (name, n) in campaigns {
            let done = s.tasks(json!({"batchName": name, "status": "已完成", "pageSize": 1})).await;
            if done["total"].as_i64() != Some(*n) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// The records of the run, (uuid, campaign), in the order the calls were claimed (a
/// uuid is the claim's second, the node and a counter).
async fn claims_in_order(s: &TestServer, campaigns: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in campaigns {
        let mut page = 1;
        loop {
            let v = s.records(json!({"batchName": name, "pageNum": page, "pageSize": 1000})).await;
            let rows = v["rows"].as_array().unwrap();
            out.extend(rows.iter().map(|r| (r["uuid"].as_str().unwrap().to_string(), name.to_string())));
            if rows.len() < 1000 {
                break;
            }
            page += 1;
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn equal_campaigns_share_the_lines_evenly_in_every_second_of_the_run() {
    let s = TestServer::start_with(|s| {
        answering(s);
        s.dialer.calls_per_second = 1000;
    })
    .await;
    // Both created before the dialer may take either (paused), the first with all its
    // tasks before the second: first come would call all of it first.
    for name in ["甲", "乙"] {
        save(&s, name, json!({})).await;
        act(&s, "pause", name).await;
    }
    for name in ["甲", "乙"] {
        for chunk in 0..5 {
            let tickets: Vec<Value> = (0..1000)
                .map(|n| {
                    let i = chunk * 1000 + n;
                    // Ending in 1234: an ordinary number, which answers.
                    let prefix = if name == "甲" { 13 } else { 15 };
                    in_campaign(&format!("{name}-{i}"), &format!("{prefix}{i:05}1234"), name)
                })
                .collect();
            s.create(&tickets).await;
        }
    }
    for name in ["甲", "乙"] {
        act(&s, "resume", name).await;
    }
    wait_completed(&s, &[("甲", 5000), ("乙", 5000)]).await;
    let claims = claims_in_order(&s, &["甲", "乙"]).await;
    // Every task once (a call cut off by a node too loaded to renew its lease is tried
    // again, and counted too).
    assert!(claims.len() >= 10_000, "{}", claims.len());
    let mut per_second: BTreeMap<&str, [i64; 2]> = BTreeMap::new();
    for (uuid, name) in &claims {
        per_second.entry(&uuid[..12]).or_default()[usize::from(name == "乙")] += 1;
    }
    // Every whole second (the first and last are partial), within a tenth, or one call
    // (claims alternate: a second cut short, by a machine too loaded to dial, can end
    // between the two claims of a pair: 3 against 2).
    let seconds: Vec<_> = per_second.iter().collect();
    assert!(seconds.len() >= 3, "{per_second:?}");
    for (second, [a, b]) in &seconds[1..seconds.len() - 1] {
        let (a, b) = (*a as f64, *b as f64);
        assert!(
            (a - b).abs() <= (0.1 * a.max(b)).max(1.0),
            "second {second}: 甲 {a} against 乙 {b}; all: {per_second:?}"
        );
    }
}

#[tokio::test]
async fn a_higher_priority_campaign_created_mid_run_takes_the_lines_from_the_next_claim_on() {
    let s = TestServer::start_with(|s| {
        answering(s);
        s.dialer.calls_per_second = 200;
    })
    .await;
    for name in ["甲", "乙"] {
        let tickets: Vec<Value> =
            (0..600).map(|i| in_campaign(&format!("{name}-{i}"), &format!("1360{i:07}"), name)).collect();
        s.create(&tickets).await;
    }
    crate::common::until(Duration::from_secs(60), "calls of the first campaigns", async || {
        (s.records(json!({"pageSize": 1})).await["total"].as_i64() >= Some(100)).then_some(())
    })
    .await;
    save(&s, "紧急", json!({"priority": 10})).await;
    let urgent: Vec<Value> =
        (0..100).map(|i| in_campaign(&format!("U-{i}"), &format!("1350{i:07}"), "紧急")).collect();
    s.create(&urgent).await;
    wait_completed(&s, &[("甲", 600), ("乙", 600), ("紧急", 100)]).await;
    let claims = claims_in_order(&s, &["甲", "乙", "紧急"]).await;
    let first = claims.iter().position(|c| c.1 == "紧急").unwrap();
    let last = claims.iter().rposition(|c| c.1 == "紧急").unwrap();
    assert_eq!(
        last - first + 1,
        100,
        "once its tasks were there, every claim took them: {:?}",
        &claims[first..=last]
    );
    assert!(first >= 100, "it came mid-run");
    assert!(claims.len() - last > 100, "the others went on after it");
}

// ---- the migration ----

#[tokio::test]
async fn the_migrations_put_existing_tasks_in_the_default_campaign_with_their_batch_ids_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    // The schema as it was before campaigns, with tasks and an AI call's record.
    let postgres = db.is_postgres();
    let mut migrator =
        if postgres { sqlx::migrate!("migrations/postgres") } else { sqlx::migrate!("migrations/sqlite") };
    migrator.migrations =
        migrator.migrations.iter().filter(|m| m.version < 10).cloned().collect::<Vec<_>>().into();
    let url = if postgres { db.url.clone() } else { format!("{}?mode=rwc", db.url) };
    let plain = Plain::connect(&url).await;
    let seed = [
        "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, created_ms, next_attempt_ms, status, call_count)
         VALUES ('OLD-1', '13900000001', '张三', '回访', '内容', 1700000000000, 1700000000000, 'completed', 1),
                ('OLD-2', '13900000002', '李四', '回访', '内容', 1700000000000, 1700000000000, 'pending', 0)",
        "INSERT INTO call_records (uuid, call_type, batch_id, telephone, callout_ms, answered_ms, ended_ms, time_len, hangup_cause)
         VALUES ('2311150613200110001', '02', 10001, '13900000001', 1700000000000, 1700000001000, 1700000009000, 9,
                 'NORMAL_CLEARING:sip:200')",
    ];
    match &plain {
        Plain::Sqlite(p) => {
            migrator.run(p).await.unwrap();
            for sql in seed {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
        Plain::Postgres(p) => {
            migrator.run(p).await.unwrap();
            for sql in seed {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
    }
    let ids = plain.ints("SELECT batch_id FROM tasks ORDER BY batch_id").await;
    assert_eq!(ids, [10001, 10002]);
    // The server migrates it.
    let mut settings = test_settings(&db, dir.path());
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    let rows = tasks_of(&s, "default").await;
    let listed: Vec<(i64, &str, &str)> = rows
        .iter()
        .map(|t| (t["batchId"].as_i64().unwrap(), t["ticketNo"].as_str().unwrap(), status(t)))
        .collect();
    assert_eq!(listed, [(10002, "OLD-2", "待呼叫"), (10001, "OLD-1", "已完成")]);
    let default = campaign(&s, "default").await;
    assert_eq!(
        (default["tasks"]["待呼叫"].as_i64(), default["tasks"]["已完成"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(s.tasks(json!({})).await["total"], 2);
    assert_eq!(s.tasks(json!({"status": "待呼叫"})).await["total"], 1);
    let records = s.records(json!({"batchName": "default"})).await;
    assert_eq!(records["total"], 1, "{records}");
    assert_eq!(records["rows"][0]["uuid"], "2311150613200110001");
    // Counted in the campaign's counters too (migration 0013): by talk time, and the
    // tasks of a day of creation.
    for (talk, total) in [(json!({"timeLenStart": 5}), 1), (json!({"timeLenStart": 10}), 0)] {
        let mut filter = json!({"batchName": "default", "timeLenEnd": 100});
        filter.as_object_mut().unwrap().extend(talk.as_object().unwrap().clone());
        assert_eq!(s.records(filter.clone()).await["total"], total, "{filter}");
    }
    let day = json!({"batchName": "default", "createTimeStart": "2023-11-15 00:00:00",
                     "createTimeEnd": "2023-11-15 23:59:59"});
    assert_eq!(s.tasks(day.clone()).await["total"], 2);
    let mut pending = day;
    pending["status"] = json!("待呼叫");
    let page = s.tasks(pending).await;
    assert_eq!(
        (page["total"].as_i64(), page["rows"][0]["batchId"].as_i64()),
        (Some(1), Some(10002)),
        "{page}"
    );
    // Counted in the campaign's day (2023-11-15 in Asia/Shanghai).
    let day = s.post("/api/aicall/stats", &json!({"date": "2023-11-15"})).await;
    let campaigns = day["data"]["campaigns"].as_array().unwrap();
    let default = campaigns.iter().find(|c| c["batchName"] == "default").unwrap();
    assert_eq!((default["calls"].as_i64(), default["answered"].as_i64()), (Some(1), Some(1)), "{day}");
    // New tasks go on numbering after them.
    assert_eq!(s.create(&[ticket("NEW-1", "13900000003")]).await, [10003]);
}
