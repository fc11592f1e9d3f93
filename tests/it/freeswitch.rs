//! The FreeSWITCH carrier against a fake event socket that speaks mod_event_socket's wire
//! protocol (tests/it/support/esl_server.rs): first the carrier on its own, then the whole
//! server through its HTTP API with `dialer.carrier = "freeswitch"`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestServer, ticket};
use crate::support::esl_server::{Callee, FakeFreeswitch, SAYS};
use crate::support::transcriber::Transcriber;
use callcenter::agent::script::KeyAnswer;
use callcenter::domain::{HangupCause, Phone};
use callcenter::recording::synth_speech;
use callcenter::telephony::CarrierKind;
use callcenter::telephony::asr::{Asr, AsrEngine, AsrError, AsrSettings};
use callcenter::telephony::freeswitch::{AudioModule, FreeswitchCarrier, FreeswitchSettings};
use callcenter::telephony::hearing::Ear;
use callcenter::telephony::tts::{Espeak, Tts};
use callcenter::telephony::{
    CallSession, Carrier, DialRequest, DialResult, HangupReason, Heard, HungUp, Said,
};
use serde_json::{Value, json};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);
/// `dialer.max_call_secs`: FreeSWITCH's `park_timeout` is a minute more.
const MAX_CALL: Duration = Duration::from_secs(300);

fn carrier(fake: &FakeFreeswitch, recordings: &Path) -> FreeswitchCarrier {
    carrier_with(fake.port(), "ClueCon", recordings)
}

fn carrier_with(port: u16, password: &str, recordings: &Path) -> FreeswitchCarrier {
    let settings = FreeswitchSettings {
        port,
        password: password.into(),
        caller_id_number: "01088886666".into(),
        ..FreeswitchSettings::default()
    };
    FreeswitchCarrier::new(&settings, recordings, MAX_CALL, deaf()).unwrap()
}

/// No recogniser: only FreeSWITCH's events are heard (no audio is streamed).
fn deaf() -> Ear {
    Ear::new(&AsrSettings::default(), None)
}

fn request(call_id: &str, phone: &str, recordings: &Path) -> DialRequest {
    DialRequest {
        call_id: call_id.into(),
        phone: Phone::parse(phone).unwrap(),
        ring_timeout: Duration::from_secs(1),
        recording: Some(recordings.join(format!("ai_call/2025/08/16/21/{call_id}.wav"))),
        caller_id: None,
    }
}

async fn answered(carrier: &FreeswitchCarrier, request: DialRequest) -> Box<dyn CallSession> {
    match carrier.dial(request).await {
        DialResult::Answered(call) => call,
        DialResult::Failed(cause) => panic!("not answered: {cause}"),
    }
}

async fn failed(carrier: &FreeswitchCarrier, request: DialRequest) -> String {
    match carrier.dial(request).await {
        DialResult::Answered(_) => panic!("answered"),
        DialResult::Failed(cause) => cause.to_string(),
    }
}

fn kills_of(fake: &FakeFreeswitch, uuid: &str) -> Vec<String> {
    let prefix = format!("api uuid_kill {uuid} ");
    fake.commands().into_iter().filter(|c| c.starts_with(&prefix)).collect()
}

// ---- the carrier on its own ----

