//! Inbound calls (`callType` 01) answered by the agent: a real SIP caller (baresip, and a
//! scripted peer for what baresip cannot be told to do) dials the server; the sim places
//! calls of its own; FreeSWITCH parks and announces them. Each call is read back through
//! records/list and the `call.ended` webhook, as a user's system would.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, log_text, of_node, until, until_logged};
use crate::integrations::Receiver;
use crate::sip::{loudest, recording, short_sip_calls, voice};
use crate::support::baresip::{self, Baresip, Setup};
use crate::support::esl_server::{Callee, FakeFreeswitch, SAYS};
use crate::support::sip_peer::Msg;
use callcenter::config::Settings;
use callcenter::dialer::InboundNumber;
use callcenter::telephony::CarrierKind;

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
    uuid.len() == 19
        && uuid.bytes().all(|b| b.is_ascii_digit())
        && &uuid[12..14] == node
        && &uuid[14..] >= "10001"
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

/// The server takes SIP calls on `sip_port` for `4008001234` (the script agent's short
/// lines, greeting first), its one trunk on loopback: by default only loopback's first
/// address may call in.
fn answering_sip(sip_port: u16) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        short_sip_calls(s);
        s.sip.trunk = "127.0.0.1:9".into();
        s.sip.bind = format!("127.0.0.1:{sip_port}");
        s.dialer.max_call_secs = 60;
        s.inbound.numbers = vec![InboundNumber {
            number: "4008001234".into(),
            greeting: "您好，这里是客服热线".into(),
            confirm: "请问有什么可以帮您".into(),
            transfer_to: Some("sip:8001@pbx.example.com".into()),
            ..InboundNumber::default()
        }];
    }
}

/// A server answering SIP calls as `answering_sip` sets it up, then changed by `more`, and
/// the address it takes them on.
async fn sip_server(more: impl FnOnce(&mut Settings)) -> (TestServer, std::net::SocketAddr) {
    let sip_port = baresip::free_port();
    let s = TestServer::start_with(move |c| {
        answering_sip(sip_port)(c);
        more(c);
    })
    .await;
    (s, format!("127.0.0.1:{sip_port}").parse().unwrap())
}

#[tokio::test]
async fn a_caller_dialing_in_hears_the_agent_and_the_call_is_listed_as_01_with_its_webhook() {
    baresip::require();
    let hook = Receiver::start(0).await;
    let sip_port = baresip::free_port();
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        answering_sip(sip_port)(c);
        c.webhook.url = url;
    })
    .await;
    // The caller speaks after the agent's greeting and question.
    let setup = Setup { dial: Some(format!("sip:4008001234@127.0.0.1:{sip_port}")), ..Setup::default() };
    let caller = Baresip::start_with(&[("13900002222", false)], &voice(&[(3.0, 1.5)], 60.0), &setup);
    let listed = until(CALL_LIMIT, "the inbound call listed", async || {
        let v = inbound_records(&s, json!({ "telephone": "13900002222" })).await;
        (v["total"] == 1).then_some(v)
    })
    .await;
    let record = &listed["rows"][0];
    assert_eq!(record["callType"], "01", "{record}");
    assert_eq!(record["extnum"], "4008001234", "{record}");
    assert!(is_call_uuid(record["uuid"].as_str().unwrap(), "01"), "{record}");
    assert_ne!(record["answeredTime"], "", "{record}");
    assert_eq!(
        record["hangupCause"], "NORMAL_CLEARING:sip:200",
        "we hang up once the agent is done: {record}"
    );
    let dialogue = record["dialogue"].as_array().unwrap();
    assert_eq!(dialogue[0], json!({"role": "assistant", "content": "您好，这里是客服热线"}), "{record}");
    assert!(
        dialogue.iter().any(|t| t["role"] == "user"),
        "the caller's words are a turn of the dialogue: {record}"
    );
    // Both voices are in the recording, and the agent's reached the caller.
    let (agent, callee) = recording(&s, record).await;
    assert!(loudest(&agent) > 500.0 && loudest(&callee) > 500.0, "both voices recorded");
    assert!(caller.wait_log("terminated", CALL_LIMIT).await, "{}", caller.log());
    assert!(loudest(&caller.heard()) > 500.0, "the caller heard the agent");

    let events = hook.wait_for(1, CALL_LIMIT).await;
    assert_eq!(events[0]["type"], "call.ended");
    assert_eq!(events[0]["task"], Value::Null);
    assert_eq!(events[0]["record"], *record, "the webhook carries the listed row");
}

