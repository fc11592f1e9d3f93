//! The dialer, seen from outside: tasks go in through createTasks, and what the dialer
//! did shows in calltask/list and records/list, as a ticketing system or a dashboard sees it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::common::{ENDED, TestServer, answered, ticket, until};
use callcenter::config::Settings;
use callcenter::dialer::{CallingHours, NodeId};
use callcenter::domain::Timezone;
use chrono::{NaiveDateTime, Timelike};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

/// A phone of its own for each task (records are found by telephone), ending in `ending`
/// so that the sim carrier knows what to do with it.
fn phone(n: u32, ending: &str) -> String {
    format!("139{n:04}{ending}")
}

/// An ordinary number: answers with probability `sim.answer_rate`.
fn ordinary(n: u32) -> String {
    phone(n, "1234")
}

/// A username long enough that the greeting alone lasts ~16 s unscaled
/// (1.6 s at time_scale 0.1): the call is certainly still talking a while after it answered.
fn long_ticket(no: &str, phone: &str) -> Value {
    let mut t = ticket(no, phone);
    t["username"] = json!("欧阳".repeat(20));
    t
}

/// `yyyy-MM-dd HH:mm:ss` as seconds on a naive clock (only differences are used).
fn secs(t: &str) -> i64 {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("`{t}` is not yyyy-MM-dd HH:mm:ss: {e}"))
        .and_utc()
        .timestamp()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

/// The records of one phone, oldest first.
async fn records_of(s: &TestServer, phone: &str) -> Vec<Value> {
    let mut rows = s.records(json!({ "telephone": phone })).await["rows"].as_array().unwrap().clone();
    rows.sort_by(|a, b| {
        (str_of(a, "calloutTime"), str_of(a, "uuid")).cmp(&(str_of(b, "calloutTime"), str_of(b, "uuid")))
    });
    rows
}

async fn all_records(s: &TestServer) -> Vec<Value> {
    s.records(json!({})).await["rows"].as_array().unwrap().clone()
}