#[tokio::test]
async fn an_answered_call_is_originated_recorded_spoken_to_heard_and_hung_up() {
    let fake = FakeFreeswitch::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let req = request("2508162111590110001", "13912345678", dir.path());
    let wav = req.recording.clone().unwrap();
    let mut call = answered(&fs, req).await;

    let originate = fake.wait_for_command(WAIT, |c| c.starts_with("bgapi originate")).await;
    assert_eq!(
        originate,
        "bgapi originate {origination_uuid=2508162111590110001,ignore_early_media=true,originate_timeout=1,\
         park_timeout=360:ALLOTTED_TIMEOUT,origination_caller_id_number=01088886666}\
         sofia/gateway/trunk/13912345678 &park()\nJob-UUID: 2508162111590110001"
    );
    let absolute = std::path::absolute(&wav).unwrap();
    let record = format!("api uuid_record 2508162111590110001 start {}", absolute.display());
    assert!(fake.commands().contains(&record), "{:#?}", fake.commands());

    call.say("您好 张先生，\n这里是客服中心。").await.unwrap();
    let speak = fake.wait_for_command(WAIT, |c| c.starts_with("sendmsg 2508162111590110001")).await;
    assert_eq!(
        speak,
        "sendmsg 2508162111590110001\ncall-command: execute\nexecute-app-name: speak\n\
         execute-app-arg: tts_commandline|default|您好 张先生， 这里是客服中心。\n\
         Event-UUID: 2508162111590110001-1",
        "spaces kept, line breaks gone"
    );
    assert_eq!(call.listen(Duration::from_secs(5)).await, Ok(Heard::Speech(SAYS.into())));
    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!((end.cause, end.recorded), (HangupCause::normal_clearing(), true));
    assert_eq!(kills_of(&fake, "2508162111590110001"), ["api uuid_kill 2508162111590110001 NORMAL_CLEARING"]);
    assert!(wav.is_file(), "FreeSWITCH wrote the recording where the server serves it from");
}

#[tokio::test]
async fn recordings_go_under_the_freeswitch_side_directory_and_a_missing_file_is_not_claimed() {
    let fake = FakeFreeswitch::start().await;
    let server_dir = tempfile::tempdir().unwrap();
    let fs_dir = tempfile::tempdir().unwrap();
    let settings = FreeswitchSettings {
        port: fake.port(),
        recordings_dir: fs_dir.path().display().to_string(),
        ..FreeswitchSettings::default()
    };
    let fs = FreeswitchCarrier::new(&settings, server_dir.path(), MAX_CALL, deaf()).unwrap();
    let call = answered(&fs, request("2508162111590110002", "13912345678", server_dir.path())).await;
    let expected = format!(
        "api uuid_record 2508162111590110002 start {}/ai_call/2025/08/16/21/2508162111590110002.wav",
        fs_dir.path().display()
    );
    assert!(fake.commands().contains(&expected), "{:#?}", fake.commands());
    // Two different directories here, not one storage: the file FreeSWITCH wrote is not
    // where the server would serve it from, so the call is not reported as recorded.
    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!((end.cause, end.recorded), (HangupCause::normal_clearing(), false));
    assert!(fs_dir.path().join("ai_call/2025/08/16/21/2508162111590110002.wav").is_file());
}

#[tokio::test]
async fn say_returns_once_freeswitch_has_finished_speaking_the_line() {
    let fake = FakeFreeswitch::start().await;
    fake.speak_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let mut call = answered(&fs, request("2508162111590110003", "13912345678", dir.path())).await;
    let t = Instant::now();
    call.say("您好").await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    call.hang_up(HangupReason::Completed).await;
}

#[tokio::test]
async fn without_speech_recognition_listen_waits_its_time_and_hears_silence() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("0000", Callee::Answers { says: None });
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let mut call = answered(&fs, request("2508162111590110004", "13912340000", dir.path())).await;
    call.say("您好").await.unwrap();
    let t = Instant::now();
    assert_eq!(call.listen(Duration::from_millis(300)).await, Ok(Heard::Silence));
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    call.hang_up(HangupReason::Completed).await;
}

#[tokio::test]
async fn a_key_pressed_during_a_line_is_heard_once_as_a_key_turn() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("3001", Callee::Presses { key: "1" });
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let mut call = answered(&fs, request("2508162111590110009", "13912343001", dir.path())).await;
    // We asked FreeSWITCH for its DTMF events (the fake sends only what was asked for).
    let subscribed = fake.wait_for_command(WAIT, |c| c.starts_with("event plain ")).await;
    assert!(subscribed.split_whitespace().any(|e| e == "DTMF"), "{subscribed}");
    call.say("请按键").await.unwrap();
    assert_eq!(call.listen(WAIT).await, Ok(Heard::Speech("[按键 1]".into())));
    assert_eq!(call.listen(Duration::from_millis(300)).await, Ok(Heard::Silence));
    call.hang_up(HangupReason::Completed).await;
}

