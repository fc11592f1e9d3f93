//! One answered SIP call as a `CallSession`: `say` speaks through the TTS and streams
//! the audio as RTP in real time, `listen` waits for a turn of the callee's (energy VAD)
//! and hands it to the ASR, or for a key press (`[按键 1]`), `transfer` calls a person and
//! bridges the two legs' media through this server, `hang_up` sends BYE (unless the callee
//! already did; to both legs of a bridged call) and writes the recording.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rsipstack::dialog::invite_dialog::InviteDialog;
use tokio::sync::watch;
use tokio::time::Instant;

use super::SipCarrier;
use super::rtp::{Media, Playing};
use super::timer::SessionTimer;
use super::trunks::TrunkSlot;
use crate::domain::{HangupCause, now_ms};
use crate::telephony::dtmf;
use crate::telephony::hearing::{Ear, SpokenOver};
use crate::telephony::latency::CallLatency;
use crate::telephony::tts::{self, Tts};
use crate::telephony::vad::Turn;
use crate::telephony::{
    CallEnd, CallSession, HangupReason, Heard, HungUp, KeepAlive, Said, TransferFailed, Transferred,
};

/// How long `hang_up` waits for the answer to its BYE before it lets it go on alone.
const BYE_WAIT: Duration = Duration::from_secs(2);

/// What a session speaks and hears with.
#[derive(Clone)]
pub struct Engines {
    pub tts: Arc<dyn Tts>,
    pub ear: Ear,
}

pub struct SipSession {
    call_id: String,
    dialog: InviteDialog,
    media: Option<Media>,
    /// Set (once) when the callee's side ends the call.
    ended: watch::Receiver<Option<HangupCause>>,
    engines: Engines,
    answered_at: Instant,
    hung_up: bool,
    /// RFC 4028 session timer, when the peer took one.
    timer: Option<SessionTimer>,
    /// The callee's turn that cut the last line short, for `listen` to go on with.
    barged_in: Option<Turn>,
    latency: CallLatency,
    /// The call's place on its trunk, given back when the session goes.
    _trunk: Option<TrunkSlot>,
    /// The carrier, for a transfer's second leg.
    legs: Option<SipCarrier>,
    /// After a transfer: the person's leg, bridged to this one.
    bridge: Option<Bridge>,
}

/// A person's leg bridged to the callee's: each leg's audio, as it arrives, is played to
/// the other through its paced sender (decoded and encoded again, so legs that took
/// different G.711 laws hear each other). The relays stop when either leg's media does.
struct Bridge {
    leg: Box<SipSession>,
    /// The relays, each a line that lasts as long as the audio coming; dropping them
    /// cuts them.
    _relays: [Playing; 2],
}

impl SipSession {
    pub fn new(
        call_id: String,
        dialog: InviteDialog,
        media: Media,
        ended: watch::Receiver<Option<HangupCause>>,
        engines: Engines,
        answered_at: Instant,
    ) -> SipSession {
        SipSession {
            call_id,
            dialog,
            media: Some(media),
            ended,
            engines,
            answered_at,
            hung_up: false,
            timer: None,
            barged_in: None,
            latency: CallLatency::default(),
            _trunk: None,
            legs: None,
            bridge: None,
        }
    }

    /// The carrier that placed the call: its sessions can transfer.
    pub fn with_legs(mut self, carrier: SipCarrier) -> SipSession {
        self.legs = Some(carrier);
        self
    }

    /// The call's RFC 4028 session timer, when the peer took one.
    pub fn with_timer(mut self, timer: Option<SessionTimer>) -> SipSession {
        self.timer = timer;
        self
    }

    /// The trunk the call went through: its place there is held while the session lives.
    pub fn with_trunk(mut self, slot: TrunkSlot) -> SipSession {
        self._trunk = Some(slot);
        self
    }

    fn check_line(&self) -> Result<(), HungUp> {
        match &*self.ended.borrow() {
            Some(cause) => Err(HungUp(cause.clone())),
            None => Ok(()),
        }
    }

    fn media(&mut self) -> &mut Media {
        self.media.as_mut().expect("media runs until hang_up")
    }
}

/// The callee's audio as it arrives, taken from the session's ear for a relay.
fn relayed(media: &mut Media) -> tts::Speech {
    let (_, none) = tokio::sync::mpsc::channel(1);
    let heard = std::mem::replace(&mut media.heard, none);
    futures::stream::unfold(heard, |mut heard| async move {
        let pcm = heard.recv().await?;
        Some((Ok(tts::Audio::from(pcm)), heard))
    })
    .boxed()
}

