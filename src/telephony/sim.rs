//! A simulated carrier for demos and tests: test numbers force an outcome, other
//! numbers answer at `sim.answer_rate`, and an answered callee plays one of a few
//! behaviours. Ringing and talking take real time scaled by `sim.time_scale`, and the
//! recording is a synthetic voice laid on the call's real timeline, written as the call
//! goes. A callee whose number ends in `8000` (and a few others) asks for a person; the
//! person a call is transferred to is simulated too: an extension ending in `4860` is
//! busy, one ending in `4800` does not answer, any other answers and talks with the callee.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep, sleep_until};

use super::latency::{CallLatency, TurnTimes};
use super::{
    Answer, CallEnd, CallSession, Carrier, DialRequest, DialResult, ExtensionRequest, HangupReason, Heard,
    HungUp, IncomingCall, KeepAlive, Said, TransferFailed, Transferred, extension_of,
};
use crate::domain::{HangupCause, now_ms};
use crate::recording::{self, StreamedWav};

/// The `[sim]` section: the simulated carrier's callees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// Probability that an ordinary number answers.
    pub answer_rate: f64,
    /// Scales ringing and talking time; 0 = instant.
    pub time_scale: f64,
    pub seed: u64,
    /// A file the carrier appends one JSON line to per answered call, with the call's
    /// answer and end as the carrier's side saw them; empty: none.
    pub call_log: PathBuf,
    /// Inbound calls the sim places to the server a minute (scaled by `time_scale`, like
    /// every sim time), from random callers to the first of `[[inbound.numbers]]`;
    /// 0 = none.
    pub inbound_calls_per_minute: f64,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            answer_rate: 0.7,
            time_scale: 1.0,
            seed: 42,
            call_log: PathBuf::new(),
            inbound_calls_per_minute: 0.0,
        }
    }
}

/// Speaking pace of both sides, per character of text.
const PER_CHAR: Duration = Duration::from_millis(250);
const AGENT_PITCH_HZ: f32 = 120.0;
const CALLEE_PITCH_HZ: f32 = 220.0;
/// The person a call is handed to, on the agent's side of the recording.
const HUMAN_PITCH_HZ: f32 = 160.0;
const WANTS_HUMAN: &str = "我要转人工。";
/// A callee whose number ends so asks for a person.
const WANTS_HUMAN_SUFFIX: &str = "8000";

const CONFIRMS: &[&str] = &["好的，我知道了。", "嗯，可以，明白了。", "行，知道了，谢谢。"];
const QUESTIONS: &[&str] = &["请问具体是什么时间？", "这个要怎么处理呢？", "需要我准备什么材料吗？"];
const REFUSALS: &[&str] = &["不需要，谢谢。", "我现在没空，别再打了。", "不用了。"];

pub struct SimCarrier {
    answer_rate: f64,
    time_scale: f64,
    /// One generator for the carrier, so a seed and a call order give the same calls.
    rng: Mutex<SmallRng>,
    call_log: Option<Arc<CallLog>>,
    /// Between two inbound calls the sim places; `None`: it places none.
    inbound_every: Option<Duration>,
    /// The number its inbound calls go to.
    inbound_to: String,
    /// Taken by the first `incoming`.
    inbound_taken: std::sync::atomic::AtomicBool,
}

impl SimCarrier {
    pub fn new(settings: &SimSettings) -> SimCarrier {
        // `Duration::mul_f64` panics on a negative, non-finite or overflowing factor.
        let time_scale = if (0.0..=1000.0).contains(&settings.time_scale) {
            settings.time_scale
        } else {
            tracing::warn!(time_scale = settings.time_scale, "sim.time_scale must be 0…1000; using 1");
            1.0
        };
        let call_log = (!settings.call_log.as_os_str().is_empty()).then(|| {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&settings.call_log);
            match file {
                Ok(file) => Some(Arc::new(CallLog(Mutex::new(file)))),
                Err(e) => {
                    tracing::error!(path = %settings.call_log.display(), error = %e, "sim: cannot open the call log");
                    None
                }
            }
        });
        let per_minute = settings.inbound_calls_per_minute;
        // At `time_scale = 0` every other sim time is instant; calls still come one at a time.
        let inbound_every = (per_minute > 0.0 && per_minute.is_finite())
            .then(|| Duration::from_secs_f64(60.0 / per_minute).mul_f64(time_scale).max(MIN_INBOUND_GAP));
        SimCarrier {
            answer_rate: settings.answer_rate,
            time_scale,
            rng: Mutex::new(SmallRng::seed_from_u64(settings.seed)),
            call_log: call_log.flatten(),
            inbound_every,
            inbound_to: DEFAULT_INBOUND_NUMBER.into(),
            inbound_taken: Default::default(),
        }
    }

    /// Its inbound calls go to `number` (one of `[[inbound.numbers]]`).
    pub fn calling_in_to(mut self, number: &str) -> SimCarrier {
        self.inbound_to = number.to_string();
        self
    }

    /// Draws everything the call needs at once, so the lock is never held across a wait.
    fn plan(&self, number: &str) -> Plan {
        let mut rng = self.rng.lock().expect("sim rng lock");
        let test_outcome = [
            ("4860", HangupCause::user_busy()),
            ("4800", HangupCause::no_answer()),
            ("4040", HangupCause::unallocated_number()),
            ("5030", HangupCause::temporary_failure()),
        ]
        .into_iter()
        .find(|(suffix, _)| number.ends_with(suffix))
        .map(|(_, cause)| cause);

        let failed = match test_outcome {
            Some(cause) => Some(cause),
            None if rng.random::<f64>() < self.answer_rate => None,
            None => Some(HangupCause::no_answer()),
        };
        let ringing = match &failed {
            None => secs(&mut rng, 2.0..8.0),
            Some(cause) if *cause == HangupCause::no_answer() => secs(&mut rng, 25.0..40.0),
            Some(_) => secs(&mut rng, 0.5..1.5),
        };
        Plan { failed, ringing: self.scaled(ringing), session_seed: rng.random() }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }
}

