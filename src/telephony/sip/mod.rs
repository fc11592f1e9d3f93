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
//! - `trunks`: several trunks: routing by prefix and weight, caps, failover, health
//! - `registration`: REGISTER for the trunks that want it
//! - `srtp`: SRTP media keyed by SDES

pub mod g711;
mod inbound;
mod pacer;
pub mod recorder;
pub mod registration;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod signalling;
pub mod srtp;
pub mod timer;
pub mod trunks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, mpsc, watch};

use self::g711::Codec;
use self::recorder::Recorder;
use self::rtp::{KEY_BACKLOG, Media, PacketPath, PortRange, RtpTimeout};
use self::session::{Engines, SipSession};
use self::signalling::{DialogEvents, Ua, UaConfig};
use self::srtp::{SdesKey, Srtp, SrtpPolicy};
use self::trunks::{NoTrunk, Trunk, TrunkOutcome, TrunkSettings, Trunks};
use super::hearing::Ear;
use super::tts::{Tts, TtsEngine};
use super::{Carrier, DialRequest, DialResult, ExtensionRequest, IncomingCall};
use crate::domain::HangupCause;

/// `[sip]`: the trunks, where we listen, and how we speak and hear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSettings {
    /// The trunks calls go to (`[[sip.trunks]]`), each with its address, credentials,
    /// caller ids, prefixes, weight and caps.
    pub trunks: Vec<TrunkSettings>,
    /// A trunk failing this many INVITEs in a row (5xx, 408, no answer at all,
    /// unreachable) is taken out of rotation until it answers OPTIONS; 0 = never.
    pub out_of_rotation_after: u32,
    /// How often a trunk out of rotation is sent OPTIONS.
    pub probe_interval_secs: u64,
    /// An INVITE the trunk does not answer at all (not even 100 Trying) this long is the
    /// trunk's failure (408): the call goes on through the next trunk.
    pub failover_after_secs: u64,
    /// Deprecated, the one-trunk keys: `[[sip.trunks]]`'s `address`, `transport`, `domain`,
    /// `username`, `password`, `caller_ids`, `dial_prefix`, which they stand for when no
    /// `[[sip.trunks]]` is set.
    pub trunk: String,
    pub transport: SipTransport,
    pub domain: String,
    pub username: String,
    pub password: String,
    pub caller_ids: Vec<String>,
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
    /// Symmetric RTP: send to where the far end's RTP comes from rather than to the address
    /// its SDP names (which behind NAT may be a private one).
    pub symmetric_rtp: bool,
    /// TLS trunks: the CA certificates (PEM file) a trunk's certificate must chain to;
    /// empty = the system's roots.
    pub tls_ca_file: String,
    /// TLS trunks: our client certificate and its key (PEM files), for a trunk that asks
    /// for one; empty = none.
    pub tls_client_cert_file: String,
    pub tls_client_key_file: String,
    /// An OPTIONS to every trunk this often keeps the signalling flow (and a NAT binding on
    /// the way) open; 0 = none. The user agent then starts with the server.
    pub keepalive_secs: u64,
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            trunks: Vec::new(),
            out_of_rotation_after: 3,
            probe_interval_secs: 30,
            failover_after_secs: 5,
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
            symmetric_rtp: true,
            keepalive_secs: 0,
            tls_ca_file: String::new(),
            tls_client_cert_file: String::new(),
            tls_client_key_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2): the trunk's certificate is verified against
    /// `sip.tls_ca_file`, or the system's roots.
    Tls,
}

impl SipTransport {
    /// The `;transport=` URI parameter it takes ("" for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            SipTransport::Udp => "",
            SipTransport::Tcp => ";transport=tcp",
            SipTransport::Tls => ";transport=tls",
        }
    }
}