/// Polls one task until `done` holds for it.
async fn wait_task(s: &TestServer, batch_id: i64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let t = s.task(batch_id).await;
        if done(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for task {batch_id}: {t:#}");
        sleep(Duration::from_millis(20)).await;
    }
}

fn status(t: &Value) -> &str {
    str_of(t, "status")
}

fn ended(t: &Value) -> bool {
    ENDED.contains(&status(t))
}

async fn stop(s: &TestServer, batch_ids: &[i64]) -> Value {
    let v = s.post("/api/aicall/stopTasks", &json!({ "batchIds": batch_ids })).await;
    assert_eq!(v["code"], 0, "{v}");
    v
}

/// Every record of one phone must follow the previous one: one task, one call at a time.
fn assert_no_overlap(records: &[Value]) {
    for pair in records.windows(2) {
        assert!(
            str_of(&pair[1], "calloutTime") >= str_of(&pair[0], "callEndTime"),
            "two calls of one task overlap: {:#} and {:#}",
            pair[0],
            pair[1]
        );
    }
}

/// Calling hours that are open now on a clock `offset_hours` from UTC, from two hours
/// before to three after, so the test cannot run out of the window.
fn window_open_at_utc_offset(offset_hours: i64) -> CallingHours {
    let hour = (chrono::Utc::now().hour() as i64 + offset_hours).rem_euclid(24);
    let start = (hour - 2).rem_euclid(24);
    let end = (hour + 3).rem_euclid(24);
    CallingHours::try_from(format!("{start:02}:00-{end:02}:00")).unwrap()
}

/// A number that is always busy.
fn phone_busy(n: u32) -> String {
    phone(n, "4860")
}

fn no_retries(s: &mut Settings) {
    s.dialer.max_attempts = 1;
}

// ---- waking and claiming ----

#[tokio::test]
async fn a_created_task_is_dialed_at_once_not_at_the_next_poll() {
    let s = TestServer::start_with(|s| s.sim.answer_rate = 1.0).await;
    // A first call, ended: the dialer has found nothing more to call since and waits for
    // its next poll (2 s), or to be woken. So does it after each call below.
    let id = s.create(&[ticket("WAKE-FIRST", &ordinary(9))]).await[0];
    wait_task(&s, id, Duration::from_secs(10), ended).await;
    for n in 0..3 {
        let created = Instant::now();
        let id = s.create(&[ticket(&format!("WAKE-{n}"), &ordinary(n))]).await[0];
        wait_task(&s, id, Duration::from_secs(10), |t| t["callCount"] == 1).await;
        let took = created.elapsed();
        assert!(took < Duration::from_secs(1), "call {n} started {took:?} after the task was created");
        wait_task(&s, id, Duration::from_secs(10), ended).await;
    }
}

#[tokio::test]
async fn an_answered_call_completes_the_task_with_a_full_record() {
    let s = TestServer::start_with(|s| s.sim.answer_rate = 1.0).await;
    let before = chrono::Utc::now().timestamp_millis();
    let phone = ordinary(1);
    let id = s.create(&[ticket("ANS-1", &phone)]).await[0];
    let task = wait_task(&s, id, Duration::from_secs(10), ended).await;
    let after = chrono::Utc::now().timestamp_millis();

    assert_eq!(task["status"], "已完成", "{task:#}");
    assert_eq!(task["connected"], true);
    assert_eq!(task["callCount"], 1);
    assert_eq!(task["lastHangupCause"], "NORMAL_CLEARING:sip:200");
    let stop_time = task["stopTime"].as_i64().expect("stopTime is set once the task ends");
    assert!(task["createtime"].as_i64().unwrap() <= stop_time && stop_time <= after, "{task:#}");
    assert!(stop_time >= before);

    let records = records_of(&s, &phone).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "answeredTime",
            "callEndTime",
            "callType",
            "calloutTime",
            "dialogue",
            "extnum",
            "hangupCause",
            "intent",
            "telephone",
            "timeLen",
            "uuid",
            "wavFileUrl"
        ]
    );
    assert_eq!(r["callType"], "02");
    assert_eq!(r["telephone"], phone.as_str());
    assert_eq!(r["extnum"], Value::Null);
    assert_eq!(r["hangupCause"], "NORMAL_CLEARING:sip:200");
    let (callout, answered, end) =
        (str_of(r, "calloutTime"), str_of(r, "answeredTime"), str_of(r, "callEndTime"));
    assert!(callout <= answered && answered <= end, "{r:#}");
    assert_eq!(r["timeLen"].as_i64().unwrap(), secs(end) - secs(callout));

    // uuid: yyMMddHHmmss of the callout, node 01, counter from 10001.
    let uuid = str_of(r, "uuid");
    assert_eq!(uuid.len(), 19, "{uuid}");
    assert!(uuid.bytes().all(|b| b.is_ascii_digit()), "{uuid}");
    let stamp: String = callout[2..].chars().filter(char::is_ascii_digit).collect();
    assert_eq!(&uuid[..12], stamp, "uuid {uuid} vs calloutTime {callout}");
    assert_eq!(&uuid[12..14], "01");
    assert!(uuid[14..].parse::<u32>().unwrap() >= 10001);

    // The recording, at the anchor's path by the hour of the callout.
    let hour_dir = format!("{}/{}/{}/{}", &callout[0..4], &callout[5..7], &callout[8..10], &callout[11..13]);
    assert_eq!(r["wavFileUrl"], format!("/recordings/files?filename=ai_call/{hour_dir}/{uuid}.wav"));

    // The dialogue: what the agent said and heard, no system prompt.
    let dialogue = r["dialogue"].as_array().expect("dialogue is an array");
    assert!(!dialogue.is_empty());
    for turn in dialogue {
        let keys: HashSet<&str> = turn.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["role", "content"]), "{turn}");
        assert!(["assistant", "user"].contains(&str_of(turn, "role")), "{turn}");
        assert!(!str_of(turn, "content").is_empty(), "{turn}");
    }
    assert_eq!(dialogue[0]["role"], "assistant");
    assert!(
        str_of(&dialogue[0], "content").contains("张三"),
        "the greeting names the customer: {}",
        dialogue[0]
    );
    assert!(
        dialogue.iter().any(|t| str_of(t, "content").contains("线下优惠活动")),
        "the ticket content is read out: {dialogue:#?}"
    );
}

#[tokio::test]
async fn an_answered_call_that_lasts_has_time_len_from_callout_to_call_end() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 0.1;
    })
    .await;
    let phone = ordinary(2);
    let id = s.create(&[ticket("LONG-1", &phone)]).await[0];
    wait_task(&s, id, Duration::from_secs(30), ended).await;
    let r = &records_of(&s, &phone).await[0];
    let (callout, answered, end) =
        (str_of(r, "calloutTime"), str_of(r, "answeredTime"), str_of(r, "callEndTime"));
    assert!(callout <= answered && answered <= end, "{r:#}");
    let time_len = r["timeLen"].as_i64().unwrap();
    assert!(time_len >= 1, "a call of a few seconds has a timeLen: {r:#}");
    assert_eq!(time_len, secs(end) - secs(callout), "{r:#}");
}

#[tokio::test]
async fn call_uuids_are_unique_and_count_from_10001_within_each_second_with_the_node_id() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.dialer.node_id = NodeId("07".into());
    })
    .await;
    let tickets: Vec<Value> = (0..40).map(|n| ticket(&format!("UUID-{n}"), &ordinary(n))).collect();
    s.create(&tickets).await;
    s.wait_all_ended(Duration::from_secs(20)).await;
    let records = all_records(&s).await;
    assert_eq!(records.len(), 40);
    let mut by_second: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &records {
        let uuid = str_of(r, "uuid");
        assert_eq!(uuid.len(), 19, "{uuid}");
        assert_eq!(&uuid[12..14], "07", "{uuid}");
        let stamp: String = str_of(r, "calloutTime")[2..].chars().filter(char::is_ascii_digit).collect();
        assert_eq!(uuid[..12], stamp, "{r:#}");
        by_second.entry(uuid[..12].to_string()).or_default().push(uuid[14..].parse().unwrap());
    }
    for (second, mut counters) in by_second {
        counters.sort_unstable();
        let expected: Vec<u32> = (10001..10001 + counters.len() as u32).collect();
        assert_eq!(counters, expected, "uuids of second {second}");
    }
}

