//! Speech recognition for `listen`, shared by the carriers that carry real audio: the
//! `[asr]` section, the `Asr` trait and its engines — none (a turn is heard as
//! `[语音 N秒]`), an OpenAI-compatible transcription server (openai.rs), the FunASR
//! runtime's websocket, streamed while the callee speaks (funasr.rs), or a command-line
//! program (command.rs).

mod command;
mod funasr;
mod openai;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::vad::VadParams;

pub use command::CommandAsr;
pub use funasr::FunAsr;
pub use openai::OpenAiAsr;

/// Which recogniser hears the callee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AsrEngine {
    /// None: a turn is heard as its length, `[语音 N秒]`.
    #[default]
    None,
    /// `POST {url}/audio/transcriptions`, the OpenAI-compatible protocol that whisper.cpp's
    /// server, faster-whisper servers, vLLM, LocalAI and hosted APIs speak.
    Openai,
    /// The FunASR runtime's websocket protocol (`2pass`): the audio streams while the
    /// callee speaks, so the text is ready soon after the turn ends.
    Funasr,
    /// A program run per turn.
    Command,
}

/// The `[asr]` section.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrSettings {
    pub engine: AsrEngine,
    /// `openai`: the server's base URL, such as `http://127.0.0.1:8080/v1`; `funasr`: the
    /// runtime's websocket, such as `ws://127.0.0.1:10095`.
    pub url: String,
    /// `openai`: sent as `Authorization: Bearer`; empty sends none.
    pub api_key: String,
    /// `openai`: the `model` field.
    pub model: String,
    /// `openai`: the `language` field (ISO 639-1); empty lets the server guess.
    pub language: String,
    /// `funasr`: the `hotwords` field, a JSON object of words and weights such as
    /// `{"工单": 20}`; empty sends none.
    pub hotwords: String,
    /// How long one turn's recognition may take; past it the turn is heard as
    /// `[语音 N秒]`.
    pub timeout_ms: u64,
    /// `command`: program and arguments, `{wav}` replaced by the turn's audio (8 kHz mono
    /// WAV); it prints the text.
    pub command: Vec<String>,
    /// Loudness (RMS of a 20 ms frame, 16-bit scale) above which the callee is speaking.
    pub vad_threshold: u32,
    /// Quiet that ends the callee's turn.
    pub vad_silence_ms: u64,
}

impl Default for AsrSettings {
    fn default() -> Self {
        AsrSettings {
            engine: AsrEngine::None,
            url: String::new(),
            api_key: String::new(),
            model: "whisper-1".into(),
            language: "zh".into(),
            hotwords: String::new(),
            timeout_ms: 5000,
            command: Vec::new(),
            vad_threshold: 400,
            vad_silence_ms: 700,
        }
    }
}

impl fmt::Debug for AsrSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsrSettings")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "(hidden)" })
            .field("model", &self.model)
            .field("language", &self.language)
            .field("hotwords", &self.hotwords)
            .field("timeout_ms", &self.timeout_ms)
            .field("command", &self.command)
            .field("vad_threshold", &self.vad_threshold)
            .field("vad_silence_ms", &self.vad_silence_ms)
            .finish()
    }
}

impl AsrSettings {
    /// What the types alone do not say; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("asr.timeout_ms must be between 100 and 60000".into());
        }
        if self.vad_silence_ms < 100 {
            return Err("asr.vad_silence_ms must be at least 100".into());
        }
        match self.engine {
            AsrEngine::Openai if !(self.url.starts_with("http://") || self.url.starts_with("https://")) => {
                Err("asr.url must be an http:// or https:// URL when asr.engine = \"openai\"".into())
            }
            AsrEngine::Funasr if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) => {
                Err("asr.url must be a ws:// or wss:// URL when asr.engine = \"funasr\"".into())
            }
            AsrEngine::Funasr if !self.hotwords.is_empty() && !is_json_object(&self.hotwords) => {
                Err("asr.hotwords must be a JSON object of words and weights, such as {\"工单\": 20}".into())
            }
            AsrEngine::Command if self.command.is_empty() => {
                Err("asr.command must name a program when asr.engine = \"command\"".into())
            }
            _ => Ok(()),
        }
    }
}

