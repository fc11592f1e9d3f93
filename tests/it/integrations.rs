//! What ticketing systems and PBXs plug into: webhooks, imported and FreeSWITCH call
//! records, the do-not-call list and the per-number daily cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestServer, ticket};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// Each delivery a receiver took: its headers and body.
type Deliveries = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on port 0 that answers 500 to the first `fail_first` deliveries.
/// With `hang_after` set, it takes that many more and then holds every further request
/// open without an answer (kept in `held`), as a receiver stuck mid-request does.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Deliveries,
    held: Deliveries,
    tries: Arc<Mutex<usize>>,
    /// The event id of every request that came, answered or not.
    tried: Arc<Mutex<Vec<String>>>,
    failing: Arc<Mutex<usize>>,
    hang_after: Arc<Mutex<Option<usize>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let r = Receiver {
            url: String::new(),
            got: Arc::default(),
            held: Arc::default(),
            tries: Arc::default(),
            tried: Arc::default(),
            failing: Arc::new(Mutex::new(fail_first)),
            hang_after: Arc::default(),
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let r = state.clone();
                async move {
                    *r.tries.lock().unwrap() += 1;
                    let id = headers["x-callcenter-event-id"].to_str().unwrap().to_string();
                    r.tried.lock().unwrap().push(id);
                    {
                        let mut failing = r.failing.lock().unwrap();
                        if *failing > 0 {
                            *failing -= 1;
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                    }
                    let hang =
                        matches!(*r.hang_after.lock().unwrap(), Some(n) if r.got.lock().unwrap().len() >= n);
                    if hang {
                        r.held.lock().unwrap().push((headers, body.to_vec()));
                        return std::future::pending().await;
                    }
                    r.got.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, ..r }
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
    }

    pub(crate) async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} events: {events:#?}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let ts = headers["x-callcenter-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    headers["x-callcenter-signature"] == format!("sha256={hex}").as_str()
}

#[tokio::test]
async fn webhooks_are_signed_retried_after_failures_and_carry_the_list_rows() {
    let hook = Receiver::start(2).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        c.sim.answer_rate = 1.0;
        c.webhook.url = url;
        c.webhook.secret = "s3cret".into();
    })
    .await;
    let ids = s.create(&[ticket("W1", "13900000001"), ticket("W2", "13900004040")]).await;
    // Two call.ended and two task.ended, despite the receiver failing the first two tries.
    let events = hook.wait_for(4, Duration::from_secs(20)).await;
    assert!(*hook.tries.lock().unwrap() >= 6, "the failed tries were retried");
    for (headers, body) in hook.got.lock().unwrap().iter() {
        assert!(verify("s3cret", headers, body), "bad signature");
        assert!(!verify("other", headers, body));
    }
    let of = |kind: &str, id: i64| {
        events
            .iter()
            .find(|e| e["type"] == kind && e["task"]["batchId"] == id)
            .unwrap_or_else(|| panic!("no {kind} for {id}"))
            .clone()
    };
    let answered = of("call.ended", ids[0]);
    let listed = s.records(json!({"uuid": answered["record"]["uuid"]})).await["rows"][0].clone();
    assert_eq!(answered["record"], listed, "the record is exactly the records/list row");
    assert_eq!(answered["task"]["status"], "已完成");
    assert_eq!(answered["task"]["connected"], true);
    let task_row = s.task(ids[0]).await;
    assert_eq!(of("task.ended", ids[0])["task"], task_row, "the task is exactly the calltask/list row");
    assert_eq!(of("task.ended", ids[1])["task"]["lastHangupCause"], "UNALLOCATED_NUMBER:sip:404");
    assert_eq!(of("task.ended", ids[1])["record"], Value::Null);
    let event_ids: std::collections::HashSet<_> =
        events.iter().map(|e| e["eventId"].as_str().unwrap().to_string()).collect();
    assert_eq!(event_ids.len(), 4, "each event has its own id");
    // Nothing is left to deliver.
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("callcenter_webhook_backlog 0"), "{metrics}");
}

