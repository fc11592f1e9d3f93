//! What ticketing systems and PBXs plug into: webhooks, imported and FreeSWITCH call
//! records, the do-not-call list and the per-number daily cap.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{TestServer, ticket};
use serde_json::{Value, json};

/// Each delivery a receiver took: its headers and body.
type Deliveries = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on port 0 that answers 500 to the first `fail_first` deliveries.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Deliveries,
    tries: Arc<Mutex<usize>>,
    failing: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let tries = Arc::new(Mutex::new(0));
        let failing = Arc::new(Mutex::new(fail_first));
        let (g, t, f) = (got.clone(), tries.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let (g, t, f) = (g.clone(), t.clone(), f.clone());
                async move {
                    *t.lock().unwrap() += 1;
                    let mut failing = f.lock().unwrap();
                    if *failing > 0 {
                        *failing -= 1;
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    g.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, tries, failing }
    }

    fn events(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
    }

    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
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
async fn undelivered_webhooks_survive_a_restart() {
    let hook = Receiver::start(usize::MAX).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        c.sim.answer_rate = 1.0;
        c.webhook.url = url;
    })
    .await;
    let ids = s.create(&[ticket("R1", "13900000001")]).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids})).await;
    // Wait for a failed try, then stop while the receiver is still down.
    while *hook.tries.lock().unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (settings, db, dir) = s.stop().await;
    assert!(hook.events().is_empty());
    *hook.failing.lock().unwrap() = 0;
    let s = TestServer::start_on(settings, db, dir).await;
    // The dialer may have dialed before the stop came (the sim's calls are instant): then
    // the call's event comes too, and the call may even have ended the task first.
    let task_ended = |events: &[Value]| events.iter().find(|e| e["type"] == "task.ended").cloned();
    let events = hook.wait_for(1, Duration::from_secs(20)).await;
    let ended = match task_ended(&events) {
        Some(ended) => ended,
        None => task_ended(&hook.wait_for(2, Duration::from_secs(20)).await).expect("task.ended"),
    };
    assert_eq!(ended["task"], s.task(ids[0]).await, "the event carries the task as it ended");
    assert!(["已停止", "已完成"].contains(&ended["task"]["status"].as_str().unwrap()), "{ended}");
    drop(s);
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.records(json!({"telephone": "13900000001"})).await["total"], 1, "one call a day");
    let held = s.task(ids[1]).await;
    assert_eq!(held["status"], "待呼叫", "{held}");
    assert_eq!(held["callCount"], 0, "no attempt spent");
    assert_eq!(s.task(ids[2]).await["status"], "已完成", "other numbers are not held");
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