// ---- outcomes, retries and statuses ----

#[tokio::test]
async fn each_sim_test_number_ends_with_its_hangup_cause() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        no_retries(s);
    })
    .await;
    let cases = [
        (phone(1, "4860"), "USER_BUSY:sip:486"),
        (phone(2, "4800"), "NO_ANSWER:sip:480"),
        (phone(3, "4040"), "UNALLOCATED_NUMBER:sip:404"),
        (phone(4, "5030"), "NORMAL_TEMPORARY_FAILURE:sip:503"),
        (ordinary(5), "NORMAL_CLEARING:sip:200"),
    ];
    let tickets: Vec<Value> =
        cases.iter().enumerate().map(|(i, (p, _))| ticket(&format!("NUM-{i}"), p)).collect();
    s.create(&tickets).await;
    s.wait_all_ended(Duration::from_secs(10)).await;
    for (phone, cause) in &cases {
        let records = records_of(&s, phone).await;
        assert_eq!(records.len(), 1, "{phone}: {records:#?}");
        let r = &records[0];
        assert_eq!(r["hangupCause"], *cause, "{phone}: {r:#}");
        let task = &s.tasks(json!({ "phone": phone })).await["rows"][0];
        assert_eq!(task["lastHangupCause"], *cause, "{task:#}");
        assert_eq!(task["status"], "已完成", "{task:#}");
        if *cause == "NORMAL_CLEARING:sip:200" {
            continue;
        }
        // Never answered: nothing to listen to, no talk time.
        assert_eq!(r["answeredTime"], "", "{r:#}");
        assert_eq!(r["timeLen"], 0, "{r:#}");
        assert_eq!(r["wavFileUrl"], "", "{r:#}");
        assert_eq!(r["dialogue"], json!([]), "{r:#}");
        assert_eq!(task["connected"], false, "{task:#}");
    }
}

#[tokio::test]
async fn at_answer_rate_zero_an_ordinary_number_never_answers() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 0.0;
        no_retries(s);
    })
    .await;
    let phones: Vec<String> = (0..5).map(ordinary).collect();
    let tickets: Vec<Value> =
        phones.iter().enumerate().map(|(i, p)| ticket(&format!("RATE-{i}"), p)).collect();
    s.create(&tickets).await;
    for t in s.wait_all_ended(Duration::from_secs(10)).await {
        assert_eq!(t["connected"], false, "{t:#}");
        assert_eq!(t["lastHangupCause"], "NO_ANSWER:sip:480", "{t:#}");
    }
}

#[tokio::test]
async fn busy_no_answer_and_gateway_failures_are_retried_after_the_delay_up_to_max_attempts() {
    let s = TestServer::start_with(|s| {
        s.dialer.max_attempts = 3;
        s.dialer.retry_delay_secs = 1;
    })
    .await;
    let cases = [
        (phone(1, "4860"), "USER_BUSY:sip:486"),
        (phone(2, "4800"), "NO_ANSWER:sip:480"),
        (phone(3, "5030"), "NORMAL_TEMPORARY_FAILURE:sip:503"),
    ];
    let tickets: Vec<Value> =
        cases.iter().enumerate().map(|(i, (p, _))| ticket(&format!("RETRY-{i}"), p)).collect();
    let ids = s.create(&tickets).await;

    // After the first attempt each waits for its retry, and says why.
    for (id, (_, cause)) in ids.iter().zip(&cases) {
        let t =
            wait_task(&s, *id, Duration::from_secs(10), |t| t["callCount"] == 1 && status(t) == "等待重呼")
                .await;
        assert_eq!(t["lastHangupCause"], *cause, "{t:#}");
        assert_eq!(t["stopTime"], Value::Null, "{t:#}");
        assert_eq!(t["connected"], false);
    }

    let tasks = s.wait_all_ended(Duration::from_secs(20)).await;
    for (phone, cause) in &cases {
        let t = tasks.iter().find(|t| t["phone"] == phone.as_str()).unwrap();
        assert_eq!(t["status"], "已完成", "{t:#}");
        assert_eq!(t["callCount"], 3, "three attempts, then it gives up: {t:#}");
        assert_eq!(t["lastHangupCause"], *cause);
        assert_eq!(t["connected"], false);
        assert!(t["stopTime"].is_i64(), "{t:#}");

        let records = records_of(&s, phone).await;
        assert_eq!(records.len(), 3, "one record per attempt: {records:#?}");
        assert!(records.iter().all(|r| r["hangupCause"] == *cause), "{records:#?}");
        assert_no_overlap(&records);
        for pair in records.windows(2) {
            let gap = secs(str_of(&pair[1], "calloutTime")) - secs(str_of(&pair[0], "callEndTime"));
            assert!(gap >= 1, "retried before retry_delay_secs: {:#} then {:#}", pair[0], pair[1]);
        }
    }
}

