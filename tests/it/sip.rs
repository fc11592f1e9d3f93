//! The SIP carrier end to end: the real server (`dialer.carrier = "sip"`) calls a real SIP
//! peer on loopback, and the outcome is read back through the HTTP API.
//!
//! baresip (tests/it/support/baresip.rs) is the callee wherever it can be: it answers and
//! talks, rings until cancelled, says 404 for a number it does not know, and hears us.
//! What baresip 1.0 cannot be told to do (reject with 486/603/480/503, challenge for
//! digest auth, send OPTIONS and a re-INVITE within a call, press keys on cue, hang up
//! first) is done by a scripted callee (tests/it/support/sip_peer.rs).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestServer, ticket};
use crate::support::baresip::{self, Baresip};
use crate::support::funasr_peer::FunasrPeer;
use crate::support::sip_peer::{Script, SipPeer};
use crate::support::transcriber::Transcriber;
use callcenter::agent::script::KeyAnswer;
use callcenter::config::Settings;
use callcenter::domain::{HangupCause, Phone};
use callcenter::recording::synth_speech;
use callcenter::telephony::CarrierKind;
use callcenter::telephony::asr::AsrEngine;
use callcenter::telephony::hearing::Ear;
use callcenter::telephony::sip::{SipCarrier, SipTransport};
use callcenter::telephony::tts::{self, Espeak, Tts, TtsEngine};
use callcenter::telephony::{Carrier, DialRequest, DialResult, HangupReason, Heard, Said};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Every call of these tests ends well within this, even on a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// The server calls through `trunk`, speaks with the synthetic voice (fast, and the same
/// with or without espeak-ng) and says short lines; a failed call is not tried again.
fn through(trunk: SocketAddr) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        short_sip_calls(s);
        s.sip.trunk = trunk.to_string();
    }
}

/// The SIP carrier on loopback (any RTP port), the synthetic voice and short lines; a
/// failed call is not tried again. The trunk is the caller's to set.
pub(crate) fn short_sip_calls(s: &mut Settings) {
    s.dialer.carrier = CarrierKind::Sip;
    s.dialer.max_attempts = 1;
    s.dialer.ring_timeout_secs = 20;
    s.sip.bind = "127.0.0.1:0".into();
    s.sip.rtp_port_min = 0;
    s.tts.engine = TtsEngine::Synthetic;
    let script = &mut s.agent.script;
    script.greeting = "您好".into();
    script.body = String::new();
    script.confirm = "清楚了吗".into();
    script.on_silence = String::new();
    script.closing = "再见".into();
}

/// The callee's voice: for each `(pause, speech)` in seconds, quiet then a speech-like
/// sound; then quiet up to `total` seconds.
pub(crate) fn voice(parts: &[(f64, f64)], total: f64) -> Vec<i16> {
    let n = |secs: f64| (secs * 8000.0) as usize;
    let mut out = Vec::new();
    for &(pause, speech) in parts {
        out.resize(out.len() + n(pause), 0);
        out.extend(synth_speech((speech * 4.0) as usize, n(speech), 220.0));
    }
    out.resize(n(total).max(out.len()), 0);
    out
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

/// The loudest half second of `samples` (8 kHz).
pub(crate) fn loudest(samples: &[i16]) -> f64 {
    samples.chunks(4000).map(rms).fold(0.0, f64::max)
}

async fn record_of(s: &TestServer, phone: &str) -> Value {
    let v = s.records(json!({ "telephone": phone })).await;
    assert_eq!(v["total"], 1, "one record for {phone}: {v}");
    v["rows"][0].clone()
}

/// The recording of `record`, fetched as a client would, split into (agent, callee).
pub(crate) async fn recording(s: &TestServer, record: &Value) -> (Vec<i16>, Vec<i16>) {
    let url = record["wavFileUrl"].as_str().unwrap();
    assert!(!url.is_empty(), "a recording: {record}");
    let res = s.get(url).await;
    assert_eq!(res.status(), 200, "{url}");
    let bytes = res.bytes().await.unwrap();
    let mut wav = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (8000, 2, 16));
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    samples.chunks(2).map(|f| (f[0], f[1])).unzip()
}

