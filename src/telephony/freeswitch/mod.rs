//! A carrier that places calls through FreeSWITCH, driven over its event socket
//! (mod_event_socket, inbound mode) as the Java system this server replaces did.
//!
//! - **Dial**: `bgapi originate {origination_uuid=<call uuid>,ignore_early_media=true,
//!   originate_timeout=<ring timeout>,park_timeout=<max call + 60 s>:ALLOTTED_TIMEOUT
//!   [,origination_caller_id_number=…]}<dial string> &park()`. (`park_timeout` only ends a
//!   call this server can no longer reach, e.g. after a crash; the dialer's own
//!   `dialer.max_call_secs` hangs up first.)
//!   The channel's uuid is the call's 19-digit uuid, so every event about it is matched by
//!   `Unique-ID` (and the job's result by `Job-UUID`, which is the same id). CHANNEL_ANSWER
//!   answers; a CHANNEL_HANGUP_COMPLETE before it (or an `-ERR` result) fails the dial with
//!   `<Hangup-Cause>:<variable_proto_specific_hangup_cause>`, e.g. `USER_BUSY:sip:486`.
//! - **Record**: `uuid_record <uuid> start <path>` right after the answer, to the anchor
//!   path under `freeswitch.recordings_dir` (the same storage as `recordings.dir`).
//! - **Say**: the `speak` application with `<tts_engine>|<tts_voice>|<text>`, executed with
//!   `sendmsg` (see [`call`]); the line has been spoken when its CHANNEL_EXECUTE_COMPLETE
//!   arrives.
//! - **Listen**: with `freeswitch.audio_listen` set, FreeSWITCH streams the call's audio
//!   to the server (`uuid_audio_stream`/`uuid_audio_fork`, see [`audio`]) and the ear that
//!   SIP calls have hears it: VAD turns, `[asr]`, barge-in (`uuid_break`), latency. Speech
//!   recognised on the FreeSWITCH side (`detect_speech`) arrives as DETECTED_SPEECH events
//!   and is heard too. A key the callee presses arrives as a DTMF event (`DTMF-Digit`) and
//!   is heard as `[按键 1]`.
//! - **Hang up**: `uuid_kill <uuid> <cause>` and the CHANNEL_HANGUP_COMPLETE that follows.
//! - **Inbound**: a call the dialplan parks with `callcenter_inbound=true` (see
//!   docs/telephony.md) is announced by CHANNEL_PARK; the server answers it with
//!   `uuid_answer <uuid>` and it goes on as an outbound call does (record, say, listen,
//!   hang up), or turns it away with `uuid_kill <uuid> <cause>` (USER_BUSY for 486).
//!
//! One connection serves every call; it reconnects by itself (see [`link`]).

mod audio;
mod call;
pub mod esl;
mod link;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use self::audio::AudioModule;
use self::audio::{AudioIn, CallAudio};
use self::esl::Event;
use self::link::{Endpoint, Link, LinkDown, Route, Signal};
use super::hearing::Ear;
use super::{Answer, CallSession, Carrier, DialRequest, DialResult, ExtensionRequest, IncomingCall};
use crate::domain::HangupCause;

/// `[freeswitch]`: where the event socket is and how calls are placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreeswitchSettings {
    /// Event socket address (`event_socket.conf.xml`: listen-ip, listen-port, password).
    pub host: String,
    pub port: u16,
    pub password: String,
    /// What `originate` dials; `{gateway}` and `{phone}` are filled in.
    pub dial_string: String,
    /// The SIP gateway (sofia profile gateway name) that `{gateway}` stands for.
    pub gateway: String,
    /// Caller ID number shown to the callee; empty leaves it to the gateway.
    pub caller_id_number: String,
    /// `recordings.dir` as FreeSWITCH sees it (the same storage, e.g. a shared volume,
    /// maybe mounted elsewhere); empty = the server's `recordings.dir`, made absolute.
    pub recordings_dir: String,
    /// The `speak` application's engine and voice (`speak::<engine>|<voice>|<text>`).
    pub tts_engine: String,
    pub tts_voice: String,
    /// Where the server takes each call's audio, streamed by FreeSWITCH, for `[asr]`
    /// (`ip:port`, e.g. `0.0.0.0:8091`); empty: no stream, and the callee is heard only
    /// through DETECTED_SPEECH events.
    pub audio_listen: String,
    /// The websocket address FreeSWITCH streams to (`ws://callcenter:8091`); empty:
    /// `ws://<audio_listen>` (port 0 there: the port taken).
    pub audio_url: String,
    /// The module that streams: `mod_audio_stream` or `mod_audio_fork`.
    pub audio_module: AudioModule,
}

