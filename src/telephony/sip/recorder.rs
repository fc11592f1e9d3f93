//! The recording of a SIP call: two channels on one timeline from the answer, the agent
//! on the left and the callee on the right, written as an 8 kHz 16-bit stereo WAV as long
//! as the talk time.

use std::fs;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::Duration;

use crate::recording::{SAMPLE_RATE, samples_in};

/// Both sides of a call so far, in memory (32 kB a second of call).
pub struct Recorder {
    agent: Vec<i16>,
    callee: Vec<i16>,
    /// Samples never written past (a bogus RTP timestamp must not eat the memory).
    limit: usize,
}

impl Recorder {
    /// A recorder that keeps at most `limit` samples a channel.
    pub fn new(limit: usize) -> Recorder {
        Recorder { agent: Vec::new(), callee: Vec::new(), limit }
    }

    /// Lays the agent's `samples` at `at` (samples from the answer).
    pub fn agent(&mut self, at: usize, samples: &[i16]) {
        put(&mut self.agent, at, samples, self.limit);
    }

    /// Lays the callee's `samples` at `at`.
    pub fn callee(&mut self, at: usize, samples: &[i16]) {
        put(&mut self.callee, at, samples, self.limit);
    }

    pub fn channels(&self) -> (&[i16], &[i16]) {
        (&self.agent, &self.callee)
    }

    /// Interleaved stereo (agent, callee), exactly `talk` long.
    pub fn interleaved(&self, talk: Duration) -> Vec<i16> {
        let len = samples_in(talk);
        let at = |ch: &[i16], i: usize| ch.get(i).copied().unwrap_or(0);
        (0..len).flat_map(|i| [at(&self.agent, i), at(&self.callee, i)]).collect()
    }
}

fn put(channel: &mut Vec<i16>, at: usize, samples: &[i16], limit: usize) {
    let end = (at + samples.len()).min(limit);
    if at >= end {
        return;
    }
    if channel.len() < end {
        channel.resize(end, 0);
    }
    channel[at..end].copy_from_slice(&samples[..end - at]);
}

/// Writes interleaved stereo samples as a WAV at `path`, creating its directories. Like
/// `recording::write_wav`, the file appears under its name only once complete.
pub fn write_stereo_wav(path: &Path, interleaved: &[i16]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "recording path has no file name"))?;
    let tmp = path.with_file_name(format!(".{}.part", name.to_string_lossy()));
    let written = write_pcm(&tmp, interleaved).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn write_pcm(path: &Path, interleaved: &[i16]) -> io::Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io_error = |e: hound::Error| match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    };
    let file = BufWriter::new(fs::File::create(path)?);
    let mut wav = hound::WavWriter::new(file, spec).map_err(io_error)?;
    let mut pcm = wav.get_i16_writer(interleaved.len() as u32);
    for &s in interleaved {
        pcm.write_sample(s);
    }
    pcm.flush().map_err(io_error)?;
    wav.finalize().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_land_at_their_place_and_the_length_is_the_talk_time() {
        let mut r = Recorder::new(100_000);
        r.agent(0, &[1; 160]);
        r.callee(8000, &[2; 160]);
        r.callee(8080, &[3; 160]); // a late packet overlapping the last: the newer wins
        let stereo = r.interleaved(Duration::from_secs(2));
        assert_eq!(stereo.len(), 2 * 16_000);
        assert_eq!((stereo[0], stereo[1]), (1, 0));
        assert_eq!((stereo[2 * 8000], stereo[2 * 8000 + 1]), (0, 2));
        assert_eq!(stereo[2 * 8100 + 1], 3);
        assert_eq!(stereo[2 * 8300 + 1], 0);

        // Shorter than what was heard: cut to the talk time.
        assert_eq!(r.interleaved(Duration::from_millis(500)).len(), 2 * 4000);
    }

    #[test]
    fn nothing_is_kept_past_the_limit() {
        let mut r = Recorder::new(1000);
        r.callee(900, &[5; 160]);
        r.callee(5_000_000, &[5; 160]);
        assert_eq!(r.channels().1.len(), 1000);
    }

    #[test]
    fn the_wav_is_stereo_8khz_16_bit_and_leaves_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai_call/2025/08/16/21/x.wav");
        write_stereo_wav(&path, &[1, 2, 3, 4]).unwrap();
        let mut wav = hound::WavReader::open(&path).unwrap();
        let spec = wav.spec();
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (8000, 2, 16));
        assert_eq!(wav.samples::<i16>().map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let names: Vec<_> =
            fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.wav"]);
    }
}