impl SipSettings {
    /// The trunks in use: `[[sip.trunks]]`, or the one the deprecated one-trunk keys describe.
    pub fn trunk_list(&self) -> Vec<TrunkSettings> {
        if !self.trunks.is_empty() || self.trunk.is_empty() {
            return self.trunks.clone();
        }
        vec![TrunkSettings {
            address: self.trunk.clone(),
            transport: self.transport,
            domain: self.domain.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            caller_ids: self.caller_ids.clone(),
            dial_prefix: self.dial_prefix.clone(),
            ..TrunkSettings::default()
        }]
    }

    /// The deprecated one-trunk keys set (to other than their defaults).
    pub fn one_trunk_keys_set(&self) -> Vec<&'static str> {
        let d = SipSettings::default();
        [
            ("sip.trunk", self.trunk != d.trunk),
            ("sip.transport", self.transport != d.transport),
            ("sip.domain", self.domain != d.domain),
            ("sip.username", self.username != d.username),
            ("sip.password", self.password != d.password),
            ("sip.caller_ids", self.caller_ids != d.caller_ids),
            ("sip.dial_prefix", self.dial_prefix != d.dial_prefix),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// What the types do not check; only asked when `dialer.carrier = "sip"`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(key) = self.one_trunk_keys_set().first().filter(|_| !self.trunks.is_empty()) {
            return Err(format!(
                "{key} and [[sip.trunks]] are both set: describe every trunk in [[sip.trunks]]"
            ));
        }
        let trunks = self.trunk_list();
        if trunks.is_empty() {
            return Err(
                "no SIP trunk: set [[sip.trunks]] (address = \"host:port\" of the trunk) when dialer.carrier = \"sip\""
                    .into(),
            );
        }
        for (i, trunk) in trunks.iter().enumerate() {
            let key = if self.trunks.is_empty() { "sip".to_string() } else { format!("sip.trunks[{i}]") };
            // The deprecated key is `sip.trunk`, not `sip.address`.
            trunk.validate(&key).map_err(|e| {
                if self.trunks.is_empty() { e.replace("sip.address", "sip.trunk") } else { e }
            })?;
        }
        let mut names: Vec<&str> = trunks.iter().map(TrunkSettings::label).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("sip.trunks: two trunks are named `{}`; give each its own name", twice[0]));
        }
        if self.probe_interval_secs == 0 || self.probe_interval_secs > 3600 {
            return Err("sip.probe_interval_secs must be 1…3600".into());
        }
        if self.tls_client_cert_file.is_empty() != self.tls_client_key_file.is_empty() {
            return Err(
                "sip.tls_client_cert_file and sip.tls_client_key_file go together: set both or neither"
                    .into(),
            );
        }
        if self.keepalive_secs > 3600 {
            return Err("sip.keepalive_secs must be 0 (none) up to 3600".into());
        }
        if self.failover_after_secs == 0 || self.failover_after_secs > 32 {
            return Err("sip.failover_after_secs must be 1…32 (RFC 3261's INVITE timeout)".into());
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

/// Places calls through SIP trunks. The user agent starts with the first call. A clone
/// is the same carrier (its sessions hold one, to place a transfer's second leg).
#[derive(Clone)]
pub struct SipCarrier {
    settings: Arc<SipSettings>,
    trunks: Arc<Trunks>,
    ua: Arc<OnceCell<Arc<Ua>>>,
    ports: Arc<PortRange>,
    engines: Engines,
    /// Most samples a recording channel keeps (the longest call, and some).
    recording_limit: usize,
    /// `inbound.allow`: where calls to us are taken from (empty: the trunks' addresses).
    allow: Vec<ipnet::IpNet>,
    /// Where the user agent hands calls to us, once `incoming` is asked for.
    invites: signalling::Invites,
}

/// One call to place: the first leg (the callee, from `DialRequest`) or a transfer's second.
struct Leg {
    call_id: String,
    /// Dialled through a trunk, after its `dial_prefix`.
    number: String,
    ring_timeout: Duration,
    recording: Option<std::path::PathBuf>,
    /// The RFC 4028 interval offered; 0 = none.
    session_expires: u64,
    /// The caller id to send; `None`: the trunk's.
    caller_id: Option<String>,
}

/// What became of one INVITE through one trunk.
enum Attempt {
    Answered(Answered),
    /// A final failure, and what it says about the trunk.
    Failed(HangupCause, TrunkOutcome),
}

/// An answered INVITE and what follows its dialog.
struct Answered {
    dialog: rsipstack::dialog::invite_dialog::InviteDialog,
    response: rsipstack::rsip::Response,
    ended_tx: watch::Sender<Option<HangupCause>>,
    ended_rx: watch::Receiver<Option<HangupCause>>,
    remote: Arc<Mutex<Option<sdp::RemoteMedia>>>,
    events_timer: Arc<std::sync::OnceLock<timer::SessionTimer>>,
    session_expires: u64,
    /// Our SDP, and the SRTP key in it.
    local: String,
    key: Option<SdesKey>,
}

impl SipCarrier {
    /// The carrier with its voice and its ear (`telephony::tts::voice`, `Ear::new`, or
    /// engines of your own); `max_call` is `dialer.max_call_secs`.
    pub fn new(s: &SipSettings, max_call: Duration, tts: Arc<dyn Tts>, ear: Ear) -> SipCarrier {
        let longest = max_call + Duration::from_secs(60);
        trunks::describe_metrics();
        let carrier = SipCarrier {
            settings: Arc::new(s.clone()),
            trunks: Arc::new(Trunks::new(s.trunk_list())),
            ua: Arc::new(OnceCell::new()),
            ports: Arc::new(PortRange::new(s.rtp_port_min, s.rtp_port_max)),
            engines: Engines { tts, ear },
            recording_limit: crate::recording::samples_in(longest),
            allow: Vec::new(),
            invites: Arc::default(),
        };
        // A trunk that registers does so when the server starts, not with the first call;
        // keep-alives too start with the server.
        let early = s.keepalive_secs > 0 || carrier.trunks.all.iter().any(|t| t.settings.register);
        if let Some(runtime) = early.then(tokio::runtime::Handle::try_current).and_then(Result::ok) {
            let (ua, settings, trunks, invites) = (
                carrier.ua.clone(),
                carrier.settings.clone(),
                carrier.trunks.clone(),
                carrier.invites.clone(),
            );
            runtime.spawn(async move {
                if let Err(e) = start_ua(&ua, &settings, &trunks, &invites).await {
                    tracing::error!(error = %e, "sip: the user agent cannot start");
                }
            });
        }
        carrier
    }

    async fn ua(&self) -> Result<&Arc<Ua>, String> {
        start_ua(&self.ua, &self.settings, &self.trunks, &self.invites).await
    }

    /// Takes calls to us from `allow` (addresses and networks; empty: the trunks' own
    /// addresses) once `Carrier::incoming` is asked for.
    pub fn taking_calls_from(mut self, allow: Vec<ipnet::IpNet>) -> SipCarrier {
        self.allow = allow;
        self
    }

    /// One INVITE through `trunk` (two when the first gets 422: RFC 4028 §7.4), until
    /// `deadline` (the ring timeout).
    async fn attempt(
        &self,
        ua: &Arc<Ua>,
        trunk: &Trunk,
        leg: &Leg,
        rtp_port: u16,
        keys: &mpsc::Sender<char>,
        deadline: tokio::time::Instant,
    ) -> Attempt {
        let call_id = leg.call_id.as_str();
        let s = &self.settings;
        // Our SRTP key, offered when the trunk's media may be SRTP: fresh for each INVITE.
        let key = (trunk.settings.srtp != SrtpPolicy::Off).then(SdesKey::random);
        let crypto = key.clone().map(|k| (k, trunk.settings.srtp == SrtpPolicy::Required));
        let local =
            signalling::local_sdp(ua.advertised_ip, rtp_port, &s.codecs, s.telephone_event, crypto).render();
        let local = local.as_str();
        let number = format!("{}{}", trunk.settings.dial_prefix, leg.number);
        let caller_id = leg.caller_id.clone().unwrap_or_else(|| trunk.caller_id());
        if let Err(e) = ua.connect(trunk).await {
            tracing::error!(call_id, trunk = %trunk.name, transport = ?trunk.settings.transport, error = %e, "sip: cannot connect to the trunk");
            trunk.attempted();
            return Attempt::Failed(local_failure(), TrunkOutcome::Failed);
        }
        let mut session_expires = leg.session_expires;
        let mut sip_call_id: Option<String> = None;
        let mut retried = false;
        loop {
            let headers = if session_expires == 0 {
                Vec::new()
            } else {
                timer::invite_headers(session_expires, session_expires.max(timer::MIN_SE))
            };
            let mut option = match ua.invite(trunk, &number, &caller_id, local.to_string(), call_id, headers)
            {
                Ok(option) => option,
                Err(e) => {
                    tracing::error!(call_id, trunk = %trunk.name, error = %e, "sip: cannot build the INVITE");
                    return Attempt::Failed(HangupCause::from_sip(484), TrunkOutcome::Worked);
                }
            };
            // A retry is the same call (RFC 3261 §8.1.3.5): same Call-ID, higher CSeq.
            if let Some(id) = &sip_call_id {
                option.call_id = Some(id.clone());
            }
            let retry_call_id = option.call_id.clone();

            let (state_tx, state_rx) = ua.layer.new_dialog_state_channel();
            let (ended_tx, ended_rx) = watch::channel(None);
            let (responded_tx, mut responded) = watch::channel(false);
            let remote = Arc::new(Mutex::new(None));
            let events_timer = Arc::new(std::sync::OnceLock::new());
            let events = DialogEvents {
                layer: ua.layer.clone(),
                call_id: leg.call_id.clone(),
                local_sdp: Arc::new(local.to_string().into()),
                codecs: s.codecs.clone(),
                remote: remote.clone(),
                ended: ended_tx.clone(),
                timer: events_timer.clone(),
                keys: keys.clone(),
                responded: responded_tx,
                confirmed: watch::channel(false).0,
            };
            tokio::spawn(events.run(state_rx));

            tracing::debug!(call_id, trunk = %trunk.name, number, session_expires, "sip: INVITE");
            trunk.attempted();
            let failover_after = Duration::from_secs(s.failover_after_secs);
            // Resolves only if the trunk says nothing at all (not even 100 Trying) in time.
            let silent = async {
                if tokio::time::timeout(failover_after, responded.wait_for(|r| *r)).await.is_ok() {
                    std::future::pending::<()>().await;
                }
            };
            // Dropping the INVITE's future (the ring timeout here, a silent trunk, or the
            // dialer giving up on the call) makes rsipstack CANCEL it.
            let (dialog, response) = tokio::select! {
                answer = ua.layer.do_invite(option, state_tx) => match answer {
                    Err(e) => {
                        tracing::warn!(call_id, trunk = %trunk.name, error = %e, "sip: INVITE failed");
                        return Attempt::Failed(local_failure(), TrunkOutcome::Failed);
                    }
                    // The transaction timed out (timer B): RFC 3261 treats it as a 408.
                    Ok((_, None)) => return Attempt::Failed(HangupCause::from_sip(408), TrunkOutcome::Failed),
                    Ok((dialog, Some(response))) => (dialog, response),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(call_id, "sip: ring timeout, CANCEL");
                    return Attempt::Failed(HangupCause::no_answer(), TrunkOutcome::Worked);
                }
                _ = silent => {
                    tracing::warn!(call_id, trunk = %trunk.name, ?failover_after, "sip: the trunk does not answer the INVITE");
                    return Attempt::Failed(HangupCause::from_sip(408), TrunkOutcome::Failed);
                }
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
            let code = response.status_code.code();
            if !(200..300).contains(&code) {
                tracing::debug!(call_id, trunk = %trunk.name, code, "sip: not answered");
                return Attempt::Failed(HangupCause::from_sip(code), TrunkOutcome::of_status(code));
            }
            return Attempt::Answered(Answered {
                dialog,
                response,
                ended_tx,
                ended_rx,
                remote,
                events_timer,
                session_expires,
                local: local.to_string(),
                key,
            });
        }
    }

    /// Takes `outcome` into `trunk`'s health; one taken out of rotation is sent OPTIONS
    /// every `sip.probe_interval_secs` until it answers 2xx.
    fn note_outcome(&self, ua: &Arc<Ua>, trunk: &Arc<Trunk>, outcome: TrunkOutcome) {
        if !trunk.outcome(outcome, self.settings.out_of_rotation_after) {
            return;
        }
        let (ua, trunk) = (Arc::downgrade(ua), trunk.clone());
        let every = Duration::from_secs(self.settings.probe_interval_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // The carrier is gone: nothing to probe for.
                let Some(ua) = ua.upgrade() else { return };
                match ua.options(&trunk).await {
                    Ok(code) if (200..300).contains(&code) => {
                        trunk.back_in_rotation();
                        return;
                    }
                    Ok(code) => tracing::debug!(trunk = %trunk.name, code, "sip: trunk probe: still failing"),
                    Err(e) => tracing::debug!(trunk = %trunk.name, error = %e, "sip: trunk probe: no answer"),
                }
            }
        });
    }
}