#[tokio::test]
async fn call_ended_carries_the_time_the_agent_took_to_answer_the_callee_beside_the_record() {
    let hook = Receiver::start(0).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        c.sim.answer_rate = 1.0;
        c.webhook.url = url;
    })
    .await;
    // Callees of several kinds (the sim's seed draws them), and a number that fails.
    let mut tickets: Vec<Value> =
        (0..8).map(|i| ticket(&format!("L{i}"), &format!("1390000100{i}"))).collect();
    tickets.push(ticket("L9", "13900004040"));
    let ids = s.create(&tickets).await;
    let events = hook.wait_for(2 * tickets.len(), Duration::from_secs(20)).await;
    let latency = |e: &Value| {
        let field = e.as_object().unwrap().get("turnLatencyMs");
        field.unwrap_or_else(|| panic!("every event has turnLatencyMs: {e}")).clone()
    };
    let mut measured = 0;
    for e in &events {
        if e["type"] == "task.ended" {
            assert_eq!(latency(e), Value::Null, "{e}");
            continue;
        }
        // A line of the agent's after one of the callee's answered a turn.
        let dialogue = e["record"]["dialogue"].as_array().unwrap();
        let answered = dialogue.windows(2).any(|w| w[0]["role"] == "user" && w[1]["role"] == "assistant");
        if answered {
            assert!(latency(e).as_u64().is_some(), "a whole number of milliseconds: {e}");
            measured += 1;
        } else {
            assert_eq!(latency(e), Value::Null, "{e}");
        }
        let listed = s.records(json!({"uuid": e["record"]["uuid"]})).await["rows"][0].clone();
        assert_eq!(e["record"], listed, "the record is still exactly the records/list row");
        assert!(listed.get("turnLatencyMs").is_none(), "records/list does not show it: {listed}");
    }
    assert!(measured > 0, "some callee was answered: {events:#?}");
    let failed = events.iter().find(|e| e["type"] == "call.ended" && e["task"]["batchId"] == ids[8]);
    assert_eq!(latency(failed.expect("the failed call's call.ended")), Value::Null);
}

#[tokio::test]
async fn a_do_not_call_number_is_never_dialed_and_its_task_ends_blocked() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    let v = s
        .post("/api/aicall/dnc/add", &json!({"phones": ["13900000009", "13900000008"], "reason": "客户投诉"}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["count"], 2);
    let again = s.post("/api/aicall/dnc/add", &json!({"phones": ["13900000009"]})).await;
    assert_eq!(again["data"]["count"], 0, "adding twice is harmless");
    let ids = s.create(&[ticket("D1", "13900000009"), ticket("D2", "13900000001")]).await;
    let rows = s.wait_all_ended(Duration::from_secs(10)).await;
    let blocked = rows.iter().find(|t| t["batchId"] == ids[0]).unwrap();
    assert_eq!(blocked["status"], "已拦截");
    assert_eq!(blocked["callCount"], 0);
    assert!(blocked["stopTime"].is_i64());
    assert_eq!(s.records(json!({"telephone": "13900000009"})).await["total"], 0, "never dialed");
    assert_eq!(s.records(json!({"telephone": "13900000001"})).await["total"], 1);

    let list = s.post("/api/aicall/dnc/list", &json!({"pageNum": 1, "pageSize": 10})).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["rows"][0]["reason"], "客户投诉");
    let one = s.post("/api/aicall/dnc/list", &json!({"phone": "13900000008"})).await;
    assert_eq!(one["total"], 1);
    let removed = s.post("/api/aicall/dnc/remove", &json!({"phones": ["13900000009", "13900000007"]})).await;
    assert_eq!(removed["data"]["count"], 1);
    assert_eq!(s.post("/api/aicall/dnc/list", &json!({})).await["total"], 1);
    // Removed from the list: a new task for the number is dialed again.
    s.create(&[ticket("D3", "13900000009")]).await;
    s.wait_all_ended(Duration::from_secs(10)).await;
    assert_eq!(s.records(json!({"telephone": "13900000009"})).await["total"], 1);

    for (body, needle) in [
        (json!({"phones": []}), "phones 不能为空"),
        (json!({"phones": ["12ab"]}), "phones 第 1 项"),
        (json!({"phones": "13900000009"}), "phones"),
    ] {
        let v = s.post("/api/aicall/dnc/add", &body).await;
        assert_eq!(v["code"], 405, "{body}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{v}");
    }
}

