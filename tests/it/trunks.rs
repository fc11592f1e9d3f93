//! Trunks as carriers sell them, against real peers on loopback: several trunks with
//! failover (scripted callees, tests/it/support/sip_peer.rs, one per trunk); registration
//! with kamailio as the carrier's registrar and proxy in front of baresip
//! (tests/it/support/kamailio.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{TestServer, log_text, logs, ticket, until};
use crate::sip::{loudest, recording, short_sip_calls, voice};
use crate::support::baresip::{self, Baresip, Setup};
use crate::support::kamailio::{CALLEE_PASSWORD, CC_PASSWORD, Kamailio, MIN_EXPIRES};
use crate::support::sip_peer::{Script, SipPeer};
use crate::support::test_ca::TestCa;
use callcenter::config::Settings;
use callcenter::telephony::sip::SipTransport;
use callcenter::telephony::sip::srtp::SrtpPolicy;
use callcenter::telephony::sip::trunks::TrunkSettings;
use serde_json::{Value, json};

/// Every call of these tests ends well within this, even on a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// The server calls through `trunks`, one call at a time (so that which trunk a call takes
/// follows from the ones before), with the synthetic voice and short lines.
fn through(trunks: Vec<TrunkSettings>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        short_sip_calls(s);
        s.dialer.max_concurrent_calls = 1;
        s.sip.trunks = trunks;
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
    assert_eq!(
        mobile.events().iter().filter(|e| e.starts_with("INVITE ")).collect::<Vec<_>>(),
        ["INVITE 013900008001"]
    );
    assert_eq!(
        other.events().iter().filter(|e| e.starts_with("INVITE ")).collect::<Vec<_>>(),
        ["INVITE 02100008002"]
    );
    let failures = r#"callcenter_sip_trunk_failures_total{trunk="prefix-silent"}"#;
    assert_eq!(metric(&s, failures).await, Some(1.0));
}

/// The trunk as kamailio's user `callcenter`, registering (asking for less than kamailio's
/// minimum, so that its 423 is met).
fn registering(kamailio: &Kamailio, name: &str, password: &str) -> TrunkSettings {
    TrunkSettings {
        name: name.into(),
        address: kamailio.addr.to_string(),
        username: "callcenter".into(),
        password: password.into(),
        register: true,
        register_expires_secs: 10,
        ..TrunkSettings::default()
    }
}

/// /readyz's word on `trunk`.
async fn readiness_of(s: &TestServer, trunk: &str) -> String {
    let ready: Value = s.get("/readyz").await.json().await.unwrap();
    ready["data"]["trunks"][trunk].as_str().unwrap_or_default().to_string()
}

fn saved(kamailio: &Kamailio, user: &str) -> usize {
    kamailio.log_since_restart().matches(&format!("REGISTER {user} saved")).count()
}