#[tokio::test]
async fn an_unallocated_number_is_never_retried() {
    let s = TestServer::start_with(|s| {
        s.dialer.max_attempts = 3;
        s.dialer.retry_delay_secs = 1;
    })
    .await;
    let phone = phone(1, "4040");
    let id = s.create(&[ticket("UNALLOC-1", &phone)]).await[0];
    let t = wait_task(&s, id, Duration::from_secs(10), ended).await;
    assert_eq!(t["status"], "已完成", "{t:#}");
    assert_eq!(t["lastHangupCause"], "UNALLOCATED_NUMBER:sip:404");
    // A busy number created after it ended is retried after the same delay: once that
    // retry is made, a retry of the unallocated number would have been due before it
    // (due tasks are claimed in the order they fall due).
    let busy = s.create(&[ticket("UNALLOC-2", &phone_busy(2))]).await[0];
    wait_task(&s, busy, Duration::from_secs(10), |t| t["callCount"] == 2).await;
    let t = s.task(id).await;
    assert_eq!(t["callCount"], 1, "{t:#}");
    assert_eq!(records_of(&s, &phone).await.len(), 1);
}

/// Where a task may be in its life, in order; a sample must never go back.
fn progress(t: &Value) -> (i64, u8) {
    let count = t["callCount"].as_i64().unwrap();
    let phase = match status(t) {
        "待呼叫" => 0,
        "呼叫中" => 1,
        "等待重呼" => 2,
        "已完成" => 3,
        other => panic!("unexpected status {other}: {t:#}"),
    };
    (count, phase)
}