/// The user agent, started by the first to ask.
async fn start_ua<'a>(
    ua: &'a OnceCell<Arc<Ua>>,
    s: &SipSettings,
    trunks: &Trunks,
    invites: &signalling::Invites,
) -> Result<&'a Arc<Ua>, String> {
    ua.get_or_try_init(|| async {
        let config = UaConfig {
            bind: &s.bind,
            external_ip: &s.external_ip,
            trunks: &trunks.all,
            tls_ca_file: &s.tls_ca_file,
            tls_client_cert_file: &s.tls_client_cert_file,
            tls_client_key_file: &s.tls_client_key_file,
            invites: invites.clone(),
        };
        let ua = Arc::new(Ua::start(&config).await?);
        if s.keepalive_secs > 0 {
            for trunk in &trunks.all {
                tokio::spawn(keep_alive(
                    Arc::downgrade(&ua),
                    trunk.clone(),
                    Duration::from_secs(s.keepalive_secs),
                ));
            }
        }
        Ok(ua)
    })
    .await
}

/// OPTIONS to `trunk` every `every`, for as long as the user agent lives: the signalling
/// flow, and any NAT binding on its way, stays open.
async fn keep_alive(ua: std::sync::Weak<Ua>, trunk: Arc<Trunk>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(ua) = ua.upgrade() else { return };
        match ua.options(&trunk).await {
            Ok(code) => tracing::trace!(trunk = %trunk.name, code, "sip: keep-alive answered"),
            Err(e) => tracing::debug!(trunk = %trunk.name, error = %e, "sip: keep-alive unanswered"),
        }
    }
}