impl Default for FreeswitchSettings {
    fn default() -> Self {
        FreeswitchSettings {
            host: "127.0.0.1".into(),
            port: 8021,
            password: "ClueCon".into(),
            dial_string: "sofia/gateway/{gateway}/{phone}".into(),
            gateway: "trunk".into(),
            caller_id_number: String::new(),
            recordings_dir: String::new(),
            tts_engine: "tts_commandline".into(),
            tts_voice: "default".into(),
            audio_listen: String::new(),
            audio_url: String::new(),
            audio_module: AudioModule::AudioStream,
        }
    }
}

impl FreeswitchSettings {
    /// What the types do not check; only asked when `dialer.carrier = "freeswitch"`.
    pub fn validate(&self) -> Result<(), String> {
        if self.audio_listen.is_empty() {
            return Ok(());
        }
        let Ok(listen) = self.audio_listen.parse::<SocketAddr>() else {
            return Err(format!("freeswitch.audio_listen `{}` is not ip:port", self.audio_listen));
        };
        if self.audio_url.is_empty() && listen.ip().is_unspecified() {
            return Err(format!(
                "freeswitch.audio_url must be set when freeswitch.audio_listen ({listen}) is on every \
                 address: the ws:// address FreeSWITCH reaches the server at"
            ));
        }
        if !self.audio_url.is_empty()
            && !self.audio_url.starts_with("ws://")
            && !self.audio_url.starts_with("wss://")
        {
            return Err(format!("freeswitch.audio_url `{}` must start with ws:// or wss://", self.audio_url));
        }
        Ok(())
    }

    /// Where FreeSWITCH streams the call's audio, if it does: where we listen, and the
    /// address it reaches us at, unless that is where we listen.
    fn audio(&self) -> Option<(SocketAddr, Option<&str>)> {
        let listen = self.audio_listen.parse().ok()?;
        Some((listen, Some(self.audio_url.as_str()).filter(|url| !url.is_empty())))
    }
}

/// How long after the ring timeout FreeSWITCH may still take to report the outcome of an
/// originate before we give up on it ourselves.
const ORIGINATE_GRACE: Duration = Duration::from_secs(15);
/// After an `-ERR` originate result, how long to wait for the channel's hangup event,
/// which carries the SIP code.
const HANGUP_AFTER_JOB: Duration = Duration::from_secs(2);
/// FreeSWITCH's own limit on a call (`park_timeout`) is the dialer's plus this.
const PARK_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// A clone is the same carrier (its calls hold one, to place a transfer's second leg).
#[derive(Clone)]
pub struct FreeswitchCarrier {
    link: Link,
    plan: Arc<Plan>,
    ear: Ear,
    /// Where calls' audio arrives, when FreeSWITCH streams it.
    audio: Option<Arc<AudioIn>>,
}

/// What every call of this carrier is placed with.
struct Plan {
    dial_string: String,
    gateway: String,
    caller_id_number: Option<String>,
    /// `park_timeout` in seconds: FreeSWITCH hangs up a call still parked after this.
    park_timeout_secs: u64,
    /// The FreeSWITCH-side recordings directory; `None` = the server's, made absolute.
    fs_recordings_dir: Option<String>,
    server_recordings_dir: PathBuf,
    /// `<engine>|<voice>|`, to which the text is appended.
    speak_prefix: String,
}