struct Plan {
    /// `None` answers.
    failed: Option<HangupCause>,
    ringing: Duration,
    session_seed: u64,
}

#[async_trait]
impl Carrier for SimCarrier {
    /// Places `sim.inbound_calls_per_minute` calls to the server, if any, for as long as
    /// the receiver is kept.
    fn incoming(&self) -> Option<tokio::sync::mpsc::Receiver<IncomingCall>> {
        let every = self.inbound_every?;
        if self.inbound_taken.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut callers = SimInbound {
            time_scale: self.time_scale,
            to: self.inbound_to.clone(),
            rng: SmallRng::seed_from_u64(self.rng.lock().expect("sim rng lock").random()),
            log: self.call_log.clone(),
        };
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if tx.send(callers.call()).await.is_err() {
                    return;
                }
            }
        });
        Some(rx)
    }

    async fn dial(&self, request: DialRequest) -> DialResult {
        let plan = self.plan(request.phone.as_str());
        if plan.ringing > request.ring_timeout {
            pause(request.ring_timeout).await;
            tracing::debug!(call_id = %request.call_id, phone = %request.phone, "sim: ring timeout");
            return DialResult::Failed(HangupCause::no_answer());
        }
        pause(plan.ringing).await;
        match plan.failed {
            Some(cause) => {
                tracing::debug!(call_id = %request.call_id, phone = %request.phone, %cause, "sim: not answered");
                DialResult::Failed(cause)
            }
            None => {
                let mut rng = SmallRng::seed_from_u64(plan.session_seed);
                let callee = match request.phone.as_str().ends_with(WANTS_HUMAN_SUFFIX) {
                    true => Callee::WantsHuman,
                    false => Callee::pick(&mut rng),
                };
                tracing::debug!(call_id = %request.call_id, phone = %request.phone, ?callee, "sim: answered");
                let mut session =
                    SimSession::new(request.call_id, callee, self.time_scale, rng, request.recording);
                session.log = self.call_log.clone().map(|log| (log, request.phone.as_str().to_string()));
                DialResult::Answered(Box::new(session))
            }
        }
    }

    async fn dial_extension(&self, request: ExtensionRequest) -> DialResult {
        self.person(request).await
    }
}

impl SimCarrier {
    /// A simulated person at an extension: `…4860` busy, `…4800` no answer, others
    /// answer after a few seconds and stay silent until bridged.
    async fn person(&self, request: ExtensionRequest) -> DialResult {
        let extension = extension_of(&request.to);
        let (ringing, failed, seed) = {
            let mut rng = self.rng.lock().expect("sim rng lock");
            let (ringing, failed) = if extension.ends_with("4860") {
                (secs(&mut rng, 0.5..1.5), Some(HangupCause::user_busy()))
            } else if extension.ends_with("4800") {
                (Duration::MAX, Some(HangupCause::no_answer()))
            } else {
                (secs(&mut rng, 1.0..4.0), None)
            };
            (ringing, failed, rng.random())
        };
        let ringing = if ringing == Duration::MAX { ringing } else { self.scaled(ringing) };
        if ringing > request.ring_timeout {
            pause(request.ring_timeout).await;
            return DialResult::Failed(HangupCause::no_answer());
        }
        pause(ringing).await;
        if let Some(cause) = failed {
            return DialResult::Failed(cause);
        }
        let rng = SmallRng::seed_from_u64(seed);
        let session =
            SimSession::new(request.call_id, Callee::Silent, self.time_scale, rng, request.recording);
        DialResult::Answered(Box::new(session))
    }
}