#[tokio::test]
async fn a_callee_who_hangs_up_ends_say_and_listen_with_their_cause() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("1111", Callee::HangsUpAfter { lines: 1 });
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let mut call = answered(&fs, request("2508162111590110005", "13912341111", dir.path())).await;
    call.say("您好").await.unwrap();
    let t = Instant::now();
    let gone = Err(HungUp(HangupCause::normal_clearing()));
    assert_eq!(call.listen(Duration::from_secs(8)).await, gone, "NORMAL_CLEARING with the BYE's sip:200");
    assert!(t.elapsed() < Duration::from_secs(2), "at once, not after the wait");
    assert_eq!(call.say("还在吗？").await, Err(HungUp(HangupCause::normal_clearing())));
    let end = call.hang_up(HangupReason::Stopped).await;
    assert_eq!((end.cause, end.recorded), (HangupCause::normal_clearing(), true), "the callee's cause wins");
    assert!(kills_of(&fake, "2508162111590110005").is_empty(), "nothing left to hang up");
}

#[tokio::test]
async fn our_hang_up_reason_is_sent_to_freeswitch_and_recorded() {
    let fake = FakeFreeswitch::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    for (n, reason, sent, recorded) in [
        (6, HangupReason::Stopped, "MANAGER_REQUEST", "MANAGER_REQUEST:null"),
        (7, HangupReason::MaxDuration, "ALLOTTED_TIMEOUT", "ALLOTTED_TIMEOUT:null"),
        (8, HangupReason::Shutdown, "SYSTEM_SHUTDOWN", "SYSTEM_SHUTDOWN:null"),
    ] {
        let uuid = format!("250816211159011000{n}");
        let call = answered(&fs, request(&uuid, "13912345678", dir.path())).await;
        let end = call.hang_up(reason).await;
        assert_eq!(end.cause.to_string(), recorded);
        assert!(end.recorded);
        assert_eq!(kills_of(&fake, &uuid), [format!("api uuid_kill {uuid} {sent}")]);
    }
}

#[tokio::test]
async fn failed_dials_carry_the_q850_name_and_the_sip_code() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("4860", Callee::Rejects { cause: "USER_BUSY", sip: 486 });
    fake.callee("4800", Callee::Rejects { cause: "NO_ANSWER", sip: 480 });
    fake.callee("4040", Callee::Rejects { cause: "UNALLOCATED_NUMBER", sip: 404 });
    fake.callee("5030", Callee::Rejects { cause: "NORMAL_TEMPORARY_FAILURE", sip: 503 });
    fake.callee("4870", Callee::RingsOut);
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    for (phone, cause) in [
        ("13900004860", "USER_BUSY:sip:486"),
        ("13900004800", "NO_ANSWER:sip:480"),
        ("13900004040", "UNALLOCATED_NUMBER:sip:404"),
        ("13900005030", "NORMAL_TEMPORARY_FAILURE:sip:503"),
        // FreeSWITCH's originate_timeout cancels the ringing: ORIGINATOR_CANCEL (487).
        ("13900004870", "NO_ANSWER:null"),
    ] {
        let t = Instant::now();
        assert_eq!(failed(&fs, request("2508162111590110009", phone, dir.path())).await, cause, "{phone}");
        assert!(t.elapsed() < Duration::from_secs(3), "{phone}: {:?}", t.elapsed());
    }
    assert!(!fake.commands().iter().any(|c| c.starts_with("api uuid_kill")), "nothing to cancel");
}

#[tokio::test]
async fn abandoning_a_dial_cancels_the_ringing_channel() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("7777", Callee::RingsUntilKilled);
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let uuid = "2508162111590110010";
    let mut req = request(uuid, "13912347777", dir.path());
    req.ring_timeout = Duration::from_secs(30);
    let dial = fs.dial(req);
    assert!(tokio::time::timeout(Duration::from_millis(300), dial).await.is_err(), "still ringing");
    fake.wait_until(WAIT, |f| f.channel_exists(uuid) && !f.channel_up(uuid)).await;
    let kills = kills_of(&fake, uuid);
    assert!(!kills.is_empty() && kills.len() <= 2, "{kills:?}");
    assert!(kills.iter().all(|k| *k == format!("api uuid_kill {uuid} ORIGINATOR_CANCEL")), "{kills:?}");
}