#[tokio::test]
async fn a_caller_offering_srtp_only_is_answered_with_srtp_and_hears_the_agent() {
    baresip::require();
    let sip_port = baresip::free_port();
    let s = TestServer::start_with(answering_sip(sip_port)).await;
    let setup = Setup {
        dial: Some(format!("sip:4008001234@127.0.0.1:{sip_port}")),
        media_encryption: Some("srtp-mand"),
        ..Setup::default()
    };
    let caller = Baresip::start_with(&[("13900004040", false)], &voice(&[(3.0, 1.5)], 60.0), &setup);
    let listed = until(CALL_LIMIT, "the SRTP call listed", async || {
        let v = inbound_records(&s, json!({ "telephone": "13900004040" })).await;
        (v["total"] == 1).then_some(v)
    })
    .await;
    let record = &listed["rows"][0];
    assert_ne!(record["answeredTime"], "", "{record}");
    let (agent, callee) = recording(&s, record).await;
    assert!(loudest(&agent) > 500.0 && loudest(&callee) > 500.0, "both voices, decrypted, recorded");
    assert!(caller.wait_log("terminated", CALL_LIMIT).await, "{}", caller.log());
    assert!(loudest(&caller.heard()) > 500.0, "the caller decrypted the agent's voice");
}

/// A SIP user agent written by hand on `from` (a loopback address), for one call to
/// `server`: its INVITE (resent until the server answers at all, as RFC 3261's timer A
/// does: the server's SIP socket may still be opening), a CANCEL, a BYE; each gives the
/// statuses it got, the final one acknowledged where it is an INVITE's.
struct RawCaller {
    socket: tokio::net::UdpSocket,
    server: std::net::SocketAddr,
    /// The call's Call-ID, tags and branch: one number.
    n: u32,
    called: std::sync::Mutex<(String, String)>,
    /// The To tag of the INVITE's final answer.
    to_tag: std::sync::Mutex<String>,
}

impl RawCaller {
    async fn on(from: &str, server: std::net::SocketAddr) -> RawCaller {
        let socket = tokio::net::UdpSocket::bind((from, 0)).await.unwrap();
        RawCaller {
            socket,
            server,
            n: rand::random(),
            called: Default::default(),
            to_tag: Default::default(),
        }
    }

    fn request(&self, method: &str, cseq: u32, branch: &str, body: &str) -> String {
        let local = self.socket.local_addr().unwrap();
        let (ip, n, server) = (local.ip(), self.n, self.server);
        let (called, caller) = self.called.lock().unwrap().clone();
        let to_tag = self.to_tag.lock().unwrap().clone();
        let content_type = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        format!(
            "{method} sip:{called}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{caller}@{ip}>;tag=f{n}\r\nTo: <sip:{called}@{server}>{to_tag}\r\n\
             Call-ID: {n}@{ip}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{caller}@{local}>\r\n\
             {content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    async fn send(&self, message: &str) {
        self.socket.send_to(message.as_bytes(), self.server).await.unwrap();
    }

    /// The next response, if one comes within `wait`.
    async fn response(&self, wait: Duration) -> Option<Msg> {
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await.ok()?.unwrap();
            let msg = Msg::parse(&String::from_utf8_lossy(&buf[..len])).unwrap();
            if msg.status().is_some() {
                return Some(msg);
            }
        }
    }