#[tokio::test]
async fn an_answered_call_records_both_voices_and_ends_with_normal_clearing() {
    baresip::require();
    // The callee speaks twice, each time after the agent has asked.
    let callee = Baresip::start(&[("13900001111", true)], &voice(&[(2.5, 1.5), (2.5, 1.5)], 60.0));
    let s = TestServer::start_with(through(callee.addr)).await;
    s.create(&[ticket("T-ANSWER", "13900001111")]).await;
    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["status"], "已完成", "{tasks:?}");
    assert_eq!(tasks[0]["connected"], true);

    let record = record_of(&s, "13900001111").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_ne!(record["answeredTime"], "");
    let dialogue = record["dialogue"].as_array().unwrap();
    assert_eq!(dialogue[0], json!({"role": "assistant", "content": "您好"}));
    let heard: Vec<&str> =
        dialogue.iter().filter(|t| t["role"] == "user").map(|t| t["content"].as_str().unwrap()).collect();
    assert!(
        !heard.is_empty() && heard.iter().all(|t| t.starts_with("[语音 ") && t.ends_with("秒]")),
        "{dialogue:?}"
    );

    let (agent, callee_side) = recording(&s, &record).await;
    let seconds = agent.len() as f64 / 8000.0;
    let time_len = record["timeLen"].as_f64().unwrap();
    assert!((seconds - time_len).abs() <= 1.5, "recording {seconds} s, timeLen {time_len} s");
    assert!(loudest(&agent) > 1000.0, "the agent's voice: {}", loudest(&agent));
    assert!(loudest(&callee_side) > 1000.0, "the callee's voice: {}", loudest(&callee_side));
    // The callee was quiet for its first two seconds, and so is its channel.
    assert!(rms(&callee_side[..8000]) < 100.0, "{}", rms(&callee_side[..8000]));

    // baresip heard the agent.
    assert!(callee.wait_log("terminated", Duration::from_secs(10)).await, "{}", callee.log());
    let heard_by_callee = callee.heard();
    assert!(loudest(&heard_by_callee) > 1000.0, "baresip heard {}", loudest(&heard_by_callee));
}

#[tokio::test]
async fn a_callee_who_speaks_over_the_agent_cuts_the_line_short_and_is_heard() {
    baresip::require();
    // The ticket takes ten seconds to read (the synthetic voice says four characters a
    // second); the callee starts speaking three seconds after answering, during it.
    let ticket_line = "您的工单内容如下请仔细听好".repeat(3);
    let callee = Baresip::start(&[("13900005555", true)], &voice(&[(3.0, 2.0)], 60.0));
    let s = TestServer::start_with(|s| {
        through(callee.addr)(s);
        s.agent.script.body = ticket_line.clone();
    })
    .await;
    s.create(&[ticket("T-BARGE", "13900005555")]).await;
    s.wait_all_ended(CALL_LIMIT).await;

    let record = record_of(&s, "13900005555").await;
    let dialogue = record["dialogue"].as_array().unwrap();
    let said = |i: usize| dialogue[i]["content"].as_str().unwrap();
    // The line was cut where the callee spoke, and the dialogue keeps what they heard.
    assert_eq!(dialogue[1]["role"], "assistant", "{dialogue:?}");
    assert!(said(1).ends_with('…') && ticket_line.starts_with(said(1).trim_end_matches('…')), "{dialogue:?}");
    assert!(said(1).chars().count() < ticket_line.chars().count() / 2, "{dialogue:?}");
    // What they said is their turn, right after.
    assert_eq!(dialogue[2]["role"], "user", "{dialogue:?}");
    assert!(said(2).starts_with("[语音 "), "{dialogue:?}");

    // On the wire: the agent's audio (the recording's left channel is what was sent)
    // stops soon after the callee starts and stays off while they speak, where the line
    // would have gone on for seven more seconds.
    let (agent, callee_side) = recording(&s, &record).await;
    let loud =
        |s: &[i16], from: usize| (from..s.len() / 160).find(|&f| rms(&s[f * 160..(f + 1) * 160]) > 300.0);
    let spoke = loud(&callee_side, 2 * 50).expect("the callee spoke");
    let quiet_from = (spoke..agent.len() / 160)
        .find(|&f| agent[f * 160..].chunks(160).take(25).all(|c| rms(c) < 100.0))
        .expect("the agent fell quiet");
    let cut_after_ms = (quiet_from - spoke) * 20;
    eprintln!("barge-in: the agent fell quiet {cut_after_ms} ms after the callee began");
    assert!(quiet_from > spoke, "the agent was speaking when the callee began");
    assert!(cut_after_ms < 2000, "{cut_after_ms} ms: the line was not cut");
}