impl FreeswitchCarrier {
    /// Starts connecting to the event socket in the background (needs a Tokio runtime),
    /// and listens for the calls' audio if `freeswitch.audio_listen` says where.
    /// `recordings_dir` is the server's `recordings.dir`; `max_call` is
    /// `dialer.max_call_secs` (FreeSWITCH ends a call a minute after it by itself); `ear`
    /// hears the streamed audio.
    pub fn new(
        settings: &FreeswitchSettings,
        recordings_dir: &Path,
        max_call: Duration,
        ear: Ear,
    ) -> std::io::Result<FreeswitchCarrier> {
        let s = settings;
        if !s.dial_string.contains("{phone}") {
            tracing::warn!(dial_string = %s.dial_string, "freeswitch.dial_string has no {{phone}}: every call dials the same target");
        }
        if s.dial_string.contains(char::is_whitespace) || s.gateway.contains(char::is_whitespace) {
            tracing::warn!(dial_string = %s.dial_string, gateway = %s.gateway, "freeswitch.dial_string and gateway may not contain spaces: originate would split them");
        }
        if s.recordings_dir.contains(char::is_whitespace) {
            tracing::warn!(recordings_dir = %s.recordings_dir, "freeswitch.recordings_dir contains a space: uuid_record would split the path");
        }
        let caller_id_number = match s.caller_id_number.trim() {
            "" => None,
            cid if cid.chars().all(|c| c.is_ascii_alphanumeric() || "+*#._-".contains(c)) => {
                Some(cid.to_string())
            }
            cid => {
                tracing::error!(
                    caller_id_number = cid,
                    "freeswitch.caller_id_number may only hold digits, letters and + * # . _ -; not sending it"
                );
                None
            }
        };
        let plan = Plan {
            dial_string: s.dial_string.trim().to_string(),
            gateway: s.gateway.trim().to_string(),
            caller_id_number,
            park_timeout_secs: (max_call + PARK_TIMEOUT_MARGIN).as_secs(),
            fs_recordings_dir: Some(s.recordings_dir.trim().trim_end_matches('/').to_string())
                .filter(|d| !d.is_empty()),
            server_recordings_dir: recordings_dir.to_path_buf(),
            speak_prefix: format!("{}|{}|", one_line(&s.tts_engine), one_line(&s.tts_voice)),
        };
        let audio = match s.audio() {
            Some((listen, url)) => Some(Arc::new(AudioIn::bind(listen, url, s.audio_module)?)),
            None => None,
        };
        let link = Link::start(Endpoint { host: s.host.clone(), port: s.port, password: s.password.clone() });
        Ok(FreeswitchCarrier { link, plan: Arc::new(plan), ear, audio })
    }
}

impl Plan {
    /// The `originate` command (without `bgapi`) for one call.
    fn originate(&self, request: &DialRequest) -> String {
        let caller_id = request.caller_id.as_ref().map(|cid| format!("origination_caller_id_number={cid}"));
        let extra: Vec<&str> = caller_id.iter().map(String::as_str).collect();
        self.originate_to(
            &request.call_id,
            &self.target(request.phone.as_str()),
            request.ring_timeout,
            &extra,
        )
    }

    /// Where a number goes: `freeswitch.dial_string` with it.
    fn target(&self, number: &str) -> String {
        self.dial_string.replace("{gateway}", &self.gateway).replace("{phone}", number)
    }

    /// Where a transfer goes: a FreeSWITCH dial string as it is (`user/8001`,
    /// `sofia/internal/8001@pbx`), a SIP URI through the `external` profile, or an
    /// extension/number through `freeswitch.dial_string`.
    fn transfer_target(&self, to: &str) -> String {
        let to = one_line(to);
        if to.contains('/') {
            to
        } else if to.starts_with("sip:") || to.starts_with("sips:") {
            format!("sofia/external/{to}")
        } else {
            self.target(&to)
        }
    }