/// Where the sim's inbound calls go when no number is configured.
pub const DEFAULT_INBOUND_NUMBER: &str = "4008001234";
/// The least time between two inbound calls of the sim, whatever the rate and scale.
const MIN_INBOUND_GAP: Duration = Duration::from_millis(20);

/// The sim's callers: what each inbound call it places is made of.
struct SimInbound {
    time_scale: f64,
    to: String,
    rng: SmallRng,
    log: Option<Arc<CallLog>>,
}

impl SimInbound {
    /// An inbound call from a random mobile number, its caller behaving as a callee does.
    fn call(&mut self) -> IncomingCall {
        let caller = format!("13{:09}", self.rng.random_range(0..1_000_000_000u32));
        let answer =
            SimAnswer { time_scale: self.time_scale, seed: self.rng.random(), log: self.log.clone() };
        IncomingCall { called: self.to.clone(), source: "sim".into(), caller, answer: Box::new(answer) }
    }
}

/// Answers a sim inbound call: at once, with a caller who behaves as a callee would.
struct SimAnswer {
    time_scale: f64,
    seed: u64,
    log: Option<Arc<CallLog>>,
}

#[async_trait]
impl Answer for SimAnswer {
    async fn answer(
        self: Box<Self>,
        call_id: &str,
        recording: Option<PathBuf>,
    ) -> Result<Box<dyn CallSession>, HangupCause> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let caller = Callee::pick(&mut rng);
        tracing::debug!(call_id, ?caller, "sim: inbound call answered");
        let mut session = SimSession::new(call_id.to_string(), caller, self.time_scale, rng, recording);
        session.log = self.log.map(|log| (log, String::new()));
        Ok(Box::new(session))
    }

    async fn refuse(self: Box<Self>, status: u16) {
        tracing::debug!(status, "sim: inbound call turned away");
    }
}

/// How a simulated callee behaves once they pick up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callee {
    Confirms,
    /// Asks a question first, then confirms.
    Asks,
    Refuses,
    Silent,
    /// Hangs up a moment after the greeting.
    HangsUp,
    /// Asks for a person.
    WantsHuman,
}

impl Callee {
    fn pick(rng: &mut SmallRng) -> Callee {
        match rng.random_range(0..100) {
            0..45 => Callee::Confirms,
            45..65 => Callee::Asks,
            65..80 => Callee::Refuses,
            80..90 => Callee::Silent,
            90..96 => Callee::HangsUp,
            _ => Callee::WantsHuman,
        }
    }
}

struct SimSession {
    call_id: String,
    callee: Callee,
    time_scale: f64,
    rng: SmallRng,
    answered_at: Instant,
    turns_heard: usize,
    /// When the callee will hang up (or did), once decided.
    hangup_at: Option<Instant>,
    /// Mono: both voices on one channel.
    recording: Option<StreamedWav>,
    answered_ms: i64,
    /// When the network's side ends the call by itself, once armed by `keep_alive`.
    far_end: Arc<FarEnd>,
    /// Where the call's interval goes, and the number called.
    log: Option<(Arc<CallLog>, String)>,
    /// How long the agent took to answer the callee's replies.
    latency: CallLatency,
    /// Handed to a person, who answered.
    transferred: bool,
}

/// The network's dead man's switch (a SIP session timer, FreeSWITCH's `sched_hangup`):
/// the call ends at `deadline` unless it is moved on.
#[derive(Default)]
struct FarEnd {
    deadline: Mutex<Option<Instant>>,
}

impl FarEnd {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().expect("sim far end lock")
    }

    fn expired(&self) -> bool {
        self.deadline().is_some_and(|at| at <= Instant::now())
    }
}

#[async_trait]
impl KeepAlive for FarEnd {
    async fn keep_alive(&self, for_: Duration) {
        let mut deadline = self.deadline.lock().expect("sim far end lock");
        // A call the network has already ended stays ended.
        if deadline.is_none_or(|at| at > Instant::now()) {
            *deadline = Some(Instant::now() + for_);
        }
    }
}

/// The `sim.call_log` file: one JSON line per answered call.
struct CallLog(Mutex<std::fs::File>);

impl CallLog {
    fn write(&self, line: &serde_json::Value) {
        let mut file = self.0.lock().expect("sim call log lock");
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(error = %e, "sim: could not write the call log");
        }
    }
}

impl SimSession {
    fn new(
        call_id: String,
        callee: Callee,
        time_scale: f64,
        rng: SmallRng,
        recording: Option<PathBuf>,
    ) -> SimSession {
        SimSession {
            call_id,
            callee,
            time_scale,
            rng,
            answered_at: Instant::now(),
            turns_heard: 0,
            hangup_at: None,
            recording: recording.and_then(|path| StreamedWav::create(&path, 1)),
            answered_ms: now_ms(),
            far_end: Arc::default(),
            log: None,
            latency: CallLatency::default(),
            transferred: false,
        }
    }

