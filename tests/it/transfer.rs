//! Calls handed to a person: the sim carrier's simulated people (by extension: `…4860`
//! busy, `…4800` no answer, any other answers), a real SIP second leg bridged through the
//! server, FreeSWITCH's own bridge, and click-to-call (`03`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, ticket};
use crate::integrations::Receiver;

/// A sim callee whose number ends in 8000 asks for a person.
const WANTS_HUMAN: &str = "13900008000";

fn dialogue(record: &Value) -> Vec<(String, String)> {
    record["dialogue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap().to_string(), t["content"].as_str().unwrap().to_string()))
        .collect()
}

async fn only_record(s: &TestServer) -> Value {
    s.wait_all_ended(Duration::from_secs(30)).await;
    let records = s.records(json!({})).await;
    assert_eq!(records["total"], 1, "{records}");
    records["rows"][0].clone()
}

#[tokio::test]
async fn a_callee_who_asks_for_a_person_is_handed_to_the_extension_their_ticket_type_names() {
    let hook = Receiver::start(0).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        c.sim.answer_rate = 1.0;
        c.webhook.url = url;
        c.transfer.default_to = "8999".into();
        c.transfer.by_ticket_type.insert("活动通知".into(), "sip:8001@pbx.example.com".into());
    })
    .await;
    let ids = s.create(&[ticket("T1", WANTS_HUMAN)]).await;
    let record = only_record(&s).await;
    assert_eq!(record["extnum"], "8001", "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let turns = dialogue(&record);
    assert!(turns.iter().any(|(role, line)| role == "user" && line.contains("人工")), "{turns:?}");
    assert!(turns.iter().any(|(_, line)| line == "好的，正在为您转接人工客服，请稍候。"), "{turns:?}");
    assert_eq!(turns.last().unwrap(), &("assistant".to_string(), "[转人工 8001]".to_string()));
    // Listed by the person's extension, as a manual call would be.
    let by_extension = s.records(json!({"extnum": "8001"})).await;
    assert_eq!(by_extension["total"], 1, "{by_extension}");

    let events = hook.wait_for(3, Duration::from_secs(20)).await;
    let transferred: Vec<&Value> = events.iter().filter(|e| e["type"] == "call.transferred").collect();
    assert_eq!(transferred.len(), 1, "{events:#?}");
    let event = transferred[0];
    assert_eq!(event["task"]["batchId"], ids[0]);
    assert_eq!(event["task"]["ticketNo"], "T1");
    assert_eq!(event["record"], Value::Null, "the call is still going when it is handed over");
    let transfer = &event["transfer"];
    assert_eq!(transfer["uuid"], record["uuid"]);
    assert_eq!(transfer["to"], "sip:8001@pbx.example.com");
    assert_eq!(transfer["extnum"], "8001");
    let answered = transfer["answeredTime"].as_str().unwrap();
    assert!(
        answered >= record["answeredTime"].as_str().unwrap()
            && answered <= record["callEndTime"].as_str().unwrap(),
        "{transfer} {record}"
    );
    // call.ended follows with the record.
    let ended = events.iter().find(|e| e["type"] == "call.ended").unwrap();
    assert_eq!(ended["record"]["extnum"], "8001");
    assert!(ended.get("transfer").is_none(), "only call.transferred tells of the transfer");
}

#[tokio::test]
async fn a_busy_person_leaves_the_callee_told_someone_will_call_back() {
    let s = TestServer::start_with(|c| {
        c.sim.answer_rate = 1.0;
        c.transfer.default_to = "sip:4860@pbx.example.com".into();
    })
    .await;
    s.create(&[ticket("T1", WANTS_HUMAN)]).await;
    let record = only_record(&s).await;
    assert_eq!(record["extnum"], Value::Null, "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    let turns = dialogue(&record);
    let lines: Vec<&str> = turns.iter().map(|(_, l)| l.as_str()).collect();
    let tried = lines.iter().position(|l| *l == "好的，正在为您转接人工客服，请稍候。").expect("announced");
    assert_eq!(lines[tried + 1], "抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。", "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("[转人工")), "{lines:?}");
}

#[tokio::test]
async fn a_person_who_does_not_answer_within_the_ring_timeout_leaves_the_callee_told_someone_will_call_back()
{
    let hook = Receiver::start(0).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        c.sim.answer_rate = 1.0;
        c.webhook.url = url;
        c.transfer.default_to = "4800".into();
        c.transfer.ring_timeout_secs = 1;
    })
    .await;
    s.create(&[ticket("T1", WANTS_HUMAN)]).await;
    let record = only_record(&s).await;
    assert_eq!(record["extnum"], Value::Null, "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    let lines: Vec<String> = dialogue(&record).into_iter().map(|(_, l)| l).collect();
    assert!(lines.contains(&"抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。".to_string()), "{lines:?}");
    // The call waited out the ring timeout.
    assert!(record["timeLen"].as_i64().unwrap() >= 1, "{record}");
    let events = hook.wait_for(2, Duration::from_secs(20)).await;
    assert!(events.iter().all(|e| e["type"] != "call.transferred"), "{events:#?}");
}

#[tokio::test]
async fn with_nowhere_to_transfer_the_callee_is_told_someone_will_call_back_and_the_call_is_marked_for_a_person()
 {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    s.create(&[ticket("T1", WANTS_HUMAN)]).await;
    let record = only_record(&s).await;
    assert_eq!(record["intent"], "转人工", "{record}");
    assert_eq!(record["extnum"], Value::Null, "{record}");
    let lines: Vec<String> = dialogue(&record).into_iter().map(|(_, l)| l).collect();
    assert!(
        !lines.contains(&"好的，正在为您转接人工客服，请稍候。".to_string()),
        "nothing to announce: {lines:?}"
    );
    assert!(lines.contains(&"抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。".to_string()), "{lines:?}");
}