#[tokio::test]
async fn a_dial_abandoned_before_freeswitch_created_the_channel_still_ends_it() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("7777", Callee::RingsUntilKilled);
    fake.create_delay(Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let uuid = "2508162111590110011";
    let dial = fs.dial(request(uuid, "13912347777", dir.path()));
    assert!(tokio::time::timeout(Duration::from_millis(100), dial).await.is_err());
    // The first kill finds no channel; the channel's first event brings another.
    fake.wait_until(WAIT, |f| f.channel_exists(uuid) && !f.channel_up(uuid)).await;
    let kills = kills_of(&fake, uuid);
    assert!(kills.len() >= 2, "{kills:?}");
    assert!(kills.iter().all(|k| k.ends_with(" ORIGINATOR_CANCEL")), "{kills:?}");
}

#[tokio::test]
async fn a_dropped_connection_ends_the_call_and_the_channel_is_killed_after_reconnecting() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("9990", Callee::LinkDropsAfter { lines: 1 });
    fake.callee("0000", Callee::Answers { says: None });
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier(&fake, dir.path());
    let uuid = "2508162111590110012";
    let mut call = answered(&fs, request(uuid, "13912349990", dir.path())).await;
    call.say("您好").await.unwrap();
    let lost = Err(HungUp(HangupCause { name: "NORMAL_TEMPORARY_FAILURE".into(), sip: None }));
    assert_eq!(call.listen(Duration::from_secs(8)).await, lost);
    let end = call.hang_up(HangupReason::Completed).await;
    assert_eq!(end.cause.to_string(), "NORMAL_TEMPORARY_FAILURE:null");
    assert!(!end.recorded);

    // Reconnected, it hangs up the channel it lost (FreeSWITCH kept it parked)…
    fake.wait_until(WAIT, |f| f.auths() == 2 && !f.channel_up(uuid)).await;
    assert_eq!(kills_of(&fake, uuid), [format!("api uuid_kill {uuid} NORMAL_TEMPORARY_FAILURE")]);
    // …and places calls again.
    let call = answered(&fs, request("2508162111590110013", "13912340000", dir.path())).await;
    assert_eq!(call.hang_up(HangupReason::Completed).await.cause, HangupCause::normal_clearing());
}

#[tokio::test]
async fn a_wrong_password_fails_calls_for_now_and_keeps_trying() {
    let fake = FakeFreeswitch::start_on(0, "s3cret").await;
    let dir = tempfile::tempdir().unwrap();
    let fs = carrier_with(fake.port(), "ClueCon", dir.path());
    let t = Instant::now();
    assert_eq!(
        failed(&fs, request("2508162111590110014", "13912345678", dir.path())).await,
        "NORMAL_TEMPORARY_FAILURE:null"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    fake.wait_until(WAIT, |f| f.commands().iter().filter(|c| *c == "auth ClueCon").count() >= 2).await;
    assert_eq!(fake.auths(), 0);
    assert!(!fake.commands().iter().any(|c| c.starts_with("bgapi")));
}

#[tokio::test]
async fn freeswitch_started_after_the_server_is_connected_to_when_it_comes_up() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    crate::common::logs();
    let fs = carrier_with(port, "ClueCon", dir.path());
    // Refused twice, as the log says, before FreeSWITCH comes up.
    let addr = format!("addr=127.0.0.1:{port} ");
    crate::common::until_logged(Duration::from_secs(20), "two refused connections", |l| {
        l.contains("cannot connect to the FreeSWITCH event socket")
            && l.contains(&addr)
            && l.contains("failures=2")
    })
    .await;
    let fake = FakeFreeswitch::start_on(port, "ClueCon").await;
    let mut req = request("2508162111590110015", "13912345678", dir.path());
    req.ring_timeout = Duration::from_secs(5);
    let call = answered(&fs, req).await;
    assert_eq!(fake.auths(), 1);
    call.hang_up(HangupReason::Completed).await;
}

// ---- hearing the call's streamed audio ----