    fn callee_gone(&self) -> bool {
        self.hangup_at.is_some_and(|at| at <= Instant::now())
    }

    fn check_line(&self) -> Result<(), HungUp> {
        if self.far_end.expired() {
            return Err(HungUp(HangupCause::lease_lost()));
        }
        if self.callee_gone() { Err(HungUp(HangupCause::normal_clearing())) } else { Ok(()) }
    }

    /// Spends `d` on the line, unless the callee or the network's timer hangs up first.
    async fn spend(&mut self, d: Duration) -> Result<(), HungUp> {
        let end = Instant::now() + d;
        // The timer may be moved on meanwhile: wait for whichever comes first, then look again.
        while let Some(at) = self.far_end.deadline().filter(|at| *at < end) {
            if at <= Instant::now() {
                return Err(HungUp(HangupCause::lease_lost()));
            }
            sleep_until(at.min(self.hangup_at.unwrap_or(at))).await;
            if self.callee_gone() {
                return Err(HungUp(HangupCause::normal_clearing()));
            }
        }
        let d = end.saturating_duration_since(Instant::now());
        match self.hangup_at {
            Some(at) if at <= Instant::now() + d => {
                if at > Instant::now() {
                    sleep_until(at).await;
                }
                Err(HungUp(HangupCause::normal_clearing()))
            }
            _ => {
                pause(d).await;
                Ok(())
            }
        }
    }

    /// Speaks `text` for its natural length (scaled, at most `limit`), recording it at `pitch_hz`.
    async fn speak(&mut self, text: &str, pitch_hz: f32, limit: Duration) -> Result<(), HungUp> {
        let start = self.answered_at.elapsed();
        let len = self.scaled(PER_CHAR * text.chars().count() as u32).min(limit);
        let result = self.spend(len).await;
        if let Some(wav) = &self.recording {
            // As long as it lasted (a hang-up may have cut it short), rendered off the async
            // threads.
            let len = recording::samples_in(self.answered_at.elapsed().saturating_sub(start));
            let syllables = text.chars().filter(|c| c.is_alphanumeric()).count();
            let voice =
                tokio::task::spawn_blocking(move || recording::synth_speech(syllables, len, pitch_hz));
            if let Ok(voice) = voice.await {
                wav.write_at(recording::samples_in(start), &voice);
            }
        }
        result
    }

    /// What the callee says to the agent's next question, if anything.
    fn next_reply(&mut self) -> Option<&'static str> {
        let lines = match self.callee {
            Callee::Confirms => CONFIRMS,
            Callee::Asks if self.turns_heard == 0 => QUESTIONS,
            Callee::Asks => CONFIRMS,
            Callee::Refuses => REFUSALS,
            Callee::WantsHuman => &[WANTS_HUMAN],
            Callee::Silent | Callee::HangsUp => return None,
        };
        self.turns_heard += 1;
        lines.choose(&mut self.rng).copied()
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }
}