    /// `originate` of `uuid` to `target`, parked once answered, with `extra` variables.
    fn originate_to(&self, uuid: &str, target: &str, ring_timeout: Duration, extra: &[&str]) -> String {
        let timeout_secs = ring_timeout.as_secs_f64().ceil().max(1.0) as u64;
        let mut vars = vec![
            format!("origination_uuid={uuid}"),
            "ignore_early_media=true".to_string(),
            format!("originate_timeout={timeout_secs}"),
            format!("park_timeout={}:ALLOTTED_TIMEOUT", self.park_timeout_secs),
        ];
        // A campaign's caller id (in `extra`) replaces the configured one.
        let chosen = extra.iter().any(|v| v.starts_with("origination_caller_id_number="));
        if let Some(cid) = self.caller_id_number.as_ref().filter(|_| !chosen) {
            vars.push(format!("origination_caller_id_number={cid}"));
        }
        vars.extend(extra.iter().map(|v| v.to_string()));
        format!("originate {{{}}}{target} &park()", vars.join(","))
    }

    /// Where FreeSWITCH is to write the recording the server expects at `server_path`.
    fn fs_path(&self, server_path: &Path) -> String {
        let slashed = |p: &Path| p.to_string_lossy().replace('\\', "/");
        match (&self.fs_recordings_dir, server_path.strip_prefix(&self.server_recordings_dir)) {
            (Some(dir), Ok(relative)) => format!("{dir}/{}", slashed(relative)),
            _ => slashed(&std::path::absolute(server_path).unwrap_or_else(|_| server_path.to_path_buf())),
        }
    }
}

impl FreeswitchCarrier {
    /// Originates `command` (a channel of `uuid`) and waits for its answer: the channel's
    /// events, and a guard that hangs it up (NORMAL_CLEARING) unless disarmed; or why it
    /// was not answered.
    async fn place(
        &self,
        uuid: &str,
        command: &str,
        ring_timeout: Duration,
    ) -> Result<(Route, DialGuard), HangupCause> {
        let uuid = uuid.to_string();
        if !self.link.wait_up(ring_timeout).await {
            tracing::debug!(call_id = %uuid, "FreeSWITCH is not connected: the call fails for now");
            return Err(temporary_failure());
        }
        // Routed before the originate goes out, so no event about the channel is missed.
        let mut route = self.link.route(&uuid);
        let mut guard =
            DialGuard { link: self.link.clone(), uuid: uuid.clone(), cause: Some("ORIGINATOR_CANCEL") };
        match self.link.bgapi(command, &uuid).await {
            Ok(reply) if reply.starts_with("+OK") => {}
            Ok(reply) => {
                tracing::warn!(call_id = %uuid, %reply, "FreeSWITCH refused the originate");
                guard.cause = None;
                return Err(temporary_failure());
            }
            Err(LinkDown) => return Err(temporary_failure()),
        }
        tracing::debug!(call_id = %uuid, "FreeSWITCH: originating");

        let give_up = Instant::now() + ring_timeout + ORIGINATE_GRACE;
        // An `-ERR` originate result, waiting for the hangup event with the SIP code.
        let mut job_failed: Option<(HangupCause, Instant)> = None;
        loop {
            let until = match &job_failed {
                Some((_, at)) => (*at + HANGUP_AFTER_JOB).min(give_up),
                None => give_up,
            };
            let signal = match tokio::time::timeout_at(until, route.rx.recv()).await {
                Ok(signal) => signal,
                Err(_) => {
                    if let Some((cause, _)) = job_failed {
                        guard.cause = None;
                        return Err(cause);
                    }
                    tracing::warn!(call_id = %uuid, "FreeSWITCH reported no outcome of the originate in time; cancelling it");
                    return Err(unanswered(HangupCause { name: "NO_ANSWER".into(), sip: None }));
                }
            };
            let event = match signal {
                Some(Signal::Event(event)) => event,
                Some(Signal::LinkLost) | None => return Err(temporary_failure()),
            };
            match event.name() {
                "CHANNEL_ANSWER" => break,
                "BACKGROUND_JOB" => {
                    let result = event.body.as_deref().unwrap_or("").trim();
                    if result.starts_with("+OK") {
                        break; // answered, though its CHANNEL_ANSWER has not arrived (yet)
                    }
                    tracing::debug!(call_id = %uuid, result, "FreeSWITCH: originate failed");
                    job_failed = Some((unanswered(job_error_cause(result)), Instant::now()));
                }
                "CHANNEL_HANGUP_COMPLETE" => {
                    guard.cause = None;
                    let cause = unanswered(hangup_cause(&event));
                    tracing::debug!(call_id = %uuid, %cause, "FreeSWITCH: not answered");
                    return Err(cause);
                }
                "CHANNEL_PROGRESS" | "CHANNEL_PROGRESS_MEDIA" => {
                    tracing::debug!(call_id = %uuid, event = event.name(), "FreeSWITCH: ringing");
                }
                _ => {}
            }
        }

        // Answered: from here on, abandoning the call hangs it up normally.
        guard.cause = Some("NORMAL_CLEARING");
        Ok((route, guard))
    }

