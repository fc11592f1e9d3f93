//! A scripted SIP callee on loopback UDP, for what baresip cannot be told to do: reject
//! with a chosen code (486, 603, 480, 503), challenge with digest auth (401/407) and check
//! the answer, and, once answered, send OPTIONS, a re-INVITE, key presses (RFC 4733
//! telephone-events or SIP INFO) and finally a BYE within the dialog. It writes SIP by hand, independent of the stack under test, and notes what it
//! saw in an event log the tests read, and keeps the audio it heard. It also holds many
//! calls at once for the SIP load benchmark (`Script::Hold`, examples/sip_load_peer.rs):
//! talking on each at real time and timing the caller's packets rather than keeping them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use callcenter::telephony::sip::g711::Codec;
use md5::{Digest, Md5};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// What the callee does with an INVITE.
#[derive(Debug, Clone)]
pub enum Script {
    /// 100, 180, then this final answer.
    Reject(u16),
    /// Challenge with 401 (`proxy: false`) or 407, then check the retried INVITE's digest
    /// (MD5, qop=auth) against `user`/`password`: right → `then`, wrong → 403.
    Auth { proxy: bool, user: String, password: String, then: Box<Script> },
    /// Answer with SDP; after the ACK send OPTIONS, then a re-INVITE (checking both are
    /// answered 200, the re-INVITE with our SDP unchanged), then BYE after `talk`.
    Answer { talk: Duration, in_dialog: bool },
    /// 422 Session Interval Too Small with this Min-SE, then `then` for the retried INVITE.
    TooSmall { min_se: u64, then: Box<Script> },
    /// Answer taking the session timer as proposed (RFC 4028: Session-Expires and Require
    /// in the 200, UPDATE allowed); with `refresh_us`, send a refresh UPDATE once answered
    /// and note the Session-Expires of the answer. BYE after `talk`.
    Timer { talk: Duration, refresh_us: bool },
    /// Answer (mapping telephone-event to payload type 96, not the 101 we are offered),
    /// press `key` a moment later, as RFC 4733 packets or (`info`) a SIP INFO
    /// `application/dtmf-relay`, and BYE after `talk` unless the caller hangs up first.
    Presses { key: char, info: bool, talk: Duration },
    /// Answer and talk until the caller hangs up, or BYE after `talk`: `voice` (PCMU, a
    /// whole number of 20 ms frames, looped; silence if empty) goes out every 20 ms, and
    /// the caller's packets are timed (`SipPeer::timing`), not kept.
    Hold { talk: Duration, voice: Arc<[u8]> },
    /// Answer as a phone behind NAT: its SDP names an address that does not reach it
    /// (192.0.2.1, TEST-NET-1), while it talks from its real one; BYE after `talk`.
    BehindNat { talk: Duration },
}

/// The payload type a `Presses` callee's answer gives telephone-events.
pub const PEER_TELEPHONE_EVENT: u8 = 96;

/// One message, parsed just enough.
#[derive(Debug, Clone)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Msg {
    pub fn parse(raw: &str) -> Option<Msg> {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (long_name(k.trim()).to_string(), v.trim().to_string()))
            .collect();
        Some(Msg { start, headers, body: body.to_string() })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.start.starts_with(&format!("{method} "))
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    pub fn cseq_method(&self) -> &str {
        self.header("CSeq").and_then(|c| c.split_whitespace().nth(1)).unwrap_or_default()
    }

    fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// The user part of the request URI.
    fn callee(&self) -> String {
        let uri = self.start.split_whitespace().nth(1).unwrap_or_default();
        uri.trim_start_matches("sip:").split('@').next().unwrap_or_default().to_string()
    }
}

fn long_name(name: &str) -> &str {
    match name {
        "v" => "Via",
        "f" => "From",
        "t" => "To",
        "i" => "Call-ID",
        "m" => "Contact",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "x" => "Session-Expires",
        "k" => "Supported",
        other => other,
    }
}

/// The callee, listening until dropped.
pub struct SipPeer {
    pub addr: SocketAddr,
    events: Arc<Mutex<Vec<String>>>,
    heard: Arc<Mutex<Vec<i16>>>,
    held: Arc<Held>,
    /// What an out-of-dialog OPTIONS is answered with.
    options_status: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl Drop for SipPeer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(talking) = self.held.talking.lock().unwrap().take() {
            talking.abort();
        }
    }
}