#[tokio::test]
async fn with_a_recogniser_the_callees_own_words_are_heard_and_stored() {
    baresip::require();
    // The recogniser is pocketsphinx, listening for one of these answers.
    let answers = ["yes I understand thank you", "please call me back tomorrow morning", "no thank you"];
    let asr = Transcriber::start(&answers);
    // The callee gives the second answer in English, in espeak-ng's voice, over G.711 as a
    // person on the line would.
    let english = Espeak { program: "espeak-ng".into(), voice: "en-us".into(), speed: 150 };
    let words = english.synthesize(answers[1]).await.expect("espeak-ng speaks");
    let mut said = vec![0; 20_000];
    said.extend(words);
    said.resize(60 * 8000, 0);
    let callee = Baresip::start(&[("13900002222", true)], &said);
    let s = TestServer::start_with(|s| {
        through(callee.addr)(s);
        s.asr.engine = AsrEngine::Openai;
        s.asr.url = asr.url.clone();
        s.asr.language = "en".into();
    })
    .await;
    s.create(&[ticket("T-HEARD", "13900002222")]).await;
    s.wait_all_ended(CALL_LIMIT).await;

    let record = record_of(&s, "13900002222").await;
    let heard: Vec<&str> = record["dialogue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(heard[0], "please call me back tomorrow morning", "{:#}", record["dialogue"]);

    // The answer's latency, part by part, on /metrics: the parts add up to the total, and
    // the recogniser's part is there (a real recogniser takes time).
    let parts = ["end_of_turn", "recognition", "agent", "synthesis", "sending"];
    let latency =
        crate::common::until(Duration::from_secs(10), "every part of a turn's latency", async || {
            let text = s.get("/metrics").await.text().await.unwrap();
            let of = |part: &str, what: &str| -> f64 {
                let key = format!("callcenter_turn_latency_seconds_{what}{{part=\"{part}\"}} ");
                text.lines().find_map(|l| l.strip_prefix(key.as_str())).map_or(0.0, |v| v.parse().unwrap())
            };
            let total = (of("total", "count"), of("total", "sum"));
            // Other calls of this process may be half way through recording theirs.
            (total.0 >= 1.0 && parts.iter().all(|p| of(p, "count") == total.0))
                .then(|| (total, parts.map(|p| of(p, "sum"))))
        })
        .await;
    let ((turns, total), sums) = latency;
    eprintln!("turn latency over {turns} turns, seconds in all: {parts:?} = {sums:?}, total {total}");
    assert!((sums.iter().sum::<f64>() - total).abs() < 1e-6, "{sums:?} vs {total}");
    assert!(sums[1] > 0.0, "recognition took no time: {sums:?}");
}

#[tokio::test]
async fn a_streaming_recogniser_hears_the_turn_as_it_is_spoken() {
    baresip::require();
    let asr = FunasrPeer::start(&["请明天", "上午"], "请明天上午再打来。").await;
    // Two seconds of speech after the agent's first line.
    let callee = Baresip::start(&[("13900004444", true)], &voice(&[(2.5, 2.0)], 60.0));
    let s = TestServer::start_with(|s| {
        through(callee.addr)(s);
        s.asr.engine = AsrEngine::Funasr;
        s.asr.url = asr.url.clone();
        s.asr.hotwords = r#"{"再打来": 20}"#.into();
    })
    .await;
    s.create(&[ticket("T-STREAM", "13900004444")]).await;
    s.wait_all_ended(CALL_LIMIT).await;

    let record = record_of(&s, "13900004444").await;
    let dialogue = record["dialogue"].as_array().unwrap();
    let user = dialogue.iter().find(|t| t["role"] == "user").and_then(|t| t["content"].as_str());
    assert_eq!(user, Some("请明天上午再打来。"), "{dialogue:?}");

    let turns = asr.turns();
    let turn = turns.first().expect("a turn reached the recogniser");
    assert_eq!(turn.opening["mode"], "2pass", "{turn:?}");
    assert_eq!(turn.opening["audio_fs"], 8000, "{turn:?}");
    assert_eq!(turn.opening["hotwords"], r#"{"再打来": 20}"#, "{turn:?}");
    assert!(turn.ended, "the end of speech was sent: {turn:?}");
    // The audio came frame by frame while the callee spoke, not in one piece at the end:
    // about the speech's two seconds, and at least the speech itself (16 kB a second).
    assert!(turn.audio_frames >= 50, "{turn:?}");
    assert!(turn.audio_bytes >= 24_000, "{turn:?}");
    assert!(turn.audio_span >= Duration::from_secs(1), "{turn:?}");
}

#[tokio::test]
async fn when_the_recogniser_fails_the_turn_is_heard_as_its_length_and_counted() {
    baresip::require();
    // A port where nothing listens: every recognition is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let callee = Baresip::start(&[("13900003333", true)], &voice(&[(2.5, 1.5)], 60.0));
    let s = TestServer::start_with(|s| {
        through(callee.addr)(s);
        s.asr.engine = AsrEngine::Openai;
        s.asr.url = format!("http://{closed}/v1");
    })
    .await;
    s.create(&[ticket("T-DEAF", "13900003333")]).await;
    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["status"], "已完成", "{tasks:?}");

    let record = record_of(&s, "13900003333").await;
    let dialogue = record["dialogue"].as_array().unwrap();
    let user = dialogue.iter().find(|t| t["role"] == "user").and_then(|t| t["content"].as_str());
    assert!(user.is_some_and(|t| t.starts_with("[语音 ") && t.ends_with("秒]")), "{dialogue:?}");
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("callcenter_asr_failures_total{engine=\"openai\"}"), "{metrics}");
}

#[tokio::test]
async fn a_session_hears_a_turn_by_its_length_and_speaks_in_real_time() {
    baresip::require();
    // The callee says two seconds' worth after one second of quiet.
    let callee = Baresip::start(&[("13900007777", true)], &voice(&[(1.0, 2.0)], 60.0));
    let mut settings = Settings::default();
    through(callee.addr)(&mut settings);
    // The real TTS when it is there (CI installs it), else the synthetic voice.
    if Command::new("espeak-ng").arg("--version").output().is_ok() {
        settings.tts.engine = TtsEngine::Espeak;
    }
    let max_call = Duration::from_secs(settings.dialer.max_call_secs);
    let carrier =
        SipCarrier::new(&settings.sip, max_call, tts::voice(&settings.tts), Ear::new(&settings.asr, None));
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("ai_call/2025/08/16/21/call.wav");
    let request = DialRequest {
        call_id: "2508162111590110001".into(),
        phone: Phone::parse("13900007777").unwrap(),
        ring_timeout: Duration::from_secs(20),
        recording: Some(wav.clone()),
        caller_id: None,
    };
    let DialResult::Answered(mut call) = carrier.dial(request).await else { panic!("not answered") };

    let t = Instant::now();
    let heard = call.listen(Duration::from_secs(10)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(heard, Heard::Speech("[语音 2秒]".into()));
    // One second of quiet, two of speech, then the 700 ms that end the turn.
    assert!(took >= Duration::from_millis(3300) && took < Duration::from_millis(5500), "{took:?}");

    // Nothing more is said: the wait runs out.
    let t = Instant::now();
    assert_eq!(call.listen(Duration::from_millis(1500)).await.unwrap(), Heard::Silence);
    assert!(t.elapsed() >= Duration::from_millis(1500));

    let t = Instant::now();
    call.say("您好，请问是张三吗？").await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_secs(8), "{took:?}");

    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!((end.cause, end.recorded), (HangupCause::normal_clearing(), true));
    let mut reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let (agent, callee_side): (Vec<i16>, Vec<i16>) = samples.chunks(2).map(|f| (f[0], f[1])).unzip();
    // The callee's speech sits one to three seconds in; the agent spoke at the end.
    assert!(rms(&callee_side[8000 + 800..3 * 8000 - 800]) > 1000.0);
    assert!(rms(&callee_side[..6400]) < 100.0);
    assert!(loudest(&agent[agent.len() - took.as_millis() as usize * 8..]) > 500.0);
    assert!(callee.wait_log("session closed", Duration::from_secs(10)).await, "{}", callee.log());
}

#[tokio::test]
async fn stop_tasks_hangs_up_a_call_in_progress_with_a_bye() {
    baresip::require();
    let callee = Baresip::start(&[("13900002222", true)], &voice(&[], 60.0));
    let s = TestServer::start_with(through(callee.addr)).await;
    let ids = s.create(&[ticket("T-STOP", "13900002222")]).await;
    assert!(callee.wait_log("Call established", Duration::from_secs(30)).await, "{}", callee.log());
    // The dialer has noted the answer: the call is talking.
    crate::common::until(Duration::from_secs(10), "the answer to be noted", async || {
        crate::common::answered(&s.db, ids[0]).then_some(())
    })
    .await;
    let v = s.post("/api/aicall/stopTasks", &json!({ "batchIds": ids })).await;
    assert_eq!(v["code"], 0, "{v}");

    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["status"], "已停止");
    let record = record_of(&s, "13900002222").await;
    assert_eq!(record["hangupCause"], "MANAGER_REQUEST:null", "{record}");
    assert_ne!(record["answeredTime"], "");
    // baresip got our BYE: it reports the session closed by the other side.
    assert!(callee.wait_log("session closed", Duration::from_secs(10)).await, "{}", callee.log());
}