    /// Sends the INVITE until the server answers at all; that first status.
    async fn ring(&self, called: &str, caller: &str) -> u16 {
        *self.called.lock().unwrap() = (called.to_string(), caller.to_string());
        let ip = self.socket.local_addr().unwrap().ip();
        let sdp = format!(
            "v=0\r\no=- {n} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 8 0\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
            self.socket.local_addr().unwrap().port() + 2,
            n = self.n
        );
        let invite = self.request("INVITE", 1, &format!("{}i", self.n), &sdp);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.send(&invite).await;
            if let Some(msg) = self.response(Duration::from_millis(500)).await {
                let code = msg.status().unwrap();
                if code >= 200 {
                    self.acknowledge(&msg).await;
                }
                return code;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server answers the INVITE");
        }
    }

    async fn acknowledge(&self, last: &Msg) {
        let to = last.header("To").unwrap_or_default();
        *self.to_tag.lock().unwrap() =
            to.split_once(";tag=").map(|(_, t)| format!(";tag={t}")).unwrap_or_default();
        // A non-2xx is acknowledged in the INVITE's transaction, a 2xx in a new one.
        let branch = if last.status() < Some(300) { format!("{}a", self.n) } else { format!("{}i", self.n) };
        self.send(&self.request("ACK", 1, &branch, "")).await;
    }

    /// The INVITE's statuses, up to the final one (acknowledged).
    async fn invite(&self, called: &str, caller: &str) -> Vec<u16> {
        let mut codes = vec![self.ring(called, caller).await];
        self.rest_of_invite(&mut codes).await;
        codes
    }

    async fn rest_of_invite(&self, codes: &mut Vec<u16>) {
        while codes.last().is_some_and(|c| *c < 200) {
            let msg = self.response(Duration::from_secs(20)).await.expect("the INVITE's final answer");
            if msg.cseq_method() != "INVITE" {
                continue;
            }
            let code = msg.status().unwrap();
            if codes.last() != Some(&code) {
                codes.push(code);
            }
            if code >= 200 {
                self.acknowledge(&msg).await;
            }
        }
    }

    /// CANCELs the ringing INVITE: the CANCEL's status, then the INVITE's final one.
    async fn cancel(&self) -> (u16, u16) {
        self.send(&self.request("CANCEL", 1, &format!("{}i", self.n), "")).await;
        let (mut cancelled, mut invite) = (Vec::new(), vec![100]);
        while cancelled.is_empty() || invite.last().is_some_and(|c| *c < 200) {
            let msg = self.response(Duration::from_secs(20)).await.expect("answers to the CANCEL");
            let code = msg.status().unwrap();
            match msg.cseq_method() {
                "CANCEL" => cancelled.push(code),
                "INVITE" if code >= 200 => {
                    invite.push(code);
                    self.acknowledge(&msg).await;
                }
                _ => {}
            }
        }
        (cancelled[0], *invite.last().unwrap())
    }

    /// Hangs up the answered call: the BYE's status.
    async fn bye(&self) -> u16 {
        self.send(&self.request("BYE", 2, &format!("{}b", self.n), "")).await;
        loop {
            let msg = self.response(Duration::from_secs(20)).await.expect("an answer to the BYE");
            if msg.cseq_method() == "BYE" {
                return msg.status().unwrap();
            }
        }
    }
}