/// No SIP answer to go by (a local error, the trunk unreachable): RFC 3261 §8.1.3.1
/// treats a transport failure as a 503.
fn local_failure() -> HangupCause {
    HangupCause::from_sip(503)
}

/// An answered call that cannot go on (its answer unusable, its media not started): BYE
/// on its way, the call failed with `code`.
fn hang_up_answered(dialog: rsipstack::dialog::invite_dialog::InviteDialog, code: u16) -> HangupCause {
    tokio::spawn(async move {
        let _ = dialog.bye().await;
    });
    HangupCause::from_sip(code)
}

impl SipCarrier {
    async fn place(&self, trunks: &Trunks, leg: Leg) -> Result<SipSession, HangupCause> {
        let call_id = leg.call_id.as_str();
        let ua = match self.ua().await {
            Ok(ua) => ua.clone(),
            Err(e) => {
                tracing::error!(call_id, error = %e, "sip: the user agent cannot start");
                return Err(local_failure());
            }
        };
        let route = trunks.route(&leg.number);
        let socket = match self.ports.bind(ua.media_bind_ip).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!(call_id, error = %e, "sip: no free RTP port");
                return Err(local_failure());
            }
        };
        let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
        let s = &self.settings;
        // Key presses, by RTP and by SIP INFO, on one channel the session reads.
        let (keys, keys_rx) = mpsc::channel(KEY_BACKLOG);
        let deadline = tokio::time::Instant::now() + leg.ring_timeout;
        let mut next = 0;
        let mut last_failure = None;
        let (slot, answered) = loop {
            let taken = tokio::time::timeout_at(deadline, trunks.take(&route, next)).await;
            let (slot, at) = match taken {
                Ok(Ok(taken)) => taken,
                Ok(Err(NoTrunk::NoRoute)) => {
                    tracing::error!(call_id, "sip: no trunk takes this number (their prefixes)");
                    return Err(HangupCause::from_sip(404));
                }
                Ok(Err(NoTrunk::NotRegistered(trunk, why))) => {
                    tracing::warn!(call_id, trunk, why, "sip: the trunk is not registered; the call fails");
                    return Err(last_failure.unwrap_or_else(local_failure));
                }
                Ok(Err(NoTrunk::NoneLeft)) => {
                    if last_failure.is_none() {
                        tracing::warn!(call_id, "sip: every trunk for this number is out of rotation");
                    }
                    return Err(last_failure.unwrap_or_else(local_failure));
                }
                Err(_) => {
                    tracing::warn!(
                        call_id,
                        "sip: every trunk for this number stayed full for the ring timeout"
                    );
                    return Err(last_failure.unwrap_or_else(local_failure));
                }
            };
            next = at + 1;
            let trunk = slot.trunk.clone();
            match self.attempt(&ua, &trunk, &leg, rtp_port, &keys, deadline).await {
                Attempt::Answered(answered) => {
                    self.note_outcome(&ua, &trunk, TrunkOutcome::Answered);
                    break (slot, answered);
                }
                Attempt::Failed(cause, outcome) => {
                    self.note_outcome(&ua, &trunk, outcome);
                    if outcome != TrunkOutcome::Failed {
                        return Err(cause);
                    }
                    tracing::info!(call_id, trunk = %trunk.name, %cause, "sip: the trunk failed; trying the next");
                    last_failure = Some(cause);
                }
            }
        };
        let Answered {
            dialog,
            response,
            ended_tx,
            ended_rx,
            remote,
            events_timer,
            session_expires,
            local,
            key,
        } = answered;
        let answered_at = tokio::time::Instant::now();
        let media = match sdp::parse_remote(&String::from_utf8_lossy(&response.body), &s.codecs) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: unusable SDP answer; hanging up");
                return Err(hang_up_answered(dialog, 488));
            }
        };
        let srtp = match (&key, &media.crypto) {
            (Some(ours), Some(theirs)) => Some(Srtp::new(ours, theirs)),
            (_, None) if slot.trunk.settings.srtp == SrtpPolicy::Required => {
                tracing::warn!(call_id, trunk = %slot.trunk.name, "sip: the answer has no SRTP key, and the trunk's srtp is \"required\": hanging up");
                return Err(hang_up_answered(dialog, 488));
            }
            _ => None,
        };
        tracing::debug!(call_id, trunk = %slot.trunk.name, to = %media.addr, codec = ?media.codec, srtp = srtp.is_some(), "sip: answered");
        *remote.lock().expect("remote lock") = Some(media);
        let recorder = Recorder::new(leg.recording.as_deref(), self.recording_limit);
        let timeout = (s.rtp_timeout_secs > 0)
            .then(|| RtpTimeout { after: Duration::from_secs(s.rtp_timeout_secs), ended: ended_tx.clone() });
        let path = PacketPath { symmetric: s.symmetric_rtp, srtp };
        let media = match Media::start(socket, remote, recorder, (keys, keys_rx), timeout, path) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: cannot start the call's media; hanging up");
                return Err(hang_up_answered(dialog, 500));
            }
        };
        let timer = match timer::negotiated(&response) {
            Some(negotiated) if session_expires != 0 => {
                let dialog = timer::SipDialog { dialog: dialog.clone(), local_sdp: local, ended: ended_tx };
                let timer = timer::SessionTimer::new(
                    leg.call_id.clone(),
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
            SipSession::new(leg.call_id, dialog, media, ended_rx, self.engines.clone(), answered_at)
                .with_timer(timer)
                .with_trunk(slot);
        Ok(session.with_legs(self.clone()))
    }

    /// The second leg of a transfer: to a SIP URI straight (`sip:8001@pbx.example.com`),
    /// or to an extension/number through the trunks. It is not recorded (the first leg's
    /// recording carries both sides) and offers no session timer (see docs/telephony.md).
    pub(super) async fn transfer_leg(
        &self,
        call_id: &str,
        to: &str,
        ring_timeout: Duration,
    ) -> Result<SipSession, HangupCause> {
        self.person(call_id, to, ring_timeout, None).await
    }

    /// A call to a person at `to` (see `transfer_leg`), recorded at `recording`.
    async fn person(
        &self,
        call_id: &str,
        to: &str,
        ring_timeout: Duration,
        recording: Option<std::path::PathBuf>,
    ) -> Result<SipSession, HangupCause> {
        let leg = |number: &str| Leg {
            call_id: call_id.to_string(),
            number: number.to_string(),
            ring_timeout,
            recording: recording.clone(),
            session_expires: 0,
            caller_id: None,
        };
        match uri_leg(to) {
            Some((user, trunk)) => self.place(&Trunks::new(vec![trunk]), leg(user)).await,
            None => self.place(&self.trunks, leg(to)).await,
        }
    }
}

/// A SIP URI as a one-off trunk: its user part, and the trunk its host names
/// (`sip:8001@10.0.0.5:5080;transport=tcp`); `None` for what is no SIP URI.
fn uri_leg(to: &str) -> Option<(&str, TrunkSettings)> {
    let (tls, rest) = match to.strip_prefix("sips:") {
        Some(rest) => (true, rest),
        None => (false, to.strip_prefix("sip:")?),
    };
    let (user, host) = rest.split_once('@')?;
    let mut parts = host.split(';');
    let address = parts.next()?.to_string();
    let transport = match parts.find_map(|p| p.strip_prefix("transport=")) {
        _ if tls => SipTransport::Tls,
        Some(t) if t.eq_ignore_ascii_case("tcp") => SipTransport::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => SipTransport::Tls,
        _ => SipTransport::Udp,
    };
    let trunk =
        TrunkSettings { name: format!("transfer:{address}"), address, transport, ..TrunkSettings::default() };
    Some((user, trunk))
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

    fn trunk_status(&self) -> Vec<(String, String)> {
        self.trunks.all.iter().map(|t| (t.name.clone(), t.status())).collect()
    }

    /// Starts the user agent now (a trunk must reach it before the first outbound call)
    /// and hands it the INVITEs that come in: see `inbound`.
    fn incoming(&self) -> Option<mpsc::Receiver<IncomingCall>> {
        let (invites, invites_rx) = mpsc::unbounded_channel();
        self.invites.set(invites).ok()?;
        let (calls, calls_rx) = mpsc::channel(16);
        let carrier = self.clone();
        let (ua, settings, trunks, invites) =
            (self.ua.clone(), self.settings.clone(), self.trunks.clone(), self.invites.clone());
        tokio::spawn(async move {
            match start_ua(&ua, &settings, &trunks, &invites).await {
                Ok(ua) => inbound::serve(ua.clone(), carrier, invites_rx, calls).await,
                Err(e) => tracing::error!(error = %e, "sip: the user agent cannot start: no inbound calls"),
            }
        });
        Some(calls_rx)
    }

    /// Un-REGISTERs the trunks that registered.
    async fn shutdown(&self) {
        if let Some(ua) = self.ua.get() {
            futures::future::join_all(ua.registrars.iter().map(|r| r.unregister())).await;
        }
    }

    /// Through the trunks `trunks::Trunks::route` orders for the number: a trunk that fails
    /// (5xx, 408, silent, unreachable) hands the call to the next, all within one attempt
    /// and its ring timeout.
    async fn dial(&self, request: DialRequest) -> DialResult {
        let leg = Leg {
            call_id: request.call_id,
            number: request.phone.as_str().to_string(),
            ring_timeout: request.ring_timeout,
            recording: request.recording,
            session_expires: self.settings.session_expires_secs,
            caller_id: request.caller_id,
        };
        match self.place(&self.trunks, leg).await {
            Ok(session) => DialResult::Answered(Box::new(session)),
            Err(cause) => DialResult::Failed(cause),
        }
    }

    /// The extension's leg, recorded; no session timer (a click-to-call holds no lease).
    async fn dial_extension(&self, request: ExtensionRequest) -> DialResult {
        let ExtensionRequest { call_id, to, ring_timeout, recording } = request;
        match self.person(&call_id, &to, ring_timeout, recording).await {
            Ok(session) => DialResult::Answered(Box::new(session)),
            Err(cause) => DialResult::Failed(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_once_a_trunk_is_set() {
        let mut s = SipSettings::default();
        assert!(s.validate().unwrap_err().contains("[[sip.trunks]]"));
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
        let mut settings = TrunkSettings {
            address: "10.0.0.1".into(),
            caller_ids: vec!["1001".into(), "1002".into()],
            ..Default::default()
        };
        let trunks = Trunks::new(vec![settings.clone()]);
        let ids: Vec<String> = (0..3).map(|_| trunks.all[0].caller_id()).collect();
        assert_eq!(ids, ["1001", "1002", "1001"]);

        settings.caller_ids.clear();
        settings.username = "trunkuser".into();
        assert_eq!(Trunks::new(vec![settings]).all[0].caller_id(), "trunkuser");
    }

    #[test]
    fn the_one_trunk_keys_stand_for_one_trunk_and_cannot_be_mixed_with_trunks() {
        let old = SipSettings {
            trunk: "10.0.0.1:5080".into(),
            username: "alice".into(),
            caller_ids: vec!["1001".into()],
            dial_prefix: "9".into(),
            ..SipSettings::default()
        };
        let list = old.trunk_list();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].address.as_str(), list[0].username.as_str(), list[0].dial_prefix.as_str()),
            ("10.0.0.1:5080", "alice", "9")
        );
        assert_eq!(list[0].caller_ids, ["1001"]);
        let both =
            SipSettings { trunks: vec![TrunkSettings { address: "b".into(), ..Default::default() }], ..old };
        assert!(both.validate().unwrap_err().contains("sip.trunk and [[sip.trunks]]"));
        let twins = SipSettings {
            trunks: vec![
                TrunkSettings { name: "a".into(), address: "b".into(), ..Default::default() },
                TrunkSettings { name: "a".into(), address: "c".into(), ..Default::default() },
            ],
            ..SipSettings::default()
        };
        assert!(twins.validate().unwrap_err().contains("named `a`"));
    }
}