#[tokio::test]
async fn a_call_ringing_past_the_ring_timeout_is_cancelled_and_an_unknown_number_gets_404() {
    baresip::require();
    // 13900003333 rings and nobody picks up; baresip has no account for 13900004444.
    let callee = Baresip::start(&[("13900003333", false)], &voice(&[], 5.0));
    let s = TestServer::start_with(|settings| {
        through(callee.addr)(settings);
        settings.dialer.ring_timeout_secs = 2;
    })
    .await;
    s.create(&[ticket("T-RING", "13900003333"), ticket("T-UNKNOWN", "13900004444")]).await;
    s.wait_all_ended(CALL_LIMIT).await;

    let rang_out = record_of(&s, "13900003333").await;
    assert_eq!(rang_out["hangupCause"], "NO_ANSWER:sip:480", "{rang_out}");
    assert_eq!(rang_out["answeredTime"], "");
    assert_eq!(rang_out["wavFileUrl"], "");
    let unknown = record_of(&s, "13900004444").await;
    assert_eq!(unknown["hangupCause"], "UNALLOCATED_NUMBER:sip:404", "{unknown}");
    // baresip saw the CANCEL: the incoming call closed without being answered.
    assert!(callee.wait_log("session closed", Duration::from_secs(10)).await, "{}", callee.log());
    assert!(!callee.log().contains("Call established"), "{}", callee.log());
}