#[tokio::test]
async fn a_task_moves_from_waiting_through_calling_and_retry_to_completed_with_true_counts_at_every_step() {
    let max_attempts = 2;
    let s = TestServer::start_with(|s| {
        s.sim.time_scale = 0.2; // busy rings 0.1–0.3 s: long enough to see 呼叫中
        s.dialer.max_concurrent_calls = 1; // so the second task is seen waiting
        s.dialer.max_attempts = max_attempts;
        s.dialer.retry_delay_secs = 1;
    })
    .await;
    let phones = [phone(1, "4860"), phone(2, "4860")];
    let ids = s.create(&[ticket("LIFE-1", &phones[0]), ticket("LIFE-2", &phones[1])]).await;

    let mut last: HashMap<i64, (i64, u8)> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Records first: by the time the tasks are read, at least these have ended.
        let records = all_records(&s).await;
        let rows = s.tasks(json!({})).await["rows"].as_array().unwrap().clone();
        for t in &rows {
            let id = t["batchId"].as_i64().unwrap();
            let count = t["callCount"].as_i64().unwrap();
            let st = status(t);
            seen.insert(st.to_string());
            let recorded = records.iter().filter(|r| r["telephone"] == t["phone"]).count() as i64;
            let in_progress = i64::from(st == "呼叫中");
            assert!(recorded <= count - in_progress, "more records than ended attempts: {t:#}");
            assert!(count <= i64::from(max_attempts), "{t:#}");
            match st {
                "待呼叫" => {
                    assert_eq!(count, 0, "{t:#}");
                    assert_eq!(t["lastHangupCause"], Value::Null, "{t:#}");
                }
                "呼叫中" => assert!(count >= 1, "{t:#}"),
                "等待重呼" => {
                    assert!(count >= 1 && count < i64::from(max_attempts), "{t:#}");
                    assert_eq!(t["lastHangupCause"], "USER_BUSY:sip:486", "{t:#}");
                }
                "已完成" => {
                    assert_eq!(count, i64::from(max_attempts), "{t:#}");
                    assert_eq!(t["lastHangupCause"], "USER_BUSY:sip:486", "{t:#}");
                }
                other => panic!("unexpected status {other}: {t:#}"),
            }
            // stopTime only once the task has ended.
            assert_eq!(t["stopTime"].is_i64(), st == "已完成", "{t:#}");
            // The first attempt's cause is shown from its end on, also while the next one rings.
            if count >= 2 || st == "等待重呼" {
                assert_eq!(t["lastHangupCause"], "USER_BUSY:sip:486", "{t:#}");
            }
            let now = progress(t);
            if let Some(before) = last.insert(id, now) {
                assert!(now >= before, "task {id} went back from {before:?} to {now:?}: {t:#}");
            }
        }
        if rows.iter().all(ended) {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {rows:#?}");
        sleep(Duration::from_millis(15)).await;
    }
    for label in ["待呼叫", "呼叫中", "等待重呼", "已完成"] {
        assert!(seen.contains(label), "never saw {label}; saw {seen:?}");
    }
    for (id, phone) in ids.iter().zip(&phones) {
        let records = records_of(&s, phone).await;
        assert_eq!(records.len(), max_attempts as usize, "task {id}: {records:#?}");
        assert_no_overlap(&records);
    }
}

// ---- pacing ----

#[tokio::test]
async fn no_more_than_max_concurrent_calls_are_in_progress_at_once() {
    let max = 3;
    let s = TestServer::start_with(|s| {
        s.sim.time_scale = 0.2; // busy: 0.1–0.3 s a call
        s.dialer.max_concurrent_calls = max;
        no_retries(s);
    })
    .await;
    let tickets: Vec<Value> = (0..12).map(|n| ticket(&format!("CONC-{n}"), &phone(n, "4860"))).collect();
    s.create(&tickets).await;
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = s.tasks(json!({})).await["rows"].as_array().unwrap().clone();
        let calling = rows.iter().filter(|t| status(t) == "呼叫中").count();
        assert!(calling <= max as usize, "{calling} calls at once, limit {max}: {rows:#?}");
        most = most.max(calling);
        if rows.iter().all(ended) {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {rows:#?}");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, max as usize, "the dialer used every slot it had");
    assert_eq!(all_records(&s).await.len(), 12);
}

#[tokio::test]
async fn calls_start_no_faster_than_calls_per_second() {
    let cps = 5;
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.dialer.calls_per_second = cps;
    })
    .await;
    let tickets: Vec<Value> = (0..15).map(|n| ticket(&format!("CPS-{n}"), &ordinary(n))).collect();
    let created = Instant::now();
    s.create(&tickets).await;
    s.wait_all_ended(Duration::from_secs(30)).await;
    assert!(created.elapsed() >= Duration::from_secs(2), "15 calls at 5 a second take at least 2 s");

    let records = all_records(&s).await;
    assert_eq!(records.len(), 15);
    let mut per_second: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &records {
        *per_second.entry(str_of(r, "calloutTime")).or_default() += 1;
        // The uuid's counter says the same: the n-th call of its second.
        let counter: u32 = str_of(r, "uuid")[14..].parse().unwrap();
        assert!(counter <= 10000 + cps, "{r:#}");
    }
    for (second, n) in &per_second {
        assert!(*n <= cps, "{n} calls started in {second}, limit {cps}: {per_second:?}");
    }
    let first = secs(per_second.keys().next().unwrap());
    let last = secs(per_second.keys().last().unwrap());
    assert!(last - first >= 2, "{per_second:?}");
}

#[tokio::test]
async fn outside_calling_hours_tasks_wait_and_are_not_dialed() {
    // Shanghai is UTC+8: a window around the hour in UTC+2 is closed in Shanghai now.
    let s = TestServer::start_with(|s| s.dialer.calling_hours = window_open_at_utc_offset(2)).await;
    // The same tasks on a server whose window is open: once it has called them, a dialer
    // that did not keep to its hours would have called them too.
    let open = TestServer::start_with(|s| s.dialer.calling_hours = window_open_at_utc_offset(8)).await;
    let tickets = [ticket("HOURS-1", &ordinary(1)), ticket("HOURS-2", &phone(2, "4860"))];
    let ids = s.create(&tickets).await;
    open.create(&tickets).await;
    open.wait_tasks(Duration::from_secs(10), |rows| rows.iter().all(|t| t["callCount"] != 0)).await;
    for id in ids {
        let t = s.task(id).await;
        assert_eq!(t["status"], "待呼叫", "{t:#}");
        assert_eq!(t["callCount"], 0, "{t:#}");
    }
    assert!(all_records(&s).await.is_empty());
}

#[tokio::test]
async fn calling_hours_are_read_in_the_configured_timezone() {
    // Open now in UTC (and closed in Shanghai, as the test above shows).
    let hours = window_open_at_utc_offset(0);
    let utc = TestServer::start_with(|s| {
        s.timezone = Timezone(chrono_tz::UTC);
        s.dialer.calling_hours = hours;
        s.sim.answer_rate = 1.0;
    })
    .await;
    let shanghai = TestServer::start_with(|s| s.dialer.calling_hours = hours).await;
    let closed = shanghai.create(&[ticket("TZ-2", &ordinary(2))]).await[0];
    let id = utc.create(&[ticket("TZ-1", &ordinary(1))]).await[0];
    let t = wait_task(&utc, id, Duration::from_secs(10), ended).await;
    assert_eq!(t["status"], "已完成", "{t:#}");
    // The task created first, on the same window read in Shanghai, is still waiting.
    assert_eq!(shanghai.task(closed).await["status"], "待呼叫", "the same window is closed in Asia/Shanghai");
}

// ---- stopTasks ----

#[tokio::test]
async fn a_stopped_waiting_task_is_never_dialed() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 0.1;
        s.dialer.max_concurrent_calls = 1;
    })
    .await;
    // The first call holds the only slot for a few seconds; the second task waits.
    let ids = s.create(&[long_ticket("WAIT-1", &ordinary(1)), ticket("WAIT-2", &ordinary(2))]).await;
    wait_task(&s, ids[0], Duration::from_secs(10), |t| status(t) == "呼叫中").await;
    assert_eq!(s.task(ids[1]).await["status"], "待呼叫");
    let v = stop(&s, &[ids[1]]).await;
    assert!(str_of(&v, "msg").contains('1'), "{v}");

    let stopped = s.task(ids[1]).await;
    assert_eq!(stopped["status"], "已停止", "{stopped:#}");
    assert!(stopped["stopTime"].is_i64(), "{stopped:#}");

    // The slot frees up, and the stopped task still is not called: a task created after
    // it, due later, takes the slot (due tasks are claimed in the order they fall due).
    wait_task(&s, ids[0], Duration::from_secs(30), ended).await;
    let later = s.create(&[ticket("WAIT-3", &ordinary(3))]).await[0];
    wait_task(&s, later, Duration::from_secs(10), |t| t["callCount"] == 1).await;
    let after = s.task(ids[1]).await;
    assert_eq!(after["status"], "已停止", "{after:#}");
    assert_eq!(after["callCount"], 0, "{after:#}");
    assert_eq!(after["stopTime"], stopped["stopTime"], "stopTime does not move");
    assert!(records_of(&s, &ordinary(2)).await.is_empty());
}

