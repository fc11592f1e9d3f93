//! Calls handed to a person: the sim carrier's simulated people (by extension: `…4860`
//! busy, `…4800` no answer, any other answers), a real SIP second leg bridged through the
//! server, FreeSWITCH's own bridge, and click-to-call (`03`).

use std::sync::Arc;
use std::time::Duration;

use callcenter::config::Settings;
use callcenter::telephony::asr::AsrEngine;
use callcenter::telephony::sip::g711::Codec;
use serde_json::{Value, json};

use crate::common::{TestServer, ticket};
use crate::integrations::Receiver;
use crate::sip::{loudest, recording, short_sip_calls, voice};
use crate::support::baresip::{self, Baresip};
use crate::support::esl_server::{Callee, FakeFreeswitch};
use crate::support::sip_peer::{Script, SipPeer};

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

/// The person's voice in the SIP tests: a steady 1 kHz tone, told apart from the agent's
/// voice, the ringback (450 Hz) and the callee's by its pitch.
const PERSON_HZ: f64 = 1000.0;

fn tone(hz: f64, secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|n| ((n as f64 * hz * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect()
}

/// How many 20 ms frames of `samples` are a tone at `hz` (nearly all their energy at it,
/// and loud enough to be heard).
fn frames_of_tone(samples: &[i16], hz: f64) -> usize {
    let coeff = 2.0 * (std::f64::consts::TAU * hz / 8000.0).cos();
    samples
        .chunks_exact(160)
        .filter(|frame| {
            let (mut s1, mut s2) = (0.0, 0.0);
            let mut energy = 0.0;
            for &x in *frame {
                let x = f64::from(x);
                energy += x * x;
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            let rms = (energy / 160.0).sqrt();
            rms > 300.0 && power / (energy * 80.0) > 0.7
        })
        .count()
}

/// The SIP carrier calls the callee through `trunk`; a recogniser that hears every turn
/// as a request for a person; transfers go to `to`.
fn sip_transfers(trunk: std::net::SocketAddr, to: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        short_sip_calls(s);
        s.sip.trunk = trunk.to_string();
        s.asr.engine = AsrEngine::Command;
        s.asr.command = vec!["echo".into(), "我要转人工".into()];
        s.transfer.default_to = to;
        s.transfer.ring_timeout_secs = 5;
    }
}

const CALL_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn over_sip_the_callee_is_bridged_to_the_person_and_each_hears_the_other_on_one_recording() {
    baresip::require();
    // The callee asks (its first words), then keeps talking now and then.
    let callee = Baresip::start(
        &[("13900001111", true)],
        &voice(&[(2.5, 1.5), (6.0, 2.0), (2.0, 2.0), (2.0, 2.0), (2.0, 2.0)], 60.0),
    );
    let mut person_voice = vec![0; 4000];
    person_voice.extend(tone(PERSON_HZ, 50.0));
    let person = Baresip::start(&[("8001", true)], &person_voice);
    let hook = Receiver::start(0).await;
    let to = format!("sip:8001@{}", person.addr);
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        sip_transfers(callee.addr, to)(c);
        c.webhook.url = url;
        // The bridged call runs until this bound: neither baresip hangs up by itself.
        c.dialer.max_call_secs = 25;
    })
    .await;
    let ids = s.create(&[ticket("T-SIP", "13900001111")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = s.records(json!({})).await["rows"][0].clone();
    assert_eq!(record["extnum"], "8001", "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    assert_eq!(record["hangupCause"], "ALLOTTED_TIMEOUT:null", "bounded by max_call_secs: {record}");
    assert!(record["timeLen"].as_i64().unwrap() >= 24, "the whole call: {record}");
    let turns = dialogue(&record);
    assert_eq!(turns.last().unwrap().1, "[转人工 8001]", "{turns:?}");

    // Both legs were hung up.
    assert!(person.wait_log("terminated", Duration::from_secs(10)).await, "{}", person.log());
    assert!(callee.wait_log("terminated", Duration::from_secs(10)).await, "{}", callee.log());

    // The callee heard the person (a few seconds of their tone at least) ...
    let heard = callee.heard();
    assert!(
        frames_of_tone(&heard, PERSON_HZ) > 150,
        "the callee heard {} frames of the person",
        frames_of_tone(&heard, PERSON_HZ)
    );
    // ... and the person heard the callee.
    let person_heard = person.heard();
    assert!(loudest(&person_heard) > 1000.0, "the person heard {}", loudest(&person_heard));
    // One recording: the callee on one channel, the agent and then the person on the other.
    let (agent_side, callee_side) = recording(&s, &record).await;
    assert!(
        frames_of_tone(&agent_side, PERSON_HZ) > 150,
        "the person on the recording: {}",
        frames_of_tone(&agent_side, PERSON_HZ)
    );
    assert_eq!(frames_of_tone(&callee_side, PERSON_HZ), 0, "the person is not on the callee's channel");
    assert!(loudest(&callee_side) > 1000.0);
    // The ringback the callee heard while the person's phone rang is the agent side's too.
    let seconds = agent_side.len() as f64 / 8000.0;
    assert!((seconds - record["timeLen"].as_f64().unwrap()).abs() <= 2.0, "recording {seconds} s: {record}");

    let events = hook.wait_for(3, Duration::from_secs(20)).await;
    let transferred = events.iter().find(|e| e["type"] == "call.transferred").expect("call.transferred");
    assert_eq!(transferred["task"]["batchId"], ids[0]);
    assert_eq!(transferred["transfer"]["uuid"], record["uuid"]);
    assert_eq!(transferred["transfer"]["extnum"], "8001");
}

#[tokio::test]
async fn over_sip_a_person_who_hangs_up_ends_the_callees_leg_and_legs_of_different_laws_hear_each_other() {
    baresip::require();
    let callee = Baresip::start(&[("13900002222", true)], &voice(&[(2.5, 1.5)], 60.0));
    // The person answers in PCMU (the callee in PCMA), talks 6 s and hangs up.
    let said: Arc<[u8]> = Codec::Pcmu.encode(&tone(PERSON_HZ, 1.0)).into();
    let person =
        SipPeer::start(move |_| Script::Hold { talk: Duration::from_secs(6), voice: said.clone() }).await;
    let s = TestServer::start_with(sip_transfers(callee.addr, format!("sip:8002@{}", person.addr))).await;
    s.create(&[ticket("T-SIP", "13900002222")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = s.records(json!({})).await["rows"][0].clone();
    assert_eq!(record["extnum"], "8002", "{record}");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert!(callee.wait_log("terminated", Duration::from_secs(10)).await, "{}", callee.log());
    let heard = callee.heard();
    assert!(
        frames_of_tone(&heard, PERSON_HZ) > 100,
        "the callee heard {} frames of the person",
        frames_of_tone(&heard, PERSON_HZ)
    );
    // Well before max_call_secs: the person's BYE ended the call.
    assert!(record["timeLen"].as_i64().unwrap() < 40, "{record}");
}

#[tokio::test]
async fn over_sip_stopping_a_bridged_call_hangs_up_both_legs() {
    baresip::require();
    let callee = Baresip::start(&[("13900005555", true)], &voice(&[(2.5, 1.5)], 60.0));
    let person = Baresip::start(&[("8005", true)], &voice(&[], 60.0));
    let s = TestServer::start_with(sip_transfers(callee.addr, format!("sip:8005@{}", person.addr))).await;
    let ids = s.create(&[ticket("T-SIP", "13900005555")]).await;
    // The person answered: the legs are bridged.
    assert!(person.wait_log("Call established", Duration::from_secs(40)).await, "{}", person.log());
    let v = s.post("/api/aicall/stopTasks", &json!({ "batchIds": ids })).await;
    assert_eq!(v["code"], 0, "{v}");
    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["status"], "已停止");
    let record = s.records(json!({})).await["rows"][0].clone();
    assert_eq!(record["hangupCause"], "MANAGER_REQUEST:null", "{record}");
    assert_eq!(record["extnum"], "8005", "{record}");
    // Both got our BYE.
    assert!(callee.wait_log("session closed", Duration::from_secs(10)).await, "{}", callee.log());
    assert!(person.wait_log("session closed", Duration::from_secs(10)).await, "{}", person.log());
}

#[tokio::test]
async fn over_sip_a_busy_person_or_one_who_does_not_answer_leaves_the_callee_with_the_agent() {
    baresip::require();
    let callee = Baresip::start(&[("13900003333", true), ("13900004444", true)], &voice(&[(2.5, 1.5)], 60.0));
    // 8486 is busy; 8480 rings until cancelled.
    let busy = SipPeer::start(|_| Script::Reject(486)).await;
    let ringing = Baresip::start(&[("8480", false)], &voice(&[], 5.0));
    for (phone, to) in [
        ("13900003333", format!("sip:8486@{}", busy.addr)),
        ("13900004444", format!("sip:8480@{}", ringing.addr)),
    ] {
        let s = TestServer::start_with(sip_transfers(callee.addr, to.clone())).await;
        s.create(&[ticket("T-SIP", phone)]).await;
        s.wait_all_ended(CALL_LIMIT).await;
        let record = s.records(json!({})).await["rows"][0].clone();
        assert_eq!(record["extnum"], Value::Null, "{to}: {record}");
        assert_eq!(record["intent"], "转人工", "{to}: {record}");
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{to}: {record}");
        let lines: Vec<String> = dialogue(&record).into_iter().map(|(_, l)| l).collect();
        let tried =
            lines.iter().position(|l| l == "好的，正在为您转接人工客服，请稍候。").expect("announced");
        assert_eq!(
            lines[tried + 1],
            "抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。",
            "{to}: {lines:?}"
        );
        s.stop().await;
    }
    // The ringing person's INVITE was cancelled at the ring timeout, never answered.
    assert!(ringing.wait_log("session closed", Duration::from_secs(10)).await, "{}", ringing.log());
    assert!(!ringing.log().contains("Call established"), "{}", ringing.log());
    assert!(busy.events().iter().any(|e| e.starts_with("INVITE 8486")), "{:?}", busy.events());
}

// ---- FreeSWITCH: its own bridge ----

async fn freeswitch_server(fake: &FakeFreeswitch, to: &str) -> TestServer {
    let (port, to) = (fake.port(), to.to_string());
    TestServer::start_with(move |s| {
        s.dialer.carrier = callcenter::telephony::CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.dialer.ring_timeout_secs = 1;
        s.dialer.max_attempts = 1;
        s.transfer.default_to = to;
        s.transfer.ring_timeout_secs = 2;
    })
    .await
}

#[tokio::test]
async fn on_freeswitch_the_person_is_originated_parked_and_bridged_with_uuid_bridge() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("1111", Callee::Answers { says: Some("我要转人工。") });
    let s = freeswitch_server(&fake, "user/8001").await;
    s.create(&[ticket("T-FS", "13900001111")]).await;
    let bridge = fake.wait_for_command(Duration::from_secs(30), |c| c.starts_with("api uuid_bridge")).await;
    let callee_uuid = bridge.split_whitespace().nth(2).unwrap().to_string();
    let person_uuid = bridge.split_whitespace().nth(3).unwrap().to_string();
    let commands = fake.commands();
    let originate =
        commands.iter().find(|c| c.contains(&format!("origination_uuid={person_uuid},"))).unwrap();
    assert!(originate.contains("hangup_after_bridge=true"), "{originate}");
    assert!(originate.contains("}user/8001 &park()"), "{originate}");
    assert!(originate.contains("originate_timeout=2"), "the transfer's own ring timeout: {originate}");
    // The callee heard a ringback tone until the person answered.
    let ringback = commands.iter().position(|c| c.contains("tone_stream://")).expect("a ringback tone");
    let stopped =
        commands.iter().position(|c| c == &format!("api uuid_break {callee_uuid} all")).expect("uuid_break");
    assert!(ringback < stopped, "{commands:#?}");

    // The person hangs up: the call ends.
    fake.hang_up_channel(&person_uuid);
    s.wait_all_ended(Duration::from_secs(30)).await;
    let record = s.records(json!({})).await["rows"][0].clone();
    assert_eq!(record["uuid"], callee_uuid.as_str());
    assert_eq!(record["extnum"], "8001", "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_eq!(dialogue(&record).last().unwrap().1, "[转人工 8001]");
    assert!(!fake.channel_up(&callee_uuid) && !fake.channel_up(&person_uuid));
}

#[tokio::test]
async fn on_freeswitch_a_busy_person_is_never_bridged_and_the_callee_is_told_someone_will_call_back() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("1111", Callee::Answers { says: Some("我要转人工。") });
    fake.callee("4860", Callee::Rejects { cause: "USER_BUSY", sip: 486 });
    let s = freeswitch_server(&fake, "4860").await;
    s.create(&[ticket("T-FS", "13900001111")]).await;
    s.wait_all_ended(Duration::from_secs(30)).await;
    let record = s.records(json!({})).await["rows"][0].clone();
    assert_eq!(record["extnum"], Value::Null, "{record}");
    assert_eq!(record["intent"], "转人工", "{record}");
    let lines: Vec<String> = dialogue(&record).into_iter().map(|(_, l)| l).collect();
    assert!(lines.contains(&"抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。".to_string()), "{lines:?}");
    let commands = fake.commands();
    assert!(
        commands.iter().any(|c| c.contains("}sofia/gateway/trunk/4860 &park()")),
        "dialled through the gateway: {commands:#?}"
    );
    assert!(!commands.iter().any(|c| c.contains("uuid_bridge")), "{commands:#?}");
}

// ---- click-to-call (03) ----

async fn manual_records(s: &TestServer, n: usize) -> Vec<Value> {
    crate::common::until(Duration::from_secs(60), "the click-to-call records", async || {
        let v = s.records(json!({"callType": "03"})).await;
        let rows = v["rows"].as_array().unwrap().clone();
        (rows.len() >= n).then_some(rows)
    })
    .await
}

async fn click_to_call(s: &TestServer, extnum: &str, telephone: &str) -> String {
    let v = s.post("/api/aicall/call/manual", &json!({"extnum": extnum, "telephone": telephone})).await;
    assert_eq!(v["code"], 0, "{v}");
    let uuid = v["data"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 19, "{v}");
    uuid
}

#[tokio::test]
async fn click_to_call_rings_the_extension_then_the_customer_and_is_listed_as_manual_outbound() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    let answered = click_to_call(&s, "8001", "13900001234").await;
    let busy = click_to_call(&s, "8002", "13900004860").await;
    let nobody = click_to_call(&s, "4860", "13900005678").await;
    let rows = manual_records(&s, 3).await;
    let of = |uuid: &str| {
        rows.iter().find(|r| r["uuid"] == uuid).unwrap_or_else(|| panic!("{uuid}: {rows:#?}")).clone()
    };

    let record = of(&answered);
    assert_eq!(record["callType"], "03");
    assert_eq!(record["extnum"], "8001");
    assert_eq!(record["telephone"], "13900001234");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_ne!(record["answeredTime"], "", "{record}");
    assert_ne!(record["wavFileUrl"], "", "{record}");
    assert_eq!(record["dialogue"], json!([]));
    // The customer was busy: never answered.
    let record = of(&busy);
    assert_eq!(record["hangupCause"], "USER_BUSY:sip:486", "{record}");
    assert_eq!(record["answeredTime"], "", "{record}");
    assert_eq!(record["extnum"], "8002");
    assert_eq!(record["timeLen"], 0);
    // The extension was busy: the customer was never called.
    let record = of(&nobody);
    assert_eq!(record["hangupCause"], "USER_BUSY:sip:486", "{record}");
    assert_eq!(record["wavFileUrl"], "", "{record}");
    // Listed by extension, and never among the AI calls.
    assert_eq!(s.records(json!({"callType": "03", "extnum": "8001"})).await["total"], 1);
    assert_eq!(s.records(json!({"callType": "02"})).await["total"], 0);
}

#[tokio::test]
async fn click_to_call_refuses_a_missing_or_malformed_extension_or_number_naming_the_field() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    for (body, field) in [
        (json!({"telephone": "13900001234"}), "extnum"),
        (json!({"extnum": " ", "telephone": "13900001234"}), "extnum"),
        (json!({"extnum": "80 01", "telephone": "13900001234"}), "extnum"),
        (json!({"extnum": "8001"}), "telephone"),
        (json!({"extnum": "8001", "telephone": "12ab"}), "telephone"),
        (json!(["8001"]), ""),
    ] {
        let (status, v) = s.post_status("/api/aicall/call/manual", &body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(v["code"], 405, "{body}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    // Nothing was dialled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.records(json!({"callType": "03"})).await["total"], 0);
}

#[tokio::test]
async fn click_to_call_over_sip_bridges_the_extension_to_the_customer_on_one_recording() {
    baresip::require();
    let customer =
        Baresip::start(&[("13900001111", true)], &voice(&[(1.0, 2.0), (2.0, 2.0), (2.0, 2.0)], 60.0));
    let mut person_voice = vec![0; 4000];
    person_voice.extend(tone(PERSON_HZ, 50.0));
    let person = Baresip::start(&[("8001", true)], &person_voice);
    let customer_addr = customer.addr;
    let s = TestServer::start_with(move |c| {
        short_sip_calls(c);
        c.sip.trunk = customer_addr.to_string();
        c.dialer.max_call_secs = 12;
    })
    .await;
    let uuid = click_to_call(&s, &format!("sip:8001@{}", person.addr), "13900001111").await;
    let record = manual_records(&s, 1).await[0].clone();
    assert_eq!(record["uuid"], uuid.as_str());
    assert_eq!(record["extnum"], "8001", "{record}");
    assert_eq!(record["telephone"], "13900001111");
    assert_eq!(record["hangupCause"], "ALLOTTED_TIMEOUT:null", "{record}");
    assert!(customer.wait_log("terminated", Duration::from_secs(10)).await, "{}", customer.log());
    assert!(person.wait_log("terminated", Duration::from_secs(10)).await, "{}", person.log());
    let heard = customer.heard();
    assert!(
        frames_of_tone(&heard, PERSON_HZ) > 100,
        "the customer heard {} frames of the person",
        frames_of_tone(&heard, PERSON_HZ)
    );
    assert!(loudest(&person.heard()) > 1000.0, "the person heard the customer");
    // The recording: the extension's leg on one channel, the customer on the other.
    let (customer_side, person_side) = recording(&s, &record).await;
    assert!(frames_of_tone(&person_side, PERSON_HZ) > 100);
    assert_eq!(frames_of_tone(&customer_side, PERSON_HZ), 0);
    assert!(loudest(&customer_side) > 1000.0);
}

#[tokio::test]
async fn click_to_call_on_freeswitch_originates_the_extension_then_bridges_the_customer() {
    let fake = FakeFreeswitch::start().await;
    let s = freeswitch_server(&fake, "").await;
    let uuid = click_to_call(&s, "user/8001", "13900001111").await;
    let bridge = fake.wait_for_command(Duration::from_secs(30), |c| c.starts_with("api uuid_bridge")).await;
    assert!(
        bridge.starts_with(&format!("api uuid_bridge {uuid} ")),
        "the extension's channel is the call's: {bridge}"
    );
    let customer_uuid = bridge.split_whitespace().nth(3).unwrap().to_string();
    let commands = fake.commands();
    let extension = commands.iter().find(|c| c.contains(&format!("origination_uuid={uuid},"))).unwrap();
    assert!(extension.contains("}user/8001 &park()"), "{extension}");
    let customer =
        commands.iter().find(|c| c.contains(&format!("origination_uuid={customer_uuid},"))).unwrap();
    assert!(customer.contains("}sofia/gateway/trunk/13900001111 &park()"), "{customer}");
    assert!(
        commands.iter().any(|c| c.starts_with(&format!("api uuid_record {uuid} start "))),
        "{commands:#?}"
    );

    // The customer hangs up: the call ends, and is listed as manual outbound.
    fake.hang_up_channel(&customer_uuid);
    let record = manual_records(&s, 1).await[0].clone();
    assert_eq!(record["uuid"], uuid.as_str());
    assert_eq!(record["extnum"], "8001", "{record}");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_ne!(record["answeredTime"], "", "{record}");
    assert_ne!(record["wavFileUrl"], "", "{record}");
    assert!(!fake.channel_up(&uuid));
}