#[tokio::test]
async fn the_daily_cap_holds_further_tasks_for_a_number_until_tomorrow() {
    let s = TestServer::start_with(|c| {
        c.sim.answer_rate = 1.0;
        c.dialer.max_calls_per_number_per_day = 1;
    })
    .await;
    let ids = s
        .create(&[ticket("C1", "13900000001"), ticket("C2", "13900000001"), ticket("C3", "13900000002")])
        .await;
    s.wait_tasks(Duration::from_secs(10), |rows| {
        rows.iter().filter(|t| t["status"] == "已完成").count() == 2
    })
    .await;
    // A later task is dialed and ends: the dialer has claimed again since, and the held
    // task was still not called.
    let later = s.create(&[ticket("C4", "13900000003")]).await[0];
    s.wait_tasks(Duration::from_secs(10), |rows| {
        rows.iter().any(|t| t["batchId"] == later && t["status"] == "已完成")
    })
    .await;
    assert_eq!(s.records(json!({"telephone": "13900000001"})).await["total"], 1, "one call a day");
    let held = s.task(ids[1]).await;
    assert_eq!(held["status"], "待呼叫", "{held}");
    assert_eq!(held["callCount"], 0, "no attempt spent");
    assert_eq!(s.task(ids[2]).await["status"], "已完成", "other numbers are not held");
}

#[tokio::test]
async fn many_tasks_to_one_number_claimed_in_one_batch_get_no_more_calls_than_the_daily_cap() {
    const CAP: usize = 3;
    const TASKS: usize = 20;
    const PHONE: &str = "13900000001";
    let s = TestServer::start_with(|c| {
        c.sim.answer_rate = 1.0;
        c.dialer.max_calls_per_number_per_day = CAP as u32;
    })
    .await;
    // One request: the tasks are due together, so one claim sees them all.
    let mut tickets: Vec<Value> = (0..TASKS).map(|i| ticket(&format!("CAP{i}"), PHONE)).collect();
    tickets.push(ticket("OTHER", "13900000002"));
    let ids = s.create(&tickets).await;
    let other = ids[TASKS];
    s.wait_tasks(Duration::from_secs(10), |rows| {
        let done = rows.iter().filter(|t| t["phone"] == PHONE && t["status"] == "已完成").count();
        done == CAP && rows.iter().any(|t| t["batchId"] == other && t["status"] == "已完成")
    })
    .await;
    // A later task for another number is dialed and ends: the dialer has claimed again
    // since, and still called the capped number no more.
    let later = s.create(&[ticket("LATER", "13900000003")]).await[0];
    let rows = s
        .wait_tasks(Duration::from_secs(10), |rows| {
            rows.iter().any(|t| t["batchId"] == later && t["status"] == "已完成")
        })
        .await;
    let records = s.records(json!({"telephone": PHONE})).await;
    assert_eq!(records["total"], CAP, "dialed as often as the cap allows, and no more: {records:#}");
    let capped: Vec<&Value> = rows.iter().filter(|t| t["phone"] == PHONE).collect();
    assert_eq!(capped.len(), TASKS);
    let (called, held): (Vec<&Value>, Vec<&Value>) = capped.into_iter().partition(|t| t["callCount"] != 0);
    assert_eq!(called.len(), CAP, "{called:#?}");
    assert!(called.iter().all(|t| t["status"] == "已完成"), "{called:#?}");
    // The rest wait for tomorrow without an attempt spent.
    assert_eq!(held.len(), TASKS - CAP);
    for t in held {
        assert_eq!(t["status"], "待呼叫", "{t}");
        assert_eq!(t["lastHangupCause"], Value::Null, "{t}");
        assert_eq!(t["stopTime"], Value::Null, "{t}");
    }
}

fn imported(uuid: &str, call_type: &str) -> Value {
    json!({
        "uuid": uuid, "telephone": "18188888888", "callType": call_type,
        "calloutTime": "2025-08-16 21:11:30", "answeredTime": "2025-08-16 21:11:31",
        "callEndTime": "2025-08-16 21:11:54", "hangupCause": "NORMAL_CLEARING:sip:200",
        "wavFileUrl": "http://pbx.example.com/rec/a.wav",
        "dialogue": [{"role": "user", "content": "呃，学校地址是在哪里？"}], "extnum": "8001", "timeLen": 999
    })
}