#[tokio::test]
async fn stopping_a_ringing_call_cancels_its_invite() {
    baresip::require();
    let callee = Baresip::start(&[("13900005555", false)], &voice(&[], 5.0));
    let s = TestServer::start_with(through(callee.addr)).await;
    let ids = s.create(&[ticket("T-CANCEL", "13900005555")]).await;
    assert!(callee.wait_log("Incoming call", Duration::from_secs(30)).await, "{}", callee.log());
    s.post("/api/aicall/stopTasks", &json!({ "ticketNos": ["T-CANCEL"] })).await;

    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["batchId"], ids[0]);
    assert_eq!(tasks[0]["status"], "已停止");
    let record = record_of(&s, "13900005555").await;
    assert_eq!(record["hangupCause"], "MANAGER_REQUEST:null", "{record}");
    assert_eq!(record["answeredTime"], "");
    assert!(callee.wait_log("session closed", Duration::from_secs(10)).await, "{}", callee.log());
    assert!(!callee.log().contains("Call established"), "{}", callee.log());
}

#[tokio::test]
async fn busy_declined_unavailable_and_failing_answers_map_to_their_hangup_causes() {
    // baresip 1.0 cannot be told to answer 486 or 603: a scripted callee does.
    let peer = SipPeer::start(|number| match &number[number.len() - 4..] {
        "4860" => Script::Reject(486),
        "6030" => Script::Reject(603),
        "4800" => Script::Reject(480),
        _ => Script::Reject(503),
    })
    .await;
    let s = TestServer::start_with(through(peer.addr)).await;
    let cases = [
        ("13900004860", "USER_BUSY:sip:486"),
        ("13900006030", "CALL_REJECTED:sip:603"),
        ("13900004800", "NO_ANSWER:sip:480"),
        ("13900005030", "NORMAL_TEMPORARY_FAILURE:sip:503"),
    ];
    let tickets: Vec<Value> = cases.iter().map(|(phone, _)| ticket(&format!("T-{phone}"), phone)).collect();
    s.create(&tickets).await;
    s.wait_all_ended(CALL_LIMIT).await;
    for (phone, cause) in cases {
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], cause, "{phone}: {record}");
        assert_eq!(record["answeredTime"], "");
        assert_eq!(record["timeLen"], 0);
    }
    // Each final answer was acknowledged.
    let events = peer.events();
    for code in [486, 603, 480, 503] {
        assert!(events.contains(&format!("ACK {code}")), "{events:?}");
    }
}