#[tokio::test]
async fn a_task_waiting_for_its_retry_can_be_stopped_and_is_not_called_again() {
    let s = TestServer::start_with(|s| s.dialer.retry_delay_secs = 1).await;
    let phone = phone(1, "4860");
    let id = s.create(&[ticket("RSTOP-1", &phone)]).await[0];
    wait_task(&s, id, Duration::from_secs(10), |t| status(t) == "等待重呼").await;
    stop(&s, &[id]).await;
    // A busy number created after the stop is retried after the same delay: by then the
    // stopped task's retry would have been due, and claimed first.
    let later = s.create(&[ticket("RSTOP-2", &phone_busy(2))]).await[0];
    wait_task(&s, later, Duration::from_secs(10), |t| t["callCount"] == 2).await;
    let t = s.task(id).await;
    assert_eq!(t["status"], "已停止", "{t:#}");
    assert_eq!(t["callCount"], 1, "{t:#}");
    assert_eq!(t["lastHangupCause"], "USER_BUSY:sip:486");
    assert_eq!(records_of(&s, &phone).await.len(), 1);
}

/// Stops `id` and returns how long it took until the task shows 已停止 and its record exists.
async fn stop_and_time_hang_up(s: &TestServer, id: i64, phone: &str) -> (Duration, Value, Value) {
    let asked = Instant::now();
    stop(s, &[id]).await;
    let deadline = asked + Duration::from_secs(10);
    loop {
        let t = s.task(id).await;
        let records = records_of(s, phone).await;
        if status(&t) == "已停止" && !records.is_empty() {
            return (asked.elapsed(), t, records.last().unwrap().clone());
        }
        assert!(Instant::now() < deadline, "the call was not hung up: {t:#}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stopping_a_ringing_call_hangs_it_up_within_a_second() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 1.0; // rings 2–8 s
    })
    .await;
    let phone = ordinary(1);
    let id = s.create(&[ticket("RING-1", &phone)]).await[0];
    // Claimed, so dialing: it rings for seconds from here.
    wait_task(&s, id, Duration::from_secs(10), |t| status(t) == "呼叫中").await;

    let (took, t, r) = stop_and_time_hang_up(&s, id, &phone).await;
    assert!(took < Duration::from_millis(1500), "hung up {took:?} after stopTasks");
    assert_eq!(t["callCount"], 1);
    assert_eq!(t["connected"], false);
    assert_eq!(t["lastHangupCause"], "MANAGER_REQUEST:null");
    assert!(t["stopTime"].is_i64(), "{t:#}");
    assert_eq!(r["hangupCause"], "MANAGER_REQUEST:null", "{r:#}");
    assert_eq!(r["answeredTime"], "");
    assert_eq!(r["timeLen"], 0);
    assert_eq!(r["wavFileUrl"], "");
    assert_eq!(r["dialogue"], json!([]));
}

#[tokio::test]
async fn stopping_an_answered_call_hangs_up_within_a_second_and_keeps_what_was_said() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 0.1; // rings 0.2–0.8 s, then a greeting of 1.6 s
    })
    .await;
    let phone = ordinary(1);
    let id = s.create(&[long_ticket("TALK-1", &phone)]).await[0];
    // Answered, and the greeting (1.6 s) under way.
    until(Duration::from_secs(10), "the call to be answered", async || answered(&s.db, id).then_some(()))
        .await;

    let (took, t, r) = stop_and_time_hang_up(&s, id, &phone).await;
    assert!(took < Duration::from_millis(1500), "hung up {took:?} after stopTasks");
    assert_eq!(t["connected"], true, "{t:#}");
    assert_eq!(t["callCount"], 1);
    assert_eq!(r["hangupCause"], "MANAGER_REQUEST:null", "{r:#}");
    assert_ne!(r["answeredTime"], "", "{r:#}");
    let dialogue = r["dialogue"].as_array().unwrap();
    assert!(!dialogue.is_empty() && dialogue[0]["role"] == "assistant", "{r:#}");
    let url = str_of(&r, "wavFileUrl");
    assert!(url.ends_with(&format!("{}.wav", str_of(&r, "uuid"))), "{r:#}");
    let res = s.get(url).await;
    assert_eq!(res.status(), 200, "the recording of a stopped call is kept");

    // Stopping it again changes nothing.
    stop(&s, &[id]).await;
    assert_eq!(s.task(id).await, t);
}

