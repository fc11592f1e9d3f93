//! The ear that the carriers carrying the call's audio share (SIP's RTP, FreeSWITCH's
//! audio stream): the callee's turns found by the VAD in 8 kHz frames as they arrive,
//! streamed to the recogniser while spoken, their text (or `[语音 N秒]` when the recogniser
//! fails), and barge-in, the callee speaking over a line. Each carrier keeps its own wait
//! loop (what else can end a turn differs: RTP key presses, event-socket events) and hands
//! every frame to these.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::asr::{self, Asr, AsrSettings, AsrStream};
use super::latency::TurnTimes;
use super::vad::{Turn, VadParams};

/// What a carrier hears with.
#[derive(Clone)]
pub struct Ear {
    pub asr: Arc<dyn Asr>,
    pub vad: VadParams,
    /// Barge-in: the callee speaking this long over a line stops it. `None`: lines play
    /// to their end, and what is said over them is not heard.
    pub barge_in: Option<Duration>,
}

impl Ear {
    /// The ear `[asr]` describes; `barge_in` is `agent.barge_in`'s minimum speech.
    pub fn new(settings: &AsrSettings, barge_in: Option<Duration>) -> Ear {
        Ear { asr: asr::recogniser(settings), vad: settings.vad(), barge_in }
    }

    /// A turn to listen for in `audio`: `carried` is the turn that cut the last line
    /// short, which goes on; without one, the turn starts fresh, and what the callee said
    /// before now (while the agent spoke) is dropped: it is no answer to what was said. A
    /// streaming recogniser connects now and hears the turn from its first frame (the
    /// preroll) on.
    pub fn listen(&self, carried: Option<Turn>, audio: &mut mpsc::Receiver<Vec<i16>>) -> Listening {
        if carried.is_none() {
            while audio.try_recv().is_ok() {}
        }
        let mut listening = Listening {
            turn: carried.unwrap_or_else(|| Turn::new(self.vad)),
            stream: self.asr.stream(),
            streamed: 0,
            asr: self.asr.clone(),
        };
        listening.stream_on();
        listening
    }

    /// Watches a line that starts now for the callee speaking over it (what they said
    /// before it is dropped); `None` when barge-in is off.
    pub fn watch_line(&self, audio: &mut mpsc::Receiver<Vec<i16>>) -> Option<SpokenOver> {
        let least = self.barge_in?;
        while audio.try_recv().is_ok() {}
        Some(SpokenOver { turn: Turn::new(self.vad), least })
    }
}

/// One turn being listened for.
pub struct Listening {
    turn: Turn,
    stream: Option<Box<dyn AsrStream>>,
    streamed: usize,
    asr: Arc<dyn Asr>,
}

impl Listening {
    /// A frame of the callee's audio that arrived at `now`.
    pub fn push(&mut self, pcm: &[i16], now: Instant) {
        self.turn.push(pcm, now);
        self.stream_on();
    }

    fn stream_on(&mut self) {
        let audio = self.turn.audio();
        if let Some(stream) = self.stream.as_mut().filter(|_| audio.len() > self.streamed) {
            stream.push(&audio[self.streamed..]);
            self.streamed = audio.len();
        }
    }

    /// When to look again, unless a frame comes first: when the turn ends unless the
    /// callee speaks on, or the wait does. `None`: the turn, or the wait, is over.
    pub fn wake_at(&self, deadline: Instant) -> Option<Instant> {
        let now = Instant::now();
        if now >= deadline || self.turn.is_over(now) {
            return None;
        }
        Some(self.turn.ends_at().map_or(deadline, |end| end.min(deadline)))
    }

    /// The turn has ended (or the wait): its text and when its steps happened, or `None`
    /// if the callee said nothing. A recogniser that fails or hears nothing gives the
    /// turn's length instead, `[语音 N秒]`, with a warning and a metric.
    pub async fn recognise(self, call_id: &str) -> Option<(String, TurnTimes)> {
        let turn_end = Instant::now();
        let speech_end = self.turn.last_voiced_at().unwrap_or(turn_end);
        let (pcm, speech) = self.turn.finish()?;
        let text = match self.stream {
            Some(stream) => stream.finish().await,
            None => self.asr.recognize(&pcm, speech).await,
        };
        let text = match text {
            Ok(text) if !text.is_empty() => text,
            Ok(_) => asr::placeholder(speech),
            Err(e) => {
                let engine = self.asr.engine();
                tracing::warn!(call_id, engine, error = %e, "speech recognition failed: the turn is heard as its length");
                crate::metrics::asr_failed(engine);
                asr::placeholder(speech)
            }
        };
        tracing::debug!(call_id, %text, ?speech, "heard");
        Some((text, TurnTimes { speech_end, turn_end, recognised: Instant::now() }))
    }
}

/// The callee's speech over a line being spoken.
pub struct SpokenOver {
    turn: Turn,
    least: Duration,
}

impl SpokenOver {
    /// A frame that arrived at `now`; true once the callee has spoken long enough over the
    /// line to stop it (a cough or a click is shorter).
    pub fn push(&mut self, pcm: &[i16], now: Instant) -> bool {
        self.turn.push(pcm, now);
        self.turn.speech() >= self.least
    }

    /// The callee's turn so far, for the next `listen` to go on with.
    pub fn into_turn(self) -> Turn {
        self.turn
    }
}
