//! The recording of a SIP call: two channels on one timeline from the answer, the agent
//! on the left and the callee on the right, an 8 kHz 16-bit stereo WAV as long as the talk
//! time, streamed to disk as the call goes.
//!
//! The callee's audio is placed by its RTP timestamps, so a late or reordered packet
//! still lands where it belongs: the last [`WINDOW`] of both channels is held in memory
//! for that, and what is older goes to the file, [`CHUNK`] at a time. A call's memory is
//! the window and a chunk, whatever its length.

use std::path::Path;
use std::time::Duration;

use crate::recording::{StreamedWav, samples_in};

/// How late a packet may be and still be recorded in its place: 400 ms.
const WINDOW: usize = 3200;
/// Written out at a time: 200 ms.
const CHUNK: usize = 1600;

/// Both sides of a call, the last moments in memory and the rest on disk.
pub struct Recorder {
    wav: Option<StreamedWav>,
    /// The first sample not yet written out, on both channels.
    base: usize,
    /// Each channel from `base` on.
    agent: Vec<i16>,
    callee: Vec<i16>,
    /// Samples never recorded past (the longest call: a bogus RTP timestamp must not make
    /// a recording of days).
    limit: usize,
}

impl Recorder {
    /// Records to `path` (nothing with `None`), at most `limit` samples a channel.
    pub fn new(path: Option<&Path>, limit: usize) -> Recorder {
        let wav = path.and_then(|path| StreamedWav::create(path, 2));
        Recorder { wav, base: 0, agent: Vec::new(), callee: Vec::new(), limit }
    }

    /// Lays the agent's `samples` at `at` (samples from the answer).
    pub fn agent(&mut self, at: usize, samples: &[i16]) {
        self.put(Side::Agent, at, samples);
    }

    /// Lays the callee's `samples` at `at`.
    pub fn callee(&mut self, at: usize, samples: &[i16]) {
        self.put(Side::Callee, at, samples);
    }

    /// Audio held in memory, in samples of both channels (at most the window and a chunk
    /// each).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.agent.capacity() + self.callee.capacity()
    }

    fn put(&mut self, side: Side, at: usize, samples: &[i16]) {
        let end = (at + samples.len()).min(self.limit);
        // Too late for the window, or past the limit.
        if end <= at.max(self.base) {
            return;
        }
        if end > self.base + WINDOW + CHUNK {
            self.write_until(end - WINDOW);
        }
        let from = at.max(self.base);
        let channel = match side {
            Side::Agent => &mut self.agent,
            Side::Callee => &mut self.callee,
        };
        let (start, stop) = (from - self.base, end - self.base);
        if channel.len() < stop {
            channel.resize(stop, 0);
        }
        // A packet overlapping one before it: the newer wins.
        channel[start..stop].copy_from_slice(&samples[from - at..end - at]);
    }

    /// Writes out both channels up to sample `upto` (interleaved); silence is not
    /// written, the file has it already.
    fn write_until(&mut self, upto: usize) {
        let n = upto.saturating_sub(self.base);
        let take = |channel: &mut Vec<i16>| channel.drain(..n.min(channel.len())).collect::<Vec<_>>();
        let (agent, callee) = (take(&mut self.agent), take(&mut self.callee));
        let len = agent.len().max(callee.len());
        if let Some(wav) = &self.wav
            && agent.iter().chain(&callee).any(|&s| s != 0)
        {
            let at = |ch: &[i16], i: usize| ch.get(i).copied().unwrap_or(0);
            let stereo: Vec<i16> = (0..len).flat_map(|i| [at(&agent, i), at(&callee, i)]).collect();
            wav.write_at(self.base, &stereo);
        }
        self.base += n;
    }

    /// Ends the recording exactly `talk` long; whether it was written. Nothing is written
    /// for a recorder without a file.
    pub async fn finish(mut self, talk: Duration) -> std::io::Result<bool> {
        let frames = samples_in(talk);
        self.write_until(frames.max(self.base + self.agent.len().max(self.callee.len())));
        match self.wav.take() {
            Some(wav) => wav.finish(frames).await.map(|()| true),
            None => Ok(false),
        }
    }
}

enum Side {
    Agent,
    Callee,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path).unwrap().samples::<i16>().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn both_sides_land_at_their_place_and_the_length_is_the_talk_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai_call/2025/08/16/21/x.wav");
        let mut r = Recorder::new(Some(&path), 100_000);
        r.agent(0, &[1; 160]);
        r.callee(8000, &[2; 160]);
        r.callee(8080, &[3; 160]); // a late packet overlapping the last: the newer wins
        assert!(r.finish(Duration::from_secs(2)).await.unwrap());
        let stereo = samples(&path);
        assert_eq!(stereo.len(), 2 * 16_000);
        assert_eq!((stereo[0], stereo[1]), (1, 0));
        assert_eq!((stereo[2 * 8000], stereo[2 * 8000 + 1]), (0, 2));
        assert_eq!(stereo[2 * 8100 + 1], 3);
        assert_eq!(stereo[2 * 8300 + 1], 0);

        // Shorter than what was heard: cut to the talk time.
        let path = dir.path().join("y.wav");
        let mut r = Recorder::new(Some(&path), 100_000);
        r.agent(0, &[1; 8000]);
        assert!(r.finish(Duration::from_millis(500)).await.unwrap());
        assert_eq!(samples(&path).len(), 2 * 4000);
    }

    #[tokio::test]
    async fn a_long_call_holds_only_the_window_in_memory_and_late_packets_land_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        let mut r = Recorder::new(Some(&path), 8000 * 3600);
        let mut most = 0;
        // Ten minutes: the agent every 20 ms, the callee's packets arriving 60 ms late and
        // out of order in pairs.
        for frame in 0..30_000usize {
            r.agent(frame * 160, &[frame as i16 % 100 + 1; 160]);
            if frame >= 4 && frame % 2 == 0 {
                r.callee((frame - 2) * 160, &[2; 160]);
                r.callee((frame - 3) * 160, &[2; 160]);
            }
            most = most.max(r.buffered());
        }
        assert!(most * 2 <= 64 * 1024, "{most} samples held: more than 64 kB");
        assert!(r.finish(Duration::from_secs(600)).await.unwrap());
        let stereo = samples(&path);
        assert_eq!(stereo.len(), 2 * 8000 * 600);
        let callee_silent = (0..stereo.len() / 2 - 160 * 4).filter(|i| stereo[2 * i + 1] != 2).count();
        assert_eq!(callee_silent, 160, "every late packet in its place (the first frame was never sent)");
        assert_eq!(stereo[2 * 160 * 12_345], 12_345 % 100 + 1);
    }

    #[tokio::test]
    async fn nothing_is_kept_past_the_limit_and_far_jumps_hold_no_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.wav");
        let mut r = Recorder::new(Some(&path), 8000);
        r.callee(7900, &[5; 160]);
        r.callee(5_000_000, &[5; 160]);
        assert!(r.buffered() <= 2 * (WINDOW + CHUNK + 160));
        assert!(r.finish(Duration::from_secs(1)).await.unwrap());
        let stereo = samples(&path);
        assert_eq!(stereo[2 * 7999 + 1], 5);
        assert_eq!(stereo.len(), 16_000);
    }

    #[tokio::test]
    async fn without_a_path_nothing_is_written() {
        let mut r = Recorder::new(None, 8000);
        r.agent(0, &[1; 160]);
        assert!(!r.finish(Duration::from_secs(1)).await.unwrap());
    }
}