/// The `Hold` calls: one task sends every call's next frame each 20 ms (one timer for all
/// of them, so that a thousand calls cost the peer little), and the timing of what came.
#[derive(Default)]
struct Held {
    calls: AtomicUsize,
    talkers: Mutex<Vec<Talker>>,
    talking: Mutex<Option<JoinHandle<()>>>,
    timing: Mutex<Timing>,
}

/// One `Hold` call's outgoing stream; it ends when its socket is dropped.
struct Talker {
    socket: Weak<UdpSocket>,
    to: SocketAddr,
    voice: Arc<[u8]>,
    at: usize,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

impl Held {
    fn talk(held: &Arc<Held>, talker: Talker) {
        held.talkers.lock().unwrap().push(talker);
        let mut talking = held.talking.lock().unwrap();
        if talking.is_none() {
            *talking = Some(tokio::spawn(talk(held.clone())));
        }
    }
}

async fn talk(held: Arc<Held>) {
    const SILENCE: [u8; 160] = [0xFF; 160]; // PCMU
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut packet = [0u8; 172];
    loop {
        tick.tick().await;
        held.talkers.lock().unwrap().retain_mut(|t| {
            let Some(socket) = t.socket.upgrade() else { return false };
            packet[..2].copy_from_slice(&[0x80, 0]);
            packet[2..4].copy_from_slice(&t.seq.to_be_bytes());
            packet[4..8].copy_from_slice(&t.timestamp.to_be_bytes());
            packet[8..12].copy_from_slice(&t.ssrc.to_be_bytes());
            let frame = t.voice.get(t.at..t.at + 160).unwrap_or(&SILENCE);
            packet[12..].copy_from_slice(frame);
            let _ = socket.try_send_to(&packet, t.to);
            t.at = if t.at + 160 >= t.voice.len() { 0 } else { t.at + 160 };
            t.seq = t.seq.wrapping_add(1);
            t.timestamp = t.timestamp.wrapping_add(160);
            true
        });
    }
}

/// When the caller's packets came on `Hold` calls, over all of them since the last reset.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Gaps between consecutive packets of one stream, by tenth of a millisecond; the
    /// last slot holds the longer ones.
    gaps: Vec<u64>,
    pub max_gap: Duration,
    pub packets: u64,
    /// Packets the sequence numbers skipped (lost, or still to come out of order).
    pub missing: u64,
    /// Packets that came after a later one.
    pub reordered: u64,
}

const GAP_SLOTS: usize = 2001;

impl Default for Timing {
    fn default() -> Self {
        Timing { gaps: vec![0; GAP_SLOTS], max_gap: Duration::ZERO, packets: 0, missing: 0, reordered: 0 }
    }
}

impl Timing {
    fn gap(&mut self, gap: Duration) {
        self.gaps[(gap.as_micros() as usize / 100).min(GAP_SLOTS - 1)] += 1;
        self.max_gap = self.max_gap.max(gap);
    }

    /// The gap at quantile `q`, to a tenth of a millisecond (at most 200 ms: see `max_gap`).
    pub fn gap_quantile(&self, q: f64) -> Duration {
        let total: u64 = self.gaps.iter().sum();
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        let slot = self.gaps.iter().position(|&n| {
            seen += n;
            seen >= rank
        });
        Duration::from_micros(slot.unwrap_or(0) as u64 * 100)
    }

    /// How many gaps were longer than `limit`.
    pub fn gaps_over(&self, limit: Duration) -> u64 {
        self.gaps.iter().skip(limit.as_micros() as usize / 100 + 1).sum()
    }
}

impl SipPeer {
    /// Starts on a free loopback port; `script` picks the behaviour by the dialled number.
    pub async fn start(script: impl Fn(&str) -> Script + Send + Sync + 'static) -> SipPeer {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Held::default());
        let options_status = Arc::new(AtomicU16::new(200));
        let peer = Peer {
            socket,
            scripts: Arc::new(script),
            events: events.clone(),
            heard: heard.clone(),
            held: held.clone(),
            options_status: options_status.clone(),
        };
        let task = tokio::spawn(serve(peer));
        SipPeer { addr, events, heard, held, options_status, task }
    }

    /// Answers out-of-dialog OPTIONS (a keep-alive, a trunk probe) with `status` from now on.
    pub fn answer_options_with(&self, status: u16) {
        self.options_status.store(status, Ordering::Relaxed);
    }

