//! One answered FreeSWITCH call: speaking, listening, and hanging up over the event socket.
//!
//! A line is spoken by executing `speak` with `sendmsg`:
//!
//! ```text
//! sendmsg <uuid>
//! call-command: execute
//! execute-app-name: speak
//! execute-app-arg: <engine>|<voice>|<text>
//! Event-UUID: <uuid>-<n>
//! ```
//!
//! which is what `uuid_broadcast <uuid> speak::<engine>|<voice>|<text> aleg` does, except
//! that `uuid_broadcast` splits its arguments at spaces (mod_commands reads
//! `<uuid> <path> [leg]`), so a line with a space in it would be cut short. The
//! `Event-UUID` comes back as `Application-UUID` on the CHANNEL_EXECUTE_COMPLETE that ends
//! the line, so that event is known to be this line's and no earlier one's.
//!
//! A transfer plays a ringback tone to the callee (`playback` of a `tone_stream`),
//! originates the person's leg parked, and once it answers stops the tone (`uuid_break`)
//! and bridges the two with FreeSWITCH's own `uuid_bridge`: the media flow within
//! FreeSWITCH, and `uuid_record` on the callee's channel goes on recording both sides.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::audio::CallAudio;
use super::esl::Event;
use super::link::{Link, LinkDown, Route, Signal};
use super::{DialGuard, FreeswitchCarrier, hangup_cause, one_line, temporary_failure};
use crate::domain::{HangupCause, now_ms};
use crate::telephony::dtmf;
use crate::telephony::hearing::Ear;
use crate::telephony::latency::CallLatency;
use crate::telephony::vad::Turn;
use crate::telephony::{
    CallEnd, CallSession, HangupReason, Heard, HungUp, KeepAlive, Said, TransferFailed, Transferred,
};

/// Waiting for a spoken line ends after this, plus [`SAY_PER_CHAR`] per character
/// (a TTS engine first synthesises, then speaks at about four characters a second).
const SAY_BASE: Duration = Duration::from_secs(5);
const SAY_PER_CHAR: Duration = Duration::from_millis(400);
/// How long `hang_up` waits for FreeSWITCH to confirm the hangup.
const HANGUP_WAIT: Duration = Duration::from_secs(5);
/// How long a command refused because the channel is gone waits for its hangup event.
const GONE_WAIT: Duration = Duration::from_secs(2);
/// What the callee hears while the person's phone rings: China's ringback tone.
const RINGBACK: &str = "tone_stream://%(1000,4000,450);loops=-1";
/// How long the closed recording may take to appear on the shared storage.
const RECORDING_WAIT: Duration = Duration::from_secs(2);

/// A recording FreeSWITCH was asked to make.
pub(super) struct Recording {
    /// Where the server serves it from.
    pub server_path: PathBuf,
    /// Where FreeSWITCH writes it (the same file on shared storage).
    pub fs_path: String,
}

/// How the channel ended, once it has.
#[derive(Debug, Clone)]
enum Ended {
    /// FreeSWITCH reported the hangup (CHANNEL_HANGUP_COMPLETE) with this cause.
    Hangup(HangupCause),
    /// The event socket connection dropped: the call is lost to us.
    Lost,
}

pub(super) struct FsCall {
    uuid: String,
    link: Link,
    route: Route,
    recording: Option<Recording>,
    speak_prefix: String,
    ended: Option<Ended>,
    /// What the callee said, and the keys they pressed (`[按键 1]`), that no `listen` has
    /// taken yet: a key pressed while a line is spoken answers the next `listen`.
    heard: VecDeque<String>,
    lines: u64,
    /// `hang_up` ran to its end; dropping the call needs no cleanup.
    finished: bool,
    timer: Arc<HangupTimer>,
    /// The ear on the call's streamed audio; `None`: heard through events only.
    hearing: Option<Hearing>,
    latency: CallLatency,
    /// The carrier, for a transfer's second leg.
    legs: Option<FreeswitchCarrier>,
    /// After a transfer: the person's leg, bridged to this call.
    leg: Option<Leg>,
}

