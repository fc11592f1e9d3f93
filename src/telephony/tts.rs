//! Text to speech for `say`: the `[tts]` section, the `Tts` trait (a line whole, or its
//! audio as it is made), the engines that ship (espeak-ng, an OpenAI-compatible speech
//! server that streams, any command that writes a WAV, and a synthetic placeholder voice),
//! a cache of phrases already spoken, WAV reading and a resampler to the line's 8 kHz.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::recording::{SAMPLE_RATE, synth_speech};

/// Speaks text. Implement it to plug in a cloud or local TTS service; the SIP carrier
/// takes any `Arc<dyn Tts>` (`SipCarrier::new`).
#[async_trait]
pub trait Tts: Send + Sync + 'static {
    /// `text` as 8 kHz mono 16-bit PCM.
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError>;

    /// `text` as its audio is made, to be played as it comes. By default the whole line
    /// as one chunk; an engine that has audio before the line is done overrides it.
    async fn stream(&self, text: &str) -> Result<Speech, TtsError> {
        Ok(whole(self.synthesize(text).await?))
    }
}

/// A line's audio as it is made: 8 kHz mono chunks in order, the line over when the
/// stream ends. An error cuts the line short where it got to.
pub type Speech = BoxStream<'static, Result<Audio, TtsError>>;

/// A piece of a line's audio (8 kHz mono), shared rather than copied: a line kept in the
/// cache is played by every call that says it without a copy of its own.
pub type Audio = Arc<[i16]>;

/// A line already made, as one chunk.
pub fn whole(pcm: impl Into<Audio>) -> Speech {
    stream::iter([Ok(pcm.into())]).boxed()
}

/// All of a line's audio, once it has come.
pub async fn collect(speech: Speech) -> Result<Vec<i16>, TtsError> {
    speech
        .try_fold(Vec::new(), |mut line, chunk| async move {
            line.extend_from_slice(&chunk);
            Ok(line)
        })
        .await
}

/// Starts `text` and waits for its first audio, so that a failure before any audio is
/// told apart from one part way through: the former is the error, the latter comes in
/// the speech returned (which starts with that first audio).
pub async fn first_audio(tts: &dyn Tts, text: &str) -> Result<Speech, TtsError> {
    let mut speech = tts.stream(text).await?;
    match speech.next().await {
        Some(Ok(first)) => Ok(stream::iter([Ok(first)]).chain(speech).boxed()),
        Some(Err(e)) => Err(e),
        None => Ok(stream::empty().boxed()),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TtsError {
    #[error("`{program}` is not installed (apt-get install espeak-ng, or set tts.engine)")]
    NotInstalled { program: String },
    #[error("`{program}` failed: {detail}")]
    Failed { program: String, detail: String },
    #[error("could not read the synthesized audio: {0}")]
    Audio(String),
}

/// `tts.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtsEngine {
    /// `espeak-ng` from the PATH.
    Espeak,
    /// `POST {url}/audio/speech`, the OpenAI-compatible protocol.
    Openai,
    /// `tts.command`: any program that writes a WAV.
    Command,
    /// A speech-like synthetic voice (no words): for tests and demos without a TTS.
    Synthetic,
}

/// The `[tts]` section: the agent's voice on SIP calls (FreeSWITCH speaks with its own).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsSettings {
    pub engine: TtsEngine,
    /// `espeak`: espeak-ng's voice, and words per minute.
    pub espeak_voice: String,
    pub espeak_speed: u32,
    /// `openai`: the server's base URL (`http://127.0.0.1:8880/v1`), key, model and voice.
    pub url: String,
    pub api_key: String,
    pub model: String,
    pub voice: String,
    /// `openai`: longest one line's synthesis may take.
    pub timeout_ms: u64,
    /// `command`: program and arguments; `{text}` and `{wav}` are replaced.
    pub command: Vec<String>,
    /// Lines kept once synthesised (greetings, closings, fixed script lines), so that they
    /// go out at once the next time; 0 keeps none.
    pub cache_lines: usize,
}

impl Default for TtsSettings {
    fn default() -> Self {
        TtsSettings {
            engine: TtsEngine::Espeak,
            espeak_voice: "cmn".into(),
            espeak_speed: 160,
            url: String::new(),
            api_key: String::new(),
            model: "tts-1".into(),
            voice: "alloy".into(),
            timeout_ms: 10_000,
            command: Vec::new(),
            cache_lines: 256,
        }
    }
}