#[tokio::test]
async fn inbound_and_manual_records_are_imported_once_and_listed_by_call_type() {
    let s = TestServer::start().await;
    let v =
        s.post("/api/aicall/records/import", &json!([imported("IN-1", "01"), imported("MAN-1", "03")])).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"], json!({"imported": 2, "skipped": 0}));
    let again = s.post("/api/aicall/records/import", &json!([imported("IN-1", "01")])).await;
    assert_eq!(again["data"], json!({"imported": 0, "skipped": 1}), "idempotent by uuid");

    let inbound = s.records(json!({"callType": "01"})).await;
    assert_eq!(inbound["total"], 1);
    assert_eq!(
        inbound["rows"][0],
        json!({"uuid": "IN-1", "telephone": "18188888888", "callType": "01",
               "calloutTime": "2025-08-16 21:11:30", "answeredTime": "2025-08-16 21:11:31",
               "callEndTime": "2025-08-16 21:11:54", "hangupCause": "NORMAL_CLEARING:sip:200",
               "wavFileUrl": "http://pbx.example.com/rec/a.wav",
               "dialogue": [{"role": "user", "content": "呃，学校地址是在哪里？"}], "extnum": "8001", "timeLen": 24,
               "intent": ""})
    );
    assert_eq!(s.records(json!({"callType": "03", "extnum": "8001"})).await["total"], 1);
    assert_eq!(s.records(json!({"callType": "02"})).await["total"], 0);
    let v: Value = s.get("/api/aicall/calltype/uuid?uuid=MAN-1").await.json().await.unwrap();
    assert_eq!(v["data"]["callType"], "03");

    // All or nothing, with the row and field named.
    let mut bad = imported("IN-3", "01");
    bad["calloutTime"] = json!("2025-13-45 25:00:00");
    for (rows, needle) in [
        (json!([imported("IN-2", "01"), bad]), "第 2 条记录（下标 1）的 calloutTime"),
        (json!([imported("IN-4", "02")]), "callType 02"),
        (json!([imported("IN-5", "01"), imported("IN-5", "03")]), "uuid 与前面的记录重复"),
        (json!([]), "不能为空"),
    ] {
        let v = s.post("/api/aicall/records/import", &rows).await;
        assert_eq!(v["code"], 405, "{rows}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{v}");
    }
    assert_eq!(
        s.records(json!({"callType": "01"})).await["total"],
        1,
        "nothing of a rejected import was stored"
    );
}

/// A CDR as mod_json_cdr posts it (values url-encoded, as its default `encode-values`).
fn freeswitch_cdr(uuid: &str, caller: &str, dest: &str, answered: bool, cause: &str, sip: &str) -> Value {
    json!({
        "core-uuid": "9c1b3a4e-0f6e-4b0b-8d1c-2f7c8a1d9e00",
        "switchname": "pbx01",
        "channel_data": {"state": "CS_REPORTING", "direction": "inbound", "state_number": "11"},
        "variables": {
            "uuid": uuid,
            "direction": "inbound",
            "caller_id_number": caller,
            "destination_number": dest,
            "start_stamp": "2025-08-16%2021%3A11%3A59",
            "start_epoch": "1755349919",
            "start_uepoch": "1755349919123456",
            "answer_epoch": if answered { "1755349921" } else { "0" },
            "answer_uepoch": if answered { "1755349921000000" } else { "0" },
            "end_epoch": "1755349944",
            "end_uepoch": "1755349944500000",
            "hangup_cause": cause,
            "sip_term_status": sip,
            "billsec": if answered { "23" } else { "0" },
            "record_path": "%2Fvar%2Flib%2Ffreeswitch%2Frecordings%2Fa.wav"
        },
        "callflow": [{"profile_index": "1", "caller_profile": {"username": caller, "destination_number": dest}}]
    })
}

