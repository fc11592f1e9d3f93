//! Inbound calls (`callType` 01) answered by the agent: a real SIP caller (baresip, and a
//! scripted peer for what baresip cannot be told to do) dials the server; the sim places
//! calls of its own; FreeSWITCH parks and announces them. Each call is read back through
//! records/list and the `call.ended` webhook, as a user's system would.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, until};
use crate::integrations::Receiver;
use callcenter::dialer::InboundNumber;

/// Every call of these tests ends well within this, even on a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(90);

async fn inbound_records(s: &TestServer, filter: Value) -> Value {
    let mut body = json!({ "callType": "01" });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), filter) {
        b.extend(extra);
    }
    s.records(body).await
}

/// A 19-digit uuid of node `node`: `yyMMddHHmmss` + node + a counter from 10001.
fn is_call_uuid(uuid: &str, node: &str) -> bool {
    uuid.len() == 19 && uuid.bytes().all(|b| b.is_ascii_digit()) && &uuid[12..14] == node && &uuid[14..] >= "10001"
}

#[tokio::test]
async fn the_sim_places_inbound_calls_that_are_listed_as_01_with_their_webhook() {
    let hook = Receiver::start(0).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        // One call every 50 ms, each a few hundred ms long.
        c.sim.inbound_calls_per_minute = 60.0;
        c.sim.time_scale = 0.05;
        c.dialer.node_id = "37".to_string().try_into().unwrap();
        c.inbound.numbers = vec![InboundNumber {
            number: "4008005555".into(),
            username: "售后热线".into(),
            greeting: "您好，这里是{username}，请问有什么可以帮您？".into(),
            ..InboundNumber::default()
        }];
        c.webhook.url = url;
    })
    .await;
    let listed = until(CALL_LIMIT, "five inbound calls listed", async || {
        let v = inbound_records(&s, json!({})).await;
        (v["total"].as_i64().unwrap() >= 5).then_some(v)
    })
    .await;
    let rows = listed["rows"].as_array().unwrap();
    for row in rows {
        assert_eq!(row["callType"], "01", "{row}");
        assert_eq!(row["extnum"], "4008005555", "{row}");
        let caller = row["telephone"].as_str().unwrap();
        assert!(caller.len() == 11 && caller.starts_with("13"), "the caller's number: {row}");
        assert!(is_call_uuid(row["uuid"].as_str().unwrap(), "37"), "{row}");
        assert_ne!(row["answeredTime"], "", "the agent answers every call: {row}");
        let cause = row["hangupCause"].as_str().unwrap();
        assert!(cause == "NORMAL_CLEARING:sip:200" || cause == "NORMAL_CLEARING:null", "{row}");
        assert_eq!(
            row["dialogue"][0],
            json!({"role": "assistant", "content": "您好，这里是售后热线，请问有什么可以帮您？"}),
            "the agent speaks first, with the number's greeting: {row}"
        );
        assert!(!row["wavFileUrl"].as_str().unwrap().is_empty(), "recorded: {row}");
    }
    // None of them is an outbound call, and they made no task.
    assert_eq!(s.records(json!({})).await["total"], 0);
    assert_eq!(s.tasks(json!({})).await["total"], 0);

    let events = hook.wait_for(3, CALL_LIMIT).await;
    for event in &events {
        assert_eq!(event["type"], "call.ended", "{event}");
        assert_eq!(event["task"], Value::Null, "an inbound call has no task: {event}");
        assert_eq!(event["record"]["callType"], "01", "{event}");
        let uuid = event["record"]["uuid"].as_str().unwrap();
        let listed = inbound_records(&s, json!({ "uuid": uuid })).await;
        assert_eq!(listed["rows"][0], event["record"], "the webhook carries the listed row");
    }
    // The day's statistics count them as answered inbound calls (between two reads of the
    // list, as calls keep coming).
    let before = inbound_records(&s, json!({})).await["total"].as_i64().unwrap();
    let stats = s.post("/api/aicall/stats", &json!({ "callType": "01" })).await;
    let after = inbound_records(&s, json!({})).await["total"].as_i64().unwrap();
    let answered = stats["data"]["answered"].as_i64().unwrap();
    assert!(before <= answered && answered <= after, "{before} ≤ {answered} ≤ {after}: {stats}");
}
