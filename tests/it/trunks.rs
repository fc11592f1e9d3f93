//! Trunks as carriers sell them, against real peers on loopback: several trunks with
//! failover (scripted callees, tests/it/support/sip_peer.rs, one per trunk).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{TestServer, ticket, until};
use crate::support::sip_peer::{Script, SipPeer};
use callcenter::config::Settings;
use callcenter::telephony::CarrierKind;
use callcenter::telephony::sip::trunks::TrunkSettings;
use callcenter::telephony::tts::TtsEngine;
use serde_json::{Value, json};

/// Every call of these tests ends well within this, even on a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// The server calls through `trunks`, one call at a time (so that which trunk a call takes
/// follows from the ones before), with the synthetic voice and short lines.
fn through(trunks: Vec<TrunkSettings>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.dialer.carrier = CarrierKind::Sip;
        s.dialer.max_attempts = 1;
        s.dialer.max_concurrent_calls = 1;
        s.dialer.ring_timeout_secs = 20;
        s.sip.trunks = trunks;
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
}

fn trunk(name: &str, peer: &SipPeer, weight: u32) -> TrunkSettings {
    TrunkSettings { name: name.into(), address: peer.addr.to_string(), weight, ..TrunkSettings::default() }
}

/// A callee that answers, talks a moment and hangs up.
fn answers() -> Script {
    Script::Answer { talk: Duration::from_millis(300), in_dialog: false }
}

async fn record_of(s: &TestServer, phone: &str) -> Value {
    let v = s.records(json!({ "telephone": phone })).await;
    assert_eq!(v["total"], 1, "one record (one attempt) for {phone}: {v}");
    v["rows"][0].clone()
}

/// The value of the metric line starting with `series` (its name and labels).
async fn metric(s: &TestServer, series: &str) -> Option<f64> {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn invites(peer: &SipPeer) -> usize {
    peer.events().iter().filter(|e| e.starts_with("INVITE ")).count()
}

#[tokio::test]
async fn calls_fail_over_from_a_trunk_answering_503_which_leaves_rotation_and_returns_when_its_options_succeed()
{
    // The first trunk (the only one in rotation: the second is a backup) answers every
    // INVITE 503 and its OPTIONS too, until it is mended.
    let mended = Arc::new(AtomicBool::new(false));
    let failing = {
        let mended = mended.clone();
        SipPeer::start(move |_| if mended.load(Ordering::Relaxed) { answers() } else { Script::Reject(503) })
            .await
    };
    failing.answer_options_with(503);
    let backup = SipPeer::start(|_| answers()).await;
    let s = TestServer::start_with(|settings| {
        through(vec![trunk("failover-first", &failing, 1), trunk("failover-backup", &backup, 0)])(settings);
        settings.sip.out_of_rotation_after = 2;
        settings.sip.probe_interval_secs = 1;
    })
    .await;

    let phones = ["13900007001", "13900007002", "13900007003", "13900007004"];
    let tickets: Vec<Value> = phones.iter().map(|p| ticket(&format!("T-{p}"), p)).collect();
    s.create(&tickets).await;
    let tasks = s.wait_all_ended(CALL_LIMIT).await;
    assert!(tasks.iter().all(|t| t["status"] == "已完成" && t["connected"] == true), "{tasks:?}");
    for phone in phones {
        // Answered through the backup within the one attempt.
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{phone}: {record}");
    }
    // The first trunk had the first two calls (each acknowledged 503), then was out of
    // rotation: the other two went straight to the backup.
    assert_eq!(invites(&failing), 2, "{:?}", failing.events());
    assert_eq!(failing.events().iter().filter(|e| *e == "ACK 503").count(), 2);
    assert_eq!(invites(&backup), 4, "{:?}", backup.events());
    let first = r#"{trunk="failover-first"}"#;
    let backup_trunk = r#"{trunk="failover-backup"}"#;
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_in_rotation{first}")).await, Some(0.0));
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_failures_total{first}")).await, Some(2.0));
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_attempts_total{first}")).await, Some(2.0));
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_answered_total{backup_trunk}")).await, Some(4.0));
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_answer_rate{backup_trunk}")).await, Some(1.0));
    // While out, it is checked with OPTIONS, which it keeps failing.
    assert!(failing.wait_event("OPTIONS probe 503", CALL_LIMIT).await, "{:?}", failing.events());

    // Mended: its OPTIONS succeed, it is back in rotation, and takes the calls again.
    mended.store(true, Ordering::Relaxed);
    failing.answer_options_with(200);
    until(CALL_LIMIT, "the first trunk back in rotation", async || {
        (metric(&s, &format!("callcenter_sip_trunk_in_rotation{first}")).await == Some(1.0)).then_some(())
    })
    .await;
    s.create(&[ticket("T-BACK", "13900007005")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900007005").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_eq!(invites(&failing), 3, "{:?}", failing.events());
    assert_eq!(invites(&backup), 4, "{:?}", backup.events());
    assert_eq!(metric(&s, &format!("callcenter_sip_trunk_answered_total{first}")).await, Some(1.0));
}

#[tokio::test]
async fn a_number_goes_to_the_trunk_of_its_prefix_and_a_trunk_that_does_not_answer_at_all_is_failed_over() {
    let mobile = SipPeer::start(|_| answers()).await;
    let other = SipPeer::start(|_| answers()).await;
    // A trunk that takes INVITEs and says nothing: a socket nobody reads.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_trunk = TrunkSettings {
        name: "prefix-silent".into(),
        address: silent.local_addr().unwrap().to_string(),
        prefixes: vec!["021".into()],
        ..TrunkSettings::default()
    };
    let s = TestServer::start_with(|settings| {
        let mut mobile_trunk = trunk("prefix-mobile", &mobile, 1);
        mobile_trunk.prefixes = vec!["139".into()];
        mobile_trunk.dial_prefix = "0".into();
        through(vec![mobile_trunk, silent_trunk, trunk("prefix-other", &other, 1)])(settings);
        settings.sip.failover_after_secs = 1;
    })
    .await;
    s.create(&[ticket("T-MOBILE", "13900008001"), ticket("T-LAND", "02100008002")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    for phone in ["13900008001", "02100008002"] {
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{phone}: {record}");
    }
    // The mobile number went to its trunk, with that trunk's dial prefix; the landline to the
    // silent trunk of its prefix first, then to the one for any number.
    assert_eq!(mobile.events().iter().filter(|e| e.starts_with("INVITE ")).collect::<Vec<_>>(), ["INVITE 013900008001"]);
    assert_eq!(other.events().iter().filter(|e| e.starts_with("INVITE ")).collect::<Vec<_>>(), ["INVITE 02100008002"]);
    let failures = r#"callcenter_sip_trunk_failures_total{trunk="prefix-silent"}"#;
    assert_eq!(metric(&s, failures).await, Some(1.0));
}