/// A carrier whose calls FreeSWITCH streams to the server (on a free loopback port) with
/// `module`, heard by `ear`.
fn streaming_carrier(
    fake: &FakeFreeswitch,
    recordings: &Path,
    module: AudioModule,
    ear: Ear,
) -> FreeswitchCarrier {
    let settings = FreeswitchSettings {
        port: fake.port(),
        audio_listen: "127.0.0.1:0".into(),
        audio_module: module,
        ..FreeswitchSettings::default()
    };
    FreeswitchCarrier::new(&settings, recordings, MAX_CALL, ear).unwrap()
}

#[tokio::test]
async fn the_streamed_audio_of_a_freeswitch_call_is_heard_by_the_recogniser() {
    // The recogniser is pocketsphinx, as in the SIP tests; the callee answers the first
    // line in English, in espeak-ng's voice, through mod_audio_stream's websocket.
    let answers = ["yes I understand thank you", "please call me back tomorrow morning", "no thank you"];
    let transcriber = Transcriber::start(&answers);
    let english = Espeak { program: "espeak-ng".into(), voice: "en-us".into(), speed: 150 };
    let words = english.synthesize(answers[1]).await.expect("espeak-ng speaks");
    // A second's thought after the line, then the answer.
    let mut said = vec![0; 8000];
    said.extend(words);
    let fake = FakeFreeswitch::start().await;
    fake.callee("7001", Callee::Speaks { voice: Arc::new(said), over_first_line: false });
    let asr = AsrSettings {
        engine: AsrEngine::Openai,
        url: transcriber.url.clone(),
        language: "en".into(),
        ..AsrSettings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let fs = streaming_carrier(&fake, dir.path(), AudioModule::AudioStream, Ear::new(&asr, None));
    let uuid = "2508162111590117001";
    let mut call = answered(&fs, request(uuid, "13912347001", dir.path())).await;

    let start = fake.wait_for_command(WAIT, |c| c.starts_with("api uuid_audio_stream")).await;
    fake.wait_until(WAIT, |f| f.audio_stream(uuid).is_some()).await;
    let url = fake.audio_stream(uuid).unwrap().url;
    assert_eq!(start, format!("api uuid_audio_stream {uuid} start {url} mono 8k {{\"callId\":\"{uuid}\"}}"));
    // The path carries a token: a stream for another call, or without it, is refused.
    let forged = url.rsplit_once('/').unwrap().0.to_string() + "/0000";
    assert!(tokio_tungstenite::connect_async(forged.as_str()).await.is_err(), "{forged} was accepted");

    assert_eq!(call.say("Hello, this is the service centre.").await, Ok(Said::Whole));
    let heard = call.listen(Duration::from_secs(15)).await.unwrap();
    assert_eq!(heard, Heard::Speech(answers[1].into()), "the callee's own words, from the streamed audio");
    call.say("Thank you, goodbye.").await.unwrap();
    let end = call.hang_up(HangupReason::Completed).await;
    let latency = end.turn_latency.expect("the answer's voice-to-voice time is measured");
    assert!(latency > Duration::ZERO);
}

/// Hears a turn as how long the callee spoke.
struct SpeechLength;

#[async_trait::async_trait]
impl Asr for SpeechLength {
    async fn recognize(&self, _pcm: &[i16], speech: Duration) -> Result<String, AsrError> {
        Ok(format!("{} ms of speech", speech.as_millis()))
    }
    fn engine(&self) -> &'static str {
        "speech-length"
    }
}

