//! Text to speech for `say`: the `Tts` trait, the engines that ship (espeak-ng, any
//! command that writes a WAV, and a synthetic placeholder voice), WAV reading and a
//! resampler to the line's 8 kHz.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::recording::{SAMPLE_RATE, synth_speech};

/// Speaks text. Implement it to plug in a cloud or local TTS service; the SIP carrier
/// takes any `Arc<dyn Tts>` (`SipCarrier::with_engines`).
#[async_trait]
pub trait Tts: Send + Sync + 'static {
    /// `text` as 8 kHz mono 16-bit PCM.
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("`{program}` is not installed (apt-get install espeak-ng, or set sip.tts_engine)")]
    NotInstalled { program: String },
    #[error("`{program}` failed: {detail}")]
    Failed { program: String, detail: String },
    #[error("could not read the synthesized audio: {0}")]
    Audio(String),
}

/// `sip.tts_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtsEngine {
    /// `espeak-ng` from the PATH.
    Espeak,
    /// `sip.tts_command`: any program that writes a WAV.
    Command,
    /// A speech-like synthetic voice (no words): for tests and demos without a TTS.
    Synthetic,
}

/// espeak-ng (Debian: `apt-get install espeak-ng`), text on its standard input, the WAV
/// (22.05 kHz) written to a temporary file and resampled.
pub struct Espeak {
    pub program: String,
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
}

#[async_trait]
impl Tts for Espeak {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        let wav = TempWav::new();
        let args = [
            "-v".to_string(),
            self.voice.clone(),
            "-s".to_string(),
            self.speed.to_string(),
            "-w".to_string(),
            wav.path.display().to_string(),
            "--stdin".to_string(),
        ];
        run(&self.program, &args, Some(text)).await?;
        read_wav_8k(wav.path.clone()).await
    }
}

/// A program run per prompt: `{text}` in its arguments becomes the text and `{wav}` the
/// file it must write (any rate, any channels, 16-bit or float). Without `{text}` the
/// text goes to its standard input.
pub struct CommandTts {
    pub argv: Vec<String>,
}

#[async_trait]
impl Tts for CommandTts {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(TtsError::Failed {
                program: String::new(),
                detail: "sip.tts_command is empty".into(),
            });
        };
        let wav = TempWav::new();
        let wav_arg = wav.path.display().to_string();
        let takes_text = args.iter().any(|a| a.contains("{text}"));
        let args: Vec<String> =
            args.iter().map(|a| a.replace("{wav}", &wav_arg).replace("{text}", text)).collect();
        run(program, &args, (!takes_text).then_some(text)).await?;
        read_wav_8k(wav.path.clone()).await
    }
}

/// The sim's synthetic voice, about 4 syllables a second: no words, but the length and
/// the sound of speech.
pub struct Synthetic;

#[async_trait]
impl Tts for Synthetic {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        Ok(synthetic(text))
    }
}

pub fn synthetic(text: &str) -> Vec<i16> {
    let syllables = text.chars().filter(|c| c.is_alphanumeric()).count().max(1);
    synth_speech(syllables, syllables * SAMPLE_RATE as usize / 4, 120.0)
}

/// A TTS that falls back to the synthetic voice when its engine fails, so that a call
/// still hears something of the right length; the first failure is logged as an error,
/// later ones as warnings.
pub struct WithFallback {
    pub primary: Arc<dyn Tts>,
    logged: AtomicBool,
}

impl WithFallback {
    pub fn new(primary: Arc<dyn Tts>) -> WithFallback {
        WithFallback { primary, logged: AtomicBool::new(false) }
    }
}

#[async_trait]
impl Tts for WithFallback {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        match self.primary.synthesize(text).await {
            Ok(pcm) => Ok(pcm),
            Err(e) => {
                if self.logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "sip: text to speech failed; playing the synthetic voice");
                } else {
                    tracing::error!(
                        error = %e,
                        "sip: text to speech failed; playing a synthetic placeholder voice instead \
                         (the callee hears no words until this is fixed)"
                    );
                }
                Ok(synthetic(text))
            }
        }
    }
}

/// Whether `program` can be started (`--version`), for the warning at start.
pub fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

async fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<(), TtsError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TtsError::NotInstalled { program: program.to_string() },
        _ => TtsError::Failed { program: program.to_string(), detail: e.to_string() },
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| TtsError::Failed { program: program.to_string(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        return Err(TtsError::Failed { program: program.to_string(), detail });
    }
    Ok(())
}

/// A temporary WAV path, removed when dropped.
struct TempWav {
    path: PathBuf,
}

impl TempWav {
    fn new() -> TempWav {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "callcenter-tts-{}-{}-{}.wav",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        TempWav { path: std::env::temp_dir().join(name) }
    }
}