#[tokio::test]
async fn a_trunk_that_challenges_gets_digest_credentials_and_wrong_ones_are_rejected() {
    let answer = || Box::new(Script::Answer { talk: Duration::from_millis(500), in_dialog: false });
    let peer = SipPeer::start(move |number| Script::Auth {
        proxy: number.ends_with("4070"),
        user: "alice".into(),
        password: "s3cret".into(),
        then: answer(),
    })
    .await;
    let s = TestServer::start_with(|settings| {
        through(peer.addr)(settings);
        settings.sip.username = "alice".into();
        settings.sip.password = "s3cret".into();
    })
    .await;
    s.create(&[ticket("T-401", "13900004010"), ticket("T-407", "13900004070")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    for phone in ["13900004010", "13900004070"] {
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{phone}: {record}");
        assert_ne!(record["answeredTime"], "");
    }
    let events = peer.events();
    assert_eq!(events.iter().filter(|e| *e == "auth ok").count(), 2, "{events:?}");

    let wrong = TestServer::start_with(|settings| {
        through(peer.addr)(settings);
        settings.sip.username = "alice".into();
        settings.sip.password = "guess".into();
    })
    .await;
    wrong.create(&[ticket("T-WRONG", "13900004011")]).await;
    wrong.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&wrong, "13900004011").await;
    assert_eq!(record["hangupCause"], "CALL_REJECTED:sip:403", "{record}");
    assert!(peer.events().contains(&"auth wrong".to_string()));
}

#[tokio::test]
async fn options_re_invite_and_the_callees_bye_are_answered_as_a_phone_would() {
    let peer =
        SipPeer::start(|_| Script::Answer { talk: Duration::from_millis(1500), in_dialog: true }).await;
    let s = TestServer::start_with(through(peer.addr)).await;
    s.create(&[ticket("T-DIALOG", "13900002000")]).await;
    s.wait_all_ended(CALL_LIMIT).await;

    let record = record_of(&s, "13900002000").await;
    // The callee hung up first: their BYE is the end of the call.
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert!(record["timeLen"].as_i64().unwrap() <= 10, "{record}");
    let events = peer.events();
    let has = |e: &str| events.iter().any(|x| x.starts_with(e));
    assert!(has("ACK 200"), "{events:?}");
    assert!(has("OPTIONS 200"), "{events:?}");
    assert!(has("re-INVITE 200 same-sdp=true"), "{events:?}");
    assert!(has("BYE sent, answered 200"), "{events:?}");
    assert!(!has("BYE received"), "we did not hang up ourselves: {events:?}");
    // Our RTP kept flowing across the re-INVITE.
    let after: usize = events
        .iter()
        .find_map(|e| e.strip_prefix("rtp after re-INVITE "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(after >= 5, "{events:?}");
}

#[tokio::test]
async fn a_callee_whose_media_stops_without_a_bye_is_hung_up_with_media_timeout() {
    // The scripted callee answers and then sends no RTP at all, and no BYE for a minute.
    let peer = SipPeer::start(|_| Script::Answer { talk: Duration::from_secs(60), in_dialog: false }).await;
    let s = TestServer::start_with(|settings| {
        through(peer.addr)(settings);
        settings.sip.rtp_timeout_secs = 2;
    })
    .await;
    s.create(&[ticket("T-SILENT", "13900002001")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900002001").await;
    assert_eq!(record["hangupCause"], "MEDIA_TIMEOUT:null", "{record}");
    let events = peer.events();
    assert!(events.iter().any(|e| e == "BYE received"), "we hung up with a BYE: {events:?}");
}

/// A callee who presses `key` (by SIP INFO with `info`) while the agent says its first
/// lines, to the server with key 1 meaning 已确认 and key 2 拒绝: the call's record.
async fn a_call_answered_by_a_key(phone: &str, key: char, info: bool) -> (Value, Vec<String>) {
    let peer = SipPeer::start(move |_| Script::Presses { key, info, talk: Duration::from_secs(40) }).await;
    let s = TestServer::start_with(|s| {
        through(peer.addr)(s);
        s.agent.script.keys =
            [("1".to_string(), KeyAnswer::Confirmed), ("2".to_string(), KeyAnswer::Refused)].into();
    })
    .await;
    s.create(&[ticket("T-KEY", phone)]).await;
    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(tasks[0]["status"], "已完成", "{tasks:?}");
    let record = record_of(&s, phone).await;
    (record, peer.events())
}

fn user_turns(record: &Value) -> Vec<&str> {
    let dialogue = record["dialogue"].as_array().unwrap();
    dialogue.iter().filter(|t| t["role"] == "user").map(|t| t["content"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_key_pressed_as_rfc_4733_telephone_events_is_a_turn_and_the_answer_it_stands_for() {
    let (record, events) = a_call_answered_by_a_key("13900003001", '1', false).await;
    assert!(events.iter().any(|e| e == "pressed 1"), "{events:?}");
    // One press, one turn, though its end came three times; it answered the question.
    assert_eq!(user_turns(&record), ["[按键 1]"], "{record}");
    assert_eq!(record["intent"], "已确认", "{record}");
    let said: Vec<&str> =
        record["dialogue"].as_array().unwrap().iter().map(|t| t["content"].as_str().unwrap()).collect();
    assert_eq!(said, ["您好", "清楚了吗", "[按键 1]", "好的，感谢您的确认。", "再见"], "{record}");
    // We ended the call once the script was done.
    assert!(events.iter().any(|e| e == "BYE received"), "{events:?}");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
}

#[tokio::test]
async fn a_key_pressed_by_sip_info_is_a_turn_and_the_answer_it_stands_for() {
    let (record, events) = a_call_answered_by_a_key("13900003002", '2', true).await;
    assert!(events.iter().any(|e| e == "INFO 2 200"), "{events:?}");
    assert_eq!(user_turns(&record), ["[按键 2]"], "{record}");
    assert_eq!(record["intent"], "拒绝", "{record}");
    let dialogue = record["dialogue"].as_array().unwrap();
    assert!(dialogue.iter().any(|t| t["content"] == "好的，打扰您了。"), "{record}");
}

#[tokio::test]
async fn a_key_pressed_while_the_agent_speaks_answers_the_next_listen_once() {
    let peer =
        SipPeer::start(|_| Script::Presses { key: '5', info: false, talk: Duration::from_secs(40) }).await;
    let mut settings = Settings::default();
    through(peer.addr)(&mut settings);
    let max_call = Duration::from_secs(settings.dialer.max_call_secs);
    let carrier =
        SipCarrier::new(&settings.sip, max_call, tts::voice(&settings.tts), Ear::new(&settings.asr, None));
    let request = DialRequest {
        call_id: "2508162111590110005".into(),
        phone: Phone::parse("13900003005").unwrap(),
        ring_timeout: Duration::from_secs(20),
        recording: None,
        caller_id: None,
    };
    let DialResult::Answered(mut call) = carrier.dial(request).await else { panic!("not answered") };
    // The agent speaks until the callee has pressed their key, and no one listens.
    let mut lines = 0;
    while !peer.events().iter().any(|e| e == "pressed 5") {
        assert!(lines < 20, "no key pressed: {:?}", peer.events());
        call.say("请您按键选择").await.unwrap();
        lines += 1;
    }
    assert_eq!(call.listen(Duration::from_secs(10)).await.unwrap(), Heard::Speech("[按键 5]".into()));
    // Heard once: the next wait hears nothing.
    assert_eq!(call.listen(Duration::from_millis(1500)).await.unwrap(), Heard::Silence);
    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!(end.cause, HangupCause::normal_clearing());
}

/// An OpenAI-compatible speech server for one line: it answers with `first` at once and
/// holds the rest of the body until `release` is sent.
async fn held_speech_server(first: Vec<u8>, rest: Vec<u8>) -> (String, oneshot::Sender<()>) {
    let (release, released) = oneshot::channel::<()>();
    let parts = Arc::new(std::sync::Mutex::new(Some((first, rest, released))));
    let speech = move || async move {
        let (first, rest, released) = parts.lock().unwrap().take().expect("one line is asked for");
        let rest = async move {
            let _ = released.await;
            rest
        };
        let body = futures::stream::iter([first]).chain(futures::stream::once(rest));
        axum::body::Body::from_stream(body.map(Ok::<_, std::convert::Infallible>))
    };
    let app = axum::Router::new().route("/v1/audio/speech", axum::routing::post(speech));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, release)
}

/// 20 ms frames (8 kHz) of `samples` that carry sound.
fn loud_frames(samples: &[i16]) -> usize {
    samples.chunks_exact(160).filter(|f| rms(f) > 1000.0).count()
}

#[tokio::test]
async fn a_line_from_a_speech_server_is_heard_while_the_server_is_still_sending_it() {
    // 1.6 s of a tone as OpenAI's raw PCM (24 kHz, 16-bit little-endian); the first part
    // ends half way through a sample.
    let line: Vec<u8> = (0..38_400)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 24_000.0).sin()) as i16)
        .flat_map(i16::to_le_bytes)
        .collect();
    let (first, rest) = line.split_at(24_001);
    let (url, release) = held_speech_server(first.to_vec(), rest.to_vec()).await;
    let peer = SipPeer::start(|_| Script::Answer { talk: Duration::from_secs(60), in_dialog: false }).await;
    let mut settings = Settings::default();
    through(peer.addr)(&mut settings);
    settings.tts.engine = TtsEngine::Openai;
    settings.tts.url = url;
    let max_call = Duration::from_secs(settings.dialer.max_call_secs);
    let carrier =
        SipCarrier::new(&settings.sip, max_call, tts::voice(&settings.tts), Ear::new(&settings.asr, None));
    let request = DialRequest {
        call_id: "2508162111590110008".into(),
        phone: Phone::parse("13900003008").unwrap(),
        ring_timeout: Duration::from_secs(20),
        recording: None,
        caller_id: None,
    };
    let DialResult::Answered(mut call) = carrier.dial(request).await else { panic!("not answered") };
    let saying = tokio::spawn(async move {
        let said = call.say("您好，请问是张三吗？").await;
        (call, said)
    });

    // The line's first audio reaches the callee while the server still holds the rest.
    crate::common::until(Duration::from_secs(20), "the line's first audio at the callee", async || {
        (loud_frames(&peer.heard()) >= 10).then_some(())
    })
    .await;
    assert!(!saying.is_finished(), "the line is not over before the rest of it has come");
    release.send(()).unwrap();

    // Then the rest, and nothing twice: 1.6 s are 80 frames.
    let (call, said) = saying.await.unwrap();
    assert_eq!(said.unwrap(), Said::Whole);
    let loud = loud_frames(&peer.heard());
    assert!((78..=80).contains(&loud), "{loud} frames of the line were heard");
    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!(end.cause, HangupCause::normal_clearing());
}

#[tokio::test]
async fn session_timers_are_offered_a_422_is_retried_with_the_peers_min_se_and_refreshes_answered() {
    let peer = SipPeer::start(|number| {
        let timer = Script::Timer { talk: Duration::from_millis(1500), refresh_us: true };
        match number.ends_with("4220") {
            true => Script::TooSmall { min_se: 120, then: Box::new(timer) },
            false => timer,
        }
    })
    .await;
    let s = TestServer::start_with(through(peer.addr)).await;
    s.create(&[ticket("T-TIMER", "13900003000"), ticket("T-422", "13900004220")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    for phone in ["13900003000", "13900004220"] {
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{phone}: {record}");
        assert_ne!(record["answeredTime"], "", "{record}");
    }
    let events = peer.events();
    let has = |e: &str| events.iter().filter(|x| *x == e).count();
    // Every INVITE offers 90 s with us refreshing; the one turned away retries with 120.
    assert_eq!(has("timer 13900003000 se=90;refresher=uac min-se=90 supported=timer"), 1, "{events:?}");
    assert_eq!(has("timer 13900004220 se=90;refresher=uac min-se=90 supported=timer"), 1, "{events:?}");
    assert_eq!(has("ACK 422"), 1, "{events:?}");
    assert_eq!(has("timer 13900004220 se=120;refresher=uac min-se=120 supported=timer"), 1, "{events:?}");
    // The peer's own refreshes are answered with the interval.
    assert_eq!(has("our answer to a refresh 200 se=90;refresher=uas"), 1, "{events:?}");
    assert_eq!(has("our answer to a refresh 200 se=120;refresher=uas"), 1, "{events:?}");
}

#[tokio::test]
async fn out_of_dialog_options_are_answered_and_other_requests_turned_away() {
    let peer =
        SipPeer::start(|_| Script::Answer { talk: Duration::from_millis(200), in_dialog: false }).await;
    let s = TestServer::start_with(through(peer.addr)).await;
    s.create(&[ticket("T-KEEPALIVE", "13900002001")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    // Our user agent's address, from the Contact of its INVITE.
    let ours = peer.events().iter().find_map(|e| e.strip_prefix("contact ").map(String::from)).unwrap();
    let ours: SocketAddr = ours.parse().unwrap();

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    for (method, expected) in [("OPTIONS", "SIP/2.0 200"), ("INVITE", "SIP/2.0 480"), ("BYE", "SIP/2.0 481")]
    {
        let request = format!(
            "{method} sip:callcenter@{ours} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKka{method}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p1\r\nTo: <sip:callcenter@{ours}>\r\n\
             Call-ID: probe-{method}@test\r\nCSeq: 1 {method}\r\nContact: <sip:probe@{me}>\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(request.as_bytes(), ours).await.unwrap();
        let mut buf = [0u8; 4096];
        let answer = loop {
            let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            if !text.starts_with("SIP/2.0 100") {
                break text;
            }
        };
        assert!(answer.starts_with(expected), "{method}: {answer}");
    }
}

#[tokio::test]
async fn calls_go_over_tcp_when_the_transport_says_so() {
    baresip::require();
    let callee = Baresip::start(&[("13900006666", true)], &voice(&[(2.5, 1.5), (2.5, 1.5)], 60.0));
    let s = TestServer::start_with(|settings| {
        through(callee.addr)(settings);
        settings.sip.transport = SipTransport::Tcp;
    })
    .await;
    s.create(&[ticket("T-TCP", "13900006666")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900006666").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let (_, callee_side) = recording(&s, &record).await;
    assert!(loudest(&callee_side) > 1000.0, "the callee's voice: {}", loudest(&callee_side));
}