#[async_trait]
impl CallSession for SimSession {
    fn keep_alive(&self) -> Option<Arc<dyn KeepAlive>> {
        Some(self.far_end.clone())
    }

    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.check_line()?;
        // The sim has no synthesis: an answer's audio starts as the line is given.
        if let Some(turn) = self.latency.answering() {
            let now = Instant::now();
            self.latency.answered(turn, now, now, now);
        }
        self.speak(text, AGENT_PITCH_HZ, Duration::MAX).await?;
        if self.callee == Callee::HangsUp && self.hangup_at.is_none() {
            let after = secs(&mut self.rng, 0.5..2.5);
            self.hangup_at = Some(Instant::now() + self.scaled(after));
        }
        Ok(Said::Whole)
    }

    async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp> {
        self.check_line()?;
        let Some(reply) = self.next_reply() else {
            // Silence lasts the whole wait, scaled like everything else, but never longer.
            self.spend(self.scaled(max_wait).min(max_wait)).await?;
            return Ok(Heard::Silence);
        };
        // A pause to think, then the reply, all within the wait.
        let think = secs(&mut self.rng, 0.4..1.2);
        let think = self.scaled(think).min(max_wait);
        self.spend(think).await?;
        self.speak(reply, CALLEE_PITCH_HZ, max_wait - think).await?;
        self.latency.heard(TurnTimes::at(Instant::now()));
        Ok(Heard::Speech(reply.to_string()))
    }

    /// The simulated person: busy (an extension ending in `4860`), no answer (`4800`:
    /// rings past any ring timeout), or answers after a few seconds' ringing (the callee
    /// hears silence meanwhile) and talks with the callee for a while, until the callee
    /// hangs up.
    async fn transfer(&mut self, to: &str, ring_timeout: Duration) -> Result<Transferred, TransferFailed> {
        self.check_line().map_err(|HungUp(cause)| TransferFailed::CalleeGone(cause))?;
        let extension = extension_of(to);
        let (ringing, failed) = if extension.ends_with("4860") {
            (secs(&mut self.rng, 0.5..1.5), Some(HangupCause::user_busy()))
        } else if extension.ends_with("4800") {
            (Duration::MAX, Some(HangupCause::no_answer()))
        } else {
            (secs(&mut self.rng, 2.0..6.0), None)
        };
        let ringing = if ringing == Duration::MAX { ringing } else { self.scaled(ringing) };
        let (wait, failed) = match ringing > ring_timeout {
            true => (ring_timeout, Some(HangupCause::no_answer())),
            false => (ringing, failed),
        };
        self.spend(wait).await.map_err(|HungUp(cause)| TransferFailed::CalleeGone(cause))?;
        if let Some(cause) = failed {
            tracing::debug!(call_id = %self.call_id, extension, %cause, "sim: the person did not answer");
            return Err(TransferFailed::NotAnswered(cause));
        }
        let talk = secs(&mut self.rng, 15.0..60.0);
        let talk = self.scaled(talk);
        self.hangup_at = Some(Instant::now() + talk);
        self.transferred = true;
        tracing::debug!(call_id = %self.call_id, extension, "sim: the person answered");
        Ok(Transferred { to: to.to_string(), answered_ms: now_ms() })
    }

    /// The person and the callee take turns until the callee hangs up.
    async fn bridged(&mut self) -> HungUp {
        if !self.transferred {
            return std::future::pending().await;
        }
        loop {
            let line = "您好，我是人工客服，请问有什么可以帮您？";
            if let Err(gone) = self.speak(line, HUMAN_PITCH_HZ, Duration::MAX).await {
                return gone;
            }
            if let Err(gone) = self.speak("好的，谢谢。", CALLEE_PITCH_HZ, Duration::MAX).await {
                return gone;
            }
        }
    }

    async fn hang_up(self: Box<Self>, reason: HangupReason) -> CallEnd {
        let talk = self.answered_at.elapsed();
        let now = Instant::now();
        // Whoever ended the call first: the network's timer, the callee, or we, now.
        let timer = self.far_end.deadline().filter(|at| *at <= now);
        let callee = self.hangup_at.filter(|at| *at <= now);
        let (ended_at, cause, ended_by) = match (timer, callee) {
            (Some(t), c) if c.is_none_or(|c| t < c) => (t, HangupCause::lease_lost(), "network_timer"),
            (_, Some(c)) => (c, HangupCause::normal_clearing(), "callee"),
            _ => {
                let cause = match reason {
                    HangupReason::Completed => HangupCause::normal_clearing(),
                    HangupReason::Stopped => HangupCause::manager_request(),
                    HangupReason::MaxDuration => HangupCause::max_duration(),
                    HangupReason::Shutdown => HangupCause::system_shutdown(),
                    HangupReason::LeaseLost => HangupCause::lease_lost(),
                };
                (now, cause, "us")
            }
        };
        if let Some((log, phone)) = &self.log {
            let ended_ms = now_ms() - now.duration_since(ended_at).as_millis() as i64;
            log.write(&serde_json::json!({
                "call_id": self.call_id,
                "phone": phone,
                "answered_ms": self.answered_ms,
                "ended_ms": ended_ms,
                "ended_by": ended_by,
            }));
        }
        let turn_latency = self.latency.median();
        let recorded = match self.recording {
            Some(wav) => match wav.finish(recording::samples_in(talk)).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(call_id = %self.call_id, error = %e, "sim: could not write the recording");
                    false
                }
            },
            None => false,
        };
        CallEnd { cause, recorded, turn_latency }
    }
}

/// Sleeps, but not at all for zero (`time_scale = 0` must be instant).
async fn pause(d: Duration) {
    if !d.is_zero() {
        sleep(d).await;
    }
}