/// A transfer's second leg, answered and parked, then bridged to the callee.
pub(super) struct Leg {
    uuid: String,
    route: Route,
    /// Hangs it up if the call is dropped without `hang_up`.
    guard: DialGuard,
    ended: Option<HangupCause>,
}

impl Leg {
    pub(super) fn new(uuid: String, route: Route, guard: DialGuard) -> Leg {
        Leg { uuid, route, guard, ended: None }
    }

    fn absorb(&mut self, signal: Option<Signal>) {
        match signal {
            Some(Signal::Event(event)) if event.name() == "CHANNEL_HANGUP_COMPLETE" => {
                self.ended.get_or_insert_with(|| hangup_cause(&event));
            }
            Some(Signal::Event(_)) => {}
            Some(Signal::LinkLost) | None => {
                self.ended.get_or_insert_with(temporary_failure);
            }
        }
    }

    /// Ends the leg unless the person hung up already.
    async fn hang_up(mut self, link: &Link) {
        self.guard.cause = None;
        if self.ended.is_none() {
            match link.api(&format!("uuid_kill {} NORMAL_CLEARING", self.uuid)).await {
                Ok(reply) if reply.starts_with("+OK") => {}
                Ok(reply) => {
                    tracing::debug!(leg = %self.uuid, %reply, "FreeSWITCH: uuid_kill of the transfer leg")
                }
                Err(LinkDown) => link.kill(&self.uuid, "NORMAL_CLEARING"),
            }
        }
    }
}

/// The call's streamed audio and what hears it.
struct Hearing {
    ear: Ear,
    audio: CallAudio,
    /// The callee's turn that cut the last line short, for `listen` to go on with.
    carried: Option<Turn>,
}

/// FreeSWITCH's own hangup of the channel, scheduled ahead and moved on while this node
/// holds the call's lease: a node that dies or stalls leaves FreeSWITCH to end the call.
///
/// `sched_hangup` cannot be moved on: a second one adds a task, and the first still
/// fires; its tasks are grouped by the channel's uuid, which `sched_del` would take for a
/// task number, since ours are all digits. So the hangup is a `uuid_kill` scheduled with
/// `sched_api` in a group of its own: each renewal schedules the new one, then deletes the
/// one before by its task number, so that there is always one.
pub(super) struct HangupTimer {
    link: Link,
    uuid: String,
    /// The task number of the hangup scheduled last.
    task: tokio::sync::Mutex<Option<u64>>,
}

impl HangupTimer {
    fn group(&self) -> String {
        format!("callcenter-lease-{}", self.uuid)
    }

    /// Deletes the scheduled hangup (the call has ended).
    async fn cancel(&self) {
        if self.task.lock().await.take().is_some() {
            let _ = self.link.api(&format!("sched_del {}", self.group())).await;
        }
    }
}

#[async_trait]
impl KeepAlive for HangupTimer {
    async fn keep_alive(&self, for_: Duration) {
        let mut task = self.task.lock().await;
        // Whole seconds, rounded down: never later than asked.
        let secs = for_.as_secs().max(1);
        let command =
            format!("sched_api +{secs} {} uuid_kill {} RECOVERY_ON_TIMER_EXPIRE", self.group(), self.uuid);
        // A link that is down refuses at once; the next renewal tries again.
        let Ok(reply) = self.link.api(&command).await else { return };
        match reply.trim().strip_prefix("+OK Added: ").and_then(|n| n.parse().ok()) {
            Some(id) => {
                if let Some(old) = task.replace(id) {
                    let _ = self.link.api(&format!("sched_del {old}")).await;
                }
            }
            None => {
                tracing::warn!(call_id = %self.uuid, reply = %reply.trim(), "FreeSWITCH: sched_api refused")
            }
        }
    }
}