// ---- time limits ----

#[tokio::test]
async fn a_call_longer_than_max_call_secs_is_hung_up_with_allotted_timeout() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 0.1;
        s.dialer.max_call_secs = 1;
    })
    .await;
    let phone = ordinary(1);
    let id = s.create(&[long_ticket("MAX-1", &phone)]).await[0];
    let t = wait_task(&s, id, Duration::from_secs(10), ended).await;
    assert_eq!(t["status"], "已完成", "{t:#}");
    assert_eq!(t["connected"], true);
    assert_eq!(t["callCount"], 1, "an answered call is not retried");
    assert_eq!(t["lastHangupCause"], "ALLOTTED_TIMEOUT:null");
    let r = &records_of(&s, &phone).await[0];
    assert_eq!(r["hangupCause"], "ALLOTTED_TIMEOUT:null", "{r:#}");
    let talk = secs(str_of(r, "callEndTime")) - secs(str_of(r, "answeredTime"));
    assert!((1..=2).contains(&talk), "talked {talk} s with max_call_secs 1: {r:#}");
    assert!(r["timeLen"].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn ringing_longer_than_ring_timeout_gives_up_with_no_answer() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 0.0;
        s.sim.time_scale = 1.0; // nobody answers: it would ring 25–40 s
        s.dialer.ring_timeout_secs = 1;
        no_retries(s);
    })
    .await;
    let phone = ordinary(1);
    let created = Instant::now();
    let id = s.create(&[ticket("RINGOUT-1", &phone)]).await[0];
    let t = wait_task(&s, id, Duration::from_secs(15), ended).await;
    assert!(created.elapsed() < Duration::from_secs(10), "gave up after {:?}", created.elapsed());
    assert_eq!(t["lastHangupCause"], "NO_ANSWER:sip:480", "{t:#}");
    let r = &records_of(&s, &phone).await[0];
    assert_eq!(r["hangupCause"], "NO_ANSWER:sip:480");
    let rang = secs(str_of(r, "callEndTime")) - secs(str_of(r, "calloutTime"));
    assert!((1..=3).contains(&rang), "rang {rang} s with ring_timeout_secs 1: {r:#}");
    assert_eq!(r["timeLen"], 0);
}

// ---- shutdown ----

#[tokio::test]
async fn graceful_shutdown_lets_calls_in_progress_finish_and_starts_no_new_ones() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 0.05; // a call lasts a second or two
        s.dialer.max_concurrent_calls = 2;
        s.dialer.shutdown_grace_secs = 20;
    })
    .await;
    let tickets: Vec<Value> = (0..6).map(|n| ticket(&format!("GRACE-{n}"), &ordinary(n))).collect();
    s.create(&tickets).await;
    s.wait_tasks(Duration::from_secs(10), |rows| rows.iter().filter(|t| status(t) == "呼叫中").count() == 2)
        .await;
    let (mut settings, db, dir) = s.stop().await;

    // Look at what is left with the dialer off.
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    let rows = s.tasks(json!({})).await["rows"].as_array().unwrap().clone();
    assert!(rows.iter().all(|t| status(t) != "呼叫中"), "{rows:#?}");
    let records = all_records(&s).await;
    assert!(!records.is_empty());
    for r in &records {
        assert_ne!(r["hangupCause"], "SYSTEM_SHUTDOWN:null", "a call was cut within the grace period: {r:#}");
    }
    let waiting = rows.iter().filter(|t| status(t) == "待呼叫").count();
    assert!(waiting >= 3, "calls were started after the shutdown began: {rows:#?}");
    for t in &rows {
        let count = t["callCount"].as_i64().unwrap();
        let recorded = records.iter().filter(|r| r["telephone"] == t["phone"]).count() as i64;
        assert_eq!(count, recorded, "{t:#}");
        if status(t) == "待呼叫" {
            assert_eq!(count, 0, "{t:#}");
        }
    }
}

#[tokio::test]
async fn shutdown_hangs_up_calls_left_after_the_grace_period_and_gives_their_tasks_back() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 1.0; // rings for seconds, talks for longer
        s.dialer.shutdown_grace_secs = 1;
        s.dialer.max_attempts = 3;
    })
    .await;
    let phones = [ordinary(1), ordinary(2)];
    let ids = s.create(&[ticket("CUT-1", &phones[0]), ticket("CUT-2", &phones[1])]).await;
    s.wait_tasks(Duration::from_secs(10), |rows| rows.iter().all(|t| status(t) == "呼叫中")).await;
    let asked = Instant::now();
    let (mut settings, db, dir) = s.stop().await;
    assert!(asked.elapsed() >= Duration::from_secs(1), "calls had shutdown_grace_secs to end");

    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    for (id, phone) in ids.iter().zip(&phones) {
        let t = s.task(*id).await;
        assert_eq!(t["status"], "等待重呼", "{t:#}");
        assert_eq!(t["callCount"], 1, "{t:#}");
        assert_eq!(t["lastHangupCause"], "SYSTEM_SHUTDOWN:null", "{t:#}");
        assert_eq!(t["stopTime"], Value::Null, "{t:#}");
        let records = records_of(&s, phone).await;
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(records[0]["hangupCause"], "SYSTEM_SHUTDOWN:null");
    }

    // The next start calls them again.
    let (mut settings, db, dir) = s.stop().await;
    settings.dialer.enabled = true;
    settings.sim.time_scale = 0.0;
    let s = TestServer::start_on(settings, db, dir).await;
    let rows = s.wait_all_ended(Duration::from_secs(10)).await;
    for t in &rows {
        assert_eq!(t["status"], "已完成", "{t:#}");
        assert_eq!(t["callCount"], 2, "{t:#}");
        assert_eq!(t["connected"], true, "{t:#}");
    }
    for phone in &phones {
        let records = records_of(&s, phone).await;
        assert_eq!(records.len(), 2, "{records:#?}");
        assert_no_overlap(&records);
    }
}