    /// A transfer's second leg to `to`, parked once answered (see `Plan::transfer_target`),
    /// ended by FreeSWITCH when the call it is bridged to ends.
    async fn transfer_leg(&self, to: &str, ring_timeout: Duration) -> Result<call::Leg, HangupCause> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let command = self.plan.originate_to(
            &uuid,
            &self.plan.transfer_target(to),
            ring_timeout,
            &["hangup_after_bridge=true"],
        );
        let (route, guard) = self.place(&uuid, &command, ring_timeout).await?;
        Ok(call::Leg::new(uuid, route, guard))
    }
}

#[async_trait]
impl Carrier for FreeswitchCarrier {
    async fn dial(&self, request: DialRequest) -> DialResult {
        let command = self.plan.originate(&request);
        self.answered_call(request.call_id, &command, request.ring_timeout, request.recording).await
    }

    /// The extension's leg of a click-to-call: originated as a transfer's person is, then
    /// recorded and spoken to as a callee (the session transfers it to the customer).
    async fn dial_extension(&self, request: ExtensionRequest) -> DialResult {
        let target = self.plan.transfer_target(&request.to);
        let command = self.plan.originate_to(&request.call_id, &target, request.ring_timeout, &[]);
        self.answered_call(request.call_id, &command, request.ring_timeout, request.recording).await
    }

    /// Answers calls the dialplan parks for us (CHANNEL_PARK with `callcenter_inbound=true`).
    fn incoming(&self) -> Option<tokio::sync::mpsc::Receiver<IncomingCall>> {
        let mut parked = self.link.take_parked()?;
        let (calls, calls_rx) = tokio::sync::mpsc::channel(16);
        let carrier = self.clone();
        tokio::spawn(async move {
            while let Some((event, signals)) = parked.recv().await {
                let Some(uuid) = event.unique_id().map(str::to_string) else { continue };
                let header = |name: &str| event.header(name).unwrap_or_default().to_string();
                let call = IncomingCall {
                    caller: header("Caller-Caller-ID-Number"),
                    called: header("Caller-Destination-Number"),
                    // The channel, not its name: that holds the caller's number.
                    source: format!("freeswitch:{uuid}"),
                    answer: Box::new(FsAnswer {
                        route: carrier.link.adopt(&uuid, signals),
                        uuid,
                        carrier: carrier.clone(),
                    }),
                };
                if calls.send(call).await.is_err() {
                    return;
                }
            }
        });
        Some(calls_rx)
    }
}

impl FreeswitchCarrier {
    /// Originates `command` (the channel `uuid`) and, once answered, starts its recording
    /// and its audio stream: the call as a session.
    async fn answered_call(
        &self,
        uuid: String,
        command: &str,
        ring_timeout: Duration,
        recording: Option<PathBuf>,
    ) -> DialResult {
        let (route, mut guard) = match self.place(&uuid, command, ring_timeout).await {
            Ok(placed) => placed,
            Err(cause) => return DialResult::Failed(cause),
        };
        tracing::debug!(call_id = %uuid, "FreeSWITCH: answered");
        let session = self.session(uuid, route, recording).await;
        guard.cause = None;
        DialResult::Answered(Box::new(session))
    }