#[tokio::test]
async fn freeswitch_cdrs_become_inbound_and_manual_records() {
    let s = TestServer::start().await;
    let inbound = freeswitch_cdr(
        "2f1c8d3a-5b6e-4f70-9a81-0c2d3e4f5a6b",
        "18188888888",
        "8001",
        true,
        "NORMAL_CLEARING",
        "200",
    );
    let v = s.post("/api/cdr/freeswitch", &inbound).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["callType"], "01");
    // The same CDR again (mod_json_cdr retries) is harmless.
    assert_eq!(s.post("/api/cdr/freeswitch", &inbound).await["data"]["imported"], false);
    // An agent at extension 8002 dialing a customer who is busy, posted as a form field.
    let manual = freeswitch_cdr(
        "7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        "8002",
        "13912345678",
        false,
        "USER_BUSY",
        "486",
    );
    let form = format!("cdr={}", form_encode(&manual.to_string()));
    let res = s
        .client
        .post(s.url("/api/cdr/freeswitch"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["callType"], "03", "{v}");

    let row = s.records(json!({"callType": "01"})).await["rows"][0].clone();
    assert_eq!(row["telephone"], "18188888888");
    assert_eq!(row["extnum"], "8001");
    assert_eq!(row["calloutTime"], "2025-08-16 21:11:59");
    assert_eq!(row["answeredTime"], "2025-08-16 21:12:01");
    assert_eq!(row["callEndTime"], "2025-08-16 21:12:24");
    assert_eq!(row["timeLen"], 25);
    assert_eq!(row["hangupCause"], "NORMAL_CLEARING:sip:200");
    assert_eq!(row["wavFileUrl"], "", "a recording outside recordings.dir is not served");
    let row = s.records(json!({"callType": "03"})).await["rows"][0].clone();
    assert_eq!((row["telephone"].as_str(), row["extnum"].as_str()), (Some("13912345678"), Some("8002")));
    assert_eq!(row["answeredTime"], "");
    assert_eq!(row["timeLen"], 0);
    assert_eq!(row["hangupCause"], "USER_BUSY:sip:486");

    for (body, needle) in
        [(json!({"variables": {"direction": "inbound"}}), "uuid"), (json!({"a": 1}), "variables")]
    {
        let v = s.post("/api/cdr/freeswitch", &body).await;
        assert_eq!(v["code"], 405);
        assert!(v["msg"].as_str().unwrap().contains(needle), "{v}");
    }
}

#[tokio::test]
async fn freeswitch_may_authenticate_with_basic_auth_carrying_the_api_key() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.auth.api_keys = vec!["pbx-key".into()];
    })
    .await;
    let cdr = freeswitch_cdr("b1", "18188888888", "8001", true, "NORMAL_CLEARING", "200");
    let res = s
        .client
        .post(s.url("/api/cdr/freeswitch"))
        .basic_auth("freeswitch", Some("pbx-key"))
        .json(&cdr)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .client
        .post(s.url("/api/cdr/freeswitch"))
        .basic_auth("freeswitch", Some("nope"))
        .json(&cdr)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The server binary on a SQLite file of its own: a true SIGKILL of the process that
/// holds the outbox, and its log.
mod own_database {
    use std::collections::{HashMap, HashSet};

    use crate::common::{BinaryServer, ENDED, until};

    use super::*;