/// What the callee hears while the person's phone rings: a ringback tone as China's
/// networks play it (450 Hz, 1 s on, 4 s off), for `ring` at most.
fn ringback(ring: Duration) -> tts::Speech {
    const RATE: usize = crate::recording::SAMPLE_RATE as usize;
    let cycle: tts::Audio = (0..5 * RATE)
        .map(|n| match n < RATE {
            true => ((n as f64 * 450.0 * std::f64::consts::TAU / RATE as f64).sin() * 6000.0) as i16,
            false => 0,
        })
        .collect();
    let cycles = ring.as_secs().div_ceil(5).clamp(1, 120) as usize;
    futures::stream::iter(std::iter::repeat_n(Ok(cycle), cycles)).boxed()
}

/// Resolves when the callee's side ends the call, with its cause.
async fn callee_gone(ended: &mut watch::Receiver<Option<HangupCause>>) -> HungUp {
    let cause = match ended.wait_for(Option::is_some).await {
        Ok(cause) => cause.clone(),
        Err(_) => None,
    };
    match cause {
        Some(cause) => HungUp(cause),
        // The dialog's watcher is gone without a word: only after our own hang-up.
        None => std::future::pending().await,
    }
}

#[async_trait]
impl CallSession for SipSession {
    /// The session timer, when we are its refresher; with none (the peer does not do
    /// timers, or refreshes itself) there is nothing to keep alive.
    fn keep_alive(&self) -> Option<Arc<dyn KeepAlive>> {
        let timer = self.timer.as_ref().filter(|t| t.we_refresh())?;
        Some(Arc::new(timer.clone()))
    }

    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.check_line()?;
        let asked = Instant::now();
        let answering = self.latency.answering();
        let tts = self.engines.tts.clone();
        let mut ended = self.ended.clone();
        // The line plays as its audio comes: synthesis is over, for the latency, at its first.
        let speech = tokio::select! {
            speech = tts::first_audio(tts.as_ref(), text) => speech.unwrap_or_else(|e| {
                tracing::warn!(call_id = %self.call_id, error = %e, "sip: text to speech failed");
                tts::whole(tts::synthetic(text))
            }),
            gone = callee_gone(&mut ended) => return Err(gone),
        };
        let synthesized = Instant::now();
        let ear = self.engines.ear.clone();
        let media = self.media();
        let Playing { mut started, done: mut played, progress } = media.play(speech);
        // Listening while we speak, for the callee speaking over us.
        let mut watch = ear.watch_line(&mut media.heard);
        let cut_by = loop {
            tokio::select! {
                // An error means the sender stopped: the call is ending anyway.
                _ = &mut played => break None,
                Some(pcm) = media.heard.recv(), if watch.is_some() => {
                    if watch.as_mut().is_some_and(|w| w.push(&pcm, Instant::now())) {
                        break watch.take().map(SpokenOver::into_turn);
                    }
                }
                gone = callee_gone(&mut ended) => return Err(gone),
            }
        };
        // Dropping `played` stops the line at once: the sender takes back what it has queued.
        drop(played);
        let sent = started.try_recv().ok().map(Instant::from_std);
        if let (Some(turn), Some(sent)) = (answering, sent) {
            self.latency.answered(turn, asked, synthesized, sent);
        }
        let Some(cut_by) = cut_by else { return Ok(Said::Whole) };
        // Of the audio come so far: a line still arriving has no known length yet, and what
        // had not come could not have been heard.
        let share = progress.share();
        tracing::debug!(call_id = %self.call_id, share, "sip: the callee spoke over the agent");
        self.barged_in = Some(cut_by);
        Ok(Said::Interrupted { played: share.min(1.0) })
    }

    async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp> {
        self.check_line()?;
        let mut ended = self.ended.clone();
        let deadline = Instant::now() + max_wait;
        let ear = self.engines.ear.clone();
        let carried = self.barged_in.take();
        let media = self.media();
        // A key pressed while the agent spoke is this turn, at once.
        if let Ok(key) = media.keys.try_recv() {
            return Ok(Heard::Speech(dtmf::turn(key)));
        }
        let mut turn = ear.listen(carried, &mut media.heard);
        while let Some(wake) = turn.wake_at(deadline) {
            tokio::select! {
                frame = media.heard.recv() => match frame {
                    Some(pcm) => turn.push(&pcm, Instant::now()),
                    // The receiver stopped: nothing more will come.
                    None => tokio::time::sleep_until(wake).await,
                },
                // A key press is the turn: it ends the wait at once, and speech under way is
                // dropped (the key is the callee's deliberate answer).
                Some(key) = media.keys.recv() => return Ok(Heard::Speech(dtmf::turn(key))),
                _ = tokio::time::sleep_until(wake) => {}
                gone = callee_gone(&mut ended) => return Err(gone),
            }
        }
        let heard = tokio::select! {
            heard = turn.recognise(&self.call_id) => heard,
            gone = callee_gone(&mut ended) => return Err(gone),
        };
        let Some((text, times)) = heard else { return Ok(Heard::Silence) };
        self.latency.heard(times);
        Ok(Heard::Speech(text))
    }

    /// Calls the person (the callee hears a ringback tone meanwhile) and, once they
    /// answer, bridges the two legs; busy, no answer within `ring_timeout` or a failure
    /// leaves the callee with the agent.
    async fn transfer(&mut self, to: &str, ring_timeout: Duration) -> Result<Transferred, TransferFailed> {
        self.check_line().map_err(|HungUp(cause)| TransferFailed::CalleeGone(cause))?;
        let Some(legs) = self.legs.clone() else { return Err(TransferFailed::Unsupported) };
        let ringing = self.media().play(ringback(ring_timeout));
        let mut ended = self.ended.clone();
        let leg = tokio::select! {
            leg = legs.transfer_leg(&self.call_id, to, ring_timeout) => leg,
            HungUp(cause) = callee_gone(&mut ended) => return Err(TransferFailed::CalleeGone(cause)),
        };
        // Dropping it stops the tone where it got to.
        drop(ringing);
        let mut leg = leg.map_err(TransferFailed::NotAnswered)?;
        let to_person = relayed(self.media());
        let to_callee = relayed(leg.media());
        let relays = [leg.media().play(to_person), self.media().play(to_callee)];
        self.bridge = Some(Bridge { leg: Box::new(leg), _relays: relays });
        tracing::debug!(call_id = %self.call_id, "sip: transferred; the legs are bridged");
        Ok(Transferred { to: to.to_string(), answered_ms: now_ms() })
    }

    /// Either leg's end: the callee's, or the person's (BYE, or their media gone).
    async fn bridged(&mut self) -> HungUp {
        let Some(bridge) = &self.bridge else { return std::future::pending().await };
        let (mut callee, mut person) = (self.ended.clone(), bridge.leg.ended.clone());
        tokio::select! {
            gone = callee_gone(&mut callee) => gone,
            gone = callee_gone(&mut person) => gone,
        }
    }

    async fn hang_up(mut self: Box<Self>, reason: HangupReason) -> CallEnd {
        // The person's leg ends with the callee's (a BYE unless they hung up).
        if let Some(bridge) = self.bridge.take() {
            bridge.leg.hang_up(reason).await;
        }
        self.hung_up = true;
        let talk = self.answered_at.elapsed();
        let ended = self.ended.borrow().clone();
        let cause = match ended {
            // The callee hung up.
            Some(cause) if cause != HangupCause::media_timeout() => cause,
            // We end it: the far end's media stopped, or for `reason`.
            ended => {
                let dialog = self.dialog.clone();
                let call_id = self.call_id.clone();
                let bye = tokio::spawn(async move {
                    if let Err(e) = dialog.bye().await {
                        tracing::warn!(call_id, error = %e, "sip: BYE failed");
                    }
                });
                // Long enough for an answer on any sane network; the BYE goes on regardless.
                let _ = tokio::time::timeout(BYE_WAIT, bye).await;
                ended.unwrap_or_else(|| match reason {
                    HangupReason::Completed => HangupCause::normal_clearing(),
                    HangupReason::Stopped => HangupCause::manager_request(),
                    HangupReason::MaxDuration => HangupCause::max_duration(),
                    HangupReason::Shutdown => HangupCause::system_shutdown(),
                    HangupReason::LeaseLost => HangupCause::lease_lost(),
                })
            }
        };
        let recorded = match self.media.take() {
            Some(media) => media.stop().await.finish(talk).await.unwrap_or_else(|e| {
                tracing::warn!(call_id = %self.call_id, error = %e, "sip: could not write the recording");
                false
            }),
            None => false,
        };
        tracing::debug!(call_id = %self.call_id, %cause, ?talk, "sip: call ended");
        CallEnd { cause, recorded, turn_latency: self.latency.median() }
    }
}

impl Drop for SipSession {
    /// A session dropped without `hang_up` (a panic in the agent) still ends the call.
    fn drop(&mut self) {
        let callee_ended = self.ended.borrow().as_ref().is_some_and(|c| *c != HangupCause::media_timeout());
        if self.hung_up || callee_ended {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let dialog = self.dialog.clone();
            runtime.spawn(async move {
                let _ = dialog.bye().await;
            });
        }
    }
}