impl fmt::Debug for TtsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtsSettings")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "(hidden)" })
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("command", &self.command)
            .field("cache_lines", &self.cache_lines)
            .finish_non_exhaustive()
    }
}

impl TtsSettings {
    /// What the types alone do not say; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self.engine {
            TtsEngine::Openai if !(self.url.starts_with("http://") || self.url.starts_with("https://")) => {
                Err("tts.url must be an http:// or https:// URL when tts.engine = \"openai\"".into())
            }
            TtsEngine::Command if self.command.is_empty() => {
                Err("tts.command must name a program when tts.engine = \"command\"".into())
            }
            _ if !(100..=120_000).contains(&self.timeout_ms) => {
                Err("tts.timeout_ms must be between 100 and 120000".into())
            }
            _ => Ok(()),
        }
    }
}

/// The voice `[tts]` names: its engine, falling back to the synthetic voice when the
/// engine fails, and remembering the lines it has said.
pub fn voice(settings: &TtsSettings) -> Arc<dyn Tts> {
    let engine: Arc<dyn Tts> = match settings.engine {
        TtsEngine::Espeak => {
            if !installed("espeak-ng") {
                tracing::error!(
                    "espeak-ng is not installed, so the callee will hear a synthetic placeholder voice \
                     instead of words; install it (apt-get install espeak-ng) or set tts.engine"
                );
            }
            Arc::new(Espeak {
                program: "espeak-ng".into(),
                voice: settings.espeak_voice.clone(),
                speed: settings.espeak_speed,
            })
        }
        TtsEngine::Openai => Arc::new(OpenAiTts::new(settings)),
        TtsEngine::Command => Arc::new(CommandTts { argv: settings.command.clone() }),
        // Cached too: it is made on the runtime's thread, a tenth of a second of CPU for
        // a three-minute line, which every call saying that line would otherwise pay.
        TtsEngine::Synthetic => Arc::new(Synthetic),
    };
    let engine = match NonZeroUsize::new(settings.cache_lines) {
        Some(lines) => Arc::new(Cached::new(engine, lines)),
        None => engine,
    };
    Arc::new(WithFallback::new(engine))
}

/// Lines already synthesised, the least recently said dropped first. Only a line the
/// engine made whole is kept: one it failed part way through is not (and a failure's
/// fallback never is).
///
/// A line is made once however many calls ask for it at the same time (a campaign's first
/// calls all answered at once, all greeted alike): the first asks the engine, the others
/// follow it, each from the line's beginning. The making goes on to the end, and the line
/// is kept, even when every call has stopped listening (a greeting spoken over), so that
/// the next call has it at once.
pub struct Cached {
    engine: Arc<dyn Tts>,
    lines: Arc<Mutex<lru::LruCache<String, Audio>>>,
    making: Arc<Mutex<HashMap<String, watch::Receiver<Making>>>>,
}

/// A line being made: its audio so far, and how it ended once it has.
#[derive(Default)]
struct Making {
    chunks: Vec<Audio>,
    end: Option<Result<(), TtsError>>,
}

impl Cached {
    pub fn new(engine: Arc<dyn Tts>, lines: NonZeroUsize) -> Cached {
        Cached { engine, lines: Arc::new(Mutex::new(lru::LruCache::new(lines))), making: Arc::default() }
    }

    /// Has the engine make `text` on a task of its own, which keeps the line once whole;
    /// what it makes is published on the channel returned.
    fn make(&self, text: &str) -> watch::Receiver<Making> {
        let (tx, rx) = watch::channel(Making::default());
        let (engine, lines, making, text) =
            (self.engine.clone(), self.lines.clone(), self.making.clone(), text.to_string());
        tokio::spawn(async move {
            let end = match engine.stream(&text).await {
                Ok(mut speech) => loop {
                    match speech.next().await {
                        Some(Ok(chunk)) => tx.send_modify(|m| m.chunks.push(chunk)),
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    }
                },
                Err(e) => Err(e),
            };
            if end.is_ok() {
                let line: Vec<i16> = tx.borrow().chunks.iter().flat_map(|c| c.iter().copied()).collect();
                lines.lock().unwrap_or_else(|e| e.into_inner()).put(text.clone(), line.into());
            }
            tx.send_modify(|m| m.end = Some(end));
            making.lock().unwrap_or_else(|e| e.into_inner()).remove(&text);
        });
        rx
    }
}