fn secs(rng: &mut SmallRng, range: Range<f64>) -> Duration {
    Duration::from_secs_f64(rng.random_range(range))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Phone;

    fn carrier(answer_rate: f64, time_scale: f64, seed: u64) -> SimCarrier {
        SimCarrier::new(&SimSettings { answer_rate, time_scale, seed, ..SimSettings::default() })
    }

    fn request(phone: &str) -> DialRequest {
        DialRequest {
            call_id: "2508162111590110001".into(),
            phone: Phone::parse(phone).unwrap(),
            ring_timeout: Duration::from_secs(45),
            recording: None,
            caller_id: None,
        }
    }

    fn cause(result: DialResult) -> Option<HangupCause> {
        match result {
            DialResult::Answered(_) => None,
            DialResult::Failed(cause) => Some(cause),
        }
    }

    fn session(callee: Callee, time_scale: f64, recording: Option<PathBuf>) -> Box<SimSession> {
        Box::new(SimSession::new("c1".into(), callee, time_scale, SmallRng::seed_from_u64(7), recording))
    }

    fn wav(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        (reader.spec(), reader.samples::<i16>().map(Result::unwrap).collect())
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[tokio::test]
    async fn test_numbers_force_their_outcome_even_when_everyone_answers() {
        let sim = carrier(1.0, 0.0, 1);
        for (phone, expected) in [
            ("13900004860", HangupCause::user_busy()),
            ("13900004800", HangupCause::no_answer()),
            ("13900004040", HangupCause::unallocated_number()),
            ("+8613900005030", HangupCause::temporary_failure()),
        ] {
            assert_eq!(cause(sim.dial(request(phone)).await), Some(expected), "{phone}");
        }
        assert_eq!(cause(sim.dial(request("13900001234")).await), None);
    }

    #[tokio::test]
    async fn ordinary_numbers_answer_at_roughly_the_answer_rate() {
        let sim = carrier(0.7, 0.0, 42);
        let mut answered = 0;
        for _ in 0..2000 {
            match sim.dial(request("13912345678")).await {
                DialResult::Answered(_) => answered += 1,
                DialResult::Failed(cause) => assert_eq!(cause, HangupCause::no_answer()),
            }
        }
        assert!((1300..1500).contains(&answered), "{answered} of 2000 answered");
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_calls() {
        async fn run(seed: u64) -> Vec<String> {
            let sim = carrier(0.7, 0.0, seed);
            let mut log = Vec::new();
            for _ in 0..30 {
                match sim.dial(request("13912345678")).await {
                    DialResult::Failed(cause) => log.push(cause.to_string()),
                    DialResult::Answered(mut call) => {
                        call.say("您好").await.ok();
                        log.push(format!("{:?}", call.listen(Duration::from_secs(8)).await));
                    }
                }
            }
            log
        }
        assert_eq!(run(5).await, run(5).await);
        assert_ne!(run(5).await, run(6).await);
    }

    /// Real-clock timing: a sleep never ends early, and on a busy machine may end late.
    fn assert_took(elapsed: Duration, at_least_ms: u64, at_most_ms: u64) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        assert!(
            (at_least_ms as f64..(at_most_ms + SLACK_MS) as f64).contains(&ms),
            "took {ms:.1} ms, expected {at_least_ms}..{at_most_ms} ms"
        );
    }
    const SLACK_MS: u64 = 150;

    #[tokio::test]
    async fn ringing_takes_scaled_time() {
        let sim = carrier(1.0, 0.05, 3);
        let t = Instant::now();
        assert!(cause(sim.dial(request("13912345678")).await).is_none());
        assert_took(t.elapsed(), 100, 400); // 2–8 s

        let t = Instant::now();
        assert!(cause(sim.dial(request("13900004860")).await).is_some());
        assert_took(t.elapsed(), 25, 75); // 0.5–1.5 s
    }

    #[tokio::test]
    async fn ringing_past_the_ring_timeout_gives_no_answer_at_the_timeout() {
        let sim = carrier(1.0, 0.05, 3);
        let mut req = request("13900004800"); // rings 1.25–2 s scaled
        req.ring_timeout = Duration::from_millis(100);
        let t = Instant::now();
        assert_eq!(cause(sim.dial(req).await), Some(HangupCause::no_answer()));
        assert_took(t.elapsed(), 100, 100);

        // Even a callee who would answer rings out if the timeout is shorter.
        let sim = carrier(1.0, 1.0, 3);
        let mut req = request("13912345678");
        req.ring_timeout = Duration::from_millis(50);
        let t = Instant::now();
        assert_eq!(cause(sim.dial(req).await), Some(HangupCause::no_answer()));
        assert_took(t.elapsed(), 50, 50);
    }

    #[tokio::test]
    async fn time_scale_zero_never_waits() {
        // Real clock: a single sleep would show.
        let sim = carrier(1.0, 0.0, 1);
        let t = std::time::Instant::now();
        let DialResult::Answered(mut call) = sim.dial(request("13912345678")).await else { panic!() };
        call.say("您好，这是一条很长很长的通知。").await.ok();
        call.listen(Duration::from_secs(8)).await.ok();
        call.hang_up(HangupReason::Completed).await;
        assert!(t.elapsed() < Duration::from_millis(20), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn callees_reply_in_character() {
        let wait = Duration::from_secs(8);
        let mut confirms = session(Callee::Confirms, 0.0, None);
        let Heard::Speech(text) = confirms.listen(wait).await.unwrap() else { panic!() };
        assert!(CONFIRMS.contains(&text.as_str()));

        let mut asks = session(Callee::Asks, 0.0, None);
        let Heard::Speech(text) = asks.listen(wait).await.unwrap() else { panic!() };
        assert!(QUESTIONS.contains(&text.as_str()));
        let Heard::Speech(text) = asks.listen(wait).await.unwrap() else { panic!() };
        assert!(CONFIRMS.contains(&text.as_str()));

        let mut refuses = session(Callee::Refuses, 0.0, None);
        let Heard::Speech(text) = refuses.listen(wait).await.unwrap() else { panic!() };
        assert!(REFUSALS.contains(&text.as_str()));

        let mut silent = session(Callee::Silent, 0.0, None);
        assert_eq!(silent.listen(wait).await, Ok(Heard::Silence));
    }

    #[tokio::test]
    async fn a_silent_callee_lets_the_scaled_wait_run_out() {
        let mut silent = session(Callee::Silent, 0.01, None);
        let t = Instant::now();
        assert_eq!(silent.listen(Duration::from_secs(8)).await, Ok(Heard::Silence));
        assert_took(t.elapsed(), 80, 80);

        // A slowed-down sim still waits no longer than asked.
        let mut silent = session(Callee::Silent, 3.0, None);
        let t = Instant::now();
        assert_eq!(silent.listen(Duration::from_millis(50)).await, Ok(Heard::Silence));
        assert_took(t.elapsed(), 50, 50);
    }

    #[tokio::test]
    async fn a_reply_never_outlasts_the_wait() {
        let mut call = session(Callee::Refuses, 1.0, None);
        let t = Instant::now();
        assert!(matches!(call.listen(Duration::from_millis(60)).await, Ok(Heard::Speech(_))));
        assert_took(t.elapsed(), 60, 60);
    }

    #[tokio::test]
    async fn saying_takes_time_in_proportion_to_the_text() {
        let mut call = session(Callee::Confirms, 0.01, None);
        let t = Instant::now();
        call.say("一二三四五六七八").await.unwrap();
        assert_took(t.elapsed(), 20, 20);
        let t = Instant::now();
        call.say(&"八".repeat(40)).await.unwrap();
        assert_took(t.elapsed(), 100, 100);
    }

    #[tokio::test]
    async fn a_callee_who_hangs_up_early_does_so_after_the_greeting() {
        for time_scale in [0.0, 0.01] {
            let mut call = session(Callee::HangsUp, time_scale, None);
            call.say("您好，请问是张先生吗？").await.unwrap();
            // Hangs up 0.5–2.5 s (scaled) later, in the middle of this long line.
            let cut = call.say(&"很长的内容".repeat(20)).await;
            assert_eq!(cut, Err(HungUp(HangupCause::normal_clearing())));
            assert_eq!(
                call.listen(Duration::from_secs(8)).await,
                Err(HungUp(HangupCause::normal_clearing()))
            );
            // The callee's hang-up wins over ours.
            let end = call.hang_up(HangupReason::Stopped).await;
            assert_eq!(end.cause, HangupCause::normal_clearing(), "time_scale {time_scale}");
        }
    }

    #[tokio::test]
    async fn our_hang_up_reason_sets_the_cause() {
        for (reason, expected) in [
            (HangupReason::Completed, HangupCause::normal_clearing()),
            (HangupReason::Stopped, HangupCause::manager_request()),
            (HangupReason::MaxDuration, HangupCause::max_duration()),
            (HangupReason::Shutdown, HangupCause::system_shutdown()),
        ] {
            let end = session(Callee::Confirms, 0.0, None).hang_up(reason).await;
            assert_eq!(end, CallEnd { cause: expected, recorded: false, turn_latency: None });
        }
    }

    #[tokio::test]
    async fn the_call_end_carries_the_median_time_the_agent_took_to_answer() {
        let wait = Duration::from_secs(8);
        let mut call = session(Callee::Asks, 0.0, None);
        call.say("您好").await.unwrap();
        call.listen(wait).await.unwrap();
        sleep(Duration::from_millis(30)).await; // the agent thinks
        call.say("明天上午九点").await.unwrap();
        let took = call.hang_up(HangupReason::Completed).await.turn_latency.expect("one answer");
        assert!(took >= Duration::from_millis(30), "{took:?}");

        // A callee who never speaks is never answered.
        let mut silent = session(Callee::Silent, 0.0, None);
        silent.say("您好").await.unwrap();
        silent.listen(wait).await.unwrap();
        silent.say("再见").await.unwrap();
        assert_eq!(silent.hang_up(HangupReason::Completed).await.turn_latency, None);
    }

    #[tokio::test]
    async fn the_recording_carries_both_voices_with_silence_between() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai_call/2025/08/16/21/c1.wav");
        let mut call = session(Callee::Confirms, 0.1, Some(path.clone()));
        call.say("您好，请问是张先生吗？").await.unwrap();
        call.listen(Duration::from_secs(8)).await.unwrap();
        sleep(Duration::from_millis(200)).await; // a pause before we hang up
        assert!(call.hang_up(HangupReason::Completed).await.recorded);

        let (spec, samples) = wav(&path);
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (8000, 1, 16));
        // The voices: stretches without 20 ms of silence in them.
        let mut lines: Vec<Range<usize>> = Vec::new();
        for (i, _) in samples.iter().enumerate().filter(|(_, s)| **s != 0) {
            match lines.last_mut() {
                Some(line) if i - line.end < 160 => line.end = i + 1,
                _ => lines.push(i..i + 1),
            }
        }
        let [agent, callee] = &lines[..] else { panic!("{lines:?}") };
        assert!(rms(&samples[agent.clone()]) > 1000.0, "agent rms {}", rms(&samples[agent.clone()]));
        assert!(rms(&samples[callee.clone()]) > 1000.0, "callee rms {}", rms(&samples[callee.clone()]));
        // Quiet while the callee thinks and after they finish.
        assert!(samples[agent.end..callee.start].iter().all(|&s| s == 0));
        assert!(samples[callee.end..].iter().all(|&s| s == 0));
        assert!(samples.len() - callee.end >= 1600, "the 200 ms pause is recorded");
    }

    #[tokio::test]
    async fn the_recording_matches_the_wall_clock_talk_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.wav");
        let mut call = session(Callee::Asks, 0.05, Some(path.clone()));
        let answered = std::time::Instant::now();
        call.say("您好，请问是张先生吗？这里是客服中心。").await.unwrap();
        call.listen(Duration::from_secs(8)).await.unwrap();
        call.say("稍后会有专人回电。").await.unwrap();
        let talk = answered.elapsed();
        assert!(call.hang_up(HangupReason::Completed).await.recorded);

        let (_, samples) = wav(&path);
        let recorded = samples.len() as f64 / 8000.0;
        assert!((recorded - talk.as_secs_f64()).abs() < 0.05, "{recorded} s vs {talk:?}");
        assert!(rms(&samples) > 500.0);
    }

    #[tokio::test]
    async fn an_instant_call_still_writes_a_valid_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.wav");
        let mut call = session(Callee::Confirms, 0.0, Some(path.clone()));
        call.say("您好").await.unwrap();
        assert!(call.hang_up(HangupReason::Completed).await.recorded);
        let (spec, samples) = wav(&path);
        assert_eq!(spec.sample_rate, 8000);
        assert!(samples.len() < 80, "{} samples", samples.len());
    }

    #[tokio::test]
    async fn a_recording_that_cannot_be_written_is_reported_as_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let call = session(Callee::Confirms, 0.0, Some(dir.path().join("file/c1.wav")));
        let end = call.hang_up(HangupReason::Completed).await;
        assert_eq!(
            end,
            CallEnd { cause: HangupCause::normal_clearing(), recorded: false, turn_latency: None }
        );
    }

    #[tokio::test]
    async fn the_network_timer_cuts_a_call_off_unless_moved_on_and_the_call_log_says_when() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SimSettings { call_log: dir.path().join("calls.jsonl"), ..Default::default() };
        let log = SimCarrier::new(&settings).call_log.expect("the call log opens");
        let mut silent = session(Callee::Silent, 1.0, None);
        silent.log = Some((log, "13800001234".into()));
        let timer = silent.keep_alive().expect("the sim has a network timer");
        timer.keep_alive(Duration::from_millis(100)).await;
        let t = Instant::now();
        assert_eq!(silent.listen(Duration::from_millis(60)).await, Ok(Heard::Silence));
        // Moved on while the call is up: it lives 150 ms more, then the network ends it.
        timer.keep_alive(Duration::from_millis(150)).await;
        assert_eq!(silent.listen(Duration::from_secs(5)).await, Err(HungUp(HangupCause::lease_lost())));
        assert_took(t.elapsed(), 210, 210);
        // Once the network has ended it, keeping it alive brings nothing back.
        timer.keep_alive(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(silent.hang_up(HangupReason::Completed).await.cause, HangupCause::lease_lost());
        let text = std::fs::read_to_string(settings.call_log).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!((line["call_id"].as_str(), line["phone"].as_str()), (Some("c1"), Some("13800001234")));
        assert_eq!(line["ended_by"], "network_timer");
        // The end is when the network cut it off, not when we hung up 50 ms later.
        let talk = line["ended_ms"].as_i64().unwrap() - line["answered_ms"].as_i64().unwrap();
        assert!((200..240).contains(&talk), "{line}");
    }
}