#[tokio::test]
async fn a_callee_who_speaks_over_a_freeswitch_line_breaks_it_and_is_heard() {
    let fake = FakeFreeswitch::start().await;
    // Each line would take 20 s; the callee speaks 1.5 s from 300 ms into the first one.
    fake.speak_delay(Duration::from_secs(20));
    let voice = Arc::new(synth_speech(6, 12_000, 220.0));
    fake.callee("7002", Callee::Speaks { voice, over_first_line: true });
    let dir = tempfile::tempdir().unwrap();
    // A recogniser that tells how much speech it was given.
    let mut ear = Ear::new(&AsrSettings::default(), Some(Duration::from_millis(300)));
    ear.asr = Arc::new(SpeechLength);
    let fs = streaming_carrier(&fake, dir.path(), AudioModule::AudioFork, ear);
    let uuid = "2508162111590117002";
    let mut call = answered(&fs, request(uuid, "13912347002", dir.path())).await;
    fake.wait_for_command(WAIT, |c| c.starts_with(&format!("api uuid_audio_fork {uuid} start ws://"))).await;

    let said = call.say("关于您的维修工单：明天上午九点上门维修，请问您方便吗？").await.unwrap();
    let Said::Interrupted { played } = said else { panic!("the line played to its end: {said:?}") };
    assert!(played < 0.5, "a 20 s line cut within its first seconds, {played} of it heard");
    assert!(fake.commands().contains(&format!("api uuid_break {uuid} all")), "{:#?}", fake.commands());
    assert_eq!(fake.broken_lines(), 1, "FreeSWITCH stopped the line");
    let stream = fake.audio_stream(uuid).unwrap();
    assert_eq!(stream.protocol.as_deref(), Some("audiostream.drachtio.org"), "mod_audio_fork's subprotocol");

    // What the callee said over the line is the next turn, all of it: the part that
    // stopped the line too.
    let Heard::Speech(heard) = call.listen(Duration::from_secs(8)).await.unwrap() else { panic!("silence") };
    let ms: u64 = heard.strip_suffix(" ms of speech").and_then(|ms| ms.parse().ok()).expect(&heard);
    assert!((1400..=1500).contains(&ms), "{heard} of the callee's 1.5 s");
    call.hang_up(HangupReason::Completed).await;
}

#[tokio::test]
async fn with_barge_in_off_a_freeswitch_line_plays_to_its_end() {
    let fake = FakeFreeswitch::start().await;
    fake.speak_delay(Duration::from_secs(2));
    let voice = Arc::new(synth_speech(6, 12_000, 220.0));
    fake.callee("7003", Callee::Speaks { voice, over_first_line: true });
    let dir = tempfile::tempdir().unwrap();
    let fs = streaming_carrier(&fake, dir.path(), AudioModule::AudioStream, deaf());
    let mut call = answered(&fs, request("2508162111590117003", "13912347003", dir.path())).await;
    assert_eq!(call.say("关于您的维修工单，请问您方便吗？").await, Ok(Said::Whole));
    assert_eq!(fake.broken_lines(), 0);
    assert!(!fake.commands().iter().any(|c| c.starts_with("api uuid_break")), "{:#?}", fake.commands());
    call.hang_up(HangupReason::Completed).await;
}

// ---- the server, through its HTTP API ----

async fn server(fake: &FakeFreeswitch) -> TestServer {
    let port = fake.port();
    TestServer::start_with(move |s| {
        s.dialer.carrier = CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.dialer.ring_timeout_secs = 1;
        s.dialer.max_attempts = 1;
    })
    .await
}

async fn record_of(s: &TestServer, phone: &str) -> Value {
    let v = s.records(json!({"telephone": phone})).await;
    assert_eq!(v["total"], 1, "{phone}: {v}");
    v["rows"][0].clone()
}

#[tokio::test]
async fn records_list_shows_the_freeswitch_outcome_of_each_call() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("4860", Callee::Rejects { cause: "USER_BUSY", sip: 486 });
    fake.callee("4800", Callee::Rejects { cause: "NO_ANSWER", sip: 480 });
    fake.callee("4040", Callee::Rejects { cause: "UNALLOCATED_NUMBER", sip: 404 });
    fake.callee("4870", Callee::RingsOut);
    let s = server(&fake).await;
    s.create(&[
        ticket("T1", "13912345678"),
        ticket("T2", "13900004860"),
        ticket("T3", "13900004800"),
        ticket("T4", "13900004040"),
        ticket("T5", "13900004870"),
    ])
    .await;
    s.wait_all_ended(WAIT).await;

    let answered = record_of(&s, "13912345678").await;
    assert_eq!(answered["hangupCause"], "NORMAL_CLEARING:sip:200");
    assert_ne!(answered["answeredTime"], "");
    let dialogue = answered["dialogue"].as_array().unwrap();
    assert!(dialogue.iter().any(|t| t["role"] == "user" && t["content"] == SAYS), "{dialogue:?}");
    assert_eq!(dialogue.last().unwrap()["content"], "祝您生活愉快，再见。");
    let uuid = answered["uuid"].as_str().unwrap();
    let wav = answered["wavFileUrl"].as_str().unwrap();
    assert!(wav.ends_with(&format!("/{uuid}.wav")), "{wav}");
    let res = s.get(wav).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/wav");
    let originate = fake.wait_for_command(WAIT, |c| c.contains(&format!("origination_uuid={uuid},"))).await;
    assert!(originate.starts_with("bgapi originate {"), "{originate}");
    assert!(originate.contains(",originate_timeout=1,park_timeout=360:ALLOTTED_TIMEOUT"), "{originate}");
    assert!(originate.contains("}sofia/gateway/trunk/13912345678 &park()"), "{originate}");

    for (phone, cause) in [
        ("13900004860", "USER_BUSY:sip:486"),
        ("13900004800", "NO_ANSWER:sip:480"),
        ("13900004040", "UNALLOCATED_NUMBER:sip:404"),
        ("13900004870", "NO_ANSWER:null"),
    ] {
        let r = record_of(&s, phone).await;
        assert_eq!(r["hangupCause"], cause, "{phone}");
        assert_eq!(r["answeredTime"], "", "{phone}");
        assert_eq!(r["wavFileUrl"], "", "{phone}");
        assert_eq!(r["timeLen"], 0, "{phone}");
    }
}

