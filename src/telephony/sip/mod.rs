//! The SIP carrier (`dialer.carrier = "sip"`): calls go to a SIP trunk as INVITEs, the
//! agent talks over RTP (G.711), and both sides are recorded.
//!
//! - `signalling`: the user agent on rsipstack; INVITE, CANCEL, BYE, auth, in-dialog requests
//! - `sdp`: our offer and what we read from the answer
//! - `rtp`: the paced sender, the receiver, RTP ports
//! - `g711`: PCMA / PCMU
//! - the voice is `telephony::tts`, the ear `telephony::hearing`
//! - `session`: one answered call as a `CallSession`; `recorder`: its stereo WAV
//! - `timer`: RFC 4028 session timers, refreshed as the node renews its leases

pub mod g711;
mod pacer;
pub mod recorder;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod signalling;
pub mod timer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, mpsc, watch};

use self::g711::Codec;
use self::recorder::Recorder;
use self::rtp::{KEY_BACKLOG, Media, PortRange, RtpTimeout};
use self::session::{Engines, SipSession};
use self::signalling::{DialogEvents, Ua, UaConfig};
use super::hearing::Ear;
use super::tts::{Tts, TtsEngine};
use super::{Carrier, DialRequest, DialResult};
use crate::domain::HangupCause;

/// `[sip]`: the trunk, who we call as, where we listen, and how we speak and hear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSettings {
    /// The SIP trunk (or SBC / proxy) every INVITE goes to: `host[:port]`, port 5060 by default.
    pub trunk: String,
    pub transport: SipTransport,
    /// Host part of request URIs and From/To (`sip:<number>@<domain>`); empty = the trunk.
    pub domain: String,
    /// Digest authentication (401/407), when the trunk asks; empty = none.
    pub username: String,
    pub password: String,
    /// Caller ids (the From user), used in turn call by call; empty = `username`, or `callcenter`.
    pub caller_ids: Vec<String>,
    /// Put before every number dialled (a trunk's routing prefix).
    pub dial_prefix: String,
    /// Local SIP address (UDP, and TCP with `transport = "tcp"`).
    pub bind: String,
    /// Address announced in Via, Contact and SDP (behind NAT: the public one); empty = the
    /// local address the system routes to the trunk from.
    pub external_ip: String,
    /// Local RTP ports (even ones are used); `rtp_port_min = 0` takes any free port.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Offered in this order of preference.
    pub codecs: Vec<Codec>,
    /// Offer RFC 4733 telephone-events (DTMF): keys pressed are heard as `[按键 1]`. Key
    /// presses by SIP INFO are heard either way.
    pub telephone_event: bool,
    /// Deprecated: `tts.engine`, `tts.command`, `tts.espeak_voice`, `tts.espeak_speed`,
    /// which they stand for where they differ from these defaults.
    pub tts_engine: TtsEngine,
    pub tts_command: Vec<String>,
    pub espeak_voice: String,
    pub espeak_speed: u32,
    /// Deprecated: `asr.engine = "command"` with `asr.command`, which it stands for when
    /// `[asr]` names no engine.
    pub asr_command: Vec<String>,
    /// Deprecated: `asr.vad_threshold`, `asr.vad_silence_ms`.
    pub vad_threshold: u32,
    pub vad_silence_ms: u64,
    /// RFC 4028 session interval offered in every INVITE (we refresh): a trunk that takes
    /// it ends the call when refreshes stop, so a dead node's calls do not stay up.
    /// 90…3600; 0 = no session timers.
    pub session_expires_secs: u64,
    /// A call whose far end sends no RTP this long is ended (`MEDIA_TIMEOUT`); 0 = never.
    pub rtp_timeout_secs: u64,
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            trunk: String::new(),
            transport: SipTransport::Udp,
            domain: String::new(),
            username: String::new(),
            password: String::new(),
            caller_ids: Vec::new(),
            dial_prefix: String::new(),
            bind: "0.0.0.0:5060".into(),
            external_ip: String::new(),
            rtp_port_min: 20000,
            rtp_port_max: 20999,
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            telephone_event: true,
            tts_engine: TtsEngine::Espeak,
            tts_command: Vec::new(),
            espeak_voice: "cmn".into(),
            espeak_speed: 160,
            asr_command: Vec::new(),
            vad_threshold: 400,
            vad_silence_ms: 700,
            session_expires_secs: timer::MIN_SE,
            rtp_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    Tcp,
}