    /// The call on an answered channel, outbound or inbound: recorded to `recording`,
    /// heard if streamed, and able to place a transfer's second leg.
    async fn session(&self, uuid: String, route: link::Route, recording: Option<PathBuf>) -> call::FsCall {
        let recording = match recording {
            Some(path) => self.start_recording(&uuid, path).await,
            None => None,
        };
        let audio = match &self.audio {
            Some(audio) => self.stream_audio(&uuid, audio).await,
            None => None,
        };
        call::FsCall::new(uuid, self.link.clone(), route, recording, self.plan.speak_prefix.clone())
            .hearing(self.ear.clone(), audio)
            .with_legs(self.clone())
    }

    /// `uuid_record <uuid> start <path>`; the recording if FreeSWITCH started it.
    async fn start_recording(&self, uuid: &str, server_path: PathBuf) -> Option<call::Recording> {
        // FreeSWITCH creates the hour's directory itself (as its own user, so that it can
        // write there).
        let fs_path = self.plan.fs_path(&server_path);
        match self.link.api(&format!("uuid_record {uuid} start {fs_path}")).await {
            Ok(reply) if reply.starts_with("+OK") => Some(call::Recording { server_path, fs_path }),
            Ok(reply) => {
                tracing::warn!(call_id = %uuid, path = %fs_path, %reply, "FreeSWITCH did not start the recording");
                None
            }
            Err(LinkDown) => None,
        }
    }

    /// Asks FreeSWITCH to stream the call's audio to us; the audio if it agreed. Without
    /// it the call is heard through DETECTED_SPEECH events only.
    async fn stream_audio(&self, uuid: &str, audio: &AudioIn) -> Option<CallAudio> {
        let (command, call_audio) = audio.expect(uuid);
        match self.link.api(&command).await {
            Ok(reply) if reply.starts_with("+OK") => Some(call_audio),
            Ok(reply) => {
                tracing::warn!(call_id = %uuid, reply = %reply.trim(), "FreeSWITCH did not stream the call's audio (is the module of freeswitch.audio_module loaded?): the callee is not heard");
                None
            }
            Err(LinkDown) => None,
        }
    }
}

/// A call parked for us, until it is answered or turned away.
struct FsAnswer {
    uuid: String,
    route: link::Route,
    carrier: FreeswitchCarrier,
}

#[async_trait]
impl Answer for FsAnswer {
    /// `uuid_answer`, then the call goes on as an outbound one does. A caller who hung up
    /// meanwhile ends it with their cause.
    async fn answer(
        mut self: Box<Self>,
        call_id: &str,
        recording: Option<PathBuf>,
    ) -> Result<Box<dyn CallSession>, HangupCause> {
        let uuid = self.uuid.clone();
        while let Ok(signal) = self.route.rx.try_recv() {
            match signal {
                Signal::Event(event) if event.name() == "CHANNEL_HANGUP_COMPLETE" => {
                    return Err(unanswered(hangup_cause(&event)));
                }
                Signal::LinkLost => return Err(temporary_failure()),
                Signal::Event(_) => {}
            }
        }
        match self.carrier.link.api(&format!("uuid_answer {uuid}")).await {
            Ok(reply) if reply.starts_with("+OK") => {}
            Ok(reply) => {
                tracing::info!(call_id, channel = %uuid, reply = %reply.trim(), "FreeSWITCH: the inbound call could not be answered");
                return Err(HangupCause::from_sip(487));
            }
            Err(LinkDown) => return Err(temporary_failure()),
        }
        tracing::debug!(call_id, channel = %uuid, "FreeSWITCH: inbound call answered");
        Ok(Box::new(self.carrier.session(uuid, self.route, recording).await))
    }