#[tokio::test]
async fn a_key_pressed_on_a_freeswitch_call_is_a_turn_and_with_the_key_map_the_outcome() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("3001", Callee::Presses { key: "1" });
    let port = fake.port();
    let s = TestServer::start_with(move |s| {
        s.dialer.carrier = CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.dialer.max_attempts = 1;
        s.agent.script.keys = [("1".to_string(), KeyAnswer::Confirmed)].into();
    })
    .await;
    s.create(&[ticket("T1", "13900003001")]).await;
    let tasks = s.wait_all_ended(WAIT).await;
    assert_eq!(tasks[0]["status"], "已完成", "{tasks:?}");
    let record = record_of(&s, "13900003001").await;
    let dialogue = record["dialogue"].as_array().unwrap();
    let heard: Vec<&Value> = dialogue.iter().filter(|t| t["role"] == "user").map(|t| &t["content"]).collect();
    assert_eq!(heard, ["[按键 1]"], "{dialogue:?}");
    assert_eq!(record["intent"], "已确认", "{record}");
    assert!(dialogue.iter().any(|t| t["content"] == "好的，感谢您的确认。"), "{dialogue:?}");
}

#[tokio::test]
async fn stop_tasks_hangs_up_an_answered_call_with_manager_request() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("0000", Callee::Answers { says: None }); // the agent keeps listening
    let s = server(&fake).await;
    let ids = s.create(&[ticket("T1", "13912340000")]).await;
    fake.wait_for_command(WAIT, |c| c.starts_with("sendmsg ")).await;
    let v = s.post("/api/aicall/stopTasks", &json!({"batchIds": ids})).await;
    assert_eq!(v["code"], 0, "{v}");
    s.wait_all_ended(WAIT).await;

    assert_eq!(s.task(ids[0]).await["status"], "已停止");
    let r = record_of(&s, "13912340000").await;
    assert_eq!(r["hangupCause"], "MANAGER_REQUEST:null");
    assert_ne!(r["answeredTime"], "");
    let uuid = r["uuid"].as_str().unwrap();
    assert_eq!(kills_of(&fake, uuid), [format!("api uuid_kill {uuid} MANAGER_REQUEST")]);
    assert!(!fake.channel_up(uuid));
}