async fn metric(s: &TestServer, line_start: &str) -> f64 {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_invite_from_an_address_not_allowed_gets_403_and_is_not_answered() {
    let (s, server) = sip_server(|_| {}).await;
    let refused = r#"callcenter_inbound_refused_total{reason="not_allowed"}"#;
    let before = metric(&s, refused).await;
    // The trunk is at 127.0.0.1: a call from 127.0.0.2 is a stranger's.
    let stranger = RawCaller::on("127.0.0.2", server).await;
    assert_eq!(stranger.invite("4008001234", "13900003333").await, [403]);
    assert!(metric(&s, refused).await >= before + 1.0, "counted (other tests of this process count too)");
    // From the trunk's address the same call is answered.
    let trunk = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(trunk.invite("4008001234", "13900004444").await.last(), Some(&200));
    until(CALL_LIMIT, "the trunk's call listed", async || {
        (inbound_records(&s, json!({ "telephone": "13900004444" })).await["total"] == 1).then_some(())
    })
    .await;
    assert_eq!(inbound_records(&s, json!({ "telephone": "13900003333" })).await["total"], 0);
}

#[tokio::test]
async fn an_allow_list_takes_calls_from_its_networks_only() {
    let (s, server) = sip_server(|c| c.inbound.allow = vec!["127.0.0.2/32".into()]).await;
    assert_eq!(RawCaller::on("127.0.0.1", server).await.invite("4008001234", "13900005555").await, [403]);
    assert_eq!(
        RawCaller::on("127.0.0.2", server).await.invite("4008001234", "13900006666").await.last(),
        Some(&200)
    );
    drop(s);
}

#[tokio::test]
async fn a_call_to_a_number_not_answered_here_gets_404() {
    let (s, server) = sip_server(|_| {}).await;
    let caller = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(caller.invite("4008009999", "13900007777").await.last(), Some(&404));
    assert_eq!(inbound_records(&s, json!({})).await["total"], 0);
}

#[tokio::test]
async fn with_every_line_taken_a_call_gets_486_and_is_counted() {
    let (s, server) = sip_server(|c| c.dialer.max_concurrent_calls = 1).await;
    let busy = r#"callcenter_inbound_refused_total{reason="no_line"}"#;
    let before = metric(&s, busy).await;
    // The first call takes the one line (and keeps it: the agent talks for a while).
    let first = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(first.invite("4008001234", "13900008888").await, [100, 180, 200]);
    let second = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(second.invite("4008001234", "13900009999").await.last(), Some(&486));
    assert!(metric(&s, busy).await >= before + 1.0, "counted (other tests of this process count too)");
    // Once the first call is over, the line takes calls again.
    until(CALL_LIMIT, "the first call over", async || {
        (inbound_records(&s, json!({ "telephone": "13900008888" })).await["total"] == 1).then_some(())
    })
    .await;
    let third = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(third.invite("4008001234", "13900001010").await.last(), Some(&200));
}

#[tokio::test]
async fn outbound_calls_leave_the_reserved_lines_to_callers() {
    let s = TestServer::start_with(|c| {
        c.dialer.max_concurrent_calls = 3;
        c.inbound.reserved_calls = 1;
        // Calls of a second or two; a caller every 400 ms.
        c.sim.time_scale = 0.2;
        c.sim.answer_rate = 1.0;
        c.sim.inbound_calls_per_minute = 30.0;
    })
    .await;
    let tickets: Vec<Value> =
        (0..6).map(|i| crate::common::ticket(&format!("T-RESERVE-{i}"), &format!("1390000{i:04}"))).collect();
    s.create(&tickets).await;
    let mut most_calling = 0;
    until(CALL_LIMIT, "every task called", async || {
        let rows = s.tasks(json!({})).await["rows"].as_array().unwrap().clone();
        let calling = rows.iter().filter(|t| t["status"] == "呼叫中").count();
        most_calling = most_calling.max(calling);
        assert!(calling <= 2, "at most max_concurrent_calls − reserved_calls outbound calls: {rows:#?}");
        rows.iter().all(|t| crate::common::ENDED.contains(&t["status"].as_str().unwrap())).then_some(())
    })
    .await;
    assert_eq!(most_calling, 2, "outbound calls used the lines not reserved");
    let inbound = inbound_records(&s, json!({})).await;
    assert!(inbound["total"].as_i64().unwrap() >= 1, "callers got through meanwhile: {inbound}");
}

/// The server on the fake FreeSWITCH, answering `4008001234`.
async fn answering_freeswitch(fake: &FakeFreeswitch, max_calls: u32) -> TestServer {
    let port = fake.port();
    TestServer::start_with(move |s| {
        s.dialer.carrier = CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.dialer.max_concurrent_calls = max_calls;
        s.inbound.numbers = vec![InboundNumber {
            number: "4008001234".into(),
            greeting: "您好，这里是客服热线".into(),
            confirm: "请问有什么可以帮您".into(),
            ..InboundNumber::default()
        }];
    })
    .await
}

#[tokio::test]
async fn a_call_freeswitch_parks_for_the_server_is_answered_recorded_and_listed_as_01() {
    let fake = FakeFreeswitch::start().await;
    let s = answering_freeswitch(&fake, 5).await;
    // Once the server is connected and listening for parked calls.
    fake.wait_for_command(CALL_LIMIT, |c| c.starts_with("event plain")).await;
    let uuid = fake.call_in("13900001212", "4008001234", Callee::Answers { says: Some(SAYS) });
    fake.wait_for_command(CALL_LIMIT, |c| c == format!("api uuid_answer {uuid}")).await;
    let listed = until(CALL_LIMIT, "the FreeSWITCH inbound call listed", async || {
        let v = inbound_records(&s, json!({ "telephone": "13900001212" })).await;
        (v["total"] == 1).then_some(v)
    })
    .await;
    let record = &listed["rows"][0];
    assert_eq!(record["extnum"], "4008001234", "{record}");
    assert!(is_call_uuid(record["uuid"].as_str().unwrap(), "01"), "{record}");
    assert_eq!(record["dialogue"][0]["content"], "您好，这里是客服热线", "{record}");
    assert!(
        record["dialogue"].as_array().unwrap().iter().any(|t| t["role"] == "user" && t["content"] == SAYS),
        "the caller was heard: {record}"
    );
    assert!(!record["wavFileUrl"].as_str().unwrap().is_empty(), "recorded: {record}");
    let commands = fake.commands();
    let record_cmd = commands.iter().find(|c| c.starts_with(&format!("api uuid_record {uuid} start ")));
    assert!(
        record_cmd.is_some_and(|c| c.ends_with(&format!("{}.wav", record["uuid"].as_str().unwrap()))),
        "recorded under the call's uuid: {commands:#?}"
    );
    assert!(fake.answered(&uuid));
}

#[tokio::test]
async fn freeswitch_calls_to_unknown_numbers_or_with_no_line_free_are_turned_away() {
    let fake = FakeFreeswitch::start().await;
    let s = answering_freeswitch(&fake, 1).await;
    fake.wait_for_command(CALL_LIMIT, |c| c.starts_with("event plain")).await;
    let unknown = fake.call_in("13900001313", "4008009999", Callee::Answers { says: None });
    fake.wait_for_command(CALL_LIMIT, |c| c == format!("api uuid_kill {unknown} UNALLOCATED_NUMBER")).await;
    // The one line taken by a caller who stays on; the next caller hears busy.
    let first = fake.call_in("13900001414", "4008001234", Callee::Answers { says: None });
    fake.wait_for_command(CALL_LIMIT, |c| c == format!("api uuid_answer {first}")).await;
    let second = fake.call_in("13900001515", "4008001234", Callee::Answers { says: None });
    fake.wait_for_command(CALL_LIMIT, |c| c == format!("api uuid_kill {second} USER_BUSY")).await;
    assert!(!fake.answered(&unknown) && !fake.answered(&second));
    fake.caller_hangs_up(&first);
    until(CALL_LIMIT, "the first call listed", async || {
        (inbound_records(&s, json!({})).await["total"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_caller_who_cancels_before_the_answer_gets_487_and_a_missed_call_record() {
    let (s, server) = sip_server(|c| c.dialer.max_concurrent_calls = 1).await;
    // The one line is taken, so the next call rings (waiting for a line) until the
    // caller gives up: then the first call ends and frees it.
    let first = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(first.invite("4008001234", "13900002020").await, [100, 180, 200]);
    let second = RawCaller::on("127.0.0.1", server).await;
    assert_eq!(second.ring("4008001234", "13900003030").await, 100);
    assert_eq!(second.cancel().await, (200, 487));
    assert_eq!(first.bye().await, 200);
    let missed = until(CALL_LIMIT, "the missed call listed", async || {
        let v = inbound_records(&s, json!({ "telephone": "13900003030" })).await;
        (v["total"] == 1).then_some(v)
    })
    .await;
    let record = &missed["rows"][0];
    assert_eq!(record["hangupCause"], "ORIGINATOR_CANCEL:sip:487", "{record}");
    assert_eq!(record["answeredTime"], "", "never answered: {record}");
    assert_eq!(record["timeLen"], 0, "{record}");
    assert_eq!(record["extnum"], "4008001234", "{record}");
    assert_eq!(record["dialogue"], json!([]), "{record}");
    let first = inbound_records(&s, json!({ "telephone": "13900002020" })).await;
    assert_eq!(first["rows"][0]["hangupCause"], "NORMAL_CLEARING:sip:200", "the caller hung up: {first}");
}

#[tokio::test]
async fn at_shutdown_callers_are_turned_away_and_calls_in_progress_are_hung_up_and_recorded() {
    let s = TestServer::start_with(|c| {
        c.dialer.node_id = "38".to_string().try_into().unwrap();
        // A caller every 100 ms, each staying on for many seconds: the lines stay full.
        c.sim.time_scale = 1.0;
        c.sim.inbound_calls_per_minute = 600.0;
        c.dialer.max_concurrent_calls = 4;
        c.dialer.shutdown_grace_secs = 1;
        c.inbound.numbers = vec![InboundNumber { number: "4008003838".into(), ..InboundNumber::default() }];
    })
    .await;
    until_logged(CALL_LIMIT, "an inbound call answered", |l| {
        l.contains("inbound call: answering") && of_node(l, "38")
    })
    .await;
    let (mut settings, db, dir) = s.stop().await;
    let turned_away = log_text().lines().any(|l| l.contains("4008003838") && l.contains("shutting_down"));
    assert!(turned_away, "callers during the grace period are turned away (503)");
    // Read back on the same database, the dialer off.
    settings.dialer.enabled = false;
    let s = TestServer::start_on(settings, db, dir).await;
    let listed = inbound_records(&s, json!({ "extnum": "4008003838" })).await;
    let rows = listed["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["hangupCause"] == "SYSTEM_SHUTDOWN:null" && r["answeredTime"] != ""),
        "calls still on after the grace period are hung up and recorded: {listed}"
    );
}

#[tokio::test]
async fn a_caller_who_asks_for_a_person_is_handed_to_the_numbers_transfer_destination() {
    let hook = Receiver::start(0).await;
    let url = hook.url.clone();
    let s = TestServer::start_with(move |c| {
        // Many short sim calls: a few of the callers ask for a person.
        c.sim.inbound_calls_per_minute = 600.0;
        c.sim.time_scale = 0.02;
        c.inbound.numbers = vec![InboundNumber {
            number: "4008005555".into(),
            transfer_to: Some("8001".into()),
            ..InboundNumber::default()
        }];
        c.webhook.url = url;
    })
    .await;
    let handed = until(CALL_LIMIT * 3, "a caller handed to a person", async || {
        let v = inbound_records(&s, json!({ "extnum": "8001" })).await;
        v["rows"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(handed["intent"], "转人工", "{handed}");
    assert_eq!(handed["callType"], "01", "{handed}");
    let turns = handed["dialogue"].as_array().unwrap();
    assert_eq!(
        turns.last().unwrap()["content"],
        "[转人工 8001]",
        "the dialogue ends with the hand-over: {handed}"
    );
    let uuid = handed["uuid"].as_str().unwrap().to_string();
    let event = until(CALL_LIMIT, "its call.transferred event", async || {
        hook.events()
            .into_iter()
            .find(|e| e["type"] == "call.transferred" && e["transfer"]["uuid"] == uuid.as_str())
    })
    .await;
    assert_eq!(event["task"], Value::Null, "an inbound call has no task: {event}");
    assert_eq!(event["transfer"]["extnum"], "8001", "{event}");
}