#[tokio::test]
async fn a_trunk_that_wants_registration_is_registered_refreshed_called_through_and_registered_again_after_a_restart()
 {
    baresip::require();
    let mut kamailio = Kamailio::start();
    let voice: Vec<i16> = callcenter::recording::synth_speech(6, 8000 * 3, 220.0);
    let setup = Setup { registrar: Some((kamailio.addr, CALLEE_PASSWORD.into())), ..Setup::default() };
    let callee = Baresip::start_with(&[("13900009001", true), ("13900009002", true)], &voice, &setup);
    for user in ["13900009001", "13900009002"] {
        let saved = format!("REGISTER {user} saved");
        assert!(kamailio.wait_log(&saved, CALL_LIMIT).await, "{}", kamailio.log());
    }
    let s = TestServer::start_with(|settings| {
        through(vec![registering(&kamailio, "kamailio-ok", CC_PASSWORD)])(settings);
    })
    .await;
    // Registered at the start, with the registrar's minimum lifetime (its 423 asked for it).
    let expected = format!("REGISTER callcenter saved expires={MIN_EXPIRES}");
    assert!(kamailio.wait_log(&expected, CALL_LIMIT).await, "{}", kamailio.log());
    until(CALL_LIMIT, "ready to say the trunk is registered", async || {
        (readiness_of(&s, "kamailio-ok").await == "ok").then_some(())
    })
    .await;
    let registered = r#"callcenter_sip_trunk_registered{trunk="kamailio-ok"}"#;
    assert_eq!(metric(&s, registered).await, Some(1.0));

    // A call goes through the registrar (407 answered) to baresip, and is answered.
    s.create(&[ticket("T-REG-1", "13900009001")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009001").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert!(callee.log().contains("13900009001"), "{}", callee.log());

    // Refreshed before it runs out.
    until(CALL_LIMIT, "a refresh", async || (saved(&kamailio, "callcenter") >= 2).then_some(())).await;

    // The registrar restarts and forgets every binding: calls would be refused (403) until
    // the server registers again, which it does.
    kamailio.restart();
    assert!(kamailio.wait_log("REGISTER callcenter saved", CALL_LIMIT).await, "{}", kamailio.log());
    assert!(kamailio.wait_log("REGISTER 13900009002 saved", CALL_LIMIT).await, "{}", kamailio.log());
    s.create(&[ticket("T-REG-2", "13900009002")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009002").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert!(!kamailio.log_since_restart().contains("unregistered callcenter"), "{}", kamailio.log());

    // At shutdown the server removes its binding.
    s.stop().await;
    assert!(kamailio.wait_log("REGISTER callcenter saved expires=0", CALL_LIMIT).await, "{}", kamailio.log());
}

#[tokio::test]
async fn a_wrong_registration_password_is_a_clear_error_and_calls_fail_at_once() {
    let kamailio = Kamailio::start();
    let s = TestServer::start_with(|settings| {
        through(vec![registering(&kamailio, "kamailio-wrong", "not-the-password")])(settings);
    })
    .await;
    let why = until(CALL_LIMIT, "the registration to fail", async || {
        Some(readiness_of(&s, "kamailio-wrong").await).filter(|w| w.starts_with("not registered"))
    })
    .await;
    assert!(why.contains("401") && why.contains("username and password"), "{why}");
    assert!(kamailio.log().contains("REGISTER callcenter refused"), "{}", kamailio.log());
    let registered = r#"callcenter_sip_trunk_registered{trunk="kamailio-wrong"}"#;
    assert_eq!(metric(&s, registered).await, Some(0.0));
    // A call does not wait for it: it fails at once, and never reaches the registrar.
    s.create(&[ticket("T-UNREG", "13900009003")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009003").await;
    assert_eq!(record["hangupCause"], "NORMAL_TEMPORARY_FAILURE:sip:503", "{record}");
    assert!(!kamailio.log().contains("INVITE"), "{}", kamailio.log());

    // The registrar means it: the right password without registering gets its INVITE
    // refused.
    let unregistered = TestServer::start_with(|settings| {
        let mut trunk = registering(&kamailio, "kamailio-unregistered", CC_PASSWORD);
        trunk.register = false;
        through(vec![trunk])(settings);
    })
    .await;
    unregistered.create(&[ticket("T-NOREG", "13900009004")]).await;
    unregistered.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&unregistered, "13900009004").await;
    assert_eq!(record["hangupCause"], "CALL_REJECTED:sip:403", "{record}");
    assert!(kamailio.log().contains("INVITE from an unregistered callcenter"), "{}", kamailio.log());
}

/// The `rtp <n>` a `BehindNat` callee noted: how many of our packets reached it.
fn rtp_received(peer: &SipPeer) -> Option<usize> {
    peer.events().iter().find_map(|e| e.strip_prefix("rtp ")?.parse().ok())
}

#[tokio::test]
async fn behind_nat_our_media_goes_where_theirs_comes_from_rport_is_asked_and_keep_alives_flow() {
    // The callee's SDP names an address that does not reach it; it talks from its real one.
    let natted = SipPeer::start(|_| Script::BehindNat { talk: Duration::from_secs(3) }).await;
    let s = TestServer::start_with(|settings| {
        through(vec![trunk("nat-symmetric", &natted, 1)])(settings);
        settings.sip.keepalive_secs = 1;
    })
    .await;
    // Keep-alives flow from the start, before any call.
    assert!(natted.wait_event("OPTIONS probe 200", CALL_LIMIT).await, "{:?}", natted.events());
    s.create(&[ticket("T-NAT", "13900009101")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009101").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let events = natted.events();
    // Three seconds of our 20 ms packets, most of them at least.
    assert!(rtp_received(&natted).is_some_and(|n| n >= 50), "{events:?}");
    // Our Via asks for the answer at the address and port it came from (RFC 3581).
    let via = events.iter().find_map(|e| e.strip_prefix("via ")).unwrap();
    assert!(via.split(';').any(|p| p == "rport"), "{via}");

    // Without symmetric RTP our media goes to the SDP's address, and never reaches it.
    let natted = SipPeer::start(|_| Script::BehindNat { talk: Duration::from_secs(3) }).await;
    let s = TestServer::start_with(|settings| {
        through(vec![trunk("nat-sdp-only", &natted, 1)])(settings);
        settings.sip.symmetric_rtp = false;
    })
    .await;
    s.create(&[ticket("T-NAT-OFF", "13900009102")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    assert_eq!(rtp_received(&natted), Some(0), "{:?}", natted.events());
}

#[tokio::test]
async fn a_trunk_behind_an_outbound_proxy_is_reached_through_it() {
    // The proxy answers as the trunk would; the trunk's own name resolves nowhere, so that
    // only the proxy can have been reached.
    let proxy = SipPeer::start(|_| answers()).await;
    let s = TestServer::start_with(|settings| {
        let carrier = TrunkSettings {
            name: "behind-proxy".into(),
            address: "sip.carrier.invalid".into(),
            outbound_proxy: proxy.addr.to_string(),
            ..TrunkSettings::default()
        };
        through(vec![carrier])(settings);
    })
    .await;
    s.create(&[ticket("T-PROXY", "13900009103")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009103").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let events = proxy.events();
    assert!(events.contains(&"request-uri sip:13900009103@sip.carrier.invalid".to_string()), "{events:?}");
    let route = events.iter().find_map(|e| e.strip_prefix("route ")).unwrap();
    assert_eq!(route, format!("<sip:{};lr>", proxy.addr), "{events:?}");
}

#[tokio::test]
async fn calls_go_over_tls_to_a_trunk_whose_certificate_the_configured_ca_signed_and_not_otherwise() {
    baresip::require();
    logs();
    let ca = TestCa::new("trusted");
    let setup = Setup { certificate: Some(ca.peer_file.clone()), ..Setup::default() };
    let callee =
        Baresip::start_with(&[("13900009201", true)], &voice(&[(2.5, 1.5), (2.5, 1.5)], 60.0), &setup);
    let by_name = format!("localhost:{}", callee.tls_addr.port());
    let over_tls = |settings: &mut Settings, name: &str, address: &str, ca_file: &std::path::Path| {
        let trunk = TrunkSettings {
            name: name.into(),
            address: address.into(),
            transport: SipTransport::Tls,
            ..TrunkSettings::default()
        };
        through(vec![trunk])(settings);
        settings.sip.tls_ca_file = ca_file.display().to_string();
    };
    // By name: the name is sent as SNI, and is what the certificate must name.
    let s = TestServer::start_with(|settings| over_tls(settings, "tls-trusted", &by_name, &ca.ca_file)).await;
    s.create(&[ticket("T-TLS", "13900009201")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009201").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let (agent, callee_side) = recording(&s, &record).await;
    assert!(loudest(&agent) > 1000.0 && loudest(&callee_side) > 1000.0, "both voices");

    // A certificate our CA did not sign: no TLS connection, no call.
    let stranger = TestCa::new("stranger");
    let stranger_ca = stranger.ca_file.clone();
    let s =
        TestServer::start_with(|settings| over_tls(settings, "tls-stranger", &by_name, &stranger_ca)).await;
    s.create(&[ticket("T-TLS-BAD", "13900009202")]).await;
    // Our CA, but reached by an address the certificate does not name.
    let by_address = callee.tls_addr.to_string();
    let other =
        TestServer::start_with(|settings| over_tls(settings, "tls-by-address", &by_address, &ca.ca_file))
            .await;
    other.create(&[ticket("T-TLS-IP", "13900009203")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    other.wait_all_ended(CALL_LIMIT).await;
    for (server, phone, trunk, why) in [
        (&s, "13900009202", "tls-stranger", "UnknownIssuer"),
        (&other, "13900009203", "tls-by-address", "not valid for name"),
    ] {
        let record = record_of(server, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_TEMPORARY_FAILURE:sip:503", "{record}");
        assert!(!callee.log().contains(phone), "{}", callee.log());
        let said = log_text();
        let line = said.lines().find(|l| l.contains("cannot connect to the trunk") && l.contains(trunk));
        assert!(line.is_some_and(|l| l.contains(why)), "{trunk}: {line:?}");
    }
}

#[tokio::test]
async fn srtp_calls_carry_both_voices_and_a_plain_rtp_callee_is_refused_when_srtp_is_required() {
    baresip::require();
    let ca = TestCa::new("srtp");
    let talk = voice(&[(2.5, 1.5), (2.5, 1.5)], 60.0);
    // baresip over TLS, taking SRTP only.
    let setup = Setup {
        certificate: Some(ca.peer_file.clone()),
        media_encryption: Some("srtp-mand"),
        ..Setup::default()
    };
    let secure = Baresip::start_with(&[("13900009301", true)], &talk, &setup);
    let s = TestServer::start_with(|settings| {
        let trunk = TrunkSettings {
            name: "srtp-required".into(),
            address: format!("localhost:{}", secure.tls_addr.port()),
            transport: SipTransport::Tls,
            srtp: SrtpPolicy::Required,
            ..TrunkSettings::default()
        };
        through(vec![trunk])(settings);
        settings.sip.tls_ca_file = ca.ca_file.display().to_string();
    })
    .await;
    s.create(&[ticket("T-SRTP", "13900009301")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009301").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    // Both voices went through SRTP: ours decrypted by baresip, baresip's by us.
    let (agent, callee_side) = recording(&s, &record).await;
    assert!(loudest(&agent) > 1000.0, "the agent: {}", loudest(&agent));
    assert!(loudest(&callee_side) > 1000.0, "the callee: {}", loudest(&callee_side));
    assert!(loudest(&secure.heard()) > 1000.0, "baresip heard us: {}", loudest(&secure.heard()));

    // A callee without SRTP, to a trunk that requires it: no call.
    let plain = Baresip::start(&[("13900009302", true)], &talk);
    let s = TestServer::start_with(|settings| {
        let trunk = TrunkSettings {
            name: "srtp-required-plain-peer".into(),
            address: plain.addr.to_string(),
            srtp: SrtpPolicy::Required,
            ..TrunkSettings::default()
        };
        through(vec![trunk])(settings);
    })
    .await;
    s.create(&[ticket("T-SRTP-PLAIN", "13900009302")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009302").await;
    assert_eq!(record["hangupCause"], "INCOMPATIBLE_DESTINATION:sip:488", "{record}");
    assert_eq!(record["answeredTime"], "", "{record}");
}

#[tokio::test]
async fn a_trunk_at_its_max_concurrent_calls_passes_the_next_call_to_another() {
    let capped = SipPeer::start(|_| Script::Answer { talk: Duration::from_secs(4), in_dialog: false }).await;
    let other = SipPeer::start(|_| Script::Answer { talk: Duration::from_secs(4), in_dialog: false }).await;
    let s = TestServer::start_with(|settings| {
        let mut first = trunk("capped-first", &capped, 1);
        first.max_concurrent_calls = 1;
        through(vec![first, trunk("capped-other", &other, 0)])(settings);
        settings.dialer.max_concurrent_calls = 2;
    })
    .await;
    s.create(&[ticket("T-CAP-1", "13900009401"), ticket("T-CAP-2", "13900009402")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    for phone in ["13900009401", "13900009402"] {
        let record = record_of(&s, phone).await;
        assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{phone}: {record}");
    }
    // The two calls were up together: one on each trunk.
    assert_eq!(invites(&capped), 1, "{:?}", capped.events());
    assert_eq!(invites(&other), 1, "{:?}", other.events());
}

#[tokio::test]
async fn a_trunk_whose_address_does_not_resolve_does_not_stop_the_others() {
    let working = SipPeer::start(|_| answers()).await;
    let s = TestServer::start_with(|settings| {
        let nowhere = TrunkSettings {
            name: "unresolved".into(),
            address: "sip.nowhere.invalid".into(),
            ..TrunkSettings::default()
        };
        through(vec![nowhere, trunk("resolved", &working, 0)])(settings);
    })
    .await;
    s.create(&[ticket("T-DNS", "13900009501")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009501").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert_eq!(invites(&working), 1, "{:?}", working.events());
    let failures = r#"callcenter_sip_trunk_failures_total{trunk="unresolved"}"#;
    assert_eq!(metric(&s, failures).await, Some(1.0));
}

/// A trunk that asks for a client certificate: a TLS front (rustls, requiring a certificate
/// `ca` signed) relaying to `backend`'s SIP over TCP, as a carrier's SBC would. Whether
/// each handshake was accepted is sent on the channel.
fn tls_front_wanting_a_client_certificate(
    ca: &TestCa,
    backend: std::net::SocketAddr,
) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<Result<(), String>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{ErrorKind, Read, Write};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&ca.peer_file).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&ca.peer_file).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (said, handshakes) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (config, said) = (config.clone(), said.clone());
            std::thread::spawn(move || {
                let mut client = client.unwrap();
                let mut tls = rustls::ServerConnection::new(config).unwrap();
                while tls.is_handshaking() {
                    if let Err(e) = tls.complete_io(&mut client) {
                        let _ = said.send(Err(e.to_string()));
                        return;
                    }
                }
                let _ = said.send(Ok(()));
                // Both ways, polling each side in turn.
                let mut tls = rustls::StreamOwned::new(tls, client);
                let mut backend = std::net::TcpStream::connect(backend).unwrap();
                let poll = Some(Duration::from_millis(10));
                tls.sock.set_read_timeout(poll).unwrap();
                backend.set_read_timeout(poll).unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match tls.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => backend.write_all(&buf[..n]).unwrap(),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                    match backend.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => tls.write_all(&buf[..n]).unwrap(),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (addr, handshakes)
}

#[tokio::test]
async fn a_trunk_that_asks_for_a_client_certificate_gets_ours_and_without_one_takes_no_call() {
    baresip::require();
    logs();
    let ca = TestCa::new("client-auth");
    let callee = Baresip::start(&[("13900009301", true)], &voice(&[(2.5, 1.5), (2.5, 1.5)], 60.0));
    let (front, handshakes) = tls_front_wanting_a_client_certificate(&ca, callee.addr);
    let over_tls = |settings: &mut Settings, name: &str, certificate: Option<&std::path::Path>| {
        let trunk = TrunkSettings {
            name: name.into(),
            address: format!("localhost:{}", front.port()),
            transport: SipTransport::Tls,
            ..TrunkSettings::default()
        };
        through(vec![trunk])(settings);
        settings.sip.tls_ca_file = ca.ca_file.display().to_string();
        if let Some(file) = certificate {
            // Certificate and key in one PEM file, named by both keys.
            settings.sip.tls_client_cert_file = file.display().to_string();
            settings.sip.tls_client_key_file = file.display().to_string();
        }
    };

    // With the certificate our CA signed: the call goes through, both voices recorded.
    let s =
        TestServer::start_with(|settings| over_tls(settings, "tls-client-cert", Some(&ca.peer_file))).await;
    s.create(&[ticket("T-TLS-CLIENT", "13900009301")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009301").await;
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    let (agent, callee_side) = recording(&s, &record).await;
    assert!(loudest(&agent) > 1000.0 && loudest(&callee_side) > 1000.0, "both voices");
    assert_eq!(handshakes.try_iter().collect::<Vec<_>>(), [Ok(())]);

    // Without one: the trunk refuses the connection, and no call reaches the callee.
    let s = TestServer::start_with(|settings| over_tls(settings, "tls-no-client-cert", None)).await;
    s.create(&[ticket("T-TLS-NO-CLIENT", "13900009302")]).await;
    s.wait_all_ended(CALL_LIMIT).await;
    let record = record_of(&s, "13900009302").await;
    assert_ne!(record["hangupCause"], "NORMAL_CLEARING:sip:200", "{record}");
    assert!(!callee.log().contains("13900009302"), "{}", callee.log());
    let refused = handshakes.recv_timeout(Duration::from_secs(5)).expect("a handshake was tried");
    assert!(refused.as_ref().is_err_and(|e| e.contains("certificate")), "{refused:?}");
}