#[tokio::test]
async fn stop_tasks_cancels_a_call_that_is_still_ringing() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("7777", Callee::RingsUntilKilled);
    let port = fake.port();
    let s = TestServer::start_with(move |s| {
        s.dialer.carrier = CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.dialer.ring_timeout_secs = 60;
    })
    .await;
    let ids = s.create(&[ticket("T1", "13912347777")]).await;
    let originate = fake.wait_for_command(WAIT, |c| c.starts_with("bgapi originate")).await;
    let uuid = originate.split("origination_uuid=").nth(1).unwrap().split(',').next().unwrap().to_string();
    fake.wait_until(WAIT, |f| f.channel_up(&uuid)).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids})).await;
    s.wait_all_ended(WAIT).await;

    assert_eq!(s.task(ids[0]).await["status"], "已停止");
    let r = record_of(&s, "13912347777").await;
    assert_eq!(r["hangupCause"], "MANAGER_REQUEST:null");
    assert_eq!(r["answeredTime"], "");
    fake.wait_until(WAIT, |f| !f.channel_up(&uuid)).await;
    // One kill; another if a ringing event crossed the first one's reply.
    let kills = kills_of(&fake, &uuid);
    assert!(!kills.is_empty() && kills.len() <= 2, "{kills:?}");
    assert!(kills.iter().all(|k| *k == format!("api uuid_kill {uuid} ORIGINATOR_CANCEL")), "{kills:?}");
}

#[tokio::test]
async fn a_dropped_event_socket_is_recorded_as_a_temporary_failure_and_dialing_goes_on() {
    let fake = FakeFreeswitch::start().await;
    fake.callee("9990", Callee::LinkDropsAfter { lines: 1 });
    let s = server(&fake).await;
    s.create(&[ticket("T1", "13912349990")]).await;
    s.wait_all_ended(WAIT).await;
    let r = record_of(&s, "13912349990").await;
    assert_eq!(r["hangupCause"], "NORMAL_TEMPORARY_FAILURE:null");
    assert_eq!(r["wavFileUrl"], "");
    assert_eq!(r["dialogue"][0]["role"], "assistant", "what was said before the drop is kept");

    s.create(&[ticket("T2", "13912345678")]).await;
    s.wait_all_ended(WAIT).await;
    assert_eq!(record_of(&s, "13912345678").await["hangupCause"], "NORMAL_CLEARING:sip:200");
    assert_eq!(fake.auths(), 2);
}

#[tokio::test]
async fn a_campaigns_calls_show_its_caller_ids_in_turn_and_others_the_configured_one() {
    let fake = FakeFreeswitch::start().await;
    let port = fake.port();
    let s = TestServer::start_with(move |s| {
        s.dialer.carrier = CarrierKind::Freeswitch;
        s.freeswitch.port = port;
        s.freeswitch.caller_id_number = "4000000000".into();
        s.dialer.max_attempts = 1;
    })
    .await;
    let saved = s
        .post(
            "/api/aicall/campaign/save",
            &json!({"batchName": "回访", "settings": {"caller_ids": ["4001110001", "4001110002"]}}),
        )
        .await;
    assert_eq!(saved["code"], 0, "{saved}");
    let refused = s
        .post(
            "/api/aicall/campaign/save",
            &json!({"batchName": "回访", "settings": {"caller_ids": ["400,x=1"]}}),
        )
        .await;
    assert_eq!(refused["code"], 405, "a caller id that would end the originate's variables: {refused}");
    assert!(refused["msg"].as_str().unwrap().contains("caller_ids"), "{refused}");

    let mut tickets: Vec<Value> = (0..2)
        .map(|i| {
            let mut t = ticket(&format!("C{i}"), &format!("1391234500{i}"));
            t["batchName"] = json!("回访");
            t
        })
        .collect();
    tickets.push(ticket("D0", "13912345009"));
    s.create(&tickets).await;
    s.wait_all_ended(WAIT).await;

    let originate_of = |phone: &str| {
        let phone = phone.to_string();
        let commands = fake.commands();
        commands
            .into_iter()
            .find(|c| c.contains("originate") && c.contains(&format!("/{phone} &park()")))
            .unwrap()
    };
    let campaign: Vec<String> = ["13912345000", "13912345001"].map(originate_of).into();
    let mut shown: Vec<&str> = campaign
        .iter()
        .map(|c| c.split("origination_caller_id_number=").nth(1).unwrap().split([',', '}']).next().unwrap())
        .collect();
    shown.sort();
    assert_eq!(shown, ["4001110001", "4001110002"], "{campaign:?}");
    for c in &campaign {
        assert_eq!(c.matches("origination_caller_id_number=").count(), 1, "{c}");
    }
    let other = originate_of("13912345009");
    assert!(other.contains("origination_caller_id_number=4000000000"), "{other}");
}