impl AsrSettings {
    /// How the callee's turns are found in their audio.
    pub fn vad(&self) -> VadParams {
        VadParams {
            threshold: f64::from(self.vad_threshold),
            silence: Duration::from_millis(self.vad_silence_ms),
            min_voiced_frames: 3,
        }
    }
}

fn is_json_object(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
}

/// The recogniser `[asr]` names.
pub fn recogniser(settings: &AsrSettings) -> Arc<dyn Asr> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    match settings.engine {
        AsrEngine::None => Arc::new(Placeholder),
        AsrEngine::Openai => Arc::new(OpenAiAsr::new(settings)),
        AsrEngine::Funasr => Arc::new(FunAsr::new(settings)),
        AsrEngine::Command => Arc::new(CommandAsr { argv: settings.command.clone(), timeout }),
    }
}

/// Turns one turn of the callee's speech into text. Implement it to plug in a recogniser
/// of your own; the carriers take any `Arc<dyn Asr>` in their `hearing::Ear`.
#[async_trait]
pub trait Asr: Send + Sync + 'static {
    /// `pcm` is 8 kHz mono 16-bit, from the start of the turn to its last loud frame;
    /// `speech` is how long the callee spoke.
    async fn recognize(&self, pcm: &[i16], speech: Duration) -> Result<String, AsrError>;

    /// The engine's name, for the log and the metrics.
    fn engine(&self) -> &'static str;

    /// A recogniser that hears a turn as it is spoken opens a stream for it when `listen`
    /// starts; `listen` pushes the turn's audio from its first frame and takes the text
    /// when it ends. `None` (the default): the whole turn goes to `recognize` at its end.
    fn stream(&self) -> Option<Box<dyn AsrStream>> {
        None
    }
}

/// One turn on its way to a streaming recogniser.
#[async_trait]
pub trait AsrStream: Send {
    /// More of the turn's audio (8 kHz mono 16-bit); returns at once.
    fn push(&mut self, pcm: &[i16]);
    /// The turn has ended: its text, within `asr.timeout_ms`.
    async fn finish(self: Box<Self>) -> Result<String, AsrError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AsrError(String);

/// No recogniser: the text is the length of what was said, `[语音 3秒]`.
pub struct Placeholder;

#[async_trait]
impl Asr for Placeholder {
    async fn recognize(&self, _pcm: &[i16], speech: Duration) -> Result<String, AsrError> {
        Ok(placeholder(speech))
    }

    fn engine(&self) -> &'static str {
        "none"
    }
}

/// `[语音 N秒]`, N rounded and at least 1.
pub fn placeholder(speech: Duration) -> String {
    format!("[语音 {}秒]", speech.as_secs_f64().round().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_gives_the_rounded_length_in_seconds() {
        assert_eq!(placeholder(Duration::from_millis(2600)), "[语音 3秒]");
        assert_eq!(placeholder(Duration::from_millis(300)), "[语音 1秒]");
    }

    #[test]
    fn settings_an_engine_cannot_work_with_are_named() {
        let ok = AsrSettings::default();
        assert_eq!(ok.validate(), Ok(()));
        let openai = AsrSettings { engine: AsrEngine::Openai, ..AsrSettings::default() };
        assert!(openai.validate().unwrap_err().contains("asr.url"));
        let funasr = AsrSettings { engine: AsrEngine::Funasr, url: "http://asr:10095".into(), ..ok.clone() };
        assert!(funasr.validate().unwrap_err().contains("ws://"));
        let hotwords = AsrSettings { url: "ws://asr:10095".into(), hotwords: "工单".into(), ..funasr };
        assert!(hotwords.validate().unwrap_err().contains("asr.hotwords"));
        let command = AsrSettings { engine: AsrEngine::Command, ..AsrSettings::default() };
        assert!(command.validate().unwrap_err().contains("asr.command"));
        let slow = AsrSettings { timeout_ms: 10, ..AsrSettings::default() };
        assert!(slow.validate().unwrap_err().contains("asr.timeout_ms"));
        let key = AsrSettings { api_key: "sk-secret".into(), ..AsrSettings::default() };
        assert!(!format!("{key:?}").contains("sk-secret"));
    }
}