impl Drop for TempWav {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn read_wav_8k(path: PathBuf) -> Result<Vec<i16>, TtsError> {
    tokio::task::spawn_blocking(move || read_wav(&path))
        .await
        .map_err(|e| TtsError::Audio(e.to_string()))?
        .map(|(pcm, rate)| resample(&pcm, rate, SAMPLE_RATE))
}

/// Reads any PCM WAV as mono 16-bit (channels averaged) and its sample rate.
pub fn read_wav(path: &Path) -> Result<(Vec<i16>, u32), TtsError> {
    let reader = hound::WavReader::open(path).map_err(|e| TtsError::Audio(e.to_string()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().map(|s| s.unwrap_or(0.0)).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample - 1)) as f32;
            reader.into_samples::<i32>().map(|s| s.unwrap_or(0) as f32 * scale).collect()
        }
    };
    let mono = samples
        .chunks(channels)
        .map(|frame| {
            let v = frame.iter().sum::<f32>() / channels as f32;
            (v * 32767.0).clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    Ok((mono, spec.sample_rate))
}

/// Band-limited resampling (windowed sinc, Blackman window, 16 zero crossings a side),
/// good enough for speech and cheap at telephone rates.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    const ZEROS: f64 = 16.0;
    let ratio = f64::from(to) / f64::from(from);
    // Below both Nyquist frequencies, with a little room for the filter's slope.
    let cutoff = ratio.min(1.0) * 0.92;
    let half = (ZEROS / cutoff).ceil() as i64;
    let out_len = (input.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for j in 0..out_len {
        let t = j as f64 / ratio;
        let center = t.floor() as i64;
        let (mut acc, mut norm) = (0.0, 0.0);
        for k in (center - half + 1)..=(center + half) {
            if k < 0 || k as usize >= input.len() {
                continue;
            }
            let x = t - k as f64;
            let w = x / half as f64;
            if w.abs() >= 1.0 {
                continue;
            }
            let window =
                0.42 + 0.5 * (std::f64::consts::PI * w).cos() + 0.08 * (2.0 * std::f64::consts::PI * w).cos();
            let arg = std::f64::consts::PI * cutoff * x;
            let sinc = if arg.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
            let weight = sinc * window;
            acc += f64::from(input[k as usize]) * weight;
            norm += weight;
        }
        let v = if norm.abs() > 1e-9 { acc / norm } else { 0.0 };
        out.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    }

    #[test]
    fn resampling_keeps_the_length_and_a_tone_in_the_band() {
        let input = tone(440.0, 22050, 1.0);
        let out = resample(&input, 22050, 8000);
        assert_eq!(out.len(), 8000);
        let level = rms(&out[200..7800]);
        assert!((level - 7071.0).abs() < 300.0, "rms {level}");
        // Zero crossings of 440 Hz: 880 a second.
        let crossings = out.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((860..=900).contains(&crossings), "{crossings}");
    }

    #[test]
    fn resampling_removes_what_the_line_cannot_carry() {
        // 6 kHz is above the 4 kHz Nyquist frequency of the line: it must not alias in.
        let out = resample(&tone(6000.0, 22050, 0.5), 22050, 8000);
        assert!(rms(&out[200..3800]) < 300.0, "rms {}", rms(&out[200..3800]));
    }

    #[test]
    fn the_same_rate_is_left_alone() {
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_missing_program_says_it_is_not_installed() {
        let tts = Espeak { program: "no-such-tts-program".into(), voice: "cmn".into(), speed: 160 };
        let err = tts.synthesize("你好").await.unwrap_err();
        assert!(matches!(err, TtsError::NotInstalled { .. }), "{err}");
        assert!(err.to_string().contains("not installed"));
    }

    #[tokio::test]
    async fn the_fallback_plays_the_synthetic_voice_for_about_the_text_length() {
        let tts = WithFallback::new(Arc::new(CommandTts { argv: vec!["no-such-tts-program".into()] }));
        let pcm = tts.synthesize("一二三四五六七八").await.unwrap();
        assert_eq!(pcm.len(), 16000);
        assert!(rms(&pcm) > 1000.0);
    }

    #[tokio::test]
    async fn a_command_tts_gets_the_text_and_its_wav_is_read_back_at_8khz() {
        if !installed("sox") {
            eprintln!("sox not installed; skipped");
            return;
        }
        // sox writes one second of a 16 kHz stereo tone wherever {wav} says.
        let argv = ["sox", "-n", "-r", "16000", "-c", "2", "-b", "16", "{wav}", "synth", "1", "sine", "300"];
        let tts = CommandTts { argv: argv.iter().map(|s| s.to_string()).collect() };
        let pcm = tts.synthesize("unused").await.unwrap();
        assert_eq!(pcm.len(), 8000);
        assert!(rms(&pcm) > 5000.0, "rms {}", rms(&pcm));
    }

    #[tokio::test]
    async fn espeak_speaks_chinese_at_8khz_when_installed() {
        if !installed("espeak-ng") {
            eprintln!("espeak-ng not installed; skipped");
            return;
        }
        let tts = Espeak { program: "espeak-ng".into(), voice: "cmn".into(), speed: 160 };
        let pcm = tts.synthesize("您好，请问是张三吗？").await.unwrap();
        assert!(pcm.len() > 8000 && pcm.len() < 8000 * 10, "{} samples", pcm.len());
        assert!(rms(&pcm) > 500.0);
    }
}
