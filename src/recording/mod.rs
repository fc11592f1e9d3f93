//! Call recordings: where a WAV goes, how it is written (whole, or streamed as the call
//! goes: `streamed`), and a speech-like synthetic voice for carriers that have no real
//! audio (the sim).

mod streamed;

pub use streamed::{StreamedWav, recover};

use std::f32::consts::TAU;
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::DateTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The `[recordings]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSettings {
    pub dir: PathBuf,
    /// Answered calls in a row without a recording after which /readyz says
    /// `recordings: failing`.
    pub failing_after: u32,
    /// Whether /readyz also answers 503 while recordings are failing (off: calls go on
    /// without recordings, and only the readiness data and the metric say so).
    pub unready_when_failing: bool,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings { dir: "data/recordings".into(), failing_after: 3, unready_when_failing: false }
    }
}

/// Telephone-band audio: 8 kHz mono, 16-bit PCM.
pub const SAMPLE_RATE: u32 = 8000;

/// The recording's path under `recordings.dir`, as the anchor system lays it out:
/// `ai_call/yyyy/MM/dd/HH/<uuid>.wav`, by the local time the call was placed.
pub fn relative_path(call_id: &str, callout_local: DateTime<Tz>) -> String {
    format!("ai_call/{}/{call_id}.wav", callout_local.format("%Y/%m/%d/%H"))
}

/// Whether answered calls' recordings are being written: the failures in a row, for
/// readiness (a full or read-only disk shows there, not only in the log).
#[derive(Debug, Default)]
pub struct RecordingHealth {
    failures_in_a_row: AtomicU32,
}

impl RecordingHealth {
    /// An answered call's recording was written, or not.
    pub fn note(&self, written: bool) {
        if written {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            crate::metrics::recording_failed();
        }
    }

    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row.load(Ordering::Relaxed)
    }
}

/// Writes `samples` as an 8 kHz mono 16-bit WAV at `path`, creating its directories.
/// The file appears under its name only once complete (written aside, then renamed), so
/// a player fetching it early gets a 404 rather than half a file.
pub fn write_wav(path: &Path, samples: &[i16]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path)?;
    let written = write_pcm(&tmp, samples).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// `.<name>.part` beside the target: same directory, so the rename is atomic.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "recording path has no file name"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".part");
    Ok(path.with_file_name(tmp))
}

fn write_pcm(path: &Path, samples: &[i16]) -> io::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::new(BufWriter::new(fs::File::create(path)?), spec).map_err(io_error)?;
    let mut pcm = wav.get_i16_writer(samples.len() as u32);
    for &s in samples {
        pcm.write_sample(s);
    }
    pcm.flush().map_err(io_error)?;
    wav.finalize().map_err(io_error)
}

fn io_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    }
}

/// The number of samples in `d` at [`SAMPLE_RATE`].
pub fn samples_in(d: Duration) -> usize {
    (d.as_secs_f64() * SAMPLE_RATE as f64).round() as usize
}

/// `len` samples of a synthetic voice saying `syllables` syllables: a voiced source at
/// about `pitch_hz` with a falling, wavering intonation, vowel-like harmonic colouring
/// that changes per syllable, and a syllable-rate envelope with short gaps. It sounds
/// like someone talking (in the spectrum and to the ear) rather than a beep.
pub fn synth_speech(syllables: usize, len: usize, pitch_hz: f32) -> Vec<i16> {
    const HARMONICS: usize = 8;
    // First formants of a few vowels (a, e, i, o, u), cycled through syllable by syllable.
    const FORMANTS: [f32; 5] = [750.0, 500.0, 300.0, 450.0, 350.0];
    const PEAK: f32 = 0.3 * i16::MAX as f32;

    let syllables = syllables.max(1);
    let mut out = Vec::with_capacity(len);
    let mut phase = 0.0f32;
    let mut weights = [0.0f32; HARMONICS];
    let mut current = usize::MAX;
    for i in 0..len {
        let progress = i as f32 / len as f32;
        let t = progress * syllables as f32;
        let syllable = (t as usize).min(syllables - 1);
        let within = t - syllable as f32;

        // Each syllable its own tone, the utterance drifting down as statements do.
        let tone = 1.0 + 0.12 * (syllable as f32 * 2.39).sin() + 0.04 * (within * TAU).sin();
        let f0 = pitch_hz * tone * (1.0 - 0.15 * progress);
        phase = (phase + TAU * f0 / SAMPLE_RATE as f32) % TAU;

        if syllable != current {
            current = syllable;
            let formant = FORMANTS[(syllable * 3 + syllable / 2) % FORMANTS.len()];
            for (k, w) in weights.iter_mut().enumerate() {
                let freq = (k + 1) as f32 * pitch_hz;
                *w = 0.5 / (k + 1) as f32 + 1.0 / (1.0 + ((freq - formant) / 150.0).powi(2));
            }
            let total: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
        }
        let voiced: f32 = weights.iter().enumerate().map(|(k, w)| w * ((k + 1) as f32 * phase).sin()).sum();

        // Rise and fall within the syllable, then a short gap before the next one.
        let envelope = if within < 0.85 { (std::f32::consts::PI * within / 0.85).sin().sqrt() } else { 0.0 };
        out.push((voiced * envelope * PEAK) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn relative_path_follows_the_anchor_layout_in_local_time() {
        let tz = chrono_tz::Asia::Shanghai;
        let placed = tz.with_ymd_and_hms(2025, 8, 6, 9, 5, 7).unwrap();
        assert_eq!(
            relative_path("2508060905070110001", placed),
            "ai_call/2025/08/06/09/2508060905070110001.wav"
        );
    }

    #[test]
    fn written_wav_reads_back_as_8khz_mono_16_bit_with_the_same_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai_call/2025/08/06/09/x.wav");
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        write_wav(&path, &samples).unwrap();

        let mut wav = hound::WavReader::open(&path).unwrap();
        let spec = wav.spec();
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (8000, 1, 16));
        let back: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
    }

    #[test]
    fn an_empty_recording_is_still_a_valid_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.wav");
        write_wav(&path, &[]).unwrap();
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 0);
    }

    #[test]
    fn writing_leaves_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        write_wav(&dir.path().join("a.wav"), &[1, 2, 3]).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.wav"]);
    }

    #[test]
    fn writing_where_a_directory_cannot_be_made_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(write_wav(&dir.path().join("file/a.wav"), &[1]).is_err());
        assert!(!dir.path().join("file/a.wav").exists());
    }

    #[test]
    fn synthetic_speech_is_loud_enough_and_not_a_steady_tone() {
        let speech = synth_speech(10, samples_in(Duration::from_millis(2500)), 120.0);
        assert_eq!(speech.len(), 20_000);
        assert!(rms(&speech) > 1000.0, "rms {}", rms(&speech));
        // Syllables: some 20 ms windows are near-silent gaps, others are voiced.
        let windows: Vec<f64> = speech.chunks(160).map(rms).collect();
        assert!(windows.iter().any(|&w| w < 200.0));
        assert!(windows.iter().filter(|&&w| w > 1500.0).count() > windows.len() / 2);
    }

    #[test]
    fn synthetic_speech_fits_any_length_including_none() {
        assert!(synth_speech(5, 0, 220.0).is_empty());
        assert_eq!(synth_speech(0, 3, 220.0).len(), 3);
        assert_eq!(synth_speech(50, 7, 220.0).len(), 7);
    }
}