#[tokio::test]
async fn a_call_cut_by_shutdown_on_its_last_attempt_ends_the_task() {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = 1.0;
        s.dialer.shutdown_grace_secs = 1;
        no_retries(s);
    })
    .await;
    let id = s.create(&[ticket("LASTCUT-1", &ordinary(1))]).await[0];
    wait_task(&s, id, Duration::from_secs(10), |t| status(t) == "呼叫中").await;
    let (mut settings, db, dir) = s.stop().await;
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    let t = s.task(id).await;
    assert_eq!(t["status"], "已完成", "{t:#}");
    assert_eq!(t["lastHangupCause"], "SYSTEM_SHUTDOWN:null");
    assert!(t["stopTime"].is_i64(), "{t:#}");
}

/// The server binary on a SQLite file of its own, for its log.
mod own_database {
    use crate::common::BinaryServer;

    use super::*;

    async fn post(server: &BinaryServer, path: &str, body: Value) -> Value {
        let res = reqwest::Client::new().post(server.url(path)).json(&body).send().await.unwrap();
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], 0, "{path}: {v}");
        v
    }

    #[tokio::test]
    async fn each_call_attempt_logs_one_line_with_its_fields_and_the_phone_only_masked() {
        let server = BinaryServer::start(&[
            ("LOG__FORMAT", "json".to_string()),
            ("SIM__TIME_SCALE", "0".into()),
            ("SIM__ANSWER_RATE", "1.0".into()),
            ("DIALER__MAX_ATTEMPTS", "3".into()),
            ("DIALER__RETRY_DELAY_SECS", "0".into()),
        ])
        .await;
        // Answered, busy (three attempts) and unallocated.
        let phones =
            [("13912345678", "139****5678"), ("13912344860", "139****4860"), ("13912344040", "139****4040")];
        let tickets: Vec<Value> =
            phones.iter().enumerate().map(|(i, (phone, _))| ticket(&format!("LOG{i}"), phone)).collect();
        post(&server, "/api/aicall/createTasks", json!(tickets)).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let tasks = loop {
            let v = post(&server, "/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 10})).await;
            let rows = v["rows"].as_array().unwrap().clone();
            if rows.iter().all(ended) {
                break rows;
            }
            assert!(Instant::now() < deadline, "tasks did not end: {rows:#?}");
            sleep(Duration::from_millis(50)).await;
        };
        let records =
            post(&server, "/api/aicall/records/list", json!({"callType": "02", "pageSize": 100})).await;
        let records = records["rows"].as_array().unwrap().clone();
        assert_eq!(records.len(), 5, "1 + 3 + 1 attempts: {records:#?}");
        let log = server.stop();

        let lines: Vec<Value> =
            log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let attempts: Vec<&Value> =
            lines.iter().filter(|l| l["fields"]["message"] == "call ended").map(|l| &l["fields"]).collect();
        assert_eq!(attempts.len(), records.len(), "one line per attempt: {attempts:#?}");
        for record in &records {
            let of_it: Vec<&&Value> = attempts.iter().filter(|a| a["uuid"] == record["uuid"]).collect();
            assert_eq!(of_it.len(), 1, "{record}: {attempts:#?}");
            let line = of_it[0];
            let task = tasks.iter().find(|t| t["phone"] == record["telephone"]).unwrap();
            let (_, masked) = phones.iter().find(|(p, _)| *p == record["telephone"]).unwrap();
            assert_eq!(line["batch_id"], task["batchId"], "{line}");
            assert_eq!(line["phone"], *masked, "{line}");
            assert_eq!(line["cause"], record["hangupCause"], "{line}");
            // The task's status after this attempt: only the last one ends it.
            let attempt = line["attempt"].as_i64().unwrap();
            let last = task["callCount"].as_i64().unwrap();
            assert!((1..=last).contains(&attempt), "{line}");
            let status = if attempt == last { str_of(task, "status") } else { "等待重呼" };
            assert_eq!(line["status"], status, "{line}");
        }
        for (phone, _) in phones {
            assert!(!log.contains(phone), "{phone} in full in the log:\n{log}");
        }
    }
}