impl SipSettings {
    /// What the types do not check; only asked when `dialer.carrier = "sip"`.
    pub fn validate(&self) -> Result<(), String> {
        if self.trunk.trim().is_empty() {
            return Err(
                "sip.trunk must be set (host:port of the SIP trunk) when dialer.carrier = \"sip\"".into()
            );
        }
        if signalling::split_host_port(&self.trunk).is_none() {
            return Err(format!("sip.trunk `{}` is not host[:port]", self.trunk));
        }
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("sip.bind `{}` is not ip:port", self.bind));
        }
        if !self.external_ip.is_empty() && self.external_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("sip.external_ip `{}` is not an IP address", self.external_ip));
        }
        if self.codecs.is_empty() {
            return Err("sip.codecs must name at least one of \"PCMA\", \"PCMU\"".into());
        }
        if self.rtp_port_min != 0 && self.rtp_port_max <= self.rtp_port_min {
            return Err("sip.rtp_port_max must be above sip.rtp_port_min".into());
        }
        if self.session_expires_secs != 0 && !(timer::MIN_SE..=3600).contains(&self.session_expires_secs) {
            return Err(
                "sip.session_expires_secs must be 0 (none) or 90…3600 (RFC 4028's floor is 90)".into()
            );
        }
        if self.rtp_timeout_secs > 3600 {
            return Err("sip.rtp_timeout_secs must be 0 (never) or up to 3600".into());
        }
        Ok(())
    }
}

/// Places calls through a SIP trunk. The user agent starts with the first call.
pub struct SipCarrier {
    settings: SipSettings,
    ua: OnceCell<Arc<Ua>>,
    ports: PortRange,
    next_caller: AtomicUsize,
    engines: Engines,
    /// Most samples a recording channel keeps (the longest call, and some).
    recording_limit: usize,
}

impl SipCarrier {
    /// The carrier with its voice and its ear (`telephony::tts::voice`, `Ear::new`, or
    /// engines of your own); `max_call` is `dialer.max_call_secs`.
    pub fn new(s: &SipSettings, max_call: Duration, tts: Arc<dyn Tts>, ear: Ear) -> SipCarrier {
        let longest = max_call + Duration::from_secs(60);
        SipCarrier {
            settings: s.clone(),
            ua: OnceCell::new(),
            ports: PortRange::new(s.rtp_port_min, s.rtp_port_max),
            next_caller: AtomicUsize::new(0),
            engines: Engines { tts, ear },
            recording_limit: crate::recording::samples_in(longest),
        }
    }

    async fn ua(&self) -> Result<&Arc<Ua>, String> {
        self.ua
            .get_or_try_init(|| async {
                let s = &self.settings;
                let config = UaConfig {
                    trunk: &s.trunk,
                    transport: s.transport,
                    domain: &s.domain,
                    bind: &s.bind,
                    external_ip: &s.external_ip,
                    username: &s.username,
                    password: &s.password,
                };
                Ua::start(&config).await.map(Arc::new)
            })
            .await
    }

    fn caller_id(&self) -> String {
        let pool = &self.settings.caller_ids;
        if pool.is_empty() {
            return if self.settings.username.is_empty() {
                "callcenter".into()
            } else {
                self.settings.username.clone()
            };
        }
        pool[self.next_caller.fetch_add(1, Ordering::Relaxed) % pool.len()].clone()
    }
}

/// No SIP answer to go by (a local error, the trunk unreachable): RFC 3261 §8.1.3.1
/// treats a transport failure as a 503.
fn local_failure() -> HangupCause {
    HangupCause::from_sip(503)
}

#[async_trait]
impl Carrier for SipCarrier {
    /// The session interval, and the lag a refresh may have behind the renewal it follows.
    fn far_end_expiry(&self) -> Duration {
        match self.settings.session_expires_secs {
            0 => super::FAR_END_EXPIRY,
            secs => Duration::from_secs(secs) + timer::REFRESH_LAG,
        }
    }