    /// `uuid_kill` with the Q.850 cause FreeSWITCH sends back as `status`.
    async fn refuse(self: Box<Self>, status: u16) {
        let cause = HangupCause::from_sip(status).name;
        if let Err(LinkDown) = self.carrier.link.api(&format!("uuid_kill {} {cause}", self.uuid)).await {
            tracing::debug!(channel = %self.uuid, "FreeSWITCH: could not turn the inbound call away");
        }
    }
}

/// Hangs the channel up if `dial` is abandoned (dropped) before it returns: with
/// ORIGINATOR_CANCEL while it rings (a SIP CANCEL), NORMAL_CLEARING once answered.
pub(super) struct DialGuard {
    link: Link,
    uuid: String,
    pub(super) cause: Option<&'static str>,
}

impl Drop for DialGuard {
    fn drop(&mut self) {
        if let Some(cause) = self.cause {
            tracing::debug!(call_id = %self.uuid, cause, "abandoning the originate");
            self.link.kill(&self.uuid, cause);
        }
    }
}

/// What FreeSWITCH says ended a channel: the `Hangup-Cause` header's Q.850 name and the
/// SIP code of `variable_proto_specific_hangup_cause` (`sip:486`), `null` without one.
pub fn hangup_cause(event: &Event) -> HangupCause {
    let name = event.header("Hangup-Cause").map(str::trim).filter(|n| !n.is_empty());
    let sip = event
        .header("variable_proto_specific_hangup_cause")
        .and_then(|v| v.trim().strip_prefix("sip:"))
        .and_then(|code| code.parse().ok());
    HangupCause { name: name.unwrap_or("NORMAL_UNSPECIFIED").to_string(), sip }
}

/// The cause in an `-ERR <CAUSE>` originate result; a result that names no cause (an
/// error of the command itself) counts as a temporary failure.
fn job_error_cause(result: &str) -> HangupCause {
    let word = result.strip_prefix("-ERR").unwrap_or(result).split_whitespace().next().unwrap_or("");
    let is_cause =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if is_cause { HangupCause { name: word.to_string(), sip: None } } else { temporary_failure() }
}

/// The cause of a call that was never answered. FreeSWITCH ending the ringing itself
/// (`originate_timeout`) may show as ORIGINATOR_CANCEL, with the 487 that answered its
/// own CANCEL: that is the callee not answering, so it is NO_ANSWER, without the 487.
/// (We cancel only dials nobody waits for any more.)
fn unanswered(cause: HangupCause) -> HangupCause {
    match cause.name.as_str() {
        "ORIGINATOR_CANCEL" => HangupCause { name: "NO_ANSWER".into(), sip: cause.sip.filter(|&c| c != 487) },
        _ => cause,
    }
}

/// Why a call is cut off when FreeSWITCH cannot be reached or the connection drops.
fn temporary_failure() -> HangupCause {
    HangupCause { name: "NORMAL_TEMPORARY_FAILURE".into(), sip: None }
}