impl FsCall {
    pub(super) fn new(
        uuid: String,
        link: Link,
        route: Route,
        recording: Option<Recording>,
        speak_prefix: String,
    ) -> FsCall {
        FsCall {
            route,
            recording,
            speak_prefix,
            ended: None,
            heard: VecDeque::new(),
            lines: 0,
            finished: false,
            timer: Arc::new(HangupTimer { link: link.clone(), uuid: uuid.clone(), task: Default::default() }),
            uuid,
            link,
            hearing: None,
            latency: CallLatency::default(),
            legs: None,
            leg: None,
        }
    }

    /// The carrier that placed the call: the call can be transferred.
    pub(super) fn with_legs(mut self, carrier: FreeswitchCarrier) -> FsCall {
        self.legs = Some(carrier);
        self
    }

    /// Hears the call through `ear` when FreeSWITCH streams its audio.
    pub(super) fn hearing(mut self, ear: Ear, audio: Option<CallAudio>) -> FsCall {
        self.hearing = audio.map(|audio| Hearing { ear, audio, carried: None });
        self
    }

    /// Takes in what happened on the channel; gives the event back for the caller's own use.
    fn absorb(&mut self, signal: Option<Signal>) -> Option<Arc<Event>> {
        let event = match signal {
            Some(Signal::Event(event)) => event,
            Some(Signal::LinkLost) | None => {
                self.ended.get_or_insert(Ended::Lost);
                return None;
            }
        };
        match event.name() {
            "CHANNEL_HANGUP_COMPLETE" if self.ended.is_none() => {
                let cause = hangup_cause(&event);
                tracing::debug!(call_id = %self.uuid, %cause, "FreeSWITCH: hung up");
                self.ended = Some(Ended::Hangup(cause));
            }
            "DETECTED_SPEECH" => {
                if let Some(text) = recognised(&event) {
                    tracing::debug!(call_id = %self.uuid, text, "FreeSWITCH: speech detected");
                    self.heard.push_back(text);
                }
            }
            // FreeSWITCH reports a key however it came (RFC 2833, SIP INFO, inband).
            "DTMF" => {
                if let Some(key) = pressed(&event) {
                    tracing::debug!(call_id = %self.uuid, %key, "FreeSWITCH: key pressed");
                    self.heard.push_back(dtmf::turn(key));
                }
            }
            _ => {}
        }
        Some(event)
    }