    async fn dial(&self, request: DialRequest) -> DialResult {
        let call_id = request.call_id.as_str();
        let ua = match self.ua().await {
            Ok(ua) => ua.clone(),
            Err(e) => {
                tracing::error!(call_id, error = %e, "sip: the user agent cannot start");
                return DialResult::Failed(local_failure());
            }
        };
        let socket = match self.ports.bind(ua.media_bind_ip).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!(call_id, error = %e, "sip: no free RTP port");
                return DialResult::Failed(local_failure());
            }
        };
        let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
        let s = &self.settings;
        let local = signalling::local_sdp(ua.advertised_ip, rtp_port, &s.codecs, s.telephone_event).render();
        let number = format!("{}{}", s.dial_prefix, request.phone.as_str());
        let mut session_expires = s.session_expires_secs;
        let mut sip_call_id: Option<String> = None;
        let mut retried = false;
        // Key presses, by RTP and by SIP INFO, on one channel the session reads.
        let (keys, keys_rx) = mpsc::channel(KEY_BACKLOG);
        // At most two INVITEs: the second when the first got 422 (RFC 4028 §7.4).
        let (dialog, response, ended_tx, ended_rx, remote, events_timer) = loop {
            let headers = if session_expires == 0 {
                Vec::new()
            } else {
                timer::invite_headers(session_expires, session_expires.max(timer::MIN_SE))
            };
            let mut option = match ua.invite(&number, &self.caller_id(), local.clone(), call_id, headers) {
                Ok(option) => option,
                Err(e) => {
                    tracing::error!(call_id, error = %e, "sip: cannot build the INVITE");
                    return DialResult::Failed(HangupCause::from_sip(484));
                }
            };
            // A retry is the same call (RFC 3261 §8.1.3.5): same Call-ID, higher CSeq.
            if let Some(id) = &sip_call_id {
                option.call_id = Some(id.clone());
            }
            let retry_call_id = option.call_id.clone();

            let (state_tx, state_rx) = ua.layer.new_dialog_state_channel();
            let (ended_tx, ended_rx) = watch::channel(None);
            let remote = Arc::new(Mutex::new(None));
            let events_timer = Arc::new(std::sync::OnceLock::new());
            let events = DialogEvents {
                layer: ua.layer.clone(),
                call_id: request.call_id.clone(),
                local_sdp: local.clone(),
                codecs: s.codecs.clone(),
                remote: remote.clone(),
                ended: ended_tx.clone(),
                timer: events_timer.clone(),
                keys: keys.clone(),
            };
            tokio::spawn(events.run(state_rx));

            tracing::debug!(call_id, number, session_expires, "sip: INVITE");
            // Dropping the INVITE's future (the ring timeout here, or the dialer giving up on
            // the call) makes rsipstack CANCEL it.
            let answer =
                tokio::time::timeout(request.ring_timeout, ua.layer.do_invite(option, state_tx)).await;
            let (dialog, response) = match answer {
                Err(_) => {
                    tracing::debug!(call_id, "sip: ring timeout, CANCEL");
                    return DialResult::Failed(HangupCause::no_answer());
                }
                Ok(Err(e)) => {
                    tracing::warn!(call_id, error = %e, "sip: INVITE failed");
                    return DialResult::Failed(local_failure());
                }
                // The transaction timed out (timer B): RFC 3261 treats it as a 408.
                Ok(Ok((_, None))) => return DialResult::Failed(HangupCause::from_sip(408)),
                Ok(Ok((dialog, Some(response)))) => (dialog, response),
            };
            let too_small = response.status_code.code() == 422 && !retried && session_expires != 0;
            if let Some(min_se) = timer::min_se_of(&response).filter(|&m| too_small && m > session_expires) {
                if min_se > s.session_expires_secs {
                    tracing::warn!(
                        call_id,
                        min_se,
                        "sip: the trunk's Min-SE is above sip.session_expires_secs, so this call's far-end \
                         timer outlasts what the lease counts on; set sip.session_expires_secs to at least it"
                    );
                }
                session_expires = min_se;
                sip_call_id = retry_call_id;
                retried = true;
                continue;
            }
            break (dialog, response, ended_tx, ended_rx, remote, events_timer);
        };
        let code = response.status_code.code();
        if !(200..300).contains(&code) {
            tracing::debug!(call_id, code, "sip: not answered");
            return DialResult::Failed(HangupCause::from_sip(code));
        }
        let answered_at = tokio::time::Instant::now();
        let media = match sdp::parse_remote(&String::from_utf8_lossy(&response.body), &s.codecs) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: unusable SDP answer; hanging up");
                tokio::spawn(async move {
                    let _ = dialog.bye().await;
                });
                return DialResult::Failed(HangupCause::from_sip(488));
            }
        };
        tracing::debug!(call_id, to = %media.addr, codec = ?media.codec, "sip: answered");
        *remote.lock().expect("remote lock") = Some(media);
        let recorder = Recorder::new(request.recording.as_deref(), self.recording_limit);
        let timeout = (s.rtp_timeout_secs > 0)
            .then(|| RtpTimeout { after: Duration::from_secs(s.rtp_timeout_secs), ended: ended_tx.clone() });
        let media = match Media::start(socket, remote, recorder, (keys, keys_rx), timeout) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: cannot start the call's media; hanging up");
                tokio::spawn(async move {
                    let _ = dialog.bye().await;
                });
                return DialResult::Failed(HangupCause::from_sip(500));
            }
        };
        let timer = match timer::negotiated(&response) {
            Some(negotiated) if session_expires != 0 => {
                let dialog = timer::SipDialog { dialog: dialog.clone(), local_sdp: local, ended: ended_tx };
                let timer = timer::SessionTimer::new(
                    request.call_id.clone(),
                    Arc::new(dialog),
                    negotiated,
                    Duration::from_secs(s.session_expires_secs),
                    answered_at,
                );
                tracing::debug!(call_id, ?negotiated, "sip: session timer");
                let _ = events_timer.set(timer.clone());
                if !timer.we_refresh() {
                    tokio::spawn(timer.clone().expire_unless_refreshed(ended_rx.clone()));
                }
                Some(timer)
            }
            _ => {
                if session_expires != 0 {
                    tracing::debug!(
                        call_id,
                        "sip: the trunk does not do session timers (no Session-Expires in its 2xx): \
                         nothing ends this call at the far end if this node dies"
                    );
                }
                None
            }
        };
        let session =
            SipSession::new(request.call_id, dialog, media, ended_rx, self.engines.clone(), answered_at)
                .with_timer(timer);
        DialResult::Answered(Box::new(session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::asr::AsrSettings;
    use crate::telephony::tts::Synthetic;

    #[test]
    fn the_defaults_are_valid_once_a_trunk_is_set() {
        let mut s = SipSettings::default();
        assert!(s.validate().unwrap_err().contains("sip.trunk"));
        s.trunk = "sip.example.com".into();
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn bad_settings_are_named() {
        let base = SipSettings { trunk: "10.0.0.1:5060".into(), ..SipSettings::default() };
        let cases: [(SipSettings, &str); 4] = [
            (SipSettings { bind: "nowhere".into(), ..base.clone() }, "sip.bind"),
            (SipSettings { codecs: vec![], ..base.clone() }, "sip.codecs"),
            (SipSettings { rtp_port_min: 3000, rtp_port_max: 2000, ..base.clone() }, "sip.rtp_port_max"),
            (SipSettings { external_ip: "a.b".into(), ..base.clone() }, "sip.external_ip"),
        ];
        for (s, key) in cases {
            assert!(s.validate().unwrap_err().contains(key), "{key}");
        }
    }

    #[test]
    fn caller_ids_rotate_call_by_call() {
        let carrier_with = |s: &SipSettings| {
            let max_call = Duration::from_secs(300);
            SipCarrier::new(s, max_call, Arc::new(Synthetic), Ear::new(&AsrSettings::default(), None))
        };
        let mut settings =
            SipSettings { caller_ids: vec!["1001".into(), "1002".into()], ..Default::default() };
        let carrier = carrier_with(&settings);
        let ids: Vec<String> = (0..3).map(|_| carrier.caller_id()).collect();
        assert_eq!(ids, ["1001", "1002", "1001"]);

        settings.caller_ids.clear();
        settings.username = "trunkuser".into();
        let carrier = carrier_with(&settings);
        assert_eq!(carrier.caller_id(), "trunkuser");
    }
}