/// The text on one line: a line break would end an event-socket command.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Phone;

    fn plan(settings: FreeswitchSettings) -> Plan {
        // `new` starts a connection; the plan alone is what these tests need.
        Plan {
            dial_string: settings.dial_string,
            gateway: settings.gateway,
            caller_id_number: Some(settings.caller_id_number).filter(|c| !c.is_empty()),
            park_timeout_secs: 360,
            fs_recordings_dir: Some(settings.recordings_dir).filter(|d| !d.is_empty()),
            server_recordings_dir: "data/recordings".into(),
            speak_prefix: String::new(),
        }
    }

    fn request(ring_timeout: Duration) -> DialRequest {
        DialRequest {
            call_id: "2508162111590110001".into(),
            phone: Phone::parse("13912345678").unwrap(),
            ring_timeout,
            recording: None,
            caller_id: None,
        }
    }

    fn event(headers: &[(&str, &str)]) -> Event {
        Event { headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), body: None }
    }

    #[test]
    fn the_originate_carries_our_uuid_the_ring_timeout_and_the_filled_dial_string() {
        let p = plan(FreeswitchSettings { caller_id_number: "01088886666".into(), ..Default::default() });
        assert_eq!(
            p.originate(&request(Duration::from_secs(45))),
            "originate {origination_uuid=2508162111590110001,ignore_early_media=true,originate_timeout=45,\
             park_timeout=360:ALLOTTED_TIMEOUT,origination_caller_id_number=01088886666}\
             sofia/gateway/trunk/13912345678 &park()"
        );
        let p = plan(FreeswitchSettings {
            dial_string: "sofia/external/{phone}@10.0.0.1".into(),
            ..Default::default()
        });
        assert_eq!(
            p.originate(&request(Duration::from_millis(1500))),
            "originate {origination_uuid=2508162111590110001,ignore_early_media=true,originate_timeout=2,\
             park_timeout=360:ALLOTTED_TIMEOUT}sofia/external/13912345678@10.0.0.1 &park()"
        );
    }

    #[test]
    fn recordings_go_to_the_same_relative_path_under_the_freeswitch_directory() {
        let p =
            plan(FreeswitchSettings { recordings_dir: "/mnt/cc-recordings".into(), ..Default::default() });
        let server = Path::new("data/recordings/ai_call/2025/08/16/21/2508162111590110001.wav");
        assert_eq!(p.fs_path(server), "/mnt/cc-recordings/ai_call/2025/08/16/21/2508162111590110001.wav");

        let same_storage = plan(FreeswitchSettings::default());
        let fs = same_storage.fs_path(server);
        assert!(
            fs.starts_with('/')
                && fs.ends_with("/data/recordings/ai_call/2025/08/16/21/2508162111590110001.wav"),
            "{fs}"
        );
    }

    #[test]
    fn the_cause_is_the_q850_name_with_the_sip_code_or_null() {
        let busy = event(&[
            ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
            ("Hangup-Cause", "USER_BUSY"),
            ("variable_proto_specific_hangup_cause", "sip:486"),
        ]);
        assert_eq!(hangup_cause(&busy).to_string(), "USER_BUSY:sip:486");
        let killed = event(&[("Hangup-Cause", "MANAGER_REQUEST")]);
        assert_eq!(hangup_cause(&killed).to_string(), "MANAGER_REQUEST:null");
        let odd = event(&[
            ("Hangup-Cause", "NORMAL_CLEARING"),
            ("variable_proto_specific_hangup_cause", "q850:16"),
        ]);
        assert_eq!(hangup_cause(&odd).to_string(), "NORMAL_CLEARING:null");
        assert_eq!(hangup_cause(&event(&[])).to_string(), "NORMAL_UNSPECIFIED:null");
    }

    #[test]
    fn freeswitch_ending_the_ringing_itself_is_no_answer() {
        let cancel = HangupCause { name: "ORIGINATOR_CANCEL".into(), sip: Some(487) };
        assert_eq!(unanswered(cancel).to_string(), "NO_ANSWER:null");
        assert_eq!(unanswered(HangupCause::no_answer()).to_string(), "NO_ANSWER:sip:480");
        assert_eq!(unanswered(HangupCause::user_busy()).to_string(), "USER_BUSY:sip:486");
    }

    #[test]
    fn an_err_originate_result_names_the_cause() {
        assert_eq!(job_error_cause("-ERR USER_BUSY").to_string(), "USER_BUSY:null");
        assert_eq!(job_error_cause("-ERR NO_ROUTE_DESTINATION").to_string(), "NO_ROUTE_DESTINATION:null");
        assert_eq!(
            job_error_cause("-ERR originate Command not found!").to_string(),
            "NORMAL_TEMPORARY_FAILURE:null"
        );
        assert_eq!(job_error_cause("-ERR").to_string(), "NORMAL_TEMPORARY_FAILURE:null");
    }

    #[test]
    fn text_is_put_on_one_line() {
        assert_eq!(one_line("您好，\r\n请问是张三吗？\n"), "您好， 请问是张三吗？");
        assert_eq!(one_line(" a  b "), "a  b");
    }
}