/// A line being made, from its beginning, as it comes.
fn follow(making: watch::Receiver<Making>) -> Speech {
    enum Next {
        Chunk(Audio),
        Failed(TtsError),
        Over,
        Wait,
    }
    stream::unfold(Some((making, 0)), |state| async move {
        let (mut making, taken) = state?;
        loop {
            let next = {
                let m = making.borrow_and_update();
                match (m.chunks.get(taken), &m.end) {
                    (Some(chunk), _) => Next::Chunk(chunk.clone()),
                    (None, Some(Err(e))) => Next::Failed(e.clone()),
                    (None, Some(Ok(()))) => Next::Over,
                    (None, None) => Next::Wait,
                }
            };
            match next {
                Next::Chunk(chunk) => return Some((Ok(chunk), Some((making, taken + 1)))),
                Next::Failed(e) => return Some((Err(e), None)),
                Next::Over => return None,
                Next::Wait => {
                    if making.changed().await.is_err() {
                        let e = TtsError::Audio("the line's synthesis stopped".into());
                        return Some((Err(e), None));
                    }
                }
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Tts for Cached {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        collect(self.stream(text).await?).await
    }

    async fn stream(&self, text: &str) -> Result<Speech, TtsError> {
        let kept = self.lines.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
        if let Some(line) = kept {
            return Ok(whole(line));
        }
        let making = {
            let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under this lock: the line may have been kept meanwhile.
            let kept = self.lines.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
            if let Some(line) = kept {
                return Ok(whole(line));
            }
            making.entry(text.to_string()).or_insert_with(|| self.make(text)).clone()
        };
        Ok(follow(making))
    }
}

/// An OpenAI-compatible speech server: `POST {url}/audio/speech` with `model`, `voice`,
/// `input` and `response_format = "pcm"`, the answer resampled to 8 kHz as it comes.
///
/// Raw PCM rather than WAV, because it streams as it is: OpenAI documents `pcm` as 24 kHz
/// 16-bit little-endian mono, and Kokoro-FastAPI (24 kHz too) and openedai-speech send
/// it as they synthesise (openedai-speech's piper voices at 22.05 kHz, which it says in
/// its `Content-Type: audio/pcm;rate=22050`, read here). A streamed WAV has to carry a
/// header whose sizes are not known yet, which servers write differently (a made-up
/// length, or a header per sentence that would play as a click). A server that ignores
/// the format and answers a WAV anyway is still understood: by its `RIFF` it is read
/// whole, at its end.
pub struct OpenAiTts {
    client: reqwest::Client,
    endpoint: String,
    api_key: String,
    model: String,
    voice: String,
}

impl OpenAiTts {
    pub fn new(settings: &TtsSettings) -> OpenAiTts {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("callcenter/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with a timeout and a user agent builds");
        OpenAiTts {
            client,
            endpoint: format!("{}/audio/speech", settings.url.trim_end_matches('/')),
            api_key: settings.api_key.clone(),
            model: settings.model.clone(),
            voice: settings.voice.clone(),
        }
    }
}

#[async_trait]
impl Tts for OpenAiTts {
    async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
        collect(self.stream(text).await?).await
    }

    async fn stream(&self, text: &str) -> Result<Speech, TtsError> {
        let endpoint = self.endpoint.clone();
        let failed = move |detail: String| TtsError::Failed { program: endpoint.clone(), detail };
        let body = serde_json::json!({
            "model": self.model, "voice": self.voice, "input": text, "response_format": "pcm",
        });
        let mut request = self.client.post(&self.endpoint).json(&body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body: String = response.text().await.unwrap_or_default().chars().take(200).collect();
            return Err(failed(format!("{status} {body}")));
        }
        let rate = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("rate=")?.parse().ok()))
            .unwrap_or(PCM_RATE);
        let answer = (response.bytes_stream(), Body::new(rate), 0usize);
        let speech = stream::unfold(Some(answer), move |answer| {
            let failed = failed.clone();
            async move {
                let (mut bytes, mut body, mut made) = answer?;
                loop {
                    match bytes.next().await {
                        Some(Ok(chunk)) => {
                            let pcm = body.push(&chunk);
                            if !pcm.is_empty() {
                                made += pcm.len();
                                return Some((Ok(pcm.into()), Some((bytes, body, made))));
                            }
                        }
                        Some(Err(e)) => return Some((Err(failed(e.to_string())), None)),
                        None => {
                            return match body.finish() {
                                Ok(pcm) if pcm.is_empty() && made == 0 => {
                                    Some((Err(failed("the answer held no audio".into())), None))
                                }
                                Ok(pcm) if pcm.is_empty() => None,
                                last => Some((last.map(Audio::from), None)),
                            };
                        }
                    }
                }
            }
        });
        Ok(speech.boxed())
    }
}

/// OpenAI's `pcm`: 24 kHz, 16-bit little-endian, mono.
const PCM_RATE: u32 = 24_000;

/// An answer's body turned into 8 kHz audio as its bytes come, whatever their split.
struct Body {
    /// The rate of raw PCM.
    rate: u32,
    format: Format,
    /// Bytes not yet made into samples: half a sample, or all of a WAV.
    pending: Vec<u8>,
}

/// What the server answered, told by its first four bytes.
enum Format {
    Unknown,
    Pcm(Resampler),
    Wav,
}

impl Body {
    fn new(rate: u32) -> Body {
        Body { rate, format: Format::Unknown, pending: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        self.pending.extend_from_slice(bytes);
        if matches!(self.format, Format::Unknown) && self.pending.len() >= 4 {
            self.format = match self.pending.starts_with(b"RIFF") {
                true => Format::Wav,
                false => Format::Pcm(Resampler::new(self.rate, SAMPLE_RATE)),
            };
        }
        let Format::Pcm(resampler) = &mut self.format else { return Vec::new() };
        let even = self.pending.len() & !1;
        let samples: Vec<i16> =
            self.pending[..even].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        self.pending.drain(..even);
        resampler.push(&samples)
    }

    /// The rest, at the end of the body (a last odd byte is half a sample, and dropped).
    fn finish(self) -> Result<Vec<i16>, TtsError> {
        match self.format {
            Format::Pcm(resampler) => Ok(resampler.finish()),
            Format::Wav => {
                let (pcm, rate) = decode_wav(std::io::Cursor::new(self.pending))?;
                Ok(resample(&pcm, rate, SAMPLE_RATE))
            }
            Format::Unknown => Ok(Vec::new()),
        }
    }
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
            return Err(TtsError::Failed { program: String::new(), detail: "tts.command is empty".into() });
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

/// A TTS that falls back to the synthetic voice when its engine fails before any audio,
/// so that a call still hears something of the right length; the first failure is logged
/// as an error, later ones as warnings. A failure once audio has come is passed on: the
/// line ends where its audio did (the player logs it), since starting the line over in
/// another voice would say its beginning twice.
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
        collect(self.stream(text).await?).await
    }

    async fn stream(&self, text: &str) -> Result<Speech, TtsError> {
        match first_audio(self.primary.as_ref(), text).await {
            Ok(speech) => Ok(speech),
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
                Ok(whole(synthetic(text)))
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

/// The WAV at `path` at 8 kHz, read and resampled off the async threads (a long line's
/// resampling takes milliseconds that the calls' RTP senders must not wait for).
async fn read_wav_8k(path: PathBuf) -> Result<Vec<i16>, TtsError> {
    tokio::task::spawn_blocking(move || read_wav(&path).map(|(pcm, rate)| resample(&pcm, rate, SAMPLE_RATE)))
        .await
        .map_err(|e| TtsError::Audio(e.to_string()))?
}

/// Reads any PCM WAV as mono 16-bit (channels averaged) and its sample rate.
pub fn read_wav(path: &Path) -> Result<(Vec<i16>, u32), TtsError> {
    let file = std::fs::File::open(path).map_err(|e| TtsError::Audio(e.to_string()))?;
    decode_wav(std::io::BufReader::new(file))
}

fn decode_wav(wav: impl std::io::Read) -> Result<(Vec<i16>, u32), TtsError> {
    let reader = hound::WavReader::new(wav).map_err(|e| TtsError::Audio(e.to_string()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<f32> = match spec.sample_format {
        // Up to the first sample that cannot be read: a WAV streamed by a server may say
        // its length is unknown (the largest size), and then ends where the audio does.
        hound::SampleFormat::Float => reader.into_samples::<f32>().map_while(Result::ok).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample - 1)) as f32;
            reader.into_samples::<i32>().map_while(Result::ok).map(|s| s as f32 * scale).collect()
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
    let mut resampler = Resampler::new(from, to);
    let mut out = resampler.push(input);
    out.extend(resampler.finish());
    out
}

/// `resample` for audio that comes in pieces: each output sample is made once the input
/// it is drawn from has come, from the same samples and weights as if the whole had been
/// there at once, so the pieces' edges leave no trace.
pub struct Resampler {
    /// `None`: the rates are the same (or one is unknown), and samples pass as they are.
    filter: Option<Filter>,
    /// The input from sample `base` on (what earlier outputs alone needed is dropped).
    input: Vec<i16>,
    base: usize,
    /// The next output sample's index.
    next: usize,
}

/// A windowed sinc: each output sample is drawn from the input around its time.
struct Filter {
    /// The rates over their greatest common divisor: output `j` is at input time
    /// `j·from/to`, so its position between two input samples, its phase, is one of `to`.
    from: u64,
    to: u64,
    cutoff: f64,
    /// Input samples taken on either side.
    half: i64,
    /// The taps' weights by phase (`2·half` each), worked out once: the sines and cosines
    /// are most of the work otherwise. Empty for rates with too many phases (an odd rate),
    /// whose weights are worked out sample by sample.
    table: Vec<f64>,
}

/// Largest weight table kept (a common TTS rate to 8 kHz needs at most 160 phases).
const MOST_WEIGHTS: u64 = 1 << 16;

impl Filter {
    fn new(from: u32, to: u32) -> Filter {
        const ZEROS: f64 = 16.0;
        let divisor = gcd(u64::from(from), u64::from(to));
        let (from, to) = (u64::from(from) / divisor, u64::from(to) / divisor);
        let ratio = to as f64 / from as f64;
        // Below both Nyquist frequencies, with a little room for the filter's slope.
        let cutoff = ratio.min(1.0) * 0.92;
        let half = (ZEROS / cutoff).ceil() as i64;
        let mut filter = Filter { from, to, cutoff, half, table: Vec::new() };
        if to * 2 * half as u64 <= MOST_WEIGHTS {
            filter.table = (0..to)
                .flat_map(|phase| (0..2 * half).map(move |i| (phase, i)))
                .map(|(phase, i)| filter.weight(phase as f64 / to as f64 + (half - 1 - i) as f64))
                .collect();
        }
        filter
    }

    /// The weight of an input sample `x` input samples before the output's time.
    fn weight(&self, x: f64) -> f64 {
        let w = x / self.half as f64;
        if w.abs() >= 1.0 {
            return 0.0;
        }
        let window =
            0.42 + 0.5 * (std::f64::consts::PI * w).cos() + 0.08 * (2.0 * std::f64::consts::PI * w).cos();
        let arg = std::f64::consts::PI * self.cutoff * x;
        let sinc = if arg.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
        sinc * window
    }

    /// The input sample output `j` is centred on (the last at or before its time).
    fn center(&self, j: usize) -> i64 {
        (j as u64 * self.from / self.to) as i64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        let filter = (from != to && from != 0 && to != 0).then(|| Filter::new(from, to));
        Resampler { filter, input: Vec::new(), base: 0, next: 0 }
    }

    /// The output that `chunk` completes.
    pub fn push(&mut self, chunk: &[i16]) -> Vec<i16> {
        let Some(f) = self.filter.take() else { return chunk.to_vec() };
        self.input.extend_from_slice(chunk);
        let end = (self.base + self.input.len()) as i64;
        let out = self.run(&f, |j| f.center(j) + f.half < end);
        self.filter = Some(f);
        out
    }

    /// The rest, once all the input has come.
    pub fn finish(mut self) -> Vec<i16> {
        let Some(f) = self.filter.take() else { return Vec::new() };
        let out_len = ((self.base + self.input.len()) as f64 * f.to as f64 / f.from as f64).round() as usize;
        self.run(&f, |j| j < out_len)
    }

    fn run(&mut self, f: &Filter, ready: impl Fn(usize) -> bool) -> Vec<i16> {
        let mut out = Vec::new();
        while ready(self.next) {
            out.push(self.sample(f, self.next));
            self.next += 1;
        }
        // What the next output reaches back to is all that is still needed.
        let keep_from = (f.center(self.next) - f.half + 1).max(0) as usize;
        let drop = keep_from.saturating_sub(self.base).min(self.input.len());
        self.input.drain(..drop);
        self.base += drop;
        out
    }

    fn sample(&self, f: &Filter, j: usize) -> i16 {
        let center = f.center(j);
        let phase = (j as u64 * f.from % f.to) as usize;
        let end = (self.base + self.input.len()) as i64;
        let first = center - f.half + 1;
        let (mut acc, mut norm) = (0.0, 0.0);
        for (i, k) in (first..=center + f.half).enumerate() {
            if k < 0 || k >= end {
                continue;
            }
            let weight = match f.table.is_empty() {
                false => f.table[phase * 2 * f.half as usize + i],
                true => f.weight(phase as f64 / f.to as f64 + (center - k) as f64),
            };
            acc += f64::from(self.input[k as usize - self.base]) * weight;
            norm += weight;
        }
        let v = if norm.abs() > 1e-9 { acc / norm } else { 0.0 };
        v.round().clamp(-32768.0, 32767.0) as i16
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// An engine that counts its calls, and fails on `fail`.
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Tts for Counting {
        async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match text {
                "fail" => Err(TtsError::Audio("no voice today".into())),
                _ => Ok(vec![text.len() as i16; 160]),
            }
        }
    }

    #[tokio::test]
    async fn a_line_said_before_comes_from_the_cache_and_failures_are_not_kept() {
        let engine = Arc::new(Counting { calls: AtomicUsize::new(0) });
        let voice = WithFallback::new(Arc::new(Cached::new(engine.clone(), NonZeroUsize::new(2).unwrap())));
        let first = voice.synthesize("您好").await.unwrap();
        assert_eq!(voice.synthesize("您好").await.unwrap(), first);
        assert_eq!(engine.calls.load(Ordering::Relaxed), 1, "the second time came from the cache");
        // The least recently said goes when the cache is full.
        voice.synthesize("再见").await.unwrap();
        voice.synthesize("稍后").await.unwrap();
        voice.synthesize("您好").await.unwrap();
        assert_eq!(engine.calls.load(Ordering::Relaxed), 4);
        // A failure is spoken with the synthetic voice, and tried again next time.
        assert_eq!(voice.synthesize("fail").await.unwrap(), synthetic("fail"));
        voice.synthesize("fail").await.unwrap();
        assert_eq!(engine.calls.load(Ordering::Relaxed), 6);
    }

    /// An engine that streams each line in two chunks, fails after the first on "cut",
    /// and before any audio on "fail"; it counts its lines.
    struct Chunked {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Tts for Chunked {
        async fn synthesize(&self, text: &str) -> Result<Vec<i16>, TtsError> {
            collect(self.stream(text).await?).await
        }

        async fn stream(&self, text: &str) -> Result<Speech, TtsError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let lost = || Err(TtsError::Audio("the server went away".into()));
            let chunks = match text {
                "fail" => vec![lost()],
                "cut" => vec![Ok(Audio::from(vec![1; 160])), lost()],
                _ => vec![Ok(Audio::from(vec![1; 160])), Ok(Audio::from(vec![2; 160]))],
            };
            Ok(stream::iter(chunks).boxed())
        }
    }

    #[tokio::test]
    async fn the_cache_keeps_a_line_only_once_it_has_all_come() {
        let engine = Arc::new(Chunked { calls: AtomicUsize::new(0) });
        let cached = Cached::new(engine.clone(), NonZeroUsize::new(4).unwrap());
        let calls = || engine.calls.load(Ordering::Relaxed);

        // Failed part way: what came is passed on, then the failure; nothing is kept.
        let cut: Vec<_> = cached.stream("cut").await.unwrap().collect().await;
        assert!(matches!(cut[..], [Ok(_), Err(_)]), "{cut:?}");
        cached.stream("cut").await.unwrap().collect::<Vec<_>>().await;
        assert_eq!(calls(), 2, "a line that failed part way is asked for again");

        // Dropped after its first chunk (the callee spoke over it): made whole all the
        // same, and kept for the next call.
        let mut speech = cached.stream("您好").await.unwrap();
        assert_eq!(*speech.next().await.unwrap().unwrap(), [1; 160]);
        drop(speech);
        let line = collect(cached.stream("您好").await.unwrap()).await.unwrap();
        assert_eq!(line, [[1; 160], [2; 160]].concat());
        assert_eq!(calls(), 3, "the line was made once");
        // Kept whole, it comes back at once as one chunk.
        let mut again = cached.stream("您好").await.unwrap();
        assert_eq!(*again.next().await.unwrap().unwrap(), line[..]);
        assert!(again.next().await.is_none());
        assert_eq!(calls(), 3, "the line came from the cache");
    }

    /// An engine whose lines come when the test says: each `stream` counts a call and
    /// waits for its audio on `release`.
    struct Gated {
        calls: AtomicUsize,
        release: tokio::sync::watch::Receiver<Option<Result<(), TtsError>>>,
    }

    #[async_trait]
    impl Tts for Gated {
        async fn synthesize(&self, _: &str) -> Result<Vec<i16>, TtsError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut release = self.release.clone();
            let released = release.wait_for(Option::is_some).await.unwrap().clone().unwrap();
            released.map(|()| vec![7; 1600])
        }
    }

    #[tokio::test]
    async fn calls_asking_for_a_line_being_made_wait_for_it_rather_than_make_it_again() {
        let (release, gate) = tokio::sync::watch::channel(None);
        let engine = Arc::new(Gated { calls: AtomicUsize::new(0), release: gate });
        let cached = Arc::new(Cached::new(engine.clone(), NonZeroUsize::new(4).unwrap()));
        let asking: Vec<_> = (0..20)
            .map(|_| {
                let cached = cached.clone();
                tokio::spawn(async move { collect(cached.stream("您好，这里是客服中心").await?).await })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(Some(Ok(()))).unwrap();
        for asked in asking {
            assert_eq!(asked.await.unwrap().unwrap(), vec![7; 1600]);
        }
        assert_eq!(engine.calls.load(Ordering::Relaxed), 1, "twenty calls, one synthesis");

        // A failure reaches every call waiting for the line, and is not kept.
        let (release, gate) = tokio::sync::watch::channel(None);
        let engine = Arc::new(Gated { calls: AtomicUsize::new(0), release: gate });
        let voice =
            Arc::new(WithFallback::new(Arc::new(Cached::new(engine.clone(), NonZeroUsize::new(4).unwrap()))));
        let asking: Vec<_> = (0..5)
            .map(|_| {
                let voice = voice.clone();
                tokio::spawn(async move { voice.synthesize("fail").await })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(Some(Err(TtsError::Audio("no voice today".into())))).unwrap();
        for asked in asking {
            assert_eq!(asked.await.unwrap().unwrap(), synthetic("fail"), "the fallback spoke");
        }
        assert_eq!(engine.calls.load(Ordering::Relaxed), 1);
        voice.synthesize("fail").await.unwrap();
        assert_eq!(engine.calls.load(Ordering::Relaxed), 2, "asked for again after the failure");
    }

    #[tokio::test]
    async fn the_fallback_speaks_for_a_failure_before_any_audio_and_not_after() {
        let voice = WithFallback::new(Arc::new(Chunked { calls: AtomicUsize::new(0) }));
        assert_eq!(voice.synthesize("fail").await.unwrap(), synthetic("fail"));
        // Part way through, the line ends where its audio did: it is not begun again.
        let cut: Vec<_> = voice.stream("cut").await.unwrap().collect().await;
        assert!(matches!(&cut[..], [Ok(first), Err(_)] if first[..] == [1; 160]), "{cut:?}");
    }

    /// An OpenAI-compatible speech server answering `/pcm/audio/speech` with raw 24 kHz
    /// PCM, `/pcm22/audio/speech` with raw PCM at the rate its `Content-Type` gives, and
    /// `/wav/audio/speech` with a WAV (as a server ignoring the format would), one second
    /// of a tone each; what it was asked comes on the channel.
    async fn speech_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>)
    {
        use axum::http::HeaderMap;
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let second = tone(440.0, 24_000, 1.0);
        let pcm: Vec<u8> = second.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut wav = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 24_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut wav, spec).unwrap();
        second.into_iter().for_each(|s| writer.write_sample(s).unwrap());
        writer.finalize().unwrap();
        let wav = wav.into_inner();
        let answer = move |body: Vec<u8>| {
            let seen_tx = seen_tx.clone();
            move |headers: HeaderMap, asked: String| async move {
                let _ = seen_tx.send((headers, asked));
                body
            }
        };
        let pcm22: Vec<u8> = tone(440.0, 22_050, 1.0).iter().flat_map(|s| s.to_le_bytes()).collect();
        let rated =
            move || async move { ([(axum::http::header::CONTENT_TYPE, "audio/pcm;rate=22050")], pcm22) };
        let app = axum::Router::new()
            .route("/pcm/audio/speech", axum::routing::post(answer(pcm)))
            .route("/pcm22/audio/speech", axum::routing::post(rated))
            .route("/wav/audio/speech", axum::routing::post(answer(wav)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn the_openai_engine_asks_for_pcm_and_brings_it_to_8_khz() {
        let (url, mut seen) = speech_server().await;
        let settings = TtsSettings {
            engine: TtsEngine::Openai,
            url: format!("{url}/pcm"),
            api_key: "sk-voice".into(),
            voice: "nova".into(),
            ..TtsSettings::default()
        };
        let pcm = OpenAiTts::new(&settings).synthesize("您好").await.unwrap();
        assert_eq!(pcm.len(), 8000, "one second at 8 kHz");
        assert!((rms(&pcm[200..7800]) - 7071.0).abs() < 300.0, "rms {}", rms(&pcm[200..7800]));
        let (headers, body) = seen.recv().await.unwrap();
        assert_eq!(headers["authorization"], "Bearer sk-voice");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "tts-1", "voice": "nova", "input": "您好", "response_format": "pcm"})
        );

        // A server that answers with a WAV whatever was asked is understood too (the WAV
        // reader's scaling may move a sample by one).
        let wav = TtsSettings { url: format!("{url}/wav"), ..settings.clone() };
        let from_wav = OpenAiTts::new(&wav).synthesize("您好").await.unwrap();
        assert_eq!(from_wav.len(), pcm.len());
        assert!(from_wav.iter().zip(&pcm).all(|(a, b)| (a - b).abs() <= 2), "the WAV answer differs");

        // A rate other than OpenAI's, when the server says it.
        let rated = TtsSettings { url: format!("{url}/pcm22"), ..settings.clone() };
        assert_eq!(OpenAiTts::new(&rated).synthesize("您好").await.unwrap().len(), 8000);

        let down = TtsSettings { url: "http://127.0.0.1:9/v1".into(), ..settings };
        assert!(OpenAiTts::new(&down).synthesize("您好").await.is_err());
    }

    #[test]
    fn audio_in_pieces_resamples_to_the_same_samples_as_the_whole() {
        // A tone with a sweep on it, so that every sample differs.
        let input: Vec<i16> = tone(440.0, 24_000, 0.5)
            .iter()
            .zip(tone(1700.0, 24_000, 0.5))
            .map(|(a, b)| a / 2 + b / 3)
            .collect();
        let whole = resample(&input, 24_000, SAMPLE_RATE);
        // Pieces of all sizes, the smallest shorter than the filter.
        let sizes = [1, 7, 480, 3, 1000, 2, 999, 160, 5000].into_iter().cycle();
        let mut resampler = Resampler::new(24_000, SAMPLE_RATE);
        let (mut pieces, mut rest) = (Vec::new(), &input[..]);
        for size in sizes {
            if rest.is_empty() {
                break;
            }
            let (piece, more) = rest.split_at(size.min(rest.len()));
            pieces.extend(resampler.push(piece));
            rest = more;
        }
        pieces.extend(resampler.finish());
        assert_eq!(pieces, whole);

        // As the bytes of a body, split anywhere, odd counts too, samples split in two.
        let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut body = Body::new(24_000);
        let mut from_body = Vec::new();
        for piece in bytes.chunks(333).flat_map(|c| {
            let (a, b) = c.split_at(1);
            [a, b]
        }) {
            from_body.extend(body.push(piece));
        }
        from_body.extend(body.finish().unwrap());
        assert_eq!(from_body, whole);
    }

    #[test]
    fn settings_an_engine_cannot_work_with_are_named() {
        assert_eq!(TtsSettings::default().validate(), Ok(()));
        let openai = TtsSettings { engine: TtsEngine::Openai, ..TtsSettings::default() };
        assert!(openai.validate().unwrap_err().contains("tts.url"));
        let command = TtsSettings { engine: TtsEngine::Command, ..TtsSettings::default() };
        assert!(command.validate().unwrap_err().contains("tts.command"));
    }

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
