//! Energy-based voice activity detection for `listen`: a turn starts when a few frames in
//! a row are louder than the threshold, and ends after a stretch of quiet.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How a turn is found.
#[derive(Debug, Clone, Copy)]
pub struct VadParams {
    /// RMS (16-bit scale) above which a frame counts as speech.
    pub threshold: f64,
    /// Quiet that ends a turn.
    pub silence: Duration,
    /// Loud frames in a row that start a turn (a click or a cough is shorter).
    pub min_voiced_frames: usize,
}

/// Audio kept from before the turn started, so its first syllable is not cut.
const PREROLL_FRAMES: usize = 10;

/// One turn of the callee's, fed frame by frame as they arrive.
#[derive(Debug)]
pub struct Turn {
    params: VadParams,
    preroll: VecDeque<Vec<i16>>,
    voiced_run: usize,
    /// The turn's audio from the preroll on; empty until it starts.
    audio: Vec<i16>,
    started: bool,
    /// Where the speech itself starts in `audio` (after the preroll).
    speech_start: usize,
    /// Where the last loud frame ends in `audio`.
    voiced_end: usize,
    last_voiced_at: Option<Instant>,
}

impl Turn {
    pub fn new(params: VadParams) -> Turn {
        Turn {
            params,
            preroll: VecDeque::new(),
            voiced_run: 0,
            audio: Vec::new(),
            started: false,
            speech_start: 0,
            voiced_end: 0,
            last_voiced_at: None,
        }
    }

    /// Takes a frame that arrived at `now`.
    pub fn push(&mut self, pcm: &[i16], now: Instant) {
        let voiced = rms(pcm) >= self.params.threshold;
        if self.started {
            self.audio.extend_from_slice(pcm);
            if voiced {
                self.voiced_end = self.audio.len();
                self.last_voiced_at = Some(now);
            }
            return;
        }
        self.voiced_run = if voiced { self.voiced_run + 1 } else { 0 };
        self.preroll.push_back(pcm.to_vec());
        if self.voiced_run >= self.params.min_voiced_frames.max(1) {
            self.started = true;
            let run_frames = self.voiced_run.min(self.preroll.len());
            let before = self.preroll.len() - run_frames;
            self.speech_start = self.preroll.iter().take(before).map(Vec::len).sum();
            self.audio = self.preroll.drain(..).flatten().collect();
            self.voiced_end = self.audio.len();
            self.last_voiced_at = Some(now);
        } else {
            while self.preroll.len() > PREROLL_FRAMES + self.voiced_run {
                self.preroll.pop_front();
            }
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The turn's audio so far, from the preroll on; empty until it starts.
    pub fn audio(&self) -> &[i16] {
        &self.audio
    }

    /// How long the callee has spoken so far: from the first loud frame to the last.
    pub fn speech(&self) -> Duration {
        let samples = if self.started { self.voiced_end.saturating_sub(self.speech_start) } else { 0 };
        Duration::from_secs_f64(samples as f64 / 8000.0)
    }

    /// When the callee last spoke (a loud frame arrived).
    pub fn last_voiced_at(&self) -> Option<Instant> {
        self.last_voiced_at
    }

    /// When the turn ends unless the callee speaks again.
    pub fn ends_at(&self) -> Option<Instant> {
        self.last_voiced_at.map(|t| t + self.params.silence)
    }

    pub fn is_over(&self, now: Instant) -> bool {
        self.ends_at().is_some_and(|end| now >= end)
    }

    /// The turn's audio (up to its last loud frame) and the length of its speech, or
    /// `None` if nobody spoke.
    pub fn finish(mut self) -> Option<(Vec<i16>, Duration)> {
        if !self.started {
            return None;
        }
        let speech = self.speech();
        self.audio.truncate(self.voiced_end);
        Some((self.audio, speech))
    }
}

pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: VadParams =
        VadParams { threshold: 400.0, silence: Duration::from_millis(700), min_voiced_frames: 3 };

    fn loud() -> Vec<i16> {
        (0..160).map(|i| if i % 2 == 0 { 3000 } else { -3000 }).collect()
    }

    fn quiet() -> Vec<i16> {
        vec![20; 160]
    }

    /// Feeds frames 20 ms apart from `t0`; returns the time after the last.
    fn feed(turn: &mut Turn, frames: &[Vec<i16>], t0: Instant) -> Instant {
        let mut t = t0;
        for f in frames {
            turn.push(f, t);
            t += Duration::from_millis(20);
        }
        t
    }

    #[test]
    fn quiet_line_noise_is_no_turn() {
        let mut turn = Turn::new(PARAMS);
        feed(&mut turn, &vec![quiet(); 100], Instant::now());
        assert!(!turn.started());
        assert!(turn.finish().is_none());
    }

    #[test]
    fn a_click_shorter_than_the_minimum_is_no_turn() {
        let mut turn = Turn::new(PARAMS);
        feed(&mut turn, &[quiet(), loud(), loud(), quiet(), loud(), quiet()], Instant::now());
        assert!(!turn.started());
    }

    #[test]
    fn a_turn_ends_after_the_silence_and_measures_its_speech() {
        let t0 = Instant::now();
        let mut turn = Turn::new(PARAMS);
        let mut frames = vec![quiet(); 20];
        frames.extend(vec![loud(); 50]); // one second of speech
        let t = feed(&mut turn, &frames, t0);
        assert!(turn.started());
        let last_loud = t - Duration::from_millis(20);
        assert_eq!(turn.ends_at(), Some(last_loud + Duration::from_millis(700)));
        let t = feed(&mut turn, &vec![quiet(); 20], t);
        assert!(!turn.is_over(t), "400 ms of quiet is a pause, not the end");
        assert!(turn.is_over(last_loud + Duration::from_millis(700)));

        let (audio, speech) = turn.finish().unwrap();
        assert_eq!(speech, Duration::from_secs(1));
        // The preroll (10 quiet frames) is kept for the recogniser, the trailing quiet is not.
        assert_eq!(audio.len(), 160 * 60);
    }

    #[test]
    fn speaking_again_within_the_silence_continues_the_turn() {
        let t0 = Instant::now();
        let mut turn = Turn::new(PARAMS);
        let mut frames = vec![loud(); 10];
        frames.extend(vec![quiet(); 25]); // a 500 ms pause
        frames.extend(vec![loud(); 10]);
        let t = feed(&mut turn, &frames, t0);
        assert!(!turn.is_over(t));
        let (_, speech) = turn.finish().unwrap();
        assert_eq!(speech, Duration::from_millis(900));
    }
}