    /// `Hold` calls answered and not yet over.
    pub fn calls_held(&self) -> usize {
        self.held.calls.load(Ordering::Relaxed)
    }

    /// The timing of the caller's packets on `Hold` calls since the last reset.
    pub fn timing(&self) -> Timing {
        self.held.timing.lock().unwrap().clone()
    }

    pub fn reset_timing(&self) {
        *self.held.timing.lock().unwrap() = Timing::default();
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// The audio of every RTP packet that came (our answer takes PCMU), in order.
    pub fn heard(&self) -> Vec<i16> {
        self.heard.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) for an event containing `needle`.
    pub async fn wait_event(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.events().iter().any(|e| e.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

type Scripts = Arc<dyn Fn(&str) -> Script + Send + Sync>;

/// What the serving task holds.
struct Peer {
    socket: Arc<UdpSocket>,
    scripts: Scripts,
    events: Arc<Mutex<Vec<String>>>,
    heard: Arc<Mutex<Vec<i16>>>,
    held: Arc<Held>,
    options_status: Arc<AtomicU16>,
}

/// Routes datagrams to one task per Call-ID.
async fn serve(peer: Peer) {
    let Peer { socket, scripts, events, heard, held, options_status } = peer;
    let mut calls: HashMap<String, mpsc::UnboundedSender<Msg>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else { continue };
        let Some(msg) = Msg::parse(&String::from_utf8_lossy(&buf[..len])) else { continue };
        if msg.is_request("OPTIONS") && !calls.contains_key(msg.call_id()) {
            // Out of dialog: a keep-alive, or a probe.
            let status = options_status.load(Ordering::Relaxed);
            let reason = if status == 200 { "OK" } else { "Service Unavailable" };
            let _ = socket.send_to(response(&msg, status, reason, None, &[], "").as_bytes(), from).await;
            events.lock().unwrap().push(format!("OPTIONS probe {status}"));
            continue;
        }
        let call_id = msg.call_id().to_string();
        if let Some(tx) = calls.get(&call_id) {
            let _ = tx.send(msg);
            continue;
        }
        if !msg.is_request("INVITE") {
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let script = scripts(&msg.callee());
        events.lock().unwrap().push(format!("INVITE {}", msg.callee()));
        events
            .lock()
            .unwrap()
            .push(format!("request-uri {}", msg.start.split_whitespace().nth(1).unwrap_or_default()));
        events.lock().unwrap().push(format!("via {}", msg.header("Via").unwrap_or_default()));
        events.lock().unwrap().push(format!("route {}", msg.header("Route").unwrap_or("-")));
        if let Some(contact) = msg.header("Contact").and_then(|c| c.split('@').nth(1)) {
            let contact = contact.split(['>', ';']).next().unwrap_or_default();
            events.lock().unwrap().push(format!("contact {contact}"));
        }
        let call = Call {
            socket: socket.clone(),
            to: from,
            events: events.clone(),
            heard: heard.clone(),
            held: held.clone(),
            rx,
            cseq: 0,
        };
        call.note_timer(&msg);
        tokio::spawn(call.run(msg, script));
        calls.insert(call_id, tx);
    }
}

struct Call {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    events: Arc<Mutex<Vec<String>>>,
    heard: Arc<Mutex<Vec<i16>>>,
    held: Arc<Held>,
    rx: mpsc::UnboundedReceiver<Msg>,
    cseq: u32,
}

const WAIT: Duration = Duration::from_secs(10);
const SDP_TYPE: &str = "Content-Type: application/sdp";

impl Call {
    fn note(&self, event: impl Into<String>) {
        self.events.lock().unwrap().push(event.into());
    }

    /// The session-timer headers of an INVITE.
    fn note_timer(&self, invite: &Msg) {
        let h = |name| invite.header(name).unwrap_or("-");
        self.note(format!(
            "timer {} se={} min-se={} supported={}",
            invite.callee(),
            h("Session-Expires"),
            h("Min-SE"),
            h("Supported")
        ));
    }

    async fn send(&self, text: String) {
        let _ = self.socket.send_to(text.as_bytes(), self.to).await;
    }

    /// The next message that `pick` accepts; others (retransmissions) are skipped.
    async fn next(&mut self, pick: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg =
                timeout(deadline.saturating_duration_since(tokio::time::Instant::now()), self.rx.recv())
                    .await
                    .ok()??;
            if msg.is_request("BYE") {
                self.send(response(&msg, 200, "OK", None, &[], "")).await;
                self.note("BYE received");
            }
            if msg.is_request("UPDATE") {
                // A session refresh from the caller: taken as asked.
                let se = msg.header("Session-Expires").unwrap_or("-").to_string();
                self.send(response(&msg, 200, "OK", None, &[format!("Session-Expires: {se}")], "")).await;
                self.note(format!("refresh UPDATE se={se}"));
            }
            if pick(&msg) {
                return Some(msg);
            }
        }
    }

    async fn run(mut self, mut invite: Msg, mut script: Script) {
        self.send(response(&invite, 100, "Trying", None, &[], "")).await;
        loop {
            match script {
                Script::Reject(code) => {
                    self.send(response(&invite, 180, "Ringing", Some("peer"), &[], "")).await;
                    self.send(response(&invite, code, "Scripted", Some("peer"), &[], "")).await;
                    if self.next(|m| m.is_request("ACK")).await.is_some() {
                        self.note(format!("ACK {code}"));
                    }
                    return;
                }
                Script::Auth { proxy, user, password, then } => {
                    let (status, header) =
                        if proxy { (407, "Proxy-Authenticate") } else { (401, "WWW-Authenticate") };
                    let challenge = format!(
                        r#"{header}: Digest realm="peer", nonce="n0nce{}", qop="auth", algorithm=MD5"#,
                        self.cseq
                    );
                    self.send(response(&invite, status, "Unauthorized", Some("peer"), &[challenge], ""))
                        .await;
                    let _ = self.next(|m| m.is_request("ACK")).await;
                    let Some(retry) = self.next(|m| m.is_request("INVITE")).await else {
                        self.note("no retried INVITE");
                        return;
                    };
                    let answer_header = if proxy { "Proxy-Authorization" } else { "Authorization" };
                    let ok = retry.header(answer_header).is_some_and(|a| {
                        digest_matches(a, &user, &password, "INVITE", &format!("n0nce{}", self.cseq))
                    });
                    self.send(response(&retry, 100, "Trying", None, &[], "")).await;
                    invite = retry;
                    if !ok {
                        self.note("auth wrong");
                        script = Script::Reject(403);
                        continue;
                    }
                    self.note("auth ok");
                    script = *then;
                }
                Script::Answer { talk, in_dialog } => {
                    self.answer(&invite, talk, in_dialog, None, None).await;
                    return;
                }
                Script::Timer { talk, refresh_us } => {
                    self.answer(&invite, talk, false, Some(refresh_us), None).await;
                    return;
                }
                Script::Presses { key, info, talk } => {
                    self.answer(&invite, talk, false, None, Some((key, info))).await;
                    return;
                }
                Script::Hold { talk, voice } => {
                    self.hold(&invite, talk, voice).await;
                    return;
                }
                Script::BehindNat { talk } => {
                    self.behind_nat(&invite, talk).await;
                    return;
                }
                Script::TooSmall { min_se, then } => {
                    let min_se = format!("Min-SE: {min_se}");
                    self.send(response(
                        &invite,
                        422,
                        "Session Interval Too Small",
                        Some("peer"),
                        &[min_se],
                        "",
                    ))
                    .await;
                    if self.next(|m| m.is_request("ACK")).await.is_some() {
                        self.note("ACK 422");
                    }
                    let Some(retry) = self.next(|m| m.is_request("INVITE")).await else {
                        self.note("no retried INVITE");
                        return;
                    };
                    self.note_timer(&retry);
                    self.send(response(&retry, 100, "Trying", None, &[], "")).await;
                    invite = retry;
                    script = *then;
                }
            }
        }
    }

    /// `timer`: take the proposed session timer; `Some(true)` also refreshes it ourselves.
    /// `press`: a key to press once answered, and whether by SIP INFO.
    async fn answer(
        &mut self,
        invite: &Msg,
        talk: Duration,
        in_dialog: bool,
        timer: Option<bool>,
        press: Option<(char, bool)>,
    ) {
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let rtp_addr = rtp.local_addr().unwrap();
        let packets = Arc::new(Mutex::new(0usize));
        let counter = packets.clone();
        let receiving = rtp.clone();
        let heard = self.heard.clone();
        let counting = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((len, _)) = receiving.recv_from(&mut buf).await {
                *counter.lock().unwrap() += 1;
                // The caller's packets have the plain 12-byte header.
                if let Some(payload) = buf.get(12..len).filter(|_| buf[1] & 0x7F == 0) {
                    heard.lock().unwrap().extend(Codec::Pcmu.decode(payload));
                }
            }
        });
        let te = if press.is_some() { PEER_TELEPHONE_EVENT } else { 101 };
        let sdp = answer_sdp(rtp_addr.port(), te);
        let mut headers = Vec::new();
        let se = invite.header("Session-Expires").unwrap_or_default().split(';').next().unwrap_or_default();
        if timer.is_some() && !se.is_empty() {
            headers.push(format!("Session-Expires: {se};refresher=uac"));
            headers.push("Require: timer".into());
            headers.push("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE".into());
        }
        if !self.accept(invite, &sdp, headers).await {
            return;
        }

        if timer == Some(true) {
            let refresh = format!("Session-Expires: {se};refresher=uas");
            self.request(invite, "UPDATE", &[refresh, "Supported: timer".into()], "").await;
            match self.next(|m| m.cseq_method() == "UPDATE" && m.status().is_some_and(|s| s >= 200)).await {
                Some(r) => self.note(format!(
                    "our answer to a refresh {} se={}",
                    r.status().unwrap(),
                    r.header("Session-Expires").unwrap_or("-")
                )),
                None => self.note("refresh unanswered"),
            }
        }

        if in_dialog {
            self.request(invite, "OPTIONS", &[], "").await;
            match self.next(|m| m.cseq_method() == "OPTIONS" && m.status().is_some_and(|s| s >= 200)).await {
                Some(r) => self.note(format!("OPTIONS {}", r.status().unwrap())),
                None => self.note("OPTIONS unanswered"),
            }
            let before = *packets.lock().unwrap();
            self.request(invite, "INVITE", &[SDP_TYPE.to_string()], &sdp).await;
            match self.next(|m| m.cseq_method() == "INVITE" && m.status().is_some_and(|s| s >= 200)).await {
                Some(r) => {
                    let same = r.body.trim() == invite.body.trim();
                    self.note(format!("re-INVITE {} same-sdp={same}", r.status().unwrap()));
                    let cseq = self.cseq;
                    self.request_with_cseq(invite, "ACK", cseq, &[], "").await;
                }
                None => self.note("re-INVITE unanswered"),
            }
            // The caller's RTP goes on after the re-INVITE: five packets more (100 ms of
            // audio), waited for up to 5 s; what came is noted either way.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while *packets.lock().unwrap() - before < 5 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = *packets.lock().unwrap();
            self.note(format!("rtp after re-INVITE {}", after - before));
        }

        if let Some((key, info)) = press {
            // A moment after answering: while the caller is still speaking its first lines.
            tokio::time::sleep(Duration::from_millis(800)).await;
            if info {
                let body = format!("Signal={key}\r\nDuration=160\r\n");
                let content_type = "Content-Type: application/dtmf-relay".to_string();
                self.request(invite, "INFO", &[content_type], &body).await;
                match self.next(|m| m.cseq_method() == "INFO" && m.status().is_some_and(|s| s >= 200)).await {
                    Some(r) => self.note(format!("INFO {key} {}", r.status().unwrap())),
                    None => self.note("INFO unanswered"),
                }
            } else {
                match rtp_target(&invite.body) {
                    Some(to) => {
                        send_key(&rtp, to, key).await;
                        self.note(format!("pressed {key}"));
                    }
                    None => self.note("no RTP address in the offer"),
                }
            }
        }

        // Talk until our time is up, unless the caller hangs up first.
        let caller_bye = timeout(talk, self.next(|m| m.is_request("BYE"))).await;
        self.note(format!("rtp {}", *packets.lock().unwrap()));
        if caller_bye.is_err() {
            self.hang_up(invite).await;
        }
        counting.abort();
    }

    /// 180, then 200 with `sdp` (and `extra` headers); true once the ACK has come.
    async fn accept(&mut self, invite: &Msg, sdp: &str, extra: Vec<String>) -> bool {
        let contact = format!("Contact: <sip:peer@{}>", self.socket.local_addr().unwrap());
        self.send(response(invite, 180, "Ringing", Some("peer"), &[], "")).await;
        let headers: Vec<String> = [contact, SDP_TYPE.to_string()].into_iter().chain(extra).collect();
        self.send(response(invite, 200, "OK", Some("peer"), &headers, sdp)).await;
        if self.next(|m| m.is_request("ACK")).await.is_none() {
            self.note("no ACK");
            return false;
        }
        self.note("ACK 200");
        true
    }

    async fn hang_up(&mut self, invite: &Msg) {
        self.request(invite, "BYE", &[], "").await;
        match self.next(|m| m.cseq_method() == "BYE" && m.status().is_some()).await {
            Some(r) => self.note(format!("BYE sent, answered {}", r.status().unwrap())),
            None => self.note("BYE sent, unanswered"),
        }
    }

    /// `Script::Hold`.
    async fn hold(&mut self, invite: &Msg, talk: Duration, voice: Arc<[u8]>) {
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        if !self.accept(invite, &answer_sdp(rtp.local_addr().unwrap().port(), 101), Vec::new()).await {
            return;
        }
        let Some(to) = rtp_target(&invite.body) else {
            self.note("no RTP address in the offer");
            return;
        };
        self.held.calls.fetch_add(1, Ordering::Relaxed);
        let talker = Talker {
            socket: Arc::downgrade(&rtp),
            to,
            voice,
            at: 0,
            seq: rand::random(),
            timestamp: rand::random(),
            ssrc: rand::random(),
        };
        Held::talk(&self.held, talker);
        let timing = tokio::spawn(time_packets(rtp, self.held.clone()));

        let deadline = Instant::now() + talk;
        let caller_bye = loop {
            match tokio::time::timeout_at(deadline, self.next(|m| m.is_request("BYE"))).await {
                Ok(Some(_)) => break true,
                // Nothing for a while (`next` gives up after WAIT): go on waiting, unless
                // the peer itself is gone.
                Ok(None) => {
                    if self.rx.is_closed() {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        timing.abort();
        self.held.calls.fetch_sub(1, Ordering::Relaxed);
        if !caller_bye {
            self.hang_up(invite).await;
        }
    }

    /// `Script::BehindNat`: notes `rtp <n>`, the caller's packets that reached it.
    async fn behind_nat(&mut self, invite: &Msg, talk: Duration) {
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let sdp = answer_sdp(rtp.local_addr().unwrap().port(), 101)
            .replace("c=IN IP4 127.0.0.1", "c=IN IP4 192.0.2.1");
        if !self.accept(invite, &sdp, Vec::new()).await {
            return;
        }
        let Some(to) = rtp_target(&invite.body) else {
            self.note("no RTP address in the offer");
            return;
        };
        let packets = Arc::new(AtomicUsize::new(0));
        let talking = tokio::spawn({
            let (rtp, packets) = (rtp.clone(), packets.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut buf = [0u8; 2048];
                let (ssrc, mut seq, mut timestamp): (u32, u16, u32) = (rand::random(), 0, 0);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let mut packet = vec![0x80, 0];
                            packet.extend_from_slice(&seq.to_be_bytes());
                            packet.extend_from_slice(&timestamp.to_be_bytes());
                            packet.extend_from_slice(&ssrc.to_be_bytes());
                            packet.extend_from_slice(&[0xFF; 160]);
                            let _ = rtp.send_to(&packet, to).await;
                            seq = seq.wrapping_add(1);
                            timestamp = timestamp.wrapping_add(160);
                        }
                        Ok(_) = rtp.recv_from(&mut buf) => {
                            packets.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        let caller_bye = timeout(talk, self.next(|m| m.is_request("BYE"))).await;
        talking.abort();
        self.note(format!("rtp {}", packets.load(Ordering::Relaxed)));
        if caller_bye.is_err() {
            self.hang_up(invite).await;
        }
    }

    /// A request within the dialog the INVITE made (we are its UAS side).
    async fn request(&mut self, invite: &Msg, method: &str, extra: &[String], body: &str) {
        self.cseq += 1;
        let cseq = self.cseq;
        self.request_with_cseq(invite, method, cseq, extra, body).await;
    }

    async fn request_with_cseq(&self, invite: &Msg, method: &str, cseq: u32, extra: &[String], body: &str) {
        let target =
            invite.header("Contact").unwrap_or_default().trim_matches(|c| c == '<' || c == '>').to_string();
        let target = target.split('>').next().unwrap_or_default().trim_start_matches('<').to_string();
        let me = self.socket.local_addr().unwrap();
        let mut text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKpeer{method}{cseq}{}\r\n\
             Max-Forwards: 70\r\nFrom: {};tag=peer\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:peer@{me}>\r\n",
            rand::random::<u32>(),
            invite.header("To").unwrap_or_default(),
            invite.header("From").unwrap_or_default(),
            invite.call_id(),
        );
        for h in extra {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.send(text).await;
    }
}

/// Our answer: PCMU at `port`, and telephone-events as payload type `te`.
fn answer_sdp(port: u16, te: u8) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 {te}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{te} telephone-event/8000\r\n\
         a=sendrecv\r\n"
    )
}

/// Notes when each of the caller's packets came on a `Hold` call, and what its sequence
/// numbers skipped.
async fn time_packets(rtp: Arc<UdpSocket>, held: Arc<Held>) {
    let mut buf = [0u8; 2048];
    let mut last: Option<(Instant, u16)> = None;
    while let Ok((len, _)) = rtp.recv_from(&mut buf).await {
        let now = Instant::now();
        if len < 12 {
            continue;
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let mut timing = held.timing.lock().unwrap();
        timing.packets += 1;
        if let Some((at, last_seq)) = last {
            let step = seq.wrapping_sub(last_seq);
            if step >= 0x8000 {
                timing.reordered += 1;
                continue;
            }
            timing.missing += u64::from(step.saturating_sub(1));
            timing.gap(now - at);
        }
        last = Some((now, seq));
    }
}

/// Where the offer wants RTP: its connection address and audio port.
fn rtp_target(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp.lines().find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?.trim();
    let port = sdp.lines().find_map(|l| l.trim().strip_prefix("m=audio "))?.split_whitespace().next()?;
    format!("{ip}:{port}").parse().ok()
}

/// One key press as a phone sends it (RFC 4733 §2.5): an update every 50 ms with the
/// duration so far, then the end packet three times, all with the press's start as their
/// timestamp and the first one marked.
async fn send_key(socket: &UdpSocket, to: SocketAddr, key: char) {
    let event = match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        _ => panic!("no key {key}"),
    };
    let ssrc: u32 = rand::random();
    let timestamp: u32 = rand::random();
    let packet = |seq: u16, end: bool, duration: u16| {
        let mut p = vec![0x80, (u8::from(seq == 0) << 7) | PEER_TELEPHONE_EVENT];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[event, (u8::from(end) << 7) | 10]);
        p.extend_from_slice(&duration.to_be_bytes());
        p
    };
    for seq in 0..3u16 {
        let _ = socket.send_to(&packet(seq, false, 400 * (seq + 1)), to).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for seq in 3..6u16 {
        let _ = socket.send_to(&packet(seq, true, 1280), to).await;
    }
}

/// A response to `req`, with `tag` added to its To (unless it has one).
pub fn response(
    req: &Msg,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    extra: &[String],
    body: &str,
) -> String {
    let mut text = format!("SIP/2.0 {code} {reason}\r\n");
    for via in req.all("Via") {
        text.push_str(&format!("Via: {via}\r\n"));
    }
    let to = req.header("To").unwrap_or_default();
    let to = match tag {
        Some(tag) if !to.contains("tag=") => format!("{to};tag={tag}"),
        _ => to.to_string(),
    };
    text.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.header("From").unwrap_or_default(),
        req.call_id(),
        req.header("CSeq").unwrap_or_default()
    ));
    for h in extra {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// Checks a digest answer (RFC 2617, MD5, qop=auth or none).
pub fn digest_matches(header: &str, user: &str, password: &str, method: &str, nonce: &str) -> bool {
    let params: HashMap<String, String> = header
        .trim_start_matches("Digest")
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect();
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let md5 = |s: String| Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
    if get("username") != user || get("nonce") != nonce {
        return false;
    }
    let ha1 = md5(format!("{user}:{}:{password}", get("realm")));
    let ha2 = md5(format!("{method}:{}", get("uri")));
    let expected = match get("qop") {
        "" => md5(format!("{ha1}:{nonce}:{ha2}")),
        qop => md5(format!("{ha1}:{nonce}:{}:{}:{qop}:{ha2}", get("nc"), get("cnonce"))),
    };
    get("response") == expected
}