    /// Takes in whatever has already arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(signal) = self.route.rx.try_recv() {
            self.absorb(Some(signal));
        }
    }

    fn cause(&self) -> Option<HangupCause> {
        self.ended.as_ref().map(|e| match e {
            Ended::Hangup(cause) => cause.clone(),
            Ended::Lost => temporary_failure(),
        })
    }

    /// `Err` once the call has ended.
    fn check(&self) -> Result<(), HungUp> {
        match self.cause() {
            Some(cause) => Err(HungUp(cause)),
            None => Ok(()),
        }
    }

    /// Waits up to `limit` for the call to end (FreeSWITCH said the channel is gone).
    async fn await_end(&mut self, limit: Duration) -> HangupCause {
        let deadline = Instant::now() + limit;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.route.rx.recv()).await {
                Ok(signal) => {
                    self.absorb(signal);
                }
                Err(_) => {
                    tracing::warn!(call_id = %self.uuid, "FreeSWITCH lost the channel without reporting its hangup");
                    self.ended =
                        Some(Ended::Hangup(HangupCause { name: "NORMAL_UNSPECIFIED".into(), sip: None }));
                }
            }
        }
        self.cause().expect("ended")
    }

    /// Whether the recording was made: started, the call ended as FreeSWITCH reported
    /// (so the file is closed), and the file is where the server serves it from.
    async fn recorded(&self) -> bool {
        let Some(rec) = &self.recording else { return false };
        if !matches!(self.ended, Some(Ended::Hangup(_))) {
            return false;
        }
        let deadline = Instant::now() + RECORDING_WAIT;
        loop {
            if tokio::fs::try_exists(&rec.server_path).await.unwrap_or(false) {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    call_id = %self.uuid,
                    freeswitch_path = %rec.fs_path,
                    server_path = %rec.server_path.display(),
                    "FreeSWITCH recorded the call, but the file is not where the server serves it from: \
                     freeswitch.recordings_dir must be the same storage as recordings.dir"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl FsCall {
    /// A turn heard in the call's streamed audio, a key, or a DETECTED_SPEECH result,
    /// whichever comes first.
    async fn listen_to(&mut self, hearing: &mut Hearing, deadline: Instant) -> Result<Heard, HungUp> {
        let mut turn = hearing.ear.listen(hearing.carried.take(), &mut hearing.audio.frames);
        while let Some(wake) = turn.wake_at(deadline) {
            tokio::select! {
                frame = hearing.audio.frames.recv() => match frame {
                    Some(pcm) => turn.push(&pcm, Instant::now()),
                    // The stream ended (FreeSWITCH closed it): nothing more will come.
                    None => tokio::time::sleep_until(wake).await,
                },
                signal = self.route.rx.recv() => {
                    self.absorb(signal);
                    // A key press is the turn at once; speech under way is dropped.
                    if let Some(text) = self.heard.pop_front() {
                        return Ok(Heard::Speech(text));
                    }
                    self.check()?;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        let Some((text, times)) = turn.recognise(&self.uuid).await else { return Ok(Heard::Silence) };
        self.latency.heard(times);
        Ok(Heard::Speech(text))
    }

    /// A DETECTED_SPEECH result or a key, for a call whose audio is not streamed to us.
    async fn listen_for_events(&mut self, deadline: Instant) -> Result<Heard, HungUp> {
        loop {
            match tokio::time::timeout_at(deadline, self.route.rx.recv()).await {
                Ok(signal) => {
                    self.absorb(signal);
                }
                Err(_) => return Ok(Heard::Silence),
            }
            if let Some(text) = self.heard.pop_front() {
                return Ok(Heard::Speech(text));
            }
            self.check()?;
        }
    }
}

/// The next frame of the streamed audio; never, without a stream.
async fn next_frame(hearing: Option<&mut Hearing>) -> Option<Vec<i16>> {
    match hearing {
        Some(h) => h.audio.frames.recv().await,
        None => std::future::pending().await,
    }
}

/// About how long FreeSWITCH takes to speak `text`, for the share of an interrupted line
/// that was heard: its TTS speaks some four Chinese characters a second, and other
/// characters (letters, digits, spaces) about four times as fast.
fn spoken_length(text: &str) -> Duration {
    let secs: f64 = text.chars().map(|c| if c.is_ascii() { 0.07 } else { 0.25 }).sum();
    Duration::from_secs_f64(secs.max(0.25))
}

#[async_trait]
impl CallSession for FsCall {
    fn keep_alive(&self) -> Option<Arc<dyn KeepAlive>> {
        Some(self.timer.clone())
    }

    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.drain();
        self.check()?;
        let text = one_line(text);
        if text.is_empty() {
            return Ok(Said::Whole);
        }
        let asked = Instant::now();
        let answering = self.latency.answering();
        self.lines += 1;
        let line_id = format!("{}-{}", self.uuid, self.lines);
        let arg = format!("{}{text}", self.speak_prefix);
        let headers = [
            ("call-command", "execute"),
            ("execute-app-name", "speak"),
            ("execute-app-arg", arg.as_str()),
            ("Event-UUID", line_id.as_str()),
        ];
        match self.link.sendmsg(&self.uuid, &headers).await {
            Ok(reply) if reply.starts_with("+OK") => {}
            Ok(reply) => {
                tracing::debug!(call_id = %self.uuid, %reply, "FreeSWITCH: cannot speak on the channel");
                return Err(HungUp(self.await_end(GONE_WAIT).await));
            }
            Err(LinkDown) => {
                self.ended.get_or_insert(Ended::Lost);
                return Err(HungUp(temporary_failure()));
            }
        }
        let limit = SAY_BASE + SAY_PER_CHAR * text.chars().count() as u32;
        let deadline = Instant::now() + limit;
        // Listening while we speak, for the callee speaking over us; what came before this
        // line is no answer to it.
        let mut hearing = self.hearing.take();
        let mut watch = hearing.as_mut().and_then(|h| h.ear.watch_line(&mut h.audio.frames));
        // When FreeSWITCH started speaking the line.
        let mut started = None;
        let said = loop {
            tokio::select! {
                signal = tokio::time::timeout_at(deadline, self.route.rx.recv()) => {
                    let Ok(signal) = signal else {
                        tracing::warn!(call_id = %self.uuid, "FreeSWITCH did not finish speaking a line in {limit:?}; cutting it off (is the TTS engine working?)");
                        let _ = self.link.api(&format!("uuid_break {} all", self.uuid)).await;
                        break Ok(Said::Whole);
                    };
                    if let Some(event) = self.absorb(signal) && is_line(&event, &line_id, &arg) {
                        match event.name() {
                            "CHANNEL_EXECUTE" => started = Some(Instant::now()),
                            "CHANNEL_EXECUTE_COMPLETE" => break Ok(Said::Whole),
                            _ => {}
                        }
                    }
                    if let Err(gone) = self.check() {
                        break Err(gone);
                    }
                }
                Some(pcm) = next_frame(hearing.as_mut()), if watch.is_some() => {
                    if !watch.as_mut().is_some_and(|w| w.push(&pcm, Instant::now())) {
                        continue;
                    }
                    // Spoken over: the line stops; what the callee says is the next turn.
                    let _ = self.link.api(&format!("uuid_break {} all", self.uuid)).await;
                    if let (Some(h), Some(w)) = (hearing.as_mut(), watch.take()) {
                        h.carried = Some(w.into_turn());
                    }
                    let played_for = started.map_or(Duration::ZERO, |at: Instant| at.elapsed());
                    let share = played_for.as_secs_f64() / spoken_length(&text).as_secs_f64();
                    tracing::debug!(call_id = %self.uuid, share, "FreeSWITCH: the callee spoke over the agent");
                    break Ok(Said::Interrupted { played: share.min(1.0) });
                }
            }
        };
        self.hearing = hearing;
        // FreeSWITCH synthesises the line itself, after the application starts: the
        // answer counts as sent then, and its synthesis is not seen.
        if let (Some(turn), Some(sent)) = (answering, started) {
            self.latency.answered(turn, asked, asked, sent);
        }
        said
    }

    async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp> {
        self.drain();
        if let Some(text) = self.heard.pop_front() {
            return Ok(Heard::Speech(text));
        }
        self.check()?;
        let deadline = Instant::now() + max_wait;
        let Some(mut hearing) = self.hearing.take() else {
            return self.listen_for_events(deadline).await;
        };
        let heard = self.listen_to(&mut hearing, deadline).await;
        self.hearing = Some(hearing);
        heard
    }

    /// Rings the person while the callee hears a ringback tone, then bridges them.
    async fn transfer(&mut self, to: &str, ring_timeout: Duration) -> Result<Transferred, TransferFailed> {
        self.drain();
        self.check().map_err(|HungUp(cause)| TransferFailed::CalleeGone(cause))?;
        let Some(legs) = self.legs.clone() else { return Err(TransferFailed::Unsupported) };
        let ringback =
            [("call-command", "execute"), ("execute-app-name", "playback"), ("execute-app-arg", RINGBACK)];
        if let Err(LinkDown) = self.link.sendmsg(&self.uuid, &ringback).await {
            tracing::debug!(call_id = %self.uuid, "FreeSWITCH: no ringback, the link is down");
        }
        let placing = legs.transfer_leg(to, ring_timeout);
        tokio::pin!(placing);
        let placed = loop {
            tokio::select! {
                placed = &mut placing => break placed,
                signal = self.route.rx.recv() => {
                    self.absorb(signal);
                    // Dropping the originate cancels it.
                    if let Some(cause) = self.cause() {
                        return Err(TransferFailed::CalleeGone(cause));
                    }
                }
            }
        };
        let _ = self.link.api(&format!("uuid_break {} all", self.uuid)).await;
        let leg = placed.map_err(TransferFailed::NotAnswered)?;
        match self.link.api(&format!("uuid_bridge {} {}", self.uuid, leg.uuid)).await {
            Ok(reply) if reply.starts_with("+OK") => {}
            reply => {
                tracing::warn!(call_id = %self.uuid, ?reply, "FreeSWITCH did not bridge the transfer");
                leg.hang_up(&self.link).await;
                return Err(TransferFailed::NotAnswered(temporary_failure()));
            }
        }
        tracing::debug!(call_id = %self.uuid, leg = %leg.uuid, "FreeSWITCH: transferred");
        self.leg = Some(leg);
        Ok(Transferred { to: to.to_string(), answered_ms: now_ms() })
    }

    /// Either channel's hangup: the callee's, or the person's.
    async fn bridged(&mut self) -> HungUp {
        if self.leg.is_none() {
            return std::future::pending().await;
        }
        loop {
            if let Some(cause) = self.cause() {
                return HungUp(cause);
            }
            let leg = self.leg.as_mut().expect("bridged");
            if let Some(cause) = &leg.ended {
                return HungUp(cause.clone());
            }
            tokio::select! {
                signal = self.route.rx.recv() => {
                    self.absorb(signal);
                }
                signal = leg.route.rx.recv() => leg.absorb(signal),
            }
        }
    }

    async fn hang_up(mut self: Box<Self>, reason: HangupReason) -> CallEnd {
        let end = self.end(reason).await;
        // The person's leg goes with the callee's.
        if let Some(leg) = self.leg.take() {
            leg.hang_up(&self.link).await;
        }
        end
    }
}

impl FsCall {
    /// Ends the callee's channel (unless it has ended) and closes the recording.
    async fn end(&mut self, reason: HangupReason) -> CallEnd {
        self.drain();
        if let Some(cause) = self.cause() {
            self.timer.cancel().await;
            let recorded = self.recorded().await;
            self.finished = true;
            return CallEnd { cause, recorded, turn_latency: self.latency.median() };
        }
        let (ours, asked) = match reason {
            HangupReason::Completed => (HangupCause::normal_clearing(), "NORMAL_CLEARING"),
            HangupReason::Stopped => (HangupCause::manager_request(), "MANAGER_REQUEST"),
            HangupReason::MaxDuration => (HangupCause::max_duration(), "ALLOTTED_TIMEOUT"),
            HangupReason::Shutdown => (HangupCause::system_shutdown(), "SYSTEM_SHUTDOWN"),
            HangupReason::LeaseLost => (HangupCause::lease_lost(), "RECOVERY_ON_TIMER_EXPIRE"),
        };
        match self.link.api(&format!("uuid_kill {} {asked}", self.uuid)).await {
            Ok(reply) if reply.starts_with("+OK") => {}
            // "-ERR No such channel!": it hung up a moment ago; its event is on the way.
            Ok(reply) => tracing::debug!(call_id = %self.uuid, %reply, "FreeSWITCH: uuid_kill"),
            Err(LinkDown) => {
                self.ended.get_or_insert(Ended::Lost);
            }
        }
        let deadline = Instant::now() + HANGUP_WAIT;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.route.rx.recv()).await {
                Ok(signal) => {
                    self.absorb(signal);
                }
                Err(_) => break,
            }
        }
        let cause = match &self.ended {
            // FreeSWITCH confirms our hangup: the cause is ours, as the design names it
            // (`MANAGER_REQUEST:null` for a stop), whatever SIP said to the BYE.
            Some(Ended::Hangup(cause)) if cause.name == asked => ours,
            // The callee (or FreeSWITCH) ended it first.
            Some(Ended::Hangup(cause)) => cause.clone(),
            Some(Ended::Lost) | None => {
                if self.ended.is_none() {
                    tracing::warn!(call_id = %self.uuid, "FreeSWITCH did not confirm the hangup in {HANGUP_WAIT:?}");
                }
                // Make sure it ends, now or once connected again.
                self.link.kill(&self.uuid, asked);
                ours
            }
        };
        self.timer.cancel().await;
        let recorded = self.recorded().await;
        self.finished = true;
        CallEnd { cause, recorded, turn_latency: self.latency.median() }
    }
}

impl Drop for FsCall {
    fn drop(&mut self) {
        // Abandoned without `hang_up` (a panic, a cancelled shutdown): end the channel.
        if !self.finished && self.ended.is_none() {
            self.link.kill(&self.uuid, "NORMAL_CLEARING");
        }
    }
}

/// Whether a CHANNEL_EXECUTE_COMPLETE is the end of the line sent with `line_id`
/// (FreeSWITCH versions without `Application-UUID`: the same application and text).
fn is_line(event: &Event, line_id: &str, arg: &str) -> bool {
    match event.header("Application-UUID") {
        Some(id) => id == line_id,
        None => {
            event.header("Application").is_some_and(|a| a.eq_ignore_ascii_case("speak"))
                && event.header("Application-Data") == Some(arg)
        }
    }
}

/// The key of a DTMF event.
fn pressed(event: &Event) -> Option<char> {
    event.header("DTMF-Digit").and_then(dtmf::key_named)
}

/// The text of a DETECTED_SPEECH result: the body, or the `<input>` of an NLSML result
/// (what MRCP recognisers return). `begin-speaking` and empty results are not speech.
fn recognised(event: &Event) -> Option<String> {
    if event.header("Speech-Type").is_some_and(|t| t != "detected-speech") {
        return None;
    }
    let body = event.body.as_deref()?.trim();
    let text = match body.find("<input") {
        Some(start) => {
            let inner = &body[start..];
            let open_end = inner.find('>')? + 1;
            let close = inner.find("</input>")?;
            inner.get(open_end..close)?.trim()
        }
        None if body.starts_with('<') => return None,
        None => body,
    };
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(headers: &[(&str, &str)], body: Option<&str>) -> Event {
        Event {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.map(str::to_string),
        }
    }

    #[test]
    fn the_end_of_a_line_is_matched_by_its_application_uuid() {
        let done = event(&[("Application", "speak"), ("Application-UUID", "u-2")], None);
        assert!(is_line(&done, "u-2", "e|v|x"));
        assert!(!is_line(&done, "u-3", "e|v|x"), "an earlier line's end");
        let old_fs = event(&[("Application", "speak"), ("Application-Data", "e|v|x")], None);
        assert!(is_line(&old_fs, "u-3", "e|v|x"));
        assert!(!is_line(&old_fs, "u-3", "e|v|y"));
        let park = event(&[("Application", "park")], None);
        assert!(!is_line(&park, "u-3", "e|v|x"));
    }

    #[test]
    fn detected_speech_is_read_from_plain_and_nlsml_results() {
        let plain = event(&[("Speech-Type", "detected-speech")], Some("好的，我知道了。\n"));
        assert_eq!(recognised(&plain).as_deref(), Some("好的，我知道了。"));
        let nlsml = event(
            &[("Speech-Type", "detected-speech")],
            Some(
                r#"<?xml version="1.0"?><result><interpretation confidence="90"><instance/><input mode="speech">可以</input></interpretation></result>"#,
            ),
        );
        assert_eq!(recognised(&nlsml).as_deref(), Some("可以"));
        assert_eq!(recognised(&event(&[("Speech-Type", "begin-speaking")], Some("x"))), None);
        assert_eq!(recognised(&event(&[("Speech-Type", "detected-speech")], Some("  "))), None);
        assert_eq!(recognised(&event(&[("Speech-Type", "detected-speech")], Some("<result/>"))), None);
    }

    #[test]
    fn a_dtmf_event_gives_its_key() {
        let dtmf = |digit: &str| event(&[("DTMF-Digit", digit), ("DTMF-Source", "RTP")], None);
        assert_eq!(pressed(&dtmf("1")), Some('1'));
        assert_eq!(pressed(&dtmf("#")), Some('#'));
        assert_eq!(pressed(&dtmf("x")), None);
        assert_eq!(pressed(&event(&[], None)), None);
    }
}