    async fn post(server: &BinaryServer, path: &str, body: Value) -> Value {
        let res = reqwest::Client::new().post(server.url(path)).json(&body).send().await.unwrap();
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], 0, "{path}: {v}");
        v
    }

    async fn tasks(server: &BinaryServer) -> Vec<Value> {
        let v = post(server, "/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 1000})).await;
        v["rows"].as_array().unwrap().clone()
    }

    async fn backlog(server: &BinaryServer) -> String {
        let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("callcenter_webhook_backlog "));
        line.unwrap_or_else(|| panic!("no backlog gauge in:\n{text}")).to_string()
    }

    fn event_id(headers: &HeaderMap) -> String {
        headers["x-callcenter-event-id"].to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn webhook_events_in_flight_when_the_server_is_killed_are_all_delivered_after_a_restart() {
        const TASKS: usize = 20;
        // Ten deliveries go through, then the receiver holds every request open: the
        // server is killed with deliveries in flight and others not yet tried.
        let hook = Receiver::start(0).await;
        *hook.hang_after.lock().unwrap() = Some(10);
        let settings = [
            ("SIM__TIME_SCALE", "0".to_string()),
            ("SIM__ANSWER_RATE", "1.0".into()),
            ("DIALER__CALLS_PER_SECOND", "1000".into()),
            ("WEBHOOK__URL", hook.url.clone()),
            ("WEBHOOK__TIMEOUT_SECS", "120".into()),
        ];
        let server = BinaryServer::start(&settings).await;
        let tickets: Vec<Value> =
            (0..TASKS).map(|i| ticket(&format!("K{i}"), &format!("139000{i:05}"))).collect();
        post(&server, "/api/aicall/createTasks", json!(tickets)).await;
        let ended = until(Duration::from_secs(20), "every task to end", async || {
            let rows = tasks(&server).await;
            rows.iter().all(|t| ENDED.contains(&t["status"].as_str().unwrap())).then_some(rows)
        })
        .await;
        until(Duration::from_secs(20), "a delivery held in flight", async || {
            (!hook.held.lock().unwrap().is_empty()).then_some(())
        })
        .await;
        let dir = server.kill_9();
        let held: HashSet<String> = hook.held.lock().unwrap().iter().map(|(h, _)| event_id(h)).collect();
        let before: HashSet<String> = hook.got.lock().unwrap().iter().map(|(h, _)| event_id(h)).collect();
        // One call.ended per attempt and one task.ended per task.
        let expected: usize =
            ended.iter().map(|t| t["callCount"].as_u64().unwrap() as usize).sum::<usize>() + TASKS;
        assert!(before.len() + held.len() < expected, "some events were never tried before the kill");

        *hook.hang_after.lock().unwrap() = None;
        let server = BinaryServer::start_in(dir, &settings).await;
        // The deliveries in flight are leased to the dead process for a minute.
        let delivered = until(Duration::from_secs(120), "every event to be delivered", async || {
            let got = hook.got.lock().unwrap();
            let ids: HashSet<String> = got.iter().map(|(h, _)| event_id(h)).collect();
            (ids.len() >= expected).then(|| got.clone())
        })
        .await;
        let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
        for (headers, body) in &delivered {
            let first = bodies.entry(event_id(headers)).or_insert_with(|| body.clone());
            assert_eq!(first, body, "an event delivered again is the same event");
        }
        assert_eq!(bodies.len(), expected, "no event beyond those of the calls and tasks");
        for id in &held {
            assert!(
                bodies.contains_key(id),
                "the event {id} in flight at the kill was delivered with its id"
            );
        }
        let events: Vec<Value> = bodies.values().map(|b| serde_json::from_slice(b).unwrap()).collect();
        for t in tasks(&server).await {
            let of = |kind: &str| {
                events.iter().filter(|e| e["type"] == kind && e["task"]["batchId"] == t["batchId"]).count()
            };
            assert_eq!(of("task.ended"), 1, "{t}");
            assert_eq!(of("call.ended") as u64, t["callCount"].as_u64().unwrap(), "{t}");
        }
        until(Duration::from_secs(10), "an empty outbox", async || {
            (backlog(&server).await == "callcenter_webhook_backlog 0").then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn an_event_older_than_max_age_is_given_up_and_never_reaches_a_receiver_that_comes_back_later() {
        const MAX_AGE: Duration = Duration::from_secs(2);
        let hook = Receiver::start(usize::MAX).await;
        let server = BinaryServer::start(&[
            ("LOG__FORMAT", "json".to_string()),
            ("SIM__TIME_SCALE", "0".into()),
            ("SIM__ANSWER_RATE", "1.0".into()),
            ("WEBHOOK__URL", hook.url.clone()),
            ("WEBHOOK__MAX_AGE_SECS", MAX_AGE.as_secs().to_string()),
        ])
        .await;
        post(&server, "/api/aicall/createTasks", json!([ticket("OLD", "13900000001")])).await;
        // Both events (call.ended, task.ended) tried and refused: they exist, so they
        // were written no later than now.
        until(Duration::from_secs(20), "both events tried", async || {
            (hook.tried.lock().unwrap().iter().collect::<HashSet<_>>().len() == 2).then_some(())
        })
        .await;
        let stale: HashSet<String> = hook.tried.lock().unwrap().iter().cloned().collect();
        // The receiver comes back only once the server has given both events up, older
        // than max_age: its log says so, one error line per event.
        until(Duration::from_secs(30), "both events given up", async || {
            let log = server.log();
            // Whole lines only: the last one may be half written.
            let whole = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
            (given_up(whole) == stale).then_some(())
        })
        .await;
        *hook.failing.lock().unwrap() = 0;
        until(Duration::from_secs(30), "an empty outbox", async || {
            (backlog(&server).await == "callcenter_webhook_backlog 0").then_some(())
        })
        .await;
        assert!(hook.events().is_empty(), "a stale event was delivered: {:#?}", hook.events());

        // New events still go out, and none of the stale ones with them.
        post(&server, "/api/aicall/createTasks", json!([ticket("NEW", "13900000002")])).await;
        let events = hook.wait_for(2, Duration::from_secs(20)).await;
        assert!(events.iter().all(|e| e["task"]["ticketNo"] == "NEW"), "{events:#?}");

        // The log says which events were given up, and no others.
        let log = server.stop();
        assert_eq!(given_up(&log), stale, "one error line per event given up:\n{log}");
    }

    /// The events a JSON log says were given up.
    fn given_up(log: &str) -> HashSet<String> {
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|l| {
                l["level"] == "ERROR"
                    && l["fields"]["message"].as_str().unwrap().contains("giving the event up")
            })
            .map(|l| l["fields"]["event_id"].as_str().unwrap().to_string())
            .collect()
    }
}
